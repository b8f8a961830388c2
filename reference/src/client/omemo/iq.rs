//! The pubsub iqs OMEMO needs (XEP-0060 as PEP uses it, SPEC.md §9.1) and the table of those
//! waiting for an answer, each with its deadline.
//!
//! An answer is accepted only from the entity the request went to (RFC 6120 §8.1.2.1 lets a
//! client rely on that): a forged result for a bundle fetch must not set up a session.

use std::collections::HashMap;
use std::time::Duration;

use gatecheck::e2ee::Address;
use gatecheck::wire::{Element, ns};
use tokio::time::Instant;

/// XEP-0060 publish-subscribe.
pub const PUBSUB: &str = "http://jabber.org/protocol/pubsub";
/// XEP-0060 event notifications (how PEP pushes device list changes).
pub const PUBSUB_EVENT: &str = "http://jabber.org/protocol/pubsub#event";
/// The gatekeeper's prekey notices (SPEC.md §9.1).
pub const KEYS: &str = "urn:gatecheck:keys:0";

/// Every wait for an answer ends after this (DRIVER.md: `fetch-failed` after 5 s).
pub const ANSWER_WAIT: Duration = Duration::from_secs(5);

/// What a request was for, so that its answer goes where it belongs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Purpose {
    /// Reading a device list (our own account's or a peer's), by bare JID.
    DeviceList(String),
    /// Publishing our device list.
    PublishList,
    /// Publishing our bundle.
    PublishBundle,
    /// Fetching the bundle of one device.
    Bundle(Address),
}

/// How a request ended.
#[derive(Debug)]
pub enum Answer {
    /// A result; the payload of its first pubsub item, if it had one.
    Result(Option<Element>),
    /// An error answer, with its condition.
    Error(String),
    /// Nothing within [`ANSWER_WAIT`].
    Timeout,
}

struct Waiting {
    purpose: Purpose,
    /// The `to` of the request; `None` for our own account (no `to`).
    to: Option<String>,
    deadline: Instant,
}

/// Requests sent and not answered yet.
#[derive(Default)]
pub struct Pending {
    by_id: HashMap<String, Waiting>,
}

impl Pending {
    pub fn insert(&mut self, id: String, purpose: Purpose, to: Option<String>, now: Instant) {
        self.by_id.insert(
            id,
            Waiting {
                purpose,
                to,
                deadline: now + ANSWER_WAIT,
            },
        );
    }

    /// The request `iq` (of type result or error) answers, if it is one of ours and comes
    /// from where the request went. `own_bare`: our account, which answers for requests
    /// without `to` (the server may stamp it as `from`, or leave `from` out).
    pub fn answer(&mut self, iq: &Element, own_bare: &str) -> Option<(Purpose, Answer)> {
        let id = iq.attr("id")?;
        let waiting = self.by_id.get(id)?;
        let from = iq.attr("from");
        let from_ok = match (&waiting.to, from) {
            (None, None) => true,
            (None, Some(from)) => from == own_bare,
            (Some(to), Some(from)) => from == to,
            // A peer's answer always carries its from (the server stamps it).
            (Some(to), None) => to == own_bare,
        };
        if !from_ok {
            return None;
        }
        let waiting = self.by_id.remove(id)?;
        let answer = match iq.attr("type") {
            Some("result") => Answer::Result(first_item_payload(iq)),
            _ => Answer::Error(error_condition(iq)),
        };
        Some((waiting.purpose, answer))
    }

    /// Requests whose deadline passed, removed from the table.
    pub fn expired(&mut self, now: Instant) -> Vec<Purpose> {
        let ids: Vec<String> = self
            .by_id
            .iter()
            .filter(|(_, w)| w.deadline <= now)
            .map(|(id, _)| id.clone())
            .collect();
        ids.into_iter()
            .filter_map(|id| self.by_id.remove(&id))
            .map(|w| w.purpose)
            .collect()
    }

    /// The earliest deadline, if anything is waiting.
    pub fn deadline(&self) -> Option<Instant> {
        self.by_id.values().map(|w| w.deadline).min()
    }

    pub fn clear(&mut self) {
        self.by_id.clear();
    }
}

/// `<iq type='get'><pubsub><items node=NODE/></pubsub></iq>`, to `to` (none: our account).
pub fn items_get(id: &str, to: Option<&str>, node: &str) -> Element {
    let mut iq = Element::new("iq", ns::JABBER_CLIENT)
        .with_attr("type", "get")
        .with_attr("id", id);
    if let Some(to) = to {
        iq.set_attr("to", to);
    }
    iq.with_child(
        Element::new("pubsub", PUBSUB)
            .with_child(Element::new("items", PUBSUB).with_attr("node", node)),
    )
}

/// `<iq type='set'><pubsub><publish node=NODE><item id='current'>PAYLOAD</item>...`, to our
/// own account (PEP: no `to`).
pub fn publish_set(id: &str, node: &str, payload: Element) -> Element {
    Element::new("iq", ns::JABBER_CLIENT)
        .with_attr("type", "set")
        .with_attr("id", id)
        .with_child(
            Element::new("pubsub", PUBSUB).with_child(
                Element::new("publish", PUBSUB)
                    .with_attr("node", node)
                    .with_child(
                        Element::new("item", PUBSUB)
                            .with_attr("id", "current")
                            .with_child(payload),
                    ),
            ),
        )
}

/// The payload of the first `<item/>` of a pubsub items result.
fn first_item_payload(iq: &Element) -> Option<Element> {
    iq.child("pubsub", PUBSUB)?
        .child("items", PUBSUB)?
        .child("item", PUBSUB)?
        .child_elements()
        .next()
        .cloned()
}

/// The defined condition of an error answer (or `undefined-condition` when it names none).
fn error_condition(iq: &Element) -> String {
    iq.child("error", ns::JABBER_CLIENT)
        .and_then(|e| e.child_elements().find(|c| c.ns == ns::STANZAS))
        .map_or_else(|| "undefined-condition".to_owned(), |c| c.name.clone())
}

/// The `(node, payload)` of each item of a pubsub event message.
pub fn event_items(message: &Element) -> Vec<(&str, &Element)> {
    let Some(event) = message.child("event", PUBSUB_EVENT) else {
        return Vec::new();
    };
    event
        .children_named("items", PUBSUB_EVENT)
        .filter_map(|items| Some((items.attr("node")?, items)))
        .flat_map(|(node, items)| {
            items
                .children_named("item", PUBSUB_EVENT)
                .filter_map(move |item| Some((node, item.child_elements().next()?)))
        })
        .collect()
}

/// The bare JID of a JID (`local@domain/resource` → `local@domain`).
pub fn bare(jid: &str) -> &str {
    jid.split_once('/').map_or(jid, |(bare, _)| bare)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn iq(xml: &str) -> Element {
        gatecheck::wire::parse_fragment(
            xml.as_bytes(),
            &gatecheck::wire::Limits::harness_ceilings(),
        )
        .expect("well-formed")
    }

    #[test]
    fn answers_come_from_where_the_request_went() {
        let now = Instant::now();
        let mut pending = Pending::default();
        let peer = Purpose::DeviceList("bob@gk".into());
        pending.insert("a".into(), peer.clone(), Some("bob@gk".into()), now);
        pending.insert("b".into(), Purpose::PublishList, None, now);
        // A forged answer from someone else is not taken, and the request stays pending.
        let forged = iq("<iq xmlns='jabber:client' type='result' id='a' from='eve@gk'/>");
        assert!(pending.answer(&forged, "alice@gk").is_none());
        let real = iq(
            "<iq xmlns='jabber:client' type='result' id='a' from='bob@gk'>\
            <pubsub xmlns='http://jabber.org/protocol/pubsub'><items node='n'><item id='current'>\
            <list xmlns='eu.siacs.conversations.axolotl'/></item></items></pubsub></iq>",
        );
        let (purpose, answer) = pending.answer(&real, "alice@gk").expect("ours");
        assert_eq!(purpose, peer);
        assert!(matches!(answer, Answer::Result(Some(ref p)) if p.name == "list"));
        // Our own account answers with our bare JID or without from.
        let own = iq(
            "<iq xmlns='jabber:client' type='error' id='b' from='alice@gk'>\
            <error type='cancel'><item-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>",
        );
        let (_, answer) = pending.answer(&own, "alice@gk").expect("ours");
        assert!(matches!(answer, Answer::Error(ref c) if c == "item-not-found"));
        assert!(pending.deadline().is_none());
    }

    #[test]
    fn deadlines_expire() {
        let now = Instant::now();
        let mut pending = Pending::default();
        pending.insert("a".into(), Purpose::PublishBundle, None, now);
        assert_eq!(pending.deadline(), Some(now + ANSWER_WAIT));
        assert!(pending.expired(now).is_empty());
        assert_eq!(
            pending.expired(now + ANSWER_WAIT),
            vec![Purpose::PublishBundle]
        );
        assert!(pending.deadline().is_none());
    }

    #[test]
    fn event_items_and_bare() {
        let m = iq("<message xmlns='jabber:client' from='bob@gk'>\
            <event xmlns='http://jabber.org/protocol/pubsub#event'><items node='x'>\
            <item id='current'><list xmlns='eu.siacs.conversations.axolotl'/></item>\
            <item/></items><items/></event></message>");
        let items = event_items(&m);
        assert_eq!(items.len(), 1);
        assert_eq!(items[0].0, "x");
        assert_eq!(bare("a@b/c/d"), "a@b");
        assert_eq!(bare("a@b"), "a@b");
    }
}
