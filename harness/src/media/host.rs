//! The harness's gatekeeper media host (SPEC.md §14, the issue 10 design): HTTPS on
//! 127.0.0.1 under its own CA, serving the objects gatekeeper users send at `GET /m/<token>`
//! straight from their files, each with a scripted fault, and upload slots `PUT /u/<token>`
//! for a client-only IUT, streamed to files in a scratch directory.
//!
//! Every request is recorded (method, path, headers, byte count) with what the client did
//! wrong, each naming its SPEC.md requirement: MEDIA-15 (identifying data on a download, or an
//! `http://` request on the HTTPS port), MEDIA-20 (an upload that is not a plain `PUT` with its
//! `Content-Length` and no identifying data), MEDIA-23 (an upload over 100 MiB). MEDIA-19 (the
//! key or IV in a request) can only be checked once the key is known, from the message:
//! [`key_leak_deviations`]. (The issue 10 design called these MEDIA-3 and MEDIA-13; SPEC.md
//! renumbered them.)

#[path = "host_handle.rs"]
mod handle;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use tokio::sync::Notify;
use tokio::time::Instant;

use super::aesgcm::MediaKey;
use super::files::{Transfer, Written};
use super::serve::{self, ConnProblem, Limits, Listener};
use super::sink::write_random_object;
use crate::transport::{TlsIdentity, server_config};
use crate::verdict::Deviation;

pub use handle::{identifier_deviations, key_leak_deviations};

/// The `Content-Length` the `announce` fault declares: one byte over the limit.
pub const ANNOUNCED_LEN: u64 = super::MAX_OBJECT + 1;
/// Requests kept in the log; later ones are only counted.
pub const MAX_LOG: usize = 1024;
/// Headers recorded per request.
pub const MAX_RECORDED_HEADERS: usize = 64;
/// Connection events kept.
const MAX_EVENTS: usize = 256;

/// What the host does with a `GET` of an object (the design's scripted faults).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The object as it is.
    None,
    /// The last byte (of the tag) XOR 1.
    FlipTag,
    /// The full `Content-Length`, then the connection closed after half the bytes.
    Truncate,
    /// Another object of the same size, sealed under another key.
    Swap,
    /// `404 Not Found`.
    Status,
    /// `302 Found` to the same object at an `http://` URL.
    Redirect,
    /// `Content-Length: 104857601`, then zeros for as long as the client reads.
    Announce,
}

impl Fault {
    /// The design's name (`none`, `flip-tag`, …).
    pub fn name(self) -> &'static str {
        match self {
            Fault::None => "none",
            Fault::FlipTag => "flip-tag",
            Fault::Truncate => "truncate",
            Fault::Swap => "swap",
            Fault::Status => "status",
            Fault::Redirect => "redirect",
            Fault::Announce => "announce",
        }
    }

    pub fn parse(name: &str) -> Option<Fault> {
        [
            Fault::None,
            Fault::FlipTag,
            Fault::Truncate,
            Fault::Swap,
            Fault::Status,
            Fault::Redirect,
            Fault::Announce,
        ]
        .into_iter()
        .find(|f| f.name() == name)
    }
}

/// How the host runs.
#[derive(Debug, Clone)]
pub struct HostConfig {
    /// Where uploads and the stand-ins of `swap` objects are written (must exist).
    pub scratch: PathBuf,
    pub limits: Limits,
    /// Identifiers of the test accounts (JIDs, phone numbers, device ids): any request header
    /// or path containing one is a deviation (MEDIA-15 on downloads, MEDIA-20 on uploads).
    pub identifiers: Vec<String>,
    /// Largest upload accepted; more is refused with 413.
    pub max_upload: u64,
    /// An upload's body must be read whole within this.
    pub upload_timeout: std::time::Duration,
}

impl HostConfig {
    pub fn new(scratch: impl Into<PathBuf>) -> HostConfig {
        HostConfig {
            scratch: scratch.into(),
            limits: Limits::default(),
            identifiers: Vec::new(),
            max_upload: super::MAX_OBJECT,
            upload_timeout: std::time::Duration::from_secs(300),
        }
    }
}

/// An object the host serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    /// 32 random bytes, base64url without padding (43 characters).
    pub token: String,
    /// `https://127.0.0.1:PORT/m/<token>`.
    pub url: String,
    pub size: u64,
}

/// An upload slot (the `upload` of `send_media`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadSlot {
    pub put_token: String,
    /// `https://127.0.0.1:PORT/u/<put_token>`.
    pub put_url: String,
    pub get_token: String,
    /// `https://127.0.0.1:PORT/m/<get_token>`: served once the upload completed.
    pub get_url: String,
}

/// What a request was for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestKind {
    /// `GET` or `HEAD` under `/m/`; the fault applied when the token was known.
    Object { token: String, fault: Option<Fault> },
    /// `PUT` under `/u/`.
    Upload { token: String },
    /// Anything else (answered 404 or 405).
    Other,
}

/// One request, as recorded.
#[derive(Debug, Clone)]
pub struct HostRequest {
    /// Requests are numbered as their heads arrive.
    pub seq: u64,
    pub at: Instant,
    pub peer: SocketAddr,
    pub method: String,
    /// Path and query as sent.
    pub path: String,
    /// Names lowercase, in received order (at most [`MAX_RECORDED_HEADERS`]).
    pub headers: Vec<(String, String)>,
    pub kind: RequestKind,
    /// The status answered (0 when the client left before an answer).
    pub status: u16,
    /// Downloads: response body bytes handed to the connection. Uploads: body bytes read.
    pub body_bytes: u64,
    /// Whether the body went through whole (`None`: still going).
    pub complete: Option<bool>,
    /// What the client did wrong in this request, each naming its requirement.
    pub deviations: Vec<Deviation>,
}

impl HostRequest {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A connection that failed before its first request.
#[derive(Debug, Clone)]
pub struct HostEvent {
    pub at: Instant,
    pub peer: SocketAddr,
    pub problem: ConnProblem,
    /// MEDIA-15 for plain `http://` on the HTTPS port (e.g. a followed `redirect`).
    pub deviation: Option<Deviation>,
}

/// An upload that completed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upload {
    /// The file in the scratch directory.
    pub path: PathBuf,
    pub len: u64,
    /// Lowercase hex SHA-256 of the object.
    pub sha256: String,
}

#[derive(Debug, Clone)]
struct Object {
    path: PathBuf,
    size: u64,
    fault: Fault,
    /// The stand-in a `swap` serves.
    swap: Option<PathBuf>,
}

struct Slot {
    get_token: String,
    upload: Option<Written>,
}

struct Entry {
    req: HostRequest,
    transfer: Option<Arc<Transfer>>,
}

#[derive(Default)]
struct State {
    objects: HashMap<String, Object>,
    slots: HashMap<String, Slot>,
    log: Vec<Entry>,
    dropped: u64,
    next_seq: u64,
    events: Vec<HostEvent>,
}

struct Shared {
    config: HostConfig,
    /// `127.0.0.1:PORT`.
    authority: OnceLock<String>,
    state: Mutex<State>,
    /// Woken whenever a request is recorded.
    recorded: Notify,
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
        // Every change is a whole insert or push: a poisoned lock holds consistent data.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn authority(&self) -> &str {
        self.authority.get().map_or("127.0.0.1", String::as_str)
    }
}

/// The running host. Dropping it closes the listener and every connection.
pub struct MediaHost {
    identity: TlsIdentity,
    shared: Arc<Shared>,
    listener: Listener,
}

impl std::fmt::Debug for MediaHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MediaHost")
            .field("addr", &self.listener.addr())
            .finish_non_exhaustive()
    }
}

/// 32 random bytes, base64url without padding.
pub fn new_token() -> String {
    use rand::{RngCore as _, SeedableRng as _};
    let mut bytes = [0u8; 32];
    rand::rngs::StdRng::from_os_rng().fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

impl MediaHost {
    /// Starts the host on an ephemeral 127.0.0.1 port with a fresh CA and a certificate for
    /// `127.0.0.1`.
    pub async fn start(config: HostConfig) -> Result<MediaHost, String> {
        if !config.scratch.is_dir() {
            return Err(format!(
                "scratch directory {} does not exist",
                config.scratch.display()
            ));
        }
        let identity = TlsIdentity::try_generate("127.0.0.1").map_err(|e| e.to_string())?;
        let mut tls = (*server_config(&identity, false)).clone();
        tls.alpn_protocols = vec![b"http/1.1".to_vec()];
        let limits = config.limits.clone();
        let shared = Arc::new(Shared {
            config,
            authority: OnceLock::new(),
            state: Mutex::new(State::default()),
            recorded: Notify::new(),
        });
        let listener = serve::bind().await?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        let _ = shared.authority.set(addr.to_string());
        let h = shared.clone();
        let handler: serve::Handler =
            Arc::new(move |req, peer| Box::pin(handle::handle(h.clone(), req, peer)));
        let e = shared.clone();
        let events: serve::EventSink =
            Arc::new(move |peer, problem| record_event(&e, peer, problem));
        let listener = serve::serve(listener, Some(Arc::new(tls)), limits, handler, events)?;
        Ok(MediaHost {
            identity,
            shared,
            listener,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.listener.addr()
    }

    /// `https://127.0.0.1:PORT`.
    pub fn base_url(&self) -> String {
        format!("https://{}", self.addr())
    }

    /// The CA a client must trust for this host (`media_ca_pem`, `upload.ca_pem`).
    pub fn ca_pem(&self) -> &str {
        &self.identity.ca_pem
    }

    /// Serves the object file `path` (it must stay in place) under a fresh token.
    pub async fn add_object(&self, path: &Path, fault: Fault) -> Result<ObjectInfo, String> {
        let size = std::fs::metadata(path)
            .map_err(|e| format!("{}: {e}", path.display()))?
            .len();
        let token = new_token();
        let mut object = Object {
            path: path.to_path_buf(),
            size,
            fault: Fault::None,
            swap: None,
        };
        self.prepare(&token, &mut object, fault).await?;
        self.shared.state().objects.insert(token.clone(), object);
        Ok(ObjectInfo {
            url: format!("{}/m/{token}", self.base_url()),
            token,
            size,
        })
    }

    /// Changes the fault of an object (an uploaded one too, by its `get_token`).
    pub async fn set_fault(&self, token: &str, fault: Fault) -> Result<(), String> {
        let mut object = self
            .shared
            .state()
            .objects
            .get(token)
            .cloned()
            .ok_or_else(|| format!("no object {token}"))?;
        self.prepare(token, &mut object, fault).await?;
        self.shared.state().objects.insert(token.to_owned(), object);
        Ok(())
    }

    /// Stops serving an object (a `GET` of it is then 404).
    pub fn remove_object(&self, token: &str) -> bool {
        self.shared.state().objects.remove(token).is_some()
    }

    /// Sets `fault` on `object`, writing the stand-in a `swap` needs (same size, random
    /// plaintext, a fresh key).
    async fn prepare(&self, token: &str, object: &mut Object, fault: Fault) -> Result<(), String> {
        object.fault = fault;
        if fault != Fault::Swap || object.swap.is_some() {
            return Ok(());
        }
        let plain_len = object
            .size
            .checked_sub(super::aesgcm::TAG_LEN as u64)
            .ok_or("a `swap` object must be at least as long as a tag")?;
        let path = self.shared.config.scratch.join(format!("swap-{token}.bin"));
        let dst = path.clone();
        let seed = {
            use rand::{RngCore as _, SeedableRng as _};
            rand::rngs::StdRng::from_os_rng().next_u64()
        };
        tokio::task::spawn_blocking(move || {
            write_random_object(&dst, plain_len, &MediaKey::generate(), seed)
        })
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("{}: {e}", path.display()))?;
        object.swap = Some(path);
        Ok(())
    }

    /// A fresh upload slot.
    pub fn upload_slot(&self) -> UploadSlot {
        let (put_token, get_token) = (new_token(), new_token());
        self.shared.state().slots.insert(
            put_token.clone(),
            Slot {
                get_token: get_token.clone(),
                upload: None,
            },
        );
        UploadSlot {
            put_url: format!("{}/u/{put_token}", self.base_url()),
            get_url: format!("{}/m/{get_token}", self.base_url()),
            put_token,
            get_token,
        }
    }

    /// The completed upload of a slot, if any.
    pub fn upload(&self, put_token: &str) -> Option<Upload> {
        let state = self.shared.state();
        let w = state.slots.get(put_token)?.upload.as_ref()?;
        Some(Upload {
            path: w.path.clone(),
            len: w.len,
            sha256: w.sha256.clone(),
        })
    }

    /// Every request recorded so far, in order of arrival.
    pub fn requests(&self) -> Vec<HostRequest> {
        let state = self.shared.state();
        let mut out: Vec<HostRequest> = state
            .log
            .iter()
            .map(|e| {
                let mut r = e.req.clone();
                if let Some(t) = &e.transfer {
                    r.body_bytes = t.bytes();
                    r.complete = t.complete();
                }
                r
            })
            .collect();
        out.sort_by_key(|r| r.seq);
        out
    }

    /// Requests beyond [`MAX_LOG`], not recorded.
    pub fn dropped_requests(&self) -> u64 {
        self.shared.state().dropped
    }

    /// Connections that failed before a request.
    pub fn events(&self) -> Vec<HostEvent> {
        self.shared.state().events.clone()
    }

    /// Every deviation recorded: of each request in order, then of the connection events.
    pub fn deviations(&self) -> Vec<Deviation> {
        let mut out: Vec<Deviation> = self
            .requests()
            .into_iter()
            .flat_map(|r| r.deviations)
            .collect();
        out.extend(self.events().into_iter().filter_map(|e| e.deviation));
        out
    }

    /// MEDIA-19 over every recorded request, for the key of one object.
    pub fn key_leaks(&self, secret: &MediaKey) -> Vec<Deviation> {
        key_leak_deviations(&self.requests(), secret)
    }

    /// Connections closed at once because the cap was reached.
    pub fn refused_connections(&self) -> usize {
        self.listener.refused_connections()
    }

    /// Waits until at least `n` requests are recorded; false when `deadline` passed first.
    pub async fn wait_for_requests(&self, n: usize, deadline: Instant) -> bool {
        loop {
            let notified = self.shared.recorded.notified();
            if self.shared.state().log.len() >= n {
                return true;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return self.shared.state().log.len() >= n;
            }
        }
    }
}

fn record_event(shared: &Shared, peer: SocketAddr, problem: ConnProblem) {
    let deviation = match &problem {
        ConnProblem::PlainText(line) => Some(Deviation::fail(
            "MEDIA-15",
            "media fetched only from https URLs",
            format!("a plain-text (http://) request on the HTTPS media host: {line:?}"),
        )),
        ConnProblem::Handshake(_) => None,
    };
    let mut state = shared.state();
    if state.events.len() < MAX_EVENTS {
        state.events.push(HostEvent {
            at: Instant::now(),
            peer,
            problem,
            deviation,
        });
    }
}

#[cfg(test)]
#[path = "host_tests.rs"]
mod tests;
