//! The driver protocol (harness/DRIVER.md): newline-delimited JSON commands on stdin, events on stdout.

use serde::Serialize;
use serde_json::Value;
use std::io::{Read, Write};
use std::sync::atomic::{AtomicI64, Ordering};

use tokio::sync::mpsc;

use gatecheck::transport::TransportKind;

use crate::mutant::Mutant;

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
    /// A media reference was received, its object downloaded and its tag verified (SPEC.md
    /// §14.2): `size` and `sha256` (lowercase hex) are the decrypted file's. Replaces
    /// `message_received` for that message.
    MediaReceived {
        from: String,
        id: Option<String>,
        size: u64,
        sha256: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        mime: Option<&'static str>,
    },
    /// A media reference was received but nothing of its file is shown: `reason` says why.
    MediaRejected {
        from: String,
        id: Option<String>,
        reason: &'static str,
    },
    /// A peer device's identity key differs from the one seen before (E2EE-11).
    IdentityChanged {
        peer: String,
        device_id: u32,
    },
    /// Answers `identity`: the key and device id the next enrollment will carry, so that
    /// the harness, standing in for the provider server, can sign a proof for them.
    Identity {
        seq: i64,
        /// Standard base64 of the 33-byte identity key.
        identity_key: String,
        device_id: u32,
    },
    /// `enroll` succeeded. The credential stays out (ENROLL-10); only the
    /// credential-in-event mutant fills `credential`.
    Enrolled {
        seq: i64,
        account: String,
        domain: String,
        device_id: u32,
        #[serde(skip_serializing_if = "Option::is_none")]
        credential: Option<String>,
    },
    /// `enroll` failed: the HTTP status and the answer's `error` code, or status 0 with
    /// `not_opted_in`, `transport` or `tls` when no answer was read.
    EnrollFailed {
        seq: i64,
        status: u16,
        code: String,
    },
    /// The client's own server woke it for a push (SPEC.md PUSH-10); a connection follows,
    /// reported `connected` without a `seq`.
    PushReceived {
        device_id: u32,
    },
}

/// Writes events to stdout, flushing each line so the harness sees it at once. (Plain
/// blocking writes: a line is small, and the harness reads stdout continuously.)
pub struct EventSink {
    out: Output,
    /// The mutant the process runs, as its `ready` event (the first) names it.
    mutant: Mutant,
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
            mutant: Mutant::None,
        }
    }

    /// A sink that keeps the lines (unit tests).
    #[cfg(test)]
    pub fn memory() -> Self {
        EventSink {
            out: Output::Memory(Vec::new()),
            mutant: Mutant::None,
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

    pub async fn emit(&mut self, mut event: Event) {
        if let Event::Ready {
            mutant: Some(name), ..
        } = &event
        {
            self.mutant = Mutant::from_name(name).unwrap_or(Mutant::None);
        }
        if self.mutant == Mutant::ConnectedWrongSeq
            && let Event::Connected { seq: Some(seq), .. } = &mut event
        {
            // DRIVER-2 deviation: the correct shim answers with the command's own seq.
            *seq += 1;
        }
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
    /// PEM of the CA of the gatekeeper's media host: the only one trusted for media
    /// downloads (SPEC.md §14.2).
    #[serde(default)]
    pub media_ca_pem: Option<String>,
    /// The compact JSON of the identifier proof to present with `PLAIN-IDPROOF` (SPEC.md
    /// §7.4): set only for the login of an enrolled device, which the driver loop builds
    /// from an [`EnrolledConnect`] and the latest enrollment. A provisioned account's
    /// `connect` never sets it (a `proof` member beside `account` is ignored), so that login
    /// stays plain PLAIN exactly as before enrollment existed.
    #[serde(skip)]
    pub proof: Option<String>,
}

/// A `connect` without `account` and `credential`: log in as the device enrolled last
/// (SPEC.md §10.1, ENROLL-9). Stream `to`, credentials and the pinned Noise key come from the
/// enrollment, which always has them (a success without them is refused), so a `server_key`
/// member is ignored and `domain` serves only as the TLS name when `server_name` is absent.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct EnrolledConnect {
    pub host: String,
    pub port: u16,
    pub transport: TransportKind,
    #[serde(default)]
    pub domain: Option<String>,
    #[serde(default)]
    pub ca_pem: Option<String>,
    #[serde(default)]
    pub server_name: Option<String>,
    #[serde(default)]
    pub media_ca_pem: Option<String>,
    /// Read only by the `login-without-enrollment` mutant, which has no enrollment to take
    /// the key from (ENROLL-1).
    #[serde(default)]
    pub server_key: Option<String>,
    /// The fresh proof the harness signed for this login (IDPROOF-14); absent when the
    /// harness runs the whole chain and the client asks its own server (SPEC.md §6.1).
    #[serde(default)]
    pub proof: Option<serde_json::Map<String, Value>>,
}

/// The parameters of `enroll` (DRIVER.md; SPEC.md §10).
#[derive(Clone, serde::Deserialize)]
pub struct EnrollParams {
    /// The enrollment API's base URL: the request goes to `{url}/v1/enroll`.
    pub url: String,
    /// The only CA to trust for it (ENROLL-7).
    pub ca_pem: String,
    pub identifier: String,
    /// Sent as `provider_token`.
    pub token: String,
    /// Whether the user turned interoperability on; required, since guessing `true` for a
    /// missing member would be exactly the enrollment ENROLL-18 forbids.
    pub opted_in: bool,
    /// The identifier proof to send as `identifier_proof`; its `provider_id` is also the
    /// request's. Optional here so that an opted-out user's command, which sends nothing,
    /// needs none.
    #[serde(default)]
    pub proof: Option<serde_json::Map<String, Value>>,
}

impl std::fmt::Debug for EnrollParams {
    // The provider token is a secret of the user's: it stays out of logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EnrollParams")
            .field("url", &self.url)
            .field("identifier", &self.identifier)
            .field("opted_in", &self.opted_in)
            .finish_non_exhaustive()
    }
}

/// The parameters of `send_text`.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct SendText {
    /// A bare JID.
    pub to: String,
    pub text: String,
}

/// The parameters of `send_chat_state` (SPEC.md STANZA-16).
#[derive(Debug, Clone, serde::Deserialize)]
pub struct SendChatState {
    /// A bare JID.
    pub to: String,
    /// `active`, `composing`, `paused`, `inactive` or `gone`.
    pub state: String,
}

/// The parameters of `send_media` (SPEC.md §14.2).
#[derive(Debug, Clone, serde::Deserialize)]
pub struct SendMedia {
    /// A bare JID.
    pub to: String,
    /// The file to share.
    pub path: std::path::PathBuf,
    /// The harness's upload slot (client-only topology); without it the client uploads to
    /// its own provider's media host.
    #[serde(default)]
    pub upload: Option<UploadSlot>,
}

/// An upload slot: `PUT` the object to `put_url`, reference it as `get_url`.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct UploadSlot {
    pub put_url: String,
    pub get_url: String,
    /// The only CA trusted for the `PUT`.
    pub ca_pem: String,
}

/// A command, after its `cmd` and `seq` were read.
#[derive(Debug)]
pub enum Command {
    Connect(Box<ConnectParams>),
    /// `connect` without `account` and `credential`: log in as the enrolled device.
    ConnectEnrolled(Box<EnrolledConnect>),
    /// Connect, and reconnect by ourselves, with backoff, whenever the connection fails or
    /// ends, until `disconnect` or `shutdown` (STREAM-37, STREAM-38).
    KeepConnected(Box<ConnectParams>),
    Disconnect,
    Shutdown,
    /// Send `text` to the account `to` as one OMEMO message (SPEC.md §9).
    SendText(SendText),
    /// Send one standalone chat state notification (capability `chatstates`).
    SendChatState(SendChatState),
    /// Encrypt a file, upload it, and send its `aesgcm://` reference (SPEC.md §14).
    SendMedia(Box<SendMedia>),
    /// Report the identity key and device id the next enrollment will use.
    Identity,
    /// Enroll the device with the gatekeeper's enrollment API.
    Enroll(Box<EnrollParams>),
    /// A command this IUT does not implement (yet): answered with `unsupported`.
    Unsupported(String),
}

/// A line that is not a usable command: the `seq` if one could be read, and why.
#[derive(Debug)]
pub struct BadCommand {
    pub seq: Option<i64>,
    pub detail: String,
}

/// The `seq` of the command parsed last. Only the connected-before-bind mutant reads it: it
/// reports from inside the login, which is not told which command it serves.
static LAST_SEQ: AtomicI64 = AtomicI64::new(0);

/// The `seq` of the command parsed last (0 before any).
pub fn last_command_seq() -> i64 {
    LAST_SEQ.load(Ordering::Relaxed)
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
    LAST_SEQ.store(seq, Ordering::Relaxed);
    let Some(cmd) = map.get("cmd").and_then(Value::as_str) else {
        return Err(bad("missing or non-string \"cmd\"".into()));
    };
    let command = match cmd {
        "connect" if is_enrolled_login(map) => {
            let params: EnrolledConnect =
                serde_json::from_value(value.clone()).map_err(|e| bad(format!("connect: {e}")))?;
            Command::ConnectEnrolled(Box::new(params))
        }
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
        "send_chat_state" => {
            let params: SendChatState = serde_json::from_value(value.clone())
                .map_err(|e| bad(format!("send_chat_state: {e}")))?;
            Command::SendChatState(params)
        }
        "send_media" => {
            let params: SendMedia = serde_json::from_value(value.clone())
                .map_err(|e| bad(format!("send_media: {e}")))?;
            Command::SendMedia(Box::new(params))
        }
        "identity" => Command::Identity,
        "enroll" => {
            let params: EnrollParams =
                serde_json::from_value(value.clone()).map_err(|e| bad(format!("enroll: {e}")))?;
            Command::Enroll(Box::new(params))
        }
        other => Command::Unsupported(other.to_owned()),
    };
    Ok((seq, command))
}

/// A `connect` names neither `account` nor `credential` (absent or null): the enrolled
/// device logs in. Naming only one of them stays what it always was, a provisioned login
/// with a member missing (bad-command).
fn is_enrolled_login(map: &serde_json::Map<String, Value>) -> bool {
    let named = |key: &str| map.get(key).is_some_and(|v| !v.is_null());
    !named("account") && !named("credential")
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
        let err = parse_command(r#"{"cmd":"send_media","seq":6}"#).expect_err("to, path");
        assert_eq!(err.seq, Some(6));
        let (_, cmd) = parse_command(
            r#"{"cmd":"send_media","seq":7,"to":"b@x","path":"/f","upload":{"put_url":"https://h/u","get_url":"https://h/g","ca_pem":"P"}}"#,
        )
        .expect("parses");
        assert!(
            matches!(cmd, Command::SendMedia(ref p) if p.upload.as_ref().is_some_and(|u| u.ca_pem == "P"))
        );
        let (_, cmd) = parse_command(r#"{"cmd":"frobnicate","seq":8}"#).expect("parses");
        assert!(matches!(cmd, Command::Unsupported(ref c) if c == "frobnicate"));
        let err = parse_command("{nope").expect_err("bad json");
        assert!(err.seq.is_none());
        let err = parse_command(r#"{"cmd":"connect","seq":2,"host":"h"}"#).expect_err("fields");
        assert_eq!(err.seq, Some(2));
        let err = parse_command(r#"{"cmd":"disconnect","seq":"1"}"#).expect_err("seq");
        assert!(err.detail.contains("seq"));
    }

    #[test]
    fn enrollment_commands_parse() {
        let (seq, cmd) = parse_command(r#"{"cmd":"identity","seq":2}"#).expect("parses");
        assert_eq!(seq, 2);
        assert!(matches!(cmd, Command::Identity));
        let (_, cmd) = parse_command(
            r#"{"cmd":"enroll","seq":3,"url":"https://127.0.0.1:1","ca_pem":"x","identifier":"+4915100000001","token":"t","opted_in":false}"#,
        )
        .expect("parses");
        let Command::Enroll(p) = cmd else {
            panic!("not enroll: {cmd:?}")
        };
        assert!(!p.opted_in && p.proof.is_none());
        assert!(
            !format!("{p:?}").contains("\"t\""),
            "the token stays out of logs"
        );
        // opted_in is required: guessing would risk ENROLL-18.
        let err = parse_command(
            r#"{"cmd":"enroll","seq":4,"url":"u","ca_pem":"x","identifier":"i","token":"t"}"#,
        )
        .expect_err("opted_in");
        assert_eq!(err.seq, Some(4));
    }

    #[test]
    fn connect_without_account_is_an_enrolled_login() {
        let (_, cmd) = parse_command(
            r#"{"cmd":"connect","seq":5,"host":"127.0.0.1","port":9,"transport":"noise","proof":{"v":1}}"#,
        )
        .expect("parses");
        let Command::ConnectEnrolled(c) = cmd else {
            panic!("not enrolled: {cmd:?}")
        };
        assert_eq!((c.host.as_str(), c.port), ("127.0.0.1", 9));
        assert_eq!(
            c.proof.as_ref().and_then(|p| p.get("v")),
            Some(&Value::from(1))
        );
        // Null counts as absent; without a proof the client asks its own server (a chain
        // scenario), so the command still parses.
        let (_, cmd) = parse_command(
            r#"{"cmd":"connect","seq":6,"host":"h","port":9,"transport":"tls","account":null}"#,
        )
        .expect("parses");
        assert!(matches!(cmd, Command::ConnectEnrolled(ref c) if c.proof.is_none()));
        // One of the two is a provisioned login missing the other, as before.
        let err = parse_command(
            r#"{"cmd":"connect","seq":7,"host":"h","port":9,"transport":"tls","domain":"d","account":"a","proof":{}}"#,
        )
        .expect_err("credential");
        assert!(err.detail.contains("credential"), "{}", err.detail);
        let (_, cmd) = parse_command(
            r#"{"cmd":"connect","seq":8,"host":"h","port":9,"transport":"tls","domain":"d","account":"a","credential":"c","proof":{"v":1}}"#,
        )
        .expect("parses");
        assert!(matches!(cmd, Command::Connect(ref p) if p.proof.is_none()));
    }
}
