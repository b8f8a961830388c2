//! The expecting steps: stanzas, stream errors, closes, silence and driver
//! events, with strict matching and the scenario's ignore rules.

use tokio::time::Instant;

use super::Exec;
use crate::iut::driver::event_matches;
use crate::roles::Deviation;
use crate::roles::conn::Inbound;
use crate::roles::gatekeeper_server as gk;
use crate::scenario::step::{Grade, StreamErrorExpect};
use crate::scenario::{Step, pattern};
use crate::wire::{Element, ns};

impl Exec<'_> {
    /// Whether an IUT stanza may be skipped while waiting for something else.
    pub(super) fn ignorable(&mut self, step: &Step, e: &Element) -> Result<bool, Deviation> {
        if !self.scenario.strict_presence
            && e.name == "presence"
            && e.ns == ns::JABBER_CLIENT
            && e.attr("to").is_none()
            && e.attr("type").is_none()
        {
            return Ok(true);
        }
        if self.ignore.iter().any(|p| pattern::matches(p, e).is_ok()) {
            return Ok(true);
        }
        for p in &step.ignore {
            let parsed = self.pattern(p)?;
            if pattern::matches(&parsed, e).is_ok() {
                return Ok(true);
            }
        }
        Ok(false)
    }

    pub(super) async fn expect(
        &mut self,
        step: &Step,
        alternatives: &[String],
        deadline: Instant,
    ) -> Result<(), Deviation> {
        let mut patterns = Vec::with_capacity(alternatives.len());
        for a in alternatives {
            patterns.push(self.pattern(a)?);
        }
        let expected = alternatives.join("  or  ");
        let expected = self.vars.substitute(&expected).unwrap_or(expected);
        loop {
            let got = self.next_for(step.actor.as_deref(), deadline).await?;
            let Some(Inbound::Stanza(e)) = got else {
                return Err(gk::unexpected(got, &expected, "").into_here());
            };
            let mut first_mismatch = None;
            for p in &patterns {
                match pattern::matches(p, &e) {
                    Ok(captures) => {
                        for (k, v) in captures {
                            self.vars.set(&k, v);
                        }
                        return Ok(());
                    }
                    Err(m) => {
                        first_mismatch.get_or_insert(m);
                    }
                }
            }
            if self.ignorable(step, &e)? {
                self.transcript.note(format!("ignored: <{}>", e.name));
                continue;
            }
            let why = first_mismatch
                .map(|m| format!(" (mismatch at {m})"))
                .unwrap_or_default();
            return Err(Deviation::fail_here(
                expected,
                format!("{}{why}", e.to_xml()),
            ));
        }
    }

    pub(super) async fn expect_stream_error(
        &mut self,
        step: &Step,
        expect: &StreamErrorExpect,
        deadline: Instant,
    ) -> Result<(), Deviation> {
        let expected = format!("<stream:error> with condition {}", expect.pass.join(" or "));
        loop {
            let got = self.next_for(None, deadline).await?;
            let Some(Inbound::Stanza(e)) = got else {
                return Err(gk::unexpected(got, &expected, "").into_here());
            };
            if e.name == "error" && e.ns == ns::STREAMS {
                let cond = e
                    .child_elements()
                    .find(|c| c.ns == ns::STREAM_ERRORS && c.name != "text")
                    .map(|c| c.name.clone())
                    .unwrap_or_default();
                return match (expect.grade(&cond), &expect.should) {
                    (Grade::Pass, _) => Ok(()),
                    (Grade::Warn, Some(should)) => {
                        self.warn(
                            should.clone(),
                            expected,
                            e.to_xml(),
                            self.current_step(step),
                        );
                        Ok(())
                    }
                    // The requirement that names the condition is the step's (STREAM-32 for
                    // policy-violation, STREAM-30 for not-well-formed, ...).
                    _ => Err(Deviation::fail_here(expected, e.to_xml())),
                };
            }
            if self.ignorable(step, &e)? {
                continue;
            }
            return Err(Deviation::fail_here(expected, e.to_xml()));
        }
    }

    pub(super) async fn expect_closed(
        &mut self,
        step: &Step,
        close_tag: bool,
        within: Option<&str>,
        deadline: Instant,
    ) -> Result<(), Deviation> {
        let dev = &self.devices[self.cur];
        let Some(conn) = dev.conn.as_ref() else {
            dev.transcript
                .note("no connection left open: the handshake was aborted");
            return Ok(());
        };
        // Timed from the harness's last write (the stream error or closing tag it answers).
        let since = conn
            .facts
            .last_write_at
            .unwrap_or_else(std::time::Instant::now);
        let mut saw_close = false;
        loop {
            let got = self.next_for(None, deadline).await?;
            match got {
                Some(Inbound::Close) => saw_close = true,
                Some(Inbound::Eof(_)) => {
                    if close_tag && !saw_close {
                        return Err(Deviation::fail_here(
                            "</stream:stream> before the connection closes",
                            "the connection closed without the closing tag",
                        ));
                    }
                    if let Some(req) = within
                        && let Some(bound) = crate::spec::embedded_time_bound(req)
                        && since.elapsed() > bound
                    {
                        return Err(Deviation::fail(
                            req,
                            format!("the connection closed within {} s", bound.as_secs()),
                            format!(
                                "closed {:.1} s after the harness's last write",
                                since.elapsed().as_secs_f64()
                            ),
                        ));
                    }
                    return Ok(());
                }
                Some(Inbound::Stanza(e)) if !saw_close && self.ignorable(step, &e)? => {}
                None => {
                    return Err(Deviation::fail_here(
                        "the IUT to close the connection",
                        if saw_close {
                            "</stream:stream>, but the connection stayed open"
                        } else {
                            "the connection stayed open"
                        },
                    ));
                }
                other => {
                    return Err(gk::unexpected(
                        other,
                        "nothing more before the connection closes",
                        "",
                    )
                    .into_here());
                }
            }
        }
    }

    pub(super) async fn expect_nothing(
        &mut self,
        step: &Step,
        until: Instant,
    ) -> Result<(), Deviation> {
        loop {
            // Not routed: a stanza for a gatekeeper user or another device is something too.
            let got = self.read_conn(until).await?;
            if let Some(Inbound::Stanza(e)) = &got
                && self.server_takes(e, until).await?
            {
                continue;
            }
            match got {
                None => return Ok(()),
                Some(Inbound::Stanza(e)) if self.ignorable(step, &e)? => {}
                other => {
                    let expected = format!("{}nothing from the IUT", self.dev().label());
                    return Err(gk::unexpected(other, &expected, "").into_here());
                }
            }
        }
    }

    pub(super) async fn expect_event(
        &mut self,
        alternatives: &[serde_json::Value],
        deadline: Instant,
    ) -> Result<(), Deviation> {
        let mut expected = Vec::with_capacity(alternatives.len());
        for a in alternatives {
            expected.push(self.vars.substitute_json(a).map_err(Deviation::error)?);
        }
        let names: Vec<&str> = expected
            .iter()
            .filter_map(|e| e.get("event")?.as_str())
            .collect();
        let shown = expected
            .iter()
            .map(|e| e.to_string())
            .collect::<Vec<_>>()
            .join(" or ");
        loop {
            // In slices: between them the gatekeeper serves the IUT's connections (a client
            // may wait for a PEP answer before it can report anything).
            let slice = deadline.min(Instant::now() + SERVICE_SLICE);
            let Some(ev) = self.next_event(slice).await? else {
                if Instant::now() < deadline {
                    self.service_connections(deadline).await?;
                    continue;
                }
                return Err(Deviation::fail_here(
                    format!("driver event {shown}"),
                    "no such event before the step's deadline",
                ));
            };
            if ev.name == "unsupported" {
                return Err(self.unsupported(&ev));
            }
            if expected.iter().any(|e| event_matches(e, &ev.raw).is_ok()) {
                return Ok(());
            }
            // Messages may be surfaced in another order than a step waits for them: one the
            // ledger accepts (sent validly, surfaced once, exact text) is no fault.
            if ev.name == "message_received" {
                self.check_e2ee_claims()?;
                continue;
            }
            if names.contains(&ev.name.as_str()) {
                return Err(Deviation::fail_here(
                    format!("driver event {shown}"),
                    ev.to_string(),
                ));
            }
            // Other kinds of events (informative ones such as stream_error) are skipped.
        }
    }
}

/// How long an event wait runs before the gatekeeper serves the IUT's connections again.
pub(super) const SERVICE_SLICE: std::time::Duration = std::time::Duration::from_millis(20);

impl Exec<'_> {
    /// The next item on the current device's connection: what was set aside while serving
    /// it between steps first.
    pub(super) async fn read_conn(
        &mut self,
        deadline: Instant,
    ) -> Result<Option<Inbound>, Deviation> {
        if let Some(got) = self.devices[self.cur].backlog.pop_front() {
            return Ok(Some(got));
        }
        Ok(self.conn()?.next(deadline).await)
    }

    /// Does what a server does while no step reads: on every bound connection, answers PEP
    /// iqs and routes stanzas for gatekeeper users to their inboxes; anything else waits in
    /// the device's backlog for the next step that reads.
    pub(super) async fn service_connections(&mut self, deadline: Instant) -> Result<(), Deviation> {
        let saved = self.cur;
        let result = self.service_each(deadline).await;
        self.cur = saved;
        result
    }

    async fn service_each(&mut self, deadline: Instant) -> Result<(), Deviation> {
        for i in 0..self.devices.len() {
            if self.devices[i].jid.is_none() || self.devices[i].conn.is_none() {
                continue;
            }
            self.cur = i;
            // Only what has arrived already: the deadline is now.
            while self.devices[i].backlog.is_empty() {
                let Some(got) = self.conn()?.next(Instant::now()).await else {
                    break;
                };
                let Inbound::Stanza(e) = got else {
                    self.devices[i].backlog.push_back(got);
                    break;
                };
                if self.server_takes(&e, deadline).await? {
                    continue;
                }
                let to = e.attr("to").unwrap_or_default();
                if let Some(u) = self.actors.iter().position(|u| u.jid == to || u.bare == to) {
                    if !self.absorb_key_transport(u, &e)? {
                        self.route_to_user(u, e)?;
                    }
                    continue;
                }
                self.devices[i].backlog.push_back(Inbound::Stanza(e));
            }
        }
        Ok(())
    }

    /// The next item from the current device for `actor` (`None`: the gatekeeper server), as
    /// a server routes: the actor's inbox first, then the device's connection, where a
    /// stanza addressed to another gatekeeper user goes into that user's inbox, and one
    /// addressed to another device's full JID is delivered to that device, `from` stamped.
    pub(super) async fn next_for(
        &mut self,
        actor: Option<&str>,
        deadline: Instant,
    ) -> Result<Option<Inbound>, Deviation> {
        if let Some(name) = actor
            && let Some(user) = self.actors.iter_mut().find(|u| u.name == name)
            && let Some(e) = user.inbox.pop_front()
        {
            return Ok(Some(Inbound::Stanza(e)));
        }
        loop {
            let got = self.read_conn(deadline).await?;
            let Some(Inbound::Stanza(e)) = got else {
                return Ok(got);
            };
            // The gatekeeper's PEP service answers by itself, whatever the step waits for.
            if self.server_takes(&e, deadline).await? {
                continue;
            }
            let to = e.attr("to").unwrap_or_default();
            let addressee = self.actors.iter().position(|u| u.jid == to || u.bare == to);
            if let Some(i) = addressee
                && self.absorb_key_transport(i, &e)?
            {
                continue;
            }
            if let Some(i) = addressee
                && Some(self.actors[i].name.as_str()) != actor
            {
                self.route_to_user(i, e)?;
                continue;
            }
            let other = self
                .devices
                .iter()
                .position(|d| d.jid.as_deref() == Some(to));
            if let Some(j) = other
                && j != self.cur
            {
                self.deliver_between_devices(e, j, deadline).await?;
                continue;
            }
            return Ok(Some(Inbound::Stanza(e)));
        }
    }

    /// What the server does with every stanza it reads from the IUT before a step sees it:
    /// the plaintext scan (E2EE-20), and the answer when it is a PEP iq. `Ok(true)` when
    /// the server answered it (no step sees it).
    pub(super) async fn server_takes(
        &mut self,
        e: &Element,
        deadline: Instant,
    ) -> Result<bool, Deviation> {
        let label = self.devices[self.cur].label();
        self.e2ee.scan(&label, e)?;
        self.serve_pep(e, deadline).await
    }

    /// Puts a stanza from the current device into gatekeeper user `u`'s inbox; a receipt is
    /// judged on the way (STANZA-14).
    fn route_to_user(&mut self, u: usize, e: Element) -> Result<(), Deviation> {
        let label = self.devices[self.cur].label();
        self.e2ee.check_receipt(&label, &e)?;
        let user = &mut self.actors[u];
        self.devices[self.cur]
            .transcript
            .note(format!("routed to gatekeeper user {}", user.name));
        user.inbox.push_back(e);
        Ok(())
    }

    /// Delivers a stanza the current device addressed to device `j`'s full JID on `j`'s
    /// connection, with `from` stamped as the sender's full JID (RFC 6120 §8.1.2.1).
    async fn deliver_between_devices(
        &mut self,
        mut e: Element,
        j: usize,
        deadline: Instant,
    ) -> Result<(), Deviation> {
        let from = self.devices[self.cur].jid.clone().unwrap_or_default();
        e.set_attr("from", from);
        let text = e.to_xml_in(ns::JABBER_CLIENT);
        let (sender, target) = (self.devices[self.cur].label(), self.devices[j].label());
        self.devices[self.cur]
            .transcript
            .note(format!("routed to {}", target.trim_end_matches(": ")));
        let conn = self.devices[j].conn()?;
        match tokio::time::timeout_at(deadline, conn.send(text.as_bytes())).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(Deviation::fail_here(
                format!("{target}a connection that takes stanzas routed from {sender}"),
                format!("write failed: {e}"),
            )),
            Err(_) => Err(Deviation::fail_here(
                format!("{target}a connection that takes stanzas routed to it"),
                "the device stopped reading",
            )),
        }
    }

    /// A stanza as gatekeeper user `name` sends it through the server: `from` stamped with
    /// the user's full JID, whatever the scenario wrote (RFC 6120 §8.1.2.1); with its `to`.
    pub(super) fn routed_from(
        &self,
        name: &str,
        text: &str,
    ) -> Result<(String, Option<String>), Deviation> {
        let user = self
            .actors
            .iter()
            .find(|u| u.name == name)
            .ok_or_else(|| Deviation::error(format!("no actor {name}")))?;
        let mut stanza = pattern::parse(text)
            .map_err(|e| Deviation::error(format!("a send as {name} must be one stanza: {e}")))?;
        stanza.set_attr("from", user.jid.clone());
        let to = stanza.attr("to").map(str::to_string);
        Ok((stanza.to_xml_in(ns::JABBER_CLIENT), to))
    }

    /// The verdict for an `unsupported` answer: not-applicable for a command of an optional
    /// capability the IUT does not claim, inconclusive for anything a client must support.
    pub(super) fn unsupported(&mut self, ev: &crate::iut::driver::Event) -> Deviation {
        let cmd = ev
            .seq
            .and_then(|seq| {
                self.devices[self.cur]
                    .driver
                    .as_ref()?
                    .ledger
                    .command(seq)
                    .map(str::to_string)
            })
            .unwrap_or_default();
        match crate::iut::driver::optional_capability_of(&cmd) {
            Some(cap) if !self.iut.claims(cap) => Deviation::not_applicable(format!(
                "the IUT answered {ev}: `{cmd}` belongs to {cap}, which it does not claim"
            )),
            Some(cap) => Deviation::inconclusive(format!(
                "the IUT answered {ev}, but it claims {cap}, to which `{cmd}` belongs"
            )),
            None => Deviation::inconclusive(format!(
                "the IUT answered {ev}: `{cmd}` is a command every client must support"
            )),
        }
    }
}

impl Deviation {
    /// Drops an empty requirement so the step's or scenario's applies.
    pub(super) fn into_here(mut self) -> Deviation {
        if self.requirement.as_deref() == Some("") {
            self.requirement = None;
        }
        self
    }
}
