//! The Noise transport's frame decoder, after a real handshake, on frames the target both
//! seals itself and forges.
//!
//! Each input runs a full Noise_XX handshake between [`noise_connect`] and [`noise_accept`]
//! over an in-memory pipe (fixed keys, so runs repeat), then decodes as operations: plaintext
//! the client seals and sends (`send`, and every [`FrameMode`] of `send_framed`), raw bytes and
//! raw length fields written straight onto the wire. The gatekeeper's side then reads the wire
//! to its end with [`SecureReader::recv`](crate::transport::SecureReader::recv) and feeds the
//! plaintext to the stream parser, as the gatekeeper role does. Because the target holds the
//! client's keys, frames with a valid MAC come from the client's own sealing: no check has to
//! be switched off to reach the code behind it.
//!
//! It must not panic or block; no plaintext chunk is larger than a frame can carry; and when
//! only well-formed frames were sent, exactly the plaintext sent arrives, with no error.

use std::collections::VecDeque;
use std::future::Future;
use std::io;
use std::pin::{Pin, pin};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll, Waker};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::transport::{
    Established, FrameMode, MAX_NOISE_PLAINTEXT, NoiseKeypair, noise_accept, noise_connect,
};
use crate::wire::{Framing, Limits, StreamParser};

/// One direction of the pipe.
#[derive(Default)]
struct Queue {
    bytes: VecDeque<u8>,
    closed: bool,
}

type Shared = Arc<Mutex<Queue>>;

/// One end of an in-memory connection that never waits for room: reads take what is queued,
/// or report the end once the writer closed, or are pending.
struct End {
    rx: Shared,
    tx: Shared,
}

impl AsyncRead for End {
    fn poll_read(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let Ok(mut queue) = self.rx.lock() else {
            return Poll::Ready(Err(io::Error::other("pipe lock poisoned")));
        };
        if queue.bytes.is_empty() {
            return if queue.closed {
                Poll::Ready(Ok(()))
            } else {
                Poll::Pending
            };
        }
        let n = buf.remaining().min(queue.bytes.len());
        let chunk: Vec<u8> = queue.bytes.drain(..n).collect();
        buf.put_slice(&chunk);
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for End {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.tx.lock() {
            Ok(mut queue) => {
                queue.bytes.extend(buf);
                Poll::Ready(Ok(buf.len()))
            }
            Err(_) => Poll::Ready(Err(io::Error::other("pipe lock poisoned"))),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if let Ok(mut queue) = self.tx.lock() {
            queue.closed = true;
        }
        Poll::Ready(Ok(()))
    }
}

fn poll<F: Future + ?Sized>(f: Pin<&mut F>) -> Poll<F::Output> {
    f.poll(&mut Context::from_waker(Waker::noop()))
}

/// Runs a future that cannot wait on anything (the pipe never makes a writer wait, and the
/// reader's end is closed before it reads): pending here means it would hang.
fn now<F: Future>(f: F) -> F::Output {
    match poll(pin!(f)) {
        Poll::Ready(out) => out,
        Poll::Pending => panic!("a transport call blocked on a closed in-memory pipe"),
    }
}

fn keys() -> &'static (NoiseKeypair, NoiseKeypair) {
    static KEYS: OnceLock<(NoiseKeypair, NoiseKeypair)> = OnceLock::new();
    KEYS.get_or_init(|| {
        (
            NoiseKeypair::from_seed([0x67; 32]),
            NoiseKeypair::from_seed([0x63; 32]),
        )
    })
}

/// A handshake between the client and the gatekeeper over a fresh pipe; the client-to-server
/// queue is returned so raw bytes can be put on the wire.
fn connected() -> (Established, Established, Shared) {
    let (server_key, client_key) = keys();
    let up = Shared::default();
    let down = Shared::default();
    let server_end = End {
        rx: Arc::clone(&up),
        tx: Arc::clone(&down),
    };
    let client_end = End {
        rx: down,
        tx: Arc::clone(&up),
    };
    let mut accept = pin!(noise_accept(server_end, server_key));
    let mut connect = pin!(noise_connect(client_end, client_key, &server_key.public));
    let (mut server, mut client) = (None, None);
    // Intro and three messages: a few rounds of polling each side are enough.
    for _ in 0..16 {
        if server.is_none()
            && let Poll::Ready(r) = poll(accept.as_mut())
        {
            server = Some(r);
        }
        if client.is_none()
            && let Poll::Ready(r) = poll(connect.as_mut())
        {
            client = Some(r);
        }
        if server.is_some() && client.is_some() {
            break;
        }
    }
    match (server, client) {
        (Some(Ok(server)), Some(Ok(client))) => (server, client, up),
        (server, client) => panic!(
            "the Noise handshake between fixed keys did not complete: server {:?}, client {:?}",
            server.map(|r| r.map(|_| ())),
            client.map(|r| r.map(|_| ()))
        ),
    }
}

/// The target `noise_frames`. Operations, each a byte `op` and a byte `len` followed by `len`
/// bytes of data: `op % 4` is 0 raw bytes, 1 `send`, 2 `send_framed` with mode
/// `FrameMode::ALL[op / 4 % 6]`, 3 a raw length field (the first two data bytes) then the rest.
pub fn noise_frames(data: &[u8]) {
    let (mut server, mut client, wire) = connected();
    let mut sent = Vec::new();
    let mut clean = true;
    let mut rest = data;
    while let Some((&op, tail)) = rest.split_first() {
        let (&len, tail) = tail.split_first().unwrap_or((&0, &[]));
        let (chunk, tail) = tail.split_at(usize::from(len).min(tail.len()));
        rest = tail;
        match op % 4 {
            0 | 3 => {
                clean = false;
                if let Ok(mut queue) = wire.lock() {
                    queue.bytes.extend(chunk);
                }
            }
            1 => {
                let result = now(client.writer.send(chunk));
                assert!(result.is_ok(), "send of {} bytes: {result:?}", chunk.len());
                sent.extend_from_slice(chunk);
            }
            _ => {
                let mode = FrameMode::ALL[usize::from(op / 4) % FrameMode::ALL.len()];
                let result = now(client.writer.send_framed(chunk, mode));
                match (mode, result) {
                    (FrameMode::Split, Ok(())) => sent.extend_from_slice(chunk),
                    (_, Ok(())) => clean = false,
                    // Refused before anything was written (empty text, too long, ...).
                    (_, Err(_)) => {}
                }
            }
        }
    }
    now(client.writer.shutdown()).ok();

    let mut parser = StreamParser::new(Framing::Auto, Limits::harness_ceilings());
    let mut parser_failed = false;
    let mut received = Vec::new();
    let mut error = None;
    // Every call consumes at least a length field, or ends the loop.
    for _ in 0..=data.len().saturating_add(sent.len()) {
        match now(server.reader.recv()) {
            Ok(Some(plain)) => {
                assert!(
                    plain.len() <= MAX_NOISE_PLAINTEXT,
                    "a chunk of {} bytes from one frame",
                    plain.len()
                );
                received.extend_from_slice(&plain);
                if !parser_failed {
                    parser.feed(&plain);
                    loop {
                        match parser.next_event() {
                            Ok(Some(_)) => {}
                            Ok(None) => break,
                            Err(_) => {
                                parser_failed = true;
                                break;
                            }
                        }
                    }
                }
            }
            Ok(None) => break,
            Err(e) => {
                error = Some(e);
                break;
            }
        }
    }
    if clean {
        assert!(
            error.is_none(),
            "well-formed frames, and recv failed: {error:?}"
        );
        assert!(
            received == sent,
            "the plaintext received is not the plaintext sent"
        );
    } else {
        assert!(
            received.len() <= data.len().saturating_add(sent.len()),
            "more plaintext received than was put on the wire"
        );
    }
}
