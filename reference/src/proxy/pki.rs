//! The proxy's own keys: a fresh Noise static key and, for TLS clients, a throw-away CA with a
//! leaf for the names clients connect under; and the files that hand the public parts over.
//!
//! Files are written under a temporary name and renamed, so that a caller polling for them
//! never reads half of one; both are in place before the proxy listens.

use std::path::Path;
use std::sync::Arc;

use gatecheck::roles::gatekeeper_server::DOMAIN;
use gatecheck::transport::ALPN_XMPP_CLIENT;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use rustls::ServerConfig;
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};

/// Where the proxy's Noise public key goes (standard base64 of its 32 bytes, no line end).
pub const NOISE_PUB_FILE: &str = "proxy-noise.pub";
/// Where the proxy's CA goes (PEM), with `--listen-tls`.
pub const CA_FILE: &str = "ca.pem";

/// A fresh CA, and a TLS 1.3 server config (ALPN `xmpp-client`) whose certificate that CA
/// signed for the gatekeeper's domain (the name a client checks, SPEC.md §7.2), `localhost`,
/// `127.0.0.1` and `::1`.
pub fn tls() -> Result<(String, Arc<ServerConfig>), String> {
    let rc = |e: rcgen::Error| format!("certificate generation failed: {e}");
    let mut ca = CertificateParams::new(Vec::<String>::new()).map_err(rc)?;
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca.distinguished_name
        .push(DnType::CommonName, "gatecheck-reference proxy CA");
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_key = KeyPair::generate().map_err(rc)?;
    let ca_cert = ca.self_signed(&ca_key).map_err(rc)?;
    let issuer = Issuer::new(ca, ca_key);

    let mut leaf =
        CertificateParams::new(vec![DOMAIN.to_owned(), "localhost".to_owned()]).map_err(rc)?;
    leaf.subject_alt_names
        .push(SanType::IpAddress(std::net::Ipv4Addr::LOCALHOST.into()));
    leaf.subject_alt_names
        .push(SanType::IpAddress(std::net::Ipv6Addr::LOCALHOST.into()));
    leaf.distinguished_name.push(DnType::CommonName, DOMAIN);
    leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    leaf.use_authority_key_identifier_extension = true;
    let leaf_key = KeyPair::generate().map_err(rc)?;
    let leaf_cert = leaf.signed_by(&leaf_key, &issuer).map_err(rc)?;

    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der()));
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| format!("TLS configuration: {e}"))?
        .with_no_client_auth()
        .with_single_cert(vec![leaf_cert.der().clone()], key)
        .map_err(|e| format!("TLS configuration: {e}"))?;
    config.alpn_protocols = vec![ALPN_XMPP_CLIENT.to_vec()];
    Ok((ca_cert.pem(), Arc::new(config)))
}

/// Writes `contents` to `dir/name` in one step (temporary file, then rename), creating `dir`.
pub fn write_file(dir: &Path, name: &str, contents: &[u8]) -> Result<(), String> {
    std::fs::create_dir_all(dir)
        .map_err(|e| format!("--tls-dir {}: cannot create it: {e}", dir.display()))?;
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let dest = dir.join(name);
    let written = std::fs::write(&tmp, contents)
        .and_then(|()| std::fs::rename(&tmp, &dest))
        .map_err(|e| format!("cannot write {}: {e}", dest.display()));
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_offers_xmpp_client_and_files_are_whole() {
        let (ca, config) = tls().expect("pki");
        assert!(ca.starts_with("-----BEGIN CERTIFICATE-----"));
        assert_eq!(config.alpn_protocols, vec![ALPN_XMPP_CLIENT.to_vec()]);
        let dir = std::env::temp_dir().join(format!(
            "gatecheck-reference-proxy-pki-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        write_file(&dir, CA_FILE, ca.as_bytes()).expect("write");
        assert_eq!(std::fs::read_to_string(dir.join(CA_FILE)).unwrap(), ca);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
