//! The media host over real TLS on loopback: every fault, uploads, the records and their
//! deviations, and the bounds (connections, idle connections, head size, shutdown).

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::*;
use crate::media::aesgcm::GcmError;
use crate::media::client::{Fetched, Timeouts, get_to_sink};
use crate::media::sink::{DecryptSink, Sink, encrypt_file, write_random_file};
use crate::media::testutil::TempDir;

#[path = "host_upload_tests.rs"]
mod upload;

fn config(dir: &TempDir) -> HostConfig {
    let mut c = HostConfig::new(dir.path());
    c.limits.idle_timeout = Duration::from_millis(1500);
    c.limits.header_timeout = Duration::from_millis(1500);
    c.limits.handshake_timeout = Duration::from_millis(1000);
    c.identifiers = vec!["alice@provider.test".into()];
    c
}

pub(super) struct Fixture {
    pub(super) dir: TempDir,
    pub(super) host: MediaHost,
    pub(super) tls: Arc<rustls::ClientConfig>,
}

pub(super) async fn fixture(tag: &str, tweak: impl FnOnce(&mut HostConfig)) -> Fixture {
    let dir = TempDir::new(tag);
    let mut c = config(&dir);
    tweak(&mut c);
    let host = MediaHost::start(c).await.expect("the host starts");
    let tls = crate::http::client::tls_config(host.ca_pem()).unwrap();
    Fixture { dir, host, tls }
}

impl Fixture {
    /// A sealed object of `plain_len` random bytes: (its path, its key, plaintext SHA-256).
    pub(super) fn object(
        &self,
        name: &str,
        plain_len: u64,
    ) -> (std::path::PathBuf, MediaKey, String) {
        let plain = self.dir.path().join(format!("{name}.plain"));
        let object = self.dir.path().join(format!("{name}.obj"));
        let sha = write_random_file(&plain, plain_len, plain_len ^ 99).unwrap();
        let key = MediaKey::generate();
        encrypt_file(&plain, &object, &key).unwrap();
        (object, key, sha)
    }

    pub(super) async fn get(
        &self,
        url: &str,
        headers: &[(&str, &str)],
        sink: &mut dyn Sink,
    ) -> Fetched {
        let headers: Vec<(String, String)> = headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        get_to_sink(
            url,
            Some(&self.tls),
            &headers,
            crate::media::MAX_OBJECT + 1,
            &Timeouts::default(),
            sink,
        )
        .await
        .expect("a response")
    }

    /// Sends raw bytes over TLS and reads until the server closes or 2 s pass.
    pub(super) async fn raw(&self, request: &[u8]) -> String {
        let mut s = self.tls_stream().await;
        let _ = s.write_all(request).await;
        let mut out = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(2), s.read_to_end(&mut out)).await;
        String::from_utf8_lossy(&out).into_owned()
    }

    pub(super) async fn tls_stream(&self) -> tokio_rustls::client::TlsStream<TcpStream> {
        let tcp = TcpStream::connect(self.host.addr()).await.unwrap();
        let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
        tokio_rustls::TlsConnector::from(self.tls.clone())
            .connect(name, tcp)
            .await
            .unwrap()
    }

    /// The record of the last request, once its body is no longer going.
    pub(super) async fn last_settled(&self) -> HostRequest {
        for _ in 0..100 {
            let last = self.host.requests().pop().expect("a request");
            if last.complete.is_some() {
                return last;
            }
            tokio::time::sleep(Duration::from_millis(30)).await;
        }
        panic!("the last request never settled")
    }
}

#[tokio::test]
async fn objects_are_served_exactly_and_recorded() {
    let f = fixture("host-plain", |_| {}).await;
    let (path, key, sha) = f.object("a", 300_000);
    let info = f.host.add_object(&path, Fault::None).await.unwrap();
    assert_eq!(info.token.len(), 43);
    assert!(info.url.starts_with(&format!("{}/m/", f.host.base_url())));
    assert_eq!(info.size, 300_016);

    let mut sink = DecryptSink::new(&key);
    let got = f.get(&info.url, &[], &mut sink).await;
    assert_eq!(got.status, 200);
    assert!(got.complete(), "{got:?}");
    assert_eq!(got.header("content-type"), Some("application/octet-stream"));
    assert_eq!(got.header("content-length"), Some("300016"));
    assert_eq!(got.header("set-cookie"), None);
    let opened = sink.finish().unwrap();
    assert_eq!((opened.size, opened.sha256), (300_000, sha));

    let r = f.last_settled().await;
    assert_eq!((r.method.as_str(), r.status), ("GET", 200));
    assert_eq!(r.path, format!("/m/{}", info.token));
    assert_eq!(
        r.kind,
        RequestKind::Object {
            token: info.token.clone(),
            fault: Some(Fault::None)
        }
    );
    assert_eq!((r.body_bytes, r.complete), (300_016, Some(true)));
    assert!(r.header("host").is_some());
    assert!(r.deviations.is_empty(), "{:?}", r.deviations);
    assert!(f.host.deviations().is_empty());

    // HEAD: the length, no body. Unknown tokens and other methods: 404 and 405.
    let head = f
        .raw(
            format!(
                "HEAD /m/{} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
                info.token
            )
            .as_bytes(),
        )
        .await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(
        head.to_ascii_lowercase().contains("content-length: 300016"),
        "{head}"
    );
    assert!(head.ends_with("\r\n\r\n"), "{head}");
    let unknown = f
        .get(
            &format!("{}/m/nope", f.host.base_url()),
            &[],
            &mut Vec::new(),
        )
        .await;
    assert_eq!(unknown.status, 404);
    let post = f
        .raw(
            format!(
                "POST /m/{} HTTP/1.1\r\nhost: x\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                info.token
            )
            .as_bytes(),
        )
        .await;
    assert!(post.starts_with("HTTP/1.1 405"), "{post}");
    assert!(f.host.remove_object(&info.token));
    assert_eq!(f.get(&info.url, &[], &mut Vec::new()).await.status, 404);
}

#[tokio::test]
async fn each_fault_does_what_the_design_says() {
    let f = fixture("host-faults", |_| {}).await;
    let (path, key, _) = f.object("b", 100_000);
    let original = std::fs::read(&path).unwrap();
    let size = original.len() as u64;

    // flip-tag: every byte but the last as it is; the tag fails.
    let flip = f.host.add_object(&path, Fault::FlipTag).await.unwrap();
    let mut body = Vec::new();
    let got = f.get(&flip.url, &[], &mut body).await;
    assert_eq!((got.status, body.len() as u64), (200, size));
    assert_eq!(body[..body.len() - 1], original[..original.len() - 1]);
    assert_eq!(body[body.len() - 1], original[original.len() - 1] ^ 1);
    assert_eq!(
        crate::media::aesgcm::open(&key, &body),
        Err(GcmError::BadTag)
    );

    // truncate: the full Content-Length, half the bytes, then the connection closes.
    let cut = f.host.add_object(&path, Fault::Truncate).await.unwrap();
    let mut body = Vec::new();
    let got = f.get(&cut.url, &[], &mut body).await;
    assert_eq!(
        got.header("content-length"),
        Some(size.to_string().as_str())
    );
    assert_eq!(body.len() as u64, size / 2);
    assert!(!got.complete(), "{got:?}");
    assert_eq!(body[..], original[..body.len()]);
    let r = f.last_settled().await;
    assert_eq!((r.body_bytes, r.complete), (size / 2, Some(false)));

    // swap: the same size, other bytes, which open under another key only.
    let swap = f.host.add_object(&path, Fault::Swap).await.unwrap();
    let mut body = Vec::new();
    let got = f.get(&swap.url, &[], &mut body).await;
    assert_eq!((got.status, body.len() as u64), (200, size));
    assert_ne!(body, original);
    assert_eq!(
        crate::media::aesgcm::open(&key, &body),
        Err(GcmError::BadTag)
    );

    // status: 404.
    let gone = f.host.add_object(&path, Fault::Status).await.unwrap();
    assert_eq!(f.get(&gone.url, &[], &mut Vec::new()).await.status, 404);

    // set_fault changes an object in place.
    f.host.set_fault(&gone.token, Fault::None).await.unwrap();
    let mut body = Vec::new();
    assert_eq!(f.get(&gone.url, &[], &mut body).await.status, 200);
    assert_eq!(body, original);
    assert!(f.host.set_fault("nope", Fault::None).await.is_err());
    assert_eq!(Fault::parse("flip-tag"), Some(Fault::FlipTag));
    assert_eq!(Fault::parse("announce").map(Fault::name), Some("announce"));
    assert_eq!(Fault::parse("other"), None);
}

#[tokio::test]
async fn a_redirect_points_to_http_and_following_it_is_media_15() {
    let f = fixture("host-redirect", |_| {}).await;
    let (path, _, _) = f.object("c", 1000);
    let info = f.host.add_object(&path, Fault::Redirect).await.unwrap();
    let got = f.get(&info.url, &[], &mut Vec::new()).await;
    assert_eq!(got.status, 302);
    let location = got.header("location").unwrap().to_owned();
    assert_eq!(
        location,
        format!("http://{}/m/{}", f.host.addr(), info.token)
    );
    assert!(f.host.deviations().is_empty());

    // A client that follows it speaks plain HTTP to the HTTPS port.
    let mut tcp = TcpStream::connect(f.host.addr()).await.unwrap();
    let line = format!("GET /m/{} HTTP/1.1\r\nhost: x\r\n\r\n", info.token);
    tcp.write_all(line.as_bytes()).await.unwrap();
    let mut rest = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(2), tcp.read_to_end(&mut rest)).await;
    let events = f.host.events();
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(
        events[0].problem,
        ConnProblem::PlainText(format!("GET /m/{} HTTP/1.1", info.token))
    );
    let d = f.host.deviations();
    assert_eq!(d.len(), 1);
    assert_eq!(d[0].requirement.as_deref(), Some("MEDIA-15"));
}

/// Refuses after `limit` bytes, like a client that reads a little and hangs up.
struct StopAfter(u64, u64);

impl Sink for StopAfter {
    fn put(&mut self, chunk: &[u8]) -> Result<(), String> {
        self.0 += chunk.len() as u64;
        if self.0 > self.1 {
            Err("enough".into())
        } else {
            Ok(())
        }
    }
}

#[tokio::test]
async fn announce_declares_one_byte_too_many_and_counts_what_was_written() {
    let f = fixture("host-announce", |_| {}).await;
    let (path, _, _) = f.object("d", 1000);
    let info = f.host.add_object(&path, Fault::Announce).await.unwrap();
    let got = f.get(&info.url, &[], &mut StopAfter(0, 1 << 20)).await;
    assert_eq!(got.status, 200);
    assert_eq!(got.header("content-length"), Some("104857601"));
    assert!(!got.complete());
    let r = f.last_settled().await;
    assert_eq!(r.complete, Some(false));
    assert!(
        r.body_bytes >= 1 << 20 && r.body_bytes < 8 << 20,
        "bytes written {}",
        r.body_bytes
    );
    // A client that reads only the head leaves almost nothing written.
    let mut s = f.tls_stream().await;
    let req = format!("GET /m/{} HTTP/1.1\r\nhost: x\r\n\r\n", info.token);
    s.write_all(req.as_bytes()).await.unwrap();
    let mut head = [0u8; 512];
    let _ = s.read(&mut head).await.unwrap();
    drop(s);
    let r = f.last_settled().await;
    assert!(r.body_bytes < 4 << 20, "bytes written {}", r.body_bytes);
}

#[tokio::test]
async fn identifying_headers_on_a_download_are_media_15() {
    let f = fixture("host-ids", |_| {}).await;
    let (path, _, _) = f.object("e", 100);
    let info = f.host.add_object(&path, Fault::None).await.unwrap();
    let headers = [
        ("cookie", "session=1"),
        ("authorization", "Bearer x"),
        ("x-client", "Alice@Provider.test/phone"),
        ("user-agent", "device-4711"),
    ];
    let got = f.get(&info.url, &headers, &mut Vec::new()).await;
    assert_eq!(got.status, 200, "a deviation does not change the answer");
    let r = f.last_settled().await;
    let got: Vec<_> = r
        .deviations
        .iter()
        .map(|d| (d.requirement.clone().unwrap(), d.got.clone()))
        .collect();
    assert_eq!(got.len(), 3, "{got:?}");
    assert!(got.iter().all(|(req, _)| req == "MEDIA-15"));
    assert!(got[0].1.contains("cookie"), "{got:?}");
    assert!(got[1].1.contains("authorization"), "{got:?}");
    assert!(got[2].1.contains("x-client"), "{got:?}");
    // Identifiers learned later.
    let later = identifier_deviations(&f.host.requests(), &["DEVICE-4711", ""]);
    assert_eq!(later.len(), 1, "{later:?}");
    assert_eq!(later[0].requirement.as_deref(), Some("MEDIA-15"));
    assert!(later[0].got.contains("user-agent"));
}

#[tokio::test]
async fn connections_are_bounded_and_closed_when_idle_or_dropped() {
    let f = fixture("host-bounds", |c| c.limits.max_connections = 2).await;
    // Idle connections (no TLS handshake) hold the two places; a third is closed at once.
    let a = TcpStream::connect(f.host.addr()).await.unwrap();
    let b = TcpStream::connect(f.host.addr()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut c = TcpStream::connect(f.host.addr()).await.unwrap();
    let mut buf = [0u8; 1];
    let r = tokio::time::timeout(Duration::from_secs(1), c.read(&mut buf)).await;
    assert!(matches!(r, Ok(Ok(0)) | Ok(Err(_))), "{r:?}");
    assert_eq!(f.host.refused_connections(), 1);
    // The handshake deadline frees them.
    tokio::time::sleep(Duration::from_millis(1300)).await;
    drop((a, b));
    assert!(
        f.host
            .events()
            .iter()
            .any(|e| matches!(e.problem, ConnProblem::Handshake(_)))
    );

    // A request head over the bound is refused.
    let huge = format!(
        "GET /m/x HTTP/1.1\r\nhost: x\r\nx-big: {}\r\n\r\n",
        "a".repeat(40_000)
    );
    let answer = f.raw(huge.as_bytes()).await;
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 431"),
        "{answer}"
    );

    // A client that stops reading a large body is cut off after the idle timeout (100 MiB
    // of zeros: more than loopback socket buffers hold).
    let (path, _, _) = f.object("g", 1000);
    let info = f.host.add_object(&path, Fault::Announce).await.unwrap();
    let mut s = f.tls_stream().await;
    s.write_all(format!("GET /m/{} HTTP/1.1\r\nhost: x\r\n\r\n", info.token).as_bytes())
        .await
        .unwrap();
    let mut first = [0u8; 1024];
    let _ = s.read(&mut first).await.unwrap();
    // The first window (1.5 s) holds the burst that filled the socket buffers; the second
    // only the kernel's trickle, too slow for `min_rate`.
    tokio::time::sleep(Duration::from_millis(3600)).await;
    let mut total = 0usize;
    let mut buf = vec![0u8; 65536];
    while let Ok(Ok(n)) = tokio::time::timeout(Duration::from_secs(2), s.read(&mut buf)).await {
        if n == 0 {
            break;
        }
        total += n;
    }
    assert!(
        total < 8 << 20,
        "the stalled connection was closed ({total} bytes read)"
    );
    let r = f.last_settled().await;
    assert_eq!(r.complete, Some(false));

    // Dropping the host closes a connection in the middle of a body.
    let mut s = f.tls_stream().await;
    s.write_all(format!("GET /m/{} HTTP/1.1\r\nhost: x\r\n\r\n", info.token).as_bytes())
        .await
        .unwrap();
    let _ = s.read(&mut first).await.unwrap();
    let Fixture { host, dir, .. } = f;
    drop(host);
    let started = tokio::time::Instant::now();
    while let Ok(Ok(n)) = tokio::time::timeout(Duration::from_secs(3), s.read(&mut buf)).await {
        if n == 0 {
            break;
        }
    }
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "closed when the host was dropped"
    );
    drop(dir);
}
