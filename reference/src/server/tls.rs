//! The server's own throw-away PKI and its rustls configuration.
//!
//! The server makes a CA and a leaf for the loopback names at every start, so that a run never
//! depends on certificates left on disk. The CA goes to `DIR/ca.pem` for the caller to trust;
//! it is written under a temporary name and renamed, so that a caller polling for the file
//! never reads half of it. The private keys stay in memory.

use std::path::Path;
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use rustls::ServerConfig;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// The only application protocol served.
pub const ALPN_HTTP1: &[u8] = b"http/1.1";

/// A fresh CA and a leaf for `localhost`, `127.0.0.1` and `::1`.
pub struct Pki {
    pub ca_pem: String,
    leaf: CertificateDer<'static>,
    key_pkcs8: Vec<u8>,
}

impl Pki {
    pub fn generate() -> Result<Pki, String> {
        let rc = |e: rcgen::Error| format!("certificate generation failed: {e}");
        let mut ca = CertificateParams::new(Vec::<String>::new()).map_err(rc)?;
        ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        ca.distinguished_name
            .push(DnType::CommonName, "gatecheck-reference server CA");
        ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca_key = KeyPair::generate().map_err(rc)?;
        let ca_cert = ca.self_signed(&ca_key).map_err(rc)?;
        let issuer = Issuer::new(ca, ca_key);

        let mut leaf = CertificateParams::new(vec!["localhost".to_owned()]).map_err(rc)?;
        leaf.subject_alt_names
            .push(SanType::IpAddress(std::net::Ipv4Addr::LOCALHOST.into()));
        leaf.subject_alt_names
            .push(SanType::IpAddress(std::net::Ipv6Addr::LOCALHOST.into()));
        leaf.distinguished_name
            .push(DnType::CommonName, "localhost");
        leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        leaf.use_authority_key_identifier_extension = true;
        let leaf_key = KeyPair::generate().map_err(rc)?;
        let leaf_cert = leaf.signed_by(&leaf_key, &issuer).map_err(rc)?;
        Ok(Pki {
            ca_pem: ca_cert.pem(),
            leaf: leaf_cert.der().clone(),
            key_pkcs8: leaf_key.serialize_der(),
        })
    }

    /// Writes the CA to `dir/ca.pem` in one step (temporary file, then rename).
    pub fn write_ca(&self, dir: &Path) -> Result<(), String> {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("--tls-dir {}: cannot create it: {e}", dir.display()))?;
        let tmp = dir.join(format!(".ca.pem.{}.tmp", std::process::id()));
        let dest = dir.join("ca.pem");
        let written = std::fs::write(&tmp, &self.ca_pem)
            .and_then(|()| std::fs::rename(&tmp, &dest))
            .map_err(|e| format!("cannot write {}: {e}", dest.display()));
        if written.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        written
    }

    /// TLS 1.3 only, ALPN `http/1.1` only, no client certificates.
    pub fn server_config(&self) -> Result<Arc<ServerConfig>, String> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key_pkcs8.clone()));
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| format!("TLS configuration: {e}"))?
            .with_no_client_auth()
            .with_single_cert(vec![self.leaf.clone()], key)
            .map_err(|e| format!("TLS configuration: {e}"))?;
        config.alpn_protocols = vec![ALPN_HTTP1.to_vec()];
        Ok(Arc::new(config))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ca_is_written_whole_and_config_builds() {
        let pki = Pki::generate().expect("pki");
        let dir = std::env::temp_dir().join(format!(
            "gatecheck-reference-tls-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        pki.write_ca(&dir).expect("write");
        let read = std::fs::read_to_string(dir.join("ca.pem")).expect("read");
        assert_eq!(read, pki.ca_pem);
        assert!(read.starts_with("-----BEGIN CERTIFICATE-----"));
        let config = pki.server_config().expect("config");
        assert_eq!(config.alpn_protocols, vec![ALPN_HTTP1.to_vec()]);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
