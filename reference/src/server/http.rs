//! The request handlers: the gatekeeper's two endpoints (SPEC §12, §13), the provider's own
//! proof issuing, and the wake log the tests read.
//!
//! The gatekeeper endpoints check in the one order SPEC §12.1 fixes, each step answering its
//! own status, so that a conformance scenario can aim at one step and know which status a
//! correct server gives: path (404), method (405), signature (401), media type (415), body and
//! `Idempotency-Key` (400), device (404), then the answer. Every error answer is the JSON
//! `{"error": CODE, "message": TEXT}`, and no answer ever carries user data it was not asked
//! for: not the token, not whether a user exists.

use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use ed25519_dalek::{Signer as _, SigningKey, VerifyingKey};
use gatecheck::http::signing::{self, ReplayCache};
use gatecheck::idproof::{self, Proof, ProofFields};
use http_body_util::{BodyExt as _, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{ALLOW, AUTHORIZATION, CACHE_CONTROL, CONTENT_LENGTH, CONTENT_TYPE};
use hyper::{HeaderMap, Method, Request, Response, StatusCode};
use serde_json::{Map, Value, json};

use super::Config;
use super::media::{self, Media};
use super::state::{Memory, Tokens, Wake, lock};
use crate::mutant::Mutant;

/// Largest request body read. Gatekeeper requests are a few hundred bytes; a larger body is
/// refused without being held in memory.
pub const MAX_BODY: usize = 64 * 1024;
/// How long a client may take to send a body once its headers arrived.
const BODY_TIMEOUT: Duration = Duration::from_secs(5);
/// Lifetime of an issued proof: the most IDPROOF-5 allows.
const PROOF_LIFETIME_S: u64 = idproof::MAX_LIFETIME_S;
/// Longest `request_id` echoed back (a UUID is 36 characters); longer ones are left out.
const MAX_ECHOED_REQUEST_ID: usize = 128;
/// AUTH-10 forbids echoing any part of the token this long or longer.
const TOKEN_FRAGMENT: usize = 8;
/// The server-push-wide-window mutant's tolerance for a push's timestamp (PUSH-5 allows 60 s).
const PUSH_WIDE_WINDOW_S: u64 = 600;
/// How late the server-slow-auth mutant answers (AUTH-7 allows 2 s).
const SLOW_AUTH: Duration = Duration::from_millis(2500);
/// How late the server-slow-push mutant answers (PUSH-6 allows 5 s).
const SLOW_PUSH: Duration = Duration::from_secs(6);
/// How far back the server-proof-backdated mutant sets issued_at (IDPROOF-6 allows 60 s).
const BACKDATE_S: u64 = 120;

/// What every connection's handler shares.
pub struct Shared {
    mutant: Mutant,
    base_path: String,
    provider_id: String,
    gatekeeper_key: VerifyingKey,
    signing_key: SigningKey,
    tokens: Tokens,
    replay: Mutex<ReplayCache>,
    memory: Memory,
    /// The media host (SPEC.md §14) on the same listener.
    media: Media,
}

/// The paths served, relative to `--base-path`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Endpoint {
    Auth,
    Push,
    Proof,
    Wakes,
}

/// A finished answer, or the error answer a check produced.
pub(super) type Answer = Response<Full<Bytes>>;

impl Shared {
    pub fn new(config: &Config, mutant: Mutant) -> Shared {
        let mut tokens = Tokens::default();
        let memory = Memory::default();
        {
            let mut devices = lock(&memory.devices);
            for (identifier, token, device_id) in &config.users {
                tokens.issue(identifier, token);
                devices.configure(identifier, *device_id);
            }
        }
        for (identifier, token) in config.expired.iter().chain(&config.revoked) {
            tokens.withdraw(identifier, token);
        }
        Shared {
            mutant,
            base_path: config.base_path.clone(),
            provider_id: config.provider_id.clone(),
            gatekeeper_key: config.gatekeeper_key,
            // IDPROOF-1 deviation: a key of its own, registered nowhere, instead of the
            // onboarded one (as when the configured key fails to load and a fresh one stands in).
            signing_key: if mutant == Mutant::ServerProofUnregisteredKey {
                start_up_key()
            } else {
                config.signing_key.clone()
            },
            tokens,
            replay: Mutex::new(ReplayCache::new()),
            memory,
            media: Media::new(
                mutant,
                config.listen,
                &config.base_path,
                config.media_retention_s,
            ),
        }
    }

    /// Answers one request. Never fails: every refusal is an answer.
    pub async fn handle(&self, req: Request<Incoming>) -> Answer {
        // The media paths are the media host's; the checks below are the JSON endpoints'.
        if let Some(route) = req
            .uri()
            .path()
            .strip_prefix(self.base_path.as_str())
            .and_then(media::route)
        {
            return self.media.serve(route, req).await;
        }
        let endpoint = match self.route(req.uri().path()) {
            Some(e) => e,
            None if self.mutant == Mutant::ServerRedirectsTrailingSlash
                && self
                    .route(req.uri().path().trim_end_matches('/'))
                    .is_some_and(|e| matches!(e, Endpoint::Auth | Endpoint::Push)) =>
            {
                // AUTH-14 deviation: the correct server never redirects these endpoints.
                let mut answer = error(
                    StatusCode::PERMANENT_REDIRECT,
                    "moved",
                    "the endpoint has no trailing slash",
                );
                if let Ok(v) =
                    hyper::header::HeaderValue::from_str(req.uri().path().trim_end_matches('/'))
                {
                    answer.headers_mut().insert(hyper::header::LOCATION, v);
                }
                return answer;
            }
            None => return error(StatusCode::NOT_FOUND, "not_found", "no such endpoint"),
        };
        match endpoint {
            Endpoint::Auth | Endpoint::Push => self.gatekeeper_call(endpoint, req).await,
            Endpoint::Proof => self.issue_proof(req).await,
            Endpoint::Wakes => self.list_wakes(req.method()),
        }
    }

    fn route(&self, path: &str) -> Option<Endpoint> {
        let rest = path.strip_prefix(self.base_path.as_str())?;
        // The renamed-path mutant serves the authentication call under another name (AUTH-1).
        let auth_path = if self.mutant == Mutant::ServerAuthPathRenamed {
            "/gatecheck/v1/authenticate"
        } else {
            "/gatecheck/v1/auth"
        };
        match rest {
            p if p == auth_path => Some(Endpoint::Auth),
            "/gatecheck/v1/push" => Some(Endpoint::Push),
            "/gatecheck-test/v1/proof" => Some(Endpoint::Proof),
            "/provider/v1/wakes" => Some(Endpoint::Wakes),
            _ => None,
        }
    }

    /// `POST /gatecheck/v1/auth` and `POST /gatecheck/v1/push`, steps 2 to 6 of the check
    /// order (the path was step 1).
    async fn gatekeeper_call(&self, endpoint: Endpoint, req: Request<Incoming>) -> Answer {
        if req.method() != Method::POST && self.mutant != Mutant::ServerAnyMethod {
            return method_not_allowed("POST");
        }
        let (parts, body) = req.into_parts();
        // The signature covers the body's hash, so the body is read before step 3. One too
        // large to hold is refused here: verifying it would mean holding it.
        let body = match read_body(&parts.headers, body).await {
            Ok(b) => b,
            Err(answer) => return answer,
        };

        let header = |name: &str| single_header(&parts.headers, name);
        // The optional-signature mutant only checks pushes that carry signature headers.
        let unsigned_push = self.mutant == Mutant::ServerPushSignatureOptional
            && endpoint == Endpoint::Push
            && [signing::H_TIMESTAMP, signing::H_NONCE, signing::H_SIGNATURE]
                .iter()
                .all(|h| parts.headers.get(*h).is_none());
        if self.mutant != Mutant::ServerAcceptsUnsigned && !unsigned_push {
            let now = unix_now();
            let stated = header(signing::H_TIMESTAMP).and_then(|ts| ts.parse::<u64>().ok());
            // The stale-timestamp mutant checks freshness against the request's own clock;
            // the wide-window one does so for a push stating a time up to 600 s away.
            let now = match (self.mutant, endpoint, stated) {
                (Mutant::ServerIgnoresTimestamp, _, Some(ts)) => ts,
                (Mutant::ServerPushWideWindow, Endpoint::Push, Some(ts))
                    if ts.abs_diff(now) <= PUSH_WIDE_WINDOW_S =>
                {
                    ts
                }
                _ => now,
            };
            let mut scratch = ReplayCache::new();
            let mut cache = lock(&self.replay);
            // The no-replay-cache mutant hands verify a cache that forgets at once.
            let cache = if self.mutant == Mutant::ServerNoReplayCache {
                &mut scratch
            } else {
                &mut *cache
            };
            let verdict = signing::verify(
                &self.gatekeeper_key,
                parts.method.as_str(),
                parts.uri.path(),
                &header,
                &body,
                now,
                cache,
            );
            if let Err(reject) = verdict {
                return error(
                    StatusCode::UNAUTHORIZED,
                    "unauthorized",
                    &format!("request signature refused: {reject}"),
                );
            }
        }

        if !is_json(&parts.headers) && self.mutant != Mutant::ServerIgnoresContentType {
            return error(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "the body must be application/json",
            );
        }
        let Ok(Value::Object(object)) = serde_json::from_slice::<Value>(&body) else {
            return error(
                StatusCode::BAD_REQUEST,
                "malformed_json",
                "the body must be a JSON object",
            );
        };
        let (answer, slow) = match endpoint {
            Endpoint::Auth => (
                self.authenticate(&object, header(signing::H_TIMESTAMP)),
                self.mutant == Mutant::ServerSlowAuth,
            ),
            _ => (
                self.push(&object, &parts.headers),
                self.mutant == Mutant::ServerSlowPush,
            ),
        };
        // The slow mutants answer a request they accepted only after a backend call without
        // a deadline: the token store (AUTH-7) or the mobile push service (PUSH-6).
        if slow && answer.status().is_success() {
            let delay = match endpoint {
                Endpoint::Auth => SLOW_AUTH,
                _ => SLOW_PUSH,
            };
            tokio::time::sleep(delay).await;
        }
        answer
    }

    /// Step 5 and the answer of §12.2 for a request that passed steps 1 to 4.
    fn authenticate(&self, body: &Map<String, Value>, timestamp: Option<String>) -> Answer {
        let text = |name: &str| body.get(name).and_then(Value::as_str);
        // The lenient mutant takes a token of another JSON type as a token nobody holds.
        let lenient_token = (self.mutant == Mutant::ServerLenientAuthBody
            && body.contains_key("token"))
        .then_some("");
        let (Some(user), Some(token), Some(request_id)) = (
            text("user"),
            text("token").or(lenient_token),
            text("request_id"),
        ) else {
            return error(
                StatusCode::BAD_REQUEST,
                "bad_field",
                "user, token and request_id must be JSON strings",
            );
        };
        if !is_one(body.get("v")) {
            return error(
                StatusCode::BAD_REQUEST,
                "bad_field",
                "v must be the number 1",
            );
        }
        let header_ts = timestamp.and_then(|t| t.parse::<u64>().ok());
        let body_ts = body.get("timestamp").and_then(Value::as_u64);
        if body_ts.is_none() || body_ts != header_ts {
            return error(
                StatusCode::BAD_REQUEST,
                "bad_field",
                "timestamp must be the integer of X-Gatekeeper-Timestamp",
            );
        }

        let valid = if self.mutant == Mutant::ServerIgnoresTokenUser {
            self.tokens.valid_for_anyone(token)
        } else {
            self.tokens.valid_for(user, token)
        };
        if !valid && self.mutant == Mutant::ServerErrorForInvalidToken {
            return error(StatusCode::FORBIDDEN, "forbidden", "token not accepted");
        }
        let mut answer = Map::new();
        if self.mutant == Mutant::ServerValidAsString {
            answer.insert("valid".into(), Value::String(valid.to_string()));
        } else {
            answer.insert("valid".into(), Value::Bool(valid));
        }
        if let Some(id) = echoable_request_id(request_id, token)
            && self.mutant != Mutant::ServerNoRequestId
        {
            answer.insert("request_id".into(), Value::String(id.to_owned()));
        }
        if self.mutant == Mutant::ServerEchoesToken {
            answer.insert("token".into(), Value::String(token.to_owned()));
        }
        json_answer(StatusCode::OK, &Value::Object(answer))
    }

    /// Steps 5 and 6 and the wake for a push that passed steps 1 to 4.
    fn push(&self, body: &Map<String, Value>, headers: &HeaderMap) -> Answer {
        let lenient = self.mutant == Mutant::ServerLenientPush;
        let key = match idempotency_key(headers) {
            Some(k) => k,
            // The lenient mutant takes a push without a key as a push of its own.
            None if lenient => "no-key",
            None => {
                return error(
                    StatusCode::BAD_REQUEST,
                    "bad_idempotency_key",
                    "Idempotency-Key must be one lowercase UUID in double quotes",
                );
            }
        };
        let push = PushBody::parse(body).or_else(|| lenient.then(|| PushBody::lenient(body))?);
        if self.mutant == Mutant::ServerRefusesHighPriority
            && push.as_ref().is_some_and(|p| p.priority == "high")
        {
            return error(
                StatusCode::BAD_REQUEST,
                "bad_field",
                "priority high is not served",
            );
        }
        let Some(push) = push else {
            return error(
                StatusCode::BAD_REQUEST,
                "bad_field",
                "the body must hold exactly v (1), user, device_id, count (at least 1) \
                 and priority (high or normal)",
            );
        };
        let known = u32::try_from(push.device_id)
            .is_ok_and(|d| lock(&self.memory.devices).knows(push.user, d));
        if !known {
            if self.mutant == Mutant::Server500UnknownDevice {
                return error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal_error",
                    "device lookup failed",
                );
            }
            return error(StatusCode::NOT_FOUND, "unknown_device", "no such device");
        }
        let first = lock(&self.memory.idempotency).first_use(key, std::time::Instant::now());
        if !first && self.mutant == Mutant::ServerConflictOnRepeat {
            return error(
                StatusCode::CONFLICT,
                "idempotency_key_reused",
                "this Idempotency-Key was used before",
            );
        }
        // The wakes-twice mutant wakes for a repeated key too (PUSH-7 deviation).
        if first || self.mutant == Mutant::ServerWakesTwice {
            let device_id = u32::try_from(push.device_id).unwrap_or_default();
            eprintln!(
                "gatecheck-reference server: wake {} device {device_id} \
                 ({} message(s), priority {}, key {key})",
                push.user, push.count, push.priority
            );
            lock(&self.memory.wakes).record(Wake {
                user: push.user.to_owned(),
                device_id,
                idempotency_key: key.to_owned(),
            });
        }
        no_content()
    }

    /// `POST /gatecheck-test/v1/proof`: the proof hook of SPEC Appendix G, which is also the
    /// reference client's way of getting a proof from its server (SPEC §11.1 leaves that open). The user shows its token as a bearer credential; the
    /// proof names the identifier, identity key and device it asked for.
    async fn issue_proof(&self, req: Request<Incoming>) -> Answer {
        if req.method() != Method::POST {
            return method_not_allowed("POST");
        }
        let (parts, body) = req.into_parts();
        let body = match read_body(&parts.headers, body).await {
            Ok(b) => b,
            Err(answer) => return answer,
        };
        let Some(token) = bearer_token(&parts.headers) else {
            let mut answer = error(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "sign in: Authorization: Bearer TOKEN",
            );
            answer.headers_mut().insert(
                hyper::header::WWW_AUTHENTICATE,
                hyper::header::HeaderValue::from_static("Bearer"),
            );
            return answer;
        };
        if !is_json(&parts.headers) {
            return error(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "the body must be application/json",
            );
        }
        let Some(ask) = ProofAsk::parse(&body) else {
            return error(
                StatusCode::BAD_REQUEST,
                "bad_field",
                "the body must hold identifier, identity_key (base64 of 33 bytes starting \
                 0x05) and device_id (1 to 2147483647)",
            );
        };
        if !self.tokens.valid_for(&ask.identifier, &token) {
            return error(StatusCode::FORBIDDEN, "forbidden", "token not accepted");
        }
        // The recorded-device mutant binds the proof to the user's device on record, not to
        // the one asked for (IDPROOF-8).
        let device_id = match self.mutant {
            Mutant::ServerProofRecordedDevice => lock(&self.memory.devices)
                .on_record(&ask.identifier)
                .unwrap_or(ask.device_id),
            _ => ask.device_id,
        };
        // The derived-nonce mutant computes the nonce from the request (IDPROOF-7): the same
        // device gets the same nonce every time.
        let nonce = if self.mutant == Mutant::ServerProofDerivedNonce {
            Ok(derived_nonce(&ask))
        } else {
            idproof::try_random_nonce()
        };
        let Ok(nonce) = nonce else {
            return error(
                StatusCode::SERVICE_UNAVAILABLE,
                "no_randomness",
                "the operating system gave no randomness",
            );
        };
        let issued_at = if self.mutant == Mutant::ServerProofBackdated {
            // IDPROOF-6 deviation: backdated for clients whose clocks run slow.
            unix_now().saturating_sub(BACKDATE_S)
        } else {
            unix_now()
        };
        let lifetime = if self.mutant == Mutant::ServerLongProof {
            3600
        } else {
            PROOF_LIFETIME_S
        };
        let fields = ProofFields {
            provider_id: &self.provider_id,
            identifier: &ask.identifier,
            identity_key: &ask.identity_key,
            device_id,
            issued_at,
            expires_at: issued_at + lifetime,
            nonce,
        };
        let mut proof = Proof::sign(&self.signing_key, &fields);
        if self.mutant == Mutant::ServerProofWrongBytes {
            let mut bytes = proof.signed_bytes();
            bytes.push(b'\n');
            proof.signature = STANDARD.encode(self.signing_key.sign(&bytes).to_bytes());
        }
        if self.mutant == Mutant::ServerProofPaddedNonce {
            // IDPROOF-3 deviation: the nonce in padded standard base64, signed as written.
            proof.nonce = STANDARD.encode(nonce);
            proof.signature =
                STANDARD.encode(self.signing_key.sign(&proof.signed_bytes()).to_bytes());
        }
        if !lock(&self.memory.devices).learn(&ask.identifier, ask.device_id) {
            eprintln!("gatecheck-reference server: too many devices; this one will not be woken");
        }
        let mut json = proof.to_json();
        if self.mutant == Mutant::ServerProofKeyId {
            // IDPROOF-4 deviation: a tenth member naming the signing key.
            let kid = STANDARD.encode(&self.signing_key.verifying_key().as_bytes()[..8]);
            json.pop();
            json.push_str(&format!(",\"kid\":\"{kid}\"}}"));
        }
        let mut answer = Response::new(Full::new(Bytes::from(json)));
        set_json_headers(&mut answer);
        answer
    }

    /// `GET /provider/v1/wakes`: the wakes made so far, for the reference's own tests.
    fn list_wakes(&self, method: &Method) -> Answer {
        if method != Method::GET {
            return method_not_allowed("GET");
        }
        let wakes = lock(&self.memory.wakes);
        let list: Vec<Value> = wakes
            .recent()
            .map(|w| {
                json!({
                    "user": w.user,
                    "device_id": w.device_id,
                    "idempotency_key": w.idempotency_key,
                })
            })
            .collect();
        json_answer(
            StatusCode::OK,
            &json!({ "total": wakes.total(), "wakes": list }),
        )
    }
}

/// A push body of §13.1: exactly these five members.
struct PushBody<'a> {
    user: &'a str,
    device_id: u64,
    count: u64,
    priority: &'a str,
}

impl<'a> PushBody<'a> {
    fn parse(body: &'a Map<String, Value>) -> Option<PushBody<'a>> {
        const MEMBERS: [&str; 5] = ["v", "user", "device_id", "count", "priority"];
        if body.len() != MEMBERS.len() || !MEMBERS.iter().all(|m| body.contains_key(*m)) {
            return None;
        }
        if !is_one(body.get("v")) {
            return None;
        }
        let push = PushBody {
            user: body.get("user")?.as_str()?,
            device_id: body.get("device_id")?.as_u64()?,
            count: body.get("count")?.as_u64().filter(|c| *c >= 1)?,
            priority: body.get("priority")?.as_str()?,
        };
        matches!(push.priority, "high" | "normal").then_some(push)
    }

    /// The lenient mutant's reading: any priority string, the other members as usual.
    fn lenient(body: &'a Map<String, Value>) -> Option<PushBody<'a>> {
        Some(PushBody {
            user: body.get("user")?.as_str()?,
            device_id: body.get("device_id")?.as_u64()?,
            count: body.get("count")?.as_u64()?,
            priority: body.get("priority")?.as_str()?,
        })
    }
}

/// What a signed-in user asks a proof for.
struct ProofAsk {
    identifier: String,
    identity_key: [u8; 33],
    device_id: u32,
}

impl ProofAsk {
    fn parse(body: &[u8]) -> Option<ProofAsk> {
        let Value::Object(o) = serde_json::from_slice::<Value>(body).ok()? else {
            return None;
        };
        let identifier = o.get("identifier")?.as_str()?;
        idproof::check_identifier(identifier).ok()?;
        let key = STANDARD.decode(o.get("identity_key")?.as_str()?).ok()?;
        let identity_key: [u8; 33] = key.try_into().ok()?;
        if identity_key[0] != 0x05 {
            return None;
        }
        let device_id = u32::try_from(o.get("device_id")?.as_u64()?).ok()?;
        if !(1..=idproof::MAX_DEVICE_ID).contains(&device_id) {
            return None;
        }
        Some(ProofAsk {
            identifier: identifier.to_owned(),
            identity_key,
            device_id,
        })
    }
}

/// The server-proof-unregistered-key mutant's signing key: 32 random bytes drawn at start-up.
fn start_up_key() -> SigningKey {
    let mut seed = [0u8; 32];
    seed[..16].copy_from_slice(&idproof::random_nonce());
    seed[16..].copy_from_slice(&idproof::random_nonce());
    SigningKey::from_bytes(&seed)
}

/// The server-proof-derived-nonce mutant's nonce: the first 16 bytes of a SHA-256 over what
/// the proof is asked for, the same for every proof of one device.
fn derived_nonce(ask: &ProofAsk) -> [u8; 16] {
    use sha2::Digest as _;
    let mut h = sha2::Sha256::new();
    h.update(ask.identifier.as_bytes());
    h.update(ask.identity_key);
    h.update(ask.device_id.to_be_bytes());
    let digest = h.finalize();
    let mut nonce = [0u8; 16];
    nonce.copy_from_slice(&digest[..16]);
    nonce
}

/// Reads at most [`MAX_BODY`] bytes within [`BODY_TIMEOUT`]; anything else is the error answer.
pub(super) async fn read_body(headers: &HeaderMap, body: Incoming) -> Result<Bytes, Answer> {
    let too_large = || {
        error(
            StatusCode::BAD_REQUEST,
            "body_too_large",
            &format!("the body must be at most {MAX_BODY} bytes"),
        )
    };
    // A declared length over the limit is refused before a byte of the body is read.
    let declared = headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_BODY as u64) {
        return Err(too_large());
    }
    match tokio::time::timeout(BODY_TIMEOUT, Limited::new(body, MAX_BODY).collect()).await {
        Err(_) => Err(error(
            StatusCode::REQUEST_TIMEOUT,
            "body_timeout",
            "the body did not arrive in time",
        )),
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => Err(too_large()),
        Ok(Err(_)) => Err(error(
            StatusCode::BAD_REQUEST,
            "bad_body",
            "the body could not be read",
        )),
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
    }
}

/// The value of a header present exactly once and valid as text; a repeated header counts as
/// absent, so that two parsers can never pick different copies of a signed value.
fn single_header(headers: &HeaderMap, name: &str) -> Option<String> {
    let mut values = headers.get_all(name).iter();
    let first = values.next()?;
    if values.next().is_some() {
        return None;
    }
    first.to_str().ok().map(str::to_owned)
}

/// `Content-Type: application/json`, with parameters (`; charset=utf-8`) allowed.
fn is_json(headers: &HeaderMap) -> bool {
    single_header(headers, CONTENT_TYPE.as_str()).is_some_and(|v| {
        let media = v.split(';').next().unwrap_or_default().trim();
        media.eq_ignore_ascii_case("application/json")
    })
}

/// The JSON integer 1 (not 1.0, not "1").
fn is_one(v: Option<&Value>) -> bool {
    v.is_some_and(|v| v.is_u64() && v.as_u64() == Some(1))
}

/// The `Idempotency-Key` of §13.1: a structured-field string holding a lowercase UUID.
fn idempotency_key(headers: &HeaderMap) -> Option<&str> {
    let mut values = headers.get_all("idempotency-key").iter();
    let value = values.next()?;
    if values.next().is_some() {
        return None;
    }
    let uuid = value.to_str().ok()?.strip_prefix('"')?.strip_suffix('"')?;
    let lowercase_uuid = uuid.len() == 36
        && uuid.bytes().enumerate().all(|(i, b)| match i {
            8 | 13 | 18 | 23 => b == b'-',
            _ => b.is_ascii_digit() || (b'a'..=b'f').contains(&b),
        });
    lowercase_uuid.then_some(uuid)
}

/// The token of `Authorization: Bearer TOKEN`.
fn bearer_token(headers: &HeaderMap) -> Option<String> {
    let value = single_header(headers, AUTHORIZATION.as_str())?;
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then(|| token.to_owned())
}

/// The `request_id` to echo (AUTH-12), unless echoing it would leak part of the token
/// (AUTH-10): a request whose id repeats 8 or more characters of its token gets no id back.
fn echoable_request_id<'a>(request_id: &'a str, token: &str) -> Option<&'a str> {
    let chars: Vec<char> = request_id.chars().collect();
    if chars.len() > MAX_ECHOED_REQUEST_ID {
        return None;
    }
    let leaks = chars
        .windows(TOKEN_FRAGMENT)
        .any(|w| token.contains(&w.iter().collect::<String>()));
    (!leaks).then_some(request_id)
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn set_json_headers(answer: &mut Answer) {
    let h = answer.headers_mut();
    h.insert(
        CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    h.insert(
        CACHE_CONTROL,
        hyper::header::HeaderValue::from_static("no-store"),
    );
}

pub(super) fn json_answer(status: StatusCode, body: &Value) -> Answer {
    let mut answer = Response::new(Full::new(Bytes::from(body.to_string())));
    *answer.status_mut() = status;
    set_json_headers(&mut answer);
    answer
}

pub(super) fn error(status: StatusCode, code: &str, message: &str) -> Answer {
    json_answer(status, &json!({ "error": code, "message": message }))
}

pub(super) fn method_not_allowed(allow: &'static str) -> Answer {
    let mut answer = error(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        &format!("use {allow}"),
    );
    answer
        .headers_mut()
        .insert(ALLOW, hyper::header::HeaderValue::from_static(allow));
    answer
}

pub(super) fn no_content() -> Answer {
    let mut answer = Response::new(Full::new(Bytes::new()));
    *answer.status_mut() = StatusCode::NO_CONTENT;
    answer
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idempotency_keys_must_be_quoted_lowercase_uuids() {
        let with = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert("idempotency-key", v.parse().expect("header"));
            idempotency_key(&h).map(str::to_owned)
        };
        let uuid = "0b6e8f2a-3c4d-4e5f-8a9b-1c2d3e4f5a6b";
        assert_eq!(with(&format!("\"{uuid}\"")).as_deref(), Some(uuid));
        assert_eq!(with(uuid), None);
        assert_eq!(with(&format!("\"{}\"", uuid.to_uppercase())), None);
        assert_eq!(with("\"0b6e8f2a3c4d4e5f8a9b1c2d3e4f5a6b\""), None);
        assert_eq!(with("\"\""), None);
        assert_eq!(idempotency_key(&HeaderMap::new()), None);
    }

    #[test]
    fn json_media_type_allows_parameters_only() {
        let with = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert(CONTENT_TYPE, v.parse().expect("header"));
            is_json(&h)
        };
        assert!(with("application/json"));
        assert!(with("Application/JSON; charset=utf-8"));
        assert!(!with("text/plain"));
        assert!(!with("application/jsonx"));
        assert!(!is_json(&HeaderMap::new()));
    }

    #[test]
    fn request_ids_sharing_eight_token_characters_are_not_echoed() {
        let id = "5f0c6a4e-2b1d-4e7a-9c55-0d4f7b1e9a10";
        assert_eq!(echoable_request_id(id, "secret-token"), Some(id));
        assert_eq!(echoable_request_id("xxsecret-tokxx", "secret-token"), None);
        assert_eq!(echoable_request_id("secret-t", "secret-token"), None);
        assert_eq!(
            echoable_request_id("secret-", "secret-token"),
            Some("secret-")
        );
        assert_eq!(echoable_request_id(&"a".repeat(200), "b"), None);
    }

    #[test]
    fn push_bodies_have_exactly_five_members() {
        let parse = |v: Value| {
            let Value::Object(o) = v else { panic!() };
            PushBody::parse(&o).map(|p| (p.user.to_owned(), p.device_id, p.count))
        };
        let ok = json!({"v":1,"user":"+4915112345678","device_id":7,"count":1,"priority":"high"});
        assert_eq!(parse(ok), Some(("+4915112345678".into(), 7, 1)));
        for bad in [
            json!({"v":1,"user":"u","device_id":7,"count":0,"priority":"high"}),
            json!({"v":2,"user":"u","device_id":7,"count":1,"priority":"high"}),
            json!({"v":1,"user":"u","device_id":7,"count":1,"priority":"low"}),
            json!({"v":1,"user":"u","device_id":-7,"count":1,"priority":"high"}),
            json!({"v":1,"to":"u","device_id":7,"count":1,"priority":"high"}),
            json!({"v":1,"user":"u","device_id":7,"count":1,"priority":"high","x":0}),
            json!({"v":1.0,"user":"u","device_id":7,"count":1,"priority":"high"}),
        ] {
            assert_eq!(parse(bad.clone()), None, "{bad}");
        }
    }
}
