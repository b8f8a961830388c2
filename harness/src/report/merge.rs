//! `gatecheck merge`: the reports of `--partition K/N` shards of one run (one CI runner
//! each) made into the report of the whole run, in every format.
//!
//! The shards must be the complete set 1..N of one partitioning, share the seed, the IUT and
//! the harness version, and hold each scenario at most once. Scenarios come back in suite
//! order (shard K's j-th scenario was the suite selection's (j*N + K)-th); scenarios an
//! interrupted shard did not start are listed after them. The merged run's wall time is
//! the longest shard's; a baseline comparison is not carried over (rerun it on the merge).

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::{IutInfo, Report, RunFacts, SCHEMA_VERSION};
use crate::runner::{Failure, NotRun, ScenarioResult, Summary, Verdict, Warning};
use crate::transcript::{Direction, Entry};

/// A shard report that cannot be merged, or a set of shards that do not make one run.
#[derive(Debug, thiserror::Error)]
pub enum MergeError {
    #[error("{}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: {message}", path.display())]
    Invalid { path: PathBuf, message: String },
    #[error("the shards are not one run: {0}")]
    Mismatch(String),
}

#[derive(Deserialize)]
struct ShardReport {
    schema_version: u32,
    run_id: String,
    seed: u64,
    harness_version: String,
    started_at: String,
    elapsed_ms: u64,
    iut: IutInfo,
    interrupted: Option<String>,
    partition: Option<String>,
    rerun: String,
    scenarios: Vec<ShardScenario>,
    #[serde(default)]
    not_run: Vec<ShardNotRun>,
}

#[derive(Deserialize)]
struct ShardScenario {
    id: String,
    title: String,
    requirements: Vec<String>,
    verdict: String,
    duration_ms: u64,
    seed: u64,
    failure: Option<ShardFailure>,
    #[serde(default)]
    warnings: Vec<ShardWarning>,
    transcript: Option<Vec<ShardEntry>>,
    iut_stderr: Option<String>,
}

#[derive(Deserialize)]
struct ShardFailure {
    step: Option<usize>,
    line: Option<usize>,
    #[serde(default)]
    after_steps: bool,
    requirement: Option<String>,
    expected: String,
    got: String,
}

#[derive(Deserialize)]
struct ShardWarning {
    step: Option<usize>,
    line: Option<usize>,
    requirement: String,
    expected: String,
    got: String,
}

#[derive(Deserialize)]
struct ShardEntry {
    t_ms: f64,
    dir: String,
    device: Option<String>,
    data: String,
}

#[derive(Deserialize)]
struct ShardNotRun {
    id: String,
    reason: String,
}

fn verdict(s: &str) -> Option<Verdict> {
    [
        Verdict::Pass,
        Verdict::Fail,
        Verdict::Inconclusive,
        Verdict::NotApplicable,
        Verdict::Error,
    ]
    .into_iter()
    .find(|v| v.as_str() == s)
}

fn direction(s: &str) -> Option<Direction> {
    Some(match s {
        "to-iut" => Direction::ToIut,
        "from-iut" => Direction::FromIut,
        "driver-command" => Direction::DriverCommand,
        "driver-event" => Direction::DriverEvent,
        "note" => Direction::Note,
        _ => return None,
    })
}

impl ShardScenario {
    fn to_result(&self) -> Result<ScenarioResult, String> {
        let v = verdict(&self.verdict)
            .ok_or_else(|| format!("scenario {}: unknown verdict {:?}", self.id, self.verdict))?;
        let transcript = match &self.transcript {
            None => None,
            Some(entries) => Some(
                entries
                    .iter()
                    .map(|e| {
                        Ok(Entry {
                            t_ms: e.t_ms,
                            dir: direction(&e.dir).ok_or_else(|| {
                                format!(
                                    "scenario {}: unknown transcript direction {:?}",
                                    self.id, e.dir
                                )
                            })?,
                            device: e.device.clone(),
                            data: e.data.clone(),
                        })
                    })
                    .collect::<Result<Vec<_>, String>>()?,
            ),
        };
        Ok(ScenarioResult {
            id: self.id.clone(),
            title: self.title.clone(),
            requirements: self.requirements.clone(),
            verdict: v,
            duration_ms: self.duration_ms,
            seed: self.seed,
            failure: self.failure.as_ref().map(|f| Failure {
                step: f.step,
                line: f.line,
                after_steps: f.after_steps,
                requirement: f.requirement.clone(),
                expected: f.expected.clone(),
                got: f.got.clone(),
            }),
            warnings: self
                .warnings
                .iter()
                .map(|w| Warning {
                    step: w.step,
                    line: w.line,
                    requirement: w.requirement.clone(),
                    expected: w.expected.clone(),
                    got: w.got.clone(),
                })
                .collect(),
            transcript,
            iut_stderr: self.iut_stderr.clone(),
        })
    }
}

/// A shard's report.json: `path` itself, or `path/report.json` for a run directory.
fn read_shard(path: &Path) -> Result<(PathBuf, ShardReport), MergeError> {
    let file = if path.is_dir() {
        path.join("report.json")
    } else {
        path.to_path_buf()
    };
    let bytes = std::fs::read(&file).map_err(|source| MergeError::Read {
        path: file.clone(),
        source,
    })?;
    let invalid = |message: String| MergeError::Invalid {
        path: file.clone(),
        message,
    };
    let version: serde_json::Value =
        serde_json::from_slice(&bytes).map_err(|e| invalid(format!("not JSON: {e}")))?;
    if version["schema_version"] != SCHEMA_VERSION {
        return Err(invalid(format!(
            "schema_version {}, but this gatecheck merges version {SCHEMA_VERSION}",
            version["schema_version"]
        )));
    }
    let shard: ShardReport = serde_json::from_slice(&bytes)
        .map_err(|e| invalid(format!("not a gatecheck report: {e}")))?;
    debug_assert_eq!(shard.schema_version, SCHEMA_VERSION);
    Ok((file, shard))
}

/// `K/N` as numbers.
fn parse_partition(s: &str) -> Option<(usize, usize)> {
    let (k, n) = s.split_once('/')?;
    let (k, n) = (k.parse().ok()?, n.parse().ok()?);
    (k >= 1 && k <= n).then_some((k, n))
}

/// Merges shard reports (run directories or report.json files) into one report.
pub fn merge(paths: &[PathBuf]) -> Result<Report, MergeError> {
    let mut shards = Vec::new();
    for p in paths {
        shards.push(read_shard(p)?);
    }
    let Some((_, first)) = shards.first() else {
        return Err(MergeError::Mismatch("no shard given".into()));
    };
    let (seed, iut_name, version) = (
        first.seed,
        first.iut.name.clone(),
        first.harness_version.clone(),
    );
    let mut n_of_all = None;
    let mut by_k: Vec<(usize, &Path, &ShardReport)> = Vec::new();
    for (file, s) in &shards {
        let mismatch = |what: &str, a: &dyn std::fmt::Display, b: &dyn std::fmt::Display| {
            MergeError::Mismatch(format!(
                "{} has {what} {b}, the first shard {a}",
                file.display()
            ))
        };
        if s.seed != seed {
            return Err(mismatch("seed", &seed, &s.seed));
        }
        if s.iut.name != iut_name {
            return Err(mismatch("IUT", &iut_name, &s.iut.name));
        }
        if s.harness_version != version {
            return Err(mismatch("gatecheck version", &version, &s.harness_version));
        }
        let (k, n) = s
            .partition
            .as_deref()
            .and_then(parse_partition)
            .ok_or_else(|| {
                MergeError::Mismatch(format!(
                    "{} is not a shard (no --partition K/N)",
                    file.display()
                ))
            })?;
        if *n_of_all.get_or_insert(n) != n {
            return Err(MergeError::Mismatch(format!(
                "{} is shard {k}/{n}, the others are of {}",
                file.display(),
                n_of_all.unwrap_or(n)
            )));
        }
        if let Some((_, other, _)) = by_k.iter().find(|(kk, _, _)| *kk == k) {
            return Err(MergeError::Mismatch(format!(
                "shard {k}/{n} given twice: {} and {}",
                other.display(),
                file.display()
            )));
        }
        by_k.push((k, file, s));
    }
    let n = n_of_all.unwrap_or(1);
    let missing: Vec<String> = (1..=n)
        .filter(|k| !by_k.iter().any(|(kk, _, _)| kk == k))
        .map(|k| format!("{k}/{n}"))
        .collect();
    if !missing.is_empty() {
        return Err(MergeError::Mismatch(format!(
            "shard(s) {} missing",
            missing.join(", ")
        )));
    }
    by_k.sort_by_key(|(k, _, _)| *k);

    // Suite order: shard k's j-th scenario was at j*n + (k-1).
    let mut placed: Vec<(usize, ScenarioResult)> = Vec::new();
    let mut not_run = Vec::new();
    let mut seen = std::collections::BTreeMap::new();
    let (_, _, head) = by_k[0];
    for (k, file, s) in &by_k {
        for (j, sc) in s.scenarios.iter().enumerate() {
            if let Some(other) = seen.insert(sc.id.clone(), file.to_path_buf()) {
                return Err(MergeError::Mismatch(format!(
                    "scenario {} is in {} and in {}",
                    sc.id,
                    other.display(),
                    file.display()
                )));
            }
            let result = sc.to_result().map_err(|message| MergeError::Invalid {
                path: file.to_path_buf(),
                message,
            })?;
            placed.push((j * n + (k - 1), result));
        }
        not_run.extend(s.not_run.iter().map(|r| NotRun {
            id: r.id.clone(),
            reason: r.reason.clone(),
        }));
    }
    placed.sort_by_key(|(at, _)| *at);
    let results: Vec<ScenarioResult> = placed.into_iter().map(|(_, r)| r).collect();
    let mut summary = Summary::default();
    for r in &results {
        summary.count(r);
    }
    let started_at = by_k
        .iter()
        .map(|(_, _, s)| s.started_at.as_str())
        .min()
        .unwrap_or_default()
        .to_string();
    let earliest_run = by_k
        .iter()
        .map(|(_, _, s)| s.run_id.as_str())
        .min()
        .unwrap_or_default();
    let suffix = format!(" --seed {seed}");
    let rerun_prefix = head
        .rerun
        .strip_suffix(&suffix)
        .unwrap_or(&head.rerun)
        .to_string();
    let mut report = Report::new(RunFacts {
        run_id: format!("{earliest_run}-merged"),
        seed,
        started_at: std::time::UNIX_EPOCH,
        elapsed_ms: by_k.iter().map(|(_, _, s)| s.elapsed_ms).max().unwrap_or(0),
        iut: head.iut.clone(),
        summary,
        interrupted: by_k.iter().find_map(|(_, _, s)| s.interrupted.clone()),
        partition: None,
        rerun_prefix,
        results,
        not_run,
    });
    report.started_at = started_at;
    report.merged_from = by_k
        .iter()
        .map(|(_, _, s)| format!("{} ({})", s.run_id, s.partition.as_deref().unwrap_or("")))
        .collect();
    report.harness = Default::default();
    Ok(report)
}
