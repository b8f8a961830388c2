//! Targets for the enrollment and identifier-proof verifiers (SPEC §10.1, §11): bytes a client
//! IUT sends the gatekeeper's enrollment API, or puts in a `PLAIN-IDPROOF` SASL message.
//!
//! Both reach the code behind the signature check without any switch: the target holds the
//! provider's signing key ([`provider_key`]), so a proof it re-signs verifies for real, and the
//! committed seeds are enrollment bodies signed with that key (made by [`enroll_seeds`]). What
//! is checked besides "no panic":
//!
//! - `idproof_json`: a proof that parses writes back ([`Proof::to_json`]) to a proof that
//!   parses equal; re-signed with the target's key it verifies once, then is refused as
//!   replayed, and with any signed member changed it no longer verifies. A SASL message that
//!   parses rebuilds byte for byte ([`sasl::initial_response`]) when its authorization
//!   identity is empty, and the proof it carries goes through the same checks.
//! - `enroll_body`: [`check_body`] gives a refusal exactly when it gives no request, every
//!   refusal is a 400 backed by at least one deviation charged to the client, and no more
//!   deviations than the body could hold; for a valid request, [`parse_proof`] and
//!   [`idproof::verify`] run as the API runs them, and an accepted proof is refused when
//!   presented a second time.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use ed25519_dalek::{Signer as _, SigningKey};
use serde_json::{Value, json};

use crate::idproof::{self, Expected, NonceCache, Proof, ProofCode, ProofFields, Registry, sasl};
use crate::roles::enroll_api::check::{Onboarded, ValidRequest, check_body, parse_proof};

/// The provider of the seeds and of every proof the targets sign.
pub const PROVIDER: &str = "fuzz-provider";

/// The signing key the targets hold for [`PROVIDER`] (fixed, so the seeds stay valid).
pub fn provider_key() -> SigningKey {
    SigningKey::from_bytes(&[0x5a; 32])
}

fn registry() -> Registry {
    let mut r = Registry::new();
    r.add(PROVIDER, provider_key().verifying_key());
    r
}

/// `proof` with `provider_id` set to [`PROVIDER`] and signed with [`provider_key`].
fn resigned(proof: &Proof) -> Proof {
    let mut p = proof.clone();
    p.provider_id = PROVIDER.to_owned();
    p.signature = STANDARD.encode(provider_key().sign(&p.signed_bytes()).to_bytes());
    p
}

/// The checks on a proof that parsed (from the input, or from inside a SASL message).
fn check_parsed_proof(proof: &Proof) {
    let json = proof.to_json();
    match Proof::parse(json.as_bytes()) {
        Ok(again) => assert_eq!(
            &again, proof,
            "a parsed proof writes back to itself: {json}"
        ),
        Err(e) => panic!("a parsed proof writes back to JSON that does not parse ({e}): {json}"),
    }
    assert!(
        proof.check_syntax().is_ok(),
        "parse accepted what check_syntax refuses"
    );

    // As received: no panic, whatever it says.
    let key = proof.identity_key_bytes().expect("checked by parse");
    let expected = Expected {
        identifier: &proof.identifier,
        identity_key: &key,
        device_id: proof.device_id,
    };
    let _ = idproof::verify(
        proof,
        &registry(),
        &expected,
        proof.issued_at,
        &mut NonceCache::new(),
    );

    // Signed with the key the target holds: verified for real, so the checks after the
    // signature run too.
    let signed = resigned(proof);
    let mut cache = NonceCache::new();
    let now = signed.issued_at;
    let first = idproof::verify(&signed, &registry(), &expected, now, &mut cache);
    let lifetime_ok =
        signed.expires_at > signed.issued_at && signed.expires_at - signed.issued_at <= 300;
    if lifetime_ok {
        assert_eq!(
            first,
            Ok(()),
            "a proof signed with the registered key verifies"
        );
        let second = idproof::verify(&signed, &registry(), &expected, now, &mut cache);
        assert_eq!(
            second.map_err(|e| e.code),
            Err(ProofCode::Replayed),
            "the same nonce a second time"
        );
    } else {
        assert_eq!(first.map_err(|e| e.code), Err(ProofCode::Invalid));
    }
    // Any signed member changed after signing: the signature no longer covers it.
    let mut changed = signed.clone();
    changed.device_id = if signed.device_id == 1 { 2 } else { 1 };
    let refused = idproof::verify(
        &changed,
        &registry(),
        &expected,
        now,
        &mut NonceCache::new(),
    );
    assert_eq!(
        refused.map_err(|e| e.code),
        Err(ProofCode::Invalid),
        "a proof whose device_id changed after signing"
    );
}

/// `idproof_json`: arbitrary bytes as a proof's JSON and as a `PLAIN-IDPROOF` message.
pub fn idproof_json(data: &[u8]) {
    if let Ok(proof) = Proof::parse(data) {
        check_parsed_proof(&proof);
    }
    if let Ok(parsed) = sasl::parse(data) {
        if parsed.authzid.is_empty() {
            let proof = String::from_utf8(parsed.proof.clone()).expect("checked by parse");
            assert_eq!(
                sasl::initial_response(&parsed.authcid, &parsed.password, &proof),
                data,
                "a parsed message rebuilds to the same bytes"
            );
        }
        if let Ok(proof) = Proof::parse(&parsed.proof) {
            check_parsed_proof(&proof);
        }
    }
}

fn expected_of(request: &ValidRequest) -> Expected<'_> {
    Expected {
        identifier: &request.identifier,
        identity_key: &request.identity_key,
        device_id: request.device_id,
    }
}

/// `enroll_body`: arbitrary bytes as the body of `POST /v1/enroll`.
pub fn enroll_body(data: &[u8]) {
    let onboarded = [
        Onboarded::default(),
        Onboarded {
            number_prefixes: vec!["+49".into()],
            identifier_domains: vec!["example.org".into()],
        },
    ];
    for provider in &onboarded {
        let check = check_body(data, provider);
        assert_eq!(
            check.refusal.is_none(),
            check.request.is_some(),
            "a refusal exactly when there is no request"
        );
        if let Some(refusal) = &check.refusal {
            assert_eq!(refusal.status, 400, "{refusal:?}");
            assert!(
                !check.deviations.is_empty(),
                "a refusal backed by a deviation: {refusal:?}"
            );
        }
        // Each deviation is a fault of some part of the body: never more than its bytes.
        assert!(
            check.deviations.len() <= data.len() + 16,
            "{} deviations for {} bytes",
            check.deviations.len(),
            data.len()
        );
        assert!(
            check.proof_duplicates.len() <= 8,
            "duplicates kept unbounded"
        );
        let Some(request) = &check.request else {
            continue;
        };
        let Ok(proof) = parse_proof(check.proof.as_ref(), &check.proof_duplicates, request) else {
            continue;
        };
        let json = proof.to_json();
        assert_eq!(Proof::parse(json.as_bytes()).as_ref(), Ok(&proof), "{json}");
        let mut cache = NonceCache::new();
        let now = proof.issued_at;
        if idproof::verify(&proof, &registry(), &expected_of(request), now, &mut cache).is_ok() {
            let again =
                idproof::verify(&proof, &registry(), &expected_of(request), now, &mut cache);
            assert_eq!(again.map_err(|e| e.code), Err(ProofCode::Replayed));
        }
    }
}

/// The committed seeds of both targets, as (target, file name, bytes): for `enroll_body` the
/// valid bodies of [`valid_bodies`] and variants each broken in one place; for `idproof_json`
/// their proofs, the same inside `PLAIN-IDPROOF` messages, and proofs broken in one place.
/// Deterministic (fixed keys, nonces and times), so tests/fuzz_corpus.rs can check that the
/// committed files are what this makes.
pub fn idproof_seeds() -> Vec<(&'static str, String, Vec<u8>)> {
    let mut out = Vec::new();
    let bodies = valid_bodies();
    for (n, body) in bodies.iter().enumerate() {
        let text = serde_json::to_string(body).expect("JSON");
        let mut add = |what: &str, v: &Value| {
            let bytes = serde_json::to_vec(v).expect("JSON");
            out.push(("enroll_body", format!("seed-{what}-{n}"), bytes));
        };
        add("valid-body", body);
        let mut broken = body.clone();
        broken["identifier_proof"] = Value::Null;
        add("no-proof", &broken);
        let mut broken = body.clone();
        broken["one_time_prekeys"]
            .as_array_mut()
            .expect("prekeys")
            .truncate(99);
        add("99-prekeys", &broken);
        let mut broken = body.clone();
        broken["device_id"] = json!(0);
        add("device-id-0", &broken);
        let mut broken = body.clone();
        broken["identifier_proof"]["nonce"] = json!("AAAA");
        add("short-nonce", &broken);
        let mut broken = body.clone();
        broken["identifier_proof"]["device_id"] = json!(7);
        add("proof-other-device", &broken);
        out.push((
            "enroll_body",
            format!("seed-truncated-{n}"),
            text.as_bytes()[..text.len() / 2].to_vec(),
        ));

        let proof = serde_json::to_string(&body["identifier_proof"]).expect("JSON");
        let identifier = body["identifier"].as_str().expect("identifier");
        let mut add = |what: &str, bytes: Vec<u8>| {
            out.push(("idproof_json", format!("seed-{what}-{n}"), bytes));
        };
        add("proof", proof.clone().into_bytes());
        add(
            "sasl",
            sasl::initial_response(identifier, "credential-1", &proof),
        );
        add(
            "sasl-authzid",
            [
                b"admin".as_slice(),
                &sasl::initial_response(identifier, "c", &proof),
            ]
            .concat(),
        );
        add("sasl-no-proof", sasl::initial_response(identifier, "c", ""));
        let member = |name: &str, v: Value| {
            let mut p: Value = serde_json::from_str(&proof).expect("JSON");
            p[name] = v;
            serde_json::to_vec(&p).expect("JSON")
        };
        add("negative-device", member("device_id", json!(-1)));
        add(
            "long-lifetime",
            member("expires_at", json!(1_767_229_200u64)),
        );
        add("extra-member", member("extra", json!(true)));
        add(
            "duplicate-member",
            proof
                .replacen(r#""v":1,"#, r#""v":1,"v":1,"#, 1)
                .into_bytes(),
        );
    }
    out
}

/// Valid enrollment bodies: a number and an address identifier, each with 100 one-time
/// prekeys and a proof signed with [`provider_key`] that verifies at its `issued_at`.
pub fn valid_bodies() -> Vec<Value> {
    let mut out = Vec::new();
    for (n, identifier) in ["+4915112345678", "alice@example.org"]
        .into_iter()
        .enumerate()
    {
        let seed = 0x30 + n as u8;
        let device_id = 1_000_000 + n as u32;
        let device = crate::e2ee::Device::generate(device_id, [seed; 32], 100);
        let bundle = device.bundle();
        let identity_key: [u8; 33] = bundle
            .identity_key
            .as_slice()
            .try_into()
            .expect("33-byte identity key");
        let issued_at = 1_767_225_600;
        let proof = Proof::sign(
            &provider_key(),
            &ProofFields {
                provider_id: PROVIDER,
                identifier,
                identity_key: &identity_key,
                device_id,
                issued_at,
                expires_at: issued_at + 300,
                nonce: [seed; 16],
            },
        );
        let proof: Value = serde_json::from_str(&proof.to_json()).expect("proof JSON");
        let body = json!({
            "v": 1,
            "provider_id": PROVIDER,
            "device_id": device_id,
            "identifier": identifier,
            "identity_key": STANDARD.encode(&bundle.identity_key),
            "signed_prekey": {
                "id": bundle.signed_prekey_id,
                "public_key": STANDARD.encode(&bundle.signed_prekey),
                "signature": STANDARD.encode(&bundle.signature),
            },
            "one_time_prekeys": bundle
                .prekeys
                .iter()
                .map(|(id, k)| json!({"id": id, "public_key": STANDARD.encode(k)}))
                .collect::<Vec<_>>(),
            "provider_token": "token-1",
            "identifier_proof": proof,
        });
        out.push(body);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_seed_bodies_are_valid_requests_whose_proofs_verify() {
        for (n, body) in valid_bodies().iter().enumerate() {
            let name = format!("valid body {n}");
            let body = serde_json::to_vec(body).unwrap();
            let check = check_body(&body, &Onboarded::default());
            let request = check
                .request
                .as_ref()
                .unwrap_or_else(|| panic!("{name}: {:?} {:?}", check.refusal, check.deviations));
            let proof = parse_proof(check.proof.as_ref(), &check.proof_duplicates, request)
                .unwrap_or_else(|e| panic!("{name}: {:?}", e.0));
            let result = idproof::verify(
                &proof,
                &registry(),
                &expected_of(request),
                proof.issued_at,
                &mut NonceCache::new(),
            );
            assert_eq!(result, Ok(()), "{name}");
            enroll_body(&body);
        }
    }
}
