//! The `enroll` step (SPEC.md §10): the harness, standing in for the provider server, signs
//! an identifier proof for the device the client reports (`identity`), hands it over in the
//! driver's `enroll` command, and judges every request its enrollment API receives and the
//! answer the client reports.

use serde::Deserialize;

/// `enroll = { … }` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawEnroll {
    #[serde(default = "yes")]
    opted_in: bool,
    proof: Option<String>,
    #[serde(default)]
    force: Vec<String>,
    #[serde(default)]
    wrong_ca: bool,
    #[serde(default)]
    new_identity: bool,
    #[serde(default)]
    identity_only: bool,
    answer: Option<String>,
    status: Option<u16>,
    code: Option<String>,
    requests: Option<usize>,
}

fn yes() -> bool {
    true
}

/// The proof the harness hands over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProofKind {
    /// Issued now, valid 300 s, for the reported device.
    Valid,
    /// Expired 100 s ago.
    Expired,
    /// Issued 120 s in the future.
    NotYetValid,
    /// Signed by a key the provider never registered.
    Forged,
    /// For another device id.
    OtherDevice,
    /// The proof of the previous `enroll`, again.
    Replayed,
}

/// A scripted answer of the enrollment API, before its checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ForcedAnswer {
    Status {
        status: u16,
        retry_after: Option<u32>,
    },
    Conflict,
    Hang,
}

/// `enroll`, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnrollStep {
    pub opted_in: bool,
    pub proof: ProofKind,
    pub force: Vec<ForcedAnswer>,
    /// Hand the client a CA other than the API's (ENROLL-7).
    pub wrong_ca: bool,
    /// Ask `identity` again first (after a 409, ENROLL-12).
    pub new_identity: bool,
    /// Only ask `identity` (the device id each IUT instance picks, ENROLL-5).
    pub identity_only: bool,
    /// `enrolled` or `enroll_failed`: the answer the client must give.
    pub answer: Option<String>,
    pub status: Option<u16>,
    pub code: Option<String>,
    /// Exactly this many requests must reach the API during the step.
    pub requests: Option<usize>,
}

/// A `proof = "…"` value of `enroll` or an enrolled `session`/`connect`.
pub(super) fn proof_kind(name: Option<&str>) -> Result<ProofKind, String> {
    Ok(match name {
        None | Some("valid") => ProofKind::Valid,
        Some("expired") => ProofKind::Expired,
        Some("not-yet-valid") => ProofKind::NotYetValid,
        Some("forged") => ProofKind::Forged,
        Some("other-device") => ProofKind::OtherDevice,
        Some("replayed") => ProofKind::Replayed,
        Some(o) => {
            return Err(format!(
                "proof {o:?} is not one of valid, expired, not-yet-valid, forged, other-device, replayed"
            ));
        }
    })
}

impl ProofKind {
    /// The code the gatekeeper refuses such a proof with (SPEC.md §10.1); `None` for a valid one.
    pub fn refusal(self) -> Option<&'static str> {
        match self {
            ProofKind::Valid => None,
            ProofKind::Expired => Some("proof_expired"),
            ProofKind::NotYetValid => Some("proof_not_yet_valid"),
            ProofKind::Forged => Some("proof_invalid"),
            ProofKind::OtherDevice => Some("proof_mismatch"),
            ProofKind::Replayed => Some("proof_replayed"),
        }
    }
}

pub(super) fn enroll_step(r: RawEnroll) -> Result<EnrollStep, String> {
    let proof = proof_kind(r.proof.as_deref()).map_err(|m| format!("enroll.{m}"))?;
    let mut force = Vec::with_capacity(r.force.len());
    for f in &r.force {
        force.push(match f.as_str() {
            "conflict" => ForcedAnswer::Conflict,
            "hang" => ForcedAnswer::Hang,
            s => {
                let (status, after) = match s.split_once(':') {
                    Some((st, a)) => (st, Some(a)),
                    None => (s, None),
                };
                let status: u16 = status
                    .parse()
                    .ok()
                    .filter(|st| (400..=599).contains(st))
                    .ok_or_else(|| {
                        format!("enroll.force {f:?}: STATUS[:RETRY_AFTER], conflict or hang")
                    })?;
                let retry_after = match after {
                    Some(a) => Some(a.parse::<u32>().map_err(|_| {
                        format!("enroll.force {f:?}: Retry-After must be whole seconds")
                    })?),
                    None => None,
                };
                ForcedAnswer::Status {
                    status,
                    retry_after,
                }
            }
        });
    }
    if let Some(a) = &r.answer
        && a != "enrolled"
        && a != "enroll_failed"
    {
        return Err(format!(
            "enroll.answer {a:?} is not enrolled or enroll_failed"
        ));
    }
    Ok(EnrollStep {
        opted_in: r.opted_in,
        proof,
        force,
        wrong_ca: r.wrong_ca,
        new_identity: r.new_identity,
        identity_only: r.identity_only,
        answer: r.answer,
        status: r.status,
        code: r.code,
        requests: r.requests,
    })
}
