//! The gatekeeper's side of an enrolled device beyond the enrollment itself: how its logins
//! are judged (a fresh proof for the device the API enrolled, checked with the API's registry
//! and nonce memory, SPEC.md §7.4), and, in a chain scenario, the token check the enrollment
//! API makes by calling the IUT's own server (ENROLL-17, §12).

use std::sync::Arc;

use rand::Rng;
use tokio::time::Instant;

use super::Exec;
use super::http::unix_now;
use crate::idproof::{Expected, Proof, verify};
use crate::roles::Deviation;
use crate::roles::enroll_api::{lock, token_check};
use crate::roles::gatekeeper_proof::EnrolledLogin;
use crate::scenario::enroll_step::ProofKind;

impl Exec<'_> {
    /// The enrolled device: the user's identifier and the device id the API enrolled.
    pub(super) fn enrolled_device(&self) -> Option<(String, u32)> {
        let ctx = self.enroll.as_ref()?;
        let (_, _, device_id) = ctx.enrolled.as_ref()?;
        Some((ctx.identifier.clone(), *device_id))
    }

    /// The gatekeeper's token check in a chain scenario (ENROLL-17): a signed call to the IUT
    /// server's authentication endpoint (SPEC.md §12), whose answer decides.
    pub(super) fn provider_token_check(
        &self,
    ) -> Result<crate::roles::enroll_api::TokenCheck, Deviation> {
        let (url, tls, key) = self.provider_target().ok_or_else(|| {
            Deviation::error("a chain scenario's token check needs the IUT's server running")
        })?;
        let base = crate::http::client::BaseUrl::parse(&url).map_err(Deviation::error)?;
        Ok(token_check(move |user: String, token: String| {
            let (url, tls, key, path) = (
                url.clone(),
                tls.clone(),
                key.clone(),
                base.target("/gatecheck/v1/auth"),
            );
            async move {
                let now = unix_now();
                let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::from_os_rng();
                let request_id = crate::scenario::vars::random_uuid(&mut rng);
                let body = serde_json::json!({
                    "v": 1, "user": user, "token": token,
                    "request_id": request_id, "timestamp": now,
                })
                .to_string()
                .into_bytes();
                let sig = crate::http::signing::sign(&key, "POST", &path, now, rng.random(), &body);
                let mut headers =
                    vec![("content-type".to_string(), "application/json".to_string())];
                headers.extend(sig.pairs().iter().map(|(k, v)| (k.to_string(), v.clone())));
                let req = crate::http::HttpRequest {
                    method: "POST".into(),
                    path,
                    headers,
                    body,
                };
                let deadline = Instant::now() + std::time::Duration::from_secs(2);
                let r = crate::http::send(&url, &req, deadline, tls.as_ref()).await?;
                if r.status != 200 {
                    return Err(format!(
                        "the provider's authentication endpoint answered {}",
                        r.status
                    ));
                }
                serde_json::from_slice::<serde_json::Value>(&r.body)
                    .ok()
                    .and_then(|v| v.get("valid").and_then(serde_json::Value::as_bool))
                    .ok_or_else(|| {
                        "the provider's authentication answer has no boolean valid".to_string()
                    })
            }
        }))
    }

    /// What an enrolled `connect` tells the client, and how its login will be judged: a
    /// fresh proof for the enrolled device, checked with the API's registry and nonce memory.
    pub(super) fn enrolled_login(
        &mut self,
        kind: ProofKind,
    ) -> Result<(Option<serde_json::Value>, EnrolledLogin), Deviation> {
        if self.scenario.chain && kind != ProofKind::Valid {
            return Err(Deviation::error(
                "in a chain scenario the login proofs come from the IUT's server: they cannot be spoiled",
            ));
        }
        let ctx = self.enroll.as_mut().ok_or_else(|| {
            Deviation::error("connect with enrolled = true needs an enroll step before it")
        })?;
        let (account, credential, device_id) = ctx.enrolled.clone().ok_or_else(|| {
            Deviation::inconclusive("the client never enrolled: an enrolled login cannot be tested")
        })?;
        let (ik, _) = ctx
            .identity
            .ok_or_else(|| Deviation::error("no identity"))?;
        let now = unix_now();
        let proof = match kind {
            ProofKind::Replayed => ctx.last_proof.clone().ok_or_else(|| {
                Deviation::error("proof = \"replayed\" needs a proof handed over before it")
            })?,
            kind => ctx.stand_in_proof(kind, &ik, device_id, now, self.vars.rng()),
        };
        let json: serde_json::Value =
            serde_json::from_str(&proof.to_json()).map_err(|e| Deviation::error(e.to_string()))?;
        ctx.last_proof = Some(proof);
        let state = Arc::clone(&ctx.state);
        let identifier = ctx.identifier.clone();
        let check = Box::new(move |bytes: &[u8]| {
            let proof = Proof::parse(bytes)?;
            let now = unix_now();
            let mut s = lock(&state);
            let s = &mut *s;
            verify(
                &proof,
                &s.registry,
                &Expected {
                    identifier: &identifier,
                    identity_key: &ik,
                    device_id,
                },
                now,
                &mut s.nonces,
            )
        });
        // In a chain scenario the client gets its proof from its own server.
        let handed = (!self.scenario.chain).then_some(json);
        Ok((
            handed,
            EnrolledLogin {
                account,
                credential,
                check,
                expect_refusal: kind.refusal(),
            },
        ))
    }
}
