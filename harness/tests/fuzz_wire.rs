//! `gatecheck fuzz` end to end: against reference mutants (a wrong stream error, a crash, a
//! hang) it finds the bug within a bounded time and writes a reproducer that fails when rerun
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
