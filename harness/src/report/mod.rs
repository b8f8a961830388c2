//! Reports: the run's JSON report (reports/<run-id>/report.json) and the
//! terminal reporter. Both read results only; neither knows how scenarios run.

pub mod terminal;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::runner::{NotRun, ScenarioResult, Summary};
use crate::spec::{Basis, Catalogue, Level};

/// Version of the report.json layout. 2: `interrupted`, `not_run` and `harness` added;
/// `scenarios` holds only the scenarios that ran.
pub const SCHEMA_VERSION: u32 = 2;

/// The harness process itself, measured at the end of the run.
#[derive(Debug, Clone, serde::Serialize)]
pub struct HarnessInfo {
    /// Peak resident memory of the harness process (VmHWM), when the OS reports it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peak_rss_kib: Option<u64>,
}

impl HarnessInfo {
    pub fn measure() -> HarnessInfo {
        let peak_rss_kib = std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("VmHWM:"))
                    .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            });
        HarnessInfo { peak_rss_kib }
    }
}

/// The IUT as a report names it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct IutInfo {
    pub name: String,
    pub roles: Vec<String>,
    pub features: Vec<String>,
    pub transport: String,
}

/// reports/<run-id>/report.json (architecture.md).
#[derive(Debug, serde::Serialize)]
pub struct Report<'a> {
    pub schema_version: u32,
    pub run_id: &'a str,
    pub seed: u64,
    pub harness_version: &'static str,
    pub iut: &'a IutInfo,
    pub summary: &'a Summary,
    /// Why the run stopped early (`SIGINT`, `SIGTERM`); absent when it ran to the end.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interrupted: Option<&'a str>,
    pub harness: HarnessInfo,
    pub scenarios: &'a [ScenarioResult],
    /// Selected scenarios that were not started, each with the reason.
    #[serde(skip_serializing_if = "<[NotRun]>::is_empty")]
    pub not_run: &'a [NotRun],
    /// Every requirement the run's scenarios cite or its failures name, with its basis
    /// (SPEC.md §2.1): a failure of a `profile` requirement is no violation of the RFC.
    pub requirements: BTreeMap<String, CitedRequirement>,
}

/// A requirement as report.json describes it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CitedRequirement {
    pub level: Level,
    pub basis: Basis,
    /// For a `profile` requirement: `profile requirement (not an RFC 6120 violation)`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// The requirements `results` cite or fail on, looked up in the embedded SPEC.md.
pub fn cited_requirements(results: &[ScenarioResult]) -> BTreeMap<String, CitedRequirement> {
    let catalogue = Catalogue::embedded();
    results
        .iter()
        .flat_map(|r| {
            r.requirements
                .iter()
                .chain(r.failure.as_ref().and_then(|f| f.requirement.as_ref()))
        })
        .filter_map(|id| {
            let req = catalogue.get(id)?;
            Some((
                id.clone(),
                CitedRequirement {
                    level: req.level,
                    basis: req.basis.clone(),
                    note: req.basis.verdict_note(),
                },
            ))
        })
        .collect()
}

/// A run id that sorts by time: `20261126T063000Z-s<seed>`.
pub fn run_id(seed: u64) -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    format!("{}-s{seed}", utc_stamp(secs))
}

/// Formats unix seconds as `YYYYMMDDTHHMMSSZ` (proleptic Gregorian, UTC).
pub fn utc_stamp(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}{m:02}{d:02}T{:02}{:02}{:02}Z",
        rem / 3600,
        (rem / 60) % 60,
        rem % 60
    )
}

/// Writes report.json under `dir/<run_id>/`, returning its path.
pub fn write_json(dir: &Path, report: &Report<'_>) -> std::io::Result<PathBuf> {
    let run_dir = dir.join(report.run_id);
    std::fs::create_dir_all(&run_dir)?;
    let path = run_dir.join("report.json");
    let json = serde_json::to_vec_pretty(report).map_err(std::io::Error::other)?;
    let tmp = run_dir.join("report.json.tmp");
    std::fs::write(&tmp, json)?;
    std::fs::rename(&tmp, &path)?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_stamps() {
        assert_eq!(utc_stamp(0), "19700101T000000Z");
        assert_eq!(utc_stamp(951_782_400), "20000229T000000Z");
        assert_eq!(utc_stamp(1_795_660_245), "20261126T023045Z");
    }
}
