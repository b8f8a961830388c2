//! The two secure transports of the profile (Noise_XX and direct TLS 1.3) that carry the XML stream.
//!
//! Both the harness's gatekeeper server and the reference provider client use this module, so
//! it holds no policy beyond the profile itself: no switch here turns a check off. A connection
//! ends up as an [`Established`]: a [`SecureReader`] and a [`SecureWriter`] that move plaintext
//! stream bytes, whatever the transport underneath.
//!
//! Noise: the initiator sends the 4-byte [`INTRO`] (also the Noise prologue), then the three
//! `Noise_XX_25519_ChaChaPoly_SHA256` handshake messages, each framed as a 2-byte big-endian
//! length and 1..=65535 bytes of payload; transport frames use the same framing. The client pins
//! the server's static key and aborts before message 3 on mismatch.
//!
//! TLS: TLS 1.3 straight after TCP connect (no STARTTLS), ALPN `xmpp-client`.

mod noise;
mod tls;

use std::fmt;
use std::str::FromStr;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadHalf, WriteHalf};

pub use noise::{
    HANDSHAKE_LENGTHS, NOISE_PARAMS, NoiseKeypair, noise_accept, noise_connect,
    noise_connect_verified,
};
pub use tls::{
    ALPN_XMPP_CLIENT, TlsIdentity, client_config, root_store, server_config, tls_accept,
    tls_connect,
};

/// Any byte stream a transport runs over: a TCP connection, or, in unit tests, one end of a
/// `tokio::io::duplex` pipe.
pub trait ByteStream: AsyncRead + AsyncWrite + Unpin + Send + 'static {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> ByteStream for T {}

/// A byte stream whose type is erased, so that connections of every kind share one type.
pub type BoxStream = Box<dyn ByteStream>;

/// The 4 bytes a Noise initiator sends first; also the Noise prologue on both sides.
pub const INTRO: [u8; 4] = [0x47, 0x43, 0x00, 0x01];

/// Largest payload of one frame (handshake or transport message), from the 2-byte length prefix.
pub const MAX_FRAME: usize = 65535;

/// Authentication tag added by ChaChaPoly to every Noise transport message.
pub const NOISE_TAG_LEN: usize = 16;

/// Largest plaintext carried by one Noise transport frame.
pub const MAX_NOISE_PLAINTEXT: usize = MAX_FRAME - NOISE_TAG_LEN;

/// Which secure transport a connection uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TransportKind {
    /// Noise_XX_25519_ChaChaPoly_SHA256 with length-prefixed frames.
    Noise,
    /// Direct TLS 1.3, ALPN `xmpp-client`.
    Tls,
}

impl TransportKind {
    /// The name used in scenario files, the driver protocol and reports.
    pub fn as_str(self) -> &'static str {
        match self {
            TransportKind::Noise => "noise",
            TransportKind::Tls => "tls",
        }
    }
}

impl fmt::Display for TransportKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for TransportKind {
    type Err = TransportError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "noise" => Ok(TransportKind::Noise),
            "tls" => Ok(TransportKind::Tls),
            other => Err(TransportError::UnknownKind(other.to_owned())),
        }
    }
}

/// Everything that can end a transport before or after its handshake.
#[derive(thiserror::Error, Debug)]
#[non_exhaustive]
pub enum TransportError {
    /// TCP-level failure (including EOF in the middle of a frame).
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    /// The initiator's first bytes were not [`INTRO`].
    #[error("bad intro: got {got:02x?}, expected {INTRO:02x?}")]
    BadIntro { got: Vec<u8> },
    /// A frame announced a zero-length payload.
    #[error("zero-length frame")]
    ZeroLengthFrame,
    /// A payload larger than [`MAX_FRAME`] was handed to [`write_frame`].
    #[error("frame payload of {len} bytes exceeds {MAX_FRAME}")]
    FrameTooLarge { len: usize },
    /// The Noise handshake or a transport message failed (bad MAC, wrong message, ...).
    #[error("noise: {0}")]
    Noise(String),
    /// A handshake frame whose length is not the one §7.1 of SPEC.md fixes for that message
    /// (32, 96, 64 bytes with empty payloads).
    #[error("noise handshake message {message} has {got} bytes, expected {expected}")]
    HandshakeLength {
        message: u8,
        got: usize,
        expected: usize,
    },
    /// The server's static key is not the pinned one (base64 of both).
    #[error("server static key mismatch: expected {expected}, got {got}")]
    ServerKeyMismatch { expected: String, got: String },
    /// TLS failure: certificate, protocol version, ALPN, alert, or a cut handshake.
    #[error("tls: {0}")]
    Tls(String),
    /// The peer closed the connection cleanly before the operation could complete.
    #[error("connection closed by peer")]
    Closed,
    /// A transport name other than `noise` or `tls`.
    #[error("unknown transport {0:?} (expected \"noise\" or \"tls\")")]
    UnknownKind(String),
    /// Frame modes ([`FrameMode`]) exist on the Noise transport only.
    #[error("{0} needs the Noise transport")]
    NoiseOnly(&'static str),
    /// A plaintext a [`FrameMode`] cannot carry (empty, or too long for one frame).
    #[error("frame mode {mode}: {why}")]
    FrameMode { mode: FrameMode, why: String },
}

/// How [`SecureWriter::send_framed`] puts plaintext into Noise transport frames: one way SPEC.md
/// allows that a receiver must still accept (STREAM-9), or one of the broken ones it must
/// refuse by closing the connection without writing (STREAM-5, STREAM-8). The harness plays
/// them towards an IUT; nothing here weakens what a receiver checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameMode {
    /// One frame per plaintext byte: every element and every multi-byte UTF-8 character is
    /// split across frames (allowed: STREAM-9).
    Split,
    /// One frame whose authentication tag has a bit flipped (STREAM-8).
    Corrupt,
    /// One correct frame, then the same bytes again as a second frame, whose nonce is then
    /// stale (STREAM-8).
    Replay,
    /// The plaintext in two frames, the second one sent first (STREAM-8).
    Reorder,
    /// One frame cut to fewer bytes than the 16-byte tag (STREAM-8).
    Truncate,
    /// A frame whose length field is zero; no plaintext is sent (STREAM-5).
    Empty,
}

impl FrameMode {
    /// The name used in scenario files.
    pub fn as_str(self) -> &'static str {
        match self {
            FrameMode::Split => "split",
            FrameMode::Corrupt => "corrupt",
            FrameMode::Replay => "replay",
            FrameMode::Reorder => "reorder",
            FrameMode::Truncate => "truncate",
            FrameMode::Empty => "empty",
        }
    }

    /// Every mode, in the order the scenario format documents them.
    pub const ALL: [FrameMode; 6] = [
        FrameMode::Split,
        FrameMode::Corrupt,
        FrameMode::Replay,
        FrameMode::Reorder,
        FrameMode::Truncate,
        FrameMode::Empty,
    ];

    /// The mode called `name` in scenario files.
    pub fn parse(name: &str) -> Option<FrameMode> {
        FrameMode::ALL.into_iter().find(|m| m.as_str() == name)
    }

    /// Whether the mode carries plaintext (all but [`FrameMode::Empty`]).
    pub fn carries_text(self) -> bool {
        self != FrameMode::Empty
    }
}

impl fmt::Display for FrameMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A connection whose secure handshake completed.
pub struct Established {
    pub reader: SecureReader,
    pub writer: SecureWriter,
    /// The peer's Noise static public key (the client's, seen by the server; the server's, seen
    /// by the client). `None` for TLS.
    pub peer_static: Option<Vec<u8>>,
    pub kind: TransportKind,
    /// TLS: the ALPN protocol the handshake settled on, if any. `None` for Noise.
    pub alpn: Option<Vec<u8>>,
    /// TLS, server side: the name the client sent in SNI, if any.
    pub sni: Option<String>,
}

impl fmt::Debug for Established {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Established")
            .field("kind", &self.kind)
            .field("peer_static", &self.peer_static.as_ref().map(|k| k.len()))
            .finish_non_exhaustive()
    }
}

type TlsTcp = tokio_rustls::TlsStream<BoxStream>;
type NoiseState = Arc<Mutex<snow::TransportState>>;

enum ReaderInner {
    Noise {
        tcp: ReadHalf<BoxStream>,
        state: NoiseState,
    },
    Tls(ReadHalf<TlsTcp>),
}

enum WriterInner {
    Noise {
        tcp: WriteHalf<BoxStream>,
        state: NoiseState,
    },
    Tls(WriteHalf<TlsTcp>),
}

/// The read half of an established connection: yields decrypted stream bytes.
pub struct SecureReader {
    inner: ReaderInner,
    buf: Vec<u8>,
}

/// The write half of an established connection: encrypts and sends stream bytes.
pub struct SecureWriter {
    inner: WriterInner,
}

/// Size of the read buffer for TLS; Noise reads exactly one frame at a time.
const TLS_READ_CHUNK: usize = 16 * 1024;

impl SecureReader {
    /// The next chunk of plaintext; `Ok(None)` at a clean end of stream (TCP FIN at a frame
    /// boundary for Noise, close_notify for TLS). Chunks never span frames and may split XML
    /// anywhere, so feed them to a streaming parser.
    pub async fn recv(&mut self) -> Result<Option<Vec<u8>>, TransportError> {
        match &mut self.inner {
            ReaderInner::Noise { tcp, state } => {
                let frame = match read_frame(tcp).await {
                    Ok(frame) => frame,
                    Err(TransportError::Closed) => return Ok(None),
                    Err(e) => return Err(e),
                };
                noise::decrypt(state, &frame, &mut self.buf).map(Some)
            }
            ReaderInner::Tls(r) => {
                self.buf.resize(TLS_READ_CHUNK, 0);
                let n = r.read(&mut self.buf).await.map_err(tls::map_io)?;
                if n == 0 {
                    return Ok(None);
                }
                Ok(Some(self.buf[..n].to_vec()))
            }
        }
    }

    /// Which transport this half belongs to.
    pub fn kind(&self) -> TransportKind {
        match self.inner {
            ReaderInner::Noise { .. } => TransportKind::Noise,
            ReaderInner::Tls(_) => TransportKind::Tls,
        }
    }
}

impl SecureWriter {
    /// Sends `plaintext`, split into as many frames (Noise) or records (TLS) as needed.
    /// Sending nothing is a no-op: an empty Noise frame would be a protocol error.
    pub async fn send(&mut self, plaintext: &[u8]) -> Result<(), TransportError> {
        match &mut self.inner {
            WriterInner::Noise { tcp, state } => {
                for chunk in plaintext.chunks(MAX_NOISE_PLAINTEXT) {
                    let frame = noise::encrypt(state, chunk)?;
                    write_frame(tcp, &frame).await?;
                }
                Ok(())
            }
            WriterInner::Tls(w) => {
                w.write_all(plaintext).await.map_err(tls::map_io)?;
                w.flush().await.map_err(tls::map_io)
            }
        }
    }

    /// Sends `plaintext` in Noise transport frames shaped by `mode`, all in one write (see
    /// [`FrameMode`]). TLS has no frames of its own: [`TransportError::NoiseOnly`].
    pub async fn send_framed(
        &mut self,
        plaintext: &[u8],
        mode: FrameMode,
    ) -> Result<(), TransportError> {
        let WriterInner::Noise { tcp, state } = &mut self.inner else {
            return Err(TransportError::NoiseOnly("a frame mode"));
        };
        let bad = |why: &str| TransportError::FrameMode {
            mode,
            why: why.to_string(),
        };
        if mode.carries_text() && plaintext.is_empty() {
            return Err(bad("no plaintext to carry"));
        }
        if mode != FrameMode::Split && plaintext.len() > MAX_NOISE_PLAINTEXT {
            return Err(bad("the plaintext does not fit in one frame"));
        }
        let frames: Vec<Vec<u8>> = match mode {
            FrameMode::Split => plaintext
                .iter()
                .map(|b| noise::encrypt(state, std::slice::from_ref(b)))
                .collect::<Result<_, _>>()?,
            FrameMode::Corrupt => {
                let mut frame = noise::encrypt(state, plaintext)?;
                if let Some(last) = frame.last_mut() {
                    *last ^= 0x01;
                }
                vec![frame]
            }
            FrameMode::Replay => {
                let frame = noise::encrypt(state, plaintext)?;
                vec![frame.clone(), frame]
            }
            FrameMode::Reorder => {
                if plaintext.len() < 2 {
                    return Err(bad("two frames need at least two bytes"));
                }
                let (first, second) = plaintext.split_at(plaintext.len() / 2);
                let first = noise::encrypt(state, first)?;
                let second = noise::encrypt(state, second)?;
                vec![second, first]
            }
            FrameMode::Truncate => {
                let mut frame = noise::encrypt(state, plaintext)?;
                frame.truncate(NOISE_TAG_LEN - 1);
                vec![frame]
            }
            FrameMode::Empty => vec![Vec::new()],
        };
        let mut out = Vec::with_capacity(frames.iter().map(|f| f.len() + 2).sum());
        for frame in &frames {
            // Every frame here is at most one tag longer than MAX_NOISE_PLAINTEXT.
            let len = u16::try_from(frame.len())
                .map_err(|_| TransportError::FrameTooLarge { len: frame.len() })?;
            out.extend_from_slice(&len.to_be_bytes());
            out.extend_from_slice(frame);
        }
        write_raw(tcp, &out).await
    }

    /// Closes the write side: TCP FIN for Noise, close_notify then FIN for TLS.
    pub async fn shutdown(&mut self) -> Result<(), TransportError> {
        match &mut self.inner {
            WriterInner::Noise { tcp, .. } => tcp.shutdown().await.map_err(TransportError::Io),
            WriterInner::Tls(w) => w.shutdown().await.map_err(tls::map_io),
        }
    }

    /// Which transport this half belongs to.
    pub fn kind(&self) -> TransportKind {
        match self.inner {
            WriterInner::Noise { .. } => TransportKind::Noise,
            WriterInner::Tls(_) => TransportKind::Tls,
        }
    }
}

/// Reads one frame: a 2-byte big-endian length, then that many bytes (so at most
/// [`MAX_FRAME`]). EOF before the first length byte is [`TransportError::Closed`]; EOF inside a
/// frame is an [`TransportError::Io`] of kind `UnexpectedEof`; a zero length is
/// [`TransportError::ZeroLengthFrame`].
pub async fn read_frame<R: AsyncRead + Unpin>(r: &mut R) -> Result<Vec<u8>, TransportError> {
    let mut len = [0u8; 2];
    let first = r.read(&mut len[..1]).await?;
    if first == 0 {
        return Err(TransportError::Closed);
    }
    r.read_exact(&mut len[1..]).await?;
    let len = usize::from(u16::from_be_bytes(len));
    if len == 0 {
        return Err(TransportError::ZeroLengthFrame);
    }
    let mut payload = vec![0u8; len];
    r.read_exact(&mut payload).await?;
    Ok(payload)
}

/// Writes one frame (2-byte big-endian length + payload) and flushes. The payload must be
/// 1..=[`MAX_FRAME`] bytes; the harness uses [`write_raw`] to send broken frames on purpose.
pub async fn write_frame<W: AsyncWrite + Unpin>(
    w: &mut W,
    payload: &[u8],
) -> Result<(), TransportError> {
    if payload.is_empty() {
        return Err(TransportError::ZeroLengthFrame);
    }
    let len = u16::try_from(payload.len())
        .map_err(|_| TransportError::FrameTooLarge { len: payload.len() })?;
    let mut out = Vec::with_capacity(2 + payload.len());
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(payload);
    w.write_all(&out).await?;
    w.flush().await?;
    Ok(())
}

/// Writes bytes without any framing: for scripting broken intros and frames in scenarios.
pub async fn write_raw<W: AsyncWrite + Unpin>(
    w: &mut W,
    bytes: &[u8],
) -> Result<(), TransportError> {
    w.write_all(bytes).await?;
    w.flush().await?;
    Ok(())
}
