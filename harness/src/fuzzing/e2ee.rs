//! The E2EE layer (`crate::e2ee`) on hostile elements, and its decryption behind them.
//!
//! Two kinds of input, told apart by the first byte:
//!
//! - XML (the first byte is `<`): parsed with the codec, then given to
//!   [`Envelope::from_element`], [`Bundle::from_element`] and [`DeviceList::from_element`]. An
//!   element one of them accepts must write back to an element that parses to the same value;
//!   a bundle that verifies sets a session up; an envelope is decrypted by Bob, a fixed device
//!   holding a session with Alice's device 1001 (and knowing nothing of her device 1003), so
//!   the seeds (real envelopes of these fixed devices, [`e2ee_seeds`]) reach the Signal and
//!   AES-GCM code behind the parser. A decryption that succeeds must give one of the texts the
//!   seeds were made from ([`SEED_TEXTS`]), from the identity of one of Alice's devices:
//!   whatever the fuzzer changes, nothing Alice did not send may come out.
//! - Anything else: the target holds Alice's keys and seals the input itself (the first byte
//!   picks how: see [`e2ee_envelope`]), so no check has to be switched off to reach the code
//!   behind the MACs. The envelope goes through the writer and the parser and must come back
//!   unchanged; Bob must decrypt it to exactly the bytes sealed (or refuse them as
//!   [`DecryptError::NotUtf8`] when they are not UTF-8), once: a second delivery is refused.

use std::sync::OnceLock;

use crate::e2ee::{
    Address, Bundle, DecryptError, Decrypted, Device, DeviceList, Envelope, LEGACY_IV_LEN,
};
use crate::wire::{Element, Limits, parse_fragment};

/// The account of the sending devices.
const ALICE: &str = "alice@gatekeeper.example";
/// The account of the receiving device.
const BOB: &str = "bob@gatekeeper.example";
const ALICE_DEVICE: u32 = 1001;
/// Alice's second device: it has a session with Bob but has sent nothing, so its first
/// envelope is a PreKeySignalMessage consuming one of Bob's one-time prekeys.
const ALICE_SECOND_DEVICE: u32 = 1003;
const BOB_DEVICE: u32 = 2002;

/// The texts of the seed envelopes: the only texts a decryption of an XML input may give.
pub const SEED_TEXTS: &[&str] = &[
    "hello Bob",
    "second",
    "third, out of order",
    "legacy IV",
    "",
    "from the second device",
    "héllo ✓ 🙂",
];

/// Bob after a session each way with Alice's device 1001 (her prekey message, his reply),
/// Alice's two devices, and the identities a decryption may report.
struct Fixture {
    bob: Device,
    alice: Device,
    alice_second: Device,
    identities: [Vec<u8>; 2],
}

fn bob_address() -> Address {
    Address::new(BOB, BOB_DEVICE)
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let mut bob = Device::generate(BOB_DEVICE, [0xB0; 32], 4);
        let mut alice = Device::generate(ALICE_DEVICE, [0xA1; 32], 2);
        let mut alice_second = Device::generate(ALICE_SECOND_DEVICE, [0xA3; 32], 2);
        let to_bob = bob_address();
        let to_alice = Address::new(ALICE, ALICE_DEVICE);
        let bundle = bob.bundle();
        alice
            .start_session(&to_bob, &bundle.with_prekeys(&[1]))
            .expect("a session from a fixed bundle");
        alice_second
            .start_session(&to_bob, &bundle.with_prekeys(&[2]))
            .expect("a session from a fixed bundle");
        let first = alice
            .encrypt(std::slice::from_ref(&to_bob), b"set-up")
            .expect("the set-up message");
        bob.decrypt(ALICE, &first).expect("Bob takes the set-up");
        let reply = bob
            .encrypt(std::slice::from_ref(&to_alice), b"reply")
            .expect("Bob's reply");
        alice.decrypt(BOB, &reply).expect("Alice takes the reply");
        let identities = [alice.identity_key(), alice_second.identity_key()];
        Fixture {
            bob,
            alice,
            alice_second,
            identities,
        }
    })
}

/// The target `e2ee_envelope`. XML input (first byte `<`) is parsed and decrypted as the
/// module documentation says. Otherwise the first byte picks the sender and form (`% 4`: 0
/// Alice's device 1001, 1 the same with a 16-byte legacy IV, 2 a key transport element without
/// payload, 3 Alice's device 1003, a prekey message) and the rest is the plaintext.
pub fn e2ee_envelope(data: &[u8]) {
    match data.split_first() {
        None => {}
        Some((b'<', _)) => hostile_element(data),
        Some((&form, plaintext)) => sealed(form, plaintext),
    }
}

/// True when the input is XML whose envelope Bob decrypts (for tests/fuzz_corpus.rs: the
/// seeds named `seed-valid-envelope-*` must, or the target no longer reaches past the MACs).
pub fn e2ee_envelope_decrypts(data: &[u8]) -> bool {
    let Ok(el) = parse_fragment(data, &Limits::harness_ceilings()) else {
        return false;
    };
    let Ok(envelope) = Envelope::from_element(&el) else {
        return false;
    };
    fixture().bob.clone().decrypt(ALICE, &envelope).is_ok()
}

fn reparse(el: &Element) -> Element {
    let xml = el.to_xml();
    match parse_fragment(xml.as_bytes(), &Limits::harness_ceilings()) {
        Ok(el) => el,
        Err(e) => panic!("an element the layer wrote does not parse ({e}): {xml}"),
    }
}

fn hostile_element(data: &[u8]) {
    let Ok(el) = parse_fragment(data, &Limits::harness_ceilings()) else {
        return;
    };
    if let Ok(list) = DeviceList::from_element(&el) {
        assert_eq!(
            DeviceList::from_element(&reparse(&list.to_element())),
            Ok(list),
            "a device list does not survive writing and parsing"
        );
    }
    if let Ok(bundle) = Bundle::from_element(&el) {
        assert_eq!(
            Bundle::from_element(&reparse(&bundle.to_element())).as_ref(),
            Ok(&bundle),
            "a bundle does not survive writing and parsing"
        );
        if bundle.verify().is_ok() && bundle.prekeys.len() <= 1 {
            let mut alice = fixture().alice.clone();
            let result = alice.start_session(&Address::new(BOB, 77), &bundle);
            assert!(
                result.is_ok(),
                "a bundle that verifies, with at most one prekey, sets no session up: {result:?}"
            );
        }
    }
    if let Ok(envelope) = Envelope::from_element(&el) {
        assert_eq!(
            Envelope::from_element(&reparse(&envelope.to_element())).as_ref(),
            Ok(&envelope),
            "an envelope does not survive writing and parsing"
        );
        let fixture = fixture();
        let mut bob = fixture.bob.clone();
        if let Ok(got) = bob.decrypt(ALICE, &envelope) {
            check_sent(fixture, &got);
            // The same envelope again is a replay.
            let again = bob.decrypt(ALICE, &envelope);
            assert!(again.is_err(), "an envelope decrypted twice: {again:?}");
        }
    }
}

/// A decryption of fuzzed XML gave something: it must be what Alice sent.
fn check_sent(fixture: &Fixture, got: &Decrypted) {
    if let Some(text) = &got.text {
        assert!(
            SEED_TEXTS.contains(&text.as_str()),
            "decrypted a text no seed carries: {text:?}"
        );
    }
    assert!(
        fixture.identities.contains(&got.identity),
        "decrypted under an identity that is not one of Alice's devices"
    );
}

fn sealed(form: u8, plaintext: &[u8]) {
    let fixture = fixture();
    let to_bob = bob_address();
    let recipients = std::slice::from_ref(&to_bob);
    let form = form % 4;
    let (envelope, payload) = match form {
        0 => (fixture.alice.clone().encrypt(recipients, plaintext), true),
        1 => (
            fixture.alice.clone().encrypt_with(
                recipients,
                plaintext,
                [0x4B; 16],
                vec![0x1F; LEGACY_IV_LEN],
            ),
            true,
        ),
        2 => (fixture.alice.clone().key_transport(recipients), false),
        _ => (
            fixture.alice_second.clone().encrypt(recipients, plaintext),
            true,
        ),
    };
    let envelope = match envelope {
        Ok(envelope) => envelope,
        Err(e) => panic!("Alice cannot seal {} bytes for Bob: {e}", plaintext.len()),
    };
    let parsed = Envelope::from_element(&reparse(&envelope.to_element()));
    assert_eq!(
        parsed.as_ref(),
        Ok(&envelope),
        "a sealed envelope does not survive writing and parsing"
    );
    let mut bob = fixture.bob.clone();
    let got = bob.decrypt(ALICE, &envelope);
    match (payload, std::str::from_utf8(plaintext), &got) {
        (false, _, Ok(got)) => assert_eq!(got.text, None, "a key transport element has text"),
        (true, Ok(text), Ok(got)) => assert_eq!(
            got.text.as_deref(),
            Some(text),
            "Bob decrypted other text than Alice sealed"
        ),
        (true, Err(_), Err(DecryptError::NotUtf8)) => {}
        _ => panic!(
            "Bob's decryption of what Alice sealed (form {form}, {} bytes): {got:?}",
            plaintext.len()
        ),
    }
    if let Ok(got) = &got {
        assert_eq!(
            got.prekey_message,
            form == 3,
            "only the second device's first envelope is a prekey message"
        );
        assert_eq!(got.identity, fixture.identities[usize::from(form == 3)]);
    }
    let again = bob.decrypt(ALICE, &envelope);
    assert!(
        again.is_err(),
        "an envelope decrypted twice (form {form}): {again:?}"
    );
}

/// The seeds of `e2ee_envelope`, made by the layer itself from the fixed devices: valid
/// envelopes (`valid-envelope-*`, which Bob decrypts), broken ones, bundles, device lists, and
/// inputs for the sealing form. Names are stable; the same code gives the same bytes.
pub fn e2ee_seeds() -> Vec<(String, Vec<u8>)> {
    let fixture = fixture();
    let to_bob = bob_address();
    let recipients = std::slice::from_ref(&to_bob);
    let mut seeds: Vec<(String, Vec<u8>)> = Vec::new();
    let mut add = |name: &str, el: &Element| seeds.push((name.to_owned(), el.to_xml().into()));

    let mut alice = fixture.alice.clone();
    let mut texts = SEED_TEXTS.iter().map(|t| t.as_bytes());
    let mut next = || texts.next().unwrap_or_default();
    let first = alice.encrypt(recipients, next()).expect("seal");
    let second = alice.encrypt(recipients, next()).expect("seal");
    let third = alice.encrypt(recipients, next()).expect("seal");
    let legacy = alice
        .encrypt_with(recipients, next(), [7; 16], vec![9; LEGACY_IV_LEN])
        .expect("seal");
    let empty = alice.encrypt(recipients, next()).expect("seal");
    let transport = alice.key_transport(recipients).expect("seal");
    let prekey = fixture
        .alice_second
        .clone()
        .encrypt(recipients, next())
        .expect("seal");
    let unicode = alice.encrypt(recipients, next()).expect("seal");
    for (name, envelope) in [
        ("valid-envelope-first", &first),
        ("valid-envelope-second", &second),
        ("valid-envelope-third", &third),
        ("valid-envelope-legacy-iv", &legacy),
        ("valid-envelope-empty-text", &empty),
        ("valid-envelope-key-transport", &transport),
        ("valid-envelope-prekey", &prekey),
        ("valid-envelope-unicode", &unicode),
    ] {
        add(name, &envelope.to_element());
    }

    // Broken envelopes: each one field of a valid one changed.
    let broken = |change: &dyn Fn(&mut Envelope)| {
        let mut e = first.clone();
        change(&mut e);
        e.to_element()
    };
    add(
        "broken-envelope-prekey-flag",
        &broken(&|e| e.keys[0].prekey = true),
    );
    add("broken-envelope-prekey-flag-cleared", &{
        let mut e = prekey.clone();
        e.keys[0].prekey = false;
        e.to_element()
    });
    add("broken-envelope-sid", &broken(&|e| e.sid = 1002));
    add("broken-envelope-rid", &broken(&|e| e.keys[0].rid = 2003));
    add(
        "broken-envelope-key-cut",
        &broken(&|e| {
            let half = e.keys[0].data.len() / 2;
            e.keys[0].data.truncate(half)
        }),
    );
    add(
        "broken-envelope-key-bit",
        &broken(&|e| {
            if let Some(b) = e.keys[0].data.last_mut() {
                *b ^= 1
            }
        }),
    );
    add(
        "broken-envelope-payload-bit",
        &broken(&|e| {
            if let Some(b) = e.payload.as_mut().and_then(|p| p.first_mut()) {
                *b ^= 0x80
            }
        }),
    );
    add("broken-envelope-iv", &broken(&|e| e.iv[0] ^= 1));
    add(
        "broken-envelope-other-payload",
        &broken(&|e| e.payload = second.payload.clone()),
    );
    // A key for another device of Bob's beside his own: still his envelope.
    add(
        "valid-envelope-extra-key",
        &broken(&|e| {
            let mut other = e.keys[0].clone();
            other.rid = 5;
            e.keys.insert(0, other)
        }),
    );
    let text = first.to_element().to_xml();
    seeds.push((
        "broken-envelope-no-iv".into(),
        text.replace("<iv>", "<ivx>")
            .replace("</iv>", "</ivx>")
            .into(),
    ));

    // Bundles: Bob's whole pool (more prekeys than a handed-out bundle carries), one handed
    // out, one with a bad signature, and a device list or two.
    let mut add = |name: &str, el: &Element| seeds.push((name.to_owned(), el.to_xml().into()));
    let bundle = fixture.bob.bundle();
    add("valid-bundle-pool", &bundle.to_element());
    add(
        "valid-bundle-handed-out",
        &bundle.with_prekeys(&[3]).to_element(),
    );
    add(
        "valid-bundle-no-prekey",
        &bundle.with_prekeys(&[]).to_element(),
    );
    let mut forged = bundle.with_prekeys(&[3]);
    forged.signature[10] ^= 4;
    add("broken-bundle-signature", &forged.to_element());
    add(
        "valid-devicelist",
        &DeviceList {
            devices: vec![ALICE_DEVICE, ALICE_SECOND_DEVICE],
        }
        .to_element(),
    );
    seeds.push((
        "broken-devicelist-repeated".into(),
        b"<list xmlns='eu.siacs.conversations.axolotl'><device id='7'/><device id='7'/></list>"
            .to_vec(),
    ));

    // The sealing form: each sender and form, and plaintext that is not UTF-8.
    for (form, name, plaintext) in [
        (0u8, "sealed-alice", &b"sealed by the target"[..]),
        (1, "sealed-legacy-iv", b"legacy"),
        (2, "sealed-key-transport", b""),
        (3, "sealed-second-device", b"first from 1003"),
        (0, "sealed-not-utf8", b"\xff\xfe not text"),
    ] {
        let mut input = vec![form];
        input.extend_from_slice(plaintext);
        seeds.push((name.to_owned(), input));
    }
    seeds
}
