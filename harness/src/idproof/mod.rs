//! The identifier proof of SPEC §11: a short-lived statement, signed by a provider server
//! with Ed25519, that one of its users (an identifier) owns a given identity key and device.
//!
//! The harness plays both sides of it. As a provider server it *signs* proofs
//! ([`Proof::sign`]) and may deliberately sign broken ones, so signing validates nothing. As a
//! gatekeeper it *checks* them: [`Proof::parse`] applies the syntax rules (IDPROOF-3/4)
//! strictly, and [`verify`] the semantic ones (IDPROOF-11/12/13) in one fixed order, so that
//! every refusal has exactly one code and two gatekeepers agree on which.
//!
//! The signature covers bytes rebuilt from the parsed values (never bytes the presenter
//! supplies), which is why every member has a single canonical spelling: a value that could be
//! written two ways would let two different JSON texts carry one signature, or one text carry
//! a signature over something else.

pub mod sasl;

use std::collections::{BTreeSet, HashMap};
use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use serde::de::{self, Deserializer as _, MapAccess, Visitor};
use serde_json::Value;

/// First line of the signed bytes: separates proofs from anything else the same key signs.
pub const LABEL: &str = "gatecheck-idproof-v1";
/// Longest allowed `expires_at - issued_at` (IDPROOF-5).
pub const MAX_LIFETIME_S: u64 = 300;
/// Clock difference tolerated between provider and gatekeeper (IDPROOF-6/11/12).
pub const SKEW_S: u64 = 60;
/// Largest proof text [`Proof::parse`] reads. A valid proof is a few hundred bytes; even an
/// identifier of 255 bytes written entirely as `\uXXXX` escapes stays under this, so the bound
/// only refuses inputs meant to cost memory or time.
pub const MAX_PROOF_BYTES: usize = 8 * 1024;
/// Largest `device_id` (a positive signed 32-bit integer, as in Signal's device ids).
pub const MAX_DEVICE_ID: u32 = 2_147_483_647;

/// The nine member names of IDPROOF-4, in the order [`Proof::to_json`] writes them.
pub const MEMBERS: [&str; 9] = [
    "v",
    "provider_id",
    "identifier",
    "identity_key",
    "device_id",
    "issued_at",
    "expires_at",
    "nonce",
    "signature",
];

/// An identifier proof as its JSON carries it: every member in its wire spelling, so that
/// [`Proof::signed_bytes`] can rebuild the signed bytes from exactly what was received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proof {
    pub provider_id: String,
    pub identifier: String,
    /// Canonical padded base64 of the 33-byte identity key (0x05 and 32 bytes).
    pub identity_key: String,
    pub device_id: u32,
    pub issued_at: u64,
    pub expires_at: u64,
    /// Unpadded base64url of 16 random bytes.
    pub nonce: String,
    /// Canonical padded base64 of the 64-byte Ed25519 signature.
    pub signature: String,
}

/// What a provider server puts into a proof it is about to sign, in binary form.
pub struct ProofFields<'a> {
    pub provider_id: &'a str,
    pub identifier: &'a str,
    pub identity_key: &'a [u8; 33],
    pub device_id: u32,
    pub issued_at: u64,
    pub expires_at: u64,
    pub nonce: [u8; 16],
}

/// The refusal codes of SPEC §10.1 that a proof can earn (IDPROOF-11).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProofCode {
    Missing,
    Invalid,
    Expired,
    NotYetValid,
    Replayed,
    Mismatch,
    UnknownProvider,
}

impl ProofCode {
    /// The code as it appears in a 401 body or a SASL `<text/>`.
    pub fn code(self) -> &'static str {
        match self {
            ProofCode::Missing => "proof_missing",
            ProofCode::Invalid => "proof_invalid",
            ProofCode::Expired => "proof_expired",
            ProofCode::NotYetValid => "proof_not_yet_valid",
            ProofCode::Replayed => "proof_replayed",
            ProofCode::Mismatch => "proof_mismatch",
            ProofCode::UnknownProvider => "unknown_provider",
        }
    }
}

impl fmt::Display for ProofCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// Why a proof was refused: the code a gatekeeper must answer, and a reason for people
/// (naming the member at fault) that never goes on the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProofError {
    pub code: ProofCode,
    pub reason: String,
}

impl ProofError {
    fn new(code: ProofCode, reason: impl Into<String>) -> Self {
        ProofError {
            code,
            reason: reason.into(),
        }
    }

    fn invalid(reason: impl Into<String>) -> Self {
        Self::new(ProofCode::Invalid, reason)
    }
}

impl fmt::Display for ProofError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code.code(), self.reason)
    }
}

impl std::error::Error for ProofError {}

impl Proof {
    /// Signs `f` as a provider server would. Nothing is validated, on purpose: the harness
    /// also signs proofs that are wrong in one controlled way (a lifetime too long, an
    /// identifier of another user) to see whether a gatekeeper refuses them.
    pub fn sign(key: &SigningKey, f: &ProofFields) -> Proof {
        let mut proof = Proof {
            provider_id: f.provider_id.to_owned(),
            identifier: f.identifier.to_owned(),
            identity_key: STANDARD.encode(f.identity_key),
            device_id: f.device_id,
            issued_at: f.issued_at,
            expires_at: f.expires_at,
            nonce: URL_SAFE_NO_PAD.encode(f.nonce),
            signature: String::new(),
        };
        let signature = key.sign(&proof.signed_bytes());
        proof.signature = STANDARD.encode(signature.to_bytes());
        proof
    }

    /// The bytes the signature covers (SPEC §11.2): eight lines joined by LF, no trailing LF.
    pub fn signed_bytes(&self) -> Vec<u8> {
        [
            LABEL,
            &self.provider_id,
            &self.identifier,
            &self.identity_key,
            &self.device_id.to_string(),
            &self.issued_at.to_string(),
            &self.expires_at.to_string(),
            &self.nonce,
        ]
        .join("\n")
        .into_bytes()
    }

    /// The compact JSON object of SPEC §11.3, members in the order of the spec's example.
    pub fn to_json(&self) -> String {
        // serde_json escapes strings exactly as JSON requires; integers are written as such.
        let s = |v: &str| Value::String(v.to_owned()).to_string();
        format!(
            "{{\"v\":1,\"provider_id\":{},\"identifier\":{},\"identity_key\":{},\"device_id\":{},\"issued_at\":{},\"expires_at\":{},\"nonce\":{},\"signature\":{}}}",
            s(&self.provider_id),
            s(&self.identifier),
            s(&self.identity_key),
            self.device_id,
            self.issued_at,
            self.expires_at,
            s(&self.nonce),
            s(&self.signature),
        )
    }

    /// Parses a proof strictly (IDPROOF-3 and IDPROOF-4). Empty input (or only whitespace) is
    /// `proof_missing`; anything else that is not exactly a well-formed proof is
    /// `proof_invalid`, with a reason naming the member and the rule it breaks.
    pub fn parse(json: &[u8]) -> Result<Proof, ProofError> {
        if json.iter().all(u8::is_ascii_whitespace) {
            return Err(ProofError::new(ProofCode::Missing, "no proof was given"));
        }
        if json.len() > MAX_PROOF_BYTES {
            return Err(ProofError::invalid(format!(
                "the proof is {} bytes, more than the {MAX_PROOF_BYTES} read",
                json.len()
            )));
        }
        let mut de = serde_json::Deserializer::from_slice(json);
        let members = de
            .deserialize_map(MembersVisitor)
            .and_then(|m| de.end().map(|()| m))
            .map_err(|e| ProofError::invalid(format!("not a proof object: {e}")))?;

        let get = |name: &str| -> Result<&Value, ProofError> {
            members
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v)
                .ok_or_else(|| ProofError::invalid(format!("member {name:?} is missing")))
        };
        let string = |name: &str| -> Result<String, ProofError> {
            match get(name)? {
                Value::String(s) => Ok(s.clone()),
                other => Err(ProofError::invalid(format!(
                    "member {name:?} must be a string, not {}",
                    kind(other)
                ))),
            }
        };
        let integer = |name: &str| -> Result<u64, ProofError> {
            match get(name)? {
                Value::Number(n) if n.is_u64() => n.as_u64().ok_or_else(|| {
                    ProofError::invalid(format!("member {name:?} is not an integer"))
                }),
                Value::Number(n) if n.is_i64() => Err(ProofError::invalid(format!(
                    "member {name:?} must not be negative ({n})"
                ))),
                Value::Number(n) => Err(ProofError::invalid(format!(
                    "member {name:?} must be a JSON integer below 2^64, not {n}"
                ))),
                other => Err(ProofError::invalid(format!(
                    "member {name:?} must be a JSON integer, not {}",
                    kind(other)
                ))),
            }
        };

        if integer("v")? != 1 {
            return Err(ProofError::invalid("member \"v\" must be the number 1"));
        }
        let device_id = integer("device_id")?;
        let device_id = u32::try_from(device_id)
            .ok()
            .filter(|d| (1..=MAX_DEVICE_ID).contains(d))
            .ok_or_else(|| {
                ProofError::invalid(format!(
                    "member \"device_id\" must be between 1 and {MAX_DEVICE_ID}, not {device_id}"
                ))
            })?;
        let proof = Proof {
            provider_id: string("provider_id")?,
            identifier: string("identifier")?,
            identity_key: string("identity_key")?,
            device_id,
            issued_at: integer("issued_at")?,
            expires_at: integer("expires_at")?,
            nonce: string("nonce")?,
            signature: string("signature")?,
        };
        proof.check_syntax()?;
        Ok(proof)
    }

    /// Checks the string members against IDPROOF-3 (and the `device_id` range): what
    /// [`Proof::parse`] guarantees, for a `Proof` built some other way. Each value must be in
    /// its only allowed spelling, and none may hold a line feed, so the signed bytes are
    /// unambiguous.
    pub fn check_syntax(&self) -> Result<(), ProofError> {
        check_provider_id(&self.provider_id)
            .map_err(|why| ProofError::invalid(format!("member \"provider_id\" {why}")))?;
        check_identifier(&self.identifier)
            .map_err(|why| ProofError::invalid(format!("member \"identifier\" {why}")))?;
        self.identity_key_bytes()?;
        if !(1..=MAX_DEVICE_ID).contains(&self.device_id) {
            return Err(ProofError::invalid(format!(
                "member \"device_id\" must be between 1 and {MAX_DEVICE_ID}, not {}",
                self.device_id
            )));
        }
        decode_nonce(&self.nonce)
            .map_err(|why| ProofError::invalid(format!("member \"nonce\" {why}")))?;
        self.signature_bytes()?;
        Ok(())
    }

    /// The identity key's 33 bytes, or why `identity_key` is not canonical base64 of a
    /// 0x05-prefixed key.
    pub fn identity_key_bytes(&self) -> Result<[u8; 33], ProofError> {
        let bytes = decode_canonical::<33>(&self.identity_key)
            .map_err(|why| ProofError::invalid(format!("member \"identity_key\" {why}")))?;
        if bytes[0] != 0x05 {
            return Err(ProofError::invalid(format!(
                "member \"identity_key\" must start with the type byte 0x05, not 0x{:02x}",
                bytes[0]
            )));
        }
        Ok(bytes)
    }

    fn signature_bytes(&self) -> Result<[u8; 64], ProofError> {
        decode_canonical::<64>(&self.signature)
            .map_err(|why| ProofError::invalid(format!("member \"signature\" {why}")))
    }
}

/// Reads the top-level object as a list of members, refusing a name seen before. A map type
/// would keep one of two equal names silently, and two parsers keeping different ones is
/// exactly how one proof could mean two things.
struct MembersVisitor;

impl<'de> Visitor<'de> for MembersVisitor {
    type Value = Vec<(String, Value)>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut out: Vec<(String, Value)> = Vec::with_capacity(MEMBERS.len());
        while let Some(name) = map.next_key::<String>()? {
            if out.iter().any(|(n, _)| *n == name) {
                return Err(de::Error::custom(format!(
                    "member {name:?} appears more than once"
                )));
            }
            // Refusing an unknown name here, before its value is read, also caps the list
            // at the nine known members.
            if !MEMBERS.contains(&name.as_str()) {
                return Err(de::Error::custom(format!(
                    "unexpected member {name:?} (a proof has exactly {})",
                    MEMBERS.join(", ")
                )));
            }
            let value: Value = map.next_value()?;
            out.push((name, value));
        }
        Ok(out)
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Decodes padded base64 that must be the one canonical encoding of exactly `N` bytes.
/// Re-encoding and comparing catches every alternative spelling (non-zero trailing bits,
/// missing padding, whitespace) whatever the decoder tolerates.
pub(crate) fn decode_canonical<const N: usize>(s: &str) -> Result<[u8; N], String> {
    let bytes = STANDARD
        .decode(s)
        .map_err(|e| format!("is not valid base64: {e}"))?;
    let array: [u8; N] = bytes
        .as_slice()
        .try_into()
        .map_err(|_| format!("must encode {N} bytes, not {}", bytes.len()))?;
    if STANDARD.encode(array) != s {
        return Err("is not canonical base64".into());
    }
    Ok(array)
}

/// Decodes the 22-character unpadded base64url nonce, refusing any other spelling.
pub(crate) fn decode_nonce(s: &str) -> Result<[u8; 16], String> {
    let bytes = URL_SAFE_NO_PAD
        .decode(s)
        .map_err(|e| format!("is not unpadded base64url: {e}"))?;
    let array: [u8; 16] = bytes
        .as_slice()
        .try_into()
        .map_err(|_| format!("must encode 16 bytes, not {}", bytes.len()))?;
    if URL_SAFE_NO_PAD.encode(array) != s {
        return Err("is not canonical unpadded base64url".into());
    }
    Ok(array)
}

/// IDPROOF-3's `provider_id`: 1 to 64 of `a-z`, `0-9`, `.`, `-`.
pub fn check_provider_id(s: &str) -> Result<(), String> {
    if s.is_empty() || s.len() > 64 {
        return Err(format!("must be 1 to 64 characters, not {}", s.len()));
    }
    match s
        .chars()
        .find(|c| !matches!(c, 'a'..='z' | '0'..='9' | '.' | '-'))
    {
        Some(c) => Err(format!("may hold only a-z, 0-9, '.' and '-', not {c:?}")),
        None => Ok(()),
    }
}

/// ENROLL-6: `+` and 8 to 15 digits, or a lowercase `local@domain`; never whitespace or
/// control characters; at most 255 bytes. Whether the domain is one of the provider's is for
/// the caller, who knows the provider.
pub fn check_identifier(s: &str) -> Result<(), String> {
    if s.is_empty() {
        return Err("must not be empty".into());
    }
    if s.len() > 255 {
        return Err(format!("must be at most 255 bytes, not {}", s.len()));
    }
    if let Some(c) = s.chars().find(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!(
            "must not hold whitespace or control characters ({c:?})"
        ));
    }
    if let Some(digits) = s.strip_prefix('+') {
        if (8..=15).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit()) {
            return Ok(());
        }
        return Err("starting with '+' must be an E.164 number: '+' and 8 to 15 digits".into());
    }
    let Some((local, domain)) = s.split_once('@') else {
        return Err("must be '+' and 8 to 15 digits, or local@domain".into());
    };
    if local.is_empty() || domain.is_empty() || domain.contains('@') {
        return Err("must be local@domain with one '@' and both parts non-empty".into());
    }
    if domain.split('.').any(str::is_empty) {
        return Err("has a domain with an empty label".into());
    }
    if let Some(c) = s.chars().find(|c| c.is_uppercase()) {
        return Err(format!("must be in lowercase ({c:?})"));
    }
    Ok(())
}

/// The provider keys a gatekeeper was given at onboarding (SPEC §11.1), by `provider_id`.
#[derive(Debug, Clone, Default)]
pub struct Registry {
    keys: HashMap<String, Vec<VerifyingKey>>,
}

impl Registry {
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers one more key for `provider_id` (a provider may hold several, to rotate them).
    pub fn add(&mut self, provider_id: &str, key: VerifyingKey) {
        let keys = self.keys.entry(provider_id.to_owned()).or_default();
        if !keys.contains(&key) {
            keys.push(key);
        }
    }

    /// The keys registered for `provider_id`; empty for a provider nobody registered.
    pub fn keys(&self, provider_id: &str) -> &[VerifyingKey] {
        self.keys.get(provider_id).map_or(&[], Vec::as_slice)
    }
}

/// What the proof must name (IDPROOF-8): the enrollment request's identifier, identity key
/// and device id, or at login those of the device's latest enrollment.
pub struct Expected<'a> {
    pub identifier: &'a str,
    pub identity_key: &'a [u8; 33],
    pub device_id: u32,
}

/// The nonces of accepted proofs, per provider (IDPROOF-12).
///
/// Each is kept until its `forget_after` (the proof's `expires_at` plus [`SKEW_S`]); past
/// that, [`verify`] refuses the proof as expired anyway, so forgetting it reopens nothing.
/// Forgotten entries are dropped whenever one is added, so the cache holds only the proofs
/// accepted in the last few minutes.
#[derive(Debug, Clone, Default)]
pub struct NonceCache {
    until: HashMap<(String, String), u64>,
    /// The same entries ordered by `forget_after`, to drop the oldest without a full scan.
    by_time: BTreeSet<(u64, String, String)>,
}

impl NonceCache {
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether `nonce` was accepted for `provider_id` and is still remembered at `now`.
    pub fn seen(&self, provider_id: &str, nonce: &str, now: u64) -> bool {
        self.until
            .get(&(provider_id.to_owned(), nonce.to_owned()))
            .is_some_and(|&forget_after| now <= forget_after)
    }

    /// Remembers `nonce` for `provider_id` until `forget_after` (inclusive).
    ///
    /// It also drops every entry that can no longer matter. Without the current time, the
    /// bound comes from the new entry itself: a proof accepted at `now` has
    /// `forget_after <= now + SKEW_S + MAX_LIFETIME_S + SKEW_S`, so anything to be forgotten
    /// before `forget_after - 420` is already forgotten.
    pub fn insert(&mut self, provider_id: &str, nonce: &str, forget_after: u64) {
        self.prune(forget_after.saturating_sub(MAX_LIFETIME_S + 2 * SKEW_S));
        let key = (provider_id.to_owned(), nonce.to_owned());
        let previous = self.until.get(&key).copied();
        let forget_after = previous.map_or(forget_after, |p| p.max(forget_after));
        if let Some(p) = previous {
            self.by_time.remove(&(p, key.0.clone(), key.1.clone()));
        }
        self.by_time
            .insert((forget_after, key.0.clone(), key.1.clone()));
        self.until.insert(key, forget_after);
    }

    /// Drops every entry whose `forget_after` is before `now`.
    pub fn prune(&mut self, now: u64) {
        while let Some(first) = self.by_time.first() {
            if first.0 >= now {
                break;
            }
            if let Some((_, provider, nonce)) = self.by_time.pop_first() {
                self.until.remove(&(provider, nonce));
            }
        }
    }

    /// How many nonces are remembered.
    pub fn len(&self) -> usize {
        self.until.len()
    }

    pub fn is_empty(&self) -> bool {
        self.until.is_empty()
    }
}

/// Checks a parsed proof as a gatekeeper must (IDPROOF-11/12/13) and, if it passes,
/// remembers its nonce until `expires_at + 60`.
///
/// The checks run in this order and the first failure decides the code: the syntax of
/// IDPROOF-3 (already done by [`Proof::parse`]; repeated for proofs built otherwise) →
/// `proof_invalid`; unknown provider → `unknown_provider`; signature, checked with
/// `verify_strict` over the bytes rebuilt from the values against every registered key →
/// `proof_invalid`; lifetime not in `1..=300` s → `proof_invalid`; `issued_at > now + 60` →
/// `proof_not_yet_valid`; `now > expires_at + 60` → `proof_expired`; identifier, identity
/// key or device id other than `expected` → `proof_mismatch`; nonce already accepted →
/// `proof_replayed`. Authenticity comes before time and binding so that nothing about an
/// unauthenticated proof leaks beyond "invalid"; replay comes last so that only a proof that
/// would otherwise be accepted can consume a nonce.
pub fn verify(
    proof: &Proof,
    registry: &Registry,
    expected: &Expected,
    now: u64,
    cache: &mut NonceCache,
) -> Result<(), ProofError> {
    proof.check_syntax()?;
    let keys = registry.keys(&proof.provider_id);
    if keys.is_empty() {
        return Err(ProofError::new(
            ProofCode::UnknownProvider,
            format!("no key is registered for provider {:?}", proof.provider_id),
        ));
    }
    let signature = Signature::from_bytes(&proof.signature_bytes()?);
    let message = proof.signed_bytes();
    if !keys
        .iter()
        .any(|k| k.verify_strict(&message, &signature).is_ok())
    {
        return Err(ProofError::invalid(format!(
            "the signature does not verify (strictly) with any of the {} key(s) registered for {:?}",
            keys.len(),
            proof.provider_id
        )));
    }
    if proof.expires_at <= proof.issued_at || proof.expires_at - proof.issued_at > MAX_LIFETIME_S {
        return Err(ProofError::invalid(format!(
            "the lifetime (expires_at {} - issued_at {}) must be 1 to {MAX_LIFETIME_S} seconds",
            proof.expires_at, proof.issued_at
        )));
    }
    if proof.issued_at > now.saturating_add(SKEW_S) {
        return Err(ProofError::new(
            ProofCode::NotYetValid,
            format!(
                "issued_at {} is more than {SKEW_S} s after now ({now})",
                proof.issued_at
            ),
        ));
    }
    let forget_after = proof.expires_at.saturating_add(SKEW_S);
    if now > forget_after {
        return Err(ProofError::new(
            ProofCode::Expired,
            format!(
                "now ({now}) is more than {SKEW_S} s after expires_at {}",
                proof.expires_at
            ),
        ));
    }
    if proof.identifier != expected.identifier {
        return Err(ProofError::new(
            ProofCode::Mismatch,
            format!(
                "the proof names identifier {:?}, not {:?}",
                proof.identifier, expected.identifier
            ),
        ));
    }
    if proof.identity_key_bytes()? != *expected.identity_key {
        return Err(ProofError::new(
            ProofCode::Mismatch,
            "the proof names another identity key",
        ));
    }
    if proof.device_id != expected.device_id {
        return Err(ProofError::new(
            ProofCode::Mismatch,
            format!(
                "the proof names device {}, not {}",
                proof.device_id, expected.device_id
            ),
        ));
    }
    if cache.seen(&proof.provider_id, &proof.nonce, now) {
        return Err(ProofError::new(
            ProofCode::Replayed,
            format!(
                "nonce {} was already accepted for provider {:?}",
                proof.nonce, proof.provider_id
            ),
        ));
    }
    cache.prune(now);
    cache.insert(&proof.provider_id, &proof.nonce, forget_after);
    Ok(())
}

/// The signed bytes of a proof spelt in the ways IDPROOF-2 names as wrong (a trailing line
/// feed, carriage returns, a byte order mark), each with what is wrong about it.
pub fn near_miss_signings(exact: &[u8]) -> Vec<(&'static str, Vec<u8>)> {
    let crlf = String::from_utf8_lossy(exact)
        .replace('\n', "\r\n")
        .into_bytes();
    vec![
        ("a trailing line feed", [exact, b"\n"].concat()),
        ("a trailing CR LF", [exact, b"\r\n"].concat()),
        ("CR LF line ends", crlf.clone()),
        (
            "CR LF line ends and a trailing CR LF",
            [&crlf[..], b"\r\n"].concat(),
        ),
        ("a byte order mark", [&b"\xEF\xBB\xBF"[..], exact].concat()),
    ]
}

/// Which rule of SPEC.md §11 a proof that [`verify`] refuses as `proof_invalid` breaks, as
/// the fault of the server that issued it: its syntax (IDPROOF-3); a signature that verifies
/// with an onboarded key only over the bytes spelt as IDPROOF-2 forbids (IDPROOF-2), or not at
/// all (IDPROOF-1: not a pure Ed25519 signature by an onboarded key); its lifetime (IDPROOF-5).
/// `None` when none of them is broken.
pub fn invalid_rule(proof: &Proof, keys: &[VerifyingKey]) -> Option<&'static str> {
    let Ok(signature) = proof.check_syntax().and_then(|()| proof.signature_bytes()) else {
        return Some("IDPROOF-3");
    };
    let signature = Signature::from_bytes(&signature);
    let verifies = |b: &[u8]| keys.iter().any(|k| k.verify_strict(b, &signature).is_ok());
    let bytes = proof.signed_bytes();
    if !verifies(&bytes) {
        let near = near_miss_signings(&bytes).iter().any(|(_, b)| verifies(b));
        return Some(if near { "IDPROOF-2" } else { "IDPROOF-1" });
    }
    if proof.expires_at <= proof.issued_at || proof.expires_at - proof.issued_at > MAX_LIFETIME_S {
        return Some("IDPROOF-5");
    }
    None
}

/// 16 bytes from the operating system's random source, for a proof's nonce (IDPROOF-7).
///
/// # Panics
///
/// When the operating system gives no randomness, since a predictable nonce would break
/// the single-use guarantee; [`try_random_nonce`] returns the error instead.
pub fn random_nonce() -> [u8; 16] {
    match try_random_nonce() {
        Ok(n) => n,
        Err(e) => panic!("the operating system gave no randomness for a nonce: {e}"),
    }
}

/// [`random_nonce`], returning the operating system's error rather than panicking.
pub fn try_random_nonce() -> Result<[u8; 16], rand::rand_core::OsError> {
    use rand::TryRngCore as _;
    let mut nonce = [0u8; 16];
    rand::rngs::OsRng.try_fill_bytes(&mut nonce)?;
    Ok(nonce)
}

#[cfg(test)]
mod tests;
