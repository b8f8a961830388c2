//! The gatekeeper server's personal eventing store (XEP-0163) as SPEC.md §9.1 uses it: device
//! lists and bundles, one one-time prekey handed out per bundle fetch, the memory of what was
//! handed out, and the prekey count. Pure bookkeeping over stanzas, so that the runner can
//! answer the IUT's iqs whenever they arrive and check what it published.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::e2ee::{self, Bundle, DeviceList, E2eeError};
use crate::wire::{Element, ns};

pub const PUBSUB: &str = "http://jabber.org/protocol/pubsub";
pub const PUBSUB_EVENT: &str = "http://jabber.org/protocol/pubsub#event";
pub const PUBSUB_OWNER: &str = "http://jabber.org/protocol/pubsub#owner";
/// The gatekeeper's prekey count and low-pool notice (SPEC.md §9.1).
pub const KEYS: &str = "urn:gatecheck:keys:0";
/// Below this many one-time prekeys the gatekeeper sends `prekeys-low` (SPEC.md §9.1).
pub const LOW_WATER: usize = 25;

/// One publication of a node, kept for the steps that judge it.
#[derive(Debug, Clone)]
pub struct Publication {
    pub owner: String,
    pub node: String,
    /// The item's payload as published (the `<list/>` or `<bundle/>`).
    pub payload: Option<Element>,
    /// What is wrong with it (format or E2EE-7 reuse), found when it was stored.
    pub problems: Vec<E2eeError>,
    /// Zero-based index among all publications: steps wait for "a publication after N".
    pub index: usize,
}

/// What the gatekeeper remembers of one device's one-time prekeys.
#[derive(Debug, Default, Clone)]
struct Pool {
    /// Ids handed out in a bundle response (never handed out again: E2EE-29).
    handed_out: BTreeSet<u32>,
    /// Every id this device ever published, with its key (E2EE-7).
    ever: BTreeMap<u32, Vec<u8>>,
}

/// What the server does in answer to one iq: the reply, and notices to send besides.
#[derive(Debug)]
pub struct PepAnswer {
    pub reply: Element,
    /// `(owner, node)` of a node this iq changed: its subscribers get an event.
    pub changed: Option<(String, String)>,
}

/// A one-time prekey handed out, and the pool that remains.
#[derive(Debug, Clone)]
pub struct HandedOut {
    pub bundle: Bundle,
    pub prekey: Option<u32>,
    pub remaining: usize,
}

#[derive(Debug, Default)]
pub struct PepStore {
    /// Current item payload per (owner bare JID, node).
    nodes: HashMap<(String, String), Element>,
    /// Parsed bundles per (owner, device id), as stored (handed-out prekeys dropped).
    bundles: HashMap<(String, u32), Bundle>,
    pools: HashMap<(String, u32), Pool>,
    publications: Vec<Publication>,
    /// The one-time prekey of the last bundle of each (owner, device) handed out in answer
    /// to an iq (`None` inside: the pool was empty).
    fetched: HashMap<(String, u32), Option<u32>>,
    /// Owners whose device list some iq has read.
    lists_read: std::collections::HashSet<String>,
}

impl PepStore {
    pub fn new() -> PepStore {
        PepStore::default()
    }

    /// Whether `iq` is one this store answers: a pubsub request to a bare JID (or to the
    /// sender's own account, without `to`), or the prekey count query.
    pub fn wants(iq: &Element) -> bool {
        iq.name == "iq"
            && matches!(iq.attr("type"), Some("get" | "set"))
            && iq
                .child_elements()
                .next()
                .is_some_and(|c| c.ns == PUBSUB || c.ns == PUBSUB_OWNER || c.is("prekeys", KEYS))
            && iq.attr("to").is_none_or(|to| !to.contains('/'))
    }

    /// Answers an iq that [`PepStore::wants`], sent by a device of `own` (a bare JID).
    pub fn answer(&mut self, own: &str, iq: &Element) -> PepAnswer {
        let owner = iq
            .attr("to")
            .map(str::to_string)
            .unwrap_or_else(|| own.to_string());
        let Some(child) = iq.child_elements().next() else {
            return PepAnswer::reply(iq_error(iq, "modify", "bad-request"));
        };
        if child.is("prekeys", KEYS) {
            return PepAnswer::reply(self.prekey_count(own, &owner, iq));
        }
        if child.ns == PUBSUB_OWNER {
            // Node configuration: every node here is open, persistent, one item; accept.
            return PepAnswer::reply(iq_result(iq, &owner));
        }
        let action = child.child_elements().next();
        match (iq.attr("type"), action) {
            (Some("set"), Some(p)) if p.name == "publish" && p.ns == PUBSUB => {
                if owner != own {
                    return PepAnswer::reply(iq_error(iq, "auth", "forbidden"));
                }
                let Some(node) = p.attr("node").filter(|n| !n.is_empty()) else {
                    return PepAnswer::reply(iq_error(iq, "modify", "bad-request"));
                };
                let payload = p
                    .child("item", PUBSUB)
                    .and_then(|i| i.child_elements().next())
                    .cloned();
                self.publish(&owner, node, payload);
                PepAnswer {
                    reply: iq_result(iq, &owner),
                    changed: Some((owner.clone(), node.to_string())),
                }
            }
            (Some("get"), Some(i)) if i.name == "items" && i.ns == PUBSUB => {
                let Some(node) = i.attr("node") else {
                    return PepAnswer::reply(iq_error(iq, "modify", "bad-request"));
                };
                let payload = match e2ee::parse_bundle_node(node) {
                    Some(device) => self.hand_out(&owner, device).map(|h| {
                        self.fetched.insert((owner.clone(), device), h.prekey);
                        h.bundle.to_element()
                    }),
                    _ => {
                        if node == e2ee::DEVICELIST_NODE {
                            self.lists_read.insert(owner.clone());
                        }
                        self.nodes.get(&(owner.clone(), node.to_string())).cloned()
                    }
                };
                match payload {
                    Some(p) => PepAnswer::reply(
                        iq_result(iq, &owner).with_child(
                            Element::new("pubsub", PUBSUB).with_child(
                                Element::new("items", PUBSUB)
                                    .with_attr("node", node)
                                    .with_child(item(p)),
                            ),
                        ),
                    ),
                    None => PepAnswer::reply(iq_error(iq, "cancel", "item-not-found")),
                }
            }
            // Subscriptions: PEP subscribes by presence; an explicit one is accepted.
            (Some("set"), Some(s)) if s.name == "subscribe" => {
                PepAnswer::reply(iq_result(iq, &owner))
            }
            _ => PepAnswer::reply(iq_error(iq, "cancel", "feature-not-implemented")),
        }
    }

    /// Stores a publication: a bundle loses the ids already handed out (SPEC.md §9.1) and is
    /// checked against what the device published before under the same ids (E2EE-7).
    pub fn publish(&mut self, owner: &str, node: &str, payload: Option<Element>) {
        let mut problems = Vec::new();
        if let (Some(device), Some(p)) = (e2ee::parse_bundle_node(node), payload.as_ref()) {
            match Bundle::from_element(p) {
                Ok(mut bundle) => {
                    let pool = self.pools.entry((owner.to_string(), device)).or_default();
                    for (id, key) in &bundle.prekeys {
                        match pool.ever.get(id) {
                            Some(old) if old != key => problems.push(E2eeError {
                                requirement: "E2EE-7",
                                message: format!(
                                    "one-time prekey id {id} of device {device} was published before with another key"
                                ),
                            }),
                            Some(_) => {}
                            None => {
                                pool.ever.insert(*id, key.clone());
                            }
                        }
                    }
                    bundle
                        .prekeys
                        .retain(|(id, _)| !pool.handed_out.contains(id));
                    self.bundles.insert((owner.to_string(), device), bundle);
                }
                Err(e) => {
                    self.bundles.remove(&(owner.to_string(), device));
                    problems.push(e);
                }
            }
        }
        if node == e2ee::DEVICELIST_NODE
            && let Some(Err(e)) = payload.as_ref().map(DeviceList::from_element)
        {
            problems.push(e);
        }
        match &payload {
            Some(p) => {
                self.nodes
                    .insert((owner.to_string(), node.to_string()), p.clone());
            }
            None => {
                self.nodes.remove(&(owner.to_string(), node.to_string()));
            }
        }
        let index = self.publications.len();
        self.publications.push(Publication {
            owner: owner.to_string(),
            node: node.to_string(),
            payload,
            problems,
            index,
        });
    }

    /// The bundle of `owner`'s `device` with one one-time prekey (the lowest id not handed
    /// out), which is removed from the pool and never handed out again (E2EE-29); `None`
    /// when the device has no valid bundle stored.
    pub fn hand_out(&mut self, owner: &str, device: u32) -> Option<HandedOut> {
        let key = (owner.to_string(), device);
        let bundle = self.bundles.get_mut(&key)?;
        let first = bundle.prekeys.iter().map(|(id, _)| *id).min();
        let out = bundle.with_prekeys(first.as_slice());
        bundle.prekeys.retain(|(id, _)| Some(*id) != first);
        let remaining = bundle.prekeys.len();
        if let Some(id) = first {
            self.pools.entry(key).or_default().handed_out.insert(id);
        }
        // The stored node follows the pool, so a plain items fetch shows what is left.
        let node = e2ee::bundle_node(device);
        if let Some(b) = self.bundles.get(&(owner.to_string(), device)) {
            self.nodes.insert((owner.to_string(), node), b.to_element());
        }
        Some(HandedOut {
            bundle: out,
            prekey: first,
            remaining,
        })
    }

    /// The device list `owner` published last (empty when none or unparsable).
    pub fn device_list(&self, owner: &str) -> Vec<u32> {
        self.nodes
            .get(&(owner.to_string(), e2ee::DEVICELIST_NODE.to_string()))
            .and_then(|p| DeviceList::from_element(p).ok())
            .map(|l| l.devices)
            .unwrap_or_default()
    }

    /// The stored bundle of a device (handed-out prekeys removed).
    pub fn bundle(&self, owner: &str, device: u32) -> Option<&Bundle> {
        self.bundles.get(&(owner.to_string(), device))
    }

    /// How many one-time prekeys of a device remain to hand out.
    pub fn remaining(&self, owner: &str, device: u32) -> usize {
        self.bundle(owner, device).map_or(0, |b| b.prekeys.len())
    }

    /// The one-time prekey ids of a device handed out so far.
    pub fn handed_out(&self, owner: &str, device: u32) -> Vec<u32> {
        self.pools
            .get(&(owner.to_string(), device))
            .map(|p| p.handed_out.iter().copied().collect())
            .unwrap_or_default()
    }

    /// Whether an iq has read `owner`'s device list (a later change is one to follow).
    pub fn list_fetched(&self, owner: &str) -> bool {
        self.lists_read.contains(owner)
    }

    /// The one-time prekey of the last bundle of `owner`'s `device` fetched with an iq:
    /// `None` when none was fetched, `Some(None)` when it carried no one-time prekey.
    pub fn fetched_prekey(&self, owner: &str, device: u32) -> Option<Option<u32>> {
        self.fetched.get(&(owner.to_string(), device)).copied()
    }

    pub fn publications(&self) -> &[Publication] {
        &self.publications
    }

    /// The current item of a node, as a pubsub event message body.
    pub fn event(&self, owner: &str, node: &str) -> Option<Element> {
        let payload = self.nodes.get(&(owner.to_string(), node.to_string()))?;
        Some(
            Element::new("event", PUBSUB_EVENT).with_child(
                Element::new("items", PUBSUB_EVENT)
                    .with_attr("node", node)
                    .with_child(
                        Element::new("item", PUBSUB_EVENT)
                            .with_attr("id", "current")
                            .with_child(payload.clone()),
                    ),
            ),
        )
    }

    fn prekey_count(&self, own: &str, owner: &str, iq: &Element) -> Element {
        if owner != own {
            return iq_error(iq, "auth", "forbidden");
        }
        // The count is per device; a client asks for the device it publishes.
        let device = self
            .bundles
            .keys()
            .filter(|(o, _)| o == own)
            .map(|(_, d)| *d)
            .max();
        let remaining = device.map_or(0, |d| self.remaining(own, d));
        iq_result(iq, owner)
            .with_child(Element::new("prekeys", KEYS).with_attr("remaining", remaining.to_string()))
    }
}

impl PepAnswer {
    fn reply(reply: Element) -> PepAnswer {
        PepAnswer {
            reply,
            changed: None,
        }
    }
}

/// The `prekeys-low` notice (SPEC.md §9.1) for a device's session.
pub fn prekeys_low(domain: &str, to: &str, remaining: usize) -> Element {
    Element::new("message", ns::JABBER_CLIENT)
        .with_attr("type", "headline")
        .with_attr("from", domain)
        .with_attr("to", to)
        .with_child(Element::new("prekeys-low", KEYS).with_attr("remaining", remaining.to_string()))
}

fn item(payload: Element) -> Element {
    Element::new("item", PUBSUB)
        .with_attr("id", "current")
        .with_child(payload)
}

fn iq_result(iq: &Element, from: &str) -> Element {
    let mut r = Element::new("iq", ns::JABBER_CLIENT)
        .with_attr("type", "result")
        .with_attr("from", from);
    if let Some(id) = iq.attr("id") {
        r.set_attr("id", id);
    }
    r
}

fn iq_error(iq: &Element, kind: &str, condition: &str) -> Element {
    let mut r = Element::new("iq", ns::JABBER_CLIENT).with_attr("type", "error");
    if let Some(to) = iq.attr("to") {
        r.set_attr("from", to);
    }
    if let Some(id) = iq.attr("id") {
        r.set_attr("id", id);
    }
    r.with_child(
        Element::new("error", ns::JABBER_CLIENT)
            .with_attr("type", kind)
            .with_child(Element::new(condition, ns::STANZAS)),
    )
}

#[cfg(test)]
#[path = "pep_tests.rs"]
mod tests;
