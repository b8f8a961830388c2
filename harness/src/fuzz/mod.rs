//! `gatecheck fuzz`: stanza fuzzing of a client IUT over the wire, through the gatekeeper role.
//!
//! Every case ([`cases`]) becomes a scenario file of the ordinary format (a session, the case's
//! bytes as a fixture, then the SPEC.md answer it calls for: a ping answered, or a stream error
//! and a close) and runs through the ordinary runner, so a finding is a reproducer by
//! construction: `reports/fuzz/<id>/` holds the scenario and its fixture, and
//! `gatecheck run --scenarios reports/fuzz/<id>/scenarios` reruns it. Findings are
//! de-duplicated by a signature (verdict, requirement, step, the kind of answer expected); with
//! `--corpus DIR` the campaign starts from the files in DIR and adds each finding's input there,
//! so the next campaign resumes from it. Ctrl-C and `--duration` end it after the cases in
//! flight, with everything written.

pub mod cases;

use std::collections::HashSet;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::exit;
use crate::iut::IutConfig;
use crate::runner::{self, RunOptions, StopSignal};
use crate::scenario::{Scenario, SuiteDirs};
use crate::spec::Catalogue;
use crate::verdict::{ScenarioResult, Verdict};
use cases::{Case, Expect, Generator};

#[derive(Debug, clap::Args)]
pub struct FuzzArgs {
    /// iut.toml of the client implementation (default: the bundled reference provider).
    #[arg(long, value_name = "FILE")]
    pub iut: Option<PathBuf>,
    /// Without --iut: the reference provider with this deliberate bug.
    #[arg(long, value_name = "NAME")]
    pub mutant: Option<String>,
    /// How long to fuzz: seconds, or a number with s, m or h (`90s`, `10m`, `8h`).
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Seed of the case generator (printed; the same seed makes the same cases).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Inputs to start from (every file below DIR), and where findings' inputs are added.
    /// Default: the bundled stanza fixtures only.
    #[arg(long, value_name = "DIR")]
    pub corpus: Option<PathBuf>,
    /// Cases run at once, each against its own IUT process (default: the number of cores).
    #[arg(long)]
    pub jobs: Option<usize>,
    /// Stop once this many new findings were written (default: run for the whole duration).
    #[arg(long, value_name = "N")]
    pub max_findings: Option<usize>,
    /// Where findings are written.
    #[arg(long, default_value = "reports/fuzz", value_name = "DIR")]
    pub out: PathBuf,
}

/// `90`, `90s`, `10m`, `8h`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let (number, unit) = match s.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((i, _)) => s.split_at(i),
        None => (s, "s"),
    };
    let n: u64 = number
        .parse()
        .map_err(|_| format!("{s:?}: expected a number of seconds, or 90s, 10m, 8h"))?;
    let secs = match unit {
        "s" => n,
        "m" => n.saturating_mul(60),
        "h" => n.saturating_mul(3600),
        _ => return Err(format!("{s:?}: the unit must be s, m or h")),
    };
    Ok(Duration::from_secs(secs))
}

/// Reads every file below `dir` (skipping files over 1 MiB).
fn read_corpus(dir: &Path, out: &mut Vec<Vec<u8>>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            read_corpus(&path, out);
        } else if entry.metadata().is_ok_and(|m| m.len() <= 1 << 20)
            && let Ok(bytes) = std::fs::read(&path)
        {
            out.push(bytes);
        }
    }
}

/// The bundled stanza fixtures (good and bad; `.gen` recipes left out).
fn bundled_corpus() -> Vec<Vec<u8>> {
    crate::bundle::files()
        .iter()
        .filter(|(name, _)| name.starts_with("fixtures/stanzas/") && !name.ends_with(".gen"))
        .filter(|(name, _)| !name.ends_with(".md"))
        .map(|(_, bytes)| bytes.to_vec())
        .collect()
}

/// The scenario file of a case (its fixture is `fuzz/<id>.bin`).
fn scenario_text(id: &str, case: &Case) -> String {
    let how = case.how.replace(['"', '\\'], "'");
    let head = |title: &str, requirements: &str| {
        format!(
            "id = \"fuzz/{id}\"\ntitle = \"gatecheck fuzz ({how}): {title}\"\n\
             requirements = [{requirements}]\nrole = \"client\"\n"
        )
    };
    let send =
        format!("\n[[step]]\nsession = {{}}\n\n[[step]]\nsend_fixture = \"fuzz/{id}.bin\"\n");
    match &case.expect {
        Expect::Live => format!(
            "{}# Stanza errors, results, messages and presence the case may cause are allowed.\n\
             ignore = [\"<iq type='error'/>\", \"<iq type='result'/>\", \"<message/>\", \"<presence/>\"]\n\
             {send}\n[[step]]\n\
             send = \"<iq type='get' id='${{rand:probe}}' from='${{gk.domain}}' to='${{client.jid}}'><ping xmlns='urn:xmpp:ping'/></iq>\"\n\n\
             [[step]]\nexpect = \"<iq type='result' id='${{rand:probe}}'/>\"\n",
            head(
                "the IUT keeps serving (a ping after it is answered)",
                "\"STANZA-7\", \"STREAM-31\""
            )
        ),
        Expect::StreamError(conditions) => {
            let first = conditions.first().map_or("", String::as_str);
            let requirements = match first {
                "not-well-formed" => "\"STREAM-30\", \"STREAM-24\"",
                "unsupported-stanza-type" => "\"STANZA-1\", \"STREAM-24\"",
                "bad-format" => "\"STANZA-2\", \"STREAM-24\"",
                "restricted-xml" => "\"STREAM-41\", \"STREAM-24\"",
                _ => "\"STREAM-24\"",
            };
            let list = conditions
                .iter()
                .map(|c| format!("\"{c}\""))
                .collect::<Vec<_>>()
                .join(", ");
            // restricted-xml is a SHOULD (STREAM-41): another condition passes with a warning.
            let expect = if first == "restricted-xml" {
                format!("{{ pass = [{list}], warn = [\"*\"], should = \"STREAM-41\" }}")
            } else {
                format!("[{list}]")
            };
            format!(
                "{}{send}\n[[step]]\nexpect_stream_error = {expect}\n\n\
                 [[step]]\nexpect_closed = {{ close_tag = true }}\nrequirement = \"STREAM-24\"\n",
                head(
                    &format!("refused with the stream error {first}"),
                    requirements
                )
            )
        }
    }
}

/// What makes two findings the same.
fn signature(result: &ScenarioResult, expect: &Expect) -> String {
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
        failure.and_then(|f| f.step).unwrap_or(0),
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

/// Counts of a campaign.
#[derive(Debug, Default)]
struct Tally {
    cases: usize,
    findings: usize,
    repeats: usize,
    inconclusive: usize,
}

pub fn run(args: FuzzArgs) -> i32 {
    let iut = match (&args.iut, &args.mutant) {
        (Some(path), _) => IutConfig::load(path),
        (None, m) => IutConfig::reference(m.as_deref()),
    };
    let iut = match iut {
        Ok(i) => i,
        Err(e) => {
            eprintln!("gatecheck: error: {e}");
            return exit::ERROR;
        }
    };
    if !iut.roles.contains(&crate::scenario::Role::Client) {
        eprintln!("gatecheck: error: gatecheck fuzz needs an IUT with the client role");
        return exit::ERROR;
    }
    let runtime = match exit::runtime() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("gatecheck: error: {e}");
            return exit::ERROR;
        }
    };
    runtime.block_on(campaign(args, iut))
}

async fn campaign(args: FuzzArgs, iut: IutConfig) -> i32 {
    let seed = args.seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1)
    });
    let mut corpus = bundled_corpus();
    if let Some(dir) = &args.corpus {
        read_corpus(dir, &mut corpus);
    }
    let mut generator = Generator::new(seed, corpus);
    let jobs = args
        .jobs
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .max(1);
    let work = args.out.join(format!(".work-{seed}"));
    let dirs = SuiteDirs {
        scenarios: work.join("scenarios"),
        fixtures: work.join("fixtures"),
    };
    for dir in [dirs.scenarios.join("fuzz"), dirs.fixtures.join("fuzz")] {
        if let Err(e) = std::fs::create_dir_all(&dir) {
            eprintln!("gatecheck: error: {}: {e}", dir.display());
            return exit::ERROR;
        }
    }
    let mut seen: HashSet<String> = HashSet::new();
    if let Ok(entries) = std::fs::read_dir(&args.out) {
        seen.extend(entries.flatten().filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            (!name.starts_with('.')).then_some(name)
        }));
    }
    let (stop_handle, stop) = StopSignal::new();
    let stop_handle = Arc::new(stop_handle);
    {
        let handle = Arc::clone(&stop_handle);
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                handle.stop("SIGINT");
            }
        });
    }
    eprintln!(
        "gatecheck fuzz: seed {seed}, {} for {}s, {jobs} at a time, corpus {} inputs, findings in {}",
        iut.name,
        args.duration.as_secs(),
        generator.corpus_len(),
        args.out.display()
    );
    let started = Instant::now();
    let mut tally = Tally::default();
    let catalogue = Catalogue::embedded();
    let enough = |tally: &Tally| args.max_findings.is_some_and(|n| tally.findings >= n);
    while started.elapsed() < args.duration && stop.reason().is_none() && !enough(&tally) {
        let mut batch: Vec<(Scenario, Case, String)> = Vec::new();
        for _ in 0..jobs {
            let Some(case) = generator.next_case() else {
                break;
            };
            let id = format!("c{}-{}", seed % 100_000, tally.cases + batch.len());
            let fixture = dirs.fixtures.join("fuzz").join(format!("{id}.bin"));
            let path = dirs.scenarios.join("fuzz").join(format!("{id}.toml"));
            let text = scenario_text(&id, &case);
            if let Err(e) = std::fs::write(&fixture, &case.bytes).and(std::fs::write(&path, &text))
            {
                eprintln!("gatecheck: error: {}: {e}", work.display());
                return exit::ERROR;
            }
            match Scenario::parse(&path, &text, catalogue, &dirs) {
                Ok(s) => batch.push((s, case, text)),
                Err(e) => {
                    eprintln!("gatecheck: error: a generated scenario does not load: {e:?}");
                    return exit::ERROR;
                }
            }
        }
        if batch.is_empty() {
            eprintln!("gatecheck fuzz: the corpus gives no usable case");
            break;
        }
        let scenarios: Vec<Scenario> = batch.iter().map(|(s, _, _)| s.clone()).collect();
        let opts = RunOptions {
            seed,
            jobs,
            dirs: dirs.clone(),
        };
        let outcome = runner::run_until(&scenarios, &iut, &opts, Some(stop.clone()), |_| {}).await;
        for (result, (_, case, text)) in outcome.results.iter().zip(&batch) {
            tally.cases += 1;
            match result.verdict {
                Verdict::Pass | Verdict::NotApplicable => {}
                Verdict::Inconclusive => tally.inconclusive += 1,
                Verdict::Fail | Verdict::Error => {
                    let sig = signature(result, &case.expect);
                    let name = short_hash(&sig);
                    if !seen.insert(name.clone()) {
                        tally.repeats += 1;
                        continue;
                    }
                    tally.findings += 1;
                    match write_finding(&args, &name, &sig, seed, result, case, text) {
                        Ok(dir) => eprintln!(
                            "gatecheck fuzz: finding {}: {sig}\n  rerun: gatecheck run --scenarios {}{}",
                            name,
                            dir.join("scenarios").display(),
                            rerun_iut(&args)
                        ),
                        Err(e) => eprintln!("gatecheck: error: writing a finding: {e}"),
                    }
                    if let Some(dir) = &args.corpus {
                        let _ = std::fs::write(dir.join(format!("finding-{name}")), &case.bytes);
                    }
                    generator.keep(case.bytes.clone());
                }
            }
        }
        let secs = started.elapsed().as_secs_f64().max(0.001);
        eprintln!(
            "gatecheck fuzz: {} cases, {:.1}/s, {} findings ({} repeats), {} inconclusive, corpus {}",
            tally.cases,
            tally.cases as f64 / secs,
            tally.findings,
            tally.repeats,
            tally.inconclusive,
            generator.corpus_len()
        );
    }
    let _ = std::fs::remove_dir_all(&work);
    if let Some(reason) = stop.reason() {
        eprintln!("gatecheck fuzz: stopped ({reason})");
    }
    if tally.findings > 0 {
        exit::FAILED
    } else {
        exit::OK
    }
}

fn rerun_iut(args: &FuzzArgs) -> String {
    match (&args.iut, &args.mutant) {
        (Some(p), _) => format!(" --iut {}", p.display()),
        (None, Some(m)) => format!(" --mutant {m}"),
        (None, None) => String::new(),
    }
}

/// Writes `reports/fuzz/<name>/`: the scenario and fixture (a suite of one), the input, the
/// result with its transcript, and a summary.
fn write_finding(
    args: &FuzzArgs,
    name: &str,
    sig: &str,
    seed: u64,
    result: &ScenarioResult,
    case: &Case,
    text: &str,
) -> std::io::Result<PathBuf> {
    let dir = args.out.join(name);
    let scenarios = dir.join("scenarios").join("fuzz");
    let fixtures = dir.join("fixtures").join("fuzz");
    std::fs::create_dir_all(&scenarios)?;
    std::fs::create_dir_all(&fixtures)?;
    // The scenario's id follows its new place: fuzz/<name>.
    let id = result.id.trim_start_matches("fuzz/");
    let text = text
        .replace(&format!("fuzz/{id}.bin"), &format!("fuzz/{name}.bin"))
        .replace(&format!("\"fuzz/{id}\""), &format!("\"fuzz/{name}\""));
    std::fs::write(scenarios.join(format!("{name}.toml")), text)?;
    std::fs::write(fixtures.join(format!("{name}.bin")), &case.bytes)?;
    std::fs::write(dir.join("input.bin"), &case.bytes)?;
    let json = serde_json::to_vec_pretty(result).map_err(std::io::Error::other)?;
    std::fs::write(dir.join("result.json"), json)?;
    let mut summary = std::fs::File::create(dir.join("finding.txt"))?;
    writeln!(summary, "signature: {sig}")?;
    writeln!(summary, "case: {}", case.how)?;
    writeln!(summary, "campaign seed: {seed}")?;
    if let Some(f) = &result.failure {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_documented() {
        assert_eq!(parse_duration("90"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_duration("8h"), Ok(Duration::from_secs(8 * 3600)));
        assert!(parse_duration("8d").is_err());
        assert!(parse_duration("m").is_err());
    }

    #[test]
    fn every_kind_of_case_makes_a_scenario_that_loads() {
        let dir = std::env::temp_dir().join(format!("gatecheck-fuzz-unit-{}", std::process::id()));
        let dirs = SuiteDirs {
            scenarios: dir.join("scenarios"),
            fixtures: dir.join("fixtures"),
        };
        std::fs::create_dir_all(dirs.fixtures.join("fuzz")).unwrap();
        std::fs::create_dir_all(dirs.scenarios.join("fuzz")).unwrap();
        for (n, expect) in [
            Expect::Live,
            Expect::StreamError(vec![
                "not-well-formed".into(),
                "unsupported-encoding".into(),
            ]),
            Expect::StreamError(vec!["restricted-xml".into()]),
        ]
        .into_iter()
        .enumerate()
        {
            let id = format!("case-{n}");
            let case = Case {
                bytes: b"<message/>".to_vec(),
                how: "a \"quoted\" test".into(),
                expect,
            };
            std::fs::write(dirs.fixtures.join(format!("fuzz/{id}.bin")), &case.bytes).unwrap();
            let path = dirs.scenarios.join(format!("fuzz/{id}.toml"));
            let text = scenario_text(&id, &case);
            let loaded = Scenario::parse(&path, &text, Catalogue::embedded(), &dirs);
            assert!(loaded.is_ok(), "{text}\n{loaded:?}");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
