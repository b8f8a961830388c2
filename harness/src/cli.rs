//! The `gatecheck` command line: argument parsing and the pretty error layer.
//! Each subcommand is a thin call into the library.

use std::io::{Read, Write};
use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::exit;
use crate::iut::IutConfig;
use crate::iut::procs;
use crate::report::terminal::{TerminalReporter, live_progress};
use crate::report::{self, IutInfo, Report, certify};
use crate::runner::{self, RunOptions, StopHandle, StopSignal};
use crate::scenario::{self, SuiteDirs};
use crate::spec::Catalogue;
use crate::wire::{Limits, check_document};

/// gatecheck: conformance tests for third-party messaging interoperability.
///
/// gatecheck plays the gatekeeper's side (chat server, enrollment API, media
/// proxy, the gatekeeper's users) against a provider's implementation and
/// reports, requirement by requirement of SPEC.md, where it deviates.
///
/// Exit codes: 0 every applicable scenario passed (or the input is valid),
/// 1 some scenario failed (or the input is invalid), 2 usage or harness error.
#[derive(Debug, Parser)]
#[command(name = "gatecheck", version, max_term_width = 100)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the suite against an implementation under test.
    ///
    /// Without --iut, runs against the bundled reference provider. Every run
    /// prints its seed; every failure prints a command that reruns it alone.
    /// Writes reports/<run-id>/: report.json, junit.xml, summary.md and index.html
    /// (docs/reports.md). With --baseline, exits 0 unless a verdict is worse than the
    /// baseline allows.
    Run(RunArgs),
    /// Fuzz a client implementation over the wire.
    ///
    /// Stanzas made from a corpus (mutated, spliced, hostile) go to the IUT through the
    /// gatekeeper; each must get the answer SPEC.md asks for. Findings are written to
    /// reports/fuzz/<id>/ as scenarios that reproduce them.
    Fuzz(crate::fuzz::FuzzArgs),
    /// List scenarios with the requirements they verify.
    List {
        /// Only scenarios whose id matches (`*` globs; otherwise a substring). Repeatable:
        /// a scenario matching any of them is listed.
        #[arg(long, value_name = "PATTERN")]
        filter: Vec<String>,
        /// Only scenarios that belong to this profile (`xmpp-core`: checks that rest on
        /// RFC 6120/6121 and the XEPs they name, at their RFC level; `omemo`: end-to-end
        /// encryption a stock XEP-0384 v0.3.0 client can take, without enrollment).
        #[arg(long, value_name = "NAME", value_parser = parse_profile)]
        profile: Option<String>,
        /// Directory of scenario files.
        #[arg(long, value_name = "DIR")]
        scenarios: Option<PathBuf>,
        /// One JSON object per line instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Show, per requirement area, how much of SPEC.md the suite cites.
    ///
    /// Columns: requirements, those with an rfc basis, those only the gatekeeper can
    /// break (left out of the IUT's figures), the IUT-testable rest, those of it at least
    /// one scenario cites, and those of it no mutant of gatecheck-reference breaks.
    Coverage {
        /// Directory of scenario files. Default: the bundled suite.
        #[arg(long, value_name = "DIR")]
        scenarios: Option<PathBuf>,
        /// One JSON object instead of a table.
        #[arg(long)]
        json: bool,
        /// Also list, per area, the IUT-testable requirements no scenario cites.
        #[arg(long)]
        missing: bool,
        /// The reference provider whose mutants fill the "no mutant" column.
        /// Default: gatecheck-reference next to this binary.
        #[arg(long, value_name = "PATH", hide = true)]
        reference: Option<PathBuf>,
    },
    /// Print a requirement of SPEC.md (its level and text); without ID, list them all.
    Explain {
        /// A requirement ID such as STREAM-24.
        id: Option<String>,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Check a file (or - for stdin) against the profile's XML rules.
    ///
    /// The input is a stream (starting with <stream:stream>) or a sequence of
    /// stanzas. Prints one line of JSON: {"ok":true,"stanzas":N} or
    /// {"ok":false,"condition":"restricted-xml","offset":12,"message":"…"}.
    /// Exit 0 when valid, 1 when not, 2 when the input cannot be read.
    CheckStanza {
        /// Path of the input, or - for standard input.
        input: String,
    },
    /// Start the simulated gatekeeper server alone, for pointing a client at it by hand.
    ///
    /// Prints the ports, the Noise static key and the TLS CA, then logs each
    /// connection's transcript live. Stop with Ctrl-C.
    Serve(crate::roles::serve::ServeArgs),
    /// Make an Ed25519 key pair for signing certification bundles.
    ///
    /// Writes PREFIX.key (the private key, mode 0600: keep it secret) and PREFIX.pub (give
    /// it to whoever verifies). Never overwrites a file.
    Keygen {
        /// Path prefix of the two files.
        #[arg(long, value_name = "PREFIX", default_value = "gatecheck-signing")]
        out: PathBuf,
    },
    /// Run every scenario verifying a MUST of the IUT's roles and write a signed bundle.
    ///
    /// The bundle holds the report, the iut.toml, the suite's version with the SHA-256 of
    /// every scenario and fixture file and of SPEC.md, the harness version, and the verdict:
    /// certified only when every MUST the selected scenarios cite passed (a fail,
    /// inconclusive, error or unexplained not-applicable is a reason not to). Exit 0
    /// certified, 1 not certified, 2 usage or harness error.
    Certify(CertifyArgs),
    /// Check a certification bundle's signature and that it was made with this suite.
    ///
    /// The suite is the one built into this gatecheck (or --scenarios DIR), compared file by
    /// file with the SHA-256 hashes the bundle records, SPEC.md included.
    ///
    /// Exit 0 when it verifies and certifies, 1 when it does not verify or says not
    /// certified, 2 when a file cannot be read.
    Verify {
        /// The bundle (certification.json).
        bundle: PathBuf,
        /// The signer's public key (PREFIX.pub from `gatecheck keygen`).
        #[arg(long = "pub", value_name = "KEY")]
        public: PathBuf,
        /// The suite to compare with. Default: the suite built into gatecheck.
        #[arg(long, value_name = "DIR")]
        scenarios: Option<PathBuf>,
    },
    /// Merge the reports of `--partition K/N` shards into the report of the whole run.
    ///
    /// Give every shard's run directory (or its report.json): the complete set 1..N of one
    /// run (same seed, IUT and gatecheck version). Writes <report-dir>/<run-id>-merged/ in
    /// every format. Exit 0 when every applicable scenario passed, 1 when some did not, 2
    /// when the shards do not make one run.
    Merge {
        /// The shards' run directories or report.json files.
        #[arg(required = true, value_name = "SHARD")]
        shards: Vec<PathBuf>,
        /// Where the merged report directory goes.
        #[arg(long, value_name = "DIR", default_value = "reports")]
        report_dir: PathBuf,
    },
}

#[derive(Debug, clap::Args)]
pub struct CertifyArgs {
    /// The IUT description (iut.toml).
    #[arg(long, value_name = "FILE")]
    pub iut: PathBuf,
    /// The private key to sign with (PREFIX.key from `gatecheck keygen`).
    #[arg(long, value_name = "KEY")]
    pub key: PathBuf,
    /// Where the bundle goes. Default: certification.json in the run's report directory.
    #[arg(long, value_name = "BUNDLE")]
    pub out: Option<PathBuf>,
    /// Directory of scenario files. Default: the bundled suite.
    #[arg(long, value_name = "DIR")]
    pub scenarios: Option<PathBuf>,
    /// Seed for every random choice of the run. Default: a fresh one, printed.
    #[arg(long, value_name = "N")]
    pub seed: Option<u64>,
    /// Scenarios run at once. Default: the number of cores.
    #[arg(long, value_name = "N")]
    pub jobs: Option<usize>,
    /// Where the run's report directory goes.
    #[arg(long, value_name = "DIR", default_value = "reports")]
    pub report_dir: PathBuf,
}

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// The IUT description (iut.toml). Default: the bundled reference provider.
    #[arg(long, value_name = "FILE", conflicts_with = "mutant")]
    pub iut: Option<PathBuf>,
    /// Run against the reference provider with this mutant switched on
    /// (see `gatecheck-reference --list-mutants`).
    #[arg(long, value_name = "NAME")]
    pub mutant: Option<String>,
    /// Directory of scenario files. Default: the bundled suite.
    #[arg(long, value_name = "DIR")]
    pub scenarios: Option<PathBuf>,
    /// Only scenarios whose id matches (`*` globs; otherwise a substring). Repeatable:
    /// a scenario matching any of them runs.
    #[arg(long, value_name = "PATTERN")]
    pub filter: Vec<String>,
    /// Only scenarios that belong to this profile (`xmpp-core`: checks that rest on
    /// RFC 6120/6121 and the XEPs they name, at their RFC level; `omemo`: end-to-end
    /// encryption a stock XEP-0384 v0.3.0 client can take; see scenarios/README.md).
    #[arg(long, value_name = "NAME", value_parser = parse_profile)]
    pub profile: Option<String>,
    /// Only the scenario with exactly this id (repeatable).
    #[arg(long = "scenario", value_name = "ID")]
    pub scenario_ids: Vec<String>,
    /// Scenarios run at once. Default: the number of cores.
    #[arg(long, value_name = "N")]
    pub jobs: Option<usize>,
    /// Seed for every random choice of the run. Default: a fresh one, printed.
    #[arg(long, value_name = "N")]
    pub seed: Option<u64>,
    /// Transport for client scenarios that do not pin one, overriding the iut.toml's
    /// (`noise` or `tls`): run the suite once per transport your client claims.
    #[arg(long, value_name = "KIND", value_parser = parse_transport)]
    pub transport: Option<crate::transport::TransportKind>,
    /// Run the K-th of N shards of the suite (1-based), for CI matrices.
    #[arg(long, value_name = "K/N", value_parser = parse_partition)]
    pub partition: Option<(usize, usize)>,
    /// Where the run's report directory (<run-id>/: report.json, junit.xml, summary.md,
    /// index.html) goes.
    #[arg(long, value_name = "DIR", default_value = "reports")]
    pub report_dir: PathBuf,
    /// Known deviations (TOML, see `--write-baseline`): exit 0 when no verdict is worse
    /// than the file allows, 1 on any new deviation; the report lists entries that now pass.
    #[arg(long, value_name = "FILE")]
    pub baseline: Option<PathBuf>,
    /// Write the run's deviations as a baseline file (to edit: each needs its reason).
    #[arg(long, value_name = "FILE")]
    pub write_baseline: Option<PathBuf>,
}

fn parse_transport(s: &str) -> Result<crate::transport::TransportKind, String> {
    s.parse()
        .map_err(|_| format!("{s:?} is not a transport: noise or tls"))
}

fn parse_profile(s: &str) -> Result<String, String> {
    if scenario::KNOWN_PROFILES.contains(&s) {
        Ok(s.to_string())
    } else {
        Err(format!(
            "{s:?} is not a profile (known: {})",
            scenario::KNOWN_PROFILES.join(", ")
        ))
    }
}

fn parse_partition(s: &str) -> Result<(usize, usize), String> {
    let (k, n) = s.split_once('/').ok_or("expected K/N, e.g. 1/4")?;
    let k: usize = k
        .parse()
        .map_err(|_| format!("K in {s:?} is not a number"))?;
    let n: usize = n
        .parse()
        .map_err(|_| format!("N in {s:?} is not a number"))?;
    if n == 0 || k == 0 || k > n {
        return Err(format!("need 1 ≤ K ≤ N, got {k}/{n}"));
    }
    Ok((k, n))
}

/// Entry point of the binary; returns the exit code.
pub fn main() -> i32 {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                exit::ERROR
            } else {
                exit::OK
            };
        }
    };
    match cli.command {
        Command::Run(args) => cmd_run(args),
        Command::Fuzz(args) => crate::fuzz::run(args),
        Command::List {
            filter,
            profile,
            scenarios,
            json,
        } => cmd_list(&filter, profile.as_deref(), scenarios, json),
        Command::Coverage {
            scenarios,
            json,
            missing,
            reference,
        } => cmd_coverage(scenarios, json, missing, reference),
        Command::Explain { id, json } => cmd_explain(id.as_deref(), json),
        Command::CheckStanza { input } => cmd_check_stanza(&input),
        Command::Serve(args) => crate::roles::serve::run(args),
        Command::Keygen { out } => cmd_keygen(&out),
        Command::Certify(args) => cmd_certify(args),
        Command::Verify {
            bundle,
            public,
            scenarios,
        } => cmd_verify(&bundle, &public, scenarios),
        Command::Merge { shards, report_dir } => cmd_merge(&shards, &report_dir),
    }
}

fn fail(message: impl std::fmt::Display) -> i32 {
    eprintln!("gatecheck: error: {message}");
    exit::ERROR
}

fn suite_dirs(scenarios: Option<PathBuf>) -> SuiteDirs {
    let bundled = SuiteDirs::bundled();
    match scenarios {
        Some(dir) => {
            // Fixtures resolve beside a custom suite when it has them.
            let fixtures = dir
                .parent()
                .map(|p| p.join("fixtures"))
                .filter(|f| f.is_dir());
            SuiteDirs {
                scenarios: dir,
                fixtures: fixtures.unwrap_or(bundled.fixtures),
            }
        }
        None => bundled,
    }
}

fn load(dirs: &SuiteDirs) -> Result<Vec<scenario::Scenario>, i32> {
    // Only --scenarios names a directory on disk; the bundled suite is always there.
    let dir = &dirs.scenarios;
    if crate::bundle::bundled_files_under(dir).is_none() && !dir.is_dir() {
        let what = if dir.exists() {
            "is not a directory"
        } else {
            "no such directory"
        };
        return Err(fail(format!(
            "--scenarios {}: {what} (without --scenarios, the suite built into gatecheck runs)",
            dir.display()
        )));
    }
    scenario::load_suite(dirs, Catalogue::embedded()).map_err(|errors| {
        for e in &errors {
            eprintln!("gatecheck: error: {e}");
        }
        eprintln!("gatecheck: {} scenario file(s) are invalid", errors.len());
        exit::ERROR
    })
}

fn cmd_run(args: RunArgs) -> i32 {
    let custom_dir = args.scenarios.clone();
    let dirs = suite_dirs(args.scenarios);
    let suite = match load(&dirs) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let iut = match (&args.iut, &args.mutant) {
        (Some(path), _) => IutConfig::load(path),
        (None, m) => IutConfig::reference(m.as_deref()),
    };
    let mut iut = match iut {
        Ok(i) => i,
        Err(e) => return fail(e),
    };
    if let Some(t) = args.transport {
        iut.transport = t;
    }
    let selected: Vec<scenario::Scenario> = scenario::select(
        &suite,
        &args.filter,
        args.profile.as_deref(),
        &args.scenario_ids,
        args.partition,
    )
    .into_iter()
    .cloned()
    .collect();
    if selected.is_empty() {
        return fail("no scenario matches the selection (see `gatecheck list`)");
    }
    let baseline = match args
        .baseline
        .as_deref()
        .map(report::baseline::Baseline::load)
    {
        None => None,
        Some(Ok(b)) => Some(b),
        Some(Err(e)) => return fail(e),
    };
    let seed = args.seed.unwrap_or_else(fresh_seed);
    let jobs = default_jobs(args.jobs);
    // The rerun line names the binary as it was invoked, so it can be pasted as is.
    let program = std::env::args()
        .next()
        .unwrap_or_else(|| "gatecheck".into());
    let mut rerun = format!("{program} run");
    if let Some(p) = &args.iut {
        rerun.push_str(&format!(" --iut {}", p.display()));
    }
    if let Some(m) = &args.mutant {
        rerun.push_str(&format!(" --mutant {m}"));
    }
    if let Some(t) = args.transport {
        rerun.push_str(&format!(" --transport {t}"));
    }
    if let Some(d) = &custom_dir {
        rerun.push_str(&format!(" --scenarios {}", d.display()));
    }
    let mut report = match execute(&selected, &iut, seed, jobs, dirs, args.partition, rerun) {
        Ok(r) => r,
        Err(code) => return code,
    };
    let summary = report.summary;
    let results: Vec<runner::ScenarioResult> =
        report.scenarios.iter().map(|s| s.result.clone()).collect();
    if let Some(b) = &baseline {
        let suite_ids: Vec<&str> = suite.iter().map(|s| s.id.as_str()).collect();
        let comparison = b.compare(&results, &suite_ids);
        for id in &comparison.unknown {
            eprintln!(
                "gatecheck: warning: baseline {}: {id:?} is no scenario of the suite",
                b.path.display()
            );
        }
        report.baseline = Some(comparison);
    }
    let mut failed_writes = !write_report(&args.report_dir, &report);
    if let Some(path) = &args.write_baseline {
        let text = report::baseline::render(&results, &report.run_id);
        match report::replace_file(path, |out| out.write_all(text.as_bytes())) {
            Ok(()) => println!("baseline written: {}", path.display()),
            Err(e) => {
                eprintln!("gatecheck: error: {e}");
                failed_writes = true;
            }
        }
    }
    if let Some(c) = &report.baseline {
        println!(
            "baseline {}: {} new deviation(s), {} known, {} now passing",
            c.file,
            c.regressions.len(),
            c.still_deviating.len(),
            c.resolved.len()
        );
        for r in &c.regressions {
            println!("  new: {} {}", r.scenario, r.verdict.as_str());
        }
        for r in &c.resolved {
            println!(
                "  now {}: {} (remove it from the baseline)",
                r.verdict.as_str(),
                r.scenario
            );
        }
    }
    if failed_writes {
        return exit::ERROR;
    }
    let outcome_interrupted = report.interrupted.clone();
    let outcome_not_run = report.not_run.len();
    if let Some(signal) = &outcome_interrupted {
        eprintln!(
            "gatecheck: interrupted by {signal}: {outcome_not_run} scenario(s) not run (listed in the report)"
        );
        return exit::for_signal(signal);
    }
    if let Some(c) = &report.baseline {
        return if c.nothing_worse() {
            exit::OK
        } else {
            exit::FAILED
        };
    }
    if summary.all_passed() {
        exit::OK
    } else {
        exit::FAILED
    }
}

fn default_jobs(jobs: Option<usize>) -> usize {
    jobs.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2)
    })
}

fn cmd_merge(shards: &[PathBuf], report_dir: &std::path::Path) -> i32 {
    let report = match report::merge::merge(shards) {
        Ok(r) => r,
        Err(e) => return fail(e),
    };
    let s = &report.summary;
    println!(
        "merged {} shard(s): {} scenario(s): {} pass, {} fail, {} inconclusive, {} not-applicable, {} error",
        report.merged_from.len(),
        report.scenarios.len(),
        s.pass,
        s.fail,
        s.inconclusive,
        s.not_applicable,
        s.error
    );
    if !write_report(report_dir, &report) {
        return exit::ERROR;
    }
    if s.all_passed() && report.interrupted.is_none() {
        exit::OK
    } else {
        exit::FAILED
    }
}

fn cmd_keygen(out: &std::path::Path) -> i32 {
    match certify::keygen(out) {
        Ok((private, public)) => {
            println!(
                "private key: {} (mode 0600; keep it secret)",
                private.display()
            );
            println!("public key:  {}", public.display());
            exit::OK
        }
        Err(e) => fail(e),
    }
}

fn cmd_certify(args: CertifyArgs) -> i32 {
    // The key is checked before anything runs; its contents never reach a message.
    let key = match certify::load_signing_key(&args.key) {
        Ok(k) => k,
        Err(e) => return fail(e),
    };
    let custom_dir = args.scenarios.clone();
    let dirs = suite_dirs(args.scenarios);
    let suite = match load(&dirs) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let iut = match IutConfig::load(&args.iut) {
        Ok(i) => i,
        Err(e) => return fail(e),
    };
    let iut_toml = match std::fs::read_to_string(&args.iut) {
        Ok(t) => t,
        Err(e) => return fail(format!("{}: {e}", args.iut.display())),
    };
    let catalogue = Catalogue::embedded();
    let selected: Vec<scenario::Scenario> = certify::selection(&suite, &iut, catalogue)
        .into_iter()
        .cloned()
        .collect();
    if selected.is_empty() {
        return fail(format!(
            "no scenario of the suite verifies a MUST requirement of the roles {} claims",
            args.iut.display()
        ));
    }
    let suite_info = match certify::SuiteInfo::of(&dirs) {
        Ok(s) => s,
        Err(e) => return fail(e),
    };
    let seed = args.seed.unwrap_or_else(fresh_seed);
    let program = std::env::args()
        .next()
        .unwrap_or_else(|| "gatecheck".into());
    let mut rerun = format!("{program} run --iut {}", args.iut.display());
    if let Some(d) = &custom_dir {
        rerun.push_str(&format!(" --scenarios {}", d.display()));
    }
    println!(
        "gatecheck certify: {} scenario(s) verify a MUST of the roles {}",
        selected.len(),
        iut.roles
            .iter()
            .map(|r| r.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    );
    let report = match execute(
        &selected,
        &iut,
        seed,
        default_jobs(args.jobs),
        dirs,
        None,
        rerun,
    ) {
        Ok(r) => r,
        Err(code) => return code,
    };
    if !write_report(&args.report_dir, &report) {
        return exit::ERROR;
    }
    let refs: Vec<&scenario::Scenario> = selected.iter().collect();
    let mut reasons = certify::assess(&report, &refs, &iut, catalogue);
    if let Some(signal) = &report.interrupted {
        reasons.insert(0, format!("the run was interrupted by {signal}"));
    }
    let report_value = match serde_json::to_value(&report) {
        Ok(v) => v,
        Err(e) => return fail(format!("cannot serialize the report: {e}")),
    };
    let manifest = certify::Manifest {
        format: certify::FORMAT.to_string(),
        created_at: report.started_at.clone(),
        harness_version: env!("CARGO_PKG_VERSION").to_string(),
        certified: reasons.is_empty(),
        reasons: reasons.clone(),
        iut_file: args.iut.display().to_string(),
        iut_toml,
        suite: suite_info,
        selection: selected.iter().map(|s| s.id.clone()).collect(),
        musts: certify::must_coverage(&refs, &iut, catalogue),
        public_key: certify::public_key_text(&key.verifying_key()),
        report: report_value,
    };
    let text = match certify::seal(&manifest, &key) {
        Ok(t) => t,
        Err(e) => return fail(format!("cannot serialize the bundle: {e}")),
    };
    let out = args.out.unwrap_or_else(|| {
        args.report_dir
            .join(&report.run_id)
            .join("certification.json")
    });
    if let Err(e) = report::replace_file(&out, |w| w.write_all(text.as_bytes())) {
        return fail(e);
    }
    println!("bundle: {}", out.display());
    println!(
        "checked: {} of the {} MUST requirements of its roles; the suite does not verify the others yet",
        manifest.musts.checked.len(),
        manifest.musts.checked.len() + manifest.musts.unchecked.len()
    );
    if let Some(signal) = &report.interrupted {
        eprintln!("gatecheck: interrupted by {signal}: the bundle says not certified");
        return exit::for_signal(signal);
    }
    if reasons.is_empty() {
        println!(
            "CERTIFIED: {} passed every MUST of its roles that the suite verifies",
            iut.name
        );
        exit::OK
    } else {
        println!("NOT CERTIFIED: {}", iut.name);
        for r in &reasons {
            println!("  - {r}");
        }
        exit::FAILED
    }
}

fn cmd_verify(
    bundle: &std::path::Path,
    public: &std::path::Path,
    scenarios: Option<PathBuf>,
) -> i32 {
    let key = match certify::load_verifying_key(public) {
        Ok(k) => k,
        Err(e) => return fail(e),
    };
    let dirs = suite_dirs(scenarios);
    if crate::bundle::bundled_files_under(&dirs.scenarios).is_none() && !dirs.scenarios.is_dir() {
        return fail(format!(
            "--scenarios {}: no such directory",
            dirs.scenarios.display()
        ));
    }
    let local = match certify::SuiteInfo::of(&dirs) {
        Ok(s) => s,
        Err(e) => return fail(e),
    };
    let verified = match certify::verify(bundle, &key, &local) {
        Ok(v) => v,
        Err(e @ certify::CertifyError::Io { .. }) => return fail(e),
        Err(e) => {
            println!("INVALID: {e}");
            return exit::FAILED;
        }
    };
    let m = &verified.manifest;
    println!("signature: valid ({})", public.display());
    if m.public_key != certify::public_key_text(&key) {
        println!("INVALID: the manifest names another signer's key than the one that verifies it");
        return exit::FAILED;
    }
    if !verified.suite_differences.is_empty() {
        println!("INVALID: the bundle was not made with this suite:");
        for d in &verified.suite_differences {
            println!("  - {d}");
        }
        return exit::FAILED;
    }
    println!(
        "suite: {} ({} files and SPEC.md, every hash matches)",
        m.suite.version,
        m.suite.files.len()
    );
    if m.harness_version != env!("CARGO_PKG_VERSION") {
        println!(
            "note: made by gatecheck {}, verified by gatecheck {}",
            m.harness_version,
            env!("CARGO_PKG_VERSION")
        );
    }
    println!(
        "checked: {} of the {} MUST requirements of its roles",
        m.musts.checked.len(),
        m.musts.checked.len() + m.musts.unchecked.len()
    );
    let name = m.report["iut"]["name"].as_str().unwrap_or("the IUT");
    if m.certified {
        println!(
            "CERTIFIED: {name} ({} scenarios, {})",
            m.selection.len(),
            m.created_at
        );
        exit::OK
    } else {
        println!("NOT CERTIFIED: {name}");
        for r in &m.reasons {
            println!("  - {r}");
        }
        exit::FAILED
    }
}

/// Runs `selected` against `iut` under the SIGINT/SIGTERM handlers, the terminal reporter
/// printing as it goes, and returns the run's report (not yet written).
fn execute(
    selected: &[scenario::Scenario],
    iut: &IutConfig,
    seed: u64,
    jobs: usize,
    dirs: SuiteDirs,
    partition: Option<(usize, usize)>,
    rerun: String,
) -> Result<Report, i32> {
    let opts = RunOptions { seed, jobs, dirs };
    let runtime = crate::exit::runtime().map_err(fail)?;
    // Daemons an IUT double-forks are re-parented here, so that they can be killed too.
    if let Err(e) = procs::become_subreaper() {
        eprintln!(
            "gatecheck: warning: cannot become a child subreaper ({e}): a daemon an IUT double-forks may outlive its scenario"
        );
    }
    let (stop_handle, stop) = StopSignal::new();
    runtime
        .block_on(watch_signals(stop_handle))
        .map_err(|e| fail(format!("cannot install the SIGINT/SIGTERM handlers: {e}")))?;
    let stdout = std::io::stdout();
    let started_at = std::time::SystemTime::now();
    let started = std::time::Instant::now();
    let mut reporter = TerminalReporter::new(stdout.lock(), rerun.clone(), live_progress());
    let outcome = runtime.block_on(runner::run_until(selected, iut, &opts, Some(stop), |ev| {
        reporter.handle(ev)
    }));
    // Anything still registered (a task the watchdog abandoned) goes now.
    procs::kill_every_live();
    let info = IutInfo {
        name: iut.name.clone(),
        roles: iut.roles.iter().map(|r| r.to_string()).collect(),
        features: iut.features.clone(),
        transport: iut.transport.to_string(),
    };
    Ok(Report::new(report::RunFacts {
        run_id: report::run_id(seed),
        seed,
        started_at,
        elapsed_ms: started.elapsed().as_millis() as u64,
        iut: info,
        summary: outcome.summary,
        interrupted: outcome.interrupted,
        partition,
        rerun_prefix: rerun,
        results: outcome.results,
        not_run: outcome.not_run,
    }))
}

/// Writes every format of `report` under `dir`, saying where or what failed. False when a
/// file could not be written.
fn write_report(dir: &std::path::Path, report: &Report) -> bool {
    match report::write_all(dir, report) {
        Ok(run_dir) => {
            println!(
                "report: {}/ ({})",
                run_dir.display(),
                report::FILES.join(", ")
            );
            true
        }
        Err(errors) => {
            for e in &errors {
                eprintln!("gatecheck: error: {e}");
            }
            eprintln!(
                "gatecheck: the report under {} is incomplete: the files named above are missing or stale",
                dir.display()
            );
            false
        }
    }
}

/// Installs the SIGINT/SIGTERM handlers of `gatecheck run`. The first signal stops the run
/// (no new scenario, running ones torn down within the grace, report written); a second
/// one kills every IUT process and exits at once, without a report.
async fn watch_signals(stop: StopHandle) -> std::io::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut int = signal(SignalKind::interrupt())?;
    let mut term = signal(SignalKind::terminate())?;
    tokio::spawn(async move {
        let first = tokio::select! {
            _ = int.recv() => "SIGINT",
            _ = term.recv() => "SIGTERM",
        };
        eprintln!(
            "\ngatecheck: {first}: stopping; running scenarios end within {} ms and the report is written (send it again to quit at once)",
            crate::runner::TEARDOWN_GRACE.as_millis()
        );
        stop.stop(first);
        tokio::select! {
            _ = int.recv() => {},
            _ = term.recv() => {},
        }
        eprintln!("gatecheck: second signal: IUT processes killed, no report written");
        procs::kill_every_live();
        std::process::exit(exit::for_signal(first));
    });
    Ok(())
}

fn fresh_seed() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    crate::runner::scenario_seed(nanos ^ u64::from(std::process::id()), "seed") % 1_000_000_000
}

fn cmd_list(
    filter: &[String],
    profile: Option<&str>,
    scenarios: Option<PathBuf>,
    json: bool,
) -> i32 {
    let dirs = suite_dirs(scenarios);
    let suite = match load(&dirs) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let selected = scenario::select(&suite, filter, profile, &[], None);
    let mut out = std::io::stdout().lock();
    for s in &selected {
        let line = if json {
            serde_json::json!({
                "id": s.id, "title": s.title, "requirements": s.requirements,
                "role": s.role, "needs": s.needs, "profiles": s.profiles,
            })
            .to_string()
        } else {
            format!(
                "{:<44} {:<7} {:<28} {}",
                s.id,
                s.role.to_string(),
                s.requirements.join(","),
                s.title
            )
        };
        if writeln!(out, "{line}").is_err() {
            return exit::ERROR;
        }
    }
    if !json {
        let _ = writeln!(out, "{} scenario(s)", selected.len());
    }
    exit::OK
}

fn cmd_coverage(
    scenarios: Option<PathBuf>,
    json: bool,
    missing: bool,
    reference: Option<PathBuf>,
) -> i32 {
    let dirs = suite_dirs(scenarios);
    let suite = match load(&dirs) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let reference = match reference {
        Some(path) => Ok(path),
        None => IutConfig::reference(None)
            .map_err(|e| e.to_string())
            .and_then(|iut| {
                iut.launch
                    .map(|l| l.command)
                    .ok_or_else(|| "the reference provider has no command".to_string())
            }),
    };
    let mutants = reference.and_then(|path| {
        if !path.is_file() {
            return Err(format!(
                "gatecheck-reference not found at {}",
                path.display()
            ));
        }
        crate::coverage::list_mutants(&path).map(|m| (path.display().to_string(), m))
    });
    let coverage = crate::coverage::compute(Catalogue::embedded(), &suite, mutants);
    let text = if json {
        match serde_json::to_string(&coverage) {
            Ok(t) => t + "\n",
            Err(e) => return fail(format!("cannot serialize the coverage: {e}")),
        }
    } else {
        crate::coverage::render(&coverage, missing)
    };
    if std::io::stdout().lock().write_all(text.as_bytes()).is_err() {
        return exit::ERROR;
    }
    exit::OK
}

fn cmd_explain(id: Option<&str>, json: bool) -> i32 {
    let catalogue = Catalogue::embedded();
    let Some(id) = id else {
        for r in catalogue.iter() {
            if json {
                println!("{}", serde_json::to_string(r).unwrap_or_default());
            } else {
                let basis = if r.gatekeeper_only {
                    format!("{} gk", r.basis.kind)
                } else {
                    r.basis.kind.to_string()
                };
                let waits = r
                    .waits_for
                    .map(|area| format!(" (waits for {area})"))
                    .unwrap_or_default();
                println!(
                    "{:<11} {:<10} {:<10} {}{waits}",
                    r.id,
                    r.level.as_str(),
                    basis,
                    r.title
                );
            }
        }
        return exit::OK;
    };
    let wanted = id.trim().to_ascii_uppercase();
    match catalogue.get(&wanted) {
        Some(r) if json => {
            println!("{}", serde_json::to_string(r).unwrap_or_default());
            exit::OK
        }
        Some(r) => {
            println!("{} [{}] {}", r.id, r.level, r.title);
            println!("Applies to: {}", r.applies_to.join(", "));
            println!("Basis: {}", r.basis.describe());
            if let Some(note) = r.basis.verdict_note() {
                println!("       {note}");
            }
            if r.gatekeeper_only {
                println!("       only the gatekeeper can break it: no IUT is judged on it");
            }
            if let Some(area) = r.waits_for {
                println!(
                    "       waits for {area}: its test needs that area's flow, which the suite does not have yet"
                );
            }
            println!();
            println!("{}", r.text);
            println!();
            println!("(SPEC.md line {})", r.line);
            exit::OK
        }
        None => {
            let prefix = wanted.split('-').next().unwrap_or("");
            let near: Vec<&str> = catalogue
                .iter()
                .filter(|r| r.id.starts_with(prefix) && !prefix.is_empty())
                .map(|r| r.id.as_str())
                .take(8)
                .collect();
            let hint = if near.is_empty() {
                "run `gatecheck explain` to list every requirement".to_string()
            } else {
                format!("did you mean one of {}…?", near.join(", "))
            };
            fail(format!("SPEC.md has no requirement {id:?}; {hint}"))
        }
    }
}

/// Largest input `check-stanza` reads: the parse is over the whole input at once.
const MAX_CHECK_INPUT: u64 = 64 * 1024 * 1024;

fn cmd_check_stanza(input: &str) -> i32 {
    let mut bytes = Vec::new();
    let read = if input == "-" {
        std::io::stdin()
            .lock()
            .take(MAX_CHECK_INPUT + 1)
            .read_to_end(&mut bytes)
    } else {
        match std::fs::File::open(input) {
            Ok(f) => f.take(MAX_CHECK_INPUT + 1).read_to_end(&mut bytes),
            Err(e) => return fail(format!("{input}: {e}")),
        }
    };
    if let Err(e) = read {
        return fail(format!("{input}: {e}"));
    }
    let result = if bytes.len() as u64 > MAX_CHECK_INPUT {
        // The stanza size limit triggers long before this; only a stream of many
        // valid stanzas gets here.
        return fail(format!("{input}: larger than {MAX_CHECK_INPUT} bytes"));
    } else {
        check_document(&bytes, &Limits::harness_ceilings())
    };
    let (line, code) = match result {
        Ok(n) => (serde_json::json!({"ok": true, "stanzas": n}), exit::OK),
        Err(e) => (
            serde_json::json!({
                "ok": false,
                "condition": e.condition().as_str(),
                "offset": e.offset,
                "message": e.to_string(),
            }),
            exit::FAILED,
        ),
    };
    println!("{line}");
    code
}
