//! The reference client's rustls configuration, and the two TLS mutants that weaken it.
//!
//! The correct client uses the harness library's `client_config` (TLS 1.3 only, the given CA);
//! the mutants build their weakened configs here so that no switch in the library can turn
//! verification off.

use std::sync::Arc;

use gatecheck::transport::{ALPN_XMPP_CLIENT, TransportError, client_config, root_store};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, SignatureScheme};

use crate::mutant::Mutant;

/// The client config for `mutant`; `ca_pem` may only be absent for `tls-accept-any-cert`.
pub fn config(ca_pem: Option<&str>, mutant: Mutant) -> Result<Arc<ClientConfig>, TransportError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let versions: &[&'static rustls::SupportedProtocolVersion] = if mutant == Mutant::AllowTls12 {
        // STREAM-12 deviation: the correct client offers TLS 1.3 only.
        &[&rustls::version::TLS13, &rustls::version::TLS12]
    } else {
        &[&rustls::version::TLS13]
    };
    let builder = ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_protocol_versions(versions)
        .map_err(|e| TransportError::Tls(e.to_string()))?;
    let mut config = if mutant == Mutant::TlsAcceptAnyCert {
        // STREAM-11 deviation: the correct client verifies chain and name against ca_pem.
        let algorithms = provider.signature_verification_algorithms;
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnyCert { algorithms }))
            .with_no_client_auth()
    } else if mutant == Mutant::AllowTls12 {
        let ca_pem = ca_pem.ok_or_else(|| TransportError::Tls("ca_pem missing".into()))?;
        builder
            .with_root_certificates(root_store(ca_pem)?)
            .with_no_client_auth()
    } else if mutant == Mutant::NoSni {
        let ca_pem = ca_pem.ok_or_else(|| TransportError::Tls("ca_pem missing".into()))?;
        // STREAM-10 deviation: the correct client sends the gatekeeper's name in SNI.
        let mut config = (*client_config(ca_pem)?).clone();
        config.enable_sni = false;
        return Ok(Arc::new(config));
    } else if mutant == Mutant::NoAlpn {
        let ca_pem = ca_pem.ok_or_else(|| TransportError::Tls("ca_pem missing".into()))?;
        // STREAM-10 deviation: the correct client offers ALPN xmpp-client.
        let mut config = (*client_config(ca_pem)?).clone();
        config.alpn_protocols.clear();
        return Ok(Arc::new(config));
    } else {
        let ca_pem = ca_pem.ok_or_else(|| TransportError::Tls("ca_pem missing".into()))?;
        return client_config(ca_pem);
    };
    config.alpn_protocols = vec![ALPN_XMPP_CLIENT.to_vec()];
    Ok(Arc::new(config))
}

/// Accepts any certificate for any name (signatures over the handshake are still checked, so
/// the connection itself works).
#[derive(Debug)]
struct AcceptAnyCert {
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for AcceptAnyCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}
