//! `gatecheck coverage`: how much of SPEC.md the suite checks, per requirement area.
//!
//! For each area (requirement prefix) it counts the requirements, those with an `rfc`
//! basis, those only the gatekeeper can break (left out of an IUT's figures), the
//! IUT-testable rest, those of the rest that at least one scenario cites, and those of
//! the rest that no mutant of the reference provider breaks
//! (`gatecheck-reference --list-mutants`, one `name<TAB>REQ-ID<TAB>description` a line).

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::Path;

use crate::scenario::Scenario;
use crate::spec::{BasisKind, Catalogue, PREFIXES};

/// One mutant of the reference provider, as `--list-mutants` prints it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Mutant {
    pub name: String,
    /// The requirement IDs it breaks (the second column; several may be comma-separated).
    pub requirements: Vec<String>,
    pub description: String,
}

/// Parses `--list-mutants` output. Blank lines are skipped; a line without the
/// requirement column is an error naming the line.
pub fn parse_mutant_list(text: &str) -> Result<Vec<Mutant>, String> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let mut cols = line.splitn(3, '\t');
        let name = cols.next().unwrap_or_default().trim();
        let reqs = cols.next().map(str::trim).unwrap_or_default();
        if name.is_empty() || reqs.is_empty() {
            return Err(format!(
                "line {}: expected `name<TAB>REQ-ID<TAB>description`, got {line:?}",
                i + 1
            ));
        }
        out.push(Mutant {
            name: name.to_string(),
            requirements: reqs
                .split(|c: char| c == ',' || c.is_whitespace())
                .filter(|r| !r.is_empty())
                .map(str::to_string)
                .collect(),
            description: cols.next().unwrap_or_default().trim().to_string(),
        });
    }
    Ok(out)
}

/// Runs `REFERENCE --list-mutants` and parses what it prints.
pub fn list_mutants(reference: &Path) -> Result<Vec<Mutant>, String> {
    let out = std::process::Command::new(reference)
        .arg("--list-mutants")
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {}: {e}", reference.display()))?;
    if !out.status.success() {
        return Err(format!(
            "{} --list-mutants exited with {}",
            reference.display(),
            out.status
        ));
    }
    parse_mutant_list(&String::from_utf8_lossy(&out.stdout))
        .map_err(|e| format!("{} --list-mutants: {e}", reference.display()))
}

/// The figures of one area (or of the whole profile).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AreaCoverage {
    /// The requirement prefix (`STREAM`), or `total`.
    pub area: String,
    /// Requirements in force (withdrawn ones are not counted anywhere).
    pub requirements: usize,
    /// Of those, how many have an `rfc` basis.
    pub rfc: usize,
    /// Of those, how many only the gatekeeper can break.
    pub gatekeeper_only: usize,
    /// `requirements - gatekeeper_only`: what an IUT can be judged on.
    pub iut_testable: usize,
    /// IUT-testable requirements that at least one scenario cites.
    pub cited: usize,
    /// IUT-testable requirements that no mutant breaks; absent when the mutant list is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub no_mutant: Option<usize>,
    /// The IUT-testable requirements no scenario cites.
    pub missing: Vec<String>,
    /// The IUT-testable requirements no mutant breaks; absent when the mutant list is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unbroken: Option<Vec<String>>,
}

impl AreaCoverage {
    /// `cited / iut_testable` in whole percent (100 when nothing is testable).
    pub fn percent(&self) -> u64 {
        if self.iut_testable == 0 {
            return 100;
        }
        (self.cited as u64 * 100) / self.iut_testable as u64
    }
}

/// Where the mutant column came from.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "status", rename_all = "kebab-case")]
pub enum MutantSource {
    /// `--list-mutants` of this reference provider listed `count` mutants.
    Listed { reference: String, count: usize },
    /// No mutant list: the column is left out, for this reason.
    Unavailable { reason: String },
}

/// The whole `gatecheck coverage` answer.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Coverage {
    pub areas: Vec<AreaCoverage>,
    pub total: AreaCoverage,
    pub mutants: MutantSource,
    /// Scenarios in the suite that was measured.
    pub scenarios: usize,
}

/// Computes the coverage of `catalogue` by `suite`, with `mutants` when they are known.
pub fn compute(
    catalogue: &Catalogue,
    suite: &[Scenario],
    mutants: Result<(String, Vec<Mutant>), String>,
) -> Coverage {
    let cited: BTreeSet<&str> = suite
        .iter()
        .flat_map(|s| s.requirements.iter().map(String::as_str))
        .collect();
    let (broken, source) = match &mutants {
        Ok((reference, list)) => (
            Some(
                list.iter()
                    .flat_map(|m| m.requirements.iter().map(String::as_str))
                    .collect::<BTreeSet<&str>>(),
            ),
            MutantSource::Listed {
                reference: reference.clone(),
                count: list.len(),
            },
        ),
        Err(reason) => (
            None,
            MutantSource::Unavailable {
                reason: reason.clone(),
            },
        ),
    };
    let mut areas = Vec::new();
    let mut total = empty("total", broken.is_some());
    for prefix in PREFIXES {
        let mut a = empty(prefix, broken.is_some());
        let in_area = catalogue
            .iter()
            .filter(|r| !r.withdrawn && r.id.split('-').next() == Some(*prefix));
        for r in in_area {
            a.requirements += 1;
            if r.basis.kind == BasisKind::Rfc {
                a.rfc += 1;
            }
            if r.gatekeeper_only {
                a.gatekeeper_only += 1;
                continue;
            }
            a.iut_testable += 1;
            if cited.contains(r.id.as_str()) {
                a.cited += 1;
            } else {
                a.missing.push(r.id.clone());
            }
            if let (Some(broken), Some(n), Some(ids)) =
                (&broken, a.no_mutant.as_mut(), a.unbroken.as_mut())
                && !broken.contains(r.id.as_str())
            {
                *n += 1;
                ids.push(r.id.clone());
            }
        }
        add(&mut total, &a);
        areas.push(a);
    }
    Coverage {
        areas,
        total,
        mutants: source,
        scenarios: suite.len(),
    }
}

fn empty(area: &str, with_mutants: bool) -> AreaCoverage {
    AreaCoverage {
        area: area.to_string(),
        requirements: 0,
        rfc: 0,
        gatekeeper_only: 0,
        iut_testable: 0,
        cited: 0,
        no_mutant: with_mutants.then_some(0),
        missing: Vec::new(),
        unbroken: with_mutants.then(Vec::new),
    }
}

fn add(total: &mut AreaCoverage, a: &AreaCoverage) {
    total.requirements += a.requirements;
    total.rfc += a.rfc;
    total.gatekeeper_only += a.gatekeeper_only;
    total.iut_testable += a.iut_testable;
    total.cited += a.cited;
    total.missing.extend(a.missing.iter().cloned());
    if let (Some(t), Some(n)) = (total.no_mutant.as_mut(), a.no_mutant) {
        *t += n;
    }
    if let (Some(t), Some(ids)) = (total.unbroken.as_mut(), &a.unbroken) {
        t.extend(ids.iter().cloned());
    }
}

/// The table `gatecheck coverage` prints, with the uncited IDs per area when `missing`.
pub fn render(c: &Coverage, missing: bool) -> String {
    let with_mutants = c.total.no_mutant.is_some();
    let mut out = String::new();
    let _ = write!(
        out,
        "{:<8} {:>5} {:>4} {:>8} {:>4} {:>6} {:>9}",
        "area", "reqs", "rfc", "gk-only", "IUT", "cited", "coverage"
    );
    if with_mutants {
        let _ = write!(out, " {:>10}", "no mutant");
    }
    out.push('\n');
    for a in c.areas.iter().chain(std::iter::once(&c.total)) {
        let _ = write!(
            out,
            "{:<8} {:>5} {:>4} {:>8} {:>4} {:>6} {:>8}%",
            a.area,
            a.requirements,
            a.rfc,
            a.gatekeeper_only,
            a.iut_testable,
            a.cited,
            a.percent()
        );
        if let Some(n) = a.no_mutant {
            let _ = write!(out, " {n:>10}");
        }
        out.push('\n');
    }
    out.push('\n');
    let _ = writeln!(
        out,
        "{} scenario(s). coverage = cited / IUT: requirements only the gatekeeper can break \
         (gk-only) are left out.",
        c.scenarios
    );
    match &c.mutants {
        MutantSource::Listed { count, .. } => {
            let _ = writeln!(
                out,
                "no mutant: IUT-testable requirements none of the {count} mutants of \
                 gatecheck-reference --list-mutants breaks."
            );
        }
        MutantSource::Unavailable { reason } => {
            let _ = writeln!(out, "no mutant: column skipped, {reason}.");
        }
    }
    if missing {
        out.push('\n');
        let _ = writeln!(out, "uncited IUT-testable requirements:");
        for a in &c.areas {
            if a.missing.is_empty() {
                continue;
            }
            let _ = writeln!(out, "  {:<8} {}", a.area, a.missing.join(" "));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mutant_lists_are_parsed() {
        let got = parse_mutant_list(
            "ping-error\tSTANZA-7\tanswers a ping with an error\n\nboth\tSTREAM-1, STREAM-2\tx\n",
        )
        .expect("parses");
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].name, "ping-error");
        assert_eq!(got[0].requirements, ["STANZA-7"]);
        assert_eq!(got[0].description, "answers a ping with an error");
        assert_eq!(got[1].requirements, ["STREAM-1", "STREAM-2"]);
        assert_eq!(
            parse_mutant_list("lonely\n").unwrap_err(),
            "line 1: expected `name<TAB>REQ-ID<TAB>description`, got \"lonely\""
        );
    }

    #[test]
    fn areas_add_up_to_the_catalogue() {
        let catalogue = Catalogue::embedded();
        let c = compute(catalogue, &[], Err("no reference".into()));
        assert_eq!(c.areas.len(), PREFIXES.len());
        assert_eq!(
            c.total.requirements,
            catalogue.iter().filter(|r| !r.withdrawn).count()
        );
        assert_eq!(c.total.cited, 0);
        assert_eq!(c.total.missing.len(), c.total.iut_testable);
        assert_eq!(
            c.total.iut_testable + c.total.gatekeeper_only,
            c.total.requirements
        );
        assert_eq!(c.total.no_mutant, None);
        let table = render(&c, false);
        assert!(!table.contains("no mutant "), "{table}");
        assert!(
            table.contains("no mutant: column skipped, no reference."),
            "{table}"
        );
    }
}
