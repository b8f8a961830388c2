//! The harness as a provider client of a proxy IUT (SPEC.md §15): the downstream side.
//!
//! It connects over Noise (pinning the key the proxy published) or direct TLS (trusting only
//! the proxy's CA), opens a stream to the gatekeeper's domain, logs in with SASL PLAIN and
//! binds, like any provider client; then it writes what a scenario says and reads top-level
//! elements with deadlines. Everything the proxy sends is hostile input: a reader task parses
//! it with the harness's ceilings, hands each element over through a small bounded queue
//! (a flood meets TCP backpressure), keeps at most 2 MiB of raw bytes when asked
//! ([`Downstream::start_tap`]), and answers a disco#info request by itself, with the identities
//! and features it was configured with (the client's capabilities that PROXY-10 is about),
//! since nothing else would read the connection while a step watches the gatekeeper's side.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex as StdMutex};
use std::time::{Duration, Instant as StdInstant};

use base64::Engine;
use tokio::net::TcpStream;
use tokio::sync::{Mutex, mpsc};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::Deviation;
use super::gatekeeper_server::DOMAIN;
use crate::transcript::{Direction, Transcript};
use crate::transport::{
    self, NoiseKeypair, SecureReader, SecureWriter, TransportError, TransportKind,
};
use crate::wire::{
    Element, Framing, Limits, StreamEvent, StreamHeader, StreamParser, WireError, ns,
};

/// How the client authenticates the proxy.
#[derive(Debug, Clone)]
pub enum Trust {
    /// Noise: the proxy's static public key, pinned.
    NoiseKey(Vec<u8>),
    /// TLS: the only CA trusted, and the name the certificate must carry.
    TlsCa { pem: String, server_name: String },
}

impl Trust {
    pub fn kind(&self) -> TransportKind {
        match self {
            Trust::NoiseKey(_) => TransportKind::Noise,
            Trust::TlsCa { .. } => TransportKind::Tls,
        }
    }
}

/// What the client answers to disco#info (XEP-0030): its identities and features.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Disco {
    /// `(category, type)` pairs.
    pub identities: Vec<(String, String)>,
    pub features: Vec<String>,
}

impl Default for Disco {
    /// A provider client's usual answer: a phone, with disco#info, receipts, ping and OMEMO.
    fn default() -> Disco {
        Disco {
            identities: vec![("client".into(), "phone".into())],
            features: DEFAULT_FEATURES.iter().map(|f| f.to_string()).collect(),
        }
    }
}

/// The features the downstream client announces unless a scenario names others.
pub const DEFAULT_FEATURES: &[&str] = &[
    ns::DISCO_INFO,
    ns::RECEIPTS,
    ns::PING,
    "eu.siacs.conversations.axolotl.devicelist+notify",
];

/// What arrived from the proxy.
#[derive(Debug)]
pub enum Down {
    Header(StreamHeader),
    Stanza(Element),
    /// `</stream:stream>` (the client answers with its own at once).
    Close,
    /// Bytes that break the profile's XML rules; the connection is closed.
    Invalid(WireError),
    /// The connection ended: FIN, or the transport's failure.
    Eof(Option<String>),
}

/// Elements queued between the reader task and the steps.
const QUEUED: usize = 32;
/// Raw bytes a tap keeps.
const TAP_LIMIT: usize = 2 * 1024 * 1024;
/// How long closing the client's side may take.
const CLOSE_LIMIT: Duration = Duration::from_millis(200);
/// A resource the client asks for; the gatekeeper assigns its own (STREAM-23).
const RESOURCE: &str = "gatecheck-downstream";

type SharedWriter = Arc<Mutex<Option<SecureWriter>>>;

/// What the reader task and the steps share.
#[derive(Debug, Default)]
struct Shared {
    tap: StdMutex<Option<Vec<u8>>>,
    disco_answered: AtomicUsize,
    close_sent: AtomicBool,
    /// When the proxy's side ended (FIN or failure), as the reader task saw it.
    ended_at: StdMutex<Option<StdInstant>>,
}

/// One downstream connection to the proxy.
pub struct Downstream {
    writer: SharedWriter,
    events: mpsc::Receiver<Down>,
    task: JoinHandle<()>,
    shared: Arc<Shared>,
    /// The client's own address (what PROXY-2's source must be).
    pub local: SocketAddr,
    /// The proxy's address the client connected to (PROXY-2's destination).
    pub peer: SocketAddr,
    pub kind: TransportKind,
    transcript: Transcript,
    ended: bool,
    /// Stream headers [`Downstream::next`] has handed out (one per stream the proxy opened).
    headers: usize,
    /// When the client last wrote, and when it closed its side.
    pub last_write_at: Option<StdInstant>,
    pub closed_at: Option<StdInstant>,
}

impl Drop for Downstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Connects to `addr`, retrying a refused connection until `retry_until` (a proxy that is
/// still starting), giving up at `deadline`.
pub async fn connect_tcp(
    addr: SocketAddr,
    retry_until: Instant,
    deadline: Instant,
) -> Result<TcpStream, String> {
    loop {
        match tokio::time::timeout_at(deadline, TcpStream::connect(addr)).await {
            Err(_) => return Err(format!("no TCP connection to {addr} before the deadline")),
            Ok(Ok(tcp)) => {
                let _ = tcp.set_nodelay(true);
                return Ok(tcp);
            }
            Ok(Err(e))
                if e.kind() == std::io::ErrorKind::ConnectionRefused
                    && Instant::now() < retry_until.min(deadline) =>
            {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            Ok(Err(e)) => return Err(format!("cannot connect to {addr}: {e}")),
        }
    }
}

impl Downstream {
    /// Runs the client side of the transport handshake on `tcp` and starts reading.
    pub async fn handshake(
        tcp: TcpStream,
        trust: &Trust,
        disco: Disco,
        deadline: Instant,
        transcript: Transcript,
    ) -> Result<Downstream, TransportError> {
        let local = tcp.local_addr()?;
        let peer = tcp.peer_addr()?;
        let est = match trust {
            Trust::NoiseKey(key) => {
                let own = NoiseKeypair::generate();
                tokio::time::timeout_at(deadline, transport::noise_connect(tcp, &own, key)).await
            }
            Trust::TlsCa { pem, server_name } => {
                let cfg = transport::client_config(pem)?;
                tokio::time::timeout_at(deadline, transport::tls_connect(tcp, cfg, server_name))
                    .await
            }
        }
        .map_err(|_| {
            TransportError::Io(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "the handshake did not complete before the deadline",
            ))
        })??;
        if est.kind == TransportKind::Tls
            && est.alpn.as_deref() != Some(transport::ALPN_XMPP_CLIENT)
        {
            return Err(TransportError::Tls(
                "the server selected no ALPN protocol xmpp-client".into(),
            ));
        }
        transcript.note(format!(
            "downstream: {} handshake with the proxy at {peer} complete (from {local})",
            est.kind
        ));
        let writer: SharedWriter = Arc::new(Mutex::new(Some(est.writer)));
        let shared = Arc::new(Shared::default());
        let (tx, events) = mpsc::channel(QUEUED);
        let task = tokio::spawn(read_task(
            est.reader,
            tx,
            Arc::clone(&writer),
            Arc::clone(&shared),
            disco,
            transcript.clone(),
        ));
        Ok(Downstream {
            writer,
            events,
            task,
            shared,
            local,
            peer,
            kind: est.kind,
            transcript,
            ended: false,
            headers: 0,
            last_write_at: None,
            closed_at: None,
        })
    }

    /// Writes `bytes` to the proxy, as they are.
    pub async fn send(&mut self, bytes: &[u8]) -> Result<(), String> {
        self.last_write_at = Some(StdInstant::now());
        send_on(&self.writer, &self.transcript, bytes).await
    }

    /// Sends `</stream:stream>` (once).
    pub async fn send_close(&mut self) -> Result<(), String> {
        if self.shared.close_sent.swap(true, Ordering::SeqCst) {
            return Ok(());
        }
        self.send(crate::wire::STREAM_CLOSE.as_bytes()).await
    }

    /// Closes the client's side (TLS close_notify, FIN) without a closing tag, within 200 ms;
    /// a proxy that stopped reading gets the connection dropped. Reading goes on.
    pub async fn hangup(&mut self) {
        self.transcript
            .note("downstream: the client closes its connection");
        self.closed_at.get_or_insert_with(StdInstant::now);
        let taken = tokio::time::timeout(CLOSE_LIMIT, self.writer.lock())
            .await
            .ok()
            .and_then(|mut w| w.take());
        if let Some(mut w) = taken
            && tokio::time::timeout(CLOSE_LIMIT, w.shutdown())
                .await
                .is_err()
        {
            self.transcript
                .note("downstream: the proxy is not reading: the connection was dropped");
        }
    }

    /// The next thing from the proxy, or `None` when `deadline` passes first.
    pub async fn next(&mut self, deadline: Instant) -> Option<Down> {
        if self.ended {
            return Some(Down::Eof(None));
        }
        let got = match tokio::time::timeout_at(deadline, self.events.recv()).await {
            Err(_) => return None,
            Ok(Some(d)) => d,
            Ok(None) => Down::Eof(None),
        };
        match got {
            Down::Eof(_) | Down::Invalid(_) => self.ended = true,
            Down::Header(_) => self.headers += 1,
            _ => {}
        }
        Some(got)
    }

    /// How many stream headers of the proxy's the client has read (a login reads two).
    pub fn headers_received(&self) -> usize {
        self.headers
    }

    pub fn is_ended(&self) -> bool {
        self.ended
    }

    /// When the reader task saw the proxy's side end.
    pub fn ended_at(&self) -> Option<StdInstant> {
        self.shared.ended_at.lock().ok().and_then(|t| *t)
    }

    /// How many disco#info requests the client has answered.
    pub fn disco_answered(&self) -> usize {
        self.shared.disco_answered.load(Ordering::SeqCst)
    }

    /// From now on, keeps the bytes the proxy sends, exactly as they arrive (at most 2 MiB).
    pub fn start_tap(&self) {
        if let Ok(mut t) = self.shared.tap.lock() {
            *t = Some(Vec::new());
        }
    }

    /// The bytes kept since [`Downstream::start_tap`].
    pub fn tapped(&self) -> Vec<u8> {
        self.shared
            .tap
            .lock()
            .ok()
            .and_then(|t| t.clone())
            .unwrap_or_default()
    }

    /// Logs in as a provider client does, up to `upto`: stream header to the gatekeeper's
    /// domain, the forwarded header and features; then `<auth>` (PLAIN, `account` and
    /// `credential`); then, after `<success/>`, the restart and resource binding. Returns the
    /// bound JID (at [`Upto::Session`]). A departure is the proxy's, charged to the step.
    pub async fn login(
        &mut self,
        upto: Upto,
        account: &str,
        credential: &str,
        deadline: Instant,
    ) -> Result<Option<String>, Deviation> {
        self.open_stream(deadline).await?;
        if upto == Upto::Features {
            return Ok(None);
        }
        let plain = plain_message(account, credential);
        self.send(
            format!(
                "<auth xmlns='{}' mechanism='PLAIN'>{plain}</auth>",
                ns::SASL
            )
            .as_bytes(),
        )
        .await
        .map_err(Deviation::io)?;
        if upto == Upto::Auth {
            return Ok(None);
        }
        let answer = self
            .stanza(deadline, "the forwarded SASL <success/>")
            .await?;
        if !answer.is("success", ns::SASL) {
            return Err(Deviation::fail_here(
                "the gatekeeper's <success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>, forwarded",
                answer.to_xml(),
            ));
        }
        self.open_stream(deadline).await?;
        let id = "downstream-bind";
        self.send(
            format!(
                "<iq type='set' id='{id}'><bind xmlns='{}'><resource>{RESOURCE}</resource></bind></iq>",
                ns::BIND
            )
            .as_bytes(),
        )
        .await
        .map_err(Deviation::io)?;
        let result = self.stanza(deadline, "the forwarded bind result").await?;
        let jid = result
            .child("bind", ns::BIND)
            .and_then(|b| b.child("jid", ns::BIND))
            .map(Element::text);
        match jid {
            Some(jid)
                if result.is("iq", ns::JABBER_CLIENT)
                    && result.attr("type") == Some("result")
                    && result.attr("id") == Some(id) =>
            {
                Ok(Some(jid))
            }
            _ => Err(Deviation::fail_here(
                format!(
                    "the gatekeeper's bind result <iq type='result' id='{id}'> with a <jid/>, forwarded"
                ),
                result.to_xml(),
            )),
        }
    }

    /// Sends the client's stream header and reads the forwarded header and features.
    async fn open_stream(&mut self, deadline: Instant) -> Result<Element, Deviation> {
        self.send(client_header().as_bytes())
            .await
            .map_err(Deviation::io)?;
        match self.next(deadline).await {
            Some(Down::Header(_)) => {}
            other => {
                return Err(unexpected(
                    other,
                    "the gatekeeper's stream header, forwarded",
                ));
            }
        }
        let features = self
            .stanza(deadline, "the gatekeeper's <stream:features>, forwarded")
            .await?;
        if !features.is("features", ns::STREAMS) {
            return Err(Deviation::fail_here(
                "the gatekeeper's <stream:features>, forwarded",
                features.to_xml(),
            ));
        }
        Ok(features)
    }

    async fn stanza(&mut self, deadline: Instant, what: &str) -> Result<Element, Deviation> {
        match self.next(deadline).await {
            Some(Down::Stanza(e)) => Ok(e),
            other => Err(unexpected(other, what)),
        }
    }
}

/// How far [`Downstream::login`] goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Upto {
    /// Header sent, the forwarded header and features read.
    Features,
    /// Also `<auth>` sent (its answer is left for the scenario).
    Auth,
    /// Logged in and bound.
    Session,
}

/// The client's stream header.
pub fn client_header() -> String {
    format!(
        "<?xml version='1.0'?><stream:stream xmlns='{}' xmlns:stream='{}' to='{DOMAIN}' version='1.0' xml:lang='en'>",
        ns::JABBER_CLIENT,
        ns::STREAMS
    )
}

/// The base64 PLAIN initial response (empty authzid) for `account` and `credential`.
pub fn plain_message(account: &str, credential: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(format!("\0{account}\0{credential}"))
}

/// A deviation for anything but what a login step waited for.
pub fn unexpected(got: Option<Down>, what: &str) -> Deviation {
    let got = match got {
        None => "nothing before the step's deadline".to_string(),
        Some(Down::Header(_)) => "another stream header".to_string(),
        Some(Down::Stanza(e)) => e.to_xml(),
        Some(Down::Close) => "</stream:stream>".to_string(),
        Some(Down::Invalid(e)) => format!("XML the profile forbids: {e}"),
        Some(Down::Eof(Some(why))) => format!("the connection failed: {why}"),
        Some(Down::Eof(None)) => "the proxy closed the connection".to_string(),
    };
    Deviation::fail_here(what, got)
}

async fn send_on(
    writer: &SharedWriter,
    transcript: &Transcript,
    bytes: &[u8],
) -> Result<(), String> {
    let mut w = writer.lock().await;
    let Some(w) = w.as_mut() else {
        return Err("the client's side is closed".into());
    };
    transcript.record(Direction::ToIut, bytes);
    w.send(bytes).await.map_err(|e| e.to_string())
}

/// Reads the proxy's bytes as they come: records and taps them, parses them, answers
/// disco#info and the closing tag, and queues the rest; at the end closes the client's side.
async fn read_task(
    mut reader: SecureReader,
    tx: mpsc::Sender<Down>,
    writer: SharedWriter,
    shared: Arc<Shared>,
    disco: Disco,
    transcript: Transcript,
) {
    let mut parser = StreamParser::new(Framing::Stream, Limits::harness_ceilings());
    let end = loop {
        let bytes = match reader.recv().await {
            Ok(Some(bytes)) => bytes,
            Ok(None) => {
                transcript.note("downstream: the proxy closed the connection");
                break match parser.finish() {
                    Err(e) => Down::Invalid(e),
                    Ok(()) => Down::Eof(None),
                };
            }
            Err(e) => {
                transcript.note(format!("downstream: the connection failed: {e}"));
                break Down::Eof(Some(e.to_string()));
            }
        };
        transcript.record(Direction::FromIut, &bytes);
        if let Ok(mut t) = shared.tap.lock()
            && let Some(kept) = t.as_mut()
        {
            let room = TAP_LIMIT.saturating_sub(kept.len()).min(bytes.len());
            kept.extend_from_slice(&bytes[..room]);
        }
        parser.feed(&bytes);
        let mut fault = None;
        loop {
            let ev = match parser.next_event() {
                Ok(Some(ev)) => ev,
                Ok(None) => break,
                Err(e) => {
                    fault = Some(e);
                    break;
                }
            };
            let item = match ev {
                StreamEvent::Header(h) => Down::Header(h),
                StreamEvent::Close => {
                    if !shared.close_sent.swap(true, Ordering::SeqCst) {
                        let _ = send_on(&writer, &transcript, crate::wire::STREAM_CLOSE.as_bytes())
                            .await;
                    }
                    Down::Close
                }
                StreamEvent::Stanza(e) => {
                    if let Some(answer) = disco_answer(&e, &disco) {
                        transcript.note("downstream: the client answers disco#info itself");
                        let _ = send_on(&writer, &transcript, answer.as_bytes()).await;
                        shared.disco_answered.fetch_add(1, Ordering::SeqCst);
                        continue;
                    }
                    if e.is("success", ns::SASL) {
                        // After <success/> the proxy's next bytes open a new stream.
                        parser = StreamParser::new(Framing::Stream, Limits::harness_ceilings());
                    }
                    Down::Stanza(e)
                }
            };
            if tx.send(item).await.is_err() {
                return;
            }
        }
        if let Some(e) = fault {
            transcript.note(format!(
                "downstream: the proxy sent XML the profile forbids: {e}"
            ));
            break Down::Invalid(e);
        }
    };
    if let Ok(mut t) = shared.ended_at.lock() {
        t.get_or_insert_with(StdInstant::now);
    }
    if let Ok(mut w) = tokio::time::timeout(CLOSE_LIMIT, writer.lock()).await
        && let Some(mut w) = w.take()
    {
        let _ = tokio::time::timeout(CLOSE_LIMIT, w.shutdown()).await;
    }
    let _ = tx.send(end).await;
}

/// The client's answer to a disco#info request addressed to it, if `e` is one.
fn disco_answer(e: &Element, disco: &Disco) -> Option<String> {
    if !e.is("iq", ns::JABBER_CLIENT) || e.attr("type") != Some("get") {
        return None;
    }
    let query = e.child("query", ns::DISCO_INFO)?;
    let mut q = Element::new("query", ns::DISCO_INFO);
    if let Some(node) = query.attr("node") {
        q.set_attr("node", node);
    }
    for (category, kind) in &disco.identities {
        q = q.with_child(
            Element::new("identity", ns::DISCO_INFO)
                .with_attr("category", category)
                .with_attr("type", kind),
        );
    }
    for f in &disco.features {
        q = q.with_child(Element::new("feature", ns::DISCO_INFO).with_attr("var", f));
    }
    let mut answer = Element::new("iq", ns::JABBER_CLIENT)
        .with_attr("type", "result")
        .with_attr("id", e.attr("id").unwrap_or_default());
    if let Some(from) = e.attr("from") {
        answer.set_attr("to", from);
    }
    Some(answer.with_child(q).to_xml_in(ns::JABBER_CLIENT))
}

#[cfg(test)]
#[path = "downstream_tests.rs"]
mod tests;
