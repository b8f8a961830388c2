//! An IUT's driver events are claims: each is checked against the commands the harness
//! sent and against what the harness itself did and saw on the wire, before any step may
//! count it towards a pass (SPEC.md Appendix D).

use std::sync::Arc;
use std::task::Poll;
use std::time::Instant as StdInstant;

use super::device::Device;
use crate::iut::driver::{DisconnectReason, DriverMsg, ErrorDirection, Event, EventKind};
use crate::roles::Deviation;
use crate::roles::conn::ConnFacts;

/// Driver output is newline-delimited JSON events within the line limit.
pub const DRIVER_LINES: &str = "DRIVER-1";
/// Every `seq` an event carries names a command sent, and each command is answered once.
pub const DRIVER_SEQ: &str = "DRIVER-2";
/// Events report only what happened: nothing the harness can see contradicts them.
pub const DRIVER_CLAIMS: &str = "DRIVER-3";
/// One TCP connection per `connect` command.
pub const DRIVER_ONE_CONNECTION: &str = "DRIVER-4";

impl Device {
    /// Checks one event: its `seq`, then what it reports against the harness's own view.
    pub(super) fn check_claims(&mut self, ev: &Event) -> Result<(), Deviation> {
        if let Some(driver) = self.driver.as_mut()
            && let Err(why) = driver.ledger.check(ev)
        {
            return Err(Deviation::fail(
                DRIVER_SEQ,
                "events whose seq names a command the harness sent, answered once",
                format!("{}{why}: {ev}", self.label()),
            ));
        }
        if matches!(ev.kind, EventKind::Disconnected { .. }) {
            self.disconnects_reported += 1;
            let connections = self.past_conns.len() + usize::from(self.conn.is_some());
            if self.disconnects_reported > connections {
                return Err(Deviation::fail(
                    DRIVER_CLAIMS,
                    "one `disconnected` per connection",
                    format!(
                        "{label}{ev}: disconnected reported {} times for {connections} connection(s)",
                        self.disconnects_reported,
                        label = self.label(),
                    ),
                ));
            }
        }
        let facts = self.facts_at(ev.at);
        let happened = |t: Option<StdInstant>| t.is_some_and(|t| t <= ev.at);
        let (claim, ok) = match &ev.kind {
            EventKind::Connected { .. } => (
                "a resource bound by the harness on the IUT's connection",
                facts.is_some_and(|f| happened(f.bound_at)),
            ),
            EventKind::Disconnected {
                reason: DisconnectReason::RemoteClose,
                ..
            } => (
                "the harness's </stream:stream> on the IUT's connection",
                facts.is_some_and(|f| happened(f.close_sent_at)),
            ),
            EventKind::Disconnected {
                reason: DisconnectReason::StreamErrorReceived,
                ..
            }
            | EventKind::StreamError {
                direction: ErrorDirection::Received,
                ..
            } => (
                "a <stream:error> sent by the harness on the IUT's connection",
                facts.is_some_and(|f| happened(f.stream_error_sent_at)),
            ),
            _ => ("", true),
        };
        if ok {
            return Ok(());
        }
        Err(Deviation::fail(
            DRIVER_CLAIMS,
            format!("`{}` only after {claim}", ev.name),
            format!(
                "{}{ev}, which arrived before the harness had done so",
                self.label()
            ),
        ))
    }

    /// What the harness saw on the connection that was the IUT's latest at `at`.
    fn facts_at(&self, at: StdInstant) -> Option<ConnFacts> {
        self.past_conns
            .iter()
            .copied()
            .chain(self.conn.as_ref().map(|c| c.facts))
            .rfind(|f| f.accepted_at.is_some_and(|t| t <= at))
    }

    /// A client connects once per `connect`: a connection waiting to be accepted now is a
    /// second one.
    pub(super) async fn check_no_extra_connection(&mut self) -> Result<(), Deviation> {
        let listener = Arc::clone(&self.listener);
        // One poll of accept, never a wait: a connection in the backlog is found at once (a
        // zero timeout would cost a timer tick, about 1 ms, at every step).
        let pending = std::future::poll_fn(|cx| match listener.poll_accept(cx) {
            Poll::Ready(r) => Poll::Ready(Some(r)),
            Poll::Pending => Poll::Ready(None),
        })
        .await;
        let Some(Ok((tcp, peer))) = pending else {
            return Ok(());
        };
        if self.keeps_connected {
            // Another attempt of keep_connected: dropped at once, and counted as a
            // connection (it may be reported `disconnected`).
            self.past_conns.push(ConnFacts {
                accepted_at: Some(StdInstant::now()),
                ..ConnFacts::default()
            });
            drop(tcp);
            self.transcript.note(format!(
                "connection attempt from {peer} (keep_connected): dropped at once"
            ));
            return Ok(());
        }
        drop(tcp);
        self.transcript
            .note(format!("unexpected TCP connection from {peer}"));
        Err(Deviation::fail(
            DRIVER_ONE_CONNECTION,
            "one connection per connect command",
            format!("{}another TCP connection, from {peer}", self.label()),
        ))
    }

    /// After the last step passed: what the IUT reported meanwhile, and extra connections.
    pub(super) async fn after_pass(&mut self) -> Option<Deviation> {
        if let Some(d) = self.drain_checked() {
            return Some(d);
        }
        self.check_no_extra_connection().await.err()
    }

    /// Reads every driver message already queued, checking each, and keeps the events for
    /// the steps that wait for them; the first lie found.
    pub(super) fn admit_queued(&mut self) -> Result<(), Deviation> {
        while let Ok(msg) = self.events.try_recv() {
            if matches!(msg, DriverMsg::Eof) {
                self.driver_gone = true;
                continue;
            }
            if let Some(ev) = self.admit(msg)? {
                self.pending.push_back(ev);
            }
        }
        Ok(())
    }

    /// Takes every driver message already queued, checking each; the first lie found.
    pub(super) fn drain_checked(&mut self) -> Option<Deviation> {
        let mut first = None;
        while let Ok(msg) = self.events.try_recv() {
            if matches!(msg, DriverMsg::Eof) {
                self.driver_gone = true;
                continue;
            }
            if let Err(d) = self.admit(msg) {
                first.get_or_insert(d);
            }
        }
        first
    }
}
