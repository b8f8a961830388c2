//! The suite against the reference provider and each of its mutants: the
//! reference passes every scenario, and every mutant fails at least one
//! scenario that cites the requirement the mutant breaks (a check that cannot
//! fail is a defect).

use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;

use gatecheck::iut::IutConfig;
use gatecheck::runner::{self, RunOptions, ScenarioResult, Verdict};
use gatecheck::scenario::{Scenario, SuiteDirs, load_suite};
use gatecheck::spec::Catalogue;

fn reference() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_gatecheck-reference"))
}

fn suite() -> Vec<Scenario> {
    load_suite(&SuiteDirs::bundled(), Catalogue::embedded())
        .unwrap_or_else(|e| panic!("suite does not load: {e:?}"))
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

fn opts(seed: u64) -> RunOptions {
    RunOptions {
        seed,
        jobs: 2,
        dirs: SuiteDirs::bundled(),
    }
}

fn describe(r: &ScenarioResult) -> String {
    let f = r.failure.as_ref();
    format!(
        "{} {}: step {:?}, {}: expected {} / got {}",
        r.verdict.as_str(),
        r.id,
        f.and_then(|f| f.step),
        f.and_then(|f| f.requirement.clone()).unwrap_or_default(),
        f.map(|f| f.expected.as_str()).unwrap_or(""),
        f.map(|f| f.got.as_str()).unwrap_or(""),
    )
}

#[test]
fn the_reference_provider_passes_every_scenario() {
    let suite = suite();
    let iut = IutConfig::reference_at(reference(), None);
    let (results, summary) = runtime().block_on(runner::run(&suite, &iut, &opts(1), |_| {}));
    let bad: Vec<String> = results
        .iter()
        .filter(|r| r.verdict != Verdict::Pass)
        .map(describe)
        .collect();
    assert!(
        bad.is_empty(),
        "{} of {} scenarios did not pass:\n{}",
        bad.len(),
        summary.total(),
        bad.join("\n")
    );
}

struct Mutant {
    name: String,
    requirement: String,
}

fn mutants() -> Vec<Mutant> {
    let out = Command::new(reference())
        .arg("--list-mutants")
        .output()
        .expect("lists mutants");
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).expect("UTF-8");
    text.lines()
        .map(|line| {
            let cols: Vec<&str> = line.split('\t').collect();
            assert_eq!(
                cols.len(),
                3,
                "mutant line is name<TAB>REQ<TAB>description: {line:?}"
            );
            assert!(
                Catalogue::embedded().contains(cols[1]),
                "mutant {} cites unknown {}",
                cols[0],
                cols[1]
            );
            assert!(!cols[2].is_empty());
            Mutant {
                name: cols[0].to_string(),
                requirement: cols[1].to_string(),
            }
        })
        .collect()
}

#[test]
fn every_mutant_fails_a_scenario_that_cites_the_requirement_it_breaks() {
    let mutants = mutants();
    assert!(mutants.len() >= 10, "only {} mutants", mutants.len());
    let suite = Arc::new(suite());
    let rt = runtime();
    let mut problems = Vec::new();
    // Two mutants at a time, two scenarios each: four IUT processes on two cores.
    for pair in mutants.chunks(2) {
        let runs = pair.iter().map(|m| {
            let citing: Vec<Scenario> = suite
                .iter()
                .filter(|s| s.requirements.contains(&m.requirement))
                .cloned()
                .collect();
            let iut = IutConfig::reference_at(reference(), Some(&m.name));
            let (name, requirement) = (m.name.clone(), m.requirement.clone());
            async move {
                let m = Mutant { name, requirement };
                if citing.is_empty() {
                    return Err(format!("{}: no scenario cites {}", m.name, m.requirement));
                }
                let (results, _) = runner::run(&citing, &iut, &opts(2), |_| {}).await;
                if results.iter().any(|r| r.verdict == Verdict::Fail) {
                    Ok(())
                } else {
                    let seen: Vec<String> = results.iter().map(describe).collect();
                    Err(format!(
                        "{} (breaks {}) passed every scenario citing it:\n  {}",
                        m.name,
                        m.requirement,
                        seen.join("\n  ")
                    ))
                }
            }
        });
        let runs: Vec<_> = runs.collect();
        let outcomes = rt.block_on(async {
            let mut set = tokio::task::JoinSet::new();
            for r in runs {
                set.spawn(r);
            }
            let mut v = Vec::new();
            while let Some(o) = set.join_next().await {
                v.push(o.unwrap_or_else(|e| Err(format!("mutant run panicked: {e}"))));
            }
            v
        });
        problems.extend(outcomes.into_iter().filter_map(Result::err));
    }
    assert!(
        problems.is_empty(),
        "mutants not caught:\n{}",
        problems.join("\n")
    );
}
