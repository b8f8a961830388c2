//! `expect_http` with `proof = true`: the answer of a provider server's proof hook (SPEC.md
//! Appendix G) judged as the gatekeeper judges a proof it is shown (§11). The proof is data
//! the harness verifies itself, with the keys iut.toml onboarded, never a claim it takes on
//! trust; each fault is charged to the requirement it breaks.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ed25519_dalek::Signature;

use super::Exec;
use super::http::unix_now;
use crate::http::HttpResponse;
use crate::idproof::{MAX_LIFETIME_S, MEMBERS, Proof, SKEW_S};
use crate::roles::Deviation;

/// The proof members that are JSON integers; the others are strings (IDPROOF-3).
const INTEGERS: [&str; 4] = ["v", "device_id", "issued_at", "expires_at"];

impl Exec<'_> {
    /// Judges `r`, the answer to the last request (which asked for a proof for its body's
    /// `identifier`, `identity_key` and `device_id`).
    pub(super) fn expect_proof(&mut self, r: &HttpResponse) -> Result<(), Deviation> {
        if r.status == 404 {
            return Err(Deviation::inconclusive(
                "the provider server does not serve the proof hook POST /gatecheck-test/v1/proof (SPEC.md Appendix G): its proofs can only be judged through its client",
            ));
        }
        if r.status != 200 {
            return Err(Deviation::inconclusive(format!(
                "the proof hook answered {} instead of a proof: {}",
                r.status,
                super::http::cut(&String::from_utf8_lossy(&r.body))
            )));
        }
        let asked: serde_json::Value = self
            .http_last_request_body()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or_else(|| Deviation::error("proof = true needs a JSON request before it"))?;
        let text = String::from_utf8_lossy(&r.body).into_owned();
        let proof = Proof::parse(&r.body).map_err(|e| {
            let requirement = if members_sound(&r.body) {
                "IDPROOF-3"
            } else {
                "IDPROOF-4"
            };
            Deviation::fail(
                requirement,
                "a proof object of SPEC.md §11.3",
                format!("{}: {}", e.reason, super::http::cut(&text)),
            )
        })?;
        let onboarding = self.iut.onboarding.as_ref().ok_or_else(|| {
            Deviation::inconclusive("iut.toml has no [onboarding]: no provider key to verify with")
        })?;
        if proof.provider_id != onboarding.provider_id {
            return Err(Deviation::fail(
                "IDPROOF-1",
                format!("a proof for provider_id {:?}", onboarding.provider_id),
                format!("provider_id {:?}", proof.provider_id),
            ));
        }
        let keys = onboarding.verifying_keys().map_err(Deviation::error)?;
        let signature = STANDARD
            .decode(&proof.signature)
            .ok()
            .and_then(|b| Signature::from_slice(&b).ok())
            .ok_or_else(|| Deviation::fail("IDPROOF-3", "a 64-byte signature", &proof.signature))?;
        let bytes = proof.signed_bytes();
        let verifies = |b: &[u8]| keys.iter().any(|k| k.verify_strict(b, &signature).is_ok());
        if !verifies(&bytes) {
            // An onboarded key's signature over the bytes spelt one of the ways IDPROOF-2
            // forbids is positively a fault of the bytes; any other signature is not one by
            // an onboarded key with pure Ed25519 over the bytes of §11.2 (IDPROOF-1).
            if let Some((what, _)) = crate::idproof::near_miss_signings(&bytes)
                .iter()
                .find(|(_, b)| verifies(b))
            {
                return Err(Deviation::fail(
                    "IDPROOF-2",
                    "a signature over exactly the eight lines of §11.2 rebuilt from the proof's values",
                    format!(
                        "a signature by an onboarded key over those lines with {what}: {:?}",
                        String::from_utf8_lossy(&bytes)
                    ),
                ));
            }
            return Err(Deviation::fail(
                "IDPROOF-1",
                "a pure Ed25519 signature by a key onboarded for the provider over the eight lines of §11.2 rebuilt from the proof's values",
                format!(
                    "a signature that verifies with none of the {} onboarded key(s) over {:?}, nor over those lines with a trailing line feed, carriage returns or a byte order mark (IDPROOF-2)",
                    keys.len(),
                    String::from_utf8_lossy(&bytes)
                ),
            ));
        }
        let lifetime = proof.expires_at.checked_sub(proof.issued_at);
        if !lifetime.is_some_and(|l| (1..=MAX_LIFETIME_S).contains(&l)) {
            return Err(Deviation::fail(
                "IDPROOF-5",
                format!("expires_at after issued_at by at most {MAX_LIFETIME_S} s"),
                format!(
                    "issued_at {} and expires_at {}",
                    proof.issued_at, proof.expires_at
                ),
            ));
        }
        let now = unix_now();
        if proof.issued_at.abs_diff(now) > SKEW_S {
            return Err(Deviation::fail(
                "IDPROOF-6",
                format!("issued_at within {SKEW_S} s of the harness's clock ({now})"),
                format!("issued_at {}", proof.issued_at),
            ));
        }
        let want = |k: &str| asked.get(k).cloned().unwrap_or_default();
        let bound = [
            (
                "identifier",
                serde_json::Value::from(proof.identifier.clone()),
            ),
            (
                "identity_key",
                serde_json::Value::from(proof.identity_key.clone()),
            ),
            ("device_id", serde_json::Value::from(proof.device_id)),
        ];
        for (name, got) in bound {
            if want(name) != got {
                return Err(Deviation::fail(
                    "IDPROOF-8",
                    format!("the {name} the proof was asked for: {}", want(name)),
                    format!("{name} {got}"),
                ));
            }
        }
        if self.http_nonce_seen(&proof.nonce) {
            return Err(Deviation::fail(
                "IDPROOF-7",
                "a nonce not used by an earlier proof",
                format!("nonce {} again", proof.nonce),
            ));
        }
        Ok(())
    }
}

/// Whether `body` is an object with exactly the nine members, each once and of the right
/// JSON type: then a refused proof broke a value's syntax (IDPROOF-3), not the members
/// (IDPROOF-4).
fn members_sound(body: &[u8]) -> bool {
    let Ok(serde_json::Value::Object(o)) = serde_json::from_slice::<serde_json::Value>(body) else {
        return false;
    };
    // A duplicate member collapses in a map: count the keys in the text as well.
    let text = String::from_utf8_lossy(body);
    o.len() == MEMBERS.len()
        && MEMBERS.iter().all(|name| {
            text.matches(&format!("\"{name}\"")).count() == 1
                && o.get(*name).is_some_and(|v| {
                    if INTEGERS.contains(name) {
                        v.is_u64()
                    } else {
                        v.is_string()
                    }
                })
        })
}
