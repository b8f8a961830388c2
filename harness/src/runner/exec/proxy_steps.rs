//! The steps of a proxy scenario on the downstream side: connecting a client through the
//! proxy (and accepting the upstream connection the proxy opens for it), writing, reading,
//! closing, and the PROXY v2 header of its upstream connection.

use std::collections::VecDeque;
use std::time::{Duration, Instant as StdInstant};

use tokio::time::Instant;

use super::Exec;
use super::proxy::{Client, ONE_UPSTREAM, UpstreamMode};
use crate::roles::Deviation;
use crate::roles::downstream::{self, Disco, Down, Downstream, Upto};
use crate::roles::gatekeeper_options::{Negotiate, SaslAnswer, Stage};
use crate::roles::gatekeeper_server::{self as gk, Credentials};
use crate::roles::proxy_header::{self, same_endpoint};
use crate::roles::upstream;
use crate::scenario::Step;
use crate::scenario::proxy_step::{DownstreamConnect, ProxyAction};
use crate::transport::{TransportError, TransportKind};

/// A login through a proxy takes several round trips on each side.
const CONNECT_WAIT: Duration = Duration::from_secs(10);
/// PROXY-13: the client's `<auth>` reaches the gatekeeper unchanged.
pub(super) const AUTH_UNCHANGED: &str = "PROXY-13";
/// PROXY-8: nothing that carries an identifier is changed (the bound JID).
pub(super) const NO_CHANGED_IDENTIFIERS: &str = "PROXY-8";

impl Exec<'_> {
    pub(super) async fn proxy_step(
        &mut self,
        step: &Step,
        action: &ProxyAction,
        deadline: Instant,
    ) -> Result<(), Deviation> {
        self.proxy_after_step()?;
        match action {
            ProxyAction::Connect(c) => self.downstream_connect(step, c, deadline).await,
            ProxyAction::Send { client, text } => {
                self.select_client(client)?;
                let text = self.vars.substitute(text).map_err(Deviation::error)?;
                self.downstream_write(client, text.as_bytes(), deadline)
                    .await
            }
            ProxyAction::Expect { client, patterns } => {
                self.downstream_expect(step, client, patterns, deadline)
                    .await
            }
            ProxyAction::ExpectStreamError { client, expect } => {
                self.downstream_expect_stream_error(step, client, expect, deadline)
                    .await
            }
            ProxyAction::ExpectClosed {
                client,
                close_tag,
                within,
            } => {
                self.downstream_expect_closed(step, client, *close_tag, within.as_deref(), deadline)
                    .await
            }
            ProxyAction::ExpectNothing { client, wait } => {
                self.downstream_expect_nothing(client, Instant::now() + *wait)
                    .await
            }
            ProxyAction::Close { client, close_tag } => {
                self.downstream_close(client, *close_tag, deadline).await
            }
            ProxyAction::ExpectHeader { client } => self.expect_proxy_header(client),
            ProxyAction::Relay(r) => self.relay(r, deadline).await,
        }
    }

    /// The downstream client called `name`.
    pub(super) fn down(&mut self, name: &str) -> Result<&mut Downstream, Deviation> {
        let p = self.proxy_state()?;
        p.clients
            .iter_mut()
            .find(|c| c.name == name)
            .map(|c| &mut c.down)
            .ok_or_else(|| Deviation::error(format!("no downstream client {name:?}")))
    }

    /// Connects a client to the proxy and accepts the one upstream connection the proxy must
    /// open for it once the transport handshake is done (PROXY-3): its PROXY v2 header
    /// (PROXY-2), its Noise handshake (PROXY-1); then, with `upto`, the client logs in while
    /// the gatekeeper negotiates on the upstream side.
    async fn downstream_connect(
        &mut self,
        step: &Step,
        c: &DownstreamConnect,
        deadline: Instant,
    ) -> Result<(), Deviation> {
        let kind = self.transport_for(c.transport)?;
        let trust = self.proxy_trust(kind)?;
        let deadline = match step.timeout {
            Some(_) => deadline,
            None => deadline.max(Instant::now() + CONNECT_WAIT),
        };
        // A client of the same name is replaced: both its connections end.
        if self
            .proxy_state()?
            .clients
            .iter()
            .any(|x| x.name == c.client)
        {
            self.select_client(&c.client)?;
            self.devices[0].retire_conn().await;
            let p = self.proxy_state()?;
            p.clients.retain(|x| x.name != c.client);
            p.current = None;
        } else {
            self.select_none()?;
        }
        let p = self.proxy_state()?;
        let addr = match kind {
            TransportKind::Noise => p.noise_addr,
            TransportKind::Tls => p.tls_addr,
        };
        let ready_by = p.ready_by;
        let tcp = match downstream::connect_tcp(addr, ready_by, deadline).await {
            Ok(tcp) => tcp,
            Err(e) if let Some(gone) = self.proxy_exited().await => {
                self.transcript
                    .note(format!("no connection to the proxy: {e}"));
                return Err(gone);
            }
            Err(e) if Instant::now() >= ready_by => {
                return Err(Deviation::inconclusive(format!(
                    "the proxy does not accept clients at {addr} ({kind}): {e}"
                )));
            }
            Err(e) => {
                return Err(Deviation::fail_here(
                    format!("a proxy listening at {addr}"),
                    e,
                ));
            }
        };
        let name = c.client.as_str();
        self.transcript.note(format!(
            "downstream {name}: TCP connection to the proxy at {addr} ({kind})"
        ));
        if let Some(hold) = c.hold {
            self.hold_before_handshake(hold).await?;
        }
        let disco = match &c.features {
            Some(f) => Disco {
                features: f.clone(),
                ..Disco::default()
            },
            None => Disco::default(),
        };
        let down_transcript = self.transcript.for_device(&format!("downstream {name}"));
        // The upstream listener is watched meanwhile: the client's side of either handshake
        // completes before the proxy's, so an upstream connection that comes first was opened
        // before the handshake completed (PROXY-3), and may be what the proxy waits for.
        let handshake = Downstream::handshake(tcp, &trust, disco, deadline, down_transcript);
        let early = {
            let p = self.proxy_state()?;
            tokio::select! {
                biased;
                done = handshake => Ok(done),
                upstream = p.listener.accept() => Err(upstream),
            }
        };
        let down = match early {
            Ok(Ok(down)) => down,
            Ok(Err(e)) => {
                // Another process on the port the proxy could not bind is no fault of its own.
                if let Some(gone) = self.proxy_exited().await {
                    return Err(gone);
                }
                return Err(handshake_failure(kind, e));
            }
            Err(Ok((_, peer))) => {
                return Err(Deviation::fail(
                    ONE_UPSTREAM,
                    "no upstream connection before the client's transport handshake completed",
                    format!(
                        "an upstream connection from {peer} during the client's {kind} handshake"
                    ),
                ));
            }
            Err(Err(e)) => return Err(Deviation::error(format!("upstream accept failed: {e}"))),
        };
        if c.upstream_optional {
            let client = self.optional_upstream(c, down, deadline).await?;
            self.proxy_state()?.clients.push(client);
            self.select_client(name)?;
            return Ok(());
        }
        let up_transcript = self.transcript.for_device(&format!("upstream {name}"));
        let accepted = {
            let p = self.proxy_state()?;
            tokio::time::timeout_at(deadline, p.listener.accept()).await
        };
        let (tcp_up, peer) = match accepted {
            Ok(Ok(a)) => a,
            Ok(Err(e)) => return Err(Deviation::error(format!("upstream accept failed: {e}"))),
            Err(_) => {
                return Err(Deviation::fail(
                    ONE_UPSTREAM,
                    "an upstream connection to the gatekeeper for the client, once its transport handshake completed",
                    "no upstream connection before the step's deadline",
                ));
            }
        };
        let _ = tcp_up.set_nodelay(true);
        up_transcript.note(format!("upstream connection from the proxy at {peer}"));
        let mode = c.upstream_handshake;
        self.keys()?;
        let keys = self
            .keys
            .as_ref()
            .ok_or_else(|| Deviation::error("no server keys"))?;
        let conn = upstream::accept(
            tcp_up,
            mode,
            keys,
            deadline,
            &up_transcript,
            self.vars.rng(),
        )
        .await?;
        let mut client = Client {
            name: name.to_string(),
            down,
            up: conn,
            backlog: VecDeque::new(),
            mode: UpstreamMode::Required,
        };
        if let (Some(upto), Some(conn)) = (c.upto, client.up.as_mut()) {
            let (account, credential) = if c.opted_in {
                (self.account.clone(), self.credential.clone())
            } else {
                self.proxy_state()?.optout.clone()
            };
            let n = Negotiate {
                upto: match upto {
                    Upto::Features | Upto::Auth => Stage::Features,
                    Upto::Session => Stage::Session,
                },
                mechanisms: vec!["PLAIN".into()],
                sasl: SaslAnswer::Verify,
                features_delay: None,
                idle_limit: None,
            };
            let creds = Credentials {
                account: &account,
                credential: &credential,
                enrolled: None,
            };
            let client_side = client.down.login(upto, &account, &credential, deadline);
            let gatekeeper_side = async {
                gk::negotiate(conn, &n, &creds, deadline, self.vars.rng())
                    .await
                    .map_err(|mut d| {
                        if d.requirement.as_deref() == Some(gk::req::SASL_PLAIN) {
                            d.requirement = Some(AUTH_UNCHANGED.into());
                        }
                        d
                    })
            };
            let (jid, done) = tokio::try_join!(client_side, gatekeeper_side)?;
            if upto == Upto::Session && jid != done.jid {
                return Err(Deviation::fail(
                    NO_CHANGED_IDENTIFIERS,
                    format!(
                        "the bound JID the gatekeeper assigned, {}, forwarded unchanged",
                        done.jid.unwrap_or_default()
                    ),
                    format!("the client was told {}", jid.unwrap_or_default()),
                ));
            }
            if let Some(jid) = jid {
                self.vars.set(&format!("{name}.jid"), jid);
            }
        }
        let p = self.proxy_state()?;
        p.clients.push(client);
        self.select_client(name)?;
        Ok(())
    }

    /// Takes the current client's upstream connection out of the device slot.
    fn select_none(&mut self) -> Result<(), Deviation> {
        let (conn, backlog) = {
            let dev = &mut self.devices[0];
            (dev.conn.take(), std::mem::take(&mut dev.backlog))
        };
        let p = self.proxy_state()?;
        if let Some(c) = p.current.take() {
            p.clients[c].up = conn;
            p.clients[c].backlog = backlog;
        }
        Ok(())
    }

    /// Waits `hold` after the client's TCP connection, before its handshake: an upstream
    /// connection the proxy opens meanwhile fails PROXY-3.
    async fn hold_before_handshake(&mut self, hold: Duration) -> Result<(), Deviation> {
        let until = Instant::now() + hold;
        let p = self.proxy_state()?;
        match tokio::time::timeout_at(until, p.listener.accept()).await {
            Err(_) => Ok(()),
            Ok(Ok((_, peer))) => Err(Deviation::fail(
                ONE_UPSTREAM,
                "no upstream connection before the client's transport handshake completed",
                format!(
                    "an upstream connection from {peer} while the client had done nothing but connect ({} ms of {} ms)",
                    (hold - until.saturating_duration_since(Instant::now())).as_millis(),
                    hold.as_millis()
                ),
            )),
            Ok(Err(e)) => Err(Deviation::error(format!("upstream accept failed: {e}"))),
        }
    }

    async fn downstream_write(
        &mut self,
        client: &str,
        bytes: &[u8],
        deadline: Instant,
    ) -> Result<(), Deviation> {
        let down = self.down(client)?;
        match tokio::time::timeout_at(deadline, down.send(bytes)).await {
            Ok(Ok(())) => {}
            // A proxy may refuse hostile input before reading all of it: the next step judges.
            Ok(Err(e)) => self
                .transcript
                .note(format!("downstream write stopped: {e}")),
            Err(_) => self
                .transcript
                .note("downstream write stopped: the proxy stopped reading"),
        }
        Ok(())
    }

    async fn downstream_expect(
        &mut self,
        step: &Step,
        client: &str,
        alternatives: &[String],
        deadline: Instant,
    ) -> Result<(), Deviation> {
        self.select_client(client)?;
        let mut patterns = Vec::with_capacity(alternatives.len());
        for a in alternatives {
            patterns.push(self.pattern(a)?);
        }
        let expected = alternatives.join("  or  ");
        let expected = format!(
            "from the proxy to client {client:?}: {}",
            self.vars.substitute(&expected).unwrap_or(expected)
        );
        loop {
            let got = self.down_next(client, deadline).await?;
            let Some(Down::Stanza(e)) = got else {
                return Err(downstream::unexpected(got, &expected));
            };
            let mut mismatch = None;
            for p in &patterns {
                match crate::scenario::pattern::matches(p, &e) {
                    Ok(captures) => {
                        for (k, v) in captures {
                            self.vars.set(&k, v);
                        }
                        return Ok(());
                    }
                    Err(m) => {
                        mismatch.get_or_insert(m);
                    }
                }
            }
            if self.ignorable(step, &e)? {
                continue;
            }
            let why = mismatch
                .map(|m| format!(" (mismatch at {m})"))
                .unwrap_or_default();
            return Err(Deviation::fail_here(
                expected,
                format!("{}{why}", e.to_xml()),
            ));
        }
    }

    /// The proxy must close the client's connection (after `</stream:stream>` with
    /// `close_tag`); with `within`, by that requirement's bound, timed from the harness's last
    /// write on either side of this client (what the proxy answers).
    async fn downstream_expect_closed(
        &mut self,
        step: &Step,
        client: &str,
        close_tag: bool,
        within: Option<&str>,
        deadline: Instant,
    ) -> Result<(), Deviation> {
        self.select_client(client)?;
        let bound = within.and_then(crate::spec::embedded_time_bound);
        let deadline = match (step.timeout, bound) {
            (None, Some(b)) => deadline.max(Instant::now() + b),
            _ => deadline,
        };
        let up = self.devices[0].conn.as_ref().map(|c| c.facts);
        let down = self.down(client)?;
        let since = [
            down.last_write_at,
            up.and_then(|f| f.last_write_at),
            up.and_then(|f| f.hangup_at),
        ]
        .into_iter()
        .flatten()
        .max()
        .unwrap_or_else(StdInstant::now);
        let mut saw_close = false;
        loop {
            match self.down_next(client, deadline).await? {
                Some(Down::Close) => saw_close = true,
                Some(Down::Eof(_)) => {
                    if close_tag && !saw_close {
                        return Err(Deviation::fail_here(
                            "</stream:stream> before the proxy closes the client's connection",
                            "the connection closed without the closing tag",
                        ));
                    }
                    let ended = self
                        .down(client)?
                        .ended_at()
                        .unwrap_or_else(StdInstant::now);
                    let took = ended.saturating_duration_since(since);
                    if let (Some(req), Some(bound)) = (within, bound)
                        && took > bound
                    {
                        return Err(Deviation::fail(
                            req,
                            format!(
                                "the client's connection closed within {} s",
                                bound.as_secs()
                            ),
                            format!(
                                "closed {:.1} s after the harness's last write",
                                took.as_secs_f64()
                            ),
                        ));
                    }
                    return Ok(());
                }
                Some(Down::Stanza(e)) if !saw_close && self.ignorable(step, &e)? => {}
                None => {
                    return Err(Deviation::fail_here(
                        "the proxy to close the client's connection",
                        if saw_close {
                            "</stream:stream>, but the connection stayed open"
                        } else {
                            "the connection stayed open"
                        },
                    ));
                }
                other => {
                    return Err(downstream::unexpected(
                        other,
                        "nothing more before the proxy closes the client's connection",
                    ));
                }
            }
        }
    }

    async fn downstream_expect_nothing(
        &mut self,
        client: &str,
        until: Instant,
    ) -> Result<(), Deviation> {
        self.select_client(client)?;
        let got = self.down_next(client, until).await?;
        match got {
            None => Ok(()),
            other => Err(downstream::unexpected(
                other,
                &format!("nothing from the proxy to client {client:?}"),
            )),
        }
    }

    /// The client leaves: `</stream:stream>` (with `close_tag`), then it closes its
    /// connection. The upstream side's `expect_closed` is timed from this moment (PROXY-4).
    async fn downstream_close(
        &mut self,
        client: &str,
        close_tag: bool,
        deadline: Instant,
    ) -> Result<(), Deviation> {
        self.select_client(client)?;
        let transcript = self.transcript.clone();
        let down = self.down(client)?;
        if close_tag {
            match tokio::time::timeout_at(deadline, down.send_close()).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => transcript.note(format!("downstream close tag not sent: {e}")),
                Err(_) => {
                    transcript.note("downstream close tag not sent: the proxy is not reading")
                }
            }
        }
        down.hangup().await;
        let left = down.closed_at;
        if let Some(conn) = self.devices[0].conn.as_mut() {
            conn.facts.last_write_at = left;
        }
        Ok(())
    }

    /// The header of the client's upstream connection names the client's connection as the
    /// proxy accepted it: source the client's address, destination the proxy's (PROXY-2).
    fn expect_proxy_header(&mut self, client: &str) -> Result<(), Deviation> {
        self.select_client(client)?;
        let header = self
            .upstream_conn()?
            .proxy_header
            .clone()
            .ok_or_else(|| Deviation::error("the upstream connection has no PROXY header"))?;
        let down = self.down(client)?;
        let (local, peer) = (down.local, down.peer);
        if same_endpoint(header.source, local) && same_endpoint(header.destination, peer) {
            return Ok(());
        }
        Err(Deviation::fail(
            proxy_header::REQUIREMENT,
            format!(
                "a PROXY v2 header with source {local} (the client's connection as the proxy accepted it) and destination {peer} (the proxy's address of that connection)"
            ),
            format!(
                "source {}, destination {} ({})",
                header.source,
                header.destination,
                proxy_header::hex(&header.raw)
            ),
        ))
    }
}

/// What a failed handshake with the proxy breaks: the profile's transport of that kind.
fn handshake_failure(kind: TransportKind, e: TransportError) -> Deviation {
    let requirement = match (&e, kind) {
        (_, TransportKind::Noise) => gk::req::NOISE,
        (TransportError::Tls(m), TransportKind::Tls) if m.contains("certificate") => {
            gk::req::TLS_AUTH
        }
        (_, TransportKind::Tls) => gk::req::TLS,
    };
    Deviation::fail(
        requirement,
        format!("a complete {kind} handshake with the proxy, with what it published"),
        e.to_string(),
    )
}
