//! A one-request HTTP/1.1 client for media: a fresh loopback connection (TLS 1.3 when the URL
//! is `https://`, trusting only the CA given), the response head within a deadline, and the
//! body streamed frame by frame into a [`Sink`] with an idle timeout and a byte limit. No
//! pool, no redirects, no headers but `Host` and those the caller gives.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::Response;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::sink::Sink;
use crate::http::client::{host_header, loopback_authority};

/// The bounds of one fetch.
#[derive(Debug, Clone)]
pub struct Timeouts {
    /// TCP connect plus TLS handshake.
    pub connect: Duration,
    /// From the request written to the response head.
    pub header: Duration,
    /// Longest wait for the next body bytes.
    pub idle: Duration,
}

impl Default for Timeouts {
    fn default() -> Timeouts {
        Timeouts {
            connect: Duration::from_secs(5),
            header: Duration::from_secs(10),
            idle: Duration::from_secs(10),
        }
    }
}

/// Why a fetch produced no response.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FetchError {
    #[error("bad URL: {0}")]
    Url(String),
    #[error("connect: {0}")]
    Connect(String),
    #[error("TLS: {0}")]
    Tls(String),
    #[error("HTTP: {0}")]
    Http(String),
    #[error("timed out: {0}")]
    Timeout(String),
}

/// Aborts the connection task when dropped.
pub(crate) struct Driver(JoinHandle<()>);

impl Drop for Driver {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The headers `open` sends for `url`: `Host`, then `headers`.
pub(crate) fn request_headers(
    url: &str,
    headers: &[(String, String)],
) -> Result<Vec<(String, String)>, FetchError> {
    let (host, port) = loopback_authority(url).map_err(FetchError::Url)?;
    let mut out = vec![("host".to_owned(), host_header(&host, port))];
    out.extend(headers.iter().cloned());
    Ok(out)
}

/// Sends `GET url` with `headers` (plus `Host`) and waits for the response head; the
/// connection lives as long as the returned [`Driver`].
pub(crate) async fn open(
    url: &str,
    tls: Option<&Arc<rustls::ClientConfig>>,
    headers: &[(String, String)],
    timeouts: &Timeouts,
) -> Result<(Response<Incoming>, Driver), FetchError> {
    let uri: hyper::Uri = url
        .parse()
        .map_err(|e| FetchError::Url(format!("{url:?}: {e}")))?;
    let https = match uri.scheme_str() {
        Some("https") => true,
        Some("http") => false,
        _ => return Err(FetchError::Url(format!("{url:?}: not http(s)"))),
    };
    let (host, port) = loopback_authority(url).map_err(FetchError::Url)?;
    let target = uri.path_and_query().map_or("/", |p| p.as_str()).to_owned();
    let connect_deadline = Instant::now() + timeouts.connect;
    let tcp = tokio::time::timeout_at(connect_deadline, TcpStream::connect((host.as_str(), port)))
        .await
        .map_err(|_| FetchError::Timeout(format!("connect to {host}:{port}")))?
        .map_err(|e| FetchError::Connect(format!("{host}:{port}: {e}")))?;
    let _ = tcp.set_nodelay(true);
    let mut request = hyper::Request::get(target);
    for (k, v) in request_headers(url, headers)? {
        request = request.header(k.as_str(), v.as_str());
    }
    let request = request
        .body(Empty::<Bytes>::new())
        .map_err(|e| FetchError::Url(format!("invalid request: {e}")))?;
    if !https {
        return exchange(tcp, request, timeouts).await;
    }
    let config = tls.ok_or_else(|| FetchError::Tls("an https URL but no CA to trust".into()))?;
    let name = ServerName::try_from(host.clone())
        .map_err(|e| FetchError::Url(format!("TLS server name {host:?}: {e}")))?;
    let handshake = tokio_rustls::TlsConnector::from(Arc::clone(config)).connect(name, tcp);
    let stream = tokio::time::timeout_at(connect_deadline, handshake)
        .await
        .map_err(|_| FetchError::Timeout(format!("TLS handshake with {host}:{port}")))?
        .map_err(|e| FetchError::Tls(format!("{host}:{port}: {e}")))?;
    exchange(stream, request, timeouts).await
}

async fn exchange<IO>(
    io: IO,
    request: hyper::Request<Empty<Bytes>>,
    timeouts: &Timeouts,
) -> Result<(Response<Incoming>, Driver), FetchError>
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::Builder::new()
        .max_buf_size(64 * 1024)
        .handshake(TokioIo::new(io))
        .await
        .map_err(|e| FetchError::Http(e.to_string()))?;
    let driver = Driver(tokio::spawn(async move {
        let _ = conn.await;
    }));
    let response = tokio::time::timeout(timeouts.header, sender.send_request(request))
        .await
        .map_err(|_| {
            FetchError::Timeout(format!(
                "no response head within {} ms",
                timeouts.header.as_millis()
            ))
        })?
        .map_err(|e| FetchError::Http(e.to_string()))?;
    Ok((response, driver))
}

/// A response streamed into a sink.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fetched {
    pub status: u16,
    /// Names lowercase, in received order.
    pub headers: Vec<(String, String)>,
    /// Body bytes given to the sink.
    pub bytes: u64,
    /// Why the body did not end normally (a broken or stalled connection, more than the
    /// limit, the sink refusing); `None` when it ended as framed.
    pub body_error: Option<String>,
}

impl Fetched {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Whether the body ended as framed.
    pub fn complete(&self) -> bool {
        self.body_error.is_none()
    }
}

/// `GET url` with `headers`, the body (at most `max_body` bytes) streamed into `sink`.
pub async fn get_to_sink(
    url: &str,
    tls: Option<&Arc<rustls::ClientConfig>>,
    headers: &[(String, String)],
    max_body: u64,
    timeouts: &Timeouts,
    sink: &mut dyn Sink,
) -> Result<Fetched, FetchError> {
    let (response, _driver) = open(url, tls, headers, timeouts).await?;
    let status = response.status().as_u16();
    let headers = response
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_owned(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let mut body = response.into_body();
    let mut bytes = 0u64;
    let body_error = loop {
        let frame = match tokio::time::timeout(timeouts.idle, body.frame()).await {
            Err(_) => {
                break Some(format!(
                    "no body bytes for {} ms",
                    timeouts.idle.as_millis()
                ));
            }
            Ok(None) => break None,
            Ok(Some(Err(e))) => break Some(format!("body: {e}")),
            Ok(Some(Ok(frame))) => frame,
        };
        let Ok(data) = frame.into_data() else {
            continue;
        };
        if bytes + data.len() as u64 > max_body {
            let room = (max_body - bytes) as usize;
            if let Err(e) = sink.put(&data[..room]) {
                break Some(format!("sink: {e}"));
            }
            bytes = max_body;
            break Some(format!("more than {max_body} body bytes"));
        }
        bytes += data.len() as u64;
        if let Err(e) = sink.put(&data) {
            break Some(format!("sink: {e}"));
        }
    };
    Ok(Fetched {
        status,
        headers,
        bytes,
        body_error,
    })
}
