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
            RunEvent::ScenarioStarted { .. } => {}
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
                    eprint!("[{done}/{total}] running…");
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
        if matches!(r.verdict, Verdict::Pass | Verdict::NotApplicable) {
            if let (Verdict::NotApplicable, Some(f)) = (r.verdict, &r.failure) {
                let _ = writeln!(self.out, "       {}", f.got);
            }
            return;
        }
        if let Some(f) = &r.failure {
            let at = match (f.step, f.line) {
                (Some(s), Some(l)) => format!("step {s} (line {l})"),
                _ => "setup".to_string(),
            };
            let req = f.requirement.as_deref().unwrap_or("-");
            let _ = writeln!(self.out, "       at {at}, requirement {req}");
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
        }
        let _ = writeln!(self.out, "  {:<15} {:>6}", "total", s.total());
        let _ = writeln!(self.out, "\nseed {} · {:.2} s", self.seed, secs);
    }
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
