//! The memory oracle of `gatecheck fuzz`: the launched IUT's resident set, sampled while a
//! session runs.
//!
//! SPEC.md bounds what a receiver may hold (STREAM-32: it detects an oversized stanza "without
//! first buffering more than the limit plus 64 KiB"), so an IUT whose memory keeps growing as
//! stanzas arrive is a finding even when it answers every ping. Sessions are run by the
//! ordinary scenario runner, which owns the IUT's process handle; the campaign does not reach
//! into it. Instead each session's launch carries one more environment variable,
//! [`MARKER_ENV`], naming the session, and a sampler finds the processes that carry it among
//! this process's descendants (a launch script's children inherit it, so the resident sets of
//! all of them are added up). Reading `/proc` is cheap (a few small files per sample), so the
//! sampler reads every [`SAMPLE_EVERY`], which is finer than a case at the rates the campaign
//! runs; on systems without `/proc` it finds nothing and the oracle stays silent.
//!
//! The baseline is the first sample taken once the IUT holds a socket, i.e. once it has
//! connected to the gatekeeper: what a client allocates to start (runtime, libraries, keys) is
//! behind it, and login and bind, which follow within milliseconds on loopback, cost far less
//! than the bound. Growth is the largest sample after it minus the baseline.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::task::JoinHandle;

/// The environment variable that names a campaign's session in its IUT's processes.
pub const MARKER_ENV: &str = "GATECHECK_FUZZ_SESSION";
/// How often a session's IUT is sampled.
pub const SAMPLE_EVERY: Duration = Duration::from_millis(10);
/// Rescan for the marked processes every this many samples once some were found (a launch
/// script may start the client a moment after itself).
const RESCAN_EVERY: u32 = 20;
/// The default bound on growth over the baseline, in MiB (`--max-rss-growth`).
pub const DEFAULT_MAX_GROWTH_MIB: u64 = 64;

/// What a session's sampler saw.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// Resident set (KiB, all marked processes) at the baseline; `None` when the IUT was never
    /// seen connected (not launched by this process, or no `/proc`).
    pub baseline_kib: Option<u64>,
    /// The largest resident set sampled after the baseline, in KiB.
    pub peak_kib: u64,
    /// Samples taken after the baseline.
    pub samples: u32,
}

impl Usage {
    /// Growth over the baseline, in KiB (0 without a baseline).
    pub fn growth_kib(&self) -> u64 {
        self.baseline_kib
            .map_or(0, |b| self.peak_kib.saturating_sub(b))
    }

    /// Whether the growth exceeds `max_mib` MiB.
    pub fn exceeds(&self, max_mib: u64) -> bool {
        self.growth_kib() > max_mib.saturating_mul(1024)
    }
}

/// A running sampler; [`Sampler::finish`] stops it and gives what it saw.
pub struct Sampler {
    stop: Arc<AtomicBool>,
    task: JoinHandle<Usage>,
}

impl Sampler {
    /// Starts sampling the processes marked with `marker`.
    pub fn start(marker: String) -> Sampler {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let task = tokio::spawn(async move {
            let needle = format!("{MARKER_ENV}={marker}");
            let mut usage = Usage::default();
            let mut pids: BTreeSet<i32> = BTreeSet::new();
            let mut tick: u32 = 0;
            let mut interval = tokio::time::interval(SAMPLE_EVERY);
            interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            while !flag.load(Ordering::Relaxed) {
                interval.tick().await;
                if pids.is_empty() || tick.is_multiple_of(RESCAN_EVERY) {
                    pids = marked_processes(&needle);
                }
                tick = tick.wrapping_add(1);
                observe(&mut usage, &pids);
            }
            // One last look: the IUT may still be alive when the session's last answer came.
            observe(&mut usage, &pids);
            usage
        });
        Sampler { stop, task }
    }

    /// Stops the sampler and returns what it saw.
    pub async fn finish(self) -> Usage {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.unwrap_or_default()
    }
}

/// Adds one sample of `pids` to `usage`: the baseline once they hold a socket, the peak after.
fn observe(usage: &mut Usage, pids: &BTreeSet<i32>) {
    if pids.is_empty() {
        return;
    }
    let rss: Option<u64> = pids.iter().filter_map(|&p| rss_kib(p)).reduce(|a, b| a + b);
    let Some(rss) = rss else {
        return;
    };
    match usage.baseline_kib {
        None => {
            if pids.iter().any(|&p| holds_socket(p)) {
                usage.baseline_kib = Some(rss);
                usage.peak_kib = rss;
            }
        }
        Some(_) => {
            usage.peak_kib = usage.peak_kib.max(rss);
            usage.samples += 1;
        }
    }
}

/// `VmRSS` of `pid` in KiB (`None` once it exited, or without `/proc`).
pub fn rss_kib(pid: i32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    parse_vm_rss(&status)
}

/// The `VmRSS:` line of a `/proc/<pid>/status` text, in KiB.
fn parse_vm_rss(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Whether `pid` has a socket open (an IUT that has connected).
fn holds_socket(pid: i32) -> bool {
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return false;
    };
    fds.flatten().any(|fd| {
        std::fs::read_link(fd.path()).is_ok_and(|target| {
            target
                .as_os_str()
                .as_encoded_bytes()
                .starts_with(b"socket:")
        })
    })
}

/// This process's descendants whose environment holds `needle` (`NAME=value`).
fn marked_processes(needle: &str) -> BTreeSet<i32> {
    let mut found = BTreeSet::new();
    let mut stack = children_of(std::process::id() as i32);
    let mut visited = BTreeSet::new();
    while let Some(pid) = stack.pop() {
        if !visited.insert(pid) {
            continue;
        }
        if carries(pid, needle) {
            found.insert(pid);
        }
        stack.extend(children_of(pid));
    }
    found
}

/// The children of every thread of `pid`.
///
/// Thread TID's list is read as `/proc/TID/task/TID/children` (TID's own directory, hidden
/// from listings but there), not as `/proc/PID/task/TID/children`: the same file, but a
/// dentry under `/proc/PID/task/TID` is flushed twice when the IUT exits, by the thread's
/// exit and by the reaping of the process, and the second flush spins (`d_walk` again and
/// again) while the first holds it. Reaping a multi-threaded IUT whose threads were read under
/// `/proc/PID/task` cost 3 to 25 % of a campaign's CPU (`perf`: `wait4` -> `release_task` ->
/// `d_invalidate` -> `shrink_dcache_parent` -> `d_walk`, more on a loaded machine).
fn children_of(pid: i32) -> Vec<i32> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    let mut found = Vec::new();
    for task in tasks.flatten() {
        let tid = task.file_name();
        let Some(tid) = tid.to_str() else { continue };
        if let Ok(list) = std::fs::read_to_string(format!("/proc/{tid}/task/{tid}/children")) {
            found.extend(
                list.split_whitespace()
                    .filter_map(|p| p.parse::<i32>().ok()),
            );
        }
    }
    found
}

fn carries(pid: i32, needle: &str) -> bool {
    std::fs::read(format!("/proc/{pid}/environ"))
        .is_ok_and(|env| env.split(|&b| b == 0).any(|var| var == needle.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vm_rss_is_read_in_kib() {
        let status = "Name:\tx\nVmPeak:\t  9000 kB\nVmRSS:\t    4242 kB\nRssAnon:\t 100 kB\n";
        assert_eq!(parse_vm_rss(status), Some(4242));
        assert_eq!(parse_vm_rss("Name:\tzombie\n"), None);
    }

    #[test]
    fn growth_is_measured_from_the_baseline() {
        let mut u = Usage::default();
        assert_eq!(u.growth_kib(), 0);
        assert!(!u.exceeds(0));
        u.baseline_kib = Some(10_000);
        u.peak_kib = 10_000 + 64 * 1024;
        assert!(!u.exceeds(64));
        u.peak_kib += 1;
        assert!(u.exceeds(64));
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn this_process_has_a_resident_set_and_a_marked_child_is_found() {
        assert!(rss_kib(std::process::id() as i32).is_some_and(|k| k > 0));
        let mut child = std::process::Command::new("sleep")
            .arg("5")
            .env(MARKER_ENV, "unit-test-marker")
            .spawn()
            .unwrap();
        let pid = child.id() as i32;
        let mut found = BTreeSet::new();
        for _ in 0..100 {
            found = marked_processes(&format!("{MARKER_ENV}=unit-test-marker"));
            if found.contains(&pid) {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = child.kill();
        let _ = child.wait();
        assert!(found.contains(&pid), "{found:?}");
        assert!(!marked_processes(&format!("{MARKER_ENV}=another")).contains(&pid));
    }
}
