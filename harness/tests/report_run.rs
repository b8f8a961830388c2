//! The report directory of real runs against the reference provider: all four formats,
//! report.json against its documented schema (docs/reports.md), transcripts for every
//! scenario, the baseline's exit codes, an interrupted run's report, and a report directory
//! that cannot be written.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_gatecheck"))
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn tempdir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("gatecheck-report-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// The reference provider must sit beside gatecheck (`cargo test --workspace` builds it).
fn need_reference() {
    let reference = PathBuf::from(env!("CARGO_BIN_EXE_gatecheck")).with_file_name(format!(
        "gatecheck-reference{}",
        std::env::consts::EXE_SUFFIX
    ));
    assert!(
        reference.is_file(),
        "{} is missing: build it first (`cargo build -p gatecheck-reference`; `cargo test --workspace` does)",
        reference.display()
    );
}

/// Three quick scenarios against the ping-error mutant: one fails, two pass.
const SCENARIOS: [&str; 3] = [
    "stanza/ping",
    "stanza/iq-without-child",
    "stanza/iq-two-children",
];

fn run(reports: &Path, extra: &[&str]) -> Output {
    need_reference();
    let mut cmd = bin();
    cmd.args([
        "run",
        "--mutant",
        "ping-error",
        "--seed",
        "7",
        "--report-dir",
    ])
    .arg(reports)
    .env("CI", "true");
    for s in SCENARIOS {
        cmd.args(["--scenario", s]);
    }
    cmd.args(extra).output().expect("gatecheck runs")
}

/// The one run directory under `reports`.
fn run_dir(reports: &Path) -> PathBuf {
    let dirs: Vec<PathBuf> = std::fs::read_dir(reports)
        .expect("report dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .collect();
    assert_eq!(dirs.len(), 1, "{dirs:?}");
    dirs[0].clone()
}

fn read_json(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).expect("read")).expect("JSON")
}

/// One row of the schema table: a path pattern, its type, and whether it is always there.
struct Field {
    path: Vec<String>,
    kind: String,
    always: bool,
}

/// The report.json table of docs/reports.md.
fn documented() -> Vec<Field> {
    let doc = std::fs::read_to_string(root().join("docs/reports.md")).expect("docs/reports.md");
    let section = doc
        .split("## report.json")
        .nth(1)
        .and_then(|s| s.split("\n## ").next())
        .expect("a report.json section");
    section
        .lines()
        .filter(|l| l.starts_with("| `"))
        .map(|l| {
            let cells: Vec<&str> = l.split('|').map(str::trim).collect();
            Field {
                path: cells[1]
                    .trim_matches('`')
                    .split('.')
                    .map(str::to_string)
                    .collect(),
                kind: cells[2].to_string(),
                always: match cells[3] {
                    "always" => true,
                    "optional" => false,
                    other => panic!("presence {other:?} in {l}"),
                },
            }
        })
        .collect()
}

fn segment_matches(pattern: &str, actual: &str) -> bool {
    match pattern {
        "*" => !actual.ends_with("[]"),
        "*[]" => actual.ends_with("[]"),
        p => p == actual,
    }
}

fn matches(pattern: &[String], actual: &[String]) -> bool {
    pattern.len() == actual.len()
        && pattern
            .iter()
            .zip(actual)
            .all(|(p, a)| segment_matches(p, a))
}

fn type_ok(kind: &str, v: &Value) -> bool {
    match kind {
        "string" => v.is_string(),
        "integer" => v.is_u64() || v.is_i64(),
        "number" => v.is_number(),
        "boolean" => v.is_boolean(),
        "object" | "map" => v.is_object(),
        "array" => v.is_array(),
        other => panic!("type {other:?} in docs/reports.md"),
    }
}

/// Every value of `v` must be documented with its type; every field documented as always
/// there must be, wherever its parent is.
fn check(v: &Value, path: &mut Vec<String>, doc: &[Field], errors: &mut Vec<String>) {
    let children: Vec<(String, &Value)> = match v {
        Value::Object(m) => m.iter().map(|(k, c)| (k.clone(), c)).collect(),
        Value::Array(a) => a.iter().map(|c| (String::new(), c)).collect(),
        _ => return,
    };
    if let Value::Object(m) = v {
        for f in doc
            .iter()
            .filter(|f| f.always && f.path.len() == path.len() + 1)
        {
            let last = &f.path[path.len()];
            // `a[]` rows describe the elements of array `a`, whose own row says whether it
            // is there; `*` rows describe a map's values.
            if last.starts_with('*')
                || last.ends_with("[]")
                || !matches(&f.path[..path.len()], path)
            {
                continue;
            }
            if !m.contains_key(last.as_str()) {
                errors.push(format!(
                    "{} is documented as always there but missing",
                    f.path.join(".")
                ));
            }
        }
    }
    for (key, child) in children {
        if key.is_empty() {
            let last = path.pop().unwrap_or_default();
            path.push(format!("{last}[]"));
            check_one(child, path, doc, errors);
            path.pop();
            path.push(last);
        } else {
            path.push(key);
            check_one(child, path, doc, errors);
            path.pop();
        }
    }
}

fn check_one(v: &Value, path: &mut Vec<String>, doc: &[Field], errors: &mut Vec<String>) {
    match doc.iter().find(|f| matches(&f.path, path)) {
        None => errors.push(format!("{} is not documented", path.join("."))),
        Some(f) if !type_ok(&f.kind, v) => errors.push(format!(
            "{} is documented as {} but is {v}",
            path.join("."),
            f.kind
        )),
        Some(_) => {}
    }
    check(v, path, doc, errors);
}

fn schema_errors(report: &Value) -> Vec<String> {
    let mut errors = Vec::new();
    check(report, &mut Vec::new(), &documented(), &mut errors);
    errors
}

#[test]
fn a_run_writes_every_format_and_its_json_follows_the_documented_schema() {
    let reports = tempdir("formats");
    let out = run(&reports, &[]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(1),
        "ping-error fails stanza/ping: {stdout}"
    );
    let dir = run_dir(&reports);
    assert!(
        stdout.contains(&format!(
            "report: {}/ (report.json, junit.xml, summary.md, index.html)",
            dir.display()
        )),
        "{stdout}"
    );
    for name in ["report.json", "junit.xml", "summary.md", "index.html"] {
        assert!(dir.join(name).is_file(), "{name} written");
    }
    let leftovers: Vec<_> = std::fs::read_dir(&dir)
        .expect("dir")
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
        .collect();
    assert!(
        leftovers.is_empty(),
        "no temporary file left: {leftovers:?}"
    );

    let v = read_json(&dir.join("report.json"));
    let errors = schema_errors(&v);
    assert!(
        errors.is_empty(),
        "report.json against docs/reports.md:\n{}",
        errors.join("\n")
    );
    assert_eq!(v["schema_version"], gatecheck::report::SCHEMA_VERSION);
    let scenarios = v["scenarios"].as_array().expect("scenarios");
    assert_eq!(scenarios.len(), 3);
    for s in scenarios {
        let t = s["transcript"].as_array().map(Vec::len).unwrap_or(0);
        assert!(
            t > 3,
            "every scenario keeps its transcript, passes too: {}",
            s["id"]
        );
        let rerun = s["rerun"].as_str().unwrap_or_default();
        assert!(
            rerun.ends_with(&format!(
                "run --mutant ping-error --seed 7 --scenario {}",
                s["id"].as_str().unwrap_or_default()
            )),
            "{rerun}"
        );
    }

    // The fixed reports (warnings, every verdict, an interrupted run) follow it too.
    for report in [
        gatecheck::report::fixed::fixed_report(),
        gatecheck::report::fixed::fixed_interrupted_report(),
    ] {
        let v = serde_json::to_value(&report).expect("JSON");
        let errors = schema_errors(&v);
        assert!(
            errors.is_empty(),
            "fixed report against docs/reports.md:\n{}",
            errors.join("\n")
        );
    }

    let xml = std::fs::read_to_string(dir.join("junit.xml")).expect("junit.xml");
    let junit = quick_junit::Report::deserialize_from_str(&xml).expect("junit.xml parses");
    assert_eq!((junit.tests, junit.failures, junit.errors), (3, 1, 0));
    let ping = junit
        .test_suites
        .iter()
        .flat_map(|s| s.test_cases.iter())
        .find(|c| c.name.as_str() == "stanza/ping")
        .expect("a test case for stanza/ping");
    let reqs: Vec<&str> = ping
        .properties
        .iter()
        .filter(|p| p.name.as_str() == "requirement")
        .map(|p| p.value.as_str())
        .collect();
    assert_eq!(reqs, ["STANZA-7", "STANZA-3"]);
    assert!(
        xml.contains("expected: ")
            && xml.contains("got:      ")
            && xml.contains("--scenario stanza/ping"),
        "{xml}"
    );

    let md = std::fs::read_to_string(dir.join("summary.md")).expect("summary.md");
    assert!(
        md.starts_with("## ❌ gatecheck: 1 failed of 3 scenarios"),
        "{md}"
    );
    assert!(md.contains("--seed 7 --scenario stanza/ping\n"), "{md}");

    let page = std::fs::read_to_string(dir.join("index.html")).expect("index.html");
    for s in SCENARIOS {
        assert!(
            page.contains(&format!("<code>{s}</code>")),
            "{s} on the page"
        );
    }
    // Self-contained: nothing the browser would fetch (stanzas quote namespace URLs as text).
    for fetch in ["<link", " src=", "href=\"http", "url(", "@import"] {
        assert!(!page.contains(fetch), "{fetch} on the page");
    }
    let _ = std::fs::remove_dir_all(&reports);
}

#[test]
fn a_baseline_accepts_known_deviations_and_catches_new_ones() {
    let reports = tempdir("baseline");
    let file = reports.join("baseline.toml");
    let out = run(
        &reports.join("a"),
        &["--write-baseline", file.to_str().expect("utf-8")],
    );
    assert_eq!(
        out.status.code(),
        Some(1),
        "without --baseline the failure counts"
    );
    let written = std::fs::read_to_string(&file).expect("baseline written");
    assert!(
        written.contains("scenario = \"stanza/ping\"\nverdict = \"fail\"\nreason = \"STANZA-7: "),
        "{written}"
    );

    // The same run against its own baseline: nothing got worse.
    let out = run(
        &reports.join("b"),
        &["--baseline", file.to_str().expect("utf-8")],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(
        stdout.contains("0 new deviation(s), 1 known, 0 now passing"),
        "{stdout}"
    );

    // An entry for a scenario that passes is listed as resolved; a missing entry for the
    // failing one is a new deviation.
    let stale = reports.join("stale.toml");
    std::fs::write(
        &stale,
        "[[deviation]]\nscenario = \"stanza/iq-without-child\"\nverdict = \"fail\"\nreason = \"fixed since\"\n",
    )
    .expect("write");
    let out = run(
        &reports.join("c"),
        &["--baseline", stale.to_str().expect("utf-8")],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("  new: stanza/ping fail"), "{stdout}");
    assert!(
        stdout.contains("  now pass: stanza/iq-without-child (remove it from the baseline)"),
        "{stdout}"
    );
    let v = read_json(&run_dir(&reports.join("c")).join("report.json"));
    assert_eq!(
        v["baseline"]["resolved"][0]["scenario"],
        "stanza/iq-without-child"
    );
    assert_eq!(v["baseline"]["regressions"][0]["scenario"], "stanza/ping");
    assert!(schema_errors(&v).is_empty(), "{:?}", schema_errors(&v));

    // A malformed baseline stops the run before it starts, naming file and line.
    let bad = reports.join("bad.toml");
    std::fs::write(
        &bad,
        "\n[[deviation]]\nscenario = \"stanza/ping\"\nverdict = \"pass\"\nreason = \"r\"\n",
    )
    .expect("write");
    let out = run(
        &reports.join("d"),
        &["--baseline", bad.to_str().expect("utf-8")],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!("baseline {}:2: verdict \"pass\"", bad.display())),
        "{stderr}"
    );
    assert!(!reports.join("d").exists(), "no run, no report");
    let _ = std::fs::remove_dir_all(&reports);
}

#[test]
fn a_report_directory_that_cannot_be_written_is_a_clear_error() {
    let place = tempdir("unwritable");
    let blocker = place.join("reports");
    std::fs::write(&blocker, b"a file, not a directory").expect("write");
    let out = run(&blocker, &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "gatecheck: error: cannot write {}/",
            blocker.display()
        )),
        "{stderr}"
    );
    let _ = std::fs::remove_dir_all(&place);
}

/// SIGINT stops the run, and its report has every format.
#[test]
fn an_interrupted_run_writes_every_format() {
    need_reference();
    let reports = tempdir("interrupted");
    let mut child = bin()
        .args([
            "run",
            "--seed",
            "3",
            "--jobs",
            "1",
            "--filter",
            "stream/reconnect",
            "--report-dir",
        ])
        .arg(&reports)
        .env("CI", "true")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("starts");
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let killed = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(killed.success());
    let status = child.wait().expect("ends");
    assert_eq!(status.code(), Some(130));
    let dir = run_dir(&reports);
    for name in ["report.json", "junit.xml", "summary.md", "index.html"] {
        assert!(dir.join(name).is_file(), "{name} written");
    }
    let v = read_json(&dir.join("report.json"));
    assert_eq!(v["interrupted"], "SIGINT");
    let md = std::fs::read_to_string(dir.join("summary.md")).expect("summary.md");
    assert!(md.contains("(interrupted by SIGINT, "), "{md}");
    let xml = std::fs::read_to_string(dir.join("junit.xml")).expect("junit.xml");
    assert!(quick_junit::Report::deserialize_from_str(&xml).is_ok());
    let _ = std::fs::remove_dir_all(&reports);
}
