//! Verdicts and results: the types every other part reports in (ISO 9646 / TTCN-3 verdicts,
//! the deviations a check finds, warnings for SHOULDs, a scenario's result). They sit at the
//! bottom of the crate: roles, runner and reporters all name them, and they name none of those.

use std::sync::Arc;

use crate::transcript::Entry;

/// ISO 9646 / TTCN-3 verdicts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    Pass,
    Fail,
    Inconclusive,
    NotApplicable,
    /// A fault of the harness (or of the scenario file), not of the IUT.
    Error,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Pass => "pass",
            Verdict::Fail => "fail",
            Verdict::Inconclusive => "inconclusive",
            Verdict::NotApplicable => "not-applicable",
            Verdict::Error => "error",
        }
    }
}

/// Why a scenario did not pass: which step, what was expected, what arrived.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Failure {
    /// 1-based index of the step, when a step was running.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub step: Option<usize>,
    /// Line of the step in the scenario file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<usize>,
    /// Found after the last step passed (a false driver event, a second connection).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub after_steps: bool,
    /// The SPEC.md requirement the deviation violates.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub requirement: Option<String>,
    pub expected: String,
    pub got: String,
}

impl Failure {
    /// A failure that belongs to no step (set-up, a harness fault), charged to no requirement.
    pub fn outside_steps(expected: impl Into<String>, got: impl Into<String>) -> Failure {
        Failure {
            step: None,
            line: None,
            after_steps: false,
            requirement: None,
            expected: expected.into(),
            got: got.into(),
        }
    }
}

/// A SHOULD (or SHOULD NOT) not met (SPEC.md §2.1): it never fails a scenario, it is
/// attached to its verdict.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Warning {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub step: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<usize>,
    /// The SHOULD-level requirement not met.
    pub requirement: String,
    pub expected: String,
    pub got: String,
}

/// The warnings of one scenario, shared so that a scenario that panics keeps them.
#[derive(Debug, Clone, Default)]
pub struct Warnings(Arc<std::sync::Mutex<Vec<Warning>>>);

impl Warnings {
    pub fn push(&self, w: Warning) {
        if let Ok(mut v) = self.0.lock() {
            v.push(w);
        }
    }

    pub fn take(&self) -> Vec<Warning> {
        self.0
            .lock()
            .map(|mut v| std::mem::take(&mut *v))
            .unwrap_or_default()
    }
}

/// The result of one scenario.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ScenarioResult {
    pub id: String,
    pub title: String,
    pub requirements: Vec<String>,
    pub verdict: Verdict,
    pub duration_ms: u64,
    /// The scenario's own seed (derived from the run seed and its id).
    pub seed: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure: Option<Failure>,
    /// SHOULD-level requirements not met; a pass with warnings is still a pass.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<Warning>,
    /// Kept for every scenario that ran (bounded per report: clean passes lose theirs first).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub transcript: Option<Vec<Entry>>,
    /// The tail of the IUT's stderr, for every verdict but pass.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub iut_stderr: Option<String>,
}

/// Counts by verdict.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Summary {
    pub pass: usize,
    pub fail: usize,
    pub inconclusive: usize,
    pub not_applicable: usize,
    pub error: usize,
    /// Of the passes, those with warnings.
    pub pass_with_warnings: usize,
}

impl Summary {
    /// Counts one result: its verdict, and whether it passed with warnings.
    pub fn count(&mut self, r: &ScenarioResult) {
        self.add(r.verdict);
        if r.verdict == Verdict::Pass && !r.warnings.is_empty() {
            self.pass_with_warnings += 1;
        }
    }

    pub fn add(&mut self, v: Verdict) {
        match v {
            Verdict::Pass => self.pass += 1,
            Verdict::Fail => self.fail += 1,
            Verdict::Inconclusive => self.inconclusive += 1,
            Verdict::NotApplicable => self.not_applicable += 1,
            Verdict::Error => self.error += 1,
        }
    }

    pub fn total(&self) -> usize {
        self.pass + self.fail + self.inconclusive + self.not_applicable + self.error
    }

    /// True when every applicable scenario passed.
    pub fn all_passed(&self) -> bool {
        self.fail == 0 && self.inconclusive == 0 && self.error == 0
    }
}

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
