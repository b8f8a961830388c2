//! The media proxy over real sockets: the harness's media host (real TLS, its faults) and a
//! scripted TLS upstream that answers exactly the bytes a test gives it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::*;
use crate::media::client::Timeouts;
use crate::media::host::{Fault, HostConfig, MediaHost};
use crate::media::sink::{DecryptSink, Discard, encrypt_file, write_random_file};
use crate::media::testutil::TempDir;
use crate::media::{MediaKey, aesgcm::hex_lower};
use crate::transport::{TlsIdentity, server_config};

/// What a scripted upstream does after its answer's bytes.
#[derive(Clone)]
enum Then {
    Close,
    /// Keeps the connection open without a byte more.
    Hang,
    /// Writes chunked data for ever (or until the proxy goes away).
    Endless,
}

struct Upstream {
    addr: std::net::SocketAddr,
    ca_pem: String,
    heads: Arc<Mutex<Vec<String>>>,
    written: Arc<AtomicU64>,
    _task: tokio::task::JoinHandle<()>,
}

impl Upstream {
    fn url(&self, path: &str) -> String {
        format!("https://{}{path}", self.addr)
    }

    fn heads(&self) -> Vec<String> {
        self.heads.lock().unwrap().clone()
    }
}

/// A TLS server that reads each request head and answers `answer(head)`.
async fn upstream(answer: impl Fn(&str) -> (Vec<u8>, Then) + Send + Sync + 'static) -> Upstream {
    let id = TlsIdentity::try_generate("127.0.0.1").unwrap();
    let mut tls = (*server_config(&id, false)).clone();
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let heads = Arc::new(Mutex::new(Vec::new()));
    let written = Arc::new(AtomicU64::new(0));
    let answer = Arc::new(answer);
    let (h, w) = (heads.clone(), written.clone());
    let task = tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let (acceptor, heads, written, answer) =
                (acceptor.clone(), h.clone(), w.clone(), answer.clone());
            tokio::spawn(async move {
                let Ok(mut s) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf).await {
                        Ok(n) if n > 0 => head.extend_from_slice(&buf[..n]),
                        _ => return,
                    }
                }
                let head = String::from_utf8_lossy(&head).into_owned();
                heads.lock().unwrap().push(head.clone());
                let (bytes, then) = answer(&head);
                if s.write_all(&bytes).await.is_err() {
                    return;
                }
                written.fetch_add(bytes.len() as u64, Ordering::SeqCst);
                match then {
                    Then::Close => {
                        let _ = s.shutdown().await;
                    }
                    Then::Hang => tokio::time::sleep(Duration::from_secs(30)).await,
                    Then::Endless => {
                        let chunk = format!("{:x}\r\n{}\r\n", 16384, "e".repeat(16384));
                        while s.write_all(chunk.as_bytes()).await.is_ok() {
                            written.fetch_add(16384, Ordering::SeqCst);
                        }
                    }
                }
            });
        }
    });
    Upstream {
        addr,
        ca_pem: id.ca_pem,
        heads,
        written,
        _task: task,
    }
}

fn config(ca_pem: &str) -> ProxyConfig {
    let mut c = ProxyConfig::new(ca_pem);
    c.upstream = Timeouts {
        connect: Duration::from_secs(2),
        header: Duration::from_millis(800),
        idle: Duration::from_millis(800),
    };
    c
}

fn answer(head: &str, body: &[u8]) -> Vec<u8> {
    let mut v = format!("HTTP/1.1 {head}\r\n\r\n").into_bytes();
    v.extend_from_slice(body);
    v
}

fn requirements(f: &ProxyFetch) -> Vec<&str> {
    f.deviations
        .iter()
        .filter_map(|d| d.requirement.as_deref())
        .collect()
}

#[tokio::test]
async fn objects_pass_through_exactly_with_nothing_but_host_upstream() {
    let dir = TempDir::new("proxy-host");
    let host = MediaHost::start(HostConfig::new(dir.path())).await.unwrap();
    let proxy = MediaProxy::start(config(host.ca_pem())).await.unwrap();
    let (plain, object) = (dir.path().join("p"), dir.path().join("o"));
    let sha = write_random_file(&plain, 500_000, 1).unwrap();
    let key = MediaKey::generate();
    encrypt_file(&plain, &object, &key).unwrap();
    let info = host.add_object(&object, Fault::None).await.unwrap();

    let mut sink = DecryptSink::new(&key);
    let (got, record) = proxy.fetch(&info.url, None, &mut sink).await.unwrap();
    assert_eq!(got.status, 200);
    assert!(got.complete(), "{got:?}");
    assert_eq!(got.header("content-length"), Some("500016"));
    assert_eq!(got.header("content-type"), Some("application/octet-stream"));
    let opened = sink.finish().unwrap();
    assert_eq!((opened.size, opened.sha256), (500_000, sha));
    let r = record.unwrap();
    assert_eq!(r.url, info.url);
    assert_eq!((r.upstream_status, r.answered), (Some(200), 200));
    assert_eq!(
        (r.delivered, r.outcome.clone()),
        (500_016, Outcome::Complete)
    );
    assert!(r.deviations.is_empty(), "{:?}", r.deviations);
    let host_header = ("host".to_string(), host.addr().to_string());
    assert_eq!(r.sent_headers, vec![host_header.clone()]);
    // MEDIA-16: the provider's host saw nothing but Host.
    let seen = host.requests().pop().unwrap();
    assert_eq!(seen.headers, vec![host_header]);
    assert_eq!(seen.path, format!("/m/{}", info.token));
    assert!(host.deviations().is_empty());
    assert_eq!(proxy.fetches().len(), 1);
}

#[tokio::test]
async fn host_faults_are_recorded_against_their_requirements() {
    let dir = TempDir::new("proxy-faults");
    let host = MediaHost::start(HostConfig::new(dir.path())).await.unwrap();
    let proxy = MediaProxy::start(config(host.ca_pem())).await.unwrap();
    let object = dir.path().join("o");
    write_random_file(&object, 200_000, 2).unwrap();

    // truncate: the caller's body breaks off too; MEDIA-5.
    let cut = host.add_object(&object, Fault::Truncate).await.unwrap();
    let (got, r) = proxy
        .fetch(&cut.url, None, &mut Discard::default())
        .await
        .unwrap();
    assert_eq!(got.status, 200);
    assert!(!got.complete());
    assert_eq!(got.bytes, 100_000);
    let r = r.unwrap();
    assert!(matches!(r.outcome, Outcome::Failed(_)), "{:?}", r.outcome);
    assert_eq!(requirements(&r), ["MEDIA-5"]);
    assert_eq!(r.delivered, 100_000);

    // redirect: 502, MEDIA-22, not followed.
    let before = host.requests().len();
    let moved = host.add_object(&object, Fault::Redirect).await.unwrap();
    let (got, r) = proxy
        .fetch(&moved.url, None, &mut Discard::default())
        .await
        .unwrap();
    assert_eq!(got.status, 502);
    let r = r.unwrap();
    assert_eq!(requirements(&r), ["MEDIA-22"]);
    assert_eq!((r.upstream_status, r.answered), (Some(302), 502));
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        host.requests().len(),
        before + 1,
        "one GET, the redirect not followed"
    );
    assert!(host.events().is_empty());

    // status: 404 passed on, nothing to judge here.
    let gone = host.add_object(&object, Fault::Status).await.unwrap();
    let (got, r) = proxy
        .fetch(&gone.url, None, &mut Discard::default())
        .await
        .unwrap();
    assert_eq!(got.status, 404);
    assert!(r.unwrap().deviations.is_empty());

    // announce: refused without reading the body; MEDIA-23.
    let big = host.add_object(&object, Fault::Announce).await.unwrap();
    let (got, r) = proxy
        .fetch(&big.url, None, &mut Discard::default())
        .await
        .unwrap();
    assert_eq!((got.status, got.bytes), (502, got.bytes));
    let r = r.unwrap();
    assert_eq!(requirements(&r), ["MEDIA-23"]);
    assert_eq!(r.delivered, 0);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let written = host.requests().pop().unwrap().body_bytes;
    assert!(written < 4 << 20, "the host wrote {written} bytes");
}

#[tokio::test]
async fn bad_headers_are_deviations_and_the_body_still_passes() {
    let up = upstream(|head| {
        let path = head.split_whitespace().nth(1).unwrap_or("").to_owned();
        let bytes = match path.as_str() {
            "/cookie" => answer(
                "200 OK\r\ncontent-type: application/octet-stream\r\ncontent-length: 3\r\nset-cookie: id=1",
                b"abc",
            ),
            "/typed" => answer(
                "200 OK\r\ncontent-type: image/png\r\ncontent-length: 3\r\ncontent-disposition: attachment; filename=\"cat.png\"",
                b"abc",
            ),
            "/gzip" => answer(
                "200 OK\r\ncontent-type: application/octet-stream\r\ncontent-length: 3\r\ncontent-encoding: gzip",
                b"abc",
            ),
            "/chunked" => answer(
                "200 OK\r\ncontent-type: application/octet-stream\r\ntransfer-encoding: chunked",
                b"3\r\nabc\r\n0\r\n\r\n",
            ),
            "/created" => answer("201 Created\r\ncontent-length: 0", b""),
            "/teapot" => answer("418 Teapot\r\ncontent-length: 0", b""),
            _ => answer(
                "200 OK\r\ncontent-type: Application/Octet-Stream\r\ncontent-length: 3",
                b"abc",
            ),
        };
        (bytes, Then::Close)
    })
    .await;
    let proxy = MediaProxy::start(config(&up.ca_pem)).await.unwrap();
    let cases: [(&str, u16, &[&str]); 7] = [
        ("/fine", 200, &[]),
        ("/cookie", 200, &["MEDIA-6"]),
        ("/typed", 200, &["MEDIA-7", "MEDIA-7"]),
        ("/gzip", 200, &["MEDIA-5"]),
        ("/chunked", 200, &["MEDIA-5"]),
        ("/created", 502, &["MEDIA-5"]),
        ("/teapot", 502, &[]),
    ];
    for (path, status, want) in cases {
        let mut body = Vec::new();
        let (got, r) = proxy.fetch(&up.url(path), None, &mut body).await.unwrap();
        let r = r.unwrap();
        assert_eq!(got.status, status, "{path}");
        assert_eq!(requirements(&r), want, "{path}: {:?}", r.deviations);
        if status == 200 {
            assert_eq!(body, b"abc", "{path}");
            assert!(got.complete(), "{path}");
            assert_eq!(r.outcome, Outcome::Complete, "{path}");
            assert_eq!(got.header("set-cookie"), None, "never passed on");
            assert_eq!(got.header("content-disposition"), None);
            assert_eq!(got.header("content-type"), Some("application/octet-stream"));
        }
    }
    // What went upstream each time: the request line, Host, nothing else.
    for head in up.heads() {
        let lines: Vec<&str> = head.trim_end().split("\r\n").collect();
        assert_eq!(lines.len(), 2, "{head}");
        assert!(lines[0].starts_with("GET /") && lines[0].ends_with(" HTTP/1.1"));
        assert_eq!(lines[1].to_ascii_lowercase(), format!("host: {}", up.addr));
    }
}

#[tokio::test]
async fn ranges_are_forwarded_and_206_answers_checked() {
    // The object is the 26 letters; the upstream answers what the path says.
    let up = upstream(|head| {
        let path = head.split_whitespace().nth(1).unwrap_or("").to_owned();
        let bytes = match path.as_str() {
            "/right" => answer(
                "206 Partial Content\r\ncontent-type: application/octet-stream\r\ncontent-range: bytes 2-4/26\r\ncontent-length: 3",
                b"cde",
            ),
            "/wrong" => answer(
                "206 Partial Content\r\ncontent-type: application/octet-stream\r\ncontent-range: bytes 0-2/26\r\ncontent-length: 3",
                b"abc",
            ),
            "/short" => answer(
                "206 Partial Content\r\ncontent-type: application/octet-stream\r\ncontent-range: bytes 2-4/26\r\ncontent-length: 2",
                b"cd",
            ),
            "/norange" => answer(
                "206 Partial Content\r\ncontent-type: application/octet-stream\r\ncontent-length: 3",
                b"cde",
            ),
            _ => answer(
                "200 OK\r\ncontent-type: application/octet-stream\r\ncontent-length: 26",
                b"abcdefghijklmnopqrstuvwxyz",
            ),
        };
        (bytes, Then::Close)
    })
    .await;
    let proxy = MediaProxy::start(config(&up.ca_pem)).await.unwrap();
    let range = Some("bytes=2-4");
    let mut body = Vec::new();
    let (got, r) = proxy
        .fetch(&up.url("/right"), range, &mut body)
        .await
        .unwrap();
    assert_eq!((got.status, body.as_slice()), (206, &b"cde"[..]));
    assert_eq!(got.header("content-range"), Some("bytes 2-4/26"));
    let r = r.unwrap();
    assert!(r.deviations.is_empty(), "{:?}", r.deviations);
    assert_eq!(r.range.as_deref(), Some("bytes=2-4"));
    assert_eq!(r.sent_headers[1], ("range".into(), "bytes=2-4".into()));

    let (_, r) = proxy
        .fetch(&up.url("/wrong"), range, &mut Vec::new())
        .await
        .unwrap();
    assert_eq!(requirements(&r.unwrap()), ["MEDIA-17"]);
    let (_, r) = proxy
        .fetch(&up.url("/short"), range, &mut Vec::new())
        .await
        .unwrap();
    assert_eq!(requirements(&r.unwrap()), ["MEDIA-17"]);
    let (_, r) = proxy
        .fetch(&up.url("/norange"), range, &mut Vec::new())
        .await
        .unwrap();
    assert_eq!(requirements(&r.unwrap()), ["MEDIA-17"]);
    // A 206 nobody asked for: MEDIA-5. A 200 to a range: fine (ignored).
    let (got, r) = proxy
        .fetch(&up.url("/right"), None, &mut Vec::new())
        .await
        .unwrap();
    assert_eq!(
        (got.status, requirements(&r.unwrap())),
        (502, vec!["MEDIA-5"])
    );
    let mut body = Vec::new();
    let (got, r) = proxy
        .fetch(&up.url("/full"), range, &mut body)
        .await
        .unwrap();
    assert_eq!((got.status, body.len()), (200, 26));
    assert!(r.unwrap().deviations.is_empty());
    let heads = up.heads();
    assert!(
        heads[0]
            .to_ascii_lowercase()
            .contains("\r\nrange: bytes=2-4\r\n"),
        "{}",
        heads[0]
    );
    assert!(
        !heads[4].to_ascii_lowercase().contains("range"),
        "{}",
        heads[4]
    );

    assert_eq!(
        RangeRequest::parse("bytes=-5").unwrap().resolve(26),
        Some((21, 25))
    );
    assert_eq!(
        RangeRequest::parse("bytes=20-").unwrap().resolve(26),
        Some((20, 25))
    );
    assert_eq!(
        RangeRequest::parse("bytes=20-99").unwrap().resolve(26),
        Some((20, 25))
    );
    assert_eq!(
        RangeRequest::parse("bytes=30-40").unwrap().resolve(26),
        None
    );
    for bad in [
        "bytes=1-2,4-5",
        "bytes=5-1",
        "items=1-2",
        "bytes=-0",
        "bytes=-",
        "bytes=a-b",
    ] {
        assert_eq!(RangeRequest::parse(bad), None, "{bad}");
    }
    assert_eq!(ContentRange::parse("bytes 2-4/*"), None);
    assert_eq!(ContentRange::parse("bytes 4-2/26"), None);
    assert_eq!(ContentRange::parse("bytes 2-26/26"), None);
}

#[tokio::test]
async fn upstream_failures_answer_502_and_stalls_end() {
    let up = upstream(|head| {
        let path = head.split_whitespace().nth(1).unwrap_or("").to_owned();
        match path.as_str() {
            "/silent" => (Vec::new(), Then::Hang),
            "/stall" => (
                answer(
                    "200 OK\r\ncontent-type: application/octet-stream\r\ncontent-length: 1000",
                    &[1u8; 100],
                ),
                Then::Hang,
            ),
            _ => (b"garbage\r\n\r\n".to_vec(), Then::Close),
        }
    })
    .await;
    let proxy = MediaProxy::start(config(&up.ca_pem)).await.unwrap();
    for path in ["/silent", "/garbage"] {
        let (got, r) = proxy
            .fetch(&up.url(path), None, &mut Vec::new())
            .await
            .unwrap();
        assert_eq!(got.status, 502, "{path}");
        let r = r.unwrap();
        assert!(
            matches!(r.outcome, Outcome::Failed(_)),
            "{path}: {:?}",
            r.outcome
        );
        assert_eq!(r.upstream_status, None);
    }
    let started = tokio::time::Instant::now();
    let (got, r) = proxy
        .fetch(&up.url("/stall"), None, &mut Vec::new())
        .await
        .unwrap();
    assert!(started.elapsed() < Duration::from_secs(3));
    assert_eq!((got.status, got.bytes, got.complete()), (200, 100, false));
    let r = r.unwrap();
    assert_eq!(requirements(&r), ["MEDIA-5"]);
    assert!(
        r.deviations[0].got.contains("100 bytes, then silence"),
        "{:?}",
        r.deviations
    );

    // Another CA's certificate, and nobody listening: 502.
    let other = upstream(|_| (Vec::new(), Then::Close)).await;
    let (got, r) = proxy
        .fetch(&other.url("/x"), None, &mut Vec::new())
        .await
        .unwrap();
    assert_eq!(got.status, 502);
    assert!(matches!(r.unwrap().outcome, Outcome::Failed(ref why) if why.contains("TLS")));
    drop(other._task);
    let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let nobody = format!("https://{}/x", closed.local_addr().unwrap());
    drop(closed);
    let (got, _) = proxy.fetch(&nobody, None, &mut Vec::new()).await.unwrap();
    assert_eq!(got.status, 502);
}

#[tokio::test]
async fn bodies_stop_past_the_limit_and_a_slow_caller_holds_the_provider_back() {
    let up = upstream(|_| {
        (
            answer(
                "200 OK\r\ncontent-type: application/octet-stream\r\ntransfer-encoding: chunked",
                b"",
            ),
            Then::Endless,
        )
    })
    .await;
    let mut c = config(&up.ca_pem);
    c.max_object = 1 << 20;
    let proxy = MediaProxy::start(c).await.unwrap();
    let (got, r) = proxy
        .fetch(&up.url("/endless"), None, &mut Discard::default())
        .await
        .unwrap();
    assert!(!got.complete());
    assert!(got.bytes <= 1 << 20, "{}", got.bytes);
    let r = r.unwrap();
    assert_eq!(requirements(&r), ["MEDIA-5", "MEDIA-23"]);

    // Without the small limit, a caller that stops reading stops the provider too: what it
    // wrote stops growing long before 100 MiB.
    let proxy = MediaProxy::start(config(&up.ca_pem)).await.unwrap();
    let mut s = TcpStream::connect(proxy.addr()).await.unwrap();
    let target = proxy_url("", &up.url("/endless"));
    s.write_all(format!("GET {target} HTTP/1.1\r\nhost: x\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut head = [0u8; 256];
    let _ = s.read(&mut head).await.unwrap();
    let before = up.written.load(Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let early = up.written.load(Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let late = up.written.load(Ordering::SeqCst);
    assert!(late < 100 << 20, "{late}");
    assert!(
        late - early < 2 << 20,
        "still growing: {early} then {late} (from {before})"
    );
}

#[tokio::test]
async fn bad_requests_to_the_proxy() {
    let up = upstream(|_| (Vec::new(), Then::Close)).await;
    let proxy = MediaProxy::start(config(&up.ca_pem)).await.unwrap();
    let addr = proxy.addr();
    let raw = |req: String| async move {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(req.as_bytes()).await.unwrap();
        let mut out = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(2), s.read_to_end(&mut out)).await;
        String::from_utf8_lossy(&out).into_owned()
    };
    let get = |target: &str, extra: &str| {
        format!("GET {target} HTTP/1.1\r\nhost: x\r\n{extra}connection: close\r\n\r\n")
    };
    let url = crate::media::percent_encode(&up.url("/x"));
    for (req, status) in [
        (get("/v1/fetch", ""), "400"),
        (
            get("/v1/fetch?url=http%3A%2F%2F127.0.0.1%3A1%2Fx", ""),
            "400",
        ),
        (
            get("/v1/fetch?url=https%3A%2F%2Fexample.org%2Fx", ""),
            "400",
        ),
        (
            get(&format!("/v1/fetch?url={url}"), "range: bytes=0-1,5-6\r\n"),
            "400",
        ),
        (get("/other", ""), "404"),
        (
            format!(
                "POST /v1/fetch?url={url} HTTP/1.1\r\nhost: x\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
            ),
            "405",
        ),
    ] {
        let got = raw(req.clone()).await;
        assert!(
            got.starts_with(&format!("HTTP/1.1 {status}")),
            "{req}: {got}"
        );
    }
    assert!(proxy.fetches().is_empty(), "none of them fetched anything");
    assert!(up.heads().is_empty());
    let _ = hex_lower(&[0]);
}
