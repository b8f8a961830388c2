//! Publishing our keys, and `send_text`.

use std::collections::BTreeMap;
use std::time::Duration;

use gatecheck::e2ee::{Address, Bundle, DEVICELIST_NODE, Envelope, NS, bundle_node};
use gatecheck::wire::ns;

use super::*;

#[test]
fn publishes_a_bundle_of_100_prekeys_and_a_merged_device_list() {
    let other = device(7, 7);
    let world = World::with_own_devices(Mutant::None, &[&other]);
    // E2EE-2: the list read back keeps the other device and gains ours.
    assert_eq!(world.list(ALICE_BARE), vec![7, ALICE_ID]);
    let bundle = world.alice_bundle();
    bundle.verify().expect("E2EE-4");
    assert_eq!(bundle.prekeys.len(), 100, "E2EE-5");
    assert!(world.alice.publication.ready());
    // The read came before the publication of the list, which went to our own account.
    let kinds: Vec<_> = world
        .iqs
        .iter()
        .map(|iq| (iq.attr("type").unwrap_or_default(), iq.attr("to")))
        .collect();
    assert_eq!(kinds, [("set", None), ("get", None), ("set", None)]);
}

#[test]
fn a_list_that_already_names_us_is_not_published_again() {
    let mut world = World::new(Mutant::None);
    world.take();
    let actions = world.alice.on_bound(ALICE, DOMAIN, world.now);
    world.run(actions);
    let sets = world.iqs.iter().filter(|iq| iq.attr("type") == Some("set"));
    assert_eq!(sets.count(), 1, "only the bundle: {:?}", world.iqs);
}

#[test]
fn the_few_prekeys_mutant_publishes_99() {
    let world = World::new(Mutant::FewPrekeys);
    assert_eq!(world.alice_bundle().prekeys.len(), 99);
}

#[test]
fn sends_one_envelope_that_bob_decrypts() {
    let mut bob = device(2001, 2);
    let mut world = World::new(Mutant::None);
    world.publish(BOB, &bob);
    world.take();
    world.send_text(7, BOB, "Grüße, Bob");
    // E2EE-9: the list, then the bundle, both from Bob's bare JID.
    let fetched: Vec<_> = world.iqs.iter().map(|iq| iq.attr("to")).collect();
    assert_eq!(fetched, [Some(BOB), None, Some(BOB)], "{:?}", world.iqs);
    assert_eq!(world.order.last().map(String::as_str), Some("sent"));
    let message = world.stanzas.last().expect("a message").clone();
    assert_eq!(message.attr("type"), Some("chat"));
    assert_eq!(message.attr("to"), Some(BOB));
    let id = message.attr("id").expect("an id");
    assert!(id.len() >= 16, "STANZA-12: {id}");
    assert_eq!(
        world.events,
        [serde_json::json!({"event":"sent","seq":7,"id":id})]
    );
    assert!(
        message.child("body", ns::JABBER_CLIENT).is_none(),
        "E2EE-19"
    );
    assert!(
        message.child("request", ns::RECEIPTS).is_some(),
        "STANZA-15"
    );
    assert!(message.child("store", ns::HINTS).is_some());
    let envelope = world.last_envelope();
    assert_eq!(envelope.sid, ALICE_ID);
    assert_eq!(envelope.iv.len(), 12, "E2EE-17");
    assert_eq!(envelope.keys.len(), 1);
    assert!(envelope.keys[0].prekey, "E2EE-15");
    let got = bob.decrypt(ALICE_BARE, &envelope).expect("bob decrypts");
    assert_eq!(got.text.as_deref(), Some("Grüße, Bob"));
}

#[test]
fn a_bundle_with_the_whole_pool_uses_one_prekey() {
    let mut bob = device(2001, 2);
    let mut world = World::new(Mutant::None);
    world.whole_pool = true;
    world.publish(BOB, &bob);
    world.send_text(1, BOB, "from a plain PEP service");
    let got = bob
        .decrypt(ALICE_BARE, &world.last_envelope())
        .expect("bob decrypts");
    assert!(
        got.consumed_prekey.is_some(),
        "E2EE-9: X3DH with one one-time prekey"
    );
}

#[test]
fn prekey_messages_until_the_peer_answers_then_signal_messages() {
    let mut bob = device(2001, 2);
    let mut world = World::new(Mutant::None);
    world.publish(BOB, &bob);
    world.send_text(1, BOB, "one");
    world.send_text(2, BOB, "two");
    let second = world.last_envelope();
    assert!(second.keys[0].prekey, "E2EE-15: no answer yet");
    bob.decrypt(ALICE_BARE, &second).expect("bob decrypts");
    let reply = bob
        .encrypt(&[Address::new(ALICE_BARE, ALICE_ID)], b"hi")
        .expect("bob encrypts");
    world.receive(&encrypted_message(BOB_FULL, "r1", &reply));
    assert_eq!(world.events_named("message_received").len(), 1);
    world.send_text(3, BOB, "three");
    let third = world.last_envelope();
    assert!(!third.keys[0].prekey, "E2EE-16");
    assert_eq!(
        bob.decrypt(ALICE_BARE, &third)
            .expect("decrypts")
            .text
            .as_deref(),
        Some("three")
    );
}

#[test]
fn the_prekey_flag_mutant_marks_signal_messages_too() {
    let mut bob = device(2001, 2);
    let mut world = World::new(Mutant::PrekeyFlagAlways);
    world.publish(BOB, &bob);
    world.send_text(1, BOB, "one");
    bob.decrypt(ALICE_BARE, &world.last_envelope())
        .expect("decrypts");
    let reply = bob
        .encrypt(&[Address::new(ALICE_BARE, ALICE_ID)], b"hi")
        .expect("enc");
    world.receive(&encrypted_message(BOB_FULL, "r1", &reply));
    world.send_text(2, BOB, "two");
    let envelope = world.last_envelope();
    assert!(envelope.keys[0].prekey);
    assert!(
        bob.decrypt(ALICE_BARE, &envelope).is_err(),
        "a SignalMessage marked prekey"
    );
}

#[test]
fn encrypts_for_every_device_of_the_peer_and_our_own_others() {
    let mine = device(7, 7);
    let bobs = [device(2001, 2), device(2002, 3)];
    let mut world = World::with_own_devices(Mutant::None, &[&mine]);
    for bob in &bobs {
        world.publish(BOB, bob);
    }
    world.send_text(1, BOB, "all of you");
    let rids: Vec<u32> = world.last_envelope().keys.iter().map(|k| k.rid).collect();
    assert_eq!(rids, [2001, 2002, 7], "E2EE-14");

    let mut world = World::with_own_devices(Mutant::OneDeviceOnly, &[&mine]);
    for bob in &bobs {
        world.publish(BOB, bob);
    }
    world.send_text(1, BOB, "just one");
    let rids: Vec<u32> = world.last_envelope().keys.iter().map(|k| k.rid).collect();
    assert_eq!(rids, [2001, 7]);
}

#[test]
fn a_bundle_that_does_not_verify_gets_no_key() {
    let good = device(2001, 2);
    let bad = device(2002, 3);
    for (mutant, want) in [
        (Mutant::None, vec![2001]),
        (Mutant::SkipBundleVerification, vec![2001, 2002]),
    ] {
        let mut world = World::new(mutant);
        world.publish(BOB, &good);
        world.publish(BOB, &bad);
        let mut forged = bad.bundle();
        forged.signature[0] ^= 1;
        world.publish_bundle(BOB, 2002, forged);
        world.send_text(1, BOB, "careful");
        let rids: Vec<u32> = world.last_envelope().keys.iter().map(|k| k.rid).collect();
        assert_eq!(rids, want, "{mutant:?}");
    }
}

#[test]
fn without_a_valid_device_the_send_fails() {
    let bad = device(2002, 3);
    let mut world = World::new(Mutant::None);
    world.publish(BOB, &bad);
    let mut forged = bad.bundle();
    forged.signature[0] ^= 1;
    world.publish_bundle(BOB, 2002, forged);
    world.send_text(4, BOB, "nobody");
    assert_eq!(
        world.events_named("send_failed")[0]["reason"],
        "no-valid-device"
    );
    // An account without a device list: the gatekeeper answers item-not-found.
    world.send_text(5, "carol@gk.test", "who?");
    let failed = world.events_named("send_failed");
    assert_eq!(failed[1]["seq"], 5);
    assert_eq!(failed[1]["reason"], "fetch-failed");
    assert!(world.stanzas.is_empty());
}

#[test]
fn a_silent_gatekeeper_fails_the_send_after_5_seconds() {
    let bob = device(2001, 2);
    let mut world = World::new(Mutant::None);
    world.publish(BOB, &bob);
    world.silent = true;
    world.send_text(9, BOB, "hello?");
    let deadline = world.alice.deadline().expect("a deadline");
    assert_eq!(deadline - world.now, Duration::from_secs(5));
    world.advance(Duration::from_millis(4999));
    assert!(world.events.is_empty());
    world.silent = false;
    world.advance(Duration::from_millis(1));
    assert_eq!(
        world.events,
        [serde_json::json!({"event":"send_failed","seq":9,"reason":"fetch-failed"})]
    );
    assert!(world.alice.deadline().is_none());
}

#[test]
fn queued_sends_fail_when_the_stream_ends() {
    let mut world = World::new(Mutant::None);
    world.silent = true;
    world.send_text(1, BOB, "a");
    world.send_text(2, BOB, "b");
    let events = world.alice.session_ended();
    let seqs: Vec<i64> = events
        .iter()
        .map(|e| {
            serde_json::to_value(e).expect("json")["seq"]
                .as_i64()
                .unwrap_or(-1)
        })
        .collect();
    assert_eq!(seqs, [1, 2]);
    let actions = world.alice.send_text(3, BOB, "c", world.now);
    world.run(actions);
    assert_eq!(
        world.events_named("send_failed")[0]["reason"],
        "not-connected"
    );
}

#[test]
fn a_device_list_event_is_used_for_the_next_message() {
    let bobs = [device(2001, 2), device(2002, 3)];
    let mut world = World::new(Mutant::None);
    world.publish(BOB, &bobs[0]);
    world.send_text(1, BOB, "one");
    // E2EE-27: device 2002 joins, 2001 leaves, as the event says.
    world.publish_bundle(BOB, 2002, bobs[1].bundle());
    world.receive(&list_event(BOB, &[2002]));
    world.take();
    world.send_text(2, BOB, "two");
    let rids: Vec<u32> = world.last_envelope().keys.iter().map(|k| k.rid).collect();
    assert_eq!(rids, [2002]);
    let list_fetches = world.iqs.iter().filter(|iq| {
        iq.attr("to") == Some(BOB)
            && iq
                .child("pubsub", PUBSUB)
                .and_then(|p| p.child("items", PUBSUB))
                .and_then(|i| i.attr("node"))
                == Some(DEVICELIST_NODE)
    });
    assert_eq!(list_fetches.count(), 0, "the event's list is the newest");
}

#[test]
fn our_own_list_without_us_is_published_again() {
    let mut world = World::new(Mutant::None);
    world.take();
    world.receive(&list_event(ALICE_BARE, &[7]));
    assert_eq!(world.list(ALICE_BARE), vec![7, ALICE_ID], "E2EE-2");
}

#[test]
fn prekeys_low_republishes_fresh_prekeys() {
    let low = Element::new("message", ns::JABBER_CLIENT)
        .with_attr("type", "headline")
        .with_attr("from", DOMAIN)
        .with_attr("to", ALICE)
        .with_child(
            Element::new("prekeys-low", "urn:gatecheck:keys:0").with_attr("remaining", "3"),
        );
    let mut world = World::new(Mutant::None);
    let before: BTreeMap<u32, Vec<u8>> = world.alice_bundle().prekeys.into_iter().collect();
    world.take();
    // From anyone but the gatekeeper, the notice means nothing.
    let mut forged = low.clone();
    forged.set_attr("from", BOB_FULL);
    world.receive(&forged);
    assert!(world.iqs.is_empty());
    world.receive(&low);
    let after: Bundle = world.alice_bundle();
    let fresh = after
        .prekeys
        .iter()
        .filter(|(id, _)| !before.contains_key(id))
        .count();
    assert!(fresh >= 100, "E2EE-6: {fresh} fresh prekeys");
    for (id, key) in &after.prekeys {
        if let Some(old) = before.get(id) {
            assert_eq!(old, key, "E2EE-7: prekey {id} changed its key");
        }
    }
    let node = after_node(&world);
    assert_eq!(node, bundle_node(ALICE_ID));

    let mut world = World::new(Mutant::IgnorePrekeysLow);
    world.take();
    world.receive(&low);
    assert!(world.iqs.is_empty());
}

fn after_node(world: &World) -> String {
    let publish = world.iqs[0]
        .child("pubsub", PUBSUB)
        .and_then(|p| p.child("publish", PUBSUB))
        .expect("a publication");
    publish.attr("node").unwrap_or_default().to_owned()
}

#[test]
fn fresh_payload_keys_unless_the_mutant() {
    for (mutant, same) in [(Mutant::None, false), (Mutant::FixedPayloadKey, true)] {
        let mut bob = device(2001, 2);
        let mut world = World::new(mutant);
        world.publish(BOB, &bob);
        world.send_text(1, BOB, "one");
        let first = bob
            .decrypt(ALICE_BARE, &world.last_envelope())
            .expect("decrypts");
        world.send_text(2, BOB, "two");
        let second = bob
            .decrypt(ALICE_BARE, &world.last_envelope())
            .expect("decrypts");
        assert_eq!(first.key == second.key, same, "{mutant:?}: E2EE-18");
        assert_eq!(first.iv == second.iv, same, "{mutant:?}: E2EE-18");
    }
}

#[test]
fn the_fallback_body_mutant_writes_a_body() {
    let bob = device(2001, 2);
    let mut world = World::new(Mutant::FallbackBody);
    world.publish(BOB, &bob);
    world.send_text(1, BOB, "secret text");
    let message = world.stanzas.last().expect("sent");
    let body = message.child("body", ns::JABBER_CLIENT).expect("a body");
    assert!(
        !body.text().contains("secret"),
        "the fallback is not the text (E2EE-20)"
    );
    assert!(message.child("encrypted", NS).is_some());
}

#[test]
fn key_publication_mutants() {
    // no-device-list (E2EE-2): the bundle goes out, the list never names the device.
    let world = World::new(Mutant::NoDeviceList);
    assert!(!world.list(ALICE_BARE).contains(&ALICE_ID));
    assert_eq!(world.alice_bundle().prekeys.len(), 100);
    assert!(
        world.alice.publication.ready(),
        "sends are not held up for good"
    );
    // reused-prekey-ids (E2EE-7): ids 1.. come back with other keys.
    let mut world = World::new(Mutant::ReusedPrekeyIds);
    let before: BTreeMap<u32, Vec<u8>> = world.alice_bundle().prekeys.into_iter().collect();
    let low = Element::new("message", ns::JABBER_CLIENT)
        .with_attr("type", "headline")
        .with_attr("from", DOMAIN)
        .with_child(Element::new("prekeys-low", "urn:gatecheck:keys:0"));
    world.receive(&low);
    let after = world.alice_bundle();
    assert_eq!(after.prekeys.len(), 100);
    assert!(
        after
            .prekeys
            .iter()
            .all(|(id, key)| before.get(id).is_some_and(|old| old != key))
    );
}

#[test]
fn sending_mutants() {
    // no-own-devices (E2EE-14)
    let mine = device(7, 7);
    let mut world = World::with_own_devices(Mutant::NoOwnDevices, &[&mine]);
    world.publish(BOB, &device(2001, 2));
    world.send_text(1, BOB, "not for my other phone");
    let rids: Vec<u32> = world.last_envelope().keys.iter().map(|k| k.rid).collect();
    assert_eq!(rids, [2001]);
    // stale-device-lists (E2EE-27): the list of the first message stays in use.
    let bobs = [device(2001, 2), device(2002, 3)];
    let mut world = World::new(Mutant::StaleDeviceLists);
    world.publish(BOB, &bobs[0]);
    world.send_text(1, BOB, "one");
    world.publish(BOB, &bobs[1]);
    world.receive(&list_event(BOB, &[2001, 2002]));
    world.send_text(2, BOB, "two");
    let rids: Vec<u32> = world.last_envelope().keys.iter().map(|k| k.rid).collect();
    assert_eq!(rids, [2001]);
}

#[test]
fn message_format_mutants() {
    let sent = |mutant: Mutant| {
        let bob = device(2001, 2);
        let mut world = World::new(mutant);
        world.publish(BOB, &bob);
        world.send_text(1, BOB, "text");
        world.send_text(2, BOB, "text");
        let message = world.stanzas.last().expect("sent").clone();
        (world, message, bob)
    };
    let (world, message, mut bob) = sent(Mutant::TextWithNewline);
    let got = bob
        .decrypt(ALICE_BARE, &world.last_envelope())
        .expect("decrypts");
    assert_eq!(got.text.as_deref(), Some("text\n"));
    assert!(message.child("request", ns::RECEIPTS).is_some());
    let (_, message, _) = sent(Mutant::NormalMessageType);
    assert_eq!(message.attr("type"), Some("normal"));
    let (world, _, _) = sent(Mutant::ReusedMessageId);
    assert_eq!(world.stanzas[0].attr("id"), world.stanzas[1].attr("id"));
    let (_, message, _) = sent(Mutant::NoReceiptRequest);
    assert!(message.child("request", ns::RECEIPTS).is_none());
    let (_, message, _) = sent(Mutant::PayloadFirst);
    let encrypted = message.child("encrypted", NS).expect("envelope");
    let names: Vec<&str> = encrypted
        .child_elements()
        .map(|c| c.name.as_str())
        .collect();
    assert_eq!(names, ["payload", "header"]);
    let (world, _, mut bob) = sent(Mutant::IgnoreOneTimePrekey);
    let first = Envelope::from_element(world.stanzas[0].child("encrypted", NS).expect("envelope"))
        .expect("parses");
    let got = bob.decrypt(ALICE_BARE, &first).expect("decrypts");
    assert_eq!(got.consumed_prekey, None, "E2EE-9");
}

#[test]
fn bundle_format_mutants() {
    let world = World::new(Mutant::CorruptSignature);
    assert!(world.alice_bundle().verify().is_err(), "E2EE-4");
    let world = World::new(Mutant::UntypedPrekeys);
    let node = (ALICE_BARE.to_owned(), bundle_node(ALICE_ID));
    let published = world.nodes.get(&node).expect("published");
    assert!(Bundle::from_element(published).is_err(), "E2EE-3");
}

#[test]
fn the_media_key_in_body_mutant_repeats_references_only() {
    let reference = format!("aesgcm://media.test/m/x#{}", "0".repeat(88));
    for (mutant, text, body) in [
        (Mutant::None, reference.as_str(), false),
        (Mutant::MediaKeyInBody, reference.as_str(), true),
        (Mutant::MediaKeyInBody, "plain text", false),
    ] {
        let bob = device(2001, 2);
        let mut world = World::new(mutant);
        world.publish(BOB, &bob);
        world.send_text(1, BOB, text);
        let message = world.stanzas.last().expect("sent");
        let found = message.child("body", ns::JABBER_CLIENT).map(Element::text);
        assert_eq!(found.as_deref(), body.then_some(text), "{mutant:?}");
    }
}
