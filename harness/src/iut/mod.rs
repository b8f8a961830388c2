//! The implementation under test: its description (iut.toml) and how it is launched.

pub mod driver;
pub mod onboarding;
pub mod procs;
pub mod protocol;
pub mod proxy;
mod reference;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::scenario::{Role, known_capabilities, line_of};
use crate::transport::TransportKind;

/// A mistake in an iut.toml.
#[derive(Debug, thiserror::Error)]
pub enum IutError {
    #[error("{}:{line}: {message}", path.display())]
    Invalid {
        path: PathBuf,
        line: usize,
        message: String,
    },
    #[error("{}: cannot read: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "the reference provider binary was not found next to {} (looked for {}); build it with `cargo build --release` (the workspace builds both binaries), or install it beside gatecheck with `cargo install --path reference`",
        exe.display(),
        looked.display()
    )]
    NoReference { exe: PathBuf, looked: PathBuf },
}

/// How to start the IUT.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct Launch {
    /// Program to run; a relative path is resolved against the iut.toml's directory.
    pub command: PathBuf,
    #[serde(default)]
    pub args: Vec<String>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Working directory; relative paths are resolved against the iut.toml's directory.
    pub cwd: Option<PathBuf>,
}

impl Launch {
    /// Makes the command and the working directory absolute. A relative command path
    /// (`./shim.py`, `bin/shim`) resolves against `base`, the iut.toml's directory; so does
    /// a bare name (`shim.py`) when that file exists there; any other bare name (`python3`)
    /// is looked up on PATH.
    fn resolve(&mut self, base: &Path) {
        let bare = self.command.components().count() == 1;
        if self.command.is_relative() && (!bare || base.join(&self.command).is_file()) {
            self.command = base.join(&self.command);
        }
        self.cwd = Some(match self.cwd.take() {
            Some(c) if c.is_relative() => base.join(c),
            Some(c) => c,
            None => base.to_path_buf(),
        });
    }

    /// A copy with each `${name}` of `values` replaced in the arguments and environment.
    pub fn with_values(&self, values: &[(&str, &str)]) -> Launch {
        let sub = |s: &String| substitute(s, values);
        Launch {
            command: self.command.clone(),
            args: self.args.iter().map(sub).collect(),
            env: self.env.iter().map(|(k, v)| (k.clone(), sub(v))).collect(),
            cwd: self.cwd.clone(),
        }
    }
}

/// `text` with each `${name}` of `values` replaced (SPEC.md §6.1: `${port}`, `${scratch}`,
/// `${gatekeeper_key}`); other text is left as it is.
pub fn substitute(text: &str, values: &[(&str, &str)]) -> String {
    let mut out = text.to_string();
    for (name, value) in values {
        out = out.replace(&format!("${{{name}}}"), value);
    }
    out
}

/// Time limits for this IUT, in milliseconds.
#[derive(Debug, Clone, Copy, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Timeouts {
    /// From launch to the driver's `ready` event.
    pub ready_ms: u64,
    /// Default wait of one step.
    pub step_ms: u64,
    /// Whole scenario.
    pub scenario_ms: u64,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            ready_ms: 5_000,
            step_ms: 2_000,
            scenario_ms: 20_000,
        }
    }
}

impl Timeouts {
    pub fn step(&self) -> Duration {
        Duration::from_millis(self.step_ms)
    }
    pub fn scenario(&self) -> Duration {
        Duration::from_millis(self.scenario_ms)
    }
    pub fn ready(&self) -> Duration {
        Duration::from_millis(self.ready_ms)
    }
}

/// An IUT description, from iut.toml or built in for the reference provider.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct IutConfig {
    pub name: String,
    pub roles: Vec<Role>,
    /// Optional capabilities the IUT claims (see SPEC.md).
    #[serde(default)]
    pub features: Vec<String>,
    /// Transport used by scenarios that do not pin one (client and proxy roles). When
    /// iut.toml does not set it: the one `transport.*` feature the IUT claims, if it claims
    /// exactly one, else noise ([`IutConfig::load`]). Set, it must be a claimed one.
    #[serde(default = "default_transport")]
    pub transport: TransportKind,
    /// How to start the client (driven over the driver protocol); required for the client role.
    pub launch: Option<Launch>,
    /// Where the provider's server is reached (server role).
    pub server: Option<ServerSide>,
    /// What the provider gave at onboarding (SPEC.md §6.1).
    pub onboarding: Option<onboarding::Onboarding>,
    /// How to start the provider proxy (proxy role, SPEC.md §15).
    pub proxy: Option<proxy::ProxySide>,
    #[serde(default)]
    pub timeouts: Timeouts,
}

fn default_transport() -> TransportKind {
    TransportKind::Noise
}

/// The provider's server: reached at `base_url`, started first when `launch` is set.
/// `${port}` in `base_url`, `launch.args` and `launch.env` is replaced by a free
/// loopback port chosen for each scenario.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSide {
    pub base_url: String,
    /// PEM file of the one CA trusted for an https `base_url`; read once the server accepts
    /// connections, so the server may write it as it starts. A relative path is relative to
    /// the iut.toml's directory.
    pub ca: Option<String>,
    pub launch: Option<Launch>,
    /// With the `media` capability: how long, in seconds, the media host keeps an object
    /// (SPEC.md §14.3; MEDIA-8, MEDIA-9).
    #[serde(default)]
    pub media_retention_s: Option<u64>,
}

impl IutConfig {
    /// Reads and validates an iut.toml; relative paths become absolute.
    pub fn load(path: &Path) -> Result<IutConfig, IutError> {
        let text = std::fs::read_to_string(path).map_err(|source| IutError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let invalid = |offset: usize, message: String| IutError::Invalid {
            path: path.to_path_buf(),
            line: line_of(&text, offset),
            message,
        };
        let mut cfg: IutConfig = toml::from_str(&text).map_err(|e| {
            invalid(
                e.span().map(|s| s.start).unwrap_or(0),
                e.message().to_string(),
            )
        })?;
        if cfg.roles.is_empty() {
            return Err(invalid(
                0,
                "roles must name at least one of client, server, proxy".into(),
            ));
        }
        for f in &cfg.features {
            if !known_capabilities().contains(f) {
                return Err(invalid(
                    0,
                    format!(
                        "unknown feature {f:?} (known: {})",
                        known_capabilities().join(", ")
                    ),
                ));
            }
        }
        let t = cfg.timeouts;
        if t.ready_ms == 0 || t.step_ms == 0 || t.scenario_ms < t.step_ms {
            return Err(invalid(
                0,
                "timeouts must be positive and scenario_ms ≥ step_ms".into(),
            ));
        }
        if cfg.roles.contains(&Role::Client) && cfg.launch.is_none() {
            return Err(invalid(
                0,
                "the client role needs a [launch] table (the driver shim to start)".into(),
            ));
        }
        if cfg.roles.contains(&Role::Server) {
            let Some(server) = &cfg.server else {
                return Err(invalid(
                    0,
                    "the server role needs a [server] table with base_url".into(),
                ));
            };
            let probe = server.base_url.replace("${port}", "1");
            let base = crate::http::client::BaseUrl::parse(&probe).map_err(|m| {
                // Quote the URL as written, not with the probe's stand-in port.
                let m = m.replace(&format!("{probe:?}"), &format!("{:?}", server.base_url));
                invalid(0, m)
            })?;
            if base.https && server.ca.is_none() {
                return Err(invalid(
                    0,
                    "an https:// base_url needs [server] ca, the PEM file of the CA to trust (SPEC.md §6.1)".into(),
                ));
            }
        }
        if let Some(o) = &cfg.onboarding {
            o.validate().map_err(|m| invalid(0, m))?;
        }
        if cfg.roles.contains(&Role::Proxy) {
            proxy::ProxySide::validate(&cfg).map_err(|m| invalid(0, m))?;
        }
        cfg.settle_transport(transport_key(&text))
            .map_err(|(offset, m)| invalid(offset, m))?;
        // Absolute, so that the command and the working directory do not resolve twice.
        let parent = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        let base = std::fs::canonicalize(parent).unwrap_or_else(|_| parent.to_path_buf());
        if let Some(l) = cfg.launch.as_mut() {
            l.resolve(&base);
        }
        if let Some(l) = cfg.server.as_mut().and_then(|s| s.launch.as_mut()) {
            l.resolve(&base);
        }
        if let Some(p) = cfg.proxy.as_mut() {
            p.resolve(&base);
        }
        if let Some(ca) = cfg.server.as_mut().and_then(|s| s.ca.as_mut())
            && !ca.starts_with("${")
            && Path::new(ca.as_str()).is_relative()
        {
            *ca = base.join(ca.as_str()).to_string_lossy().into_owned();
        }
        Ok(cfg)
    }

    pub fn claims(&self, capability: &str) -> bool {
        self.features.iter().any(|f| f == capability)
    }

    /// The transports the IUT claims (`transport.noise`, `transport.tls`), in that order.
    pub fn claimed_transports(&self) -> Vec<TransportKind> {
        [TransportKind::Noise, TransportKind::Tls]
            .into_iter()
            .filter(|k| self.claims(&format!("transport.{k}")))
            .collect()
    }

    /// The default transport of the scenarios that do not pin one. `given`: where iut.toml
    /// sets `transport` (its byte offset), if it does. Not set, it is the one transport the
    /// IUT claims when it claims exactly one (a TLS-only client or proxy needs no
    /// `transport = "tls"`), else noise. Set by a client or proxy that claims transports, it
    /// must be one of them: anything else would make every scenario that does not pin a
    /// transport not-applicable without saying why.
    fn settle_transport(&mut self, given: Option<usize>) -> Result<(), (usize, String)> {
        let claimed = self.claimed_transports();
        let Some(offset) = given else {
            if let [only] = claimed.as_slice() {
                self.transport = *only;
            }
            return Ok(());
        };
        let connects = self.roles.contains(&Role::Client) || self.roles.contains(&Role::Proxy);
        if connects && !claimed.is_empty() && !claimed.contains(&self.transport) {
            let t = self.transport;
            return Err((
                offset,
                format!(
                    "transport = \"{t}\" is not a transport the IUT claims (features has no \"transport.{t}\"): every scenario that does not pin a transport would be not-applicable; set transport to a claimed one ({}), or leave it out (the default is the one transport claimed)",
                    claimed
                        .iter()
                        .map(|k| format!("\"{k}\""))
                        .collect::<Vec<_>>()
                        .join(" or ")
                ),
            ));
        }
        Ok(())
    }
}

/// Where an iut.toml sets the top-level key `transport` (the byte offset of its line), if
/// it does: a line `transport = …` before the first table header.
fn transport_key(text: &str) -> Option<usize> {
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        let t = line.trim_start();
        if t.starts_with('[') {
            return None;
        }
        if let Some(rest) = t.strip_prefix("transport")
            && rest.trim_start().starts_with('=')
        {
            return Some(offset);
        }
        offset += line.len();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Loads an iut.toml of the server role with this base_url.
    fn server_with(base_url: &str) -> Result<IutConfig, IutError> {
        let dir = std::env::temp_dir().join(format!(
            "gatecheck-iut-base-url-{}-{}",
            std::process::id(),
            base_url.len()
        ));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("iut.toml");
        let text =
            format!("name = \"s\"\nroles = [\"server\"]\n\n[server]\nbase_url = \"{base_url}\"\n");
        std::fs::write(&path, text).expect("write iut.toml");
        let cfg = IutConfig::load(&path);
        let _ = std::fs::remove_dir_all(&dir);
        cfg
    }

    /// Loads an iut.toml with this text.
    fn load_text(name: &str, text: &str) -> Result<IutConfig, IutError> {
        let dir = std::env::temp_dir().join(format!(
            "gatecheck-iut-{name}-{}-{}",
            std::process::id(),
            text.len()
        ));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("iut.toml");
        std::fs::write(&path, text).expect("write iut.toml");
        let cfg = IutConfig::load(&path);
        let _ = std::fs::remove_dir_all(&dir);
        cfg
    }

    const PROXY_TAIL: &str = "\n[proxy]\nnoise_key = \"k\"\nca = \"ca.pem\"\n\n[proxy.launch]\ncommand = \"/bin/proxy\"\n";

    fn proxy(features: &str, transport: &str) -> Result<IutConfig, IutError> {
        load_text(
            "transport",
            &format!(
                "name = \"p\"\nroles = [\"proxy\"]\nfeatures = [{features}]\n{transport}{PROXY_TAIL}"
            ),
        )
    }

    #[test]
    fn the_default_transport_is_the_one_claimed() {
        // A TLS-only proxy or client needs no `transport = "tls"`.
        let tls = proxy("\"transport.tls\"", "").expect("tls only");
        assert_eq!(tls.transport, TransportKind::Tls);
        let client = load_text(
            "transport-client",
            "name = \"c\"\nroles = [\"client\"]\nfeatures = [\"transport.tls\"]\n[launch]\ncommand = \"/bin/shim\"\n",
        )
        .expect("client");
        assert_eq!(client.transport, TransportKind::Tls);
        let noise = proxy("\"transport.noise\"", "").expect("noise only");
        assert_eq!(noise.transport, TransportKind::Noise);
        // Both claimed: noise, unless iut.toml says otherwise.
        let both = proxy("\"transport.noise\", \"transport.tls\"", "").expect("both");
        assert_eq!(both.transport, TransportKind::Noise);
        let both_tls = proxy(
            "\"transport.noise\", \"transport.tls\"",
            "transport = \"tls\"\n",
        )
        .expect("both, tls");
        assert_eq!(both_tls.transport, TransportKind::Tls);
        let explicit = proxy("\"transport.tls\"", "transport = \"tls\"\n").expect("explicit");
        assert_eq!(explicit.transport, TransportKind::Tls);
        // A server claims no transport: the key means nothing there and is left alone.
        let server = load_text(
            "transport-server",
            "name = \"s\"\nroles = [\"server\"]\ntransport = \"tls\"\n[server]\nbase_url = \"http://127.0.0.1:${port}\"\n",
        )
        .expect("server");
        assert_eq!(server.transport, TransportKind::Tls);
    }

    #[test]
    fn a_transport_not_claimed_is_refused_naming_the_key() {
        let e = proxy("\"transport.tls\"", "transport = \"noise\"\n")
            .expect_err("noise not claimed")
            .to_string();
        assert!(e.contains(":4: transport = \"noise\""), "{e}");
        assert!(e.contains("no \"transport.noise\""), "{e}");
        assert!(e.contains("\"tls\""), "{e}");
        let e = load_text(
            "transport-client-bad",
            "name = \"c\"\nroles = [\"client\"]\nfeatures = [\"transport.noise\"]\ntransport = \"tls\"\n[launch]\ncommand = \"/bin/shim\"\n",
        )
        .expect_err("tls not claimed")
        .to_string();
        assert!(
            e.contains("transport = \"tls\" is not a transport the IUT claims"),
            "{e}"
        );
        // A `transport` key inside a table is not the top-level one.
        assert_eq!(
            transport_key("name = \"x\"\n[launch]\ntransport = 1\n"),
            None
        );
        assert_eq!(
            transport_key("name = \"x\"\n  transport= \"tls\"\n"),
            Some(11)
        );
        assert_eq!(transport_key("transports = 1\n"), None);
    }

    #[test]
    fn base_urls_on_ipv6_loopback_are_accepted_and_others_refused() {
        for ok in ["http://[::1]:${port}", "http://127.0.0.2:${port}/api"] {
            server_with(ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
        let e = server_with("http://10.0.0.2:${port}").expect_err("not loopback");
        let e = e.to_string();
        assert!(e.contains("not a loopback address"), "{e}");
        assert!(
            e.contains("\"http://10.0.0.2:${port}\""),
            "quoted as written: {e}"
        );
    }
}
