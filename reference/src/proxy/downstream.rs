//! The gatekeeper's side of the relay: its units go to the client as received; its SASL
//! success restarts both streams; its stream error and closing tag end the pair (PROXY-5).

use gatecheck::wire::{StreamEvent, WireError, ns, stream_error_element};
use tokio::time::Instant;

use super::NAME;
use super::mutate;
use super::relay::{Relay, Step};
use crate::mutant::Mutant;

/// How long to wait for the client's closing tag once the gatekeeper ended its stream.
const CLOSE_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

impl Relay {
    /// Bytes from the gatekeeper.
    pub(super) async fn upstream_bytes(&mut self, bytes: &[u8]) -> Step {
        self.upstream.feed(bytes);
        loop {
            match self.upstream.next() {
                Ok(Some((event, raw))) => {
                    let step = self.upstream_unit(event, raw).await;
                    if step != Step::Go {
                        return step;
                    }
                }
                Ok(None) => break,
                Err(e) => return self.upstream_fault(&e).await,
            }
        }
        if self.down_header_seen {
            let settled = self.upstream.take_settled();
            if self.down_open && !settled.is_empty() {
                return self.down(&settled).await;
            }
        }
        Step::Go
    }

    async fn upstream_unit(&mut self, event: StreamEvent, raw: Vec<u8>) -> Step {
        match event {
            StreamEvent::Header(_) => {
                if self.down_header_seen {
                    // The proxy already wrote a header of its own (it is refusing the client).
                    return Step::Go;
                }
                self.down_header_seen = true;
                self.down_open = true;
                self.down(&raw).await
            }
            StreamEvent::Close => {
                let step = if self.down_open {
                    self.down(&raw).await
                } else {
                    Step::Go
                };
                self.down_open = false;
                self.upstream_ending = true;
                if step != Step::Go || !self.up_open {
                    return Step::Close;
                }
                self.deadline
                    .get_or_insert_with(|| Instant::now() + CLOSE_WAIT);
                Step::Go
            }
            StreamEvent::Stanza(e) if e.is("error", ns::STREAMS) => {
                eprintln!("{NAME}: {}: the gatekeeper sent a stream error", self.peer);
                self.upstream_ending = true;
                self.deadline
                    .get_or_insert_with(|| Instant::now() + CLOSE_WAIT);
                if self.mutant == Mutant::ProxySwallowsStreamError {
                    // PROXY-5 deviation: the correct proxy passes the stream error down.
                    return Step::Go;
                }
                if self.down_open {
                    self.down(&raw).await
                } else {
                    Step::Go
                }
            }
            StreamEvent::Stanza(e) if e.is("success", ns::SASL) => {
                let step = if self.down_open {
                    self.down(&raw).await
                } else {
                    Step::Go
                };
                if step != Step::Go {
                    return step;
                }
                self.restart();
                // A client that already sent its new header is served at once.
                self.client_bytes(&[]).await
            }
            StreamEvent::Stanza(e) => {
                if self.mutant == Mutant::ProxyAnswersDisco
                    && let Some(answer) = mutate::disco_answer(&e)
                {
                    // PROXY-10 deviation: the correct proxy forwards the request to the client
                    // and passes its answer back.
                    return self.up(answer.as_bytes()).await;
                }
                if self.answers_own_ping(&e) {
                    // The `proxy-pings-upstream` mutant's own ping was answered: the client
                    // never asked.
                    return Step::Go;
                }
                if !self.down_open {
                    return Step::Go;
                }
                let bytes = self.mutated(&e, raw).await;
                let step = self.down(&bytes).await;
                if step == Step::Go && self.mutant == Mutant::ProxyBuffersOffline {
                    // PROXY-11 deviation: the correct proxy delivers nothing it received on
                    // an earlier client connection's upstream.
                    return self.deliver_kept(&e).await;
                }
                step
            }
        }
    }

    /// SASL succeeded: both sides start new streams (RFC 6120 §6.4.6).
    fn restart(&mut self) {
        self.client.restart();
        self.upstream.restart();
        self.stage.authenticated = true;
        self.client_header_seen = false;
        self.up_open = false;
        self.down_header_seen = false;
        self.down_open = false;
    }

    /// The gatekeeper's bytes are not a stream the proxy can relay: the stream error it
    /// calls for goes up, the client's stream is closed.
    async fn upstream_fault(&mut self, e: &WireError) -> Step {
        eprintln!(
            "{NAME}: {}: the gatekeeper's input is unusable: {e}",
            self.peer
        );
        if self.up_open {
            let error = stream_error_element(e.condition(), None).to_xml_in(ns::JABBER_CLIENT);
            let _ = self.up(error.as_bytes()).await;
        }
        Step::Close
    }
}
