//! The expected-results baseline: a checked-in TOML list of known deviations, so that a
//! provider can run gatecheck in CI before it is fully conformant. `gatecheck run
//! --baseline FILE` compares the run's verdicts with it (exit 0 when nothing got worse, 1 on
//! any new deviation) and lists the entries that now pass, so the file can be tightened;
//! `--write-baseline FILE` writes one from a run.
//!
//! ```toml
//! [[deviation]]
//! scenario = "stanza/ping"
//! verdict = "fail"          # fail, inconclusive or error
//! reason = "our client answers pings with service-unavailable (ticket 123)"
//! ```
//!
//! A scenario whose verdict is fail, inconclusive or error is a new deviation unless the
//! baseline lists it with that same verdict: a known failure that turns inconclusive is new
//! (it may hide the failure). Passes and not-applicable verdicts never are.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::text::one_line;
use crate::runner::{ScenarioResult, Verdict};

/// One known deviation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deviation {
    pub scenario: String,
    pub verdict: Verdict,
    pub reason: String,
    /// Line of its `[[deviation]]` table in the file.
    pub line: usize,
}

/// A baseline file, checked.
#[derive(Debug, Clone)]
pub struct Baseline {
    pub path: PathBuf,
    pub deviations: Vec<Deviation>,
}

/// What is wrong with a baseline file.
#[derive(Debug, thiserror::Error)]
pub enum BaselineError {
    #[error("baseline {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("baseline {}: {message}", path.display())]
    Syntax { path: PathBuf, message: String },
    #[error("baseline {}:{line}: {message}", path.display())]
    Entry {
        path: PathBuf,
        line: usize,
        message: String,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBaseline {
    #[serde(default)]
    deviation: Vec<toml::Spanned<RawDeviation>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDeviation {
    scenario: String,
    verdict: String,
    reason: String,
}

/// The verdicts a baseline can list.
fn parse_verdict(s: &str) -> Option<Verdict> {
    match s {
        "fail" => Some(Verdict::Fail),
        "inconclusive" => Some(Verdict::Inconclusive),
        "error" => Some(Verdict::Error),
        _ => None,
    }
}

fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

impl Baseline {
    /// Reads and checks a baseline file.
    pub fn load(path: &Path) -> Result<Baseline, BaselineError> {
        let text = std::fs::read_to_string(path).map_err(|source| BaselineError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Baseline::parse(path, &text)
    }

    /// Checks baseline text; `path` names it in errors.
    pub fn parse(path: &Path, text: &str) -> Result<Baseline, BaselineError> {
        let raw: RawBaseline = toml::from_str(text).map_err(|e| BaselineError::Syntax {
            path: path.to_path_buf(),
            message: e.to_string().trim_end().to_string(),
        })?;
        let mut seen: BTreeMap<String, usize> = BTreeMap::new();
        let mut deviations = Vec::new();
        for spanned in raw.deviation {
            let line = line_of(text, spanned.span().start);
            let d = spanned.into_inner();
            let err = |message: String| BaselineError::Entry {
                path: path.to_path_buf(),
                line,
                message,
            };
            let Some(verdict) = parse_verdict(&d.verdict) else {
                return Err(err(format!(
                    "verdict {:?} of {:?}: a baseline lists deviations, so one of fail, inconclusive, error",
                    d.verdict, d.scenario
                )));
            };
            if d.scenario.trim().is_empty() {
                return Err(err("empty scenario id".into()));
            }
            if d.reason.trim().is_empty() {
                return Err(err(format!(
                    "{:?} has an empty reason: say why the deviation is accepted",
                    d.scenario
                )));
            }
            if let Some(first) = seen.insert(d.scenario.clone(), line) {
                return Err(err(format!(
                    "{:?} is listed twice (first at line {first})",
                    d.scenario
                )));
            }
            deviations.push(Deviation {
                scenario: d.scenario,
                verdict,
                reason: d.reason,
                line,
            });
        }
        Ok(Baseline {
            path: path.to_path_buf(),
            deviations,
        })
    }

    /// Compares a run's results with the baseline. `suite` is every scenario id of the suite
    /// the run selected from, to tell an entry the run left out from one the suite lacks.
    pub fn compare(&self, results: &[ScenarioResult], suite: &[&str]) -> Comparison {
        let by_id: BTreeMap<&str, &Deviation> = self
            .deviations
            .iter()
            .map(|d| (d.scenario.as_str(), d))
            .collect();
        let mut c = Comparison {
            file: self.path.display().to_string(),
            entries: self.deviations.len(),
            ..Comparison::default()
        };
        let ran: BTreeSet<&str> = results.iter().map(|r| r.id.as_str()).collect();
        for r in results {
            let known = by_id.get(r.id.as_str()).copied();
            let change = Change {
                scenario: r.id.clone(),
                verdict: r.verdict,
                baseline_verdict: known.map(|d| d.verdict),
                reason: known.map(|d| d.reason.clone()).unwrap_or_default(),
                requirement: r.failure.as_ref().and_then(|f| f.requirement.clone()),
            };
            match (r.verdict, known) {
                (Verdict::Pass | Verdict::NotApplicable, Some(_)) => c.resolved.push(change),
                (Verdict::Pass | Verdict::NotApplicable, None) => {}
                (v, Some(d)) if d.verdict == v => c.still_deviating.push(change),
                _ => c.regressions.push(change),
            }
        }
        let in_suite: BTreeSet<&str> = suite.iter().copied().collect();
        for d in &self.deviations {
            if ran.contains(d.scenario.as_str()) {
                continue;
            }
            if in_suite.contains(d.scenario.as_str()) {
                c.not_run.push(d.scenario.clone());
            } else {
                c.unknown.push(d.scenario.clone());
            }
        }
        c
    }
}

/// A run's verdicts against a baseline (report.json `baseline`).
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Comparison {
    /// The baseline file as given on the command line.
    pub file: String,
    /// Deviations it lists.
    pub entries: usize,
    /// Scenarios that fail, are inconclusive or err, and the baseline does not list with
    /// that verdict: these make the run exit 1.
    pub regressions: Vec<Change>,
    /// Scenarios that deviate exactly as the baseline says.
    pub still_deviating: Vec<Change>,
    /// Entries whose scenario now passes (or no longer applies): the file can lose them.
    pub resolved: Vec<Change>,
    /// Entries whose scenario is in the suite but was not in this run (filter, shard).
    pub not_run: Vec<String>,
    /// Entries naming a scenario the suite does not have.
    pub unknown: Vec<String>,
}

impl Comparison {
    /// True when no verdict got worse than the baseline allows.
    pub fn nothing_worse(&self) -> bool {
        self.regressions.is_empty()
    }
}

/// One scenario's verdict beside the baseline's.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Change {
    pub scenario: String,
    pub verdict: Verdict,
    /// The verdict the baseline lists; absent when it lists none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub baseline_verdict: Option<Verdict>,
    /// The baseline's reason; empty when it lists none.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub reason: String,
    /// The requirement the run's failure names, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub requirement: Option<String>,
}

/// A TOML basic string.
fn toml_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A baseline listing every deviation of `results`, each with a reason drawn from its
/// failure, to be edited into the real reason.
pub fn render(results: &[ScenarioResult], run_id: &str) -> String {
    let mut o = format!(
        "# gatecheck baseline: known deviations, written from run {run_id}.\n\
         # `gatecheck run --baseline FILE` exits 1 only on a deviation not listed here with\n\
         # its verdict. Replace each reason with why the deviation is accepted for now.\n"
    );
    for r in results {
        if matches!(r.verdict, Verdict::Pass | Verdict::NotApplicable) {
            continue;
        }
        let reason = match &r.failure {
            Some(f) => {
                let req = f
                    .requirement
                    .as_deref()
                    .map(|q| format!("{q}: "))
                    .unwrap_or_default();
                one_line(&format!("{req}expected {}, got {}", f.expected, f.got), 240)
            }
            None => format!("{} with no failure recorded", r.verdict.as_str()),
        };
        o.push_str(&format!(
            "\n[[deviation]]\nscenario = {}\nverdict = {}\nreason = {}\n",
            toml_string(&r.id),
            toml_string(r.verdict.as_str()),
            toml_string(&reason)
        ));
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(id: &str, verdict: Verdict) -> ScenarioResult {
        ScenarioResult {
            id: id.into(),
            title: String::new(),
            requirements: vec![],
            verdict,
            duration_ms: 0,
            seed: 0,
            failure: (verdict != Verdict::Pass).then(|| crate::runner::Failure {
                step: Some(1),
                line: Some(2),
                after_steps: false,
                requirement: Some("STANZA-7".into()),
                expected: "a \"result\"".into(),
                got: "an error\n\\ and \u{1}".into(),
            }),
            warnings: vec![],
            transcript: None,
            iut_stderr: None,
        }
    }

    #[test]
    fn a_written_baseline_reads_back_and_accepts_its_run() {
        let results = vec![
            result("a/ok", Verdict::Pass),
            result("a/bad", Verdict::Fail),
            result("a/unsure", Verdict::Inconclusive),
            result("a/na", Verdict::NotApplicable),
        ];
        let text = render(&results, "run-1");
        let b = Baseline::parse(Path::new("b.toml"), &text).expect("parses");
        assert_eq!(b.deviations.len(), 2);
        assert_eq!(b.deviations[0].scenario, "a/bad");
        assert_eq!(b.deviations[0].line, 5);
        assert!(
            b.deviations[0]
                .reason
                .starts_with("STANZA-7: expected a \"result\", got an error \\ and \u{1}")
        );
        let ids = ["a/ok", "a/bad", "a/unsure", "a/na", "a/other"];
        let c = b.compare(&results, &ids);
        assert!(c.nothing_worse(), "{c:?}");
        assert_eq!(c.still_deviating.len(), 2);
    }

    #[test]
    fn new_failures_changed_verdicts_and_fixes_are_told_apart() {
        let text = r#"
[[deviation]]
scenario = "a/fixed"
verdict = "fail"
reason = "known"

[[deviation]]
scenario = "a/changed"
verdict = "fail"
reason = "known"

[[deviation]]
scenario = "a/elsewhere"
verdict = "error"
reason = "known"

[[deviation]]
scenario = "a/renamed"
verdict = "fail"
reason = "known"
"#;
        let b = Baseline::parse(Path::new("b.toml"), text).expect("parses");
        let results = vec![
            result("a/fixed", Verdict::Pass),
            result("a/changed", Verdict::Inconclusive),
            result("a/new", Verdict::Fail),
        ];
        let c = b.compare(&results, &["a/fixed", "a/changed", "a/new", "a/elsewhere"]);
        let ids = |v: &[Change]| v.iter().map(|c| c.scenario.clone()).collect::<Vec<_>>();
        assert_eq!(ids(&c.regressions), ["a/changed", "a/new"]);
        assert_eq!(c.regressions[0].baseline_verdict, Some(Verdict::Fail));
        assert_eq!(ids(&c.resolved), ["a/fixed"]);
        assert_eq!(c.not_run, ["a/elsewhere"]);
        assert_eq!(c.unknown, ["a/renamed"]);
        assert!(!c.nothing_worse());
    }

    #[test]
    fn bad_files_name_the_line_and_the_fault() {
        let err = |text: &str| {
            Baseline::parse(Path::new("b.toml"), text)
                .expect_err("refused")
                .to_string()
        };
        assert_eq!(
            err("[[deviation]]\nscenario = \"a\"\nverdict = \"pass\"\nreason = \"r\"\n"),
            "baseline b.toml:1: verdict \"pass\" of \"a\": a baseline lists deviations, so one of fail, inconclusive, error"
        );
        assert_eq!(
            err(
                "\n[[deviation]]\nscenario = \"a\"\nverdict = \"fail\"\nreason = \"r\"\n[[deviation]]\nscenario = \"a\"\nverdict = \"fail\"\nreason = \"r\"\n"
            ),
            "baseline b.toml:6: \"a\" is listed twice (first at line 2)"
        );
        assert_eq!(
            err("[[deviation]]\nscenario = \"a\"\nverdict = \"fail\"\nreason = \" \"\n"),
            "baseline b.toml:1: \"a\" has an empty reason: say why the deviation is accepted"
        );
        let unknown = err(
            "[[deviation]]\nscenario = \"a\"\nverdict = \"fail\"\nreason = \"r\"\nticket = 3\n",
        );
        assert!(
            unknown.starts_with("baseline b.toml: ") && unknown.contains("ticket"),
            "{unknown}"
        );
        let syntax = err("[[deviation]\n");
        assert!(
            syntax.starts_with("baseline b.toml: ") && syntax.contains("line 1"),
            "{syntax}"
        );
    }
}
