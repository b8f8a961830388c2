//! Login as typestates: header, SASL PLAIN, restart, bind, initial presence (SPEC.md §7.4).
//!
//! Each state owns the stream and is consumed by its `next` step, so a stale state cannot be
//! used again; the only way to a [`Session`] is through a successful bind.

use base64::Engine as _;
use gatecheck::idproof::sasl;
use gatecheck::wire::{Element, StreamErrorCondition, StreamEvent, StreamHeader, ns};
use tokio::time::Instant;

use super::stream::XmlStream;
use super::{Failure, STEP_TIMEOUT, Session};
use crate::driver::{ConnectParams, Event, EventSink};
use crate::mutant::Mutant;

/// The resource the client proposes; the server may assign another (STREAM-23).
pub const PROPOSED_RESOURCE: &str = "gatecheck-ref";
const BIND_ID: &str = "bind_1";
/// The SASL mechanism of a provisioned test account (SPEC.md §6.1).
const PLAIN: &str = "PLAIN";

/// A stream-level event during login, once close and `<stream:error>` were dealt with.
enum LoginEvent {
    Header(StreamHeader),
    Element(Element),
}

/// What every state carries.
struct Login<'a> {
    stream: XmlStream,
    params: &'a ConnectParams,
    notes: &'a mut Vec<Event>,
    /// The idle limit the gatekeeper announced with `<bind/>` (STREAM-47), if valid.
    idle_limit: Option<std::time::Duration>,
    /// An earlier session of this process was bound: this login is a reconnect.
    reconnect: bool,
}

/// Stream header sent; waiting for the server's (before SASL).
struct ExpectHeader<'a>(Login<'a>);
/// Waiting for `<stream:features>` with SASL mechanisms.
struct ExpectSaslFeatures<'a>(Login<'a>);
/// `<auth>` sent; waiting for `<success/>` or `<failure/>`.
struct ExpectSaslOutcome<'a>(Login<'a>);
/// Stream restarted after SASL success; waiting for the server's new header.
struct ExpectRestartHeader<'a>(Login<'a>);
/// Waiting for `<stream:features>` with `<bind/>`.
struct ExpectBindFeatures<'a>(Login<'a>);
/// Bind request sent; waiting for its result.
struct ExpectBindResult<'a>(Login<'a>);

/// Runs the login to completion.
pub async fn run(
    stream: XmlStream,
    params: &ConnectParams,
    reconnect: bool,
    notes: &mut Vec<Event>,
) -> Result<Session, Failure> {
    if stream.mutant == Mutant::ProbeConnection {
        // DRIVER-4 deviation: the correct client opens no connection but the one it logs in
        // on. This one checks that the server is reachable, and is dropped at once.
        let probe = tokio::net::TcpStream::connect((params.host.as_str(), params.port));
        let _ = tokio::time::timeout(STEP_TIMEOUT, probe).await;
    }
    let mut login = Login {
        stream,
        params,
        notes,
        idle_limit: None,
        reconnect,
    };
    login.send_header().await?;
    let state = ExpectHeader(login);
    let state = state.next().await?;
    let state = state.next().await?;
    let state = state.next().await?;
    let state = state.next().await?;
    let state = state.next().await?;
    state.next().await
}

impl Login<'_> {
    /// STREAM-13: the initial (and restart) header.
    async fn send_header(&mut self) -> Result<(), Failure> {
        let content_ns = if self.stream.mutant == Mutant::WrongStreamNs {
            // STREAM-13 deviation: the correct client opens a jabber:client stream.
            ns::JABBER_SERVER
        } else {
            ns::JABBER_CLIENT
        };
        let header = format!(
            "<?xml version='1.0'?><stream:stream xmlns='{content_ns}' xmlns:stream='{}' \
             to='{}' version='1.0' xml:lang='en'>",
            ns::STREAMS,
            escape_attr(&self.params.domain)
        );
        if self.stream.mutant == Mutant::ZeroLengthFrameSent {
            // STREAM-5 deviation: the correct client never writes a zero-length frame.
            self.stream.send_zero_length_frame().await;
        }
        self.stream.send_raw(&header).await?;
        if self.stream.mutant == Mutant::SendComment {
            // STREAM-29 deviation: the correct client never writes comments.
            self.stream.send_raw("<!-- gatecheck-reference -->").await?;
        }
        Ok(())
    }

    /// The next top-level element within one step's time, after the stream-level cases
    /// (close, stream error, stray header) were handled.
    async fn next_element(&mut self, deadline: Instant) -> Result<Element, Failure> {
        match self.next_event(deadline).await? {
            LoginEvent::Element(element) => Ok(element),
            LoginEvent::Header(_) => {
                let detail = "second stream header without a restart";
                Err(self
                    .stream
                    .refuse(StreamErrorCondition::BadFormat, detail)
                    .await)
            }
        }
    }

    /// The next event, with close and `<stream:error>` turned into failures.
    async fn next_event(&mut self, deadline: Instant) -> Result<LoginEvent, Failure> {
        loop {
            let event = match self.stream.next_event(deadline).await {
                Err(Failure::Timeout) => {
                    self.stream.close_locally().await;
                    return Err(Failure::Timeout);
                }
                other => other?,
            };
            match event {
                StreamEvent::Close => {
                    if self.stream.mutant == Mutant::NoCloseReply {
                        // STREAM-27 deviation: the correct client answers and closes.
                        self.stream.linger();
                    } else {
                        self.stream.close_in_reply().await;
                    }
                    return Err(Failure::RemoteClose);
                }
                StreamEvent::Stanza(el) if el.is("error", ns::STREAMS) => {
                    let (condition, text) = stream_error_condition(&el);
                    if self.stream.mutant == Mutant::IgnoreStreamError {
                        // STREAM-26 deviation: the correct client closes the stream.
                        self.notes.push(Event::StreamError {
                            direction: "received",
                            condition,
                        });
                        continue;
                    }
                    self.stream.close_in_reply().await;
                    return Err(Failure::StreamErrorReceived { condition, text });
                }
                StreamEvent::Stanza(el) => return Ok(LoginEvent::Element(el)),
                StreamEvent::Header(header) => return Ok(LoginEvent::Header(header)),
            }
        }
    }

    /// Refuses an element that has no place at this point of the login.
    async fn unexpected(&mut self, element: &Element, waiting_for: &str) -> Failure {
        let detail = format!(
            "<{}> in {} while waiting for {waiting_for}",
            element.name, element.ns
        );
        self.stream
            .refuse(StreamErrorCondition::BadFormat, &detail)
            .await
    }

    /// STREAM-15: the response header's content namespace and version.
    async fn check_header(&mut self, header: &StreamHeader) -> Result<(), Failure> {
        if self.stream.mutant == Mutant::SkipHeaderCheck {
            // STREAM-15 deviation: the correct client checks namespace and version.
            return Ok(());
        }
        if header.default_ns != ns::JABBER_CLIENT {
            let detail = format!("content namespace {:?}", header.default_ns);
            return Err(self
                .stream
                .refuse(StreamErrorCondition::InvalidNamespace, &detail)
                .await);
        }
        let major = header.version.as_deref().and_then(|v| v.split('.').next());
        if major != Some("1") {
            let detail = format!("stream version {:?}", header.version);
            return Err(self
                .stream
                .refuse(StreamErrorCondition::UnsupportedVersion, &detail)
                .await);
        }
        Ok(())
    }

    async fn expect_header(&mut self) -> Result<(), Failure> {
        let deadline = Instant::now() + STEP_TIMEOUT;
        match self.next_event(deadline).await? {
            LoginEvent::Header(header) => self.check_header(&header).await,
            // The parser delivers nothing before the header in stream framing.
            LoginEvent::Element(el) => Err(self.unexpected(&el, "the stream header").await),
        }
    }

    /// STREAM-17: nothing is sent before the features of the current stream.
    async fn expect_features(&mut self) -> Result<Element, Failure> {
        let deadline = Instant::now() + STEP_TIMEOUT;
        let element = self.next_element(deadline).await?;
        if !element.is("features", ns::STREAMS) {
            return Err(self.unexpected(&element, "<stream:features>").await);
        }
        Ok(element)
    }

    /// The SASL mechanism of this login (SPEC.md §7.4): `PLAIN-IDPROOF` for an enrolled
    /// device, whatever else the server offers (IDPROOF-14); PLAIN for a provisioned test
    /// account, which has no proof.
    fn mechanism(&self) -> &'static str {
        match self.params.proof {
            None => PLAIN,
            Some(_) if self.stream.mutant == Mutant::LoginPlainWithoutProof => {
                // IDPROOF-14 deviation: the correct client logs an enrolled device in with
                // PLAIN-IDPROOF and a fresh proof.
                PLAIN
            }
            Some(_) => sasl::MECHANISM,
        }
    }

    /// STREAM-18: empty authorization identity, the account and credential; with
    /// `PLAIN-IDPROOF` the proof's compact JSON as the fourth field (Appendix F.4).
    fn auth(&self) -> Element {
        let (account, credential) = (&self.params.account, &self.params.credential);
        let mechanism = self.mechanism();
        let mut initial = Vec::new();
        if self.stream.mutant == Mutant::AuthzidIsAccount {
            // STREAM-18 deviation: the correct client leaves the authorization identity empty.
            initial.extend_from_slice(account.as_bytes());
        }
        match self.params.proof.as_deref() {
            Some(proof) if mechanism == sasl::MECHANISM => {
                let bare;
                let authcid = if self.stream.mutant == Mutant::BareJidAuthcid {
                    // ENROLL-9 deviation: the correct client authenticates as the account
                    // localpart of its enrollment; this one as its bare JID.
                    bare = format!("{account}@{}", self.params.domain);
                    &bare
                } else {
                    account
                };
                initial.extend(sasl::initial_response(authcid, credential, proof));
            }
            _ => {
                initial.push(0);
                initial.extend_from_slice(account.as_bytes());
                initial.push(0);
                initial.extend_from_slice(credential.as_bytes());
            }
        }
        Element::new("auth", ns::SASL)
            .with_attr("mechanism", mechanism)
            .with_text(base64::engine::general_purpose::STANDARD.encode(initial))
    }

    fn bind_request() -> Element {
        Element::new("iq", ns::JABBER_CLIENT)
            .with_attr("type", "set")
            .with_attr("id", BIND_ID)
            .with_child(
                Element::new("bind", ns::BIND)
                    .with_child(Element::new("resource", ns::BIND).with_text(PROPOSED_RESOURCE)),
            )
    }
}

impl<'a> ExpectHeader<'a> {
    async fn next(mut self) -> Result<ExpectSaslFeatures<'a>, Failure> {
        self.0.expect_header().await?;
        Ok(ExpectSaslFeatures(self.0))
    }
}

impl<'a> ExpectSaslFeatures<'a> {
    /// STREAM-18, STREAM-19: our one mechanism (PLAIN, or PLAIN-IDPROOF for an enrolled
    /// device) or nothing. An enrolled device offered PLAIN alone sends nothing: PLAIN would
    /// leave the proof out (IDPROOF-14).
    async fn next(mut self) -> Result<ExpectSaslOutcome<'a>, Failure> {
        let login = &mut self.0;
        let early = login.stream.mutant == Mutant::AuthBeforeFeatures;
        if early {
            // STREAM-17 deviation: the correct client waits for the features.
            login.stream.send(&login.auth()).await?;
        }
        let features = login.expect_features().await?;
        let wanted = login.mechanism();
        let offered = features.child("mechanisms", ns::SASL).is_some_and(|m| {
            m.children_named("mechanism", ns::SASL)
                .any(|mech| mech.text().trim() == wanted)
        });
        if !offered && login.stream.mutant != Mutant::PlainWithoutOffer {
            // STREAM-19: no credentials; close the stream.
            login.stream.close_locally().await;
            return Err(Failure::NoMechanism);
        }
        if !early {
            login.stream.send(&login.auth()).await?;
        }
        Ok(ExpectSaslOutcome(self.0))
    }
}

impl<'a> ExpectSaslOutcome<'a> {
    /// STREAM-20, STREAM-21.
    async fn next(mut self) -> Result<ExpectRestartHeader<'a>, Failure> {
        let login = &mut self.0;
        let deadline = Instant::now() + STEP_TIMEOUT;
        let element = login.next_element(deadline).await?;
        if element.is("success", ns::SASL) {
            if login.stream.mutant == Mutant::ConnectedBeforeBind {
                // DRIVER-3 deviation: the correct client reports `connected` only once the
                // bind result arrived. This one takes authentication for the session, and
                // the resource it is about to propose for the one it will be given.
                let jid = format!(
                    "{}@{}/{PROPOSED_RESOURCE}",
                    login.params.account, login.params.domain
                );
                let seq = Some(crate::driver::last_command_seq());
                EventSink::new().emit(Event::Connected { seq, jid }).await;
            }
            if login.stream.mutant == Mutant::NoStreamRestart {
                // STREAM-20 deviation: the correct client restarts the stream here.
                return Ok(ExpectRestartHeader(self.0));
            }
            // STREAM-20: discard the parser state, send a new header, nothing in between.
            login.stream.restart_parser();
            login.send_header().await?;
            return Ok(ExpectRestartHeader(self.0));
        }
        if element.is("failure", ns::SASL) {
            let condition = element
                .child_elements()
                .find(|c| c.ns == ns::SASL && c.name != "text")
                .map_or_else(|| "unspecified".to_owned(), |c| c.name.clone());
            if login.stream.mutant == Mutant::ContinueAfterSaslFailure {
                // STREAM-21 deviation: the correct client sends nothing more but the close.
                let _ = login.stream.send(&Login::bind_request()).await;
            }
            login.stream.close_locally().await;
            return Err(Failure::AuthFailed { condition });
        }
        Err(login
            .unexpected(&element, "SASL <success/> or <failure/>")
            .await)
    }
}

impl<'a> ExpectRestartHeader<'a> {
    async fn next(mut self) -> Result<ExpectBindFeatures<'a>, Failure> {
        self.0.expect_header().await?;
        Ok(ExpectBindFeatures(self.0))
    }
}

impl<'a> ExpectBindFeatures<'a> {
    /// STREAM-22: bind before any other stanza.
    async fn next(mut self) -> Result<ExpectBindResult<'a>, Failure> {
        let login = &mut self.0;
        let features = login.expect_features().await?;
        if features.child("bind", ns::BIND).is_none() {
            login.stream.close_locally().await;
            return Err(Failure::BindFailed(
                "the restarted stream offers no <bind/>".into(),
            ));
        }
        login.idle_limit = announced_idle_limit(&features);
        if login.stream.mutant == Mutant::PresenceBeforeRebind && login.reconnect {
            // STREAM-36 deviation: the correct client starts a reconnected stream afresh;
            // this one carries its old session's availability over, before binding.
            login
                .stream
                .send(&Element::new("presence", ns::JABBER_CLIENT))
                .await?;
        }
        if login.stream.mutant == Mutant::PresenceBeforeBind {
            // STREAM-22 deviation: the correct client sends presence only after binding.
            login
                .stream
                .send(&Element::new("presence", ns::JABBER_CLIENT))
                .await?;
        }
        login.stream.send(&Login::bind_request()).await?;
        Ok(ExpectBindResult(self.0))
    }
}

impl ExpectBindResult<'_> {
    async fn next(mut self) -> Result<Session, Failure> {
        let login = &mut self.0;
        let deadline = Instant::now() + STEP_TIMEOUT;
        let jid = loop {
            let element = login.next_element(deadline).await?;
            if !element.is("iq", ns::JABBER_CLIENT) || element.attr("id") != Some(BIND_ID) {
                // STREAM-22: nothing may be answered before the bind result; ignore it.
                eprintln!(
                    "gatecheck-reference: ignoring <{}> before the bind result",
                    element.name
                );
                continue;
            }
            let jid = element
                .child("bind", ns::BIND)
                .and_then(|b| b.child("jid", ns::BIND))
                .map(|j| j.text().trim().to_owned());
            match (element.attr("type"), jid) {
                (Some("result"), Some(jid)) if is_full_jid(&jid) => {
                    let log = format!("gatecheck-reference: bound as {jid}");
                    if login.stream.mutant == Mutant::LogLineOnStdout {
                        // DRIVER-1 deviation: the correct client logs on stderr; stdout
                        // carries driver events only.
                        println!("{log}");
                    } else {
                        eprintln!("{log}");
                    }
                    break jid;
                }
                (Some("result"), jid) => {
                    login.stream.close_locally().await;
                    return Err(Failure::BindFailed(format!("unusable <jid> {jid:?}")));
                }
                (kind, _) => {
                    let condition = element
                        .child("error", ns::JABBER_CLIENT)
                        .and_then(|e| e.child_elements().find(|c| c.ns == ns::STANZAS))
                        .map_or("unspecified", |c| c.name.as_str())
                        .to_owned();
                    login.stream.close_locally().await;
                    return Err(Failure::BindFailed(format!(
                        "iq type {kind:?}: {condition}"
                    )));
                }
            }
        };
        let Login {
            stream,
            params,
            idle_limit,
            ..
        } = self.0;
        let mut session = Session::new(stream, jid, params);
        if let Some(limit) = idle_limit {
            session.set_idle_limit(limit);
        }
        if session.mutant() == Mutant::DuplicateAttributeOutput {
            // STREAM-42 deviation: the correct client writes well-formed XML only.
            session
                .send_raw_for_mutant("<presence xml:lang='en' xml:lang='en'/>")
                .await?;
        } else if session.mutant() == Mutant::NoInitialPresence {
            // STANZA-18 deviation: the correct client announces itself once bound.
        } else if session.mutant() != Mutant::PresenceBeforeBind {
            // STANZA-18: initial presence, without `to` and `type`; STANZA-19: nothing in it
            // that identifies the user.
            let mut presence = Element::new("presence", ns::JABBER_CLIENT);
            if session.mutant() == Mutant::StatusInPresence {
                // STANZA-19 deviation: the account is the user's phone number.
                presence = presence.with_child(
                    Element::new("status", ns::JABBER_CLIENT)
                        .with_text(format!("reachable at {}", params.account)),
                );
            }
            if session.mutant() == Mutant::TruncatedFrameSent {
                // STREAM-4 deviation: the correct client puts each transport message whole
                // in a frame of exactly its length.
                session
                    .send_truncated_frame_for_mutant(&presence.to_xml_in(ns::JABBER_CLIENT))
                    .await;
            } else {
                session.send_stanza(presence).await?;
            }
        }
        Ok(session)
    }
}

/// STREAM-47: `<idle xmlns='urn:gatecheck:idle:0' seconds='S'/>` among the features, S from
/// 5 to 300; anything else is ignored.
fn announced_idle_limit(features: &Element) -> Option<std::time::Duration> {
    let seconds: u64 = features
        .child("idle", ns::IDLE)?
        .attr("seconds")?
        .parse()
        .ok()?;
    (5..=300)
        .contains(&seconds)
        .then(|| std::time::Duration::from_secs(seconds))
}

/// `local@domain/resource` with all three parts non-empty.
fn is_full_jid(jid: &str) -> bool {
    match jid.split_once('/') {
        Some((bare, resource)) => {
            !resource.is_empty()
                && bare
                    .split_once('@')
                    .is_some_and(|(l, d)| !l.is_empty() && !d.is_empty())
        }
        None => false,
    }
}

/// The defined condition of a `<stream:error>` and its optional text.
pub fn stream_error_condition(error: &Element) -> (String, Option<String>) {
    let condition = error
        .child_elements()
        .find(|c| c.ns == ns::STREAM_ERRORS && c.name != "text")
        .map_or_else(|| "undefined-condition".to_owned(), |c| c.name.clone());
    let text = error.child("text", ns::STREAM_ERRORS).map(Element::text);
    (condition, text)
}

pub fn escape_attr(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '\'' => out.push_str("&apos;"),
            '"' => out.push_str("&quot;"),
            _ => out.push(c),
        }
    }
    out
}
