use super::*;
use crate::e2ee::Device;

const ALICE: &str = "alice@gk.gatecheck.test";
const BOB: &str = "bob@gk.gatecheck.test";

fn publish_iq(node: &str, payload: &Element) -> Element {
    Element::new("iq", ns::JABBER_CLIENT)
        .with_attr("type", "set")
        .with_attr("id", "p1")
        .with_child(
            Element::new("pubsub", PUBSUB).with_child(
                Element::new("publish", PUBSUB)
                    .with_attr("node", node)
                    .with_child(item(payload.clone())),
            ),
        )
}

fn fetch_iq(owner: &str, node: &str) -> Element {
    Element::new("iq", ns::JABBER_CLIENT)
        .with_attr("type", "get")
        .with_attr("id", "f1")
        .with_attr("to", owner)
        .with_child(
            Element::new("pubsub", PUBSUB)
                .with_child(Element::new("items", PUBSUB).with_attr("node", node)),
        )
}

fn fetched_prekeys(answer: &Element) -> Vec<u32> {
    let bundle = answer
        .child("pubsub", PUBSUB)
        .and_then(|p| p.child("items", PUBSUB))
        .and_then(|i| i.child("item", PUBSUB))
        .and_then(|i| i.child_elements().next())
        .expect("a bundle in the answer");
    Bundle::from_element(bundle)
        .expect("a valid bundle")
        .prekeys
        .iter()
        .map(|(id, _)| *id)
        .collect()
}

#[test]
fn only_pubsub_and_key_count_iqs_to_bare_jids_are_wanted() {
    let node = e2ee::DEVICELIST_NODE;
    assert!(PepStore::wants(&fetch_iq(BOB, node)));
    assert!(!PepStore::wants(&fetch_iq(
        "bob@gk.gatecheck.test/phone",
        node
    )));
    let ping =
        parse_stanza_text("<iq type='get' id='x'><ping xmlns='urn:xmpp:ping'/></iq>").unwrap();
    assert!(!PepStore::wants(&ping));
    let count =
        parse_stanza_text("<iq type='get' id='c'><prekeys xmlns='urn:gatecheck:keys:0'/></iq>")
            .unwrap();
    assert!(PepStore::wants(&count));
}

#[test]
fn each_fetch_hands_out_one_prekey_once_even_after_a_republication() {
    let mut store = PepStore::new();
    let mut dev = Device::generate(7, [1; 32], 30);
    let node = e2ee::bundle_node(7);
    let a = store.answer(ALICE, &publish_iq(&node, &dev.bundle().to_element()));
    assert_eq!(a.reply.attr("type"), Some("result"));
    let first = fetched_prekeys(&store.answer(BOB, &fetch_iq(ALICE, &node)).reply);
    let second = fetched_prekeys(&store.answer(BOB, &fetch_iq(ALICE, &node)).reply);
    assert_eq!(first.len(), 1);
    assert_eq!(second.len(), 1);
    assert_ne!(first, second, "E2EE-29: a prekey is handed out once");
    // A stock client republishes its unused keys with the handed-out ones still in: the
    // gatekeeper drops those (SPEC.md §9.1).
    dev.replenish(5);
    store.answer(ALICE, &publish_iq(&node, &dev.bundle().to_element()));
    assert_eq!(store.remaining(ALICE, 7), 33);
    let third = fetched_prekeys(&store.answer(BOB, &fetch_iq(ALICE, &node)).reply);
    assert!(!first.contains(&third[0]) && !second.contains(&third[0]));
    assert!(store.publications().iter().all(|p| p.problems.is_empty()));
}

#[test]
fn a_prekey_id_republished_with_another_key_breaks_e2ee_7() {
    let mut store = PepStore::new();
    let node = e2ee::bundle_node(7);
    let one = Device::generate(7, [1; 32], 3).bundle();
    let other = Device::generate(7, [2; 32], 3).bundle();
    store.publish(ALICE, &node, Some(one.to_element()));
    store.publish(ALICE, &node, Some(other.to_element()));
    let last = store.publications().last().unwrap();
    assert_eq!(last.problems.first().map(|p| p.requirement), Some("E2EE-7"));
}

#[test]
fn an_empty_pool_gives_a_bundle_without_prekeys_and_unknown_nodes_are_not_found() {
    let mut store = PepStore::new();
    let node = e2ee::bundle_node(9);
    store.publish(
        BOB,
        &node,
        Some(Device::generate(9, [3; 32], 1).bundle().to_element()),
    );
    let only = store.hand_out(BOB, 9).unwrap();
    assert_eq!(
        only.prekey.map(|id| vec![id]),
        Some(store.handed_out(BOB, 9))
    );
    let empty = store.hand_out(BOB, 9).unwrap();
    assert_eq!(empty.prekey, None);
    assert!(empty.bundle.prekeys.is_empty());
    let missing = store.answer(ALICE, &fetch_iq(BOB, &e2ee::bundle_node(10)));
    assert_eq!(missing.reply.attr("type"), Some("error"));
    assert!(missing.reply.to_xml().contains("item-not-found"));
}

#[test]
fn publishing_to_another_account_is_forbidden_and_the_count_is_answered() {
    let mut store = PepStore::new();
    let mut iq = publish_iq(
        e2ee::DEVICELIST_NODE,
        &e2ee::DeviceList { devices: vec![1] }.to_element(),
    );
    iq.set_attr("to", BOB);
    assert!(
        store
            .answer(ALICE, &iq)
            .reply
            .to_xml()
            .contains("forbidden")
    );
    store.publish(
        ALICE,
        &e2ee::bundle_node(5),
        Some(Device::generate(5, [4; 32], 4).bundle().to_element()),
    );
    let count =
        parse_stanza_text("<iq type='get' id='c'><prekeys xmlns='urn:gatecheck:keys:0'/></iq>")
            .unwrap();
    let answer = store.answer(ALICE, &count).reply;
    assert_eq!(
        answer
            .child("prekeys", KEYS)
            .and_then(|p| p.attr("remaining")),
        Some("4")
    );
}

/// A stanza in jabber:client, as the IUT would send it.
fn parse_stanza_text(text: &str) -> Result<Element, String> {
    crate::scenario::pattern::parse(text)
}
