//! What the media host and the media proxy share as servers: a loopback listener with a cap on
//! connections, an optional TLS 1.3 handshake with a deadline, hyper's HTTP/1.1 with a bounded
//! request head, and a watchdog that closes a connection on which no byte moved either way for
//! the idle timeout (a client that stops reading mid-body as much as one that never sends).
//! Every connection task belongs to the listener: dropping the [`Listener`] aborts them all.

use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::{Request, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use rustls::ServerConfig;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;

/// The error type of response bodies: whatever stops a body mid-way (hyper then closes).
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// Every response body the media servers send.
pub type RespBody = BoxBody<Bytes, BoxError>;

/// A handler: one request (and the peer that sent it) to its response.
pub(crate) type Handler = Arc<
    dyn Fn(Request<Incoming>, SocketAddr) -> BoxFuture<'static, Response<RespBody>> + Send + Sync,
>;

/// Called with what happened to a connection that never carried a request.
pub(crate) type EventSink = Arc<dyn Fn(SocketAddr, ConnProblem) + Send + Sync>;

/// The bounds of a media server.
#[derive(Debug, Clone)]
pub struct Limits {
    /// A TLS handshake must finish within this.
    pub handshake_timeout: Duration,
    /// A request head must arrive within this (hyper's header read timeout).
    pub header_timeout: Duration,
    /// A connection with no request in flight on which no byte was read or written for this
    /// long is closed; one with a request in flight (a body going either way) is closed when
    /// it moved fewer than `min_rate` bytes a second over such a window.
    pub idle_timeout: Duration,
    /// The slowest transfer tolerated, in bytes a second (a stalled reader still lets the
    /// kernel trickle a little through, so "no byte at all" is not enough).
    pub min_rate: u64,
    /// Connections served at once; more are closed as soon as they are accepted.
    pub max_connections: usize,
    /// hyper's read buffer, and so the largest request head.
    pub max_head_bytes: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            handshake_timeout: Duration::from_secs(5),
            header_timeout: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(15),
            min_rate: 64 * 1024,
            max_connections: 32,
            max_head_bytes: 16 * 1024,
        }
    }
}

/// A connection that failed before its first request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnProblem {
    /// Plain text on the TLS port: most likely an `http://` request; the first line as sent
    /// (at most 256 bytes, lossy UTF-8).
    PlainText(String),
    /// The TLS handshake failed or did not finish in time.
    Handshake(String),
}

/// A running listener; dropping it stops it and aborts every connection task.
pub(crate) struct Listener {
    addr: SocketAddr,
    refused: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl Listener {
    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Connections closed at once because the cap was reached.
    pub(crate) fn refused_connections(&self) -> usize {
        self.refused.load(Ordering::SeqCst)
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        // The accept task owns the JoinSet: aborting it drops the set, which aborts the rest.
        self.task.abort();
    }
}

/// Binds 127.0.0.1 on an ephemeral port.
pub(crate) async fn bind() -> Result<TcpListener, String> {
    TcpListener::bind(("127.0.0.1", 0))
        .await
        .map_err(|e| format!("bind 127.0.0.1: {e}"))
}

/// Serves `handler` on `listener`, over TLS when `tls` is given.
pub(crate) fn serve(
    listener: TcpListener,
    tls: Option<Arc<ServerConfig>>,
    limits: Limits,
    handler: Handler,
    events: EventSink,
) -> Result<Listener, String> {
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let refused = Arc::new(AtomicUsize::new(0));
    let task = tokio::spawn(accept_loop(
        listener,
        tls,
        Arc::new(limits),
        handler,
        events,
        refused.clone(),
    ));
    Ok(Listener {
        addr,
        refused,
        task,
    })
}

async fn accept_loop(
    listener: TcpListener,
    tls: Option<Arc<ServerConfig>>,
    limits: Arc<Limits>,
    handler: Handler,
    events: EventSink,
    refused: Arc<AtomicUsize>,
) {
    let permits = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let mut tasks = JoinSet::new();
    loop {
        tokio::select! {
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
            accepted = listener.accept() => match accepted {
                Ok((tcp, peer)) => match permits.clone().try_acquire_owned() {
                    Ok(permit) => {
                        let (tls, limits, handler, events) =
                            (tls.clone(), limits.clone(), handler.clone(), events.clone());
                        tasks.spawn(async move {
                            connection(tcp, peer, tls, &limits, handler, events).await;
                            drop(permit);
                        });
                    }
                    Err(_) => {
                        refused.fetch_add(1, Ordering::SeqCst);
                        drop(tcp);
                    }
                },
                // Out of descriptors and the like: pause instead of spinning on the error.
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            },
        }
    }
}

async fn connection(
    tcp: TcpStream,
    peer: SocketAddr,
    tls: Option<Arc<ServerConfig>>,
    limits: &Limits,
    handler: Handler,
    events: EventSink,
) {
    let _ = tcp.set_nodelay(true);
    let Some(tls) = tls else {
        return http(tcp, peer, limits, handler).await;
    };
    let deadline = Instant::now() + limits.handshake_timeout;
    // A TLS connection opens with a handshake record (0x16); a letter means plain text.
    let mut first = [0u8; 1];
    if let Ok(Ok(1)) = tokio::time::timeout_at(deadline, tcp.peek(&mut first)).await
        && first[0].is_ascii_alphabetic()
    {
        let line = first_line(tcp, deadline).await;
        events(peer, ConnProblem::PlainText(line));
        return;
    }
    let accept = tokio_rustls::TlsAcceptor::from(tls).accept(tcp);
    match tokio::time::timeout_at(deadline, accept).await {
        Ok(Ok(stream)) => http(stream, peer, limits, handler).await,
        Ok(Err(e)) => events(peer, ConnProblem::Handshake(e.to_string())),
        Err(_) => events(
            peer,
            ConnProblem::Handshake(format!(
                "not finished within {} ms",
                limits.handshake_timeout.as_millis()
            )),
        ),
    }
}

/// The first line of a plain-text connection (at most 256 bytes, read before `deadline`).
async fn first_line(mut tcp: TcpStream, deadline: Instant) -> String {
    let mut buf = Vec::with_capacity(256);
    let mut chunk = [0u8; 256];
    while buf.len() < 256 && !buf.contains(&b'\n') {
        match tokio::time::timeout_at(deadline, tcp.read(&mut chunk)).await {
            Ok(Ok(n)) if n > 0 => buf.extend_from_slice(&chunk[..n.min(256 - buf.len())]),
            _ => break,
        }
    }
    let end = buf.iter().position(|&b| b == b'\r' || b == b'\n');
    String::from_utf8_lossy(&buf[..end.unwrap_or(buf.len())]).into_owned()
}

async fn http<S>(stream: S, peer: SocketAddr, limits: &Limits, handler: Handler)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let progress = Arc::new(Progress::new());
    let io = Watched {
        inner: stream,
        progress: progress.clone(),
    };
    let busy_progress = progress.clone();
    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
        // In flight from the head's arrival until hyper drops the response body.
        let busy = busy_progress.begin();
        let response = handler(req, peer);
        async move {
            let response = response.await;
            Ok::<_, Infallible>(response.map(|inner| Guarded { inner, _busy: busy }.boxed()))
        }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_buf_size(limits.max_head_bytes.max(8192));
    let conn = builder.serve_connection(TokioIo::new(io), service);
    tokio::select! {
        _ = conn => {}
        () = progress.watch(limits.idle_timeout, limits.min_rate) => {}
    }
}

/// A response body that keeps its request counted as in flight.
struct Guarded {
    inner: RespBody,
    _busy: Busy,
}

impl Body for Guarded {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        Pin::new(&mut self.get_mut().inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// What a connection moved, and when.
pub(crate) struct Progress {
    start: Instant,
    /// Milliseconds from `start` to the last read or write that moved bytes.
    last_ms: AtomicU64,
    /// Bytes moved either way.
    moved: AtomicU64,
    /// Requests whose response body is not yet dropped.
    in_flight: AtomicUsize,
    /// Start of the current measuring window (ms from `start`), and `moved` then.
    window_ms: AtomicU64,
    window_moved: AtomicU64,
}

/// Counts a request as in flight while it lives.
pub(crate) struct Busy(Arc<Progress>);

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.touch(0);
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Progress {
    pub(crate) fn new() -> Progress {
        Progress {
            start: Instant::now(),
            last_ms: AtomicU64::new(0),
            moved: AtomicU64::new(0),
            in_flight: AtomicUsize::new(0),
            window_ms: AtomicU64::new(0),
            window_moved: AtomicU64::new(0),
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    pub(crate) fn touch(&self, n: usize) {
        self.moved.fetch_add(n as u64, Ordering::SeqCst);
        self.last_ms.store(self.now_ms(), Ordering::SeqCst);
    }

    fn new_window(&self) {
        self.window_moved
            .store(self.moved.load(Ordering::SeqCst), Ordering::SeqCst);
        self.window_ms.store(self.now_ms(), Ordering::SeqCst);
    }

    /// Marks a request in flight; the first one starts a new measuring window.
    pub(crate) fn begin(self: &Arc<Self>) -> Busy {
        if self.in_flight.fetch_add(1, Ordering::SeqCst) == 0 {
            self.new_window();
        }
        Busy(self.clone())
    }

    fn at(&self, ms: &AtomicU64) -> Instant {
        self.start + Duration::from_millis(ms.load(Ordering::SeqCst))
    }

    /// Completes when the connection should be closed: idle for `idle` with nothing in
    /// flight, or slower than `min_rate` bytes a second over a window of `idle` with a
    /// request in flight.
    pub(crate) async fn watch(&self, idle: Duration, min_rate: u64) {
        let needed = (min_rate as f64 * idle.as_secs_f64()) as u64;
        loop {
            let now = Instant::now();
            if self.in_flight.load(Ordering::SeqCst) == 0 {
                let until = self.at(&self.last_ms) + idle;
                if now >= until {
                    return;
                }
                tokio::time::sleep_until(until).await;
                continue;
            }
            let until = self.at(&self.window_ms) + idle;
            if now < until {
                tokio::time::sleep_until(until).await;
                continue;
            }
            let moved =
                self.moved.load(Ordering::SeqCst) - self.window_moved.load(Ordering::SeqCst);
            if moved < needed.max(1) && self.in_flight.load(Ordering::SeqCst) > 0 {
                return;
            }
            self.new_window();
        }
    }
}

/// A stream that notes every read or write that moved bytes.
pub(crate) struct Watched<S> {
    pub(crate) inner: S,
    pub(crate) progress: Arc<Progress>,
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let r = Pin::new(&mut this.inner).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            this.progress.touch(buf.filled().len() - before);
        }
        r
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = r
            && n > 0
        {
            this.progress.touch(n);
        }
        r
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        if let Poll::Ready(Ok(n)) = r
            && n > 0
        {
            this.progress.touch(n);
        }
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// A response with a small fixed body (and `Content-Length`).
pub(crate) fn simple(status: u16, headers: &[(&str, &str)], body: &str) -> Response<RespBody> {
    let mut b = Response::builder().status(status);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    let body = Full::new(Bytes::from(body.to_owned()))
        .map_err(|never: Infallible| match never {})
        .boxed();
    b.body(body).unwrap_or_else(|_| {
        // Only a bad header value gets here; every caller passes fixed, valid ones.
        let mut r = Response::new(
            Full::new(Bytes::new())
                .map_err(|never: Infallible| match never {})
                .boxed(),
        );
        *r.status_mut() = hyper::StatusCode::INTERNAL_SERVER_ERROR;
        r
    })
}

/// The request's headers as recorded: names lowercase, values lossy UTF-8, at most `max`.
pub(crate) fn recorded_headers(h: &hyper::HeaderMap, max: usize) -> Vec<(String, String)> {
    h.iter()
        .take(max)
        .map(|(k, v)| {
            (
                k.as_str().to_owned(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect()
}
