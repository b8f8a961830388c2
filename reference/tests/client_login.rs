//! Connecting: transports, SASL PLAIN, binding, and the failures reported on the way.

mod common;

use base64::Engine as _;
use common::{FEATURES_PLAIN, Gatekeeper, Iut, SERVER_HEADER, logged_in};
use gatecheck::transport::{NoiseKeypair, TransportKind};
use gatecheck::wire::StreamEvent;
use serde_json::json;

#[tokio::test]
async fn noise_login_and_disconnect() {
    let (mut iut, mut conn) = logged_in(TransportKind::Noise, &[]).await;
    iut.send(json!({"cmd":"disconnect","seq":2})).await;
    assert!(matches!(conn.next().await, Some(StreamEvent::Close)));
    conn.send("</stream:stream>").await;
    let e = iut.expect("disconnected").await;
    assert_eq!(e, json!({"event":"disconnected","seq":2,"reason":"local"}));
    assert_eq!(conn.rest().await, "");
    iut.shutdown().await;
}

#[tokio::test]
async fn tls_login_sends_plain_credentials() {
    let gk = Gatekeeper::start(TransportKind::Tls).await;
    let mut iut = Iut::spawn(&[]).await;
    iut.send(gk.connect_command(7, None)).await;
    let mut conn = gk.accept().await;
    let auth = conn.login().await;
    assert_eq!(auth.attr("mechanism"), Some("PLAIN"));
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(auth.text().trim())
        .expect("b64");
    assert_eq!(decoded, b"\0alice\0s3cret");
    let e = iut.expect("connected").await;
    assert_eq!(e["seq"], 7);
    // Reconnect after the server closes: a fresh session on a fresh connection.
    conn.send("</stream:stream>").await;
    assert!(matches!(conn.next().await, Some(StreamEvent::Close)));
    let e = iut.expect("disconnected").await;
    assert_eq!(e["reason"], "remote-close");
    iut.send(gk.connect_command(8, None)).await;
    let mut conn = gk.accept().await;
    conn.login().await;
    assert_eq!(iut.expect("connected").await["seq"], 8);
    iut.shutdown().await;
}

#[tokio::test]
async fn noise_key_mismatch_is_reported_and_nothing_is_sent() {
    let gk = Gatekeeper::start(TransportKind::Noise).await;
    let mut iut = Iut::spawn(&[]).await;
    let wrong = NoiseKeypair::generate().public;
    iut.send(gk.connect_command(1, Some(&wrong))).await;
    let (tcp, _) = gk.listener.accept().await.expect("accept");
    let server = gatecheck::transport::noise_accept(tcp, &gk.noise).await;
    assert!(server.is_err(), "the client must not send message 3");
    let e = iut.expect("error").await;
    assert_eq!(
        (e["seq"].as_i64(), e["code"].as_str()),
        (Some(1), Some("server-key-mismatch"))
    );
    iut.shutdown().await;
}

#[tokio::test]
async fn no_key_pin_mutant_connects_anyway() {
    let gk = Gatekeeper::start(TransportKind::Noise).await;
    let mut iut = Iut::spawn(&["--mutant", "no-key-pin"]).await;
    let wrong = NoiseKeypair::generate().public;
    iut.send(gk.connect_command(1, Some(&wrong))).await;
    let mut conn = gk.accept().await;
    conn.login().await;
    iut.expect("connected").await;
    iut.shutdown().await;
}

#[tokio::test]
async fn tls_unknown_ca_is_a_tls_error() {
    let gk = Gatekeeper::start(TransportKind::Tls).await;
    let mut iut = Iut::spawn(&[]).await;
    let mut cmd = gk.connect_command(1, None);
    cmd["ca_pem"] = json!(gatecheck::transport::TlsIdentity::generate("x.test").ca_pem);
    iut.send(cmd).await;
    let (tcp, _) = gk.listener.accept().await.expect("accept");
    let config = gatecheck::transport::server_config(&gk.tls, false);
    assert!(gatecheck::transport::tls_accept(tcp, config).await.is_err());
    assert_eq!(iut.expect("error").await["code"], "tls");
    iut.shutdown().await;
}

#[tokio::test]
async fn missing_plain_closes_without_credentials() {
    let gk = Gatekeeper::start(TransportKind::Noise).await;
    let mut iut = Iut::spawn(&[]).await;
    iut.send(gk.connect_command(1, None)).await;
    let mut conn = gk.accept().await;
    assert!(matches!(conn.next().await, Some(StreamEvent::Header(_))));
    conn.send(&format!(
        "{SERVER_HEADER}<stream:features><mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>\
         <mechanism>SCRAM-SHA-1</mechanism></mechanisms></stream:features>"
    ))
    .await;
    assert!(
        matches!(conn.next().await, Some(StreamEvent::Close)),
        "closing tag, no <auth>"
    );
    conn.send("</stream:stream>").await;
    assert_eq!(iut.expect("error").await["code"], "no-mechanism");
    let e = iut.expect("disconnected").await;
    assert_eq!(e["reason"], "auth-failed");
    iut.shutdown().await;
}

#[tokio::test]
async fn sasl_failure_is_auth_failed() {
    let gk = Gatekeeper::start(TransportKind::Noise).await;
    let mut iut = Iut::spawn(&[]).await;
    iut.send(gk.connect_command(1, None)).await;
    let mut conn = gk.accept().await;
    assert!(matches!(conn.next().await, Some(StreamEvent::Header(_))));
    conn.send(&format!("{SERVER_HEADER}{FEATURES_PLAIN}")).await;
    let _auth = conn.stanza().await;
    conn.send("<failure xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><not-authorized/></failure>")
        .await;
    assert!(
        matches!(conn.next().await, Some(StreamEvent::Close)),
        "nothing but the close"
    );
    conn.send("</stream:stream>").await;
    let e = iut.expect("error").await;
    assert_eq!(
        (e["code"].as_str(), e["seq"].as_i64()),
        (Some("auth-failed"), Some(1))
    );
    assert_eq!(iut.expect("disconnected").await["reason"], "auth-failed");
    iut.shutdown().await;
}
