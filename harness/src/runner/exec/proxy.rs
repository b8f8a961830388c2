//! Scenarios of a provider proxy (role `proxy`, SPEC.md §15): the harness launches the
//! proxy with its gatekeeper listening in upstream mode, plays the proxy's clients
//! (downstream, [`crate::roles::downstream`]) and the gatekeeper behind it (upstream,
//! [`crate::roles::upstream`]).
//!
//! Each downstream client has its own upstream connection (PROXY-3). The gatekeeper-server
//! steps (`send`, `expect`, `expect_closed`, ...) read and write the upstream connection of
//! the client a proxy step named last: it sits in the device slot those steps use, the
//! others wait in their clients. Every upstream TCP connection the proxy opens beyond one per
//! client fails PROXY-3, whenever it is found (after each step and at the end). A client
//! connected with `upstream = "optional"` may have none ([`super::proxy_optional`]).

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::task::Poll;
use std::time::Duration;

use base64::Engine;
use tokio::net::TcpListener;
use tokio::time::Instant;

use super::Exec;
use super::http::Scratch;
use crate::iut::driver::DriverProcess;
use crate::iut::proxy::ProxySide;
use crate::roles::Deviation;
use crate::roles::conn::{Inbound, IutConn};
use crate::roles::downstream::{Downstream, Trust, plain_message};
use crate::roles::gatekeeper_server as gk;
use crate::scenario::step::Action;
use crate::scenario::{Role, Step};
use crate::transport::TransportKind;

/// PROXY-3: one upstream connection per client connection, after its handshake.
pub(super) const ONE_UPSTREAM: &str = "PROXY-3";

/// A stand-in identifier proof for a `PLAIN-IDPROOF` message a proxy must pass on unchanged
/// (PROXY-13): JSON text without NUL, never judged.
const STAND_IN_PROOF: &str = r#"{"v":1,"note":"gatecheck stand-in proof, forwarded unchanged"}"#;

/// The proxy's side of a scenario: its listeners, what it published, its clients.
pub(super) struct ProxyState {
    /// The gatekeeper's upstream listener (`${upstream}`).
    pub listener: TcpListener,
    /// The proxy's listeners for clients: Noise (`${port}`) and TLS (`${port2}`).
    pub noise_addr: SocketAddr,
    pub tls_addr: SocketAddr,
    /// What the proxy published: its Noise key and its CA.
    pub noise_key: Option<Vec<u8>>,
    pub ca_pem: Option<String>,
    pub server_name: String,
    /// Until then a refused connection is retried (the proxy may still be starting).
    pub ready_by: Instant,
    pub clients: Vec<Client>,
    /// The client whose upstream connection is in the device slot.
    pub current: Option<usize>,
    /// The account that did not opt in (PROXY-12), and its credential.
    pub optout: (String, String),
    _scratch: Scratch,
}

/// One downstream client of the proxy.
pub(super) struct Client {
    pub name: String,
    pub down: Downstream,
    /// Its upstream connection while another client is current.
    pub up: Option<IutConn>,
    pub backlog: VecDeque<Inbound>,
    /// Whether its upstream connection was required (PROXY-3) or optional.
    pub mode: UpstreamMode,
}

/// Whether a client's `downstream_connect` required an upstream connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum UpstreamMode {
    /// None before the step's deadline fails PROXY-3.
    Required,
    /// `upstream = "optional"` ([`super::proxy_optional`]). `pending`: none came during a
    /// connect that stopped at the handshake, and one may still come: it is accepted and
    /// served while the client's steps wait.
    Optional { pending: bool },
}

/// A loopback port free now, for the proxy to listen on. It is drawn at random outside the
/// range the system picks from for outgoing connections and `bind(0)` (Linux's
/// `ip_local_port_range`), so that neither a client connection of this run nor a listener
/// made meanwhile takes it before the proxy binds it; `bind(0)` when none is found.
fn free_port() -> std::io::Result<u16> {
    use rand::Rng;
    let (low, high) = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|t| {
            let mut it = t.split_whitespace().map(|n| n.parse::<u16>().ok());
            Some((it.next()??, it.next()??))
        })
        .unwrap_or((32768, 60999));
    let candidates = if low > 11_000 {
        10_000..low
    } else {
        high.saturating_add(1).max(1024)..u16::MAX
    };
    let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::from_os_rng();
    for _ in 0..64 {
        if candidates.is_empty() {
            break;
        }
        let port = rng.random_range(candidates.clone());
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return Ok(port);
        }
    }
    let l = std::net::TcpListener::bind(("127.0.0.1", 0))?;
    Ok(l.local_addr()?.port())
}

impl Exec<'_> {
    /// Starts the proxy on fresh ports, its upstream the harness's gatekeeper, and reads
    /// what it publishes for its clients (its Noise key, its CA) once it has written them.
    pub(super) async fn launch_proxy(&mut self) -> Result<(), Deviation> {
        let side = self
            .iut
            .proxy
            .as_ref()
            .ok_or_else(|| Deviation::error("the IUT has no [proxy] section"))?;
        let listener = TcpListener::bind(("127.0.0.1", 0))
            .await
            .map_err(|e| Deviation::error(format!("cannot listen on loopback: {e}")))?;
        let upstream = listener
            .local_addr()
            .map_err(|e| Deviation::error(format!("no upstream address: {e}")))?;
        let no_port = |e: std::io::Error| Deviation::error(format!("no free loopback port: {e}"));
        let port = free_port().map_err(no_port)?;
        let mut port2 = free_port().map_err(no_port)?;
        while port2 == port {
            port2 = free_port().map_err(no_port)?;
        }
        let scratch = Scratch::new("proxy", &self.token)
            .map_err(|e| Deviation::error(format!("cannot make the scratch directory: {e}")))?;
        let upstream_key = self.keys()?.noise.public_base64();
        let opted_in = format!("{}@{}", self.account, gk::DOMAIN);
        let optout = (
            format!(
                "optout-{}",
                self.vars.get("rand:optout").unwrap_or_default()
            ),
            self.vars.get("rand:optout-credential").unwrap_or_default(),
        );
        // Every test account with its credential, for an IUT that checks SASL itself (a
        // server in the proxy's place); a proxy passes the client's <auth> on (PROXY-13).
        let accounts = format!(
            "{opted_in}:{},{}@{}:{}",
            self.credential,
            optout.0,
            gk::DOMAIN,
            optout.1
        );
        let (port_text, port2_text) = (port.to_string(), port2.to_string());
        let scratch_text = scratch.0.to_string_lossy().into_owned();
        let upstream_text = upstream.to_string();
        let values = [
            ("port", port_text.as_str()),
            ("port2", port2_text.as_str()),
            ("scratch", scratch_text.as_str()),
            ("upstream", upstream_text.as_str()),
            ("upstream_key", upstream_key.as_str()),
            ("opted_in", opted_in.as_str()),
            ("accounts", accounts.as_str()),
        ];
        let launch = side.launch.with_values(&values);
        self.transcript.note(format!(
            "launching the proxy {}: clients at 127.0.0.1:{port} (noise) and 127.0.0.1:{port2} (tls), upstream {upstream}, opted in: {opted_in}",
            self.iut.name
        ));
        // The proxy is not driven: whatever it prints on stdout is read and dropped.
        let (tx, mut rx) = tokio::sync::mpsc::channel(crate::iut::driver::QUEUE);
        tokio::spawn(async move { while rx.recv().await.is_some() {} });
        let process = DriverProcess::spawn(&launch, &self.token, tx)
            .map_err(|e| Deviation::inconclusive(format!("the proxy did not start: {e}")))?;
        self.dev().driver = Some(process);
        let ready_by = Instant::now() + self.iut.timeouts.ready();
        let transports = ProxySide::transports(self.iut);
        let sub = |f: &Option<String>| f.as_deref().map(|f| crate::iut::substitute(f, &values));
        let noise_key = match sub(&side.noise_key) {
            Some(file) if transports.contains(&TransportKind::Noise) => Some(
                self.published(&file, "Noise key", ready_by, noise_key)
                    .await?,
            ),
            _ => None,
        };
        let ca_pem = match sub(&side.ca) {
            Some(file) if transports.contains(&TransportKind::Tls) => {
                Some(self.published(&file, "CA", ready_by, ca).await?)
            }
            _ => None,
        };
        let (account, credential) = (self.account.clone(), self.credential.clone());
        self.vars.set("optout.account", optout.0.clone());
        self.vars
            .set("optout.bare", format!("{}@{}", optout.0, gk::DOMAIN));
        self.vars
            .set("client.sasl_plain", plain_message(&account, &credential));
        self.vars.set(
            "client.sasl_idproof",
            base64::engine::general_purpose::STANDARD
                .encode(format!("\0{account}\0{credential}\0{STAND_IN_PROOF}")),
        );
        self.vars
            .set("optout.sasl_plain", plain_message(&optout.0, &optout.1));
        self.proxy = Some(ProxyState {
            listener,
            noise_addr: SocketAddr::from(([127, 0, 0, 1], port)),
            tls_addr: SocketAddr::from(([127, 0, 0, 1], port2)),
            noise_key,
            ca_pem,
            server_name: side.tls_name().to_string(),
            ready_by,
            clients: Vec::new(),
            current: None,
            optout,
            _scratch: scratch,
        });
        Ok(())
    }

    /// Reads a file the proxy writes as it starts, retrying until it parses or `ready_by`.
    async fn published<T>(
        &mut self,
        file: &str,
        what: &str,
        ready_by: Instant,
        parse: fn(&str) -> Result<T, String>,
    ) -> Result<T, Deviation> {
        loop {
            let last = match read_bounded(file) {
                Ok(text) => match parse(&text) {
                    Ok(v) => return Ok(v),
                    Err(e) => e,
                },
                Err(e) => e,
            };
            if let Some(status) = self.dev().driver.as_mut().and_then(|d| d.try_exit_status()) {
                return Err(Deviation::inconclusive(format!(
                    "the proxy exited ({status}) before publishing its {what} in {file}"
                )));
            }
            if Instant::now() >= ready_by {
                return Err(Deviation::inconclusive(format!(
                    "the proxy did not publish a usable {what} in {file} (iut.toml [proxy]) within {} ms: {last}",
                    self.iut.timeouts.ready_ms
                )));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Why a failure is the proxy process's end rather than its behaviour: it exited (a port
    /// taken under it, a crash at start), which makes the scenario inconclusive.
    pub(super) async fn proxy_exited(&mut self) -> Option<Deviation> {
        let driver = self.devices[0].driver.as_mut()?;
        let status = driver
            .exit_status_within(Duration::from_millis(200))
            .await?;
        Some(Deviation::inconclusive(format!(
            "the proxy exited ({status}); its stderr says why"
        )))
    }

    pub(super) fn proxy_state(&mut self) -> Result<&mut ProxyState, Deviation> {
        self.proxy
            .as_mut()
            .ok_or_else(|| Deviation::error("this step needs a proxy scenario (role = \"proxy\")"))
    }

    /// The client called `name`, made current: its upstream connection goes into the device
    /// slot the gatekeeper-server steps use, the previous current client's comes out.
    pub(super) fn select_client(&mut self, name: &str) -> Result<usize, Deviation> {
        let (conn, backlog) = {
            let dev = &mut self.devices[0];
            (dev.conn.take(), std::mem::take(&mut dev.backlog))
        };
        let p = self.proxy_state()?;
        if let Some(c) = p.current {
            p.clients[c].up = conn;
            p.clients[c].backlog = backlog;
        }
        p.current = None;
        let i = p
            .clients
            .iter()
            .position(|c| c.name == name)
            .ok_or_else(|| Deviation::error(format!("no downstream client {name:?}")))?;
        let (conn, backlog) = (
            p.clients[i].up.take(),
            std::mem::take(&mut p.clients[i].backlog),
        );
        p.current = Some(i);
        self.devices[0].conn = conn;
        self.devices[0].backlog = backlog;
        Ok(i)
    }

    /// The current client's upstream connection.
    pub(super) fn upstream_conn(&mut self) -> Result<&mut IutConn, Deviation> {
        self.devices[0].conn.as_mut().ok_or_else(|| {
            Deviation::error("the client has no upstream connection (its handshake was refused)")
        })
    }

    /// An upstream connection the proxy opened beyond one per client fails PROXY-3 (one poll
    /// of accept, never a wait). Nothing outside proxy scenarios.
    pub(super) fn proxy_after_step(&mut self) -> Result<(), Deviation> {
        let Some(p) = self.proxy.as_ref() else {
            return Ok(());
        };
        // A client whose optional upstream connection may still come takes the next one
        // (it is accepted while that client's steps wait).
        if p.clients
            .iter()
            .any(|c| c.mode == UpstreamMode::Optional { pending: true })
        {
            return Ok(());
        }
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        let Poll::Ready(Ok((tcp, peer))) = p.listener.poll_accept(&mut cx) else {
            return Ok(());
        };
        drop(tcp);
        let clients = p.clients.len();
        self.transcript
            .note(format!("unexpected upstream TCP connection from {peer}"));
        Err(Deviation::fail(
            ONE_UPSTREAM,
            format!(
                "exactly one upstream connection per client connection, opened after its handshake ({clients} client connection(s) so far, each with its own)"
            ),
            format!("another upstream TCP connection, from {peer}"),
        ))
    }

    /// In a proxy scenario, a gatekeeper-server step that names its requirement is charged
    /// with it even where the server's own check names another: what those checks name
    /// (STREAM-42 for XML the profile forbids, ...) is what a client owes, while what a proxy
    /// sends upstream comes from its client and the scenario's PROXY rule says what it owed.
    pub(super) fn proxy_charge(&self, step: &Step, mut d: Deviation) -> Deviation {
        if self.scenario.role == Role::Proxy
            && !matches!(step.action, Action::Proxy(_))
            && let Some(r) = &step.requirement
        {
            d.requirement = Some(r.clone());
        }
        d
    }

    /// How a downstream client authenticates the proxy over `kind`.
    pub(super) fn proxy_trust(&mut self, kind: TransportKind) -> Result<Trust, Deviation> {
        let p = self.proxy_state()?;
        match kind {
            TransportKind::Noise => p.noise_key.clone().map(Trust::NoiseKey),
            TransportKind::Tls => p.ca_pem.clone().map(|pem| Trust::TlsCa {
                pem,
                server_name: p.server_name.clone(),
            }),
        }
        .ok_or_else(|| {
            Deviation::not_applicable(format!("the proxy published nothing for transport.{kind}"))
        })
    }
}

/// The most of a published file that is read: a key or a CA chain is far smaller.
const PUBLISHED_LIMIT: u64 = 64 * 1024;

/// A file the proxy wrote, at most [`PUBLISHED_LIMIT`] bytes of it, as UTF-8.
fn read_bounded(file: &str) -> Result<String, String> {
    use std::io::Read;
    let mut text = String::new();
    std::fs::File::open(file)
        .and_then(|f| f.take(PUBLISHED_LIMIT + 1).read_to_string(&mut text))
        .map_err(|e| e.to_string())?;
    if text.len() as u64 > PUBLISHED_LIMIT {
        return Err(format!("more than {PUBLISHED_LIMIT} bytes"));
    }
    Ok(text)
}

fn noise_key(text: &str) -> Result<Vec<u8>, String> {
    let key = base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .map_err(|e| format!("not standard base64: {e}"))?;
    if key.len() != 32 {
        return Err(format!(
            "{} bytes, not an X25519 public key (32)",
            key.len()
        ));
    }
    Ok(key)
}

fn ca(text: &str) -> Result<String, String> {
    crate::transport::root_store(text).map_err(|e| e.to_string())?;
    Ok(text.to_string())
}
