//! The harness's end of the driver protocol (harness/DRIVER.md): launches a
//! client IUT and exchanges newline-delimited JSON over its stdin and stdout.
//!
//! Everything the IUT prints is hostile input: lines are bounded, non-JSON
//! lines become `Bad` messages, and stderr is kept only as a bounded tail.

use std::process::Stdio;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::mpsc;

use super::Launch;

/// Longest driver line accepted, in bytes.
pub const MAX_LINE: usize = 1 << 20;
/// Driver messages queued before the IUT's stdout is no longer read (backpressure: a
/// flooding IUT blocks on its own stdout instead of growing the harness's memory).
pub const QUEUE: usize = 1024;
/// How much of the IUT's stderr is kept for the report.
const STDERR_TAIL: usize = 16 * 1024;

/// What arrives from the IUT's stdout.
#[derive(Debug, Clone)]
pub enum DriverMsg {
    /// A JSON object with an `event` field.
    Event(serde_json::Value),
    /// A line that is not a driver event (kept for the transcript and the failure).
    Bad { line: String, why: String },
    /// stdout closed: the IUT exited or closed its end.
    Eof,
}

/// A running client IUT.
pub struct DriverProcess {
    child: Child,
    stdin: Option<ChildStdin>,
    stderr_tail: Arc<Mutex<Vec<u8>>>,
    stderr_task: Option<tokio::task::JoinHandle<()>>,
    next_seq: u64,
}

impl DriverProcess {
    /// Starts the IUT; its stdout is parsed into `tx`.
    pub fn spawn(launch: &Launch, tx: mpsc::Sender<DriverMsg>) -> std::io::Result<DriverProcess> {
        let mut cmd = Command::new(&launch.command);
        cmd.args(&launch.args)
            .envs(&launch.env)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
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
        let stdin = child.stdin.take();
        let stderr_tail = Arc::new(Mutex::new(Vec::new()));
        if let Some(out) = child.stdout.take() {
            tokio::spawn(read_lines(out, tx));
        }
        let stderr_task = child
            .stderr
            .take()
            .map(|err| tokio::spawn(keep_tail(err, stderr_tail.clone())));
        Ok(DriverProcess {
            child,
            stdin,
            stderr_tail,
            stderr_task,
            next_seq: 1,
        })
    }

    /// Sends a command object, adding `seq`; returns the line sent and its seq.
    pub async fn send(&mut self, mut command: serde_json::Value) -> std::io::Result<(u64, String)> {
        let seq = self.next_seq;
        self.next_seq += 1;
        if let Some(obj) = command.as_object_mut() {
            obj.insert("seq".into(), serde_json::Value::from(seq));
        }
        let mut line = command.to_string();
        line.push('\n');
        let stdin = self.stdin.as_mut().ok_or_else(|| {
            std::io::Error::new(std::io::ErrorKind::BrokenPipe, "IUT stdin is closed")
        })?;
        stdin.write_all(line.as_bytes()).await?;
        stdin.flush().await?;
        line.pop();
        Ok((seq, line))
    }

    /// The exit status, if the process has ended.
    pub fn try_exit_status(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// The exit status, waiting up to `wait` for a process that is ending to be reaped.
    pub async fn exit_status_within(
        &mut self,
        wait: std::time::Duration,
    ) -> Option<std::process::ExitStatus> {
        tokio::time::timeout(wait, self.child.wait())
            .await
            .ok()
            .and_then(Result::ok)
    }

    /// The last bytes the IUT wrote to stderr, lossily decoded, once stderr has
    /// closed (or after a short wait, if a child of the IUT keeps it open).
    pub async fn stderr_tail(&mut self) -> String {
        if let Some(task) = self.stderr_task.take() {
            let _ = tokio::time::timeout(std::time::Duration::from_millis(300), task).await;
        }
        let tail = self
            .stderr_tail
            .lock()
            .map(|t| t.clone())
            .unwrap_or_default();
        String::from_utf8_lossy(&tail).into_owned()
    }

    /// Kills the process and reaps it.
    pub async fn kill(&mut self) {
        self.stdin = None;
        let _ = self.child.kill().await;
    }

    /// Asks politely (shutdown command, stdin closed), then kills after `grace`.
    pub async fn stop(&mut self, grace: std::time::Duration) {
        if self.try_exit_status().is_none() {
            let _ = self.send(serde_json::json!({"cmd": "shutdown"})).await;
        }
        self.stdin = None;
        if tokio::time::timeout(grace, self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.kill().await;
        }
    }
}

async fn read_lines<R: AsyncRead + Unpin>(mut out: R, tx: mpsc::Sender<DriverMsg>) {
    let mut buf: Vec<u8> = Vec::with_capacity(4096);
    let mut chunk = [0u8; 8192];
    let mut discarding = false;
    loop {
        let n = match out.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let mut rest = &chunk[..n];
        while let Some(pos) = rest.iter().position(|&b| b == b'\n') {
            if discarding {
                discarding = false;
            } else {
                buf.extend_from_slice(&rest[..pos]);
                let msg = parse_line(&buf);
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
        let _ = tx.send(parse_line(&buf)).await;
    }
    let _ = tx.send(DriverMsg::Eof).await;
}

fn parse_line(bytes: &[u8]) -> DriverMsg {
    let line = String::from_utf8_lossy(bytes)
        .trim_end_matches('\r')
        .to_string();
    match serde_json::from_str::<serde_json::Value>(&line) {
        Ok(v) if v.get("event").and_then(|e| e.as_str()).is_some() => DriverMsg::Event(v),
        Ok(_) => DriverMsg::Bad {
            line,
            why: "a driver event must be a JSON object with a string `event`".into(),
        },
        Err(e) => DriverMsg::Bad {
            line,
            why: format!("not JSON: {e}"),
        },
    }
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

/// Whether `event` contains every field of `expected` with an equal value
/// (objects recursively; the string `*` accepts any present value).
pub fn event_matches(
    expected: &serde_json::Value,
    event: &serde_json::Value,
) -> Result<(), String> {
    use serde_json::Value;
    match (expected, event) {
        (Value::String(s), v) if s == "*" => {
            if v.is_null() {
                Err("missing".into())
            } else {
                Ok(())
            }
        }
        (Value::Object(e), Value::Object(a)) => {
            for (k, ev) in e {
                match a.get(k) {
                    None => return Err(format!("field {k} is missing (expected {ev})")),
                    Some(av) => event_matches(ev, av).map_err(|m| format!("field {k}: {m}"))?,
                }
            }
            Ok(())
        }
        (e, a) if e == a => Ok(()),
        (e, a) => Err(format!("expected {e}, got {a}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn event_subset_matching() {
        let ev = json!({"event":"error","seq":1,"code":"server-key-mismatch","detail":"x"});
        assert!(event_matches(&json!({"event":"error","code":"server-key-mismatch"}), &ev).is_ok());
        assert!(event_matches(&json!({"event":"error","detail":"*"}), &ev).is_ok());
        assert_eq!(
            event_matches(&json!({"event":"error","code":"tls"}), &ev).unwrap_err(),
            "field code: expected \"tls\", got \"server-key-mismatch\""
        );
        assert_eq!(
            event_matches(
                &json!({"event":"connected","jid":"*"}),
                &json!({"event":"connected"})
            )
            .unwrap_err(),
            "field jid is missing (expected \"*\")"
        );
    }

    #[test]
    fn lines_are_classified() {
        assert!(matches!(
            parse_line(br#"{"event":"ready"}"#),
            DriverMsg::Event(_)
        ));
        assert!(matches!(
            parse_line(br#"{"cmd":"x"}"#),
            DriverMsg::Bad { .. }
        ));
        assert!(matches!(parse_line(b"hello"), DriverMsg::Bad { .. }));
    }

    #[tokio::test]
    async fn long_lines_are_cut_not_buffered() {
        let (tx, mut rx) = mpsc::channel(QUEUE);
        let mut data = vec![b'a'; MAX_LINE + 10];
        data.extend_from_slice(b"\n{\"event\":\"ready\"}\n");
        read_lines(&data[..], tx).await;
        assert!(matches!(rx.recv().await, Some(DriverMsg::Bad { .. })));
        assert!(matches!(rx.recv().await, Some(DriverMsg::Event(_))));
        assert!(matches!(rx.recv().await, Some(DriverMsg::Eof)));
    }
}
