//! The bound session: answering iq requests, receipts, and the stream's end (SPEC.md §8);
//! end-to-end encryption is [`super::omemo`]'s, whose actions are carried out here.

use std::hash::{BuildHasher, Hasher};
use std::time::Duration;

use tokio::time::Instant;

use gatecheck::wire::{Element, StreamErrorCondition, StreamEvent, ns};

use super::Failure;
use super::login::{PROPOSED_RESOURCE, stream_error_condition};
use super::omemo::{Action, Omemo};
use super::stream::{Inbound, XmlStream};
use crate::driver::{ConnectParams, Event, EventSink};
use crate::mutant::Mutant;

/// What disco#info advertises: exactly what this client implements (STANZA-8), end-to-end
/// encryption and receipts included (STANZA-28), and chat states, which it declares.
pub const FEATURES: &[&str] = &[
    ns::DISCO_INFO,
    ns::PING,
    ns::OMEMO,
    ns::RECEIPTS,
    ns::CHATSTATES,
];

/// The chat states of XEP-0085, as `send_chat_state` names them.
pub const CHAT_STATES: &[&str] = &["active", "composing", "paused", "inactive", "gone"];

/// Namespaces of message children this client understands (for `error-on-unknown-child`).
const KNOWN_MESSAGE_NS: &[&str] = &[
    ns::JABBER_CLIENT,
    ns::RECEIPTS,
    ns::CHATSTATES,
    ns::HINTS,
    ns::OMEMO,
    "http://jabber.org/protocol/pubsub#event",
    "urn:gatecheck:keys:0",
];

/// A bound stream: the only state in which stanzas flow.
pub struct Session {
    stream: XmlStream,
    jid: String,
    domain: String,
    account: String,
    id_prefix: String,
    next_id: u64,
    /// The stream's idle limit: 300 s, or what the gatekeeper announced (STREAM-47).
    idle_limit: Duration,
    /// The CA trusted for media downloads (`media_ca_pem`), and the downloads asked for
    /// since the driver loop last took them ([`Session::take_media`]).
    media_ca_pem: Option<String>,
    media_jobs: Vec<super::media::Fetch>,
}

/// The idle limit of a stream without an announcement (STREAM-43).
pub const DEFAULT_IDLE_LIMIT: Duration = Duration::from_secs(300);

impl Session {
    pub(super) fn new(stream: XmlStream, jid: String, params: &ConnectParams) -> Self {
        // 64 random bits per session (RandomState is seeded from the OS) plus a counter.
        let random = std::collections::hash_map::RandomState::new()
            .build_hasher()
            .finish();
        Session {
            stream,
            jid,
            domain: params.domain.clone(),
            account: params.account.clone(),
            id_prefix: format!("gcr-{random:016x}"),
            next_id: 0,
            idle_limit: DEFAULT_IDLE_LIMIT,
            media_ca_pem: params.media_ca_pem.clone(),
            media_jobs: Vec::new(),
        }
    }

    /// The media downloads received references asked for, with the CA to trust for them:
    /// the driver loop runs them beside the session (SPEC.md §14.2).
    pub fn take_media(&mut self) -> (Vec<super::media::Fetch>, Option<String>) {
        (
            std::mem::take(&mut self.media_jobs),
            self.media_ca_pem.clone(),
        )
    }

    pub fn set_idle_limit(&mut self, limit: Duration) {
        self.idle_limit = limit;
    }

    /// When the next keepalive is due: four fifths of the idle limit after our last write
    /// (STREAM-35: 240 s for the default 300 s).
    pub fn keepalive_at(&self) -> Instant {
        self.stream.last_write + self.idle_limit * 4 / 5
    }

    /// The timer fired: requests of [`Omemo`] past their deadline, then the keepalive.
    pub async fn on_timer(
        &mut self,
        omemo: &mut Omemo,
        events: &mut EventSink,
    ) -> Result<(), Failure> {
        let actions = omemo.on_timer(Instant::now());
        self.perform(actions, events).await?;
        self.on_idle_timer().await
    }

    /// A whitespace keepalive, unless something was written since (then it is not due yet).
    /// The early-idle-close mutant instead closes a stream the server has been silent on.
    async fn on_idle_timer(&mut self) -> Result<(), Failure> {
        if self.stream.last_read.elapsed() >= self.idle_close_after() {
            // STREAM-34: a stream silent for its idle limit is closed, with
            // connection-timeout (STREAM-48).
            if self.mutant() == Mutant::IdleCloseWithoutError {
                // STREAM-48 deviation: the correct client sends connection-timeout first.
                self.stream.close_locally().await;
                return Err(Failure::Timeout);
            }
            let detail = "nothing received for the stream's idle limit";
            return Err(self
                .stream
                .refuse(StreamErrorCondition::ConnectionTimeout, detail)
                .await);
        }
        if Instant::now() < self.keepalive_at() {
            return Ok(());
        }
        if self.mutant() == Mutant::NoKeepalive {
            // STREAM-35 deviation: the correct client keeps an idle stream alive.
            self.stream.last_write = Instant::now();
            return Ok(());
        }
        self.stream.send_raw(" ").await
    }

    /// How long the server may stay silent before we close the stream (STREAM-34).
    fn idle_close_after(&self) -> Duration {
        if self.mutant() == Mutant::EarlyIdleClose {
            // STREAM-43 deviation: the correct client waits the whole idle limit.
            self.idle_limit / 4
        } else {
            self.idle_limit
        }
    }

    /// When [`Session::on_timer`] must run next.
    pub fn timer_at(&self, omemo: &Omemo) -> Instant {
        let at = self
            .keepalive_at()
            .min(self.stream.last_read + self.idle_close_after());
        omemo.deadline().map_or(at, |deadline| at.min(deadline))
    }

    /// Carries out what [`Omemo`] asked for, in its order: stanzas and events interleaved as
    /// given (an `identity_changed` must precede the stanza it warns of, and `sent` follow
    /// its stanza).
    pub async fn perform(
        &mut self,
        actions: Vec<Action>,
        events: &mut EventSink,
    ) -> Result<(), Failure> {
        let mut actions = actions.into_iter();
        while let Some(action) = actions.next() {
            let written = match action {
                Action::Send(stanza) => self.send_stanza(stanza).await,
                Action::Emit(event) => {
                    events.emit(event).await;
                    Ok(())
                }
                Action::FetchMedia {
                    from,
                    id,
                    reference,
                } => {
                    self.media_jobs.push(super::media::Fetch {
                        from,
                        id,
                        reference,
                    });
                    Ok(())
                }
                Action::Deliver { stanza, seq, id } => {
                    let written = self.send_stanza(stanza).await;
                    let answer = match written {
                        Ok(()) => Event::Sent { seq, id },
                        Err(_) => Event::SendFailed {
                            seq,
                            reason: "not-connected",
                        },
                    };
                    events.emit(answer).await;
                    written
                }
            };
            if let Err(failure) = written {
                // The stream is gone: what is left can only be answers to commands.
                for action in actions {
                    if let Action::Deliver { seq, .. } = action {
                        let reason = "not-connected";
                        events.emit(Event::SendFailed { seq, reason }).await;
                    }
                }
                return Err(failure);
            }
        }
        Ok(())
    }

    /// The full JID the server bound.
    pub fn jid(&self) -> &str {
        &self.jid
    }

    pub fn mutant(&self) -> Mutant {
        self.stream.mutant
    }

    fn fresh_id(&mut self) -> String {
        self.next_id += 1;
        format!("{}-{}", self.id_prefix, self.next_id)
    }

    /// Sends a stanza. The correct client omits `from` (STANZA-20, STREAM-23).
    pub async fn send_stanza(&mut self, mut stanza: Element) -> Result<(), Failure> {
        match self.mutant() {
            // STANZA-20 deviation.
            Mutant::ForgedFrom => stanza.set_attr("from", format!("admin@{}", self.domain)),
            // STREAM-23 deviation: uses the proposed resource, not the bound JID.
            Mutant::StaleResourceFrom => stanza.set_attr(
                "from",
                format!("{}@{}/{PROPOSED_RESOURCE}", self.account, self.domain),
            ),
            _ => {}
        }
        self.stream.send(&stanza).await
    }

    /// `send_chat_state`: one standalone chat state notification to `to` (STANZA-16), the
    /// state element alone (STANZA-17). `state` is one of [`CHAT_STATES`].
    pub async fn send_chat_state(&mut self, to: &str, state: &str) -> Result<(), Failure> {
        let mut message = Element::new("message", ns::JABBER_CLIENT)
            .with_attr("type", "chat")
            .with_attr("to", to)
            .with_attr("id", self.fresh_id())
            .with_child(Element::new(state, ns::CHATSTATES));
        if self.mutant() == Mutant::ChatStateWithBody {
            // STANZA-17 deviation: the correct notification carries no body.
            message = message.with_child(Element::new("body", ns::JABBER_CLIENT));
        }
        self.send_stanza(message).await
    }

    /// Writes bytes as they are: only a mutant writes anything but serialized stanzas.
    pub async fn send_raw_for_mutant(&mut self, xml: &str) -> Result<(), Failure> {
        self.stream.send_raw(xml).await
    }

    /// Writes a stanza in a truncated Noise frame (the truncated-frame-sent mutant).
    pub async fn send_truncated_frame_for_mutant(&mut self, xml: &str) {
        self.stream.send_truncated_frame(xml).await;
    }

    /// Waits for the reader task (cancel-safe: for the driver's `select!`).
    pub async fn recv_inbound(&mut self) -> Inbound {
        self.stream.recv_inbound().await
    }

    /// Processes what the reader delivered. `Err` means the session is over (the stream was
    /// already closed as the profile demands); events meanwhile go to `events`.
    pub async fn on_inbound(
        &mut self,
        inbound: Inbound,
        omemo: &mut Omemo,
        events: &mut EventSink,
    ) -> Result<(), Failure> {
        self.stream.feed(inbound)?;
        while let Some(event) = self.stream.poll_parsed().await? {
            match event {
                StreamEvent::Close => {
                    if self.mutant() == Mutant::NoCloseReply {
                        // STREAM-27 deviation: the correct client answers and closes.
                        self.stream.linger();
                    } else {
                        self.stream.close_in_reply().await;
                    }
                    return Err(Failure::RemoteClose);
                }
                StreamEvent::Header(_) => {
                    let detail = "stream header inside a bound stream";
                    return Err(self
                        .stream
                        .refuse(StreamErrorCondition::BadFormat, detail)
                        .await);
                }
                StreamEvent::Stanza(el) => self.on_element(el, omemo, events).await?,
            }
        }
        Ok(())
    }

    async fn on_element(
        &mut self,
        el: Element,
        omemo: &mut Omemo,
        events: &mut EventSink,
    ) -> Result<(), Failure> {
        if el.is("error", ns::STREAMS) {
            let (condition, text) = stream_error_condition(&el);
            if self.mutant() == Mutant::IgnoreStreamError {
                // STREAM-26 deviation: the correct client closes the stream.
                let direction = "received";
                events
                    .emit(Event::StreamError {
                        direction,
                        condition,
                    })
                    .await;
                return Ok(());
            }
            if self.mutant() == Mutant::SlowCloseAfterStreamError {
                // STREAM-44 deviation: the correct client closes at once.
                tokio::time::sleep(std::time::Duration::from_secs(6)).await;
            }
            self.stream.close_in_reply().await;
            return Err(Failure::StreamErrorReceived { condition, text });
        }
        if el.ns == ns::JABBER_CLIENT {
            match el.name.as_str() {
                "iq" => return self.on_iq(&el, omemo, events).await,
                "message" => return self.on_message(&el, omemo, events).await,
                // Presence (of any type, error included) needs no answer from this client.
                "presence" => {
                    if el.attr("type") == Some("error") && self.mutant() == Mutant::ErrorOnError {
                        // STANZA-9 deviation: the correct client never answers an error.
                        let mut reply = message_error(&el, "service-unavailable");
                        reply.name = "presence".into();
                        self.send_stanza(reply).await?;
                    }
                    return Ok(());
                }
                _ => {}
            }
        }
        if self.mutant() == Mutant::AcceptUnknownStanza {
            // STANZA-1 deviation: the correct client refuses the stream.
            return Ok(());
        }
        let detail = format!("top-level <{}> in {}", el.name, el.ns);
        Err(self
            .stream
            .refuse(StreamErrorCondition::UnsupportedStanzaType, &detail)
            .await)
    }

    /// STANZA-2..8: one answer per get/set, none for result/error.
    async fn on_iq(
        &mut self,
        iq: &Element,
        omemo: &mut Omemo,
        events: &mut EventSink,
    ) -> Result<(), Failure> {
        let kind = iq.attr("type");
        match kind {
            Some("get" | "set") => {}
            Some("result" | "error") => {
                // Answers to our own key requests (SPEC.md §9.1).
                if let Some(actions) = omemo.on_iq_answer(iq, Instant::now()) {
                    return self.perform(actions, events).await;
                }
                if self.mutant() == Mutant::AnswerResult {
                    // STANZA-5 deviation: the correct client never answers a response.
                    let reply = iq_error(iq, "cancel", "service-unavailable");
                    self.send_stanza(reply).await?;
                }
                return Ok(());
            }
            _ => {
                let detail = format!("iq with type {kind:?}");
                return Err(self
                    .stream
                    .refuse(StreamErrorCondition::BadFormat, &detail)
                    .await);
            }
        }
        if iq.attr("id").is_none_or(str::is_empty) && self.mutant() != Mutant::DropIqId {
            // A request without id cannot be answered (STANZA-2 forbids an iq without id), so
            // it is structurally unusable: bad-format (SPEC.md §7.3).
            let detail = "iq get/set without an id";
            return Err(self
                .stream
                .refuse(StreamErrorCondition::BadFormat, detail)
                .await);
        }

        let children: Vec<&Element> = iq.child_elements().collect();
        let [payload] = children.as_slice() else {
            let reply = if self.mutant() == Mutant::NoBadRequest {
                // STANZA-4 deviation: the correct condition is bad-request, type modify.
                iq_error(iq, "cancel", "service-unavailable")
            } else {
                iq_error(iq, "modify", "bad-request")
            };
            return self.send_stanza(reply).await;
        };

        let reply = match (kind, payload.name.as_str(), payload.ns.as_str()) {
            (Some("get"), "ping", ns::PING) => {
                if self.mutant() == Mutant::PingError {
                    // STANZA-7 deviation: the correct answer is an empty result.
                    iq_error(iq, "cancel", "service-unavailable")
                } else {
                    if self.mutant() == Mutant::DoubleAnswer {
                        // STANZA-3 deviation: the correct client answers once.
                        self.send_stanza(iq_reply(iq, "result")).await?;
                    }
                    iq_reply(iq, "result")
                }
            }
            (Some("get"), "query", ns::DISCO_INFO) if payload.attr("node").is_none() => {
                iq_reply(iq, "result").with_child(self.disco_info())
            }
            (Some("get"), "query", ns::DISCO_INFO) => iq_error(iq, "cancel", "item-not-found"),
            _ => {
                if self.mutant() == Mutant::SilentUnknownIq {
                    // STANZA-6 deviation: the correct client answers service-unavailable.
                    return Ok(());
                }
                if self.mutant() == Mutant::ErrorTypeUnknown {
                    // STANZA-10 deviation: the correct error type is one of RFC 6120's five.
                    iq_error(iq, "fatal", "service-unavailable")
                } else {
                    iq_error(iq, "cancel", "service-unavailable")
                }
            }
        };
        self.send_stanza(reply).await
    }

    fn disco_info(&self) -> Element {
        let mut query = Element::new("query", ns::DISCO_INFO).with_child(
            Element::new("identity", ns::DISCO_INFO)
                .with_attr("category", "client")
                .with_attr("type", "phone")
                .with_attr("name", "gatecheck-reference"),
        );
        for feature in FEATURES {
            if *feature == ns::PING && self.mutant() == Mutant::DiscoWithoutPing {
                // STANZA-8 deviation: the correct list names every protocol implemented.
                continue;
            }
            if [ns::OMEMO, ns::RECEIPTS].contains(feature)
                && self.mutant() == Mutant::DiscoWithoutOmemo
            {
                // STANZA-28 deviation: the correct list names encryption and receipts.
                continue;
            }
            if *feature == ns::CHATSTATES && self.mutant() == Mutant::ChatstatesMissingFromDisco {
                // STANZA-8 deviation: the correct list names chat states, which the client
                // declares.
                continue;
            }
            query = query
                .with_child(Element::new("feature", ns::DISCO_INFO).with_attr("var", *feature));
        }
        query
    }

    /// STANZA-9, STANZA-21..24, STANZA-27; the content is [`Omemo::on_message`]'s.
    async fn on_message(
        &mut self,
        message: &Element,
        omemo: &mut Omemo,
        events: &mut EventSink,
    ) -> Result<(), Failure> {
        let from = message.attr("from");
        if message.attr("type") == Some("error") {
            if self.mutant() == Mutant::ErrorOnError {
                // STANZA-9 deviation: the correct client never answers an error.
                let reply = message_error(message, "service-unavailable");
                self.send_stanza(reply).await?;
            }
            if self.mutant() == Mutant::ReplyToMessageError
                && let Some(from) = from
            {
                // STANZA-22 deviation: the correct client neither answers a message error nor
                // shows it as content; this one tells the sender, in a chat message.
                let reply = Element::new("message", ns::JABBER_CLIENT)
                    .with_attr("type", "chat")
                    .with_attr("to", from)
                    .with_child(
                        Element::new("body", ns::JABBER_CLIENT)
                            .with_text("your message could not be delivered"),
                    );
                self.send_stanza(reply).await?;
            }
            return Ok(());
        }
        let known_type = matches!(
            message.attr("type"),
            None | Some("chat" | "normal" | "headline" | "groupchat")
        );
        if !known_type && self.mutant() == Mutant::RejectUnknownMessageType {
            // STANZA-23 deviation: the correct client treats an unknown type as normal.
            let mut reply = message_error(message, "bad-request");
            reply.set_attr("type", "error");
            self.send_stanza(reply).await?;
        }
        if self.mutant() == Mutant::ErrorOnUnknownChild
            && message
                .child_elements()
                .any(|c| !KNOWN_MESSAGE_NS.contains(&c.ns.as_str()))
        {
            // STANZA-21 deviation: the correct client ignores unknown extensions.
            let reply = message_error(message, "feature-not-implemented");
            self.send_stanza(reply).await?;
        }
        if self.mutant() == Mutant::HeadlineNoticeForGroupchat
            && message.attr("type") == Some("groupchat")
            && let Some(from) = from
        {
            // STANZA-24 deviation: the correct client sends no groupchat or headline message.
            let notice = Element::new("message", ns::JABBER_CLIENT)
                .with_attr("type", "headline")
                .with_attr("to", from)
                .with_attr("id", self.fresh_id())
                .with_child(
                    Element::new("body", ns::JABBER_CLIENT)
                        .with_text("group chats are not supported"),
                );
            self.send_stanza(notice).await?;
        }
        if self.mutant() == Mutant::ErrorOnChatState && is_standalone_chat_state(message) {
            // STANZA-27 deviation: the correct client accepts chat states without error.
            let reply = message_error(message, "feature-not-implemented");
            self.send_stanza(reply).await?;
        }
        // Content, receipts (STANZA-13, STANZA-14), key notices and device list events.
        let actions = omemo.on_message(message, Instant::now());
        self.perform(actions, events).await
    }

    /// Driver `disconnect`: closing tag, up to 2 s for the server's, close.
    pub async fn disconnect(mut self) {
        self.stream.close_locally().await;
    }
}

/// A message whose only child is a chat state notification (XEP-0085).
fn is_standalone_chat_state(message: &Element) -> bool {
    let mut children = message.child_elements();
    matches!(
        (children.next(), children.next()),
        (Some(state), None) if state.ns == ns::CHATSTATES
    )
}

/// `<iq type=TYPE id=ID to=FROM/>` answering `request`.
fn iq_reply(request: &Element, kind: &str) -> Element {
    let mut iq = Element::new("iq", ns::JABBER_CLIENT).with_attr("type", kind);
    if let Some(id) = request.attr("id") {
        iq.set_attr("id", id);
    }
    if let Some(from) = request.attr("from") {
        iq.set_attr("to", from);
    }
    iq
}

/// STANZA-10: `<error type=...><CONDITION xmlns=stanzas/></error>`.
fn stanza_error(error_type: &str, condition: &str) -> Element {
    Element::new("error", ns::JABBER_CLIENT)
        .with_attr("type", error_type)
        .with_child(Element::new(condition, ns::STANZAS))
}

fn iq_error(request: &Element, error_type: &str, condition: &str) -> Element {
    iq_reply(request, "error").with_child(stanza_error(error_type, condition))
}

fn message_error(message: &Element, condition: &str) -> Element {
    let mut reply = Element::new("message", ns::JABBER_CLIENT).with_attr("type", "error");
    if let Some(id) = message.attr("id") {
        reply.set_attr("id", id);
    }
    if let Some(from) = message.attr("from") {
        reply.set_attr("to", from);
    }
    reply.with_child(stanza_error("cancel", condition))
}

#[cfg(test)]
#[path = "session_tests.rs"]
mod tests;
