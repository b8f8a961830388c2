//! Every process an IUT starts is found and killed when its scenario ends.
//!
//! Each launched IUT leads its own process group and carries a per-launch token in its
//! environment (`GATECHECK_IUT_TOKEN`), which its children inherit. At the end of a
//! scenario the harness kills, with SIGKILL: the group, every descendant still linked to
//! the IUT's process, and every process re-parented to the harness (a double-forked
//! daemon, once the harness is a child subreaper: see [`become_subreaper`]) that carries
//! the launch's token. Reading `/proc` is Linux-only; elsewhere only the group is killed.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;

use rustix::process::{Pid, Signal, WaitOptions};

/// The environment variable that marks every process of one IUT launch.
pub const TOKEN_ENV: &str = "GATECHECK_IUT_TOKEN";

/// Launches whose processes have not been killed yet: token → pid of the launched process.
/// The signal handler of `gatecheck run` kills them all on a second Ctrl-C.
static LIVE: Mutex<BTreeMap<String, i32>> = Mutex::new(BTreeMap::new());

/// Makes orphaned descendants (double-forked daemons) children of this process instead of
/// init's, so that they can still be found and reaped. `gatecheck run` calls it at start.
pub fn become_subreaper() -> std::io::Result<()> {
    rustix::process::set_child_subreaper(Some(rustix::process::getpid())).map_err(Into::into)
}

/// The processes of one launch; dropping it kills them all.
#[derive(Debug)]
pub struct ProcessTree {
    pid: i32,
    token: String,
    killed: bool,
}

impl ProcessTree {
    /// Registers a launched process (the leader of its own group) and its token.
    pub fn adopt(pid: u32, token: String) -> ProcessTree {
        let pid = i32::try_from(pid).unwrap_or(0);
        if let Ok(mut live) = LIVE.lock() {
            live.insert(token.clone(), pid);
        }
        ProcessTree {
            pid,
            token,
            killed: false,
        }
    }

    /// Kills the group, every descendant and every escaped process with this launch's token.
    /// The launched process itself is left for its owner (tokio) to reap.
    pub fn kill_all(&mut self) {
        if self.killed {
            return;
        }
        self.killed = true;
        if let Ok(mut live) = LIVE.lock() {
            live.remove(&self.token);
        }
        kill_launch(self.pid, &self.token);
    }

    pub fn token(&self) -> &str {
        &self.token
    }
}

impl Drop for ProcessTree {
    fn drop(&mut self) {
        self.kill_all();
    }
}

/// Kills every launch still registered (a second Ctrl-C, or a watchdog giving up on a task).
pub fn kill_every_live() {
    let live: Vec<(String, i32)> = match LIVE.lock() {
        Ok(mut l) => std::mem::take(&mut *l).into_iter().collect(),
        Err(_) => return,
    };
    for (token, pid) in live {
        kill_launch(pid, &token);
    }
}

/// Kills the launch registered under `token`, if it is still registered.
pub fn kill_token(token: &str) {
    let pid = LIVE.lock().ok().and_then(|mut l| l.remove(token));
    if let Some(pid) = pid {
        kill_launch(pid, token);
    }
}

/// A fork racing the kill can add a process between two scans; a few passes settle it.
const PASSES: usize = 6;

fn kill_launch(leader: i32, token: &str) {
    let mut reap: BTreeSet<i32> = BTreeSet::new();
    for pass in 0..PASSES {
        let mut victims: BTreeSet<i32> = BTreeSet::new();
        if leader > 0 {
            descendants(leader, &mut victims);
        }
        for child in own_children() {
            if child != leader && carries_token(child, token) {
                victims.insert(child);
                descendants(child, &mut victims);
            }
        }
        if let Some(pid) = Pid::from_raw(leader) {
            // ESRCH once the group is empty: nothing to do.
            let _ = rustix::process::kill_process_group(pid, Signal::KILL);
        }
        if victims.is_empty() && pass > 0 {
            break;
        }
        for &v in &victims {
            if let Some(pid) = Pid::from_raw(v) {
                let _ = rustix::process::kill_process(pid, Signal::KILL);
            }
        }
        reap.extend(victims);
        if victims_gone(&reap, leader) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    // Killed orphans became this process's children (as subreaper): reap their zombies.
    // Only pids killed here are waited for, never the launched process itself, whose
    // status belongs to its `Child` handle.
    reap.remove(&leader);
    for _ in 0..50 {
        reap.retain(|&p| match Pid::from_raw(p) {
            Some(pid) => matches!(
                rustix::process::waitpid(Some(pid), WaitOptions::NOHANG),
                Ok(None)
            ),
            None => false,
        });
        if reap.is_empty() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
}

/// Whether no process of `pids` (other than zombies) is alive any more.
fn victims_gone(pids: &BTreeSet<i32>, leader: i32) -> bool {
    pids.iter().filter(|&&p| p != leader).all(|&p| !alive(p))
}

/// Alive and not a zombie.
fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the command name, which is in parentheses and may contain any byte.
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
        Err(_) => false,
    }
}

/// Adds every descendant of `pid` (through /proc/PID/task/TID/children) to `out`.
fn descendants(pid: i32, out: &mut BTreeSet<i32>) {
    let mut stack = vec![pid];
    while let Some(p) = stack.pop() {
        for c in children_of(p) {
            if out.insert(c) {
                stack.push(c);
            }
        }
    }
}

fn children_of(pid: i32) -> Vec<i32> {
    let mut found = Vec::new();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return found;
    };
    for task in tasks.flatten() {
        if let Ok(list) = std::fs::read_to_string(task.path().join("children")) {
            found.extend(
                list.split_whitespace()
                    .filter_map(|s| s.parse::<i32>().ok()),
            );
        }
    }
    found
}

fn own_children() -> Vec<i32> {
    children_of(rustix::process::getpid().as_raw_nonzero().get())
}

fn carries_token(pid: i32, token: &str) -> bool {
    let Ok(env) = std::fs::read(format!("/proc/{pid}/environ")) else {
        return false;
    };
    let wanted = format!("{TOKEN_ENV}={token}");
    env.split(|&b| b == 0).any(|kv| kv == wanted.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_forked_grandchild_is_killed_with_its_group() {
        let token = format!("unit-{}", std::process::id());
        // The shell starts a sleeping grandchild in a new session (out of the group) and waits.
        let mut cmd = std::process::Command::new("sh");
        cmd.args(["-c", "setsid sleep 30 & echo $!; wait"])
            .env(TOKEN_ENV, &token)
            .stdout(std::process::Stdio::piped());
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        let mut child = cmd.spawn().expect("sh starts");
        let mut line = String::new();
        let out = child.stdout.take().expect("stdout");
        std::io::BufRead::read_line(&mut std::io::BufReader::new(out), &mut line)
            .expect("pid line");
        let grandchild: i32 = line.trim().parse().expect("a pid");
        assert!(alive(grandchild));
        let mut tree = ProcessTree::adopt(child.id(), token);
        tree.kill_all();
        let _ = child.wait();
        for _ in 0..100 {
            if !alive(grandchild) {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert!(!alive(grandchild), "the setsid grandchild survived");
    }
}
