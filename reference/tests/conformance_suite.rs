//! The suite against the reference provider and each of its mutants: the
//! reference passes every scenario, and every mutant fails at least one
//! scenario that cites the requirement the mutant breaks (a check that cannot
//! fail is a defect).

use std::path::PathBuf;
use std::process::Command;

use gatecheck::iut::IutConfig;
use gatecheck::runner::{self, RunOptions, ScenarioResult, Verdict};
use gatecheck::scenario::{Scenario, SuiteDirs, load_suite};
use gatecheck::spec::Catalogue;
use gatecheck::transport::TransportKind;

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
    let warnings: Vec<String> = r
        .warnings
        .iter()
        .map(|w| format!(" [warning {}: {}]", w.requirement, w.got))
        .collect();
    format!(
        "{} {}: step {:?}, {}: expected {} / got {}{}",
        r.verdict.as_str(),
        r.id,
        f.and_then(|f| f.step),
        f.and_then(|f| f.requirement.clone()).unwrap_or_default(),
        f.map(|f| f.expected.as_str()).unwrap_or(""),
        f.map(|f| f.got.as_str()).unwrap_or(""),
        warnings.concat(),
    )
}

#[test]
fn the_reference_provider_passes_every_scenario() {
    passes_every_scenario(TransportKind::Noise);
}

#[test]
fn the_reference_provider_passes_every_scenario_over_tls() {
    passes_every_scenario(TransportKind::Tls);
}

fn passes_every_scenario(transport: TransportKind) {
    let suite = suite();
    let mut iut = IutConfig::reference_at(reference(), None);
    iut.transport = transport;
    let (results, summary) = runtime().block_on(runner::run(&suite, &iut, &opts(1), |_| {}));
    let bad: Vec<String> = results
        .iter()
        .filter(|r| r.verdict != Verdict::Pass || !r.warnings.is_empty())
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

/// Runs `scenarios` against the reference with `mutant` switched on.
async fn run_mutant(mutant: String, scenarios: Vec<Scenario>) -> Vec<ScenarioResult> {
    let iut = IutConfig::reference_at(reference(), Some(&mutant));
    runner::run(&scenarios, &iut, &opts(2), |_| {}).await.0
}

/// Runs the (mutant, scenarios) jobs two at a time (two scenarios each: four IUT
/// processes on two cores) and returns the results in job order.
fn run_jobs(
    rt: &tokio::runtime::Runtime,
    jobs: Vec<(String, Vec<Scenario>)>,
) -> Vec<Vec<ScenarioResult>> {
    let mut out = Vec::with_capacity(jobs.len());
    let mut jobs = jobs.into_iter().peekable();
    while jobs.peek().is_some() {
        let batch: Vec<_> = jobs.by_ref().take(2).collect();
        let results = rt.block_on(async {
            let handles: Vec<_> = batch
                .into_iter()
                .map(|(m, s)| tokio::spawn(run_mutant(m, s)))
                .collect();
            let mut v = Vec::new();
            for h in handles {
                v.push(h.await.unwrap_or_default());
            }
            v
        });
        out.extend(results);
    }
    out
}

/// Whether a result charges `requirement`: a fail naming it, or a warning naming it.
fn charges(r: &ScenarioResult, requirement: &str) -> bool {
    let failed = r.verdict == Verdict::Fail
        && r.failure.as_ref().and_then(|f| f.requirement.as_deref()) == Some(requirement);
    failed || r.warnings.iter().any(|w| w.requirement == requirement)
}

#[test]
fn mutants_and_scenarios_kill_each_other() {
    let mutants = mutants();
    assert!(mutants.len() >= 10, "only {} mutants", mutants.len());
    let suite = suite();
    let rt = runtime();
    let mut problems = Vec::new();
    let mut killed: std::collections::BTreeSet<String> = std::collections::BTreeSet::new();

    // 1. Every mutant fails a scenario that cites the requirement it breaks.
    let jobs: Vec<(String, Vec<Scenario>)> = mutants
        .iter()
        .map(|m| {
            let citing = suite
                .iter()
                .filter(|s| s.requirements.contains(&m.requirement))
                .cloned()
                .collect();
            (m.name.clone(), citing)
        })
        .collect();
    for (m, results) in mutants.iter().zip(run_jobs(&rt, jobs)) {
        if results.is_empty() {
            problems.push(format!("{}: no scenario cites {}", m.name, m.requirement));
            continue;
        }
        // Killed only by a verdict charged to the requirement the mutant breaks: a fail
        // naming it, or, for a SHOULD, a pass with a warning naming it.
        let caught: Vec<&ScenarioResult> = results
            .iter()
            .filter(|r| charges(r, &m.requirement))
            .collect();
        if caught.is_empty() {
            let seen: Vec<String> = results.iter().map(describe).collect();
            problems.push(format!(
                "{} (breaks {}) got no verdict charged to {} from the scenarios citing it:\n  {}",
                m.name,
                m.requirement,
                m.requirement,
                seen.join("\n  ")
            ));
        }
        killed.extend(caught.iter().map(|r| r.id.clone()));
    }

    // 2. Every scenario fails against at least one mutant (a check that cannot fail is a defect).
    for s in suite.iter().filter(|s| !killed.contains(&s.id)) {
        let mut caught = false;
        for chunk in mutants.chunks(2) {
            let jobs = chunk
                .iter()
                .map(|m| (m.name.clone(), vec![s.clone()]))
                .collect();
            if run_jobs(&rt, jobs)
                .iter()
                .flatten()
                .any(|r| r.verdict == Verdict::Fail || !r.warnings.is_empty())
            {
                caught = true;
                break;
            }
        }
        if !caught {
            problems.push(format!("scenario {} fails against no mutant", s.id));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
