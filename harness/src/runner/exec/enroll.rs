//! The `enroll` step and enrolled logins (SPEC.md §10, §7.4). The harness plays the
//! gatekeeper's enrollment API (roles::enroll_api) and, for the client under test, stands in
//! for its provider server (§6.1): it signs the identifier proofs with a provider key it
//! registered for itself and answers its own token checks. Everything the client sends the
//! API is judged by the API's checks; the client's answer event is a claim, held against what
//! the API actually answered.

use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ed25519_dalek::SigningKey;
use rand::Rng;
use tokio::time::Instant;

use super::Exec;
use super::http::unix_now;
use crate::idproof::{Proof, ProofFields};
use crate::iut::driver::Event;
use crate::roles::Deviation;
use crate::roles::enroll_api::{
    EnrollApi, EnrollConfig, EnrollState, Forced, SharedEnrollState, lock, token_check,
};
use crate::roles::gatekeeper_server as gk;
use crate::scenario::enroll_step::{EnrollStep, ForcedAnswer, ProofKind};

/// The provider id the harness registers for itself when the IUT's iut.toml names none.
const STAND_IN_PROVIDER: &str = "gatecheck-stand-in";
/// The identifier the client enrolls when iut.toml names no test user.
const STAND_IN_IDENTIFIER: &str = "+4915100000001";

/// The enrollment side of one scenario.
pub(super) struct EnrollCtx {
    pub(super) api: EnrollApi,
    pub(super) state: SharedEnrollState,
    /// The stand-in provider server's signing key and id.
    pub(super) provider_key: SigningKey,
    pub(super) provider_id: String,
    pub(super) identifier: String,
    pub(super) token: String,
    /// What the client reported with `identity`: its identity key and device id.
    pub(super) identity: Option<([u8; 33], u32)>,
    /// The last proof handed over (for `proof = "replayed"`).
    pub(super) last_proof: Option<Proof>,
    /// The latest enrollment the API granted: account, credential, device id.
    pub(super) enrolled: Option<(String, String, u32)>,
    /// How many of the API's recorded client deviations were already judged.
    judged: usize,
    /// The device id each IUT instance reported (ENROLL-5).
    device_ids: Vec<(usize, u32)>,
}

impl EnrollCtx {
    /// A proof signed by the stand-in provider server for `ik` and `device_id`, spoiled as
    /// `kind` says (only the harness's own spoiling: expired, not yet valid, forged, for
    /// another device).
    pub(super) fn stand_in_proof(
        &self,
        kind: ProofKind,
        ik: &[u8; 33],
        device_id: u32,
        now: u64,
        rng: &mut impl Rng,
    ) -> Proof {
        let (issued, expires) = match kind {
            ProofKind::Expired => (now - 400, now - 100),
            ProofKind::NotYetValid => (now + 120, now + 420),
            _ => (now, now + 300),
        };
        let forged = SigningKey::from_bytes(&rng.random::<[u8; 32]>());
        let key = if kind == ProofKind::Forged {
            &forged
        } else {
            &self.provider_key
        };
        let device = if kind == ProofKind::OtherDevice {
            device_id % 2_147_483_647 + 1
        } else {
            device_id
        };
        Proof::sign(
            key,
            &ProofFields {
                provider_id: &self.provider_id,
                identifier: &self.identifier,
                identity_key: ik,
                device_id: device,
                issued_at: issued,
                expires_at: expires,
                nonce: rng.random(),
            },
        )
    }
}

impl Exec<'_> {
    /// Starts the enrollment API (once per scenario).
    async fn enroll_ctx(&mut self) -> Result<&mut EnrollCtx, Deviation> {
        if self.enroll.is_none() {
            let noise = STANDARD
                .decode(self.keys()?.noise.public_base64())
                .ok()
                .and_then(|b| <[u8; 32]>::try_from(b).ok())
                .ok_or_else(|| Deviation::error("the gatekeeper's Noise key is not 32 bytes"))?;
            let provider_key = SigningKey::from_bytes(&self.vars.rng().random::<[u8; 32]>());
            let onboarding = self.iut.onboarding.as_ref();
            let provider_id = onboarding
                .map(|o| o.provider_id.clone())
                .unwrap_or_else(|| STAND_IN_PROVIDER.to_string());
            let user = onboarding.and_then(|o| o.users.first());
            let identifier = user
                .map(|u| u.identifier.clone())
                .unwrap_or_else(|| STAND_IN_IDENTIFIER.to_string());
            let mut registry = crate::idproof::Registry::new();
            let (token, check) = if self.scenario.chain {
                // The whole chain: proofs come from the IUT's own server, verified with the keys
                // it was onboarded with, and the token is checked by calling its endpoint.
                let (user, keys) = match (user, onboarding.map(|o| o.verifying_keys())) {
                    (Some(u), Some(Ok(keys))) if !keys.is_empty() => (u, keys),
                    _ => {
                        return Err(Deviation::inconclusive(
                            "a chain scenario needs iut.toml [onboarding] with provider_keys and a test user (SPEC.md §6.1)",
                        ));
                    }
                };
                for k in keys {
                    registry.add(&provider_id, k);
                }
                (user.token.clone(), self.provider_token_check()?)
            } else {
                registry.add(&provider_id, provider_key.verifying_key());
                let token = format!(
                    "stand-in-{}",
                    self.vars.get("rand:enroll-token").unwrap_or_default()
                );
                // The stand-in provider server knows the one token it issued, for its one user.
                let (want_id, want_token) = (identifier.clone(), token.clone());
                let check = token_check(move |id: String, tok: String| {
                    let ok = id == want_id && tok == want_token;
                    async move { Ok(ok) }
                });
                (token, check)
            };
            let state = EnrollState::new(registry).shared();
            let mut config = EnrollConfig::new(gk::DOMAIN, noise);
            if let Some(o) = onboarding {
                config.onboarded.number_prefixes = o.number_prefixes.clone();
                config.onboarded.identifier_domains = o.identifier_domains.clone();
            }
            let api = EnrollApi::start(config, Arc::clone(&state), check)
                .await
                .map_err(|e| Deviation::error(format!("the enrollment API did not start: {e}")))?;
            self.transcript
                .note(format!("enrollment API listening at {}", api.base_url()));
            self.vars.set("enroll.identifier", identifier.clone());
            self.enroll = Some(EnrollCtx {
                api,
                state,
                provider_key,
                provider_id,
                identifier,
                token,
                identity: None,
                last_proof: None,
                enrolled: None,
                judged: 0,
                device_ids: Vec::new(),
            });
        }
        self.enroll
            .as_mut()
            .ok_or_else(|| Deviation::error("no enrollment API"))
    }

    pub(super) async fn enroll(
        &mut self,
        e: &EnrollStep,
        deadline: Instant,
    ) -> Result<(), Deviation> {
        self.enroll_ctx().await?;
        if e.identity_only {
            return self.ask_identity(deadline).await;
        }
        let before_identity = self.enroll.as_ref().and_then(|c| c.identity);
        if before_identity.is_none() || e.new_identity {
            self.ask_identity(deadline).await?;
        }
        let after_identity = self.enroll.as_ref().and_then(|c| c.identity);
        let refused_conflict = self.enroll.as_ref().is_some_and(|c| {
            c.api
                .requests()
                .last()
                .is_some_and(|r| r.outcome.status == Some(409))
        });
        if let (Some((_, old)), Some((_, new))) = (before_identity, after_identity)
            && e.new_identity
            && refused_conflict
            && old == new
        {
            return Err(Deviation::fail(
                "ENROLL-12",
                "a new random device id after 409 device_id_conflict",
                format!("device_id {new} again"),
            ));
        }
        let ctx = self
            .enroll
            .as_mut()
            .ok_or_else(|| Deviation::error("no enrollment API"))?;
        let (ik, device_id) = ctx
            .identity
            .ok_or_else(|| Deviation::error("no identity reported"))?;
        let now = unix_now();
        if self.scenario.chain && e.proof != ProofKind::Valid {
            return Err(Deviation::error(
                "in a chain scenario the proofs come from the IUT's server: enroll.proof cannot be spoiled",
            ));
        }
        let proof = match e.proof {
            ProofKind::Replayed => ctx.last_proof.clone().ok_or_else(|| {
                Deviation::error("proof = \"replayed\" needs an enroll step before it")
            })?,
            kind => ctx.stand_in_proof(kind, &ik, device_id, now, self.vars.rng()),
        };
        ctx.last_proof = Some(proof.clone());
        for f in &e.force {
            ctx.api.force(match f {
                ForcedAnswer::Status {
                    status,
                    retry_after,
                } => Forced::Status {
                    status: *status,
                    retry_after: *retry_after,
                },
                ForcedAnswer::Conflict => Forced::Conflict,
                ForcedAnswer::Hang => Forced::Hang,
            });
        }
        let ca_pem = if e.wrong_ca {
            crate::transport::TlsIdentity::try_generate("127.0.0.1")
                .map_err(|e| Deviation::error(e.to_string()))?
                .ca_pem
        } else {
            ctx.api.ca_pem().to_string()
        };
        let before = ctx.api.requests().len();
        let proof_json: serde_json::Value =
            serde_json::from_str(&proof.to_json()).map_err(|e| Deviation::error(e.to_string()))?;
        let mut cmd = serde_json::json!({
            "cmd": "enroll",
            "url": ctx.api.base_url(),
            "ca_pem": ca_pem,
            "identifier": ctx.identifier,
            "token": ctx.token,
            "opted_in": e.opted_in,
            "proof": proof_json,
        });
        if self.scenario.chain
            && let Some(o) = cmd.as_object_mut()
        {
            // The client asks its own server for the proof (SPEC.md §6.1).
            o.remove("proof");
        }
        let seq = self.send_command(cmd).await?;
        let answer = self
            .answer_to(seq, &["enrolled", "enroll_failed"], "enroll", deadline)
            .await?;
        self.judge_enrollment(e, seq, &answer, before)
    }

    /// `identity`: the client's identity key and the device id it will enroll.
    async fn ask_identity(&mut self, deadline: Instant) -> Result<(), Deviation> {
        let seq = self
            .send_command(serde_json::json!({"cmd": "identity"}))
            .await?;
        let ev = self
            .answer_to(seq, &["identity"], "identity", deadline)
            .await?;
        let ik = ev
            .str("identity_key")
            .and_then(|k| STANDARD.decode(k).ok())
            .and_then(|b| <[u8; 33]>::try_from(b).ok())
            .filter(|k| k[0] == 0x05)
            .ok_or_else(|| {
                Deviation::fail(
                    "DRIVER-1",
                    "identity_key: the standard base64 of a 33-byte key starting 0x05",
                    ev.to_string(),
                )
            })?;
        let device_id = ev
            .raw
            .get("device_id")
            .and_then(serde_json::Value::as_u64)
            .and_then(|d| u32::try_from(d).ok())
            .filter(|d| (1..=2_147_483_647).contains(d))
            .ok_or_else(|| {
                Deviation::fail(
                    "ENROLL-5",
                    "a device_id from 1 to 2147483647",
                    ev.to_string(),
                )
            })?;
        let cur = self.cur;
        if let Some(ctx) = self.enroll.as_mut() {
            // Two instances of the client, launched apart, picking the same id: for ids drawn
            // at random from 2^31 values that happens once in two billion runs.
            if let Some((other, _)) = ctx
                .device_ids
                .iter()
                .find(|(i, d)| *i != cur && *d == device_id)
            {
                return Err(Deviation::fail(
                    "ENROLL-5",
                    "a device id drawn at random, so that two launches of the client pick different ones",
                    format!(
                        "device_id {device_id} from this instance and from instance {}",
                        other + 1
                    ),
                ));
            }
            ctx.device_ids.push((cur, device_id));
            ctx.identity = Some((ik, device_id));
        }
        self.vars.set("enroll.device_id", device_id.to_string());
        Ok(())
    }

    /// Waits for the event answering `seq` (one of `names`, or `error`/`unsupported`);
    /// other events stay queued for later steps.
    async fn answer_to(
        &mut self,
        seq: u64,
        names: &[&str],
        cmd: &str,
        deadline: Instant,
    ) -> Result<Event, Deviation> {
        let mut others = Vec::new();
        let found = loop {
            match self.next_event(deadline).await? {
                None => break None,
                Some(ev) if ev.seq == Some(seq) => break Some(ev),
                Some(ev) => others.push(ev),
            }
        };
        let dev = self.dev();
        for ev in others.into_iter().rev() {
            dev.pending.push_front(ev);
        }
        let ev = found.ok_or_else(|| {
            Deviation::fail_here(
                format!("an answer to `{cmd}` ({})", names.join(" or ")),
                "no answer before the step's deadline",
            )
        })?;
        if ev.name == "unsupported" {
            return Err(Deviation::inconclusive(format!(
                "the IUT answered `unsupported` to {cmd}, which every client must support (enrollment is mandatory): nothing can be tested"
            )));
        }
        if !names.contains(&ev.name.as_str()) {
            return Err(Deviation::fail_here(
                format!("{} for `{cmd}`", names.join(" or ")),
                ev.to_string(),
            ));
        }
        Ok(ev)
    }

    /// Holds the client's answer against what the API saw and answered.
    fn judge_enrollment(
        &mut self,
        e: &EnrollStep,
        seq: u64,
        answer: &Event,
        before: usize,
    ) -> Result<(), Deviation> {
        let ctx = self
            .enroll
            .as_mut()
            .ok_or_else(|| Deviation::error("no enrollment API"))?;
        let requests = ctx.api.requests();
        let mine = &requests[before.min(requests.len())..];
        // The client's faults in what it sent, first: each names its requirement. A proof
        // the harness spoiled on purpose is refused for what the harness did, not the client.
        let deviations = ctx.api.client_deviations();
        let spoiled = e.proof != ProofKind::Valid;
        let fault = deviations.get(ctx.judged..).and_then(|new| {
            new.iter()
                .find(|d| {
                    !(spoiled
                        && d.requirement
                            .as_deref()
                            .is_some_and(|r| r.starts_with("IDPROOF-")))
                })
                .cloned()
        });
        ctx.judged = deviations.len();
        if let Some(mut d) = fault {
            // In the whole chain the proof came from the IUT's own server: a proof refused as
            // invalid is the server's fault, not the presenting client's, charged to the rule
            // of §11 it breaks (the signature's key or bytes, its syntax, its lifetime) as the
            // proof hook's check charges it (http_proof.rs).
            if self.scenario.chain
                && d.requirement.as_deref() == Some("IDPROOF-9")
                && d.got.contains("proof_invalid")
            {
                let keys = self
                    .iut
                    .onboarding
                    .as_ref()
                    .and_then(|o| o.verifying_keys().ok())
                    .unwrap_or_default();
                let rule = mine
                    .iter()
                    .rev()
                    .find_map(|r| presented_proof(&r.body))
                    .and_then(|p| crate::idproof::invalid_rule(&p, &keys))
                    .unwrap_or("IDPROOF-2");
                d.requirement = Some(rule.into());
                d.got = format!("{} (a proof the IUT's own server issued)", d.got);
            }
            // Re-enrolling the device the API enrolled last (same identifier, same device
            // id): a proof presented before breaks ENROLL-15's fresh proof for re-enrollment,
            // the narrower rule than IDPROOF-14's.
            let device = ctx.identity.map(|(_, d)| d);
            if d.requirement.as_deref() == Some("IDPROOF-14")
                && ctx
                    .enrolled
                    .as_ref()
                    .is_some_and(|(_, _, enrolled)| Some(*enrolled) == device)
            {
                d.requirement = Some("ENROLL-15".into());
                d.expected = format!(
                    "ENROLL-15: a fresh identifier proof when re-enrolling device {} ({})",
                    device.unwrap_or_default(),
                    d.expected
                );
            }
            return Err(d);
        }
        if !e.opted_in && !mine.is_empty() {
            return Err(Deviation::fail(
                "ENROLL-18",
                "no request to the enrollment API for a user who did not opt in",
                format!(
                    "{} request(s), the first {} {}",
                    mine.len(),
                    mine[0].method,
                    mine[0].path
                ),
            ));
        }
        if e.wrong_ca && !mine.is_empty() {
            return Err(Deviation::fail(
                "ENROLL-7",
                "no request over a TLS connection whose certificate the given CA does not sign",
                format!("{} request(s) sent anyway", mine.len()),
            ));
        }
        // ENROLL-14: a retry after a 5xx waits a second or more.
        if let [first, second, ..] = mine
            && first.outcome.status.is_some_and(|s| s >= 500)
            && second.at.duration_since(first.at) < std::time::Duration::from_secs(1)
        {
            return Err(Deviation::fail(
                "ENROLL-14",
                "a retry after a 5xx answer no sooner than 1 s later",
                format!(
                    "the retry came {} ms after the {} answer",
                    second.at.duration_since(first.at).as_millis(),
                    first.outcome.status.unwrap_or_default()
                ),
            ));
        }
        if let Some(n) = e.requests
            && mine.len() != n
        {
            return Err(Deviation::fail_here(
                format!("{n} request(s) to the enrollment API"),
                format!("{}", mine.len()),
            ));
        }
        // The answer is a claim: it must be what the API answered last.
        let last = mine.last();
        let granted = last.and_then(|r| {
            r.outcome
                .status
                .filter(|s| *s == 200 || *s == 201)
                .map(|_| r.clone())
        });
        let credential = granted.as_ref().and_then(|r| {
            let id = ctx.identifier.clone();
            let device = ctx.identity.map(|(_, d)| d)?;
            lock(&ctx.state)
                .device(&id, device)
                .map(|d| (d.account.clone(), d.credential.clone(), device))
                .filter(|_| r.outcome.status.is_some())
        });
        match answer.name.as_str() {
            "enrolled" => {
                let Some((account, secret, device)) = credential else {
                    return Err(Deviation::fail(
                        "DRIVER-3",
                        "`enrolled` only after the enrollment API granted an enrollment",
                        format!(
                            "{answer} (the API's last answer: {})",
                            last.map_or("none".into(), |r| format!("{:?}", r.outcome))
                        ),
                    ));
                };
                if answer.raw.to_string().contains(&secret) {
                    return Err(Deviation::fail(
                        "ENROLL-10",
                        "no credential in driver events",
                        "the `enrolled` event carries the credential".to_string(),
                    ));
                }
                let claimed = (
                    answer.str("account"),
                    answer.str("domain"),
                    answer
                        .raw
                        .get("device_id")
                        .and_then(serde_json::Value::as_u64),
                );
                if claimed
                    != (
                        Some(account.as_str()),
                        Some(gk::DOMAIN),
                        Some(u64::from(device)),
                    )
                {
                    return Err(Deviation::fail(
                        "DRIVER-3",
                        format!(
                            "enrolled with account {account}, domain {}, device_id {device}",
                            gk::DOMAIN
                        ),
                        answer.to_string(),
                    ));
                }
                ctx.enrolled = Some((account.clone(), secret, device));
                self.vars.set("enroll.account", account);
            }
            _ => {
                let status = answer.raw.get("status").and_then(serde_json::Value::as_u64);
                let code = answer.str("code").unwrap_or("");
                // A failure the API caused must be reported as the API answered it.
                if let Some(r) = last
                    && let Some(s) = r.outcome.status
                    && (status != Some(u64::from(s))
                        || r.outcome.code.as_deref().is_some_and(|c| c != code))
                {
                    return Err(Deviation::fail(
                        "ENROLL-11",
                        format!(
                            "enroll_failed with the API's answer: status {s}, code {}",
                            r.outcome.code.as_deref().unwrap_or("(none)")
                        ),
                        answer.to_string(),
                    ));
                }
                if granted.is_some() {
                    return Err(Deviation::fail(
                        "DRIVER-3",
                        "enrolled: the API granted the enrollment",
                        answer.to_string(),
                    ));
                }
            }
        }
        if let Some(want) = &e.answer
            && *want != answer.name
        {
            return Err(Deviation::fail_here(
                format!("`{want}` (seq {seq})"),
                answer.to_string(),
            ));
        }
        if let Some(s) = e.status
            && answer.raw.get("status").and_then(serde_json::Value::as_u64) != Some(u64::from(s))
        {
            return Err(Deviation::fail_here(
                format!("status {s}"),
                answer.to_string(),
            ));
        }
        if let Some(c) = &e.code
            && answer.str("code") != Some(c.as_str())
        {
            return Err(Deviation::fail_here(
                format!("code {c}"),
                answer.to_string(),
            ));
        }
        Ok(())
    }
}

/// The identifier proof an enrollment request's JSON body presents, when it parses.
fn presented_proof(body: &[u8]) -> Option<crate::idproof::Proof> {
    let value: serde_json::Value = serde_json::from_slice(body).ok()?;
    let text = serde_json::to_vec(value.get("identifier_proof")?).ok()?;
    crate::idproof::Proof::parse(&text).ok()
}
