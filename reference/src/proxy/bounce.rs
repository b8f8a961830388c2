//! The `proxy-bounces-errors` mutant's answer to an error stanza from its client (a STANZA-9
//! deviation: RFC 6120 §8.3.1 forbids answering an error with an error). The correct proxy
//! forwards the stanza and answers nothing.

use gatecheck::wire::{Element, ns};

/// An error stanza of the same kind and id as `e`, addressed back to whoever sent it, with
/// the condition `undefined-condition`.
pub fn error_answer(e: &Element) -> String {
    let mut answer = Element::new(&e.name, ns::JABBER_CLIENT)
        .with_attr("type", "error")
        .with_attr("id", e.attr("id").unwrap_or_default());
    if let Some(to) = e.attr("to") {
        answer.set_attr("from", to);
    }
    if let Some(from) = e.attr("from") {
        answer.set_attr("to", from);
    }
    let condition = Element::new("undefined-condition", ns::STANZAS);
    let error = Element::new("error", ns::JABBER_CLIENT)
        .with_attr("type", "cancel")
        .with_child(condition);
    answer.with_child(error).to_xml_in(ns::JABBER_CLIENT)
}

#[cfg(test)]
mod tests {
    use super::*;
    use gatecheck::wire::{Limits, parse_fragment};

    #[test]
    fn an_error_is_answered_with_an_error_of_the_same_kind_and_id() {
        let e = parse_fragment(
            b"<message xmlns='jabber:client' type='error' id='m1' to='bob@gk.gatecheck.test'><error type='cancel'><recipient-unavailable xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></message>",
            &Limits::profile_floors(),
        )
        .expect("xml");
        let answer = error_answer(&e);
        // Written for a jabber:client stream: its default namespace is the stream's.
        let wrapped = format!("<stream xmlns='jabber:client'>{answer}</stream>");
        let stream = parse_fragment(wrapped.as_bytes(), &Limits::profile_floors()).expect("xml");
        let a = stream.child_elements().next().expect("answer");
        assert!(a.is("message", ns::JABBER_CLIENT), "{answer}");
        assert_eq!(a.attr("type"), Some("error"));
        assert_eq!(a.attr("id"), Some("m1"));
        assert_eq!(a.attr("from"), Some("bob@gk.gatecheck.test"));
        let error = a.child("error", ns::JABBER_CLIENT).expect("error");
        assert!(error.child("undefined-condition", ns::STANZAS).is_some());
    }
}
