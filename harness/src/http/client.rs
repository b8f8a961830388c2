//! A one-request HTTP/1.1 client over a fresh loopback connection (hyper's
//! connection-level API: no pool, no redirects, nothing hidden), with a bounded
//! response body: the server under test is hostile input like any other.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::rt::TokioIo;
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

/// Splits `http://host:port` into (host, port); only loopback hosts are allowed.
pub fn loopback_authority(base_url: &str) -> Result<(String, u16), String> {
    let rest = base_url
        .strip_prefix("http://")
        .ok_or_else(|| format!("{base_url:?}: only http:// base URLs are supported here"))?;
    let authority = rest.split('/').next().unwrap_or(rest);
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) if !h.is_empty() => (
            h.trim_start_matches('[').trim_end_matches(']').to_string(),
            p.parse::<u16>()
                .map_err(|_| format!("{base_url:?}: bad port {p:?}"))?,
        ),
        _ => (authority.to_string(), 80),
    };
    let loopback = host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    if !loopback {
        return Err(format!(
            "{base_url:?}: gatecheck only talks to loopback addresses (127.0.0.1, ::1, localhost)"
        ));
    }
    Ok((host, port))
}

/// Sends one request to `base_url` and reads the whole response before `deadline`.
pub async fn send(
    base_url: &str,
    req: &HttpRequest,
    deadline: Instant,
) -> Result<HttpResponse, String> {
    let started = Instant::now();
    let (host, port) = loopback_authority(base_url)?;
    let work = async {
        let tcp = TcpStream::connect((host.as_str(), port))
            .await
            .map_err(|e| format!("connect to {host}:{port}: {e}"))?;
        let _ = tcp.set_nodelay(true);
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
            .await
            .map_err(|e| format!("HTTP handshake: {e}"))?;
        let driver = tokio::spawn(conn);
        let mut builder = hyper::Request::builder()
            .method(req.method.as_str())
            .uri(req.path.as_str())
            .header("host", format!("{host}:{port}"));
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
        driver.abort();
        Ok(HttpResponse {
            status,
            headers,
            body,
            elapsed: started.elapsed(),
        })
    };
    match tokio::time::timeout_at(deadline, work).await {
        Ok(r) => r,
        Err(_) => Err(format!(
            "no complete response within {} ms",
            deadline.saturating_duration_since(started).as_millis()
        )),
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
        assert!(loopback_authority("https://127.0.0.1:1").is_err());
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
        let r = send(&base, &req, deadline).await.unwrap();
        assert_eq!(
            (r.status, r.body.as_slice(), r.header("Content-Type")),
            (200, &b"kk"[..], Some("text/plain"))
        );
        let e = send(&base, &req, deadline).await.unwrap_err();
        assert!(e.contains("limit"), "{e}");
    }
}
