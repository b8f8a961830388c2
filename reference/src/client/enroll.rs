//! Enrollment with the gatekeeper's enrollment API (SPEC.md §10): one `POST {url}/v1/enroll`
//! over HTTPS, its answer turned into the result the enrolled login uses (ENROLL-9), and the
//! retries ENROLL-11..14 allow and no others.
//!
//! The API's side of the connection is untrusted: the whole command is bounded in time
//! ([`DEADLINE`]), each attempt on its own ([`ATTEMPT_TIMEOUT`], so that a server that never
//! answers still leaves room for the one retry of ENROLL-14), the answer's body in size
//! ([`MAX_RESPONSE_BODY`]), and nothing in the answer is trusted before it was checked.
//! Redirects are never followed (ENROLL-7): a 3xx is a failure like any other status.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use gatecheck::e2ee::Bundle;
use gatecheck::idproof::Proof;
use http_body_util::{BodyExt as _, Full, Limited};
use hyper::header::{CONTENT_TYPE, HOST, RETRY_AFTER};
use hyper_util::rt::TokioIo;
use rustls::ClientConfig;
use rustls::pki_types::ServerName;
use serde_json::{Map, Value, json};
use tokio::net::TcpStream;
use tokio::time::{Instant, sleep, timeout_at};

use crate::driver::{ConnectParams, EnrollParams, EnrolledConnect};
use crate::mutant::Mutant;

/// The one path of the API, appended to the base URL (after any path prefix it has).
pub const ENROLL_PATH: &str = "/v1/enroll";
/// The whole `enroll` command, waits and retries included, ends within this.
pub const DEADLINE: Duration = Duration::from_secs(15);
/// One request, from TCP connect to the last byte of the answer. Two attempts and the 1 s
/// pause between them fit in [`DEADLINE`].
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(6);
/// Largest answer body read. A success is a few hundred bytes; more is refused, not buffered.
pub const MAX_RESPONSE_BODY: usize = 64 * 1024;
/// The pause before retrying after a 5xx or a failed connection (ENROLL-14: 1 s or more).
pub const RETRY_DELAY: Duration = Duration::from_secs(1);
/// The wait ENROLL-13 prescribes when a 429 has no usable `Retry-After`.
pub const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(60);
/// The longest `Retry-After` the client waits out; a longer one is reported at once as the
/// failure it is (the driver's command would time out long before the wait ended).
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(10);
/// One-time prekeys the few-enrollment-prekeys mutant sends.
const FEW_PREKEYS: usize = 99;

/// What a successful enrollment gave (SPEC.md §10.1), kept until the next one replaces it.
#[derive(Clone)]
pub struct Enrollment {
    pub account: String,
    pub domain: String,
    pub device_id: u32,
    /// The SASL password: it leaves the process only in the SASL exchange (ENROLL-10).
    credential: String,
    /// The Noise static key to pin at login (ENROLL-9, STREAM-6).
    pub server_static_key: [u8; 32],
    /// The compact JSON of the proof this enrollment presented; only the
    /// reuse-enrollment-proof mutant presents it again.
    proof_sent: String,
}

impl std::fmt::Debug for Enrollment {
    // The credential is never logged (ENROLL-10).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Enrollment")
            .field("account", &self.account)
            .field("domain", &self.domain)
            .field("device_id", &self.device_id)
            .finish_non_exhaustive()
    }
}

impl Enrollment {
    /// The credential, for the one event that must never carry it: the credential-in-event
    /// mutant's `enrolled`.
    pub fn credential_for_mutant(&self) -> &str {
        &self.credential
    }
}

/// How an `enroll` command ended: the driver's `enrolled` or `enroll_failed`.
#[derive(Debug)]
pub enum Outcome {
    Enrolled(Enrollment),
    /// `status` 0 when no answer was read; `code` the answer's `error`, or one of ours
    /// (`not_opted_in`, `tls`, `transport`, `bad_response`, `unknown`).
    Failed {
        status: u16,
        code: String,
    },
}

impl Outcome {
    fn failed(status: u16, code: &str) -> Outcome {
        Outcome::Failed {
            status,
            code: code.to_owned(),
        }
    }

    /// The gatekeeper refused the device id as another identifier's (ENROLL-12).
    pub fn is_device_id_conflict(&self) -> bool {
        matches!(self, Outcome::Failed { status: 409, code } if code == "device_id_conflict")
    }
}

/// Enrolls the device `device_id` with `keys` as `params` asks. `Err` means the command
/// itself is unusable (no proof to take the provider id from, a URL that does not parse):
/// the driver answers it with `bad-command`, and nothing was sent.
pub async fn enroll(
    params: &EnrollParams,
    device_id: u32,
    keys: &Bundle,
    mutant: Mutant,
) -> Result<Outcome, String> {
    if !params.opted_in && mutant != Mutant::EnrollWithoutOptIn {
        // ENROLL-18: nothing goes to the gatekeeper for a user who did not opt in. (The
        // enroll-without-opt-in mutant goes on, breaking exactly this.)
        return Ok(Outcome::failed(0, "not_opted_in"));
    }
    let deadline = Instant::now() + DEADLINE;
    let fetched;
    let proof = match params.proof.as_ref() {
        Some(p) => p,
        // The whole chain (SPEC.md §6.1): the client asks its own server for the proof.
        None if own_server().is_some() => {
            fetched = proof_from_own_server(
                &params.identifier,
                &params.token,
                &keys.identity_key,
                device_id,
            )
            .await?;
            &fetched
        }
        None => {
            return Err(
                "enroll: a proof is required to enroll (no GATECHECK_PROVIDER_URL to ask)".into(),
            );
        }
    };
    let earlier;
    let proof = match presented_before(&params.identifier, device_id) {
        Some(old) if mutant == Mutant::StaleProofAtReenrollment => {
            // ENROLL-15 deviation: the correct client presents the fresh proof it was given
            // for every re-enrollment; this one keeps the proof of the device's earlier
            // enrollment and presents it again.
            earlier = old;
            &earlier
        }
        _ => proof,
    };
    let Some(provider_id) = proof.get("provider_id").and_then(Value::as_str) else {
        return Err("enroll: the proof has no string provider_id".into());
    };
    let target = match Target::parse(&params.url) {
        Ok(target) => target,
        // ENROLL-7: only HTTPS. Nothing was sent, and the only transport allowed is absent.
        Err(UrlError::NotHttps) => return Ok(Outcome::failed(0, "tls")),
        Err(UrlError::Invalid(why)) => return Err(format!("enroll: url {:?}: {why}", params.url)),
    };
    let config = match tls_config(&params.ca_pem, mutant) {
        Ok(config) => config,
        Err(why) => {
            eprintln!("gatecheck-reference: enrollment TLS: {why}");
            return Ok(Outcome::failed(0, "tls"));
        }
    };
    let body = request_body(params, provider_id, proof, device_id, keys, mutant);

    let mut retried = false;
    let mut repeated = false;
    loop {
        let attempt_deadline = deadline.min(Instant::now() + ATTEMPT_TIMEOUT);
        let answer = post(&target, &config, &body, None, attempt_deadline, "POST").await;
        match &answer {
            Ok(a) => eprintln!(
                "gatecheck-reference: enrollment answered {} ({})",
                a.status,
                error_code(a.body.as_deref()).unwrap_or_default()
            ),
            Err(e) => eprintln!("gatecheck-reference: enrollment request failed: {e}"),
        }
        let retry_after = match &answer {
            // A certificate the CA does not vouch for will not change in a second.
            Err(Broken::Tls(_)) => None,
            // ENROLL-14: one retry after a second (the no-retry mutant gives up at once).
            Err(Broken::Transport(_)) if mutant != Mutant::NoRetryOnServerError => {
                Some(RETRY_DELAY)
            }
            Err(Broken::Transport(_)) => None,
            Ok(a) if a.status == 200 || a.status == 201 => {
                let outcome = success(a, device_id, proof);
                if mutant == Mutant::StaleProofAtReenrollment
                    && matches!(outcome, Outcome::Enrolled(_))
                {
                    remember_presented(&params.identifier, device_id, proof);
                }
                return Ok(outcome);
            }
            Ok(a) if a.status == 429 => {
                let wait = if mutant == Mutant::IgnoreRetryAfter {
                    // ENROLL-13 deviation: the correct client waits as Retry-After says.
                    Duration::ZERO
                } else {
                    retry_after(a.retry_after.as_deref())
                };
                (wait <= MAX_RETRY_AFTER).then_some(wait)
            }
            Ok(a) if (500..=599).contains(&a.status) => {
                (mutant != Mutant::NoRetryOnServerError).then_some(RETRY_DELAY)
            }
            Ok(a) if matches!(a.status, 400 | 401 | 403 | 415) => {
                if mutant == Mutant::RepeatRefusedEnrollment && !repeated {
                    // ENROLL-11 deviation: the correct client never sends a refused body again.
                    repeated = true;
                    let again = deadline.min(Instant::now() + ATTEMPT_TIMEOUT);
                    let _ = post(&target, &config, &body, None, again, "POST").await;
                }
                None
            }
            // 409 (the caller renumbers the device, ENROLL-12), redirects, anything else:
            // final, never repeated.
            Ok(_) => None,
        };
        match retry_after {
            Some(wait) if !retried && Instant::now() + wait < deadline => {
                retried = true;
                sleep(wait).await;
            }
            _ => return Ok(failure(&answer)),
        }
    }
}

/// The request body: exactly the members of SPEC.md §10.1 (ENROLL-2), keys as the bundle
/// will publish them (ENROLL-3), the proof as the harness gave it (IDPROOF-9).
fn request_body(
    params: &EnrollParams,
    provider_id: &str,
    proof: &Map<String, Value>,
    device_id: u32,
    keys: &Bundle,
    mutant: Mutant,
) -> Vec<u8> {
    let mut prekeys: Vec<Value> = keys
        .prekeys
        .iter()
        .map(|(id, key)| json!({"id": id, "public_key": STANDARD.encode(key)}))
        .collect();
    if mutant == Mutant::FewEnrollmentPrekeys {
        // ENROLL-4 deviation: the correct client sends at least 100.
        prekeys.truncate(FEW_PREKEYS);
    }
    if mutant == Mutant::PrekeyIdsFromZero {
        // ENROLL-3 deviation: the correct client sends each prekey under its own id (1 to
        // 16777215); this one numbers them by their place in the array.
        for (index, prekey) in prekeys.iter_mut().enumerate() {
            prekey["id"] = json!(index);
        }
    }
    let mut body = Map::new();
    body.insert("v".into(), json!(1));
    body.insert("provider_id".into(), json!(provider_id));
    if mutant == Mutant::DeviceIdAsString {
        // ENROLL-2 deviation: the correct client writes device_id as a JSON integer.
        body.insert("device_id".into(), json!(device_id.to_string()));
    } else {
        body.insert("device_id".into(), json!(device_id));
    }
    if mutant == Mutant::SpacedIdentifier {
        // ENROLL-6 deviation: the correct client sends the identifier as `+` and digits
        // only; this one sends the number as it shows it to the user.
        body.insert("identifier".into(), json!(spaced(&params.identifier)));
    } else {
        body.insert("identifier".into(), json!(params.identifier));
    }
    body.insert(
        "identity_key".into(),
        json!(STANDARD.encode(&keys.identity_key)),
    );
    body.insert(
        "signed_prekey".into(),
        json!({
            "id": keys.signed_prekey_id,
            "public_key": STANDARD.encode(&keys.signed_prekey),
            "signature": STANDARD.encode(&keys.signature),
        }),
    );
    body.insert("one_time_prekeys".into(), Value::Array(prekeys));
    body.insert("provider_token".into(), json!(params.token));
    if mutant == Mutant::NoProofAtEnrollment {
        // IDPROOF-9 deviation: the correct client sends the proof with every enrollment.
    } else {
        body.insert("identifier_proof".into(), Value::Object(proof.clone()));
    }
    Value::Object(body).to_string().into_bytes()
}

/// An E.164 number grouped for display (`+49 151 00000001`: country code, prefix, rest);
/// anything else as it is. Only the spaced-identifier mutant sends it.
fn spaced(identifier: &str) -> String {
    match identifier.strip_prefix('+') {
        Some(digits) if digits.len() > 5 && digits.bytes().all(|b| b.is_ascii_digit()) => {
            format!("+{} {} {}", &digits[..2], &digits[2..5], &digits[5..])
        }
        _ => identifier.to_owned(),
    }
}

/// The proofs of this process's successful enrollments, by identifier and device id: kept
/// (and read back) by the stale-proof-at-reenrollment mutant only; the correct client never
/// presents a proof twice, so it has no use for them.
static PRESENTED: std::sync::Mutex<Vec<Presented>> = std::sync::Mutex::new(Vec::new());

/// An identifier, a device id and the proof an enrollment of that device presented.
type Presented = (String, u32, Map<String, Value>);

/// The proof an earlier enrollment of this device presented, if there was one.
fn presented_before(identifier: &str, device_id: u32) -> Option<Map<String, Value>> {
    let presented = PRESENTED.lock().unwrap_or_else(|e| e.into_inner());
    presented
        .iter()
        .find(|(id, device, _)| id == identifier && *device == device_id)
        .map(|(_, _, proof)| proof.clone())
}

/// Records the proof of a successful enrollment (the first one per device is kept).
fn remember_presented(identifier: &str, device_id: u32, proof: &Map<String, Value>) {
    let mut presented = PRESENTED.lock().unwrap_or_else(|e| e.into_inner());
    if !presented
        .iter()
        .any(|(id, device, _)| id == identifier && *device == device_id)
    {
        presented.push((identifier.to_owned(), device_id, proof.clone()));
    }
}

/// The compact JSON text of a proof: the member order of SPEC.md §11.3 when it is a
/// well-formed proof (so the bytes are those of Appendix F.4), otherwise the object as
/// serde writes it. Either is the same JSON object; the order only makes the message easy to
/// compare with the specification's.
pub fn compact_proof(proof: &Map<String, Value>) -> String {
    let text = Value::Object(proof.clone()).to_string();
    Proof::parse(text.as_bytes()).map_or(text, |p| p.to_json())
}

/// The `connect` parameters of an enrolled login: the latest enrollment's account, domain,
/// credential and server key (ENROLL-9), the command's endpoint, and its fresh proof
/// (IDPROOF-14).
pub fn login_params(
    command: &EnrolledConnect,
    fresh: &Map<String, Value>,
    enrollment: &Enrollment,
    mutant: Mutant,
) -> ConnectParams {
    let proof = if mutant == Mutant::ReuseEnrollmentProof {
        // IDPROOF-14 deviation: the correct client presents the fresh proof, never one it
        // presented before.
        enrollment.proof_sent.clone()
    } else {
        compact_proof(fresh)
    };
    ConnectParams {
        host: command.host.clone(),
        port: command.port,
        transport: command.transport,
        domain: enrollment.domain.clone(),
        account: enrollment.account.clone(),
        credential: enrollment.credential.clone(),
        // Every enrollment has a key (a success without one is refused), so the command's
        // `server_key` is never needed.
        server_key: Some(STANDARD.encode(enrollment.server_static_key)),
        ca_pem: command.ca_pem.clone(),
        // The certificate names the gatekeeper the command points at; without a name, the
        // enrollment's domain is the gatekeeper's.
        server_name: command
            .server_name
            .clone()
            .or_else(|| command.domain.clone())
            .or_else(|| Some(enrollment.domain.clone())),
        media_ca_pem: command.media_ca_pem.clone(),
        proof: Some(proof),
    }
}

/// The `login-without-enrollment` mutant's login (ENROLL-1 deviation): plain PLAIN with the
/// provider identifier and token, which no enrollment gave it, and the command's key and domain.
pub fn unenrolled_params(
    command: &EnrolledConnect,
    identifier: &str,
    token: &str,
) -> ConnectParams {
    let domain = command.domain.clone().unwrap_or_default();
    ConnectParams {
        host: command.host.clone(),
        port: command.port,
        transport: command.transport,
        domain: domain.clone(),
        account: identifier.to_owned(),
        credential: token.to_owned(),
        server_key: command.server_key.clone(),
        ca_pem: command.ca_pem.clone(),
        server_name: command.server_name.clone().or(Some(domain)),
        media_ca_pem: command.media_ca_pem.clone(),
        proof: None,
    }
}

/// A 200/201: the enrollment, once every member checked out; `bad_response` otherwise.
fn success(answer: &Answer, device_id: u32, proof: &Map<String, Value>) -> Outcome {
    match parse_success(answer.body.as_deref(), device_id, proof) {
        Ok(enrollment) => Outcome::Enrolled(enrollment),
        Err(why) => {
            eprintln!(
                "gatecheck-reference: enrollment answer {} unusable: {why}",
                answer.status
            );
            Outcome::failed(answer.status, "bad_response")
        }
    }
}

fn parse_success(
    body: Option<&[u8]>,
    device_id: u32,
    proof: &Map<String, Value>,
) -> Result<Enrollment, String> {
    let body = body.ok_or("the body could not be read")?;
    let value: Value = serde_json::from_slice(body).map_err(|e| format!("not JSON: {e}"))?;
    let text = |name: &str| -> Result<String, String> {
        match value.get(name).and_then(Value::as_str) {
            // These go into the stream header and the SASL message, which allow no NUL and
            // where control characters have no business.
            Some(s) if !s.is_empty() && !s.chars().any(char::is_control) => Ok(s.to_owned()),
            _ => Err(format!("{name} is not a non-empty string without controls")),
        }
    };
    let account = text("account")?;
    let domain = text("domain")?;
    let credential = text("credential")?;
    let enrolled_id = value.get("device_id").and_then(Value::as_u64);
    if enrolled_id != Some(u64::from(device_id)) {
        // E2EE-1: the device id we publish is the one we enrolled; an answer naming
        // another one enrolled something else.
        return Err(format!("device_id {enrolled_id:?}, not ours ({device_id})"));
    }
    let key = value
        .get("server_static_key")
        .and_then(Value::as_str)
        .and_then(|s| STANDARD.decode(s).ok())
        .and_then(|k| <[u8; 32]>::try_from(k).ok())
        .ok_or("server_static_key is not the base64 of 32 bytes")?;
    Ok(Enrollment {
        account,
        domain,
        device_id,
        credential,
        server_static_key: key,
        proof_sent: compact_proof(proof),
    })
}

/// The `enroll_failed` for a final answer (or none).
fn failure(answer: &Result<Answer, Broken>) -> Outcome {
    match answer {
        Err(Broken::Tls(_)) => Outcome::failed(0, "tls"),
        Err(Broken::Transport(_)) => Outcome::failed(0, "transport"),
        Ok(a) => {
            let fallback = if a.status == 429 {
                "rate_limited"
            } else {
                "unknown"
            };
            let code = error_code(a.body.as_deref()).unwrap_or_else(|| fallback.to_owned());
            Outcome::Failed {
                status: a.status,
                code,
            }
        }
    }
}

/// The `error` member of an error body (SPEC.md §10.1), if there is one.
fn error_code(body: Option<&[u8]>) -> Option<String> {
    let value: Value = serde_json::from_slice(body?).ok()?;
    let code = value.get("error")?.as_str()?;
    (!code.is_empty()).then(|| code.to_owned())
}

/// ENROLL-13: the wait a 429 asks for. Only the delta-seconds form is read; anything else
/// (an HTTP date included) counts as unparsable and means 60 s, which is never too early.
fn retry_after(header: Option<&str>) -> Duration {
    header
        .and_then(|h| h.trim().parse::<u64>().ok())
        .map_or(DEFAULT_RETRY_AFTER, Duration::from_secs)
}

/// Where the request goes.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Target {
    /// Host as used to connect and to check the certificate (IPv6 without brackets).
    host: String,
    port: u16,
    /// The `Host` header: the URL's authority as written.
    authority: String,
    /// Path prefix and [`ENROLL_PATH`].
    path: String,
}

#[derive(Debug, PartialEq, Eq)]
enum UrlError {
    /// A URL of another scheme (`http://`): ENROLL-7 forbids using it.
    NotHttps,
    Invalid(&'static str),
}

impl Target {
    /// `https://host[:port][/prefix]`, aimed at the enrollment path.
    fn parse(url: &str) -> Result<Target, UrlError> {
        Target::parse_at(url, ENROLL_PATH)
    }

    /// `https://host[:port][/prefix]`: no user info, query or fragment; `path` goes under
    /// the prefix.
    fn parse_at(url: &str, path: &str) -> Result<Target, UrlError> {
        let (scheme, rest) = url
            .split_once("://")
            .ok_or(UrlError::Invalid("no scheme"))?;
        if !scheme.eq_ignore_ascii_case("https") {
            return Err(UrlError::NotHttps);
        }
        if rest.contains(['?', '#']) {
            return Err(UrlError::Invalid("a query or fragment"));
        }
        let (authority, prefix) = match rest.find('/') {
            Some(at) => rest.split_at(at),
            None => (rest, ""),
        };
        if authority.contains('@') {
            return Err(UrlError::Invalid("user info"));
        }
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (host, after) = v6
                .split_once(']')
                .ok_or(UrlError::Invalid("an unclosed IPv6 bracket"))?;
            match after {
                "" => (host, None),
                p => (
                    host,
                    Some(p.strip_prefix(':').ok_or(UrlError::Invalid("bad port"))?),
                ),
            }
        } else {
            match authority.rsplit_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (authority, None),
            }
        };
        if host.is_empty() || host.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(UrlError::Invalid("no usable host"));
        }
        let port = match port {
            None => 443,
            Some(p) => p.parse().map_err(|_| UrlError::Invalid("bad port"))?,
        };
        if prefix.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(UrlError::Invalid("whitespace in the path"));
        }
        Ok(Target {
            host: host.to_owned(),
            port,
            authority: authority.to_owned(),
            path: format!("{}{path}", prefix.trim_end_matches('/')),
        })
    }
}

/// TLS 1.3 only, trusting `ca_pem` alone (ENROLL-7), ALPN `http/1.1`.
fn tls_config(ca_pem: &str, mutant: Mutant) -> Result<Arc<ClientConfig>, String> {
    let mut config = if mutant == Mutant::EnrollAnyCertificate {
        // ENROLL-7 deviation: the correct client verifies the API's certificate against
        // ca_pem. (The client's own any-certificate TLS config is reused for it.)
        (*super::tls::config(None, Mutant::TlsAcceptAnyCert).map_err(|e| e.to_string())?).clone()
    } else {
        let roots = gatecheck::transport::root_store(ca_pem).map_err(|e| e.to_string())?;
        if roots.is_empty() {
            return Err("ca_pem holds no certificate".into());
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| e.to_string())?
            .with_root_certificates(roots)
            .with_no_client_auth()
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// An answer, as far as it was read.
#[derive(Debug)]
struct Answer {
    status: u16,
    retry_after: Option<String>,
    /// `None` when the body was over [`MAX_RESPONSE_BODY`] or broke off.
    body: Option<Vec<u8>>,
}

/// No answer was read.
#[derive(Debug, thiserror::Error)]
enum Broken {
    /// The TLS handshake failed: the certificate, the version, the handshake itself.
    #[error("TLS: {0}")]
    Tls(String),
    /// No connection, a connection that broke, or no answer in time.
    #[error("transport: {0}")]
    Transport(String),
}

/// Aborts the HTTP connection's task when the request is over or abandoned.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The reference's own server, when the harness runs the whole chain: its base URL and the
/// PEM file of its CA (the environment the harness sets, SPEC.md §6.1).
pub fn own_server() -> Option<(String, String)> {
    Some((
        std::env::var("GATECHECK_PROVIDER_URL").ok()?,
        std::env::var("GATECHECK_PROVIDER_CA").ok()?,
    ))
}

/// A fresh identifier proof from the reference's own server, for a user signed in with
/// `token`: the provider's own way of handing its client a proof (SPEC.md §11.1 leaves it
/// open; the reference server serves it as the proof hook of Appendix G).
pub async fn proof_from_own_server(
    identifier: &str,
    token: &str,
    identity_key: &[u8],
    device_id: u32,
) -> Result<Map<String, Value>, String> {
    let (url, ca_file) = own_server().ok_or("no GATECHECK_PROVIDER_URL")?;
    let ca_pem = std::fs::read_to_string(&ca_file)
        .map_err(|e| format!("the own server's CA {ca_file}: {e}"))?;
    let config = tls_config(&ca_pem, Mutant::None)?;
    let target =
        Target::parse_at(&url, PROOF_PATH).map_err(|e| format!("own server URL {url:?}: {e:?}"))?;
    let body = serde_json::json!({
        "identifier": identifier,
        "identity_key": STANDARD.encode(identity_key),
        "device_id": device_id,
    })
    .to_string();
    let deadline = Instant::now() + ATTEMPT_TIMEOUT;
    let answer = post(
        &target,
        &config,
        body.as_bytes(),
        Some(token),
        deadline,
        "POST",
    )
    .await
    .map_err(|e| format!("the own server's proof: {e:?}"))?;
    if answer.status != 200 {
        return Err(format!(
            "the own server answered {} to the proof request",
            answer.status
        ));
    }
    match answer.body.as_deref().map(serde_json::from_slice::<Value>) {
        Some(Ok(Value::Object(proof))) => Ok(proof),
        _ => Err("the own server's proof is not a JSON object".into()),
    }
}

/// Polls the own server's wake log (the reference server's `GET /provider/v1/wakes`) every
/// 250 ms and signals each new wake of this device: the reference's stand-in for a mobile push
/// service. Ends when the receiver is gone.
pub async fn watch_wakes(identifier: String, device_id: u32, tx: tokio::sync::mpsc::Sender<()>) {
    let Some((url, ca_file)) = own_server() else {
        return;
    };
    let Ok(ca_pem) = std::fs::read_to_string(&ca_file) else {
        return;
    };
    let Ok(config) = tls_config(&ca_pem, Mutant::None) else {
        return;
    };
    let Ok(target) = Target::parse_at(&url, WAKES_PATH) else {
        return;
    };
    let mut seen: Option<usize> = None;
    loop {
        let deadline = Instant::now() + ATTEMPT_TIMEOUT;
        if let Ok(answer) = post(&target, &config, b"", None, deadline, "GET").await
            && let Some(Ok(Value::Object(o))) =
                answer.body.as_deref().map(serde_json::from_slice::<Value>)
        {
            let mine = o
                .get("wakes")
                .and_then(Value::as_array)
                .map(|w| {
                    w.iter()
                        .filter(|w| {
                            w.get("user").and_then(Value::as_str) == Some(identifier.as_str())
                                && w.get("device_id").and_then(Value::as_u64)
                                    == Some(u64::from(device_id))
                        })
                        .count()
                })
                .unwrap_or(0);
            if seen.is_some_and(|s| mine > s) && tx.send(()).await.is_err() {
                return;
            }
            seen = Some(mine);
        }
        if tx.is_closed() {
            return;
        }
        sleep(Duration::from_millis(250)).await;
    }
}

/// The reference server's wake log.
const WAKES_PATH: &str = "/provider/v1/wakes";

/// Where the reference server hands out proofs.
const PROOF_PATH: &str = "/gatecheck-test/v1/proof";

/// One request on a fresh connection, its whole answer read before `deadline`; `bearer` goes
/// in an `Authorization` header.
async fn post(
    target: &Target,
    config: &Arc<ClientConfig>,
    body: &[u8],
    bearer: Option<&str>,
    deadline: Instant,
    method: &str,
) -> Result<Answer, Broken> {
    let work = async {
        let tcp = TcpStream::connect((target.host.as_str(), target.port))
            .await
            .map_err(|e| Broken::Transport(format!("connect: {e}")))?;
        let _ = tcp.set_nodelay(true);
        let name = ServerName::try_from(target.host.clone())
            .map_err(|e| Broken::Tls(format!("server name {:?}: {e}", target.host)))?;
        let tls = tokio_rustls::TlsConnector::from(Arc::clone(config))
            .connect(name, tcp)
            .await
            .map_err(|e| Broken::Tls(format!("handshake: {e}")))?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .map_err(|e| Broken::Transport(format!("HTTP: {e}")))?;
        let _connection = AbortOnDrop(tokio::spawn(async move {
            let _ = connection.await;
        }));
        let mut request = hyper::Request::builder()
            .method(method)
            .uri(target.path.as_str())
            .header(HOST, target.authority.as_str())
            .header(CONTENT_TYPE, "application/json");
        if let Some(token) = bearer {
            request = request.header(hyper::header::AUTHORIZATION, format!("Bearer {token}"));
        }
        let request = request
            .body(Full::new(Bytes::copy_from_slice(body)))
            .map_err(|e| Broken::Transport(format!("request: {e}")))?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| Broken::Transport(format!("no answer: {e}")))?;
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = Limited::new(response.into_body(), MAX_RESPONSE_BODY)
            .collect()
            .await
            .ok()
            .map(|b| b.to_bytes().to_vec());
        Ok(Answer {
            status,
            retry_after,
            body,
        })
    };
    timeout_at(deadline, work)
        .await
        .unwrap_or_else(|_| Err(Broken::Transport("no answer in time".into())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let t = Target::parse("https://127.0.0.1:4443").expect("parses");
        assert_eq!(
            (t.host.as_str(), t.port, t.path.as_str()),
            ("127.0.0.1", 4443, "/v1/enroll")
        );
        assert_eq!(t.authority, "127.0.0.1:4443");
        let t = Target::parse("HTTPS://[::1]:9/api/").expect("parses");
        assert_eq!((t.host.as_str(), t.port), ("::1", 9));
        assert_eq!(t.path, "/api/v1/enroll");
        assert_eq!(Target::parse("https://gk.test").expect("parses").port, 443);
        assert_eq!(
            Target::parse("http://127.0.0.1:80"),
            Err(UrlError::NotHttps)
        );
        for bad in [
            "127.0.0.1",
            "https://",
            "https://:9",
            "https://h:x",
            "https://u@h",
            "https://h/?q",
            "https://[::1",
            "https://[::1]9",
            "https://h:70000",
        ] {
            assert!(
                matches!(Target::parse(bad), Err(UrlError::Invalid(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn retry_after_values() {
        assert_eq!(retry_after(Some(" 3 ")), Duration::from_secs(3));
        assert_eq!(retry_after(None), DEFAULT_RETRY_AFTER);
        assert_eq!(
            retry_after(Some("Wed, 21 Oct 2015 07:28:00 GMT")),
            DEFAULT_RETRY_AFTER
        );
        assert_eq!(retry_after(Some("-1")), DEFAULT_RETRY_AFTER);
    }

    #[test]
    fn error_codes_and_failures() {
        assert_eq!(
            error_code(Some(br#"{"error":"proof_expired","message":"x"}"#)),
            Some("proof_expired".into())
        );
        assert_eq!(error_code(Some(b"[1]")), None);
        assert_eq!(error_code(Some(b"\xff")), None);
        assert_eq!(error_code(None), None);
        let rate = Answer {
            status: 429,
            retry_after: None,
            body: None,
        };
        assert!(
            matches!(failure(&Ok(rate)), Outcome::Failed { status: 429, code } if code == "rate_limited")
        );
        let conflict = Outcome::failed(409, "device_id_conflict");
        assert!(conflict.is_device_id_conflict());
        assert!(!Outcome::failed(409, "other").is_device_id_conflict());
    }

    #[test]
    fn success_answers_are_checked() {
        let proof = Map::new();
        let key = STANDARD.encode([7u8; 32]);
        let good = json!({"v":1,"account":"u1","domain":"gk","device_id":5,"credential":"c","server_static_key":key});
        let body = good.to_string().into_bytes();
        let e = parse_success(Some(&body), 5, &proof).expect("usable");
        assert_eq!(
            (e.account.as_str(), e.domain.as_str(), e.device_id),
            ("u1", "gk", 5)
        );
        assert_eq!(e.server_static_key, [7u8; 32]);
        assert!(!format!("{e:?}").contains("\"c\""));
        assert!(parse_success(Some(&body), 6, &proof).is_err());
        for (member, bad) in [
            ("account", json!("")),
            ("credential", json!("a\u{0}b")),
            ("domain", json!(3)),
            ("server_static_key", json!("AAAA")),
        ] {
            let mut v = good.clone();
            v[member] = bad;
            let body = v.to_string().into_bytes();
            assert!(parse_success(Some(&body), 5, &proof).is_err(), "{member}");
        }
        assert!(parse_success(None, 5, &proof).is_err());
    }
}
