//! One fetch through the media proxy: the caller's request, the upstream `GET`, the checks of
//! the provider's answer, and the body passed on frame by frame.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::{Method, Request, Response};
use tokio::time::{Instant, Sleep};

use super::super::client::{Driver, open, request_headers};
use super::super::percent_decode;
use super::super::serve::{BoxError, RespBody, recorded_headers, simple};
use super::{Entry, FETCH_ID_HEADER, FETCH_PATH, MAX_LOG, Outcome, ProxyFetch, Shared, lock};
use crate::verdict::Deviation;

const OCTETS: &str = "application/octet-stream";

/// A single `bytes=` range as a caller asks for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeRequest {
    /// `bytes=first-last`.
    Closed(u64, u64),
    /// `bytes=first-`.
    From(u64),
    /// `bytes=-n`: the last n bytes.
    Suffix(u64),
}

impl RangeRequest {
    /// Parses one `bytes=` range (several ranges are not forwarded).
    pub fn parse(v: &str) -> Option<RangeRequest> {
        let spec = v.trim().strip_prefix("bytes=")?.trim();
        let (a, b) = spec.split_once('-')?;
        let num = |s: &str| {
            (!s.is_empty() && s.len() <= 19 && s.bytes().all(|c| c.is_ascii_digit()))
                .then(|| s.parse::<u64>().ok())
                .flatten()
        };
        match (a.trim(), b.trim()) {
            ("", n) => num(n).filter(|&n| n > 0).map(RangeRequest::Suffix),
            (f, "") => num(f).map(RangeRequest::From),
            (f, l) => match (num(f), num(l)) {
                (Some(f), Some(l)) if f <= l => Some(RangeRequest::Closed(f, l)),
                _ => None,
            },
        }
    }

    /// The bytes this asks for in an object of `total` bytes (`None`: unsatisfiable).
    pub fn resolve(self, total: u64) -> Option<(u64, u64)> {
        let last = total.checked_sub(1)?;
        match self {
            RangeRequest::Closed(f, l) => (f <= last).then(|| (f, l.min(last))),
            RangeRequest::From(f) => (f <= last).then_some((f, last)),
            RangeRequest::Suffix(n) => Some((total.saturating_sub(n), last)),
        }
    }
}

/// A `Content-Range: bytes first-last/total` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ContentRange {
    pub first: u64,
    pub last: u64,
    pub total: u64,
}

impl ContentRange {
    pub fn parse(v: &str) -> Option<ContentRange> {
        let rest = v.trim().strip_prefix("bytes ")?;
        let (span, total) = rest.split_once('/')?;
        let (first, last) = span.split_once('-')?;
        let num = |s: &str| {
            let s = s.trim();
            (!s.is_empty() && s.bytes().all(|c| c.is_ascii_digit()))
                .then(|| s.parse::<u64>().ok())
                .flatten()
        };
        let cr = ContentRange {
            first: num(first)?,
            last: num(last)?,
            total: num(total)?,
        };
        (cr.first <= cr.last && cr.last < cr.total).then_some(cr)
    }

    pub fn len(&self) -> u64 {
        self.last - self.first + 1
    }

    pub fn is_empty(&self) -> bool {
        false
    }
}

pub(super) async fn handle(
    shared: Arc<Shared>,
    req: Request<Incoming>,
    _peer: SocketAddr,
) -> Response<RespBody> {
    if req.uri().path() != FETCH_PATH {
        return simple(404, &[], "not found\n");
    }
    if req.method() != Method::GET {
        return simple(405, &[("allow", "GET")], "method not allowed\n");
    }
    let Some(url) = req.uri().query().and_then(|q| {
        q.split('&')
            .find_map(|kv| kv.strip_prefix("url="))
            .map(|v| percent_decode(&v.replace('+', " ")))
    }) else {
        return simple(400, &[], "no url parameter\n");
    };
    if !url.starts_with("https://") {
        return simple(400, &[], "only https URLs are fetched\n");
    }
    let header = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let range = header("range");
    let range_req = match &range {
        Some(r) => match RangeRequest::parse(r) {
            Some(parsed) => Some(parsed),
            None => return simple(400, &[], "only a single bytes= range is forwarded\n"),
        },
        None => None,
    };
    let extra: Vec<(String, String)> = range.iter().map(|r| ("range".into(), r.clone())).collect();
    let sent_headers = match request_headers(&url, &extra) {
        Ok(h) => h,
        Err(e) => return simple(400, &[], &format!("{e}\n")),
    };
    let entry: Entry = Arc::new(Mutex::new(ProxyFetch {
        seq: 0,
        at: Instant::now(),
        caller_id: header(FETCH_ID_HEADER),
        url: url.clone(),
        range,
        sent_headers,
        upstream_status: None,
        upstream_headers: Vec::new(),
        delivered: 0,
        answered: 0,
        outcome: Outcome::Pending,
        deviations: Vec::new(),
    }));
    {
        let mut log = shared.log();
        lock(&entry).seq = log.next_seq;
        log.next_seq += 1;
        if log.entries.len() < MAX_LOG {
            log.entries.push(entry.clone());
        } else {
            log.dropped += 1;
        }
    }
    shared.changed.notify_waiters();
    let upstream = open(&url, Some(&shared.tls), &extra, &shared.config.upstream).await;
    let (response, driver) = match upstream {
        Ok(r) => r,
        Err(e) => return refuse(&shared, &entry, 502, format!("the provider: {e}")),
    };
    let status = response.status().as_u16();
    let headers = recorded_headers(response.headers(), 64);
    let plan = check_head(status, &headers, range_req, shared.config.max_object);
    {
        let mut f = lock(&entry);
        f.upstream_status = Some(status);
        f.upstream_headers = headers;
        f.deviations.extend(plan.deviations);
    }
    let Some(stream) = plan.stream else {
        return refuse(&shared, &entry, plan.refuse.0, plan.refuse.1);
    };
    let mut answer = Response::builder()
        .status(status)
        .header("content-type", OCTETS);
    if let Some(n) = stream.content_length {
        answer = answer.header("content-length", n);
    }
    if let Some(cr) = stream.content_range {
        answer = answer.header(
            "content-range",
            format!("bytes {}-{}/{}", cr.first, cr.last, cr.total),
        );
    }
    lock(&entry).answered = status;
    let body = Forward {
        upstream: response.into_body(),
        _driver: driver,
        entry: entry.clone(),
        shared: shared.clone(),
        delivered: 0,
        expect: stream.expect,
        requirement: if status == 206 { "MEDIA-17" } else { "MEDIA-5" },
        max: shared.config.max_object,
        idle: shared.config.upstream.idle,
        sleep: Box::pin(tokio::time::sleep(shared.config.upstream.idle)),
        waiting: false,
        done: false,
        len_hint: stream.content_length,
    };
    answer
        .body(body.boxed())
        .unwrap_or_else(|_| refuse(&shared, &entry, 502, "unusable answer".into()))
}

fn refuse(shared: &Shared, entry: &Entry, status: u16, why: String) -> Response<RespBody> {
    {
        let mut f = lock(entry);
        f.answered = status;
        f.outcome = if status == 502 {
            Outcome::Failed(why.clone())
        } else {
            Outcome::Complete
        };
    }
    shared.changed.notify_waiters();
    simple(
        status,
        &[],
        &if why.is_empty() {
            why
        } else {
            format!("{why}\n")
        },
    )
}

/// What to do with the provider's answer.
struct Plan {
    deviations: Vec<Deviation>,
    /// Stream the body, or (when `None`) answer `refuse`.
    stream: Option<Stream>,
    refuse: (u16, String),
}

struct Stream {
    content_length: Option<u64>,
    content_range: Option<ContentRange>,
    /// The body length the answer promises (for the length check at its end).
    expect: Option<u64>,
}

fn check_head(
    status: u16,
    headers: &[(String, String)],
    range: Option<RangeRequest>,
    max: u64,
) -> Plan {
    let get = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let mut d = Vec::new();
    let fail = |d: &mut Vec<Deviation>, req: &str, expected: &str, got: String| {
        d.push(Deviation::fail(req, expected, got));
    };
    if let Some(c) = get("set-cookie") {
        fail(
            &mut d,
            "MEDIA-6",
            "no cookie set by the media host",
            format!("Set-Cookie: {c}"),
        );
    }
    if let Some(cd) = get("content-disposition")
        && cd.to_ascii_lowercase().contains("filename")
    {
        let got = format!("Content-Disposition: {cd}");
        fail(
            &mut d,
            "MEDIA-7",
            "no file name in the media host's headers",
            got,
        );
    }
    let refuse = |d: Vec<Deviation>, code: u16, why: String| Plan {
        deviations: d,
        stream: None,
        refuse: (code, why),
    };
    if (300..400).contains(&status) {
        let to = get("location").unwrap_or("nowhere");
        let got = format!("{status} to {to}");
        fail(
            &mut d,
            "MEDIA-22",
            "no redirect from the media host",
            got.clone(),
        );
        return refuse(
            d,
            502,
            format!("the provider redirected ({got}); not followed"),
        );
    }
    if status == 404 || status == 410 {
        return refuse(d, status, String::new());
    }
    if !(200..300).contains(&status) {
        return refuse(d, 502, format!("the provider answered {status}"));
    }
    if status != 200 && status != 206 {
        fail(
            &mut d,
            "MEDIA-5",
            "200 with the object",
            format!("{status}"),
        );
        return refuse(d, 502, format!("the provider answered {status}"));
    }
    match get("content-type") {
        Some(t) if t.trim().eq_ignore_ascii_case(OCTETS) => {}
        other => {
            let got = format!("Content-Type {other:?}");
            fail(
                &mut d,
                "MEDIA-7",
                "Content-Type: application/octet-stream",
                got,
            );
        }
    }
    if let Some(e) = get("content-encoding").filter(|e| !e.trim().eq_ignore_ascii_case("identity"))
    {
        fail(
            &mut d,
            "MEDIA-5",
            "no Content-Encoding",
            format!("Content-Encoding: {e}"),
        );
    }
    let content_length = get("content-length").and_then(|v| v.trim().parse::<u64>().ok());
    if status == 200 {
        let Some(n) = content_length else {
            fail(&mut d, "MEDIA-5", "a Content-Length", "none".into());
            return Plan {
                deviations: d,
                stream: Some(Stream {
                    content_length: None,
                    content_range: None,
                    expect: None,
                }),
                refuse: (0, String::new()),
            };
        };
        if n > max {
            let got = format!("Content-Length: {n}");
            fail(&mut d, "MEDIA-23", "no object over 100 MiB stored", got);
            return refuse(d, 502, format!("the object is larger than {max} bytes"));
        }
        return Plan {
            deviations: d,
            stream: Some(Stream {
                content_length: Some(n),
                content_range: None,
                expect: Some(n),
            }),
            refuse: (0, String::new()),
        };
    }
    // 206.
    let asked = "the range asked for in a 206, with a matching Content-Range";
    let content_range = get("content-range").and_then(ContentRange::parse);
    let Some(range) = range else {
        fail(
            &mut d,
            "MEDIA-5",
            "200 to a request without Range",
            "206".into(),
        );
        return refuse(d, 502, "a 206 to a request without Range".into());
    };
    let Some(cr) = content_range else {
        let got = format!("Content-Range {:?}", get("content-range"));
        fail(&mut d, "MEDIA-17", asked, got);
        return refuse(d, 502, "a 206 without a usable Content-Range".into());
    };
    if range.resolve(cr.total) != Some((cr.first, cr.last)) {
        let got = format!(
            "Content-Range bytes {}-{}/{} for {range:?}",
            cr.first, cr.last, cr.total
        );
        fail(&mut d, "MEDIA-17", asked, got);
    }
    if content_length.is_some_and(|n| n != cr.len()) {
        let got = format!("Content-Length {content_length:?} for {} bytes", cr.len());
        fail(&mut d, "MEDIA-17", asked, got);
    }
    if cr.total > max {
        let got = format!("an object of {} bytes", cr.total);
        fail(&mut d, "MEDIA-23", "no object over 100 MiB stored", got);
    }
    Plan {
        deviations: d,
        stream: Some(Stream {
            content_length,
            content_range: Some(cr),
            expect: Some(cr.len()),
        }),
        refuse: (0, String::new()),
    }
}

/// The provider's body on its way to the caller.
struct Forward {
    upstream: Incoming,
    _driver: Driver,
    entry: Entry,
    shared: Arc<Shared>,
    delivered: u64,
    /// The length the answer promised, if any.
    expect: Option<u64>,
    /// MEDIA-5 for a 200, MEDIA-17 for a 206.
    requirement: &'static str,
    max: u64,
    idle: Duration,
    sleep: Pin<Box<Sleep>>,
    /// Whether `sleep` measures the current wait for the provider (set when polled after a
    /// frame went out, so that a slow caller does not count against the provider).
    waiting: bool,
    done: bool,
    len_hint: Option<u64>,
}

impl Forward {
    fn finish(&mut self, outcome: Outcome, deviation: Option<Deviation>) {
        if self.done {
            return;
        }
        self.done = true;
        {
            let mut f = lock(&self.entry);
            f.delivered = self.delivered;
            f.outcome = outcome;
            f.deviations.extend(deviation);
        }
        self.shared.changed.notify_waiters();
    }

    fn short(&self, why: &str) -> Option<Deviation> {
        let n = self.expect?;
        Some(Deviation::fail(
            self.requirement,
            format!("a body of the announced {n} bytes"),
            format!("{} bytes, then {why}", self.delivered),
        ))
    }

    fn fail(
        &mut self,
        why: String,
        deviation: Option<Deviation>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.finish(Outcome::Failed(why.clone()), deviation);
        Poll::Ready(Some(Err(why.into())))
    }
}

impl Body for Forward {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        if this.done {
            return Poll::Ready(None);
        }
        if !this.waiting {
            this.waiting = true;
            let deadline = Instant::now() + this.idle;
            this.sleep.as_mut().reset(deadline);
        }
        loop {
            match Pin::new(&mut this.upstream).poll_frame(cx) {
                Poll::Pending => {
                    if this.sleep.as_mut().poll(cx).is_ready() {
                        let why = format!(
                            "no bytes from the provider for {} ms",
                            this.idle.as_millis()
                        );
                        let d = this.short("silence");
                        return this.fail(why, d);
                    }
                    return Poll::Pending;
                }
                Poll::Ready(None) => {
                    let d = match this.expect {
                        Some(n) if n != this.delivered => this.short("the end"),
                        _ => None,
                    };
                    this.finish(Outcome::Complete, d);
                    return Poll::Ready(None);
                }
                Poll::Ready(Some(Err(e))) => {
                    let d = this.short("a broken connection");
                    return this.fail(format!("the provider's body: {e}"), d);
                }
                Poll::Ready(Some(Ok(frame))) => {
                    let Ok(data) = frame.into_data() else {
                        continue; // trailers are not passed on
                    };
                    this.delivered += data.len() as u64;
                    if this.delivered > this.max {
                        let d = Deviation::fail(
                            "MEDIA-23",
                            "no object over 100 MiB stored",
                            format!("more than {} body bytes", this.max),
                        );
                        return this.fail(format!("more than {} bytes", this.max), Some(d));
                    }
                    this.waiting = false;
                    if this.expect == Some(this.delivered) {
                        // hyper may not ask again once the announced length went out.
                        this.finish(Outcome::Complete, None);
                    } else {
                        lock(&this.entry).delivered = this.delivered;
                    }
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
            }
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self.len_hint {
            Some(n) => SizeHint::with_exact(n),
            None => SizeHint::default(),
        }
    }
}

impl Drop for Forward {
    fn drop(&mut self) {
        self.finish(Outcome::CallerLeft, None);
    }
}
