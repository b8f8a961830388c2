//! The bundled reference provider as an IUT: its client, its server
//! (`gatecheck-reference server`) with the onboarding data the harness needs for it, and its
//! proxy (`gatecheck-reference proxy`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use super::onboarding::{Onboarding, TestUser};
use super::proxy::ProxySide;
use super::{IutConfig, IutError, Launch, ServerSide, Timeouts};
use crate::scenario::Role;
use crate::transport::TransportKind;

/// The reference server's provider signing key seed (a test key, public on purpose: it
/// signs identifier proofs for test users only).
const SIGNING_SEED_HEX: &str = "3f1c5e7a9b2d4f6081a3c5e7092b4d6f8193a5c7e9fb1d3f5071a3c5e7f9b2d4";
const PROVIDER_ID: &str = "gatecheck-reference";
/// The reference server's media retention: 14 days (MEDIA-9).
const MEDIA_RETENTION_S: u64 = 1_209_600;

/// The reference server's test users: identifier, token, device id, expired and revoked
/// tokens.
const USERS: &[(&str, &str, u32, &str, &str)] = &[
    (
        "+4915100000001",
        "ref-token-anna-5b8e2c",
        1001,
        "ref-expired-anna-71d0",
        "ref-revoked-anna-9c3a",
    ),
    (
        "+4915100000002",
        "ref-token-ben-2f6d91",
        1002,
        "ref-expired-ben-40e7",
        "ref-revoked-ben-d81b",
    ),
];

impl IutConfig {
    /// The bundled reference provider (client, server and proxy roles), optionally with a
    /// mutant.
    pub fn reference(mutant: Option<&str>) -> Result<IutConfig, IutError> {
        let exe = std::env::current_exe().unwrap_or_else(|_| PathBuf::from("gatecheck"));
        let dir = exe.parent().unwrap_or(Path::new("."));
        let name = format!("gatecheck-reference{}", std::env::consts::EXE_SUFFIX);
        // Test binaries live in target/<profile>/deps; the reference binary one level up.
        let candidates = [dir.join(&name), dir.join("..").join(&name)];
        let command = candidates
            .iter()
            .find(|c| c.is_file())
            .cloned()
            .ok_or_else(|| IutError::NoReference {
                exe: exe.clone(),
                looked: candidates[0].clone(),
            })?;
        Ok(IutConfig::reference_at(command, mutant))
    }

    /// The reference provider at a known path. A mutant goes to the process of the role it
    /// breaks: the server's mutants are named `server-…`, the proxy's `proxy-…`, every other
    /// one is the client's, and the other processes run unmutated.
    pub fn reference_at(command: PathBuf, mutant: Option<&str>) -> IutConfig {
        let server_mutant = mutant.filter(|m| m.starts_with("server-"));
        let proxy_mutant = mutant.filter(|m| m.starts_with("proxy-"));
        let client_mutant =
            mutant.filter(|m| !m.starts_with("server-") && !m.starts_with("proxy-"));
        let mut args = Vec::new();
        if let Some(m) = client_mutant {
            args.push("--mutant".to_string());
            args.push(m.to_string());
        }
        args.push("client".to_string());
        let mut server_args = Vec::new();
        if let Some(m) = server_mutant {
            server_args.push("--mutant".to_string());
            server_args.push(m.to_string());
        }
        for a in [
            "server",
            "--listen",
            "127.0.0.1:${port}",
            "--tls-dir",
            "${scratch}",
            "--gatekeeper-key",
            "${gatekeeper_key}",
            "--signing-seed",
            SIGNING_SEED_HEX,
            "--provider-id",
            PROVIDER_ID,
            "--media-retention-s",
        ] {
            server_args.push(a.to_string());
        }
        server_args.push(MEDIA_RETENTION_S.to_string());
        for (id, token, device, expired, revoked) in USERS {
            server_args.push("--user".into());
            server_args.push(format!("{id}:{token}:{device}"));
            server_args.push("--expired-token".into());
            server_args.push(format!("{id}:{expired}"));
            server_args.push("--revoked-token".into());
            server_args.push(format!("{id}:{revoked}"));
        }
        let mut proxy_args = Vec::new();
        if let Some(m) = proxy_mutant {
            proxy_args.push("--mutant".to_string());
            proxy_args.push(m.to_string());
        }
        proxy_args.extend(PROXY_ARGS.iter().map(|a| a.to_string()));
        IutConfig {
            name: match mutant {
                Some(m) => format!("gatecheck-reference --mutant {m}"),
                None => "gatecheck-reference".to_string(),
            },
            roles: vec![Role::Client, Role::Server, Role::Proxy],
            features: vec![
                "transport.noise".into(),
                "transport.tls".into(),
                "media".into(),
                "chatstates".into(),
            ],
            transport: TransportKind::Noise,
            launch: Some(Launch {
                command: command.clone(),
                args,
                env: BTreeMap::new(),
                cwd: None,
            }),
            server: Some(ServerSide {
                base_url: "https://127.0.0.1:${port}".into(),
                ca: Some("${scratch}/ca.pem".into()),
                launch: Some(Launch {
                    command: command.clone(),
                    args: server_args,
                    env: BTreeMap::new(),
                    cwd: None,
                }),
                media_retention_s: Some(MEDIA_RETENTION_S),
            }),
            onboarding: Some(onboarding()),
            proxy: Some(ProxySide {
                noise_key: Some("${scratch}/proxy-noise.pub".into()),
                ca: Some("${scratch}/ca.pem".into()),
                server_name: None,
                launch: Launch {
                    command,
                    args: proxy_args,
                    env: BTreeMap::new(),
                    cwd: None,
                },
            }),
            timeouts: Timeouts::default(),
        }
    }
}

/// The reference proxy's arguments (after any `--mutant`): Noise and TLS listeners for its
/// clients, its key and CA written to the scenario's directory, the gatekeeper to pin.
const PROXY_ARGS: &[&str] = &[
    "proxy",
    "--listen",
    "127.0.0.1:${port}",
    "--listen-tls",
    "127.0.0.1:${port2}",
    "--tls-dir",
    "${scratch}",
    "--upstream",
    "${upstream}",
    "--upstream-key",
    "${upstream_key}",
    "--opted-in",
    "${opted_in}",
];

/// What the reference provider was onboarded with.
fn onboarding() -> Onboarding {
    let seed: Vec<u8> = (0..SIGNING_SEED_HEX.len() / 2)
        .filter_map(|i| u8::from_str_radix(&SIGNING_SEED_HEX[2 * i..2 * i + 2], 16).ok())
        .collect();
    let seed: [u8; 32] = seed.try_into().unwrap_or([0; 32]);
    let public = ed25519_dalek::SigningKey::from_bytes(&seed).verifying_key();
    Onboarding {
        provider_id: PROVIDER_ID.into(),
        provider_keys: vec![STANDARD.encode(public.as_bytes())],
        number_prefixes: vec!["+49151".into()],
        identifier_domains: Vec::new(),
        users: USERS
            .iter()
            .map(|(id, token, device, expired, revoked)| TestUser {
                identifier: id.to_string(),
                token: token.to_string(),
                device_id: *device,
                expired_token: Some(expired.to_string()),
                revoked_token: Some(revoked.to_string()),
                opted_in: true,
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// fixtures/iut/reference.toml, the template providers copy, describes the same server
    /// and onboarding as the built-in description.
    #[test]
    fn the_fixture_matches_the_built_in_description() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/iut/reference.toml");
        let fixture = IutConfig::load(&path).expect("the fixture loads");
        let built = IutConfig::reference_at("/x".into(), None);
        let (f, b) = (fixture.onboarding.unwrap(), built.onboarding.unwrap());
        assert_eq!(f.provider_id, b.provider_id);
        assert_eq!(f.provider_keys, b.provider_keys);
        let users =
            |o: &Onboarding| -> Vec<String> { o.users.iter().map(|u| format!("{u:?}")).collect() };
        assert_eq!(users(&f), users(&b));
        let (fs, bs) = (fixture.server.unwrap(), built.server.unwrap());
        assert_eq!((fs.base_url, fs.ca), (bs.base_url, bs.ca));
        assert_eq!(fs.media_retention_s, bs.media_retention_s);
        assert_eq!(fixture.features, built.features);
        assert_eq!(fs.launch.unwrap().args, bs.launch.unwrap().args);
        assert_eq!(fixture.roles, built.roles);
        assert_eq!(fixture.features, built.features);
        let (fp, bp) = (fixture.proxy.unwrap(), built.proxy.unwrap());
        assert_eq!(
            (fp.noise_key, fp.ca, fp.server_name),
            (bp.noise_key, bp.ca, bp.server_name)
        );
        assert_eq!(fp.launch.args, bp.launch.args);
    }

    #[test]
    fn the_reference_onboarding_is_valid_and_mutants_go_to_their_role() {
        onboarding().validate().expect("valid");
        let c = IutConfig::reference_at("/x".into(), Some("server-echoes-token"));
        let client = c.launch.as_ref().unwrap();
        assert_eq!(client.args, ["client"]);
        let server = c.server.as_ref().unwrap().launch.as_ref().unwrap();
        assert_eq!(
            server.args[..3],
            ["--mutant", "server-echoes-token", "server"]
        );
        let c = IutConfig::reference_at("/x".into(), Some("send-comment"));
        assert_eq!(
            c.launch.as_ref().unwrap().args[..2],
            ["--mutant", "send-comment"]
        );
        assert_eq!(
            c.server.as_ref().unwrap().launch.as_ref().unwrap().args[0],
            "server"
        );
        assert_eq!(c.proxy.as_ref().unwrap().launch.args[0], "proxy");
        let c = IutConfig::reference_at("/x".into(), Some("proxy-delays"));
        assert_eq!(c.launch.as_ref().unwrap().args, ["client"]);
        assert_eq!(
            c.server.as_ref().unwrap().launch.as_ref().unwrap().args[0],
            "server"
        );
        assert_eq!(
            c.proxy.as_ref().unwrap().launch.args[..3],
            ["--mutant", "proxy-delays", "proxy"]
        );
    }
}
