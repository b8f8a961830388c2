//! The harness's end of the driver protocol (harness/DRIVER.md): launches a
//! client IUT and exchanges newline-delimited JSON over its stdin and stdout.
//!
//! Everything the IUT prints is hostile input: lines are bounded, non-JSON
//! lines become `Bad` messages, and stderr is kept only as a bounded tail.

use std::os::fd::AsFd;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, ChildStdin};
use tokio::sync::{Notify, mpsc};

use super::Launch;
use super::procs::{ProcessTree, TOKEN_ENV};
use super::protocol::parse_line;
pub use super::protocol::{
    Command, DisconnectReason, DriverMsg, ErrorDirection, Event, EventKind, SeqLedger,
    event_matches, optional_capability_of,
};

/// Longest driver line accepted, in bytes.
pub const MAX_LINE: usize = 1 << 20;
/// Driver messages queued before the IUT's stdout is no longer read (backpressure: a
/// flooding IUT blocks on its own stdout instead of growing the harness's memory).
pub const QUEUE: usize = 1024;
/// How much of the IUT's stderr is kept for the report.
const STDERR_TAIL: usize = 16 * 1024;
/// How long writing one command may take before the IUT counts as not reading its stdin.
const WRITE_LIMIT: Duration = Duration::from_millis(1000);

/// A running IUT process (a driven client, or a provider server).
pub struct DriverProcess {
    child: Child,
    tree: ProcessTree,
    /// A second handle on the IUT's stdout pipe, only to ask how many bytes wait unread.
    stdout_probe: Option<std::os::fd::OwnedFd>,
    /// True while the line reader has stamped everything it read and waits for more.
    reader_idle: Arc<AtomicBool>,
    /// Signalled each time the line reader becomes idle, so `settle` wakes at once.
    reader_settled: Arc<Notify>,
    stdin: Option<ChildStdin>,
    stderr_tail: Arc<Mutex<Vec<u8>>>,
    stderr_task: Option<tokio::task::JoinHandle<()>>,
    next_seq: u64,
    pub ledger: SeqLedger,
}

/// How long the stderr tail may take to reach its end after the IUT was stopped.
const STDERR_DRAIN: Duration = Duration::from_millis(700);

impl DriverProcess {
    /// Starts the IUT in its own process group, marked with `token`; its stdout is parsed
    /// into `tx`.
    pub fn spawn(
        launch: &Launch,
        token: &str,
        tx: mpsc::Sender<DriverMsg>,
    ) -> std::io::Result<DriverProcess> {
        let mut cmd = tokio::process::Command::new(&launch.command);
        cmd.args(&launch.args)
            .envs(&launch.env)
            .env(TOKEN_ENV, token)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        if let Some(cwd) = &launch.cwd {
            cmd.current_dir(cwd);
        }
        let mut child = cmd.spawn().map_err(|e| {
            std::io::Error::new(
                e.kind(),
                format!("cannot start {}: {e}", launch.command.display()),
            )
        })?;
        let tree = ProcessTree::adopt(child.id().unwrap_or(0), token.to_string());
        let stdin = child.stdin.take();
        let stderr_tail = Arc::new(Mutex::new(Vec::new()));
        let idle = Arc::new(AtomicBool::new(false));
        let settled = Arc::new(Notify::new());
        let mut stdout_probe = None;
        if let Some(out) = child.stdout.take() {
            stdout_probe = out.as_fd().try_clone_to_owned().ok();
            tokio::spawn(read_lines(out, tx, Arc::clone(&idle), Arc::clone(&settled)));
        }
        let stderr_task = child
            .stderr
            .take()
            .map(|err| tokio::spawn(keep_tail(err, stderr_tail.clone())));
        Ok(DriverProcess {
            child,
            tree,
            stdout_probe,
            reader_idle: idle,
            reader_settled: settled,
            stdin,
            stderr_tail,
            stderr_task,
            next_seq: 1,
            ledger: SeqLedger::default(),
        })
    }

    /// Sends a command object, adding `seq`; returns the line sent and its seq. An IUT
    /// that does not take a command within a second is not reading its stdin.
    pub async fn send(&mut self, mut command: serde_json::Value) -> std::io::Result<(u64, String)> {
        let seq = self.next_seq;
        self.next_seq += 1;
        let name = command
            .get("cmd")
            .and_then(|c| c.as_str())
            .unwrap_or_default()
            .to_string();
        if let Some(obj) = command.as_object_mut() {
            obj.insert("seq".into(), serde_json::Value::from(seq));
        }
        let mut line = command.to_string();
        line.push('\n');
        let stdin = self.stdin.as_mut().ok_or_else(|| {
            std::io::Error::new(std::io::ErrorKind::BrokenPipe, "IUT stdin is closed")
        })?;
        let write = async {
            stdin.write_all(line.as_bytes()).await?;
            stdin.flush().await
        };
        match tokio::time::timeout(WRITE_LIMIT, write).await {
            Ok(r) => r?,
            Err(_) => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!(
                        "the IUT took no command for {} ms: it does not read its stdin",
                        WRITE_LIMIT.as_millis()
                    ),
                ));
            }
        }
        self.ledger.sent(seq, &name);
        line.pop();
        Ok((seq, line))
    }

    /// Waits (at most `limit`) until every event line the IUT has written so far has been
    /// read and stamped. Called before the harness does something an event may later claim
    /// to follow (its closing tag, a stream error), so that an event written earlier cannot
    /// be stamped later just because the reader task ran late.
    pub async fn settle(&self, limit: Duration) {
        let Some(probe) = &self.stdout_probe else {
            return;
        };
        let until = tokio::time::Instant::now() + limit;
        loop {
            // Registered before the check, so the reader going idle in between still wakes us.
            let settled = self.reader_settled.notified();
            let mut settled = std::pin::pin!(settled);
            settled.as_mut().enable();
            let unread = rustix::io::ioctl_fionread(probe).unwrap_or(0);
            if unread == 0 && self.reader_idle.load(Ordering::Acquire) {
                return;
            }
            if tokio::time::Instant::now() >= until {
                return;
            }
            // Woken as soon as the reader has stamped what it read (a timer's millisecond,
            // rounded up, was most of the cost of a step); the millisecond still bounds the
            // wait when bytes sit in the pipe before the reader is scheduled to read them.
            let _ = tokio::time::timeout_at(
                until.min(tokio::time::Instant::now() + Duration::from_millis(1)),
                settled,
            )
            .await;
        }
    }

    /// The exit status, if the process has ended.
    pub fn try_exit_status(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// The exit status, waiting up to `wait` for a process that is ending to be reaped.
    pub async fn exit_status_within(&mut self, wait: Duration) -> Option<std::process::ExitStatus> {
        tokio::time::timeout(wait, self.child.wait())
            .await
            .ok()
            .and_then(Result::ok)
    }

    /// The last bytes the IUT wrote to stderr, lossily decoded, once stderr has
    /// closed (or after a short wait, if a child of the IUT keeps it open).
    /// The stderr tail, read to its end: the pipe closes once every process holding it is
    /// gone (after `stop` or `kill`), so what an IUT wrote as it died (a traceback) is in.
    /// Bounded, within the teardown grace, for a pipe some escaped process keeps open.
    pub async fn stderr_tail(&mut self) -> String {
        if let Some(task) = self.stderr_task.take() {
            let _ = tokio::time::timeout(STDERR_DRAIN, task).await;
        }
        self.stderr_now()
    }

    /// The stderr tail as it is now, without waiting.
    pub fn stderr_now(&self) -> String {
        let tail = self
            .stderr_tail
            .lock()
            .map(|t| t.clone())
            .unwrap_or_default();
        String::from_utf8_lossy(&tail).into_owned()
    }

    /// Kills the process with everything it started, and reaps it.
    pub async fn kill(&mut self) {
        self.stdin = None;
        self.tree.kill_all();
        let _ = self.child.start_kill();
        let _ = tokio::time::timeout(Duration::from_millis(500), self.child.wait()).await;
    }

    /// Asks politely (shutdown command, stdin closed), then, after `grace`, kills the
    /// process and everything it started, whether or not it exited.
    pub async fn stop(&mut self, grace: Duration) {
        if self.try_exit_status().is_none() {
            let _ = self.send(Command::Shutdown.to_json()).await;
        }
        self.stdin = None;
        let _ = tokio::time::timeout(grace, self.child.wait()).await;
        self.kill().await;
    }

    /// Kills at once, without waiting for anything (a scenario out of time).
    pub fn kill_now(&mut self) {
        self.stdin = None;
        self.tree.kill_all();
        let _ = self.child.start_kill();
    }
}

async fn read_lines<R: AsyncRead + Unpin>(
    mut out: R,
    tx: mpsc::Sender<DriverMsg>,
    idle: Arc<AtomicBool>,
    settled: Arc<Notify>,
) {
    let mut buf: Vec<u8> = Vec::with_capacity(4096);
    let mut chunk = [0u8; 8192];
    let mut discarding = false;
    loop {
        // Everything read so far is stamped and queued: `settle` may rely on it.
        idle.store(true, Ordering::Release);
        settled.notify_waiters();
        let read = out.read(&mut chunk).await;
        idle.store(false, Ordering::Release);
        let n = match read {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let mut rest = &chunk[..n];
        while let Some(pos) = rest.iter().position(|&b| b == b'\n') {
            if discarding {
                discarding = false;
            } else {
                buf.extend_from_slice(&rest[..pos]);
                let msg = parse_line(&buf, Instant::now());
                if tx.send(msg).await.is_err() {
                    return;
                }
            }
            buf.clear();
            rest = &rest[pos + 1..];
        }
        if !discarding {
            buf.extend_from_slice(rest);
            if buf.len() > MAX_LINE {
                let head = String::from_utf8_lossy(&buf[..80]).into_owned();
                let _ = tx
                    .send(DriverMsg::Bad {
                        at: Instant::now(),
                        line: format!("{head}…"),
                        why: format!("driver line longer than {MAX_LINE} bytes"),
                    })
                    .await;
                buf.clear();
                discarding = true;
            }
        }
    }
    if !buf.is_empty() && !discarding {
        let _ = tx.send(parse_line(&buf, Instant::now())).await;
    }
    let _ = tx.send(DriverMsg::Eof).await;
}

async fn keep_tail<R: AsyncRead + Unpin>(mut err: R, tail: Arc<Mutex<Vec<u8>>>) {
    let mut chunk = [0u8; 4096];
    while let Ok(n) = err.read(&mut chunk).await {
        if n == 0 {
            break;
        }
        if let Ok(mut t) = tail.lock() {
            t.extend_from_slice(&chunk[..n]);
            if t.len() > STDERR_TAIL {
                let cut = t.len() - STDERR_TAIL;
                t.drain(..cut);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn long_lines_are_cut_not_buffered() {
        let (tx, mut rx) = mpsc::channel(QUEUE);
        let mut data = vec![b'a'; MAX_LINE + 10];
        data.extend_from_slice(b"\n{\"event\":\"ready\",\"driver\":1}\n");
        read_lines(
            &data[..],
            tx,
            Arc::new(AtomicBool::new(false)),
            Arc::new(Notify::new()),
        )
        .await;
        assert!(matches!(rx.recv().await, Some(DriverMsg::Bad { .. })));
        assert!(matches!(rx.recv().await, Some(DriverMsg::Event(_))));
        assert!(matches!(rx.recv().await, Some(DriverMsg::Eof)));
    }
}
