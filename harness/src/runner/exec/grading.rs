//! How a step's outcome becomes a verdict: how long it may wait (SPEC.md's time bounds),
//! which requirement a deviation is charged to, and SHOULDs that become warnings.

use std::time::Duration;

use super::Exec;
use crate::roles::Deviation;
use crate::runner::{Failure, Verdict, Warning};
use crate::scenario::{Action, Step};

/// The requirement bounding the answer time of a provider server endpoint the gatekeeper
/// calls (SPEC.md §12, §13), by the request's path (a query string or a trailing slash kept).
fn http_answer_bound(path: &str) -> Option<&'static str> {
    let path = path.split('?').next().unwrap_or(path);
    if path.starts_with("/gatecheck/v1/auth") {
        Some("AUTH-7")
    } else if path.starts_with("/gatecheck/v1/push") {
        Some("PUSH-6")
    } else {
        None
    }
}

/// How long `keep_connected` waits by default: five attempts of a client doubling a delay
/// that starts at one second, with the largest jitter, take under 20 s.
const KEEP_CONNECTED_WAIT: Duration = Duration::from_secs(30);

impl Exec<'_> {
    /// How long a step waits: its own `timeout_ms`, else the IUT's step time, but never less
    /// than the bound SPEC.md gives what it waits for (an iq answer: STANZA-3; a close after
    /// the gatekeeper's closing tag or stream error: STREAM-27, STREAM-26), so that a slow but
    /// conformant IUT is not failed early.
    pub(super) fn wait_of(&self, step: &Step) -> Duration {
        if let Some(t) = step.timeout {
            return t;
        }
        let default = self.iut.timeouts.step();
        let bounded_by = match &step.action {
            // Several attempts paced by the IUT's backoff (STREAM-38), then a login.
            Action::KeepConnected { .. } => return KEEP_CONNECTED_WAIT.max(default),
            Action::Expect(patterns) if patterns.iter().all(|p| is_iq_answer(p)) => "STANZA-3",
            Action::ExpectClosed { .. } => "STREAM-27",
            Action::Http(h) => {
                // A call to a gatekeeper-facing endpoint waits twice the answer time SPEC.md
                // allows: a legal but slow answer is never cut off, and a late one is read and
                // timed (AUTH-7, PUSH-6) instead of passing for no answer at all.
                let bound = http_answer_bound(&h.path).and_then(crate::spec::embedded_time_bound);
                return bound.map_or(default, |b| (b * 2).max(default));
            }
            _ => return default,
        };
        crate::spec::embedded_time_bound(bounded_by).map_or(default, |b| b.max(default))
    }

    /// The SHOULD-level requirement a failing deviation is attributed to, if it is one.
    pub(super) fn should_level(&self, d: &Deviation, step: &Step) -> Option<String> {
        if d.verdict != Verdict::Fail {
            return None;
        }
        let id = d
            .requirement
            .clone()
            .or_else(|| step.requirement.clone())
            .or_else(|| self.scenario.requirements.first().cloned())?;
        let level = crate::spec::Catalogue::embedded().get(&id)?.level;
        matches!(
            level,
            crate::spec::Level::Should | crate::spec::Level::ShouldNot
        )
        .then_some(id)
    }

    /// The step being played, as `warn` takes it.
    pub(super) fn current_step<'s>(&self, step: &'s Step) -> Option<(usize, &'s Step)> {
        Some((self.step_index, step))
    }

    /// Records a SHOULD not met.
    pub(super) fn warn(
        &self,
        requirement: String,
        expected: impl Into<String>,
        got: impl Into<String>,
        at: Option<(usize, &Step)>,
    ) {
        let (expected, got) = (expected.into(), got.into());
        self.transcript.note(format!(
            "warning {requirement}: expected {expected}, got {got}"
        ));
        self.warnings.push(Warning {
            step: at.map(|(i, _)| i + 1),
            line: at.map(|(_, s)| s.line),
            requirement,
            expected,
            got,
        });
    }

    /// A deviation found once every step had passed.
    pub(super) fn failure_after_steps(&self, d: Deviation) -> Failure {
        Failure {
            after_steps: true,
            ..self.failure(d, None)
        }
    }

    pub(super) fn failure(&self, d: Deviation, current: Option<(usize, &Step)>) -> Failure {
        let requirement = d
            .requirement
            .or_else(|| current.and_then(|(_, s)| s.requirement.clone()))
            .or_else(|| {
                (d.verdict == Verdict::Fail)
                    .then(|| self.scenario.requirements.first().cloned())
                    .flatten()
            });
        // An IUT that died explains most of what followed: say so beside the symptom.
        let mut got = d.got;
        if d.verdict == Verdict::Fail
            && !got.contains("the IUT exited")
            && let Some(status) = &self.iut_exit
        {
            got.push_str(&format!(" (the IUT process had exited: {status})"));
        }
        Failure {
            step: current.map(|(i, _)| i + 1),
            line: current.map(|(_, s)| s.line),
            after_steps: false,
            requirement,
            expected: d.expected,
            got,
        }
    }
}

/// Whether a pattern is an answer to an iq (`<iq type='result'` or `<iq type='error'`).
fn is_iq_answer(pattern: &str) -> bool {
    let p = pattern.trim_start();
    p.starts_with("<iq ")
        && (p.contains("type='result'")
            || p.contains("type='error'")
            || p.contains("type=\"result\"")
            || p.contains("type=\"error\""))
}
