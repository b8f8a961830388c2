//! The gatekeeper media proxy (SPEC.md §14.2, MEDIA-16): plain HTTP on 127.0.0.1 for the
//! gatekeeper's own users, `GET /v1/fetch?url=<percent-encoded https URL>`. For each request
//! it makes one plain `GET` of the URL to the provider's media host over HTTPS, trusting only
//! the provider's CA and sending nothing but `Host` (and `Range`, when the caller asked for a
//! range): no cookie, no `Authorization`, no identifier, no client address. It checks the
//! answer and streams the body through as it arrives (hyper frames, polled only when the
//! caller's connection has room: nothing like the whole object is ever held), stopping past
//! 100 MiB.
//!
//! What the provider's host did wrong is recorded per fetch, naming SPEC.md's requirement:
//! MEDIA-5 (not `200`, no `Content-Length`, a body of another length, a `Content-Encoding`),
//! MEDIA-6 (`Set-Cookie`), MEDIA-7 (a `Content-Type` other than `application/octet-stream`, a
//! `Content-Disposition` with a file name), MEDIA-22 (any `3xx`; never followed; the design's
//! MEDIA-12), MEDIA-17 (a `206` whose `Content-Range` or body is not the range asked for),
//! MEDIA-23 (an object over 100 MiB). The caller gets `502` with a short reason when the
//! provider's answer is unusable (a redirect, an error status other than 404/410, a transport
//! failure), `404`/`410` as they came, or the object.

#[path = "proxy_forward.rs"]
mod forward;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::Notify;
use tokio::time::Instant;

use super::client::{FetchError, Fetched, Timeouts, get_to_sink};
use super::percent_encode;
use super::serve::{self, Limits, Listener};
use super::sink::Sink;
use crate::verdict::Deviation;

pub use forward::{ContentRange, RangeRequest};

/// The path the proxy serves.
pub const FETCH_PATH: &str = "/v1/fetch";
/// The header the in-process client tags its requests with, to find their record (never
/// forwarded upstream).
pub const FETCH_ID_HEADER: &str = "x-gatecheck-fetch-id";
/// Fetches kept in the log; later ones are only counted.
pub const MAX_LOG: usize = 1024;

/// How the proxy runs.
#[derive(Debug, Clone)]
pub struct ProxyConfig {
    /// The provider's CA (PEM): the only one trusted for upstream HTTPS.
    pub provider_ca_pem: String,
    /// The caller-facing server's bounds.
    pub limits: Limits,
    /// The upstream fetch's bounds.
    pub upstream: Timeouts,
    /// Largest object passed on; the next byte stops the transfer.
    pub max_object: u64,
}

impl ProxyConfig {
    pub fn new(provider_ca_pem: &str) -> ProxyConfig {
        ProxyConfig {
            provider_ca_pem: provider_ca_pem.to_owned(),
            limits: Limits {
                // Longer than the upstream's header timeout: a caller waiting for the provider
                // gets the 502, not a closed connection.
                idle_timeout: std::time::Duration::from_secs(30),
                ..Limits::default()
            },
            upstream: Timeouts::default(),
            max_object: super::MAX_OBJECT,
        }
    }
}

/// How a fetch ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The body is still streaming.
    Pending,
    /// Everything the provider announced went to the caller.
    Complete,
    /// The provider's answer was unusable or broke off (why).
    Failed(String),
    /// The caller went away before the end.
    CallerLeft,
}

/// One fetch, as recorded.
#[derive(Debug, Clone)]
pub struct ProxyFetch {
    /// Fetches are numbered as the callers' requests arrive.
    pub seq: u64,
    pub at: Instant,
    /// The caller's [`FETCH_ID_HEADER`], if any.
    pub caller_id: Option<String>,
    /// The URL fetched (decoded from the query).
    pub url: String,
    /// The `Range` the caller asked for and the proxy forwarded.
    pub range: Option<String>,
    /// Exactly the headers sent upstream (MEDIA-16's evidence).
    pub sent_headers: Vec<(String, String)>,
    /// The provider's status, when it answered.
    pub upstream_status: Option<u16>,
    /// The provider's headers (names lowercase, at most 64).
    pub upstream_headers: Vec<(String, String)>,
    /// Body bytes received from the provider and passed to the caller.
    pub delivered: u64,
    /// The status the proxy answered its caller.
    pub answered: u16,
    pub outcome: Outcome,
    /// What the provider's host did wrong, each naming its requirement.
    pub deviations: Vec<Deviation>,
}

impl ProxyFetch {
    pub fn upstream_header(&self, name: &str) -> Option<&str> {
        self.upstream_headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

type Entry = Arc<Mutex<ProxyFetch>>;

#[derive(Default)]
struct Log {
    entries: Vec<Entry>,
    dropped: u64,
    next_seq: u64,
}

struct Shared {
    config: ProxyConfig,
    tls: Arc<rustls::ClientConfig>,
    log: Mutex<Log>,
    /// Woken whenever a fetch is recorded or settles.
    changed: Notify,
}

impl Shared {
    fn log(&self) -> MutexGuard<'_, Log> {
        self.log.lock().unwrap_or_else(|p| p.into_inner())
    }
}

pub(crate) fn lock(e: &Entry) -> MutexGuard<'_, ProxyFetch> {
    e.lock().unwrap_or_else(|p| p.into_inner())
}

/// The running proxy. Dropping it closes the listener and every connection.
pub struct MediaProxy {
    shared: Arc<Shared>,
    listener: Listener,
}

impl std::fmt::Debug for MediaProxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MediaProxy")
            .field("addr", &self.listener.addr())
            .finish_non_exhaustive()
    }
}

impl MediaProxy {
    /// Starts the proxy on an ephemeral 127.0.0.1 port.
    pub async fn start(config: ProxyConfig) -> Result<MediaProxy, String> {
        let tls = crate::http::client::tls_config(&config.provider_ca_pem)?;
        let limits = config.limits.clone();
        let shared = Arc::new(Shared {
            config,
            tls,
            log: Mutex::new(Log::default()),
            changed: Notify::new(),
        });
        let h = shared.clone();
        let handler: serve::Handler =
            Arc::new(move |req, peer| Box::pin(forward::handle(h.clone(), req, peer)));
        let events: serve::EventSink = Arc::new(|_, _| {});
        let listener = serve::serve(serve::bind().await?, None, limits, handler, events)?;
        Ok(MediaProxy { shared, listener })
    }

    pub fn addr(&self) -> SocketAddr {
        self.listener.addr()
    }

    /// `http://127.0.0.1:PORT`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr())
    }

    /// The proxy URL that fetches `https_url`.
    pub fn fetch_url(&self, https_url: &str) -> String {
        proxy_url(&self.base_url(), https_url)
    }

    /// Every fetch recorded so far, in order of arrival.
    pub fn fetches(&self) -> Vec<ProxyFetch> {
        let entries = self.shared.log().entries.clone();
        let mut out: Vec<ProxyFetch> = entries.iter().map(|e| lock(e).clone()).collect();
        out.sort_by_key(|f| f.seq);
        out
    }

    /// Fetches beyond [`MAX_LOG`], not recorded.
    pub fn dropped_fetches(&self) -> u64 {
        self.shared.log().dropped
    }

    /// Every deviation of every fetch, in order.
    pub fn deviations(&self) -> Vec<Deviation> {
        self.fetches()
            .into_iter()
            .flat_map(|f| f.deviations)
            .collect()
    }

    /// Connections closed at once because the cap was reached.
    pub fn refused_connections(&self) -> usize {
        self.listener.refused_connections()
    }

    /// The record of the fetch tagged `caller_id`, once it is no longer pending (or as it
    /// is at `deadline`).
    pub async fn settled(&self, caller_id: &str, deadline: Instant) -> Option<ProxyFetch> {
        loop {
            let notified = self.shared.changed.notified();
            let found = self
                .fetches()
                .into_iter()
                .find(|f| f.caller_id.as_deref() == Some(caller_id));
            match found {
                Some(f) if f.outcome != Outcome::Pending => return Some(f),
                found => {
                    if tokio::time::timeout_at(deadline, notified).await.is_err() {
                        return found;
                    }
                }
            }
        }
    }

    /// Fetches `https_url` through this proxy (over its HTTP port, as a gatekeeper user's
    /// client would) into `sink`, with `range` as the `Range` header; returns the caller's
    /// view and the proxy's record of it.
    pub async fn fetch(
        &self,
        https_url: &str,
        range: Option<&str>,
        sink: &mut dyn Sink,
    ) -> Result<(Fetched, Option<ProxyFetch>), FetchError> {
        let id = super::host::new_token();
        // Longer than the proxy's own waits, so that its 502 arrives before this gives up.
        let up = &self.shared.config.upstream;
        let margin = std::time::Duration::from_secs(2);
        let timeouts = Timeouts {
            connect: up.connect,
            header: up.connect + up.header + margin,
            idle: up.idle + margin,
        };
        let got = fetch_via_proxy(
            &self.base_url(),
            https_url,
            range,
            Some(&id),
            self.shared.config.max_object.saturating_add(1),
            &timeouts,
            sink,
        )
        .await?;
        let deadline = Instant::now() + std::time::Duration::from_secs(2);
        Ok((got, self.settled(&id, deadline).await))
    }
}

/// `{proxy_base}/v1/fetch?url=<https_url percent-encoded>`.
pub fn proxy_url(proxy_base: &str, https_url: &str) -> String {
    format!(
        "{}{FETCH_PATH}?url={}",
        proxy_base.trim_end_matches('/'),
        percent_encode(https_url)
    )
}

/// A gatekeeper user's download through the proxy at `proxy_base`: `GET` of the fetch URL
/// (with `Range: range` and the [`FETCH_ID_HEADER`] when given), the body streamed into
/// `sink` (at most `max_body` bytes).
pub async fn fetch_via_proxy(
    proxy_base: &str,
    https_url: &str,
    range: Option<&str>,
    caller_id: Option<&str>,
    max_body: u64,
    timeouts: &Timeouts,
    sink: &mut dyn Sink,
) -> Result<Fetched, FetchError> {
    let mut headers = Vec::new();
    if let Some(r) = range {
        headers.push(("range".to_owned(), r.to_owned()));
    }
    if let Some(id) = caller_id {
        headers.push((FETCH_ID_HEADER.to_owned(), id.to_owned()));
    }
    let url = proxy_url(proxy_base, https_url);
    get_to_sink(&url, None, &headers, max_body, timeouts, sink).await
}

#[cfg(test)]
#[path = "proxy_tests.rs"]
mod tests;
