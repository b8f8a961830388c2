//! A scenario under a watchdog independent of its steps: its own task, so that a panic is an
//! error verdict for it alone, and a hard limit (its time limit plus the teardown grace, plus
//! a little slack) after which the task is abandoned and every process it launched killed.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant as StdInstant};

use super::{Context, Exec, Outcome};
use crate::iut::IutConfig;
use crate::iut::procs;
use crate::runner::{Failure, ScenarioResult, StopSignal, Verdict, Warnings};
use crate::scenario::{Scenario, SuiteDirs};
use crate::transcript::Transcript;

/// How long teardown (closing tag, TLS close_notify, shutdown command, stderr) may take
/// after a scenario's time limit; then the connection is dropped and the IUT's processes
/// killed. A scenario ends within `scenario_ms` plus this (DRIVER.md §6).
pub const TEARDOWN_GRACE: Duration = Duration::from_secs(2);
/// Beyond the grace, the watchdog abandons the scenario's task (a harness fault).
const WATCHDOG_SLACK: Duration = Duration::from_secs(1);

/// Distinguishes the processes of concurrent launches (procs::TOKEN_ENV).
static LAUNCHES: AtomicU64 = AtomicU64::new(0);

/// Runs a scenario in its own task, under a watchdog independent of its steps: a panic
/// becomes an error verdict, and so does a task that outlives its limit plus the
/// teardown grace (its processes are killed all the same).
pub(crate) async fn run_guarded(
    scenario: Arc<Scenario>,
    iut: Arc<IutConfig>,
    dirs: Arc<SuiteDirs>,
    seed: u64,
    stop: Option<StopSignal>,
) -> ScenarioResult {
    let started = StdInstant::now();
    let transcript = Transcript::new(started);
    let token = format!(
        "{}-{}",
        std::process::id(),
        LAUNCHES.fetch_add(1, Ordering::Relaxed)
    );
    let budget = scenario_limit(&scenario, &iut) + TEARDOWN_GRACE + WATCHDOG_SLACK;
    let warnings = Warnings::default();
    let task = {
        let scenario = Arc::clone(&scenario);
        let transcript = transcript.clone();
        let token = token.clone();
        let warnings = warnings.clone();
        let ctx = Context {
            seed,
            transcript,
            token,
            stop,
            warnings,
        };
        async move { Exec::run(&scenario, &iut, &dirs, ctx).await }
    };
    let (verdict, failure, stderr) = watched(task, budget, &token).await;
    let warnings = warnings.take();
    let keep_details = verdict != Verdict::Pass || !warnings.is_empty();
    ScenarioResult {
        id: scenario.id.clone(),
        title: scenario.title.clone(),
        requirements: scenario.requirements.clone(),
        verdict,
        duration_ms: started.elapsed().as_millis() as u64,
        seed,
        failure,
        warnings,
        // Every scenario keeps its transcript (bounded per scenario by the Transcript, per
        // run by the report): a pass is evidence too.
        transcript: Some(transcript.entries()),
        iut_stderr: if keep_details {
            stderr.filter(|s| !s.is_empty())
        } else {
            None
        },
    }
}

/// The time limit of one scenario: its own, or the IUT's default.
pub(super) fn scenario_limit(scenario: &Scenario, iut: &IutConfig) -> Duration {
    scenario
        .timeout_ms
        .map(Duration::from_millis)
        .unwrap_or(iut.timeouts.scenario())
}

/// Runs a scenario's future in its own task: a panic there becomes an error
/// verdict for that scenario alone, and the run goes on. A task still running after
/// `budget` is abandoned and the processes launched under `token` killed.
async fn watched<F>(scenario: F, budget: Duration, token: &str) -> Outcome
where
    F: std::future::Future<Output = Outcome> + Send + 'static,
{
    let handle = tokio::spawn(scenario);
    let abort = handle.abort_handle();
    let joined = match tokio::time::timeout(budget, handle).await {
        Ok(joined) => joined,
        Err(_) => {
            abort.abort();
            procs::kill_token(token);
            return error_outcome(format!(
                "the scenario did not end within {} ms (its limit plus the teardown grace): the watchdog stopped it and killed the IUT",
                budget.as_millis()
            ));
        }
    };
    match joined {
        Ok(outcome) => outcome,
        Err(e) => {
            let why = if e.is_panic() {
                let p = e.into_panic();
                let msg = p
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| p.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "non-string panic payload".into());
                format!("harness panic: {msg}")
            } else {
                "scenario task cancelled".to_string()
            };
            (
                Verdict::Error,
                Some(Failure::outside_steps("a harness that does not panic", why)),
                None,
            )
        }
    }
}

/// A result for a scenario that never ran.
pub(crate) fn harness_error(s: &Scenario, seed: u64, why: &str) -> ScenarioResult {
    ScenarioResult {
        id: s.id.clone(),
        title: s.title.clone(),
        requirements: s.requirements.clone(),
        verdict: Verdict::Error,
        duration_ms: 0,
        seed,
        failure: Some(Failure::outside_steps("a scenario that runs", why)),
        warnings: Vec::new(),
        transcript: None,
        iut_stderr: None,
    }
}

pub(super) fn error_outcome(why: String) -> Outcome {
    (
        Verdict::Error,
        Some(Failure::outside_steps("a working harness", why)),
        None,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_panic_becomes_an_error_verdict() {
        let (verdict, failure, _) = watched(
            async {
                let v: Vec<u8> = Vec::new();
                // A deliberate out-of-bounds index, as a harness bug would do.
                let i = v.len() + 3;
                (Verdict::Pass, None, Some(v[i].to_string()))
            },
            Duration::from_secs(5),
            "none",
        )
        .await;
        assert_eq!(verdict, Verdict::Error);
        let got = failure.map(|f| f.got).unwrap_or_default();
        assert!(
            got.starts_with("harness panic: index out of bounds"),
            "{got}"
        );
    }

    #[tokio::test]
    async fn a_task_that_never_yields_is_stopped_by_the_watchdog() {
        let (verdict, failure, _) = watched(
            async {
                // Yields to the scheduler but never finishes, as a step stuck in a loop.
                loop {
                    tokio::task::yield_now().await;
                }
            },
            Duration::from_millis(100),
            "none",
        )
        .await;
        assert_eq!(verdict, Verdict::Error);
        assert!(failure.is_some_and(|f| f.got.contains("the watchdog stopped it")));
    }

    #[tokio::test]
    async fn an_outcome_passes_through() {
        let (verdict, failure, stderr) = watched(
            async { (Verdict::Fail, None, Some("e".into())) },
            Duration::from_secs(5),
            "none",
        )
        .await;
        assert_eq!(
            (verdict, failure, stderr.as_deref()),
            (Verdict::Fail, None, Some("e"))
        );
    }
}
