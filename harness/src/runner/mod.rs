//! The scenario runner: plays scenarios against IUT instances in parallel and
//! emits events; reporters (terminal, JSON) consume them and know nothing of
//! how scenarios run (after cargo-nextest's runner/reporter split).

mod exec;

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;

use crate::iut::IutConfig;
use crate::scenario::{Scenario, SuiteDirs};
pub use crate::transcript::{Direction, Entry, Transcript};
pub use crate::verdict::{Failure, ScenarioResult, Summary, Verdict, Warning, Warnings};
pub use exec::TEARDOWN_GRACE;

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
