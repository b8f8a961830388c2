//! A bound session: iq answers, receipts, stream errors in both directions.

mod common;

use common::logged_in;
use gatecheck::transport::TransportKind;
use gatecheck::wire::{StreamEvent, ns};
use serde_json::json;

#[tokio::test]
async fn ping_is_answered_with_an_empty_result() {
    let (iut, mut conn) = logged_in(TransportKind::Noise, &[]).await;
    conn.send("<iq type='get' id='p1' from='gk.gatecheck.test'><ping xmlns='urn:xmpp:ping'/></iq>")
        .await;
    let reply = conn.stanza().await;
    assert!(reply.is("iq", ns::JABBER_CLIENT));
    assert_eq!(reply.attr("type"), Some("result"));
    assert_eq!(reply.attr("id"), Some("p1"));
    assert_eq!(reply.attr("to"), Some("gk.gatecheck.test"));
    assert_eq!(reply.attr("from"), None);
    assert_eq!(reply.child_elements().count(), 0);
    iut.shutdown().await;
}

#[tokio::test]
async fn unknown_iq_gets_service_unavailable_and_results_get_nothing() {
    let (iut, mut conn) = logged_in(TransportKind::Tls, &[]).await;
    // A result is never answered: the next stanza we see must be the answer to q1.
    conn.send("<iq type='result' id='r0' from='bob@gk.gatecheck.test/x'/>")
        .await;
    conn.send("<iq type='get' id='q1' from='bob@gk.gatecheck.test/x'><query xmlns='urn:example:nope'/></iq>")
        .await;
    let reply = conn.stanza().await;
    assert_eq!(reply.attr("id"), Some("q1"));
    assert_eq!(reply.attr("type"), Some("error"));
    assert_eq!(reply.attr("to"), Some("bob@gk.gatecheck.test/x"));
    let error = reply.child("error", ns::JABBER_CLIENT).expect("<error>");
    assert_eq!(error.attr("type"), Some("cancel"));
    assert!(
        error.child("service-unavailable", ns::STANZAS).is_some(),
        "{reply:?}"
    );

    conn.send("<iq type='get' id='q2'/>").await;
    let reply = conn.stanza().await;
    let error = reply.child("error", ns::JABBER_CLIENT).expect("<error>");
    assert_eq!(error.attr("type"), Some("modify"));
    assert!(
        error.child("bad-request", ns::STANZAS).is_some(),
        "{reply:?}"
    );

    conn.send("<iq type='get' id='d1' from='bob@gk.gatecheck.test/x'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>")
        .await;
    let reply = conn.stanza().await;
    let query = reply.child("query", ns::DISCO_INFO).expect("query");
    let vars: Vec<&str> = query
        .children_named("feature", ns::DISCO_INFO)
        .filter_map(|f| f.attr("var"))
        .collect();
    // STANZA-28: end-to-end encryption and receipts are implemented, so they are listed;
    // STANZA-8: chat states too, since the reference declares chatstates.
    assert_eq!(
        vars,
        [
            ns::DISCO_INFO,
            ns::PING,
            ns::OMEMO,
            ns::RECEIPTS,
            ns::CHATSTATES
        ]
    );
    iut.shutdown().await;
}

#[tokio::test]
async fn no_receipt_without_delivered_content() {
    let (iut, mut conn) = logged_in(TransportKind::Noise, &[]).await;
    conn.send("<message type='error' id='e1' from='bob@gk.gatecheck.test/x'><error type='cancel'><gone xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></message>")
        .await;
    // Plaintext is never surfaced (E2EE-19), so the request is not acknowledged (STANZA-14).
    conn.send("<message id='m1' from='bob@gk.gatecheck.test/phone'><body>hi</body><request xmlns='urn:xmpp:receipts'/></message>")
        .await;
    conn.send("<iq type='get' id='p1' from='gk.gatecheck.test'><ping xmlns='urn:xmpp:ping'/></iq>")
        .await;
    let next = conn.stanza().await;
    assert_eq!(
        next.name,
        "iq",
        "expected the ping result first, got {}",
        next.to_xml()
    );
    assert_eq!(next.attr("id"), Some("p1"));
    iut.shutdown().await;
}

#[tokio::test]
async fn doctype_is_refused_with_restricted_xml() {
    let (mut iut, mut conn) = logged_in(TransportKind::Noise, &[]).await;
    conn.send("<!DOCTYPE foo [<!ENTITY x 'y'>]><message/>")
        .await;
    let rest = conn.rest().await;
    assert_eq!(
        rest,
        "<stream:error><restricted-xml xmlns=\"urn:ietf:params:xml:ns:xmpp-streams\"/></stream:error></stream:stream>"
            .replace('"', if rest.contains('\'') { "'" } else { "\"" })
    );
    let e = iut.expect("stream_error").await;
    assert_eq!(
        e,
        json!({"event":"stream_error","direction":"sent","condition":"restricted-xml"})
    );
    let e = iut.expect("disconnected").await;
    assert_eq!(
        (e["reason"].as_str(), e["condition"].as_str()),
        (Some("stream-error-sent"), Some("restricted-xml"))
    );
    iut.shutdown().await;
}

#[tokio::test]
async fn accept_doctype_mutant_does_not_refuse() {
    let (iut, mut conn) = logged_in(TransportKind::Noise, &["--mutant", "accept-doctype"]).await;
    conn.send("<!DOCTYPE foo><iq type='get' id='p2'><ping xmlns='urn:xmpp:ping'/></iq>")
        .await;
    let reply = conn.stanza().await;
    assert_eq!(reply.attr("type"), Some("result"), "the mutant parses on");
    iut.shutdown().await;
}

#[tokio::test]
async fn received_stream_error_closes_the_stream() {
    let (mut iut, mut conn) = logged_in(TransportKind::Tls, &[]).await;
    conn.send(
        "<stream:error><conflict xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></stream:error>",
    )
    .await;
    assert!(matches!(conn.next().await, Some(StreamEvent::Close)));
    let e = iut.expect("stream_error").await;
    assert_eq!(
        (e["direction"].as_str(), e["condition"].as_str()),
        (Some("received"), Some("conflict"))
    );
    let e = iut.expect("disconnected").await;
    assert_eq!(e["reason"], "stream-error-received");
    assert!(conn.next().await.is_none(), "then the connection closes");
    iut.shutdown().await;
}

#[tokio::test]
async fn unknown_top_level_element_is_unsupported_stanza_type() {
    let (mut iut, mut conn) = logged_in(TransportKind::Noise, &[]).await;
    conn.send("<foo xmlns='jabber:client'/>").await;
    let error = conn.stanza().await;
    assert!(error.is("error", ns::STREAMS));
    assert!(
        error
            .child("unsupported-stanza-type", ns::STREAM_ERRORS)
            .is_some()
    );
    assert!(matches!(conn.next().await, Some(StreamEvent::Close)));
    assert_eq!(
        iut.expect("stream_error").await["condition"],
        "unsupported-stanza-type"
    );
    iut.expect("disconnected").await;
    iut.shutdown().await;
}
