//! Direct TLS 1.3 (ALPN `xmpp-client`): test PKI generation, rustls configs, handshakes.

use std::sync::Arc;

use super::{BoxStream, ByteStream};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use rustls::{ClientConfig, RootCertStore, ServerConfig};

use super::{
    Established, ReaderInner, SecureReader, SecureWriter, TransportError, TransportKind,
    WriterInner,
};

/// The ALPN protocol id both sides offer.
pub const ALPN_XMPP_CLIENT: &[u8] = b"xmpp-client";

/// A throw-away PKI for one run: a CA and one server certificate signed by it.
#[derive(Clone)]
pub struct TlsIdentity {
    /// The DNS name (or IP address) the server certificate is valid for.
    pub server_name: String,
    /// The CA certificate, PEM: what a client must trust (`ca_pem` in the driver protocol).
    pub ca_pem: String,
    /// The server certificate, PEM.
    pub cert_pem: String,
    cert_der: CertificateDer<'static>,
    key_pkcs8: Vec<u8>,
}

impl std::fmt::Debug for TlsIdentity {
    // The private key never goes into logs or transcripts.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsIdentity")
            .field("server_name", &self.server_name)
            .finish_non_exhaustive()
    }
}

impl TlsIdentity {
    /// A fresh CA and a server certificate for `server_name`.
    ///
    /// # Panics
    /// If `server_name` is not a valid DNS name or IP address (it comes from the harness's own
    /// configuration, never from an IUT); use [`TlsIdentity::try_generate`] to handle that.
    pub fn generate(server_name: &str) -> TlsIdentity {
        match Self::try_generate(server_name) {
            Ok(id) => id,
            Err(e) => panic!("cannot make a certificate for {server_name:?}: {e}"),
        }
    }

    /// As [`TlsIdentity::generate`], reporting an unusable name as an error.
    pub fn try_generate(server_name: &str) -> Result<TlsIdentity, TransportError> {
        let (ca_pem, issuer) = new_ca()?;
        leaf(server_name, &ca_pem, &issuer)
    }

    /// Two server certificates from one fresh CA: one for `server_name`, and one for
    /// `other_name` (a certificate a client trusting that CA must still refuse when it
    /// expects `server_name`).
    pub fn try_generate_pair(
        server_name: &str,
        other_name: &str,
    ) -> Result<(TlsIdentity, TlsIdentity), TransportError> {
        let (ca_pem, issuer) = new_ca()?;
        Ok((
            leaf(server_name, &ca_pem, &issuer)?,
            leaf(other_name, &ca_pem, &issuer)?,
        ))
    }
}

fn rc(e: rcgen::Error) -> TransportError {
    TransportError::Tls(format!("certificate generation: {e}"))
}

/// A fresh self-signed CA: its PEM and the issuer that signs leaves with it.
fn new_ca() -> Result<(String, Issuer<'static, KeyPair>), TransportError> {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).map_err(rc)?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "gatecheck test CA");
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_key = KeyPair::generate().map_err(rc)?;
    let ca_cert = ca_params.self_signed(&ca_key).map_err(rc)?;
    Ok((ca_cert.pem(), Issuer::new(ca_params, ca_key)))
}

/// A server certificate for `server_name` signed by `issuer`.
fn leaf(
    server_name: &str,
    ca_pem: &str,
    issuer: &Issuer<'static, KeyPair>,
) -> Result<TlsIdentity, TransportError> {
    let mut params = CertificateParams::new(vec![server_name.to_owned()]).map_err(rc)?;
    params
        .distinguished_name
        .push(DnType::CommonName, server_name);
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.use_authority_key_identifier_extension = true;
    let key = KeyPair::generate().map_err(rc)?;
    let cert = params.signed_by(&key, issuer).map_err(rc)?;
    Ok(TlsIdentity {
        server_name: server_name.to_owned(),
        ca_pem: ca_pem.to_owned(),
        cert_pem: cert.pem(),
        cert_der: cert.der().clone(),
        key_pkcs8: key.serialize_der(),
    })
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The gatekeeper server's config: TLS 1.3 only, or (to test clients) TLS 1.2 only.
/// ALPN `xmpp-client` is offered; a client offering only other protocols is refused.
pub fn server_config(identity: &TlsIdentity, tls12_only: bool) -> Arc<ServerConfig> {
    let versions: &[&'static rustls::SupportedProtocolVersion] = if tls12_only {
        &[&rustls::version::TLS12]
    } else {
        &[&rustls::version::TLS13]
    };
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(identity.key_pkcs8.clone()));
    // Every input here was produced by `TlsIdentity::try_generate` (the fields are private) and
    // the ring provider supports both versions, so failure would be a bug in this module.
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(versions)
        .expect("the ring provider supports TLS 1.2 and 1.3")
        .with_no_client_auth()
        .with_single_cert(vec![identity.cert_der.clone()], key)
        .expect("a generated certificate matches its generated key");
    config.alpn_protocols = vec![ALPN_XMPP_CLIENT.to_vec()];
    Arc::new(config)
}

/// The provider client's config: TLS 1.3 only, trusting only the CA(s) in `ca_pem`,
/// offering ALPN `xmpp-client`.
pub fn client_config(ca_pem: &str) -> Result<Arc<ClientConfig>, TransportError> {
    let roots = root_store(ca_pem)?;
    let mut config = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| TransportError::Tls(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![ALPN_XMPP_CLIENT.to_vec()];
    Ok(Arc::new(config))
}

/// Parses every certificate in `ca_pem` into a root store; at least one is required.
pub fn root_store(ca_pem: &str) -> Result<RootCertStore, TransportError> {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        let cert = cert.map_err(|e| TransportError::Tls(format!("bad CA PEM: {e}")))?;
        roots
            .add(cert)
            .map_err(|e| TransportError::Tls(format!("bad CA certificate: {e}")))?;
    }
    if roots.is_empty() {
        return Err(TransportError::Tls("no certificate in CA PEM".into()));
    }
    Ok(roots)
}

/// Server side of the TLS handshake.
pub async fn tls_accept(
    tcp: impl ByteStream,
    config: Arc<ServerConfig>,
) -> Result<Established, TransportError> {
    let stream = tokio_rustls::TlsAcceptor::from(config)
        .accept(Box::new(tcp) as BoxStream)
        .await
        .map_err(map_handshake)?;
    Ok(established(tokio_rustls::TlsStream::Server(stream)))
}

/// Client side of the TLS handshake; `server_name` is checked against the certificate.
pub async fn tls_connect(
    tcp: impl ByteStream,
    config: Arc<ClientConfig>,
    server_name: &str,
) -> Result<Established, TransportError> {
    let name = ServerName::try_from(server_name.to_owned())
        .map_err(|e| TransportError::Tls(format!("invalid server name {server_name:?}: {e}")))?;
    let stream = tokio_rustls::TlsConnector::from(config)
        .connect(name, Box::new(tcp) as BoxStream)
        .await
        .map_err(map_handshake)?;
    Ok(established(tokio_rustls::TlsStream::Client(stream)))
}

fn established(stream: tokio_rustls::TlsStream<BoxStream>) -> Established {
    let alpn = match &stream {
        tokio_rustls::TlsStream::Server(s) => s.get_ref().1.alpn_protocol(),
        tokio_rustls::TlsStream::Client(c) => c.get_ref().1.alpn_protocol(),
    }
    .map(<[u8]>::to_vec);
    let sni = match &stream {
        tokio_rustls::TlsStream::Server(s) => s.get_ref().1.server_name().map(str::to_string),
        tokio_rustls::TlsStream::Client(_) => None,
    };
    let (r, w) = tokio::io::split(stream);
    Established {
        reader: SecureReader {
            inner: ReaderInner::Tls(r),
            buf: Vec::new(),
        },
        writer: SecureWriter {
            inner: WriterInner::Tls(w),
        },
        peer_static: None,
        kind: TransportKind::Tls,
        alpn,
        sni,
    }
}

/// During the handshake every failure, a cut connection included, is a TLS failure.
fn map_handshake(e: std::io::Error) -> TransportError {
    match e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    {
        Some(tls) => TransportError::Tls(tls.to_string()),
        None if e.kind() == std::io::ErrorKind::UnexpectedEof => {
            TransportError::Tls("connection closed during the TLS handshake".into())
        }
        None => TransportError::Tls(format!("handshake i/o: {e}")),
    }
}

/// After the handshake a rustls error (bad record, alert) is TLS; anything else is I/O.
pub(super) fn map_io(e: std::io::Error) -> TransportError {
    match e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    {
        Some(tls) => TransportError::Tls(tls.to_string()),
        None => TransportError::Io(e),
    }
}
