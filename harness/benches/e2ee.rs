//! The E2EE layer's cost: X3DH session set-up, and a 1 KiB text through the full stanza path
//! beside the bare Signal layer under it, in the same run (the ratio is the figure to read).
//!
//! - `session_setup/start_session`: verify a handed-out bundle and run X3DH.
//! - `session_setup/x3dh_and_first_message`: the same, then the first (prekey) message
//!   encrypted, and decrypted by the other side (which consumes its one-time prekey).
//! - `message_1k/stanza_path`: `Device::encrypt` (AES-128-GCM over the text, the 32 bytes
//!   K || T through the Signal session), `Envelope::to_element`, the codec's writer
//!   (`write_to`, into a reused buffer as a stream writer does), the codec's parser
//!   (`parse_fragment`), `Envelope::from_element`, `Device::decrypt`.
//! - `message_1k/bare_signal`: the 1 KiB through wacore-libsignal's `message_encrypt` and
//!   `message_decrypt_signal` alone, over the same in-memory stores
//!   (`Device::signal_encrypt` / `signal_decrypt`, thin wrappers), no OMEMO and no XML.
//!
//! Both message benchmarks run on an established session in steady state: each iteration
//! sends one message Alice -> Bob, decrypted at once.

use std::hint::black_box;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use gatecheck::e2ee::{Address, Device, Envelope};
use gatecheck::wire::{Limits, parse_fragment};

const ALICE: &str = "alice@gatekeeper.example";
const BOB: &str = "bob@gatekeeper.example";

fn devices() -> (Device, Device, Address, Address) {
    let alice = Device::generate(1001, [1; 32], 0);
    let bob = Device::generate(2002, [2; 32], 100);
    (
        alice,
        bob,
        Address::new(ALICE, 1001),
        Address::new(BOB, 2002),
    )
}

/// A session each way (Alice's prekey message, Bob's reply), so Alice sends SignalMessages.
fn established() -> (Device, Device, Address, Address) {
    let (mut a, mut b, to_alice, to_bob) = devices();
    a.start_session(&to_bob, &b.bundle().with_prekeys(&[1]))
        .expect("session");
    let first = a
        .encrypt(std::slice::from_ref(&to_bob), b"hi")
        .expect("encrypt");
    b.decrypt(ALICE, &first).expect("decrypt");
    let reply = b
        .encrypt(std::slice::from_ref(&to_alice), b"hello")
        .expect("reply");
    a.decrypt(BOB, &reply).expect("decrypt reply");
    (a, b, to_alice, to_bob)
}

fn text_1k() -> String {
    "The quick brown fox jumps over the lazy dog. "
        .repeat(24)
        .chars()
        .take(1024)
        .collect()
}

fn session_setup(c: &mut Criterion) {
    let (a, b, _, to_bob) = devices();
    let bundle = b.bundle().with_prekeys(&[1]);
    let mut group = c.benchmark_group("session_setup");
    group.bench_function("start_session", |bench| {
        bench.iter_batched(
            || a.clone(),
            |mut a| black_box(a.start_session(&to_bob, &bundle).expect("session")),
            BatchSize::SmallInput,
        )
    });
    group.bench_function("x3dh_and_first_message", |bench| {
        bench.iter_batched(
            || (a.clone(), b.clone()),
            |(mut a, mut b)| {
                a.start_session(&to_bob, &bundle).expect("session");
                let e = a
                    .encrypt(std::slice::from_ref(&to_bob), b"first")
                    .expect("encrypt");
                black_box(b.decrypt(ALICE, &e).expect("decrypt"))
            },
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

/// One message through the full stanza path: encrypt, envelope element, serialize (into a
/// reused buffer, as a stream writer does), parse, envelope, decrypt.
fn stanza_path(
    a: &mut Device,
    b: &mut Device,
    to_bob: &Address,
    text: &str,
    xml: &mut Vec<u8>,
    limits: &Limits,
) -> gatecheck::e2ee::Decrypted {
    let envelope = a
        .encrypt(std::slice::from_ref(to_bob), text.as_bytes())
        .expect("encrypt");
    xml.clear();
    envelope.to_element().write_to(xml);
    let el = parse_fragment(xml, limits).expect("parse");
    let parsed = Envelope::from_element(&el).expect("envelope");
    b.decrypt(ALICE, &parsed).expect("decrypt")
}

fn message_1k(c: &mut Criterion) {
    let text = text_1k();
    let limits = Limits::harness_ceilings();
    let mut group = c.benchmark_group("message_1k");
    group.throughput(Throughput::Bytes(text.len() as u64));

    let (mut a, mut b, _, to_bob) = established();
    // A stream writer reuses its output buffer; so does this loop.
    let mut xml = Vec::with_capacity(4096);
    group.bench_function("stanza_path", |bench| {
        bench.iter(|| {
            black_box(stanza_path(
                &mut a, &mut b, &to_bob, &text, &mut xml, &limits,
            ))
        })
    });

    let (mut a, mut b, to_alice, to_bob) = established();
    group.bench_function("bare_signal", |bench| {
        bench.iter(|| {
            let key = a.signal_encrypt(&to_bob, text.as_bytes()).expect("encrypt");
            black_box(b.signal_decrypt(&to_alice, &key).expect("decrypt"))
        })
    });
    group.finish();
}

/// The ratio the speed target is stated in, measured so that a shared machine's load hits
/// both sides alike: short batches of the stanza path and of the bare Signal layer
/// alternate, and the median of the per-round ratios is printed (criterion's two separate
/// measurements drift apart under load by more than the difference being measured).
fn message_1k_ratio(_c: &mut Criterion) {
    const ROUNDS: usize = 60;
    const BATCH: usize = 100;
    let text = text_1k();
    let limits = Limits::harness_ceilings();
    let (mut a, mut b, _, to_bob) = established();
    let (mut c, mut d, to_c, to_d) = established();
    let mut xml = Vec::with_capacity(4096);
    let mut ratios = Vec::with_capacity(ROUNDS);
    for _ in 0..ROUNDS {
        let start = std::time::Instant::now();
        for _ in 0..BATCH {
            black_box(stanza_path(
                &mut a, &mut b, &to_bob, &text, &mut xml, &limits,
            ));
        }
        let stanza = start.elapsed();
        let start = std::time::Instant::now();
        for _ in 0..BATCH {
            let key = c.signal_encrypt(&to_d, text.as_bytes()).expect("encrypt");
            black_box(d.signal_decrypt(&to_c, &key).expect("decrypt"));
        }
        let bare = start.elapsed();
        ratios.push(stanza.as_secs_f64() / bare.as_secs_f64());
    }
    ratios.sort_by(f64::total_cmp);
    println!(
        "message_1k/ratio (interleaved, {ROUNDS} rounds of {BATCH}): median {:.2}, quartiles {:.2} to {:.2}",
        ratios[ROUNDS / 2],
        ratios[ROUNDS / 4],
        ratios[3 * ROUNDS / 4]
    );
}

criterion_group!(benches, session_setup, message_1k, message_1k_ratio);
criterion_main!(benches);
