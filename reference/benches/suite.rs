//! Runner speed: the whole suite against the reference provider, and the
//! per-scenario overhead (launch, connect, teardown), each next to a baseline
//! measured in the same run (a bare launch of the reference binary).
//!
//! `cargo bench -p gatecheck-reference --bench suite` (release build). Prints a
//! table; the figures go into BENCHMARKS.md. Not a timed test: nothing here
//! fails on a slow machine.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use gatecheck::iut::IutConfig;
use gatecheck::runner::{self, RunOptions, Verdict};
use gatecheck::scenario::{Scenario, SuiteDirs, load_suite};
use gatecheck::spec::Catalogue;

const SAMPLES: usize = 40;
const SUITE_RUNS: usize = 5;

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn main() {
    let reference = PathBuf::from(env!("CARGO_BIN_EXE_gatecheck-reference"));
    let dirs = SuiteDirs::bundled();
    let catalogue = Catalogue::embedded();
    let suite = load_suite(&dirs, catalogue).expect("suite loads");
    let iut = IutConfig::reference_at(reference.clone(), None);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");

    // Baseline: launching the reference binary and waiting for it (no runner involved).
    let launches: Vec<Duration> = (0..SAMPLES)
        .map(|_| {
            let t = Instant::now();
            let ok = Command::new(&reference)
                .arg("--list-mutants")
                .output()
                .expect("runs");
            assert!(ok.status.success());
            t.elapsed()
        })
        .collect();
    let launch = median(launches);

    // Per-scenario overhead: a scenario that only launches, connects (Noise
    // handshake, stream, SASL, bind) and tears down, run alone, one at a time.
    let text = "id = \"bench/overhead\"\ntitle = \"launch, connect, teardown\"\nrequirements = [\"STREAM-2\"]\nrole = \"client\"\n\n[[step]]\nsession = {}\n";
    let path = dirs.scenarios.join("bench/overhead.toml");
    let overhead_scenario = Scenario::parse(&path, text, catalogue, &dirs).expect("bench scenario");
    let one = vec![overhead_scenario];
    let opts = |seed| RunOptions {
        seed,
        jobs: 1,
        dirs: dirs.clone(),
    };
    let mut overheads = Vec::with_capacity(SAMPLES);
    for i in 0..SAMPLES {
        let t = Instant::now();
        let (results, _) = rt.block_on(runner::run(&one, &iut, &opts(i as u64), |_| {}));
        assert_eq!(
            results[0].verdict,
            Verdict::Pass,
            "{:?}",
            results[0].failure
        );
        overheads.push(t.elapsed());
    }
    let overhead = median(overheads);

    // The whole suite, as `gatecheck run` does it (jobs = cores).
    let jobs = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2);
    let mut walls = Vec::with_capacity(SUITE_RUNS);
    let mut busy = Duration::ZERO;
    for i in 0..SUITE_RUNS {
        let t = Instant::now();
        let (results, summary) = rt.block_on(runner::run(
            &suite,
            &iut,
            &RunOptions {
                seed: 100 + i as u64,
                jobs,
                dirs: dirs.clone(),
            },
            |_| {},
        ));
        walls.push(t.elapsed());
        assert!(summary.all_passed(), "the reference must pass: {summary:?}");
        busy = results
            .iter()
            .map(|r| Duration::from_millis(r.duration_ms))
            .sum();
    }
    let wall = median(walls);

    println!(
        "runner benchmark ({} scenarios, {jobs} jobs, medians)",
        suite.len()
    );
    println!("{:<46} {:>10}", "measure", "ms");
    println!(
        "{:<46} {:>10.2}",
        "baseline: launch + exit of gatecheck-reference",
        ms(launch)
    );
    println!(
        "{:<46} {:>10.2}",
        "per-scenario overhead (launch, connect, teardown)",
        ms(overhead)
    );
    println!("{:<46} {:>10.2}", "whole suite, wall", ms(wall));
    println!(
        "{:<46} {:>10.2}",
        "whole suite, sum of scenario durations",
        ms(busy)
    );
    println!(
        "ratio overhead / launch baseline: {:.2}",
        ms(overhead) / ms(launch)
    );
    println!(
        "ratio suite wall / sum of scenario durations: {:.2}",
        ms(wall) / ms(busy)
    );
}
