//! The session carrying out OMEMO's actions, over a Noise transport on `tokio::io::duplex`.

use gatecheck::transport::{NoiseKeypair, SecureReader, SecureWriter, noise_accept, noise_connect};
use gatecheck::wire::{Element, Framing, Limits, StreamEvent, StreamParser, ns};
use rand::SeedableRng as _;
use serde_json::{Value, json};

use super::*;
use crate::client::stream::XmlStream;

const HEADER: &str = "<?xml version='1.0'?><stream:stream xmlns='jabber:client' \
    xmlns:stream='http://etherx.jabber.org/streams' from='gk.test' id='s1' version='1.0'>";

/// The gatekeeper's end of the duplex.
struct Server {
    reader: SecureReader,
    writer: SecureWriter,
    parser: StreamParser,
}

impl Server {
    async fn send(&mut self, xml: &str) {
        self.writer.send(xml.as_bytes()).await.expect("server send");
    }

    async fn stanza(&mut self) -> Element {
        loop {
            if let Some(StreamEvent::Stanza(el)) = self.parser.next_event().expect("valid XML") {
                return el;
            }
            let bytes = tokio::time::timeout(std::time::Duration::from_secs(5), self.reader.recv())
                .await
                .expect("in time")
                .expect("recv")
                .expect("open");
            self.parser.feed(&bytes);
        }
    }
}

async fn bound() -> (Session, Server) {
    let (client_end, server_end) = tokio::io::duplex(1 << 16);
    let server_key = NoiseKeypair::generate();
    let public = server_key.public.clone();
    let accept = tokio::spawn(async move { noise_accept(server_end, &server_key).await });
    let client = noise_connect(client_end, &NoiseKeypair::generate(), &public)
        .await
        .expect("client handshake");
    let server = accept.await.expect("join").expect("server handshake");
    let params: ConnectParams = serde_json::from_value(json!({
        "host": "127.0.0.1", "port": 1, "transport": "noise", "domain": "gk.test",
        "account": "alice", "credential": "x"
    }))
    .expect("params");
    let stream = XmlStream::new(client.reader, client.writer, Mutant::None);
    let mut session = Session::new(stream, "alice@gk.test/phone".into(), &params);
    let mut server = Server {
        reader: server.reader,
        writer: server.writer,
        parser: StreamParser::new(Framing::Fragments, Limits::harness_ceilings()),
    };
    server.send(HEADER).await;
    // Login would have read the header.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
    let header = session.stream.next_event(deadline).await.expect("header");
    assert!(matches!(header, StreamEvent::Header(_)));
    (session, server)
}

fn omemo() -> Omemo {
    Omemo::with_seed(
        Mutant::None,
        1001,
        [1; 32],
        rand::rngs::StdRng::seed_from_u64(1),
    )
}

fn lines(events: &mut EventSink) -> Vec<Value> {
    events
        .take_lines()
        .iter()
        .map(|l| serde_json::from_str(l).expect("json"))
        .collect()
}

/// Feeds the session whatever the server wrote until `n` events or stanzas were handled.
async fn pump(session: &mut Session, omemo: &mut Omemo, events: &mut EventSink) {
    let inbound = tokio::time::timeout(std::time::Duration::from_secs(5), session.recv_inbound())
        .await
        .expect("in time");
    session
        .on_inbound(inbound, omemo, events)
        .await
        .expect("session goes on");
}

#[tokio::test]
async fn events_and_stanzas_keep_their_order() {
    let (mut session, mut server) = bound().await;
    let mut events = EventSink::memory();
    let message = Element::new("message", ns::JABBER_CLIENT).with_attr("id", "m1");
    let actions = vec![
        Action::Emit(Event::IdentityChanged {
            peer: "bob@gk.test".into(),
            device_id: 7,
        }),
        Action::Deliver {
            stanza: message,
            seq: 3,
            id: "m1".into(),
        },
    ];
    session
        .perform(actions, &mut events)
        .await
        .expect("written");
    assert_eq!(
        lines(&mut events),
        [
            json!({"event":"identity_changed","peer":"bob@gk.test","device_id":7}),
            json!({"event":"sent","seq":3,"id":"m1"}),
        ]
    );
    // The client's stream header, then the message.
    let got = server.stanza().await;
    assert_eq!(got.attr("id"), Some("m1"));
    assert_eq!(got.attr("from"), None, "STANZA-20");
}

#[tokio::test]
async fn a_failed_write_answers_send_failed() {
    let (mut session, server) = bound().await;
    drop(server);
    let mut events = EventSink::memory();
    let message = Element::new("message", ns::JABBER_CLIENT);
    let actions = vec![
        Action::Deliver {
            stanza: message.clone(),
            seq: 1,
            id: "a".into(),
        },
        Action::Deliver {
            stanza: message,
            seq: 2,
            id: "b".into(),
        },
    ];
    // The first write may still land in the duplex buffer; every seq is answered once.
    let _ = session.perform(actions, &mut events).await;
    let _ = session.perform(Vec::new(), &mut events).await;
    let got = lines(&mut events);
    let seqs: Vec<i64> = got.iter().filter_map(|e| e["seq"].as_i64()).collect();
    assert_eq!(seqs, [1, 2], "{got:?}");
}

#[tokio::test]
async fn keys_are_published_and_disco_lists_omemo_and_receipts() {
    let (mut session, mut server) = bound().await;
    let mut omemo = omemo();
    let mut events = EventSink::memory();
    let actions = omemo.on_bound(session.jid(), "gk.test", tokio::time::Instant::now());
    session
        .perform(actions, &mut events)
        .await
        .expect("written");
    let bundle = server.stanza().await;
    assert_eq!(bundle.attr("type"), Some("set"));
    let read = server.stanza().await;
    assert_eq!(read.attr("type"), Some("get"));
    // The gatekeeper has no list yet.
    let id = read.attr("id").unwrap_or_default();
    server
        .send(&format!(
            "<iq type='error' id='{id}' from='alice@gk.test'><error type='cancel'>\
             <item-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>\
             <iq type='get' id='d1' from='gk.test'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>"
        ))
        .await;
    pump(&mut session, &mut omemo, &mut events).await;
    let publish = server.stanza().await;
    assert_eq!(publish.attr("type"), Some("set"), "E2EE-2: {publish:?}");
    let disco = server.stanza().await;
    let vars: Vec<&str> = disco
        .child("query", ns::DISCO_INFO)
        .expect("query")
        .children_named("feature", ns::DISCO_INFO)
        .filter_map(|f| f.attr("var"))
        .collect();
    assert!(
        vars.contains(&"eu.siacs.conversations.axolotl"),
        "STANZA-28: {vars:?}"
    );
    assert!(vars.contains(&"urn:xmpp:receipts"), "STANZA-28: {vars:?}");
    // A plaintext message is reported, not surfaced.
    server
        .send("<message type='chat' from='bob@gk.test/x' id='p'><body>hi</body></message>")
        .await;
    pump(&mut session, &mut omemo, &mut events).await;
    assert_eq!(
        lines(&mut events),
        [json!({"event":"decrypt_failed","from":"bob@gk.test/x","id":"p","reason":"unencrypted"})]
    );
}
