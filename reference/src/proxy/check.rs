//! What the proxy checks in its clients' input beyond what the parser checks (SPEC.md §7.3,
//! as a server would), and the opt-in rule of PROXY-12.
//!
//! The parser already refuses what is not well-formed, restricted XML and input over the
//! limits. Here: the stream header (content namespace, version), the kinds of first-level
//! element (STANZA-1, stanzas before binding), and who an `<auth>` logs in as.

use base64::Engine as _;
use gatecheck::idproof::sasl;
use gatecheck::wire::{Element, StreamErrorCondition, StreamHeader, ns};

/// The stream error a client's header calls for, if any.
pub fn header(header: &StreamHeader) -> Option<(StreamErrorCondition, &'static str)> {
    if header.default_ns != ns::JABBER_CLIENT {
        return Some((
            StreamErrorCondition::InvalidNamespace,
            "the content namespace is not jabber:client",
        ));
    }
    let major = header.version().and_then(|v| v.split('.').next());
    if major != Some("1") {
        return Some((
            StreamErrorCondition::UnsupportedVersion,
            "version missing or its major version is not 1",
        ));
    }
    None
}

/// Where the client's stream stands, as far as the checks need to know.
#[derive(Debug, Default, Clone, Copy)]
pub struct Stage {
    /// SASL succeeded and the stream was restarted.
    pub authenticated: bool,
    /// The client asked to bind a resource: from here on only stanzas (STANZA-1).
    pub bind_requested: bool,
}

/// What to do with a first-level element from the client.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Forward it.
    Forward,
    /// Forward it: the client's resource binding request.
    ForwardBind,
    /// The client's SASL `<auth>`: forward it only if the user opted in.
    Auth,
    /// Refuse it with this stream error (PROXY-14).
    Refuse(StreamErrorCondition, &'static str),
}

pub fn element(e: &Element, stage: Stage) -> Verdict {
    let stanza =
        e.ns == ns::JABBER_CLIENT && matches!(e.name.as_str(), "message" | "presence" | "iq");
    if e.ns == ns::JABBER_CLIENT && !stanza {
        return Verdict::Refuse(
            StreamErrorCondition::UnsupportedStanzaType,
            "a jabber:client element that is not a stanza",
        );
    }
    if e.is("error", ns::STREAMS) {
        // The client's own stream error (STREAM-24): the gatekeeper hears it.
        return Verdict::Forward;
    }
    if stage.bind_requested {
        return if stanza {
            Verdict::Forward
        } else {
            Verdict::Refuse(
                StreamErrorCondition::UnsupportedStanzaType,
                "after binding only message, presence and iq (STANZA-1)",
            )
        };
    }
    if stanza {
        let bind = e.name == "iq" && e.child("bind", ns::BIND).is_some();
        return if bind && stage.authenticated {
            Verdict::ForwardBind
        } else {
            Verdict::Refuse(
                StreamErrorCondition::NotAuthorized,
                "a stanza before resource binding",
            )
        };
    }
    if e.is("auth", ns::SASL) {
        return Verdict::Auth;
    }
    Verdict::Forward
}

/// Whether an `<auth>` may go upstream (PROXY-12): it must be PLAIN or PLAIN-IDPROOF, decode,
/// and log in as `authcid@domain` (the domain the client's stream header is addressed to)
/// that is in `opted_in`; an authorization identity, if given, must be opted in too. `Err`
/// says why not, for the log.
pub fn opted_in(
    auth: &Element,
    domain: Option<&str>,
    opted_in: &[String],
) -> Result<String, String> {
    let mechanism = auth.attr("mechanism").unwrap_or_default();
    let text: String = auth.text().split_whitespace().collect();
    if text.len() > 4 * sasl::MAX_MESSAGE.div_ceil(3) {
        return Err("the initial response is too long".into());
    }
    let message = if text == "=" {
        Vec::new()
    } else {
        base64::engine::general_purpose::STANDARD
            .decode(&text)
            .map_err(|e| format!("the initial response is not base64: {e}"))?
    };
    let (authzid, authcid) = match mechanism {
        sasl::MECHANISM => {
            let parsed = sasl::parse(&message)?;
            (parsed.authzid, parsed.authcid)
        }
        "PLAIN" => {
            let fields: Vec<&[u8]> = message.split(|&b| b == 0).collect();
            let [authzid, authcid, _password] = fields.as_slice() else {
                return Err("a PLAIN message has 3 fields".into());
            };
            let text = |b: &[u8]| String::from_utf8(b.to_vec()).map_err(|_| "not UTF-8".to_owned());
            (text(authzid)?, text(authcid)?)
        }
        other => return Err(format!("mechanism {other:?} does not say who logs in")),
    };
    let domain = domain.ok_or("the stream header names no domain")?;
    if authcid.is_empty() || authcid.contains('@') {
        return Err(format!(
            "authentication identity {authcid:?} is not a localpart"
        ));
    }
    let jid = format!("{authcid}@{domain}");
    let listed = |who: &str| opted_in.iter().any(|o| o.eq_ignore_ascii_case(who));
    if !listed(&jid) {
        return Err(format!("{jid} has not opted in"));
    }
    if !authzid.is_empty() && !listed(&authzid) {
        return Err(format!("authorization identity {authzid} has not opted in"));
    }
    Ok(jid)
}

#[cfg(test)]
mod tests {
    use super::*;
    use gatecheck::wire::{Limits, parse_fragment};

    fn el(xml: &str) -> Element {
        parse_fragment(xml.as_bytes(), &Limits::profile_floors()).expect("xml")
    }

    fn auth(mechanism: &str, message: &[u8]) -> Element {
        let b64 = base64::engine::general_purpose::STANDARD.encode(message);
        el(&format!(
            "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='{mechanism}'>{b64}</auth>"
        ))
    }

    #[test]
    fn opt_in_is_read_from_plain_and_plain_idproof() {
        let list = vec!["alice@gk.gatecheck.test".to_owned()];
        let d = Some("gk.gatecheck.test");
        assert_eq!(
            opted_in(&auth("PLAIN", b"\0alice\0pw"), d, &list),
            Ok("alice@gk.gatecheck.test".into())
        );
        assert!(opted_in(&auth("PLAIN-IDPROOF", b"\0alice\0pw\0{}"), d, &list).is_ok());
        assert!(opted_in(&auth("PLAIN", b"\0bob\0pw"), d, &list).is_err());
        assert!(
            opted_in(
                &auth("PLAIN", b"bob@gk.gatecheck.test\0alice\0pw"),
                d,
                &list
            )
            .is_err()
        );
        assert!(opted_in(&auth("PLAIN", b"\0alice@gk.gatecheck.test\0pw"), d, &list).is_err());
        assert!(opted_in(&auth("PLAIN", b"\0alice\0pw"), Some("other.test"), &list).is_err());
        assert!(opted_in(&auth("PLAIN", b"\0alice\0pw"), None, &list).is_err());
        assert!(opted_in(&auth("SCRAM-SHA-1", b"n,,n=alice,r=x"), d, &list).is_err());
        assert!(opted_in(&auth("PLAIN", b"\0alice"), d, &list).is_err());
        assert!(
            opted_in(
                &el("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>%%</auth>"),
                d,
                &list
            )
            .is_err()
        );
    }

    #[test]
    fn elements_are_sorted_as_a_server_would() {
        let pre = Stage::default();
        let authed = Stage {
            authenticated: true,
            bind_requested: false,
        };
        let bound = Stage {
            authenticated: true,
            bind_requested: true,
        };
        let bind = el(
            "<iq xmlns='jabber:client' type='set' id='b'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></iq>",
        );
        let msg = el("<message xmlns='jabber:client'/>");
        let other = el("<r xmlns='urn:xmpp:sm:3'/>");
        let foo = el("<foo xmlns='jabber:client'/>");
        assert_eq!(element(&bind, authed), Verdict::ForwardBind);
        assert!(matches!(
            element(&bind, pre),
            Verdict::Refuse(StreamErrorCondition::NotAuthorized, _)
        ));
        assert!(matches!(
            element(&msg, authed),
            Verdict::Refuse(StreamErrorCondition::NotAuthorized, _)
        ));
        assert_eq!(element(&msg, bound), Verdict::Forward);
        assert_eq!(element(&other, pre), Verdict::Forward);
        assert!(matches!(
            element(&other, bound),
            Verdict::Refuse(StreamErrorCondition::UnsupportedStanzaType, _)
        ));
        assert!(matches!(
            element(&foo, pre),
            Verdict::Refuse(StreamErrorCondition::UnsupportedStanzaType, _)
        ));
        assert_eq!(
            element(&el("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>"), pre),
            Verdict::Auth
        );
    }

    #[test]
    fn headers_need_jabber_client_and_version_1() {
        let mut h = StreamHeader::new(ns::JABBER_CLIENT);
        assert!(matches!(
            header(&h),
            Some((StreamErrorCondition::UnsupportedVersion, _))
        ));
        h.version = Some("1.0".into());
        assert_eq!(header(&h), None);
        h.version = Some("2.0".into());
        assert!(header(&h).is_some());
        let mut s = StreamHeader::new(ns::JABBER_SERVER);
        s.version = Some("1.0".into());
        assert!(matches!(
            header(&s),
            Some((StreamErrorCondition::InvalidNamespace, _))
        ));
    }
}
