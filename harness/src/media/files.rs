//! Objects to and from files without holding them: a response body read from a file by a
//! blocking task in chunks (through a small bounded channel, so a slow client holds back the
//! reader), a body of zeros, and a blocking writer fed chunk by chunk.

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::task::{Context, Poll};

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

use super::serve::BoxError;

/// Bytes per chunk read from or written to a file.
pub const CHUNK: usize = 64 * 1024;
/// Chunks read ahead of the client.
const READ_AHEAD: usize = 2;
/// Chunk of an endless body of zeros: small, so that what the client did not read is small.
const ZERO_CHUNK: usize = 16 * 1024;
static ZEROS: [u8; ZERO_CHUNK] = [0; ZERO_CHUNK];

/// How far a response body got; shared between the body and the request log.
#[derive(Debug, Default)]
pub struct Transfer {
    bytes: AtomicU64,
    state: AtomicU8,
}

const PENDING: u8 = 0;
const COMPLETE: u8 = 1;
const CUT: u8 = 2;

impl Transfer {
    /// Body bytes handed to the connection so far (hyper asks for the next chunk only when it
    /// has room for it, so at most one chunk more than has reached the socket).
    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::SeqCst)
    }

    /// `Some(true)` when the whole body went out, `Some(false)` when it was cut (by a fault,
    /// an error or the client leaving), `None` while it is still going.
    pub fn complete(&self) -> Option<bool> {
        match self.state.load(Ordering::SeqCst) {
            COMPLETE => Some(true),
            CUT => Some(false),
            _ => None,
        }
    }

    fn end(&self, state: u8) {
        let _ = self
            .state
            .compare_exchange(PENDING, state, Ordering::SeqCst, Ordering::SeqCst);
    }
}

/// What to read of a file.
#[derive(Debug, Clone)]
pub struct ReadPlan {
    pub path: PathBuf,
    /// Bytes to send from the start of the file.
    pub send: u64,
    /// XOR this byte offset with 1 (the last byte of the tag: `flip-tag`).
    pub flip_at: Option<u64>,
    /// End with an error after `send` bytes instead of completing (`truncate`).
    pub cut: bool,
}

enum Source {
    File(mpsc::Receiver<io::Result<Bytes>>),
    Zeros { remaining: u64 },
}

/// A response body from a file (or of zeros), counted in a [`Transfer`].
pub struct ObjectBody {
    source: Source,
    transfer: Arc<Transfer>,
    /// Declared length, for the size hint.
    len: u64,
}

impl ObjectBody {
    /// Starts a blocking reader for `plan`; it stops as soon as the body is dropped. `len` is
    /// the length the response declares.
    pub fn file(plan: ReadPlan, len: u64, transfer: Arc<Transfer>) -> ObjectBody {
        let (tx, rx) = mpsc::channel(READ_AHEAD);
        tokio::task::spawn_blocking(move || read_file(plan, tx));
        ObjectBody {
            source: Source::File(rx),
            transfer,
            len,
        }
    }

    /// `len` zero bytes.
    pub fn zeros(len: u64, transfer: Arc<Transfer>) -> ObjectBody {
        ObjectBody {
            source: Source::Zeros { remaining: len },
            transfer,
            len,
        }
    }
}

fn read_file(plan: ReadPlan, tx: mpsc::Sender<io::Result<Bytes>>) {
    let mut file = match File::open(&plan.path) {
        Ok(f) => f,
        Err(e) => {
            let _ = tx.blocking_send(Err(e));
            return;
        }
    };
    let mut offset = 0u64;
    while offset < plan.send {
        let want = usize::try_from(plan.send - offset).map_or(CHUNK, |n| n.min(CHUNK));
        let mut buf = vec![0u8; want];
        if let Err(e) = file.read_exact(&mut buf) {
            let _ = tx.blocking_send(Err(e));
            return;
        }
        if let Some(at) = plan.flip_at
            && (offset..offset + want as u64).contains(&at)
        {
            buf[(at - offset) as usize] ^= 1;
        }
        offset += want as u64;
        if tx.blocking_send(Ok(Bytes::from(buf))).is_err() {
            return; // the body is gone: the client left
        }
    }
    if plan.cut {
        let _ = tx.blocking_send(Err(io::Error::other("cut short by the `truncate` fault")));
    }
}

impl Body for ObjectBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        let next = match &mut this.source {
            Source::Zeros { remaining } => {
                if *remaining == 0 {
                    None
                } else {
                    let n = usize::try_from(*remaining).map_or(ZERO_CHUNK, |r| r.min(ZERO_CHUNK));
                    *remaining -= n as u64;
                    Some(Ok(Bytes::from_static(&ZEROS[..n])))
                }
            }
            Source::File(rx) => match rx.poll_recv(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(r) => r,
            },
        };
        Poll::Ready(match next {
            Some(Ok(chunk)) => {
                let n = chunk.len() as u64;
                let total = this.transfer.bytes.fetch_add(n, Ordering::SeqCst) + n;
                // hyper may stop polling once the declared length went out.
                if total >= this.len {
                    this.transfer.end(COMPLETE);
                }
                Some(Ok(Frame::data(chunk)))
            }
            Some(Err(e)) => {
                this.transfer.end(CUT);
                Some(Err(Box::new(e)))
            }
            None => {
                this.transfer.end(COMPLETE);
                None
            }
        })
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.len)
    }
}

impl Drop for ObjectBody {
    fn drop(&mut self) {
        // Complete or cut was set already; otherwise the client went away before the end.
        self.transfer.end(CUT);
    }
}

/// What a finished [`FileWriter`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    pub path: PathBuf,
    pub len: u64,
    /// Lowercase hex SHA-256 of the bytes written.
    pub sha256: String,
}

/// A file written by a blocking task from chunks sent to it (bounded, so the sender waits for
/// the disk). Dropped without [`FileWriter::finish`], it removes the file.
pub struct FileWriter {
    tx: Option<mpsc::Sender<Bytes>>,
    task: Option<tokio::task::JoinHandle<io::Result<Written>>>,
    path: PathBuf,
}

impl FileWriter {
    /// Creates (or truncates) `path`.
    pub fn create(path: &Path) -> io::Result<FileWriter> {
        let file = File::create(path)?;
        let (tx, rx) = mpsc::channel::<Bytes>(READ_AHEAD);
        let owned = path.to_path_buf();
        let task = tokio::task::spawn_blocking(move || write_file(file, owned, rx));
        Ok(FileWriter {
            tx: Some(tx),
            task: Some(task),
            path: path.to_path_buf(),
        })
    }

    /// Queues a chunk; waits while the writer is behind. An error means the writer failed.
    pub async fn write(&mut self, chunk: Bytes) -> Result<(), String> {
        let tx = self.tx.as_ref().ok_or("writer already finished")?;
        if tx.send(chunk).await.is_ok() {
            return Ok(());
        }
        // The writer stopped: its error says why.
        match self.task.take() {
            Some(t) => match t.await {
                Ok(Err(e)) => Err(format!("writing {}: {e}", self.path.display())),
                _ => Err(format!(
                    "writing {}: the writer stopped",
                    self.path.display()
                )),
            },
            None => Err("writer already finished".into()),
        }
    }

    /// Waits for every chunk to be written.
    pub async fn finish(mut self) -> Result<Written, String> {
        self.tx = None;
        let task = self.task.take().ok_or("the writer failed earlier")?;
        match task.await {
            Ok(Ok(w)) => Ok(w),
            Ok(Err(e)) => Err(format!("writing {}: {e}", self.path.display())),
            Err(e) => Err(format!("writing {}: {e}", self.path.display())),
        }
    }
}

impl Drop for FileWriter {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            // Unfinished: close the channel, let the writer end, then remove what it wrote.
            self.tx = None;
            let path = self.path.clone();
            match tokio::runtime::Handle::try_current() {
                Ok(rt) => {
                    rt.spawn(async move {
                        let _ = task.await;
                        let _ = std::fs::remove_file(path);
                    });
                }
                Err(_) => {
                    let _ = std::fs::remove_file(path);
                }
            }
        }
    }
}

fn write_file(mut file: File, path: PathBuf, mut rx: mpsc::Receiver<Bytes>) -> io::Result<Written> {
    let mut hash = Sha256::new();
    let mut len = 0u64;
    while let Some(chunk) = rx.blocking_recv() {
        file.write_all(&chunk)?;
        hash.update(&chunk);
        len += chunk.len() as u64;
    }
    file.flush()?;
    Ok(Written {
        path,
        len,
        sha256: super::aesgcm::hex_lower(&hash.finalize()),
    })
}
