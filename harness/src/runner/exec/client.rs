//! Bringing a client IUT up: launching its driver shim, the `connect` step
//! (driver command, TCP accept, transport handshake), and the `connected`
//! event that ends a negotiated session.

use std::sync::Arc;

use tokio::net::TcpStream;

use tokio::time::Instant;

use super::Exec;
use crate::iut::driver::{Command, DriverProcess, Event, EventKind};
use crate::iut::protocol::ConnectParams;
use crate::roles::Deviation;
use crate::roles::gatekeeper_server as gk;
use crate::transport::TransportKind;

impl Exec<'_> {
    pub(super) async fn connect(
        &mut self,
        c: &crate::scenario::step::Connect,
        deadline: Instant,
    ) -> Result<(), Deviation> {
        let kind = self.transport_for(c.transport)?;
        if let Some(a) = &c.account {
            self.account = self.vars.substitute_raw(a).map_err(Deviation::error)?;
        }
        if let Some(p) = &c.credential {
            self.credential = self.vars.substitute_raw(p).map_err(Deviation::error)?;
        }
        // A new connection replaces the old one (reconnect scenarios).
        self.dev().retire_conn().await;
        self.media_ready().await?;
        let mut params = self.connect_params(kind)?;
        self.enrolled_login = None;
        if c.refused {
            return self.connect_refused(params, deadline).await;
        }
        if c.enrolled {
            // ENROLL-9: the domain and the pinned key come from the enrollment, not from here.
            let (proof, login) = self.enrolled_login(c.enrolled_proof)?;
            params.domain = None;
            params.account = None;
            params.credential = None;
            params.server_key = None;
            params.proof = proof;
            self.account = login.account.clone();
            self.enrolled_login = Some(login);
        }
        let cmd = Command::Connect(params).to_json();
        let seq = self.send_command(cmd).await?;
        let (tcp, accepted_at) = self.accept(seq, kind, deadline).await?;
        self.handshake(tcp, accepted_at, kind, c.handshake, deadline)
            .await
    }

    /// The transport a connection uses: the step's, else the scenario's, else the IUT's;
    /// not-applicable when the IUT does not claim it.
    pub(super) fn transport_for(
        &self,
        step: Option<TransportKind>,
    ) -> Result<TransportKind, Deviation> {
        let kind = step
            .or(self.scenario.transport)
            .unwrap_or(self.iut.transport);
        if !self.iut.claims(&format!("transport.{kind}")) {
            return Err(Deviation::not_applicable(format!(
                "the IUT does not claim transport.{kind}"
            )));
        }
        Ok(kind)
    }

    /// What `connect` and `keep_connected` tell the current device.
    pub(super) fn connect_params(
        &mut self,
        kind: TransportKind,
    ) -> Result<ConnectParams, Deviation> {
        let keys = self.keys()?;
        let server_key = keys.noise.public_base64();
        let ca_pem = keys.tls.ca_pem.clone();
        Ok(ConnectParams {
            host: "127.0.0.1".into(),
            port: self.dev().port,
            transport: kind,
            domain: Some(gk::DOMAIN.into()),
            account: Some(self.account.clone()),
            credential: Some(self.credential.clone()),
            proof: None,
            server_key: (kind == TransportKind::Noise).then_some(server_key),
            ca_pem: (kind == TransportKind::Tls).then_some(ca_pem),
            server_name: gk::DOMAIN.into(),
            media_ca_pem: self.media.host.as_ref().map(|h| h.ca_pem().to_string()),
        })
    }

    /// Accepts the current device's next TCP connection, made for command `seq`. Events that
    /// arrive first are kept for later steps; `unsupported` for `seq` is inconclusive.
    pub(super) async fn accept(
        &mut self,
        seq: u64,
        kind: TransportKind,
        deadline: Instant,
    ) -> Result<(TcpStream, std::time::Instant), Deviation> {
        let dev = &mut self.devices[self.cur];
        let listener = Arc::clone(&dev.listener);
        // Only new events are read here: re-reading the queue in this loop would never yield.
        loop {
            tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((tcp, peer)) => {
                        let at = std::time::Instant::now();
                        dev.transcript.note(format!("accepted TCP connection from {peer}"));
                        // Small writes (header, then features) must not wait for delayed ACKs.
                        let _ = tcp.set_nodelay(true);
                        return Ok((tcp, at));
                    }
                    Err(e) => return Err(Deviation::error(format!("accept failed: {e}"))),
                },
                ev = dev.recv_event(deadline) => match ev? {
                    None => return Err(Deviation::fail_here(
                        format!("a {kind} connection to 127.0.0.1:{}", dev.port),
                        "no connection before the step's deadline",
                    )),
                    Some(ev) if is_unsupported(&ev, seq) => {
                        let cmd = dev.driver.as_ref().and_then(|d| d.ledger.command(seq)).unwrap_or("connect").to_string();
                        return Err(Deviation::inconclusive(format!(
                            "the IUT answered `unsupported` to {cmd}, which every client must support: nothing can be tested",
                        )));
                    }
                    Some(_) if dev.pending.len() >= crate::iut::driver::QUEUE => {
                        return Err(Deviation::fail_here(
                            "at most a few driver events before the connection",
                            format!("more than {} events and still no connection", crate::iut::driver::QUEUE),
                        ));
                    }
                    Some(ev) => dev.pending.push_back(ev),
                },
            }
        }
    }

    /// Runs the transport handshake (as `handshake` says) on an accepted connection, which
    /// becomes the current device's connection.
    pub(super) async fn handshake(
        &mut self,
        tcp: TcpStream,
        accepted_at: std::time::Instant,
        kind: TransportKind,
        handshake: crate::scenario::step::HandshakeMode,
        deadline: Instant,
    ) -> Result<(), Deviation> {
        let keys = self
            .keys
            .take()
            .ok_or_else(|| Deviation::error("no server keys"))?;
        let result = gk::handshake(
            tcp,
            kind,
            handshake,
            &keys,
            deadline,
            &self.devices[self.cur].transcript,
            self.vars.rng(),
        )
        .await;
        self.keys = Some(keys);
        let dev = self.dev();
        dev.conn = result?;
        if let Some(conn) = dev.conn.as_mut() {
            conn.facts.accepted_at = Some(accepted_at);
        }
        Ok(())
    }

    /// After binding, the IUT reports `connected` with the JID it was given.
    pub(super) async fn await_connected(
        &mut self,
        jid: &str,
        deadline: Instant,
    ) -> Result<(), Deviation> {
        loop {
            let ev = self.next_event(deadline).await?;
            let Some(ev) = ev else {
                return Err(Deviation::fail(
                    gk::req::BOUND_JID,
                    "the driver event connected after resource binding",
                    "no event before the step's deadline",
                ));
            };
            match &ev.kind {
                EventKind::Connected { jid: got } => {
                    if got != jid {
                        return Err(Deviation::fail(
                            gk::req::BOUND_JID,
                            format!("connected with jid {jid}"),
                            ev.to_string(),
                        ));
                    }
                    return Ok(());
                }
                EventKind::Error { .. } | EventKind::Disconnected { .. } => {
                    return Err(Deviation::fail_here(
                        "the driver event connected",
                        ev.to_string(),
                    ));
                }
                _ => {}
            }
        }
    }

    pub(super) async fn launch(&mut self) -> Result<(), Deviation> {
        let Some(tx) = self.dev().events_tx.take() else {
            return Err(Deviation::error("IUT launched twice"));
        };
        let name = self.iut.name.clone();
        self.dev().transcript.note(format!("launching {name}"));
        let launch = self
            .iut
            .launch
            .as_ref()
            .ok_or_else(|| Deviation::error("the IUT has no [launch] for its client"))?;
        // In a chain scenario the client learns where its own server is (SPEC.md §6.1).
        let mut launch = launch.clone();
        for (k, v) in self.provider_env() {
            launch.env.insert(k, v);
        }
        let driver = DriverProcess::spawn(&launch, &self.token, tx)
            .map_err(|e| Deviation::inconclusive(format!("the IUT did not start: {e}")))?;
        self.dev().driver = Some(driver);
        let deadline = Instant::now() + self.iut.timeouts.ready();
        match self.next_event(deadline).await {
            Ok(Some(ev)) if matches!(ev.kind, EventKind::Ready { .. }) => Ok(()),
            Ok(Some(ev)) => Err(Deviation::inconclusive(format!(
                "the IUT's first driver event was {ev}, not ready"
            ))),
            Ok(None) => Err(Deviation::inconclusive(format!(
                "the IUT sent no ready event within {} ms",
                self.iut.timeouts.ready_ms
            ))),
            Err(d) => Err(Deviation::inconclusive(d.got)),
        }
    }
}

fn is_unsupported(ev: &Event, seq: u64) -> bool {
    matches!(ev.kind, EventKind::Unsupported { .. }) && ev.seq == Some(seq)
}
