//! The provider proxy role (SPEC.md §15): between the provider's clients and the gatekeeper.
//!
//! It accepts clients over Noise (its own static key, `--listen`) and direct TLS (its own CA,
//! `--listen-tls`), and for each client connection opens one Noise connection to the
//! gatekeeper, pinning the gatekeeper's key, after a PROXY protocol v2 header naming the
//! client. It relays the XML stream unit by unit as the bytes received, checks the client's
//! input as a server would, and lets only opted-in users log in.
//!
//! Like the server role it is launched, not driven: configuration from the command line,
//! nothing on stdout, logs on stderr, and it ends on SIGTERM, SIGINT, a `shutdown` command line
//! or the end of stdin. Before listening it writes `DIR/proxy-noise.pub` (and, with
//! `--listen-tls`, `DIR/ca.pem`).

mod bounce;
mod check;
mod deviate;
mod downstream;
mod header;
mod mutate;
mod pki;
mod relay;
mod units;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use gatecheck::transport::{NoiseKeypair, TransportKind};
use tokio::net::TcpListener;

use crate::mutant::Mutant;

const NAME: &str = "gatecheck-reference proxy";
const EXIT_USAGE: u8 = 2;
const EXIT_FAILURE: u8 = 1;

pub const USAGE: &str = "usage: gatecheck-reference [--mutant NAME] proxy --listen ADDR:PORT \
[--listen-tls ADDR:PORT] --tls-dir DIR --upstream HOST:PORT --upstream-key BASE64 \
--opted-in JID[,JID...]";

/// Client connections served at once; more are closed at once.
const MAX_CONNECTIONS: usize = 256;

/// The proxy's configuration, from its command line.
#[derive(Debug)]
pub struct Config {
    pub listen: SocketAddr,
    pub listen_tls: Option<SocketAddr>,
    pub tls_dir: PathBuf,
    pub upstream: String,
    pub upstream_key: Vec<u8>,
    pub opted_in: Vec<String>,
}

/// What every connection shares.
pub struct Shared {
    pub mutant: Mutant,
    /// The proxy's Noise static key: towards its clients and towards the gatekeeper.
    pub key: NoiseKeypair,
    pub upstream: String,
    pub upstream_key: Vec<u8>,
    pub opted_in: Vec<String>,
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// Stanzas kept for accounts whose client left: the `proxy-buffers-offline` mutant's
    /// (the correct proxy keeps nothing, so this stays empty).
    pub kept: deviate::Kept,
}

/// Reads the proxy's arguments (those after `proxy`).
pub fn parse_args(args: &[String]) -> Result<Config, String> {
    let mut listen = None;
    let mut listen_tls = None;
    let mut tls_dir = None;
    let mut upstream = None;
    let mut upstream_key = None;
    let mut opted_in = None;
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let (name, inline) = match arg.split_once('=') {
            Some((n, v)) if n.starts_with("--") => (n, Some(v.to_owned())),
            _ => (arg.as_str(), None),
        };
        let mut value = || match inline.clone() {
            Some(v) => Ok(v),
            None => it
                .next()
                .cloned()
                .ok_or_else(|| format!("{name} needs a value")),
        };
        match name {
            "--listen" => once(&mut listen, parse_addr(name, &value()?)?, name)?,
            "--listen-tls" => once(&mut listen_tls, parse_addr(name, &value()?)?, name)?,
            "--tls-dir" => {
                let v = value()?;
                if v.is_empty() {
                    return Err("--tls-dir: the directory name is empty".into());
                }
                once(&mut tls_dir, PathBuf::from(v), name)?;
            }
            "--upstream" => once(&mut upstream, parse_upstream(&value()?)?, name)?,
            "--upstream-key" => once(&mut upstream_key, parse_key(&value()?)?, name)?,
            "--opted-in" => once(&mut opted_in, parse_opted_in(&value()?)?, name)?,
            other => return Err(format!("unknown proxy argument {other:?}")),
        }
    }
    let missing = |what: &str| format!("{what} is required");
    Ok(Config {
        listen: listen.ok_or_else(|| missing("--listen"))?,
        listen_tls,
        tls_dir: tls_dir.ok_or_else(|| missing("--tls-dir"))?,
        upstream: upstream.ok_or_else(|| missing("--upstream"))?,
        upstream_key: upstream_key.ok_or_else(|| missing("--upstream-key"))?,
        opted_in: opted_in.ok_or_else(|| missing("--opted-in (it may be empty)"))?,
    })
}

fn once<T>(slot: &mut Option<T>, value: T, name: &str) -> Result<(), String> {
    if slot.is_some() {
        return Err(format!("{name} is given twice"));
    }
    *slot = Some(value);
    Ok(())
}

fn parse_addr(name: &str, v: &str) -> Result<SocketAddr, String> {
    v.parse()
        .map_err(|e| format!("{name} {v:?}: not an ADDRESS:PORT ({e})"))
}

/// `HOST:PORT` (or `[IPv6]:PORT`), resolved at each connection.
fn parse_upstream(v: &str) -> Result<String, String> {
    let ok = v
        .rsplit_once(':')
        .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0));
    if !ok {
        return Err(format!("--upstream {v:?}: expected HOST:PORT"));
    }
    Ok(v.to_owned())
}

/// The gatekeeper's Noise static key: standard base64 of 32 bytes.
fn parse_key(v: &str) -> Result<Vec<u8>, String> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(v.trim())
        .map_err(|e| format!("--upstream-key: not standard base64 ({e})"))?;
    if bytes.len() != 32 {
        return Err(format!(
            "--upstream-key: an X25519 public key is 32 bytes, not {}",
            bytes.len()
        ));
    }
    Ok(bytes)
}

/// Comma-separated bare JIDs (`local@domain`); empty means nobody.
fn parse_opted_in(v: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    for jid in v.split(',').map(str::trim).filter(|j| !j.is_empty()) {
        let bare = jid
            .split_once('@')
            .is_some_and(|(local, domain)| !local.is_empty() && !domain.is_empty())
            && !jid.contains('/');
        if !bare {
            return Err(format!(
                "--opted-in: {jid:?} is not a bare JID (local@domain)"
            ));
        }
        out.push(jid.to_owned());
    }
    Ok(out)
}

/// The proxy role's entry point: arguments, runtime, then [`run`].
pub fn main(mutant: Mutant, args: Vec<String>) -> ExitCode {
    let config = match parse_args(&args) {
        Ok(config) => config,
        Err(why) => {
            eprintln!("{NAME}: {why}\n{USAGE}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let Some(runtime) = crate::runtime() else {
        return ExitCode::from(EXIT_FAILURE);
    };
    let code = runtime.block_on(run(config, mutant));
    // Connections still open must not keep the process alive once it decided to stop.
    runtime.shutdown_background();
    code
}

/// Makes the keys, writes them, listens, and serves until told to stop.
async fn run(config: Config, mutant: Mutant) -> ExitCode {
    if mutant != Mutant::None {
        eprintln!(
            "{NAME}: running mutant {} (breaks {})",
            mutant.name(),
            mutant.requirement()
        );
    }
    let key = NoiseKeypair::generate();
    let tls = match config.listen_tls {
        None => None,
        Some(_) => match pki::tls() {
            Ok(tls) => Some(tls),
            Err(why) => {
                eprintln!("{NAME}: {why}");
                return ExitCode::from(EXIT_FAILURE);
            }
        },
    };
    // The files before listening: whoever sees a port open may read them at once.
    let mut written = pki::write_file(
        &config.tls_dir,
        pki::NOISE_PUB_FILE,
        key.public_base64().as_bytes(),
    );
    if let (Ok(()), Some((ca_pem, _))) = (&written, &tls) {
        written = pki::write_file(&config.tls_dir, pki::CA_FILE, ca_pem.as_bytes());
    }
    if let Err(why) = written {
        eprintln!("{NAME}: {why}");
        return ExitCode::from(EXIT_USAGE);
    }
    let noise_listener = match TcpListener::bind(config.listen).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("{NAME}: cannot listen on {}: {e}", config.listen);
            return ExitCode::from(EXIT_FAILURE);
        }
    };
    let tls_listener = match config.listen_tls {
        None => None,
        Some(addr) => match TcpListener::bind(addr).await {
            Ok(l) => Some(l),
            Err(e) => {
                eprintln!("{NAME}: cannot listen on {addr}: {e}");
                return ExitCode::from(EXIT_FAILURE);
            }
        },
    };
    eprintln!(
        "{NAME}: Noise on {}{}, upstream {} ({} opted-in user(s))",
        config.listen,
        config
            .listen_tls
            .map(|a| format!(", TLS on {a}"))
            .unwrap_or_default(),
        config.upstream,
        config.opted_in.len()
    );
    let shared = Arc::new(Shared {
        mutant,
        key,
        upstream: config.upstream,
        upstream_key: config.upstream_key,
        opted_in: config.opted_in,
        tls: tls.map(|(_, config)| config),
        kept: deviate::Kept::default(),
    });
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    let stop = stop_signal();
    tokio::pin!(stop);
    loop {
        let (accepted, kind) = tokio::select! {
            why = &mut stop => {
                eprintln!("{NAME}: stopping ({why})");
                return ExitCode::SUCCESS;
            }
            a = noise_listener.accept() => (a, TransportKind::Noise),
            a = async {
                match &tls_listener {
                    Some(l) => l.accept().await,
                    None => std::future::pending().await,
                }
            } => (a, TransportKind::Tls),
        };
        let (tcp, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // Out of file descriptors and the like: wait a little rather than spin.
                eprintln!("{NAME}: accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
            eprintln!("{NAME}: {MAX_CONNECTIONS} connections open; closing the one from {peer}");
            continue;
        };
        let shared = Arc::clone(&shared);
        tokio::spawn(async move {
            let _slot = slot;
            relay::serve(tcp, peer, kind, shared).await;
        });
    }
}

/// Resolves when the proxy should stop, with the reason: a signal, a `shutdown` line on stdin,
/// or the end of stdin (the harness is gone; a proxy outliving it would hold its ports).
async fn stop_signal() -> &'static str {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).ok();
    let mut int = signal(SignalKind::interrupt()).ok();
    let mut stdin = crate::driver::spawn_stdin_reader();
    let stdin_done = async {
        while let Some(line) = stdin.recv().await {
            if let crate::driver::InputLine::Line(text) = line
                && let Ok((_, crate::driver::Command::Shutdown)) =
                    crate::driver::parse_command(&text)
            {
                return "shutdown command";
            }
        }
        "end of stdin"
    };
    let signalled = |s: Option<tokio::signal::unix::Signal>| async move {
        match s {
            Some(mut s) => s.recv().await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        why = stdin_done => why,
        Some(()) = signalled(term.take()) => "SIGTERM",
        Some(()) = signalled(int.take()) => "SIGINT",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| (*s).to_owned()).collect()
    }

    fn good() -> Vec<String> {
        args(&[
            "--listen",
            "127.0.0.1:5222",
            "--listen-tls=127.0.0.1:5223",
            "--tls-dir",
            "/tmp/x",
            "--upstream",
            "127.0.0.1:6000",
            "--upstream-key",
            "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
            "--opted-in",
            "alice@gk.gatecheck.test, bob@gk.gatecheck.test",
        ])
    }

    #[test]
    fn a_full_command_line_parses() {
        let c = parse_args(&good()).expect("parses");
        assert_eq!(c.listen_tls, Some("127.0.0.1:5223".parse().unwrap()));
        assert_eq!(
            c.opted_in,
            vec!["alice@gk.gatecheck.test", "bob@gk.gatecheck.test"]
        );
        assert_eq!(c.upstream_key, vec![0; 32]);
        let mut empty = good();
        let last = empty.len() - 1;
        empty[last] = String::new();
        assert!(parse_args(&empty).expect("empty list").opted_in.is_empty());
    }

    #[test]
    fn bad_arguments_are_named() {
        for (flag, value) in [
            ("--listen", "nowhere"),
            ("--upstream", "no-port"),
            ("--upstream-key", "AAAA"),
            ("--upstream-key", "%%%"),
            ("--opted-in", "alice"),
            ("--opted-in", "alice@gk/phone"),
        ] {
            let mut a = good();
            let i = a.iter().position(|x| x == flag).expect("flag");
            a[i + 1] = value.to_owned();
            let err = parse_args(&a).expect_err(value);
            assert!(err.contains(flag), "{err}");
        }
        let mut twice = good();
        twice.extend(args(&["--listen", "127.0.0.1:1"]));
        assert!(parse_args(&twice).expect_err("twice").contains("twice"));
        let missing = parse_args(&good()[..8]).expect_err("missing");
        assert!(missing.contains("--upstream-key"), "{missing}");
    }
}
