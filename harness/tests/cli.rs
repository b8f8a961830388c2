//! The `gatecheck` binary as a user meets it: exit codes, JSON lines, help text,
//! and runs against deliberately broken IUTs.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use gatecheck::spec::Catalogue;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_gatecheck"))
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn run_with_stdin(args: &[&str], stdin: &[u8]) -> Output {
    use std::io::Write;
    let mut child = bin()
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("gatecheck starts");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin)
        .expect("write stdin");
    child.wait_with_output().expect("gatecheck finishes")
}

fn json_line(out: &Output) -> serde_json::Value {
    let text = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(text.trim()).unwrap_or_else(|e| panic!("not one JSON line ({e}): {text}"))
}

#[test]
fn check_stanza_refuses_a_doctype_from_stdin() {
    let out = run_with_stdin(&["check-stanza", "-"], b"<!DOCTYPE x><message/>");
    assert_eq!(out.status.code(), Some(1));
    let v = json_line(&out);
    assert_eq!(v["ok"], false);
    assert_eq!(v["condition"], "restricted-xml");
    assert_eq!(v["offset"], 0);
    assert!(
        v["message"]
            .as_str()
            .unwrap_or_default()
            .contains("DOCTYPE"),
        "{v}"
    );
}

#[test]
fn check_stanza_accepts_every_good_fixture() {
    let dir = root().join("fixtures/stanzas/good");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).expect("good fixtures") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|e| e == "gen") {
            continue;
        }
        let out = bin().arg("check-stanza").arg(&path).output().expect("runs");
        let v = json_line(&out);
        assert_eq!(out.status.code(), Some(0), "{}: {v}", path.display());
        assert_eq!(v["ok"], true);
        assert!(
            v["stanzas"].as_u64().unwrap_or(0) >= 1,
            "{}: {v}",
            path.display()
        );
        seen += 1;
    }
    assert!(seen >= 12, "only {seen} good fixtures");
}

/// check-stanza judges with the harness's limits, the STREAM-32 ceilings: whatever sits at the
/// STREAM-31 floors passes, and one above a ceiling is a policy-violation. The fixtures sit
/// exactly on those edges (`tests/spec_limits.rs`).
#[test]
fn check_stanza_accepts_the_floors_and_refuses_past_the_ceilings() {
    let dir = root().join("fixtures/stream");
    let mut seen = (0, 0);
    for entry in std::fs::read_dir(&dir).expect("stream fixtures") {
        let path = entry.expect("entry").path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let floor = name.starts_with("floor-") || name == "accept-limits.gen";
        if !floor && !name.starts_with("over-") {
            continue;
        }
        let bytes = gatecheck::wire::fixture_bytes(&path).expect("fixture expands");
        let out = run_with_stdin(&["check-stanza", "-"], &bytes);
        let v = json_line(&out);
        if floor {
            assert_eq!(out.status.code(), Some(0), "{name}: {v}");
            assert_eq!(v["stanzas"], 1, "{name}: {v}");
            seen.0 += 1;
        } else {
            assert_eq!(out.status.code(), Some(1), "{name}: {v}");
            assert_eq!(v["condition"], "policy-violation", "{name}: {v}");
            seen.1 += 1;
        }
    }
    assert!(seen.0 >= 7 && seen.1 >= 6, "only {seen:?} limit fixtures");
}

#[test]
fn check_stanza_reports_a_missing_file_as_usage_error() {
    let out = bin()
        .args(["check-stanza", "/nonexistent/gatecheck.xml"])
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("/nonexistent/gatecheck.xml"), "{err}");
}

#[test]
fn explain_works_for_every_requirement() {
    let catalogue = Catalogue::embedded();
    assert!(catalogue.len() >= 60);
    for r in catalogue.iter() {
        let out = bin().args(["explain", &r.id]).output().expect("runs");
        assert_eq!(out.status.code(), Some(0), "explain {}", r.id);
        let text = String::from_utf8_lossy(&out.stdout);
        let first = text.lines().next().unwrap_or_default();
        assert_eq!(first, format!("{} [{}] {}", r.id, r.level, r.title));
        assert!(text.contains(&r.text), "explain {} lacks its text", r.id);
    }
}

#[test]
fn explain_unknown_id_suggests_neighbours() {
    let out = bin()
        .args(["explain", "STREAM-999"])
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no requirement \"STREAM-999\"") && err.contains("STREAM-1"),
        "{err}"
    );
}

#[test]
fn help_texts() {
    for args in [
        vec!["--help"],
        vec!["run", "--help"],
        vec!["check-stanza", "--help"],
        vec!["explain", "--help"],
    ] {
        let out = bin().args(&args).output().expect("runs");
        assert_eq!(out.status.code(), Some(0));
        let name = match args[0] {
            "--help" => "help_main".to_string(),
            sub => format!("help_{}", sub.replace('-', "_")),
        };
        insta::assert_snapshot!(name, String::from_utf8_lossy(&out.stdout));
    }
}

#[test]
fn usage_errors_exit_2() {
    let out = bin()
        .args(["run", "--partition", "3/2"])
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(2));
    let out = bin().args(["frobnicate"]).output().expect("runs");
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn list_shows_every_scenario_with_requirements() {
    let out = bin().args(["list", "--json"]).output().expect("runs");
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect();
    assert!(lines.len() >= 30, "only {} scenarios", lines.len());
    for l in &lines {
        assert!(
            !l["requirements"].as_array().expect("array").is_empty(),
            "{l}"
        );
    }
}

/// Runs one scenario against a broken IUT and returns (exit code, report JSON).
fn run_broken(name: &str, scenario: &str) -> (Option<i32>, serde_json::Value) {
    let reports = tempdir(name);
    let iut = root().join(format!("fixtures/iut/broken/{name}.toml"));
    let out = bin()
        .arg("run")
        .arg("--iut")
        .arg(&iut)
        .args(["--scenario", scenario, "--seed", "7", "--report-dir"])
        .arg(&reports)
        .env("CI", "true")
        .output()
        .expect("runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("seed 7"), "{stdout}");
    let report = std::fs::read_dir(&reports)
        .expect("report dir")
        .filter_map(|e| e.ok())
        .map(|e| e.path().join("report.json"))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("no report written; stdout: {stdout}"));
    let v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(report).expect("read")).expect("report JSON");
    (out.status.code(), v)
}

/// A JSON string value, or "" when absent.
fn text(v: &serde_json::Value) -> &str {
    v.as_str().unwrap_or_default()
}

fn tempdir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("gatecheck-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

#[test]
fn an_iut_that_dies_mid_run_fails_and_the_report_is_written() {
    let (code, v) = run_broken("dies-after-ready", "stanza/ping");
    assert_eq!(code, Some(1));
    let s = &v["scenarios"][0];
    assert_eq!(s["verdict"], "fail", "{s}");
    assert!(text(&s["failure"]["got"]).contains("exited"), "{s}");
    assert!(text(&s["iut_stderr"]).contains("exiting on purpose"), "{s}");
    assert_eq!(v["summary"]["fail"], 1);
}

#[test]
fn an_iut_that_never_gets_ready_is_inconclusive() {
    let (code, v) = run_broken("never-ready", "stanza/ping");
    assert_eq!(code, Some(1));
    assert_eq!(v["scenarios"][0]["verdict"], "inconclusive", "{v}");
}

#[test]
fn an_iut_that_never_connects_fails_within_the_step_timeout() {
    let (code, v) = run_broken("never-connects", "stanza/ping");
    assert_eq!(code, Some(1));
    let s = &v["scenarios"][0];
    assert_eq!(s["verdict"], "fail", "{s}");
    assert_eq!(s["failure"]["step"], 1);
    assert!(s["duration_ms"].as_u64().unwrap_or(u64::MAX) < 4000, "{s}");
    assert!(
        s["transcript"].as_array().is_some_and(|t| !t.is_empty()),
        "{s}"
    );
}

#[test]
fn garbage_on_the_driver_channel_fails_with_the_line() {
    let (code, v) = run_broken("garbage-driver", "stanza/ping");
    assert_eq!(code, Some(1));
    let s = &v["scenarios"][0];
    assert_eq!(s["verdict"], "fail", "{s}");
    assert!(
        text(&s["failure"]["got"]).contains("this is not json"),
        "{s}"
    );
}

#[test]
fn scenarios_needing_an_unclaimed_transport_are_not_applicable() {
    let (code, v) = run_broken("never-connects", "transport/tls-session");
    assert_eq!(code, Some(0), "not-applicable is not a failure");
    assert_eq!(v["scenarios"][0]["verdict"], "not-applicable", "{v}");
}

/// Runs the HTTP step suite (harness/tests/data/server-suite) against the probe server.
fn run_http_probe(iut: &str) -> (Option<i32>, String) {
    let reports = tempdir(iut);
    let out = bin()
        .arg("run")
        .arg("--iut")
        .arg(root().join("fixtures/iut/http-probe").join(iut))
        .arg("--scenarios")
        .arg(root().join("harness/tests/data/server-suite"))
        .arg("--report-dir")
        .arg(&reports)
        .env("CI", "true")
        .output()
        .expect("runs");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[test]
fn http_steps_against_a_real_server() {
    let (code, stdout) = run_http_probe("iut.toml");
    assert_eq!(code, Some(0), "{stdout}");
    assert!(stdout.contains("pass                 3"), "{stdout}");
}

#[test]
fn http_steps_catch_an_echoed_secret() {
    let (code, stdout) = run_http_probe("iut-echo.toml");
    assert_eq!(code, Some(1), "{stdout}");
    assert!(
        stdout.contains("FAIL   server/auth-no-token-echo"),
        "{stdout}"
    );
    assert!(stdout.contains("requirement AUTH-10"), "{stdout}");
    assert!(
        stdout.contains("--scenarios "),
        "the rerun line keeps the suite directory: {stdout}"
    );
}

#[test]
fn an_unsupported_answer_is_not_applicable_never_a_pass() {
    let (code, v) = run_broken("answers-unsupported", "stanza/ping");
    assert_eq!(code, Some(0), "{v}");
    let s = &v["scenarios"][0];
    assert_eq!(s["verdict"], "not-applicable", "{s}");
    assert_eq!(v["summary"]["pass"], 0);
}
