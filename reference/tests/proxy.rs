//! The proxy role end to end (SPEC.md §15): the built binary between an in-process client and
//! an in-process fake gatekeeper, on real loopback sockets. Every byte the proxy forwards is
//! compared with what was sent.

#[path = "proxy_support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use support::*;

const FIVE_S: Duration = Duration::from_secs(5);

fn stream_error(condition: &str) -> String {
    format!(
        "<stream:error><{condition} xmlns=\"urn:ietf:params:xml:ns:xmpp-streams\"/></stream:error>"
    )
}

#[tokio::test]
async fn relays_a_login_and_a_session_byte_for_byte() {
    let mut p = Pair::start(None).await;
    // PROXY-2: the header names the client's address and the proxy's, nothing else.
    assert_eq!(p.header, expected_header(p.client_addr, p.proxy.addr));
    p.login().await;

    // Envelopes both ways, exactly as written (PROXY-6/7/8).
    let out = envelope_message("m1");
    p.client.send(&out).await;
    p.up.expect(&out).await;
    let inbound =
        envelope_message("m2").replace("<message ", "<message from='bob@gk.gatecheck.test/phone' ");
    p.up.send(&inbound).await;
    p.client.expect(&inbound).await;

    // A whitespace keepalive goes up at once, on its own.
    p.client.send(" \n").await;
    p.up.expect(" \n").await;

    // Disco (PROXY-10): the request goes down, the client's answer up, both unchanged.
    let get = "<iq type='get' id='disco1' from='gk.gatecheck.test' \
        to='alice@gk.gatecheck.test/r'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>";
    p.up.send(get).await;
    p.client.expect(get).await;
    let answer = "<iq type='result' id='disco1' to='gk.gatecheck.test'><query \
        xmlns='http://jabber.org/protocol/disco#info'><identity category='client' \
        type='phone'/><feature var='eu.siacs.conversations.axolotl'/></query></iq>";
    p.client.send(answer).await;
    p.up.expect(answer).await;

    // A stanza split across many writes arrives whole and unchanged.
    let split = "<presence><status>hé, wörld</status></presence>";
    for chunk in split.as_bytes().chunks(3) {
        p.client.send(chunk).await;
    }
    p.up.expect(split).await;

    // The client closes: its closing tag goes up, the gatekeeper's comes down, both end.
    p.client.send(CLOSE).await;
    p.up.expect(CLOSE).await;
    p.up.send(CLOSE).await;
    p.client.expect(CLOSE).await;
    assert_eq!(p.client.until_eof(FIVE_S).await, Some(Vec::new()));
    assert_eq!(p.up.until_eof(FIVE_S).await, Some(Vec::new()));
}

#[tokio::test]
async fn tls_clients_are_relayed_with_their_address() {
    let gatekeeper = Upstream::new().await;
    let proxy = Proxy::start(None, &gatekeeper, &gatekeeper.key_base64(), true).await;
    assert!(
        proxy
            .ca_pem
            .as_deref()
            .unwrap()
            .starts_with("-----BEGIN CERTIFICATE-----")
    );
    let (mut client, client_addr, alpn) = proxy.connect_tls().await;
    assert_eq!(alpn.as_deref(), Some(&b"xmpp-client"[..]));
    let (header, _, mut up) = gatekeeper.accept().await;
    assert_eq!(
        header,
        expected_header(client_addr, proxy.tls_addr.unwrap())
    );
    client.send(CLIENT_HEADER).await;
    up.expect(CLIENT_HEADER).await;
    up.send(format!("{SERVER_HEADER}{SASL_FEATURES}")).await;
    client
        .expect(format!("{SERVER_HEADER}{SASL_FEATURES}"))
        .await;
}

#[tokio::test]
async fn upstream_is_opened_only_after_the_client_handshake() {
    let gatekeeper = Upstream::new().await;
    let proxy = Proxy::start(None, &gatekeeper, &gatekeeper.key_base64(), false).await;
    // A TCP connection without a handshake opens nothing upstream (PROXY-3).
    let _idle = connect(proxy.addr).await;
    assert!(
        gatekeeper
            .accept_raw(Duration::from_millis(1500))
            .await
            .is_none()
    );
    // A completed handshake opens exactly one.
    let (_client, _) = proxy.connect_noise().await;
    let (_header, _, _up) = gatekeeper.accept().await;
    assert!(
        gatekeeper
            .accept_raw(Duration::from_secs(1))
            .await
            .is_none()
    );
}

#[tokio::test]
async fn users_who_did_not_opt_in_are_refused() {
    let mut p = Pair::start(None).await;
    p.open().await;
    p.client.send(auth("bob")).await;
    p.client
        .expect("<failure xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><not-authorized/></failure></stream:stream>")
        .await;
    assert_eq!(p.client.until_eof(FIVE_S).await, Some(Vec::new()));
    // Nothing of the <auth> upstream: only the closing tag.
    assert_eq!(
        p.up.until_eof(FIVE_S).await.as_deref(),
        Some(CLOSE.as_bytes())
    );
}

#[tokio::test]
async fn faulty_client_input_is_refused_and_never_forwarded() {
    let gatekeeper = Upstream::new().await;
    let proxy = Proxy::start(None, &gatekeeper, &gatekeeper.key_base64(), false).await;
    let big = format!(
        "<message to='bob@gk.gatecheck.test'><body>{}</body></message>",
        "a".repeat(256 << 10)
    );
    let cases: Vec<(String, &str)> = vec![
        ("<message><body>x</message>".into(), "not-well-formed"),
        ("<!-- hello -->".into(), "restricted-xml"),
        ("<?pi data?>".into(), "restricted-xml"),
        (
            "<message><body>&foo;</body></message>".into(),
            "restricted-xml",
        ),
        ("<x:message/>".into(), "bad-namespace-prefix"),
        ("<foo/>".into(), "unsupported-stanza-type"),
        (big, "policy-violation"),
    ];
    for (input, condition) in cases {
        let (mut client, _) = proxy.connect_noise().await;
        let (_, _, mut up) = gatekeeper.accept().await;
        client.send(CLIENT_HEADER).await;
        up.expect(CLIENT_HEADER).await;
        let server = format!("{SERVER_HEADER}{SASL_FEATURES}");
        up.send(&server).await;
        client.expect(&server).await;
        client.send(&input).await;
        let refusal = format!("{}{CLOSE}", stream_error(condition));
        let got = client
            .until_eof(FIVE_S)
            .await
            .expect("the client is closed");
        assert_eq!(String::from_utf8_lossy(&got), refusal, "input {input:.60}");
        assert_eq!(
            up.until_eof(FIVE_S).await.as_deref(),
            Some(CLOSE.as_bytes()),
            "input {input:.60}"
        );
    }

    // A faulty header: the proxy's own header first, then the error; nothing upstream.
    let (mut client, _) = proxy.connect_noise().await;
    let (_, _, mut up) = gatekeeper.accept().await;
    client
        .send(CLIENT_HEADER.replace("jabber:client", "jabber:server"))
        .await;
    let got = client.until_eof(FIVE_S).await.expect("closed");
    let text = String::from_utf8_lossy(&got);
    assert!(
        text.starts_with("<?xml version='1.0'?><stream:stream "),
        "{text}"
    );
    assert!(
        text.ends_with(&format!("{}{CLOSE}", stream_error("invalid-namespace"))),
        "{text}"
    );
    assert_eq!(up.until_eof(FIVE_S).await, Some(Vec::new()));
}

#[tokio::test]
async fn a_floor_sized_stanza_passes_promptly() {
    let mut p = Pair::start(None).await;
    p.login().await;
    // 256 KiB exactly (STREAM-31), within 1 s (PROXY-15).
    let head = "<message to='bob@gk.gatecheck.test' id='big' type='chat'><body>";
    let middle = "</body><x xmlns='urn:example:pad'>";
    let tail = "</x></message>";
    let first = 200_000;
    let pad = (256 << 10) - head.len() - first - middle.len() - tail.len();
    let big = format!(
        "{head}{}{middle}{}{tail}",
        "A".repeat(first),
        "B".repeat(pad)
    );
    assert_eq!(big.len(), 256 << 10);
    let sent = Instant::now();
    p.client.send(&big).await;
    p.up.expect(&big).await;
    assert!(
        sent.elapsed() < Duration::from_secs(1),
        "{:?}",
        sent.elapsed()
    );
    // And the other way.
    let down = big.replace("to='bob@gk.gatecheck.test'", "to='alice@gk.gatecheck.test'");
    p.up.send(&down).await;
    p.client.expect(&down).await;
}

#[tokio::test]
async fn the_gatekeepers_stream_error_goes_down_before_the_close() {
    let mut p = Pair::start(None).await;
    p.login().await;
    let error = format!("{}{CLOSE}", stream_error("conflict"));
    p.up.send(&error).await;
    p.up.shutdown().await;
    let started = Instant::now();
    let got = p
        .client
        .until_eof(FIVE_S)
        .await
        .expect("the client is closed within 5 s");
    assert_eq!(String::from_utf8_lossy(&got), error);
    assert!(started.elapsed() < FIVE_S);
    // The client's closing tag was owed upstream.
    assert_eq!(
        p.up.until_eof(FIVE_S).await.as_deref(),
        Some(CLOSE.as_bytes())
    );
}

#[tokio::test]
async fn a_client_that_leaves_closes_its_upstream() {
    let mut p = Pair::start(None).await;
    p.login().await;
    let Pair { client, mut up, .. } = p;
    drop(client);
    let got = up
        .until_eof(FIVE_S)
        .await
        .expect("upstream closed within 5 s");
    assert_eq!(got, CLOSE.as_bytes());
}

#[tokio::test]
async fn a_gatekeeper_with_another_key_is_refused() {
    let gatekeeper = Upstream::new().await;
    let other = gatecheck::transport::NoiseKeypair::generate().public_base64();
    let proxy = Proxy::start(None, &gatekeeper, &other, false).await;
    let (mut client, _) = proxy.connect_noise().await;
    let (mut tcp, _) = gatekeeper
        .accept_raw(LIMIT)
        .await
        .expect("upstream connection");
    let _header = read_proxy_header(&mut tcp).await;
    let handshake = gatecheck::transport::noise_accept(tcp, &gatekeeper.key).await;
    assert!(handshake.is_err(), "the proxy must abort before message 3");
    assert_eq!(client.until_eof(FIVE_S).await, Some(Vec::new()));
}

#[tokio::test]
async fn the_proxy_ends_with_its_stdin_and_writes_nothing_on_stdout() {
    let gatekeeper = Upstream::new().await;
    let mut proxy = Proxy::start(None, &gatekeeper, &gatekeeper.key_base64(), false).await;
    let (_client, _) = proxy.connect_noise().await;
    let (_, _, _up) = gatekeeper.accept().await;
    let (status, stdout) = proxy.stop_by_eof().await;
    assert!(status.success(), "{status}");
    assert!(stdout.is_empty(), "{:?}", String::from_utf8_lossy(&stdout));
}
