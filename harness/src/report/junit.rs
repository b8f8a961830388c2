//! junit.xml: one test suite per area, one test case per scenario, in the JUnit dialect CI
//! systems read (GitHub, GitLab, Jenkins). Written with quick-junit.
//!
//! Mapping: pass is a success (its warnings in system-out); fail is a `<failure>`;
//! inconclusive and error are `<error>`s (the IUT could not be judged, or the harness
//! failed), told apart by their `type`; not-applicable and scenarios the run did not start
//! are `<skipped>`. Each test case carries its requirement IDs as `requirement` properties
//! and its seed; a non-pass carries expected, got and the command that reruns it.

use std::collections::BTreeMap;
use std::io::Write;
use std::time::Duration;

use quick_junit::{NonSuccessKind, Property, TestCase, TestCaseStatus, TestSuite};

use super::text::{one_line, visible};
use super::{Report, ReportedScenario};
use crate::runner::Verdict;

/// The JUnit document of `report`.
pub fn build(report: &Report) -> quick_junit::Report {
    let mut suites: BTreeMap<&str, TestSuite> = BTreeMap::new();
    fn suite<'a, 'b>(
        suites: &'b mut BTreeMap<&'a str, TestSuite>,
        area: &'a str,
    ) -> &'b mut TestSuite {
        suites.entry(area).or_insert_with(|| {
            let mut s = TestSuite::new(format!("gatecheck.{area}"));
            s.time = Some(Duration::ZERO);
            s
        })
    }
    for s in &report.scenarios {
        let ts = suite(&mut suites, Report::area(&s.result.id));
        let took = Duration::from_millis(s.result.duration_ms);
        ts.time = Some(ts.time.unwrap_or_default() + took);
        ts.add_test_case(test_case(report, s));
    }
    for n in &report.not_run {
        let area = Report::area(&n.id);
        let mut status = TestCaseStatus::skipped();
        status.set_message(n.reason.clone()).set_type("not-run");
        let mut case = TestCase::new(n.id.clone(), status);
        case.set_classname(format!("gatecheck.{area}"));
        suite(&mut suites, area).add_test_case(case);
    }
    let mut out = quick_junit::Report::new("gatecheck");
    out.set_time(Duration::from_millis(report.elapsed_ms));
    out.add_test_suites(suites.into_values());
    out
}

fn test_case(report: &Report, s: &ReportedScenario) -> TestCase {
    let r = &s.result;
    let at = |f: &crate::runner::Failure| match (f.step, f.line) {
        (Some(step), Some(line)) => format!("at step {step} (line {line})"),
        _ if f.after_steps => "after every step passed".to_string(),
        _ => "outside the steps".to_string(),
    };
    let status = match r.verdict {
        Verdict::Pass => TestCaseStatus::success(),
        Verdict::NotApplicable => {
            let mut st = TestCaseStatus::skipped();
            st.set_type("not-applicable");
            if let Some(f) = &r.failure {
                st.set_message(one_line(&visible(&f.got), 500));
            }
            st
        }
        Verdict::Fail | Verdict::Inconclusive | Verdict::Error => {
            let kind = if r.verdict == Verdict::Fail {
                NonSuccessKind::Failure
            } else {
                NonSuccessKind::Error
            };
            let mut st = TestCaseStatus::non_success(kind);
            st.set_type(r.verdict.as_str());
            let mut body = String::new();
            match &r.failure {
                Some(f) => {
                    let req = f.requirement.as_deref();
                    let note = req
                        .and_then(|id| report.requirements.get(id))
                        .and_then(|c| c.note.as_deref())
                        .map(|n| format!(", a {n}"))
                        .unwrap_or_default();
                    let message = match req {
                        Some(id) => {
                            format!("{} {}: requirement {id}{note}", r.verdict.as_str(), at(f))
                        }
                        None => format!("{} {}", r.verdict.as_str(), at(f)),
                    };
                    st.set_message(message);
                    body.push_str(&format!("expected: {}\n", visible(&f.expected)));
                    body.push_str(&format!("got:      {}\n", visible(&f.got)));
                }
                None => {
                    st.set_message(r.verdict.as_str());
                }
            }
            body.push_str(&format!("rerun:    {}\n", s.rerun));
            st.set_description(body);
            st
        }
    };
    let mut case = TestCase::new(r.id.clone(), status);
    case.set_classname(format!("gatecheck.{}", Report::area(&r.id)));
    case.set_time(Duration::from_millis(r.duration_ms));
    case.add_properties(
        r.requirements
            .iter()
            .map(|id| Property::new("requirement", id.clone())),
    );
    case.add_property(Property::new("seed", r.seed.to_string()));
    if !r.warnings.is_empty() {
        let mut out = String::new();
        for w in &r.warnings {
            let at = match (w.step, w.line) {
                (Some(s), Some(l)) => format!(" at step {s} (line {l})"),
                _ => String::new(),
            };
            out.push_str(&format!(
                "warning{at}: {} (a SHOULD) not met\n",
                w.requirement
            ));
            out.push_str(&format!("  expected: {}\n", visible(&w.expected)));
            out.push_str(&format!("  got:      {}\n", visible(&w.got)));
        }
        case.set_system_out(out);
    }
    if let Some(stderr) = &r.iut_stderr {
        case.set_system_err(visible(stderr));
    }
    case
}

/// Writes junit.xml.
pub fn write(report: &Report, out: &mut dyn Write) -> std::io::Result<()> {
    build(report).serialize(out).map_err(std::io::Error::other)
}
