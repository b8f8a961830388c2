//! Test support for media: the reference server as a media host, and HTTPS requests to it.
#![allow(dead_code)] // each test file uses a different subset of these helpers

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper_util::rt::TokioIo;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject as _;
use serde_json::Value;

/// The largest object (MEDIA-23).
pub const MAX_OBJECT: usize = 104_857_600;

/// A running `gatecheck-reference server`; killed and reaped when dropped.
pub struct Provider {
    child: Child,
    pub port: u16,
    pub dir: PathBuf,
    pub ca_pem: String,
    tls: Arc<rustls::ClientConfig>,
}

impl Drop for Provider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// An answer, read whole.
pub struct Reply {
    pub status: u16,
    pub headers: hyper::HeaderMap,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind(("127.0.0.1", 0)).expect("bind");
    l.local_addr().expect("addr").port()
}

pub fn scratch_dir(what: &str) -> PathBuf {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let dir = std::env::temp_dir().join(format!(
        "gatecheck-reference-{what}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

/// TLS 1.3 trusting `ca_pem` only, ALPN http/1.1.
pub fn client_tls(ca_pem: &str) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(cert.expect("PEM")).expect("CA");
    }
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS13])
    .expect("TLS 1.3")
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(config)
}

impl Provider {
    /// Starts the server (with `mutant` and extra arguments) and waits for its port and CA.
    pub fn start(mutant: Option<&str>, extra: &[&str]) -> Provider {
        let port = free_port();
        let dir = scratch_dir("media-server");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_gatecheck-reference"));
        if let Some(m) = mutant {
            cmd.args(["--mutant", m]);
        }
        cmd.arg("server")
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .arg("--tls-dir")
            .arg(&dir)
            // The Ed25519 public key of the all-zero seed.
            .args([
                "--gatekeeper-key",
                "O2onvM62pC1io6jQKm8Nc2UyFXcd4kOmOsBIoYtZ2ik=",
            ])
            .args(["--signing-seed", &"ab".repeat(32)])
            .args(["--provider-id", "example-provider"])
            .args(extra);
        let child = cmd
            // stdin stays open: its end would stop the server.
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn the reference server");
        let mut child = child;
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = child.try_wait() {
                panic!("the server exited before listening: {status}");
            }
            assert!(Instant::now() < deadline, "the server never listened");
            std::thread::sleep(Duration::from_millis(20));
        }
        let ca_pem = std::fs::read_to_string(dir.join("ca.pem")).expect("ca.pem");
        let tls = client_tls(&ca_pem);
        Provider {
            child,
            port,
            dir,
            ca_pem,
            tls,
        }
    }

    pub fn base_url(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }

    pub fn ca_file(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    /// One request on a fresh connection; a failed exchange is an error (a server refusing a
    /// body may close while the client still writes).
    pub async fn try_call(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Bytes,
    ) -> Result<Reply, String> {
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", self.port))
            .await
            .map_err(|e| format!("connect: {e}"))?;
        let name = rustls::pki_types::ServerName::try_from("127.0.0.1").expect("name");
        let tls = tokio_rustls::TlsConnector::from(Arc::clone(&self.tls))
            .connect(name, tcp)
            .await
            .map_err(|e| format!("TLS: {e}"))?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .map_err(|e| format!("HTTP: {e}"))?;
        tokio::spawn(conn);
        let mut req = hyper::Request::builder()
            .method(method)
            .uri(path)
            .header("host", format!("127.0.0.1:{}", self.port));
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let req = req.body(Full::new(body)).expect("request");
        let resp = tokio::time::timeout(Duration::from_secs(60), sender.send_request(req))
            .await
            .map_err(|_| "no answer within 60 s".to_owned())?
            .map_err(|e| format!("response: {e}"))?;
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| format!("body: {e}"))?
            .to_bytes()
            .to_vec();
        Ok(Reply {
            status,
            headers,
            body,
        })
    }

    pub async fn call(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Reply {
        self.try_call(method, path, headers, Bytes::copy_from_slice(body))
            .await
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
    }

    /// Stores `object` through the media hook; its URL.
    pub async fn store(&self, object: Vec<u8>) -> String {
        let reply = self
            .try_call(
                "POST",
                "/gatecheck-test/v1/media",
                &[("content-type", "application/octet-stream")],
                Bytes::from(object),
            )
            .await
            .expect("stored");
        assert_eq!(
            reply.status,
            201,
            "{}",
            String::from_utf8_lossy(&reply.body)
        );
        reply.json()["url"].as_str().expect("a url").to_owned()
    }

    /// The path of an object URL of this server.
    pub fn path_of(&self, url: &str) -> String {
        url.strip_prefix(&self.base_url())
            .unwrap_or_else(|| panic!("{url} is not this server's"))
            .to_owned()
    }

    /// Moves the media clock on.
    pub async fn advance(&self, seconds: u64) {
        let body = format!("{{\"advance_s\": {seconds}}}");
        let reply = self
            .call(
                "POST",
                "/gatecheck-test/v1/clock",
                &[("content-type", "application/json")],
                body.as_bytes(),
            )
            .await;
        assert_eq!(reply.status, 204);
    }
}
