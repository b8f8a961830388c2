//! One `POST` to a provider server's test hook (SPEC.md Appendix G.1), its body streamed (an
//! object of up to 100 MiB never sits in memory), its answer read up to 64 KiB.

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::http::client::{host_header, loopback_authority};

/// Largest hook answer read.
const MAX_HOOK_ANSWER: usize = 64 * 1024;

/// One `POST` with a streamed body; the status and (at most 64 KiB of) the answer.
pub(super) async fn post<B>(
    url: &str,
    tls: Option<&Arc<rustls::ClientConfig>>,
    headers: &[(&str, String)],
    body: B,
    deadline: Instant,
) -> Result<(u16, Vec<u8>), String>
where
    B: hyper::body::Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let work = async {
        let (host, port) = loopback_authority(url)?;
        let https = url.starts_with("https://");
        let path = url
            .split_once("://")
            .and_then(|(_, r)| r.find('/').map(|i| r[i..].to_string()))
            .unwrap_or_else(|| "/".into());
        let tcp = TcpStream::connect((host.as_str(), port))
            .await
            .map_err(|e| format!("connect to {host}:{port}: {e}"))?;
        let _ = tcp.set_nodelay(true);
        let request = {
            let mut b = hyper::Request::builder()
                .method("POST")
                .uri(path.as_str())
                .header("host", host_header(&host, port));
            for (k, v) in headers {
                b = b.header(*k, v.as_str());
            }
            b.body(body).map_err(|e| format!("invalid request: {e}"))?
        };
        if https {
            let config = tls.ok_or("an https URL without a CA to trust")?;
            let name = ServerName::try_from(host.clone())
                .map_err(|e| format!("TLS server name {host:?}: {e}"))?;
            let stream = tokio_rustls::TlsConnector::from(Arc::clone(config))
                .connect(name, tcp)
                .await
                .map_err(|e| format!("TLS handshake with {host}:{port}: {e}"))?;
            exchange(stream, request).await
        } else {
            exchange(tcp, request).await
        }
    };
    match tokio::time::timeout_at(deadline, work).await {
        Ok(r) => r,
        Err(_) => Err("no answer before the step's deadline".into()),
    }
}

async fn exchange<IO, B>(io: IO, request: hyper::Request<B>) -> Result<(u16, Vec<u8>), String>
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    B: hyper::body::Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .map_err(|e| format!("HTTP handshake: {e}"))?;
    let driver = tokio::spawn(conn);
    let result = async {
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| format!("request failed: {e}"))?;
        let status = response.status().as_u16();
        let mut body = response.into_body();
        let mut out = Vec::new();
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| format!("answer body: {e}"))?;
            if let Ok(data) = frame.into_data() {
                let room = MAX_HOOK_ANSWER.saturating_sub(out.len());
                out.extend_from_slice(&data[..data.len().min(room)]);
                if room < data.len() {
                    break;
                }
            }
        }
        Ok((status, out))
    }
    .await;
    driver.abort();
    result
}
