//! Test support: the reference binary under the driver protocol, and a tiny scripted gatekeeper.
#![allow(dead_code)] // each test file uses a different subset of these helpers

use std::process::Stdio;
use std::time::Duration;

use base64::Engine as _;
use gatecheck::transport::{
    Established, NoiseKeypair, TlsIdentity, TransportKind, noise_accept, server_config, tls_accept,
};
use gatecheck::wire::{Element, Framing, Limits, StreamEvent, StreamParser, ns};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::net::TcpListener;
use tokio::process::{Child, ChildStdin, ChildStdout};
use tokio::time::timeout;

pub const LIMIT: Duration = Duration::from_secs(10);
pub const DOMAIN: &str = "gk.gatecheck.test";
pub const SERVER_HEADER: &str = "<?xml version='1.0'?><stream:stream xmlns='jabber:client' \
    xmlns:stream='http://etherx.jabber.org/streams' from='gk.gatecheck.test' id='s1' version='1.0'>";
pub const FEATURES_PLAIN: &str = "<stream:features><mechanisms \
    xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><mechanism>PLAIN</mechanism></mechanisms></stream:features>";
pub const FEATURES_BIND: &str =
    "<stream:features><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></stream:features>";
pub const JID: &str = "alice@gk.gatecheck.test/res-1";

/// The reference binary, spoken to over the driver protocol.
pub struct Iut {
    child: Child,
    stdin: ChildStdin,
    stdout: Lines<BufReader<ChildStdout>>,
}

impl Iut {
    pub async fn spawn(args: &[&str]) -> Iut {
        let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_gatecheck-reference"))
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn the reference");
        let stdin = child.stdin.take().expect("stdin");
        let stdout = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let mut iut = Iut {
            child,
            stdin,
            stdout,
        };
        let ready = iut.event().await;
        assert_eq!(ready["event"], "ready", "{ready}");
        iut
    }

    pub async fn send(&mut self, command: Value) {
        let mut line = command.to_string();
        line.push('\n');
        self.stdin
            .write_all(line.as_bytes())
            .await
            .expect("write command");
        self.stdin.flush().await.expect("flush");
    }

    pub async fn send_line(&mut self, line: &str) {
        self.stdin
            .write_all(format!("{line}\n").as_bytes())
            .await
            .expect("write");
    }

    /// The next event line.
    pub async fn event(&mut self) -> Value {
        let line = timeout(LIMIT, self.stdout.next_line())
            .await
            .expect("an event in time")
            .expect("read stdout")
            .expect("stdout open");
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("event {line:?}: {e}"))
    }

    /// The next event, which must be named `name`.
    pub async fn expect(&mut self, name: &str) -> Value {
        let event = self.event().await;
        assert_eq!(event["event"], name, "unexpected event {event}");
        event
    }

    pub async fn shutdown(mut self) {
        self.send(json!({"cmd":"shutdown","seq":999})).await;
        let status = timeout(LIMIT, self.child.wait())
            .await
            .expect("exit in time")
            .expect("wait");
        assert!(status.success(), "{status}");
    }
}

/// A one-connection gatekeeper whose every byte the test scripts.
pub struct Gatekeeper {
    pub listener: TcpListener,
    pub kind: TransportKind,
    pub noise: NoiseKeypair,
    pub tls: TlsIdentity,
}

impl Gatekeeper {
    pub async fn start(kind: TransportKind) -> Gatekeeper {
        Gatekeeper {
            listener: TcpListener::bind("127.0.0.1:0").await.expect("bind"),
            kind,
            noise: NoiseKeypair::generate(),
            tls: TlsIdentity::generate(DOMAIN),
        }
    }

    /// The driver's `connect` for this server, pinning `pinned` (defaults to the right key).
    pub fn connect_command(&self, seq: i64, pinned: Option<&[u8]>) -> Value {
        let port = self.listener.local_addr().expect("addr").port();
        let key =
            base64::engine::general_purpose::STANDARD.encode(pinned.unwrap_or(&self.noise.public));
        json!({"cmd":"connect","seq":seq,"host":"127.0.0.1","port":port,"transport":self.kind,
               "domain":DOMAIN,"account":"alice","credential":"s3cret","server_key":key,
               "ca_pem":self.tls.ca_pem,"server_name":DOMAIN})
    }

    pub async fn accept(&self) -> Conn {
        let (tcp, _) = timeout(LIMIT, self.listener.accept())
            .await
            .expect("accept in time")
            .expect("accept");
        let est = match self.kind {
            TransportKind::Noise => noise_accept(tcp, &self.noise).await,
            TransportKind::Tls => tls_accept(tcp, server_config(&self.tls, false)).await,
        }
        .expect("server handshake");
        Conn {
            est,
            parser: new_parser(),
        }
    }
}

fn new_parser() -> StreamParser {
    StreamParser::new(Framing::Stream, Limits::harness_ceilings())
}

/// The server side of one connection.
pub struct Conn {
    pub est: Established,
    parser: StreamParser,
}

impl Conn {
    pub async fn send(&mut self, xml: &str) {
        self.est
            .writer
            .send(xml.as_bytes())
            .await
            .expect("server send");
    }

    /// The next parsed event from the client, or `None` at EOF. The client's OMEMO key
    /// publication (pubsub iqs, SPEC.md §9.1) is answered here and not returned: a node
    /// read finds nothing, a publication is accepted.
    pub async fn next(&mut self) -> Option<StreamEvent> {
        loop {
            let event = self.next_raw().await?;
            if let StreamEvent::Stanza(iq) = &event
                && let Some(answer) = pubsub_answer(iq)
            {
                // The client may be gone already (a test that closed the stream reads on
                // for the closing tag): an answer it cannot take is no failure.
                let _ = self.est.writer.send(answer.as_bytes()).await;
                continue;
            }
            return Some(event);
        }
    }

    /// After login, the client publishes its bundle, reads its device list back and
    /// publishes the list (E2EE-2, E2EE-3): answers those three, so that later reads see
    /// only what the test provokes.
    pub async fn key_publication(&mut self) {
        for _ in 0..3 {
            match self.next_raw().await {
                Some(StreamEvent::Stanza(iq)) => {
                    let answer = pubsub_answer(&iq)
                        .unwrap_or_else(|| panic!("expected a pubsub iq, got {}", iq.to_xml()));
                    self.send(&answer).await;
                }
                other => panic!("expected a pubsub iq, got {other:?}"),
            }
        }
    }

    /// The next parsed event from the client, pubsub iqs included.
    pub async fn next_raw(&mut self) -> Option<StreamEvent> {
        loop {
            if let Some(event) = self.parser.next_event().expect("client sent valid XML") {
                return Some(event);
            }
            let chunk = timeout(LIMIT, self.est.reader.recv())
                .await
                .expect("client data in time");
            match chunk {
                Ok(Some(bytes)) => self.parser.feed(&bytes),
                Ok(None) | Err(_) => return None,
            }
        }
    }

    pub async fn stanza(&mut self) -> Element {
        match self.next().await {
            Some(StreamEvent::Stanza(el)) => el,
            other => panic!("expected a stanza, got {other:?}"),
        }
    }

    /// Raw bytes until EOF (for checking what the client sends on its way out).
    pub async fn rest(&mut self) -> String {
        let mut out = Vec::new();
        loop {
            match timeout(LIMIT, self.est.reader.recv())
                .await
                .expect("EOF in time")
            {
                Ok(Some(bytes)) => out.extend_from_slice(&bytes),
                Ok(None) | Err(_) => return String::from_utf8_lossy(&out).into_owned(),
            }
        }
    }

    /// Runs the server side of a correct login; returns the auth element.
    pub async fn login(&mut self) -> Element {
        let header = match self.next().await {
            Some(StreamEvent::Header(h)) => h,
            other => panic!("expected the client's header, got {other:?}"),
        };
        assert_eq!(header.default_ns, ns::JABBER_CLIENT);
        assert_eq!(header.to.as_deref(), Some(DOMAIN));
        self.send(&format!("{SERVER_HEADER}{FEATURES_PLAIN}")).await;
        let auth = self.stanza().await;
        assert!(auth.is("auth", ns::SASL), "{auth:?}");
        self.send("<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>")
            .await;
        self.parser = new_parser();
        assert!(matches!(self.next().await, Some(StreamEvent::Header(_))));
        self.send(&format!("{SERVER_HEADER}{FEATURES_BIND}")).await;
        let bind = self.stanza().await;
        assert!(bind.is("iq", ns::JABBER_CLIENT) && bind.child("bind", ns::BIND).is_some());
        let id = bind.attr("id").expect("bind id").to_owned();
        self.send(&format!(
            "<iq type='result' id='{id}'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><jid>{JID}</jid></bind></iq>"
        ))
        .await;
        let presence = self.stanza().await;
        assert!(presence.is("presence", ns::JABBER_CLIENT), "{presence:?}");
        auth
    }
}

/// The answer to a pubsub iq of the client's: `None` for any other stanza.
fn pubsub_answer(iq: &Element) -> Option<String> {
    if !iq.is("iq", ns::JABBER_CLIENT)
        || iq
            .child("pubsub", "http://jabber.org/protocol/pubsub")
            .is_none()
    {
        return None;
    }
    let id = iq.attr("id").unwrap_or_default();
    Some(match iq.attr("type") {
        Some("set") => format!("<iq type='result' id='{id}'/>"),
        _ => format!(
            "<iq type='error' id='{id}'><error type='cancel'>\
             <item-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>"
        ),
    })
}

/// Starts a gatekeeper and a reference client (with `args`) and logs in; returns both.
pub async fn logged_in(kind: TransportKind, args: &[&str]) -> (Iut, Conn) {
    let gk = Gatekeeper::start(kind).await;
    let mut iut = Iut::spawn(args).await;
    iut.send(gk.connect_command(1, None)).await;
    let mut conn = gk.accept().await;
    conn.login().await;
    let connected = iut.expect("connected").await;
    assert_eq!(connected["seq"], 1);
    assert_eq!(connected["jid"], JID);
    conn.key_publication().await;
    (iut, conn)
}
