//! Findings of a campaign: a failed session judged, its failure reproduced (the failing case
//! alone, then after its session's earlier cases), de-duplicated by signature and written to
//! `reports/fuzz/<id>/` as a scenario that reruns as it is.

use std::collections::{HashSet, VecDeque};
use std::io::Write as _;
use std::path::PathBuf;

use super::cases::{Case, Expect, Generator};
use super::memory::Usage;
use super::{FuzzArgs, Tally, Workbench, requeue, run_sampled, session};
use crate::iut::IutConfig;
use crate::runner::{self, RunOptions, StopSignal};
use crate::verdict::{ScenarioResult, Verdict};

/// What makes two findings the same: the verdict, the requirement, the step within the case
/// (as in the case's scenario alone) and the kind of answer expected.
fn signature(result: &ScenarioResult, step: Option<usize>, expect: &Expect) -> String {
    let failure = result.failure.as_ref();
    let expected = match expect {
        Expect::Live => "live".to_owned(),
        Expect::StreamError(c) => format!("stream-error {}", c.join("/")),
    };
    format!(
        "{} | {} | step {} | {expected}",
        result.verdict.as_str(),
        failure
            .and_then(|f| f.requirement.as_deref())
            .unwrap_or("-"),
        step.unwrap_or(0),
    )
}

/// FNV-1a, for short stable directory names.
fn short_hash(s: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}

/// A failure that recurred: the cases of its reproducer (the failing one last), the result of
/// the rerun, and the failing step as in the failing case's scenario alone.
struct Reproduced {
    cases: Vec<Case>,
    result: ScenarioResult,
    step: Option<usize>,
}

fn failed(result: &ScenarioResult) -> bool {
    matches!(result.verdict, Verdict::Fail | Verdict::Error)
}

/// What judging a session's result needs of the campaign.
pub(super) struct Judge<'a> {
    pub(super) args: &'a FuzzArgs,
    pub(super) seed: u64,
    pub(super) bench: &'a Workbench,
    pub(super) iut: &'a IutConfig,
    pub(super) opts: &'a RunOptions,
    pub(super) stop: &'a StopSignal,
    pub(super) seen: &'a mut HashSet<String>,
    pub(super) tally: &'a mut Tally,
    pub(super) generator: &'a mut Generator,
    pub(super) pending: &'a mut VecDeque<Case>,
    pub(super) enders: &'a mut VecDeque<Case>,
}

/// Counts a session's cases and, for a failure, reproduces it and writes the finding.
pub(super) async fn judge(j: &mut Judge<'_>, cases: &[Case], result: &ScenarioResult) {
    if matches!(result.verdict, Verdict::Pass | Verdict::NotApplicable) {
        j.tally.cases += cases.len();
        return;
    }
    let (k, _) = session::case_of(result.failure.as_ref().and_then(|f| f.step), cases);
    // Cases 0..k passed; case k decided the verdict; the rest did not run.
    j.tally.cases += k + 1;
    requeue(cases.get(k + 1..).unwrap_or_default(), j.pending, j.enders);
    if result.verdict == Verdict::Inconclusive {
        j.tally.inconclusive += 1;
        return;
    }
    // A failure already found (by its signature in the session) is not rerun.
    if let Some(case) = cases.get(k) {
        let (_, step) = session::case_of(result.failure.as_ref().and_then(|f| f.step), cases);
        if j.seen
            .contains(&short_hash(&signature(result, step, &case.expect)))
        {
            j.tally.repeats += 1;
            return;
        }
    }
    let Some(found) = reproduce(j.bench, j.iut, j.opts, j.stop, cases, k, result).await else {
        j.tally.unconfirmed += 1;
        eprintln!(
            "gatecheck fuzz: a failure in session {} (case {k}: {}) did not recur when rerun; not kept",
            result.id,
            cases.get(k).map_or("", |c| c.how.as_str())
        );
        return;
    };
    let Some(case) = found.cases.last() else {
        return;
    };
    let sig = signature(&found.result, found.step, &case.expect);
    let name = short_hash(&sig);
    if !j.seen.insert(name.clone()) {
        j.tally.repeats += 1;
        return;
    }
    j.tally.findings += 1;
    match write_finding(j.args, &name, &sig, j.seed, j.bench, &found) {
        Ok(dir) => eprintln!(
            "gatecheck fuzz: finding {}: {sig}\n  rerun: gatecheck run --scenarios {}{}",
            name,
            dir.join("scenarios").display(),
            rerun_iut(j.args)
        ),
        Err(e) => eprintln!("gatecheck: error: writing a finding: {e}"),
    }
    if let Some(dir) = &j.args.corpus {
        let _ = std::fs::write(dir.join(format!("finding-{name}")), &case.bytes);
    }
    j.generator.keep(case.bytes.clone());
}

/// Reruns the failing case `k` of a failed session alone, then (if that passed) after the
/// session's earlier cases: the first run that fails again is the reproducer. `None` when
/// neither fails (the failure did not recur).
async fn reproduce(
    bench: &Workbench,
    iut: &IutConfig,
    opts: &RunOptions,
    stop: &StopSignal,
    cases: &[Case],
    k: usize,
    session: &ScenarioResult,
) -> Option<Reproduced> {
    let attempts: Vec<&[Case]> = match cases.get(k..=k) {
        Some(alone) if k > 0 => vec![alone, cases.get(..=k).unwrap_or_default()],
        Some(alone) => vec![alone],
        None => Vec::new(),
    };
    for (n, run) in attempts.into_iter().enumerate() {
        let id = format!("{}-again{n}", session.id.trim_start_matches("fuzz/"));
        let scenario = match bench.scenario(&id, run) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("gatecheck: error: {e}");
                return None;
            }
        };
        let outcome = runner::run_until(&[scenario], iut, opts, Some(stop.clone()), |_| {}).await;
        bench.remove(&id, run);
        let result = outcome.results.into_iter().next()?;
        if failed(&result) {
            let (_, step) = session::case_of(result.failure.as_ref().and_then(|f| f.step), run);
            return Some(Reproduced {
                cases: run.to_vec(),
                result,
                step,
            });
        }
    }
    None
}

pub(super) fn rerun_iut(args: &FuzzArgs) -> String {
    match (&args.iut, &args.mutant) {
        (Some(p), _) => format!(" --iut {}", p.display()),
        (None, Some(m)) => format!(" --mutant {m}"),
        (None, None) => String::new(),
    }
}

/// Writes `reports/fuzz/<name>/`: the reproducer's scenario and fixtures (a suite of one), the
/// failing input, the result with its transcript, and a summary.
fn write_finding(
    args: &FuzzArgs,
    name: &str,
    sig: &str,
    seed: u64,
    bench: &Workbench,
    found: &Reproduced,
) -> std::io::Result<PathBuf> {
    let dir = args.out.join(name);
    let scenarios = dir.join("scenarios").join("fuzz");
    std::fs::create_dir_all(&scenarios)?;
    std::fs::create_dir_all(dir.join("fixtures").join("fuzz"))?;
    let n = found.cases.len();
    let limit = bench.case_limit_ms.saturating_mul(n as u64);
    std::fs::write(
        scenarios.join(format!("{name}.toml")),
        session::scenario_text(name, &found.cases, Some(limit)),
    )?;
    for (fixture, bytes) in session::fixtures(name, &found.cases) {
        std::fs::write(dir.join("fixtures").join(fixture), bytes)?;
    }
    let failing = found.cases.last();
    std::fs::write(
        dir.join("input.bin"),
        failing.map(|c| c.bytes.as_slice()).unwrap_or_default(),
    )?;
    let json = serde_json::to_vec_pretty(&found.result).map_err(std::io::Error::other)?;
    std::fs::write(dir.join("result.json"), json)?;
    let mut summary = std::fs::File::create(dir.join("finding.txt"))?;
    writeln!(summary, "signature: {sig}")?;
    if let Some(case) = failing {
        writeln!(summary, "case: {}", case.how)?;
    }
    if n > 1 {
        writeln!(
            summary,
            "the case fails only after {} earlier cases of its session (all in the reproducer)",
            n - 1
        )?;
    }
    writeln!(summary, "campaign seed: {seed}")?;
    if let Some(f) = &found.result.failure {
        writeln!(summary, "expected: {}\ngot: {}", f.expected, f.got)?;
    }
    writeln!(
        summary,
        "rerun: gatecheck run --scenarios {}{}",
        dir.join("scenarios").display(),
        rerun_iut(args)
    )?;
    Ok(dir)
}

/// The signature of every memory finding: growth is a property of the IUT over many inputs,
/// not of one step, so a campaign keeps one (the first).
const MEMORY_SIGNATURE: &str = "memory | STREAM-32 | resident set growth over one session";

/// A session whose IUT's resident set grew past `--max-rss-growth`: its cases are run again
/// as one session with the sampler on, and if the growth recurs the finding is written
/// (inputs, figures, and how to rerun; see [`write_memory_finding`]).
pub(super) async fn judge_memory(j: &mut Judge<'_>, id: &str, cases: &[Case], first: Usage) {
    let name = short_hash(MEMORY_SIGNATURE);
    if j.seen.contains(&name) {
        j.tally.repeats += 1;
        return;
    }
    let again = format!("{id}-memory");
    let scenario = match j.bench.scenario(&again, cases) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("gatecheck: error: {e}");
            return;
        }
    };
    let (_, usage) = run_sampled(&again, scenario, j.iut, j.opts, j.stop).await;
    j.bench.remove(&again, cases);
    if !usage.exceeds(j.args.max_rss_growth) {
        j.tally.unconfirmed += 1;
        eprintln!(
            "gatecheck fuzz: the IUT grew by {} KiB in session {id} but by {} KiB when its cases were rerun; not kept",
            first.growth_kib(),
            usage.growth_kib()
        );
        return;
    }
    j.seen.insert(name.clone());
    j.tally.findings += 1;
    match write_memory_finding(j.args, &name, j.seed, cases, first, usage) {
        Ok(dir) => eprintln!(
            "gatecheck fuzz: finding {name}: {MEMORY_SIGNATURE}: grew by {} MiB, then {} MiB on the same {} cases (bound {} MiB)\n  inputs: {}",
            first.growth_kib() / 1024,
            usage.growth_kib() / 1024,
            cases.len(),
            j.args.max_rss_growth,
            dir.join("inputs").display()
        ),
        Err(e) => eprintln!("gatecheck: error: writing a finding: {e}"),
    }
}

/// Writes `reports/fuzz/<name>/` for a memory finding: `finding.txt` (figures, the cases, how
/// to rerun), every case's bytes under `inputs/`, and the session's scenario under `replay/`.
/// The scenario steps cannot observe the IUT's memory, so the replay passes on its own; it
/// sends the same inputs in the same order for whoever watches the IUT's memory while it runs.
/// What judges the growth again is `gatecheck fuzz` itself, as finding.txt says.
fn write_memory_finding(
    args: &FuzzArgs,
    name: &str,
    seed: u64,
    cases: &[Case],
    first: Usage,
    again: Usage,
) -> std::io::Result<PathBuf> {
    let dir = args.out.join(name);
    let inputs = dir.join("inputs");
    std::fs::create_dir_all(&inputs)?;
    std::fs::create_dir_all(dir.join("replay").join("scenarios").join("fuzz"))?;
    std::fs::create_dir_all(dir.join("replay").join("fixtures").join("fuzz"))?;
    for (k, case) in cases.iter().enumerate() {
        std::fs::write(inputs.join(format!("case-{k:03}.bin")), &case.bytes)?;
    }
    std::fs::write(
        dir.join("replay")
            .join("scenarios")
            .join("fuzz")
            .join(format!("{name}.toml")),
        session::scenario_text(name, cases, None),
    )?;
    for (fixture, bytes) in session::fixtures(name, cases) {
        std::fs::write(dir.join("replay").join("fixtures").join(fixture), bytes)?;
    }
    let mib = |kib: u64| kib as f64 / 1024.0;
    let mut summary = std::fs::File::create(dir.join("finding.txt"))?;
    writeln!(summary, "signature: {MEMORY_SIGNATURE}")?;
    writeln!(
        summary,
        "requirement: STREAM-32 (a receiver bounds what it buffers: it detects an oversized stanza without first buffering more than the limit plus 64 KiB; a resident set that keeps growing with the stanzas received is not bounded)"
    )?;
    for (label, u) in [("session", first), ("rerun of its cases", again)] {
        writeln!(
            summary,
            "{label}: resident set {:.1} MiB once connected, peak {:.1} MiB, growth {:.1} MiB over {} samples (bound {} MiB)",
            mib(u.baseline_kib.unwrap_or(0)),
            mib(u.peak_kib),
            mib(u.growth_kib()),
            u.samples,
            args.max_rss_growth
        )?;
    }
    writeln!(
        summary,
        "cases ({}, in order, bytes in inputs/):",
        cases.len()
    )?;
    for (k, case) in cases.iter().enumerate() {
        writeln!(
            summary,
            "  case-{k:03}.bin: {} ({} bytes)",
            case.how.replace(['\n', '\r'], " "),
            case.bytes.len()
        )?;
    }
    writeln!(summary, "campaign seed: {seed}")?;
    writeln!(
        summary,
        "rerun: gatecheck fuzz --seed {seed} --max-rss-growth {} --max-findings 1{} (or --corpus {} to start from these inputs); a scenario cannot measure memory, so replay/ (gatecheck run --scenarios {}) only sends the same inputs and passes",
        args.max_rss_growth,
        rerun_iut(args),
        inputs.display(),
        dir.join("replay").join("scenarios").display()
    )?;
    Ok(dir)
}
