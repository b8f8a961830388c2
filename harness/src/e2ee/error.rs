//! Why an envelope could not be decrypted, each reason naming the requirement it points at.

use super::{Address, E2eeError};

/// A failure to decrypt an envelope. Every variant is what a receiver must survive
/// (E2EE-21); [`DecryptError::requirement`] names the rule the sender (or, for
/// [`DecryptError::Internal`], the harness) most likely broke, and [`DecryptError::reason`]
/// is a short code for driver events and reports.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecryptError {
    /// The envelope carries no `<key/>` for this device.
    #[error("no <key/> for device {device} (the envelope has rids {rids:?})")]
    NoKeyForDevice { device: u32, rids: Vec<u32> },
    /// The `prekey` attribute disagrees with the kind of Signal message in the `<key/>`.
    #[error("the <key/> is marked prekey='{flagged}' but holds a {actual}")]
    BadPrekeyFlag { flagged: bool, actual: &'static str },
    /// A SignalMessage from a device this one has no session with.
    #[error("no session with {peer} for its SignalMessage")]
    UnknownSession { peer: Address },
    /// A PreKeySignalMessage naming a one-time prekey this device does not hold.
    #[error("{peer} used one-time prekey {id}, which {}", if *.consumed { "was already consumed" } else { "was never published" })]
    UnknownPrekey {
        peer: Address,
        id: u32,
        consumed: bool,
    },
    /// A PreKeySignalMessage naming a signed prekey this device never had.
    #[error("{peer} used signed prekey {id}, which this device never published")]
    UnknownSignedPrekey { peer: Address, id: u32 },
    /// The Signal message was already decrypted (its chain counter is used up).
    #[error("replay: {peer} message counter {counter} was already decrypted")]
    Duplicate { peer: Address, counter: u32 },
    /// The Signal message does not parse or authenticate.
    #[error("bad Signal message from {peer}: {detail}")]
    BadSignalMessage { peer: Address, detail: String },
    /// The decrypted Signal message is not the 32 bytes K || T.
    #[error("the Signal message carries {len} bytes, not the 32 bytes key || tag")]
    BadKeyMaterial { len: usize },
    /// The IV is neither 12 nor 16 bytes.
    #[error("an IV of {len} bytes (12 expected, 16 accepted)")]
    BadIv { len: usize },
    /// The AES-GCM tag does not verify.
    #[error("the AES-GCM tag does not verify")]
    BadTag,
    /// The payload is larger than the bound.
    #[error("a payload of {len} bytes exceeds the bound")]
    PayloadTooLarge { len: usize },
    /// The decrypted payload is not UTF-8 text.
    #[error("the decrypted payload is not UTF-8 text")]
    NotUtf8,
    /// The envelope breaks §9.2's structure (for envelopes built in code, not parsed).
    #[error("malformed envelope: {0}")]
    Malformed(#[from] E2eeError),
    /// The Signal library failed in a way that says nothing about the message (a store
    /// future that was not ready, a corrupt record): a harness defect.
    #[error("internal: {detail}")]
    Internal { detail: String },
}

impl DecryptError {
    /// The SPEC.md requirement the failure points at.
    pub fn requirement(&self) -> &'static str {
        match self {
            // The sender did not encrypt for every device of the recipient (E2EE-14).
            DecryptError::NoKeyForDevice { .. } => "E2EE-14",
            DecryptError::BadPrekeyFlag { .. } => "E2EE-16",
            // A SignalMessage before any reply: the sender stopped sending prekey messages
            // too early (E2EE-15).
            DecryptError::UnknownSession { .. } => "E2EE-15",
            DecryptError::UnknownPrekey { .. } => "E2EE-8",
            // The session was not set up from the bundle the gatekeeper handed out.
            DecryptError::UnknownSignedPrekey { .. } => "E2EE-9",
            DecryptError::Duplicate { .. } => "E2EE-22",
            DecryptError::BadSignalMessage { .. } => "E2EE-13",
            DecryptError::BadKeyMaterial { .. }
            | DecryptError::BadIv { .. }
            | DecryptError::BadTag => "E2EE-17",
            DecryptError::PayloadTooLarge { .. } => "E2EE-13",
            DecryptError::NotUtf8 => "E2EE-25",
            DecryptError::Malformed(e) => e.requirement,
            DecryptError::Internal { .. } => "E2EE-21",
        }
    }

    /// A short kebab-case code (for `decrypt_failed` events and reports).
    pub fn reason(&self) -> &'static str {
        match self {
            DecryptError::NoKeyForDevice { .. } => "no-key-for-device",
            DecryptError::BadPrekeyFlag { .. } => "bad-prekey-flag",
            DecryptError::UnknownSession { .. } => "unknown-session",
            DecryptError::UnknownPrekey { .. } => "unknown-prekey",
            DecryptError::UnknownSignedPrekey { .. } => "unknown-signed-prekey",
            DecryptError::Duplicate { .. } => "duplicate",
            DecryptError::BadSignalMessage { .. } => "bad-signal-message",
            DecryptError::BadKeyMaterial { .. } => "bad-key-material",
            DecryptError::BadIv { .. } => "bad-iv",
            DecryptError::BadTag => "bad-tag",
            DecryptError::PayloadTooLarge { .. } => "payload-too-large",
            DecryptError::NotUtf8 => "not-utf8",
            DecryptError::Malformed(_) => "malformed-envelope",
            DecryptError::Internal { .. } => "internal",
        }
    }
}
