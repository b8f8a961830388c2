//! One instance of the client IUT (a provider user's device): its process, the driver
//! events it reports, and its connections to the gatekeeper. A scenario has one, or one per
//! name in `devices`; each listens on a port of its own, so a TCP connection is always known
//! to come from the instance that was told to make it.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::truth;
use crate::iut::driver::{DriverMsg, DriverProcess, Event};
use crate::roles::Deviation;
use crate::roles::conn::{ConnFacts, IutConn};
use crate::transcript::{Direction, Transcript};

pub(super) struct Device {
    /// The name the scenario gives it (`devices`); `None` for a scenario's only instance.
    pub name: Option<String>,
    pub listener: Arc<TcpListener>,
    pub port: u16,
    pub driver: Option<DriverProcess>,
    pub events: mpsc::Receiver<DriverMsg>,
    /// Handed to the process when it is launched.
    pub events_tx: Option<mpsc::Sender<DriverMsg>>,
    /// Events read while waiting for something else, kept for later steps.
    pub pending: VecDeque<Event>,
    pub driver_gone: bool,
    pub conn: Option<IutConn>,
    /// What the harness saw on the connections already closed, oldest first.
    pub past_conns: Vec<ConnFacts>,
    /// `disconnected` events the IUT reported: never more than its connections.
    pub disconnects_reported: usize,
    /// The full JID the gatekeeper bound on its current connection.
    pub jid: Option<String>,
    /// A `keep_connected` was sent: further connections are its attempts, not DRIVER-4's
    /// extra connections.
    pub keeps_connected: bool,
    /// The idle limit the gatekeeper announced on the current connection (STREAM-47).
    pub idle_limit: Option<Duration>,
    /// The scenario's transcript; entries marked with the device's name when it has one.
    pub transcript: Transcript,
    /// End-to-end encryption events admitted and not yet judged against what the
    /// gatekeeper users sent (e2ee_ledger).
    pub e2ee_claims: Vec<serde_json::Value>,
    /// What arrived on the connection while the harness served it between steps (PEP iqs
    /// answered, stanzas for gatekeeper users routed): the rest, for the next step to read.
    pub backlog: VecDeque<crate::roles::conn::Inbound>,
}

impl Device {
    pub async fn new(name: Option<String>, transcript: &Transcript) -> Result<Device, String> {
        let listener = TcpListener::bind(("127.0.0.1", 0))
            .await
            .map_err(|e| format!("cannot listen on loopback: {e}"))?;
        let port = listener.local_addr().map(|a| a.port()).unwrap_or(0);
        let (tx, rx) = mpsc::channel(crate::iut::driver::QUEUE);
        let transcript = match &name {
            Some(n) => transcript.for_device(n),
            None => transcript.clone(),
        };
        Ok(Device {
            name,
            listener: Arc::new(listener),
            port,
            driver: None,
            events: rx,
            events_tx: Some(tx),
            pending: VecDeque::new(),
            driver_gone: false,
            conn: None,
            past_conns: Vec::new(),
            disconnects_reported: 0,
            jid: None,
            keeps_connected: false,
            idle_limit: None,
            transcript,
            e2ee_claims: Vec::new(),
            backlog: VecDeque::new(),
        })
    }

    /// "device laptop: " in messages of a scenario with several devices, else nothing.
    pub fn label(&self) -> String {
        self.name
            .as_ref()
            .map(|n| format!("device {n}: "))
            .unwrap_or_default()
    }

    /// The next driver event, from the queue or the IUT. `Ok(None)` on timeout.
    pub async fn next_event(&mut self, deadline: Instant) -> Result<Option<Event>, Deviation> {
        if let Some(ev) = self.pending.pop_front() {
            return Ok(Some(ev));
        }
        self.recv_event(deadline).await
    }

    /// The next driver event from the IUT itself (never the queue), checked for truth
    /// against the commands sent and what the harness saw. `Ok(None)` on timeout.
    pub async fn recv_event(&mut self, deadline: Instant) -> Result<Option<Event>, Deviation> {
        if self.driver_gone {
            return Err(self.driver_exited().await);
        }
        let msg = match tokio::time::timeout_at(deadline, self.events.recv()).await {
            Err(_) => return Ok(None),
            Ok(Some(msg)) => msg,
            Ok(None) => DriverMsg::Eof,
        };
        match self.admit(msg)? {
            Some(ev) => Ok(Some(ev)),
            None => {
                self.driver_gone = true;
                Err(self.driver_exited().await)
            }
        }
    }

    /// Records one message from the driver channel and checks it. `Ok(None)` for the end
    /// of the IUT's output.
    pub fn admit(&mut self, msg: DriverMsg) -> Result<Option<Event>, Deviation> {
        match msg {
            DriverMsg::Event(ev) => {
                self.transcript
                    .record_at(Direction::DriverEvent, ev.raw.to_string(), ev.at);
                self.check_claims(&ev)?;
                if matches!(
                    ev.name.as_str(),
                    "message_received" | "identity_changed" | "sent" | "media_received"
                ) {
                    self.e2ee_claims.push(ev.raw.clone());
                }
                Ok(Some(ev))
            }
            DriverMsg::Bad { at, line, why } => {
                self.transcript.record_at(Direction::DriverEvent, &line, at);
                Err(Deviation::fail(
                    truth::DRIVER_LINES,
                    "driver events as DRIVER.md defines them",
                    format!("{}{why}: {line}", self.label()),
                ))
            }
            DriverMsg::Eof => Ok(None),
        }
    }

    pub async fn driver_exited(&mut self) -> Deviation {
        let status = match self.driver.as_mut() {
            Some(d) => d.exit_status_within(Duration::from_millis(200)).await,
            None => None,
        };
        let label = self.label();
        Deviation::fail_here(
            "the IUT process to keep running",
            match status {
                Some(s) => format!("{label}the IUT exited ({s})"),
                None => format!("{label}the IUT closed its driver output"),
            },
        )
    }

    pub async fn send_command(&mut self, cmd: serde_json::Value) -> Result<u64, Deviation> {
        let driver = self
            .driver
            .as_mut()
            .ok_or_else(|| Deviation::error("no IUT process"))?;
        match driver.send(cmd).await {
            Ok((seq, line)) => {
                self.transcript.record(Direction::DriverCommand, line);
                Ok(seq)
            }
            Err(e) => Err(Deviation::fail_here(
                "the IUT to read driver commands",
                format!("{}{e}", self.label()),
            )),
        }
    }

    pub fn conn(&mut self) -> Result<&mut IutConn, Deviation> {
        let label = self.label();
        self.conn.as_mut().ok_or_else(|| {
            Deviation::error(format!(
                "{label}this step needs a connection: add a `connect` or `session` step before it"
            ))
        })
    }

    /// Ends the current connection (if any), keeping what the harness saw on it.
    pub async fn retire_conn(&mut self) {
        if let Some(mut old) = self.conn.take() {
            old.hangup().await;
            self.past_conns.push(old.facts);
        }
        self.jid = None;
    }
}
