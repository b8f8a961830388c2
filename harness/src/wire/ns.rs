//! Namespace names the codec and the stanza layer refer to (one constant per namespace).

/// Content namespace for client-to-server streams (RFC 6120 §4.8.3).
pub const JABBER_CLIENT: &str = "jabber:client";
/// Content namespace for server-to-server streams (RFC 6120 §4.8.3).
pub const JABBER_SERVER: &str = "jabber:server";
/// The stream namespace (RFC 6120 §4.8.1).
pub const STREAMS: &str = "http://etherx.jabber.org/streams";
/// SASL negotiation (RFC 6120 §6).
pub const SASL: &str = "urn:ietf:params:xml:ns:xmpp-sasl";
/// STARTTLS negotiation (RFC 6120 §5).
pub const TLS: &str = "urn:ietf:params:xml:ns:xmpp-tls";
/// Resource binding (RFC 6120 §7).
pub const BIND: &str = "urn:ietf:params:xml:ns:xmpp-bind";
/// Stanza error conditions (RFC 6120 §8.3).
pub const STANZAS: &str = "urn:ietf:params:xml:ns:xmpp-stanzas";
/// Stream error conditions (RFC 6120 §4.9).
pub const STREAM_ERRORS: &str = "urn:ietf:params:xml:ns:xmpp-streams";
/// XEP-0199: XMPP Ping.
pub const PING: &str = "urn:xmpp:ping";
/// XEP-0030: Service Discovery, info.
pub const DISCO_INFO: &str = "http://jabber.org/protocol/disco#info";
/// XEP-0030: Service Discovery, items.
pub const DISCO_ITEMS: &str = "http://jabber.org/protocol/disco#items";
/// XEP-0184: Message Delivery Receipts.
pub const RECEIPTS: &str = "urn:xmpp:receipts";
/// XEP-0085: Chat State Notifications.
pub const CHATSTATES: &str = "http://jabber.org/protocol/chatstates";
/// XEP-0334: Message Processing Hints.
pub const HINTS: &str = "urn:xmpp:hints";
/// XEP-0384: OMEMO Encryption (the widely deployed `axolotl` namespace).
pub const OMEMO: &str = "eu.siacs.conversations.axolotl";
/// The gatekeeper's announcement of a stream's idle limit (SPEC.md STREAM-47).
pub const IDLE: &str = "urn:gatecheck:idle:0";
/// The namespace bound to the reserved `xml` prefix (Namespaces in XML 1.0 §3).
pub const XML: &str = "http://www.w3.org/XML/1998/namespace";
/// The namespace of `xmlns` attributes themselves; it may never be declared.
pub const XMLNS: &str = "http://www.w3.org/2000/xmlns/";
