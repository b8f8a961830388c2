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
fn an_unsupported_connect_is_inconclusive_never_a_pass() {
    // `connect` is a command every client must support: `unsupported` leaves nothing
    // testable, which is inconclusive (exit 1), never not-applicable and never a pass.
    let (code, v) = run_broken("answers-unsupported", "stanza/ping");
    assert_eq!(code, Some(1), "{v}");
    let s = &v["scenarios"][0];
    assert_eq!(s["verdict"], "inconclusive", "{s}");
    assert_eq!(v["summary"]["pass"], 0);
}

/// The ids `gatecheck list --json ARGS` prints, in order.
fn listed(args: &[&str]) -> Vec<String> {
    let out = bin()
        .arg("list")
        .arg("--json")
        .args(args)
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(0), "list {args:?}");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).expect("JSON line");
            text(&v["id"]).to_string()
        })
        .collect()
}

#[test]
fn filter_is_repeatable_and_any_match_selects() {
    let pings = listed(&["--filter", "stanza/ping"]);
    let limits = listed(&["--filter", "stream/limit-*"]);
    assert!(
        !pings.is_empty() && !limits.is_empty(),
        "{pings:?} {limits:?}"
    );
    let both = listed(&["--filter", "stanza/ping", "--filter", "stream/limit-*"]);
    let mut want: Vec<String> = pings.iter().chain(&limits).cloned().collect();
    want.sort();
    want.dedup();
    assert_eq!(both, want);
    // The same selection drives `run`: filters that match nothing are a usage error there.
    let out = bin()
        .args([
            "run",
            "--filter",
            "no-such-scenario-a",
            "--filter",
            "no-such-scenario-b",
            "--iut",
        ])
        .arg(root().join("fixtures/iut/broken/dies-after-ready.toml"))
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no scenario matches"), "{err}");
}

#[test]
fn profile_xmpp_core_lists_only_its_scenarios() {
    let out = bin()
        .args(["list", "--json", "--profile", "xmpp-core"])
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(0));
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect();
    assert!(lines.len() >= 5, "only {} xmpp-core scenarios", lines.len());
    for l in &lines {
        let profiles = l["profiles"].as_array().expect("profiles");
        assert!(profiles.iter().any(|p| p == "xmpp-core"), "{l}");
    }
    let all = listed(&[]);
    assert!(lines.len() < all.len());
    for sub in ["list", "run"] {
        let out = bin()
            .args([sub, "--profile", "xmpp-kore"])
            .output()
            .expect("runs");
        assert_eq!(out.status.code(), Some(2), "{sub}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("not a profile (known: xmpp-core, omemo)"),
            "{err}"
        );
    }
}

#[test]
fn explain_shows_the_basis() {
    use gatecheck::spec::BasisKind;
    let catalogue = Catalogue::embedded();
    let explain = |id: &str| {
        let out = bin().args(["explain", id]).output().expect("runs");
        assert_eq!(out.status.code(), Some(0), "explain {id}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let rfc = catalogue
        .iter()
        .find(|r| r.basis.kind == BasisKind::Rfc)
        .expect("an rfc requirement");
    let shown = explain(&rfc.id);
    assert!(
        shown.contains(&format!("\nBasis: rfc ({})\n", rfc.basis.reference)),
        "{shown}"
    );
    assert!(!shown.contains("profile requirement"), "{shown}");
    // A profile requirement that departs from RFC 6120 says it is no violation of it.
    let profile = catalogue
        .iter()
        .find(|r| {
            r.basis.kind == BasisKind::Profile
                && r.basis.first_document().as_deref() == Some("RFC 6120")
        })
        .expect("a profile requirement naming RFC 6120");
    let shown = explain(&profile.id);
    assert!(
        shown.contains(&format!("\nBasis: profile ({})\n", profile.basis.reference)),
        "{shown}"
    );
    assert!(
        shown.contains("profile requirement (not an RFC 6120 violation)"),
        "{shown}"
    );
    let out = bin()
        .args(["explain", &profile.id, "--json"])
        .output()
        .expect("runs");
    let v = json_line(&out);
    assert_eq!(v["basis"]["kind"], "profile", "{v}");
    assert_eq!(
        text(&v["basis"]["reference"]),
        profile.basis.reference,
        "{v}"
    );
    assert_eq!(v["gatekeeper_only"], false, "{v}");
    let gk = catalogue
        .iter()
        .find(|r| r.gatekeeper_only)
        .expect("a gatekeeper-only requirement");
    let out = bin()
        .args(["explain", &gk.id, "--json"])
        .output()
        .expect("runs");
    assert_eq!(json_line(&out)["gatekeeper_only"], true);
    assert!(explain(&gk.id).contains("only the gatekeeper can break it"));
    // A requirement waiting for a later area says which, in text and JSON; when none waits
    // (every area has landed), no requirement says it waits (the display itself is unit-tested
    // in coverage.rs and spec/mod.rs on a catalogue that has one).
    let Some(waits) = catalogue.iter().find(|r| r.waits_for.is_some()) else {
        for r in catalogue.iter().filter(|r| !r.withdrawn).take(40) {
            assert!(!explain(&r.id).contains("waits for "), "{}", r.id);
        }
        let out = bin()
            .args(["explain", &profile.id, "--json"])
            .output()
            .expect("runs");
        assert!(json_line(&out)["waits_for"].is_null());
        return;
    };
    let area = waits.waits_for.unwrap_or_default();
    assert!(
        explain(&waits.id).contains(&format!("\n       waits for {area}: ")),
        "{}",
        explain(&waits.id)
    );
    let out = bin()
        .args(["explain", &waits.id, "--json"])
        .output()
        .expect("runs");
    assert_eq!(json_line(&out)["waits_for"], area);
}

#[test]
fn the_report_names_the_basis_of_each_cited_requirement() {
    let (_, v) = run_broken("dies-after-ready", "stanza/ping");
    let reqs = &v["requirements"];
    for id in ["STANZA-7", "STANZA-3"] {
        assert_eq!(reqs[id]["basis"]["kind"], "rfc", "{id}: {reqs}");
        assert!(reqs[id].get("note").is_none(), "{id}: {reqs}");
    }
}

/// A small suite and a stand-in reference provider, so that every figure is known.
fn coverage_fixture() -> (PathBuf, PathBuf) {
    let dir = tempdir("coverage");
    let scenarios = dir.join("scenarios");
    for (file, reqs) in [
        ("stream/a.toml", "\"STREAM-13\""),
        // STANZA-25 only the gatekeeper can break: cited, yet outside the IUT's figures.
        ("stanza/b.toml", "\"STANZA-7\", \"STANZA-25\""),
    ] {
        let path = scenarios.join(file);
        std::fs::create_dir_all(path.parent().unwrap()).expect("dir");
        let id = file.trim_end_matches(".toml");
        std::fs::write(
            &path,
            format!(
                "id = \"{id}\"\ntitle = \"t\"\nrequirements = [{reqs}]\nrole = \"client\"\n\n[[step]]\nsleep = 1\n"
            ),
        )
        .expect("write scenario");
    }
    let reference = dir.join("fake-reference");
    std::fs::write(
        &reference,
        "#!/bin/sh\nprintf 'm1\\tSTREAM-13\\tbreaks the header\\nm2\\tSTANZA-7,STANZA-3\\tbreaks pings\\n'\n",
    )
    .expect("write reference");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&reference, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    (scenarios, reference)
}

#[test]
fn coverage_counts_per_area() {
    let (scenarios, reference) = coverage_fixture();
    let catalogue = Catalogue::embedded();
    let out = bin()
        .args(["coverage", "--json", "--scenarios"])
        .arg(&scenarios)
        .arg("--reference")
        .arg(&reference)
        .output()
        .expect("runs");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v = json_line(&out);
    assert_eq!(v["scenarios"], 2);
    assert_eq!(v["mutants"]["status"], "listed", "{v}");
    assert_eq!(v["mutants"]["count"], 2, "{v}");
    let area = |name: &str| {
        v["areas"]
            .as_array()
            .expect("areas")
            .iter()
            .find(|a| a["area"] == name)
            .unwrap_or_else(|| panic!("no area {name}: {v}"))
            .clone()
    };
    for (name, cited) in [("STREAM", 1), ("STANZA", 1), ("E2EE", 0)] {
        let a = area(name);
        let in_area: Vec<_> = catalogue
            .iter()
            .filter(|r| r.id.starts_with(&format!("{name}-")) && !r.withdrawn)
            .collect();
        let gk = in_area.iter().filter(|r| r.gatekeeper_only).count();
        let testable = in_area.len() - gk;
        // The fixture cites no requirement that waits for a later area.
        let waiting = in_area
            .iter()
            .filter(|r| !r.gatekeeper_only && r.waits_for.is_some())
            .count();
        assert_eq!(a["requirements"], in_area.len(), "{a}");
        assert_eq!(a["gatekeeper_only"], gk, "{a}");
        assert_eq!(a["iut_testable"], testable, "{a}");
        assert_eq!(a["cited"], cited, "{a}");
        assert_eq!(a["waiting"], waiting, "{a}");
        assert_eq!(a["waiting_for"].as_array().unwrap().len(), waiting, "{a}");
        assert_eq!(
            a["missing"].as_array().unwrap().len(),
            testable - cited - waiting,
            "{a}"
        );
        // m1 breaks STREAM-13; m2 breaks STANZA-7 and STANZA-3.
        let broken = match name {
            "STREAM" => 1,
            "STANZA" => 2,
            _ => 0,
        };
        // A MAY is a permission: no mutant can be missing for it.
        let permissions = in_area
            .iter()
            .filter(|r| !r.gatekeeper_only && r.level == gatecheck::spec::Level::May)
            .count();
        assert_eq!(a["no_mutant"], testable - broken - permissions, "{a}");
    }
    assert!(
        !area("STANZA")["missing"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m == "STANZA-25" || m == "STANZA-7"),
        "gatekeeper-only and cited requirements are not missing"
    );
    // Withdrawn requirements (SPEC.md §5) are counted nowhere.
    let in_force = catalogue.iter().filter(|r| !r.withdrawn).count();
    assert_eq!(v["total"]["requirements"], in_force);
    assert_eq!(v["total"]["cited"], 2);

    // The table: one row per area and a total, the no-mutant column, the uncited IDs.
    let out = bin()
        .args(["coverage", "--missing", "--scenarios"])
        .arg(&scenarios)
        .arg("--reference")
        .arg(&reference)
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(0));
    let table = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(
        lines[0], "area      reqs  rfc  gk-only  IUT  cited  waiting  coverage  no mutant",
        "{table}"
    );
    let stream = area("STREAM");
    let n = |key: &str| {
        stream[key]
            .as_u64()
            .unwrap_or_else(|| panic!("{key}: {stream}"))
    };
    assert_eq!(
        lines[1],
        format!(
            "STREAM   {:>5} {:>4} {:>8} {:>4} {:>6} {:>8} {:>8}% {:>10}",
            n("requirements"),
            n("rfc"),
            n("gatekeeper_only"),
            n("iut_testable"),
            1,
            n("waiting"),
            100 / n("iut_testable"),
            n("no_mutant")
        ),
        "{table}"
    );
    let areas = v["areas"].as_array().expect("areas").len();
    assert!(lines[areas + 1].starts_with("total "), "{table}");
    assert!(table.contains("none of the 2 mutants"), "{table}");
    assert!(
        table.contains("\nuncited IUT-testable requirements:\n"),
        "{table}"
    );
    let stream_missing = lines
        .iter()
        .find(|l| l.starts_with("  STREAM "))
        .unwrap_or_else(|| panic!("{table}"));
    assert!(!stream_missing.split_whitespace().any(|w| w == "STREAM-13"));
    assert!(stream_missing.split_whitespace().any(|w| w == "STREAM-1"));
    // A requirement that waits for a later area is listed with that area, not as a gap; with
    // none waiting, the table has no such section.
    match catalogue
        .iter()
        .find(|r| r.id.starts_with("STANZA-") && r.waits_for.is_some())
    {
        Some(waits) => {
            let shown = format!("{} ({})", waits.id, waits.waits_for.unwrap_or_default());
            let waiting_at = table
                .find("\nuncited, waiting for a later area:\n")
                .unwrap_or_else(|| panic!("{table}"));
            assert!(table[waiting_at..].contains(&shown), "{table}");
            assert!(
                !table[..waiting_at]
                    .split_whitespace()
                    .any(|w| w == waits.id),
                "{table}"
            );
        }
        None if catalogue.iter().all(|r| r.waits_for.is_none()) => {
            assert!(!table.contains("waiting for a later area:"), "{table}");
        }
        None => {}
    }

    // Without a reference provider the column is left out, and the table says why.
    let out = bin()
        .args(["coverage", "--scenarios"])
        .arg(&scenarios)
        .args(["--reference", "/nonexistent/gatecheck-reference"])
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(0));
    let table = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        table.lines().next(),
        Some("area      reqs  rfc  gk-only  IUT  cited  waiting  coverage"),
        "{table}"
    );
    assert!(
        table.contains(
            "no mutant: column skipped, gatecheck-reference not found at /nonexistent/gatecheck-reference."
        ),
        "{table}"
    );
    assert!(!table.contains("uncited"), "{table}");
}

/// An installed gatecheck carries its suite: copied out of the source tree (with the
/// reference provider beside it, as `cargo install --path harness` and `--path reference`
/// leave them) and started from an unrelated directory, it lists the same suite and runs a
/// scenario that sends nothing but what is compiled in.
#[test]
fn an_installed_binary_finds_its_suite_from_any_directory() {
    let built = PathBuf::from(env!("CARGO_BIN_EXE_gatecheck"));
    let reference = built.with_file_name(format!(
        "gatecheck-reference{}",
        std::env::consts::EXE_SUFFIX
    ));
    assert!(
        reference.is_file(),
        "{} is missing: build it first (`cargo build -p gatecheck-reference`; `cargo test --workspace` does)",
        reference.display()
    );
    let place = tempdir("installed");
    let bin_dir = place.join("bin");
    let cwd = place.join("elsewhere");
    std::fs::create_dir_all(&bin_dir).expect("bin dir");
    std::fs::create_dir_all(&cwd).expect("cwd");
    let installed = bin_dir.join(built.file_name().expect("name"));
    std::fs::copy(&built, &installed).expect("copy gatecheck");
    std::fs::copy(
        &reference,
        bin_dir.join(reference.file_name().expect("name")),
    )
    .expect("copy gatecheck-reference");

    let listed = |cmd: &mut Command| {
        let out = cmd.arg("list").output().expect("runs");
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let here = listed(&mut bin());
    let there = listed(Command::new(&installed).current_dir(&cwd));
    assert!(there.contains("stanza/ping "), "{there}");
    assert_eq!(
        here, there,
        "the same suite from the source tree and elsewhere"
    );

    let out = Command::new(&installed)
        .current_dir(&cwd)
        .args(["run", "--scenario", "stanza/ping", "--seed", "7"])
        .env("CI", "true")
        .output()
        .expect("runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("stanza/ping"), "{stdout}");
    assert!(
        cwd.join("reports").is_dir(),
        "the report goes under the working directory"
    );
    let _ = std::fs::remove_dir_all(&place);
}

#[test]
fn a_missing_scenarios_directory_is_named_clearly() {
    for cmd in ["list", "run", "coverage"] {
        let out = bin()
            .args([cmd, "--scenarios", "/nonexistent/suite"])
            .output()
            .expect("runs");
        assert_eq!(out.status.code(), Some(2), "{cmd}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("--scenarios /nonexistent/suite: no such directory"),
            "{cmd}: {stderr}"
        );
    }
}
