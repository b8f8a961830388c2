//! The reference provider client: connect (TCP, transport, stream, SASL, bind), then serve the session.
//!
//! Its state machines are its own (see login.rs and session.rs); it shares only the codec and
//! the transports with the harness, so that a bug in the harness's gatekeeper and one here do
//! not silently cancel out.

pub mod enroll;
mod login;
pub mod media;
mod omemo;
mod session;
mod stream;
mod tls;

use std::time::Duration;

use base64::Engine as _;
use gatecheck::transport::{
    NoiseKeypair, TransportError, TransportKind, noise_connect, noise_connect_verified, tls_connect,
};
use tokio::net::TcpStream;
use tokio::time::timeout;

use crate::driver::{ConnectParams, Event};
use crate::mutant::Mutant;

pub use omemo::{MAX_TEXT_BYTES, Omemo};
pub use session::{CHAT_STATES, Session};
pub use stream::Inbound as SessionInbound;
use stream::XmlStream;

/// Bound on the TCP connect, on the transport handshake, and on each login step.
pub const STEP_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a connect attempt or a session ended: one variant per cause. [`Failure::code`],
/// [`Failure::reason`] and [`Failure::stream_error`] map it, exhaustively, onto the driver
/// protocol's vocabulary.
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    #[error("invalid connect parameters: {0}")]
    BadParams(String),
    #[error("TCP connect failed: {0}")]
    TcpConnect(std::io::Error),
    #[error("TCP connect timed out after {STEP_TIMEOUT:?}")]
    TcpTimeout,
    #[error("{0}")]
    Handshake(TransportError),
    #[error("{0} handshake timed out after {STEP_TIMEOUT:?}")]
    HandshakeTimeout(TransportKind),
    #[error("connection failed: {0}")]
    Io(TransportError),
    #[error("connection closed without a closing stream tag")]
    Eof,
    #[error("the server sent nothing usable for {STEP_TIMEOUT:?} during login")]
    Timeout,
    #[error("stream error {condition} sent: {detail}")]
    StreamErrorSent { condition: String, detail: String },
    #[error("stream error {condition} received{}", text.as_deref().map(|t| format!(": {t}")).unwrap_or_default())]
    StreamErrorReceived {
        condition: String,
        text: Option<String>,
    },
    #[error("the server closed the stream")]
    RemoteClose,
    /// STREAM-19: neither PLAIN (provisioned account) nor PLAIN-IDPROOF (enrolled device),
    /// whichever this login needs, was offered.
    #[error("the server does not offer the SASL mechanism this login needs")]
    NoMechanism,
    #[error("SASL failure: {condition}")]
    AuthFailed { condition: String },
    #[error("resource binding failed: {0}")]
    BindFailed(String),
}

impl Failure {
    /// The `code` of the `error` event answering a failed `connect`.
    pub fn code(&self) -> &'static str {
        match self {
            Failure::BadParams(_) => "bad-command",
            Failure::TcpConnect(_) | Failure::TcpTimeout | Failure::Io(_) | Failure::Eof => {
                "transport"
            }
            Failure::Handshake(e) => match e {
                TransportError::ServerKeyMismatch { .. } => "server-key-mismatch",
                TransportError::Tls(_) => "tls",
                TransportError::UnknownKind(_) => "bad-command",
                // Io, BadIntro, ZeroLengthFrame, FrameTooLarge, Noise, HandshakeLength, Closed,
                // and whatever the library adds later: the Noise handshake did not complete.
                _ => "handshake",
            },
            Failure::HandshakeTimeout(TransportKind::Noise) => "handshake",
            Failure::HandshakeTimeout(TransportKind::Tls) => "tls",
            Failure::Timeout
            | Failure::StreamErrorSent { .. }
            | Failure::StreamErrorReceived { .. }
            | Failure::RemoteClose => "protocol",
            Failure::NoMechanism => "no-mechanism",
            Failure::AuthFailed { .. } => "auth-failed",
            Failure::BindFailed(_) => "bind-failed",
        }
    }

    /// The `reason` of the `disconnected` event, or `None` when no stream was ever opened.
    pub fn reason(&self) -> Option<&'static str> {
        match self {
            Failure::BadParams(_)
            | Failure::TcpConnect(_)
            | Failure::TcpTimeout
            | Failure::Handshake(_)
            | Failure::HandshakeTimeout(_) => None,
            Failure::Io(_) | Failure::Eof => Some("transport-error"),
            Failure::Timeout | Failure::BindFailed(_) => Some("local"),
            Failure::StreamErrorSent { .. } => Some("stream-error-sent"),
            Failure::StreamErrorReceived { .. } => Some("stream-error-received"),
            Failure::RemoteClose => Some("remote-close"),
            Failure::NoMechanism | Failure::AuthFailed { .. } => Some("auth-failed"),
        }
    }

    /// The `stream_error` event this failure implies: (direction, condition).
    pub fn stream_error(&self) -> Option<(&'static str, &str)> {
        match self {
            Failure::StreamErrorSent { condition, .. } => Some(("sent", condition)),
            Failure::StreamErrorReceived { condition, .. } => Some(("received", condition)),
            _ => None,
        }
    }

    /// The events reporting this failure, in order: `stream_error` (if any), `error` (when it
    /// answers a `connect`), `disconnected` (when a stream had been opened).
    pub fn events(&self, connect_seq: Option<i64>) -> Vec<Event> {
        let mut events = Vec::new();
        if let Some((direction, condition)) = self.stream_error() {
            events.push(Event::StreamError {
                direction,
                condition: condition.to_owned(),
            });
        }
        if let Some(seq) = connect_seq {
            events.push(Event::Error {
                seq: Some(seq),
                code: self.code(),
                detail: self.to_string(),
            });
        }
        if let Some(reason) = self.reason() {
            events.push(Event::Disconnected {
                seq: connect_seq,
                reason,
                condition: self.stream_error().map(|(_, c)| c.to_owned()),
                detail: Some(self.to_string()),
            });
        }
        events
    }
}

/// Runs a whole connect: TCP, transport handshake, stream, SASL (PLAIN for a provisioned
/// account, PLAIN-IDPROOF when `params.proof` is set), bind, initial presence.
/// `notes` collects events to emit before the outcome (e.g. an ignored stream error).
/// `reconnect`: a session of this process reached binding before (STREAM-36).
pub async fn connect(
    params: &ConnectParams,
    mutant: Mutant,
    reconnect: bool,
    notes: &mut Vec<Event>,
) -> Result<Session, Failure> {
    // Parameters are checked before any byte goes out.
    let pinned = match params.transport {
        TransportKind::Noise => Some(server_key(params)?),
        TransportKind::Tls => None,
    };
    let tls_config = match params.transport {
        TransportKind::Tls => Some(
            tls::config(params.ca_pem.as_deref(), mutant)
                .map_err(|e| Failure::BadParams(e.to_string()))?,
        ),
        TransportKind::Noise => None,
    };

    let tcp = timeout(
        STEP_TIMEOUT,
        TcpStream::connect((params.host.as_str(), params.port)),
    )
    .await
    .map_err(|_| Failure::TcpTimeout)?
    .map_err(Failure::TcpConnect)?;
    let _ = tcp.set_nodelay(true);
    if mutant == Mutant::PlainTcpStream && params.transport == TransportKind::Noise {
        // STREAM-1 deviation: the correct client runs the Noise handshake before any stream
        // data.
        return Err(plain_tcp_stream(tcp, params).await);
    }

    let handshake = async {
        match (&pinned, tls_config) {
            (Some(pinned), _) => {
                // A fresh client static key per connection: the profile does not authenticate
                // clients by it (SPEC.md §7.1).
                let keypair = NoiseKeypair::generate();
                if matches!(
                    mutant,
                    Mutant::WrongIntroVersion | Mutant::PayloadInMessage1
                ) {
                    // STREAM-3, STREAM-2 deviations (see HandshakeRewriter): the correct
                    // client writes the intro 0x47 0x43 0x00 0x01 and a 32-byte message 1.
                    let tcp = HandshakeRewriter {
                        inner: tcp,
                        written: 0,
                        mutant,
                    };
                    noise_connect(tcp, &keypair, pinned).await
                } else if mutant == Mutant::NoKeyPin {
                    // STREAM-6 deviation: the correct client compares with the pinned key.
                    noise_connect_verified(tcp, &keypair, |_| Ok(())).await
                } else {
                    noise_connect(tcp, &keypair, pinned).await
                }
            }
            (None, Some(config)) => {
                let name = params.server_name.as_deref().unwrap_or(&params.domain);
                tls_connect(tcp, config, name).await
            }
            (None, None) => Err(TransportError::UnknownKind("none".into())),
        }
    };
    let established = timeout(STEP_TIMEOUT, handshake)
        .await
        .map_err(|_| Failure::HandshakeTimeout(params.transport))?;
    if established.is_err() && mutant == Mutant::SilentHandshakeFailure {
        // STREAM-7 deviation: the correct client aborts and reports the failure.
        std::future::pending::<()>().await;
    }
    let established = established.map_err(Failure::Handshake)?;

    let stream = XmlStream::new(established.reader, established.writer, mutant);
    login::run(stream, params, reconnect, notes).await
}

/// The TCP stream of the mutants that alter the Noise handshake bytes on their way out;
/// everything else passes unchanged.
struct HandshakeRewriter {
    inner: TcpStream,
    /// Bytes of the original stream consumed so far.
    written: usize,
    mutant: Mutant,
}

/// Where message 1 starts (after the 4-byte intro and its 2-byte length), and its length.
const MSG1_AT: usize = 6;
const MSG1_LEN: usize = 32;

impl HandshakeRewriter {
    /// The bytes to send for original bytes `buf` at stream offset `self.written`.
    fn rewrite(&self, buf: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(buf.len() + 1);
        for (i, &b) in buf.iter().enumerate() {
            let at = self.written + i;
            match self.mutant {
                // STREAM-3 deviation: the intro's minor version goes out as 0x02.
                Mutant::WrongIntroVersion if at == 3 => out.push(0x02),
                // STREAM-2 deviation: message 1 carries a one-byte payload (its length
                // field says 33, and a zero byte follows the ephemeral key).
                Mutant::PayloadInMessage1 if at == MSG1_AT - 1 => out.push(b + 1),
                Mutant::PayloadInMessage1 if at == MSG1_AT + MSG1_LEN - 1 => {
                    out.push(b);
                    out.push(0);
                }
                _ => out.push(b),
            }
        }
        out
    }
}

impl tokio::io::AsyncRead for HandshakeRewriter {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for HandshakeRewriter {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let bytes = self.rewrite(buf);
        let polled = std::pin::Pin::new(&mut self.inner).poll_write(cx, &bytes);
        match polled {
            std::task::Poll::Ready(Ok(n)) if n == bytes.len() => {
                self.written += buf.len();
                std::task::Poll::Ready(Ok(buf.len()))
            }
            // A mutant only: a partial write of a rewritten chunk is not worth resuming.
            std::task::Poll::Ready(Ok(_)) => std::task::Poll::Ready(Err(std::io::Error::other(
                "partial write of a rewritten handshake chunk",
            ))),
            other => other,
        }
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// The `plain-tcp-stream` mutant: a stream header straight on the TCP connection.
async fn plain_tcp_stream(mut tcp: TcpStream, params: &ConnectParams) -> Failure {
    use tokio::io::AsyncWriteExt as _;
    let header = format!(
        "<?xml version='1.0'?><stream:stream xmlns='jabber:client' \
         xmlns:stream='http://etherx.jabber.org/streams' to='{}' version='1.0'>",
        login::escape_attr(&params.domain)
    );
    let _ = tcp.write_all(header.as_bytes()).await;
    let _ = tcp.flush().await;
    Failure::Handshake(TransportError::Noise(
        "the stream went out without a transport handshake".into(),
    ))
}

fn server_key(params: &ConnectParams) -> Result<Vec<u8>, Failure> {
    let Some(b64) = params.server_key.as_deref() else {
        return Err(Failure::BadParams(
            "server_key is required for noise".into(),
        ));
    };
    let key = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .map_err(|e| Failure::BadParams(format!("server_key is not base64: {e}")))?;
    if key.len() != 32 {
        return Err(Failure::BadParams(format!(
            "server_key has {} bytes, not 32",
            key.len()
        )));
    }
    Ok(key)
}
