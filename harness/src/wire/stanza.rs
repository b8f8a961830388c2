//! The typed stanza layer (RFC 6120 §8): `<message>`, `<iq>`, `<presence>` over [`Element`].
//!
//! Deliberately modest: the envelope (type, id, from, to, xml:lang) is typed and checked;
//! payloads stay [`Element`]s. Conversion back to an element writes the envelope attributes
//! first (`type`, `id`, `from`, `to`, `xml:lang`, then the others in their original order)
//! and drops whitespace text between payloads.

use std::fmt;

use super::condition::{ErrorCondition, StanzaErrorCondition, StreamErrorCondition};
use super::element::{Element, Node};
use super::ns;

/// A stanza, whichever of the three kinds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stanza {
    /// `<message/>`.
    Message(Message),
    /// `<iq/>`.
    Iq(Iq),
    /// `<presence/>`.
    Presence(Presence),
}

/// Why an element is not a valid stanza.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StanzaError {
    /// A top-level element that is not message, iq or presence.
    #[error("element <{name}> in namespace {ns:?} is not a stanza")]
    NotAStanza {
        /// Local name.
        name: String,
        /// Namespace.
        ns: String,
    },
    /// message, iq or presence outside the content namespaces.
    #[error("stanza <{name}> is in namespace {ns:?}, not jabber:client or jabber:server")]
    WrongNamespace {
        /// Local name.
        name: String,
        /// Namespace.
        ns: String,
    },
    /// A `type` attribute the stanza kind does not define.
    #[error("{stanza} type {value:?} is not defined by RFC 6120")]
    BadType {
        /// `message`, `iq` or `presence`.
        stanza: &'static str,
        /// The value found.
        value: String,
    },
    /// An iq without the mandatory `type`.
    #[error("iq without a type attribute")]
    MissingType,
    /// An iq without the mandatory `id`.
    #[error("iq without an id attribute")]
    MissingId,
    /// An iq get/set without exactly one payload, or a result with more than one.
    #[error("iq of type {iq_type} has {count} child elements, expected {expected}")]
    IqPayloadCount {
        /// The iq type.
        iq_type: &'static str,
        /// Child elements found.
        count: usize,
        /// What RFC 6120 §8.2.3 requires.
        expected: &'static str,
    },
    /// An iq of type error without an `<error/>` child.
    #[error("iq of type error without an <error/> child")]
    IqErrorWithoutError,
}

impl StanzaError {
    /// What a receiver must answer with.
    pub fn condition(&self) -> ErrorCondition {
        match self {
            StanzaError::NotAStanza { .. } => {
                ErrorCondition::Stream(StreamErrorCondition::UnsupportedStanzaType)
            }
            StanzaError::WrongNamespace { .. } => {
                ErrorCondition::Stream(StreamErrorCondition::InvalidNamespace)
            }
            StanzaError::BadType { .. }
            | StanzaError::MissingType
            | StanzaError::MissingId
            | StanzaError::IqPayloadCount { .. }
            | StanzaError::IqErrorWithoutError => {
                ErrorCondition::Stanza(StanzaErrorCondition::BadRequest)
            }
        }
    }
}

/// Generates a `type` attribute enum with its RFC names.
macro_rules! stanza_types {
    ($(#[$meta:meta])* $name:ident, $stanza:literal { $($variant:ident => $text:literal,)+ }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name {
            $(
                #[doc = concat!("`type='", $text, "'`")]
                $variant,
            )+
        }

        impl $name {
            /// The attribute value.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)+
                }
            }

            fn parse(value: &str) -> Result<Self, StanzaError> {
                match value {
                    $($text => Ok($name::$variant),)+
                    _ => Err(StanzaError::BadType { stanza: $stanza, value: value.to_owned() }),
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

stanza_types! {
    /// Message types, RFC 6121 §5.2.2 (absent means `normal`).
    MessageType, "message" {
        Chat => "chat",
        Error => "error",
        Groupchat => "groupchat",
        Headline => "headline",
        Normal => "normal",
    }
}

stanza_types! {
    /// IQ types, RFC 6120 §8.2.3.
    IqType, "iq" {
        Get => "get",
        Set => "set",
        Result => "result",
        Error => "error",
    }
}

stanza_types! {
    /// Presence types, RFC 6121 §4.7.1 (absent means available).
    PresenceType, "presence" {
        Error => "error",
        Probe => "probe",
        Subscribe => "subscribe",
        Subscribed => "subscribed",
        Unavailable => "unavailable",
        Unsubscribe => "unsubscribe",
        Unsubscribed => "unsubscribed",
    }
}

/// The attributes every stanza kind shares.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Envelope {
    /// `jabber:client` or `jabber:server`.
    pub ns: String,
    /// `id`.
    pub id: Option<String>,
    /// `from`.
    pub from: Option<String>,
    /// `to`.
    pub to: Option<String>,
    /// `xml:lang`.
    pub lang: Option<String>,
    /// Every other attribute, in document order.
    pub other_attrs: Vec<(String, String)>,
}

/// `<message/>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// `type` (`None`: absent, which means normal).
    pub kind: Option<MessageType>,
    /// Addressing and the other attributes.
    pub envelope: Envelope,
    /// Child elements (body, encrypted, receipts…).
    pub payloads: Vec<Element>,
}

/// `<iq/>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Iq {
    /// `type`.
    pub kind: IqType,
    /// Addressing and the other attributes; `envelope.id` is always set.
    pub envelope: Envelope,
    /// Child elements: exactly one for get/set, at most one for result, an `<error/>` among
    /// them for error.
    pub payloads: Vec<Element>,
}

/// `<presence/>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Presence {
    /// `type` (`None`: available).
    pub kind: Option<PresenceType>,
    /// Addressing and the other attributes.
    pub envelope: Envelope,
    /// Child elements (show, status, priority, extensions).
    pub payloads: Vec<Element>,
}

impl Stanza {
    /// The envelope, whatever the kind.
    pub fn envelope(&self) -> &Envelope {
        match self {
            Stanza::Message(m) => &m.envelope,
            Stanza::Iq(i) => &i.envelope,
            Stanza::Presence(p) => &p.envelope,
        }
    }
}

/// Splits an element into (type attribute, envelope, payloads).
fn split(e: Element) -> (Option<String>, Envelope, Vec<Element>) {
    let mut kind = None;
    let mut env = Envelope {
        ns: e.ns,
        ..Envelope::default()
    };
    for (name, value) in e.attrs {
        match name.as_str() {
            "type" => kind = Some(value),
            "id" => env.id = Some(value),
            "from" => env.from = Some(value),
            "to" => env.to = Some(value),
            "xml:lang" => env.lang = Some(value),
            _ => env.other_attrs.push((name, value)),
        }
    }
    let payloads = e
        .children
        .into_iter()
        .filter_map(|n| match n {
            Node::Element(c) => Some(c),
            Node::Text(_) => None,
        })
        .collect();
    (kind, env, payloads)
}

impl TryFrom<Element> for Stanza {
    type Error = StanzaError;

    fn try_from(e: Element) -> Result<Self, Self::Error> {
        if !matches!(e.name.as_str(), "message" | "iq" | "presence") {
            return Err(StanzaError::NotAStanza {
                name: e.name,
                ns: e.ns,
            });
        }
        if e.ns != ns::JABBER_CLIENT && e.ns != ns::JABBER_SERVER {
            return Err(StanzaError::WrongNamespace {
                name: e.name,
                ns: e.ns,
            });
        }
        let name = std::mem::take(&mut { e.name.clone() });
        let (kind, envelope, payloads) = split(e);
        match name.as_str() {
            "message" => Ok(Stanza::Message(Message {
                kind: kind.as_deref().map(MessageType::parse).transpose()?,
                envelope,
                payloads,
            })),
            "presence" => Ok(Stanza::Presence(Presence {
                kind: kind.as_deref().map(PresenceType::parse).transpose()?,
                envelope,
                payloads,
            })),
            _ => {
                let kind = IqType::parse(kind.as_deref().ok_or(StanzaError::MissingType)?)?;
                if envelope.id.is_none() {
                    return Err(StanzaError::MissingId);
                }
                check_iq_payloads(kind, &payloads)?;
                Ok(Stanza::Iq(Iq {
                    kind,
                    envelope,
                    payloads,
                }))
            }
        }
    }
}

/// RFC 6120 §8.2.3 rules 5 and 6, and §8.3.1 for errors.
fn check_iq_payloads(kind: IqType, payloads: &[Element]) -> Result<(), StanzaError> {
    let count = payloads.len();
    let (ok, expected) = match kind {
        IqType::Get | IqType::Set => (count == 1, "exactly one"),
        IqType::Result => (count <= 1, "at most one"),
        IqType::Error => {
            if !payloads.iter().any(|p| p.name == "error") {
                return Err(StanzaError::IqErrorWithoutError);
            }
            (true, "")
        }
    };
    if ok {
        Ok(())
    } else {
        Err(StanzaError::IqPayloadCount {
            iq_type: kind.as_str(),
            count,
            expected,
        })
    }
}

fn join(name: &str, kind: Option<&'static str>, env: Envelope, payloads: Vec<Element>) -> Element {
    let mut e = Element::new(name, env.ns);
    let mut push = |n: &str, v: Option<String>| {
        if let Some(v) = v {
            e.attrs.push((n.to_owned(), v));
        }
    };
    push("type", kind.map(str::to_owned));
    push("id", env.id);
    push("from", env.from);
    push("to", env.to);
    push("xml:lang", env.lang);
    e.attrs.extend(env.other_attrs);
    e.children = payloads.into_iter().map(Node::Element).collect();
    e
}

impl From<Stanza> for Element {
    fn from(s: Stanza) -> Self {
        match s {
            Stanza::Message(m) => join(
                "message",
                m.kind.map(MessageType::as_str),
                m.envelope,
                m.payloads,
            ),
            Stanza::Iq(i) => join("iq", Some(i.kind.as_str()), i.envelope, i.payloads),
            Stanza::Presence(p) => join(
                "presence",
                p.kind.map(PresenceType::as_str),
                p.envelope,
                p.payloads,
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(name: &str) -> Element {
        Element::new(name, ns::JABBER_CLIENT)
    }

    fn err(e: Element) -> String {
        Stanza::try_from(e).unwrap_err().to_string()
    }

    #[test]
    fn minimal_message() {
        let s = Stanza::try_from(client("message")).unwrap();
        let Stanza::Message(m) = &s else {
            panic!("{s:?}")
        };
        assert_eq!(m.kind, None);
        assert!(m.payloads.is_empty());
        assert_eq!(Element::from(s), client("message"));
    }

    #[test]
    fn iq_round_trip_keeps_unknown_children_and_attributes() {
        let e = client("iq")
            .with_attr("type", "get")
            .with_attr("id", "p1")
            .with_attr("to", "example.net")
            .with_attr("custom", "x")
            .with_child(
                Element::new("ping", ns::PING).with_child(Element::new("unknown", "urn:x")),
            );
        let s = Stanza::try_from(e.clone()).unwrap();
        assert_eq!(
            s.envelope().other_attrs,
            vec![("custom".into(), "x".into())]
        );
        assert_eq!(Element::from(s), e);
    }

    #[test]
    fn presence_types() {
        let s = Stanza::try_from(client("presence").with_attr("type", "unavailable")).unwrap();
        assert!(matches!(
            s,
            Stanza::Presence(Presence {
                kind: Some(PresenceType::Unavailable),
                ..
            })
        ));
    }

    #[test]
    fn errors_have_exact_messages_and_conditions() {
        let cases = [
            (
                Element::new("features", ns::STREAMS),
                "element <features> in namespace \"http://etherx.jabber.org/streams\" is not a stanza",
                "stream error unsupported-stanza-type",
            ),
            (
                Element::new("message", "urn:x"),
                "stanza <message> is in namespace \"urn:x\", not jabber:client or jabber:server",
                "stream error invalid-namespace",
            ),
            (
                client("message").with_attr("type", "bogus"),
                "message type \"bogus\" is not defined by RFC 6120",
                "stanza error bad-request",
            ),
            (
                client("iq").with_attr("id", "1"),
                "iq without a type attribute",
                "stanza error bad-request",
            ),
            (
                client("iq").with_attr("type", "get"),
                "iq without an id attribute",
                "stanza error bad-request",
            ),
            (
                client("iq").with_attr("type", "set").with_attr("id", "1"),
                "iq of type set has 0 child elements, expected exactly one",
                "stanza error bad-request",
            ),
            (
                client("iq")
                    .with_attr("type", "result")
                    .with_attr("id", "1")
                    .with_child(client("a"))
                    .with_child(client("b")),
                "iq of type result has 2 child elements, expected at most one",
                "stanza error bad-request",
            ),
            (
                client("iq").with_attr("type", "error").with_attr("id", "1"),
                "iq of type error without an <error/> child",
                "stanza error bad-request",
            ),
        ];
        for (e, message, condition) in cases {
            let error = Stanza::try_from(e).unwrap_err();
            assert_eq!(error.to_string(), message);
            assert_eq!(error.condition().to_string(), condition);
        }
        assert_eq!(
            err(client("presence").with_attr("type", "x")),
            "presence type \"x\" is not defined by RFC 6120"
        );
    }
}
