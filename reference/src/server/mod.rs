//! The provider server role (SPEC.md §11-13): the HTTPS endpoints the gatekeeper calls
//! (`/gatecheck/v1/auth`, `/gatecheck/v1/push`) and the provider's own proof issuing.
//!
//! The server is launched by the harness, not driven: it takes its whole configuration from
//! the command line, logs to stderr only, and ends on SIGTERM, SIGINT, a `shutdown` command
//! line or the end of stdin (the harness holds stdin open for as long as it wants the server;
//! EOF means the harness is gone, and a server outliving it would hold the port).
//!
//! Every connection is bounded in time and the number of connections is capped, so that slow or
//! hostile clients cost a bounded amount and the server keeps answering the others.

mod http;
mod media;
mod state;
mod tls;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use ed25519_dalek::{SigningKey, VerifyingKey};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;

use crate::mutant::Mutant;

const NAME: &str = "gatecheck-reference server";
const EXIT_USAGE: u8 = 2;
const EXIT_FAILURE: u8 = 1;

pub const USAGE: &str = "usage: gatecheck-reference [--mutant NAME] server --listen ADDR:PORT \
--tls-dir DIR --gatekeeper-key BASE64 --signing-seed HEX --provider-id ID \
--user IDENTIFIER:TOKEN:DEVICE_ID [--user ...] [--expired-token IDENTIFIER:TOKEN ...] \
[--revoked-token IDENTIFIER:TOKEN ...] [--base-path /PREFIX] [--media-retention-s SECONDS]";

/// Where the harness also puts its request-signing key (SPEC §6.1).
const GATEKEEPER_KEY_ENV: &str = "GATECHECK_GATEKEEPER_KEY";

/// How long a client may take for its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a client may take to send a request's headers (hyper closes the connection).
const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
/// How long any one connection may live, idle keep-alive included: bounds slow senders and
/// clients that sit on a connection, whatever hyper's own timers cover.
const CONNECTION_LIFETIME: Duration = Duration::from_secs(30);
/// Connections served at once; more are closed at once, the ones in progress go on.
const MAX_CONNECTIONS: usize = 256;
/// hyper's read buffer, which bounds the request head (larger heads get 431).
const MAX_BUF: usize = 16 * 1024;

/// The server's configuration, from its command line.
pub struct Config {
    pub listen: SocketAddr,
    pub tls_dir: PathBuf,
    pub gatekeeper_key: VerifyingKey,
    pub signing_key: SigningKey,
    pub provider_id: String,
    pub users: Vec<(String, String, u32)>,
    pub expired: Vec<(String, String)>,
    pub revoked: Vec<(String, String)>,
    pub base_path: String,
    /// How long the media host keeps an object (SPEC.md §14.3).
    pub media_retention_s: u64,
}

impl std::fmt::Debug for Config {
    // The signing key and the tokens stay out of any debug output.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("listen", &self.listen)
            .field("tls_dir", &self.tls_dir)
            .field("provider_id", &self.provider_id)
            .field("users", &self.users.len())
            .field("base_path", &self.base_path)
            .finish_non_exhaustive()
    }
}

/// Reads the server's arguments (those after `server`). The error names the argument and what
/// is wrong with it.
pub fn parse_args(args: &[String]) -> Result<Config, String> {
    let mut listen = None;
    let mut tls_dir = None;
    let mut gatekeeper_key = None;
    let mut signing_key = None;
    let mut provider_id = None;
    let mut base_path = None;
    let mut media_retention_s = None;
    let mut users = Vec::new();
    let mut expired = Vec::new();
    let mut revoked = Vec::new();

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
            "--listen" => {
                let v = value()?;
                let addr = v
                    .parse::<SocketAddr>()
                    .map_err(|e| format!("--listen {v:?}: not an ADDRESS:PORT ({e})"))?;
                once(&mut listen, addr, name)?;
            }
            "--tls-dir" => {
                let v = value()?;
                if v.is_empty() {
                    return Err("--tls-dir: the directory name is empty".into());
                }
                once(&mut tls_dir, PathBuf::from(v), name)?;
            }
            "--gatekeeper-key" => once(&mut gatekeeper_key, parse_public_key(&value()?)?, name)?,
            "--signing-seed" => once(&mut signing_key, parse_seed(&value()?)?, name)?,
            "--provider-id" => once(&mut provider_id, parse_provider_id(&value()?)?, name)?,
            "--base-path" => once(&mut base_path, parse_base_path(&value()?)?, name)?,
            "--media-retention-s" => {
                let v = value()?;
                let seconds = v.parse::<u64>().ok().filter(|s| *s > 0).ok_or_else(|| {
                    format!("--media-retention-s {v:?}: not a positive number of seconds")
                })?;
                once(&mut media_retention_s, seconds, name)?;
            }
            "--user" => users.push(parse_user(&value()?)?),
            "--expired-token" => expired.push(parse_pair(name, &value()?)?),
            "--revoked-token" => revoked.push(parse_pair(name, &value()?)?),
            other => return Err(format!("unknown server argument {other:?}")),
        }
    }
    // SPEC §6.1: the harness also hands its key over in the environment.
    if gatekeeper_key.is_none()
        && let Ok(v) = std::env::var(GATEKEEPER_KEY_ENV)
    {
        gatekeeper_key =
            Some(parse_public_key(&v).map_err(|e| format!("{e} (from {GATEKEEPER_KEY_ENV})"))?);
    }
    let missing = |what: &str| format!("{what} is required");
    Ok(Config {
        listen: listen.ok_or_else(|| missing("--listen"))?,
        tls_dir: tls_dir.ok_or_else(|| missing("--tls-dir"))?,
        gatekeeper_key: gatekeeper_key
            .ok_or_else(|| missing(&format!("--gatekeeper-key (or {GATEKEEPER_KEY_ENV})")))?,
        signing_key: signing_key.ok_or_else(|| missing("--signing-seed"))?,
        provider_id: provider_id.ok_or_else(|| missing("--provider-id"))?,
        users,
        expired,
        revoked,
        base_path: base_path.unwrap_or_default(),
        media_retention_s: media_retention_s.unwrap_or(media::DEFAULT_RETENTION_S),
    })
}

fn once<T>(slot: &mut Option<T>, value: T, name: &str) -> Result<(), String> {
    if slot.is_some() {
        return Err(format!("{name} is given twice"));
    }
    *slot = Some(value);
    Ok(())
}

fn parse_public_key(v: &str) -> Result<VerifyingKey, String> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(v)
        .map_err(|e| format!("--gatekeeper-key: not standard base64 ({e})"))?;
    let bytes: [u8; 32] = bytes.try_into().map_err(|b: Vec<u8>| {
        format!(
            "--gatekeeper-key: an Ed25519 public key is 32 bytes, not {}",
            b.len()
        )
    })?;
    let key = VerifyingKey::from_bytes(&bytes)
        .map_err(|_| "--gatekeeper-key: not a point on the Ed25519 curve".to_owned())?;
    if key.is_weak() {
        return Err("--gatekeeper-key: a key of small order verifies forged signatures".into());
    }
    Ok(key)
}

fn parse_seed(v: &str) -> Result<SigningKey, String> {
    if v.len() != 64 || !v.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err("--signing-seed: must be 64 hexadecimal digits (a 32-byte seed)".into());
    }
    let mut seed = [0u8; 32];
    for (i, byte) in seed.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&v[2 * i..2 * i + 2], 16)
            .map_err(|_| "--signing-seed: not hexadecimal".to_owned())?;
    }
    Ok(SigningKey::from_bytes(&seed))
}

/// IDPROOF-3: 1 to 64 characters of `a-z`, `0-9`, `.` and `-`.
fn parse_provider_id(v: &str) -> Result<String, String> {
    gatecheck::idproof::check_provider_id(v).map_err(|why| format!("--provider-id {v:?} {why}"))?;
    Ok(v.to_owned())
}

/// Empty, or an absolute path without a trailing slash, query or fragment.
fn parse_base_path(v: &str) -> Result<String, String> {
    if v.is_empty() {
        return Ok(String::new());
    }
    let ok = v.starts_with('/')
        && !v.ends_with('/')
        && !v.contains("//")
        && v.bytes()
            .all(|b| b.is_ascii_graphic() && b != b'?' && b != b'#');
    if !ok {
        return Err(format!(
            "--base-path {v:?}: must start with '/', not end with '/', and hold no spaces, \
             '?', '#' or '//'"
        ));
    }
    Ok(v.to_owned())
}

/// `IDENTIFIER:TOKEN:DEVICE_ID`; the token may itself hold colons (the identifier is up to the
/// first, the device id after the last).
fn parse_user(v: &str) -> Result<(String, String, u32), String> {
    let shape = "--user: expected IDENTIFIER:TOKEN:DEVICE_ID";
    let (identifier, rest) = v.split_once(':').ok_or(shape)?;
    let (token, device) = rest.rsplit_once(':').ok_or(shape)?;
    if token.is_empty() {
        return Err(format!("{shape}, with a non-empty token"));
    }
    gatecheck::idproof::check_identifier(identifier)
        .map_err(|why| format!("--user: identifier {identifier:?} {why}"))?;
    let max = gatecheck::idproof::MAX_DEVICE_ID;
    let device_id = device
        .parse::<u32>()
        .ok()
        .filter(|d| (1..=max).contains(d))
        .ok_or_else(|| format!("--user: device id {device:?} is not a number from 1 to {max}"))?;
    Ok((identifier.to_owned(), token.to_owned(), device_id))
}

/// `IDENTIFIER:TOKEN` (the token may hold colons).
fn parse_pair(name: &str, v: &str) -> Result<(String, String), String> {
    match v.split_once(':') {
        Some((identifier, token)) if !identifier.is_empty() && !token.is_empty() => {
            Ok((identifier.to_owned(), token.to_owned()))
        }
        _ => Err(format!("{name}: expected IDENTIFIER:TOKEN, both non-empty")),
    }
}

/// The server role's entry point: arguments, runtime, then [`run`].
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

/// Makes the certificates, writes `ca.pem`, listens, and serves until told to stop.
async fn run(config: Config, mutant: Mutant) -> ExitCode {
    if mutant != Mutant::None {
        eprintln!(
            "{NAME}: running mutant {} (breaks {})",
            mutant.name(),
            mutant.requirement()
        );
    }
    let pki = match tls::Pki::generate() {
        Ok(pki) => pki,
        Err(why) => {
            eprintln!("{NAME}: {why}");
            return ExitCode::from(EXIT_FAILURE);
        }
    };
    let tls_config = match pki.server_config() {
        Ok(c) => c,
        Err(why) => {
            eprintln!("{NAME}: {why}");
            return ExitCode::from(EXIT_FAILURE);
        }
    };
    // ca.pem before listening: whoever sees the port open may read the CA at once.
    if let Err(why) = pki.write_ca(&config.tls_dir) {
        eprintln!("{NAME}: {why}");
        return ExitCode::from(EXIT_USAGE);
    }
    let listener = match TcpListener::bind(config.listen).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("{NAME}: cannot listen on {}: {e}", config.listen);
            return ExitCode::from(EXIT_FAILURE);
        }
    };
    eprintln!(
        "{NAME}: listening on https://{}{} (provider {}, {} device(s))",
        config.listen,
        config.base_path,
        config.provider_id,
        config.users.len()
    );
    let shared = Arc::new(http::Shared::new(&config, mutant));
    let acceptor = tokio_rustls::TlsAcceptor::from(tls_config);
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));

    let stop = stop_signal();
    tokio::pin!(stop);
    loop {
        let accepted = tokio::select! {
            why = &mut stop => {
                eprintln!("{NAME}: stopping ({why})");
                return ExitCode::SUCCESS;
            }
            accepted = listener.accept() => accepted,
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
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let shared = Arc::clone(&shared);
        tokio::spawn(async move {
            let _slot = slot;
            let Ok(Ok(stream)) =
                tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await
            else {
                return;
            };
            let service = hyper::service::service_fn(move |req| {
                let shared = Arc::clone(&shared);
                async move { Ok::<_, std::convert::Infallible>(shared.handle(req).await) }
            });
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .max_buf_size(MAX_BUF)
                .serve_connection(TokioIo::new(stream), service);
            if let Ok(Err(e)) = tokio::time::timeout(CONNECTION_LIFETIME, connection).await {
                eprintln!("{NAME}: connection from {peer}: {e}");
            }
        });
    }
}

/// Resolves when the server should stop, with the reason: a signal, a `shutdown` line on stdin,
/// or the end of stdin.
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
    tokio::select! {
        why = stdin_done => why,
        Some(()) = async { match term.as_mut() { Some(s) => s.recv().await, None => std::future::pending().await } } => "SIGTERM",
        Some(()) = async { match int.as_mut() { Some(s) => s.recv().await, None => std::future::pending().await } } => "SIGINT",
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
            "127.0.0.1:0",
            "--tls-dir",
            "/tmp/x",
            "--gatekeeper-key",
            // The Ed25519 public key of the all-zero seed.
            "O2onvM62pC1io6jQKm8Nc2UyFXcd4kOmOsBIoYtZ2ik=",
            "--signing-seed",
            &"ab".repeat(32),
            "--provider-id",
            "example-provider",
            "--user",
            "+4915112345678:tok:en:42",
            "--expired-token=+4915112345678:old",
            "--base-path",
            "/api/v1",
        ])
    }

    #[test]
    fn a_full_command_line_parses() {
        let c = parse_args(&good()).expect("parses");
        assert_eq!(
            c.users,
            vec![("+4915112345678".into(), "tok:en".into(), 42)]
        );
        assert_eq!(c.expired, vec![("+4915112345678".into(), "old".into())]);
        assert_eq!(c.base_path, "/api/v1");
        assert_eq!(c.provider_id, "example-provider");
    }

    #[test]
    fn bad_arguments_are_named() {
        let cases: &[(&str, &str, &str)] = &[
            ("--listen", "nowhere", "--listen"),
            ("--gatekeeper-key", "AAAA", "--gatekeeper-key"),
            ("--gatekeeper-key", "%%%", "--gatekeeper-key"),
            ("--signing-seed", "abc", "--signing-seed"),
            ("--provider-id", "Upper", "--provider-id"),
            ("--base-path", "api/", "--base-path"),
            ("--user", "+491:tok", "--user"),
            ("--user", "+491:tok:-1", "--user"),
            ("--revoked-token", "+491", "--revoked-token"),
        ];
        for (flag, value, named) in cases {
            let mut a = good();
            let i = a.iter().position(|x| x == flag).unwrap_or(a.len());
            if i < a.len() {
                a[i + 1] = (*value).to_owned();
            } else {
                a.push((*flag).to_owned());
                a.push((*value).to_owned());
            }
            let err = parse_args(&a).expect_err(value);
            assert!(err.contains(named), "{err}");
        }
        let err = parse_args(&args(&["--listen", "127.0.0.1:1"])).expect_err("missing");
        assert!(err.contains("--tls-dir"), "{err}");
        let mut twice = good();
        twice.extend(args(&["--listen", "127.0.0.1:2"]));
        assert!(parse_args(&twice).expect_err("twice").contains("twice"));
        let mut unknown = good();
        unknown.push("--frobnicate".into());
        assert!(
            parse_args(&unknown)
                .expect_err("unknown")
                .contains("--frobnicate")
        );
    }
}
