//! What a provider gives the gatekeeper at onboarding (SPEC.md §6.1), as the `[onboarding]`
//! table of an iut.toml: its provider id, the keys that verify its identifier proofs, the
//! shape of its identifiers, and the test users the scenarios act for.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ed25519_dalek::VerifyingKey;
use serde::{Deserialize, Serialize};

/// The `[onboarding]` table.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Onboarding {
    pub provider_id: String,
    /// Ed25519 public keys, each the standard base64 of 32 bytes.
    #[serde(default)]
    pub provider_keys: Vec<String>,
    /// E.164 prefixes of the provider's numbers (`+49151`).
    #[serde(default)]
    pub number_prefixes: Vec<String>,
    /// Domains of the provider's address identifiers.
    #[serde(default)]
    pub identifier_domains: Vec<String>,
    #[serde(default)]
    pub users: Vec<TestUser>,
}

/// A user of the provider the scenarios act for.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TestUser {
    pub identifier: String,
    /// A provider token currently valid for this user (SPEC.md §12.2).
    pub token: String,
    /// A device id the provider server knows for this user (the target of a push).
    pub device_id: u32,
    pub expired_token: Option<String>,
    pub revoked_token: Option<String>,
    #[serde(default = "opted_in_default")]
    pub opted_in: bool,
}

fn opted_in_default() -> bool {
    true
}

impl Onboarding {
    /// Checks what the profile fixes: the provider id's syntax (IDPROOF-3), each key, each
    /// identifier (ENROLL-6), distinct users, device ids in range (ENROLL-5).
    pub fn validate(&self) -> Result<(), String> {
        let id_ok = (1..=64).contains(&self.provider_id.len())
            && self
                .provider_id
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-');
        if !id_ok {
            return Err(format!(
                "onboarding.provider_id {:?}: 1 to 64 characters of a-z, 0-9, '.', '-' (SPEC.md IDPROOF-3)",
                self.provider_id
            ));
        }
        self.verifying_keys()?;
        for (i, u) in self.users.iter().enumerate() {
            identifier_syntax(&u.identifier).map_err(|why| {
                format!(
                    "onboarding.users[{i}].identifier {:?}: {why} (SPEC.md ENROLL-6)",
                    u.identifier
                )
            })?;
            if !(1..=2_147_483_647).contains(&u.device_id) {
                return Err(format!(
                    "onboarding.users[{i}].device_id {} is outside 1..2147483647 (SPEC.md ENROLL-5)",
                    u.device_id
                ));
            }
            if u.token.is_empty() {
                return Err(format!("onboarding.users[{i}].token is empty"));
            }
            if self.users[..i].iter().any(|o| o.identifier == u.identifier) {
                return Err(format!(
                    "onboarding.users[{i}]: identifier {:?} is listed twice",
                    u.identifier
                ));
            }
        }
        Ok(())
    }

    /// The provider keys, decoded.
    pub fn verifying_keys(&self) -> Result<Vec<VerifyingKey>, String> {
        self.provider_keys
            .iter()
            .enumerate()
            .map(|(i, k)| {
                let bytes = STANDARD
                    .decode(k)
                    .ok()
                    .and_then(|b| <[u8; 32]>::try_from(b).ok())
                    .ok_or_else(|| {
                        format!("onboarding.provider_keys[{i}] {k:?} is not the base64 of 32 bytes")
                    })?;
                VerifyingKey::from_bytes(&bytes).map_err(|e| {
                    format!("onboarding.provider_keys[{i}] is not an Ed25519 public key: {e}")
                })
            })
            .collect()
    }
}

/// ENROLL-6: `+` and 8 to 15 digits, or a lowercase `local@domain` of at most 255 bytes
/// without whitespace or control characters.
pub fn identifier_syntax(id: &str) -> Result<(), &'static str> {
    if let Some(digits) = id.strip_prefix('+') {
        if (8..=15).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit()) {
            return Ok(());
        }
        return Err("an E.164 number is + and 8 to 15 digits");
    }
    if id.len() > 255 {
        return Err("longer than 255 bytes");
    }
    if id.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("contains whitespace or a control character");
    }
    if id.chars().any(|c| c.is_uppercase()) {
        return Err("an address identifier is lowercase");
    }
    match id.split_once('@') {
        Some((l, d)) if !l.is_empty() && !d.is_empty() && !d.contains('@') => Ok(()),
        _ => Err("neither +digits nor local@domain"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Onboarding {
        toml::from_str(
            r#"
provider_id = "example-provider"
provider_keys = ["11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo="]
number_prefixes = ["+49151"]
[[users]]
identifier = "+4915100000001"
token = "t1"
device_id = 7
"#,
        )
        .expect("parses")
    }

    #[test]
    fn a_sound_table_validates() {
        let o = sample();
        o.validate().expect("valid");
        assert_eq!(o.verifying_keys().unwrap().len(), 1);
        assert!(o.users[0].opted_in, "opted in unless said otherwise");
    }

    #[test]
    fn each_mistake_is_named() {
        let mut o = sample();
        o.provider_id = "Example".into();
        assert!(o.validate().unwrap_err().contains("IDPROOF-3"));
        let mut o = sample();
        o.provider_keys = vec!["AAAA".into()];
        assert!(o.validate().unwrap_err().contains("provider_keys[0]"));
        let mut o = sample();
        o.users[0].identifier = "+49 151".into();
        assert!(o.validate().unwrap_err().contains("ENROLL-6"));
        let mut o = sample();
        o.users[0].device_id = 0;
        assert!(o.validate().unwrap_err().contains("ENROLL-5"));
        let mut o = sample();
        o.users.push(o.users[0].clone());
        assert!(o.validate().unwrap_err().contains("twice"));
    }

    #[test]
    fn identifiers() {
        for ok in ["+4915112345678", "+12345678", "anna@example.org"] {
            identifier_syntax(ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
        for bad in [
            "+1234567",
            "+1234567890123456",
            "Anna@example.org",
            "a b@c",
            "@c",
            "a@",
            "abc",
        ] {
            assert!(identifier_syntax(bad).is_err(), "{bad}");
        }
    }
}
