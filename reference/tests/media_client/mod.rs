//! Test support for the client's media: the reference client with an environment, Bob (a
//! `gatecheck::e2ee::Device` behind the scripted gatekeeper) sending and receiving
//! references, scripted HTTPS media hosts, and XEP-0454 objects made with `aes-gcm` here.
#![allow(dead_code)] // each test file uses a different subset of these helpers

use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aes_gcm::aead::consts::U12;
use aes_gcm::aes::Aes256;
use aes_gcm::{AeadInOut, AesGcm, KeyInit, Nonce, Tag};
use gatecheck::e2ee::{
    Address, Bundle, DEVICELIST_NODE, Device, DeviceList, Envelope, NS, bundle_node,
    parse_bundle_node,
};
use gatecheck::transport::{TlsIdentity, server_config};
use gatecheck::wire::{Element, StreamEvent, ns};
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};
use tokio::io::{AsyncBufReadExt, AsyncReadExt as _, AsyncWriteExt, BufReader, Lines};
use tokio::net::TcpListener;
use tokio::process::{Child, ChildStdin, ChildStdout};
use tokio::time::timeout;

use crate::common::{Conn, DOMAIN, Gatekeeper};

pub const LIMIT: Duration = Duration::from_secs(30);
pub const ALICE_BARE: &str = "alice@gk.gatecheck.test";
pub const BOB_BARE: &str = "bob@gk.gatecheck.test";
pub const BOB_FULL: &str = "bob@gk.gatecheck.test/phone";
pub const BOB_ID: u32 = 2002;
const PUBSUB: &str = "http://jabber.org/protocol/pubsub";

/// The reference client, with an environment of its own.
pub struct Driver {
    child: Child,
    stdin: ChildStdin,
    stdout: Lines<BufReader<ChildStdout>>,
}

impl Driver {
    pub async fn spawn(args: &[&str], env: &[(&str, String)]) -> Driver {
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_gatecheck-reference"));
        cmd.args(args)
            .env_remove("GATECHECK_PROVIDER_URL")
            .env_remove("GATECHECK_PROVIDER_CA");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn the reference");
        let stdin = child.stdin.take().expect("stdin");
        let stdout = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let mut driver = Driver {
            child,
            stdin,
            stdout,
        };
        let ready = driver.expect("ready").await;
        assert!(
            ready["features"]
                .as_array()
                .is_some_and(|f| f.contains(&json!("media"))),
            "{ready}"
        );
        driver
    }

    pub async fn send(&mut self, command: Value) {
        let line = format!("{command}\n");
        self.stdin.write_all(line.as_bytes()).await.expect("write");
        self.stdin.flush().await.expect("flush");
    }

    pub async fn event(&mut self) -> Value {
        let line = timeout(LIMIT, self.stdout.next_line())
            .await
            .expect("an event in time")
            .expect("read stdout")
            .expect("stdout open");
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("event {line:?}: {e}"))
    }

    pub async fn expect(&mut self, name: &str) -> Value {
        let event = self.event().await;
        assert_eq!(event["event"], name, "unexpected event {event}");
        event
    }

    /// The next event, if one comes within `wait`.
    pub async fn event_within(&mut self, wait: Duration) -> Option<Value> {
        let line = timeout(wait, self.stdout.next_line()).await.ok()?;
        serde_json::from_str(&line.ok()??).ok()
    }

    pub async fn shutdown(mut self) {
        self.send(json!({"cmd":"shutdown","seq":999})).await;
        let _ = timeout(LIMIT, self.child.wait()).await;
    }
}

/// The client's OMEMO device as its key publication showed it.
pub struct Alice {
    pub device_id: u32,
    pub bundle: Bundle,
}

/// Connects the client to `gk` (trusting `media_ca` for media), logs in, answers its key
/// publication; its device.
pub async fn login(iut: &mut Driver, gk: &Gatekeeper, media_ca: Option<&str>) -> (Conn, Alice) {
    let mut command = gk.connect_command(1, None);
    if let Some(ca) = media_ca {
        command["media_ca_pem"] = ca.into();
    }
    iut.send(command).await;
    let mut conn = gk.accept().await;
    conn.login().await;
    iut.expect("connected").await;
    let (mut bundle, mut listed) = (None, false);
    while bundle.is_none() || !listed {
        let iq = next_stanza(&mut conn).await;
        let publish = iq
            .child("pubsub", PUBSUB)
            .and_then(|p| p.child("publish", PUBSUB));
        if let Some(publish) = publish {
            let node = publish.attr("node").unwrap_or_default();
            let payload = publish
                .child("item", PUBSUB)
                .and_then(|i| i.child_elements().next());
            if let Some(device_id) = parse_bundle_node(node) {
                bundle = payload.map(|p| Alice {
                    device_id,
                    bundle: Bundle::from_element(p).expect("a bundle"),
                });
            }
            listed |= node == DEVICELIST_NODE;
        }
        conn.send(&pep_answer(&iq, None)).await;
    }
    (conn, bundle.expect("the bundle"))
}

pub async fn next_stanza(conn: &mut Conn) -> Element {
    match conn.next_raw().await {
        Some(StreamEvent::Stanza(el)) => el,
        other => panic!("expected a stanza, got {other:?}"),
    }
}

/// The gatekeeper's answer to a pubsub iq: publications accepted; Bob's device list and
/// bundle when `bob` is given; nothing else found.
pub fn pep_answer(iq: &Element, bob: Option<&Device>) -> String {
    let id = iq.attr("id").unwrap_or_default();
    if iq.attr("type") == Some("set") {
        return format!("<iq type='result' id='{id}'/>");
    }
    let from = iq.attr("to").unwrap_or(ALICE_BARE);
    let node = iq
        .child("pubsub", PUBSUB)
        .and_then(|p| p.child("items", PUBSUB))
        .and_then(|i| i.attr("node"))
        .unwrap_or_default();
    let payload = match bob {
        Some(_) if from == BOB_BARE && node == DEVICELIST_NODE => Some(
            DeviceList {
                devices: vec![BOB_ID],
            }
            .to_element(),
        ),
        Some(bob) if from == BOB_BARE && node == bundle_node(BOB_ID) => {
            let bundle = bob.bundle();
            let first = bundle.prekeys.first().map(|(id, _)| *id);
            Some(bundle.with_prekeys(first.as_slice()).to_element())
        }
        _ => None,
    };
    match payload {
        Some(payload) => Element::new("iq", ns::JABBER_CLIENT)
            .with_attr("type", "result")
            .with_attr("id", id)
            .with_attr("from", from)
            .with_child(
                Element::new("pubsub", PUBSUB).with_child(
                    Element::new("items", PUBSUB)
                        .with_attr("node", node)
                        .with_child(
                            Element::new("item", PUBSUB)
                                .with_attr("id", "current")
                                .with_child(payload),
                        ),
                ),
            )
            .to_xml_in(ns::JABBER_CLIENT),
        None => format!(
            "<iq type='error' id='{id}' from='{from}'><error type='cancel'>\
             <item-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>"
        ),
    }
}

/// Bob, with a session to Alice's device: ready to send her references.
pub fn bob_for(alice: &Alice) -> Device {
    let mut bob = Device::generate(BOB_ID, [2; 32], 10);
    let first = alice.bundle.prekeys.first().map(|(id, _)| *id);
    let address = Address::new(ALICE_BARE, alice.device_id);
    bob.start_session(&address, &alice.bundle.with_prekeys(first.as_slice()))
        .expect("alice's bundle verifies");
    bob
}

/// Bob sends Alice `text` in message `id`.
pub async fn bob_sends(conn: &mut Conn, bob: &mut Device, alice: &Alice, id: &str, text: &str) {
    let address = Address::new(ALICE_BARE, alice.device_id);
    let envelope = bob.encrypt(&[address], text.as_bytes()).expect("encrypt");
    let message = Element::new("message", ns::JABBER_CLIENT)
        .with_attr("type", "chat")
        .with_attr("from", BOB_FULL)
        .with_attr("to", format!("{ALICE_BARE}/res-1"))
        .with_attr("id", id)
        .with_child(envelope.to_element());
    conn.send(&message.to_xml_in(ns::JABBER_CLIENT)).await;
}

/// Serves the client's key fetches for a send to Bob until its message comes; the message.
pub async fn message_to_bob(conn: &mut Conn, bob: &Device) -> Element {
    loop {
        let stanza = next_stanza(conn).await;
        if stanza.name == "message" && stanza.child("encrypted", NS).is_some() {
            return stanza;
        }
        if stanza.name == "iq" && stanza.child("pubsub", PUBSUB).is_some() {
            conn.send(&pep_answer(&stanza, Some(bob))).await;
        }
    }
}

/// What Bob reads in Alice's message.
pub fn bob_reads(bob: &mut Device, message: &Element) -> String {
    let envelope =
        Envelope::from_element(message.child("encrypted", NS).expect("envelope")).expect("parses");
    bob.decrypt(ALICE_BARE, &envelope)
        .expect("bob decrypts")
        .text
        .expect("a text")
}

/// An XEP-0454 object: the file sealed with AES-256-GCM, tag appended.
pub fn seal(key: &[u8; 32], iv: &[u8; 12], file: &[u8]) -> Vec<u8> {
    let cipher = AesGcm::<Aes256, U12>::new(key.into());
    let mut out = file.to_vec();
    let tag = cipher
        .encrypt_inout_detached(&Nonce::<U12>::from(*iv), &[], out.as_mut_slice().into())
        .expect("seal");
    out.extend_from_slice(&tag);
    out
}

/// The file in an object, if its tag verifies.
pub fn open(key: &[u8], iv: &[u8], object: &[u8]) -> Option<Vec<u8>> {
    let cipher = AesGcm::<Aes256, U12>::new_from_slice(key).ok()?;
    let split = object.len().checked_sub(16)?;
    let mut out = object[..split].to_vec();
    let tag = Tag::try_from(&object[split..]).ok()?;
    let nonce = Nonce::<U12>::try_from(iv).ok()?;
    cipher
        .decrypt_inout_detached(&nonce, &[], out.as_mut_slice().into(), &tag)
        .ok()?;
    Some(out)
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn unhex(text: &str) -> Vec<u8> {
    (0..text.len() / 2)
        .map(|i| u8::from_str_radix(&text[2 * i..2 * i + 2], 16).expect("hex"))
        .collect()
}

pub fn sha256(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// The reference to an object at `url` (https) under `key` and `iv`.
pub fn reference(url: &str, key: &[u8; 32], iv: &[u8; 12]) -> String {
    let locator = url.strip_prefix("https://").expect("https");
    format!("aesgcm://{locator}#{}{}", hex(iv), hex(key))
}

/// One request as a scripted host saw it: the head, and the body it read.
#[derive(Debug, Clone)]
pub struct Seen {
    pub head: String,
    pub body: Vec<u8>,
}

/// A scripted HTTPS host on 127.0.0.1 (its own CA): for every connection it reads one
/// request (the body as far as its Content-Length, at most `max_body`), writes `answer` and
/// then either closes or holds the connection open until the client closes it.
pub struct ScriptedHost {
    pub port: u16,
    pub ca_pem: String,
    pub seen: Arc<Mutex<Vec<Seen>>>,
}

impl ScriptedHost {
    pub async fn start(answer: Vec<u8>, hold: bool, max_body: usize) -> ScriptedHost {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let identity = TlsIdentity::generate("127.0.0.1");
        let mut config = (*server_config(&identity, false)).clone();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&seen);
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let (acceptor, answer, log) = (acceptor.clone(), answer.clone(), Arc::clone(&log));
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let Some(seen) = read_request(&mut tls, max_body).await else {
                        return;
                    };
                    log.lock().expect("log").push(seen);
                    let _ = tls.write_all(&answer).await;
                    let _ = tls.flush().await;
                    if hold {
                        let mut sink = [0u8; 1024];
                        while matches!(tls.read(&mut sink).await, Ok(n) if n > 0) {}
                    }
                });
            }
        });
        ScriptedHost {
            port,
            ca_pem: identity.ca_pem,
            seen,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("https://127.0.0.1:{}{path}", self.port)
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().expect("log").clone()
    }
}

async fn read_request<S: tokio::io::AsyncRead + Unpin>(s: &mut S, max_body: usize) -> Option<Seen> {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        if buf.len() > 16 * 1024 || s.read(&mut byte).await.ok()? == 0 {
            return None;
        }
        buf.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&buf).into_owned();
    let length = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse::<usize>().ok())?
        })
        .unwrap_or(0)
        .min(max_body);
    let mut body = vec![0u8; length];
    s.read_exact(&mut body).await.ok()?;
    Some(Seen { head, body })
}

/// The head of a scripted answer with `status` and, if given, `Content-Length`.
pub fn answer_head(status: &str, length: Option<usize>) -> Vec<u8> {
    let mut head = format!("HTTP/1.1 {status}\r\nContent-Type: application/octet-stream\r\n");
    if let Some(n) = length {
        head.push_str(&format!("Content-Length: {n}\r\n"));
    }
    head.push_str("\r\n");
    head.into_bytes()
}

/// The gatekeeper of these tests.
pub async fn gatekeeper() -> Gatekeeper {
    Gatekeeper::start(gatecheck::transport::TransportKind::Noise).await
}

/// The domain the test gatekeeper serves.
pub fn domain() -> &'static str {
    DOMAIN
}
