//! The gatekeeper's side of an enrolled device's login (SPEC.md §7.4): the SASL mechanism
//! `PLAIN-IDPROOF`, whose one message carries the account, the credential of the latest
//! enrollment and an identifier proof. Each fault is charged to the requirement the client
//! broke; the refusal the client sees is `<not-authorized/>` with the code of §10.1.

use base64::Engine;

use crate::idproof::{ProofCode, ProofError, sasl};
use crate::roles::Deviation;
use crate::wire::Element;

/// How the gatekeeper judges an enrolled device's login: the account and credential of its
/// latest enrollment, and the proof check (signature, freshness, binding to the device,
/// nonce memory shared with the enrollment API).
pub struct EnrolledLogin {
    pub account: String,
    pub credential: String,
    #[allow(clippy::type_complexity)]
    pub check: Box<dyn Fn(&[u8]) -> Result<(), ProofError> + Send + Sync>,
    /// The code the login must be refused with, when the harness handed over a proof it
    /// spoiled on purpose: that refusal is the scenario's, not the client's fault.
    pub expect_refusal: Option<&'static str>,
}

/// A refused login: the code for the `<text/>` of the SASL failure, and the deviation.
pub struct Refused {
    pub code: &'static str,
    pub deviation: Deviation,
}

/// Judges the `<auth>` an enrolled device sent.
pub fn judge(auth: &Element, login: &EnrolledLogin) -> Result<(), Refused> {
    let mechanism = auth.attr("mechanism").unwrap_or("");
    if mechanism != sasl::MECHANISM {
        return Err(Refused {
            code: ProofCode::Missing.code(),
            deviation: Deviation::fail(
                "IDPROOF-14",
                format!(
                    "<auth mechanism='{}'> carrying an identifier proof: the device is enrolled and the mechanism is offered",
                    sasl::MECHANISM
                ),
                auth.to_xml(),
            ),
        });
    }
    let text: String = auth.text().split_whitespace().collect();
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(text.as_bytes())
        .map_err(|e| Refused {
            code: "malformed",
            deviation: Deviation::fail(
                "STREAM-18",
                "base64 character data in <auth> (RFC 6120 §6.4.2)",
                format!("{e}: {}", auth.to_xml()),
            ),
        })?;
    let parsed = sasl::parse(&decoded).map_err(|why| Refused {
        code: "malformed",
        deviation: Deviation::fail(
            "STREAM-18",
            "authzid NUL authcid NUL passwd NUL proof (SPEC.md §7.4)",
            format!("{why}: {:?}", String::from_utf8_lossy(&decoded)),
        ),
    })?;
    if !parsed.authzid.is_empty() {
        return Err(Refused {
            code: "malformed",
            deviation: Deviation::fail(
                "STREAM-18",
                "an empty authorization identity",
                format!("authzid {:?}", parsed.authzid),
            ),
        });
    }
    if parsed.authcid != login.account || parsed.password != login.credential {
        return Err(Refused {
            code: "not_authorized",
            deviation: Deviation::fail(
                "ENROLL-9",
                format!(
                    "the account {} and the credential of the latest enrollment",
                    login.account
                ),
                if parsed.authcid != login.account {
                    format!("account {:?}", parsed.authcid)
                } else {
                    "another credential".to_string()
                },
            ),
        });
    }
    (login.check)(&parsed.proof).map_err(|e| Refused {
        code: e.code.code(),
        deviation: Deviation::fail(
            requirement_of(e.code),
            "a fresh identifier proof for the enrolled device, as the harness handed it (SPEC.md §11)",
            format!("{}: {}", e.code.code(), e.reason),
        ),
    })
}

/// The client's requirement a refused login proof breaks: the harness made every proof it
/// handed over valid, so a fault is in what the client did with it.
fn requirement_of(code: ProofCode) -> &'static str {
    match code {
        ProofCode::Missing | ProofCode::Replayed => "IDPROOF-14",
        ProofCode::Invalid => "IDPROOF-3",
        ProofCode::Expired | ProofCode::NotYetValid => "IDPROOF-6",
        ProofCode::Mismatch | ProofCode::UnknownProvider => "IDPROOF-8",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::idproof::ProofError;

    fn login(answer: fn(&[u8]) -> Result<(), ProofError>) -> EnrolledLogin {
        EnrolledLogin {
            account: "u7f3k2q9".into(),
            credential: "s3cret-credential".into(),
            check: Box::new(answer),
            expect_refusal: None,
        }
    }

    fn auth(mechanism: &str, message: &[u8]) -> Element {
        Element::new("auth", crate::wire::ns::SASL)
            .with_attr("mechanism", mechanism)
            .with_text(base64::engine::general_purpose::STANDARD.encode(message))
    }

    #[test]
    fn each_fault_is_charged_to_its_requirement() {
        let good = sasl::initial_response("u7f3k2q9", "s3cret-credential", "{}");
        let ok = login(|_| Ok(()));
        assert!(judge(&auth(sasl::MECHANISM, &good), &ok).is_ok());
        let r = judge(&auth("PLAIN", b"\0u7f3k2q9\0s3cret-credential"), &ok).unwrap_err();
        assert_eq!(
            (r.code, r.deviation.requirement.as_deref()),
            ("proof_missing", Some("IDPROOF-14"))
        );
        let stale = sasl::initial_response("u7f3k2q9", "old-credential", "{}");
        let r = judge(&auth(sasl::MECHANISM, &stale), &ok).unwrap_err();
        assert_eq!(r.deviation.requirement.as_deref(), Some("ENROLL-9"));
        let replayed = login(|_| {
            Err(ProofError {
                code: ProofCode::Replayed,
                reason: "seen".into(),
            })
        });
        let r = judge(&auth(sasl::MECHANISM, &good), &replayed).unwrap_err();
        assert_eq!(
            (r.code, r.deviation.requirement.as_deref()),
            ("proof_replayed", Some("IDPROOF-14"))
        );
    }
}
