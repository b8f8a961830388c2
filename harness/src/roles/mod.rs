//! What the harness plays towards an IUT: the gatekeeper's chat server (and,
//! in later flows, its enrollment API, media proxy and users' clients).

pub mod gatekeeper_server;
pub mod serve;

use crate::runner::Verdict;

/// A step's departure from what the scenario expects, and the verdict it earns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deviation {
    pub verdict: Verdict,
    /// The SPEC.md requirement violated, when the check knows it better than the scenario.
    pub requirement: Option<String>,
    pub expected: String,
    pub got: String,
}

impl Deviation {
    pub fn fail(
        requirement: &str,
        expected: impl Into<String>,
        got: impl Into<String>,
    ) -> Deviation {
        Deviation {
            verdict: Verdict::Fail,
            requirement: Some(requirement.to_string()),
            expected: expected.into(),
            got: got.into(),
        }
    }

    /// A failure attributed to the step's or scenario's requirement.
    pub fn fail_here(expected: impl Into<String>, got: impl Into<String>) -> Deviation {
        Deviation {
            verdict: Verdict::Fail,
            requirement: None,
            expected: expected.into(),
            got: got.into(),
        }
    }

    pub fn inconclusive(why: impl Into<String>) -> Deviation {
        Deviation {
            verdict: Verdict::Inconclusive,
            requirement: None,
            expected: "an IUT that can be tested".into(),
            got: why.into(),
        }
    }

    pub fn not_applicable(why: impl Into<String>) -> Deviation {
        Deviation {
            verdict: Verdict::NotApplicable,
            requirement: None,
            expected: "a scenario that applies to this IUT".into(),
            got: why.into(),
        }
    }

    /// A fault of the harness or of the scenario file.
    pub fn error(why: impl Into<String>) -> Deviation {
        Deviation {
            verdict: Verdict::Error,
            requirement: None,
            expected: "a working harness".into(),
            got: why.into(),
        }
    }

    /// Writing to the IUT failed: it went away.
    pub fn io(why: String) -> Deviation {
        Deviation::fail_here("a connection to write to", format!("write failed: {why}"))
    }
}
