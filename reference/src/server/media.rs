//! The provider's media host (SPEC.md §14) on the server's HTTPS listener: uploads from the
//! reference's own client (`POST /media/v1/upload`), objects served to anyone holding their
//! URL (`GET /media/TOKEN`), and the test hooks of Appendix G.1 (`POST
//! /gatecheck-test/v1/media`, `POST /gatecheck-test/v1/clock`).
//!
//! Objects are opaque to the host (each is a client's AES-GCM ciphertext) and held in memory,
//! up to a bound on their number and total size. Retention is measured against the server's
//! own clock: real time since start plus whatever the clock hook added. Range requests are
//! answered exactly for a single range (206 with its Content-Range) and ignored otherwise (200
//! with the whole object), which MEDIA-17 allows.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use hyper::header::{
    ACCEPT_RANGES, CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE, HeaderMap, HeaderValue, LOCATION,
    RANGE, SET_COOKIE,
};
use hyper::{Method, Request, Response, StatusCode};
use rand::TryRngCore as _;
use serde_json::{Value, json};

use super::http::{Answer, error, json_answer, method_not_allowed, no_content, read_body};
use super::state::lock;
use crate::mutant::Mutant;

/// The largest object stored (MEDIA-23): 100 MiB.
pub const MAX_OBJECT: usize = 104_857_600;
/// The retention declared when `--media-retention-s` is not given (MEDIA-9: 14 days).
pub const DEFAULT_RETENTION_S: u64 = 1_209_600;
/// What the server-media-no-size-limit mutant stores at most.
const MUTANT_MAX_OBJECT: usize = 128 * 1024 * 1024;
/// What the server-media-short-retention mutant keeps objects for.
const SHORT_RETENTION_S: u64 = 3600;
/// The retention of the server-media-week-retention mutant: 7 days (MEDIA-9 asks 14).
const WEEK_RETENTION_S: u64 = 7 * 86_400;
/// Objects held at once, and their total size: past either, uploads get 507.
const MAX_OBJECTS: usize = 4096;
const MAX_STORED_BYTES: usize = 1024 * 1024 * 1024;
/// Longest pause between two pieces of an upload's body.
const IDLE_TIMEOUT: Duration = Duration::from_secs(10);
/// Random bytes in a token: 256 bits, 43 base64url characters (MEDIA-4).
const TOKEN_BYTES: usize = 32;
/// Uploads read at once (each may hold up to [`MAX_OBJECT`] bytes), and how long one waits
/// for its turn before the answer is 503.
const CONCURRENT_UPLOADS: usize = 4;
const UPLOAD_QUEUE_WAIT: Duration = Duration::from_secs(10);
/// How far past the limit a refused body is still read (and dropped).
const DRAIN_SLACK: usize = 16 * 1024 * 1024;

/// The media paths, relative to `--base-path`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// `/media/v1/upload`: the reference client's own upload.
    Upload,
    /// `/gatecheck-test/v1/media`: the harness's upload hook.
    TestUpload,
    /// `/gatecheck-test/v1/clock`.
    Clock,
    /// `/media/TOKEN`.
    Object(String),
}

/// The media route of `path` (relative to the base path), if it is one.
pub fn route(path: &str) -> Option<Route> {
    match path {
        "/media/v1/upload" => Some(Route::Upload),
        "/gatecheck-test/v1/media" => Some(Route::TestUpload),
        "/gatecheck-test/v1/clock" => Some(Route::Clock),
        _ => path
            .strip_prefix("/media/")
            .filter(|token| !token.is_empty())
            .map(|token| Route::Object(token.to_owned())),
    }
}

struct Object {
    data: Bytes,
    /// Server clock seconds ([`Media::now_s`]) when it was stored.
    stored_at: u64,
}

#[derive(Default)]
struct Store {
    objects: HashMap<String, Object>,
    bytes: usize,
    /// The server-media-guessable-url mutant's last number.
    last: u64,
}

/// The media host's state.
pub struct Media {
    mutant: Mutant,
    /// `https://HOST:PORT` and the base path: what object URLs start with.
    origin: String,
    retention_s: u64,
    started: Instant,
    /// Seconds the clock hook added.
    advanced_s: AtomicU64,
    store: Mutex<Store>,
    uploads: tokio::sync::Semaphore,
}

impl Media {
    pub fn new(mutant: Mutant, listen: SocketAddr, base_path: &str, retention_s: u64) -> Media {
        // A wildcard address is no place to fetch from; loopback is (a test deployment).
        let ip = match listen.ip() {
            IpAddr::V4(v4) if v4.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(v6) if v6.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
            ip => ip,
        };
        Media {
            mutant,
            origin: format!("https://{}{base_path}", SocketAddr::new(ip, listen.port())),
            retention_s,
            started: Instant::now(),
            advanced_s: AtomicU64::new(0),
            store: Mutex::new(Store::default()),
            uploads: tokio::sync::Semaphore::new(CONCURRENT_UPLOADS),
        }
    }

    /// The clock retention is measured by.
    fn now_s(&self) -> u64 {
        self.started
            .elapsed()
            .as_secs()
            .saturating_add(self.advanced_s.load(Ordering::Relaxed))
    }

    /// How long objects are kept, or `None` for ever (a mutant only).
    fn retention(&self) -> Option<u64> {
        match self.mutant {
            // MEDIA-10 deviation: the correct host stops serving at the end of retention.
            Mutant::ServerMediaNeverExpires => None,
            // MEDIA-8 deviation: the correct host keeps objects as long as it declares.
            Mutant::ServerMediaShortRetention => Some(SHORT_RETENTION_S),
            // MEDIA-9 deviation: the correct host keeps objects the 14 days it declares.
            Mutant::ServerMediaWeekRetention => Some(WEEK_RETENTION_S),
            _ => Some(self.retention_s),
        }
    }

    fn expired(&self, object: &Object, now: u64) -> bool {
        self.retention()
            .is_some_and(|r| now.saturating_sub(object.stored_at) >= r)
    }

    /// Answers one request on a media route. Never fails: every refusal is an answer.
    pub async fn serve(&self, route: Route, req: Request<Incoming>) -> Answer {
        match route {
            Route::Upload | Route::TestUpload => {
                if req.method() != Method::POST {
                    return method_not_allowed("POST");
                }
                let turn = tokio::time::timeout(UPLOAD_QUEUE_WAIT, self.uploads.acquire()).await;
                let Ok(Ok(_turn)) = turn else {
                    let why = "too many uploads at once";
                    return error(StatusCode::SERVICE_UNAVAILABLE, "busy", why);
                };
                let (parts, body) = req.into_parts();
                match self.read_object(&parts.headers, body).await {
                    Ok(data) => self.store(data),
                    Err(answer) => answer,
                }
            }
            Route::Clock => {
                if req.method() != Method::POST {
                    return method_not_allowed("POST");
                }
                let (parts, body) = req.into_parts();
                let body = match read_body(&parts.headers, body).await {
                    Ok(b) => b,
                    Err(answer) => return answer,
                };
                let advance = serde_json::from_slice::<Value>(&body)
                    .ok()
                    .and_then(|v| v.as_object()?.get("advance_s")?.as_u64());
                let Some(advance) = advance else {
                    return error(
                        StatusCode::BAD_REQUEST,
                        "bad_field",
                        "the body must be {\"advance_s\": N}, N a non-negative integer",
                    );
                };
                let total = self
                    .advanced_s
                    .fetch_add(advance, Ordering::Relaxed)
                    .saturating_add(advance);
                eprintln!(
                    "gatecheck-reference server: media clock advanced by {advance} s ({total} s in all)"
                );
                no_content()
            }
            Route::Object(token) => {
                if req.method() != Method::GET && req.method() != Method::HEAD {
                    return method_not_allowed("GET, HEAD");
                }
                self.get(&token, req.headers())
            }
        }
    }

    /// An upload's body, read as it streams in: 413 once it is over the limit, announced or
    /// counted (MEDIA-23). Nothing past the limit is kept; the rest of a body up to
    /// [`DRAIN_SLACK`] past it is read and dropped before the answer, so that a client that
    /// writes its whole body before reading still gets the 413 (closing on unread input would
    /// reset the connection under it). A larger body is answered and closed on at once.
    async fn read_object(&self, headers: &HeaderMap, mut body: Incoming) -> Result<Bytes, Answer> {
        let limit = if self.mutant == Mutant::ServerMediaNoSizeLimit {
            // MEDIA-23 deviation: the correct host refuses objects over 100 MiB.
            MUTANT_MAX_OBJECT
        } else {
            MAX_OBJECT
        };
        let too_large = || {
            error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                &format!("an object is at most {MAX_OBJECT} bytes"),
            )
        };
        let declared = headers
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > limit as u64) {
            if declared.is_some_and(|n| n <= (limit + DRAIN_SLACK) as u64) {
                drain(&mut body, limit + DRAIN_SLACK).await;
            }
            return Err(too_large());
        }
        // The announced length is a hint for the first allocation, never trusted beyond 1 MiB.
        let hint = declared.map_or(0, |n| n.min(1 << 20) as usize);
        let mut data = Vec::with_capacity(hint);
        loop {
            let frame = match tokio::time::timeout(IDLE_TIMEOUT, body.frame()).await {
                Err(_) => {
                    let why = "the body stalled";
                    return Err(error(StatusCode::REQUEST_TIMEOUT, "body_timeout", why));
                }
                Ok(None) => break,
                Ok(Some(Err(_))) => {
                    let why = "the body could not be read";
                    return Err(error(StatusCode::BAD_REQUEST, "bad_body", why));
                }
                Ok(Some(Ok(frame))) => frame,
            };
            if let Ok(chunk) = frame.into_data() {
                if data.len() + chunk.len() > limit {
                    let seen = data.len() + chunk.len();
                    drop(data);
                    drain(&mut body, (limit + DRAIN_SLACK).saturating_sub(seen)).await;
                    return Err(too_large());
                }
                data.extend_from_slice(&chunk);
            }
        }
        if data.is_empty() {
            let why = "an object has at least one byte";
            return Err(error(StatusCode::BAD_REQUEST, "empty_object", why));
        }
        Ok(Bytes::from(data))
    }

    /// Stores an object: `201 {"url": …}`, or 507 when the host is full.
    fn store(&self, data: Bytes) -> Answer {
        let now = self.now_s();
        let size = data.len();
        let mut store = lock(&self.store);
        // Expired objects make room first.
        let gone: Vec<String> = store
            .objects
            .iter()
            .filter(|(_, o)| self.expired(o, now))
            .map(|(t, _)| t.clone())
            .collect();
        for token in gone {
            if let Some(o) = store.objects.remove(&token) {
                store.bytes -= o.data.len();
            }
        }
        if store.objects.len() >= MAX_OBJECTS || store.bytes + size > MAX_STORED_BYTES {
            let why = "the media host is full";
            return error(StatusCode::INSUFFICIENT_STORAGE, "full", why);
        }
        let token = if self.mutant == Mutant::ServerMediaGuessableUrl {
            // MEDIA-4 deviation: the correct host names objects with 256 random bits.
            store.last += 1;
            store.last.to_string()
        } else {
            let mut random = [0u8; TOKEN_BYTES];
            if rand::rngs::OsRng.try_fill_bytes(&mut random).is_err() {
                let why = "the operating system gave no randomness";
                return error(StatusCode::SERVICE_UNAVAILABLE, "no_randomness", why);
            }
            URL_SAFE_NO_PAD.encode(random)
        };
        store.bytes += size;
        let object = Object {
            data,
            stored_at: now,
        };
        store.objects.insert(token.clone(), object);
        drop(store);
        let url = format!("{}/media/{token}", self.origin);
        eprintln!("gatecheck-reference server: stored a media object of {size} bytes");
        json_answer(StatusCode::CREATED, &json!({ "url": url }))
    }

    /// `GET /media/TOKEN`: the object (MEDIA-5..7), part of it (MEDIA-17), or 404 (MEDIA-10).
    fn get(&self, token: &str, headers: &HeaderMap) -> Answer {
        let mut token = token;
        if self.mutant == Mutant::ServerMediaRedirect {
            // MEDIA-22 deviation: the correct host answers 200 with the object, never a
            // redirect; this one sends the object's URL to the same path with a slash, and
            // serves it there.
            match token.strip_suffix('/') {
                Some(bare) => token = bare,
                None if self.lookup(token).is_some() => {
                    let mut answer = error(StatusCode::FOUND, "moved", "see Location");
                    let location = format!("{}/media/{token}/", self.origin);
                    if let Ok(v) = HeaderValue::from_str(&location) {
                        answer.headers_mut().insert(LOCATION, v);
                    }
                    return answer;
                }
                None => {}
            }
        }
        let Some(data) = self.lookup(token) else {
            return error(StatusCode::NOT_FOUND, "not_found", "no such object");
        };
        let len = data.len();
        match single_range(headers, len) {
            Some((first, last)) => {
                let mut part = data.slice(first..=last);
                if self.mutant == Mutant::ServerMediaBadRange {
                    // MEDIA-17 deviation: the correct host sends exactly the bytes its
                    // Content-Range names.
                    let mut wrong = part.to_vec();
                    wrong[0] ^= 0xff;
                    part = Bytes::from(wrong);
                }
                let mut answer = self.object_answer(StatusCode::PARTIAL_CONTENT, part);
                let range = format!("bytes {first}-{last}/{len}");
                if let Ok(v) = HeaderValue::from_str(&range) {
                    answer.headers_mut().insert(CONTENT_RANGE, v);
                }
                answer
            }
            None if self.mutant == Mutant::ServerMediaTruncatedBody && len > 0 => {
                // MEDIA-5 deviation: the correct host serves exactly the stored object.
                self.object_answer(StatusCode::OK, data.slice(..len - 1))
            }
            None => self.object_answer(StatusCode::OK, data),
        }
    }

    /// The stored object under `token`, unless it expired (then it is dropped).
    fn lookup(&self, token: &str) -> Option<Bytes> {
        let now = self.now_s();
        let mut store = lock(&self.store);
        let object = store.objects.get(token)?;
        if !self.expired(object, now) {
            return Some(object.data.clone());
        }
        if let Some(o) = store.objects.remove(token) {
            store.bytes -= o.data.len();
        }
        None
    }

    /// An answer carrying object bytes: opaque type, exact length, nothing identifying.
    fn object_answer(&self, status: StatusCode, body: Bytes) -> Answer {
        let length = body.len();
        let mut answer = Response::new(Full::new(body));
        *answer.status_mut() = status;
        let h = answer.headers_mut();
        let kind = if self.mutant == Mutant::ServerMediaHtmlType {
            // MEDIA-7 deviation: the correct host serves every object as
            // application/octet-stream.
            "text/html; charset=utf-8"
        } else {
            "application/octet-stream"
        };
        h.insert(CONTENT_TYPE, HeaderValue::from_static(kind));
        h.insert(CONTENT_LENGTH, HeaderValue::from(length));
        h.insert(ACCEPT_RANGES, HeaderValue::from_static("bytes"));
        h.insert(
            "x-content-type-options",
            HeaderValue::from_static("nosniff"),
        );
        if self.mutant == Mutant::ServerMediaSetsCookie {
            // MEDIA-6 deviation: the correct host sets no cookie.
            h.insert(
                SET_COOKIE,
                HeaderValue::from_static("gcr_media=1; Path=/; Secure; HttpOnly"),
            );
        }
        answer
    }
}

/// Reads and drops at most `budget` more bytes of `body`, until it ends, stalls or breaks.
async fn drain(body: &mut Incoming, budget: usize) {
    let mut left = budget;
    while let Ok(Some(Ok(frame))) = tokio::time::timeout(IDLE_TIMEOUT, body.frame()).await {
        let n = frame.data_ref().map_or(0, Bytes::len);
        if n > left {
            return;
        }
        left -= n;
    }
}

/// The one range of a `Range: bytes=…` header, as first and last byte, when the object has
/// it; `None` (serve the whole object) for anything else: several ranges, another unit, a
/// range past the end, a malformed header (RFC 9110 §14.2 lets a server ignore `Range`).
fn single_range(headers: &HeaderMap, len: usize) -> Option<(usize, usize)> {
    let mut values = headers.get_all(RANGE).iter();
    let value = values.next()?;
    if values.next().is_some() || len == 0 {
        return None;
    }
    let spec = value.to_str().ok()?.trim().strip_prefix("bytes=")?.trim();
    let (first, last) = spec.split_once('-')?;
    let number = |s: &str| -> Option<usize> {
        let s = s.trim();
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        // A number too large for usize is past any end.
        Some(s.parse().unwrap_or(usize::MAX))
    };
    match (first.trim().is_empty(), last.trim().is_empty()) {
        // bytes=-N: the last N bytes.
        (true, false) => {
            let n = number(last)?.min(len);
            (n > 0).then(|| (len - n, len - 1))
        }
        // bytes=A-: from A to the end.
        (false, true) => {
            let a = number(first)?;
            (a < len).then_some((a, len - 1))
        }
        // bytes=A-B.
        (false, false) => {
            let (a, b) = (number(first)?, number(last)?);
            (a <= b && a < len).then(|| (a, b.min(len - 1)))
        }
        (true, true) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        assert_eq!(route("/media/v1/upload"), Some(Route::Upload));
        assert_eq!(route("/gatecheck-test/v1/media"), Some(Route::TestUpload));
        assert_eq!(route("/gatecheck-test/v1/clock"), Some(Route::Clock));
        assert_eq!(route("/media/abc"), Some(Route::Object("abc".into())));
        assert_eq!(route("/media/"), None);
        assert_eq!(route("/gatecheck/v1/auth"), None);
    }

    #[test]
    fn ranges() {
        let with = |v: &str, len: usize| {
            let mut h = HeaderMap::new();
            h.insert(RANGE, v.parse().expect("header"));
            single_range(&h, len)
        };
        assert_eq!(with("bytes=0-9", 100), Some((0, 9)));
        assert_eq!(with("bytes=90-200", 100), Some((90, 99)));
        assert_eq!(with("bytes=10-", 100), Some((10, 99)));
        assert_eq!(with("bytes=-5", 100), Some((95, 99)));
        assert_eq!(with("bytes=-500", 100), Some((0, 99)));
        for ignored in [
            "bytes=100-",
            "bytes=5-4",
            "bytes=-0",
            "bytes=0-1,3-4",
            "items=0-1",
            "bytes=a-b",
            "bytes=-",
            "bytes=+1-2",
            "bytes=99999999999999999999999-",
        ] {
            assert_eq!(with(ignored, 100), None, "{ignored}");
        }
        assert_eq!(with("bytes=0-0", 0), None);
        assert_eq!(single_range(&HeaderMap::new(), 10), None);
    }

    #[test]
    fn the_origin_is_never_a_wildcard() {
        let m = Media::new(
            Mutant::None,
            "0.0.0.0:8443".parse().expect("addr"),
            "/p",
            DEFAULT_RETENTION_S,
        );
        assert_eq!(m.origin, "https://127.0.0.1:8443/p");
        let m = Media::new(Mutant::None, "[::]:1".parse().expect("addr"), "", 1);
        assert_eq!(m.origin, "https://[::1]:1");
    }
}
