//! `--partition K/N` and `gatecheck merge`: the shards of a partitioning cover the suite
//! exactly once, and the merged report of a run's shards says what one unsharded run says.

use std::path::{Path, PathBuf};
use std::process::Command;

use gatecheck::scenario::{self, SuiteDirs};
use gatecheck::spec::Catalogue;
use serde_json::Value;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_gatecheck"))
}

fn tempdir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("gatecheck-merge-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

#[test]
fn the_shards_of_every_partitioning_cover_the_suite_exactly_once() {
    let suite = scenario::load_suite(&SuiteDirs::bundled(), Catalogue::embedded()).expect("suite");
    let all: Vec<&str> = suite.iter().map(|s| s.id.as_str()).collect();
    assert!(all.len() > 50);
    for n in 1..=7 {
        let mut seen: Vec<&str> = (1..=n)
            .flat_map(|k| scenario::select(&suite, &[], None, &[], Some((k, n))))
            .map(|s| s.id.as_str())
            .collect();
        seen.sort_unstable();
        let mut expected = all.clone();
        expected.sort_unstable();
        assert_eq!(seen, expected, "shards of {n}");
    }
}

/// Runs `stanza/iq*` against the ping-error mutant with seed 9, as one shard or whole.
fn run(reports: &Path, partition: Option<&str>) -> PathBuf {
    let mut cmd = bin();
    cmd.args([
        "run",
        "--mutant",
        "ping-error",
        "--seed",
        "9",
        "--filter",
        "stanza/iq",
        "--report-dir",
    ])
    .arg(reports)
    .env("CI", "true");
    if let Some(p) = partition {
        cmd.args(["--partition", p]);
    }
    let out = cmd.output().expect("runs");
    assert!(
        matches!(out.status.code(), Some(0 | 1)),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::read_dir(reports)
        .expect("reports")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.is_dir())
        .expect("a run directory")
}

fn json(dir: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(dir.join("report.json")).expect("report.json"))
        .expect("JSON")
}

/// What must not depend on sharding: per scenario, id, verdict, seed, failure step and
/// requirement, rerun command; and the counts and cited requirements.
fn essence(v: &Value) -> Value {
    let scenarios: Vec<Value> = v["scenarios"]
        .as_array()
        .expect("scenarios")
        .iter()
        .map(|s| {
            serde_json::json!([
                s["id"],
                s["verdict"],
                s["seed"],
                s["failure"]["step"],
                s["failure"]["requirement"],
                s["rerun"]
            ])
        })
        .collect();
    let requirements: Vec<&String> = v["requirements"].as_object().expect("map").keys().collect();
    serde_json::json!({
        "scenarios": scenarios,
        "summary": v["summary"],
        "requirements": requirements,
        "seed": v["seed"],
        "iut": v["iut"],
        "rerun": v["rerun"],
    })
}

#[test]
fn merged_shards_equal_one_unsharded_run() {
    let dir = tempdir("equal");
    let whole = run(&dir.join("whole"), None);
    let shards: Vec<PathBuf> = (1..=3)
        .map(|k| run(&dir.join(format!("shard{k}")), Some(&format!("{k}/3"))))
        .collect();
    let merged_dir = dir.join("merged");
    let out = bin()
        .arg("merge")
        .args(shards.iter().rev())
        .arg("--report-dir")
        .arg(&merged_dir)
        .output()
        .expect("merge runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let whole_json = json(&whole);
    let expected_code = if whole_json["summary"]["fail"] == 0 {
        0
    } else {
        1
    };
    assert_eq!(
        out.status.code(),
        Some(expected_code),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let merged = std::fs::read_dir(&merged_dir)
        .expect("merged")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.is_dir())
        .expect("a merged run directory");
    assert!(
        merged.to_string_lossy().ends_with("-merged"),
        "{}",
        merged.display()
    );
    for name in ["report.json", "junit.xml", "summary.md", "index.html"] {
        assert!(merged.join(name).is_file(), "{name}");
    }
    let merged_json = json(&merged);
    assert!(
        whole_json["scenarios"]
            .as_array()
            .is_some_and(|s| s.len() >= 4)
    );
    assert!(
        whole_json["summary"]["fail"].as_u64().unwrap_or(0) >= 1,
        "the mutant fails one"
    );
    assert_eq!(essence(&merged_json), essence(&whole_json));
    assert_eq!(merged_json["merged_from"].as_array().map(Vec::len), Some(3));
    assert!(merged_json.get("partition").is_none());

    // The shards must make one whole run.
    let merge = |paths: &[&PathBuf]| {
        let out = bin()
            .arg("merge")
            .args(paths)
            .arg("--report-dir")
            .arg(dir.join("bad"))
            .output()
            .expect("merge runs");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, err) = merge(&[&shards[0], &shards[1]]);
    assert_eq!(code, Some(2));
    assert!(
        err.contains("the shards are not one run: shard(s) 3/3 missing"),
        "{err}"
    );
    let (code, err) = merge(&[&shards[0], &shards[0], &shards[1], &shards[2]]);
    assert_eq!(code, Some(2));
    assert!(err.contains("shard 1/3 given twice"), "{err}");
    let (code, err) = merge(&[&whole]);
    assert_eq!(code, Some(2));
    assert!(err.contains("is not a shard (no --partition K/N)"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}
