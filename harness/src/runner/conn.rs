//! The gatekeeper server's view of one IUT connection: bytes out, parsed stream events in.
//!
//! Reading happens only when a step waits for something, on the step's own
//! deadline, so a stream restart (after SASL) can swap the parser at the exact
//! byte boundary without racing a background reader.

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::transcript::{Direction, Transcript};
use crate::transport::{Established, SecureReader, SecureWriter};
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
    Raw(TcpStream),
    Gone,
}

pub struct IutConn {
    link: Link,
    parser: StreamParser,
    limits: Limits,
    transcript: Transcript,
    ended: bool,
    /// The harness has sent `</stream:stream>`.
    close_sent: bool,
}

impl IutConn {
    pub fn secure(est: Established, limits: Limits, transcript: Transcript) -> IutConn {
        IutConn {
            link: Link::Secure {
                reader: est.reader,
                writer: est.writer,
            },
            parser: StreamParser::new(Framing::Stream, limits.clone()),
            limits,
            transcript,
            ended: false,
            close_sent: false,
        }
    }

    pub fn raw(tcp: TcpStream, transcript: Transcript) -> IutConn {
        let limits = Limits::harness_ceilings();
        IutConn {
            link: Link::Raw(tcp),
            parser: StreamParser::new(Framing::Stream, limits.clone()),
            limits,
            transcript,
            ended: false,
            close_sent: false,
        }
    }

    pub fn is_secure(&self) -> bool {
        matches!(self.link, Link::Secure { .. })
    }

    /// Starts a fresh parser: the IUT's next bytes open a new stream (RFC 6120 §4.3.3).
    pub fn restart(&mut self) {
        self.parser = StreamParser::new(Framing::Stream, self.limits.clone());
    }

    pub async fn send(&mut self, bytes: &[u8]) -> Result<(), String> {
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
        self.send(crate::wire::STREAM_CLOSE.as_bytes()).await
    }

    /// Closes the harness's side without a closing tag.
    pub async fn hangup(&mut self) {
        self.transcript.note("harness closes the connection");
        match std::mem::replace(&mut self.link, Link::Gone) {
            Link::Secure { mut writer, .. } => {
                let _ = writer.shutdown().await;
            }
            Link::Raw(mut tcp) => {
                let _ = tcp.shutdown().await;
            }
            Link::Gone => {}
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
