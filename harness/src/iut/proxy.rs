//! The `[proxy]` section of an iut.toml (SPEC.md §15): how the harness starts a provider
//! proxy for each scenario, and where the proxy publishes what its clients pin.
//!
//! ```toml
//! [proxy]
//! noise_key = "${scratch}/proxy-noise.pub"   # transport.noise: base64 static public key
//! ca = "${scratch}/ca.pem"                    # transport.tls: the CA its clients trust
//! # server_name = "gk.gatecheck.test"         # the name on its certificate (default)
//!
//! [proxy.launch]
//! command = "…"
//! args = ["--listen", "127.0.0.1:${port}", "--listen-tls", "127.0.0.1:${port2}",
//!         "--upstream", "${upstream}", "--upstream-key", "${upstream_key}",
//!         "--opted-in", "${opted_in}", "--tls-dir", "${scratch}"]
//! ```
//!
//! Substituted in `noise_key`, `ca` and the launch arguments and environment: `${port}` (the
//! loopback port of the Noise listener for clients), `${port2}` (the TLS listener's),
//! `${scratch}` (a directory made for the scenario and removed after it), `${upstream}`
//! (`127.0.0.1:PORT` of the harness's gatekeeper), `${upstream_key}` (the standard base64 of
//! the gatekeeper's Noise static key, to pin: PROXY-1), `${opted_in}` (the bare JIDs of the
//! test accounts that opted in, comma-separated: PROXY-12) and `${accounts}` (every test
//! account with its credential, `JID:CREDENTIAL` comma-separated, the opted-in ones and the
//! one that did not opt in: for an IUT that checks SASL itself, such as an XMPP server in the
//! proxy's place; a proxy has no use for it). The proxy's transports are the IUT's
//! `transport.*` features (the default `transport` is the one claimed when only one is); it
//! writes the files of those it serves before it listens.

use std::path::Path;

use serde::Deserialize;

use super::{IutConfig, Launch};
use crate::transport::TransportKind;

/// The names substituted in a `[proxy]` section.
pub const SUBSTITUTIONS: &[&str] = &[
    "port",
    "port2",
    "scratch",
    "upstream",
    "upstream_key",
    "opted_in",
    "accounts",
];

/// A provider proxy: how to start it and where it publishes its key and CA.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct ProxySide {
    /// File holding the proxy's Noise static public key, standard base64 (transport.noise).
    pub noise_key: Option<String>,
    /// PEM file of the one CA trusted for the proxy's TLS listener (transport.tls).
    pub ca: Option<String>,
    /// The name the proxy's certificate must carry (default: the gatekeeper's domain).
    pub server_name: Option<String>,
    pub launch: Launch,
}

impl ProxySide {
    /// The transports the proxy serves: the IUT's claimed `transport.*` features.
    pub fn transports(cfg: &IutConfig) -> Vec<TransportKind> {
        cfg.claimed_transports()
    }

    /// The name a downstream client checks on the proxy's certificate.
    pub fn tls_name(&self) -> &str {
        self.server_name
            .as_deref()
            .unwrap_or(crate::roles::gatekeeper_server::DOMAIN)
    }

    /// Checks a `[proxy]` section against the IUT's claims; the message says what is missing.
    pub(super) fn validate(cfg: &IutConfig) -> Result<(), String> {
        let Some(p) = &cfg.proxy else {
            return Err(
                "the proxy role needs a [proxy] table with [proxy.launch] (SPEC.md §15)".into(),
            );
        };
        let transports = ProxySide::transports(cfg);
        if transports.is_empty() {
            return Err(
                "a proxy must claim transport.noise or transport.tls in features (STREAM-1)".into(),
            );
        }
        if transports.contains(&TransportKind::Noise) && p.noise_key.is_none() {
            return Err(
                "[proxy] noise_key: the file where the proxy writes its Noise static public key (it claims transport.noise)".into(),
            );
        }
        if transports.contains(&TransportKind::Tls) && p.ca.is_none() {
            return Err(
                "[proxy] ca: the PEM file of the CA its TLS certificate chains to (it claims transport.tls)".into(),
            );
        }
        for text in p
            .launch
            .args
            .iter()
            .chain(p.launch.env.values())
            .chain(p.noise_key.iter())
            .chain(p.ca.iter())
        {
            unknown_substitution(text)?;
        }
        Ok(())
    }

    /// Makes the command, working directory and files absolute against `base`.
    pub(super) fn resolve(&mut self, base: &Path) {
        self.launch.resolve(base);
        for file in [self.noise_key.as_mut(), self.ca.as_mut()]
            .into_iter()
            .flatten()
        {
            if !file.starts_with("${") && Path::new(file.as_str()).is_relative() {
                *file = base.join(file.as_str()).to_string_lossy().into_owned();
            }
        }
    }
}

/// A `${name}` the proxy section may not use (a typo would reach the proxy as it is).
fn unknown_substitution(text: &str) -> Result<(), String> {
    let mut rest = text;
    while let Some(at) = rest.find("${") {
        let after = &rest[at + 2..];
        let Some(end) = after.find('}') else {
            return Err(format!("[proxy]: unclosed `${{` in {text:?}"));
        };
        let name = &after[..end];
        if !SUBSTITUTIONS.contains(&name) {
            return Err(format!(
                "[proxy]: unknown substitution ${{{name}}} in {text:?} (known: {})",
                SUBSTITUTIONS
                    .iter()
                    .map(|s| format!("${{{s}}}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        rest = &after[end + 1..];
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::iut::IutError;

    fn load(body: &str) -> Result<IutConfig, IutError> {
        let dir = std::env::temp_dir().join(format!(
            "gatecheck-iut-proxy-{}-{}",
            std::process::id(),
            body.len()
        ));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("iut.toml");
        std::fs::write(&path, body).expect("write");
        let cfg = IutConfig::load(&path);
        let _ = std::fs::remove_dir_all(&dir);
        cfg
    }

    const HEAD: &str =
        "name = \"p\"\nroles = [\"proxy\"]\nfeatures = [\"transport.noise\", \"transport.tls\"]\n";

    #[test]
    fn a_proxy_section_loads_with_its_files_resolved() {
        let cfg = load(&format!(
            "{HEAD}[proxy]\nnoise_key = \"${{scratch}}/k.pub\"\nca = \"ca.pem\"\n[proxy.launch]\ncommand = \"/bin/proxy\"\nargs = [\"--listen\", \"127.0.0.1:${{port}}\", \"--tls\", \"127.0.0.1:${{port2}}\", \"--up\", \"${{upstream}}\", \"${{upstream_key}}\", \"${{opted_in}}\", \"--accounts=${{accounts}}\"]\n"
        ))
        .expect("loads");
        let p = cfg.proxy.as_ref().expect("proxy");
        assert_eq!(
            p.launch
                .with_values(&[("accounts", "a@d:c,b@d:e")])
                .args
                .last()
                .map(String::as_str),
            Some("--accounts=a@d:c,b@d:e")
        );
        assert_eq!(p.noise_key.as_deref(), Some("${scratch}/k.pub"));
        assert!(p.ca.as_deref().is_some_and(|c| Path::new(c).is_absolute()));
        assert_eq!(p.tls_name(), crate::roles::gatekeeper_server::DOMAIN);
        assert_eq!(
            ProxySide::transports(&cfg),
            [TransportKind::Noise, TransportKind::Tls]
        );
    }

    #[test]
    fn what_a_proxy_lacks_is_named() {
        let e = load(HEAD).expect_err("no section").to_string();
        assert!(e.contains("needs a [proxy] table"), "{e}");
        let e = load(&format!(
            "{HEAD}[proxy]\nca = \"ca.pem\"\n[proxy.launch]\ncommand = \"/bin/proxy\"\n"
        ))
        .expect_err("no key")
        .to_string();
        assert!(e.contains("noise_key"), "{e}");
        let e = load(&format!(
            "{HEAD}[proxy]\nnoise_key = \"k\"\nca = \"ca.pem\"\n[proxy.launch]\ncommand = \"/bin/proxy\"\nargs = [\"${{upstream_port}}\"]\n"
        ))
        .expect_err("typo")
        .to_string();
        assert!(e.contains("unknown substitution ${upstream_port}"), "{e}");
        let e = load(
            "name = \"p\"\nroles = [\"proxy\"]\n[proxy]\n[proxy.launch]\ncommand = \"/bin/proxy\"\n",
        )
        .expect_err("no transport")
        .to_string();
        assert!(e.contains("STREAM-1"), "{e}");
    }
}
