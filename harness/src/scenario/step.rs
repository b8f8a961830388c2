//! One scenario step: its TOML form, validation, and the typed action the runner executes.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::SuiteDirs;
use super::pattern;
pub use crate::roles::gatekeeper_options::{HandshakeMode, Negotiate, SaslAnswer, Stage};
use crate::transport::TransportKind;

/// A step as written in TOML: exactly one action key plus modifiers.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawStep {
    // actions
    session: Option<RawConnect>,
    connect: Option<RawConnect>,
    negotiate: Option<RawNegotiate>,
    send: Option<String>,
    send_fixture: Option<String>,
    expect: Option<String>,
    expect_any: Option<Vec<String>>,
    expect_stream_error: Option<RawStreamError>,
    expect_closed: Option<RawClosed>,
    expect_nothing: Option<u64>,
    driver: Option<serde_json::Value>,
    expect_event: Option<serde_json::Value>,
    expect_event_any: Option<Vec<serde_json::Value>>,
    sleep: Option<u64>,
    close_stream: Option<bool>,
    hangup: Option<bool>,
    http: Option<RawHttp>,
    expect_http: Option<RawExpectHttp>,
    // modifiers
    timeout_ms: Option<u64>,
    #[serde(default)]
    ignore: Vec<String>,
    /// Requirement the step's failure is attributed to, when not the scenario's first.
    requirement: Option<String>,
    /// The scenario actor that acts (`send`) or observes (`expect`, `expect_any`); default:
    /// the gatekeeper server itself.
    actor: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConnect {
    transport: Option<String>,
    #[serde(default)]
    handshake: Option<String>,
    account: Option<String>,
    credential: Option<String>,
    /// For `session`: the SASL mechanisms the server offers.
    mechanisms: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNegotiate {
    upto: Option<String>,
    mechanisms: Option<Vec<String>>,
    sasl: Option<String>,
}

/// `["restricted-xml"]`, or `{ pass = [...], warn = [...], should = "REQ" }`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum RawStreamError {
    Conditions(Vec<String>),
    Graded(RawGradedStreamError),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGradedStreamError {
    pass: Vec<String>,
    #[serde(default)]
    warn: Vec<String>,
    should: Option<String>,
}

/// Which stream error conditions pass, and which pass with a warning.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamErrorExpect {
    /// Conditions that meet every requirement checked.
    pub pass: Vec<String>,
    /// Conditions that meet the MUST but not the SHOULD `should`; `*` is any other condition.
    pub warn: Vec<String>,
    /// The SHOULD-level requirement a `warn` condition does not meet.
    pub should: Option<String>,
}

impl StreamErrorExpect {
    /// Whether `condition` passes, passes with a warning under `should`, or fails.
    pub fn grade(&self, condition: &str) -> Grade {
        if self.pass.iter().any(|c| c == condition) {
            Grade::Pass
        } else if self.warn.iter().any(|c| c == condition || c == "*") {
            Grade::Warn
        } else {
            Grade::Fail
        }
    }
}

/// How a received stream error condition is judged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grade {
    Pass,
    Warn,
    Fail,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawClosed {
    /// The IUT must send `</stream:stream>` before closing the connection.
    #[serde(default)]
    close_tag: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHttp {
    method: String,
    path: String,
    #[serde(default)]
    headers: std::collections::BTreeMap<String, String>,
    body: Option<String>,
    /// A JSON body (sets content-type application/json unless `headers` does).
    json: Option<serde_json::Value>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(u16),
    Many(Vec<u16>),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawExpectHttp {
    status: OneOrMany,
    #[serde(default)]
    headers: std::collections::BTreeMap<String, String>,
    json: Option<serde_json::Value>,
    body: Option<String>,
    #[serde(default)]
    body_excludes: Vec<String>,
    within_ms: Option<u64>,
}

/// A request the gatekeeper sends to the provider's server.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpStep {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Option<String>,
    pub json: Option<serde_json::Value>,
}

/// What the last response must look like.
#[derive(Debug, Clone, PartialEq)]
pub struct ExpectHttp {
    /// Acceptable status codes.
    pub status: Vec<u16>,
    /// Header values (`*` any present value, `!` absent); names are case-insensitive.
    pub headers: Vec<(String, String)>,
    /// Fields the JSON body must contain (as driver events are matched).
    pub json: Option<serde_json::Value>,
    /// The exact body.
    pub body: Option<String>,
    /// Strings that must not appear in the body (e.g. a secret that must not be echoed).
    pub body_excludes: Vec<String>,
    /// The response must have arrived within this many milliseconds.
    pub within_ms: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connect {
    pub transport: Option<TransportKind>,
    pub handshake: HandshakeMode,
    pub account: Option<String>,
    pub credential: Option<String>,
}

/// What a step does.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Send the driver `connect` command and accept the IUT's connection.
    Connect(Connect),
    /// Negotiate the stream as the gatekeeper server.
    Negotiate(Negotiate),
    /// Send literal bytes (after `${var}` substitution) on the stream.
    Send(String),
    /// Send the bytes of a fixture file (a `.gen` recipe is expanded).
    SendFixture(PathBuf),
    /// Expect one stanza matching one of the patterns.
    Expect(Vec<String>),
    /// Expect `<stream:error>`, its condition graded.
    ExpectStreamError(StreamErrorExpect),
    /// Expect the IUT to close the connection.
    ExpectClosed {
        close_tag: bool,
    },
    /// Expect no stanza for this long.
    ExpectNothing(Duration),
    /// Send a driver command (a JSON object; `seq` is added).
    Driver(serde_json::Value),
    /// Expect a driver event whose fields include one of these objects.
    ExpectEvent(Vec<serde_json::Value>),
    Sleep(Duration),
    /// Send `</stream:stream>`.
    CloseStream,
    /// Close the TCP connection without a closing tag.
    Hangup,
    /// Send an HTTP request to the provider's server; the response is kept for `expect_http`.
    Http(HttpStep),
    /// Check the response to the last `http` step.
    ExpectHttp(ExpectHttp),
}

impl Action {
    /// Short name used in transcripts and failure messages.
    pub fn name(&self) -> &'static str {
        match self {
            Action::Connect(_) => "connect",
            Action::Negotiate(_) => "negotiate",
            Action::Send(_) => "send",
            Action::SendFixture(_) => "send_fixture",
            Action::Expect(_) => "expect",
            Action::ExpectStreamError(_) => "expect_stream_error",
            Action::ExpectClosed { .. } => "expect_closed",
            Action::ExpectNothing(_) => "expect_nothing",
            Action::Driver(_) => "driver",
            Action::ExpectEvent(_) => "expect_event",
            Action::Sleep(_) => "sleep",
            Action::CloseStream => "close_stream",
            Action::Hangup => "hangup",
            Action::Http(_) => "http",
            Action::ExpectHttp(_) => "expect_http",
        }
    }
}

impl Action {
    /// Whether a scenario of `role` can play this action: the client role talks to the
    /// IUT's stream and driver, the server role to its HTTP API. A mismatch is a load error,
    /// never a run-time failure of the IUT.
    pub fn fits_role(&self, role: super::Role) -> Result<(), String> {
        use super::Role;
        let http = matches!(self, Action::Http(_) | Action::ExpectHttp(_));
        let neutral = matches!(self, Action::Sleep(_));
        match role {
            Role::Client if http => Err(format!(
                "`{}` talks to a provider server: it needs role = \"server\"",
                self.name()
            )),
            Role::Server if !http && !neutral => Err(format!(
                "`{}` needs a driven client connection: it needs role = \"client\" (a server scenario has only http, expect_http and sleep)",
                self.name()
            )),
            Role::Proxy => {
                Err("scenarios for the proxy role are not supported by this harness version".into())
            }
            _ => Ok(()),
        }
    }
}

/// A validated step.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    /// Line of the `[[step]]` header in the scenario file.
    pub line: usize,
    pub action: Action,
    pub timeout: Option<Duration>,
    pub ignore: Vec<String>,
    pub requirement: Option<String>,
    /// The gatekeeper user that sends (`send`) or receives (`expect`, `expect_any`); `None`
    /// for the gatekeeper server.
    pub actor: Option<String>,
}

const MAX_WAIT_MS: u64 = 60_000;

impl Step {
    /// Validates a raw step. `session` expands into `connect` + `negotiate`,
    /// hence a list.
    pub(crate) fn from_raw(
        raw: RawStep,
        line: usize,
        dirs: &SuiteDirs,
    ) -> Result<Vec<Step>, String> {
        let mut actions: Vec<Action> = Vec::new();
        let mut names: Vec<&str> = Vec::new();
        if let Some(c) = raw.session {
            names.push("session");
            let mechanisms = c.mechanisms.clone();
            actions.push(Action::Connect(connect(c)?));
            actions.push(Action::Negotiate(Negotiate {
                upto: Stage::Session,
                mechanisms: mechanisms.unwrap_or_else(default_mechanisms),
                sasl: SaslAnswer::Verify,
            }));
        }
        if let Some(c) = raw.connect {
            names.push("connect");
            if c.mechanisms.is_some() {
                return Err(
                    "`mechanisms` belongs to `negotiate` or `session`, not `connect`".into(),
                );
            }
            actions.push(Action::Connect(connect(c)?));
        }
        if let Some(n) = raw.negotiate {
            names.push("negotiate");
            actions.push(Action::Negotiate(negotiate(n)?));
        }
        if let Some(s) = raw.send {
            names.push("send");
            vars_ok(&s)?;
            actions.push(Action::Send(s));
        }
        if let Some(f) = raw.send_fixture {
            names.push("send_fixture");
            let path = dirs.fixtures.join(&f);
            if f.contains("..") || !crate::bundle::is_file(&path) {
                return Err(format!(
                    "send_fixture: no fixture {f:?} under {}",
                    dirs.fixtures.display()
                ));
            }
            actions.push(Action::SendFixture(PathBuf::from(f)));
        }
        if let Some(p) = raw.expect {
            names.push("expect");
            pattern::validate_template(&p).map_err(|m| format!("expect: {m}"))?;
            actions.push(Action::Expect(vec![p]));
        }
        if let Some(ps) = raw.expect_any {
            names.push("expect_any");
            if ps.len() < 2 {
                return Err(
                    "expect_any needs at least two alternatives (use expect for one)".into(),
                );
            }
            for p in &ps {
                pattern::validate_template(p).map_err(|m| format!("expect_any: {m}"))?;
            }
            actions.push(Action::Expect(ps));
        }
        if let Some(raw_se) = raw.expect_stream_error {
            names.push("expect_stream_error");
            actions.push(Action::ExpectStreamError(stream_error(raw_se)?));
        }
        if let Some(c) = raw.expect_closed {
            names.push("expect_closed");
            actions.push(Action::ExpectClosed {
                close_tag: c.close_tag,
            });
        }
        if let Some(ms) = raw.expect_nothing {
            names.push("expect_nothing");
            wait_ok(ms)?;
            actions.push(Action::ExpectNothing(Duration::from_millis(ms)));
        }
        if let Some(cmd) = raw.driver {
            names.push("driver");
            let ok = cmd.get("cmd").and_then(|c| c.as_str()).is_some();
            if !ok || cmd.get("seq").is_some() {
                return Err("driver needs an inline table with a string `cmd` (and no `seq`: the runner numbers commands)".into());
            }
            actions.push(Action::Driver(cmd));
        }
        if let Some(ev) = raw.expect_event {
            names.push("expect_event");
            event_ok(&ev)?;
            actions.push(Action::ExpectEvent(vec![ev]));
        }
        if let Some(evs) = raw.expect_event_any {
            names.push("expect_event_any");
            if evs.len() < 2 {
                return Err("expect_event_any needs at least two alternatives".into());
            }
            for ev in &evs {
                event_ok(ev)?;
            }
            actions.push(Action::ExpectEvent(evs));
        }
        if let Some(ms) = raw.sleep {
            names.push("sleep");
            wait_ok(ms)?;
            actions.push(Action::Sleep(Duration::from_millis(ms)));
        }
        if let Some(true) = raw.close_stream {
            names.push("close_stream");
            actions.push(Action::CloseStream);
        }
        if let Some(true) = raw.hangup {
            names.push("hangup");
            actions.push(Action::Hangup);
        }
        if let Some(h) = raw.http {
            names.push("http");
            actions.push(Action::Http(http_step(h)?));
        }
        if let Some(e) = raw.expect_http {
            names.push("expect_http");
            actions.push(Action::ExpectHttp(expect_http(e)?));
        }
        match names.len() {
            0 => return Err("a step needs one action (session, connect, negotiate, send, send_fixture, expect, expect_any, expect_stream_error, expect_closed, expect_nothing, driver, expect_event, expect_event_any, sleep, close_stream, hangup, http, expect_http)".into()),
            1 => {}
            _ => return Err(format!("a step has one action, this one has {}", names.join(", "))),
        }
        if let Some(ms) = raw.timeout_ms {
            wait_ok(ms)?;
        }
        for p in &raw.ignore {
            pattern::validate_template(p).map_err(|m| format!("ignore: {m}"))?;
        }
        let requirement = raw.requirement;
        if raw.actor.is_some()
            && !actions
                .iter()
                .all(|a| matches!(a, Action::Send(_) | Action::Expect(_)))
        {
            return Err(
                "`actor` goes with send, expect and expect_any only (who sends, who receives)"
                    .into(),
            );
        }
        let timeout = raw.timeout_ms.map(Duration::from_millis);
        Ok(actions
            .into_iter()
            .map(|action| Step {
                line,
                action,
                timeout,
                ignore: raw.ignore.clone(),
                requirement: requirement.clone(),
                actor: raw.actor.clone(),
            })
            .collect())
    }
}

fn stream_error(raw: RawStreamError) -> Result<StreamErrorExpect, String> {
    let expect = match raw {
        RawStreamError::Conditions(pass) => StreamErrorExpect {
            pass,
            warn: Vec::new(),
            should: None,
        },
        RawStreamError::Graded(g) => StreamErrorExpect {
            pass: g.pass,
            warn: g.warn,
            should: g.should,
        },
    };
    if expect.pass.is_empty() {
        return Err("expect_stream_error needs at least one condition that passes".into());
    }
    for c in expect
        .pass
        .iter()
        .chain(expect.warn.iter().filter(|c| *c != "*"))
    {
        if c.parse::<crate::wire::StreamErrorCondition>().is_err() {
            return Err(format!("{c:?} is not an RFC 6120 stream error condition"));
        }
    }
    if expect.warn.is_empty() != expect.should.is_none() {
        return Err(
            "expect_stream_error: `warn` conditions and the SHOULD requirement they miss (`should`) go together"
                .into(),
        );
    }
    Ok(expect)
}

fn http_step(h: RawHttp) -> Result<HttpStep, String> {
    const METHODS: &[&str] = &["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"];
    if !METHODS.contains(&h.method.as_str()) {
        return Err(format!(
            "http method {:?} is not one of {}",
            h.method,
            METHODS.join(", ")
        ));
    }
    if !h.path.starts_with('/') {
        return Err(format!("http path {:?} must start with /", h.path));
    }
    if h.body.is_some() && h.json.is_some() {
        return Err("http takes body or json, not both".into());
    }
    vars_ok(&h.path)?;
    if let Some(b) = &h.body {
        vars_ok(b)?;
    }
    Ok(HttpStep {
        method: h.method,
        path: h.path,
        headers: h.headers.into_iter().collect(),
        body: h.body,
        json: h.json,
    })
}

fn expect_http(e: RawExpectHttp) -> Result<ExpectHttp, String> {
    let status = match e.status {
        OneOrMany::One(s) => vec![s],
        OneOrMany::Many(v) => v,
    };
    if status.is_empty() || status.iter().any(|s| !(100..=599).contains(s)) {
        return Err("expect_http status must be one or more codes in 100..=599".into());
    }
    if let Some(ms) = e.within_ms {
        wait_ok(ms)?;
    }
    Ok(ExpectHttp {
        status,
        headers: e
            .headers
            .into_iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), v))
            .collect(),
        json: e.json,
        body: e.body,
        body_excludes: e.body_excludes,
        within_ms: e.within_ms,
    })
}

fn default_mechanisms() -> Vec<String> {
    vec!["PLAIN".to_string()]
}

fn connect(c: RawConnect) -> Result<Connect, String> {
    let transport = match c.transport {
        None => None,
        Some(t) => Some(
            t.parse::<TransportKind>()
                .map_err(|_| format!("transport {t:?} must be \"noise\" or \"tls\""))?,
        ),
    };
    let handshake = match c.handshake {
        None => HandshakeMode::Normal,
        Some(h) => HandshakeMode::parse(&h).ok_or_else(|| {
            format!("handshake {h:?} is not one of normal, wrong-key, truncate, garbage, tls-unknown-ca, tls-wrong-name, tls12-only")
        })?,
    };
    if let (Some(t), Some(needed)) = (transport, handshake.transport())
        && t != needed
    {
        return Err(format!(
            "handshake mode needs transport {needed}, but the step pins {t}"
        ));
    }
    Ok(Connect {
        transport: transport.or(handshake.transport()),
        handshake,
        account: c.account,
        credential: c.credential,
    })
}

fn negotiate(n: RawNegotiate) -> Result<Negotiate, String> {
    let upto = match n.upto.as_deref() {
        None | Some("session") => Stage::Session,
        Some("header") => Stage::Header,
        Some("features") => Stage::Features,
        Some("auth") => Stage::Auth,
        Some(o) => {
            return Err(format!(
                "upto {o:?} is not one of header, features, auth, session"
            ));
        }
    };
    let sasl = match n.sasl.as_deref() {
        None | Some("verify") => SaslAnswer::Verify,
        Some("reject") => SaslAnswer::Reject,
        Some(o) => return Err(format!("sasl {o:?} is not one of verify, reject")),
    };
    Ok(Negotiate {
        upto,
        mechanisms: n.mechanisms.unwrap_or_else(default_mechanisms),
        sasl,
    })
}

fn wait_ok(ms: u64) -> Result<(), String> {
    if ms == 0 || ms > MAX_WAIT_MS {
        return Err(format!("a duration must be 1..={MAX_WAIT_MS} ms, not {ms}"));
    }
    Ok(())
}

fn vars_ok(s: &str) -> Result<(), String> {
    super::vars::check_template(s)
}

fn event_ok(ev: &serde_json::Value) -> Result<(), String> {
    match ev.get("event").and_then(|e| e.as_str()) {
        Some(_) => Ok(()),
        None => Err("an expected event needs a string `event` field".into()),
    }
}
