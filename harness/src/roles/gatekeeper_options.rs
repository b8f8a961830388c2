//! What a scenario can ask of the gatekeeper server: how it runs the transport handshake and
//! how far it negotiates the stream. The role owns these types; scenario files are parsed
//! into them.

use crate::transport::TransportKind;

/// How the gatekeeper server conducts the transport handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandshakeMode {
    /// A correct handshake with the key or certificate the IUT was given.
    Normal,
    /// Noise: the server uses a static key other than the one the IUT pinned.
    WrongKey,
    /// Noise: the server sends half of handshake message 2, then closes.
    Truncate,
    /// Noise: the server answers with random bytes instead of message 2.
    Garbage,
    /// TLS: the certificate chains to a CA the IUT was not given.
    TlsUnknownCa,
    /// TLS: the certificate is for another server name.
    TlsWrongName,
    /// TLS: the server speaks TLS 1.2 only.
    Tls12Only,
}

impl HandshakeMode {
    pub fn parse(s: &str) -> Option<HandshakeMode> {
        Some(match s {
            "normal" => HandshakeMode::Normal,
            "wrong-key" => HandshakeMode::WrongKey,
            "truncate" => HandshakeMode::Truncate,
            "garbage" => HandshakeMode::Garbage,
            "tls-unknown-ca" => HandshakeMode::TlsUnknownCa,
            "tls-wrong-name" => HandshakeMode::TlsWrongName,
            "tls12-only" => HandshakeMode::Tls12Only,
            _ => return None,
        })
    }

    /// The transport a mode only makes sense on.
    pub fn transport(self) -> Option<TransportKind> {
        match self {
            HandshakeMode::Normal => None,
            HandshakeMode::WrongKey | HandshakeMode::Truncate | HandshakeMode::Garbage => {
                Some(TransportKind::Noise)
            }
            HandshakeMode::TlsUnknownCa
            | HandshakeMode::TlsWrongName
            | HandshakeMode::Tls12Only => Some(TransportKind::Tls),
        }
    }

    /// False when the IUT is expected to abort the handshake.
    pub fn completes(self) -> bool {
        self == HandshakeMode::Normal
    }
}

/// How far the gatekeeper server negotiates the stream on its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Stage {
    /// Read and check the IUT's stream header; send nothing.
    Header,
    /// Also send the server's header and the SASL features.
    Features,
    /// Also read the IUT's `<auth>` and answer it (success, or failure with `sasl = "reject"`).
    Auth,
    /// All the way: stream restart, resource binding, `connected` driver event.
    Session,
}

/// The SASL answer the server gives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SaslAnswer {
    /// Success when the credentials are the ones given in `connect`, failure otherwise.
    Verify,
    /// Always `<failure><not-authorized/></failure>`.
    Reject,
}

/// How far the gatekeeper server negotiates, with what mechanisms and SASL answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Negotiate {
    pub upto: Stage,
    pub mechanisms: Vec<String>,
    pub sasl: SaslAnswer,
    /// Hold each `<stream:features>` back this long after the stream header it follows,
    /// failing a client that sends anything meanwhile (STREAM-17); `None` sends them at once.
    pub features_delay: Option<std::time::Duration>,
    /// An idle limit to announce with `<bind/>` (STREAM-47); `None` announces nothing (the
    /// default limit, 300 s, applies).
    pub idle_limit: Option<std::time::Duration>,
}
