//! The proxy role's mutants: for each, the one deviation it was made for, observed from
//! outside as a harness would (the client's side and the gatekeeper's side of the proxy).

#[path = "proxy_support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use gatecheck::transport::{NoiseKeypair, noise_accept};
use gatecheck::wire::{Element, Limits, Node, parse_fragment};
use support::*;

const FIVE_S: Duration = Duration::from_secs(5);

#[tokio::test]
async fn no_proxy_header_starts_with_the_noise_intro() {
    let gatekeeper = Upstream::new().await;
    let proxy = Proxy::start(
        Some("proxy-no-proxy-header"),
        &gatekeeper,
        &gatekeeper.key_base64(),
        false,
    )
    .await;
    let (_client, _) = proxy.connect_noise().await;
    let (mut tcp, _) = gatekeeper.accept_raw(LIMIT).await.expect("upstream");
    assert_eq!(read_intro(&mut tcp).await, NOISE_INTRO);
}

#[tokio::test]
async fn wrong_address_names_the_proxy_instead_of_the_client() {
    let p = Pair::start(Some("proxy-wrong-address")).await;
    assert_ne!(p.header, expected_header(p.client_addr, p.proxy.addr));
    // The source is the proxy's own end of the upstream connection.
    assert_eq!(p.header, expected_header(p.up_from, p.proxy.addr));
}

#[tokio::test]
async fn header_tlv_makes_the_header_longer() {
    let p = Pair::start(Some("proxy-header-tlv")).await;
    let len = u16::from_be_bytes([p.header[14], p.header[15]]);
    assert!(len > 12, "length {len}");
    // The addresses are right; only the length and what follows them differ.
    let expected = expected_header(p.client_addr, p.proxy.addr);
    assert_eq!(&p.header[..14], &expected[..14]);
    assert_eq!(&p.header[16..28], &expected[16..28]);
    assert_eq!(p.header[28], 0x02, "PP2_TYPE_AUTHORITY");
}

#[tokio::test]
async fn early_upstream_connects_before_any_client_handshake() {
    let gatekeeper = Upstream::new().await;
    let proxy = Proxy::start(
        Some("proxy-early-upstream"),
        &gatekeeper,
        &gatekeeper.key_base64(),
        false,
    )
    .await;
    let _idle = connect(proxy.addr).await;
    assert!(
        gatekeeper
            .accept_raw(Duration::from_secs(3))
            .await
            .is_some(),
        "an upstream connection for a client that never completed its handshake"
    );
}

#[tokio::test]
async fn accepts_any_upstream_key_relays_to_an_impostor() {
    let gatekeeper = Upstream::new().await;
    let pinned = NoiseKeypair::generate().public_base64();
    let proxy = Proxy::start(
        Some("proxy-accepts-any-upstream-key"),
        &gatekeeper,
        &pinned,
        false,
    )
    .await;
    let (mut client, _) = proxy.connect_noise().await;
    let (mut tcp, _) = gatekeeper.accept_raw(LIMIT).await.expect("upstream");
    let _ = read_proxy_header(&mut tcp).await;
    let e = noise_accept(tcp, &gatekeeper.key)
        .await
        .expect("handshake completes");
    let mut up = Peer::new(e.reader, e.writer);
    client.send(CLIENT_HEADER).await;
    up.expect(CLIENT_HEADER).await;
}

#[tokio::test]
async fn keeps_upstream_after_the_client_left() {
    let mut p = Pair::start(Some("proxy-keeps-upstream")).await;
    p.login().await;
    let Pair { client, mut up, .. } = p;
    drop(client);
    let (bytes, ended) = up.collect(Duration::from_secs(6)).await;
    assert!(!ended, "closed within 6 s");
    assert!(bytes.is_empty(), "{:?}", String::from_utf8_lossy(&bytes));
}

#[tokio::test]
async fn swallows_the_gatekeepers_stream_error() {
    let mut p = Pair::start(Some("proxy-swallows-stream-error")).await;
    p.login().await;
    p.up.send(format!(
        "<stream:error><conflict xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></stream:error>{CLOSE}"
    ))
    .await;
    p.up.shutdown().await;
    let got = p.client.until_eof(FIVE_S).await.expect("closed");
    assert_eq!(got, CLOSE.as_bytes(), "no stream error before the close");
}

/// Parses a stanza sent in a `jabber:client` stream, attributes sorted (the infoset has no
/// attribute order).
fn infoset(xml: &[u8]) -> Element {
    fn sorted(mut e: Element) -> Element {
        e.attrs.sort();
        for child in &mut e.children {
            if let Node::Element(c) = child {
                *c = sorted(std::mem::take(c));
            }
        }
        e
    }
    let wrapped = [b"<w xmlns='jabber:client'>", xml, b"</w>"].concat();
    sorted(parse_fragment(&wrapped, &Limits::harness_ceilings()).expect("well-formed"))
}

#[tokio::test]
async fn reserializes_envelopes_keeping_their_infoset() {
    let mut p = Pair::start(Some("proxy-reserializes-envelope")).await;
    p.login().await;
    let sent = envelope_message("m1");
    p.client.send(&sent).await;
    let got =
        p.up.read_through(b"</message>", LIMIT)
            .await
            .expect("forwarded");
    assert_ne!(got, sent.as_bytes(), "the envelope's bytes changed");
    assert_eq!(
        infoset(&got),
        infoset(sent.as_bytes()),
        "but not its infoset"
    );
}

#[tokio::test]
async fn adds_an_attribute_to_messages() {
    let mut p = Pair::start(Some("proxy-adds-attribute")).await;
    p.login().await;
    let sent = envelope_message("m1");
    p.client.send(&sent).await;
    let got =
        p.up.read_through(b"</message>", LIMIT)
            .await
            .expect("forwarded");
    let text = String::from_utf8_lossy(&got);
    assert!(text.contains("data-proxy-client="), "{text}");
}

#[tokio::test]
async fn answers_disco_itself_with_a_feature_the_client_lacks() {
    let mut p = Pair::start(Some("proxy-answers-disco")).await;
    p.login().await;
    let get = "<iq type='get' id='disco1' from='gk.gatecheck.test' \
        to='alice@gk.gatecheck.test/r'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>";
    p.up.send(get).await;
    let answer = p.up.read_through(b"</iq>", LIMIT).await.expect("an answer");
    let text = String::from_utf8_lossy(&answer);
    assert!(text.contains("urn:xmpp:jingle:1"), "{text}");
    let (down, _) = p.client.collect(Duration::from_secs(1)).await;
    assert!(down.is_empty(), "the client never saw the request");
}

#[tokio::test]
async fn ignores_opt_in() {
    let mut p = Pair::start(Some("proxy-ignores-opt-in")).await;
    p.open().await;
    let bob = auth("bob");
    p.client.send(&bob).await;
    p.up.expect(&bob).await;
}

#[tokio::test]
async fn forwards_malformed_input() {
    let mut p = Pair::start(Some("proxy-forwards-malformed")).await;
    p.open().await;
    let bad = "<message><body>x</message>";
    p.client.send(bad).await;
    p.up.expect(bad).await;
}

#[tokio::test]
async fn delays_each_stanza() {
    let mut p = Pair::start(Some("proxy-delays")).await;
    p.login().await;
    let sent = envelope_message("m1");
    let started = Instant::now();
    p.client.send(&sent).await;
    p.up.expect(&sent).await;
    assert!(
        started.elapsed() > Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn trims_body_text_both_ways_leaving_envelopes_alone() {
    let mut p = Pair::start(Some("proxy-trims-body")).await;
    p.login().await;
    let envelope = envelope_message("m1");
    let sent = envelope.replace("<store", "<body>  see you\n</body><store");
    p.client.send(&sent).await;
    p.up.expect(sent.replace("<body>  see you\n</body>", "<body>see you</body>"))
        .await;
    let down = "<message from='bob@gk.gatecheck.test/b' type='chat'><body> hi </body></message>";
    p.up.send(down).await;
    p.client.expect(down.replace(" hi ", "hi")).await;
}

#[tokio::test]
async fn rewrites_auth_with_the_jid_as_authzid() {
    let mut p = Pair::start(Some("proxy-rewrites-auth")).await;
    p.open().await;
    p.client.send(auth("alice")).await;
    let got =
        p.up.read_through(b"</auth>", LIMIT)
            .await
            .expect("forwarded");
    let text = String::from_utf8_lossy(&got);
    let b64 = text
        .split_once('>')
        .and_then(|(_, rest)| rest.strip_suffix("</auth>"))
        .expect("an <auth> with text");
    let message =
        base64::Engine::decode(&base64::engine::general_purpose::STANDARD, b64).expect("base64");
    assert_eq!(message, b"alice@gk.gatecheck.test\0alice\0secret", "{text}");
}

#[tokio::test]
async fn pings_upstream_for_a_keepalive_and_drops_the_answer() {
    let mut p = Pair::start(Some("proxy-pings-upstream")).await;
    p.login().await;
    p.client.send(" ").await;
    let ping = p.up.read_through(b"</iq>", LIMIT).await.expect("a ping");
    let text = String::from_utf8_lossy(&ping).into_owned();
    assert!(text.contains("<ping xmlns='urn:xmpp:ping'/>"), "{text}");
    let id = text
        .split_once("id='")
        .and_then(|(_, rest)| rest.split_once('\''))
        .map(|(id, _)| id)
        .expect("an id");
    p.up.send(format!(
        "<iq type='result' id='{id}' from='gk.gatecheck.test'/>"
    ))
    .await;
    let (down, _) = p.client.collect(Duration::from_secs(1)).await;
    assert!(down.is_empty(), "{:?}", String::from_utf8_lossy(&down));
}

#[tokio::test]
async fn drops_the_clients_presence() {
    let mut p = Pair::start(Some("proxy-drops-presence")).await;
    p.login().await;
    let message = envelope_message("m1");
    p.client.send(format!("<presence/>{message}")).await;
    p.up.expect(&message).await;
}

#[tokio::test]
async fn buffers_for_an_offline_client_and_redelivers() {
    let mut p = Pair::start(Some("proxy-buffers-offline")).await;
    p.login().await;
    p.client.shutdown().await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let late =
        "<message from='bob@gk.gatecheck.test/b' id='late' type='chat'><body>late</body></message>";
    p.up.send(late).await;
    // The upstream stream stays open a while, then closes within PROXY-4's bound.
    let started = Instant::now();
    let closed = p.up.until_eof(FIVE_S).await.expect("closed");
    assert_eq!(closed, CLOSE.as_bytes());
    assert!(
        started.elapsed() > Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    // The account's next connection gets the message after its bind result.
    let (client, client_addr) = p.proxy.connect_noise().await;
    let (header, up_from, up) = p.gatekeeper.accept().await;
    let mut next = Pair {
        client,
        client_addr,
        up,
        header,
        up_from,
        ..p
    };
    next.login().await;
    next.client.expect(late).await;
}

#[tokio::test]
async fn tight_limit_refuses_a_stanza_within_the_floor() {
    let mut p = Pair::start(Some("proxy-tight-limit")).await;
    p.login().await;
    let big = format!(
        "<message to='bob@gk.gatecheck.test'><body>{}</body></message>",
        "a".repeat(200 << 10)
    );
    p.client.send(&big).await;
    let got = p.client.until_eof(FIVE_S).await.expect("closed");
    assert!(String::from_utf8_lossy(&got).contains("policy-violation"));
}

#[tokio::test]
async fn refuses_whitespace_between_its_bound_clients_stanzas() {
    let mut p = Pair::start(Some("proxy-refuses-whitespace")).await;
    p.login().await;
    p.client.send(" \n ").await;
    let got = p.client.until_eof(FIVE_S).await.expect("closed");
    assert!(
        String::from_utf8_lossy(&got).contains("not-well-formed"),
        "{}",
        String::from_utf8_lossy(&got)
    );
}

#[tokio::test]
async fn bounces_an_error_stanza_instead_of_forwarding_it() {
    let mut p = Pair::start(Some("proxy-bounces-errors")).await;
    p.login().await;
    let error = "<message type='error' id='e1' to='bob@gk.gatecheck.test'><error type='cancel'>\
        <recipient-unavailable xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></message>";
    p.client.send(error).await;
    let answer = p
        .client
        .read_through(b"</message>", LIMIT)
        .await
        .expect("an answer");
    let text = String::from_utf8_lossy(&answer);
    assert!(
        text.contains("type=\"error\"") && text.contains("undefined-condition"),
        "{text}"
    );
    let (up, _) = p.up.collect(Duration::from_millis(300)).await;
    assert!(up.is_empty(), "forwarded: {}", String::from_utf8_lossy(&up));
}
