//! The scenario runner: plays scenarios against IUT instances in parallel and
//! emits events; reporters (terminal, JSON) consume them and know nothing of
//! how scenarios run (after cargo-nextest's runner/reporter split).

pub mod conn;
mod exec;
pub mod transcript;

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;

use crate::iut::IutConfig;
use crate::scenario::{Scenario, SuiteDirs};
pub use exec::TEARDOWN_GRACE;
pub use transcript::{Direction, Entry, Transcript};

/// ISO 9646 / TTCN-3 verdicts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    Pass,
    Fail,
    Inconclusive,
    NotApplicable,
    /// A fault of the harness (or of the scenario file), not of the IUT.
    Error,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Pass => "pass",
            Verdict::Fail => "fail",
            Verdict::Inconclusive => "inconclusive",
            Verdict::NotApplicable => "not-applicable",
            Verdict::Error => "error",
        }
    }
}

/// Why a scenario did not pass: which step, what was expected, what arrived.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Failure {
    /// 1-based index of the step, when a step was running.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub step: Option<usize>,
    /// Line of the step in the scenario file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<usize>,
    /// Found after the last step passed (a false driver event, a second connection).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub after_steps: bool,
    /// The SPEC.md requirement the deviation violates.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub requirement: Option<String>,
    pub expected: String,
    pub got: String,
}

/// A SHOULD (or SHOULD NOT) not met (SPEC.md §2.1): it never fails a scenario, it is
/// attached to its verdict.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Warning {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub step: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<usize>,
    /// The SHOULD-level requirement not met.
    pub requirement: String,
    pub expected: String,
    pub got: String,
}

/// The warnings of one scenario, shared so that a scenario that panics keeps them.
#[derive(Debug, Clone, Default)]
pub struct Warnings(Arc<std::sync::Mutex<Vec<Warning>>>);

impl Warnings {
    pub fn push(&self, w: Warning) {
        if let Ok(mut v) = self.0.lock() {
            v.push(w);
        }
    }

    pub fn take(&self) -> Vec<Warning> {
        self.0
            .lock()
            .map(|mut v| std::mem::take(&mut *v))
            .unwrap_or_default()
    }
}

/// The result of one scenario.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ScenarioResult {
    pub id: String,
    pub title: String,
    pub requirements: Vec<String>,
    pub verdict: Verdict,
    pub duration_ms: u64,
    /// The scenario's own seed (derived from the run seed and its id).
    pub seed: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure: Option<Failure>,
    /// SHOULD-level requirements not met; a pass with warnings is still a pass.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<Warning>,
    /// Kept for every verdict but a pass without warnings.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub transcript: Option<Vec<Entry>>,
    /// The tail of the IUT's stderr, for every verdict but pass.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub iut_stderr: Option<String>,
}

/// Counts by verdict.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Summary {
    pub pass: usize,
    pub fail: usize,
    pub inconclusive: usize,
    pub not_applicable: usize,
    pub error: usize,
    /// Of the passes, those with warnings.
    pub pass_with_warnings: usize,
}

impl Summary {
    /// Counts one result: its verdict, and whether it passed with warnings.
    pub fn count(&mut self, r: &ScenarioResult) {
        self.add(r.verdict);
        if r.verdict == Verdict::Pass && !r.warnings.is_empty() {
            self.pass_with_warnings += 1;
        }
    }

    pub fn add(&mut self, v: Verdict) {
        match v {
            Verdict::Pass => self.pass += 1,
            Verdict::Fail => self.fail += 1,
            Verdict::Inconclusive => self.inconclusive += 1,
            Verdict::NotApplicable => self.not_applicable += 1,
            Verdict::Error => self.error += 1,
        }
    }

    pub fn total(&self) -> usize {
        self.pass + self.fail + self.inconclusive + self.not_applicable + self.error
    }

    /// True when every applicable scenario passed.
    pub fn all_passed(&self) -> bool {
        self.fail == 0 && self.inconclusive == 0 && self.error == 0
    }
}

/// What the runner tells reporters.
#[derive(Debug)]
pub enum RunEvent<'a> {
    Started {
        total: usize,
        seed: u64,
        jobs: usize,
    },
    ScenarioFinished {
        result: &'a ScenarioResult,
        done: usize,
        total: usize,
    },
    Finished {
        summary: &'a Summary,
        elapsed: Duration,
    },
}

#[derive(Debug, Clone)]
pub struct RunOptions {
    pub seed: u64,
    pub jobs: usize,
    pub dirs: SuiteDirs,
}

/// The seed of one scenario: the run seed mixed with the scenario id, so that
/// running a scenario alone reproduces the bytes it sent in the full run.
pub fn scenario_seed(run_seed: u64, id: &str) -> u64 {
    // FNV-1a over the id, then a splitmix64 finaliser with the run seed.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in id.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    let mut z = h ^ run_seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Asks a run to stop early (SIGINT, SIGTERM): see [`run_until`].
#[derive(Debug)]
pub struct StopHandle(watch::Sender<Option<String>>);

impl StopHandle {
    /// Stops the run; `reason` (e.g. `SIGINT`) goes into the report.
    pub fn stop(&self, reason: &str) {
        self.0.send_if_modified(|r| {
            if r.is_none() {
                *r = Some(reason.to_string());
                true
            } else {
                false
            }
        });
    }
}

/// The receiving side of a [`StopHandle`].
#[derive(Debug, Clone)]
pub struct StopSignal(watch::Receiver<Option<String>>);

impl StopSignal {
    pub fn new() -> (StopHandle, StopSignal) {
        let (tx, rx) = watch::channel(None);
        (StopHandle(tx), StopSignal(rx))
    }

    /// Why the run was stopped, if it was.
    pub fn reason(&self) -> Option<String> {
        self.0.borrow().clone()
    }

    /// Resolves once the run is stopped (never, if its handle is dropped unused).
    pub async fn stopped(&mut self) -> String {
        loop {
            if let Some(r) = self.reason() {
                return r;
            }
            if self.0.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }
}

/// A scenario that was selected but not run, and why.
#[derive(Debug, Clone, serde::Serialize)]
pub struct NotRun {
    pub id: String,
    pub reason: String,
}

/// Everything a run produced.
#[derive(Debug)]
pub struct RunOutcome {
    /// Results of the scenarios that ran, in suite order.
    pub results: Vec<ScenarioResult>,
    pub summary: Summary,
    /// Scenarios not started because the run was stopped.
    pub not_run: Vec<NotRun>,
    /// Why the run was stopped early (`SIGINT`, `SIGTERM`).
    pub interrupted: Option<String>,
}

/// Runs `scenarios` against `iut`, `opts.jobs` at a time. Results come back in
/// suite order whatever order they finished in.
pub async fn run(
    scenarios: &[Scenario],
    iut: &IutConfig,
    opts: &RunOptions,
    on_event: impl FnMut(RunEvent<'_>),
) -> (Vec<ScenarioResult>, Summary) {
    let outcome = run_until(scenarios, iut, opts, None, on_event).await;
    (outcome.results, outcome.summary)
}

/// As [`run`], until `stop` fires: from then on no scenario starts, and running ones end
/// at once (inconclusive), torn down within the teardown grace.
pub async fn run_until(
    scenarios: &[Scenario],
    iut: &IutConfig,
    opts: &RunOptions,
    stop: Option<StopSignal>,
    mut on_event: impl FnMut(RunEvent<'_>),
) -> RunOutcome {
    let started = Instant::now();
    let total = scenarios.len();
    let jobs = opts.jobs.max(1);
    on_event(RunEvent::Started {
        total,
        seed: opts.seed,
        jobs,
    });
    let semaphore = Arc::new(Semaphore::new(jobs));
    let iut = Arc::new(iut.clone());
    let dirs = Arc::new(opts.dirs.clone());
    let mut set: JoinSet<(usize, Option<ScenarioResult>)> = JoinSet::new();
    let mut slots: Vec<Option<ScenarioResult>> = vec![None; total];
    let mut summary = Summary::default();
    let mut done = 0;

    for (index, scenario) in scenarios.iter().enumerate() {
        let scenario = Arc::new(scenario.clone());
        let iut = Arc::clone(&iut);
        let dirs = Arc::clone(&dirs);
        let seed = scenario_seed(opts.seed, &scenario.id);
        let permit_source = Arc::clone(&semaphore);
        let stop = stop.clone();
        set.spawn(async move {
            let _permit = permit_source.acquire_owned().await;
            if stop.as_ref().and_then(StopSignal::reason).is_some() {
                return (index, None);
            }
            (
                index,
                Some(exec::run_guarded(scenario, iut, dirs, seed, stop).await),
            )
        });
    }
    while let Some(joined) = set.join_next().await {
        let (index, result) = match joined {
            Ok((index, Some(result))) => (index, result),
            Ok((_, None)) => continue,
            // run_guarded catches panics itself; a join error here means the runtime
            // is shutting down, and the scenario's slot is filled with an error below.
            Err(_) => continue,
        };
        done += 1;
        summary.count(&result);
        on_event(RunEvent::ScenarioFinished {
            result: &result,
            done,
            total,
        });
        slots[index] = Some(result);
    }
    let interrupted = stop.as_ref().and_then(StopSignal::reason);
    let mut results = Vec::with_capacity(total);
    let mut not_run = Vec::new();
    for (slot, s) in slots.into_iter().zip(scenarios) {
        match (slot, &interrupted) {
            (Some(r), _) => results.push(r),
            (None, Some(why)) => not_run.push(NotRun {
                id: s.id.clone(),
                reason: format!("not started: the run was interrupted ({why})"),
            }),
            (None, None) => {
                summary.add(Verdict::Error);
                results.push(exec::harness_error(
                    s,
                    scenario_seed(opts.seed, &s.id),
                    "the scenario task was lost",
                ));
            }
        }
    }
    on_event(RunEvent::Finished {
        summary: &summary,
        elapsed: started.elapsed(),
    });
    RunOutcome {
        results,
        summary,
        not_run,
        interrupted,
    }
}
