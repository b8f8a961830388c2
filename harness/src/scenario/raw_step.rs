//! Steps as written in TOML: one action key (typed by serde into [`RawAction`]) plus the
//! modifiers every step may carry. `step.rs` validates these into [`super::Step`]s.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde::de::{self, MapAccess, Visitor};

/// The action of a step, by its key; each carries its TOML value, typed.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub(super) enum RawAction {
    Session(RawConnect),
    Connect(RawConnect),
    KeepConnected(RawKeepConnected),
    Negotiate(RawNegotiate),
    Send(String),
    SendFixture(String),
    SendFrame(RawSendFrame),
    Expect(String),
    ExpectAny(Vec<String>),
    ExpectStreamError(RawStreamError),
    ExpectClosed(RawClosed),
    ExpectAbort(bool),
    ExpectNothing(u64),
    Driver(serde_json::Value),
    ExpectEvent(serde_json::Value),
    ExpectEventAny(Vec<serde_json::Value>),
    Sleep(u64),
    Idle(u64),
    CloseStream(bool),
    Hangup(bool),
    Http(RawHttp),
    ExpectHttp(RawExpectHttp),
    E2eeSend(super::e2ee_step::RawE2eeSend),
    E2eeExpect(super::e2ee_step::RawE2eeExpect),
    E2eeKeys(super::e2ee_step::RawE2eeKeys),
    Enroll(super::enroll_step::RawEnroll),
    Push(super::push_step::RawPush),
    E2eeDevices(super::e2ee_step::RawE2eeDevices),
    DownstreamConnect(super::proxy_step::RawDownstreamConnect),
    DownstreamSend(super::proxy_step::RawDownstreamText),
    DownstreamExpect(super::proxy_step::RawDownstreamExpect),
    DownstreamExpectStreamError(super::proxy_step::RawDownstreamStreamError),
    DownstreamExpectClosed(super::proxy_step::RawDownstreamClosed),
    DownstreamExpectNothing(super::proxy_step::RawDownstreamNothing),
    DownstreamClose(super::proxy_step::RawDownstreamClose),
    ExpectProxyHeader(super::proxy_step::RawClientOnly),
    Relay(super::proxy_step::RawRelay),
    MediaSend(super::media_step::RawMediaSend),
    ExpectMedia(super::media_step::RawExpectMedia),
    MediaShare(super::media_step::RawMediaShare),
    MediaStore(super::media_step::RawMediaStore),
    MediaFetch(super::media_step::RawMediaFetch),
    MediaClock(super::media_step::RawMediaClock),
}

/// Every action key, in the order the scenario format documents them.
pub(super) const ACTIONS: &[&str] = &[
    "session",
    "connect",
    "keep_connected",
    "negotiate",
    "send",
    "send_fixture",
    "send_frame",
    "expect",
    "expect_any",
    "expect_stream_error",
    "expect_closed",
    "expect_abort",
    "expect_nothing",
    "driver",
    "expect_event",
    "expect_event_any",
    "sleep",
    "idle",
    "close_stream",
    "hangup",
    "http",
    "expect_http",
    "e2ee_send",
    "e2ee_expect",
    "e2ee_keys",
    "enroll",
    "push",
    "e2ee_devices",
    "downstream_connect",
    "downstream_send",
    "downstream_expect",
    "downstream_expect_stream_error",
    "downstream_expect_closed",
    "downstream_expect_nothing",
    "downstream_close",
    "expect_proxy_header",
    "relay",
    "media_send",
    "expect_media",
    "media_share",
    "media_store",
    "media_fetch",
    "media_clock",
];

/// The keys a step may carry besides its action.
const MODIFIERS: &[&str] = &["timeout_ms", "ignore", "requirement", "actor", "device"];

/// A step as written: exactly one action key plus modifiers. Deserialized by hand so that a
/// second action, or a key that is neither, is an error naming it.
#[derive(Debug)]
pub(crate) struct RawStep {
    /// The action's key and its typed value.
    pub(super) action: (String, RawAction),
    pub(super) timeout_ms: Option<u64>,
    pub(super) ignore: Vec<String>,
    /// Requirement the step's failure is attributed to, when not the scenario's first.
    pub(super) requirement: Option<String>,
    /// The scenario actor that acts (`send`) or observes (`expect`, `expect_any`); default:
    /// the gatekeeper server itself.
    pub(super) actor: Option<String>,
    /// The IUT instance (`devices`) the step drives or reads; default: the first.
    pub(super) device: Option<String>,
}

impl<'de> Deserialize<'de> for RawStep {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(StepVisitor)
    }
}

/// toml gives an error raised here the span of the whole step table; the loader moves it to
/// the offending key when the message starts with this marker and the key's byte offset
/// ([`key_offset`]).
const AT_KEY: &str = "\u{1}at:";

fn at_key<E: de::Error>(offset: usize, message: String) -> E {
    E::custom(format!("{AT_KEY}{offset}\u{1}{message}"))
}

/// Splits a message made by `at_key` into the key's byte offset and the message.
pub(super) fn key_offset(message: &str) -> Option<(usize, &str)> {
    let rest = message.strip_prefix(AT_KEY)?;
    let (offset, message) = rest.split_once('\u{1}')?;
    Some((offset.parse().ok()?, message))
}

struct StepVisitor;

impl<'de> Visitor<'de> for StepVisitor {
    type Value = RawStep;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a step table with one action key")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawStep, A::Error> {
        let mut action: Option<(String, RawAction)> = None;
        let mut step = RawStep {
            action: (String::new(), RawAction::Sleep(0)),
            timeout_ms: None,
            ignore: Vec::new(),
            requirement: None,
            actor: None,
            device: None,
        };
        while let Some(spanned) = map.next_key::<toml::Spanned<String>>()? {
            let at = spanned.span().start;
            let key = spanned.into_inner();
            match key.as_str() {
                "timeout_ms" => step.timeout_ms = Some(map.next_value()?),
                "ignore" => step.ignore = map.next_value()?,
                "requirement" => step.requirement = Some(map.next_value()?),
                "actor" => step.actor = Some(map.next_value()?),
                "device" => step.device = Some(map.next_value()?),
                name if ACTIONS.contains(&name) => {
                    if let Some((first, _)) = &action {
                        return Err(at_key(
                            at,
                            format!("a step has one action, this one has {first}, {name}"),
                        ));
                    }
                    // The value is typed by the action's variant: one entry, one enum.
                    let value: toml::Value = map.next_value()?;
                    let tagged =
                        toml::Value::Table([(name.to_string(), value)].into_iter().collect());
                    let typed = RawAction::deserialize(tagged)
                        .map_err(|e| at_key(at, format!("{name}: {}", e.message())))?;
                    action = Some((name.to_string(), typed));
                }
                other => {
                    let known: Vec<&str> = ACTIONS.iter().chain(MODIFIERS).copied().collect();
                    return Err(at_key(
                        at,
                        format!(
                            "unknown field `{other}`, expected one of {}",
                            known.join(", ")
                        ),
                    ));
                }
            }
        }
        step.action = action.ok_or_else(|| {
            de::Error::custom(format!("a step needs one action ({})", ACTIONS.join(", ")))
        })?;
        Ok(step)
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConnect {
    pub(super) transport: Option<String>,
    #[serde(default)]
    pub(super) handshake: Option<String>,
    pub(super) account: Option<String>,
    pub(super) credential: Option<String>,
    /// Log in as the device enrolled last (`PLAIN-IDPROOF` with a fresh proof, SPEC.md §7.4).
    #[serde(default)]
    pub(super) enrolled: bool,
    /// With `enrolled`: the login proof the harness hands over, spoiled on purpose.
    pub(super) proof: Option<String>,
    /// With `enrolled` on `connect`: no enrollment succeeded, so the client must refuse the
    /// command (`error` with `not-enrolled`) and open no connection (ENROLL-1).
    #[serde(default)]
    pub(super) refused: bool,
    /// For `session`: the SASL mechanisms the server offers.
    pub(super) mechanisms: Option<Vec<String>>,
}

/// `keep_connected = { refuse = 4 }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawKeepConnected {
    /// How many connection attempts in a row the gatekeeper drops before it lets one in.
    pub(super) refuse: u32,
    pub(super) transport: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawNegotiate {
    pub(super) upto: Option<String>,
    pub(super) mechanisms: Option<Vec<String>>,
    pub(super) sasl: Option<String>,
    /// How long the server holds back each `<stream:features>` (STREAM-17).
    pub(super) features_delay_ms: Option<u64>,
    /// An idle limit, in seconds, announced with `<bind/>` (STREAM-47).
    pub(super) idle_s: Option<u64>,
}

/// `send_frame = { text = "...", mode = "corrupt" }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSendFrame {
    pub(super) text: Option<String>,
    pub(super) mode: String,
}

/// `["restricted-xml"]`, or `{ pass = [...], warn = [...], should = "REQ" }`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(super) enum RawStreamError {
    Conditions(Vec<String>),
    Graded(RawGradedStreamError),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawGradedStreamError {
    pub(super) pass: Vec<String>,
    #[serde(default)]
    pub(super) warn: Vec<String>,
    pub(super) should: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawClosed {
    /// The IUT must send `</stream:stream>` before closing the connection.
    #[serde(default)]
    pub(super) close_tag: bool,
    /// A requirement whose Appendix B time bound the close must meet; a later close is
    /// charged to it, no close at all to the step's requirement.
    pub(super) within: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHttp {
    pub(super) method: Option<String>,
    pub(super) path: Option<String>,
    #[serde(default)]
    pub(super) headers: BTreeMap<String, String>,
    pub(super) body: Option<String>,
    /// A JSON body (sets content-type application/json unless `headers` does).
    pub(super) json: Option<serde_json::Value>,
    /// Whether the request carries the gatekeeper's signature headers (SPEC.md §12.1).
    pub(super) sign: Option<bool>,
    /// A deliberately wrong signature.
    pub(super) signature: Option<RawSignature>,
    /// Send the previous request again, byte for byte (its nonce included).
    #[serde(default)]
    pub(super) replay: bool,
}

/// How a signed request is spoiled, for the refusal scenarios.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSignature {
    /// Seconds added to the current time in `X-Gatekeeper-Timestamp`.
    #[serde(default)]
    pub(super) skew_s: i64,
    /// Sign with a key the provider was never given.
    #[serde(default)]
    pub(super) wrong_key: bool,
    /// Leave out this signature header.
    pub(super) omit: Option<String>,
    /// Sign this body instead of the one sent.
    pub(super) signed_body: Option<String>,
    /// Sign this path instead of the one requested.
    pub(super) signed_path: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(super) enum OneOrMany {
    One(u16),
    Many(Vec<u16>),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawExpectHttp {
    pub(super) status: Option<OneOrMany>,
    #[serde(default)]
    pub(super) headers: std::collections::BTreeMap<String, String>,
    pub(super) json: Option<serde_json::Value>,
    pub(super) body: Option<String>,
    #[serde(default)]
    pub(super) body_excludes: Vec<String>,
    pub(super) within_ms: Option<u64>,
    #[serde(default)]
    pub(super) proof: bool,
}
