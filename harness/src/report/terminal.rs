//! The terminal reporter: a live progress line on a TTY, plain lines otherwise
//! (or when CI=true), failure details with a one-line rerun command, and a
//! final summary table.

use std::io::{IsTerminal, Write};

use crate::runner::{RunEvent, ScenarioResult, Summary, Verdict};

pub struct TerminalReporter<W: Write> {
    out: W,
    /// `gatecheck run` plus the options that select the IUT, for rerun lines.
    rerun_prefix: String,
    live: bool,
    seed: u64,
    failed: Vec<String>,
}

/// Whether to draw a live progress line: a terminal, and not CI.
pub fn live_progress() -> bool {
    let ci = std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0");
    !ci && std::io::stderr().is_terminal()
}

impl<W: Write> TerminalReporter<W> {
    pub fn new(out: W, rerun_prefix: String, live: bool) -> Self {
        TerminalReporter {
            out,
            rerun_prefix,
            live,
            seed: 0,
            failed: Vec::new(),
        }
    }

    pub fn rerun_command(&self, id: &str) -> String {
        format!("{} --seed {} --scenario {id}", self.rerun_prefix, self.seed)
    }

    pub fn handle(&mut self, event: RunEvent<'_>) {
        match event {
            RunEvent::Started { total, seed, jobs } => {
                self.seed = seed;
                let _ = writeln!(
                    self.out,
                    "gatecheck: {total} scenario(s), {jobs} job(s), seed {seed}"
                );
            }
            RunEvent::ScenarioFinished {
                result,
                done,
                total,
            } => {
                if self.live {
                    eprint!("\r\x1b[2K");
                }
                self.line(result);
                if self.live {
                    eprint!("{}", progress_bar(done, total, 30));
                    let _ = std::io::stderr().flush();
                }
            }
            RunEvent::Finished { summary, elapsed } => {
                if self.live {
                    eprint!("\r\x1b[2K");
                }
                self.summary(summary, elapsed.as_secs_f64());
            }
        }
    }

    fn line(&mut self, r: &ScenarioResult) {
        let tag = match r.verdict {
            Verdict::Pass => "PASS",
            Verdict::Fail => "FAIL",
            Verdict::Inconclusive => "INCONC",
            Verdict::NotApplicable => "N/A",
            Verdict::Error => "ERROR",
        };
        let _ = writeln!(
            self.out,
            "{tag:<6} {:<44} {:>6} ms  {}",
            r.id,
            r.duration_ms,
            r.requirements.join(" ")
        );
        for w in &r.warnings {
            let at = match (w.step, w.line) {
                (Some(s), Some(l)) => format!(" at step {s} (line {l})"),
                _ => String::new(),
            };
            let _ = writeln!(
                self.out,
                "       warning{at}: {} (a SHOULD) not met",
                w.requirement
            );
            let _ = writeln!(self.out, "         expected: {}", one_line(&w.expected));
            let _ = writeln!(self.out, "         got:      {}", one_line(&w.got));
        }
        if matches!(r.verdict, Verdict::Pass | Verdict::NotApplicable) {
            if let (Verdict::NotApplicable, Some(f)) = (r.verdict, &r.failure) {
                let _ = writeln!(self.out, "       {}", f.got);
            }
            return;
        }
        if let Some(f) = &r.failure {
            let at = match (f.step, f.line) {
                (Some(s), Some(l)) => format!("step {s} (line {l})"),
                _ if f.after_steps => "the end, after every step passed".to_string(),
                _ => "setup".to_string(),
            };
            let req = f.requirement.as_deref().unwrap_or("-");
            // A profile requirement's failure says so: it is no violation of the RFC.
            let note = (crate::spec::Catalogue::embedded().get(req))
                .and_then(|r| r.basis.verdict_note())
                .map(|n| format!(", a {n}"))
                .unwrap_or_default();
            let _ = writeln!(self.out, "       at {at}, requirement {req}{note}");
            let _ = writeln!(self.out, "       expected: {}", one_line(&f.expected));
            let _ = writeln!(self.out, "       got:      {}", one_line(&f.got));
        }
        let cmd = self.rerun_command(&r.id);
        let _ = writeln!(self.out, "       rerun: {cmd}");
        self.failed.push(r.id.clone());
    }

    fn summary(&mut self, s: &Summary, secs: f64) {
        let _ = writeln!(self.out);
        let _ = writeln!(self.out, "  verdict          count");
        for (name, n) in [
            ("pass", s.pass),
            ("fail", s.fail),
            ("inconclusive", s.inconclusive),
            ("not-applicable", s.not_applicable),
            ("error", s.error),
        ] {
            let _ = writeln!(self.out, "  {name:<15} {n:>6}");
            if name == "pass" && s.pass_with_warnings > 0 {
                let _ = writeln!(
                    self.out,
                    "    {:<13} {:>6}",
                    "with warnings", s.pass_with_warnings
                );
            }
        }
        let _ = writeln!(self.out, "  {:<15} {:>6}", "total", s.total());
        let _ = writeln!(self.out, "\nseed {} · {:.2} s", self.seed, secs);
    }
}

/// `[#########.....................] 12/40`
fn progress_bar(done: usize, total: usize, width: usize) -> String {
    let filled = (done * width)
        .checked_div(total)
        .unwrap_or(width)
        .min(width);
    format!(
        "[{}{}] {done}/{total}",
        "#".repeat(filled),
        ".".repeat(width - filled)
    )
}

/// Keeps a failure line on one line, cut at 400 characters.
fn one_line(s: &str) -> String {
    let flat: String = s
        .chars()
        .map(|c| if c == '\n' || c == '\r' { ' ' } else { c })
        .collect();
    if flat.chars().count() > 400 {
        let cut: String = flat.chars().take(400).collect();
        format!("{cut}…")
    } else {
        flat
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bar() {
        assert_eq!(progress_bar(0, 4, 8), "[........] 0/4");
        assert_eq!(progress_bar(2, 4, 8), "[####....] 2/4");
        assert_eq!(progress_bar(4, 4, 8), "[########] 4/4");
        assert_eq!(progress_bar(0, 0, 8), "[########] 0/0");
    }

    fn result(
        id: &str,
        verdict: Verdict,
        failure: Option<crate::runner::Failure>,
    ) -> ScenarioResult {
        ScenarioResult {
            id: id.into(),
            title: "t".into(),
            requirements: vec!["STANZA-7".into(), "STANZA-3".into()],
            verdict,
            duration_ms: 12,
            seed: 1,
            failure,
            warnings: Vec::new(),
            transcript: None,
            iut_stderr: None,
        }
    }

    #[test]
    fn a_profile_failure_is_not_called_an_rfc_violation() {
        let id = crate::spec::Catalogue::embedded()
            .iter()
            .find(|r| {
                r.basis.kind == crate::spec::BasisKind::Profile
                    && r.basis.first_document().as_deref() == Some("RFC 6120")
            })
            .map(|r| r.id.clone())
            .expect("a profile requirement naming RFC 6120");
        let mut out = Vec::new();
        let mut r = TerminalReporter::new(&mut out, "gatecheck run".into(), false);
        let mut fail = result(
            "stanza/iq-two-children",
            Verdict::Fail,
            Some(crate::runner::Failure {
                step: Some(3),
                line: Some(9),
                after_steps: false,
                requirement: Some(id.clone()),
                expected: "bad-request".into(),
                got: "service-unavailable".into(),
            }),
        );
        fail.requirements = vec![id.clone()];
        r.line(&fail);
        let text = String::from_utf8_lossy(&out);
        assert!(
            text.contains(&format!(
                "at step 3 (line 9), requirement {id}, a profile requirement (not an RFC 6120 violation)"
            )),
            "{text}"
        );
    }

    #[test]
    fn plain_output() {
        let mut out = Vec::new();
        let mut r =
            TerminalReporter::new(&mut out, "gatecheck run --mutant ping-error".into(), false);
        r.handle(RunEvent::Started {
            total: 3,
            seed: 42,
            jobs: 2,
        });
        let mut pass = result("stream/restricted-comment", Verdict::Pass, None);
        pass.warnings.push(crate::runner::Warning {
            step: Some(4),
            line: Some(12),
            requirement: "STREAM-41".into(),
            expected: "<stream:error> with condition restricted-xml".into(),
            got: "<stream:error><bad-format/></stream:error>".into(),
        });
        let fail = result(
            "stanza/ping",
            Verdict::Fail,
            Some(crate::runner::Failure {
                step: Some(3),
                line: Some(14),
                after_steps: false,
                requirement: Some("STANZA-7".into()),
                expected: "<iq type='result' id='p1'/>".into(),
                got: "<iq type=\"error\" id=\"p1\">\n<error/></iq>".into(),
            }),
        );
        let na = result(
            "transport/tls-session",
            Verdict::NotApplicable,
            Some(crate::runner::Failure {
                step: None,
                line: None,
                after_steps: false,
                requirement: None,
                expected: String::new(),
                got: "the IUT does not claim transport.tls".into(),
            }),
        );
        for (i, x) in [&pass, &fail, &na].into_iter().enumerate() {
            r.handle(RunEvent::ScenarioFinished {
                result: x,
                done: i + 1,
                total: 3,
            });
        }
        let summary = Summary {
            pass: 1,
            fail: 1,
            inconclusive: 0,
            not_applicable: 1,
            error: 0,
            pass_with_warnings: 1,
        };
        r.handle(RunEvent::Finished {
            summary: &summary,
            elapsed: std::time::Duration::from_millis(1500),
        });
        insta::assert_snapshot!(String::from_utf8_lossy(&out));
    }
}
