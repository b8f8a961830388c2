//! `connect = { enrolled = true, refused = true }`: the driver asks the client to log in as its
//! enrolled device although no enrollment succeeded. ENROLL-1 lets it open no stream and try no
//! SASL authentication without the enrollment's credential, so it must refuse the command
//! (`error` with code `not-enrolled`, DRIVER.md §5). The harness believes the refusal only if
//! its own listener saw no connection for the whole of the step's wait.

use std::sync::Arc;

use base64::Engine;
use tokio::time::Instant;

use super::Exec;
use crate::iut::driver::{Command, Event};
use crate::iut::protocol::ConnectParams;
use crate::roles::Deviation;
use crate::roles::gatekeeper_server as gk;
use crate::scenario::enroll_step::ProofKind;
use crate::transport::TransportKind;

/// The requirement a connection made here breaks.
const ENROLL_FIRST: &str = "ENROLL-1";
/// The driver error code of a refused login (DRIVER.md §5).
const NOT_ENROLLED: &str = "not-enrolled";

/// What one turn of the wait brought.
enum Seen {
    Connection(tokio::net::TcpStream, std::net::SocketAddr),
    Answer(Event),
    Deadline,
}

impl Exec<'_> {
    /// Sends an enrolled `connect` after an enrollment that did not succeed, and waits out
    /// the step: the client's `error` answer with `not-enrolled` and no connection pass; a
    /// connection fails ENROLL-1, with what the client sent on it as evidence.
    pub(super) async fn connect_refused(
        &mut self,
        mut params: ConnectParams,
        deadline: Instant,
    ) -> Result<(), Deviation> {
        let ctx = self.enroll.as_ref().ok_or_else(|| {
            Deviation::error("connect with refused = true needs an enroll step before it")
        })?;
        if ctx.enrolled.is_some() {
            return Err(Deviation::error(
                "connect with refused = true needs an enrollment that did not succeed, but the API granted one",
            ));
        }
        // The command is an enrolled login's (no account, no credential, a fresh proof for a
        // client-only IUT); `domain` and `server_key` stay, as for a provisioned account, so
        // that the enrollment's credential is the only thing the client lacks.
        let proof = match ctx.identity {
            Some((ik, device_id)) if !self.scenario.chain => {
                let proof = ctx.stand_in_proof(
                    ProofKind::Valid,
                    &ik,
                    device_id,
                    super::http::unix_now(),
                    self.vars.rng(),
                );
                Some(
                    serde_json::from_str::<serde_json::Value>(&proof.to_json())
                        .map_err(|e| Deviation::error(e.to_string()))?,
                )
            }
            _ => None,
        };
        let (identifier, token) = (ctx.identifier.clone(), ctx.token.clone());
        let kind = params.transport;
        params.account = None;
        params.credential = None;
        params.proof = proof;
        let seq = self
            .send_command(Command::Connect(params).to_json())
            .await?;
        let mut answer: Option<Event> = None;
        loop {
            let dev = &mut self.devices[self.cur];
            let listener = Arc::clone(&dev.listener);
            let seen = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((tcp, peer)) => Seen::Connection(tcp, peer),
                    Err(e) => return Err(Deviation::error(format!("accept failed: {e}"))),
                },
                ev = dev.recv_event(deadline) => match ev? {
                    None => Seen::Deadline,
                    Some(ev) if ev.seq == Some(seq) => Seen::Answer(ev),
                    Some(ev) => {
                        dev.pending.push_back(ev);
                        continue;
                    }
                },
            };
            match seen {
                Seen::Connection(tcp, peer) => {
                    let at = std::time::Instant::now();
                    self.dev()
                        .transcript
                        .note(format!("accepted TCP connection from {peer}"));
                    let _ = tcp.set_nodelay(true);
                    let what = self
                        .login_attempt(tcp, at, kind, &identifier, &token, deadline)
                        .await;
                    return Err(Deviation::fail(
                        ENROLL_FIRST,
                        "no connection to the gatekeeper: no enrollment succeeded, so the client has no credential to log in with",
                        format!("a {kind} connection from {peer}; {what}"),
                    ));
                }
                Seen::Answer(ev) if ev.name == "unsupported" => {
                    return Err(Deviation::inconclusive(
                        "the IUT answered `unsupported` to connect, which every client must support: nothing can be tested",
                    ));
                }
                // A second answer is DRIVER-2's, caught as the event is read.
                Seen::Answer(ev) => answer = answer.or(Some(ev)),
                Seen::Deadline => break,
            }
        }
        // ENROLL-1 is about logging in: it is held by what the harness saw (no connection for
        // the whole wait), whatever code the refusal names; DRIVER.md asks for not-enrolled.
        match answer {
            None => Err(Deviation::inconclusive(
                "the client neither answered the connect nor connected before the step's deadline: it may still log in later, so ENROLL-1 cannot be judged",
            )),
            Some(ev) if ev.name == "error" => {
                let code = ev.str("code").unwrap_or_default();
                let note = if code == NOT_ENROLLED {
                    String::new()
                } else {
                    format!(" (DRIVER.md names the code {NOT_ENROLLED}, not {code:?})")
                };
                self.dev().transcript.note(format!(
                    "the client refused the connect and opened no connection: {ev}{note}"
                ));
                Ok(())
            }
            Some(ev) => Err(Deviation::fail(
                "DRIVER-2",
                "an `error` event answering the connect (no enrollment succeeded), and no connection",
                format!("{ev}, and no connection reached the gatekeeper"),
            )),
        }
    }

    /// What the client did on a connection it should not have opened: as far as its SASL
    /// attempt, which is named (mechanism, authentication identity, and whether the password
    /// is the provider token or the identifier, never the password itself).
    async fn login_attempt(
        &mut self,
        tcp: tokio::net::TcpStream,
        at: std::time::Instant,
        kind: TransportKind,
        identifier: &str,
        token: &str,
        deadline: Instant,
    ) -> String {
        if let Err(d) = self
            .handshake(
                tcp,
                at,
                kind,
                crate::roles::gatekeeper_options::HandshakeMode::Normal,
                deadline,
            )
            .await
        {
            return format!("its transport handshake then failed: {}", d.got);
        }
        let mechanisms = [
            crate::idproof::sasl::MECHANISM.to_string(),
            "PLAIN".to_string(),
        ];
        let dev = &mut self.devices[self.cur];
        let Some(conn) = dev.conn.as_mut() else {
            return "no connection after the handshake".into();
        };
        let auth = match gk::first_after_features(conn, &mechanisms, deadline, self.vars.rng())
            .await
        {
            Ok(auth) => auth,
            Err(d) => return format!("after the handshake, instead of {}: {}", d.expected, d.got),
        };
        if auth.name != "auth" {
            return format!("after the SASL features it sent {}", auth.to_xml());
        }
        let mechanism = auth.attr("mechanism").unwrap_or("(none)").to_string();
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(auth.text().split_whitespace().collect::<String>())
            .unwrap_or_default();
        let fields: Vec<String> = decoded
            .split(|b| *b == 0)
            .map(|f| String::from_utf8_lossy(f).into_owned())
            .collect();
        let password = |p: &str| {
            if p == token {
                "the provider token".to_string()
            } else if p == identifier {
                "the identifier".to_string()
            } else {
                format!("{} bytes the harness never issued", p.len())
            }
        };
        match fields.as_slice() {
            [_, authcid, pass, ..] => format!(
                "it attempted SASL {mechanism} with authentication identity {authcid:?} and as password {}",
                password(pass)
            ),
            _ => format!("it attempted SASL {mechanism}: {}", auth.to_xml()),
        }
    }
}
