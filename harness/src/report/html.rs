//! index.html: the run as one self-contained page for people (inline CSS and JS, no
//! request leaves it: its Content-Security-Policy forbids any). It holds the summary, the
//! requirement coverage matrix (every SPEC.md requirement, the run's scenarios citing it and
//! their verdicts, gaps shown), every scenario with its failure, warnings and transcript
//! (both directions side by side, stanzas indented, driver lines as JSON), and filters by
//! verdict and area. Everything is rendered here; the script only filters, and with
//! `#selftest` in the address it checks the page and writes what it found into the page
//! (the browser test reads it).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::markdown::headline;
use super::text::{escape_html as esc, pretty_http, pretty_json, pretty_xml, visible};
use super::{Report, ReportedScenario};
use crate::runner::Verdict;
use crate::spec::{Catalogue, Requirement};
use crate::transcript::{Direction, Entry};

const CSS: &str = include_str!("page.css");
const JS: &str = include_str!("page.js");

/// The verdicts in the order the page shows them.
const VERDICTS: [Verdict; 5] = [
    Verdict::Pass,
    Verdict::Fail,
    Verdict::Inconclusive,
    Verdict::NotApplicable,
    Verdict::Error,
];

/// An element id for a scenario: `sc-` and its id with every other character a `-`.
fn anchor(id: &str) -> String {
    let safe: String = id
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    format!("sc-{safe}")
}

fn chip(v: Verdict) -> String {
    format!("<span class=\"chip v-{0}\">{0}</span>", v.as_str())
}

/// index.html for `report`, its requirements looked up in `catalogue`.
pub fn render(report: &Report, catalogue: &Catalogue) -> String {
    let mut o = String::with_capacity(64 * 1024);
    let title = format!("gatecheck {} · {}", report.run_id, report.iut.name);
    let _ = write!(
        o,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{}</title>\n<style>\n{CSS}</style>\n</head>\n<body>\n",
        esc(&title)
    );
    summary(&mut o, report);
    filters(&mut o, report);
    scenarios(&mut o, report);
    matrix(&mut o, report, catalogue);
    let _ = write!(
        o,
        "<footer>gatecheck {} · report.json schema {} · written for run <code>{}</code></footer>\n\
         <script>\n{JS}</script>\n</body>\n</html>\n",
        esc(&report.harness_version),
        report.schema_version,
        esc(&report.run_id)
    );
    o
}

fn summary(o: &mut String, report: &Report) {
    let s = &report.summary;
    let _ = writeln!(o, "<header>\n<h1>{}</h1>", esc(&headline(report)));
    let partition = report
        .partition
        .as_deref()
        .map(|p| format!(" · shard {}", esc(p)))
        .unwrap_or_default();
    let _ = writeln!(
        o,
        "<p class=\"meta\">IUT <b>{}</b> ({}; transport {}; features {}) · seed {} · run <code>{}</code>{partition} · started {} · {:.1} s · gatecheck {}</p>",
        esc(&report.iut.name),
        esc(&report.iut.roles.join(", ")),
        esc(&report.iut.transport),
        esc(&if report.iut.features.is_empty() {
            "none".to_string()
        } else {
            report.iut.features.join(", ")
        }),
        report.seed,
        esc(&report.run_id),
        esc(&report.started_at),
        report.elapsed_ms as f64 / 1000.0,
        esc(&report.harness_version)
    );
    let _ = writeln!(
        o,
        "<p class=\"meta\">Rerun: <code>{}</code></p>",
        esc(&report.rerun)
    );
    let _ = writeln!(o, "<table id=\"counts\"><tr>");
    for v in VERDICTS {
        let n = match v {
            Verdict::Pass => s.pass,
            Verdict::Fail => s.fail,
            Verdict::Inconclusive => s.inconclusive,
            Verdict::NotApplicable => s.not_applicable,
            Verdict::Error => s.error,
        };
        let extra = if v == Verdict::Pass && s.pass_with_warnings > 0 {
            format!(" <small>({} with warnings)</small>", s.pass_with_warnings)
        } else {
            String::new()
        };
        let _ = writeln!(o, "<td>{} <b>{n}</b>{extra}</td>", chip(v));
    }
    if !report.not_run.is_empty() {
        let _ = writeln!(
            o,
            "<td><span class=\"chip v-not-run\">not run</span> <b>{}</b></td>",
            report.not_run.len()
        );
    }
    let _ = writeln!(o, "</tr></table>");
    if report.transcripts_dropped > 0 {
        let _ = writeln!(
            o,
            "<p class=\"warn\">{} transcript(s) left out to keep the report within its size bound.</p>",
            report.transcripts_dropped
        );
    }
    if let Some(b) = &report.baseline {
        let _ = writeln!(
            o,
            "<section id=\"baseline\"><h2>Baseline <code>{}</code></h2><p>{} entries: {} new deviation(s), {} still deviating as known, {} resolved, {} not in this run, {} naming no scenario of the suite.</p>",
            esc(&b.file),
            b.entries,
            b.regressions.len(),
            b.still_deviating.len(),
            b.resolved.len(),
            b.not_run.len(),
            b.unknown.len()
        );
        for (what, list) in [
            ("New deviations", &b.regressions),
            (
                "Now passing or not applicable: remove from the baseline",
                &b.resolved,
            ),
        ] {
            if list.is_empty() {
                continue;
            }
            let _ = writeln!(o, "<h3>{what}</h3><ul>");
            for c in list {
                let was = c
                    .baseline_verdict
                    .map(|v| format!(" (baseline: {})", v.as_str()))
                    .unwrap_or_default();
                let _ = writeln!(
                    o,
                    "<li><a href=\"#{}\">{}</a> {}{was} {}</li>",
                    anchor(&c.scenario),
                    esc(&c.scenario),
                    chip(c.verdict),
                    esc(&c.reason)
                );
            }
            let _ = writeln!(o, "</ul>");
        }
        let _ = writeln!(o, "</section>");
    }
    let _ = writeln!(o, "</header>");
}

fn filters(o: &mut String, report: &Report) {
    let mut areas: BTreeMap<String, usize> = BTreeMap::new();
    for s in &report.scenarios {
        *areas
            .entry(Report::area(&s.result.id).to_string())
            .or_default() += 1;
    }
    let _ = writeln!(
        o,
        "<nav id=\"filters\" aria-label=\"filters\">\n<span>Show:</span>"
    );
    for v in VERDICTS {
        let n = report
            .scenarios
            .iter()
            .filter(|s| s.result.verdict == v)
            .count();
        let _ = writeln!(
            o,
            "<button type=\"button\" class=\"filter v-{0}\" data-filter-verdict=\"{0}\" aria-pressed=\"true\">{0} ({n})</button>",
            v.as_str()
        );
    }
    let _ = writeln!(
        o,
        "<label>area <select id=\"area-filter\"><option value=\"\">all</option>"
    );
    for (area, n) in &areas {
        let _ = writeln!(o, "<option value=\"{0}\">{0} ({n})</option>", esc(area));
    }
    for prefix in crate::spec::PREFIXES {
        let lower = prefix.to_ascii_lowercase();
        if !areas.contains_key(&lower) {
            let _ = writeln!(
                o,
                "<option value=\"{lower}\">{lower} (requirements only)</option>"
            );
        }
    }
    let _ = writeln!(
        o,
        "</select></label>\n<button type=\"button\" id=\"expand-all\">expand all</button> <button type=\"button\" id=\"collapse-all\">collapse all</button>\n<span id=\"shown\"></span>\n</nav>"
    );
}

fn scenarios(o: &mut String, report: &Report) {
    let _ = writeln!(o, "<main>\n<h2 id=\"scenarios\">Scenarios</h2>");
    for s in &report.scenarios {
        scenario(o, report, s);
    }
    for n in &report.not_run {
        let _ = writeln!(
            o,
            "<div class=\"scenario not-run\" data-area=\"{}\"><span class=\"chip v-not-run\">not run</span> <code>{}</code> {}</div>",
            esc(Report::area(&n.id)),
            esc(&n.id),
            esc(&n.reason)
        );
    }
    let _ = writeln!(o, "</main>");
}

fn scenario(o: &mut String, report: &Report, s: &ReportedScenario) {
    let r = &s.result;
    let warned = if r.warnings.is_empty() { "" } else { " warned" };
    let _ = writeln!(
        o,
        "<details class=\"scenario{warned}\" id=\"{}\" data-verdict=\"{}\" data-area=\"{}\">",
        anchor(&r.id),
        r.verdict.as_str(),
        esc(Report::area(&r.id))
    );
    let warn_mark = if r.warnings.is_empty() {
        String::new()
    } else {
        format!(
            " <span class=\"chip warn\">{} warning(s)</span>",
            r.warnings.len()
        )
    };
    let _ = writeln!(
        o,
        "<summary>{}{warn_mark} <code>{}</code> {} <span class=\"reqs\">{}</span> <span class=\"ms\">{} ms</span></summary>",
        chip(r.verdict),
        esc(&r.id),
        esc(&r.title),
        esc(&r.requirements.join(" ")),
        r.duration_ms
    );
    if let Some(f) = &r.failure {
        let at = match (f.step, f.line) {
            (Some(step), Some(line)) => format!("at step {step} (line {line})"),
            _ if f.after_steps => "after every step passed".to_string(),
            _ => "outside the steps".to_string(),
        };
        let req = match f.requirement.as_deref() {
            Some(id) => {
                let note = report
                    .requirements
                    .get(id)
                    .and_then(|c| c.note.as_deref())
                    .map(|n| format!(", a {}", esc(n)))
                    .unwrap_or_default();
                format!(", requirement <b>{}</b>{note}", esc(id))
            }
            None => String::new(),
        };
        let _ = writeln!(
            o,
            "<div class=\"failure\"><p>{} {at}{req}</p><dl><dt>expected</dt><dd><pre>{}</pre></dd><dt>got</dt><dd><pre>{}</pre></dd></dl></div>",
            r.verdict.as_str(),
            esc(&visible(&f.expected)),
            esc(&visible(&f.got))
        );
    }
    for w in &r.warnings {
        let at = match (w.step, w.line) {
            (Some(step), Some(line)) => format!(" at step {step} (line {line})"),
            _ => String::new(),
        };
        let _ = writeln!(
            o,
            "<div class=\"warning\"><p>warning{at}: <b>{}</b> (a SHOULD) not met</p><dl><dt>expected</dt><dd><pre>{}</pre></dd><dt>got</dt><dd><pre>{}</pre></dd></dl></div>",
            esc(&w.requirement),
            esc(&visible(&w.expected)),
            esc(&visible(&w.got))
        );
    }
    let _ = writeln!(
        o,
        "<p class=\"rerun\">rerun: <code>{}</code></p>",
        esc(&s.rerun)
    );
    if let Some(stderr) = &r.iut_stderr {
        let _ = writeln!(
            o,
            "<details class=\"stderr\"><summary>IUT stderr</summary><pre>{}</pre></details>",
            esc(&visible(stderr))
        );
    }
    match r.transcript.as_deref() {
        Some(entries) if !entries.is_empty() => transcript(o, entries),
        _ => {
            let _ = writeln!(
                o,
                "<p class=\"empty\">No transcript: nothing was exchanged.</p>"
            );
        }
    }
    let _ = writeln!(o, "</details>");
}

/// The decoded form of an entry's data: stanzas indented, driver lines as JSON.
fn decoded(e: &Entry) -> String {
    let data = visible(&e.data);
    let pretty = match e.dir {
        Direction::ToIut | Direction::FromIut => pretty_http(&data).or_else(|| pretty_xml(&data)),
        Direction::DriverCommand | Direction::DriverEvent => pretty_json(&data),
        Direction::Note => None,
    };
    pretty.unwrap_or(data)
}

fn transcript(o: &mut String, entries: &[Entry]) {
    let _ = writeln!(
        o,
        "<table class=\"transcript\"><thead><tr><th>ms</th><th>gatekeeper → IUT</th><th>IUT → gatekeeper</th></tr></thead><tbody>"
    );
    for e in entries {
        let device = e
            .device
            .as_deref()
            .map(|d| format!("<span class=\"device\">[{}]</span> ", esc(d)))
            .unwrap_or_default();
        let body = esc(&decoded(e));
        let t = format!("{:.1}", e.t_ms);
        let _ = match e.dir {
            Direction::Note => writeln!(
                o,
                "<tr class=\"note\"><td>{t}</td><td colspan=\"2\">{device}{body}</td></tr>"
            ),
            Direction::ToIut => writeln!(
                o,
                "<tr class=\"to\"><td>{t}</td><td>{device}<pre>{body}</pre></td><td></td></tr>"
            ),
            Direction::DriverCommand => writeln!(
                o,
                "<tr class=\"drv to\"><td>{t}</td><td>{device}<span class=\"tag\">driver command</span><pre>{body}</pre></td><td></td></tr>"
            ),
            Direction::FromIut => writeln!(
                o,
                "<tr class=\"from\"><td>{t}</td><td></td><td>{device}<pre>{body}</pre></td></tr>"
            ),
            Direction::DriverEvent => writeln!(
                o,
                "<tr class=\"drv from\"><td>{t}</td><td></td><td>{device}<span class=\"tag\">driver event</span><pre>{body}</pre></td></tr>"
            ),
        };
    }
    let _ = writeln!(o, "</tbody></table>");
}

/// How a requirement stands in this run.
fn standing(req: &Requirement, verdicts: &[Verdict]) -> (&'static str, String) {
    if req.gatekeeper_only {
        return ("gk", "gatekeeper only: no IUT is judged on it".into());
    }
    if verdicts.is_empty() {
        return match req.waits_for {
            Some(area) => ("waiting", format!("waits for {area}")),
            None => ("gap", "gap: no scenario of this run verifies it".into()),
        };
    }
    let worst = [Verdict::Fail, Verdict::Error, Verdict::Inconclusive]
        .into_iter()
        .find(|v| verdicts.contains(v));
    match worst {
        Some(v) => ("bad", format!("{} in this run", v.as_str())),
        None if verdicts.contains(&Verdict::Pass) => ("ok", "verified".into()),
        None => ("na", "not applicable to this IUT".into()),
    }
}

fn matrix(o: &mut String, report: &Report, catalogue: &Catalogue) {
    let mut citing: BTreeMap<&str, Vec<&ReportedScenario>> = BTreeMap::new();
    for s in &report.scenarios {
        for id in &s.result.requirements {
            citing.entry(id.as_str()).or_default().push(s);
        }
    }
    let _ = writeln!(
        o,
        "<section id=\"coverage\">\n<h2>Requirement coverage</h2>\n<p>Every requirement of SPEC.md, the scenarios of this run that cite it, and their verdicts. <i>rfc</i>: restates an RFC or XEP at the same level; <i>profile</i>: this profile's own rule, failing it is not an RFC violation.</p>\n<table><thead><tr><th>requirement</th><th>level</th><th>basis</th><th>title</th><th>scenarios</th><th>standing</th></tr></thead><tbody>"
    );
    for req in catalogue.iter().filter(|r| !r.withdrawn) {
        let scenarios = citing
            .get(req.id.as_str())
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        let verdicts: Vec<Verdict> = scenarios.iter().map(|s| s.result.verdict).collect();
        let (class, text) = standing(req, &verdicts);
        let area = req.id.split('-').next().unwrap_or("").to_ascii_lowercase();
        let links: String = scenarios
            .iter()
            .map(|s| {
                format!(
                    "<a class=\"chip v-{}\" href=\"#{}\">{}</a>",
                    s.result.verdict.as_str(),
                    anchor(&s.result.id),
                    esc(&s.result.id)
                )
            })
            .collect::<Vec<_>>()
            .join(" ");
        let _ = writeln!(
            o,
            "<tr class=\"st-{class}\" data-area=\"{area}\" data-standing=\"{class}\"><td><code>{}</code></td><td>{}</td><td title=\"{}\">{}</td><td>{}</td><td>{links}</td><td>{}</td></tr>",
            esc(&req.id),
            req.level.as_str(),
            esc(&req.basis.describe()),
            req.basis.kind.as_str(),
            esc(&req.title),
            esc(&text)
        );
    }
    let _ = writeln!(o, "</tbody></table>\n</section>");
}
