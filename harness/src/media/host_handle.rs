//! One request to the media host, from its head to its answer, and the checks of what the
//! client sent (kept apart from the server's setup and bookkeeping).

use std::net::SocketAddr;
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD_NO_PAD, URL_SAFE_NO_PAD};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::{Method, Request, Response};
use tokio::time::Instant;

use super::super::aesgcm::{MediaKey, hex_lower};
use super::super::files::{FileWriter, ObjectBody, ReadPlan, Transfer};
use super::super::percent_decode;
use super::super::serve::{RespBody, recorded_headers, simple};
use super::{
    ANNOUNCED_LEN, Entry, Fault, HostRequest, MAX_LOG, MAX_RECORDED_HEADERS, Object, RequestKind,
    Shared,
};
use crate::verdict::Deviation;

const OCTETS: &str = "application/octet-stream";

/// Headers that identify a user or a device whatever their value.
const IDENTIFYING: &[&str] = &[
    "cookie",
    "authorization",
    "proxy-authorization",
    "from",
    "referer",
    "forwarded",
    "x-forwarded-for",
    "x-real-ip",
];

pub(super) async fn handle(
    shared: Arc<Shared>,
    req: Request<Incoming>,
    peer: SocketAddr,
) -> Response<RespBody> {
    let seq = {
        let mut state = shared.state();
        state.next_seq += 1;
        state.next_seq - 1
    };
    let uri_path = req.uri().path().to_owned();
    let mut rec = HostRequest {
        seq,
        at: Instant::now(),
        peer,
        method: req.method().as_str().to_owned(),
        path: req
            .uri()
            .path_and_query()
            .map_or_else(|| uri_path.clone(), |p| p.as_str().to_owned()),
        headers: recorded_headers(req.headers(), MAX_RECORDED_HEADERS),
        kind: RequestKind::Other,
        status: 0,
        body_bytes: 0,
        complete: Some(true),
        deviations: Vec::new(),
    };
    if let Some(token) = uri_path.strip_prefix("/m/") {
        rec.kind = RequestKind::Object {
            token: token.to_owned(),
            fault: None,
        };
        return get(&shared, rec, token, req.method());
    }
    if let Some(token) = uri_path.strip_prefix("/u/") {
        rec.kind = RequestKind::Upload {
            token: token.to_owned(),
        };
        return put(&shared, rec, token.to_owned(), req).await;
    }
    rec.status = 404;
    push(&shared, rec, None);
    simple(404, &[], "not found\n")
}

fn get(shared: &Shared, mut rec: HostRequest, token: &str, method: &Method) -> Response<RespBody> {
    if method != Method::GET && method != Method::HEAD {
        rec.status = 405;
        push(shared, rec, None);
        return simple(405, &[("allow", "GET, HEAD")], "method not allowed\n");
    }
    for problem in identifying(&rec, &shared.config.identifiers) {
        rec.deviations.push(Deviation::fail(
            "MEDIA-15",
            "a plain anonymous GET: no cookie, no Authorization, no identifying header or identifier",
            problem,
        ));
    }
    let object = shared.state().objects.get(token).cloned();
    let Some(object) = object else {
        rec.status = 404;
        push(shared, rec, None);
        return simple(404, &[], "not found\n");
    };
    rec.kind = RequestKind::Object {
        token: token.to_owned(),
        fault: Some(object.fault),
    };
    let (status, plan) = match object.fault {
        Fault::Status => (404, None),
        Fault::Redirect => (302, None),
        Fault::Announce => (200, None),
        Fault::None => (200, Some(plan(&object.path, object.size, None, false))),
        Fault::FlipTag => {
            let last = object.size.checked_sub(1);
            (200, Some(plan(&object.path, object.size, last, false)))
        }
        Fault::Truncate => (200, Some(plan(&object.path, object.size / 2, None, true))),
        Fault::Swap => {
            let path = object.swap.as_ref().unwrap_or(&object.path);
            (200, Some(plan(path, object.size, None, false)))
        }
    };
    rec.status = status;
    match status {
        404 => {
            push(shared, rec, None);
            return simple(404, &[], "not found\n");
        }
        302 => {
            let location = format!("http://{}/m/{token}", shared.authority());
            push(shared, rec, None);
            return simple(302, &[("location", &location)], "");
        }
        _ => {}
    }
    let declared = if object.fault == Fault::Announce {
        ANNOUNCED_LEN
    } else {
        object.size
    };
    let length = declared.to_string();
    let headers = [
        ("content-type", OCTETS),
        ("content-length", length.as_str()),
    ];
    if method == Method::HEAD {
        push(shared, rec, None);
        return simple(200, &headers, "");
    }
    let transfer = Arc::new(Transfer::default());
    let body = match plan {
        Some(plan) => ObjectBody::file(plan, declared, transfer.clone()),
        None => ObjectBody::zeros(declared, transfer.clone()),
    };
    rec.complete = None;
    push(shared, rec, Some(transfer));
    let mut response = Response::new(body.boxed());
    for (k, v) in headers {
        if let Ok(v) = hyper::header::HeaderValue::from_str(v) {
            response.headers_mut().insert(k, v);
        }
    }
    response
}

fn plan(path: &std::path::Path, send: u64, flip_at: Option<u64>, cut: bool) -> ReadPlan {
    ReadPlan {
        path: path.to_path_buf(),
        send,
        flip_at,
        cut,
    }
}

async fn put(
    shared: &Shared,
    mut rec: HostRequest,
    token: String,
    req: Request<Incoming>,
) -> Response<RespBody> {
    if req.method() != Method::PUT {
        rec.status = 405;
        push(shared, rec, None);
        return simple(405, &[("allow", "PUT")], "method not allowed\n");
    }
    let expected = "a plain PUT of the object with its Content-Length and no cookie, \
                    Authorization, identifying header or identifier";
    let mut problems = identifying(&rec, &shared.config.identifiers);
    let declared = rec
        .header("content-length")
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_none() {
        problems.push("no Content-Length".into());
    }
    for p in problems {
        rec.deviations
            .push(Deviation::fail("MEDIA-20", expected, p));
    }
    let slot_state = shared.state().slots.get(&token).map(|s| s.upload.is_some());
    match slot_state {
        None => return answer(shared, rec, 404, "no such upload slot\n"),
        Some(true) => return answer(shared, rec, 409, "this slot holds an upload already\n"),
        Some(false) => {}
    }
    let max = shared.config.max_upload;
    let too_large = |rec: &mut HostRequest, got: String| {
        rec.deviations.push(Deviation::fail(
            "MEDIA-23",
            format!("no object larger than {max} bytes shared"),
            got,
        ));
    };
    if let Some(n) = declared.filter(|&n| n > max) {
        too_large(&mut rec, format!("an upload with Content-Length {n}"));
        return answer(shared, rec, 413, "too large\n");
    }
    let path = shared
        .config
        .scratch
        .join(format!("upload-{token}-{}.bin", rec.seq));
    let mut writer = match FileWriter::create(&path) {
        Ok(w) => w,
        Err(e) => return answer(shared, rec, 500, &format!("cannot store: {e}\n")),
    };
    let deadline = Instant::now() + shared.config.upload_timeout;
    let mut body = req.into_body();
    loop {
        let frame = match tokio::time::timeout_at(deadline, body.frame()).await {
            Err(_) => {
                rec.complete = Some(false);
                return answer(shared, rec, 408, "upload too slow\n");
            }
            Ok(None) => break,
            Ok(Some(Err(_))) => {
                // The client broke the body off: nobody is left to read an answer.
                rec.complete = Some(false);
                return answer(shared, rec, 400, "broken body\n");
            }
            Ok(Some(Ok(frame))) => frame,
        };
        let Ok(data) = frame.into_data() else {
            continue; // trailers
        };
        rec.body_bytes += data.len() as u64;
        if rec.body_bytes > max {
            let n = rec.body_bytes;
            too_large(
                &mut rec,
                format!("an upload of more than {max} bytes ({n} read)"),
            );
            rec.complete = Some(false);
            return answer(shared, rec, 413, "too large\n");
        }
        if let Err(e) = writer.write(data).await {
            rec.complete = Some(false);
            return answer(shared, rec, 500, &format!("cannot store: {e}\n"));
        }
    }
    let written = match writer.finish().await {
        Ok(w) => w,
        Err(e) => return answer(shared, rec, 500, &format!("cannot store: {e}\n")),
    };
    let stored = {
        let mut state = shared.state();
        let get_token = match state.slots.get_mut(&token) {
            Some(slot) if slot.upload.is_none() => {
                slot.upload = Some(written.clone());
                Some(slot.get_token.clone())
            }
            _ => None,
        };
        if let Some(get_token) = &get_token {
            state.objects.insert(
                get_token.clone(),
                Object {
                    path: written.path.clone(),
                    size: written.len,
                    fault: Fault::None,
                    swap: None,
                },
            );
        }
        get_token.is_some()
    };
    if !stored {
        let _ = std::fs::remove_file(&written.path);
        return answer(shared, rec, 409, "this slot holds an upload already\n");
    }
    answer(shared, rec, 201, "")
}

fn answer(shared: &Shared, mut rec: HostRequest, status: u16, body: &str) -> Response<RespBody> {
    rec.status = status;
    push(shared, rec, None);
    simple(status, &[], body)
}

fn push(shared: &Shared, req: HostRequest, transfer: Option<Arc<Transfer>>) {
    {
        let mut state = shared.state();
        if state.log.len() < MAX_LOG {
            state.log.push(Entry { req, transfer });
        } else {
            state.dropped += 1;
        }
    }
    shared.recorded.notify_waiters();
}

/// What identifies the user in a request: identifying headers, and `identifiers` anywhere in
/// the path or a header value (case-insensitive).
fn identifying(rec: &HostRequest, identifiers: &[String]) -> Vec<String> {
    let mut out: Vec<String> = rec
        .headers
        .iter()
        .filter(|(k, _)| IDENTIFYING.contains(&k.as_str()))
        .map(|(k, v)| format!("header {k}: {}", clip(v)))
        .collect();
    let ids: Vec<&str> = identifiers.iter().map(String::as_str).collect();
    out.extend(identifiers_in(rec, &ids));
    out
}

fn identifiers_in(rec: &HostRequest, identifiers: &[&str]) -> Vec<String> {
    let mut out = Vec::new();
    let path = percent_decode(&rec.path).to_lowercase();
    for id in identifiers.iter().filter(|id| !id.is_empty()) {
        let needle = id.to_lowercase();
        if path.contains(&needle) || rec.path.to_lowercase().contains(&needle) {
            out.push(format!(
                "identifier {id:?} in the request path {:?}",
                rec.path
            ));
        }
        for (k, v) in &rec.headers {
            if v.to_lowercase().contains(&needle) {
                out.push(format!("identifier {id:?} in header {k}: {}", clip(v)));
            }
        }
    }
    out
}

fn clip(v: &str) -> String {
    if v.len() <= 80 {
        return v.to_owned();
    }
    let mut end = 80;
    while !v.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &v[..end])
}

/// Identifiers learned after the fact (MEDIA-15 for downloads, MEDIA-20 for uploads) in the
/// path or any header value of the recorded requests.
pub fn identifier_deviations(requests: &[HostRequest], identifiers: &[&str]) -> Vec<Deviation> {
    let mut out = Vec::new();
    for r in requests {
        let requirement = match r.kind {
            RequestKind::Object { .. } => "MEDIA-15",
            RequestKind::Upload { .. } => "MEDIA-20",
            RequestKind::Other => continue,
        };
        for problem in identifiers_in(r, identifiers) {
            out.push(Deviation::fail(
                requirement,
                "no user identifier in a media request",
                format!("request {} {}: {problem}", r.seq, r.method),
            ));
        }
    }
    out
}

/// MEDIA-19: the key or the IV of `secret` (hex of either case, base64 or base64url, with or
/// without padding) anywhere in the request line (raw or percent-decoded) or headers.
pub fn key_leak_deviations(requests: &[HostRequest], secret: &MediaKey) -> Vec<Deviation> {
    let mut needles: Vec<(String, bool, &str)> = Vec::new();
    for (what, bytes) in [("key", &secret.key[..]), ("IV", secret.iv.as_bytes())] {
        needles.push((hex_lower(bytes), true, what));
        needles.push((STANDARD_NO_PAD.encode(bytes), false, what));
        needles.push((URL_SAFE_NO_PAD.encode(bytes), false, what));
    }
    let mut out = Vec::new();
    for r in requests {
        let line = format!("{} {}", r.method, r.path);
        let mut places = vec![("the request line", line.clone())];
        places.push(("the request line", percent_decode(&line)));
        for (k, v) in &r.headers {
            places.push(("a header", format!("{k}: {v}")));
        }
        let mut found = Vec::new();
        for (place, text) in &places {
            let lower = text.to_lowercase();
            for (needle, hex, what) in &needles {
                let hit = if *hex {
                    lower.contains(needle.as_str())
                } else {
                    text.contains(needle.as_str())
                };
                let note = format!("the {what} in {place}");
                if hit && !found.contains(&note) {
                    found.push(note);
                }
            }
        }
        if !found.is_empty() {
            out.push(Deviation::fail(
                "MEDIA-19",
                "the media key and IV only inside the encrypted message",
                format!(
                    "request {} {} {}: {}",
                    r.seq,
                    r.method,
                    clip(&r.path),
                    found.join(", ")
                ),
            ));
        }
    }
    out
}
