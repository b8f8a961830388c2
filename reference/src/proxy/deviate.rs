//! The proxy mutants' deviations that need a relay's state: pings of its own upstream
//! (`proxy-pings-upstream`, PROXY-9) and stanzas kept for an account's next client connection
//! (`proxy-buffers-offline`, PROXY-11). The byte-level ones are in [`super::mutate`]. The
//! correct proxy sends nothing of its own and keeps nothing once its client is gone.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use gatecheck::wire::{Element, StreamEvent, ns};
use tokio::sync::mpsc;
use tokio::time::timeout;

use super::relay::{Inbound, Relay, Step};
use super::{NAME, mutate};
use crate::mutant::Mutant;

/// How long `proxy-buffers-offline` keeps an upstream stream open after its client left
/// (less than PROXY-4's 5 s, so that only what it keeps shows).
const GRACE: Duration = Duration::from_secs(3);
/// The most stanzas kept for one account.
const KEEP_AT_MOST: usize = 64;
/// The most of its own pings one connection waits for answers to.
const PINGS_AT_MOST: usize = 16;

/// Stanzas kept per account (bare JID), each as the gatekeeper sent it.
#[derive(Default)]
pub struct Kept(Mutex<HashMap<String, Vec<Vec<u8>>>>);

impl Kept {
    fn push(&self, account: &str, stanza: Vec<u8>) {
        if let Ok(mut map) = self.0.lock() {
            let kept = map.entry(account.to_owned()).or_default();
            if kept.len() < KEEP_AT_MOST {
                kept.push(stanza);
            }
        }
    }

    fn take(&self, account: &str) -> Vec<Vec<u8>> {
        self.0
            .lock()
            .ok()
            .and_then(|mut map| map.remove(account))
            .unwrap_or_default()
    }
}

impl Relay {
    /// `proxy-pings-upstream`: a ping of the proxy's own goes up in place of the client's
    /// keepalive.
    pub(super) async fn own_ping(&mut self) -> Step {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        let id = format!("proxy-ping-{}", NEXT.fetch_add(1, Ordering::Relaxed));
        if self.own_pings.len() >= PINGS_AT_MOST {
            self.own_pings.remove(0);
        }
        let ping = mutate::own_ping(&id);
        self.own_pings.push(id);
        self.up(ping.as_bytes()).await
    }

    /// Whether `e` is the gatekeeper's answer to one of the proxy's own pings (which the
    /// `proxy-pings-upstream` mutant drops; the correct proxy sends none).
    pub(super) fn answers_own_ping(&mut self, e: &Element) -> bool {
        if self.mutant != Mutant::ProxyPingsUpstream
            || !e.is("iq", ns::JABBER_CLIENT)
            || !matches!(e.attr("type"), Some("result" | "error"))
        {
            return false;
        }
        let Some(at) = self
            .own_pings
            .iter()
            .position(|id| e.attr("id") == Some(id.as_str()))
        else {
            return false;
        };
        self.own_pings.remove(at);
        true
    }

    /// `proxy-buffers-offline`, once the client went: the upstream stream stays open for
    /// [`GRACE`] (or until the gatekeeper ends it), and each stanza the gatekeeper sends
    /// meanwhile is kept for the account's next connection.
    pub(super) async fn keep_late(&mut self, from_upstream: &mut mpsc::Receiver<Inbound>) {
        let account = self.account.clone().unwrap_or_default();
        let keep = async {
            while let Some(Ok(Some(bytes))) = from_upstream.recv().await {
                self.upstream.feed(&bytes);
                while let Ok(Some((event, raw))) = self.upstream.next() {
                    match event {
                        StreamEvent::Stanza(e)
                            if e.ns == ns::JABBER_CLIENT && !account.is_empty() =>
                        {
                            eprintln!(
                                "{NAME}: {}: keeping a <{}> for {account}",
                                self.peer, e.name
                            );
                            self.shared.kept.push(&account, raw);
                        }
                        StreamEvent::Stanza(_) | StreamEvent::Header(_) => {}
                        StreamEvent::Close => return,
                    }
                }
            }
        };
        let _ = timeout(GRACE, keep).await;
    }

    /// `proxy-buffers-offline`: after the bind result `e` went down, what was kept for the
    /// account follows it.
    pub(super) async fn deliver_kept(&mut self, e: &Element) -> Step {
        let bound = e.is("iq", ns::JABBER_CLIENT)
            && e.attr("type") == Some("result")
            && e.child("bind", ns::BIND).is_some();
        let Some(account) = self.account.clone().filter(|_| bound) else {
            return Step::Go;
        };
        for stanza in self.shared.kept.take(&account) {
            let step = self.down(&stanza).await;
            if step != Step::Go {
                return step;
            }
        }
        Step::Go
    }
}
