//! Proxy scenarios whose checks rest on the client-facing stream only:
//! `downstream_connect = { upstream = "optional" }` (scenarios/README.md, Proxy scenarios).
//!
//! A proxy opens one upstream connection for its client (PROXY-3); the harness's gatekeeper
//! accepts and serves it as in every proxy scenario (the PROXY v2 header, the Noise
//! handshake, the relayed login, pings to the gatekeeper answered), so a real proxy takes
//! these scenarios like any other. An implementation that opens none, an XMPP server in the
//! proxy's place that serves the client's stream itself, is not judged for that: what is
//! judged is what reaches the client. An upstream connection before the client's handshake
//! completed, or a second one, still fails PROXY-3.
//!
//! `downstream_expect_stream_error` is here too: the stream error a receiver owes the client
//! (RFC 6120 §4.9), its condition graded as `expect_stream_error` grades the client role's.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::time::Instant;

use super::Exec;
use super::proxy::{Client, UpstreamMode};
use super::proxy_steps::{AUTH_UNCHANGED, NO_CHANGED_IDENTIFIERS};
use crate::roles::Deviation;
use crate::roles::conn::{Inbound, IutConn};
use crate::roles::downstream::{self, Down, Downstream, Upto};
use crate::roles::gatekeeper_options::{HandshakeMode, Negotiate, SaslAnswer, Stage};
use crate::roles::gatekeeper_server::{self as gk, Credentials};
use crate::roles::upstream;
use crate::scenario::Step;
use crate::scenario::proxy_step::DownstreamConnect;
use crate::scenario::step::{Grade, StreamErrorExpect};
use crate::wire::{Element, ns};

/// How often a wait on an optional client's stream looks at its upstream side.
const SLICE: Duration = Duration::from_millis(20);
/// What one look at the upstream side reads at most (a flood is read on the next look).
const READ_AT_ONCE: usize = 64;
/// RFC 6120 §4.9.2: a stream error has exactly one defined condition (STREAM-24).
const STREAM_ERROR_SYNTAX: &str = "STREAM-24";

impl Exec<'_> {
    /// The rest of a `downstream_connect` with an optional upstream, once the client's
    /// handshake is done: the client logs in up to `upto` while the gatekeeper accepts an
    /// upstream connection if one comes and negotiates on it. The login's end without one
    /// means the IUT served the client's stream itself. A connect that stops at the handshake
    /// leaves the client's upstream pending: one that comes later is served while the
    /// client's steps wait ([`Exec::down_next`]).
    pub(super) async fn optional_upstream(
        &mut self,
        c: &DownstreamConnect,
        down: Downstream,
        deadline: Instant,
    ) -> Result<Client, Deviation> {
        let name = c.client.clone();
        let mut client = Client {
            name: name.clone(),
            down,
            up: None,
            backlog: VecDeque::new(),
            mode: UpstreamMode::Optional { pending: false },
        };
        let Some(upto) = c.upto else {
            client.mode = UpstreamMode::Optional { pending: true };
            self.transcript.note(format!(
                "downstream {name}: upstream optional; one the IUT opens later is served while the client's steps wait"
            ));
            return Ok(client);
        };
        self.keys()?;
        let up_transcript = self.transcript.for_device(&format!("upstream {name}"));
        let (account, credential) = (self.account.clone(), self.credential.clone());
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
        // The two sides' futures borrow parts of `self`: they end with this block.
        let (jid, up, gk_jid) = {
            let Exec {
                proxy, keys, vars, ..
            } = &mut *self;
            let listener = &proxy
                .as_ref()
                .ok_or_else(|| Deviation::error("no proxy"))?
                .listener;
            let keys = keys
                .as_ref()
                .ok_or_else(|| Deviation::error("no server keys"))?;
            let rng = vars.rng();
            let accepted = AtomicBool::new(false);
            let client_side = client.down.login(upto, &account, &credential, deadline);
            let gatekeeper_side = async {
                let (tcp, peer) = listener
                    .accept()
                    .await
                    .map_err(|e| Deviation::error(format!("upstream accept failed: {e}")))?;
                accepted.store(true, Ordering::SeqCst);
                let _ = tcp.set_nodelay(true);
                up_transcript.note(format!("upstream connection from the proxy at {peer}"));
                let Some(mut conn) = upstream::accept(
                    tcp,
                    HandshakeMode::Normal,
                    keys,
                    deadline,
                    &up_transcript,
                    &mut *rng,
                )
                .await?
                else {
                    return Ok((None, None));
                };
                let done = gk::negotiate(&mut conn, &n, &creds, deadline, &mut *rng)
                    .await
                    .map_err(|mut d| {
                        if d.requirement.as_deref() == Some(gk::req::SASL_PLAIN) {
                            d.requirement = Some(AUTH_UNCHANGED.into());
                        }
                        d
                    })?;
                Ok::<_, Deviation>((Some(conn), done.jid))
            };
            tokio::pin!(client_side, gatekeeper_side);
            let sides = tokio::select! {
                jid = &mut client_side => {
                    let jid = jid?;
                    if accepted.load(Ordering::SeqCst) {
                        let (conn, gk_jid) = gatekeeper_side.await?;
                        (jid, conn, gk_jid)
                    } else {
                        (jid, None, None)
                    }
                }
                up = &mut gatekeeper_side => {
                    let (conn, gk_jid) = up?;
                    (client_side.await?, conn, gk_jid)
                }
            };
            sides
        };
        let relayed = up.is_some();
        if !relayed {
            self.transcript.note(format!(
                "downstream {name}: no upstream connection; the IUT served the client's stream itself (upstream optional: not judged)"
            ));
        }
        if relayed && upto == Upto::Session && jid != gk_jid {
            return Err(Deviation::fail(
                NO_CHANGED_IDENTIFIERS,
                format!(
                    "the bound JID the gatekeeper assigned, {}, forwarded unchanged",
                    gk_jid.unwrap_or_default()
                ),
                format!("the client was told {}", jid.unwrap_or_default()),
            ));
        }
        if let Some(jid) = jid {
            self.vars.set(&format!("{name}.jid"), jid);
        }
        client.up = up;
        Ok(client)
    }

    /// The next thing from the proxy to `client`, or `None` at `deadline`. For a client with
    /// an optional upstream, the gatekeeper meanwhile serves its upstream side: it accepts the
    /// upstream connection still pending, and answers the pings addressed to it.
    pub(super) async fn down_next(
        &mut self,
        client: &str,
        deadline: Instant,
    ) -> Result<Option<Down>, Deviation> {
        let i = self.client_index(client)?;
        if self.proxy_state()?.clients[i].mode == UpstreamMode::Required {
            return Ok(self.down(client)?.next(deadline).await);
        }
        loop {
            self.serve_optional_upstream(i, deadline).await?;
            let slice = deadline.min(Instant::now() + SLICE);
            match self.down(client)?.next(slice).await {
                Some(d) => return Ok(Some(d)),
                None if Instant::now() >= deadline => return Ok(None),
                None => {}
            }
        }
    }

    fn client_index(&mut self, name: &str) -> Result<usize, Deviation> {
        self.proxy_state()?
            .clients
            .iter()
            .position(|c| c.name == name)
            .ok_or_else(|| Deviation::error(format!("no downstream client {name:?}")))
    }

    /// One look at client `i`'s upstream side, without waiting: a pending upstream
    /// connection that has come is accepted and served (header, Noise); pings to the
    /// gatekeeper that have arrived are answered, as a server answers them (RFC 6120 §8.2.3,
    /// XEP-0199); anything else is left in the transcript, not judged.
    async fn serve_optional_upstream(
        &mut self,
        i: usize,
        deadline: Instant,
    ) -> Result<(), Deviation> {
        let p = self.proxy_state()?;
        if p.clients[i].mode == (UpstreamMode::Optional { pending: true }) {
            let ready = {
                let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
                p.listener.poll_accept(&mut cx)
            };
            if let std::task::Poll::Ready(accepted) = ready {
                let (tcp, peer) = accepted
                    .map_err(|e| Deviation::error(format!("upstream accept failed: {e}")))?;
                p.clients[i].mode = UpstreamMode::Optional { pending: false };
                let name = p.clients[i].name.clone();
                let _ = tcp.set_nodelay(true);
                let up_transcript = self.transcript.for_device(&format!("upstream {name}"));
                up_transcript.note(format!("upstream connection from the proxy at {peer}"));
                self.keys()?;
                let Exec { keys, vars, .. } = &mut *self;
                let keys = keys
                    .as_ref()
                    .ok_or_else(|| Deviation::error("no server keys"))?;
                let conn = upstream::accept(
                    tcp,
                    HandshakeMode::Normal,
                    keys,
                    deadline,
                    &up_transcript,
                    vars.rng(),
                )
                .await?;
                *self.upstream_slot(i)? = conn;
            }
        }
        let name = self.proxy_state()?.clients[i].name.clone();
        let jid = self.vars.get(&format!("{name}.jid")).unwrap_or_default();
        let transcript = self.transcript.clone();
        let Some(conn) = self.upstream_slot(i)?.as_mut() else {
            return Ok(());
        };
        for _ in 0..READ_AT_ONCE {
            if conn.is_ended() {
                break;
            }
            let Some(got) = conn.next(Instant::now()).await else {
                break;
            };
            let Inbound::Stanza(e) = got else {
                continue;
            };
            match ping_answer(&e, &jid) {
                Some(answer) => {
                    let sent = tokio::time::timeout_at(deadline, conn.send(answer.as_bytes()));
                    if !matches!(sent.await, Ok(Ok(()))) {
                        transcript.note("upstream: the ping's answer could not be written");
                    }
                }
                None => transcript.note(format!(
                    "upstream: {} (upstream optional: not judged)",
                    e.name
                )),
            }
        }
        Ok(())
    }

    /// Where client `i`'s upstream connection is: the device slot while it is the current
    /// client, else its own.
    fn upstream_slot(&mut self, i: usize) -> Result<&mut Option<IutConn>, Deviation> {
        if self.proxy_state()?.current == Some(i) {
            return Ok(&mut self.devices[0].conn);
        }
        Ok(&mut self.proxy_state()?.clients[i].up)
    }

    /// The proxy must send the client a `<stream:error>` with exactly one condition
    /// (STREAM-24), graded: a `pass` condition passes, a `warn` one passes with a warning
    /// naming the SHOULD-level requirement it misses, any other fails the step's requirement.
    /// When the proxy has not opened a stream towards the client yet, its stream header comes
    /// first (RFC 6120 §4.9.1.2); any other element before the error fails.
    pub(super) async fn downstream_expect_stream_error(
        &mut self,
        step: &Step,
        client: &str,
        expect: &StreamErrorExpect,
        deadline: Instant,
    ) -> Result<(), Deviation> {
        self.select_client(client)?;
        let expected = format!(
            "from the proxy to client {client:?}: <stream:error> with condition {}",
            expect.pass.join(" or ")
        );
        let mut header_allowed = self.down(client)?.headers_received() == 0;
        loop {
            let got = self.down_next(client, deadline).await?;
            let e = match got {
                Some(Down::Header(_)) if header_allowed => {
                    header_allowed = false;
                    continue;
                }
                Some(Down::Stanza(e)) => e,
                other => return Err(downstream::unexpected(other, &expected)),
            };
            if !e.is("error", ns::STREAMS) {
                if self.ignorable(step, &e)? {
                    continue;
                }
                return Err(Deviation::fail_here(expected, e.to_xml()));
            }
            let conditions: Vec<&Element> = e
                .child_elements()
                .filter(|c| c.ns == ns::STREAM_ERRORS && c.name != "text")
                .collect();
            let [condition] = conditions.as_slice() else {
                return Err(Deviation::fail(
                    STREAM_ERROR_SYNTAX,
                    "a <stream:error> with exactly one condition element in urn:ietf:params:xml:ns:xmpp-streams",
                    e.to_xml(),
                ));
            };
            return match (expect.grade(&condition.name), &expect.should) {
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
                // The requirement that names the condition is the step's (STREAM-30 for
                // not-well-formed, ...).
                _ => Err(Deviation::fail_here(expected, e.to_xml())),
            };
        }
    }
}

/// The gatekeeper's answer to a ping addressed to it (no `to`, or its domain), if `e` is one.
fn ping_answer(e: &Element, jid: &str) -> Option<String> {
    let to_gatekeeper = e.attr("to").is_none_or(|to| to == gk::DOMAIN);
    if !e.is("iq", ns::JABBER_CLIENT)
        || e.attr("type") != Some("get")
        || e.child("ping", ns::PING).is_none()
        || !to_gatekeeper
    {
        return None;
    }
    let mut answer = Element::new("iq", ns::JABBER_CLIENT)
        .with_attr("type", "result")
        .with_attr("id", e.attr("id").unwrap_or_default())
        .with_attr("from", gk::DOMAIN);
    let to = e.attr("from").unwrap_or(jid);
    if !to.is_empty() {
        answer.set_attr("to", to);
    }
    Some(answer.to_xml_in(ns::JABBER_CLIENT))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn el(xml: &str) -> Element {
        crate::wire::parse_fragment(xml.as_bytes(), &crate::wire::Limits::harness_ceilings())
            .expect("xml")
    }

    #[test]
    fn pings_to_the_gatekeeper_are_answered_and_nothing_else() {
        let jid = "alice@gk.gatecheck.test/r";
        let answer = ping_answer(
            &el("<iq xmlns='jabber:client' type='get' id='p1'><ping xmlns='urn:xmpp:ping'/></iq>"),
            jid,
        )
        .expect("answered");
        // Written for the jabber:client stream: its default namespace is the stream's.
        let stream = el(&format!("<s xmlns='jabber:client'>{answer}</s>"));
        let a = stream.child_elements().next().expect("the answer").clone();
        assert!(a.is("iq", ns::JABBER_CLIENT), "{answer}");
        assert_eq!(a.attr("type"), Some("result"));
        assert_eq!(a.attr("id"), Some("p1"));
        assert_eq!(a.attr("to"), Some(jid));
        assert_eq!(a.child_elements().count(), 0);
        assert!(
            ping_answer(
                &el("<iq xmlns='jabber:client' type='get' id='p2' to='gk.gatecheck.test' from='x@y/z'><ping xmlns='urn:xmpp:ping'/></iq>"),
                jid
            )
            .is_some_and(|a| a.contains("to=\"x@y/z\""))
        );
        for other in [
            "<iq xmlns='jabber:client' type='get' id='p3' to='bob@gk.gatecheck.test'><ping xmlns='urn:xmpp:ping'/></iq>",
            "<iq xmlns='jabber:client' type='set' id='p4'><ping xmlns='urn:xmpp:ping'/></iq>",
            "<iq xmlns='jabber:client' type='get' id='p5'><query xmlns='jabber:iq:version'/></iq>",
            "<message xmlns='jabber:client' id='m'><ping xmlns='urn:xmpp:ping'/></message>",
        ] {
            assert_eq!(ping_answer(&el(other), jid), None, "{other}");
        }
    }
}
