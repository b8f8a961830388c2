//! The provider server's media host (SPEC.md §14) end to end: the built binary on a loopback
//! port over real TLS. Each server media mutant gets a test showing its one deviation.

mod media_common;

use bytes::Bytes;
use media_common::{MAX_OBJECT, Provider};

/// Distinct bytes, so that an offset error shows.
fn object(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 + i / 251) as u8).collect()
}

fn is_token(segment: &str) -> bool {
    segment.len() == 43
        && segment
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

#[tokio::test]
async fn objects_are_stored_and_served_exactly() {
    let p = Provider::start(None, &[]);
    let data = object(5000);
    let url = p.store(data.clone()).await;
    let prefix = format!("https://127.0.0.1:{}/media/", p.port);
    let token = url.strip_prefix(&prefix).expect("the object's URL");
    assert!(is_token(token), "MEDIA-4: {url}");
    let other = p.store(data.clone()).await;
    assert_ne!(url, other, "a URL per object");

    let reply = p.call("GET", &p.path_of(&url), &[], b"").await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body, data, "MEDIA-5");
    assert_eq!(reply.header("content-length"), Some("5000"));
    assert_eq!(
        reply.header("content-type"),
        Some("application/octet-stream")
    );
    for absent in [
        "set-cookie",
        "content-disposition",
        "content-encoding",
        "location",
    ] {
        assert_eq!(reply.header(absent), None, "{absent}");
    }
    // HEAD: the same head, no body.
    let reply = p.call("HEAD", &p.path_of(&url), &[], b"").await;
    assert_eq!((reply.status, reply.body.len()), (200, 0));
    assert_eq!(reply.header("content-length"), Some("5000"));

    // The client's own upload path stores the same way.
    let reply = p
        .call(
            "POST",
            "/media/v1/upload",
            &[("content-type", "application/octet-stream")],
            b"xyz",
        )
        .await;
    assert_eq!(reply.status, 201);
    let url = reply.json()["url"].as_str().expect("url").to_owned();
    assert_eq!(p.call("GET", &p.path_of(&url), &[], b"").await.body, b"xyz");

    // Unknown tokens, a trailing slash, the wrong method.
    let missing = format!("/media/{}", "A".repeat(43));
    assert_eq!(p.call("GET", &missing, &[], b"").await.status, 404);
    let slash = format!("{}/", p.path_of(&url));
    assert_eq!(p.call("GET", &slash, &[], b"").await.status, 404);
    assert_eq!(
        p.call("DELETE", &p.path_of(&url), &[], b"").await.status,
        405
    );
    assert_eq!(
        p.call("GET", "/media/v1/upload", &[], b"").await.status,
        405
    );
    let reply = p.call("POST", "/gatecheck-test/v1/media", &[], b"").await;
    assert_eq!(reply.status, 400, "an empty object");
}

#[tokio::test]
async fn single_ranges_are_answered_exactly_and_others_ignored() {
    let p = Provider::start(None, &[]);
    let data = object(1000);
    let path = p.path_of(&p.store(data.clone()).await);
    let reply = p.call("GET", &path, &[("range", "bytes=10-19")], b"").await;
    assert_eq!(reply.status, 206);
    assert_eq!(reply.header("content-range"), Some("bytes 10-19/1000"));
    assert_eq!(reply.body, &data[10..20]);
    let reply = p.call("GET", &path, &[("range", "bytes=-5")], b"").await;
    assert_eq!((reply.status, reply.body.as_slice()), (206, &data[995..]));
    for ignored in ["bytes=0-1,5-6", "bytes=2000-", "lines=1-2"] {
        let reply = p.call("GET", &path, &[("range", ignored)], b"").await;
        assert_eq!((reply.status, reply.body.len()), (200, 1000), "{ignored}");
    }
}

#[tokio::test]
async fn objects_expire_when_the_declared_retention_ends() {
    let p = Provider::start(None, &["--media-retention-s", "86400"]);
    let path = p.path_of(&p.store(object(10)).await);
    p.advance(86_400 - 60).await;
    assert_eq!(p.call("GET", &path, &[], b"").await.status, 200, "MEDIA-8");
    p.advance(120).await;
    assert_eq!(p.call("GET", &path, &[], b"").await.status, 404, "MEDIA-10");
    // Stored after the clock moved: its retention starts then.
    let path = p.path_of(&p.store(object(10)).await);
    p.advance(86_000).await;
    assert_eq!(p.call("GET", &path, &[], b"").await.status, 200);
    // The hook wants a non-negative integer.
    for bad in [
        r#"{"advance_s": -1}"#,
        r#"{"advance_s": "1"}"#,
        "[]",
        "nope",
    ] {
        let reply = p
            .call("POST", "/gatecheck-test/v1/clock", &[], bad.as_bytes())
            .await;
        assert_eq!(reply.status, 400, "{bad}");
    }
}

#[tokio::test]
async fn the_default_retention_is_fourteen_days() {
    let p = Provider::start(None, &[]);
    let path = p.path_of(&p.store(object(10)).await);
    p.advance(1_209_600 - 60).await;
    assert_eq!(p.call("GET", &path, &[], b"").await.status, 200, "MEDIA-9");
    p.advance(120).await;
    assert_eq!(p.call("GET", &path, &[], b"").await.status, 404);
}

#[tokio::test]
async fn objects_over_100_mib_are_refused_with_413() {
    let p = Provider::start(None, &[]);
    // Announced and sent too large: the client that writes its whole body first still reads
    // the 413 (the host drops what it reads past the limit).
    let over = Bytes::from(vec![0x5a; MAX_OBJECT + 1]);
    let reply = p
        .try_call("POST", "/gatecheck-test/v1/media", &[], over)
        .await;
    assert_eq!(reply.map(|r| r.status), Ok(413));
    // Announced far too large: refused at once, the body not read.
    let huge = [("content-length", "1000000000")];
    let reply = p
        .try_call("POST", "/gatecheck-test/v1/media", &huge, Bytes::new())
        .await;
    assert!(reply.is_err() || reply.is_ok_and(|r| r.status == 413));
    // Exactly the limit is stored; one byte more (counted, not announced) is not.
    let big = Bytes::from(vec![0x5a; MAX_OBJECT]);
    let url = p.store(big.to_vec()).await;
    let reply = p.call("GET", &p.path_of(&url), &[], b"").await;
    assert_eq!(reply.body.len(), MAX_OBJECT);
    let reply = chunked_post(
        &p,
        Chunks {
            left: MAX_OBJECT + 1,
        },
    )
    .await;
    assert_eq!(reply, Some(413));
}

/// A body of `left` bytes in 1 MiB frames, of unknown length (sent chunked).
struct Chunks {
    left: usize,
}

impl hyper::body::Body for Chunks {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, Self::Error>>> {
        if self.left == 0 {
            return std::task::Poll::Ready(None);
        }
        let n = self.left.min(1 << 20);
        self.left -= n;
        let frame = hyper::body::Frame::data(Bytes::from(vec![0xa5; n]));
        std::task::Poll::Ready(Some(Ok(frame)))
    }
}

/// POSTs a chunked body to the media hook: its status, or `None` when the server closed
/// while the client still wrote (it refused before the end of the body).
async fn chunked_post(p: &Provider, body: Chunks) -> Option<u16> {
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", p.port))
        .await
        .expect("connect");
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").expect("name");
    let tls = tokio_rustls::TlsConnector::from(media_common::client_tls(&p.ca_pem))
        .connect(name, tcp)
        .await
        .expect("TLS");
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
            .await
            .expect("HTTP");
    tokio::spawn(conn);
    let req = hyper::Request::post("/gatecheck-test/v1/media")
        .header("host", format!("127.0.0.1:{}", p.port))
        .body(body)
        .expect("request");
    let resp = sender.send_request(req).await.ok()?;
    Some(resp.status().as_u16())
}

#[tokio::test]
async fn mutant_guessable_url_numbers_objects() {
    let p = Provider::start(Some("server-media-guessable-url"), &[]);
    let a = p.store(object(3)).await;
    let b = p.store(object(3)).await;
    assert!(
        a.ends_with("/media/1") && b.ends_with("/media/2"),
        "{a} {b}"
    );
    assert_eq!(p.call("GET", &p.path_of(&b), &[], b"").await.status, 200);
}

#[tokio::test]
async fn mutant_redirect_sends_a_302_to_the_slash_path() {
    let p = Provider::start(Some("server-media-redirect"), &[]);
    let url = p.store(object(30)).await;
    let reply = p.call("GET", &p.path_of(&url), &[], b"").await;
    assert_eq!(reply.status, 302);
    let location = reply.header("location").expect("Location").to_owned();
    assert_eq!(location, format!("{url}/"));
    let reply = p.call("GET", &p.path_of(&location), &[], b"").await;
    assert_eq!((reply.status, reply.body), (200, object(30)));
}

#[tokio::test]
async fn mutant_html_type_and_sets_cookie() {
    let p = Provider::start(Some("server-media-html-type"), &[]);
    let reply = p
        .call("GET", &p.path_of(&p.store(object(3)).await), &[], b"")
        .await;
    assert_eq!(
        reply.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    assert_eq!(reply.header("set-cookie"), None);
    let p = Provider::start(Some("server-media-sets-cookie"), &[]);
    let reply = p
        .call("GET", &p.path_of(&p.store(object(3)).await), &[], b"")
        .await;
    assert_eq!(
        reply.header("content-type"),
        Some("application/octet-stream")
    );
    assert!(reply.header("set-cookie").is_some());
}

#[tokio::test]
async fn mutants_never_expires_and_short_retention() {
    let p = Provider::start(
        Some("server-media-never-expires"),
        &["--media-retention-s", "86400"],
    );
    let path = p.path_of(&p.store(object(3)).await);
    p.advance(86_400 * 30).await;
    assert_eq!(p.call("GET", &path, &[], b"").await.status, 200);
    let p = Provider::start(
        Some("server-media-short-retention"),
        &["--media-retention-s", "86400"],
    );
    let path = p.path_of(&p.store(object(3)).await);
    p.advance(3_600).await;
    assert_eq!(p.call("GET", &path, &[], b"").await.status, 404);
}

#[tokio::test]
async fn mutant_bad_range_flips_the_first_byte() {
    let p = Provider::start(Some("server-media-bad-range"), &[]);
    let data = object(100);
    let path = p.path_of(&p.store(data.clone()).await);
    let reply = p.call("GET", &path, &[("range", "bytes=10-19")], b"").await;
    assert_eq!(reply.status, 206);
    assert_eq!(reply.header("content-range"), Some("bytes 10-19/100"));
    assert_eq!(reply.body.len(), 10);
    assert_eq!(reply.body[0], data[10] ^ 0xff);
    assert_eq!(reply.body[1..], data[11..20]);
    assert_eq!(p.call("GET", &path, &[], b"").await.body, data);
}

#[tokio::test]
async fn mutant_no_size_limit_stores_over_100_mib() {
    let p = Provider::start(Some("server-media-no-size-limit"), &[]);
    let url = p.store(vec![1; MAX_OBJECT + 1]).await;
    let reply = p.call("HEAD", &p.path_of(&url), &[], b"").await;
    assert_eq!(reply.header("content-length"), Some("104857601"));
}
