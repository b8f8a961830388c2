//! `gatecheck fuzz` end to end: against reference mutants (a wrong stream error, a crash, a
//! hang, a leak) it finds the bug within a bounded time and writes a reproducer that fails when rerun
//! (and passes against the reference); against the reference it finds nothing.

use std::path::{Path, PathBuf};
use std::process::Command;

fn gatecheck() -> Command {
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_gatecheck"));
    let reference = bin.with_file_name("gatecheck-reference");
    assert!(
        reference.is_file(),
        "{} is missing: build it first (`cargo build -p gatecheck-reference`; `cargo test --workspace` does)",
        reference.display()
    );
    Command::new(bin)
}

fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn findings(out: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(out)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.join("finding.txt").is_file())
                .collect()
        })
        .unwrap_or_default()
}

/// Runs a campaign against `mutant` until its first finding (at most `seconds`), then reruns
/// the reproducer against the mutant (it must fail) and the reference (it must pass).
fn finds(mutant: &str, seed: &str, seconds: &str, requirement: &str) {
    let out = scratch(&format!("fuzz-wire-{mutant}"));
    let status = gatecheck()
        .args([
            "fuzz",
            "--mutant",
            mutant,
            "--duration",
            seconds,
            "--seed",
            seed,
        ])
        .args(["--jobs", "2", "--max-findings", "1", "--out"])
        .arg(&out)
        .status()
        .unwrap();
    assert_eq!(
        status.code(),
        Some(1),
        "{mutant}: findings make the exit code 1"
    );
    let found = findings(&out);
    assert_eq!(found.len(), 1, "{mutant}: one finding in {}", out.display());
    let finding = std::fs::read_to_string(found[0].join("finding.txt")).unwrap();
    assert!(finding.contains(requirement), "{mutant}: {finding}");

    let reports = scratch(&format!("fuzz-wire-{mutant}-rerun"));
    let rerun = |mutant: Option<&str>| {
        let mut cmd = gatecheck();
        cmd.arg("run")
            .arg("--scenarios")
            .arg(found[0].join("scenarios"));
        cmd.arg("--report-dir").arg(&reports);
        if let Some(m) = mutant {
            cmd.args(["--mutant", m]);
        }
        cmd.output().unwrap().status.code()
    };
    assert_eq!(
        rerun(Some(mutant)),
        Some(1),
        "{mutant}: the reproducer fails"
    );
    assert_eq!(
        rerun(None),
        Some(0),
        "{mutant}: and passes against the reference"
    );
}

#[test]
fn fuzz_finds_a_wrong_stream_error() {
    finds("malformed-as-bad-format", "2", "60s", "STREAM-30");
}

/// The crash mutants: the IUT process dies, or stops answering, on input within the floors.
#[test]
fn fuzz_finds_a_crash() {
    finds("crash-on-deep-nesting", "2", "90s", "STANZA-7");
}

#[test]
fn fuzz_finds_a_hang() {
    finds("hang-on-long-attribute", "2", "90s", "STANZA-7");
}

#[test]
fn fuzz_finds_nothing_in_the_reference() {
    let out = scratch("fuzz-wire-reference");
    let status = gatecheck()
        .args([
            "fuzz",
            "--duration",
            "8s",
            "--seed",
            "3",
            "--jobs",
            "2",
            "--out",
        ])
        .arg(&out)
        .status()
        .unwrap();
    assert!(findings(&out).is_empty(), "findings in {}", out.display());
    assert_eq!(status.code(), Some(0));
}

/// The memory oracle: `leak-per-stanza` keeps 1 MiB per stanza it receives, so one session of
/// cases takes its resident set past the 64 MiB bound. A scenario cannot measure memory, so the
/// finding is its inputs, the figures, and how to rerun the campaign (fuzz/README.md); the test
/// checks those are there, and that the same campaign against the reference finds nothing.
#[test]
fn fuzz_finds_a_leak() {
    let out = scratch("fuzz-wire-leak-per-stanza");
    let started = std::time::Instant::now();
    let status = gatecheck()
        .args(["fuzz", "--mutant", "leak-per-stanza", "--duration", "60s"])
        .args(["--seed", "2", "--jobs", "2", "--max-findings", "1", "--out"])
        .arg(&out)
        .status()
        .unwrap();
    assert_eq!(status.code(), Some(1), "findings make the exit code 1");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(50),
        "found only after {:?}",
        started.elapsed()
    );
    let found = findings(&out);
    assert_eq!(found.len(), 1, "one finding in {}", out.display());
    let finding = std::fs::read_to_string(found[0].join("finding.txt")).unwrap();
    assert!(
        finding.starts_with("signature: memory | STREAM-32"),
        "{finding}"
    );
    assert!(
        finding.contains("rerun: gatecheck fuzz --seed 2"),
        "{finding}"
    );
    let inputs = std::fs::read_dir(found[0].join("inputs")).unwrap().count();
    assert!(inputs > 0, "{finding}");
    assert!(
        found[0].join("replay/scenarios/fuzz").is_dir(),
        "{}",
        found[0].display()
    );

    // The same memory bound, a shorter campaign: the reference keeps nothing per stanza.
    let out = scratch("fuzz-wire-leak-reference");
    let status = gatecheck()
        .args(["fuzz", "--duration", "6s", "--seed", "2", "--jobs", "2"])
        .args(["--max-rss-growth", "64", "--out"])
        .arg(&out)
        .status()
        .unwrap();
    assert!(findings(&out).is_empty(), "findings in {}", out.display());
    assert_eq!(status.code(), Some(0));
}
