//! The provider server role end to end: the built binary on a loopback port, spoken to over
//! real TLS (trusting only the CA it wrote) with requests signed as the gatekeeper signs them.
//! Each mutant gets a test showing the one deviation it was made for.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use ed25519_dalek::SigningKey;
use gatecheck::http::signing;
use gatecheck::idproof::{self, Expected, NonceCache, Proof, Registry};
use http_body_util::{BodyExt as _, Full};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};

const GATEKEEPER_SEED: [u8; 32] = [7; 32];
const PROVIDER_SEED: [u8; 32] = [9; 32];
const PROVIDER_ID: &str = "example-provider";
const ALICE: &str = "+4915112345678";
const ALICE_TOKEN: &str = "tok-alice-0001-secret";
const ALICE_DEVICE: u32 = 1_834_299_211;
const BOB: &str = "+4915199999999";
const BOB_TOKEN: &str = "tok-bob-0002-secret";
const BOB_DEVICE: u32 = 42;
const AUTH: &str = "/gatecheck/v1/auth";
const PUSH: &str = "/gatecheck/v1/push";
const KEY1: &str = "\"0b6e8f2a-3c4d-4e5f-8a9b-1c2d3e4f5a6b\"";
const KEY2: &str = "\"1c7f9a3b-4d5e-4f60-9bac-2d3e4f5a6b7c\"";

/// A running server; killed and reaped when dropped, so no test leaves a process behind.
struct Server {
    child: Child,
    port: u16,
    dir: PathBuf,
    tls: Arc<rustls::ClientConfig>,
    base: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

struct Reply {
    status: u16,
    headers: hyper::HeaderMap,
    body: Vec<u8>,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind(("127.0.0.1", 0)).expect("bind");
    l.local_addr().expect("addr").port()
}

fn scratch_dir() -> PathBuf {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    std::env::temp_dir().join(format!(
        "gatecheck-reference-server-test-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ))
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs()
}

fn gatekeeper() -> SigningKey {
    SigningKey::from_bytes(&GATEKEEPER_SEED)
}

fn command(mutant: Option<&str>, base: &str, port: u16, dir: &std::path::Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_gatecheck-reference"));
    if let Some(m) = mutant {
        cmd.args(["--mutant", m]);
    }
    let key = STANDARD.encode(gatekeeper().verifying_key().to_bytes());
    let seed: String = PROVIDER_SEED.iter().map(|b| format!("{b:02x}")).collect();
    cmd.arg("server")
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .arg("--tls-dir")
        .arg(dir)
        .args(["--gatekeeper-key", &key])
        .args(["--signing-seed", &seed])
        .args(["--provider-id", PROVIDER_ID])
        .args(["--user", &format!("{ALICE}:{ALICE_TOKEN}:{ALICE_DEVICE}")])
        .args(["--user", &format!("{BOB}:{BOB_TOKEN}:{BOB_DEVICE}")])
        .args(["--expired-token", &format!("{ALICE}:tok-alice-expired")])
        .args(["--revoked-token", &format!("{ALICE}:tok-alice-revoked")]);
    if !base.is_empty() {
        cmd.args(["--base-path", base]);
    }
    cmd
}

impl Server {
    fn start(mutant: Option<&str>) -> Server {
        Server::start_under(mutant, "")
    }

    /// Starts the server and waits for `ca.pem` and the port, as the harness does.
    fn start_under(mutant: Option<&str>, base: &str) -> Server {
        let port = free_port();
        let dir = scratch_dir();
        let child = command(mutant, base, port, &dir)
            // stdin stays open: its end would stop the server.
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn the reference");
        let mut server = Server {
            child,
            port,
            dir,
            tls: Arc::new(
                rustls::ClientConfig::builder_with_provider(Arc::new(
                    rustls::crypto::ring::default_provider(),
                ))
                .with_safe_default_protocol_versions()
                .expect("versions")
                .with_root_certificates(rustls::RootCertStore::empty())
                .with_no_client_auth(),
            ),
            base: base.to_owned(),
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                break;
            }
            if let Ok(Some(status)) = server.child.try_wait() {
                panic!("the server exited before listening: {status}");
            }
            assert!(Instant::now() < deadline, "the server never listened");
            std::thread::sleep(Duration::from_millis(20));
        }
        let pem = std::fs::read(server.dir.join("ca.pem")).expect("ca.pem before the port");
        let mut roots = rustls::RootCertStore::empty();
        for cert in rustls_pemfile_certs(&pem) {
            roots.add(cert).expect("CA");
        }
        let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("TLS 1.3")
        .with_root_certificates(roots)
        .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        server.tls = Arc::new(config);
        server
    }

    fn path(&self, p: &str) -> String {
        format!("{}{p}", self.base)
    }

    /// One request on a fresh TLS connection to `localhost`.
    async fn call(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, String)],
        body: &[u8],
    ) -> Reply {
        self.try_call(method, path, headers, body)
            .await
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
    }

    /// As [`Server::call`], with a failed exchange as an error: a server that refuses a body
    /// before it has all of it may close while the client still writes.
    async fn try_call(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, String)],
        body: &[u8],
    ) -> Result<Reply, String> {
        self.call_waiting(method, path, headers, body, Duration::from_secs(2))
            .await
    }

    /// As [`Server::try_call`], waiting up to `wait` for the answer (for the slow mutants).
    async fn call_waiting(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, String)],
        body: &[u8],
        wait: Duration,
    ) -> Result<Reply, String> {
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", self.port))
            .await
            .expect("connect");
        let connector = tokio_rustls::TlsConnector::from(Arc::clone(&self.tls));
        let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
        let tls = connector.connect(name, tcp).await.expect("TLS handshake");
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .expect("HTTP handshake");
        tokio::spawn(conn);
        let mut req = hyper::Request::builder()
            .method(method)
            .uri(path)
            .header("host", format!("localhost:{}", self.port));
        for (k, v) in headers {
            req = req.header(*k, v);
        }
        let req = req
            .body(Full::new(Bytes::copy_from_slice(body)))
            .expect("request");
        let resp = tokio::time::timeout(wait, sender.send_request(req))
            .await
            .unwrap_or_else(|_| panic!("an answer within {wait:?}"))
            .map_err(|e| format!("response: {e}"))?;
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = resp
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes()
            .to_vec();
        Ok(Reply {
            status,
            headers,
            body,
        })
    }

    /// A request signed by the gatekeeper's key with a fresh nonce at `ts`.
    async fn signed_at(
        &self,
        method: &str,
        path: &str,
        body: &[u8],
        ts: u64,
        extra: &[(&str, String)],
    ) -> (Reply, Vec<(&'static str, String)>) {
        let path = self.path(path);
        let sig = signing::sign(
            &gatekeeper(),
            method,
            &path,
            ts,
            idproof::random_nonce(),
            body,
        );
        let mut headers: Vec<(&str, String)> = sig.pairs().to_vec();
        headers.extend(extra.iter().cloned());
        let reply = self.call(method, &path, &headers, body).await;
        let sent = sig.pairs().to_vec();
        (reply, sent)
    }

    async fn signed(
        &self,
        method: &str,
        path: &str,
        body: &[u8],
        extra: &[(&str, String)],
    ) -> Reply {
        self.signed_at(method, path, body, now(), extra).await.0
    }

    async fn auth(&self, user: &str, token: &str) -> Reply {
        self.signed("POST", AUTH, &auth_body(user, token, now()), &json_type())
            .await
    }

    async fn push(&self, user: &str, device: u32, key: &str) -> Reply {
        let mut headers = json_type();
        headers.push(("idempotency-key", key.to_owned()));
        self.signed("POST", PUSH, &push_body(user, device), &headers)
            .await
    }

    async fn wakes(&self) -> Vec<Value> {
        let r = self
            .call("GET", &self.path("/provider/v1/wakes"), &[], b"")
            .await;
        assert_eq!(r.status, 200, "{}", r.text());
        r.json()["wakes"].as_array().cloned().unwrap_or_default()
    }

    async fn proof(&self, token: &str, identifier: &str, key: &[u8; 33], device: u32) -> Reply {
        let body = json!({
            "identifier": identifier,
            "identity_key": STANDARD.encode(key),
            "device_id": device,
        })
        .to_string();
        let mut headers = json_type();
        headers.push(("authorization", format!("Bearer {token}")));
        self.call(
            "POST",
            &self.path("/gatecheck-test/v1/proof"),
            &headers,
            body.as_bytes(),
        )
        .await
    }
}

/// The certificates of a PEM file (the CA alone here).
fn rustls_pemfile_certs(pem: &[u8]) -> Vec<rustls::pki_types::CertificateDer<'static>> {
    use rustls::pki_types::pem::PemObject as _;
    rustls::pki_types::CertificateDer::pem_slice_iter(pem)
        .map(|c| c.expect("PEM"))
        .collect()
}

fn json_type() -> Vec<(&'static str, String)> {
    vec![("content-type", "application/json".to_owned())]
}

fn auth_body(user: &str, token: &str, ts: u64) -> Vec<u8> {
    json!({
        "v": 1,
        "user": user,
        "token": token,
        "request_id": "5f0c6a4e-2b1d-4e7a-9c55-0d4f7b1e9a10",
        "timestamp": ts,
    })
    .to_string()
    .into_bytes()
}

fn push_body(user: &str, device: u32) -> Vec<u8> {
    json!({"v": 1, "user": user, "device_id": device, "count": 3, "priority": "high"})
        .to_string()
        .into_bytes()
}

fn identity_key() -> [u8; 33] {
    let mut k = [0x11; 33];
    k[0] = 0x05;
    k
}

/// Checks a proof as the gatekeeper does, with the provider's registered key.
fn gatekeeper_checks(proof_json: &[u8], identifier: &str, device: u32) -> Result<Proof, String> {
    let proof = Proof::parse(proof_json).map_err(|e| e.to_string())?;
    let mut registry = Registry::new();
    registry.add(
        PROVIDER_ID,
        SigningKey::from_bytes(&PROVIDER_SEED).verifying_key(),
    );
    let key = identity_key();
    let expected = Expected {
        identifier,
        identity_key: &key,
        device_id: device,
    };
    idproof::verify(&proof, &registry, &expected, now(), &mut NonceCache::new())
        .map_err(|e| e.to_string())?;
    Ok(proof)
}

#[tokio::test]
async fn authentication_answers() {
    let s = Server::start(None);
    let r = s.auth(ALICE, ALICE_TOKEN).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.headers.get("content-type").and_then(|v| v.to_str().ok()),
        Some("application/json")
    );
    assert_eq!(
        r.json(),
        json!({"valid": true, "request_id": "5f0c6a4e-2b1d-4e7a-9c55-0d4f7b1e9a10"})
    );
    assert!(!r.text().contains(ALICE_TOKEN));

    // Bob's valid token for Alice, and Alice's withdrawn tokens: 200 with valid false.
    for (user, token) in [
        (ALICE, BOB_TOKEN),
        (BOB, ALICE_TOKEN),
        (ALICE, "tok-alice-expired"),
        (ALICE, "tok-alice-revoked"),
        (ALICE, "never-issued"),
    ] {
        let r = s.auth(user, token).await;
        assert_eq!(r.status, 200, "{user} {token}: {}", r.text());
        assert_eq!(r.json()["valid"], json!(false), "{user} {token}");
        assert!(!r.text().contains(token));
    }
}

#[tokio::test]
async fn signature_failures_are_401() {
    let s = Server::start(None);
    let body = auth_body(ALICE, ALICE_TOKEN, now());
    let r = s.call("POST", AUTH, &json_type(), &body).await;
    assert_eq!(r.status, 401, "unsigned: {}", r.text());
    assert_eq!(r.json()["error"], json!("unauthorized"));

    // Stale: two minutes old, correctly signed.
    let old = now() - 120;
    let (r, _) = s
        .signed_at(
            "POST",
            AUTH,
            &auth_body(ALICE, ALICE_TOKEN, old),
            old,
            &json_type(),
        )
        .await;
    assert_eq!(r.status, 401, "stale: {}", r.text());

    // A body other than the signed one.
    let ts = now();
    let sig = signing::sign(
        &gatekeeper(),
        "POST",
        AUTH,
        ts,
        idproof::random_nonce(),
        b"{}",
    );
    let mut headers: Vec<(&str, String)> = sig.pairs().to_vec();
    headers.extend(json_type());
    let r = s
        .call("POST", AUTH, &headers, &auth_body(ALICE, ALICE_TOKEN, ts))
        .await;
    assert_eq!(r.status, 401, "tampered: {}", r.text());

    // Replay: the same headers and body again.
    let ts = now();
    let body = auth_body(ALICE, ALICE_TOKEN, ts);
    let (first, sent) = s.signed_at("POST", AUTH, &body, ts, &json_type()).await;
    assert_eq!(first.status, 200, "{}", first.text());
    let mut again: Vec<(&str, String)> = sent;
    again.extend(json_type());
    let r = s.call("POST", AUTH, &again, &body).await;
    assert_eq!(r.status, 401, "replay: {}", r.text());
}

#[tokio::test]
async fn a_nonce_is_used_up_even_when_a_later_step_refuses() {
    let s = Server::start(None);
    let ts = now();
    let body = b"not json".to_vec();
    let (r, sent) = s.signed_at("POST", AUTH, &body, ts, &json_type()).await;
    assert_eq!(r.status, 400, "{}", r.text());
    let mut again: Vec<(&str, String)> = sent;
    again.extend(json_type());
    let r = s.call("POST", AUTH, &again, &body).await;
    assert_eq!(r.status, 401, "{}", r.text());
}

#[tokio::test]
async fn method_media_type_body_and_path_checks() {
    let s = Server::start(None);
    let r = s.signed("GET", AUTH, b"", &[]).await;
    assert_eq!(r.status, 405, "{}", r.text());
    assert_eq!(
        r.headers.get("allow").and_then(|v| v.to_str().ok()),
        Some("POST")
    );
    let r = s.call("PUT", PUSH, &[], b"").await;
    assert_eq!(r.status, 405);

    let body = auth_body(ALICE, ALICE_TOKEN, now());
    let r = s
        .signed(
            "POST",
            AUTH,
            &body,
            &[("content-type", "text/plain".into())],
        )
        .await;
    assert_eq!(r.status, 415, "{}", r.text());
    let r = s
        .signed(
            "POST",
            AUTH,
            &body,
            &[("content-type", "application/json; charset=utf-8".into())],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());

    let r = s.signed("POST", AUTH, b"{\"v\":1,", &json_type()).await;
    assert_eq!(r.status, 400, "{}", r.text());
    let r = s
        .signed(
            "POST",
            AUTH,
            br#"{"v":1,"user":"x","token":7}"#,
            &json_type(),
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.text());
    // The body's timestamp must be the header's.
    let r = s
        .signed(
            "POST",
            AUTH,
            &auth_body(ALICE, ALICE_TOKEN, now() - 5),
            &json_type(),
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.text());
    // Refused without being read whole: the answer is 400, unless the server's close beat the
    // client's last write (a broken pipe), which refuses it as well.
    let big = vec![b' '; 70 * 1024];
    let path = s.path(AUTH);
    let sig = signing::sign(
        &gatekeeper(),
        "POST",
        &path,
        now(),
        idproof::random_nonce(),
        &big,
    );
    let mut headers: Vec<(&str, String)> = sig.pairs().to_vec();
    headers.extend(json_type());
    match s.try_call("POST", &path, &headers, &big).await {
        Ok(r) => {
            assert_eq!(r.status, 400, "{}", r.text());
            assert_eq!(r.json()["error"], json!("body_too_large"));
        }
        // hyper names the failed write, not always its cause (a broken pipe, a reset).
        Err(e) => assert!(
            e.contains("roken pipe") || e.contains("reset") || e.contains("writing a body"),
            "{e}"
        ),
    }

    let r = s.call("POST", "/gatecheck/v1/other", &[], b"").await;
    assert_eq!(r.status, 404);
    assert!(r.json()["error"].is_string());
}

#[tokio::test]
async fn push_wakes_once_per_key() {
    let s = Server::start(None);
    let r = s.push(ALICE, ALICE_DEVICE, KEY1).await;
    assert!((200..300).contains(&r.status), "{}", r.text());
    assert_eq!(s.wakes().await.len(), 1);
    let r = s.push(ALICE, ALICE_DEVICE, KEY1).await;
    assert!((200..300).contains(&r.status), "{}", r.text());
    let wakes = s.wakes().await;
    assert_eq!(wakes.len(), 1, "{wakes:?}");
    assert_eq!(wakes[0]["device_id"], json!(ALICE_DEVICE));
    let r = s.push(ALICE, ALICE_DEVICE, KEY2).await;
    assert!((200..300).contains(&r.status), "{}", r.text());
    assert_eq!(s.wakes().await.len(), 2);

    let r = s
        .push(
            ALICE,
            BOB_DEVICE,
            "\"2d8a0b4c-5e6f-4a71-8cbd-3e4f5a6b7c8d\"",
        )
        .await;
    assert_eq!(r.status, 404, "{}", r.text());
    assert_eq!(r.json()["error"], json!("unknown_device"));

    // No key, a key without quotes, and a body with the old `to` member: 400, no wake.
    let r = s
        .signed("POST", PUSH, &push_body(ALICE, ALICE_DEVICE), &json_type())
        .await;
    assert_eq!(r.status, 400, "{}", r.text());
    let r = s
        .push(ALICE, ALICE_DEVICE, "3e9b1c5d-6f70-4b82-9dce-4f5a6b7c8d9e")
        .await;
    assert_eq!(r.status, 400, "{}", r.text());
    let mut headers = json_type();
    headers.push((
        "idempotency-key",
        "\"4fac2d6e-7081-4c93-aedf-5a6b7c8d9eaf\"".into(),
    ));
    let to =
        json!({"v":1,"to":"u@gk.example","device_id":ALICE_DEVICE,"count":1,"priority":"high"});
    let r = s
        .signed("POST", PUSH, to.to_string().as_bytes(), &headers)
        .await;
    assert_eq!(r.status, 400, "{}", r.text());

    // An unsigned push wakes nobody.
    let r = s
        .call("POST", PUSH, &headers, &push_body(ALICE, ALICE_DEVICE))
        .await;
    assert_eq!(r.status, 401);
    assert_eq!(s.wakes().await.len(), 2);
}

#[tokio::test]
async fn proofs_verify_and_make_their_device_known() {
    let s = Server::start(None);
    let device = 77;
    let r = s.push(ALICE, device, KEY1).await;
    assert_eq!(r.status, 404, "{}", r.text());

    let r = s.proof(ALICE_TOKEN, ALICE, &identity_key(), device).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let proof = gatekeeper_checks(&r.body, ALICE, device).expect("the gatekeeper accepts it");
    assert_eq!(proof.expires_at - proof.issued_at, 300);
    assert!(proof.issued_at.abs_diff(now()) <= 5);
    assert_eq!(proof.provider_id, PROVIDER_ID);

    let r = s.push(ALICE, device, KEY1).await;
    assert!((200..300).contains(&r.status), "{}", r.text());

    // Another user's token, a withdrawn token, no token.
    let r = s.proof(BOB_TOKEN, ALICE, &identity_key(), device).await;
    assert_eq!(r.status, 403);
    let r = s
        .proof("tok-alice-revoked", ALICE, &identity_key(), device)
        .await;
    assert_eq!(r.status, 403);
    let r = s
        .call("POST", "/gatecheck-test/v1/proof", &json_type(), b"{}")
        .await;
    assert_eq!(r.status, 401);
}

#[tokio::test]
async fn endpoints_live_under_the_base_path() {
    let s = Server::start_under(None, "/api/gatecheck/v1/auth-prefix");
    let r = s.auth(ALICE, ALICE_TOKEN).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["valid"], json!(true));
    let r = s
        .call(
            "POST",
            AUTH,
            &json_type(),
            &auth_body(ALICE, ALICE_TOKEN, now()),
        )
        .await;
    assert_eq!(r.status, 404);
}

#[tokio::test]
async fn hostile_connections_do_not_stop_the_server() {
    use tokio::io::AsyncWriteExt as _;
    let s = Server::start(None);
    // Garbage instead of a TLS ClientHello, a connection that says nothing, and headers too
    // large to hold.
    let mut junk = tokio::net::TcpStream::connect(("127.0.0.1", s.port))
        .await
        .expect("connect");
    let _ = junk.write_all(b"GET / HTTP/1.1\r\n\r\n").await;
    let _silent = tokio::net::TcpStream::connect(("127.0.0.1", s.port))
        .await
        .expect("connect");
    let huge = "a".repeat(64 * 1024);
    // Refused (431) before the client has finished writing, or closed under its write.
    match s.try_call("POST", AUTH, &[("x-filler", huge)], b"").await {
        Ok(r) => assert_eq!(r.status, 431),
        Err(e) => assert!(
            e.contains("roken pipe") || e.contains("reset") || e.contains("writing"),
            "{e}"
        ),
    }
    let r = s.auth(ALICE, ALICE_TOKEN).await;
    assert_eq!(r.status, 200, "{}", r.text());
}

#[test]
fn bad_arguments_exit_2_naming_the_argument() {
    let dir = scratch_dir();
    let out = command(None, "", free_port(), &dir)
        .args(["--user", "+4915112345678:tok"])
        .stdin(Stdio::null())
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--user"));

    // A client mutant has no business with the server role, nor a server mutant with the
    // client.
    let out = command(Some("no-sni"), "", free_port(), &dir)
        .stdin(Stdio::null())
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    let out = Command::new(env!("CARGO_BIN_EXE_gatecheck-reference"))
        .args(["--mutant", "server-long-proof", "client"])
        .stdin(Stdio::null())
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_end_of_stdin_stops_the_server() {
    let dir = scratch_dir();
    let mut child = command(None, "", free_port(), &dir)
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(status.and_then(|s| s.code()), Some(0));
}

// One test per mutant: the deviation it was made for, seen from outside.

#[tokio::test]
async fn mutant_server_accepts_unsigned() {
    let s = Server::start(Some("server-accepts-unsigned"));
    let ts = now();
    let headers = vec![
        ("content-type", "application/json".to_owned()),
        ("x-gatekeeper-timestamp", ts.to_string()),
    ];
    let r = s
        .call("POST", AUTH, &headers, &auth_body(ALICE, ALICE_TOKEN, ts))
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
}

#[tokio::test]
async fn mutant_server_no_replay_cache() {
    let s = Server::start(Some("server-no-replay-cache"));
    let ts = now();
    let body = auth_body(ALICE, ALICE_TOKEN, ts);
    let (first, sent) = s.signed_at("POST", AUTH, &body, ts, &json_type()).await;
    assert_eq!(first.status, 200);
    let mut again: Vec<(&str, String)> = sent;
    again.extend(json_type());
    let r = s.call("POST", AUTH, &again, &body).await;
    assert_eq!(r.status, 200, "{}", r.text());
}

#[tokio::test]
async fn mutant_server_ignores_timestamp() {
    let s = Server::start(Some("server-ignores-timestamp"));
    let old = now() - 3600;
    let (r, _) = s
        .signed_at(
            "POST",
            AUTH,
            &auth_body(ALICE, ALICE_TOKEN, old),
            old,
            &json_type(),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
}

#[tokio::test]
async fn mutant_server_error_for_invalid_token() {
    let s = Server::start(Some("server-error-for-invalid-token"));
    assert_eq!(s.auth(ALICE, "tok-alice-expired").await.status, 403);
    assert_eq!(s.auth(ALICE, ALICE_TOKEN).await.status, 200);
}

#[tokio::test]
async fn mutant_server_ignores_token_user() {
    let s = Server::start(Some("server-ignores-token-user"));
    let r = s.auth(ALICE, BOB_TOKEN).await;
    assert_eq!(r.json()["valid"], json!(true), "{}", r.text());
}

#[tokio::test]
async fn mutant_server_echoes_token() {
    let s = Server::start(Some("server-echoes-token"));
    let r = s.auth(ALICE, ALICE_TOKEN).await;
    assert!(r.text().contains(ALICE_TOKEN), "{}", r.text());
}

#[tokio::test]
async fn mutant_server_any_method() {
    let s = Server::start(Some("server-any-method"));
    let r = s
        .signed(
            "GET",
            AUTH,
            &auth_body(ALICE, ALICE_TOKEN, now()),
            &json_type(),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
}

#[tokio::test]
async fn mutant_server_conflict_on_repeat() {
    let s = Server::start(Some("server-conflict-on-repeat"));
    assert!((200..300).contains(&s.push(ALICE, ALICE_DEVICE, KEY1).await.status));
    assert_eq!(s.push(ALICE, ALICE_DEVICE, KEY1).await.status, 409);
    assert_eq!(s.wakes().await.len(), 1);
}

#[tokio::test]
async fn mutant_server_500_unknown_device() {
    let s = Server::start(Some("server-500-unknown-device"));
    assert_eq!(s.push(ALICE, 999, KEY1).await.status, 500);
}

#[tokio::test]
async fn mutant_server_proof_wrong_bytes() {
    let s = Server::start(Some("server-proof-wrong-bytes"));
    let r = s
        .proof(ALICE_TOKEN, ALICE, &identity_key(), ALICE_DEVICE)
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let err = gatekeeper_checks(&r.body, ALICE, ALICE_DEVICE).expect_err("refused");
    assert!(err.contains("signature"), "{err}");
}

#[tokio::test]
async fn mutant_server_long_proof() {
    let s = Server::start(Some("server-long-proof"));
    let r = s
        .proof(ALICE_TOKEN, ALICE, &identity_key(), ALICE_DEVICE)
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let proof = Proof::parse(&r.body).expect("parses");
    assert_eq!(proof.expires_at - proof.issued_at, 3600);
    assert!(gatekeeper_checks(&r.body, ALICE, ALICE_DEVICE).is_err());
}

#[tokio::test]
async fn mutant_server_proof_unregistered_key() {
    let s = Server::start(Some("server-proof-unregistered-key"));
    let r = s
        .proof(ALICE_TOKEN, ALICE, &identity_key(), ALICE_DEVICE)
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    // Well-formed and bound as asked, but signed by a key the provider never registered.
    let proof = Proof::parse(&r.body).expect("parses");
    assert_eq!(proof.provider_id, PROVIDER_ID);
    let err = gatekeeper_checks(&r.body, ALICE, ALICE_DEVICE).expect_err("refused");
    assert!(err.contains("signature"), "{err}");
}

#[tokio::test]
async fn mutant_server_proof_padded_nonce() {
    let s = Server::start(Some("server-proof-padded-nonce"));
    let r = s
        .proof(ALICE_TOKEN, ALICE, &identity_key(), ALICE_DEVICE)
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let nonce = r.json()["nonce"].as_str().unwrap_or_default().to_owned();
    assert_eq!((nonce.len(), nonce.ends_with("==")), (24, true), "{nonce}");
    let err = Proof::parse(&r.body).expect_err("refused");
    assert!(err.reason.contains("nonce"), "{err}");
}

#[tokio::test]
async fn mutant_server_proof_key_id() {
    let s = Server::start(Some("server-proof-key-id"));
    let r = s
        .proof(ALICE_TOKEN, ALICE, &identity_key(), ALICE_DEVICE)
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json().as_object().map(|o| o.len()), Some(10));
    let err = Proof::parse(&r.body).expect_err("refused");
    assert!(err.reason.contains("kid"), "{err}");
}

#[tokio::test]
async fn mutant_server_proof_backdated() {
    let s = Server::start(Some("server-proof-backdated"));
    let r = s
        .proof(ALICE_TOKEN, ALICE, &identity_key(), ALICE_DEVICE)
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let proof = Proof::parse(&r.body).expect("parses");
    let behind = now() - proof.issued_at;
    assert!((115..=125).contains(&behind), "issued {behind} s ago");
    assert_eq!(proof.expires_at - proof.issued_at, 300);
}

#[tokio::test]
async fn mutant_server_proof_derived_nonce() {
    let s = Server::start(Some("server-proof-derived-nonce"));
    let nonce = async || {
        let r = s
            .proof(ALICE_TOKEN, ALICE, &identity_key(), ALICE_DEVICE)
            .await;
        Proof::parse(&r.body).expect("parses").nonce
    };
    assert_eq!(nonce().await, nonce().await);
    let other = s.proof(ALICE_TOKEN, ALICE, &identity_key(), 77).await;
    assert_ne!(
        Proof::parse(&other.body).expect("parses").nonce,
        nonce().await
    );
}

#[tokio::test]
async fn mutant_server_proof_recorded_device() {
    let s = Server::start(Some("server-proof-recorded-device"));
    let r = s.proof(ALICE_TOKEN, ALICE, &identity_key(), 77).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        Proof::parse(&r.body).expect("parses").device_id,
        ALICE_DEVICE
    );
    assert!(gatekeeper_checks(&r.body, ALICE, 77).is_err());
}

#[tokio::test]
async fn mutant_server_auth_path_renamed() {
    let s = Server::start(Some("server-auth-path-renamed"));
    assert_eq!(s.auth(ALICE, ALICE_TOKEN).await.status, 404);
    let r = s
        .signed(
            "POST",
            "/gatecheck/v1/authenticate",
            &auth_body(ALICE, ALICE_TOKEN, now()),
            &json_type(),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
}

#[tokio::test]
async fn mutant_server_slow_auth() {
    let s = Server::start(Some("server-slow-auth"));
    // Refusals are as quick as ever; an accepted call is answered 2.5 s late.
    assert_eq!(s.call("POST", AUTH, &json_type(), b"{}").await.status, 401);
    let ts = now();
    let path = s.path(AUTH);
    let body = auth_body(ALICE, ALICE_TOKEN, ts);
    let sig = signing::sign(
        &gatekeeper(),
        "POST",
        &path,
        ts,
        idproof::random_nonce(),
        &body,
    );
    let mut headers: Vec<(&str, String)> = sig.pairs().to_vec();
    headers.extend(json_type());
    let started = Instant::now();
    let r = s
        .call_waiting("POST", &path, &headers, &body, Duration::from_secs(5))
        .await
        .expect("answer");
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(started.elapsed() >= Duration::from_millis(2400));
}

#[tokio::test]
async fn mutant_server_push_signature_optional() {
    let s = Server::start(Some("server-push-signature-optional"));
    let mut headers = json_type();
    headers.push(("idempotency-key", KEY1.to_owned()));
    let r = s
        .call("POST", PUSH, &headers, &push_body(ALICE, ALICE_DEVICE))
        .await;
    assert!((200..300).contains(&r.status), "{}", r.text());
    assert_eq!(s.wakes().await.len(), 1);
    // A signed push is still verified: one by another key is refused.
    let path = s.path(PUSH);
    let body = push_body(ALICE, ALICE_DEVICE);
    let stranger = SigningKey::from_bytes(&[5; 32]);
    let sig = signing::sign(
        &stranger,
        "POST",
        &path,
        now(),
        idproof::random_nonce(),
        &body,
    );
    let mut signed: Vec<(&str, String)> = sig.pairs().to_vec();
    signed.extend(json_type());
    signed.push(("idempotency-key", KEY2.to_owned()));
    assert_eq!(s.call("POST", &path, &signed, &body).await.status, 401);
}

#[tokio::test]
async fn mutant_server_push_wide_window() {
    let s = Server::start(Some("server-push-wide-window"));
    let old = now() - 120;
    let mut headers = json_type();
    headers.push(("idempotency-key", KEY1.to_owned()));
    let (r, _) = s
        .signed_at("POST", PUSH, &push_body(ALICE, ALICE_DEVICE), old, &headers)
        .await;
    assert!((200..300).contains(&r.status), "{}", r.text());
    // The authentication endpoint keeps the 60 s window.
    let (r, _) = s
        .signed_at(
            "POST",
            AUTH,
            &auth_body(ALICE, ALICE_TOKEN, old),
            old,
            &json_type(),
        )
        .await;
    assert_eq!(r.status, 401, "{}", r.text());
}

#[tokio::test]
async fn mutant_server_slow_push() {
    let s = Server::start(Some("server-slow-push"));
    let ts = now();
    let path = s.path(PUSH);
    let body = push_body(ALICE, ALICE_DEVICE);
    let sig = signing::sign(
        &gatekeeper(),
        "POST",
        &path,
        ts,
        idproof::random_nonce(),
        &body,
    );
    let mut headers: Vec<(&str, String)> = sig.pairs().to_vec();
    headers.extend(json_type());
    headers.push(("idempotency-key", KEY1.to_owned()));
    let started = Instant::now();
    let r = s
        .call_waiting("POST", &path, &headers, &body, Duration::from_secs(10))
        .await
        .expect("answer");
    assert!((200..300).contains(&r.status), "{}", r.text());
    assert!(started.elapsed() >= Duration::from_secs(6));
}

#[test]
fn the_ca_is_written_before_the_port_opens() {
    // Server::start reads ca.pem as soon as the port accepts; that it never fails is the
    // check. This test only makes sure a stale file cannot satisfy it.
    let s = Server::start(None);
    let meta = std::fs::metadata(s.dir.join("ca.pem")).expect("ca.pem");
    assert!(meta.len() > 100);
    let leftovers = std::fs::read_dir(&s.dir)
        .expect("dir")
        .filter_map(Result::ok)
        .filter(|e| e.file_name() != "ca.pem")
        .count();
    assert_eq!(leftovers, 0);
}

#[tokio::test]
async fn slow_senders_are_cut_off_and_others_served_meanwhile() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let s = Server::start(None);
    let open = |head: &'static [u8]| {
        let tls = Arc::clone(&s.tls);
        let port = s.port;
        async move {
            let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .expect("connect");
            let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
            let mut stream = tokio_rustls::TlsConnector::from(tls)
                .connect(name, tcp)
                .await
                .expect("TLS");
            stream.write_all(head).await.expect("write");
            stream.flush().await.expect("flush");
            let started = Instant::now();
            let mut got = Vec::new();
            let _ = tokio::time::timeout(Duration::from_secs(12), stream.read_to_end(&mut got))
                .await
                .expect("the server closes a slow connection");
            (
                started.elapsed(),
                String::from_utf8_lossy(&got).into_owned(),
            )
        }
    };
    // Headers that never end, and a body that never comes.
    let head = open(b"POST /gatecheck/v1/auth HTTP/1.1\r\nHost: localhost\r\n");
    let body = open(
        b"POST /gatecheck/v1/auth HTTP/1.1\r\nHost: localhost\r\nContent-Length: 100\r\n\r\n{",
    );
    let others = async {
        tokio::time::sleep(Duration::from_millis(500)).await;
        s.auth(ALICE, ALICE_TOKEN).await.status
    };
    let ((head_after, _), (body_after, body_text), status) = tokio::join!(head, body, others);
    assert_eq!(status, 200);
    assert!(head_after < Duration::from_secs(10), "{head_after:?}");
    assert!(body_after < Duration::from_secs(10), "{body_after:?}");
    assert!(body_text.starts_with("HTTP/1.1 408"), "{body_text}");
}
