//! summary.md: the run in a few lines, fit for a pull-request comment (GitHub-flavoured
//! Markdown, well under a comment's 65,536 characters): the headline, counts by verdict,
//! each failure with its requirement, expected, got and rerun command, warnings, the
//! baseline comparison and the scenarios not run.

use std::fmt::Write as _;

use super::text::{cut_middle, one_line, visible};
use super::{Report, ReportedScenario};
use crate::runner::Verdict;

/// Rows listed in full per section; the rest are counted (report.json has them all).
const MAX_ROWS: usize = 40;
/// Characters of an expected or got value in a table cell.
const CELL: usize = 160;

/// `s` as an inline code span that survives a table cell.
fn code(s: &str) -> String {
    let s = cut_middle(&one_line(&visible(s), usize::MAX), CELL).replace('|', "\\|");
    if s.is_empty() {
        return String::new();
    }
    if s.contains('`') {
        format!("`` {s} ``")
    } else {
        format!("`{s}`")
    }
}

/// Plain text for a table cell: one line, no pipes, no HTML.
fn cell(s: &str) -> String {
    one_line(&visible(s), CELL)
        .replace('|', "\\|")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Whether the run is acceptable: every applicable scenario passed, or, against a
/// baseline, nothing got worse.
pub fn acceptable(report: &Report) -> bool {
    match &report.baseline {
        Some(b) => b.nothing_worse(),
        None => report.summary.all_passed(),
    }
}

/// The one-line verdict of the run.
pub fn headline(report: &Report) -> String {
    let s = &report.summary;
    let ran = s.total();
    let bad = s.fail + s.inconclusive + s.error;
    let mut line = if let Some(b) = &report.baseline {
        if b.regressions.is_empty() {
            format!(
                "gatecheck: no new deviation ({} known from the baseline, {} of {ran} scenarios not passing)",
                b.still_deviating.len(),
                bad
            )
        } else {
            format!(
                "gatecheck: {} new deviation(s) against the baseline ({bad} of {ran} scenarios not passing)",
                b.regressions.len()
            )
        }
    } else if bad == 0 {
        format!(
            "gatecheck: every applicable scenario passed ({} of {ran})",
            s.pass
        )
    } else {
        let mut parts = Vec::new();
        for (n, what) in [
            (s.fail, "failed"),
            (s.inconclusive, "inconclusive"),
            (s.error, "harness error"),
        ] {
            if n > 0 {
                parts.push(format!("{n} {what}"));
            }
        }
        format!("gatecheck: {} of {ran} scenarios", parts.join(", "))
    };
    if let Some(signal) = &report.interrupted {
        line.push_str(&format!(
            " (interrupted by {signal}, {} not run)",
            report.not_run.len()
        ));
    }
    line
}

/// summary.md.
pub fn render(report: &Report) -> String {
    let mut o = String::new();
    let s = &report.summary;
    let mark = if acceptable(report) { "✅" } else { "❌" };
    let _ = writeln!(o, "## {mark} {}\n", headline(report));
    let partition = report
        .partition
        .as_deref()
        .map(|p| format!(" · shard {p}"))
        .unwrap_or_default();
    let _ = writeln!(
        o,
        "IUT **{}** ({}; transport {}) · seed {} · run `{}`{partition} · {:.1} s · gatecheck {}\n",
        cell(&report.iut.name),
        report.iut.roles.join(", "),
        report.iut.transport,
        report.seed,
        report.run_id,
        report.elapsed_ms as f64 / 1000.0,
        report.harness_version
    );
    let _ = writeln!(o, "| verdict | scenarios |\n| --- | ---: |");
    let warned = if s.pass_with_warnings > 0 {
        format!(" ({} with warnings)", s.pass_with_warnings)
    } else {
        String::new()
    };
    let _ = writeln!(o, "| pass | {}{warned} |", s.pass);
    for (name, n) in [
        ("fail", s.fail),
        ("inconclusive", s.inconclusive),
        ("not-applicable", s.not_applicable),
        ("error", s.error),
    ] {
        let _ = writeln!(o, "| {name} | {n} |");
    }
    if !report.not_run.is_empty() {
        let _ = writeln!(o, "| not run | {} |", report.not_run.len());
    }
    let _ = writeln!(o);

    let bad: Vec<&ReportedScenario> = report
        .scenarios
        .iter()
        .filter(|r| {
            matches!(
                r.result.verdict,
                Verdict::Fail | Verdict::Inconclusive | Verdict::Error
            )
        })
        .collect();
    if !bad.is_empty() {
        let _ = writeln!(o, "### Not passing\n");
        let _ = writeln!(
            o,
            "| scenario | verdict | requirement | at | expected | got |"
        );
        let _ = writeln!(o, "| --- | --- | --- | --- | --- | --- |");
        for r in bad.iter().take(MAX_ROWS) {
            let f = r.result.failure.as_ref();
            let req = f.and_then(|f| f.requirement.as_deref()).unwrap_or("-");
            let profile = report
                .requirements
                .get(req)
                .is_some_and(|c| c.note.is_some());
            let req = if profile {
                format!("{req} (profile)")
            } else {
                req.to_string()
            };
            let at = match f.map(|f| (f.step, f.line, f.after_steps)) {
                Some((Some(step), Some(line), _)) => format!("step {step}, line {line}"),
                Some((_, _, true)) => "after the steps".to_string(),
                _ => "outside the steps".to_string(),
            };
            let _ = writeln!(
                o,
                "| `{}` | {} | {req} | {at} | {} | {} |",
                r.result.id,
                r.result.verdict.as_str(),
                f.map(|f| code(&f.expected)).unwrap_or_default(),
                f.map(|f| code(&f.got)).unwrap_or_default(),
            );
        }
        if bad.len() > MAX_ROWS {
            let _ = writeln!(
                o,
                "\n… and {} more (see report.json).",
                bad.len() - MAX_ROWS
            );
        }
        let _ = writeln!(o, "\n<details><summary>Rerun commands</summary>\n\n```sh");
        for r in bad.iter().take(MAX_ROWS) {
            let _ = writeln!(o, "{}", r.rerun);
        }
        let _ = writeln!(o, "```\n\n</details>\n");
        let profile_note = report.requirements.values().any(|c| c.note.is_some());
        if profile_note {
            let _ = writeln!(
                o,
                "_(profile)_: a rule of this profile, stricter than or beside the RFC it builds on; failing it is not an RFC violation.\n"
            );
        }
    }

    let warnings: Vec<_> = report
        .scenarios
        .iter()
        .flat_map(|r| r.result.warnings.iter().map(move |w| (&r.result.id, w)))
        .collect();
    if !warnings.is_empty() {
        let _ = writeln!(o, "### Warnings (a SHOULD not met)\n");
        for (id, w) in warnings.iter().take(MAX_ROWS) {
            let _ = writeln!(
                o,
                "- `{id}`: {}: expected {}, got {}",
                w.requirement,
                code(&w.expected),
                code(&w.got)
            );
        }
        if warnings.len() > MAX_ROWS {
            let _ = writeln!(o, "- … and {} more", warnings.len() - MAX_ROWS);
        }
        let _ = writeln!(o);
    }

    if let Some(b) = &report.baseline {
        let _ = writeln!(o, "### Baseline `{}`\n", cell(&b.file));
        let _ = writeln!(
            o,
            "{} entries: {} new deviation(s), {} still deviating as known, {} resolved, {} not in this run.\n",
            b.entries,
            b.regressions.len(),
            b.still_deviating.len(),
            b.resolved.len(),
            b.not_run.len()
        );
        if !b.regressions.is_empty() {
            let _ = writeln!(o, "New deviations:\n");
            for r in b.regressions.iter().take(MAX_ROWS) {
                let was = r
                    .baseline_verdict
                    .map(|v| format!(" (the baseline expects {})", v.as_str()))
                    .unwrap_or_default();
                let _ = writeln!(o, "- `{}`: {}{was}", r.scenario, r.verdict.as_str());
            }
            let _ = writeln!(o);
        }
        if !b.resolved.is_empty() {
            let _ = writeln!(
                o,
                "Now passing or not applicable (remove them from the baseline):\n"
            );
            for r in b.resolved.iter().take(MAX_ROWS) {
                let _ = writeln!(
                    o,
                    "- `{}`: {} (the baseline expects {}: {})",
                    r.scenario,
                    r.verdict.as_str(),
                    r.baseline_verdict.map(|v| v.as_str()).unwrap_or("-"),
                    cell(&r.reason)
                );
            }
            let _ = writeln!(o);
        }
    }

    if !report.not_run.is_empty() {
        let _ = writeln!(o, "### Not run\n");
        for n in report.not_run.iter().take(MAX_ROWS) {
            let _ = writeln!(o, "- `{}`: {}", n.id, cell(&n.reason));
        }
        if report.not_run.len() > MAX_ROWS {
            let _ = writeln!(o, "- … and {} more", report.not_run.len() - MAX_ROWS);
        }
        let _ = writeln!(o);
    }
    let _ = writeln!(
        o,
        "Full details: `index.html` (transcripts, coverage matrix), `report.json`, `junit.xml` in `{}`.",
        report.run_id
    );
    o
}
