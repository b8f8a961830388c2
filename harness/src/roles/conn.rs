//! The gatekeeper server's view of one IUT connection: bytes out, parsed stream events in.
//!
//! Reading happens only when a step waits for something, on the step's own
//! deadline, so a stream restart (after SASL) can swap the parser at the exact
//! byte boundary without racing a background reader.

use std::time::{Duration, Instant as StdInstant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;

use crate::transcript::{Direction, Transcript};
use crate::transport::{BoxStream, Established, SecureReader, SecureWriter};
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
}

enum Link {
    Secure {
        reader: SecureReader,
        writer: SecureWriter,
    },
    /// A TCP connection whose secure handshake did not complete.
    Raw(BoxStream),
    Gone,
}

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

/// How long closing the harness's side may take (a TLS close_notify towards a peer that
/// stopped reading never completes).
const CLOSE_LIMIT: Duration = Duration::from_millis(200);

pub struct IutConn {
    link: Link,
    pub facts: ConnFacts,
    parser: StreamParser,
    limits: Limits,
    transcript: Transcript,
    ended: bool,
    /// The harness has sent `</stream:stream>`.
    close_sent: bool,
}

impl IutConn {
    pub fn secure(est: Established, limits: Limits, transcript: Transcript) -> IutConn {
        let link = Link::Secure {
            reader: est.reader,
            writer: est.writer,
        };
        IutConn::over(link, limits, transcript)
    }

    /// A connection whose secure handshake did not complete: its bytes are only counted.
    pub fn raw(tcp: BoxStream, transcript: Transcript) -> IutConn {
        IutConn::over(Link::Raw(tcp), Limits::harness_ceilings(), transcript)
    }

    fn over(link: Link, limits: Limits, transcript: Transcript) -> IutConn {
        IutConn {
            link,
            facts: ConnFacts::default(),
            parser: StreamParser::new(Framing::Stream, limits.clone()),
            limits,
            transcript,
            ended: false,
            close_sent: false,
        }
    }

    /// Whether the connection has ended (closed by either side, or broken).
    pub fn is_ended(&self) -> bool {
        self.ended
    }

    pub fn is_secure(&self) -> bool {
        matches!(self.link, Link::Secure { .. })
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
        self.transcript.record(Direction::ToIut, bytes);
        match &mut self.link {
            Link::Secure { writer, .. } => writer.send(bytes).await.map_err(|e| e.to_string()),
            Link::Raw(tcp) => tcp.write_all(bytes).await.map_err(|e| e.to_string()),
            Link::Gone => Err("the connection is closed".into()),
        }
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
        let closed = match std::mem::replace(&mut self.link, Link::Gone) {
            Link::Secure { mut writer, .. } => tokio::time::timeout(CLOSE_LIMIT, writer.shutdown())
                .await
                .is_ok(),
            Link::Raw(mut tcp) => tokio::time::timeout(CLOSE_LIMIT, tcp.shutdown())
                .await
                .is_ok(),
            Link::Gone => true,
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
            let read = tokio::time::timeout_at(deadline, self.read_chunk()).await;
            match read {
                Err(_) => return None,
                Ok(Ok(Some(bytes))) => {
                    self.transcript.record(Direction::FromIut, &bytes);
                    if self.is_secure() {
                        self.parser.feed(&bytes);
                    } else {
                        return Some(Inbound::RawBytes(bytes.len()));
                    }
                }
                Ok(Ok(None)) => {
                    self.ended = true;
                    self.transcript.note("IUT closed the connection");
                    if self.is_secure()
                        && let Err(e) = self.parser.finish()
                    {
                        return Some(Inbound::Invalid(e));
                    }
                    return Some(Inbound::Eof(None));
                }
                Ok(Err(why)) => {
                    self.ended = true;
                    self.transcript.note(format!("connection failed: {why}"));
                    return Some(Inbound::Eof(Some(why)));
                }
            }
        }
    }

    async fn read_chunk(&mut self) -> Result<Option<Vec<u8>>, String> {
        match &mut self.link {
            Link::Secure { reader, .. } => reader.recv().await.map_err(|e| e.to_string()),
            Link::Raw(tcp) => {
                let mut buf = vec![0u8; 16 * 1024];
                match tcp.read(&mut buf).await {
                    Ok(0) => Ok(None),
                    Ok(n) => {
                        buf.truncate(n);
                        Ok(Some(buf))
                    }
                    Err(e) => Err(e.to_string()),
                }
            }
            Link::Gone => Ok(None),
        }
    }
}
