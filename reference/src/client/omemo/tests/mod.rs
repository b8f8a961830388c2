//! Unit tests of the client's OMEMO logic: `Omemo` is driven as the session drives it, with a
//! tiny PEP store standing in for the gatekeeper and `gatecheck::e2ee::Device`s playing the
//! peers. Expected numbers (100 prekeys, 5 s, 65536 bytes) are SPEC.md's and DRIVER.md's.

mod receive;
mod send;

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use gatecheck::e2ee::{
    Address, Bundle, DEVICELIST_NODE, Device, DeviceList, Envelope, NS, bundle_node,
    parse_bundle_node,
};
use gatecheck::wire::{Element, ns};
use rand::SeedableRng as _;
use rand::rngs::StdRng;
use serde_json::Value;
use tokio::time::Instant;

use super::iq::{PUBSUB, PUBSUB_EVENT};
use super::{Action, Omemo};
use crate::mutant::Mutant;

pub const DOMAIN: &str = "gk.test";
pub const ALICE: &str = "alice@gk.test/phone";
pub const ALICE_BARE: &str = "alice@gk.test";
pub const ALICE_ID: u32 = 1001;
pub const BOB: &str = "bob@gk.test";
pub const BOB_FULL: &str = "bob@gk.test/laptop";

/// Alice (the client under test), the gatekeeper's PEP store, and what came out.
pub struct World {
    pub alice: Omemo,
    /// Current item payload per (owner bare JID, node).
    pub nodes: HashMap<(String, String), Element>,
    /// The gatekeeper does not answer iqs.
    pub silent: bool,
    /// Bundle fetches return the whole pool, as a plain PEP service does.
    pub whole_pool: bool,
    /// Every pubsub iq Alice sent, in order.
    pub iqs: Vec<Element>,
    /// Every other stanza Alice sent.
    pub stanzas: Vec<Element>,
    /// Driver events, in order.
    pub events: Vec<Value>,
    /// Stanza names and event names interleaved, in the order they came out.
    pub order: Vec<String>,
    pub now: Instant,
}

impl World {
    /// Alice bound and her keys published, the gatekeeper already knowing `existing` as her
    /// other devices.
    pub fn new(mutant: Mutant) -> World {
        World::with_own_devices(mutant, &[])
    }

    pub fn with_own_devices(mutant: Mutant, existing: &[&Device]) -> World {
        let alice = Omemo::with_seed(mutant, ALICE_ID, [1; 32], StdRng::seed_from_u64(1));
        let mut world = World {
            alice,
            nodes: HashMap::new(),
            silent: false,
            whole_pool: false,
            iqs: Vec::new(),
            stanzas: Vec::new(),
            events: Vec::new(),
            order: Vec::new(),
            now: Instant::now(),
        };
        for device in existing {
            world.publish(ALICE_BARE, device);
        }
        let actions = world.alice.on_bound(ALICE, DOMAIN, world.now);
        world.run(actions);
        world
    }

    /// Stores `device`'s bundle under `owner` and adds it to `owner`'s device list.
    pub fn publish(&mut self, owner: &str, device: &Device) {
        self.publish_bundle(owner, device.device_id(), device.bundle());
        let mut list = self.list(owner);
        list.push(device.device_id());
        self.set_list(owner, &list);
    }

    pub fn publish_bundle(&mut self, owner: &str, device_id: u32, bundle: Bundle) {
        self.nodes.insert(
            (owner.to_owned(), bundle_node(device_id)),
            bundle.to_element(),
        );
    }

    pub fn set_list(&mut self, owner: &str, devices: &[u32]) {
        let list = DeviceList {
            devices: devices.to_vec(),
        };
        self.nodes.insert(
            (owner.to_owned(), DEVICELIST_NODE.to_owned()),
            list.to_element(),
        );
    }

    pub fn list(&self, owner: &str) -> Vec<u32> {
        self.nodes
            .get(&(owner.to_owned(), DEVICELIST_NODE.to_owned()))
            .and_then(|l| DeviceList::from_element(l).ok())
            .map(|l| l.devices)
            .unwrap_or_default()
    }

    /// Alice's bundle as the gatekeeper stores it.
    pub fn alice_bundle(&self) -> Bundle {
        let node = (ALICE_BARE.to_owned(), bundle_node(ALICE_ID));
        Bundle::from_element(self.nodes.get(&node).expect("alice published her bundle"))
            .expect("alice's bundle parses")
    }

    /// `peer` sets up a session with Alice from her bundle as the gatekeeper hands it out.
    pub fn session_with_alice(&mut self, peer: &mut Device) {
        let bundle = self.hand_out(ALICE_BARE, ALICE_ID).expect("alice's bundle");
        peer.start_session(&Address::new(ALICE_BARE, ALICE_ID), &bundle)
            .expect("alice's bundle verifies");
    }

    /// The stored bundle with its lowest one-time prekey, which leaves the pool (E2EE-29).
    fn hand_out(&mut self, owner: &str, device: u32) -> Option<Bundle> {
        let key = (owner.to_owned(), bundle_node(device));
        let mut bundle = Bundle::from_element(self.nodes.get(&key)?).ok()?;
        if self.whole_pool {
            return Some(bundle);
        }
        let first = bundle.prekeys.iter().map(|(id, _)| *id).min();
        let out = bundle.with_prekeys(first.as_slice());
        bundle.prekeys.retain(|(id, _)| Some(*id) != first);
        self.nodes.insert(key, bundle.to_element());
        Some(out)
    }

    /// Carries out Alice's actions as the session would, answering pubsub iqs at once.
    pub fn run(&mut self, actions: Vec<Action>) {
        let mut queue: VecDeque<Action> = actions.into();
        while let Some(action) = queue.pop_front() {
            match action {
                Action::Send(stanza) if stanza.child("pubsub", PUBSUB).is_some() => {
                    self.order.push("iq".into());
                    self.iqs.push(stanza.clone());
                    if !self.silent {
                        let reply = self.answer(&stanza);
                        let more = self.alice.on_iq_answer(&reply, self.now);
                        queue.extend(more.expect("the answer is taken"));
                    }
                }
                Action::Send(stanza) => {
                    self.order.push(stanza.name.clone());
                    self.stanzas.push(stanza);
                }
                Action::Emit(event) => self.emit(serde_json::to_value(&event).expect("json")),
                Action::Deliver { stanza, seq, id } => {
                    self.order.push(stanza.name.clone());
                    self.stanzas.push(stanza);
                    self.emit(serde_json::json!({"event": "sent", "seq": seq, "id": id}));
                }
                // The download itself is the session's; the world records what it was asked.
                Action::FetchMedia {
                    from,
                    id,
                    reference,
                } => self.emit(serde_json::json!({"event": "fetch_media", "from": from,
                    "id": id, "reference": reference})),
            }
        }
    }

    fn emit(&mut self, event: Value) {
        self.order
            .push(event["event"].as_str().unwrap_or_default().to_owned());
        self.events.push(event);
    }

    /// The PEP store's answer to one of Alice's pubsub iqs.
    fn answer(&mut self, iq: &Element) -> Element {
        let owner = iq.attr("to").unwrap_or(ALICE_BARE).to_owned();
        let id = iq.attr("id").expect("iq id");
        let result = Element::new("iq", ns::JABBER_CLIENT)
            .with_attr("type", "result")
            .with_attr("id", id)
            .with_attr("from", owner.as_str());
        let pubsub = iq.child("pubsub", PUBSUB).expect("pubsub");
        if let Some(publish) = pubsub.child("publish", PUBSUB) {
            assert_eq!(iq.attr("type"), Some("set"));
            assert!(
                iq.attr("to").is_none(),
                "PEP publications go to our own account"
            );
            let node = publish.attr("node").expect("node").to_owned();
            let item = publish.child("item", PUBSUB).expect("item");
            let payload = item.child_elements().next().expect("payload").clone();
            self.nodes.insert((owner, node), payload);
            return result;
        }
        let items = pubsub.child("items", PUBSUB).expect("items");
        let node = items.attr("node").expect("node");
        let payload = match parse_bundle_node(node) {
            Some(device) => self.hand_out(&owner, device).map(|b| b.to_element()),
            None => self.nodes.get(&(owner.clone(), node.to_owned())).cloned(),
        };
        match payload {
            Some(payload) => result.with_child(
                Element::new("pubsub", PUBSUB).with_child(
                    Element::new("items", PUBSUB)
                        .with_attr("node", node)
                        .with_child(
                            Element::new("item", PUBSUB)
                                .with_attr("id", "current")
                                .with_child(payload),
                        ),
                ),
            ),
            None => Element::new("iq", ns::JABBER_CLIENT)
                .with_attr("type", "error")
                .with_attr("id", id)
                .with_attr("from", owner.as_str())
                .with_child(
                    Element::new("error", ns::JABBER_CLIENT)
                        .with_attr("type", "cancel")
                        .with_child(Element::new("item-not-found", ns::STANZAS)),
                ),
        }
    }

    pub fn send_text(&mut self, seq: i64, to: &str, text: &str) {
        let actions = self.alice.send_text(seq, to, text, self.now);
        self.run(actions);
    }

    /// A message arrives for Alice.
    pub fn receive(&mut self, message: &Element) {
        let actions = self.alice.on_message(message, self.now);
        self.run(actions);
    }

    /// Time passes; Alice's timer fires.
    pub fn advance(&mut self, by: Duration) {
        self.now += by;
        let actions = self.alice.on_timer(self.now);
        self.run(actions);
    }

    /// The driver events named `name`.
    pub fn events_named(&self, name: &str) -> Vec<&Value> {
        self.events.iter().filter(|e| e["event"] == name).collect()
    }

    pub fn take(&mut self) -> (Vec<Element>, Vec<Value>) {
        self.order.clear();
        self.iqs.clear();
        (
            std::mem::take(&mut self.stanzas),
            std::mem::take(&mut self.events),
        )
    }

    /// The envelope of the last message Alice sent.
    pub fn last_envelope(&self) -> Envelope {
        let message = self
            .stanzas
            .iter()
            .rev()
            .find(|s| s.child("encrypted", NS).is_some())
            .expect("an encrypted message");
        Envelope::from_element(message.child("encrypted", NS).expect("encrypted"))
            .expect("alice's envelope parses")
    }
}

/// A peer device with a fixed seed.
pub fn device(id: u32, seed: u8) -> Device {
    Device::generate(id, [seed; 32], 10)
}

/// `<message type='chat' from=FROM to=ALICE id=ID>` with `envelope`, asking for a receipt.
pub fn encrypted_message(from: &str, id: &str, envelope: &Envelope) -> Element {
    Element::new("message", ns::JABBER_CLIENT)
        .with_attr("type", "chat")
        .with_attr("from", from)
        .with_attr("to", ALICE)
        .with_attr("id", id)
        .with_child(envelope.to_element())
        .with_child(Element::new("request", ns::RECEIPTS))
}

/// A pubsub event message announcing `owner`'s device list.
pub fn list_event(owner: &str, devices: &[u32]) -> Element {
    let list = DeviceList {
        devices: devices.to_vec(),
    };
    Element::new("message", ns::JABBER_CLIENT)
        .with_attr("from", owner)
        .with_attr("to", ALICE)
        .with_child(
            Element::new("event", PUBSUB_EVENT).with_child(
                Element::new("items", PUBSUB_EVENT)
                    .with_attr("node", DEVICELIST_NODE)
                    .with_child(
                        Element::new("item", PUBSUB_EVENT)
                            .with_attr("id", "current")
                            .with_child(list.to_element()),
                    ),
            ),
        )
}

/// The device exists before any stream: its id and keys are what an enrollment carries, a
/// conflict changes only the id (ENROLL-12), and the first bundle publishes the enrolled
/// keys (ENROLL-15).
#[test]
fn enrollment_keys_are_the_published_ones_and_renumbering_keeps_them() {
    let mut alice = Omemo::generate(Mutant::None);
    let id = alice.device_id();
    assert!((1..=gatecheck::e2ee::MAX_DEVICE_ID).contains(&id));
    let key = alice.identity_key();
    assert_eq!((key.len(), key[0]), (33, 0x05));
    let keys = alice.enrollment_keys();
    assert_eq!(keys.identity_key, key);
    assert_eq!(keys.prekeys.len(), 100);
    assert!(keys.verify().is_ok());

    alice.renumber();
    assert_ne!(alice.device_id(), id);
    assert_eq!(alice.identity_key(), key);
    let actions = alice.on_bound(ALICE, DOMAIN, Instant::now());
    let published = actions
        .iter()
        .find_map(|a| match a {
            Action::Send(iq) => {
                let publish = iq.child("pubsub", PUBSUB)?.child("publish", PUBSUB)?;
                (publish.attr("node")? == bundle_node(alice.device_id()))
                    .then(|| {
                        publish
                            .child("item", PUBSUB)?
                            .child_elements()
                            .next()
                            .cloned()
                    })
                    .flatten()
            }
            _ => None,
        })
        .expect("the bundle is published under the new id");
    let bundle = Bundle::from_element(&published).expect("bundle");
    assert_eq!(bundle.identity_key, keys.identity_key);
    assert_eq!(bundle.signed_prekey, keys.signed_prekey);
    assert_eq!(bundle.prekeys, keys.prekeys);

    let mut fixed = Omemo::generate(Mutant::FixedDeviceId);
    assert_eq!(fixed.device_id(), 1);
    fixed.renumber();
    assert_eq!(fixed.device_id(), 1);
}
