//! The steps of a proxy scenario (`role = "proxy"`, SPEC.md §15): the harness plays the
//! proxy's downstream clients (`downstream_*`), checks the PROXY v2 header of each client's
//! upstream connection (`expect_proxy_header`), and relays a stanza through the proxy in
//! either direction, judging what comes out (`relay`). The gatekeeper's side of each client's
//! upstream connection is read and written with the gatekeeper-server steps (`send`, `expect`,
//! `expect_closed`, ...), on the connection of the client a proxy step named last.

use std::time::Duration;

use serde::Deserialize;

use super::raw_step::{RawAction, RawGradedStreamError, RawStreamError};
use super::step::{Action, StreamErrorExpect, wait_ok};
use super::{pattern, vars};
use crate::roles::downstream::Upto;
use crate::roles::gatekeeper_options::HandshakeMode;
use crate::transport::TransportKind;

/// The client a proxy step uses when it names none: its variables are `${client.jid}`.
pub const DEFAULT_CLIENT: &str = "client";

/// `downstream_connect = { … }` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDownstreamConnect {
    client: Option<String>,
    transport: Option<String>,
    upto: Option<String>,
    /// `false`: log in as the account that did not opt in (PROXY-12).
    opted_in: Option<bool>,
    /// Wait this long between TCP connect and the transport handshake (PROXY-3).
    hold_ms: Option<u64>,
    /// The disco#info features the client answers with (PROXY-10).
    features: Option<Vec<String>>,
    /// How the gatekeeper plays the upstream handshake: `normal`, or `wrong-key` (PROXY-1).
    upstream_handshake: Option<String>,
    /// `required` (default: none fails PROXY-3) or `optional` (checks on the client-facing
    /// stream only: an upstream connection is served if the IUT opens one).
    upstream: Option<String>,
}

/// A text, or `{ text = "…", client = "…" }`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(super) enum RawDownstreamText {
    Text(String),
    Table(RawTextTable),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTextTable {
    text: String,
    client: Option<String>,
}

/// A pattern, or `{ pattern = "…" | any = ["…", "…"], client = "…" }`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(super) enum RawDownstreamExpect {
    Pattern(String),
    Table(RawExpectTable),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawExpectTable {
    pattern: Option<String>,
    any: Option<Vec<String>>,
    client: Option<String>,
}

/// `["not-well-formed"]`, or `{ pass = [...], warn = [...], should = "REQ", client = "…" }`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(super) enum RawDownstreamStreamError {
    Conditions(Vec<String>),
    Graded(RawDownstreamGraded),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDownstreamGraded {
    pass: Vec<String>,
    #[serde(default)]
    warn: Vec<String>,
    should: Option<String>,
    client: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDownstreamClosed {
    #[serde(default)]
    close_tag: bool,
    within: Option<String>,
    client: Option<String>,
}

/// Milliseconds, or `{ ms = N, client = "…" }`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(super) enum RawDownstreamNothing {
    Ms(u64),
    Table { ms: u64, client: Option<String> },
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDownstreamClose {
    /// Send `</stream:stream>` first (default), or just close the connection.
    close_tag: Option<bool>,
    client: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawClientOnly {
    client: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRelay {
    from: String,
    stanza: String,
    client: Option<String>,
    pad_to: Option<usize>,
}

/// `downstream_connect`, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DownstreamConnect {
    pub client: String,
    pub transport: Option<TransportKind>,
    /// `None`: the transport handshake only (the upstream accepted, its header read, its
    /// Noise handshake done); else how far the client logs in.
    pub upto: Option<Upto>,
    pub opted_in: bool,
    pub hold: Option<Duration>,
    pub features: Option<Vec<String>>,
    /// `Normal`, or `WrongKey`: the gatekeeper answers with a key the proxy did not pin, and
    /// the proxy must abort (PROXY-1).
    pub upstream_handshake: HandshakeMode,
    /// `upstream = "optional"`: the scenario's checks rest on the client-facing stream only.
    /// An upstream connection the IUT opens for the client is accepted and served as in the
    /// other proxy scenarios (PROXY v2 header, Noise, the relayed login); none at all is not
    /// judged, so an XMPP server in the proxy's place can take the scenario. An upstream
    /// connection before the client's handshake, or a second one, still fails PROXY-3.
    pub upstream_optional: bool,
}

/// Which way a `relay` goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelayFrom {
    /// The downstream client writes; the gatekeeper reads.
    Client,
    /// The gatekeeper writes; the downstream client reads.
    Gatekeeper,
}

/// `relay`, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Relay {
    pub from: RelayFrom,
    pub stanza: String,
    pub client: String,
    /// Pad the stanza to exactly this many bytes, the filler shared out between its `@PAD@`
    /// markers.
    pub pad_to: Option<usize>,
}

/// The marker `pad_to` replaces with filler.
pub const PAD_MARKER: &str = "@PAD@";
/// The largest `pad_to`: the floor of STREAM-31 that PROXY-15 must not undercut.
pub const MAX_PAD: usize = 262_144;

/// A proxy scenario's own actions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProxyAction {
    Connect(DownstreamConnect),
    Send {
        client: String,
        text: String,
    },
    Expect {
        client: String,
        patterns: Vec<String>,
    },
    /// `<stream:error>` from the proxy to the client, its condition graded (after the
    /// proxy's own stream header when none came before on that stream).
    ExpectStreamError {
        client: String,
        expect: StreamErrorExpect,
    },
    ExpectClosed {
        client: String,
        close_tag: bool,
        within: Option<String>,
    },
    ExpectNothing {
        client: String,
        wait: Duration,
    },
    Close {
        client: String,
        close_tag: bool,
    },
    ExpectHeader {
        client: String,
    },
    Relay(Relay),
}

impl ProxyAction {
    pub fn name(&self) -> &'static str {
        match self {
            ProxyAction::Connect(_) => "downstream_connect",
            ProxyAction::Send { .. } => "downstream_send",
            ProxyAction::Expect { .. } => "downstream_expect",
            ProxyAction::ExpectStreamError { .. } => "downstream_expect_stream_error",
            ProxyAction::ExpectClosed { .. } => "downstream_expect_closed",
            ProxyAction::ExpectNothing { .. } => "downstream_expect_nothing",
            ProxyAction::Close { .. } => "downstream_close",
            ProxyAction::ExpectHeader { .. } => "expect_proxy_header",
            ProxyAction::Relay(_) => "relay",
        }
    }

    /// The downstream client the step uses.
    pub fn client(&self) -> &str {
        match self {
            ProxyAction::Connect(c) => &c.client,
            ProxyAction::Relay(r) => &r.client,
            ProxyAction::Send { client, .. }
            | ProxyAction::Expect { client, .. }
            | ProxyAction::ExpectStreamError { client, .. }
            | ProxyAction::ExpectClosed { client, .. }
            | ProxyAction::ExpectNothing { client, .. }
            | ProxyAction::Close { client, .. }
            | ProxyAction::ExpectHeader { client } => client,
        }
    }
}

/// Names the harness's own variables use; a client may not be called so.
const RESERVED: &[&str] = &[
    "gk", "rand", "uuid", "int", "user", "user2", "http", "e2ee", "optout", "proxy",
];

fn client(name: Option<String>) -> Result<String, String> {
    let Some(name) = name else {
        return Ok(DEFAULT_CLIENT.to_string());
    };
    let ok = name.chars().next().is_some_and(|c| c.is_ascii_lowercase())
        && name.len() <= 32
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if !ok {
        return Err(format!(
            "client {name:?} must be lowercase letters, digits and '-', starting with a letter"
        ));
    }
    if RESERVED.contains(&name.as_str()) {
        return Err(format!("client {name:?} is a name the harness uses itself"));
    }
    Ok(name)
}

fn within_ok(within: &Option<String>) -> Result<(), String> {
    if let Some(r) = within
        && crate::spec::embedded_time_bound(r).is_none()
    {
        return Err(format!(
            "within = {r:?} has no time bound in SPEC.md Appendix B"
        ));
    }
    Ok(())
}

/// Validates the raw form of a proxy action into an [`Action::Proxy`].
pub(super) fn from_raw(raw: RawAction) -> Result<Action, String> {
    let action = match raw {
        RawAction::DownstreamConnect(c) => connect(c),
        RawAction::DownstreamSend(t) => {
            let (text, c) = match t {
                RawDownstreamText::Text(text) => (text, None),
                RawDownstreamText::Table(t) => (t.text, t.client),
            };
            vars::check_template(&text).and_then(|()| {
                Ok(ProxyAction::Send {
                    client: client(c)?,
                    text,
                })
            })
        }
        RawAction::DownstreamExpect(e) => expect(e),
        RawAction::DownstreamExpectStreamError(e) => {
            let (raw, c) = match e {
                RawDownstreamStreamError::Conditions(pass) => {
                    (RawStreamError::Conditions(pass), None)
                }
                RawDownstreamStreamError::Graded(g) => (
                    RawStreamError::Graded(RawGradedStreamError {
                        pass: g.pass,
                        warn: g.warn,
                        should: g.should,
                    }),
                    g.client,
                ),
            };
            super::step::stream_error(raw)
                .map_err(|m| m.replace("expect_stream_error", "downstream_expect_stream_error"))
                .and_then(|expect| {
                    Ok(ProxyAction::ExpectStreamError {
                        client: client(c)?,
                        expect,
                    })
                })
        }
        RawAction::DownstreamExpectClosed(c) => within_ok(&c.within).and_then(|()| {
            Ok(ProxyAction::ExpectClosed {
                client: client(c.client)?,
                close_tag: c.close_tag,
                within: c.within,
            })
        }),
        RawAction::DownstreamExpectNothing(n) => {
            let (ms, c) = match n {
                RawDownstreamNothing::Ms(ms) => (ms, None),
                RawDownstreamNothing::Table { ms, client } => (ms, client),
            };
            wait_ok(ms).and_then(|()| {
                Ok(ProxyAction::ExpectNothing {
                    client: client(c)?,
                    wait: Duration::from_millis(ms),
                })
            })
        }
        RawAction::DownstreamClose(c) => client(c.client).map(|client| ProxyAction::Close {
            client,
            close_tag: c.close_tag.unwrap_or(true),
        }),
        RawAction::ExpectProxyHeader(c) => {
            client(c.client).map(|client| ProxyAction::ExpectHeader { client })
        }
        RawAction::Relay(r) => relay(r),
        _ => Err("not a step of a proxy scenario".into()),
    };
    action.map(Action::Proxy)
}

fn connect(c: RawDownstreamConnect) -> Result<ProxyAction, String> {
    let transport = match c.transport {
        None => None,
        Some(t) => Some(
            t.parse::<TransportKind>()
                .map_err(|_| format!("transport {t:?} must be \"noise\" or \"tls\""))?,
        ),
    };
    let upto = match c.upto.as_deref() {
        None | Some("session") => Some(Upto::Session),
        Some("handshake") => None,
        Some("features") => Some(Upto::Features),
        Some("auth") => Some(Upto::Auth),
        Some(o) => {
            return Err(format!(
                "upto {o:?} is not one of handshake, features, auth, session"
            ));
        }
    };
    let opted_in = c.opted_in.unwrap_or(true);
    if !opted_in && upto == Some(Upto::Session) {
        return Err(
            "opted_in = false: the proxy must refuse the login (PROXY-12), so stop at upto = \"auth\" and expect the refusal"
                .into(),
        );
    }
    if let Some(ms) = c.hold_ms {
        wait_ok(ms)?;
    }
    let upstream_handshake = match c.upstream_handshake.as_deref() {
        None | Some("normal") => HandshakeMode::Normal,
        Some("wrong-key") if upto.is_none() => HandshakeMode::WrongKey,
        Some("wrong-key") => {
            return Err(
                "upstream_handshake = \"wrong-key\": the proxy must abort, so nothing can log in: use upto = \"handshake\"".into(),
            );
        }
        Some(o) => {
            return Err(format!(
                "upstream_handshake {o:?} is not one of normal, wrong-key"
            ));
        }
    };
    let upstream_optional = match c.upstream.as_deref() {
        None | Some("required") => false,
        Some("optional") => true,
        Some(o) => {
            return Err(format!("upstream {o:?} is not one of required, optional"));
        }
    };
    if upstream_optional && upstream_handshake != HandshakeMode::Normal {
        return Err(
            "upstream = \"optional\" serves an upstream connection as the gatekeeper does: upstream_handshake needs the upstream (leave upstream out)".into(),
        );
    }
    if upstream_optional && !opted_in {
        return Err(
            "upstream = \"optional\" with opted_in = false: the opt-in refusal is a proxy's (PROXY-12), judged with the upstream required".into(),
        );
    }
    if let Some(f) = &c.features
        && f.iter()
            .any(|v| v.is_empty() || v.contains(['<', '>', '&', '\'', '"']))
    {
        return Err("features: each must be a non-empty namespace URI".into());
    }
    Ok(ProxyAction::Connect(DownstreamConnect {
        client: client(c.client)?,
        transport,
        upto,
        opted_in,
        hold: c.hold_ms.map(Duration::from_millis),
        features: c.features,
        upstream_handshake,
        upstream_optional,
    }))
}

fn expect(e: RawDownstreamExpect) -> Result<ProxyAction, String> {
    let (patterns, c) = match e {
        RawDownstreamExpect::Pattern(p) => (vec![p], None),
        RawDownstreamExpect::Table(t) => match (t.pattern, t.any) {
            (Some(p), None) => (vec![p], t.client),
            (None, Some(any)) if any.len() >= 2 => (any, t.client),
            (None, Some(_)) => {
                return Err("downstream_expect: `any` needs at least two patterns".into());
            }
            _ => {
                return Err("downstream_expect: give either `pattern` or `any`".into());
            }
        },
    };
    for p in &patterns {
        pattern::validate_template(p).map_err(|m| format!("downstream_expect: {m}"))?;
    }
    Ok(ProxyAction::Expect {
        client: client(c)?,
        patterns,
    })
}

fn relay(r: RawRelay) -> Result<ProxyAction, String> {
    let from = match r.from.as_str() {
        "client" => RelayFrom::Client,
        "gatekeeper" => RelayFrom::Gatekeeper,
        o => {
            return Err(format!(
                "relay: from {o:?} is not one of client, gatekeeper"
            ));
        }
    };
    vars::check_template(&r.stanza)?;
    match (r.pad_to, r.stanza.matches(PAD_MARKER).count()) {
        (Some(n), _) if n > MAX_PAD => {
            return Err(format!("relay: pad_to = {n} is above {MAX_PAD}"));
        }
        (Some(_), 0) => {
            return Err(format!("relay: pad_to needs a {PAD_MARKER} in the stanza"));
        }
        (None, 1..) => return Err(format!("relay: {PAD_MARKER} goes with pad_to")),
        _ => {}
    }
    // The stanza must be one element (checked with variables and padding stand-ins).
    let probe = vars::check_template(&r.stanza)
        .map(|()| pattern::validate_template(&r.stanza.replace(PAD_MARKER, "x")));
    if let Ok(Err(m)) = probe {
        return Err(format!(
            "relay: the stanza is not one well-formed element: {m}"
        ));
    }
    Ok(ProxyAction::Relay(Relay {
        from,
        stanza: r.stanza,
        client: client(r.client)?,
        pad_to: r.pad_to,
    }))
}

/// Whether an action can be played in a proxy scenario: the proxy steps, and the
/// gatekeeper-server steps that read and write an upstream connection.
pub(super) fn fits_proxy(action: &Action) -> Result<(), String> {
    match action {
        Action::Proxy(_)
        | Action::Send(_)
        | Action::SendFixture(_)
        | Action::Expect(_)
        | Action::ExpectStreamError(_)
        | Action::ExpectClosed { .. }
        | Action::ExpectNothing(_)
        | Action::Sleep(_)
        | Action::CloseStream
        | Action::Hangup => Ok(()),
        other => Err(format!(
            "`{}` is not a step of a proxy scenario (role = \"proxy\" has the downstream_* steps, expect_proxy_header, relay, and send, send_fixture, expect, expect_any, expect_stream_error, expect_closed, expect_nothing, close_stream, hangup and sleep on the gatekeeper's side)",
            other.name()
        )),
    }
}

/// Every step of a proxy scenario that uses a client comes after that client's
/// `downstream_connect`, and the gatekeeper-server steps after a first one. Returns the
/// offending step's line and why.
/// A client connected with `upstream = "optional"` may have no upstream connection: the
/// steps that act on it (the gatekeeper-server steps while it is the client named last,
/// `relay`, `expect_proxy_header`) are refused.
pub(crate) fn clients_connected_first(steps: &[super::Step]) -> Result<(), (usize, String)> {
    let mut connected: Vec<&str> = Vec::new();
    let mut optional: Vec<&str> = Vec::new();
    let mut last: Option<&str> = None;
    for step in steps {
        let needs_upstream = match &step.action {
            Action::Proxy(ProxyAction::Relay(r)) => Some(r.client.as_str()),
            Action::Proxy(ProxyAction::ExpectHeader { client }) => Some(client.as_str()),
            Action::Proxy(_) | Action::Sleep(_) => None,
            _ => last,
        };
        if let Some(c) = needs_upstream
            && optional.contains(&c)
        {
            return Err((
                step.line,
                format!(
                    "`{}` acts on client {c:?}'s upstream connection, which upstream = \"optional\" does not require: only the downstream steps can follow that client",
                    step.action.name()
                ),
            ));
        }
        if let Action::Proxy(p) = &step.action {
            last = Some(p.client());
        }
        match &step.action {
            Action::Proxy(ProxyAction::Connect(c)) => {
                connected.push(&c.client);
                optional.retain(|o| *o != c.client);
                if c.upstream_optional {
                    optional.push(&c.client);
                }
            }
            Action::Proxy(p) if !connected.contains(&p.client()) => {
                return Err((
                    step.line,
                    format!(
                        "{} uses client {:?}, which no earlier downstream_connect connects",
                        p.name(),
                        p.client()
                    ),
                ));
            }
            Action::Sleep(_) | Action::Proxy(_) => {}
            other if connected.is_empty() => {
                return Err((
                    step.line,
                    format!(
                        "`{}` reads or writes a client's upstream connection: put a downstream_connect before it",
                        other.name()
                    ),
                ));
            }
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::{Scenario, SuiteDirs};
    use crate::spec::Catalogue;

    fn parse(steps: &str) -> Result<Scenario, String> {
        let dirs = SuiteDirs::bundled();
        let path = dirs.scenarios.join("proxy/example.toml");
        let text = format!(
            "id = \"proxy/example\"\ntitle = \"t\"\nrequirements = [\"PROXY-2\", \"PROXY-15\"]\nrole = \"proxy\"\n{steps}"
        );
        Scenario::parse(&path, &text, Catalogue::embedded(), &dirs).map_err(|e| e.message)
    }

    #[test]
    fn proxy_steps_parse_with_their_defaults() {
        let s = parse(
            "[[step]]\ndownstream_connect = { hold_ms = 500 }\n[[step]]\nexpect_proxy_header = {}\n[[step]]\ndownstream_send = \"<a/>\"\n[[step]]\nexpect = \"<a/>\"\n[[step]]\nrelay = { from = \"gatekeeper\", stanza = \"<message><body>@PAD@</body></message>\", pad_to = 1000 }\n[[step]]\ndownstream_close = {}\n",
        )
        .expect("valid");
        let Action::Proxy(ProxyAction::Connect(c)) = &s.steps[0].action else {
            panic!("{:?}", s.steps[0].action);
        };
        assert_eq!(c.client, DEFAULT_CLIENT);
        assert_eq!(c.upto, Some(Upto::Session));
        assert!(c.opted_in);
        assert_eq!(c.hold, Some(Duration::from_millis(500)));
        assert_eq!(c.upstream_handshake, HandshakeMode::Normal);
        assert!(!c.upstream_optional);
        assert_eq!(
            s.steps[5].action,
            Action::Proxy(ProxyAction::Close {
                client: DEFAULT_CLIENT.into(),
                close_tag: true
            })
        );
    }

    #[test]
    fn an_optional_upstream_takes_downstream_steps_only() {
        let s = parse(
            "[[step]]\ndownstream_connect = { upstream = \"optional\", upto = \"handshake\" }\n[[step]]\ndownstream_send = \"<a/>\"\n[[step]]\ndownstream_expect_stream_error = { pass = [\"not-well-formed\"], warn = [\"*\"], should = \"STREAM-41\" }\n[[step]]\ndownstream_expect_closed = { close_tag = true }\n[[step]]\nsleep = 10\n",
        )
        .map_err(|e| e.to_string());
        // STREAM-41 is not among the example's requirements.
        assert!(
            s.as_ref()
                .is_err_and(|e| e.contains("not among the scenario's requirements")),
            "{s:?}"
        );
        let dirs = SuiteDirs::bundled();
        let s = Scenario::parse(
            &dirs.scenarios.join("proxy/example.toml"),
            "id = \"proxy/example\"\ntitle = \"t\"\nrequirements = [\"STREAM-28\", \"STREAM-41\"]\nrole = \"proxy\"\n[[step]]\ndownstream_connect = { upstream = \"optional\", upto = \"handshake\" }\n[[step]]\ndownstream_send = \"<a/>\"\n[[step]]\ndownstream_expect_stream_error = { pass = [\"restricted-xml\"], warn = [\"*\"], should = \"STREAM-41\" }\n[[step]]\ndownstream_expect_closed = { close_tag = true }\n[[step]]\ndownstream_connect = { client = \"other\" }\n[[step]]\nexpect_proxy_header = { client = \"other\" }\n[[step]]\nexpect_nothing = 100\n",
            Catalogue::embedded(),
            &dirs,
        )
        .expect("valid");
        let Action::Proxy(ProxyAction::Connect(c)) = &s.steps[0].action else {
            panic!("{:?}", s.steps[0].action);
        };
        assert!(c.upstream_optional);
        assert_eq!(c.upto, None);
        let Action::Proxy(ProxyAction::ExpectStreamError { client, expect }) = &s.steps[2].action
        else {
            panic!("{:?}", s.steps[2].action);
        };
        assert_eq!(client, DEFAULT_CLIENT);
        assert_eq!(expect.should.as_deref(), Some("STREAM-41"));
        assert_eq!(expect.warn, ["*"]);
    }

    #[test]
    fn mistakes_in_proxy_steps_are_named() {
        let cases: &[(&str, &str)] = &[
            (
                "[[step]]\nexpect = \"<a/>\"\n",
                "put a downstream_connect before it",
            ),
            (
                "[[step]]\ndownstream_connect = {}\n[[step]]\ndownstream_send = { text = \"x\", client = \"other\" }\n",
                "which no earlier downstream_connect connects",
            ),
            (
                "[[step]]\ndownstream_connect = { opted_in = false }\n",
                "stop at upto = \"auth\"",
            ),
            (
                "[[step]]\ndownstream_connect = { upstream_handshake = \"wrong-key\" }\n",
                "use upto = \"handshake\"",
            ),
            (
                "[[step]]\ndownstream_connect = { client = \"gk\" }\n",
                "a name the harness uses",
            ),
            (
                "[[step]]\ndownstream_connect = {}\n[[step]]\nrelay = { from = \"client\", stanza = \"<a/>\", pad_to = 300000 }\n",
                "above 262144",
            ),
            (
                "[[step]]\ndownstream_connect = {}\n[[step]]\nrelay = { from = \"client\", stanza = \"<a>@PAD@</a>\" }\n",
                "goes with pad_to",
            ),
            (
                "[[step]]\ndownstream_connect = {}\n[[step]]\nrelay = { from = \"proxy\", stanza = \"<a/>\" }\n",
                "not one of client, gatekeeper",
            ),
            (
                "[[step]]\ndownstream_connect = {}\n[[step]]\nrelay = { from = \"client\", stanza = \"<a><b></a>\" }\n",
                "not one well-formed element",
            ),
            (
                "[[step]]\ndownstream_connect = {}\n[[step]]\ndriver = { cmd = \"x\" }\n",
                "not a step of a proxy scenario",
            ),
            (
                "[[step]]\ndownstream_connect = {}\n[[step]]\ndownstream_expect_closed = { within = \"PROXY-2\" }\n",
                "no time bound",
            ),
            (
                "[[step]]\ndownstream_connect = { upstream = \"maybe\" }\n",
                "not one of required, optional",
            ),
            (
                "[[step]]\ndownstream_connect = { upstream = \"optional\", upto = \"handshake\", upstream_handshake = \"wrong-key\" }\n",
                "upstream_handshake needs the upstream",
            ),
            (
                "[[step]]\ndownstream_connect = { upstream = \"optional\", opted_in = false, upto = \"auth\" }\n",
                "judged with the upstream required",
            ),
            (
                "[[step]]\ndownstream_connect = { upstream = \"optional\" }\n[[step]]\nexpect = \"<a/>\"\n",
                "which upstream = \"optional\" does not require",
            ),
            (
                "[[step]]\ndownstream_connect = { upstream = \"optional\" }\n[[step]]\nrelay = { from = \"client\", stanza = \"<a/>\" }\n",
                "`relay` acts on client \"client\"'s upstream connection",
            ),
            (
                "[[step]]\ndownstream_connect = { upstream = \"optional\" }\n[[step]]\nexpect_proxy_header = {}\n",
                "expect_proxy_header",
            ),
            (
                "[[step]]\ndownstream_connect = {}\n[[step]]\ndownstream_expect_stream_error = []\n",
                "downstream_expect_stream_error needs at least one condition",
            ),
            (
                "[[step]]\ndownstream_connect = {}\n[[step]]\ndownstream_expect_stream_error = [\"no-such-condition\"]\n",
                "not an RFC 6120 stream error condition",
            ),
            (
                "[[step]]\ndownstream_connect = {}\n[[step]]\ndownstream_expect_stream_error = { pass = [\"restricted-xml\"], warn = [\"*\"], should = \"PROXY-2\" }\n",
                "not a SHOULD-level requirement",
            ),
        ];
        for (steps, want) in cases {
            let e = parse(steps).expect_err(steps);
            assert!(e.contains(want), "{steps}: {e}");
        }
        let client_role = Scenario::parse(
            &SuiteDirs::bundled().scenarios.join("stream/x.toml"),
            "id = \"stream/x\"\ntitle = \"t\"\nrequirements = [\"STREAM-13\"]\nrole = \"client\"\n[[step]]\ndownstream_connect = {}\n",
            Catalogue::embedded(),
            &SuiteDirs::bundled(),
        )
        .expect_err("client role");
        assert!(
            client_role.message.contains("needs role = \"proxy\""),
            "{client_role}"
        );
    }
}
