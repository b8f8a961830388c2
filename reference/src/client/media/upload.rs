//! Sharing a file (driver `send_media`, SPEC.md §14.2): read it, seal it under a fresh key
//! (MEDIA-1), upload the object to the harness's slot (MEDIA-20) or to the reference's own
//! server, and hand the reference back to the driver loop, which sends it as a text.

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full, Limited};
use hyper::Request;
use hyper::header::{AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE, HOST};
use tokio::sync::mpsc;
use tokio::time::{Instant, timeout, timeout_at};

use super::{
    DEADLINE, Done, HttpsUrl, IDLE_TIMEOUT, MAX_FILE, UPLOAD_PATH, exchange, fresh_key,
    reference_for, seal, tls_config,
};
use crate::driver::{Event, SendMedia, UploadSlot};
use crate::mutant::Mutant;

/// The largest answer read to an upload (a JSON object with a URL).
const MAX_ANSWER_BODY: usize = 64 * 1024;

/// Driver `send_media`: the immediate answer (a bad command, `too-large`, `not-connected`),
/// or `None` when the upload went off as a task that answers through `tx`.
pub fn send(
    seq: i64,
    params: SendMedia,
    connected: bool,
    mutant: Mutant,
    tx: &mpsc::Sender<Done>,
) -> Option<Event> {
    let bad = |detail: String| {
        Some(Event::Error {
            seq: Some(seq),
            code: "bad-command",
            detail,
        })
    };
    let (local, domain) = params.to.split_once('@').unwrap_or(("", &params.to));
    if local.is_empty() || domain.is_empty() || domain.contains(['/', '@']) {
        return bad(format!("send_media: {:?} is not a bare JID", params.to));
    }
    let size = match std::fs::metadata(&params.path) {
        Ok(m) if m.is_file() => m.len(),
        Ok(_) => return bad(format!("send_media: {:?} is not a file", params.path)),
        Err(e) => return bad(format!("send_media: {:?}: {e}", params.path)),
    };
    if size > MAX_FILE && mutant != Mutant::MediaIgnoresSizeLimit {
        // MEDIA-23: nothing uploaded, nothing sent. (The media-ignores-size-limit mutant
        // uploads it anyway.)
        return Some(Event::SendFailed {
            seq,
            reason: "too-large",
        });
    }
    if !connected {
        return Some(Event::SendFailed {
            seq,
            reason: "not-connected",
        });
    }
    let tx = tx.clone();
    tokio::spawn(async move {
        let done = match upload(&params, mutant).await {
            Ok(reference) => Done::Uploaded {
                seq,
                to: params.to,
                reference,
            },
            Err(reason) => Done::Answer(Event::SendFailed { seq, reason }),
        };
        let _ = tx.send(done).await;
    });
    None
}

/// Reads, encrypts and uploads the file: its reference, or the `send_failed` reason.
async fn upload(params: &SendMedia, mutant: Mutant) -> Result<String, &'static str> {
    let failed = |why: String| {
        eprintln!("gatecheck-reference: send_media: {why}");
        "upload-failed"
    };
    let path = params.path.clone();
    let file = tokio::task::spawn_blocking(move || std::fs::read(path))
        .await
        .map_err(|e| failed(e.to_string()))?
        .map_err(|e| failed(format!("reading {:?}: {e}", params.path)))?;
    if file.len() as u64 > MAX_FILE && mutant != Mutant::MediaIgnoresSizeLimit {
        return Err("too-large");
    }
    let (key, iv) = fresh_key(mutant).ok_or_else(|| failed("no randomness".into()))?;
    let object = tokio::task::spawn_blocking(move || seal(&key, &iv, file))
        .await
        .ok()
        .flatten()
        .ok_or_else(|| failed("encryption failed".into()))?;
    let url = timeout_at(Instant::now() + DEADLINE, async {
        match &params.upload {
            Some(slot) => put_to_slot(slot, object, mutant).await,
            None => post_to_own_server(object).await,
        }
    })
    .await
    .unwrap_or_else(|_| Err("the upload took too long".into()))
    .map_err(failed)?;
    let reference =
        reference_for(&url, &iv, &key).ok_or_else(|| failed(format!("unusable URL {url:?}")))?;
    if reference.len() > crate::client::MAX_TEXT_BYTES {
        return Err(failed("the reference is longer than a text may be".into()));
    }
    Ok(reference)
}

/// MEDIA-20: one plain `PUT` of the object to the slot; its `get_url` on a 2xx.
async fn put_to_slot(slot: &UploadSlot, object: Vec<u8>, mutant: Mutant) -> Result<String, String> {
    let url = HttpsUrl::parse(&slot.put_url).ok_or("put_url is not a usable https URL")?;
    let config = tls_config(&slot.ca_pem)?;
    let mut request = Request::put(url.target.as_str())
        .header(HOST, url.authority.as_str())
        .header(CONTENT_LENGTH, object.len())
        .header(CONTENT_TYPE, "application/octet-stream");
    if mutant == Mutant::MediaUploadAuth {
        // MEDIA-20 deviation: the correct client's PUT carries no credential.
        request = request.header(AUTHORIZATION, "Bearer gatecheck-reference-upload");
    }
    let request = request
        .body(Full::new(Bytes::from(object)))
        .map_err(|e| e.to_string())?;
    let (response, _guard) = exchange(&url, config, request)
        .await
        .map_err(|(_, detail)| detail)?;
    if !response.status().is_success() {
        return Err(format!("the slot answered {}", response.status()));
    }
    if mutant == Mutant::MediaReferencesPutUrl {
        // MEDIA-18 deviation: the correct client refers to the slot's get_url.
        return Ok(slot.put_url.clone());
    }
    Ok(slot.get_url.clone())
}

/// The chain's upload (SPEC.md §14.2): `POST {GATECHECK_PROVIDER_URL}/media/v1/upload` to
/// the reference's own server, trusting `GATECHECK_PROVIDER_CA`; `201 {"url": …}`.
async fn post_to_own_server(object: Vec<u8>) -> Result<String, String> {
    let (base, ca_file) =
        crate::client::enroll::own_server().ok_or("no own server to upload to")?;
    let ca_pem = std::fs::read_to_string(&ca_file)
        .map_err(|e| format!("the own server's CA {ca_file}: {e}"))?;
    let target = format!("{}{UPLOAD_PATH}", base.trim_end_matches('/'));
    let url = HttpsUrl::parse(&target).ok_or("GATECHECK_PROVIDER_URL is not a usable URL")?;
    let request = Request::post(url.target.as_str())
        .header(HOST, url.authority.as_str())
        .header(CONTENT_LENGTH, object.len())
        .header(CONTENT_TYPE, "application/octet-stream")
        .body(Full::new(Bytes::from(object)))
        .map_err(|e| e.to_string())?;
    let (response, _guard) = exchange(&url, tls_config(&ca_pem)?, request)
        .await
        .map_err(|(_, detail)| detail)?;
    let status = response.status();
    let body = timeout(
        IDLE_TIMEOUT,
        Limited::new(response.into_body(), MAX_ANSWER_BODY).collect(),
    )
    .await
    .ok()
    .and_then(Result::ok)
    .map(|b| b.to_bytes());
    if !status.is_success() {
        return Err(format!("the own server answered {status}"));
    }
    let answer: serde_json::Value = body
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or("the own server's answer is not JSON")?;
    answer
        .get("url")
        .and_then(serde_json::Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| "the own server's answer has no url".into())
}
