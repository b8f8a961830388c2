//! The driver protocol's vocabulary (harness/DRIVER.md), typed: the commands the harness
//! builds, the events an IUT reports, how a line becomes one, and the ledger that checks every
//! `seq` an event claims against the commands sent.

use std::collections::BTreeMap;
use std::time::Instant;

use serde::Deserialize;

/// A command the harness builds itself (DRIVER.md §3); scenario `driver` steps may send any
/// other object as it is written.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "cmd", rename_all = "snake_case")]
pub enum Command {
    Connect(ConnectParams),
    /// Connect, then reconnect by itself with its own backoff whenever the connection fails
    /// or ends, until `disconnect` or `shutdown` (DRIVER.md §3; STREAM-37, STREAM-38).
    KeepConnected(ConnectParams),
    Disconnect,
    Shutdown,
}

/// Where and as whom `connect` and `keep_connected` log in.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ConnectParams {
    pub host: String,
    pub port: u16,
    pub transport: crate::transport::TransportKind,
    /// Absent for an enrolled device, which takes the domain of its enrollment (ENROLL-9).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    /// A provisioned test account (SPEC.md §6.1); absent for an enrolled device.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub credential: Option<String>,
    /// An enrolled device's login proof, when the harness stands in for its provider server.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub proof: Option<serde_json::Value>,
    /// Noise: the server's static key to pin (base64).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_key: Option<String>,
    /// TLS: the only CA to trust (PEM).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca_pem: Option<String>,
    pub server_name: String,
    /// The CA of the gatekeeper's media host, for media downloads (SPEC.md §14.2).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub media_ca_pem: Option<String>,
}

impl Command {
    /// The command as the JSON object that goes on the wire (before its `seq`).
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or_else(|_| serde_json::json!({}))
    }
}

/// What a driver event says, typed (DRIVER.md §4). An event the harness does not know is
/// `Other`: recorded, and otherwise ignored.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum EventKind {
    Ready {
        driver: u32,
        #[serde(default)]
        name: String,
        #[serde(default)]
        version: String,
        #[serde(default)]
        roles: Vec<String>,
        #[serde(default)]
        features: Vec<String>,
    },
    Connected {
        jid: String,
    },
    Disconnected {
        reason: DisconnectReason,
        condition: Option<String>,
    },
    StreamError {
        direction: ErrorDirection,
        condition: String,
    },
    Error {
        code: String,
    },
    Unsupported {
        cmd: String,
    },
    #[serde(other)]
    Other,
}

/// `disconnected` reasons (DRIVER.md §4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DisconnectReason {
    Local,
    RemoteClose,
    StreamErrorReceived,
    StreamErrorSent,
    TransportError,
    AuthFailed,
}

/// Which way a reported stream error went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ErrorDirection {
    Sent,
    Received,
}

/// One driver event, stamped when its line arrived.
#[derive(Debug, Clone)]
pub struct Event {
    pub at: Instant,
    /// What it says, typed.
    pub kind: EventKind,
    /// The whole JSON object, for matching against a scenario's expected fields.
    pub raw: serde_json::Value,
    /// Its `event` member.
    pub name: String,
    /// Its `seq` member, when present.
    pub seq: Option<u64>,
}

impl Event {
    /// A string member of the event.
    pub fn str(&self, member: &str) -> Option<&str> {
        self.raw.get(member).and_then(|v| v.as_str())
    }
}

impl std::fmt::Display for Event {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.raw)
    }
}

/// What arrives from the IUT's stdout.
#[derive(Debug, Clone)]
pub enum DriverMsg {
    Event(Event),
    /// A line that is not a driver event (kept for the transcript and the failure).
    Bad {
        at: Instant,
        line: String,
        why: String,
    },
    /// stdout closed: the IUT exited or closed its end.
    Eof,
}

/// The commands sent to one IUT, so that every `seq` an event claims can be checked.
#[derive(Debug, Default)]
pub struct SeqLedger {
    /// seq → (command name, answered).
    sent: BTreeMap<u64, (String, bool)>,
    /// A `keep_connected` was answered: later sessions it makes report `connected` unasked.
    keeps_connected: bool,
    /// A `push_received` was reported: the connection it wakes reports `connected` unasked
    /// (SPEC.md PUSH-10).
    woken: bool,
}

/// Events that answer the command whose `seq` they carry (DRIVER.md §1).
fn answers(event: &str, cmd: &str) -> bool {
    match event {
        "connected" => cmd == "connect" || cmd == "keep_connected",
        "error" | "unsupported" => true,
        "disconnected" => cmd == "disconnect" || cmd == "shutdown",
        "identity" => cmd == "identity",
        "enrolled" | "enroll_failed" => cmd == "enroll",
        _ => false,
    }
}

/// The optional capability (SPEC.md §3.3) a driver command belongs to; `None` for commands
/// of mandatory areas, which a client may not answer `unsupported` without the scenario
/// becoming inconclusive.
pub fn optional_capability_of(cmd: &str) -> Option<&'static str> {
    match cmd {
        "send_media" => Some("media"),
        "send_chat_state" => Some("chatstates"),
        _ => None,
    }
}

impl SeqLedger {
    /// The name of the command sent with `seq`.
    pub fn command(&self, seq: u64) -> Option<&str> {
        self.sent.get(&seq).map(|(c, _)| c.as_str())
    }

    pub fn sent(&mut self, seq: u64, cmd: &str) {
        self.sent.insert(seq, (cmd.to_string(), false));
    }

    /// Checks an event's `seq` against the commands sent: it must name one, an answer
    /// must fit its command and come once, and `connected`/`unsupported` must carry one.
    pub fn check(&mut self, ev: &Event) -> Result<(), String> {
        let Some(seq) = ev.seq else {
            return match ev.name.as_str() {
                "push_received" => {
                    self.woken = true;
                    Ok(())
                }
                "connected" if self.keeps_connected => Ok(()),
                "connected" if self.woken => {
                    self.woken = false;
                    Ok(())
                }
                "connected" | "unsupported" => Err(format!(
                    "`{}` answers a command, so it must carry that command's seq",
                    ev.name
                )),
                _ => Ok(()),
            };
        };
        let last = self.sent.keys().next_back().copied();
        let Some((cmd, answered)) = self.sent.get_mut(&seq) else {
            return Err(match last {
                Some(l) => {
                    format!("seq {seq} names no command the harness sent (it sent seq 1 to {l})")
                }
                None => format!("seq {seq} names no command: the harness has sent none"),
            });
        };
        if ev.name == "connected" && !answers("connected", cmd) {
            return Err(format!(
                "`connected` answers connect, but seq {seq} was `{cmd}`"
            ));
        }
        if ev.name == "connected" && cmd == "keep_connected" {
            self.keeps_connected = true;
        }
        if ev.name == "unsupported" && ev.str("cmd").is_some_and(|c| c != cmd) {
            return Err(format!(
                "`unsupported` names a command other than seq {seq}'s `{cmd}`"
            ));
        }
        if answers(&ev.name, cmd) {
            if *answered {
                return Err(format!("seq {seq} (`{cmd}`) was already answered"));
            }
            *answered = true;
        }
        Ok(())
    }
}

pub(super) fn parse_line(bytes: &[u8], at: Instant) -> DriverMsg {
    let line = String::from_utf8_lossy(bytes)
        .trim_end_matches('\r')
        .to_string();
    let bad = |line: String, why: String| DriverMsg::Bad { at, line, why };
    let raw = match serde_json::from_str::<serde_json::Value>(&line) {
        Ok(v) => v,
        Err(e) => return bad(line, format!("not JSON: {e}")),
    };
    let Some(name) = raw
        .get("event")
        .and_then(|e| e.as_str())
        .map(str::to_string)
    else {
        return bad(
            line,
            "a driver event must be a JSON object with a string `event`".into(),
        );
    };
    let seq = match raw.get("seq") {
        None | Some(serde_json::Value::Null) => None,
        Some(v) => match v.as_u64() {
            Some(n) => Some(n),
            None => return bad(line, "`seq` must be a non-negative integer".into()),
        },
    };
    let kind = match EventKind::deserialize(&raw) {
        Ok(kind) => kind,
        Err(e) => return bad(line, format!("`{name}` event: {e}")),
    };
    DriverMsg::Event(Event {
        at,
        kind,
        raw,
        name,
        seq,
    })
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
    fn commands_serialize_as_driver_md_shows_them() {
        let c = Command::Connect(ConnectParams {
            host: "127.0.0.1".into(),
            port: 40001,
            transport: crate::transport::TransportKind::Noise,
            domain: Some("gk.gatecheck.test".into()),
            account: Some("alice".into()),
            credential: Some("s3cret".into()),
            proof: None,
            server_key: Some("a2V5".into()),
            ca_pem: None,
            server_name: "gk.gatecheck.test".into(),
            media_ca_pem: None,
        });
        assert_eq!(
            c.to_json().to_string(),
            r#"{"account":"alice","cmd":"connect","credential":"s3cret","domain":"gk.gatecheck.test","host":"127.0.0.1","port":40001,"server_key":"a2V5","server_name":"gk.gatecheck.test","transport":"noise"}"#
        );
        assert_eq!(
            Command::Shutdown.to_json().to_string(),
            r#"{"cmd":"shutdown"}"#
        );
    }

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
            parse_line(br#"{"event":"ready","driver":1}"#, Instant::now()),
            DriverMsg::Event(_)
        ));
        assert!(matches!(
            parse_line(br#"{"cmd":"x"}"#, Instant::now()),
            DriverMsg::Bad { .. }
        ));
        assert!(matches!(
            parse_line(b"hello", Instant::now()),
            DriverMsg::Bad { .. }
        ));
        assert!(matches!(
            parse_line(br#"{"event":"connected","seq":"1"}"#, Instant::now()),
            DriverMsg::Bad { .. }
        ));
        // A known event without its members, or with a member out of its vocabulary.
        assert!(matches!(
            parse_line(br#"{"event":"connected","seq":1}"#, Instant::now()),
            DriverMsg::Bad { .. }
        ));
        assert!(matches!(
            parse_line(
                br#"{"event":"disconnected","reason":"bored"}"#,
                Instant::now()
            ),
            DriverMsg::Bad { .. }
        ));
        // An unknown event is fine, and typed as Other.
        assert!(matches!(
            parse_line(br#"{"event":"log","message":"hi"}"#, Instant::now()),
            DriverMsg::Event(Event {
                kind: EventKind::Other,
                ..
            })
        ));
    }

    fn event(line: &str) -> Event {
        match parse_line(line.as_bytes(), Instant::now()) {
            DriverMsg::Event(e) => e,
            other => panic!("not an event: {other:?}"),
        }
    }

    #[test]
    fn seq_claims_are_checked_against_the_commands_sent() {
        let mut l = SeqLedger::default();
        assert_eq!(
            l.check(&event(r#"{"event":"connected","seq":1,"jid":"a@b/c"}"#)),
            Err("seq 1 names no command: the harness has sent none".into())
        );
        l.sent(1, "connect");
        l.sent(2, "disconnect");
        assert_eq!(
            l.check(&event(r#"{"event":"connected","seq":3,"jid":"a@b/c"}"#)),
            Err("seq 3 names no command the harness sent (it sent seq 1 to 2)".into())
        );
        assert_eq!(
            l.check(&event(r#"{"event":"connected","seq":2,"jid":"a@b/c"}"#)),
            Err("`connected` answers connect, but seq 2 was `disconnect`".into())
        );
        assert_eq!(
            l.check(&event(r#"{"event":"connected","jid":"a@b/c"}"#)),
            Err("`connected` answers a command, so it must carry that command's seq".into())
        );
        assert_eq!(
            l.check(&event(r#"{"event":"connected","seq":1,"jid":"a@b/c"}"#)),
            Ok(())
        );
        assert_eq!(
            l.check(&event(r#"{"event":"error","seq":1,"code":"x"}"#)),
            Err("seq 1 (`connect`) was already answered".into())
        );
        // Trailing events of a command may carry its seq; unsolicited ones carry none.
        assert_eq!(
            l.check(&event(
                r#"{"event":"stream_error","seq":1,"direction":"sent","condition":"x"}"#
            )),
            Ok(())
        );
        assert_eq!(l.check(&event(r#"{"event":"log"}"#)), Ok(()));
        assert_eq!(
            l.check(&event(r#"{"event":"unsupported","seq":2,"cmd":"connect"}"#)),
            Err("`unsupported` names a command other than seq 2's `disconnect`".into())
        );
        assert_eq!(
            l.check(&event(
                r#"{"event":"disconnected","seq":2,"reason":"local"}"#
            )),
            Ok(())
        );
    }

    #[test]
    fn keep_connected_is_answered_once_then_reports_sessions_unasked() {
        let mut l = SeqLedger::default();
        l.sent(1, "keep_connected");
        let unasked = r#"{"event":"connected","jid":"a@b/c"}"#;
        assert!(l.check(&event(unasked)).is_err(), "before the answer");
        assert_eq!(
            l.check(&event(r#"{"event":"connected","seq":1,"jid":"a@b/c"}"#)),
            Ok(())
        );
        assert_eq!(l.check(&event(unasked)), Ok(()));
        assert_eq!(
            l.check(&event(r#"{"event":"connected","seq":1,"jid":"a@b/c"}"#)),
            Err("seq 1 (`keep_connected`) was already answered".into())
        );
    }
}
