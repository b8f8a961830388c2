//! One client connection and the one upstream connection opened for it (SPEC.md §15).
//!
//! The client's transport handshake comes first; only then does the proxy connect upstream,
//! write the PROXY v2 header and run Noise as initiator pinning the gatekeeper's key
//! (PROXY-1..3). After that one task owns both connections: two reader tasks hand it
//! plaintext, it parses both directions into units ([`Units`]) and forwards each unit as the
//! bytes received, in order, checking the client's side as a server would. Whoever ends the
//! pair, both connections close within a few seconds, with the closing tags still owed.
//!
//! Bounds: each reader hands over at most [`CHANNEL`] chunks of at most one Noise frame (or
//! 16 KiB of TLS) ahead; each parser holds at most one unit within its limits; every write has
//! a timeout, so a peer that stops reading ends the pair instead of holding it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use gatecheck::roles::gatekeeper_server::DOMAIN;
use gatecheck::transport::{
    Established, SecureReader, SecureWriter, TransportError, TransportKind, noise_accept,
    noise_connect, noise_connect_verified, tls_accept,
};
use gatecheck::wire::{
    Element, Limits, StreamErrorCondition, StreamEvent, ns, stream_error_element, xml_escape,
};
use tokio::io::AsyncWriteExt as _;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::{Instant, sleep, sleep_until, timeout};

use super::units::Units;
use super::{NAME, Shared, bounce, check, header, mutate};
use crate::mutant::Mutant;

/// How long a transport handshake (either side) and the upstream TCP connect may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long one forwarded write may take before its peer counts as gone.
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a closing tag or a shutdown may take.
const CLOSE_STEP: Duration = Duration::from_secs(1);
/// How long to wait for the other closing tag once one side closed its stream.
const CLOSE_WAIT: Duration = Duration::from_secs(2);
/// Chunks a reader task may have read ahead.
const CHANNEL: usize = 4;
const STREAM_CLOSE: &[u8] = b"</stream:stream>";

/// Serves one accepted client connection to its end.
pub async fn serve(tcp: TcpStream, peer: SocketAddr, kind: TransportKind, shared: Arc<Shared>) {
    let Ok(local) = tcp.local_addr() else {
        return;
    };
    let _ = tcp.set_nodelay(true);
    let mutant = shared.mutant;
    let early = if mutant == Mutant::ProxyEarlyUpstream {
        // PROXY-3 deviation: the correct proxy connects upstream only after the client's
        // transport handshake completed.
        match open_upstream(peer, local, &shared).await {
            Ok(upstream) => Some(upstream),
            Err(why) => {
                eprintln!("{NAME}: {peer}: upstream: {why}");
                return;
            }
        }
    } else {
        None
    };
    let accepted = match kind {
        TransportKind::Noise => timeout(HANDSHAKE_TIMEOUT, noise_accept(tcp, &shared.key)).await,
        TransportKind::Tls => match &shared.tls {
            Some(config) => timeout(HANDSHAKE_TIMEOUT, tls_accept(tcp, Arc::clone(config))).await,
            None => return,
        },
    };
    let client = match accepted {
        Ok(Ok(client)) => client,
        Ok(Err(e)) => {
            eprintln!("{NAME}: {peer}: {kind} handshake failed: {e}");
            return;
        }
        Err(_) => {
            eprintln!("{NAME}: {peer}: {kind} handshake timed out");
            return;
        }
    };
    let upstream = match early {
        Some(upstream) => upstream,
        None => match open_upstream(peer, local, &shared).await {
            Ok(upstream) => upstream,
            Err(why) => {
                eprintln!("{NAME}: {peer}: upstream: {why}; closing the client");
                let mut writer = client.writer;
                let _ = timeout(CLOSE_STEP, writer.shutdown()).await;
                return;
            }
        },
    };
    eprintln!("{NAME}: {peer}: relaying ({kind})");
    Relay::new(client, upstream, peer, shared).run().await;
    eprintln!("{NAME}: {peer}: closed");
}

/// Connects to the gatekeeper: TCP, the PROXY v2 header, then Noise as initiator pinning the
/// gatekeeper's static key (a mismatch aborts before message 3).
async fn open_upstream(
    peer: SocketAddr,
    local: SocketAddr,
    shared: &Shared,
) -> Result<Established, String> {
    let mutant = shared.mutant;
    let mut tcp = timeout(
        HANDSHAKE_TIMEOUT,
        TcpStream::connect(shared.upstream.as_str()),
    )
    .await
    .map_err(|_| "connecting timed out".to_owned())?
    .map_err(|e| format!("cannot connect to {}: {e}", shared.upstream))?;
    let _ = tcp.set_nodelay(true);
    // PROXY-2 deviation: the correct proxy writes the header first on every connection.
    if mutant != Mutant::ProxyNoProxyHeader {
        let source = if mutant == Mutant::ProxyWrongAddress {
            // PROXY-2 deviation: the correct proxy names the client's address.
            tcp.local_addr().map_err(|e| e.to_string())?
        } else {
            peer
        };
        let mut bytes = header::build(source, local);
        if mutant == Mutant::ProxyHeaderTlv {
            // PROXY-2 deviation: the correct proxy writes no TLV.
            bytes = header::with_tlv(bytes, DOMAIN);
        }
        timeout(HANDSHAKE_TIMEOUT, tcp.write_all(&bytes))
            .await
            .map_err(|_| "writing the PROXY header timed out".to_owned())?
            .map_err(|e| format!("writing the PROXY header: {e}"))?;
    }
    let handshake = async {
        if mutant == Mutant::ProxyAcceptsAnyUpstreamKey {
            // PROXY-1 deviation: the correct proxy pins the gatekeeper's static key.
            noise_connect_verified(tcp, &shared.key, |_| Ok(())).await
        } else {
            noise_connect(tcp, &shared.key, &shared.upstream_key).await
        }
    };
    match timeout(HANDSHAKE_TIMEOUT, handshake).await {
        Ok(Ok(upstream)) => Ok(upstream),
        Ok(Err(e @ TransportError::ServerKeyMismatch { .. })) => Err(format!("refused: {e}")),
        Ok(Err(e)) => Err(format!("Noise handshake failed: {e}")),
        Err(_) => Err("Noise handshake timed out".into()),
    }
}

pub(super) type Inbound = Result<Option<Vec<u8>>, TransportError>;

/// Reads plaintext into a bounded channel until the end of the connection.
fn spawn_reader(mut reader: SecureReader) -> (mpsc::Receiver<Inbound>, JoinHandle<()>) {
    let (tx, rx) = mpsc::channel(CHANNEL);
    let task = tokio::spawn(async move {
        loop {
            let item = reader.recv().await;
            let last = !matches!(item, Ok(Some(_)));
            if tx.send(item).await.is_err() || last {
                return;
            }
        }
    });
    (rx, task)
}

/// Reads a connection's remaining input until it ends.
async fn drain(rx: &mut mpsc::Receiver<Inbound>) {
    while let Some(Ok(Some(_))) = rx.recv().await {}
}

/// The reader tasks of a pair: they end with it, however it ends.
struct Readers([JoinHandle<()>; 2]);

impl Drop for Readers {
    fn drop(&mut self) {
        for task in &self.0 {
            task.abort();
        }
    }
}

/// What a step of the relay leaves to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Step {
    Go,
    /// Close both connections (with the closing tags still owed).
    Close,
    /// The client's connection ended or stopped taking bytes.
    ClientGone,
    /// The upstream connection ended or stopped taking bytes.
    UpstreamGone,
}

pub(super) struct Relay {
    pub(super) shared: Arc<Shared>,
    pub(super) mutant: Mutant,
    pub(super) peer: SocketAddr,
    pub(super) to_client: SecureWriter,
    pub(super) to_upstream: SecureWriter,
    readers: Option<(SecureReader, SecureReader)>,
    pub(super) client: Units,
    pub(super) upstream: Units,
    pub(super) stage: check::Stage,
    /// The domain the client's stream header is addressed to.
    pub(super) domain: Option<String>,
    /// The client's header of the current stream was parsed.
    pub(super) client_header_seen: bool,
    /// A client header went upstream in the current stream, and no closing tag yet.
    pub(super) up_open: bool,
    /// The gatekeeper's header of the current stream went to the client.
    pub(super) down_header_seen: bool,
    /// ... and no closing tag yet.
    pub(super) down_open: bool,
    /// The gatekeeper sent a stream error or its closing tag: no more stanzas go up
    /// (STREAM-26), only the client's closing tag.
    pub(super) upstream_ending: bool,
    /// The `proxy-forwards-malformed` mutant after a fault: client bytes go up unchecked.
    pub(super) passthrough: bool,
    /// When the pair closes anyway, once one side closed its stream.
    pub(super) deadline: Option<Instant>,
    /// The bare JID the client logs in as, once its `<auth>` passed the opt-in check.
    pub(super) account: Option<String>,
    /// The ids of the `proxy-pings-upstream` mutant's own pings not answered yet.
    pub(super) own_pings: Vec<String>,
}

impl Relay {
    fn new(
        client: Established,
        upstream: Established,
        peer: SocketAddr,
        shared: Arc<Shared>,
    ) -> Self {
        let mutant = shared.mutant;
        let mut client_limits = Limits::profile_floors();
        if mutant == Mutant::ProxyTightLimit {
            // PROXY-15 deviation: the correct proxy accepts stanzas of 256 KiB (STREAM-31).
            client_limits.max_stanza_bytes = 128 << 10;
        }
        Relay {
            shared,
            mutant,
            peer,
            to_client: client.writer,
            to_upstream: upstream.writer,
            readers: Some((client.reader, upstream.reader)),
            client: Units::new(client_limits),
            // The gatekeeper's side: the most a receiver may accept, so the proxy adds no
            // limit of its own to what its clients receive.
            upstream: Units::new(Limits::harness_ceilings()),
            stage: check::Stage::default(),
            domain: None,
            client_header_seen: false,
            up_open: false,
            down_header_seen: false,
            down_open: false,
            upstream_ending: false,
            passthrough: false,
            deadline: None,
            account: None,
            own_pings: Vec::new(),
        }
    }

    async fn run(mut self) {
        let Some((client_reader, upstream_reader)) = self.readers.take() else {
            return;
        };
        let (mut from_client, client_task) = spawn_reader(client_reader);
        let (mut from_upstream, upstream_task) = spawn_reader(upstream_reader);
        let _readers = Readers([client_task, upstream_task]);
        loop {
            let deadline = self.deadline;
            let step = tokio::select! {
                item = from_client.recv() => match item {
                    Some(Ok(Some(bytes))) => self.client_bytes(&bytes).await,
                    Some(Err(_)) => {
                        // A frame that does not decrypt and the like: nothing more is
                        // written to that peer (STREAM-8).
                        self.down_open = false;
                        Step::ClientGone
                    }
                    _ => Step::ClientGone,
                },
                item = from_upstream.recv() => match item {
                    Some(Ok(Some(bytes))) => self.upstream_bytes(&bytes).await,
                    Some(Err(_)) => {
                        self.up_open = false;
                        Step::UpstreamGone
                    }
                    _ => Step::UpstreamGone,
                },
                () = sleep_until(deadline.unwrap_or_else(Instant::now)), if deadline.is_some() => {
                    Step::Close
                }
            };
            match step {
                Step::Go => continue,
                Step::Close | Step::UpstreamGone => break,
                // The side that ended may only have half-closed: the closing tag still owed
                // to it is tried too (briefly, in `close_both`).
                Step::ClientGone => {
                    if self.mutant == Mutant::ProxyKeepsUpstream {
                        // PROXY-4 deviation: the correct proxy closes the upstream stream and
                        // connection at once when its client is gone.
                        self.up_open = false;
                        sleep(Duration::from_secs(10)).await;
                    }
                    if self.mutant == Mutant::ProxyBuffersOffline {
                        // PROXY-11 deviation: the correct proxy closes the upstream stream at
                        // once, and keeps nothing the gatekeeper sends for later.
                        self.keep_late(&mut from_upstream).await;
                    }
                    break;
                }
            }
        }
        self.close_both().await;
        // Read what is still coming until each peer closes too (briefly): closing a socket
        // with unread input resets it, and a reset can destroy the last bytes sent before
        // the peer read them (the stream error, the closing tag).
        let _ = timeout(CLOSE_STEP, async {
            tokio::join!(drain(&mut from_client), drain(&mut from_upstream))
        })
        .await;
    }

    /// Sends the closing tags still owed, then shuts both connections.
    async fn close_both(&mut self) {
        let (up_tag, down_tag) = (self.up_open, self.down_open);
        self.up_open = false;
        self.down_open = false;
        let up = async {
            if up_tag {
                let _ = timeout(CLOSE_STEP, self.to_upstream.send(STREAM_CLOSE)).await;
            }
            let _ = timeout(CLOSE_STEP, self.to_upstream.shutdown()).await;
        };
        let down = async {
            if down_tag {
                let _ = timeout(CLOSE_STEP, self.to_client.send(STREAM_CLOSE)).await;
            }
            let _ = timeout(CLOSE_STEP, self.to_client.shutdown()).await;
        };
        tokio::join!(up, down);
    }

    /// Writes to the gatekeeper.
    pub(super) async fn up(&mut self, bytes: &[u8]) -> Step {
        match timeout(WRITE_TIMEOUT, self.to_upstream.send(bytes)).await {
            Ok(Ok(())) => Step::Go,
            _ => Step::UpstreamGone,
        }
    }

    /// Writes to the client.
    pub(super) async fn down(&mut self, bytes: &[u8]) -> Step {
        match timeout(WRITE_TIMEOUT, self.to_client.send(bytes)).await {
            Ok(Ok(())) => Step::Go,
            _ => Step::ClientGone,
        }
    }

    /// Bytes from the client: each unit checked, then forwarded as received.
    pub(super) async fn client_bytes(&mut self, bytes: &[u8]) -> Step {
        if self.passthrough {
            return self.up(bytes).await;
        }
        self.client.feed(bytes);
        loop {
            match self.client.next() {
                Ok(Some((event, raw))) => {
                    let step = self.client_unit(event, raw).await;
                    if step != Step::Go {
                        return step;
                    }
                }
                Ok(None) => break,
                Err(e) => return self.client_fault(e.condition(), &e.to_string()).await,
            }
        }
        // Whitespace between elements goes up at once (keepalives); before the header it
        // stays with the header, after the closing tag it is dropped.
        if self.client_header_seen {
            let settled = self.client.take_settled();
            if self.up_open && !settled.is_empty() {
                if self.mutant == Mutant::ProxyRefusesWhitespace && self.stage.bind_requested {
                    // STREAM-33 deviation: the correct proxy accepts whitespace between its
                    // client's stanzas and passes it on.
                    let condition = StreamErrorCondition::NotWellFormed;
                    return self
                        .client_fault(condition, "whitespace between stanzas")
                        .await;
                }
                if self.mutant == Mutant::ProxyPingsUpstream && self.stage.bind_requested {
                    // PROXY-9 deviation: the correct proxy passes the keepalive on and sends
                    // no stanza of its own upstream.
                    return self.own_ping().await;
                }
                return self.up(&settled).await;
            }
        }
        Step::Go
    }

    async fn client_unit(&mut self, event: StreamEvent, raw: Vec<u8>) -> Step {
        match event {
            StreamEvent::Header(h) => {
                if let Some((condition, why)) = check::header(&h) {
                    return self.client_fault(condition, why).await;
                }
                self.domain = h.to;
                self.client_header_seen = true;
                self.up_open = true;
                self.up(&raw).await
            }
            StreamEvent::Close => {
                let step = if self.up_open {
                    self.up(&raw).await
                } else {
                    Step::Go
                };
                self.up_open = false;
                if step != Step::Go {
                    return step;
                }
                if self.upstream_ending && !self.down_open {
                    return Step::Close;
                }
                self.deadline
                    .get_or_insert_with(|| Instant::now() + CLOSE_WAIT);
                Step::Go
            }
            StreamEvent::Stanza(e) => match check::element(&e, self.stage) {
                check::Verdict::Refuse(condition, why) => self.client_fault(condition, why).await,
                check::Verdict::Auth => {
                    let domain = self.domain.as_deref();
                    match check::opted_in(&e, domain, &self.shared.opted_in) {
                        Ok(jid) => {
                            eprintln!("{NAME}: {}: {jid} logs in", self.peer);
                            self.account = Some(jid);
                            self.forward_up(&e, raw).await
                        }
                        // PROXY-12 deviation: the correct proxy refuses users who have not
                        // opted in.
                        Err(_) if self.mutant == Mutant::ProxyIgnoresOptIn => {
                            self.forward_up(&e, raw).await
                        }
                        Err(why) => self.refuse_login(&why).await,
                    }
                }
                check::Verdict::ForwardBind => {
                    self.stage.bind_requested = true;
                    self.forward_up(&e, raw).await
                }
                check::Verdict::Forward => self.forward_up(&e, raw).await,
            },
        }
    }

    /// A client unit that passed the checks goes up, unless the gatekeeper already ended
    /// its stream (STREAM-26).
    async fn forward_up(&mut self, e: &Element, raw: Vec<u8>) -> Step {
        if self.upstream_ending || !self.up_open {
            return Step::Go;
        }
        if self.mutant == Mutant::ProxyDropsPresence && e.is("presence", ns::JABBER_CLIENT) {
            // PROXY-9 deviation: the correct proxy drops none of its client's stanzas.
            return Step::Go;
        }
        if self.mutant == Mutant::ProxyBouncesErrors
            && e.ns == ns::JABBER_CLIENT
            && e.attr("type") == Some("error")
        {
            // STANZA-9 deviation: the correct proxy forwards an error stanza and answers none.
            return self.down(bounce::error_answer(e).as_bytes()).await;
        }
        let bytes = self.mutated(e, raw).await;
        self.up(&bytes).await
    }

    /// The client's input calls for a stream error (PROXY-14): the error to the client
    /// (after a header of the proxy's own if the gatekeeper's has not gone down yet), none of
    /// the faulty bytes upstream, and `</stream:stream>` there.
    async fn client_fault(&mut self, condition: StreamErrorCondition, why: &str) -> Step {
        eprintln!(
            "{NAME}: {}: client input refused ({}): {why}",
            self.peer,
            condition.as_str()
        );
        if self.mutant == Mutant::ProxyForwardsMalformed {
            // PROXY-14 deviation: the correct proxy forwards none of the faulty bytes.
            self.passthrough = true;
            let rest = self.client.take_rest();
            return self.up(&rest).await;
        }
        let error = stream_error_element(condition, None).to_xml_in(ns::JABBER_CLIENT);
        self.close_downstream_with(error.as_bytes()).await;
        Step::Close
    }

    /// PROXY-12: a SASL failure to the client, closing tags both ways, close.
    async fn refuse_login(&mut self, why: &str) -> Step {
        eprintln!("{NAME}: {}: login refused: {why}", self.peer);
        let failure =
            "<failure xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><not-authorized/></failure>";
        self.close_downstream_with(failure.as_bytes()).await;
        Step::Close
    }

    /// Writes `last` and the closing tag to the client (after a stream header of the proxy's
    /// own when none went down in this stream); nothing once the client's stream is closed.
    async fn close_downstream_with(&mut self, last: &[u8]) {
        let mut out = Vec::new();
        if !self.down_header_seen {
            out.extend_from_slice(own_header(self.domain.as_deref()).as_bytes());
        } else if !self.down_open {
            return;
        }
        out.extend_from_slice(last);
        out.extend_from_slice(STREAM_CLOSE);
        self.down_header_seen = true;
        self.down_open = false;
        let _ = timeout(CLOSE_STEP, self.to_client.send(&out)).await;
    }

    /// The mutants' changes to a unit about to be forwarded (either way); the bytes as
    /// received for the correct proxy.
    pub(super) async fn mutated(&mut self, e: &Element, raw: Vec<u8>) -> Vec<u8> {
        let stanza = e.ns == ns::JABBER_CLIENT;
        if self.mutant == Mutant::ProxyDelays && stanza {
            // PROXY-15 deviation: the correct proxy forwards each stanza at once.
            sleep(Duration::from_millis(1500)).await;
        }
        if self.mutant == Mutant::ProxyReserializesEnvelope && has_envelope(e) {
            // PROXY-6 deviation: the correct proxy forwards envelopes byte for byte.
            return mutate::reserialize_envelope(&raw);
        }
        if self.mutant == Mutant::ProxyAddsAttribute && e.is("message", ns::JABBER_CLIENT) {
            // PROXY-8 deviation: the correct proxy adds nothing to a stanza.
            let attribute = format!(" data-proxy-client='{}'", self.peer);
            return mutate::add_attribute(&raw, &attribute);
        }
        if self.mutant == Mutant::ProxyTrimsBody && stanza {
            // PROXY-7 deviation: the correct proxy changes no text.
            return mutate::trim_body_text(&raw);
        }
        if self.mutant == Mutant::ProxyRewritesAuth
            && let Some(jid) = &self.account
            && let Some(auth) = mutate::auth_with_authzid(e, jid)
        {
            // PROXY-13 deviation: the correct proxy forwards the client's <auth> unchanged.
            return auth.into_bytes();
        }
        raw
    }
}

/// Whether `e` carries an OMEMO envelope anywhere inside.
fn has_envelope(e: &Element) -> bool {
    let mut stack = vec![e];
    while let Some(e) = stack.pop() {
        if e.is("encrypted", ns::OMEMO) {
            return true;
        }
        stack.extend(e.child_elements());
    }
    false
}

/// A stream header of the proxy's own, for a stream error the client must get before the
/// gatekeeper's header came down (RFC 6120 §4.9.1.2).
fn own_header(domain: Option<&str>) -> String {
    use rand::TryRngCore as _;
    // A stream id only has to differ between streams; a failing RNG leaves it zero.
    let id = rand::rngs::OsRng.try_next_u64().unwrap_or_default();
    let from = domain
        .map(|d| format!(" from='{}'", xml_escape(d)))
        .unwrap_or_default();
    format!(
        "<?xml version='1.0'?><stream:stream xmlns='{}' xmlns:stream='{}' id='{:016x}'{from} \
         version='1.0'>",
        ns::JABBER_CLIENT,
        ns::STREAMS,
        id
    )
}
