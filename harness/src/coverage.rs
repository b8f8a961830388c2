//! `gatecheck coverage`: how much of SPEC.md the suite checks, per requirement area.
//!
//! For each area (requirement prefix) it counts the requirements, those with an `rfc`
//! basis, those only the gatekeeper can break (left out of an IUT's figures), the
//! IUT-testable rest, those of the rest that at least one scenario cites, those uncited
//! that wait for a later area (`; waits-for AREA` in SPEC.md §2.1: shown as waiting rather
//! than as a silent gap), and those of the rest that no mutant of the reference provider
//! breaks (`gatecheck-reference --list-mutants`, one `name<TAB>REQ-ID<TAB>description` a
//! line).

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
    /// Uncited IUT-testable requirements whose test waits for a later area.
    pub waiting: usize,
    /// IUT-testable requirements that no mutant breaks; absent when the mutant list is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub no_mutant: Option<usize>,
    /// The IUT-testable requirements no scenario cites and none waits for a later area:
    /// the gaps.
    pub missing: Vec<String>,
    /// The uncited IUT-testable requirements that wait for a later area, with that area.
    pub waiting_for: Vec<Waiting>,
    /// The IUT-testable requirements no mutant breaks; absent when the mutant list is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unbroken: Option<Vec<String>>,
}

/// An uncited requirement whose test needs a later area's flow.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Waiting {
    pub id: String,
    /// The area it waits for (SPEC.md §2.1, `; waits-for AREA`).
    pub area: String,
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
            } else if let Some(area) = r.waits_for {
                a.waiting += 1;
                a.waiting_for.push(Waiting {
                    id: r.id.clone(),
                    area: area.to_string(),
                });
            } else {
                a.missing.push(r.id.clone());
            }
            // A MAY is a permission: nothing can break it, so no mutant is missing for it.
            if let (Some(broken), Some(n), Some(ids)) =
                (&broken, a.no_mutant.as_mut(), a.unbroken.as_mut())
                && !broken.contains(r.id.as_str())
                && r.level != crate::spec::Level::May
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
        waiting: 0,
        no_mutant: with_mutants.then_some(0),
        missing: Vec::new(),
        waiting_for: Vec::new(),
        unbroken: with_mutants.then(Vec::new),
    }
}

fn add(total: &mut AreaCoverage, a: &AreaCoverage) {
    total.requirements += a.requirements;
    total.rfc += a.rfc;
    total.gatekeeper_only += a.gatekeeper_only;
    total.iut_testable += a.iut_testable;
    total.cited += a.cited;
    total.waiting += a.waiting;
    total.missing.extend(a.missing.iter().cloned());
    total.waiting_for.extend(a.waiting_for.iter().cloned());
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
        "{:<8} {:>5} {:>4} {:>8} {:>4} {:>6} {:>8} {:>9}",
        "area", "reqs", "rfc", "gk-only", "IUT", "cited", "waiting", "coverage"
    );
    if with_mutants {
        let _ = write!(out, " {:>10}", "no mutant");
    }
    out.push('\n');
    for a in c.areas.iter().chain(std::iter::once(&c.total)) {
        let _ = write!(
            out,
            "{:<8} {:>5} {:>4} {:>8} {:>4} {:>6} {:>8} {:>8}%",
            a.area,
            a.requirements,
            a.rfc,
            a.gatekeeper_only,
            a.iut_testable,
            a.cited,
            a.waiting,
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
    let _ = writeln!(
        out,
        "waiting: IUT-testable requirements no scenario cites yet because their test needs a \
         later area's flow (SPEC.md §2.1, `; waits-for AREA`)."
    );
    match &c.mutants {
        MutantSource::Listed { count, .. } => {
            let _ = writeln!(
                out,
                "no mutant: IUT-testable MUST and SHOULD requirements none of the {count} mutants \
                 of gatecheck-reference --list-mutants breaks (a MAY is a permission: nothing \
                 breaks it)."
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
        if !c.total.waiting_for.is_empty() {
            out.push('\n');
            let _ = writeln!(out, "uncited, waiting for a later area:");
            for a in &c.areas {
                if a.waiting_for.is_empty() {
                    continue;
                }
                let ids: Vec<String> = a
                    .waiting_for
                    .iter()
                    .map(|w| format!("{} ({})", w.id, w.area))
                    .collect();
                let _ = writeln!(out, "  {:<8} {}", a.area, ids.join(" "));
            }
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

    const WAITING_SPEC: &str = "#### STANZA-1 [MUST] Cited\n\nIt MUST.\n\nBasis: profile\nApplies to: client\n\n\
        #### STANZA-2 [MUST] A gap\n\nIt MUST.\n\nBasis: profile\nApplies to: client\n\n\
        #### STANZA-3 [MUST] Needs messages\n\nIt MUST.\n\nBasis: profile; waits-for E2EE\nApplies to: client\n\n\
        #### STANZA-4 [MUST] Needs enrollment, cited all the same\n\nIt MUST.\n\nBasis: profile; waits-for ENROLL\nApplies to: client\n\n\
        #### STANZA-5 [MUST] Gatekeeper\n\nIt MUST.\n\nBasis: profile; gatekeeper-only\nApplies to: gatekeeper\n";

    #[test]
    fn requirements_waiting_for_a_later_area_are_not_gaps() {
        let catalogue = Catalogue::parse(WAITING_SPEC).expect("sample");
        let scenario = Scenario::parse(
            Path::new("stanza/x.toml"),
            "id = \"stanza/x\"\ntitle = \"t\"\nrequirements = [\"STANZA-1\", \"STANZA-4\"]\n\
             role = \"client\"\n\n[[step]]\nsleep = 1\n",
            &catalogue,
            &crate::scenario::SuiteDirs::bundled(),
        )
        .expect("scenario");
        let list = parse_mutant_list("m\tSTANZA-3\tx\n").expect("mutants");
        let c = compute(&catalogue, &[scenario], Ok(("ref".into(), list)));
        let a = c.areas.iter().find(|a| a.area == "STANZA").expect("STANZA");
        assert_eq!(
            (
                a.requirements,
                a.gatekeeper_only,
                a.iut_testable,
                a.cited,
                a.waiting
            ),
            (5, 1, 4, 2, 1)
        );
        // A cited requirement counts as cited, whatever it waits for.
        assert_eq!(a.missing, ["STANZA-2"]);
        assert_eq!(
            a.waiting_for,
            [Waiting {
                id: "STANZA-3".into(),
                area: "E2EE".into()
            }]
        );
        assert_eq!(a.percent(), 50);
        assert_eq!(a.no_mutant, Some(3));
        assert_eq!((c.total.waiting, c.total.waiting_for.len()), (1, 1));

        let table = render(&c, true);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(
            lines[0],
            "area      reqs  rfc  gk-only  IUT  cited  waiting  coverage  no mutant"
        );
        assert_eq!(
            lines[2],
            "STANZA       5    0        1    4      2        1       50%          3"
        );
        assert!(
            table.ends_with(
                "uncited IUT-testable requirements:\n  STANZA   STANZA-2\n\n\
                 uncited, waiting for a later area:\n  STANZA   STANZA-3 (E2EE)\n"
            ),
            "{table}"
        );
        let json = serde_json::to_value(&c).expect("json");
        assert_eq!(json["areas"][1]["waiting"], 1);
        assert_eq!(
            json["areas"][1]["waiting_for"],
            serde_json::json!([{"id": "STANZA-3", "area": "E2EE"}])
        );
        // Without waiting requirements, --missing prints no waiting section.
        let none = compute(&catalogue, &[], Err("x".into()));
        assert!(render(&none, true).contains("(E2EE)"));
        let plain = Catalogue::parse(WAITING_SPEC.split("#### STANZA-3").next().unwrap())
            .expect("two requirements");
        assert!(
            !render(&compute(&plain, &[], Err("x".into())), true).contains("waiting for a later")
        );
    }

    #[test]
    fn no_requirement_the_suite_cites_is_still_marked_waiting() {
        // `; waits-for AREA` says no scenario can test the requirement yet; once one cites
        // it, the mark is stale and would hide nothing but mislead the reader of SPEC.md.
        let catalogue = Catalogue::embedded();
        let suite = crate::scenario::load_suite(&crate::scenario::SuiteDirs::bundled(), catalogue)
            .unwrap_or_else(|e| panic!("the bundled suite loads: {e:?}"));
        let stale: Vec<String> = suite
            .iter()
            .flat_map(|s| s.requirements.iter().map(move |r| (s, r)))
            .filter_map(|(s, r)| {
                let area = catalogue.get(r)?.waits_for?;
                Some(format!("{} cites {r}, marked `; waits-for {area}`", s.id))
            })
            .collect();
        assert!(stale.is_empty(), "{}", stale.join("\n"));
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
        assert_eq!(
            c.total.missing.len() + c.total.waiting,
            c.total.iut_testable
        );
        assert_eq!(c.total.waiting_for.len(), c.total.waiting);
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
