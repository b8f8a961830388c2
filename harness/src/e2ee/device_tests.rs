//! Two or more Devices talking: sessions, prekeys, ratchets, and every decrypt failure.

use super::*;
use crate::wire::{Limits, parse_fragment};

const ALICE: &str = "alice@gatekeeper.example";
const BOB: &str = "bob@gatekeeper.example";

fn alice() -> Device {
    Device::generate(1001, [1; 32], 5)
}

fn bob() -> Device {
    Device::generate(2002, [2; 32], 5)
}

fn addr(jid: &str, d: &Device) -> Address {
    Address::new(jid, d.device_id())
}

/// The bundle as the gatekeeper hands it out: its first one-time prekey only.
fn handed_out(d: &Device) -> Bundle {
    let b = d.bundle();
    let first = b.prekeys.first().map(|(id, _)| *id);
    b.with_prekeys(&first.into_iter().collect::<Vec<_>>())
}

/// Alice and Bob with a session each way: Alice's prekey message, Bob's reply.
fn pair() -> (Device, Device) {
    let (mut a, mut b) = (alice(), bob());
    a.start_session(&addr(BOB, &b), &handed_out(&b))
        .expect("session");
    let e = a.encrypt(&[addr(BOB, &b)], b"hi").expect("encrypt");
    b.decrypt(ALICE, &e).expect("decrypt");
    let r = b.encrypt(&[addr(ALICE, &a)], b"hello").expect("reply");
    a.decrypt(BOB, &r).expect("decrypt reply");
    (a, b)
}

/// Through the stanza path: to_element, the codec's writer and parser, from_element.
fn over_the_wire(e: &Envelope) -> Envelope {
    let xml = e.to_element().to_xml();
    let el = parse_fragment(xml.as_bytes(), &Limits::harness_ceilings()).expect("parses");
    Envelope::from_element(&el).expect("valid envelope")
}

fn err(r: Result<Decrypted, DecryptError>) -> DecryptError {
    r.expect_err("decrypt must fail")
}

#[test]
fn exchange_both_ways() {
    let (mut a, mut b) = (alice(), bob());
    let to_bob = addr(BOB, &b);
    let to_alice = addr(ALICE, &a);
    let bundle = handed_out(&b);
    assert_eq!(bundle.prekeys.len(), 1);
    let used = bundle.prekeys[0].0;
    assert_eq!(a.start_session(&to_bob, &bundle), Ok(IdentityStatus::New));
    assert!(a.has_session(&to_bob));
    assert!(!b.has_session(&to_alice));

    let first = over_the_wire(
        &a.encrypt(std::slice::from_ref(&to_bob), "héllo".as_bytes())
            .expect("encrypt"),
    );
    assert_eq!(first.sid, 1001);
    assert_eq!(first.iv.len(), 12);
    assert!(
        first.keys[0].prekey,
        "first message is a prekey message (E2EE-15)"
    );
    let got = b.decrypt(ALICE, &first).expect("decrypt");
    assert_eq!(got.text.as_deref(), Some("héllo"));
    assert!(got.prekey_message);
    assert_eq!(got.consumed_prekey, Some(used));
    assert_eq!(got.identity, a.identity_key());
    assert_eq!(got.identity_status, IdentityStatus::New);
    assert_eq!(b.known_identity(&to_alice), Some(a.identity_key()));
    assert!(!b.prekey_ids().contains(&used));
    assert!(!b.bundle().prekeys.iter().any(|(id, _)| *id == used));
    assert_eq!(b.consumed_prekeys(), vec![used]);

    // Until Alice hears back she keeps sending prekey messages (E2EE-15).
    let second = a
        .encrypt(std::slice::from_ref(&to_bob), b"again")
        .expect("encrypt");
    assert!(second.keys[0].prekey);
    assert_eq!(
        b.decrypt(ALICE, &over_the_wire(&second))
            .expect("decrypt")
            .text
            .as_deref(),
        Some("again")
    );

    let reply = over_the_wire(
        &b.encrypt(std::slice::from_ref(&to_alice), b"hello alice")
            .expect("reply"),
    );
    assert!(
        !reply.keys[0].prekey,
        "Bob answers with a SignalMessage (E2EE-16)"
    );
    let got = a.decrypt(BOB, &reply).expect("decrypt reply");
    assert_eq!(got.text.as_deref(), Some("hello alice"));
    assert_eq!(got.identity_status, IdentityStatus::Same);
    assert_eq!(got.consumed_prekey, None);

    // Several ratchet steps each way.
    for round in 0..4 {
        let m = a
            .encrypt(
                std::slice::from_ref(&to_bob),
                format!("a{round}").as_bytes(),
            )
            .expect("a");
        assert!(!m.keys[0].prekey);
        assert_eq!(
            b.decrypt(ALICE, &over_the_wire(&m)).expect("b").text,
            Some(format!("a{round}"))
        );
        let m = b
            .encrypt(
                std::slice::from_ref(&to_alice),
                format!("b{round}").as_bytes(),
            )
            .expect("b");
        assert_eq!(
            a.decrypt(BOB, &over_the_wire(&m)).expect("a").text,
            Some(format!("b{round}"))
        );
    }
}

#[test]
fn session_without_one_time_prekey() {
    let (mut a, mut b) = (alice(), bob());
    a.start_session(&addr(BOB, &b), &b.bundle().with_prekeys(&[]))
        .expect("session");
    let e = a.encrypt(&[addr(BOB, &b)], b"x").expect("encrypt");
    let got = b.decrypt(ALICE, &e).expect("decrypt");
    assert_eq!(got.consumed_prekey, None);
    assert_eq!(b.prekey_ids().len(), 5);
}

#[test]
fn prekey_consumed_once() {
    let (mut a, mut b) = (alice(), bob());
    let to_bob = addr(BOB, &b);
    let bundle = handed_out(&b);
    let used = bundle.prekeys[0].0;
    a.start_session(&to_bob, &bundle).expect("session");
    b.decrypt(
        ALICE,
        &a.encrypt(std::slice::from_ref(&to_bob), b"1").expect("e"),
    )
    .expect("first use");
    // A second set-up from the same handed-out prekey: a new base key naming a deleted
    // prekey must not be surfaced (E2EE-8).
    let mut a2 = alice();
    // Same identity, different base key: advance its generator.
    a2.replenish(1);
    a2.start_session(&to_bob, &bundle).expect("session");
    let e = err(b.decrypt(
        ALICE,
        &a2.encrypt(std::slice::from_ref(&to_bob), b"2").expect("e"),
    ));
    assert_eq!(
        e,
        DecryptError::UnknownPrekey {
            peer: Address::new(ALICE, 1001),
            id: used,
            consumed: true
        }
    );
    assert_eq!(
        e.to_string(),
        format!(
            "alice@gatekeeper.example/1001 used one-time prekey {used}, which was already consumed"
        )
    );
    assert_eq!((e.requirement(), e.reason()), ("E2EE-8", "unknown-prekey"));
}

#[test]
fn never_published_prekey() {
    let (mut a, mut b) = (alice(), bob());
    let mut bundle = b.bundle().with_prekeys(&[]);
    // A valid key under an id Bob never published.
    bundle.prekeys = vec![(
        999,
        Device::generate(5, [5; 32], 1).bundle().prekeys[0]
            .1
            .clone(),
    )];
    a.start_session(&addr(BOB, &b), &bundle).expect("session");
    let e = err(b.decrypt(ALICE, &a.encrypt(&[addr(BOB, &b)], b"x").expect("e")));
    assert_eq!(
        e.to_string(),
        "alice@gatekeeper.example/1001 used one-time prekey 999, which was never published"
    );
}

#[test]
fn unknown_signed_prekey() {
    let (mut a, mut b) = (alice(), bob());
    let other = Device::generate(2002, [9; 32], 0).bundle();
    // Bob's identity signs... no: a bundle signed consistently but naming signed prekey 7.
    let mut bundle = b.bundle().with_prekeys(&[]);
    bundle.signed_prekey_id = 7;
    a.start_session(&addr(BOB, &b), &bundle).expect("session");
    let e = err(b.decrypt(ALICE, &a.encrypt(&[addr(BOB, &b)], b"x").expect("e")));
    assert_eq!(
        e.to_string(),
        "alice@gatekeeper.example/1001 used signed prekey 7, which this device never published"
    );
    assert_eq!(e.requirement(), "E2EE-9");
    // A bundle whose signed prekey is someone else's fails verification instead.
    let mut forged = b.bundle();
    forged.signed_prekey = other.signed_prekey;
    assert_eq!(
        a.start_session(&addr(BOB, &b), &forged)
            .map_err(|e| e.requirement),
        Err("E2EE-10")
    );
}

#[test]
fn out_of_order_within_the_skip_window() {
    let (mut a, mut b) = pair();
    let to_bob = addr(BOB, &b);
    let sent: Vec<Envelope> = (0..6)
        .map(|i| {
            a.encrypt(std::slice::from_ref(&to_bob), format!("m{i}").as_bytes())
                .expect("e")
        })
        .collect();
    for i in [5, 0, 3, 1, 4, 2] {
        assert_eq!(
            b.decrypt(ALICE, &sent[i]).expect("decrypt").text,
            Some(format!("m{i}"))
        );
    }
    // Each exactly once (E2EE-23, E2EE-22).
    assert_eq!(err(b.decrypt(ALICE, &sent[3])).reason(), "duplicate");

    // A jump of 1000 skipped keys still decrypts (E2EE-23).
    let mut last = None;
    for _ in 0..1001 {
        last = Some(a.encrypt(std::slice::from_ref(&to_bob), b"far").expect("e"));
    }
    let far = last.expect("sent");
    assert_eq!(
        b.decrypt(ALICE, &far).expect("decrypt").text.as_deref(),
        Some("far")
    );
}

#[test]
fn replay_refused() {
    let (mut a, mut b) = (alice(), bob());
    a.start_session(&addr(BOB, &b), &handed_out(&b))
        .expect("session");
    let pk = a.encrypt(&[addr(BOB, &b)], b"1").expect("e");
    b.decrypt(ALICE, &pk).expect("first");
    // The same prekey message again: its session exists, its counter is spent.
    let e = err(b.decrypt(ALICE, &pk));
    assert_eq!(
        e,
        DecryptError::Duplicate {
            peer: Address::new(ALICE, 1001),
            counter: 0
        }
    );
    assert_eq!(
        e.to_string(),
        "replay: alice@gatekeeper.example/1001 message counter 0 was already decrypted"
    );
    assert_eq!(e.requirement(), "E2EE-22");

    let (mut a, mut b) = pair();
    let m = a.encrypt(&[addr(BOB, &b)], b"once").expect("e");
    b.decrypt(ALICE, &m).expect("first");
    assert_eq!(err(b.decrypt(ALICE, &m)).reason(), "duplicate");
    // And the session still works afterwards (E2EE-21).
    let m = a.encrypt(&[addr(BOB, &b)], b"next").expect("e");
    assert_eq!(
        b.decrypt(ALICE, &m).expect("next").text.as_deref(),
        Some("next")
    );
}

#[test]
fn tampering_refused() {
    let (mut a, mut b) = pair();
    let to_bob = addr(BOB, &b);

    let mut m = a
        .encrypt(std::slice::from_ref(&to_bob), b"secret")
        .expect("e");
    if let Some(p) = m.payload.as_mut() {
        p[0] ^= 1;
    }
    let e = err(b.decrypt(ALICE, &m));
    assert_eq!(e, DecryptError::BadTag);
    assert_eq!(e.to_string(), "the AES-GCM tag does not verify");
    assert_eq!((e.requirement(), e.reason()), ("E2EE-17", "bad-tag"));

    let mut m = a
        .encrypt(std::slice::from_ref(&to_bob), b"secret")
        .expect("e");
    let last = m.keys[0].data.len() - 1;
    m.keys[0].data[last] ^= 1;
    let e = err(b.decrypt(ALICE, &m));
    assert_eq!(
        e.to_string(),
        "bad Signal message from alice@gatekeeper.example/1001: MAC verification failed for Whisper message"
    );
    assert_eq!(
        (e.requirement(), e.reason()),
        ("E2EE-13", "bad-signal-message")
    );

    // The session survives both (E2EE-21).
    let m = a
        .encrypt(std::slice::from_ref(&to_bob), b"fine")
        .expect("e");
    assert_eq!(
        b.decrypt(ALICE, &m).expect("ok").text.as_deref(),
        Some("fine")
    );
}

#[test]
fn identity_change_detected() {
    let (_, mut b) = pair();
    let old = alice().identity_key();
    // Same account and device id, new keys (a reinstall, or an attacker).
    let mut impostor = Device::generate(1001, [3; 32], 0);
    let to_bob = addr(BOB, &b);
    impostor
        .start_session(&to_bob, &handed_out(&b))
        .expect("session");
    let got = b
        .decrypt(ALICE, &impostor.encrypt(&[to_bob], b"it's me").expect("e"))
        .expect("accepted");
    assert_eq!(
        got.identity_status,
        IdentityStatus::Changed { previous: old }
    );
    assert_eq!(got.identity, impostor.identity_key());
    assert_eq!(
        b.known_identity(&Address::new(ALICE, 1001)),
        Some(impostor.identity_key())
    );

    // The other direction: a new bundle for a known device.
    let (mut a, b) = pair();
    let renewed = Device::generate(2002, [4; 32], 1);
    assert_eq!(
        a.start_session(&addr(BOB, &b), &handed_out(&renewed)),
        Ok(IdentityStatus::Changed {
            previous: b.identity_key()
        })
    );
}

#[test]
fn legacy_iv_and_key_transport() {
    let (mut a, mut b) = pair();
    let to_bob = addr(BOB, &b);
    let m = a
        .encrypt_with(
            std::slice::from_ref(&to_bob),
            b"old client",
            [7; 16],
            vec![8; 16],
        )
        .expect("e");
    let m = over_the_wire(&m);
    assert_eq!(m.iv, vec![8; 16]);
    let got = b.decrypt(ALICE, &m).expect("16-byte IV accepted");
    assert_eq!(got.text.as_deref(), Some("old client"));
    assert_eq!((got.key, got.iv), ([7; 16], vec![8; 16]));

    let t = over_the_wire(&a.key_transport(std::slice::from_ref(&to_bob)).expect("kt"));
    assert_eq!(t.payload, None);
    assert_eq!(b.decrypt(ALICE, &t).expect("kt").text, None);

    let e = a
        .encrypt_with(&[to_bob], b"x", [7; 16], vec![8; 5])
        .expect_err("bad iv");
    assert_eq!(
        e.to_string(),
        "E2EE-17: an IV of 5 bytes (12 expected, 16 accepted)"
    );
}

#[test]
fn decrypt_errors() {
    let (mut a, mut b) = pair();
    let to_bob = addr(BOB, &b);
    let from_alice = Address::new(ALICE, 1001);

    // No key for this device.
    let mut m = a.encrypt(std::slice::from_ref(&to_bob), b"x").expect("e");
    m.keys[0].rid = 4242;
    let e = err(b.decrypt(ALICE, &m));
    assert_eq!(
        e.to_string(),
        "no <key/> for device 2002 (the envelope has rids [4242])"
    );
    assert_eq!(
        (e.requirement(), e.reason()),
        ("E2EE-14", "no-key-for-device")
    );

    // The prekey flag set on a SignalMessage, and cleared on a PreKeySignalMessage.
    let mut m = a.encrypt(std::slice::from_ref(&to_bob), b"x").expect("e");
    m.keys[0].prekey = true;
    let e = err(b.decrypt(ALICE, &m));
    assert_eq!(
        e.to_string(),
        "the <key/> is marked prekey='true' but holds a SignalMessage"
    );
    assert_eq!(
        (e.requirement(), e.reason()),
        ("E2EE-16", "bad-prekey-flag")
    );
    let (mut c, mut d) = (alice(), bob());
    c.start_session(&addr(BOB, &d), &handed_out(&d)).expect("s");
    let mut m = c.encrypt(&[addr(BOB, &d)], b"x").expect("e");
    m.keys[0].prekey = false;
    assert_eq!(
        err(d.decrypt(ALICE, &m)).to_string(),
        "the <key/> is marked prekey='false' but holds a PreKeySignalMessage"
    );
    // The failed attempt changed nothing: with the right flag it decrypts.
    m.keys[0].prekey = true;
    assert!(d.decrypt(ALICE, &m).is_ok());

    // No session (forgotten) for a SignalMessage.
    let m = a.encrypt(std::slice::from_ref(&to_bob), b"x").expect("e");
    b.forget_session(&from_alice);
    let e = err(b.decrypt(ALICE, &m));
    assert_eq!(
        e.to_string(),
        "no session with alice@gatekeeper.example/1001 for its SignalMessage"
    );
    assert_eq!(
        (e.requirement(), e.reason()),
        ("E2EE-15", "unknown-session")
    );

    let (mut a, mut b) = pair();
    // Key material that is not 32 bytes.
    let mut m = a.encrypt(std::slice::from_ref(&to_bob), b"x").expect("e");
    m.keys[0] = a.signal_encrypt(&to_bob, &[1; 20]).expect("signal");
    let e = err(b.decrypt(ALICE, &m));
    assert_eq!(
        e.to_string(),
        "the Signal message carries 20 bytes, not the 32 bytes key || tag"
    );
    assert_eq!(
        (e.requirement(), e.reason()),
        ("E2EE-17", "bad-key-material")
    );

    // A payload that is not UTF-8.
    let m = a
        .encrypt(std::slice::from_ref(&to_bob), &[0xff, 0xfe])
        .expect("e");
    let e = err(b.decrypt(ALICE, &m));
    assert_eq!(e.to_string(), "the decrypted payload is not UTF-8 text");
    assert_eq!((e.requirement(), e.reason()), ("E2EE-25", "not-utf8"));

    // Envelopes built in code that no parser would have let through.
    let mut m = a.encrypt(std::slice::from_ref(&to_bob), b"x").expect("e");
    m.iv.truncate(11);
    let e = err(b.decrypt(ALICE, &m));
    assert_eq!(
        e.to_string(),
        "an IV of 11 bytes (12 expected, 16 accepted)"
    );
    assert_eq!(e.reason(), "bad-iv");
    let mut m = a.encrypt(std::slice::from_ref(&to_bob), b"x").expect("e");
    m.payload = Some(vec![0; MAX_PAYLOAD_BYTES + 1]);
    let e = err(b.decrypt(ALICE, &m));
    assert_eq!(
        e.to_string(),
        "a payload of 1048577 bytes exceeds the bound"
    );
    assert_eq!(
        (e.requirement(), e.reason()),
        ("E2EE-13", "payload-too-large")
    );
    let mut m = a.encrypt(std::slice::from_ref(&to_bob), b"x").expect("e");
    let key = m.keys[0].clone();
    m.keys = (0..=MAX_KEYS as u32)
        .map(|rid| KeyElement { rid, ..key.clone() })
        .collect();
    let e = err(b.decrypt(ALICE, &m));
    assert_eq!(
        e.to_string(),
        "malformed envelope: E2EE-13: 1001 <key/> elements exceed the bound of 1000"
    );
    assert_eq!(e.reason(), "malformed-envelope");

    // After all that the session still works (E2EE-21).
    let m = a.encrypt(&[to_bob], b"still here").expect("e");
    assert_eq!(
        b.decrypt(ALICE, &m).expect("ok").text.as_deref(),
        Some("still here")
    );
}

#[test]
fn hostile_signal_messages() {
    let (mut a, mut b) = pair();
    let to_bob = addr(BOB, &b);
    let good = a.encrypt(std::slice::from_ref(&to_bob), b"x").expect("e");
    let mut cases: Vec<(bool, Vec<u8>)> = vec![
        (false, vec![]),
        (true, vec![]),
        (false, vec![0x33]),
        (true, vec![0x33]),
        (false, vec![0x22; 100]),
        (true, vec![0x44; 100]),
        (false, vec![0xff; MAX_KEY_BYTES + 1]),
    ];
    for cut in [1, 10, good.keys[0].data.len() - 1] {
        cases.push((false, good.keys[0].data[..cut].to_vec()));
        cases.push((true, good.keys[0].data[..cut].to_vec()));
    }
    for (prekey, data) in cases {
        let mut m = good.clone();
        m.keys[0] = KeyElement {
            rid: b.device_id(),
            prekey,
            data,
        };
        assert_eq!(err(b.decrypt(ALICE, &m)).reason(), "bad-signal-message");
    }
    assert_eq!(
        b.decrypt(ALICE, &good).expect("ok").text.as_deref(),
        Some("x")
    );
}

#[test]
fn several_recipients() {
    let (mut a, mut b) = pair();
    let mut c = Device::generate(3003, [6; 32], 2);
    let to_carol = Address::new("carol@gatekeeper.example", 3003);
    a.start_session(&to_carol, &handed_out(&c)).expect("s");
    let m = over_the_wire(
        &a.encrypt(&[addr(BOB, &b), to_carol.clone()], b"all")
            .expect("e"),
    );
    assert_eq!(
        m.keys.iter().map(|k| (k.rid, k.prekey)).collect::<Vec<_>>(),
        [(2002, false), (3003, true)]
    );
    assert_eq!(
        b.decrypt(ALICE, &m).expect("b").text.as_deref(),
        Some("all")
    );
    assert_eq!(
        c.decrypt(ALICE, &m).expect("c").text.as_deref(),
        Some("all")
    );
}

#[test]
fn encrypt_errors() {
    let (mut a, b) = (alice(), bob());
    let to_bob = addr(BOB, &b);
    let msg = |r: Result<Envelope, E2eeError>| r.expect_err("refused").to_string();
    assert_eq!(
        msg(a.encrypt(std::slice::from_ref(&to_bob), b"x")),
        "E2EE-9: no session with bob@gatekeeper.example/2002: fetch its bundle and start one first"
    );
    assert_eq!(
        msg(a.encrypt(&[], b"x")),
        "E2EE-13: an envelope needs at least one recipient device"
    );
    a.start_session(&to_bob, &handed_out(&b)).expect("s");
    assert_eq!(
        msg(a.encrypt(&[to_bob.clone(), to_bob.clone()], b"x")),
        "E2EE-14: device 2002 is listed twice among the recipients"
    );
    assert_eq!(
        msg(a.encrypt(&[to_bob], &vec![0; MAX_PAYLOAD_BYTES + 1])),
        "E2EE-13: a plaintext of 1048577 bytes exceeds the 1048576-byte payload bound"
    );
}

#[test]
fn start_session_refuses_bad_bundles() {
    let (mut a, b) = (alice(), bob());
    let to_bob = addr(BOB, &b);
    let mut bundle = handed_out(&b);
    bundle.signature[5] ^= 0x40;
    assert_eq!(
        a.start_session(&to_bob, &bundle).map_err(|e| e.to_string()),
        Err("E2EE-10: refusing the bundle of bob@gatekeeper.example/2002: the signature of signed prekey 1 does not verify with the identity key (E2EE-4)".into())
    );
    assert!(!a.has_session(&to_bob));
    let mut bundle = handed_out(&b);
    bundle.identity_key[0] = 0x06;
    assert_eq!(
        a.start_session(&to_bob, &bundle).map_err(|e| e.to_string()),
        Err("E2EE-10: refusing the bundle of bob@gatekeeper.example/2002: <identityKey/> has type byte 0x06, not 0x05 (Curve25519) (E2EE-3)".into())
    );
    assert_eq!(
        a.start_session(&to_bob, &b.bundle()).map_err(|e| e.to_string()),
        Err("E2EE-29: the bundle of bob@gatekeeper.example/2002 carries 5 one-time prekeys; one handed out carries at most one".into())
    );
    assert_eq!(a.known_identity(&to_bob), None);
}

#[test]
fn deterministic_reruns_and_clones() {
    let run = || {
        let (mut a, mut b) = pair();
        let m = a.encrypt(&[addr(BOB, &b)], b"same bytes").expect("e");
        let r = b.encrypt(&[addr(ALICE, &a)], b"back").expect("r");
        (m.to_element().to_xml(), r.to_element().to_xml())
    };
    assert_eq!(run(), run());
    let (mut a, b) = pair();
    let mut snapshot = a.clone();
    let to_bob = addr(BOB, &b);
    assert_eq!(
        a.encrypt(std::slice::from_ref(&to_bob), b"x").expect("e"),
        snapshot.encrypt(&[to_bob], b"x").expect("e")
    );
    assert!(format!("{a:?}").starts_with("Device { device_id: 1001"));
}

#[test]
fn replenish_uses_fresh_ids() {
    let mut b = bob();
    assert_eq!(b.prekey_ids(), vec![1, 2, 3, 4, 5]);
    let mut a = alice();
    a.start_session(&addr(BOB, &b), &handed_out(&b)).expect("s");
    b.decrypt(ALICE, &a.encrypt(&[addr(BOB, &b)], b"x").expect("e"))
        .expect("d");
    assert_eq!(b.replenish(3), vec![6, 7, 8]);
    assert_eq!(b.prekey_ids(), vec![2, 3, 4, 5, 6, 7, 8]);
    let before = b.bundle();
    assert_eq!(before.verify(), Ok(()));
}
