//! One request of the enrollment API, from its head to its answer: the check order of SPEC
//! §10.1 (scripted answers first), the proof and token checks, the enrollment itself, and the
//! record of what the client did wrong. Kept apart from the server (connections, limits,
//! shutdown) so that each can be read alone.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{HeaderMap, HeaderValue};
use hyper::{Request, Response, StatusCode};
use sha2::{Digest, Sha256};
use tokio::time::Instant;

use super::check::{self, BodyCheck, Refusal, ValidRequest};
use super::state::{DeviceKeys, Enrollment, lock};
use super::{
    DEFAULT_RETRY_AFTER, ENROLL_PATH, EnrollRequest, Forced, MAX_BODY, MAX_LOG, MAX_RECORDED_BODY,
    MAX_RECORDED_HEADERS, MAX_REFUSED, Outcome, Shared,
};
use crate::idproof::{self, Expected, Proof};
use crate::verdict::Deviation;

/// The body as far as it was read.
enum Body {
    Whole(Bytes),
    /// Declared or found larger than [`MAX_BODY`].
    TooLarge,
    /// Not complete within the body timeout.
    TimedOut,
    /// The client cut it off: no answer can reach it.
    Broken(String),
}

async fn read_body(req: Request<Incoming>, deadline: Instant) -> Body {
    let declared = req
        .headers()
        .get(hyper::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_BODY as u64) {
        return Body::TooLarge;
    }
    let read = Limited::new(req.into_body(), MAX_BODY).collect();
    match tokio::time::timeout_at(deadline, read).await {
        Ok(Ok(collected)) => Body::Whole(collected.to_bytes()),
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => Body::TooLarge,
        Ok(Err(e)) => Body::Broken(e.to_string()),
        Err(_) => Body::TimedOut,
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// What the handler decided, before it is written.
enum Answer {
    Refuse(Refusal, Option<u32>),
    Success(u16, serde_json::Value),
    Hang,
    /// The client broke its body off (why): nobody is left to read an answer.
    Nothing(String),
}

/// Handles one request: SPEC §10.1's check order (path, method, media type, body, members,
/// values, proof, token, conflict) with a scripted answer, if one is queued, taking the place
/// of the checks' answer; and the record of what the client did, whatever the answer.
pub(super) async fn handle(shared: &Shared, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let at = Instant::now();
    let method = req.method().as_str().to_owned();
    let path = req
        .uri()
        .path_and_query()
        .map_or_else(|| req.uri().path().to_owned(), |p| p.as_str().to_owned());
    let headers = record_headers(req.headers());
    let media_ok = json_media_type(req.headers());
    let right_place = req.uri().path() == ENROLL_PATH;
    let right_method = req.method() == hyper::Method::POST;

    let mut deviations = Vec::new();
    let (seq, forced) = {
        let mut log = shared.log();
        let seq = log.next_seq;
        log.next_seq += 1;
        if let Some((until, by, retry_after)) = log.quiet_until
            && at < until
        {
            let wait = match retry_after {
                Some(s) => format!("Retry-After: {s}"),
                None => "no Retry-After header, so 60 s".into(),
            };
            deviations.push(Deviation::fail(
                "ENROLL-13",
                "ENROLL-13: no call to the enrollment API before Retry-After (or 60 s) after a 429",
                format!(
                    "request #{seq} came {} ms before the wait after the 429 to request #{by} \
                     ({wait}) was over",
                    until.saturating_duration_since(at).as_millis()
                ),
            ));
        }
        (seq, log.forced.pop_front())
    };

    if !right_place {
        deviations.push(Deviation::fail(
            "ENROLL-2",
            "ENROLL-2: the enrollment sent to POST /v1/enroll",
            format!(
                "a request to {}",
                check::quote(&serde_json::Value::String(path.clone()))
            ),
        ));
    }
    if !right_method {
        deviations.push(Deviation::fail(
            "ENROLL-2",
            "ENROLL-2: the enrollment sent with method POST",
            format!("method {method}"),
        ));
    }
    if right_place && right_method && !media_ok {
        let got = match headers.iter().filter(|(k, _)| k == "content-type").count() {
            0 => "no Content-Type header".to_owned(),
            1 => format!(
                "Content-Type {:?}",
                headers
                    .iter()
                    .find(|(k, _)| k == "content-type")
                    .map_or("", |(_, v)| v.as_str())
            ),
            n => format!("{n} Content-Type headers"),
        };
        deviations.push(Deviation::fail(
            "ENROLL-2",
            "ENROLL-2: Content-Type application/json",
            got,
        ));
    }

    let body = read_body(req, at + shared.config.body_timeout).await;
    let body_bytes = match &body {
        Body::Whole(b) => Some(b.clone()),
        _ => None,
    };

    // ENROLL-11: this exact body was refused before.
    let digest: Option<[u8; 32]> = body_bytes.as_ref().map(|b| Sha256::digest(b).into());
    if let Some(d) = digest {
        let log = shared.log();
        if let Some((_, by, status, code)) = log.refused.iter().find(|(h, ..)| *h == d) {
            deviations.push(Deviation::fail(
                "ENROLL-11",
                "ENROLL-11: a body answered 400, 401, 403 or 415 is not sent again",
                format!(
                    "request #{seq} repeats the body of request #{by}, which was answered \
                     {status} {code}"
                ),
            ));
        }
    }

    let answer = decide(
        shared,
        forced,
        right_place,
        right_method,
        media_ok,
        &body,
        &mut deviations,
    )
    .await;

    let (outcome, response) = match &answer {
        Answer::Refuse(r, retry_after) => (
            Outcome {
                status: Some(r.status),
                code: Some(r.code.clone()),
            },
            Some(error_response(
                r,
                *retry_after,
                matches!(body, Body::TooLarge | Body::TimedOut),
            )),
        ),
        Answer::Success(status, json) => (
            Outcome {
                status: Some(*status),
                code: None,
            },
            Some(json_response(*status, json)),
        ),
        Answer::Hang => (
            Outcome {
                status: None,
                code: Some("hang".into()),
            },
            None,
        ),
        // The answer is written in case the connection still carries it, but the client
        // broke its own request off, so the record says no answer was given.
        Answer::Nothing(why) => (
            Outcome {
                status: None,
                code: Some(why.clone()),
            },
            Some(error_response(
                &Refusal::new(400, "malformed_json", why.clone()),
                None,
                true,
            )),
        ),
    };

    {
        let mut log = shared.log();
        if let (Some(status), Some(code), Some(d)) = (outcome.status, &outcome.code, digest)
            && matches!(status, 400 | 401 | 403 | 415)
            && !log.refused.iter().any(|(h, ..)| *h == d)
        {
            if log.refused.len() == MAX_REFUSED {
                log.refused.pop_front();
            }
            log.refused.push_back((d, seq, status, code.clone()));
        }
        if outcome.status == Some(429) {
            let retry_after = match &answer {
                Answer::Refuse(_, r) => *r,
                _ => None,
            };
            let wait =
                retry_after.map_or(DEFAULT_RETRY_AFTER, |s| Duration::from_secs(u64::from(s)));
            log.quiet_until = Some((Instant::now() + wait, seq, retry_after));
        }
        let record = EnrollRequest {
            seq,
            at,
            method,
            path,
            headers,
            body: body_bytes
                .as_ref()
                .map(|b| b[..b.len().min(MAX_RECORDED_BODY)].to_vec())
                .unwrap_or_default(),
            body_len: body_bytes.as_ref().map(Bytes::len),
            outcome,
            client_deviations: deviations,
        };
        if log.requests.len() < MAX_LOG {
            log.requests.push(record);
        } else {
            log.dropped += 1;
        }
    }
    shared.recorded.notify_waiters();

    match response {
        Some(r) => r,
        None => {
            // A hang lasts until hyper drops this future (the client closed the connection,
            // or the server shut down).
            std::future::pending::<()>().await;
            error_response(&Refusal::new(500, "unreachable", ""), None, true)
        }
    }
}

/// Lowercase names (hyper gives them so), values as text, at most 64.
fn record_headers(headers: &HeaderMap) -> Vec<(String, String)> {
    headers
        .iter()
        .take(MAX_RECORDED_HEADERS)
        .map(|(k, v)| {
            (
                k.as_str().to_ascii_lowercase(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect()
}

/// One Content-Type header whose media type is `application/json` (parameters allowed).
fn json_media_type(headers: &HeaderMap) -> bool {
    let mut values = headers.get_all(hyper::header::CONTENT_TYPE).iter();
    let (Some(v), None) = (values.next(), values.next()) else {
        return false;
    };
    v.to_str().is_ok_and(|s| {
        s.split(';')
            .next()
            .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/json"))
    })
}

/// The checks in order; the first failure decides. The body checks also run under a scripted
/// answer (and after an early refusal of a POST to the right path), since what is wrong with
/// the body is the client's fault whatever the answer.
async fn decide(
    shared: &Shared,
    forced: Option<Forced>,
    right_place: bool,
    right_method: bool,
    media_ok: bool,
    body: &Body,
    deviations: &mut Vec<Deviation>,
) -> Answer {
    let checked: Option<BodyCheck> = match body {
        Body::Whole(b) if right_place && right_method => {
            Some(check::check_body(b, &shared.config.onboarded))
        }
        _ => None,
    };
    if let Some(c) = &checked {
        deviations.extend(c.deviations.iter().cloned());
    }
    // The proof's own faults, found without consuming its nonce (a scratch copy of the
    // cache): only a success consumes it (SPEC §10.1), in `commit`.
    let proof = match &checked {
        Some(BodyCheck {
            refusal: None,
            request: Some(request),
            proof,
            proof_duplicates,
            ..
        }) => Some(
            match check::parse_proof(proof.as_ref(), proof_duplicates, request) {
                Ok(p) => {
                    let result = {
                        let state = lock(&shared.state);
                        let mut scratch = state.nonces.clone();
                        idproof::verify(
                            &p,
                            &state.registry,
                            &expected(request),
                            unix_now(),
                            &mut scratch,
                        )
                    };
                    match result {
                        Ok(()) => Ok((request.clone(), p)),
                        Err(e) => {
                            deviations.push(check::verify_fault(e.code, &e.reason));
                            Err(Refusal::new(401, e.code.code(), e.reason))
                        }
                    }
                }
                Err(boxed) => {
                    let (refusal, deviation) = *boxed;
                    deviations.push(deviation);
                    Err(refusal)
                }
            },
        ),
        _ => None,
    };

    if let Some(f) = forced {
        return match f {
            Forced::Status {
                status,
                retry_after,
            } => {
                let code = match status {
                    429 => "rate_limited",
                    500..=599 => "unavailable",
                    _ => "forced",
                };
                Answer::Refuse(
                    Refusal::new(status, code, format!("scripted answer {status}")),
                    retry_after,
                )
            }
            Forced::Conflict => Answer::Refuse(
                Refusal::new(
                    409,
                    "device_id_conflict",
                    "the device id is enrolled for another identifier (scripted)",
                ),
                None,
            ),
            Forced::Hang => Answer::Hang,
            Forced::Refuse(status, code) => Answer::Refuse(
                Refusal::new(status, &code, format!("scripted answer {status} {code}")),
                None,
            ),
        };
    }

    if !right_place {
        return refuse(404, "not_found", "only POST /v1/enroll is served here");
    }
    if !right_method {
        return Answer::Refuse(
            Refusal::new(405, "method_not_allowed", "/v1/enroll takes POST only"),
            None,
        );
    }
    if !media_ok {
        return refuse(
            415,
            "unsupported_media_type",
            "the body must be sent as Content-Type: application/json",
        );
    }
    match body {
        Body::Whole(_) => {}
        Body::TooLarge => {
            return refuse(
                400,
                "malformed_json",
                format!("the body is too large (more than {MAX_BODY} bytes)"),
            );
        }
        Body::TimedOut => {
            return refuse(
                408,
                "request_timeout",
                format!(
                    "the body did not arrive within {} ms",
                    shared.config.body_timeout.as_millis()
                ),
            );
        }
        Body::Broken(e) => return Answer::Nothing(format!("body broken off: {e}")),
    }
    let Some(checked) = checked else {
        return refuse(500, "internal_error", "the body was read but not checked");
    };
    if let Some(r) = checked.refusal {
        return Answer::Refuse(r, None);
    }
    let (request, proof) = match proof {
        Some(Ok(v)) => v,
        Some(Err(r)) => return Answer::Refuse(r, None),
        // A valid body always yields a request; a missing one would be a bug here.
        None => return refuse(500, "internal_error", "the checked request was lost"),
    };

    let check = (shared.token_check)(request.identifier.clone(), request.provider_token.clone());
    let valid = match tokio::time::timeout(shared.config.token_timeout, check).await {
        Ok(Ok(valid)) => valid,
        Ok(Err(e)) => {
            return refuse(
                503,
                "provider_unreachable",
                format!("the provider's user authentication could not be asked: {e}"),
            );
        }
        Err(_) => {
            return refuse(
                503,
                "provider_unreachable",
                "the provider's user authentication did not answer in time",
            );
        }
    };
    commit(shared, &request, &proof, valid)
}

fn refuse(status: u16, code: &str, message: impl Into<String>) -> Answer {
    Answer::Refuse(Refusal::new(status, code, message), None)
}

fn expected(request: &ValidRequest) -> Expected<'_> {
    Expected {
        identifier: &request.identifier,
        identity_key: &request.identity_key,
        device_id: request.device_id,
    }
}

/// The decided part, under one lock: the token verdict, the nonce checked again against the
/// real cache (another request may have used it while the token was being checked), the
/// conflict check, and the enrollment. The nonce is consumed only by a success (SPEC §10.1),
/// so a client may retry with the same proof after a 403, 409 or 503 answer.
fn commit(shared: &Shared, request: &ValidRequest, proof: &Proof, token_valid: bool) -> Answer {
    let mut state = lock(&shared.state);
    let now = unix_now();
    if state.nonces.seen(&proof.provider_id, &proof.nonce, now) {
        return refuse(
            401,
            idproof::ProofCode::Replayed.code(),
            format!(
                "nonce {} was used by another enrollment meanwhile",
                proof.nonce
            ),
        );
    }
    if !token_valid {
        return refuse(
            403,
            "provider_token_rejected",
            "the provider did not confirm provider_token for this identifier",
        );
    }
    if state
        .owner_of(request.device_id)
        .is_some_and(|owner| owner != request.identifier)
    {
        return refuse(
            409,
            "device_id_conflict",
            "the device id is enrolled for another identifier",
        );
    }
    let keys = DeviceKeys {
        identity_key: request.identity_key,
        signed_prekey: request.signed_prekey.clone(),
        one_time_prekeys: request.one_time_prekeys.clone(),
    };
    let (status, device, credential) =
        match state.enroll(&request.identifier, request.device_id, keys) {
            Ok(Enrollment::New(d, c)) => (201, d, c),
            Ok(Enrollment::Renewed(d, c)) => (200, d, c),
            Ok(Enrollment::Conflict { .. }) => {
                return refuse(
                    409,
                    "device_id_conflict",
                    "the device id is enrolled for another identifier",
                );
            }
            Err(e) => return refuse(500, "internal_error", e),
        };
    state.nonces.insert(
        &proof.provider_id,
        &proof.nonce,
        proof.expires_at.saturating_add(idproof::SKEW_S),
    );
    Answer::Success(
        status,
        serde_json::json!({
            "v": 1,
            "account": device.account,
            "domain": shared.config.domain,
            "device_id": device.device_id,
            "credential": credential,
            "server_static_key": STANDARD.encode(shared.config.server_static_key),
        }),
    )
}

fn json_response(status: u16, body: &serde_json::Value) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
    *response.status_mut() =
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// An error answer. `close` when the body was not read to its end: the connection cannot
/// carry another request after it.
fn error_response(r: &Refusal, retry_after: Option<u32>, close: bool) -> Response<Full<Bytes>> {
    let mut response = json_response(
        r.status,
        &serde_json::json!({"error": r.code, "message": r.message}),
    );
    let headers = response.headers_mut();
    if r.status == 405 {
        headers.insert(hyper::header::ALLOW, HeaderValue::from_static("POST"));
    }
    if let Some(s) = retry_after {
        headers.insert(hyper::header::RETRY_AFTER, HeaderValue::from(s));
    }
    if close {
        headers.insert(hyper::header::CONNECTION, HeaderValue::from_static("close"));
    }
    response
}
