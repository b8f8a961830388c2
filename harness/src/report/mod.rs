//! Reports: everything a run leaves in reports/<run-id>/ (report.json, junit.xml,
//! summary.md, index.html), the terminal reporter, and the expected-results baseline.
//! They read results only; none knows how scenarios run.
//!
//! Every file is written atomically (a temporary file beside it, then a rename), so a
//! failed write (a full disk) leaves whatever was there before intact.

pub mod baseline;
pub mod certify;
pub mod html;
pub mod junit;
pub mod markdown;
pub mod merge;
pub mod terminal;
mod text;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::runner::{NotRun, ScenarioResult, Summary, Verdict};
use crate::spec::{Basis, Catalogue, Level};
use crate::transcript::{Direction, Entry};

/// Version of the report.json layout (documented in SCHEMA.md beside this file).
/// 2: `interrupted`, `not_run` and `harness` added; `scenarios` holds only the scenarios
/// that ran. 3: `started_at`, `elapsed_ms`, `rerun` (and per scenario `rerun`),
/// `partition`, `transcripts_dropped` and `baseline` added; every scenario keeps its
/// transcript.
pub const SCHEMA_VERSION: u32 = 3;

/// Transcript bytes one report keeps over all its scenarios (each scenario's own is bounded
/// by [`crate::transcript::MAX_TRANSCRIPT_BYTES`]). Past it, transcripts of clean passes go
/// first, then the others, latest scenario first.
pub const MAX_RUN_TRANSCRIPT_BYTES: usize = 32 * 1024 * 1024;

/// The file names of a report directory, in the order they are written.
pub const FILES: [&str; 4] = ["report.json", "junit.xml", "summary.md", "index.html"];

/// The harness process itself, measured at the end of the run.
#[derive(Debug, Clone, Default, serde::Serialize)]
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
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct IutInfo {
    pub name: String,
    pub roles: Vec<String>,
    pub features: Vec<String>,
    pub transport: String,
}

/// One scenario's result as the report carries it: the result and the command that
/// reruns it alone.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ReportedScenario {
    #[serde(flatten)]
    pub result: ScenarioResult,
    /// `<rerun> --scenario <id>`: the scenario alone, with the same seed.
    pub rerun: String,
}

/// Everything a run's report holds; every format is made from it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Report {
    pub schema_version: u32,
    pub run_id: String,
    pub seed: u64,
    pub harness_version: String,
    /// When the run started, RFC 3339 in UTC.
    pub started_at: String,
    /// Wall time of the run.
    pub elapsed_ms: u64,
    pub iut: IutInfo,
    pub summary: Summary,
    /// Why the run stopped early (`SIGINT`, `SIGTERM`); absent when it ran to the end.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interrupted: Option<String>,
    /// `K/N` when the run was one shard of the suite (`--partition`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub partition: Option<String>,
    pub harness: HarnessInfo,
    /// The command that reruns the run's selection (without `--filter`): the IUT options
    /// and the seed. Append `--scenario ID` for one scenario.
    pub rerun: String,
    pub scenarios: Vec<ReportedScenario>,
    /// Selected scenarios that were not started, each with the reason.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub not_run: Vec<NotRun>,
    /// Transcripts left out to keep the report under [`MAX_RUN_TRANSCRIPT_BYTES`].
    #[serde(skip_serializing_if = "is_zero")]
    pub transcripts_dropped: usize,
    /// Every requirement the run's scenarios cite or its failures name, with its basis
    /// (SPEC.md §2.1): a failure of a `profile` requirement is no violation of the RFC.
    pub requirements: BTreeMap<String, CitedRequirement>,
    /// For a report merged from shards (`gatecheck merge`): each shard's run id and `K/N`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub merged_from: Vec<String>,
    /// The comparison with `--baseline FILE`, when one was given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub baseline: Option<baseline::Comparison>,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// What a run produced, as [`Report::new`] takes it.
#[derive(Debug)]
pub struct RunFacts {
    pub run_id: String,
    pub seed: u64,
    pub started_at: SystemTime,
    pub elapsed_ms: u64,
    pub iut: IutInfo,
    pub summary: Summary,
    pub interrupted: Option<String>,
    pub partition: Option<(usize, usize)>,
    /// The rerun command up to (not including) `--seed`.
    pub rerun_prefix: String,
    pub results: Vec<ScenarioResult>,
    pub not_run: Vec<NotRun>,
}

impl Report {
    /// The report of a run: transcripts bounded, requirements looked up, reruns spelled out.
    pub fn new(facts: RunFacts) -> Report {
        Report::new_in(facts, Catalogue::embedded())
    }

    /// As [`Report::new`], the requirements looked up in `catalogue`.
    pub fn new_in(facts: RunFacts, catalogue: &Catalogue) -> Report {
        let mut results = facts.results;
        let transcripts_dropped = bound_transcripts(&mut results, MAX_RUN_TRANSCRIPT_BYTES);
        let requirements = cited_requirements_in(catalogue, &results);
        let rerun = format!("{} --seed {}", facts.rerun_prefix, facts.seed);
        let scenarios = results
            .into_iter()
            .map(|result| ReportedScenario {
                rerun: format!("{rerun} --scenario {}", result.id),
                result,
            })
            .collect();
        Report {
            schema_version: SCHEMA_VERSION,
            run_id: facts.run_id,
            seed: facts.seed,
            harness_version: env!("CARGO_PKG_VERSION").to_string(),
            started_at: rfc3339(unix_secs(facts.started_at)),
            elapsed_ms: facts.elapsed_ms,
            iut: facts.iut,
            summary: facts.summary,
            interrupted: facts.interrupted,
            partition: facts.partition.map(|(k, n)| format!("{k}/{n}")),
            harness: HarnessInfo::measure(),
            rerun,
            scenarios,
            not_run: facts.not_run,
            transcripts_dropped,
            requirements,
            merged_from: Vec::new(),
            baseline: None,
        }
    }

    /// The area of a scenario: the part of its id before the first `/` (`stream`).
    pub fn area(id: &str) -> &str {
        id.split_once('/').map_or(id, |(a, _)| a)
    }
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
    cited_requirements_in(Catalogue::embedded(), results)
}

/// As [`cited_requirements`], looked up in `catalogue`.
pub fn cited_requirements_in(
    catalogue: &Catalogue,
    results: &[ScenarioResult],
) -> BTreeMap<String, CitedRequirement> {
    results
        .iter()
        .flat_map(|r| {
            r.requirements
                .iter()
                .chain(r.failure.as_ref().and_then(|f| f.requirement.as_ref()))
                .chain(r.warnings.iter().map(|w| &w.requirement))
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

/// The words of the note that replaces a transcript left out.
const LEFT_OUT: &str = "left out: the report keeps";

/// Bytes a transcript takes in a report, roughly: its data and a little per entry.
fn transcript_bytes(entries: &[Entry]) -> usize {
    entries.iter().map(|e| e.data.len() + 48).sum()
}

/// Keeps the transcripts of `results` within `budget` bytes: clean passes lose theirs
/// first, then the rest, latest scenario first. Each dropped transcript is replaced by one
/// note saying so. Returns how many were dropped.
pub fn bound_transcripts(results: &mut [ScenarioResult], budget: usize) -> usize {
    let mut total: usize = results
        .iter()
        .filter_map(|r| r.transcript.as_deref())
        .map(transcript_bytes)
        .sum();
    if total <= budget {
        return 0;
    }
    let clean = |r: &ScenarioResult| r.verdict == Verdict::Pass && r.warnings.is_empty();
    let mut order: Vec<usize> = (0..results.len())
        .rev()
        .filter(|&i| clean(&results[i]))
        .collect();
    order.extend((0..results.len()).rev().filter(|&i| !clean(&results[i])));
    let mut dropped = 0;
    for i in order {
        if total <= budget {
            break;
        }
        let Some(entries) = results[i].transcript.as_ref() else {
            continue;
        };
        let already = matches!(entries.as_slice(), [e] if e.dir == Direction::Note && e.data.contains(LEFT_OUT));
        if already {
            continue;
        }
        let size = transcript_bytes(entries);
        let note = Entry {
            t_ms: 0.0,
            dir: Direction::Note,
            device: None,
            data: format!(
                "transcript of {size} bytes {LEFT_OUT} at most {budget} bytes of transcripts"
            ),
        };
        let note_size = transcript_bytes(std::slice::from_ref(&note));
        if size <= note_size {
            // Nothing to gain (an empty transcript, or one already left out).
            continue;
        }
        total = total - size + note_size;
        results[i].transcript = Some(vec![note]);
        dropped += 1;
    }
    dropped
}

/// A run id that sorts by time: `20261126T063000Z-s<seed>`.
pub fn run_id(seed: u64) -> String {
    format!("{}-s{seed}", utc_stamp(unix_secs(SystemTime::now())))
}

fn unix_secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Unix seconds as (year, month, day, hour, minute, second), proleptic Gregorian, UTC.
fn civil(secs: u64) -> (i64, i64, i64, u64, u64, u64) {
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
    (y, m, d, rem / 3600, (rem / 60) % 60, rem % 60)
}

/// Formats unix seconds as `YYYYMMDDTHHMMSSZ`.
pub fn utc_stamp(secs: u64) -> String {
    let (y, m, d, hh, mm, ss) = civil(secs);
    format!("{y:04}{m:02}{d:02}T{hh:02}{mm:02}{ss:02}Z")
}

/// Formats unix seconds as RFC 3339 in UTC: `2026-11-26T06:30:00Z`.
pub fn rfc3339(secs: u64) -> String {
    let (y, m, d, hh, mm, ss) = civil(secs);
    format!("{y:04}-{m:02}-{d:02}T{hh:02}:{mm:02}:{ss:02}Z")
}

/// A report file that could not be written.
#[derive(Debug, thiserror::Error)]
#[error("cannot write {}: {source}", path.display())]
pub struct WriteError {
    pub path: PathBuf,
    #[source]
    pub source: std::io::Error,
}

/// Replaces `path` with what `fill` writes, atomically: into a temporary file in the same
/// directory, flushed to disk, then renamed over `path`. On any error the temporary file is
/// removed and `path` is left as it was.
pub fn replace_file(
    path: &Path,
    fill: impl FnOnce(&mut dyn Write) -> std::io::Result<()>,
) -> Result<(), WriteError> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.{}.tmp", std::process::id()));
    let attempt = (|| {
        let file = std::fs::File::create(&tmp)?;
        let mut out = std::io::BufWriter::new(file);
        fill(&mut out)?;
        let file = out.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    attempt.map_err(|source| {
        let _ = std::fs::remove_file(&tmp);
        WriteError {
            path: path.to_path_buf(),
            source,
        }
    })
}

/// Writes every format of `report` under `dir/<run_id>/`, returning that directory. Each file is replaced atomically; a file that cannot be written
/// does not stop the others, and every failure is returned.
pub fn write_all(dir: &Path, report: &Report) -> Result<PathBuf, Vec<WriteError>> {
    let run_dir = dir.join(&report.run_id);
    if let Err(source) = std::fs::create_dir_all(&run_dir) {
        return Err(vec![WriteError {
            path: run_dir,
            source,
        }]);
    }
    let mut errors = Vec::new();
    for name in FILES {
        let path = run_dir.join(name);
        let written = replace_file(&path, |out| render(name, report, out));
        if let Err(e) = written {
            errors.push(e);
        }
    }
    if errors.is_empty() {
        Ok(run_dir)
    } else {
        Err(errors)
    }
}

/// Writes the format named by its file name (one of [`FILES`]).
pub fn render(name: &str, report: &Report, out: &mut dyn Write) -> std::io::Result<()> {
    match name {
        "report.json" => {
            serde_json::to_writer_pretty(&mut *out, report).map_err(std::io::Error::other)?;
            out.write_all(b"\n")
        }
        "junit.xml" => junit::write(report, out),
        "summary.md" => out.write_all(markdown::render(report).as_bytes()),
        "index.html" => out.write_all(html::render(report, Catalogue::embedded()).as_bytes()),
        other => Err(std::io::Error::other(format!("no report format {other}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_stamps() {
        assert_eq!(utc_stamp(0), "19700101T000000Z");
        assert_eq!(utc_stamp(951_782_400), "20000229T000000Z");
        assert_eq!(utc_stamp(1_795_660_245), "20261126T023045Z");
        assert_eq!(rfc3339(1_795_660_245), "2026-11-26T02:30:45Z");
    }

    fn dir(name: &str) -> PathBuf {
        let d =
            std::env::temp_dir().join(format!("gatecheck-report-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).expect("temp dir");
        d
    }

    #[test]
    fn a_failed_write_leaves_the_previous_file_and_no_temporary() {
        let d = dir("atomic");
        let path = d.join("report.json");
        replace_file(&path, |out| out.write_all(b"old report")).expect("first write");
        let err = replace_file(&path, |out| {
            out.write_all(&[b'x'; 100_000])?;
            Err(std::io::Error::from_raw_os_error(28)) // ENOSPC, as a full disk gives
        })
        .expect_err("the write fails");
        let message = err.to_string();
        assert!(
            message.starts_with(&format!("cannot write {}: ", path.display())),
            "{message}"
        );
        assert!(message.contains("No space left on device"), "{message}");
        assert_eq!(std::fs::read(&path).expect("still there"), b"old report");
        let left: Vec<_> = std::fs::read_dir(&d).expect("dir").collect();
        assert_eq!(left.len(), 1, "the temporary file is removed");
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn a_directory_that_cannot_be_made_is_named() {
        let d = dir("nodir");
        let blocker = d.join("reports");
        std::fs::write(&blocker, b"a file where the directory should be").expect("write");
        let report = fixed::fixed_report();
        let errs = write_all(&blocker, &report).expect_err("cannot create");
        assert_eq!(errs.len(), 1);
        assert!(
            errs[0].to_string().contains(&blocker.display().to_string()),
            "{}",
            errs[0]
        );
        let _ = std::fs::remove_dir_all(&d);
    }

    fn result(id: &str, verdict: Verdict, bytes: usize) -> ScenarioResult {
        ScenarioResult {
            id: id.into(),
            title: "t".into(),
            requirements: vec![],
            verdict,
            duration_ms: 1,
            seed: 1,
            failure: None,
            warnings: vec![],
            transcript: Some(vec![Entry {
                t_ms: 0.0,
                dir: Direction::ToIut,
                device: None,
                data: "x".repeat(bytes),
            }]),
            iut_stderr: None,
        }
    }

    #[test]
    fn the_run_bound_drops_clean_passes_first() {
        let mut rs = vec![
            result("a/fail", Verdict::Fail, 1000),
            result("a/pass1", Verdict::Pass, 1000),
            result("a/pass2", Verdict::Pass, 1000),
        ];
        assert_eq!(bound_transcripts(&mut rs, 10_000), 0);
        let dropped = bound_transcripts(&mut rs, 2400);
        assert_eq!(dropped, 1);
        let len = |r: &ScenarioResult| r.transcript.as_ref().map_or(0, |t| t[0].data.len());
        assert_eq!(len(&rs[0]), 1000, "the failure keeps its transcript");
        assert_eq!(len(&rs[1]), 1000);
        assert!(
            rs[2].transcript.as_ref().expect("note")[0]
                .data
                .contains("left out")
        );
        assert_eq!(bound_transcripts(&mut rs, 500), 2);
        assert!(
            rs[0].transcript.as_ref().expect("note")[0]
                .data
                .contains("left out")
        );
    }
}

/// A fixed report (seed, times, one scenario of each verdict) for the format tests.
#[doc(hidden)]
pub mod fixed;
