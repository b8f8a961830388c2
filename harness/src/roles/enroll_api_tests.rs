//! Tests of the enrollment API over real TLS on loopback: requests are written as raw
//! HTTP/1.1 over tokio-rustls (trusting the API's CA), so that malformed, slow and oversized
//! requests can be sent exactly as a hostile client would.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use ed25519_dalek::SigningKey;
use rustls::pki_types::ServerName;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::*;
use crate::e2ee::Device;
use crate::idproof::{Proof, ProofFields, Registry};

const PROVIDER: &str = "test-provider";
const ALICE: &str = "+4915112345678";
const BOB: &str = "bob@example.org";
const NOISE_KEY: [u8; 32] = [7; 32];

fn provider_key() -> SigningKey {
    SigningKey::from_bytes(&[42; 32])
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn config() -> EnrollConfig {
    let mut c = EnrollConfig::new("gk.gatecheck.test", NOISE_KEY);
    c.header_timeout = Duration::from_secs(2);
    c.body_timeout = Duration::from_millis(600);
    c.handshake_timeout = Duration::from_millis(600);
    c
}

async fn start_with(config: EnrollConfig, tokens: TokenCheck) -> EnrollApi {
    let mut registry = Registry::new();
    registry.add(PROVIDER, provider_key().verifying_key());
    EnrollApi::start(config, EnrollState::new(registry).shared(), tokens)
        .await
        .expect("the API starts")
}

async fn start() -> EnrollApi {
    start_with(config(), accept_all_tokens()).await
}

/// A device's keys, deterministic per seed byte.
fn device(seed: u8, device_id: u32, prekeys: u32) -> Device {
    Device::generate(device_id, [seed; 32], prekeys)
}

fn identity_of(d: &Device) -> [u8; 33] {
    d.identity_key().try_into().expect("33-byte identity key")
}

fn proof_for(key: &SigningKey, identifier: &str, d: &Device, device_id: u32, issued: u64) -> Value {
    let proof = Proof::sign(
        key,
        &ProofFields {
            provider_id: PROVIDER,
            identifier,
            identity_key: &identity_of(d),
            device_id,
            issued_at: issued,
            expires_at: issued + 300,
            nonce: crate::idproof::random_nonce(),
        },
    );
    serde_json::from_str(&proof.to_json()).expect("proof JSON")
}

fn body_for(identifier: &str, d: &Device, proof: Value) -> Value {
    let b = d.bundle();
    json!({
        "v": 1,
        "provider_id": PROVIDER,
        "device_id": d.device_id(),
        "identifier": identifier,
        "identity_key": STANDARD.encode(&b.identity_key),
        "signed_prekey": {
            "id": b.signed_prekey_id,
            "public_key": STANDARD.encode(&b.signed_prekey),
            "signature": STANDARD.encode(&b.signature),
        },
        "one_time_prekeys": b.prekeys.iter().map(|(id, k)| json!({"id": id, "public_key": STANDARD.encode(k)})).collect::<Vec<_>>(),
        "provider_token": "token-1",
        "identifier_proof": proof,
    })
}

/// A valid enrollment body for `identifier` and a fresh device.
fn valid_body(identifier: &str, seed: u8, device_id: u32) -> Value {
    let d = device(seed, device_id, 100);
    let proof = proof_for(&provider_key(), identifier, &d, device_id, now());
    body_for(identifier, &d, proof)
}

async fn connect(api: &EnrollApi, alpn: &[&[u8]]) -> tokio_rustls::client::TlsStream<TcpStream> {
    let roots = crate::transport::root_store(api.ca_pem()).expect("CA");
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS13])
    .expect("TLS 1.3")
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|a| a.to_vec()).collect();
    let tcp = TcpStream::connect(api.addr()).await.expect("connect");
    tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("127.0.0.1").expect("name"), tcp)
        .await
        .expect("TLS handshake")
}

#[derive(Debug)]
struct Resp {
    status: u16,
    headers: Vec<(String, String)>,
    json: Value,
}

impl Resp {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn code(&self) -> &str {
        self.json["error"].as_str().unwrap_or("")
    }
}

/// Reads one response to its end (every test request says `Connection: close`).
async fn read_response<S: tokio::io::AsyncRead + Unpin>(s: &mut S) -> Option<Resp> {
    let mut raw = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut raw)).await;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n")?;
    let mut lines = head.split("\r\n");
    let status = lines.next()?.split(' ').nth(1)?.parse().ok()?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    Some(Resp {
        status,
        headers,
        json: serde_json::from_str(body).unwrap_or(Value::Null),
    })
}

async fn send_raw(api: &EnrollApi, head: &str, body: &[u8]) -> Resp {
    let mut s = connect(api, &[b"http/1.1"]).await;
    s.write_all(head.as_bytes()).await.expect("write head");
    s.write_all(body).await.expect("write body");
    read_response(&mut s).await.expect("a response")
}

async fn request(
    api: &EnrollApi,
    method: &str,
    path: &str,
    content_type: &str,
    body: &[u8],
) -> Resp {
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: {content_type}\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        api.addr(),
        body.len()
    );
    send_raw(api, &head, body).await
}

async fn post(api: &EnrollApi, body: &Value) -> Resp {
    post_bytes(api, body.to_string().as_bytes()).await
}

async fn post_bytes(api: &EnrollApi, body: &[u8]) -> Resp {
    request(api, "POST", "/v1/enroll", "application/json", body).await
}

fn requirements(api: &EnrollApi) -> Vec<String> {
    api.client_deviations()
        .into_iter()
        .filter_map(|d| d.requirement)
        .collect()
}

fn last_requirements(api: &EnrollApi) -> Vec<String> {
    api.requests()
        .last()
        .map(|r| {
            r.client_deviations
                .iter()
                .filter_map(|d| d.requirement.clone())
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn enrollment_then_reenrollment_replaces_the_credential() {
    let api = start().await;
    let first = post(&api, &valid_body(ALICE, 1, 1234)).await;
    assert_eq!(first.status, 201, "{first:?}");
    let account = first.json["account"].as_str().expect("account").to_owned();
    assert_eq!(account.len(), 8);
    assert!(
        account
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    );
    assert_eq!(first.json["v"], 1);
    assert_eq!(first.json["domain"], "gk.gatecheck.test");
    assert_eq!(first.json["device_id"], 1234);
    assert_eq!(first.json["server_static_key"], STANDARD.encode(NOISE_KEY));
    let old = first.json["credential"]
        .as_str()
        .expect("credential")
        .to_owned();
    assert_eq!(URL_SAFE_NO_PAD.decode(&old).expect("base64url").len(), 24);
    assert!(lock(&api.state()).check_login(&account, &old).is_some());

    // Same identifier and device id, new keys and a fresh proof: 200, same account.
    let again = post(&api, &valid_body(ALICE, 2, 1234)).await;
    assert_eq!(again.status, 200, "{again:?}");
    assert_eq!(again.json["account"], account.as_str());
    let new = again.json["credential"]
        .as_str()
        .expect("credential")
        .to_owned();
    assert_ne!(new, old);
    {
        let shared = api.state();
        let state = lock(&shared);
        assert!(
            state.check_login(&account, &old).is_none(),
            "old credential refused"
        );
        let login = state.check_login(&account, &new).expect("new credential");
        assert_eq!((login.device_id, login.identifier.as_str()), (1234, ALICE));
        assert_eq!(
            state.device(ALICE, 1234).expect("device").keys.identity_key,
            identity_of(&device(2, 1234, 0))
        );
    }

    // A second device of the same identifier shares the account.
    let second = post(&api, &valid_body(ALICE, 3, 99)).await;
    assert_eq!(
        (second.status, second.json["account"].as_str()),
        (201, Some(account.as_str()))
    );
    assert!(
        api.client_deviations().is_empty(),
        "{:?}",
        api.client_deviations()
    );
    assert_eq!(api.requests().len(), 3);
    api.shutdown().await;
}

#[tokio::test]
async fn media_type_parameters_are_allowed() {
    let api = start().await;
    let body = valid_body(BOB, 1, 5).to_string();
    let r = request(
        &api,
        "POST",
        "/v1/enroll",
        "Application/JSON; charset=utf-8",
        body.as_bytes(),
    )
    .await;
    assert_eq!(r.status, 201, "{r:?}");
    api.shutdown().await;
}

#[tokio::test]
async fn request_level_steps_come_first() {
    let api = start().await;
    let body = valid_body(ALICE, 1, 7).to_string();
    // Path before method, method before media type.
    let r = request(&api, "GET", "/v1/other", "text/plain", b"").await;
    assert_eq!((r.status, r.code()), (404, "not_found"));
    let r = request(&api, "GET", "/v1/enroll", "text/plain", b"").await;
    assert_eq!((r.status, r.code()), (405, "method_not_allowed"));
    assert_eq!(r.header("allow"), Some("POST"));
    let r = request(&api, "POST", "/v1/enroll", "text/plain", body.as_bytes()).await;
    assert_eq!((r.status, r.code()), (415, "unsupported_media_type"));
    // A body of the right media type that is no JSON.
    let r = post_bytes(&api, b"{\"v\":1,").await;
    assert_eq!((r.status, r.code()), (400, "malformed_json"));
    let r = post_bytes(&api, b"[1,2]").await;
    assert_eq!((r.status, r.code()), (400, "malformed_json"));
    assert!(requirements(&api).iter().all(|r| r == "ENROLL-2"));
    assert_eq!(api.requests()[0].path, "/v1/other");
    assert_eq!(api.requests()[0].outcome.status, Some(404));
    api.shutdown().await;
}

/// Applies `edit` to a valid body and posts it; returns status, code and the requirements
/// of the request's deviations.
async fn edited(api: &EnrollApi, edit: impl FnOnce(&mut Value)) -> (u16, String, Vec<String>) {
    let mut body = valid_body(ALICE, 1, 11);
    edit(&mut body);
    let r = post(api, &body).await;
    (r.status, r.code().to_owned(), last_requirements(api))
}

/// A change to a valid body.
type Edit = Box<dyn FnOnce(&mut Value)>;

#[tokio::test]
async fn body_checks_in_order() {
    let api = start().await;
    let cases: Vec<(&str, Edit, u16, &str, &str)> = vec![
        (
            "missing",
            Box::new(|b: &mut Value| {
                b.as_object_mut().unwrap().remove("provider_token");
            }),
            400,
            "missing_field",
            "ENROLL-2",
        ),
        (
            "missing before unknown",
            Box::new(|b: &mut Value| {
                b.as_object_mut().unwrap().remove("identifier");
                b["extra"] = json!(1);
            }),
            400,
            "missing_field",
            "ENROLL-2",
        ),
        (
            "unknown",
            Box::new(|b: &mut Value| b["extra"] = json!(1)),
            400,
            "bad_field",
            "ENROLL-2",
        ),
        (
            "mistyped",
            Box::new(|b: &mut Value| b["device_id"] = json!("11")),
            400,
            "bad_field",
            "ENROLL-2",
        ),
        (
            "v",
            Box::new(|b: &mut Value| b["v"] = json!(2)),
            400,
            "bad_field",
            "ENROLL-2",
        ),
        (
            "identity key",
            Box::new(|b: &mut Value| b["identity_key"] = json!(STANDARD.encode([6u8; 33]))),
            400,
            "bad_identity_key",
            "ENROLL-3",
        ),
        (
            "signature",
            Box::new(|b: &mut Value| {
                b["signed_prekey"]["signature"] = json!(STANDARD.encode([0u8; 64]))
            }),
            400,
            "bad_signed_prekey",
            "ENROLL-3",
        ),
        (
            "signed prekey",
            Box::new(|b: &mut Value| b["signed_prekey"]["public_key"] = json!("AAAA")),
            400,
            "bad_signed_prekey",
            "ENROLL-3",
        ),
        (
            "duplicate prekey id",
            Box::new(|b: &mut Value| b["one_time_prekeys"][1]["id"] = json!(1)),
            400,
            "bad_field",
            "ENROLL-3",
        ),
        (
            "prekey id range",
            Box::new(|b: &mut Value| b["one_time_prekeys"][1]["id"] = json!(16_777_216)),
            400,
            "bad_field",
            "ENROLL-3",
        ),
        (
            "prekey ids before count",
            Box::new(|b: &mut Value| {
                b["one_time_prekeys"].as_array_mut().unwrap().truncate(50);
                b["one_time_prekeys"][1]["id"] = json!(0);
            }),
            400,
            "bad_field",
            "ENROLL-3",
        ),
        (
            "few prekeys",
            Box::new(|b: &mut Value| {
                b["one_time_prekeys"].as_array_mut().unwrap().pop();
            }),
            400,
            "too_few_prekeys",
            "ENROLL-4",
        ),
        (
            "count before device id",
            Box::new(|b: &mut Value| {
                b["one_time_prekeys"].as_array_mut().unwrap().pop();
                b["device_id"] = json!(0);
            }),
            400,
            "too_few_prekeys",
            "ENROLL-4",
        ),
        (
            "device id",
            Box::new(|b: &mut Value| b["device_id"] = json!(2_147_483_648u64)),
            400,
            "bad_device_id",
            "ENROLL-5",
        ),
        (
            "identifier",
            Box::new(|b: &mut Value| b["identifier"] = json!("+49 151 1234")),
            400,
            "bad_identifier",
            "ENROLL-6",
        ),
        (
            "uppercase address",
            Box::new(|b: &mut Value| b["identifier"] = json!("Bob@example.org")),
            400,
            "bad_identifier",
            "ENROLL-6",
        ),
        (
            "no proof",
            Box::new(|b: &mut Value| {
                b.as_object_mut().unwrap().remove("identifier_proof");
            }),
            401,
            "proof_missing",
            "IDPROOF-9",
        ),
        (
            "proof not an object",
            Box::new(|b: &mut Value| b["identifier_proof"] = json!("x")),
            401,
            "proof_invalid",
            "IDPROOF-4",
        ),
        (
            "proof member",
            Box::new(|b: &mut Value| {
                b["identifier_proof"]
                    .as_object_mut()
                    .unwrap()
                    .remove("nonce");
            }),
            401,
            "proof_invalid",
            "IDPROOF-4",
        ),
        (
            "proof syntax",
            Box::new(|b: &mut Value| b["identifier_proof"]["nonce"] = json!("short")),
            401,
            "proof_invalid",
            "IDPROOF-3",
        ),
    ];
    for (name, edit, status, code, requirement) in cases {
        let (s, c, reqs) = edited(&api, edit).await;
        assert_eq!((s, c.as_str()), (status, code), "{name}");
        assert_eq!(
            reqs.first().map(String::as_str),
            Some(requirement),
            "{name}: {reqs:?}"
        );
    }
    // Every message names what it found; the deviation quotes the member.
    let missing = &api.requests()[0];
    assert!(missing.client_deviations[0].got.contains("provider_token"));
    // Nothing was enrolled and no nonce consumed.
    assert_eq!(lock(&api.state()).device_count(), 0);
    assert!(lock(&api.state()).nonces.is_empty());
    api.shutdown().await;
}

#[tokio::test]
async fn duplicate_members_are_refused() {
    let api = start().await;
    let body = valid_body(ALICE, 1, 12).to_string();
    let doubled = body.replacen("{\"device_id\"", "{\"device_id\":12,\"device_id\"", 1);
    assert_ne!(doubled, body, "the body starts with device_id");
    let r = post_bytes(&api, doubled.as_bytes()).await;
    assert_eq!((r.status, r.code()), (400, "bad_field"));
    assert!(api.client_deviations()[0].got.contains("device_id"));

    let mut v = valid_body(ALICE, 1, 13);
    let nonce = v["identifier_proof"]["nonce"].as_str().unwrap().to_owned();
    v["identifier_proof"]
        .as_object_mut()
        .unwrap()
        .remove("nonce");
    let text = v.to_string().replacen(
        "\"identifier_proof\":{",
        &format!("\"identifier_proof\":{{\"nonce\":\"{nonce}\",\"nonce\":\"{nonce}\","),
        1,
    );
    let r = post_bytes(&api, text.as_bytes()).await;
    assert_eq!((r.status, r.code()), (401, "proof_invalid"), "{r:?}");
    assert_eq!(last_requirements(&api), ["IDPROOF-4"]);
    api.shutdown().await;
}

#[tokio::test]
async fn proof_refusals_have_their_codes() {
    let api = start().await;
    let d = device(1, 21, 100);
    let key = provider_key();
    let t = now();
    let cases = [
        (
            "expired",
            proof_for(&key, ALICE, &d, 21, t - 1000),
            "proof_expired",
            "IDPROOF-6",
        ),
        (
            "early",
            proof_for(&key, ALICE, &d, 21, t + 1000),
            "proof_not_yet_valid",
            "IDPROOF-9",
        ),
        (
            "forged",
            proof_for(&SigningKey::from_bytes(&[9; 32]), ALICE, &d, 21, t),
            "proof_invalid",
            "IDPROOF-9",
        ),
        (
            "other device",
            proof_for(&key, ALICE, &d, 22, t),
            "proof_mismatch",
            "IDPROOF-8",
        ),
        (
            "other user",
            proof_for(&key, BOB, &d, 21, t),
            "proof_mismatch",
            "IDPROOF-8",
        ),
    ];
    for (name, proof, code, requirement) in cases {
        let r = post(&api, &body_for(ALICE, &d, proof)).await;
        assert_eq!((r.status, r.code()), (401, code), "{name}: {r:?}");
        assert_eq!(last_requirements(&api), [requirement], "{name}");
    }
    // Unknown provider: the request and its proof name a provider nobody registered.
    let mut proof = proof_for(&key, ALICE, &d, 21, t);
    let mut body = body_for(ALICE, &d, Value::Null);
    proof["provider_id"] = json!("nobody");
    body["provider_id"] = json!("nobody");
    body["identifier_proof"] = proof;
    let r = post(&api, &body).await;
    assert_eq!((r.status, r.code()), (401, "unknown_provider"));

    // Replay: a proof that enrolled once is refused the second time.
    let proof = proof_for(&key, ALICE, &d, 21, t);
    let body = body_for(ALICE, &d, proof);
    assert_eq!(post(&api, &body).await.status, 201);
    let r = post(&api, &body).await;
    assert_eq!((r.status, r.code()), (401, "proof_replayed"));
    assert_eq!(last_requirements(&api), ["IDPROOF-14"]);
    api.shutdown().await;
}

#[tokio::test]
async fn provider_token_refused_or_unreachable() {
    let tokens = token_check(|identifier: String, token: String| async move {
        match token.as_str() {
            "down" => Err("connection refused".to_owned()),
            _ => Ok(identifier == ALICE && token == "token-1"),
        }
    });
    let api = start_with(config(), tokens).await;
    let mut body = valid_body(BOB, 1, 31);
    let r = post(&api, &body).await;
    assert_eq!((r.status, r.code()), (403, "provider_token_rejected"));
    // A 503 does not consume the nonce: the same proof works on retry (ENROLL-14).
    let mut alice = valid_body(ALICE, 2, 32);
    alice["provider_token"] = json!("down");
    let r = post(&api, &alice).await;
    assert_eq!((r.status, r.code()), (503, "provider_unreachable"));
    alice["provider_token"] = json!("token-1");
    assert_eq!(post(&api, &alice).await.status, 201);
    // Neither refusal is the client's fault.
    body["provider_token"] = json!("other");
    assert!(api.client_deviations().is_empty());
    api.shutdown().await;
}

#[tokio::test]
async fn device_id_conflict() {
    let api = start().await;
    assert_eq!(post(&api, &valid_body(ALICE, 1, 41)).await.status, 201);
    let r = post(&api, &valid_body(BOB, 2, 41)).await;
    assert_eq!((r.status, r.code()), (409, "device_id_conflict"));
    assert_eq!(lock(&api.state()).owner_of(41), Some(ALICE));
    // The refused proof's nonce stays unused.
    assert_eq!(lock(&api.state()).nonces.len(), 1);
    api.shutdown().await;
}

#[tokio::test]
async fn forced_answers_and_early_retries() {
    let api = start().await;
    api.force(Forced::Status {
        status: 429,
        retry_after: Some(2),
    });
    api.force(Forced::Conflict);
    api.force(Forced::Refuse(400, "bad_field".into()));
    let body = valid_body(ALICE, 1, 51);
    let r = post(&api, &body).await;
    assert_eq!(
        (r.status, r.code(), r.header("retry-after")),
        (429, "rate_limited", Some("2"))
    );
    // At once again: before Retry-After (ENROLL-13), answered by the next scripted answer.
    let r = post(&api, &body).await;
    assert_eq!((r.status, r.code()), (409, "device_id_conflict"));
    assert_eq!(last_requirements(&api), ["ENROLL-13"]);
    assert_eq!(api.forced_pending(), 1);
    api.clear_forced();
    // Scripted answers changed nothing: the body still enrolls (its nonce is unused).
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_eq!(post(&api, &body).await.status, 201);
    assert!(last_requirements(&api).is_empty());

    // A 429 without Retry-After means 60 s.
    api.force(Forced::Status {
        status: 429,
        retry_after: None,
    });
    let r = post(&api, &valid_body(ALICE, 1, 52)).await;
    assert_eq!((r.status, r.header("retry-after")), (429, None));
    tokio::time::sleep(Duration::from_millis(100)).await;
    let _ = post(&api, &valid_body(ALICE, 1, 52)).await;
    assert_eq!(last_requirements(&api), ["ENROLL-13"]);
    let got = api.requests().last().unwrap().client_deviations[0]
        .got
        .clone();
    assert!(got.contains("60 s"), "{got}");
    api.shutdown().await;
}

#[tokio::test]
async fn repeated_refused_body_is_enroll_11() {
    let api = start().await;
    let mut body = valid_body(ALICE, 1, 61);
    body["device_id"] = json!(0);
    assert_eq!(post(&api, &body).await.status, 400);
    assert_eq!(last_requirements(&api), ["ENROLL-5"]);
    assert_eq!(post(&api, &body).await.status, 400);
    assert_eq!(last_requirements(&api), ["ENROLL-11", "ENROLL-5"]);
    let got = api.requests()[1].client_deviations[0].got.clone();
    assert!(
        got.contains("#0") && got.contains("400 bad_device_id"),
        "{got}"
    );
    // A 415 counts too; a changed body does not repeat anything.
    let other = valid_body(ALICE, 2, 62).to_string();
    assert_eq!(
        request(&api, "POST", "/v1/enroll", "text/json", other.as_bytes())
            .await
            .status,
        415
    );
    assert_eq!(post_bytes(&api, other.as_bytes()).await.status, 201);
    assert_eq!(last_requirements(&api), ["ENROLL-11"]);
    api.shutdown().await;
}

#[tokio::test]
async fn hang_answers_nothing_while_others_are_served() {
    let api = start().await;
    api.force(Forced::Hang);
    let body = valid_body(ALICE, 1, 71).to_string();
    let mut hung = connect(&api, &[b"http/1.1"]).await;
    let head = format!(
        "POST /v1/enroll HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n",
        body.len()
    );
    hung.write_all(head.as_bytes()).await.unwrap();
    hung.write_all(body.as_bytes()).await.unwrap();
    assert!(
        api.wait_for_requests(1, Instant::now() + Duration::from_secs(5))
            .await
    );
    assert_eq!(api.requests()[0].outcome.code.as_deref(), Some("hang"));
    // Others are served meanwhile, past the idle timeout of the hanging connection.
    assert_eq!(post(&api, &valid_body(BOB, 2, 72)).await.status, 201);
    let mut buf = [0u8; 64];
    let waited = tokio::time::timeout(Duration::from_millis(2500), hung.read(&mut buf)).await;
    assert!(waited.is_err(), "no answer to a hang: {waited:?}");
    assert_eq!(api.active_connections(), 1);
    // The client gives up: the connection and its task go away.
    drop(hung);
    let deadline = Instant::now() + Duration::from_secs(3);
    while api.active_connections() > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(api.active_connections(), 0);
    api.shutdown().await;
}

#[tokio::test]
async fn slow_body_times_out_while_another_is_served() {
    let api = start().await;
    let mut slow = connect(&api, &[b"http/1.1"]).await;
    slow.write_all(
        b"POST /v1/enroll HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
          Content-Length: 1000\r\nConnection: close\r\n\r\n{\"v\":",
    )
    .await
    .unwrap();
    let started = Instant::now();
    assert_eq!(post(&api, &valid_body(ALICE, 1, 81)).await.status, 201);
    let r = read_response(&mut slow).await.expect("an answer");
    assert_eq!((r.status, r.code()), (408, "request_timeout"));
    assert!(started.elapsed() >= Duration::from_millis(500));
    assert!(started.elapsed() < Duration::from_secs(3));
    api.shutdown().await;
}

#[tokio::test]
async fn oversized_body_is_refused_unread() {
    let api = start().await;
    let head = "POST /v1/enroll HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
                Content-Length: 2097152\r\nConnection: close\r\n\r\n";
    let r = send_raw(&api, head, b"{").await;
    assert_eq!((r.status, r.code()), (400, "malformed_json"));
    assert!(r.json["message"].as_str().unwrap().contains("too large"));
    assert_eq!(api.requests()[0].body_len, None);
    // Chunked, with no declared length: refused once the limit is passed.
    let mut s = connect(&api, &[b"http/1.1"]).await;
    s.write_all(
        b"POST /v1/enroll HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
          Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
    )
    .await
    .unwrap();
    let chunk = vec![b' '; 64 * 1024];
    let (mut rd, mut wr) = tokio::io::split(s);
    let writer = tokio::spawn(async move {
        for _ in 0..32 {
            let head = format!("{:x}\r\n", chunk.len());
            if wr.write_all(head.as_bytes()).await.is_err()
                || wr.write_all(&chunk).await.is_err()
                || wr.write_all(b"\r\n").await.is_err()
            {
                break;
            }
        }
    });
    let r = read_response(&mut rd).await.expect("an answer");
    assert_eq!((r.status, r.code()), (400, "malformed_json"));
    writer.abort();
    api.shutdown().await;
}

#[tokio::test]
async fn hostile_connections_cost_only_themselves() {
    let api = start().await;
    // Plain HTTP to the HTTPS API (ENROLL-7).
    let mut plain = TcpStream::connect(api.addr()).await.unwrap();
    plain
        .write_all(b"POST /v1/enroll HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    // A client that never starts the handshake.
    let _silent = TcpStream::connect(api.addr()).await.unwrap();
    // A client offering only h2.
    let roots = crate::transport::root_store(api.ca_pem()).unwrap();
    let mut h2 = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS13])
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    h2.alpn_protocols = vec![b"h2".to_vec()];
    let tcp = TcpStream::connect(api.addr()).await.unwrap();
    let refused = tokio_rustls::TlsConnector::from(Arc::new(h2))
        .connect(ServerName::try_from("127.0.0.1").unwrap(), tcp)
        .await;
    assert!(
        refused.is_err(),
        "a client without http/1.1 in ALPN is refused"
    );
    // Meanwhile a proper client is served.
    assert_eq!(post(&api, &valid_body(ALICE, 1, 91)).await.status, 201);
    tokio::time::sleep(Duration::from_millis(900)).await;
    let events = api.connection_events();
    assert_eq!(events.len(), 3, "{events:?}");
    assert!(events.iter().any(|e| e.what.contains("not finished")));
    assert_eq!(requirements(&api), ["ENROLL-7"]);
    api.shutdown().await;
}

#[tokio::test]
async fn connection_limit_and_shutdown() {
    let mut c = config();
    c.max_connections = 2;
    let api = start_with(c, accept_all_tokens()).await;
    api.force(Forced::Hang);
    let body = valid_body(ALICE, 1, 101).to_string();
    let mut hung = connect(&api, &[b"http/1.1"]).await;
    let head = format!(
        "POST /v1/enroll HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    hung.write_all(head.as_bytes()).await.unwrap();
    assert!(
        api.wait_for_requests(1, Instant::now() + Duration::from_secs(5))
            .await
    );
    let _idle = connect(&api, &[b"http/1.1"]).await;
    // The third connection is closed at once.
    let mut third = TcpStream::connect(api.addr()).await.unwrap();
    let mut buf = [0u8; 8];
    let n = tokio::time::timeout(Duration::from_secs(2), third.read(&mut buf)).await;
    assert!(matches!(n, Ok(Ok(0)) | Ok(Err(_))), "{n:?}");
    assert_eq!(api.refused_connections(), 1);

    let addr = api.addr();
    api.shutdown().await;
    // The hanging connection is closed by the shutdown, and nobody listens any more.
    let n = tokio::time::timeout(Duration::from_secs(2), hung.read(&mut buf)).await;
    assert!(matches!(n, Ok(Ok(0)) | Ok(Err(_))), "{n:?}");
    assert!(TcpStream::connect(addr).await.is_err());
}

#[test]
fn check_body_collects_every_fault() {
    let mut body = valid_body(ALICE, 1, 5);
    body["device_id"] = json!(0);
    body["identifier"] = json!("nobody");
    body["identity_key"] = json!("!!");
    let c = check::check_body(body.to_string().as_bytes(), &check::Onboarded::default());
    assert_eq!(
        c.refusal.as_ref().map(|r| r.code.as_str()),
        Some("bad_identity_key")
    );
    let reqs: Vec<_> = c
        .deviations
        .iter()
        .filter_map(|d| d.requirement.as_deref())
        .collect();
    assert_eq!(reqs, ["ENROLL-3", "ENROLL-5", "ENROLL-6"]);
    assert!(c.deviations[0].got.contains("\"!!\""));
}

#[test]
fn onboarded_prefixes_and_domains() {
    let o = check::Onboarded {
        number_prefixes: vec!["+49151".into()],
        identifier_domains: vec!["example.org".into()],
    };
    assert_eq!(o.refuses(ALICE), None);
    assert_eq!(o.refuses(BOB), None);
    assert!(o.refuses("+4917012345678").is_some());
    assert!(o.refuses("bob@example.com").is_some());
}
