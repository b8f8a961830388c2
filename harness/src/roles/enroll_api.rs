//! The gatekeeper's enrollment API (SPEC.md §10) as the harness plays it towards a client IUT:
//! an HTTPS server on a loopback port answering `POST /v1/enroll`, checking each request as
//! ENROLL-16/17 and IDPROOF-11 require of a gatekeeper, and recording what the client did
//! wrong (ENROLL-2..13, IDPROOF-3/4/6/8/9/10) so that a verdict can name the requirement.
//!
//! The client is hostile input: headers and bodies are bounded in size and time, at most
//! [`EnrollConfig::max_connections`] connections are served at once, a connection with no
//! request in flight is closed after [`EnrollConfig::header_timeout`], and a failed or stalled
//! TLS handshake costs only its own connection. Scenarios can script answers ([`Forced`]) to
//! see how the client handles rate limits, server errors, conflicts and silence.

#[path = "enroll_check.rs"]
pub mod check;
#[path = "enroll_handle.rs"]
mod handle;
#[path = "enroll_state.rs"]
mod state;

pub use state::{
    DeviceKeys, DeviceRef, EnrollState, EnrolledDevice, Enrollment, SharedEnrollState,
    SignedPrekey, lock,
};

use std::collections::VecDeque;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::future::BoxFuture;
use hyper::Request;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use rustls::ServerConfig;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, oneshot};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;

use crate::transport::{TlsIdentity, server_config};
use crate::verdict::Deviation;

/// The one path the API serves.
pub const ENROLL_PATH: &str = "/v1/enroll";
/// Largest body read (bodies above it are refused, never buffered).
pub const MAX_BODY: usize = 1 << 20;
/// Bytes of each body kept in the request log; a valid enrollment is well under this.
pub const MAX_RECORDED_BODY: usize = 64 * 1024;
/// Requests kept in the log; later ones are counted in [`EnrollApi::dropped_requests`].
pub const MAX_LOG: usize = 1024;
/// Refused bodies remembered for ENROLL-11.
pub(super) const MAX_REFUSED: usize = 1024;
/// Connection events kept.
const MAX_EVENTS: usize = 256;
/// Headers recorded per request (hyper itself refuses more than 100).
pub(super) const MAX_RECORDED_HEADERS: usize = 64;
/// hyper's read buffer, and so the largest request head.
const MAX_HEAD_BYTES: usize = 16 * 1024;
/// ENROLL-13's wait when a 429 had no usable Retry-After.
pub const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(60);

/// Decides whether a provider token is valid for an identifier (ENROLL-17; in a full run the
/// provider's user authentication endpoint of §12). `Ok(false)` is a refusal (403); `Err` means
/// the provider could not be asked (503).
pub type TokenCheck =
    Arc<dyn Fn(String, String) -> BoxFuture<'static, Result<bool, String>> + Send + Sync>;

/// A [`TokenCheck`] from an async closure.
pub fn token_check<F, Fut>(f: F) -> TokenCheck
where
    F: Fn(String, String) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<bool, String>> + Send + 'static,
{
    Arc::new(move |identifier, token| Box::pin(f(identifier, token)))
}

/// A [`TokenCheck`] that accepts every token.
pub fn accept_all_tokens() -> TokenCheck {
    token_check(|_, _| async { Ok(true) })
}

/// How the API runs.
#[derive(Debug, Clone)]
pub struct EnrollConfig {
    /// The gatekeeper domain returned as `domain`.
    pub domain: String,
    /// The Noise static public key returned as `server_static_key` (ENROLL-9, STREAM-6).
    pub server_static_key: [u8; 32],
    /// The provider's identifier prefixes and domains (ENROLL-6); empty lists accept any.
    pub onboarded: check::Onboarded,
    /// A connection with no request in flight is closed after this long without one; it also
    /// bounds reading a request head.
    pub header_timeout: Duration,
    /// Reading a whole body must finish within this, from the request head's arrival.
    pub body_timeout: Duration,
    /// A TLS handshake must finish within this.
    pub handshake_timeout: Duration,
    /// The token checker must answer within this, or the answer is 503.
    pub token_timeout: Duration,
    /// Connections served at once; more are closed as soon as they are accepted.
    pub max_connections: usize,
}

impl EnrollConfig {
    pub fn new(domain: &str, server_static_key: [u8; 32]) -> EnrollConfig {
        EnrollConfig {
            domain: domain.to_owned(),
            server_static_key,
            onboarded: check::Onboarded::default(),
            header_timeout: Duration::from_secs(5),
            body_timeout: Duration::from_secs(10),
            handshake_timeout: Duration::from_secs(5),
            token_timeout: Duration::from_secs(10),
            max_connections: 32,
        }
    }
}

/// A scripted answer, given to the next request instead of the real one (the checks still
/// run for the request's deviations, but change no state and consume no nonce).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Forced {
    /// This status with a JSON error body (`rate_limited` for 429, `unavailable` for 5xx),
    /// and a `Retry-After` header in seconds when given.
    Status {
        status: u16,
        retry_after: Option<u32>,
    },
    /// 409 `device_id_conflict`.
    Conflict,
    /// No answer until the client closes the connection (or the server shuts down).
    Hang,
    /// This status and error code.
    Refuse(u16, String),
}

/// What the API answered, or that it did not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// `None` when no answer was sent (a hang, a body cut off by the client).
    pub status: Option<u16>,
    /// The error code of the body, or `None` for a success.
    pub code: Option<String>,
}

/// One request received, as recorded for verdicts on the client.
#[derive(Debug, Clone)]
pub struct EnrollRequest {
    /// Sequence number: requests are numbered as their heads arrive.
    pub seq: u64,
    pub at: Instant,
    pub method: String,
    /// Path and query as sent.
    pub path: String,
    /// Header names lowercase, in received order (at most 64).
    pub headers: Vec<(String, String)>,
    /// The first [`MAX_RECORDED_BODY`] bytes of the body (empty when it was not read).
    pub body: Vec<u8>,
    /// The body's full length, when it was read whole.
    pub body_len: Option<usize>,
    pub outcome: Outcome,
    /// What the client did wrong in this request, each naming its requirement.
    pub client_deviations: Vec<Deviation>,
}

impl EnrollRequest {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A connection that never carried a request: its handshake failed or timed out.
#[derive(Debug, Clone)]
pub struct ConnEvent {
    pub at: Instant,
    pub peer: SocketAddr,
    pub what: String,
    /// ENROLL-7 when the client spoke plain HTTP to the HTTPS API.
    pub deviation: Option<Deviation>,
}

/// The server's bookkeeping, apart from the enrollment state.
#[derive(Default)]
struct Log {
    forced: VecDeque<Forced>,
    requests: Vec<EnrollRequest>,
    dropped: u64,
    next_seq: u64,
    /// SHA-256 of bodies answered 400/401/403/415, with the request that earned it.
    refused: VecDeque<([u8; 32], u64, u16, String)>,
    /// ENROLL-13: no request before this, set by a 429 (seq of that 429, the wait).
    quiet_until: Option<(Instant, u64, Option<u32>)>,
    events: Vec<ConnEvent>,
}

pub(super) struct Shared {
    config: EnrollConfig,
    state: SharedEnrollState,
    token_check: TokenCheck,
    log: Mutex<Log>,
    /// Woken whenever a request is recorded.
    recorded: Notify,
    active: AtomicUsize,
    refused_connections: AtomicUsize,
}

impl Shared {
    fn log(&self) -> std::sync::MutexGuard<'_, Log> {
        // Same reasoning as `lock`: every change to the log is a whole push or pop.
        self.log.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The running API. Dropping it stops the server as [`EnrollApi::shutdown`] does, without
/// waiting.
pub struct EnrollApi {
    addr: SocketAddr,
    identity: TlsIdentity,
    shared: Arc<Shared>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for EnrollApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EnrollApi")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl EnrollApi {
    /// Starts the API on an ephemeral 127.0.0.1 port with a fresh certificate for
    /// `127.0.0.1` (the client must trust [`EnrollApi::ca_pem`]).
    pub async fn start(
        config: EnrollConfig,
        state: SharedEnrollState,
        token_check: TokenCheck,
    ) -> Result<EnrollApi, String> {
        let identity = TlsIdentity::try_generate("127.0.0.1").map_err(|e| e.to_string())?;
        let listener = TcpListener::bind(("127.0.0.1", 0))
            .await
            .map_err(|e| format!("bind 127.0.0.1: {e}"))?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        let tls = https_config(&identity);
        let shared = Arc::new(Shared {
            config,
            state,
            token_check,
            log: Mutex::new(Log::default()),
            recorded: Notify::new(),
            active: AtomicUsize::new(0),
            refused_connections: AtomicUsize::new(0),
        });
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(accept_loop(listener, tls, shared.clone(), stopped));
        Ok(EnrollApi {
            addr,
            identity,
            shared,
            stop: Some(stop),
            task: Some(task),
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `https://127.0.0.1:PORT`, the `{enroll}` base URL of §10.1.
    pub fn base_url(&self) -> String {
        format!("https://{}", self.addr)
    }

    pub fn tls_identity(&self) -> &TlsIdentity {
        &self.identity
    }

    /// The CA the client must trust for this API.
    pub fn ca_pem(&self) -> &str {
        &self.identity.ca_pem
    }

    pub fn state(&self) -> SharedEnrollState {
        self.shared.state.clone()
    }

    /// Queues a scripted answer for a coming request (one per request, in order).
    pub fn force(&self, answer: Forced) {
        self.shared.log().forced.push_back(answer);
    }

    /// Drops every scripted answer not yet given.
    pub fn clear_forced(&self) {
        self.shared.log().forced.clear();
    }

    /// Scripted answers not yet given.
    pub fn forced_pending(&self) -> usize {
        self.shared.log().forced.len()
    }

    /// Every request recorded so far, in order of arrival.
    pub fn requests(&self) -> Vec<EnrollRequest> {
        let mut r = self.shared.log().requests.clone();
        r.sort_by_key(|q| q.seq);
        r
    }

    /// Requests beyond [`MAX_LOG`], not recorded.
    pub fn dropped_requests(&self) -> u64 {
        self.shared.log().dropped
    }

    /// Every client deviation of every recorded request, in order of arrival, then those
    /// of connections that never carried a request.
    pub fn client_deviations(&self) -> Vec<Deviation> {
        let mut out: Vec<Deviation> = self
            .requests()
            .into_iter()
            .flat_map(|r| r.client_deviations)
            .collect();
        out.extend(
            self.shared
                .log()
                .events
                .iter()
                .filter_map(|e| e.deviation.clone()),
        );
        out
    }

    /// Connections whose handshake failed or timed out.
    pub fn connection_events(&self) -> Vec<ConnEvent> {
        self.shared.log().events.clone()
    }

    /// Connections being served now.
    pub fn active_connections(&self) -> usize {
        self.shared.active.load(Ordering::SeqCst)
    }

    /// Connections closed at once because [`EnrollConfig::max_connections`] were busy.
    pub fn refused_connections(&self) -> usize {
        self.shared.refused_connections.load(Ordering::SeqCst)
    }

    /// Waits until at least `n` requests are recorded; false when `deadline` passed first.
    pub async fn wait_for_requests(&self, n: usize, deadline: Instant) -> bool {
        loop {
            let notified = self.shared.recorded.notified();
            if self.shared.log().requests.len() >= n {
                return true;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return self.shared.log().requests.len() >= n;
            }
        }
    }

    /// Stops accepting, closes every connection and waits until no task of the API runs.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for EnrollApi {
    fn drop(&mut self) {
        // Aborting the accept task drops its JoinSet, which aborts every connection task.
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// The server's TLS: the harness's TLS 1.3 settings, offering ALPN `http/1.1` (a client that
/// offers ALPN without it is refused in the handshake; one offering none is served).
fn https_config(identity: &TlsIdentity) -> Arc<ServerConfig> {
    let mut config = (*server_config(identity, false)).clone();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(config)
}

async fn accept_loop(
    listener: TcpListener,
    tls: Arc<ServerConfig>,
    shared: Arc<Shared>,
    mut stopped: oneshot::Receiver<()>,
) {
    let permits = Arc::new(Semaphore::new(shared.config.max_connections.max(1)));
    let mut tasks = JoinSet::new();
    loop {
        tokio::select! {
            _ = &mut stopped => break,
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
            accepted = listener.accept() => match accepted {
                Ok((tcp, peer)) => match permits.clone().try_acquire_owned() {
                    Ok(permit) => {
                        tasks.spawn(serve_connection(tcp, peer, tls.clone(), shared.clone(), permit));
                    }
                    Err(_) => {
                        shared.refused_connections.fetch_add(1, Ordering::SeqCst);
                        drop(tcp);
                    }
                },
                // Out of descriptors and the like: pause instead of spinning on the error.
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            },
        }
    }
    drop(listener);
    tasks.shutdown().await;
}

/// Counts a connection as active for as long as it lives.
struct ActiveGuard(Arc<Shared>);

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Per connection: requests in flight and the end of the last one, for the idle timeout.
#[derive(Default)]
struct Activity {
    in_flight: AtomicUsize,
    last: Mutex<Option<Instant>>,
}

struct InFlight(Arc<Activity>);

impl InFlight {
    fn start(a: &Arc<Activity>) -> InFlight {
        a.in_flight.fetch_add(1, Ordering::SeqCst);
        InFlight(a.clone())
    }
}

impl Drop for InFlight {
    // Runs also when hyper drops a hanging request because the client went away.
    fn drop(&mut self) {
        if let Ok(mut last) = self.0.last.lock() {
            *last = Some(Instant::now());
        }
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

async fn serve_connection(
    tcp: TcpStream,
    peer: SocketAddr,
    tls: Arc<ServerConfig>,
    shared: Arc<Shared>,
    _permit: OwnedSemaphorePermit,
) {
    shared.active.fetch_add(1, Ordering::SeqCst);
    let _guard = ActiveGuard(shared.clone());
    let _ = tcp.set_nodelay(true);
    let started = Instant::now();
    let deadline = started + shared.config.handshake_timeout;

    // A TLS connection opens with a handshake record (0x16); a letter means plain text,
    // most likely an HTTP request sent without TLS (ENROLL-7).
    let mut first = [0u8; 1];
    let plain = match tokio::time::timeout_at(deadline, tcp.peek(&mut first)).await {
        Ok(Ok(1)) => first[0].is_ascii_alphabetic(),
        _ => false,
    };
    let stream =
        match tokio::time::timeout_at(deadline, tokio_rustls::TlsAcceptor::from(tls).accept(tcp))
            .await
        {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                let deviation = plain.then(|| {
                Deviation::fail(
                    "ENROLL-7",
                    "ENROLL-7: the enrollment API called only over HTTPS",
                    "the client sent plain text (not a TLS handshake) to the HTTPS enrollment API",
                )
            });
                record_event(
                    &shared,
                    peer,
                    format!("TLS handshake failed: {e}"),
                    deviation,
                );
                return;
            }
            Err(_) => {
                record_event(
                    &shared,
                    peer,
                    format!(
                        "TLS handshake not finished within {} ms",
                        shared.config.handshake_timeout.as_millis()
                    ),
                    None,
                );
                return;
            }
        };

    let activity = Arc::new(Activity::default());
    if let Ok(mut last) = activity.last.lock() {
        *last = Some(Instant::now());
    }
    let svc_shared = shared.clone();
    let svc_activity = activity.clone();
    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
        let shared = svc_shared.clone();
        let in_flight = InFlight::start(&svc_activity);
        async move {
            let response = handle::handle(&shared, req).await;
            drop(in_flight);
            Ok::<_, Infallible>(response)
        }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(shared.config.header_timeout)
        .max_buf_size(MAX_HEAD_BYTES);
    let conn = builder.serve_connection(TokioIo::new(stream), service);
    tokio::select! {
        _ = conn => {}
        () = idle(&activity, shared.config.header_timeout) => {}
    }
}

/// Completes when the connection has had no request in flight for `limit`.
async fn idle(activity: &Activity, limit: Duration) {
    loop {
        let last = activity
            .last
            .lock()
            .ok()
            .and_then(|l| *l)
            .unwrap_or_else(Instant::now);
        let until = last + limit;
        if activity.in_flight.load(Ordering::SeqCst) == 0 && Instant::now() >= until {
            return;
        }
        let wake = if activity.in_flight.load(Ordering::SeqCst) == 0 {
            until
        } else {
            Instant::now() + limit
        };
        tokio::time::sleep_until(wake).await;
    }
}

fn record_event(shared: &Shared, peer: SocketAddr, what: String, deviation: Option<Deviation>) {
    let mut log = shared.log();
    if log.events.len() < MAX_EVENTS {
        log.events.push(ConnEvent {
            at: Instant::now(),
            peer,
            what,
            deviation,
        });
    }
}

#[cfg(test)]
#[path = "enroll_api_tests.rs"]
mod tests;
