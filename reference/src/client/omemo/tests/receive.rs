//! Receiving: decryption, what is surfaced and what is not, receipts, identity changes.

use gatecheck::e2ee::Address;
use gatecheck::wire::ns;
use serde_json::json;

use super::*;

fn alice() -> Address {
    Address::new(ALICE_BARE, ALICE_ID)
}

/// A world in which Bob's device 2001 has a session with Alice and has encrypted `text`.
fn bob_writes(mutant: Mutant, text: &str) -> (World, Device, Envelope) {
    let mut world = World::new(mutant);
    let mut bob = device(2001, 2);
    world.session_with_alice(&mut bob);
    let envelope = bob
        .encrypt(&[alice()], text.as_bytes())
        .expect("bob encrypts");
    world.take();
    (world, bob, envelope)
}

fn receipts(world: &World) -> Vec<(String, String)> {
    world
        .stanzas
        .iter()
        .filter_map(|s| {
            let received = s.child("received", ns::RECEIPTS)?;
            Some((s.attr("to")?.to_owned(), received.attr("id")?.to_owned()))
        })
        .collect()
}

#[test]
fn surfaces_decrypted_text_then_sends_one_receipt() {
    let (mut world, _, envelope) = bob_writes(Mutant::None, "hello Alice ");
    let message = encrypted_message(BOB_FULL, "m1", &envelope);
    world.receive(&message);
    assert_eq!(
        world.events,
        [
            json!({"event":"message_received","from":BOB_FULL,"id":"m1","device_id":2001,"text":"hello Alice "})
        ]
    );
    assert_eq!(
        world.order,
        ["message_received", "message"],
        "STANZA-13: after surfacing"
    );
    assert_eq!(receipts(&world), [(BOB_FULL.to_owned(), "m1".to_owned())]);
    let receipt = &world.stanzas[0];
    assert!(receipt.child("body", ns::JABBER_CLIENT).is_none());
    assert!(receipt.child("encrypted", NS).is_none());

    // E2EE-22: the same message again is neither surfaced nor acknowledged.
    world.take();
    world.receive(&message);
    assert_eq!(world.events.len(), 1);
    assert_eq!(world.events[0]["event"], "decrypt_failed");
    assert_eq!(world.events[0]["reason"], "duplicate");
    assert!(world.stanzas.is_empty(), "STANZA-14");
}

#[test]
fn the_replay_mutant_surfaces_twice() {
    let (mut world, _, envelope) = bob_writes(Mutant::AcceptReplays, "again");
    let message = encrypted_message(BOB_FULL, "m1", &envelope);
    world.receive(&message);
    world.receive(&message);
    assert_eq!(world.events_named("message_received").len(), 2);
}

#[test]
fn the_no_receipts_mutant_sends_none() {
    let (mut world, _, envelope) = bob_writes(Mutant::NoReceipts, "quiet");
    world.receive(&encrypted_message(BOB_FULL, "m1", &envelope));
    assert_eq!(world.events_named("message_received").len(), 1);
    assert!(receipts(&world).is_empty());
}

#[test]
fn no_receipt_unless_requested_and_identified() {
    let (mut world, mut bob, envelope) = bob_writes(Mutant::None, "one");
    let mut message = encrypted_message(BOB_FULL, "m1", &envelope);
    message
        .children
        .retain(|n| !matches!(n, gatecheck::wire::Node::Element(e) if e.name == "request"));
    world.receive(&message);
    let second = bob.encrypt(&[alice()], b"two").expect("enc");
    let mut message = encrypted_message(BOB_FULL, "m2", &second);
    message.attrs.retain(|(k, _)| k != "id");
    world.receive(&message);
    assert_eq!(world.events_named("message_received").len(), 2);
    assert_eq!(world.events[1]["id"], serde_json::Value::Null);
    assert!(receipts(&world).is_empty());
}

#[test]
fn a_bad_tag_is_not_surfaced_unless_the_mutant() {
    for (mutant, surfaced) in [(Mutant::None, false), (Mutant::IgnoreGcmTag, true)] {
        let (mut world, _, mut envelope) = bob_writes(mutant, "tampered");
        if let Some(payload) = envelope.payload.as_mut() {
            payload[0] ^= 1;
        }
        world.receive(&encrypted_message(BOB_FULL, "m1", &envelope));
        let received = world.events_named("message_received");
        assert_eq!(!received.is_empty(), surfaced, "{mutant:?}");
        if surfaced {
            // Only the flipped bit differs: the text came without authentication.
            assert_eq!(received[0]["text"], "uampered");
        } else {
            assert_eq!(world.events[0]["reason"], "bad-tag");
            assert!(receipts(&world).is_empty());
        }
    }
}

#[test]
fn failures_are_reported_and_later_messages_still_decrypt() {
    let (mut world, mut bob, good) = bob_writes(Mutant::None, "first");
    // No key for Alice's device.
    let mut no_key = good.clone();
    no_key.keys[0].rid = 5;
    world.receive(&encrypted_message(BOB_FULL, "x1", &no_key));
    // Garbage in the Signal message.
    let mut garbage = good.clone();
    garbage.keys[0].data = vec![0x33; 40];
    world.receive(&encrypted_message(BOB_FULL, "x2", &garbage));
    // A device Alice has no session with sends a SignalMessage.
    let mut stranger = device(2009, 9);
    world.session_with_alice(&mut stranger);
    stranger.encrypt(&[alice()], b"warm-up").expect("enc");
    let mut unknown = stranger.encrypt(&[alice()], b"x").expect("enc");
    unknown.keys[0].prekey = false;
    world.receive(&encrypted_message("carol@gk.test/x", "x3", &unknown));
    let reasons: Vec<&str> = world
        .events
        .iter()
        .map(|e| e["reason"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(reasons, ["no-key", "bad-message", "bad-message"]);
    assert!(world.stanzas.is_empty(), "STANZA-14");
    // E2EE-21: the stream and the session still work.
    world.take();
    world.receive(&encrypted_message(BOB_FULL, "m1", &good));
    let later = bob.encrypt(&[alice()], b"second").expect("enc");
    world.receive(&encrypted_message(BOB_FULL, "m2", &later));
    let texts: Vec<&str> = world
        .events_named("message_received")
        .iter()
        .map(|e| e["text"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(texts, ["first", "second"]);
}

#[test]
fn the_receipt_mutant_acknowledges_an_undecryptable_message() {
    let (mut world, _, mut envelope) = bob_writes(Mutant::ReceiptForUndecryptable, "x");
    envelope.keys[0].rid = 5;
    world.receive(&encrypted_message(BOB_FULL, "m1", &envelope));
    assert_eq!(receipts(&world), [(BOB_FULL.to_owned(), "m1".to_owned())]);
}

#[test]
fn plaintext_is_never_surfaced() {
    let plain = Element::new("message", ns::JABBER_CLIENT)
        .with_attr("type", "chat")
        .with_attr("from", BOB_FULL)
        .with_attr("id", "p1")
        .with_child(Element::new("body", ns::JABBER_CLIENT).with_text("not encrypted"))
        .with_child(Element::new("request", ns::RECEIPTS));
    let mut world = World::new(Mutant::None);
    world.take();
    world.receive(&plain);
    assert_eq!(
        world.events,
        [json!({"event":"decrypt_failed","from":BOB_FULL,"id":"p1","reason":"unencrypted"})]
    );
    assert!(world.stanzas.is_empty(), "STANZA-14");

    let mut world = World::new(Mutant::SurfacePlaintext);
    world.receive(&plain);
    assert_eq!(
        world.events_named("message_received")[0]["text"],
        "not encrypted"
    );
    let mut world = World::new(Mutant::ReceiptWithoutDelivery);
    world.take();
    world.receive(&plain);
    assert_eq!(receipts(&world), [(BOB_FULL.to_owned(), "p1".to_owned())]);
}

#[test]
fn a_body_beside_a_valid_envelope_is_ignored() {
    let (mut world, _, envelope) = bob_writes(Mutant::None, "the real text");
    let message = encrypted_message(BOB_FULL, "m1", &envelope)
        .with_child(Element::new("body", ns::JABBER_CLIENT).with_text("decoy"));
    world.receive(&message);
    assert_eq!(
        world.events_named("message_received")[0]["text"],
        "the real text"
    );
    assert_eq!(world.events.len(), 1, "E2EE-31");
}

#[test]
fn a_key_transport_element_is_not_surfaced() {
    let mut world = World::new(Mutant::None);
    let mut bob = device(2001, 2);
    world.session_with_alice(&mut bob);
    let transport = bob.key_transport(&[alice()]).expect("kt");
    world.take();
    world.receive(&encrypted_message(BOB_FULL, "k1", &transport));
    assert!(world.events.is_empty(), "E2EE-26");
    assert!(world.stanzas.is_empty());
}

#[test]
fn a_changed_identity_is_announced_before_its_content() {
    for mutant in [Mutant::None, Mutant::SilentIdentityChange] {
        let (mut world, _, envelope) = bob_writes(mutant, "before");
        world.receive(&encrypted_message(BOB_FULL, "m1", &envelope));
        // Bob's device 2001 comes back with a new identity (reinstalled) and writes again.
        world.publish_bundle(ALICE_BARE, ALICE_ID, world.alice.device.bundle());
        let mut reborn = device(2001, 42);
        world.session_with_alice(&mut reborn);
        let envelope = reborn.encrypt(&[alice()], b"after").expect("enc");
        world.take();
        world.receive(&encrypted_message(BOB_FULL, "m2", &envelope));
        let names: Vec<&str> = world.order.iter().map(String::as_str).collect();
        if mutant == Mutant::None {
            assert_eq!(names, ["identity_changed", "message_received", "message"]);
            assert_eq!(
                world.events[0],
                json!({"event":"identity_changed","peer":BOB,"device_id":2001})
            );
        } else {
            assert_eq!(names, ["message_received", "message"]);
        }
    }
}

#[test]
fn a_changed_identity_in_a_fetched_bundle_is_announced_before_the_message() {
    let mut world = World::new(Mutant::None);
    world.publish(BOB, &device(2001, 2));
    world.send_text(1, BOB, "one");
    // The device is reinstalled: new keys under the same id; Alice's session is dropped as
    // a client does when the peer's messages stop decrypting.
    world.publish_bundle(BOB, 2001, device(2001, 43).bundle());
    world.alice.device.forget_session(&Address::new(BOB, 2001));
    world.take();
    world.send_text(2, BOB, "two");
    let names: Vec<&str> = world.order.iter().map(String::as_str).collect();
    assert_eq!(
        names,
        ["iq", "iq", "iq", "identity_changed", "message", "sent"],
        "E2EE-12"
    );
}

#[test]
fn a_consumed_prekey_is_not_used_twice_unless_the_mutant() {
    for (mutant, surfaced) in [(Mutant::None, 1), (Mutant::KeepConsumedPrekey, 2)] {
        let mut world = World::new(mutant);
        // Two devices set up sessions from the same handed-out prekey, with different base
        // keys (E2EE-8).
        let bundle = world.alice_bundle().with_prekeys(&[1]);
        let mut first = device(2001, 2);
        let mut second = device(2002, 3);
        for d in [&mut first, &mut second] {
            d.start_session(&alice(), &bundle).expect("session");
        }
        let one = first.encrypt(&[alice()], b"first").expect("enc");
        let two = second.encrypt(&[alice()], b"second").expect("enc");
        world.take();
        world.receive(&encrypted_message(BOB_FULL, "m1", &one));
        world.receive(&encrypted_message("bob@gk.test/tablet", "m2", &two));
        assert_eq!(
            world.events_named("message_received").len(),
            surfaced,
            "{mutant:?}"
        );
        if surfaced == 1 {
            assert_eq!(world.events[1]["reason"], "bad-prekey");
        }
    }
}

#[test]
fn hostile_envelopes_are_reported_as_malformed() {
    let mut world = World::new(Mutant::None);
    world.take();
    let hostile = [
        "<encrypted xmlns='eu.siacs.conversations.axolotl'/>",
        "<encrypted xmlns='eu.siacs.conversations.axolotl'><header sid='x'><iv>AAAA</iv></header></encrypted>",
        "<encrypted xmlns='eu.siacs.conversations.axolotl'><header sid='1001'><key rid='1001'>!!</key><iv>AAAAAAAAAAAAAAAA</iv></header></encrypted>",
        "<encrypted xmlns='eu.siacs.conversations.axolotl'><header sid='99'><key rid='1001' prekey='maybe'>AAAA</key><iv>AAAAAAAAAAAAAAAA</iv></header><payload>AAAA</payload></encrypted>",
    ];
    for xml in hostile {
        let encrypted = gatecheck::wire::parse_fragment(
            xml.as_bytes(),
            &gatecheck::wire::Limits::harness_ceilings(),
        )
        .expect("well-formed");
        let message = Element::new("message", ns::JABBER_CLIENT)
            .with_attr("from", BOB_FULL)
            .with_attr("id", "h")
            .with_child(encrypted)
            .with_child(Element::new("request", ns::RECEIPTS));
        world.receive(&message);
    }
    assert!(
        world.events.iter().all(|e| e["reason"] == "malformed"),
        "{:?}",
        world.events
    );
    assert_eq!(world.events.len(), hostile.len());
    assert!(world.stanzas.is_empty());
    // Two envelopes in one message (E2EE-13).
    let (mut world, _, envelope) = bob_writes(Mutant::None, "x");
    let message = encrypted_message(BOB_FULL, "m", &envelope).with_child(envelope.to_element());
    world.receive(&message);
    assert_eq!(world.events[0]["reason"], "malformed");
}

#[test]
fn an_oversized_text_is_not_surfaced() {
    let big = "x".repeat(super::super::MAX_TEXT_BYTES + 1);
    let (mut world, _, envelope) = bob_writes(Mutant::None, &big);
    world.receive(&encrypted_message(BOB_FULL, "m", &envelope));
    assert!(world.events_named("message_received").is_empty(), "E2EE-25");
    let exact = "y".repeat(super::super::MAX_TEXT_BYTES);
    let (mut world, _, envelope) = bob_writes(Mutant::None, &exact);
    world.receive(&encrypted_message(BOB_FULL, "m", &envelope));
    assert_eq!(world.events_named("message_received").len(), 1);
}

#[test]
fn legacy_ivs_are_accepted_unless_the_mutant() {
    for (mutant, surfaced) in [(Mutant::None, 1), (Mutant::RefuseLegacyIv, 0)] {
        let mut world = World::new(mutant);
        let mut bob = device(2001, 2);
        world.session_with_alice(&mut bob);
        let envelope = bob
            .encrypt_with(&[alice()], b"old sender", [5; 16], vec![6; 16])
            .expect("enc");
        world.receive(&encrypted_message(BOB_FULL, "m1", &envelope));
        assert_eq!(
            world.events_named("message_received").len(),
            surfaced,
            "{mutant:?}: E2EE-17"
        );
    }
}

#[test]
fn late_messages_are_surfaced_once_each_unless_the_mutant() {
    for (mutant, want) in [
        (Mutant::None, vec!["three", "one", "two"]),
        (Mutant::InOrderOnly, vec!["three"]),
    ] {
        let mut world = World::new(mutant);
        let mut bob = device(2001, 2);
        world.session_with_alice(&mut bob);
        let sent: Vec<Envelope> = ["one", "two", "three"]
            .iter()
            .map(|t| bob.encrypt(&[alice()], t.as_bytes()).expect("enc"))
            .collect();
        for i in [2, 0, 1, 0] {
            world.receive(&encrypted_message(BOB_FULL, &format!("m{i}"), &sent[i]));
        }
        let texts: Vec<&str> = world
            .events_named("message_received")
            .iter()
            .map(|e| e["text"].as_str().unwrap_or_default())
            .collect();
        assert_eq!(texts, want, "{mutant:?}: E2EE-23");
    }
}

#[test]
fn a_failure_does_not_stop_later_messages_unless_the_mutant() {
    for (mutant, surfaced) in [(Mutant::None, 1), (Mutant::HaltAfterDecryptFailure, 0)] {
        let (mut world, _, good) = bob_writes(mutant, "fine");
        let mut bad = good.clone();
        bad.keys[0].rid = 5;
        world.receive(&encrypted_message(BOB_FULL, "x", &bad));
        world.receive(&encrypted_message(BOB_FULL, "m", &good));
        assert_eq!(
            world.events_named("message_received").len(),
            surfaced,
            "{mutant:?}: E2EE-21"
        );
    }
}

#[test]
fn receive_side_mutants() {
    // surface-key-transport (E2EE-26)
    let mut world = World::new(Mutant::SurfaceKeyTransport);
    let mut bob = device(2001, 2);
    world.session_with_alice(&mut bob);
    let transport = bob.key_transport(&[alice()]).expect("kt");
    world.receive(&encrypted_message(BOB_FULL, "k", &transport));
    assert_eq!(world.events_named("message_received")[0]["text"], "");
    // trim-text (E2EE-25)
    let (mut world, _, envelope) = bob_writes(Mutant::TrimText, " spaced ");
    world.receive(&encrypted_message(BOB_FULL, "m", &envelope));
    assert_eq!(world.events_named("message_received")[0]["text"], "spaced");
    // refuse-incoming-sessions (E2EE-30)
    let (mut world, _, envelope) = bob_writes(Mutant::RefuseIncomingSessions, "hi");
    world.receive(&encrypted_message(BOB_FULL, "m", &envelope));
    assert_eq!(world.events[0]["reason"], "untrusted");
    // body-over-envelope (E2EE-31)
    let (mut world, _, envelope) = bob_writes(Mutant::BodyOverEnvelope, "secret");
    let message = encrypted_message(BOB_FULL, "m", &envelope)
        .with_child(Element::new("body", ns::JABBER_CLIENT).with_text("decoy"));
    world.receive(&message);
    assert_eq!(world.events_named("message_received")[0]["text"], "decoy");
}

#[test]
fn garbled_envelopes_never_panic_and_are_never_surfaced() {
    use rand::{Rng as _, SeedableRng as _};
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let (mut world, mut bob, _) = bob_writes(Mutant::None, "x");
    for round in 0..300 {
        let mut envelope = bob.encrypt(&[alice()], b"original").expect("enc");
        match round % 5 {
            0 => {
                let data = &mut envelope.keys[0].data;
                let at = rng.random_range(0..data.len());
                data[at] ^= 1 << rng.random_range(0..8);
            }
            1 => {
                let len = rng.random_range(0..300);
                envelope.keys[0].data = (0..len).map(|_| rng.random()).collect();
            }
            2 => envelope.keys[0].prekey = !envelope.keys[0].prekey,
            3 => envelope.sid = rng.random_range(1..=gatecheck::e2ee::MAX_DEVICE_ID),
            _ => {
                let payload = envelope.payload.get_or_insert_with(Vec::new);
                payload.push(rng.random());
            }
        }
        world.receive(&encrypted_message(
            BOB_FULL,
            &format!("g{round}"),
            &envelope,
        ));
    }
    // Whatever surfaced is a text Bob sent (a flipped sid or prekey flag may still decrypt).
    for event in world.events_named("message_received") {
        assert_eq!(event["text"], "original");
    }
    assert!(world.events_named("decrypt_failed").len() >= 200);
}

#[test]
fn a_media_reference_is_fetched_instead_of_surfaced() {
    let reference = format!("aesgcm://media.test/m/x#{}", "0".repeat(88));
    let (mut world, _, envelope) = bob_writes(Mutant::None, &reference);
    world.receive(&encrypted_message(BOB_FULL, "m1", &envelope));
    assert_eq!(
        world.events,
        [json!({"event":"fetch_media","from":BOB_FULL,"id":"m1","reference":reference})]
    );
    // Text that merely mentions a reference is text.
    let text = format!("see {reference}");
    let (mut world, _, envelope) = bob_writes(Mutant::None, &text);
    world.receive(&encrypted_message(BOB_FULL, "m2", &envelope));
    assert_eq!(world.events_named("message_received").len(), 1);
}
