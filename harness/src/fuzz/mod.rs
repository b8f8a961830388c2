//! `gatecheck fuzz`: stanza fuzzing of a client IUT over the wire, through the gatekeeper role.
//!
//! Cases ([`cases`]) run in sessions ([`session`]): a scenario file of the ordinary format (a
//! session, then each case's bytes as a fixture followed by the SPEC.md answer it calls for: a
//! ping answered, or a stream error and a close) run by the ordinary runner. Many cases the IUT
//! must survive share one session, each checked by its own ping before the next is sent; a case
//! that must end the stream ends its session. When a session fails, its failing case is run
//! again alone, and if that passes, after the session's earlier cases; the first of the two
//! that fails again is the reproducer, so a finding reruns as it is: `reports/fuzz/<id>/` holds
//! the scenario and its fixtures, and `gatecheck run --scenarios reports/fuzz/<id>/scenarios`
//! reruns it. Findings are de-duplicated by a signature (verdict, requirement, the step within
//! the case, the kind of answer expected); with `--corpus DIR` the campaign starts from the
//! files in DIR and adds each finding's input there, so the next campaign resumes from it.
//! Ctrl-C and `--duration` end it after the sessions in flight, with everything written.

pub mod cases;
mod findings;
pub mod memory;
pub mod session;

use std::collections::{HashSet, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio::task::JoinSet;

use crate::bundle::MemoryDir;
use crate::exit;
use crate::iut::IutConfig;
use crate::runner::{self, RunOptions, StopSignal};
use crate::scenario::{Scenario, SuiteDirs};
use crate::spec::Catalogue;
use crate::verdict::ScenarioResult;
use cases::{Case, Expect, Generator, Want};
use findings::{Judge, judge, judge_memory};
use memory::{Sampler, Usage};
use session::Composer;

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
    /// Sessions run at once, each against its own IUT process (default: the number of cores).
    #[arg(long)]
    pub jobs: Option<usize>,
    /// Stop once this many new findings were written (default: run for the whole duration).
    #[arg(long, value_name = "N")]
    pub max_findings: Option<usize>,
    /// Where findings are written.
    #[arg(long, default_value = "reports/fuzz", value_name = "DIR")]
    pub out: PathBuf,
    /// Growth of a launched IUT's resident set over one session (after it connected) that
    /// makes a memory finding (STREAM-32), in MiB.
    #[arg(long, value_name = "MIB", default_value_t = memory::DEFAULT_MAX_GROWTH_MIB)]
    pub max_rss_growth: u64,
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

/// Most cases one session carries. A session costs what many cases do (an IUT process, its
/// driver's start-up, a Noise handshake, SASL and bind); past a few dozen cases the session's
/// share is small, and a failure reruns at most this many cases.
const SESSION_CASES: usize = 64;
/// How often the progress line is printed.
const PROGRESS_EVERY: Duration = Duration::from_secs(1);
/// Most bytes of input one session carries (hostile cases run to 240 KiB each).
const SESSION_BYTES: usize = 2 << 20;
/// Cases that must end a stream, kept until a session can end with one; while this many wait,
/// no more are asked for (one ends each session, and the generator makes them faster than
/// sessions end).
const ENDERS_KEPT: usize = 16;

/// Counts of a campaign.
#[derive(Debug, Default)]
struct Tally {
    cases: usize,
    sessions: usize,
    findings: usize,
    repeats: usize,
    inconclusive: usize,
    /// Failures in a session that did not recur when rerun (alone, or after the session's
    /// earlier cases).
    unconfirmed: usize,
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

/// Where a campaign keeps the scenarios and fixtures of its sessions, and how it loads them.
/// They are kept in memory ([`MemoryDir`]): a file written and removed per case cost more
/// than the rest of the case (a finding gets real files of its own, under `--out`). A session
/// of many cases is composed ([`Composer`]) rather than parsed whole.
struct Workbench {
    memory: MemoryDir,
    dirs: SuiteDirs,
    /// The time limit of a case alone (the IUT's scenario limit); a session gets the sum.
    case_limit_ms: u64,
    composer: Mutex<Composer>,
}

impl Workbench {
    fn new(case_limit_ms: u64) -> Workbench {
        let memory = MemoryDir::new();
        let dirs = SuiteDirs {
            scenarios: memory.path().join("scenarios"),
            fixtures: memory.path().join("fixtures"),
        };
        Workbench {
            memory,
            dirs,
            case_limit_ms,
            composer: Mutex::new(Composer::default()),
        }
    }

    /// Removes a session's fixtures.
    fn remove(&self, id: &str, cases: &[Case]) {
        for (name, _) in session::fixtures(id, cases) {
            self.memory.remove(Path::new("fixtures").join(name));
        }
    }

    fn write_fixtures(&self, id: &str, cases: &[Case]) -> Result<(), String> {
        for (name, bytes) in session::fixtures(id, cases) {
            self.memory
                .write(Path::new("fixtures").join(&name), bytes)
                .map_err(|e| format!("{name}: {e}"))?;
        }
        Ok(())
    }

    /// Parses the text of session `id` (its fixtures in place).
    fn parse(&self, id: &str, text: &str) -> Result<Scenario, String> {
        let path = self.dirs.scenarios.join("fuzz").join(format!("{id}.toml"));
        Scenario::parse(&path, text, Catalogue::embedded(), &self.dirs)
            .map_err(|e| format!("a generated scenario does not load: {e:?}"))
    }

    /// Parses a template session of the [`Composer`].
    fn template(&self, cases: &[Case]) -> Result<Scenario, String> {
        const ID: &str = "template";
        self.write_fixtures(ID, cases)?;
        let limit = self.case_limit_ms.saturating_mul(cases.len() as u64);
        let parsed = self.parse(ID, &session::scenario_text(ID, cases, Some(limit)));
        self.remove(ID, cases);
        parsed
    }

    /// Keeps a session's fixtures under `id` and loads its scenario.
    fn scenario(&self, id: &str, cases: &[Case]) -> Result<Scenario, String> {
        self.write_fixtures(id, cases)?;
        let limit = Some(self.case_limit_ms.saturating_mul(cases.len() as u64));
        let text = session::scenario_text(id, cases, limit);
        if !Composer::composes(cases) {
            return self.parse(id, &text);
        }
        let head = self.parse(id, &session::header_text(id, cases, limit))?;
        let composed = self
            .composer
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .compose(head, id, cases, &text, &mut |t| self.template(t))?;
        #[cfg(debug_assertions)]
        {
            let parsed = self.parse(id, &text)?;
            assert_eq!(
                format!("{composed:?}"),
                format!("{parsed:?}"),
                "a composed session differs from the parse of its text"
            );
        }
        Ok(composed)
    }
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
    let bench =
        Workbench::new(u64::try_from(iut.timeouts.scenario().as_millis()).unwrap_or(u64::MAX));
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
        "gatecheck fuzz: seed {seed}, {} for {}s, {jobs} sessions at a time, corpus {} inputs, findings in {}",
        iut.name,
        args.duration.as_secs(),
        generator.corpus_len(),
        args.out.display()
    );
    let started = Instant::now();
    let mut tally = Tally::default();
    // Cases that must leave the IUT serving, not yet run (a session ended before them), and
    // cases that must end a stream, waiting for a session to end with them.
    let mut pending: VecDeque<Case> = VecDeque::new();
    let mut enders: VecDeque<Case> = VecDeque::new();
    let enough = |tally: &Tally| args.max_findings.is_some_and(|n| tally.findings >= n);
    let iut = Arc::new(iut);
    let opts = RunOptions {
        seed,
        jobs: 1,
        dirs: bench.dirs.clone(),
    };
    // `jobs` sessions in flight at all times: as one ends, its result is judged and the next
    // session is made and started while the others run.
    type Done = (String, Vec<Case>, Option<ScenarioResult>, Usage);
    let mut running: JoinSet<Done> = JoinSet::new();
    let mut started_sessions = 0usize;
    let mut last_progress = Instant::now();
    loop {
        let going = started.elapsed() < args.duration && stop.reason().is_none() && !enough(&tally);
        while going && running.len() < jobs {
            let cases = next_session(&mut generator, &mut pending, &mut enders);
            if cases.is_empty() {
                break;
            }
            let id = format!("s{}-{started_sessions}", seed % 100_000);
            started_sessions += 1;
            let scenario = match bench.scenario(&id, &cases) {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("gatecheck: error: {e}");
                    return exit::ERROR;
                }
            };
            let (iut, opts, stop) = (Arc::clone(&iut), opts.clone(), stop.clone());
            running.spawn(async move {
                let (result, usage) = run_sampled(&id, scenario, &iut, &opts, &stop).await;
                (id, cases, result, usage)
            });
        }
        if running.is_empty() {
            if going {
                eprintln!("gatecheck fuzz: the corpus gives no usable case");
            }
            break;
        }
        let Some(Ok((id, cases, result, usage))) = running.join_next().await else {
            continue;
        };
        // The session's files are not needed any more (a finding gets its own copies).
        bench.remove(&id, &cases);
        let Some(result) = result else {
            continue;
        };
        // Once --max-findings is reached, the sessions still in flight are only drained.
        if enough(&tally) {
            continue;
        }
        tally.sessions += 1;
        let mut j = Judge {
            args: &args,
            seed,
            bench: &bench,
            iut: &iut,
            opts: &opts,
            stop: &stop,
            seen: &mut seen,
            tally: &mut tally,
            generator: &mut generator,
            pending: &mut pending,
            enders: &mut enders,
        };
        // The memory oracle first: a session whose IUT grew past the bound may well have
        // passed every other check.
        if usage.exceeds(args.max_rss_growth) {
            judge_memory(&mut j, &id, &cases, usage).await;
        }
        judge(&mut j, &cases, &result).await;
        if last_progress.elapsed() >= PROGRESS_EVERY || running.is_empty() {
            last_progress = Instant::now();
            let secs = started.elapsed().as_secs_f64().max(0.001);
            eprintln!(
                "gatecheck fuzz: {} cases in {} sessions, {:.1}/s, {} findings ({} repeats, {} unconfirmed), {} inconclusive, corpus {}",
                tally.cases,
                tally.sessions,
                tally.cases as f64 / secs,
                tally.findings,
                tally.repeats,
                tally.unconfirmed,
                tally.inconclusive,
                generator.corpus_len()
            );
        }
    }
    if let Some(reason) = stop.reason() {
        eprintln!("gatecheck fuzz: stopped ({reason})");
    }
    if tally.findings > 0 {
        exit::FAILED
    } else {
        exit::OK
    }
}

/// Runs one session's scenario with its IUT marked (environment variable
/// [`memory::MARKER_ENV`] set to `marker`) and its resident set sampled throughout.
async fn run_sampled(
    marker: &str,
    scenario: Scenario,
    iut: &IutConfig,
    opts: &RunOptions,
    stop: &StopSignal,
) -> (Option<ScenarioResult>, Usage) {
    let mut marked = iut.clone();
    if let Some(launch) = marked.launch.as_mut() {
        launch
            .env
            .insert(memory::MARKER_ENV.to_owned(), marker.to_owned());
    }
    let sampler = Sampler::start(marker.to_owned());
    let outcome = runner::run_until(&[scenario], &marked, opts, Some(stop.clone()), |_| {}).await;
    let usage = sampler.finish().await;
    (outcome.results.into_iter().next(), usage)
}

/// The cases of the next session: cases that must leave the IUT serving (left over first, then
/// new ones) up to [`SESSION_CASES`] or [`SESSION_BYTES`], then one that must end the stream
/// if one is waiting. Empty when the generator gives no usable case. New cases that must end
/// the stream are only asked for while fewer than [`ENDERS_KEPT`] wait (the rest would be
/// dropped unrun): otherwise the generator passes over a candidate as soon as it is not one
/// that leaves the IUT serving, and the session fills with those.
fn next_session(
    generator: &mut Generator,
    pending: &mut VecDeque<Case>,
    enders: &mut VecDeque<Case>,
) -> Vec<Case> {
    let mut cases = Vec::new();
    let mut bytes = 0;
    // Bounded: a corpus that only gives stream-ending cases still ends the loop.
    for _ in 0..SESSION_CASES * 4 {
        if cases.len() >= SESSION_CASES || bytes >= SESSION_BYTES {
            break;
        }
        let want = if enders.len() < ENDERS_KEPT {
            Want::Any
        } else {
            Want::Live
        };
        let Some(case) = pending.pop_front().or_else(|| generator.next_wanted(want)) else {
            break;
        };
        match case.expect {
            Expect::Live => {
                bytes += case.bytes.len();
                cases.push(case);
            }
            Expect::StreamError(_) => {
                if enders.len() < ENDERS_KEPT {
                    enders.push_back(case);
                }
            }
        }
    }
    if let Some(ender) = enders.pop_front() {
        cases.push(ender);
    }
    cases
}

/// Puts the cases a failed session did not reach back in line.
fn requeue(rest: &[Case], pending: &mut VecDeque<Case>, enders: &mut VecDeque<Case>) {
    for case in rest.iter().rev() {
        if case.expect == Expect::Live {
            pending.push_front(case.clone());
        } else {
            enders.push_front(case.clone());
        }
    }
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
    fn a_composed_session_is_the_parse_of_its_text() {
        let bench = Workbench::new(20_000);
        let mut generator = Generator::new(9, bundled_corpus());
        let (mut pending, mut enders) = (VecDeque::new(), VecDeque::new());
        let mut conditions = HashSet::new();
        let mut split = 0;
        for s in 0..40 {
            let cases = next_session(&mut generator, &mut pending, &mut enders);
            assert!(Composer::composes(&cases));
            split += cases.iter().filter(|c| !c.writes.is_empty()).count();
            if let Some(Expect::StreamError(c)) = cases.last().map(|c| &c.expect) {
                conditions.insert(c.clone());
            }
            let id = format!("t-{s}");
            let composed = bench.scenario(&id, &cases).unwrap();
            let text = session::scenario_text(&id, &cases, Some(20_000 * cases.len() as u64));
            let parsed = bench.parse(&id, &text).unwrap();
            assert_eq!(format!("{composed:?}"), format!("{parsed:?}"));
            bench.remove(&id, &cases);
            // Only live cases, and a session of one case: parsed whole.
            let live: Vec<Case> = cases
                .iter()
                .filter(|c| c.expect == Expect::Live)
                .cloned()
                .collect();
            let composed = bench.scenario(&id, &live[..2]).unwrap();
            let parsed = bench
                .parse(&id, &session::scenario_text(&id, &live[..2], Some(40_000)))
                .unwrap();
            assert_eq!(format!("{composed:?}"), format!("{parsed:?}"));
            bench.remove(&id, &live[..2]);
            assert!(!Composer::composes(&live[..1]));
        }
        assert!(split > 10, "{split}");
        assert!(conditions.len() > 2, "{conditions:?}");
    }

    #[test]
    fn every_kind_of_case_makes_a_scenario_that_loads() {
        use super::session::scenario_text;
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
                writes: Vec::new(),
            };
            std::fs::write(dirs.fixtures.join(format!("fuzz/{id}.bin")), &case.bytes).unwrap();
            let path = dirs.scenarios.join(format!("fuzz/{id}.toml"));
            let text = scenario_text(&id, std::slice::from_ref(&case), None);
            let loaded = Scenario::parse(&path, &text, Catalogue::embedded(), &dirs);
            assert!(loaded.is_ok(), "{text}\n{loaded:?}");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
