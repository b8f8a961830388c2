//! Hostile input never panics: arbitrary bytes through the codec into every `from_element`,
//! generated near-valid envelopes, and arbitrary `<key/>` data into `Device::decrypt`.

use proptest::prelude::*;

use super::*;
use crate::wire::{Limits, parse_fragment};

fn parse_all_kinds(bytes: &[u8]) {
    if let Ok(el) = parse_fragment(bytes, &Limits::harness_ceilings()) {
        let _ = Envelope::from_element(&el);
        let _ = Bundle::from_element(&el);
        let _ = DeviceList::from_element(&el);
    }
}

/// Pieces an OMEMO element is made of, good and bad, for the generator to combine.
fn piece() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("<key rid='7'>Mw==</key>".to_owned()),
        Just("<key rid='7' prekey='true'>MwQF</key>".to_owned()),
        Just("<key rid='x' prekey='maybe'>Mw</key>".to_owned()),
        Just("<iv>AAECAwQFBgcICQoL</iv>".to_owned()),
        Just("<iv>AAECAwQFBgcICQoLDA0ODw==</iv>".to_owned()),
        Just("<iv>A</iv>".to_owned()),
        Just("<payload>AAAA</payload>".to_owned()),
        Just("<payload/>".to_owned()),
        Just("<device id='5'/>".to_owned()),
        Just("<preKeyPublic preKeyId='1'>BQ==</preKeyPublic>".to_owned()),
        Just("<identityKey/>".to_owned()),
        "[A-Za-z0-9+/= \n]{0,12}",
        (1u32..5000).prop_map(|n| format!("<key rid='{n}'>Mw==</key>")),
    ]
}

fn omemo_xml() -> impl Strategy<Value = String> {
    (
        prop_oneof![
            Just("encrypted"),
            Just("bundle"),
            Just("list"),
            Just("header")
        ],
        proptest::collection::vec(piece(), 0..6),
        proptest::collection::vec(piece(), 0..6),
        any::<bool>(),
    )
        .prop_map(|(root, head, tail, with_header)| {
            let header = if with_header {
                format!("<header sid='3'>{}</header>", head.concat())
            } else {
                head.concat()
            };
            format!(
                "<{root} xmlns='eu.siacs.conversations.axolotl'>{header}{}</{root}>",
                tail.concat()
            )
        })
}

fn envelope() -> impl Strategy<Value = Envelope> {
    (
        1u32..=MAX_DEVICE_ID,
        proptest::collection::btree_map(
            1u32..=MAX_DEVICE_ID,
            (any::<bool>(), proptest::collection::vec(any::<u8>(), 1..64)),
            1..5,
        ),
        prop_oneof![Just(IV_LEN), Just(LEGACY_IV_LEN)],
        proptest::option::of(proptest::collection::vec(any::<u8>(), 0..64)),
    )
        .prop_map(|(sid, keys, iv_len, payload)| Envelope {
            sid,
            keys: keys
                .into_iter()
                .map(|(rid, (prekey, data))| KeyElement { rid, prekey, data })
                .collect(),
            iv: vec![9; iv_len],
            payload,
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        parse_all_kinds(&bytes);
    }

    #[test]
    fn near_valid_elements_never_panic(xml in omemo_xml()) {
        parse_all_kinds(xml.as_bytes());
    }

    #[test]
    fn envelopes_round_trip(e in envelope()) {
        let xml = e.to_element().to_xml();
        let el = parse_fragment(xml.as_bytes(), &Limits::harness_ceilings()).expect("parses");
        prop_assert_eq!(Envelope::from_element(&el), Ok(e));
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Arbitrary `<key/>` data for the receiving device, with and without a session.
    #[test]
    fn arbitrary_signal_messages_are_typed_errors(
        data in proptest::collection::vec(any::<u8>(), 0..300),
        prekey in any::<bool>(),
        with_session in any::<bool>(),
    ) {
        let mut bob = Device::generate(2, [2; 32], 2);
        if with_session {
            let mut alice = Device::generate(1, [1; 32], 0);
            let to_bob = Address::new("bob@x", 2);
            alice.start_session(&to_bob, &bob.bundle().with_prekeys(&[1])).expect("session");
            let m = alice.encrypt(std::slice::from_ref(&to_bob), b"x").expect("e");
            bob.decrypt("alice@x", &m).expect("d");
        }
        let e = Envelope {
            sid: 1,
            keys: vec![KeyElement { rid: 2, prekey, data }],
            iv: vec![0; IV_LEN],
            payload: Some(vec![1, 2, 3]),
        };
        let err = bob.decrypt("alice@x", &e).expect_err("random data cannot decrypt");
        prop_assert!(!err.reason().is_empty());
    }
}

/// A valid prekey message and a valid SignalMessage for Bob, with the Devices to try them on.
fn valid_messages() -> (Device, KeyElement, KeyElement) {
    let mut alice = Device::generate(1, [1; 32], 0);
    let mut bob = Device::generate(2, [2; 32], 2);
    let to_bob = Address::new("bob@x", 2);
    let to_alice = Address::new("alice@x", 1);
    alice
        .start_session(&to_bob, &bob.bundle().with_prekeys(&[1]))
        .expect("session");
    let first = alice
        .signal_encrypt(&to_bob, &[0; 32])
        .expect("prekey message");
    let mut replier = bob.clone();
    replier.signal_decrypt(&to_alice, &first).expect("d");
    let reply = replier.signal_encrypt(&to_alice, &[0; 32]).expect("reply");
    alice.signal_decrypt(&to_bob, &reply).expect("d");
    let whisper = alice.signal_encrypt(&to_bob, &[0; 32]).expect("whisper");
    // Bob holds the session from the prekey message, ready for the SignalMessage.
    bob.signal_decrypt(&to_alice, &first).expect("d");
    (bob, first, whisper)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    /// Valid Signal messages with bytes flipped, cut or appended: a typed error (or, for
    /// changes the format ignores, a success), never a panic; the session survives.
    #[test]
    fn mutated_signal_messages_are_typed_errors(
        whisper in any::<bool>(),
        flips in proptest::collection::vec((any::<prop::sample::Index>(), 1u8..=255), 0..4),
        cut in proptest::option::of(any::<prop::sample::Index>()),
        tail in proptest::collection::vec(any::<u8>(), 0..8),
    ) {
        let (mut bob, first, second) = valid_messages();
        let mut key = if whisper { second.clone() } else { first.clone() };
        for (at, x) in flips {
            let i = at.index(key.data.len());
            key.data[i] ^= x;
        }
        if let Some(at) = cut {
            key.data.truncate(at.index(key.data.len()));
        }
        key.data.extend_from_slice(&tail);
        let mutated = bob.signal_decrypt(&Address::new("alice@x", 1), &key);
        if whisper {
            // A refused message leaves the session as it was: the real one still decrypts
            // (E2EE-21); one accepted (a change the format ignores) spends its counter.
            let real = bob.signal_decrypt(&Address::new("alice@x", 1), &second);
            match mutated {
                Err(_) => prop_assert!(real.is_ok(), "{:?}", real),
                Ok(_) => prop_assert_eq!(real.map(|_| ()).map_err(|e| e.reason()), Err("duplicate")),
            }
        }
    }
}
