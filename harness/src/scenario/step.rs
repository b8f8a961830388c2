//! One scenario step: its TOML form, validation, and the typed action the runner executes.

use std::path::PathBuf;
use std::time::Duration;

use super::SuiteDirs;
use super::e2ee_step;
pub use super::e2ee_step::{E2eeDevices, E2eeExpect, E2eeKeys, E2eeSend, Tamper};
pub use super::http_step::{ExpectHttp, HttpStep, Signing};
use super::pattern;
use super::raw_step::{RawAction, RawConnect, RawNegotiate, RawSendFrame, RawStep, RawStreamError};
pub use crate::roles::gatekeeper_options::{HandshakeMode, Negotiate, SaslAnswer, Stage};
pub use crate::transport::FrameMode;
use crate::transport::TransportKind;

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

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connect {
    pub transport: Option<TransportKind>,
    pub handshake: HandshakeMode,
    pub account: Option<String>,
    pub credential: Option<String>,
    /// Log in as the device enrolled last (SPEC.md §7.4).
    pub enrolled: bool,
    /// The proof handed over for that login; spoiled, the gatekeeper refuses the login and
    /// the client must handle the SASL failure (STREAM-21).
    pub enrolled_proof: super::enroll_step::ProofKind,
    /// An enrolled `connect` after no enrollment succeeded: the client must answer `error`
    /// with `not-enrolled` and make no connection (ENROLL-1).
    pub refused: bool,
}

/// What a step does.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Send the driver `connect` command and accept the IUT's connection.
    Connect(Connect),
    /// Send `keep_connected`, drop the first `refuse` connection attempts, log the next one
    /// in, drop that session, and time the attempts (STREAM-37, STREAM-38).
    KeepConnected {
        refuse: u32,
        transport: Option<TransportKind>,
    },
    /// Negotiate the stream as the gatekeeper server.
    Negotiate(Negotiate),
    /// Send literal bytes (after `${var}` substitution) on the stream.
    Send(String),
    /// Send the bytes of a fixture file (a `.gen` recipe is expanded).
    SendFixture(PathBuf),
    /// Send text (after `${var}` substitution) in Noise transport frames shaped by `mode`,
    /// correct (split) or broken on purpose; `text` is `None` for a zero-length frame.
    SendFrame {
        text: Option<String>,
        mode: FrameMode,
    },
    /// Expect one stanza matching one of the patterns.
    Expect(Vec<String>),
    /// Expect `<stream:error>`, its condition graded.
    ExpectStreamError(StreamErrorExpect),
    /// Expect the IUT to close the connection (`within`: by a requirement's time bound).
    ExpectClosed {
        close_tag: bool,
        within: Option<String>,
    },
    /// Expect the IUT to close the connection without writing another byte (STREAM-5,
    /// STREAM-8).
    ExpectAbort,
    /// Expect no stanza for this long.
    ExpectNothing(Duration),
    /// Send a driver command (a JSON object; `seq` is added).
    Driver(serde_json::Value),
    /// Expect a driver event whose fields include one of these objects.
    ExpectEvent(Vec<serde_json::Value>),
    Sleep(Duration),
    /// The gatekeeper stays silent this long (answering pings): the IUT must not close the
    /// stream for inactivity (STREAM-43), and keeps it alive (STREAM-35).
    Idle(Duration),
    /// Send `</stream:stream>`.
    CloseStream,
    /// Close the TCP connection without a closing tag.
    Hangup,
    /// Send an HTTP request to the provider's server; the response is kept for `expect_http`.
    Http(HttpStep),
    /// Check the response to the last `http` step.
    ExpectHttp(ExpectHttp),
    /// A gatekeeper user encrypts a message to the IUT (SPEC.md §9).
    E2eeSend(E2eeSend),
    /// A gatekeeper user receives and decrypts a message from the IUT.
    E2eeExpect(E2eeExpect),
    /// The IUT's published device list and bundle (and, with `low`, their replenishment).
    E2eeKeys(E2eeKeys),
    /// The client enrolls with the harness's enrollment API (SPEC.md §10).
    Enroll(super::enroll_step::EnrollStep),
    /// The gatekeeper pushes; the client must wake (SPEC.md PUSH-10) or, repeated, not.
    Push(super::push_step::PushStep),
    /// Changes to a gatekeeper user's devices.
    E2eeDevices(E2eeDevices),
    /// A step of a proxy scenario: its downstream clients, headers and relays (SPEC.md §15).
    Proxy(super::proxy_step::ProxyAction),
    /// Media (SPEC.md §14): sent, shared, stored, fetched.
    Media(super::media_step::MediaStep),
}

impl Action {
    /// Short name used in transcripts and failure messages.
    pub fn name(&self) -> &'static str {
        match self {
            Action::Connect(_) => "connect",
            Action::KeepConnected { .. } => "keep_connected",
            Action::Negotiate(_) => "negotiate",
            Action::Send(_) => "send",
            Action::SendFixture(_) => "send_fixture",
            Action::SendFrame { .. } => "send_frame",
            Action::Expect(_) => "expect",
            Action::ExpectStreamError(_) => "expect_stream_error",
            Action::ExpectClosed { .. } => "expect_closed",
            Action::ExpectAbort => "expect_abort",
            Action::ExpectNothing(_) => "expect_nothing",
            Action::Driver(_) => "driver",
            Action::ExpectEvent(_) => "expect_event",
            Action::Sleep(_) => "sleep",
            Action::Idle(_) => "idle",
            Action::CloseStream => "close_stream",
            Action::Hangup => "hangup",
            Action::Http(_) => "http",
            Action::ExpectHttp(_) => "expect_http",
            Action::E2eeSend(_) => "e2ee_send",
            Action::E2eeExpect(_) => "e2ee_expect",
            Action::E2eeKeys(_) => "e2ee_keys",
            Action::Enroll(_) => "enroll",
            Action::Push(_) => "push",
            Action::E2eeDevices(_) => "e2ee_devices",
            Action::Proxy(p) => p.name(),
            Action::Media(m) => m.name(),
        }
    }
}

impl Action {
    /// Whether a scenario of `role` can play this action: the client role talks to the
    /// IUT's stream and driver, the server role to its HTTP API. A mismatch is a load error,
    /// never a run-time failure of the IUT.
    pub fn fits_role(&self, role: super::Role) -> Result<(), String> {
        use super::Role;
        let http = matches!(self, Action::Http(_) | Action::ExpectHttp(_))
            || matches!(self, Action::Media(m) if m.of_server());
        let neutral = matches!(self, Action::Sleep(_));
        match role {
            Role::Client | Role::Server if matches!(self, Action::Proxy(_)) => Err(format!(
                "`{}` plays a proxy's client: it needs role = \"proxy\"",
                self.name()
            )),
            Role::Client if http => Err(format!(
                "`{}` talks to a provider server: it needs role = \"server\"",
                self.name()
            )),
            Role::Server if !http && !neutral => Err(format!(
                "`{}` needs a driven client connection: it needs role = \"client\" (a server scenario has only http, expect_http, media_store, media_fetch, media_clock and sleep)",
                self.name()
            )),
            Role::Proxy => super::proxy_step::fits_proxy(self),
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
    /// The IUT instance whose driver and connection the step uses (`device = "laptop"`);
    /// `None` for the scenario's first (or only) one.
    pub device: Option<String>,
}

const MAX_WAIT_MS: u64 = 60_000;
/// The idle limits the gatekeeper may announce, in seconds (STREAM-47).
const IDLE_LIMITS: std::ops::RangeInclusive<u64> = 5..=300;
/// How many attempts `keep_connected` may drop.
const KEEP_REFUSALS: std::ops::RangeInclusive<u32> = 3..=6;

impl Step {
    /// Validates a raw step. `session` expands into `connect` + `negotiate`,
    /// hence a list.
    pub(crate) fn from_raw(
        raw: RawStep,
        line: usize,
        dirs: &SuiteDirs,
    ) -> Result<Vec<Step>, String> {
        let (name, action) = raw.action;
        let actions: Vec<Action> = match action {
            RawAction::Session(c) => {
                if c.refused {
                    return Err(
                        "`refused` belongs to `connect`: a refused login has no session".into(),
                    );
                }
                let mechanisms = c.mechanisms.clone().or_else(|| {
                    c.enrolled.then(|| {
                        vec![
                            crate::idproof::sasl::MECHANISM.to_string(),
                            "PLAIN".to_string(),
                        ]
                    })
                });
                vec![
                    Action::Connect(connect(c)?),
                    Action::Negotiate(Negotiate {
                        upto: Stage::Session,
                        mechanisms: mechanisms.unwrap_or_else(default_mechanisms),
                        sasl: SaslAnswer::Verify,
                        features_delay: None,
                        idle_limit: None,
                    }),
                ]
            }
            RawAction::Connect(c) => {
                if c.mechanisms.is_some() {
                    return Err(
                        "`mechanisms` belongs to `negotiate` or `session`, not `connect`".into(),
                    );
                }
                vec![Action::Connect(connect(c)?)]
            }
            RawAction::KeepConnected(k) => {
                if !KEEP_REFUSALS.contains(&k.refuse) {
                    return Err(format!(
                        "keep_connected: refuse = {} must be {} to {}: three failures give the two delays STREAM-38's doubling is judged on",
                        k.refuse,
                        KEEP_REFUSALS.start(),
                        KEEP_REFUSALS.end()
                    ));
                }
                let transport = match k.transport {
                    None => None,
                    Some(t) => Some(
                        t.parse::<TransportKind>()
                            .map_err(|_| format!("transport {t:?} must be \"noise\" or \"tls\""))?,
                    ),
                };
                vec![Action::KeepConnected {
                    refuse: k.refuse,
                    transport,
                }]
            }
            RawAction::Negotiate(n) => vec![Action::Negotiate(negotiate(n)?)],
            RawAction::Send(s) => {
                vars_ok(&s)?;
                vec![Action::Send(s)]
            }
            RawAction::SendFixture(f) => {
                // A relative path below fixtures/ only: joining an absolute one would replace
                // the base, and `..` would leave it, sending any readable file to the IUT.
                if f.contains("..")
                    || std::path::Path::new(&f).is_absolute()
                    || !crate::bundle::is_file(&dirs.fixtures.join(&f))
                {
                    return Err(format!(
                        "send_fixture: no fixture {f:?} under {}",
                        dirs.fixtures.display()
                    ));
                }
                vec![Action::SendFixture(PathBuf::from(f))]
            }
            RawAction::SendFrame(f) => vec![send_frame(f)?],
            RawAction::ExpectAbort(true) => vec![Action::ExpectAbort],
            RawAction::Expect(p) => {
                pattern::validate_template(&p).map_err(|m| format!("expect: {m}"))?;
                vec![Action::Expect(vec![p])]
            }
            RawAction::ExpectAny(ps) => {
                if ps.len() < 2 {
                    return Err(
                        "expect_any needs at least two alternatives (use expect for one)".into(),
                    );
                }
                for p in &ps {
                    pattern::validate_template(p).map_err(|m| format!("expect_any: {m}"))?;
                }
                vec![Action::Expect(ps)]
            }
            RawAction::ExpectStreamError(se) => vec![Action::ExpectStreamError(stream_error(se)?)],
            RawAction::ExpectClosed(c) => {
                if let Some(r) = &c.within
                    && crate::spec::embedded_time_bound(r).is_none()
                {
                    return Err(format!(
                        "expect_closed: within = {r:?} has no time bound in SPEC.md Appendix B"
                    ));
                }
                vec![Action::ExpectClosed {
                    close_tag: c.close_tag,
                    within: c.within,
                }]
            }
            RawAction::ExpectNothing(ms) => {
                wait_ok(ms)?;
                vec![Action::ExpectNothing(Duration::from_millis(ms))]
            }
            RawAction::Driver(cmd) => {
                let ok = cmd.get("cmd").and_then(|c| c.as_str()).is_some();
                if !ok || cmd.get("seq").is_some() {
                    return Err("driver needs an inline table with a string `cmd` (and no `seq`: the runner numbers commands)".into());
                }
                vec![Action::Driver(cmd)]
            }
            RawAction::ExpectEvent(ev) => {
                event_ok(&ev)?;
                vec![Action::ExpectEvent(vec![ev])]
            }
            RawAction::ExpectEventAny(evs) => {
                if evs.len() < 2 {
                    return Err("expect_event_any needs at least two alternatives".into());
                }
                for ev in &evs {
                    event_ok(ev)?;
                }
                vec![Action::ExpectEvent(evs)]
            }
            RawAction::Sleep(ms) => {
                wait_ok(ms)?;
                vec![Action::Sleep(Duration::from_millis(ms))]
            }
            RawAction::Idle(ms) => {
                wait_ok(ms)?;
                vec![Action::Idle(Duration::from_millis(ms))]
            }
            RawAction::CloseStream(true) => vec![Action::CloseStream],
            RawAction::Hangup(true) => vec![Action::Hangup],
            RawAction::CloseStream(false)
            | RawAction::Hangup(false)
            | RawAction::ExpectAbort(false) => {
                return Err(format!(
                    "`{name} = false` does nothing: write `{name} = true`"
                ));
            }
            RawAction::Http(h) => vec![Action::Http(super::http_step::http_step(h)?)],
            RawAction::ExpectHttp(e) => vec![Action::ExpectHttp(super::http_step::expect_http(e)?)],
            RawAction::E2eeSend(r) => vec![Action::E2eeSend(e2ee_step::e2ee_send(r)?)],
            RawAction::E2eeExpect(r) => vec![Action::E2eeExpect(e2ee_step::e2ee_expect(r)?)],
            RawAction::E2eeKeys(r) => vec![Action::E2eeKeys(e2ee_step::e2ee_keys(r))],
            RawAction::Enroll(r) => vec![Action::Enroll(super::enroll_step::enroll_step(r)?)],
            RawAction::Push(r) => vec![Action::Push(super::push_step::push_step(r))],
            RawAction::E2eeDevices(r) => vec![Action::E2eeDevices(e2ee_step::e2ee_devices(r)?)],
            proxy @ (RawAction::DownstreamConnect(_)
            | RawAction::DownstreamSend(_)
            | RawAction::DownstreamExpect(_)
            | RawAction::DownstreamExpectStreamError(_)
            | RawAction::DownstreamExpectClosed(_)
            | RawAction::DownstreamExpectNothing(_)
            | RawAction::DownstreamClose(_)
            | RawAction::ExpectProxyHeader(_)
            | RawAction::Relay(_)) => vec![super::proxy_step::from_raw(proxy)?],
            RawAction::MediaSend(r) => vec![Action::Media(super::media_step::media_send(r)?)],
            RawAction::ExpectMedia(r) => vec![Action::Media(super::media_step::expect_media(r)?)],
            RawAction::MediaShare(r) => vec![Action::Media(super::media_step::media_share(r)?)],
            RawAction::MediaStore(r) => vec![Action::Media(super::media_step::media_store(r)?)],
            RawAction::MediaFetch(r) => vec![Action::Media(super::media_step::media_fetch(r)?)],
            RawAction::MediaClock(r) => vec![Action::Media(super::media_step::media_clock(r)?)],
        };
        if let Some(ms) = raw.timeout_ms {
            wait_ok(ms)?;
        }
        for p in &raw.ignore {
            pattern::validate_template(p).map_err(|m| format!("ignore: {m}"))?;
        }
        let by_user = |a: &Action| {
            matches!(
                a,
                Action::E2eeSend(_) | Action::E2eeExpect(_) | Action::E2eeDevices(_)
            ) || matches!(a, Action::Media(m) if m.by_user())
        };
        if raw.actor.is_some()
            && !actions
                .iter()
                .all(|a| matches!(a, Action::Send(_) | Action::Expect(_)) || by_user(a))
        {
            return Err(
                "`actor` goes with send, expect, expect_any, e2ee_send, e2ee_expect, e2ee_devices, media_send and media_share only (who sends, who receives)"
                    .into(),
            );
        }
        if raw.actor.is_none() && actions.iter().any(by_user) {
            return Err(format!(
                "`{name}` is done by a gatekeeper user: name it with `actor = \"...\"`"
            ));
        }
        if raw.device.is_some()
            && actions.iter().any(|a| {
                matches!(
                    a,
                    Action::Sleep(_) | Action::Http(_) | Action::ExpectHttp(_)
                )
            })
        {
            return Err(format!(
                "`device` names the IUT instance a step drives or reads; `{name}` uses none"
            ));
        }
        let timeout = raw.timeout_ms.map(Duration::from_millis);
        Ok(actions
            .into_iter()
            .map(|action| Step {
                line,
                action,
                timeout,
                ignore: raw.ignore.clone(),
                requirement: raw.requirement.clone(),
                actor: raw.actor.clone(),
                device: raw.device.clone(),
            })
            .collect())
    }
}

fn send_frame(f: RawSendFrame) -> Result<Action, String> {
    let mode = FrameMode::parse(&f.mode).ok_or_else(|| {
        let known: Vec<&str> = FrameMode::ALL.iter().map(|m| m.as_str()).collect();
        format!(
            "send_frame: mode {:?} is not one of {}",
            f.mode,
            known.join(", ")
        )
    })?;
    match (&f.text, mode.carries_text()) {
        (None, true) => return Err(format!("send_frame: mode {mode} needs a `text`")),
        (Some(_), false) => {
            return Err(format!(
                "send_frame: mode {mode} sends a zero-length frame: it takes no `text`"
            ));
        }
        (Some(t), true) if t.is_empty() => {
            return Err("send_frame: `text` is empty".into());
        }
        (Some(t), true) if mode == FrameMode::Reorder && t.len() < 2 => {
            return Err("send_frame: reorder needs a text of two bytes or more".into());
        }
        _ => {}
    }
    if let Some(t) = &f.text {
        vars_ok(t)?;
    }
    Ok(Action::SendFrame { text: f.text, mode })
}

/// `send_frame` writes Noise transport frames: each one must follow a `connect` (or
/// `session`) of the same device whose Noise handshake completes, on a connection the
/// scenario or that step pins to Noise. Returns the offending step's line and why.
pub(crate) fn frames_need_noise(
    steps: &[Step],
    scenario_transport: Option<TransportKind>,
) -> Result<(), (usize, String)> {
    let mut connected: Vec<(Option<&str>, Option<&Connect>)> = Vec::new();
    for step in steps {
        let device = step.device.as_deref();
        match &step.action {
            Action::Connect(c) => {
                connected.retain(|(d, _)| *d != device);
                // A refused connect leaves the device without a connection.
                connected.push((device, (!c.refused).then_some(c)));
            }
            Action::SendFrame { .. } => {
                let last = connected
                    .iter()
                    .find(|(d, _)| *d == device)
                    .and_then(|(_, c)| *c);
                let Some(c) = last else {
                    return Err((
                        step.line,
                        "send_frame needs a connection: put a connect or session step before it"
                            .into(),
                    ));
                };
                if !c.handshake.completes() {
                    return Err((
                        step.line,
                        "send_frame needs a completed Noise handshake, not a broken one".into(),
                    ));
                }
                if c.transport.or(scenario_transport) != Some(TransportKind::Noise) {
                    return Err((
                        step.line,
                        "send_frame writes Noise transport frames: pin transport = \"noise\" (TLS has no frames of its own)".into(),
                    ));
                }
            }
            _ => {}
        }
    }
    Ok(())
}

pub(super) fn stream_error(raw: RawStreamError) -> Result<StreamErrorExpect, String> {
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
    if c.proof.is_some() && !c.enrolled {
        return Err("proof goes with enrolled = true".into());
    }
    let enrolled_proof = super::enroll_step::proof_kind(c.proof.as_deref())?;
    if c.enrolled && (c.account.is_some() || c.credential.is_some()) {
        return Err(
            "enrolled = true logs in as the enrolled device: it takes no account or credential"
                .into(),
        );
    }
    if c.refused && (!c.enrolled || handshake != HandshakeMode::Normal || c.proof.is_some()) {
        return Err(
            "refused = true goes with enrolled = true alone (no handshake, no proof): the client must open no connection"
                .into(),
        );
    }
    Ok(Connect {
        transport: transport.or(handshake.transport()),
        handshake,
        account: c.account,
        credential: c.credential,
        enrolled: c.enrolled,
        enrolled_proof,
        refused: c.refused,
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
    if let Some(s) = n.idle_s {
        if !IDLE_LIMITS.contains(&s) {
            return Err(format!(
                "idle_s = {s}: SPEC.md STREAM-47 lets the gatekeeper announce {} to {} seconds",
                IDLE_LIMITS.start(),
                IDLE_LIMITS.end()
            ));
        }
        if upto != Stage::Session {
            return Err("idle_s is announced with <bind/>: it needs `upto = \"session\"`".into());
        }
    }
    if let Some(ms) = n.features_delay_ms {
        wait_ok(ms)?;
        if upto == Stage::Header {
            return Err("features_delay_ms: `upto = \"header\"` sends no features".into());
        }
    }
    Ok(Negotiate {
        upto,
        mechanisms: n.mechanisms.unwrap_or_else(default_mechanisms),
        sasl,
        features_delay: n.features_delay_ms.map(Duration::from_millis),
        idle_limit: n.idle_s.map(Duration::from_secs),
    })
}

pub(super) fn wait_ok(ms: u64) -> Result<(), String> {
    if ms == 0 || ms > MAX_WAIT_MS {
        return Err(format!("a duration must be 1..={MAX_WAIT_MS} ms, not {ms}"));
    }
    Ok(())
}

pub(super) fn vars_ok(s: &str) -> Result<(), String> {
    super::vars::check_template(s)
}

fn event_ok(ev: &serde_json::Value) -> Result<(), String> {
    match ev.get("event").and_then(|e| e.as_str()) {
        Some(_) => Ok(()),
        None => Err("an expected event needs a string `event` field".into()),
    }
}
