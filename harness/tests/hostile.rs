//! The harness against its own misbehaving peer (fixtures/iut/hostile/hostile.py): every
//! behaviour ends each scenario within its limit plus the teardown grace, with a valid
//! report, bounded harness memory, no process left, and never a pass for a lie. SIGINT and
//! SIGTERM stop a run with a report and no process left.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const STEP_MS: u64 = 1000;
const SCENARIO_MS: u64 = 4000;
/// runner::TEARDOWN_GRACE, as DRIVER.md §6 documents it.
const GRACE_MS: u64 = 2000;
/// Scheduling noise on a loaded 2-core machine.
const SLACK_MS: u64 = 1500;
/// The harness's own peak memory: its queues and buffers are bounded far below this.
const MAX_RSS_KIB: u64 = 256 * 1024;

/// Scenarios each behaviour is run against: a close, a ping, and a 20 MiB write.
const SCENARIOS: &[&str] = &[
    "stream/close-received",
    "stanza/ping",
    "stream/limit-huge-text",
];

fn shim() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/iut/hostile/hostile.py")
}

/// (name, is a lie) for every behaviour the shim lists.
fn behaviours() -> Vec<(String, bool)> {
    let out = Command::new("python3")
        .arg(shim())
        .arg("--list")
        .output()
        .expect("python3 runs the hostile shim");
    assert!(out.status.success(), "hostile.py --list failed");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let mut f = l.split('\t');
            Some((f.next()?.to_string(), f.next()? == "lie"))
        })
        .collect()
}

fn iut_file(dir: &Path, behaviour: &str) -> PathBuf {
    let path = dir.join(format!("{behaviour}.toml"));
    let text = format!(
        "name = \"hostile {behaviour}\"\nroles = [\"client\"]\nfeatures = [\"transport.tls\"]\ntransport = \"tls\"\n\
         [launch]\ncommand = {:?}\nargs = [{behaviour:?}]\n\
         [timeouts]\nready_ms = 1500\nstep_ms = {STEP_MS}\nscenario_ms = {SCENARIO_MS}\n",
        shim().display().to_string()
    );
    std::fs::write(&path, text).expect("write iut.toml");
    path
}

fn start(iut: &Path, report_dir: &Path, scenarios: &[&str], jobs: usize) -> Child {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_gatecheck"));
    cmd.arg("run")
        .arg("--iut")
        .arg(iut)
        .arg("--seed")
        .arg("1")
        .arg("--jobs")
        .arg(jobs.to_string())
        .arg("--report-dir")
        .arg(report_dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    for s in scenarios {
        cmd.arg("--scenario").arg(s);
    }
    cmd.spawn().expect("gatecheck starts")
}

/// Processes still alive that a run with this harness pid started.
fn survivors(harness_pid: u32) -> Vec<String> {
    let marker = format!("GATECHECK_IUT_TOKEN={harness_pid}-");
    let mut found = Vec::new();
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return found;
    };
    for p in procs.flatten() {
        let name = p.file_name().to_string_lossy().into_owned();
        if !name.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let Ok(env) = std::fs::read(p.path().join("environ")) else {
            continue;
        };
        if env
            .split(|&b| b == 0)
            .any(|kv| kv.starts_with(marker.as_bytes()))
        {
            let cmdline = std::fs::read(p.path().join("cmdline")).unwrap_or_default();
            found.push(format!(
                "{name}: {}",
                String::from_utf8_lossy(&cmdline).replace('\0', " ")
            ));
        }
    }
    found
}

/// Waits for the run to end, killing it (and failing) past `limit`.
fn wait_bounded(child: &mut Child, limit: Duration) -> Result<std::process::ExitStatus, String> {
    let until = Instant::now() + limit;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Ok(status);
        }
        if Instant::now() > until {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!(
                "the run did not end within {} ms",
                limit.as_millis()
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn only_report(dir: &Path) -> Result<serde_json::Value, String> {
    let runs: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| format!("no report folder: {e}"))?
        .flatten()
        .map(|e| e.path())
        .collect();
    let [run] = runs.as_slice() else {
        return Err(format!("expected one run folder, found {}", runs.len()));
    };
    let text = std::fs::read_to_string(run.join("report.json"))
        .map_err(|e| format!("no report.json: {e}"))?;
    serde_json::from_str(&text).map_err(|e| format!("report.json is not JSON: {e}"))
}

/// Runs one behaviour and returns what is wrong with how the harness handled it.
fn check_behaviour(tmp: &Path, behaviour: &str, lie: bool) -> Vec<String> {
    let mut problems = Vec::new();
    let dir = tmp.join(behaviour);
    std::fs::create_dir_all(&dir).expect("temp dir");
    let iut = iut_file(&dir, behaviour);
    let reports = dir.join("reports");
    let mut child = start(&iut, &reports, SCENARIOS, SCENARIOS.len());
    let pid = child.id();
    // All scenarios run at once, so the whole run is bounded as one scenario is.
    let bound = Duration::from_millis(SCENARIO_MS + GRACE_MS + 2 * SLACK_MS + 3000);
    match wait_bounded(&mut child, bound) {
        Ok(status) if status.code() == Some(0) && lie => {
            problems.push("a lying shim passed the run".into())
        }
        Ok(status) if !matches!(status.code(), Some(0) | Some(1)) => {
            problems.push(format!("exit status {status}, expected 0 or 1"))
        }
        Ok(_) => {}
        Err(e) => problems.push(e),
    }
    std::thread::sleep(Duration::from_millis(100));
    let left = survivors(pid);
    if !left.is_empty() {
        problems.push(format!("processes left behind: {left:?}"));
    }
    let report = match only_report(&reports) {
        Ok(r) => r,
        Err(e) => {
            problems.push(e);
            return problems;
        }
    };
    let scenarios = report["scenarios"].as_array().cloned().unwrap_or_default();
    if scenarios.len() != SCENARIOS.len() {
        problems.push(format!(
            "{} scenario results, expected {}",
            scenarios.len(),
            SCENARIOS.len()
        ));
    }
    for s in &scenarios {
        let id = s["id"].as_str().unwrap_or("?");
        let verdict = s["verdict"].as_str().unwrap_or("?");
        let ms = s["duration_ms"].as_u64().unwrap_or(u64::MAX);
        if ms > SCENARIO_MS + GRACE_MS + SLACK_MS {
            problems.push(format!(
                "{id} took {ms} ms, more than its limit plus the grace"
            ));
        }
        if lie && verdict == "pass" {
            problems.push(format!("{id}: a lie passed"));
        }
        // Every scenario here applies (TLS is claimed, nothing optional is needed): nothing the
        // shim does, `unsupported` included, may make it not-applicable.
        if verdict == "not-applicable" {
            problems.push(format!("{id}: not-applicable: {}", s["failure"]["got"]));
        }
        if verdict == "error" {
            problems.push(format!("{id}: harness error: {}", s["failure"]["got"]));
        }
    }
    match report["harness"]["peak_rss_kib"].as_u64() {
        Some(kib) if kib > MAX_RSS_KIB => {
            problems.push(format!("harness peak RSS {kib} KiB > {MAX_RSS_KIB} KiB"))
        }
        Some(_) => {}
        None => problems.push("the report has no harness.peak_rss_kib".into()),
    }
    problems
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("gatecheck-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

#[test]
fn every_hostile_behaviour_ends_in_a_verdict_with_no_process_left() {
    let all = behaviours();
    assert!(all.len() >= 25, "only {} behaviours", all.len());
    assert!(all.iter().filter(|(_, lie)| *lie).count() >= 4);
    let tmp = temp_dir("hostile");
    // Two behaviours at a time: floods are CPU-heavy on a 2-core machine.
    let mut failures = Vec::new();
    for pair in all.chunks(2) {
        let handles: Vec<_> = pair
            .iter()
            .cloned()
            .map(|(name, lie)| {
                let tmp = tmp.clone();
                std::thread::spawn(move || (name.clone(), check_behaviour(&tmp, &name, lie)))
            })
            .collect();
        for h in handles {
            let (name, problems) = h.join().expect("behaviour thread");
            for p in problems {
                failures.push(format!("{name}: {p}"));
            }
        }
    }
    let _ = std::fs::remove_dir_all(&tmp);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Sends `signal` (INT or TERM) to a run that is still going, and checks the outcome.
fn interrupt(signal: &str, times: usize) -> (Option<i32>, PathBuf, Vec<String>) {
    let tmp = temp_dir(&format!("sig{signal}{times}"));
    // A shim that ignores shutdown, over a suite longer than the wait: scenarios are running.
    let iut = iut_file(&tmp, "ignore-shutdown");
    let reports = tmp.join("reports");
    let many = [
        "stream/close-received",
        "stanza/ping",
        "stream/limit-huge-text",
        "stream/reconnect",
        "stanza/iq-id-echoed",
        "stream/whitespace-keepalive",
    ];
    let mut child = start(&iut, &reports, &many, 1);
    let pid = child.id();
    std::thread::sleep(Duration::from_millis(1500));
    for _ in 0..times {
        let _ = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(pid.to_string())
            .status();
        std::thread::sleep(Duration::from_millis(50));
    }
    let status = wait_bounded(&mut child, Duration::from_millis(GRACE_MS + 3000))
        .unwrap_or_else(|e| panic!("{e}"));
    std::thread::sleep(Duration::from_millis(100));
    (status.code(), reports, survivors(pid))
}

#[test]
fn sigint_stops_the_run_writes_the_report_and_leaves_no_process() {
    let (code, reports, left) = interrupt("INT", 1);
    assert_eq!(code, Some(130));
    assert!(left.is_empty(), "left behind: {left:?}");
    let report = only_report(&reports).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(report["interrupted"], "SIGINT");
    let not_run = report["not_run"].as_array().cloned().unwrap_or_default();
    assert!(!not_run.is_empty(), "{report}");
    assert!(
        not_run[0]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("interrupted (SIGINT)"))
    );
    let ran = report["scenarios"].as_array().cloned().unwrap_or_default();
    assert_eq!(ran.len() + not_run.len(), 6);
    assert!(
        ran.iter()
            .all(|s| s["verdict"] != "pass" || s["id"] != "stream/reconnect")
    );
}

#[test]
fn sigterm_exits_143_with_a_report() {
    let (code, reports, left) = interrupt("TERM", 1);
    assert_eq!(code, Some(143));
    assert!(left.is_empty(), "left behind: {left:?}");
    let report = only_report(&reports).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(report["interrupted"], "SIGTERM");
}

#[test]
fn a_second_sigint_exits_at_once_and_still_leaves_no_process() {
    let (code, _reports, left) = interrupt("INT", 2);
    assert_eq!(code, Some(130));
    assert!(left.is_empty(), "left behind: {left:?}");
}
