//! The gatekeeper server's view of one IUT connection: bytes out, parsed stream events in.
//!
//! A reader task takes the IUT's bytes as they arrive (stamped in the transcript then, and
//! handed over through a small bounded queue, so a flood meets TCP backpressure, not harness
//! memory). When the IUT closes its side the task sees it at once, notes it, and closes the
//! harness's side too, as a server does: no half-open connection waits for the next step.
//! Parsing still happens only when a step asks, so a stream restart (after SASL) swaps the
//! parser at the exact byte boundary.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant as StdInstant};

use tokio::io::{AsyncReadExt, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::sync::{Mutex, mpsc};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::roles::gatekeeper_server::req;
use crate::transcript::{Direction, Transcript};
use crate::transport::{
    BoxStream, Established, FrameMode, SecureReader, SecureWriter, TransportError,
};
use crate::wire::{Element, Framing, Limits, StreamEvent, StreamHeader, StreamParser, WireError};

/// What the IUT's side of the stream produced.
#[derive(Debug)]
pub enum Inbound {
    Header(StreamHeader),
    Stanza(Element),
    /// `</stream:stream>`.
    Close,
    /// The IUT sent bytes that violate the profile's XML rules.
    Invalid(WireError),
    /// Bytes on a connection whose handshake was aborted.
    RawBytes(usize),
    /// The connection ended (FIN, reset, or transport failure with its reason).
    Eof(Option<String>),
    /// The IUT broke the Noise frame format, which ends the connection: a zero-length frame
    /// (STREAM-5), or a frame that is not one transport message of the session (STREAM-4).
    BadFrame {
        requirement: &'static str,
        detail: String,
    },
}

/// The harness's writing half.
enum Writer {
    Secure(SecureWriter),
    /// A connection whose secure handshake did not complete.
    Raw(WriteHalf<BoxStream>),
}

impl Writer {
    async fn send(&mut self, bytes: &[u8]) -> Result<(), String> {
        match self {
            Writer::Secure(w) => w.send(bytes).await.map_err(|e| e.to_string()),
            Writer::Raw(w) => w.write_all(bytes).await.map_err(|e| e.to_string()),
        }
    }

    async fn send_framed(&mut self, bytes: &[u8], mode: FrameMode) -> Result<(), String> {
        match self {
            Writer::Secure(w) => w.send_framed(bytes, mode).await.map_err(|e| e.to_string()),
            Writer::Raw(_) => Err(format!(
                "frame mode {mode} needs a connection whose Noise handshake completed"
            )),
        }
    }

    /// TLS close_notify and FIN, or FIN; false when the peer did not take it in time.
    async fn close(&mut self) -> bool {
        let done = match self {
            Writer::Secure(w) => tokio::time::timeout(CLOSE_LIMIT, w.shutdown())
                .await
                .map(|r| r.is_ok()),
            Writer::Raw(w) => tokio::time::timeout(CLOSE_LIMIT, w.shutdown())
                .await
                .map(|r| r.is_ok()),
        };
        done.is_ok()
    }
}

/// The IUT's sending half, read by the reader task.
enum Reader {
    Secure(SecureReader),
    Raw(ReadHalf<BoxStream>),
}

impl Reader {
    async fn recv(&mut self) -> Result<Option<Vec<u8>>, TransportError> {
        match self {
            Reader::Secure(r) => r.recv().await,
            Reader::Raw(r) => {
                let mut buf = vec![0u8; 16 * 1024];
                match r.read(&mut buf).await {
                    Ok(0) => Ok(None),
                    Ok(n) => {
                        buf.truncate(n);
                        Ok(Some(buf))
                    }
                    Err(e) => Err(TransportError::Io(e)),
                }
            }
        }
    }
}

/// Chunks the reader task hands over: bytes, the end, or why reading failed.
type Chunk = Result<Option<Vec<u8>>, TransportError>;

/// What a failed read means: the IUT breaking the frame format, or the connection ending.
fn read_failure(e: TransportError) -> Inbound {
    match e {
        TransportError::ZeroLengthFrame => Inbound::BadFrame {
            requirement: req::ZERO_LENGTH_FRAME,
            detail: "a zero-length Noise frame from the IUT".into(),
        },
        TransportError::Noise(why) => Inbound::BadFrame {
            requirement: req::FRAMING,
            detail: format!("a frame that is not one Noise transport message: {why}"),
        },
        other => Inbound::Eof(Some(other.to_string())),
    }
}

/// Chunks queued between the reader task and the parser (at most 8 × 64 KiB).
const QUEUED_CHUNKS: usize = 8;

/// Shared with the reader task, which closes it when the IUT closes its side.
type SharedWriter = Arc<Mutex<Option<Writer>>>;

/// What the harness did and saw on one connection, and when: the ground truth that the
/// IUT's driver events are checked against.
#[derive(Debug, Clone, Copy, Default)]
pub struct ConnFacts {
    pub accepted_at: Option<StdInstant>,
    /// When the bind result went out.
    pub bound_at: Option<StdInstant>,
    pub close_sent_at: Option<StdInstant>,
    pub stream_error_sent_at: Option<StdInstant>,
    pub hangup_at: Option<StdInstant>,
    /// When the latest write to the IUT started.
    pub last_write_at: Option<StdInstant>,
}

/// Bytes a tap keeps ([`IutConn::start_tap`]): a stanza at the ceiling, with room to spare.
const TAP_LIMIT: usize = 2 * 1024 * 1024;

/// What the IUT sent since [`IutConn::start_tap`], as it arrived (shared with the reader task).
type Tap = Arc<std::sync::Mutex<Option<Vec<u8>>>>;

/// How long closing the harness's side may take (a TLS close_notify towards a peer that
/// stopped reading never completes).
const CLOSE_LIMIT: Duration = Duration::from_millis(200);

pub struct IutConn {
    writer: SharedWriter,
    incoming: mpsc::Receiver<Chunk>,
    reader_task: JoinHandle<()>,
    secure: bool,
    pub facts: ConnFacts,
    parser: StreamParser,
    limits: Limits,
    transcript: Transcript,
    ended: bool,
    /// The harness has sent `</stream:stream>`.
    close_sent: bool,
    /// Plaintext bytes the IUT has sent so far (counted by the reader task as they arrive).
    received: Arc<AtomicU64>,
    /// `received` when the harness last wrote frames the IUT must refuse (`send_framed`).
    received_before_fault: Option<u64>,
    /// The PROXY protocol v2 header a proxy IUT wrote before the Noise intro (SPEC.md
    /// PROXY-2), on an upstream connection ([`crate::roles::upstream`]).
    pub proxy_header: Option<crate::roles::proxy_header::ProxyHeader>,
    tap: Tap,
}

impl Drop for IutConn {
    fn drop(&mut self) {
        self.reader_task.abort();
    }
}

impl IutConn {
    pub fn secure(est: Established, limits: Limits, transcript: Transcript) -> IutConn {
        let reader = Reader::Secure(est.reader);
        let writer = Writer::Secure(est.writer);
        IutConn::over(reader, writer, true, limits, transcript)
    }

    /// A connection whose secure handshake did not complete: its bytes are only counted.
    pub fn raw(tcp: BoxStream, transcript: Transcript) -> IutConn {
        let (r, w) = tokio::io::split(tcp);
        let limits = Limits::harness_ceilings();
        IutConn::over(Reader::Raw(r), Writer::Raw(w), false, limits, transcript)
    }

    fn over(
        reader: Reader,
        writer: Writer,
        secure: bool,
        limits: Limits,
        transcript: Transcript,
    ) -> IutConn {
        let writer: SharedWriter = Arc::new(Mutex::new(Some(writer)));
        let (tx, incoming) = mpsc::channel(QUEUED_CHUNKS);
        let received = Arc::new(AtomicU64::new(0));
        let tap: Tap = Arc::default();
        let reader_task = tokio::spawn(read_until_end(
            reader,
            tx,
            Arc::clone(&writer),
            transcript.clone(),
            Arc::clone(&received),
            Arc::clone(&tap),
        ));
        IutConn {
            writer,
            incoming,
            reader_task,
            secure,
            facts: ConnFacts::default(),
            parser: StreamParser::new(Framing::Stream, limits.clone()),
            limits,
            transcript,
            ended: false,
            close_sent: false,
            received,
            received_before_fault: None,
            proxy_header: None,
            tap,
        }
    }

    /// From now on, keeps the plaintext bytes the IUT sends, exactly as they arrive (at most
    /// 2 MiB), for checks on bytes rather than trees (SPEC.md PROXY-6).
    pub fn start_tap(&self) {
        if let Ok(mut t) = self.tap.lock() {
            *t = Some(Vec::new());
        }
    }

    /// The bytes kept since [`IutConn::start_tap`] (empty without a tap).
    pub fn tapped(&self) -> Vec<u8> {
        self.tap
            .lock()
            .ok()
            .and_then(|t| t.clone())
            .unwrap_or_default()
    }

    /// Whether the connection has ended (closed by either side, or broken).
    pub fn is_ended(&self) -> bool {
        self.ended
    }

    pub fn is_secure(&self) -> bool {
        self.secure
    }

    /// Starts a fresh parser: the IUT's next bytes open a new stream (RFC 6120 §4.3.3).
    pub fn restart(&mut self) {
        self.parser = StreamParser::new(Framing::Stream, self.limits.clone());
    }

    pub async fn send(&mut self, bytes: &[u8]) -> Result<(), String> {
        let now = StdInstant::now();
        self.facts.last_write_at = Some(now);
        if self.facts.stream_error_sent_at.is_none()
            && bytes
                .windows(b"<stream:error".len())
                .any(|w| w == b"<stream:error")
        {
            self.facts.stream_error_sent_at = Some(now);
        }
        let mut writer = self.writer.lock().await;
        let Some(w) = writer.as_mut() else {
            return Err("the connection is closed".into());
        };
        self.transcript.record(Direction::ToIut, bytes);
        w.send(bytes).await
    }

    /// Sends `text` in Noise transport frames shaped by `mode` (SPEC.md STREAM-5, STREAM-8,
    /// STREAM-9). For a mode the IUT must refuse, what it has sent so far is noted, so that
    /// [`IutConn::bytes_since_fault`] can tell whether it wrote anything afterwards.
    pub async fn send_framed(&mut self, text: &[u8], mode: FrameMode) -> Result<(), String> {
        self.facts.last_write_at = Some(StdInstant::now());
        if mode != FrameMode::Split {
            self.received_before_fault = Some(self.received.load(Ordering::SeqCst));
        }
        let mut writer = self.writer.lock().await;
        let Some(w) = writer.as_mut() else {
            return Err("the connection is closed".into());
        };
        self.transcript.note(format!(
            "noise: the next bytes go out in frames of mode {mode}"
        ));
        if mode.carries_text() {
            self.transcript.record(Direction::ToIut, text);
        }
        w.send_framed(text, mode).await
    }

    /// Plaintext bytes the IUT sent after the harness's last `send_framed` of a mode it must
    /// refuse (counted on arrival, so read everything first); `None` without such a write.
    /// Bytes received from the IUT so far (whitespace keepalives included).
    pub fn bytes_received(&self) -> u64 {
        self.received.load(Ordering::SeqCst)
    }

    pub fn bytes_since_fault(&self) -> Option<u64> {
        let before = self.received_before_fault?;
        Some(self.received.load(Ordering::SeqCst).saturating_sub(before))
    }

    /// Sends `</stream:stream>` (once).
    pub async fn send_close(&mut self) -> Result<(), String> {
        self.close_sent = true;
        self.facts.close_sent_at.get_or_insert_with(StdInstant::now);
        self.send(crate::wire::STREAM_CLOSE.as_bytes()).await
    }

    /// Closes the harness's side without a closing tag, within [`CLOSE_LIMIT`]; a peer
    /// that stopped reading gets the connection dropped instead.
    pub async fn hangup(&mut self) {
        self.transcript.note("harness closes the connection");
        self.facts.hangup_at.get_or_insert_with(StdInstant::now);
        // The reader task may hold the writer for a moment while it closes it itself.
        let taken = tokio::time::timeout(CLOSE_LIMIT, self.writer.lock())
            .await
            .ok()
            .and_then(|mut w| w.take());
        let closed = match taken {
            Some(mut w) => w.close().await,
            None => true,
        };
        if !closed {
            self.transcript
                .note("the IUT is not reading: the connection was dropped unflushed");
        }
        self.ended = true;
    }

    /// The next inbound item, or `None` when `deadline` passes first.
    pub async fn next(&mut self, deadline: Instant) -> Option<Inbound> {
        loop {
            if self.ended {
                return Some(Inbound::Eof(None));
            }
            if self.is_secure() {
                match self.parser.next_event() {
                    Ok(Some(ev)) => {
                        return Some(match ev {
                            StreamEvent::Header(h) => Inbound::Header(h),
                            StreamEvent::Stanza(e) => Inbound::Stanza(e),
                            StreamEvent::Close => {
                                // As a server does (RFC 6120 §4.4): answer the closing tag,
                                // so the IUT can finish closing without waiting.
                                if !self.close_sent {
                                    let _ = self.send_close().await;
                                }
                                Inbound::Close
                            }
                        });
                    }
                    Ok(None) => {}
                    Err(e) => {
                        self.ended = true;
                        return Some(Inbound::Invalid(e));
                    }
                }
            }
            let read = tokio::time::timeout_at(deadline, self.incoming.recv()).await;
            match read {
                Err(_) => return None,
                Ok(Some(Ok(Some(bytes)))) => {
                    if self.is_secure() {
                        self.parser.feed(&bytes);
                    } else {
                        return Some(Inbound::RawBytes(bytes.len()));
                    }
                }
                Ok(Some(Ok(None)) | None) => {
                    self.ended = true;
                    if self.is_secure()
                        && let Err(e) = self.parser.finish()
                    {
                        return Some(Inbound::Invalid(e));
                    }
                    return Some(Inbound::Eof(None));
                }
                Ok(Some(Err(why))) => {
                    self.ended = true;
                    return Some(read_failure(why));
                }
            }
        }
    }
}

/// The reader task: records each chunk as it arrives and queues it for the parser; at the
/// end of the IUT's side (or a failure) notes it at once and closes the harness's side too.
async fn read_until_end(
    mut reader: Reader,
    tx: mpsc::Sender<Chunk>,
    writer: SharedWriter,
    transcript: Transcript,
    received: Arc<AtomicU64>,
    tap: Tap,
) {
    loop {
        let chunk = reader.recv().await;
        let end = match &chunk {
            Ok(Some(bytes)) => {
                received.fetch_add(bytes.len() as u64, Ordering::SeqCst);
                if let Ok(mut t) = tap.lock()
                    && let Some(kept) = t.as_mut()
                {
                    let room = TAP_LIMIT.saturating_sub(kept.len()).min(bytes.len());
                    kept.extend_from_slice(&bytes[..room]);
                }
                transcript.record(Direction::FromIut, bytes);
                false
            }
            Ok(None) => {
                transcript.note("IUT closed the connection; the harness closes its side");
                true
            }
            Err(why) => {
                transcript.note(format!("connection failed: {why}"));
                true
            }
        };
        if end {
            if let Ok(mut w) = tokio::time::timeout(CLOSE_LIMIT, writer.lock()).await
                && let Some(mut w) = w.take()
            {
                w.close().await;
            }
            let _ = tx.send(chunk).await;
            return;
        }
        if tx.send(chunk).await.is_err() {
            return;
        }
    }
}
