//! Test support for the proxy role: the built binary on loopback ports, a fake gatekeeper
//! (reads the PROXY v2 header, then answers Noise with a known key) and clients over Noise or
//! TLS, all spoken to in raw stream bytes so that every byte the proxy forwards can be
//! compared with what was sent.
#![allow(dead_code)] // each test file uses a different subset

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use base64::Engine as _;
use gatecheck::transport::{
    INTRO, NoiseKeypair, SecureReader, SecureWriter, client_config, noise_accept, noise_connect,
    tls_connect,
};
use tokio::io::AsyncReadExt as _;
use tokio::net::{TcpListener, TcpStream};
use tokio::process::{Child, ChildStdin};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::{Instant, timeout};

pub const LIMIT: Duration = Duration::from_secs(10);
pub const DOMAIN: &str = "gk.gatecheck.test";
pub const OPTED_IN: &str = "alice@gk.gatecheck.test,carol@gk.gatecheck.test";

pub const CLIENT_HEADER: &str = "<?xml version='1.0'?><stream:stream xmlns='jabber:client' \
    xmlns:stream='http://etherx.jabber.org/streams' to='gk.gatecheck.test' version='1.0' \
    xml:lang='en'>";
pub const RESTART_HEADER: &str = "<stream:stream xmlns=\"jabber:client\" \
    xmlns:stream=\"http://etherx.jabber.org/streams\" to=\"gk.gatecheck.test\" version=\"1.0\">";
pub const SERVER_HEADER: &str = "<?xml version='1.0'?><stream:stream xmlns='jabber:client' \
    xmlns:stream='http://etherx.jabber.org/streams' from='gk.gatecheck.test' id='s1' \
    version='1.0'>";
pub const SASL_FEATURES: &str = "<stream:features><mechanisms \
    xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><mechanism>PLAIN</mechanism></mechanisms>\
    </stream:features>";
pub const SUCCESS: &str = "<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>";
pub const SERVER_RESTART: &str = "<stream:stream xmlns='jabber:client' \
    xmlns:stream='http://etherx.jabber.org/streams' from='gk.gatecheck.test' id='s2' \
    version='1.0'><stream:features><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/>\
    </stream:features>";
pub const BIND: &str = "<iq type='set' id='bind_1'><bind \
    xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>r</resource></bind></iq>";
pub const BOUND: &str = "<iq type='result' id='bind_1'><bind \
    xmlns='urn:ietf:params:xml:ns:xmpp-bind'><jid>alice@gk.gatecheck.test/r</jid></bind></iq>";
pub const CLOSE: &str = "</stream:stream>";

/// A PLAIN `<auth>` for `user` (localpart).
pub fn auth(user: &str) -> String {
    let message = format!("\0{user}\0secret");
    let b64 = base64::engine::general_purpose::STANDARD.encode(message);
    format!("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{b64}</auth>")
}

/// An encrypted message as a client might write it: double quotes, odd spacing, an empty
/// element tag, character references.
pub fn envelope_message(id: &str) -> String {
    format!(
        "<message to=\"bob@gk.gatecheck.test\" type=\"chat\" id=\"{id}\"><encrypted  \
         xmlns=\"eu.siacs.conversations.axolotl\" ><header sid=\"1234\"><key rid='42' \
         prekey=\"true\">MwohBQ&#x3D;&#61;</key><iv>AAECAwQFBgcICQoL</iv></header>\
         <payload>c2VjcmV0</payload></encrypted><store xmlns='urn:xmpp:hints'/></message>"
    )
}

/// The PROXY v2 header the proxy must write for a client at `client` connected to `proxy`
/// (both IPv4).
pub fn expected_header(client: SocketAddr, proxy: SocketAddr) -> Vec<u8> {
    let ip = |a: SocketAddr| match a.ip() {
        std::net::IpAddr::V4(v4) => v4.octets(),
        std::net::IpAddr::V6(_) => panic!("the tests run on IPv4 loopback"),
    };
    let mut h = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    h.extend_from_slice(&[0x21, 0x11, 0x00, 0x0c]);
    h.extend_from_slice(&ip(client));
    h.extend_from_slice(&ip(proxy));
    h.extend_from_slice(&client.port().to_be_bytes());
    h.extend_from_slice(&proxy.port().to_be_bytes());
    h
}

fn scratch_dir() -> PathBuf {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    std::env::temp_dir().join(format!(
        "gatecheck-reference-proxy-test-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ))
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind(("127.0.0.1", 0)).expect("bind");
    l.local_addr().expect("addr").port()
}

/// The fake gatekeeper.
pub struct Upstream {
    listener: TcpListener,
    pub key: NoiseKeypair,
    pub addr: SocketAddr,
}

impl Upstream {
    pub async fn new() -> Upstream {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        Upstream {
            listener,
            key: NoiseKeypair::generate(),
            addr,
        }
    }

    pub fn key_base64(&self) -> String {
        self.key.public_base64()
    }

    /// The next TCP connection within `limit`, if any, with the proxy's address.
    pub async fn accept_raw(&self, limit: Duration) -> Option<(TcpStream, SocketAddr)> {
        timeout(limit, self.listener.accept())
            .await
            .ok()
            .map(|a| a.expect("accept"))
    }

    /// The next connection: its PROXY header (whole), then the Noise handshake.
    pub async fn accept(&self) -> (Vec<u8>, SocketAddr, Peer) {
        let (mut tcp, from) = self
            .accept_raw(LIMIT)
            .await
            .expect("an upstream connection");
        let header = read_proxy_header(&mut tcp).await;
        let established = timeout(LIMIT, noise_accept(tcp, &self.key))
            .await
            .expect("handshake in time")
            .expect("handshake");
        (
            header,
            from,
            Peer::new(established.reader, established.writer),
        )
    }
}

/// Reads a PROXY v2 header: 16 bytes, then as many as its length field says.
pub async fn read_proxy_header(tcp: &mut TcpStream) -> Vec<u8> {
    let mut head = vec![0u8; 16];
    timeout(LIMIT, tcp.read_exact(&mut head))
        .await
        .expect("header in time")
        .expect("16 header bytes");
    assert_eq!(&head[..12], b"\r\n\r\n\0\r\nQUIT\n", "PROXY v2 signature");
    let len = usize::from(u16::from_be_bytes([head[14], head[15]]));
    let mut rest = vec![0u8; len];
    timeout(LIMIT, tcp.read_exact(&mut rest))
        .await
        .expect("addresses in time")
        .expect("addresses");
    head.extend_from_slice(&rest);
    head
}

/// Reads the first 4 bytes of a connection (the Noise intro, when no header came first).
pub async fn read_intro(tcp: &mut TcpStream) -> [u8; 4] {
    let mut intro = [0u8; 4];
    timeout(LIMIT, tcp.read_exact(&mut intro))
        .await
        .expect("in time")
        .expect("4 bytes");
    intro
}

pub const NOISE_INTRO: [u8; 4] = INTRO;

/// The proxy binary; killed when dropped.
pub struct Proxy {
    child: Child,
    stdin: Option<ChildStdin>,
    pub addr: SocketAddr,
    pub tls_addr: Option<SocketAddr>,
    pub dir: PathBuf,
    pub noise_pub: Vec<u8>,
    pub ca_pem: Option<String>,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Proxy {
    /// Starts the proxy towards `upstream` pinning `upstream_key`, and waits until it listens.
    pub async fn start(
        mutant: Option<&str>,
        upstream: &Upstream,
        upstream_key: &str,
        tls: bool,
    ) -> Proxy {
        let dir = scratch_dir();
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let tls_addr: Option<SocketAddr> =
            tls.then(|| format!("127.0.0.1:{}", free_port()).parse().unwrap());
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_gatecheck-reference"));
        if let Some(m) = mutant {
            cmd.args(["--mutant", m]);
        }
        cmd.arg("proxy")
            .args(["--listen", &addr.to_string()])
            .args(["--tls-dir", dir.to_str().unwrap()])
            .args(["--upstream", &upstream.addr.to_string()])
            .args(["--upstream-key", upstream_key])
            .args(["--opted-in", OPTED_IN]);
        if let Some(t) = tls_addr {
            cmd.args(["--listen-tls", &t.to_string()]);
        }
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn the proxy");
        let stdin = child.stdin.take();
        // The files come before the listeners: connecting retries (`connect`). No probe
        // connection here: the proxy would serve it (and an early-upstream mutant would
        // connect upstream for it).
        let deadline = Instant::now() + LIMIT;
        let wanted = [Some("proxy-noise.pub"), tls.then_some("ca.pem")];
        while !wanted.iter().flatten().all(|f| dir.join(f).exists()) {
            assert!(Instant::now() < deadline, "the proxy wrote no key files");
            if let Ok(Some(status)) = child.try_wait() {
                panic!("the proxy exited before listening: {status}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let text = std::fs::read_to_string(dir.join("proxy-noise.pub")).expect("proxy-noise.pub");
        let noise_pub = base64::engine::general_purpose::STANDARD
            .decode(&text)
            .expect("base64");
        assert_eq!(noise_pub.len(), 32);
        let ca_pem = tls.then(|| std::fs::read_to_string(dir.join("ca.pem")).expect("ca.pem"));
        Proxy {
            child,
            stdin,
            addr,
            tls_addr,
            dir,
            noise_pub,
            ca_pem,
        }
    }

    /// A Noise client pinning the proxy's key, and the client's address.
    pub async fn connect_noise(&self) -> (Peer, SocketAddr) {
        let tcp = connect(self.addr).await;
        let local = tcp.local_addr().expect("local");
        let established = timeout(
            LIMIT,
            noise_connect(tcp, &NoiseKeypair::generate(), &self.noise_pub),
        )
        .await
        .expect("handshake in time")
        .expect("handshake with the proxy");
        (Peer::new(established.reader, established.writer), local)
    }

    /// A TLS client trusting only the proxy's CA, checking the gatekeeper's name.
    pub async fn connect_tls(&self) -> (Peer, SocketAddr, Option<Vec<u8>>) {
        let tcp = connect(self.tls_addr.expect("--listen-tls")).await;
        let local = tcp.local_addr().expect("local");
        let config = client_config(self.ca_pem.as_deref().expect("ca.pem")).expect("config");
        let established = timeout(LIMIT, tls_connect(tcp, config, DOMAIN))
            .await
            .expect("handshake in time")
            .expect("TLS handshake with the proxy");
        (
            Peer::new(established.reader, established.writer),
            local,
            established.alpn,
        )
    }

    /// Closes the proxy's stdin and waits for it to exit: its status and all it wrote on
    /// stdout.
    pub async fn stop_by_eof(&mut self) -> (std::process::ExitStatus, Vec<u8>) {
        drop(self.stdin.take());
        let mut stdout = Vec::new();
        if let Some(mut out) = self.child.stdout.take() {
            let _ = timeout(LIMIT, out.read_to_end(&mut stdout)).await;
        }
        let status = timeout(LIMIT, self.child.wait())
            .await
            .expect("exits at the end of stdin")
            .expect("status");
        (status, stdout)
    }
}

/// A TCP connection to `addr`, retried until the proxy listens.
pub async fn connect(addr: SocketAddr) -> TcpStream {
    let deadline = Instant::now() + LIMIT;
    loop {
        match TcpStream::connect(addr).await {
            Ok(tcp) => return tcp,
            Err(e) if Instant::now() > deadline => panic!("cannot connect to {addr}: {e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}

/// One end of a stream, read by a task into a channel (so waiting with a timeout never cuts
/// a frame).
pub struct Peer {
    writer: Option<SecureWriter>,
    rx: mpsc::Receiver<Option<Vec<u8>>>,
    task: JoinHandle<()>,
    buf: Vec<u8>,
    eof: bool,
}

impl Drop for Peer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Peer {
    pub fn new(mut reader: SecureReader, writer: SecureWriter) -> Peer {
        let (tx, rx) = mpsc::channel(64);
        let task = tokio::spawn(async move {
            loop {
                match reader.recv().await {
                    Ok(Some(bytes)) => {
                        if tx.send(Some(bytes)).await.is_err() {
                            return;
                        }
                    }
                    _ => {
                        let _ = tx.send(None).await;
                        return;
                    }
                }
            }
        });
        Peer {
            writer: Some(writer),
            rx,
            task,
            buf: Vec::new(),
            eof: false,
        }
    }

    pub async fn send(&mut self, bytes: impl AsRef<[u8]>) {
        let writer = self.writer.as_mut().expect("open");
        timeout(LIMIT, writer.send(bytes.as_ref()))
            .await
            .expect("sent in time")
            .expect("sent");
    }

    /// Closes our side (FIN) and drops the writer.
    pub async fn shutdown(&mut self) {
        if let Some(mut w) = self.writer.take() {
            let _ = w.shutdown().await;
        }
    }

    /// Reads until `n` bytes are buffered or `until`; false at EOF or timeout.
    async fn fill(&mut self, n: usize, until: Instant) -> bool {
        while self.buf.len() < n {
            if self.eof {
                return false;
            }
            match tokio::time::timeout_at(until, self.rx.recv()).await {
                Ok(Some(Some(bytes))) => self.buf.extend_from_slice(&bytes),
                Ok(_) => self.eof = true,
                Err(_) => return false,
            }
        }
        true
    }

    /// The next bytes must be exactly `expected`.
    pub async fn expect(&mut self, expected: impl AsRef<[u8]>) {
        let expected = expected.as_ref();
        let complete = self.fill(expected.len(), Instant::now() + LIMIT).await;
        let got = &self.buf[..self.buf.len().min(expected.len())];
        assert!(
            complete && got == expected,
            "expected {:?}\n     got {:?}{}",
            String::from_utf8_lossy(expected),
            String::from_utf8_lossy(got),
            if self.eof { " (then EOF)" } else { "" }
        );
        self.buf.drain(..expected.len());
    }

    /// Everything up to and including the first `needle` (within `limit`).
    pub async fn read_through(&mut self, needle: &[u8], limit: Duration) -> Option<Vec<u8>> {
        let until = Instant::now() + limit;
        loop {
            if let Some(at) = self.buf.windows(needle.len()).position(|w| w == needle) {
                return Some(self.buf.drain(..at + needle.len()).collect());
            }
            let want = self.buf.len() + 1;
            if !self.fill(want, until).await {
                return None;
            }
        }
    }

    /// Reads to EOF within `limit`: the bytes before it, or `None` if the connection is
    /// still open then.
    pub async fn until_eof(&mut self, limit: Duration) -> Option<Vec<u8>> {
        let until = Instant::now() + limit;
        while !self.eof {
            let want = self.buf.len() + 1;
            if !self.fill(want, until).await && !self.eof {
                return None;
            }
        }
        Some(std::mem::take(&mut self.buf))
    }

    /// Waits `wait` and returns whatever arrived (and whether the connection ended).
    pub async fn collect(&mut self, wait: Duration) -> (Vec<u8>, bool) {
        let until = Instant::now() + wait;
        while !self.eof {
            let want = self.buf.len() + 1;
            if !self.fill(want, until).await {
                break;
            }
        }
        (std::mem::take(&mut self.buf), self.eof)
    }
}

/// A running pair: proxy, fake gatekeeper, one client connection and its upstream side.
pub struct Pair {
    pub proxy: Proxy,
    pub gatekeeper: Upstream,
    pub client: Peer,
    pub client_addr: SocketAddr,
    pub up: Peer,
    pub header: Vec<u8>,
    pub up_from: SocketAddr,
}

impl Pair {
    /// Proxy (with `mutant`), gatekeeper, a Noise client connected through.
    pub async fn start(mutant: Option<&str>) -> Pair {
        let gatekeeper = Upstream::new().await;
        let proxy = Proxy::start(mutant, &gatekeeper, &gatekeeper.key_base64(), false).await;
        let (client, client_addr) = proxy.connect_noise().await;
        let (header, up_from, up) = gatekeeper.accept().await;
        Pair {
            proxy,
            gatekeeper,
            client,
            client_addr,
            up,
            header,
            up_from,
        }
    }

    /// The first header exchange.
    pub async fn open(&mut self) {
        self.client.send(CLIENT_HEADER).await;
        self.up.expect(CLIENT_HEADER).await;
        let server = format!("{SERVER_HEADER}{SASL_FEATURES}");
        self.up.send(&server).await;
        self.client.expect(&server).await;
    }

    /// Header exchange, SASL PLAIN for alice (opted in), restart, bind: every byte checked
    /// on arrival.
    pub async fn login(&mut self) {
        self.open().await;
        let auth = auth("alice");
        self.client.send(&auth).await;
        self.up.expect(&auth).await;
        self.up.send(SUCCESS).await;
        self.client.expect(SUCCESS).await;
        self.client.send(RESTART_HEADER).await;
        self.up.expect(RESTART_HEADER).await;
        self.up.send(SERVER_RESTART).await;
        self.client.expect(SERVER_RESTART).await;
        self.client.send(BIND).await;
        self.up.expect(BIND).await;
        self.up.send(BOUND).await;
        self.client.expect(BOUND).await;
    }
}
