//! The scenario runner: plays scenarios against IUT instances in parallel and
//! emits events; reporters (terminal, JSON) consume them and know nothing of
//! how scenarios run (after cargo-nextest's runner/reporter split).

pub mod conn;
mod exec;
pub mod transcript;

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::iut::IutConfig;
use crate::scenario::{Scenario, SuiteDirs};
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
    /// The SPEC.md requirement the deviation violates.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub requirement: Option<String>,
    pub expected: String,
    pub got: String,
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
    /// Kept for every verdict but pass.
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
}

impl Summary {
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

/// Runs `scenarios` against `iut`, `opts.jobs` at a time. Results come back in
/// suite order whatever order they finished in.
pub async fn run(
    scenarios: &[Scenario],
    iut: &IutConfig,
    opts: &RunOptions,
    mut on_event: impl FnMut(RunEvent<'_>),
) -> (Vec<ScenarioResult>, Summary) {
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
    let mut set: JoinSet<(usize, ScenarioResult)> = JoinSet::new();
    let mut slots: Vec<Option<ScenarioResult>> = vec![None; total];
    let mut summary = Summary::default();
    let mut done = 0;

    for (index, scenario) in scenarios.iter().enumerate() {
        let scenario = Arc::new(scenario.clone());
        let iut = Arc::clone(&iut);
        let dirs = Arc::clone(&dirs);
        let seed = scenario_seed(opts.seed, &scenario.id);
        let permit_source = Arc::clone(&semaphore);
        set.spawn(async move {
            let _permit = permit_source.acquire_owned().await;
            (index, exec::run_guarded(scenario, iut, dirs, seed).await)
        });
    }
    while let Some(joined) = set.join_next().await {
        let (index, result) = match joined {
            Ok(r) => r,
            // run_guarded catches panics itself; a join error here means the runtime
            // is shutting down, and the scenario's slot is filled with an error below.
            Err(_) => continue,
        };
        done += 1;
        summary.add(result.verdict);
        on_event(RunEvent::ScenarioFinished {
            result: &result,
            done,
            total,
        });
        slots[index] = Some(result);
    }
    let results: Vec<ScenarioResult> = slots
        .into_iter()
        .zip(scenarios)
        .map(|(slot, s)| {
            slot.unwrap_or_else(|| {
                summary.add(Verdict::Error);
                exec::harness_error(
                    s,
                    scenario_seed(opts.seed, &s.id),
                    "the scenario task was lost",
                )
            })
        })
        .collect();
    on_event(RunEvent::Finished {
        summary: &summary,
        elapsed: started.elapsed(),
    });
    (results, summary)
}
