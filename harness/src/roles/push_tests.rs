//! Tests of the push sender against real loopback servers written here in raw HTTP/1.1 (one
//! behind TLS), each following a script of answers, one per connection, so that 5xx runs,
//! silence, redirects and endless bodies can be served exactly as a hostile provider would.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ed25519_dalek::SigningKey;
use rand::SeedableRng as _;
use rand_chacha::ChaCha8Rng;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::*;
use crate::http::signing::{ReplayCache, verify};

const KEY_ID: &str = "0b6e8f2a-3c4d-4e5f-8a9b-1c2d3e4f5a6b";

fn key() -> SigningKey {
    SigningKey::from_bytes(&[9; 32])
}

fn rng() -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(7)
}

fn push() -> Push {
    Push {
        user: "+4915112345678".into(),
        device_id: 1_834_299_211,
        count: 3,
        priority: Priority::High,
    }
}

fn quick(delays: usize) -> RetryPolicy {
    RetryPolicy {
        attempt_timeout: Duration::from_secs(3),
        delays: vec![Duration::from_millis(5); delays],
    }
}

fn far() -> Instant {
    Instant::now() + Duration::from_secs(30)
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// What the test server does with one connection's request.
#[derive(Debug, Clone, Copy)]
enum Answer {
    /// A complete answer with this status (and a `Location` for a 3xx).
    Status(u16),
    /// Reads the request and says nothing until the client goes away.
    Silent,
    /// A 200 head and then a chunked body that never ends.
    EndlessBody,
}

/// One request as the server read it: header names in lowercase.
#[derive(Debug, Clone)]
struct Received {
    method: String,
    target: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Received {
    fn header(&self, name: &str) -> Option<String> {
        let mut values = self.headers.iter().filter(|(k, _)| k == name);
        let first = values.next().map(|(_, v)| v.clone());
        assert!(values.next().is_none(), "header {name} sent twice");
        first
    }
}

struct Server {
    base_url: String,
    received: Arc<Mutex<Vec<Received>>>,
    task: JoinHandle<()>,
}

impl Server {
    fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A server on 127.0.0.1 answering its n-th connection with `script[n]` (the last entry
/// for every connection past the end), over TLS when `tls` is given.
async fn serve(
    script: Vec<Answer>,
    tls: Option<Arc<rustls::ServerConfig>>,
    prefix: &str,
) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let scheme = if tls.is_some() { "https" } else { "http" };
    let received = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&received);
    let task = tokio::spawn(async move {
        for n in 0.. {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let answer = script[n.min(script.len() - 1)];
            let log = Arc::clone(&log);
            let tls = tls.clone();
            tokio::spawn(async move {
                match tls {
                    None => handle(tcp, answer, log).await,
                    Some(config) => {
                        let acceptor = tokio_rustls::TlsAcceptor::from(config);
                        if let Ok(stream) = acceptor.accept(tcp).await {
                            handle(stream, answer, log).await;
                        }
                    }
                }
            });
        }
    });
    Server {
        base_url: format!("{scheme}://127.0.0.1:{port}{prefix}"),
        received,
        task,
    }
}

/// Reads one request (head up to 64 KiB, then `content-length` bytes), logs it and answers.
async fn handle<S>(mut s: S, answer: Answer, log: Arc<Mutex<Vec<Received>>>)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut data = Vec::new();
    let mut buf = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = data.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        match s.read(&mut buf).await {
            Ok(n) if n > 0 && data.len() < 64 * 1024 => data.extend_from_slice(&buf[..n]),
            _ => return,
        }
    };
    let head = String::from_utf8_lossy(&data[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let mut start = lines.next().unwrap_or("").split(' ');
    let method = start.next().unwrap_or("").to_string();
    let target = start.next().unwrap_or("").to_string();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let length: usize = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = data[head_end..].to_vec();
    while body.len() < length {
        match s.read(&mut buf).await {
            Ok(n) if n > 0 => body.extend_from_slice(&buf[..n]),
            _ => return,
        }
    }
    log.lock().unwrap().push(Received {
        method,
        target,
        headers,
        body,
    });
    match answer {
        Answer::Status(status) => {
            let extra = match status {
                204 | 304 => "",
                300..=399 => "location: http://127.0.0.1:1/elsewhere\r\ncontent-length: 0\r\n",
                _ => "content-length: 0\r\n",
            };
            let reply = format!("HTTP/1.1 {status} Scripted\r\n{extra}connection: close\r\n\r\n");
            let _ = s.write_all(reply.as_bytes()).await;
            let _ = s.shutdown().await;
        }
        Answer::Silent => while matches!(s.read(&mut buf).await, Ok(n) if n > 0) {},
        Answer::EndlessBody => {
            let head = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n";
            if s.write_all(head).await.is_err() {
                return;
            }
            let mut chunk = b"4000\r\n".to_vec();
            chunk.extend_from_slice(&[b'z'; 0x4000]);
            chunk.extend_from_slice(b"\r\n");
            while s.write_all(&chunk).await.is_ok() {}
        }
    }
}

/// Checks what every push request must carry (PUSH-12) and that its signature verifies over
/// `path`; one replay cache across all of them, so a reused nonce would fail here.
fn check_signed(received: &[Received], path: &str) {
    let vk = key().verifying_key();
    let mut cache = ReplayCache::new();
    for r in received {
        assert_eq!(r.method, "POST");
        assert_eq!(r.target, path);
        assert_eq!(
            r.header("content-type").as_deref(),
            Some("application/json")
        );
        assert_eq!(
            r.header("idempotency-key"),
            Some(format!("\"{KEY_ID}\"")),
            "a structured-field string"
        );
        assert_eq!(r.body, push_body(&push()));
        let lookup = |name: &str| r.header(name);
        verify(&vk, "POST", path, &lookup, &r.body, now(), &mut cache)
            .unwrap_or_else(|e| panic!("the signature does not verify: {e}"));
    }
}

async fn run(server: &Server, policy: &RetryPolicy) -> PushReport {
    let target = PushTarget {
        base_url: server.base_url.clone(),
        tls: None,
    };
    deliver(&target, &key(), &push(), KEY_ID, policy, &mut rng(), far()).await
}

fn statuses(report: &PushReport) -> Vec<Option<u16>> {
    report.attempts.iter().map(|a| a.status).collect()
}

#[tokio::test]
async fn a_2xx_on_the_first_attempt_is_one_attempt() {
    let server = serve(vec![Answer::Status(200)], None, "").await;
    let report = run(&server, &quick(4)).await;
    assert_eq!(report.outcome, PushOutcome::Accepted(200));
    assert_eq!(statuses(&report), [Some(200)]);
    assert_eq!(report.attempts[0].error, None);
    let received = server.received();
    assert_eq!(received.len(), 1);
    check_signed(&received, "/gatecheck/v1/push");
    assert_eq!(
        received[0].header("x-gatekeeper-nonce").as_deref(),
        Some(report.attempts[0].nonce.as_str())
    );
}

#[tokio::test]
async fn a_5xx_is_retried_with_the_same_key_and_body_and_a_fresh_signature() {
    let script = vec![
        Answer::Status(503),
        Answer::Status(503),
        Answer::Status(204),
    ];
    let server = serve(script, None, "").await;
    let policy = RetryPolicy {
        attempt_timeout: Duration::from_secs(3),
        delays: vec![Duration::from_millis(40); 4],
    };
    let report = run(&server, &policy).await;
    assert_eq!(report.outcome, PushOutcome::Accepted(204));
    assert_eq!(statuses(&report), [Some(503), Some(503), Some(204)]);
    assert!(report.attempts.iter().all(|a| a.error.is_none()));
    // The delay separates the attempts.
    for pair in report.attempts.windows(2) {
        let gap = pair[1].started - pair[0].started;
        assert!(gap >= Duration::from_millis(40), "{gap:?}");
    }
    let received = server.received();
    assert_eq!(received.len(), 3);
    check_signed(&received, "/gatecheck/v1/push");
    let distinct = |name: &str| -> BTreeSet<String> {
        received.iter().filter_map(|r| r.header(name)).collect()
    };
    assert_eq!(distinct("x-gatekeeper-nonce").len(), 3);
    assert_eq!(distinct("x-gatekeeper-signature").len(), 3);
    assert_eq!(distinct("idempotency-key").len(), 1);
    let sent: Vec<String> = received
        .iter()
        .filter_map(|r| r.header("x-gatekeeper-nonce"))
        .collect();
    let reported: Vec<String> = report.attempts.iter().map(|a| a.nonce.clone()).collect();
    assert_eq!(sent, reported);
}

#[tokio::test]
async fn a_4xx_is_never_retried() {
    for status in [400, 401, 404, 409, 415, 429] {
        let server = serve(vec![Answer::Status(status)], None, "").await;
        let report = run(&server, &quick(4)).await;
        assert_eq!(report.outcome, PushOutcome::Refused(status));
        assert_eq!(statuses(&report), [Some(status)]);
        assert_eq!(server.received().len(), 1);
    }
}

#[tokio::test]
async fn always_500_is_five_attempts_and_then_given_up() {
    let server = serve(vec![Answer::Status(500)], None, "").await;
    let report = run(&server, &quick(4)).await;
    assert_eq!(report.outcome, PushOutcome::GaveUp);
    assert_eq!(statuses(&report), [Some(500); 5]);
    let received = server.received();
    assert_eq!(received.len(), 5);
    check_signed(&received, "/gatecheck/v1/push");
}

#[tokio::test]
async fn a_silent_server_times_out_and_is_retried() {
    let server = serve(
        vec![Answer::Silent, Answer::Silent, Answer::Status(202)],
        None,
        "",
    )
    .await;
    let policy = RetryPolicy {
        attempt_timeout: Duration::from_millis(250),
        delays: vec![Duration::from_millis(5); 4],
    };
    let report = run(&server, &policy).await;
    assert_eq!(report.outcome, PushOutcome::Accepted(202));
    assert_eq!(statuses(&report), [None, None, Some(202)]);
    for a in &report.attempts[..2] {
        let error = a.error.as_deref().unwrap_or_default();
        assert!(error.contains("no complete response"), "{error}");
        assert!(a.elapsed >= Duration::from_millis(240), "{:?}", a.elapsed);
        assert!(a.elapsed < Duration::from_secs(2), "{:?}", a.elapsed);
    }
    check_signed(&server.received(), "/gatecheck/v1/push");
}

#[tokio::test]
async fn a_silent_server_to_the_end_is_given_up() {
    let server = serve(vec![Answer::Silent], None, "").await;
    let policy = RetryPolicy {
        attempt_timeout: Duration::from_millis(100),
        delays: vec![Duration::from_millis(5); 2],
    };
    let report = run(&server, &policy).await;
    assert_eq!(report.outcome, PushOutcome::GaveUp);
    assert_eq!(statuses(&report), [None, None, None]);
    assert_eq!(server.received().len(), 3);
}

#[tokio::test]
async fn a_redirect_is_reported_and_neither_followed_nor_retried() {
    for status in [301, 302, 307, 308] {
        let server = serve(vec![Answer::Status(status)], None, "").await;
        let report = run(&server, &quick(4)).await;
        assert_eq!(report.outcome, PushOutcome::Redirected(status));
        assert_eq!(statuses(&report), [Some(status)]);
        assert_eq!(server.received().len(), 1);
    }
}

#[tokio::test]
async fn an_endless_body_is_a_bounded_error_and_retried() {
    let server = serve(vec![Answer::EndlessBody, Answer::Status(204)], None, "").await;
    let report = run(&server, &quick(4)).await;
    assert_eq!(report.outcome, PushOutcome::Accepted(204));
    assert_eq!(report.attempts.len(), 2);
    let error = report.attempts[0].error.as_deref().unwrap_or_default();
    assert!(error.contains("limit"), "{error}");
    assert_eq!(server.received().len(), 2);
}

#[tokio::test]
async fn a_status_that_is_no_http_status_is_retried() {
    let server = serve(vec![Answer::Status(999), Answer::Status(200)], None, "").await;
    let report = run(&server, &quick(4)).await;
    assert_eq!(report.outcome, PushOutcome::Accepted(200));
    assert_eq!(statuses(&report), [Some(999), Some(200)]);
    let error = report.attempts[0].error.as_deref().unwrap_or_default();
    assert!(error.contains("not a final HTTP status"), "{error}");
}

#[tokio::test]
async fn a_refused_connection_is_retried() {
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        l.local_addr().unwrap().port()
    };
    let target = PushTarget {
        base_url: format!("http://127.0.0.1:{port}"),
        tls: None,
    };
    let report = deliver(
        &target,
        &key(),
        &push(),
        KEY_ID,
        &quick(2),
        &mut rng(),
        far(),
    )
    .await;
    assert_eq!(report.outcome, PushOutcome::GaveUp);
    assert_eq!(report.attempts.len(), 3);
    for a in &report.attempts {
        let error = a.error.as_deref().unwrap_or_default();
        assert!(error.contains("connect"), "{error}");
    }
}

#[tokio::test]
async fn nothing_waits_past_stop() {
    // A delay longer than the time left: no retry, and no sleeping through the delay.
    let server = serve(vec![Answer::Status(500)], None, "").await;
    let policy = RetryPolicy {
        attempt_timeout: Duration::from_secs(5),
        delays: vec![Duration::from_secs(10); 4],
    };
    let target = PushTarget {
        base_url: server.base_url.clone(),
        tls: None,
    };
    let begun = Instant::now();
    let stop = begun + Duration::from_secs(2);
    let report = deliver(&target, &key(), &push(), KEY_ID, &policy, &mut rng(), stop).await;
    assert_eq!(report.outcome, PushOutcome::GaveUp);
    assert_eq!(statuses(&report), [Some(500)]);
    // Returned at once: neither the 10 s delay nor the rest of the time up to `stop`.
    assert!(
        begun.elapsed() < Duration::from_millis(1500),
        "{:?}",
        begun.elapsed()
    );

    // A silent server: the attempt's time is cut to `stop`, not the 5 s timeout.
    let server = serve(vec![Answer::Silent], None, "").await;
    let target = PushTarget {
        base_url: server.base_url.clone(),
        tls: None,
    };
    let begun = Instant::now();
    let stop = begun + Duration::from_millis(300);
    let report = deliver(
        &target,
        &key(),
        &push(),
        KEY_ID,
        &quick(4),
        &mut rng(),
        stop,
    )
    .await;
    assert_eq!(report.outcome, PushOutcome::GaveUp);
    assert_eq!(report.attempts.len(), 1);
    let took = begun.elapsed();
    assert!(
        took >= Duration::from_millis(290) && took < Duration::from_secs(2),
        "{took:?}"
    );
}

#[tokio::test]
async fn over_tls_under_a_path_prefix() {
    let identity = crate::transport::TlsIdentity::try_generate("127.0.0.1").unwrap();
    let mut config = (*crate::transport::server_config(&identity, false)).clone();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let server = serve(
        vec![Answer::Status(503), Answer::Status(200)],
        Some(Arc::new(config)),
        "/api/",
    )
    .await;
    assert!(server.base_url.starts_with("https://"));
    let target = PushTarget {
        base_url: server.base_url.clone(),
        tls: Some(crate::http::client::tls_config(&identity.ca_pem).unwrap()),
    };
    let report = deliver(
        &target,
        &key(),
        &push(),
        KEY_ID,
        &quick(4),
        &mut rng(),
        far(),
    )
    .await;
    assert_eq!(report.outcome, PushOutcome::Accepted(200));
    assert_eq!(statuses(&report), [Some(503), Some(200)]);
    let received = server.received();
    assert_eq!(received.len(), 2);
    check_signed(&received, "/api/gatecheck/v1/push");

    // Trusting another CA: the handshake fails, which is a connection failure, retried.
    let other = crate::transport::TlsIdentity::try_generate("127.0.0.1").unwrap();
    let target = PushTarget {
        base_url: server.base_url.clone(),
        tls: Some(crate::http::client::tls_config(&other.ca_pem).unwrap()),
    };
    let report = deliver(
        &target,
        &key(),
        &push(),
        KEY_ID,
        &quick(1),
        &mut rng(),
        far(),
    )
    .await;
    assert_eq!(report.outcome, PushOutcome::GaveUp);
    assert_eq!(statuses(&report), [None, None]);
    let error = report.attempts[0].error.as_deref().unwrap_or_default();
    assert!(error.contains("TLS"), "{error}");
}

#[test]
fn the_body_has_exactly_the_five_members() {
    let body = push_body(&push());
    assert_eq!(
        String::from_utf8(body.clone()).unwrap(),
        r#"{"v":1,"user":"+4915112345678","device_id":1834299211,"count":3,"priority":"high"}"#
    );
    let tricky = Push {
        user: "a\"b\\c\u{1}é".into(),
        device_id: u32::MAX,
        count: 1,
        priority: Priority::Normal,
    };
    let value: serde_json::Value = serde_json::from_slice(&push_body(&tricky)).unwrap();
    let object = value.as_object().unwrap();
    let names: BTreeSet<&str> = object.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        BTreeSet::from(["v", "user", "device_id", "count", "priority"])
    );
    assert_eq!(object["v"], 1);
    assert_eq!(object["user"], "a\"b\\c\u{1}é");
    assert_eq!(object["device_id"], u32::MAX);
    assert_eq!(object["count"], 1);
    assert_eq!(object["priority"], "normal");
}

#[test]
fn idempotency_keys_are_lowercase_v4_uuids() {
    let mut r = rng();
    let a = new_idempotency_key(&mut r);
    let b = new_idempotency_key(&mut r);
    assert_ne!(a, b);
    for k in [&a, &b] {
        assert!(is_lowercase_uuid(k), "{k}");
        assert_eq!(&k[14..15], "4", "{k}");
        assert!("89ab".contains(&k[19..20]), "{k}");
    }
    assert_eq!(
        new_idempotency_key(&mut rng()),
        a,
        "seeded: the same key again"
    );
    for bad in [
        "0B6E8F2A-3C4D-4E5F-8A9B-1C2D3E4F5A6B",
        "0b6e8f2a3c4d4e5f8a9b1c2d3e4f5a6b",
        "{0b6e8f2a-3c4d-4e5f-8a9b-1c2d3e4f5a6b}",
        "0b6e8f2a-3c4d-4e5f-8a9b-1c2d3e4f5a6g",
        "0b6e8f2a-3c4d-4e5f-8a9b1-c2d3e4f5a6b",
        "\"0b6e8f2a-3c4d-4e5f-8a9b-1c2d3e4f5a6b\"",
        "",
    ] {
        assert!(!is_lowercase_uuid(bad), "{bad}");
    }
}

#[test]
fn the_default_policy_is_push_11() {
    let p = RetryPolicy::default();
    assert_eq!(p.attempt_timeout, Duration::from_secs(5));
    assert_eq!(p.delays, [1, 2, 4, 8].map(Duration::from_secs));
}

#[tokio::test]
async fn harness_side_faults_send_nothing() {
    let server = serve(vec![Answer::Status(200)], None, "").await;
    let ok = PushTarget {
        base_url: server.base_url.clone(),
        tls: None,
    };
    let cases: Vec<(PushTarget, Push, &str, Instant, &str)> = vec![
        (
            PushTarget {
                base_url: "http://192.0.2.1:80".into(),
                tls: None,
            },
            push(),
            KEY_ID,
            far(),
            "loopback",
        ),
        (
            PushTarget {
                base_url: server.base_url.replace("http:", "https:"),
                tls: None,
            },
            push(),
            KEY_ID,
            far(),
            "no TLS settings",
        ),
        (
            ok.clone(),
            push(),
            "0B6E8F2A-3C4D-4E5F-8A9B-1C2D3E4F5A6B",
            far(),
            "lowercase UUID",
        ),
        (
            ok.clone(),
            Push { count: 0, ..push() },
            KEY_ID,
            far(),
            "at least 1",
        ),
        (ok.clone(), push(), KEY_ID, Instant::now(), "deadline"),
    ];
    for (target, p, id, stop, why) in cases {
        let report = deliver(&target, &key(), &p, id, &quick(4), &mut rng(), stop).await;
        assert!(report.attempts.is_empty(), "{why}");
        match report.outcome {
            PushOutcome::NotSent(e) => assert!(e.contains(why), "{e}"),
            other => panic!("{why}: {other:?}"),
        }
    }
    assert!(server.received().is_empty());
}
