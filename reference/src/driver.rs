//! The driver protocol (harness/DRIVER.md): newline-delimited JSON commands on stdin, events on stdout.

use serde::Serialize;
use serde_json::Value;
use std::io::{Read, Write};

use tokio::sync::mpsc;

use gatecheck::transport::TransportKind;

/// Version of the driver protocol announced in `ready`.
pub const DRIVER_VERSION: u32 = 1;
/// Longest accepted command line, newline excluded.
pub const MAX_LINE: usize = 1 << 20;

/// Everything the IUT writes on stdout, one JSON object per line.
#[derive(Debug, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    Ready {
        driver: u32,
        name: &'static str,
        version: &'static str,
        roles: &'static [&'static str],
        features: &'static [&'static str],
        #[serde(skip_serializing_if = "Option::is_none")]
        mutant: Option<&'static str>,
    },
    Connected {
        /// `None` for a session that `keep_connected` re-established after its first.
        #[serde(skip_serializing_if = "Option::is_none")]
        seq: Option<i64>,
        jid: String,
    },
    Disconnected {
        #[serde(skip_serializing_if = "Option::is_none")]
        seq: Option<i64>,
        reason: &'static str,
        #[serde(skip_serializing_if = "Option::is_none")]
        condition: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        detail: Option<String>,
    },
    StreamError {
        direction: &'static str,
        condition: String,
    },
    Error {
        #[serde(skip_serializing_if = "Option::is_none")]
        seq: Option<i64>,
        code: &'static str,
        detail: String,
    },
    Unsupported {
        seq: i64,
        cmd: String,
    },
    /// `send_text`: the message stanza with this id was written.
    Sent {
        seq: i64,
        id: String,
    },
    /// `send_text` could not be done; `reason` is one of DRIVER.md's.
    SendFailed {
        seq: i64,
        reason: &'static str,
    },
    /// Decrypted content shown to the user (E2EE-21: only verified content).
    MessageReceived {
        from: String,
        /// The stanza's id; `null` when it had none (DRIVER.md).
        id: Option<String>,
        device_id: u32,
        text: String,
    },
    /// A message carrying `<encrypted/>` (or a lone `<body/>`) that was not shown.
    DecryptFailed {
        from: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        device_id: Option<u32>,
        reason: &'static str,
    },
    /// A peer device's identity key differs from the one seen before (E2EE-11).
    IdentityChanged {
        peer: String,
        device_id: u32,
    },
}

/// Writes events to stdout, flushing each line so the harness sees it at once. (Plain
/// blocking writes: a line is small, and the harness reads stdout continuously.)
pub struct EventSink {
    out: Output,
}

enum Output {
    Stdout(std::io::Stdout),
    /// Unit tests read the lines back, in order.
    #[cfg(test)]
    Memory(Vec<String>),
}

impl EventSink {
    pub fn new() -> Self {
        EventSink {
            out: Output::Stdout(std::io::stdout()),
        }
    }

    /// A sink that keeps the lines (unit tests).
    #[cfg(test)]
    pub fn memory() -> Self {
        EventSink {
            out: Output::Memory(Vec::new()),
        }
    }

    /// The lines written so far, without their newlines (memory sinks; empty otherwise).
    #[cfg(test)]
    pub fn take_lines(&mut self) -> Vec<String> {
        match &mut self.out {
            Output::Memory(lines) => std::mem::take(lines),
            Output::Stdout(_) => Vec::new(),
        }
    }

    pub async fn emit(&mut self, event: Event) {
        let line = match serde_json::to_string(&event) {
            Ok(line) => line,
            Err(e) => {
                eprintln!("gatecheck-reference: cannot encode {event:?}: {e}");
                return;
            }
        };
        match &mut self.out {
            Output::Stdout(stdout) => {
                // A closed stdout means the harness is gone; the stdin EOF that follows ends
                // the run.
                let mut out = stdout.lock();
                if let Err(e) = out
                    .write_all(line.as_bytes())
                    .and_then(|()| out.write_all(b"\n"))
                    .and_then(|()| out.flush())
                {
                    eprintln!("gatecheck-reference: stdout: {e}");
                }
            }
            #[cfg(test)]
            Output::Memory(lines) => lines.push(line),
        }
    }
}

/// The parameters of `connect`.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct ConnectParams {
    pub host: String,
    pub port: u16,
    pub transport: TransportKind,
    pub domain: String,
    pub account: String,
    pub credential: String,
    /// Base64 of the server's 32-byte Noise static key (noise only).
    #[serde(default)]
    pub server_key: Option<String>,
    /// PEM of the CA to trust (tls only).
    #[serde(default)]
    pub ca_pem: Option<String>,
    /// Name checked against the certificate (tls only); defaults to `domain`.
    #[serde(default)]
    pub server_name: Option<String>,
}

/// The parameters of `send_text`.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct SendText {
    /// A bare JID.
    pub to: String,
    pub text: String,
}

/// A command, after its `cmd` and `seq` were read.
#[derive(Debug)]
pub enum Command {
    Connect(Box<ConnectParams>),
    /// Connect, and reconnect by ourselves, with backoff, whenever the connection fails or
    /// ends, until `disconnect` or `shutdown` (STREAM-37, STREAM-38).
    KeepConnected(Box<ConnectParams>),
    Disconnect,
    Shutdown,
    /// Send `text` to the account `to` as one OMEMO message (SPEC.md §9).
    SendText(SendText),
    /// A command this IUT does not implement (yet): answered with `unsupported`.
    Unsupported(String),
}

/// A line that is not a usable command: the `seq` if one could be read, and why.
#[derive(Debug)]
pub struct BadCommand {
    pub seq: Option<i64>,
    pub detail: String,
}

/// Parses one command line.
pub fn parse_command(line: &str) -> Result<(i64, Command), BadCommand> {
    let value: Value = serde_json::from_str(line).map_err(|e| BadCommand {
        seq: None,
        detail: format!("not JSON: {e}"),
    })?;
    let Value::Object(map) = &value else {
        return Err(BadCommand {
            seq: None,
            detail: "not a JSON object".into(),
        });
    };
    let seq = map.get("seq").and_then(Value::as_i64);
    let bad = |detail: String| BadCommand { seq, detail };
    let Some(seq) = seq else {
        return Err(bad("missing or non-integer \"seq\"".into()));
    };
    let Some(cmd) = map.get("cmd").and_then(Value::as_str) else {
        return Err(bad("missing or non-string \"cmd\"".into()));
    };
    let command = match cmd {
        "connect" => {
            let params: ConnectParams =
                serde_json::from_value(value.clone()).map_err(|e| bad(format!("connect: {e}")))?;
            Command::Connect(Box::new(params))
        }
        "keep_connected" => {
            let params: ConnectParams = serde_json::from_value(value.clone())
                .map_err(|e| bad(format!("keep_connected: {e}")))?;
            Command::KeepConnected(Box::new(params))
        }
        "disconnect" => Command::Disconnect,
        "shutdown" => Command::Shutdown,
        "send_text" => {
            let params: SendText = serde_json::from_value(value.clone())
                .map_err(|e| bad(format!("send_text: {e}")))?;
            Command::SendText(params)
        }
        // enroll, send_media and anything unknown.
        other => Command::Unsupported(other.to_owned()),
    };
    Ok((seq, command))
}

/// One line from stdin, or a line that was too long to keep.
#[derive(Debug)]
pub enum InputLine {
    Line(String),
    TooLong,
    NotUtf8,
}

/// Reads stdin on a thread of its own (so that waiting for a command never loses socket input)
/// and sends complete lines; ends the channel at EOF.
pub fn spawn_stdin_reader() -> mpsc::Receiver<InputLine> {
    let (tx, rx) = mpsc::channel(64);
    std::thread::spawn(move || {
        let mut stdin = std::io::stdin().lock();
        let mut buf = Vec::new();
        let mut chunk = vec![0u8; 64 * 1024];
        let mut discarding = false;
        loop {
            let n = match stdin.read(&mut chunk) {
                Ok(0) => break,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(_) => break,
                Ok(n) => n,
            };
            for &b in &chunk[..n] {
                if b != b'\n' {
                    if !discarding {
                        buf.push(b);
                        if buf.len() > MAX_LINE {
                            buf.clear();
                            discarding = true;
                        }
                    }
                    continue;
                }
                let item = if discarding {
                    discarding = false;
                    InputLine::TooLong
                } else {
                    let line = std::mem::take(&mut buf);
                    match String::from_utf8(line) {
                        Ok(s) => InputLine::Line(s),
                        Err(_) => InputLine::NotUtf8,
                    }
                };
                if tx.blocking_send(item).is_err() {
                    return;
                }
            }
        }
        if !buf.is_empty()
            && !discarding
            && let Ok(s) = String::from_utf8(buf)
        {
            let _ = tx.blocking_send(InputLine::Line(s));
        }
    });
    rx
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_serialize_as_documented() {
        let e = Event::Disconnected {
            seq: None,
            reason: "remote-close",
            condition: None,
            detail: None,
        };
        assert_eq!(
            serde_json::to_string(&e).unwrap(),
            r#"{"event":"disconnected","reason":"remote-close"}"#
        );
        let e = Event::StreamError {
            direction: "sent",
            condition: "restricted-xml".into(),
        };
        assert_eq!(
            serde_json::to_string(&e).unwrap(),
            r#"{"event":"stream_error","direction":"sent","condition":"restricted-xml"}"#
        );
        let e = Event::MessageReceived {
            from: "bob@gk/x".into(),
            id: None,
            device_id: 7,
            text: "hi".into(),
        };
        assert_eq!(
            serde_json::to_string(&e).unwrap(),
            r#"{"event":"message_received","from":"bob@gk/x","id":null,"device_id":7,"text":"hi"}"#
        );
        let e = Event::DecryptFailed {
            from: "bob@gk/x".into(),
            id: None,
            device_id: None,
            reason: "unencrypted",
        };
        assert_eq!(
            serde_json::to_string(&e).unwrap(),
            r#"{"event":"decrypt_failed","from":"bob@gk/x","reason":"unencrypted"}"#
        );
    }

    #[test]
    fn commands_parse() {
        let (seq, cmd) =
            parse_command(r#"{"cmd":"send_text","seq":4,"to":"x","text":"y"}"#).expect("parses");
        assert_eq!(seq, 4);
        assert!(matches!(cmd, Command::SendText(ref p) if p.to == "x" && p.text == "y"));
        let err = parse_command(r#"{"cmd":"send_text","seq":5,"to":"x"}"#).expect_err("text");
        assert_eq!(err.seq, Some(5));
        let (_, cmd) = parse_command(r#"{"cmd":"send_media","seq":6}"#).expect("parses");
        assert!(matches!(cmd, Command::Unsupported(ref c) if c == "send_media"));
        let err = parse_command("{nope").expect_err("bad json");
        assert!(err.seq.is_none());
        let err = parse_command(r#"{"cmd":"connect","seq":2,"host":"h"}"#).expect_err("fields");
        assert_eq!(err.seq, Some(2));
        let err = parse_command(r#"{"cmd":"disconnect","seq":"1"}"#).expect_err("seq");
        assert!(err.detail.contains("seq"));
    }
}
