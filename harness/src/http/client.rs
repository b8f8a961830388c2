//! A one-request HTTP/1.1 client over a fresh loopback connection, plain or TLS 1.3
//! (hyper's connection-level API: no pool, no redirects, nothing hidden), with a bounded
//! response body: the server under test is hostile input like any other.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::time::Instant;

/// Largest response body read; a larger one is an error, not a truncation.
pub const MAX_RESPONSE_BODY: usize = 1 << 20;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpRequest {
    pub method: String,
    /// Path and query, starting with `/`.
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpResponse {
    pub status: u16,
    /// Header names in lowercase, in received order.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub elapsed: Duration,
}

impl HttpResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A base URL taken apart: where to connect, whether over TLS, and the path prefix that
/// every request path goes under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BaseUrl {
    pub https: bool,
    /// As connected to: `127.0.0.1`, `::1` without brackets, `localhost`.
    pub host: String,
    pub port: u16,
    /// The base URL's path without its trailing `/` (`""` or `/api`).
    pub prefix: String,
}

impl BaseUrl {
    /// Parses an `http://` or `https://` base URL on a loopback host.
    pub fn parse(base_url: &str) -> Result<BaseUrl, String> {
        let (https, host, port) = authority(base_url)?;
        let uri: hyper::Uri = base_url
            .parse()
            .map_err(|e| format!("base URL {base_url:?} is not a URL: {e}"))?;
        if uri.query().is_some() {
            return Err(format!("base URL {base_url:?}: a query is not allowed"));
        }
        Ok(BaseUrl {
            https,
            host,
            port,
            prefix: uri.path().trim_end_matches('/').to_string(),
        })
    }

    /// The request target for `path` (which starts with `/`) under this base URL.
    pub fn target(&self, path: &str) -> String {
        format!("{}{path}", self.prefix)
    }
}

/// Splits an `http://host[:port][/path]` or `https://…` base URL into (host, port), the host
/// as it is connected to (`127.0.0.1`, `::1` without brackets, `localhost`) and the port 80
/// (443 for https) when none is given. Only loopback hosts are allowed: 127.0.0.0/8, ::1 and
/// `localhost`.
pub fn loopback_authority(base_url: &str) -> Result<(String, u16), String> {
    authority(base_url).map(|(_, host, port)| (host, port))
}

fn authority(base_url: &str) -> Result<(bool, String, u16), String> {
    let uri: hyper::Uri = base_url
        .parse()
        .map_err(|e| format!("base URL {base_url:?} is not a URL: {e}"))?;
    let https = match uri.scheme_str() {
        Some("http") => false,
        Some("https") => true,
        _ => {
            return Err(format!(
                "base URL {base_url:?}: only http:// and https:// base URLs are supported here"
            ));
        }
    };
    let authority = uri
        .authority()
        .filter(|a| !a.host().is_empty())
        .ok_or_else(|| format!("base URL {base_url:?} has no host"))?;
    if authority.as_str().contains('@') {
        return Err(format!(
            "base URL {base_url:?}: user information (`user@`) is not supported"
        ));
    }
    let host = authority.host();
    let (host, loopback) = match host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        Some(v6) => (
            v6,
            v6.parse::<std::net::Ipv6Addr>()
                .is_ok_and(|ip| ip.is_loopback()),
        ),
        None => (
            host,
            host.eq_ignore_ascii_case("localhost")
                || host
                    .parse::<std::net::Ipv4Addr>()
                    .is_ok_and(|ip| ip.is_loopback()),
        ),
    };
    if !loopback {
        return Err(format!(
            "base URL {base_url:?}: host {host:?} is not a loopback address; gatecheck only \
             talks to 127.0.0.0/8, [::1] and localhost"
        ));
    }
    // The authority is `host[:port]` (no user information): what follows the host.
    let port = match &authority.as_str()[authority.host().len()..] {
        "" if https => 443,
        "" => 80,
        rest => rest
            .strip_prefix(':')
            .filter(|p| p.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|p| p.parse::<u16>().ok())
            .ok_or_else(|| {
                let port = rest.strip_prefix(':').unwrap_or(rest);
                format!("base URL {base_url:?}: bad port {port:?}")
            })?,
    };
    Ok((https, host.to_string(), port))
}

/// The `Host` header value for a host as [`loopback_authority`] returns it: an IPv6
/// address in brackets (`[::1]:9`), anything else as is (`127.0.0.1:9`).
pub fn host_header(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// The TLS client configuration for a provider server: TLS 1.3, trusting only the CA(s) in
/// `ca_pem`, offering ALPN `http/1.1`.
pub fn tls_config(ca_pem: &str) -> Result<Arc<rustls::ClientConfig>, String> {
    let roots = crate::transport::root_store(ca_pem).map_err(|e| e.to_string())?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Sends one request to `base_url` (over TLS with `tls` when it is an https URL; `req.path`
/// is sent as it is, prefix included) and reads the whole response before `deadline`.
pub async fn send(
    base_url: &str,
    req: &HttpRequest,
    deadline: Instant,
    tls: Option<&Arc<rustls::ClientConfig>>,
) -> Result<HttpResponse, String> {
    let started = Instant::now();
    let (https, host, port) = authority(base_url)?;
    let work = async {
        let tcp = TcpStream::connect((host.as_str(), port))
            .await
            .map_err(|e| format!("connect to {host}:{port}: {e}"))?;
        let _ = tcp.set_nodelay(true);
        if !https {
            return exchange(tcp, &host, port, req, started).await;
        }
        let config = tls.ok_or_else(|| {
            format!("base URL {base_url:?} is https:// but no CA to trust was given")
        })?;
        let name = ServerName::try_from(host.clone())
            .map_err(|e| format!("TLS server name {host:?}: {e}"))?;
        let stream = tokio_rustls::TlsConnector::from(Arc::clone(config))
            .connect(name, tcp)
            .await
            .map_err(|e| format!("TLS handshake with {host}:{port}: {e}"))?;
        exchange(stream, &host, port, req, started).await
    };
    match tokio::time::timeout_at(deadline, work).await {
        Ok(r) => r,
        Err(_) => Err(format!(
            "no complete response within {} ms",
            deadline.saturating_duration_since(started).as_millis()
        )),
    }
}

/// Aborts a spawned task when dropped.
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// One request and its whole response on an open connection.
async fn exchange<IO>(
    io: IO,
    host: &str,
    port: u16,
    req: &HttpRequest,
    started: Instant,
) -> Result<HttpResponse, String>
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    {
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
            .await
            .map_err(|e| format!("HTTP handshake: {e}"))?;
        // Aborted however this ends: a server still sending (an endless body) must not keep
        // the connection alive after the request gave up on it.
        let _driver = AbortOnDrop(tokio::spawn(conn));
        let mut builder = hyper::Request::builder()
            .method(req.method.as_str())
            .uri(req.path.as_str())
            .header("host", host_header(host, port));
        for (k, v) in &req.headers {
            builder = builder.header(k.as_str(), v.as_str());
        }
        let request = builder
            .body(Full::new(Bytes::from(req.body.clone())))
            .map_err(|e| format!("invalid request: {e}"))?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| format!("request failed: {e}"))?;
        let status = response.status().as_u16();
        let headers = response
            .headers()
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect();
        let body = Limited::new(response.into_body(), MAX_RESPONSE_BODY)
            .collect()
            .await
            .map_err(|e| format!("response body: {e} (limit {MAX_RESPONSE_BODY} bytes)"))?
            .to_bytes()
            .to_vec();
        Ok(HttpResponse {
            status,
            headers,
            body,
            elapsed: started.elapsed(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_base_urls() {
        assert_eq!(
            loopback_authority("http://127.0.0.1:8080").unwrap(),
            ("127.0.0.1".into(), 8080)
        );
        assert_eq!(
            loopback_authority("http://[::1]:9/x").unwrap(),
            ("::1".into(), 9)
        );
        assert_eq!(
            loopback_authority("http://localhost").unwrap(),
            ("localhost".into(), 80)
        );
        assert!(
            loopback_authority("http://10.0.0.1:80")
                .unwrap_err()
                .contains("loopback")
        );
        assert_eq!(
            loopback_authority("https://127.0.0.1").unwrap(),
            ("127.0.0.1".into(), 443)
        );
    }

    #[test]
    fn ipv6_and_the_whole_loopback_range() {
        let ok = |url: &str| loopback_authority(url).unwrap_or_else(|e| panic!("{url}: {e}"));
        assert_eq!(ok("http://[::1]:8080"), ("::1".into(), 8080));
        assert_eq!(ok("http://[::1]"), ("::1".into(), 80));
        assert_eq!(
            ok("http://[0:0:0:0:0:0:0:1]:9/"),
            ("0:0:0:0:0:0:0:1".into(), 9)
        );
        assert_eq!(ok("http://127.1.2.3:7/a/b"), ("127.1.2.3".into(), 7));
        assert_eq!(ok("http://LocalHost:1"), ("LocalHost".into(), 1));
        for (url, why) in [
            ("http://[::2]:80", "not a loopback"),
            ("http://[::ffff:127.0.0.1]:80", "not a loopback"),
            ("http://[fe80::1]:80", "not a loopback"),
            ("http://128.0.0.1:80", "not a loopback"),
            ("http://localhost.example:80", "not a loopback"),
            ("http://127.0.0.1.nip.io:80", "not a loopback"),
            ("http://example.com@127.0.0.1:80", "user information"),
            ("http://127.0.0.1:80@example.com", "user information"),
            ("http://[::1]:", "bad port"),
            ("http://[::1]:99999", "bad port"),
            ("http://127.0.0.1:+80", "bad port"),
            ("http://[::1", "not a URL"),
            ("ftp://[::1]:21", "only http:// and https://"),
            ("[::1]:80", "only http:// and https://"),
            ("/just/a/path", "only http:// and https://"),
            ("http://:80", "has no host"),
            ("http://", "not a URL"),
            ("http:///x", "not a URL"),
            ("", "not a URL"),
        ] {
            let e = loopback_authority(url).expect_err(url);
            assert!(e.contains(why), "{url}: {e}");
            assert!(e.contains(url), "the message names the URL: {e}");
        }
    }

    #[test]
    fn the_host_header_brackets_ipv6() {
        assert_eq!(host_header("::1", 9), "[::1]:9");
        assert_eq!(host_header("127.0.0.1", 9), "127.0.0.1:9");
        assert_eq!(host_header("localhost", 80), "localhost:80");
    }

    /// A round trip to `http://[::1]:port` connects over IPv6 and says `Host: [::1]:port`.
    #[tokio::test]
    async fn an_ipv6_base_url_round_trip() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let Ok(listener) = tokio::net::TcpListener::bind("[::1]:0").await else {
            eprintln!("no IPv6 loopback here: skipped");
            return;
        };
        let port = listener.local_addr().unwrap().port();
        let server = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut head = Vec::new();
            let mut buf = [0u8; 1024];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = s.read(&mut buf).await.unwrap();
                assert!(n > 0, "request head incomplete");
                head.extend_from_slice(&buf[..n]);
            }
            let _ = s
                .write_all(b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\n\r\n")
                .await;
            String::from_utf8(head).unwrap()
        });
        let req = HttpRequest {
            method: "GET".into(),
            path: "/x".into(),
            headers: vec![],
            body: vec![],
        };
        let deadline = Instant::now() + Duration::from_secs(5);
        let r = send(&format!("http://[::1]:{port}"), &req, deadline, None)
            .await
            .unwrap();
        assert_eq!(r.status, 204);
        let head = server.await.unwrap().to_ascii_lowercase();
        assert!(
            head.contains(&format!("\r\nhost: [::1]:{port}\r\n")),
            "{head}"
        );
    }

    #[tokio::test]
    async fn a_real_round_trip_with_a_bounded_body() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            for body_len in [2usize, MAX_RESPONSE_BODY + 1] {
                let (mut s, _) = listener.accept().await.unwrap();
                let mut buf = vec![0u8; 4096];
                let _ = s.read(&mut buf).await;
                let head = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: {body_len}\r\n\r\n"
                );
                let _ = s.write_all(head.as_bytes()).await;
                let _ = s.write_all(&vec![b'k'; body_len]).await;
            }
        });
        let base = format!("http://127.0.0.1:{port}");
        let req = HttpRequest {
            method: "GET".into(),
            path: "/x".into(),
            headers: vec![],
            body: vec![],
        };
        let deadline = Instant::now() + Duration::from_secs(5);
        let r = send(&base, &req, deadline, None).await.unwrap();
        assert_eq!(
            (r.status, r.body.as_slice(), r.header("Content-Type")),
            (200, &b"kk"[..], Some("text/plain"))
        );
        let e = send(&base, &req, deadline, None).await.unwrap_err();
        assert!(e.contains("limit"), "{e}");
    }

    /// A provider server that answers garbage, never answers, sends a body without end or
    /// redirects: each request ends by its deadline with a status or an error, never a hang,
    /// and a redirect is reported, not followed.
    #[tokio::test]
    async fn hostile_servers_end_in_an_answer_or_an_error() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            for script in 0..4 {
                let (mut s, _) = listener.accept().await.unwrap();
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 4096];
                    let _ = s.read(&mut buf).await;
                    match script {
                        0 => {
                            let _ = s
                                .write_all(b"\x00\xffgarbage that is not HTTP\r\n\r\n")
                                .await;
                        }
                        1 => {
                            // Silent: holds the connection open past the deadline.
                            tokio::time::sleep(Duration::from_secs(5)).await;
                        }
                        2 => {
                            let _ = s
                                .write_all(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
                                .await;
                            let chunk = format!("{:x}\r\n{}\r\n", 8192, "x".repeat(8192));
                            while s.write_all(chunk.as_bytes()).await.is_ok() {}
                        }
                        _ => {
                            let _ = s
                            .write_all(
                                b"HTTP/1.1 302 Found\r\nlocation: /x\r\ncontent-length: 0\r\n\r\n",
                            )
                            .await;
                        }
                    }
                });
            }
        });
        let base = format!("http://127.0.0.1:{port}");
        let req = HttpRequest {
            method: "POST".into(),
            path: "/x".into(),
            headers: vec![],
            body: b"{}".to_vec(),
        };
        let started = Instant::now();
        let deadline = || Instant::now() + Duration::from_millis(800);
        let garbage = send(&base, &req, deadline(), None).await.unwrap_err();
        assert!(!garbage.is_empty());
        let silent = send(&base, &req, deadline(), None).await.unwrap_err();
        assert!(silent.contains("no complete response"), "{silent}");
        let endless = send(&base, &req, deadline(), None).await.unwrap_err();
        assert!(
            endless.contains("limit") || endless.contains("no complete response"),
            "{endless}"
        );
        let redirect = send(&base, &req, deadline(), None).await.unwrap();
        assert_eq!(
            (redirect.status, redirect.header("location")),
            (302, Some("/x"))
        );
        assert!(
            started.elapsed() < Duration::from_secs(4),
            "each ended by its deadline"
        );
    }
}
