//! `e2ee_send`: a gatekeeper user encrypts a message to the IUT's account (correctly, or
//! broken on purpose as the step says), and the server delivers it to every connected IUT
//! device; the ledger records what the IUT may do with it.

use rand::RngCore;
use tokio::time::Instant;

use super::Exec;
use super::e2ee::PUBLISH_BUNDLE;
use super::e2ee_ledger::{Kind, SentMessage};
use crate::e2ee::{self, Address};
use crate::roles::Deviation;
use crate::roles::gatekeeper_server as gk;
use crate::roles::pep;
use crate::scenario::Step;
use crate::scenario::step::{E2eeSend, Tamper};
use crate::wire::{Element, ns};

const BUNDLE_SIGNED: &str = "E2EE-4";

impl Exec<'_> {
    /// `e2ee_send`: the acting user encrypts a message to the IUT's account and the server
    /// delivers it to every IUT device that is connected.
    pub(super) async fn e2ee_send(
        &mut self,
        step: &Step,
        actor: &str,
        s: &E2eeSend,
        deadline: Instant,
    ) -> Result<(), Deviation> {
        self.e2ee_ready()?;
        if let Some(name) = s.release.as_ref().or(s.replay.as_ref()) {
            let stanza = self.e2ee.kept.get(name).cloned().ok_or_else(|| {
                Deviation::error(format!(
                    "e2ee_send: no message named {name} was sent or held"
                ))
            })?;
            if s.release.is_some() && !self.e2ee.held.remove(name) {
                return Err(Deviation::error(format!(
                    "e2ee_send: message {name} is not held (release it once)"
                )));
            }
            return self.deliver_to_iut(stanza, deadline).await;
        }
        let user_jid = self
            .actors
            .iter()
            .find(|u| u.name == actor)
            .map(|u| u.jid.clone())
            .ok_or_else(|| Deviation::error(format!("no actor {actor}")))?;
        let bare = format!("{actor}@{}", gk::DOMAIN);
        let text = match &s.text {
            Some(t) => Some(self.vars.substitute(t).map_err(Deviation::error)?),
            None => None,
        };
        if let Some(t) = &text {
            self.e2ee.texts.push(t.clone());
        }
        // The recipients: every connected IUT device, with the keys it published.
        let mut recipients = Vec::new();
        for i in 0..self.devices.len() {
            if self.devices[i].conn.is_some() {
                let id = self.iut_device_id(step, i, deadline).await?;
                recipients.push(Address::new(self.client_bare(), id));
            }
        }
        let own = self.client_bare();
        let mut low = Vec::new();
        let kind;
        let after_identity_change;
        let envelope = {
            let devs = self
                .e2ee
                .users
                .get_mut(actor)
                .ok_or_else(|| Deviation::error(format!("no actor {actor}")))?;
            let ud = devs.get_mut(s.from_device).ok_or_else(|| {
                Deviation::error(format!("{actor} has no device {}", s.from_device))
            })?;
            after_identity_change = ud.identity_changed;
            for r in &recipients {
                if ud.dev.has_session(r) && !s.reuse_prekey {
                    continue;
                }
                let bundle = match (s.reuse_prekey, ud.first_bundles.get(&r.device)) {
                    (true, Some(b)) => {
                        ud.dev.forget_session(r);
                        b.clone()
                    }
                    (true, None) => {
                        return Err(Deviation::error(
                            "e2ee_send: reuse_prekey needs an earlier message that set a session up",
                        ));
                    }
                    (false, _) => {
                        let Some(h) = self.e2ee.pep.hand_out(&own, r.device) else {
                            return Err(Deviation::fail(
                                PUBLISH_BUNDLE,
                                format!("a valid bundle of the IUT's device {}", r.device),
                                "none stored (see the transcript's PEP publications)",
                            ));
                        };
                        if h.remaining < pep::LOW_WATER {
                            low.push(r.device);
                        }
                        h.bundle
                    }
                };
                bundle.verify().map_err(|e| {
                    Deviation::fail(
                        BUNDLE_SIGNED,
                        "a bundle whose signed prekey verifies",
                        e.message,
                    )
                })?;
                ud.dev
                    .start_session(r, &bundle)
                    .map_err(|e| Deviation::fail(e.requirement, "a usable bundle", e.message))?;
                ud.first_bundles.entry(r.device).or_insert(bundle);
            }
            kind = send_kind(s);
            if s.plaintext_only {
                None
            } else {
                let plain = text.clone().unwrap_or_default();
                for _ in 0..s.skip {
                    ud.dev
                        .encrypt(&recipients, b"skipped")
                        .map_err(|e| Deviation::error(format!("encrypt: {e}")))?;
                }
                let mut env = if s.iv_len == e2ee::IV_LEN {
                    ud.dev.encrypt(&recipients, plain.as_bytes())
                } else {
                    let mut key = [0u8; 16];
                    let mut iv = vec![0u8; s.iv_len];
                    self.vars.rng().fill_bytes(&mut key);
                    self.vars.rng().fill_bytes(&mut iv);
                    ud.dev.encrypt_with(&recipients, plain.as_bytes(), key, iv)
                }
                .map_err(|e| Deviation::error(format!("encrypt: {e}")))?;
                if s.key_transport {
                    env.payload = None;
                }
                match s.tamper {
                    Some(Tamper::Payload) => {
                        if let Some(byte) = env.payload.as_mut().and_then(|p| p.first_mut()) {
                            *byte ^= 0x01;
                        }
                    }
                    Some(Tamper::Key) => {
                        for k in &mut env.keys {
                            if let Some(byte) = k.data.last_mut() {
                                *byte ^= 0x01;
                            }
                        }
                    }
                    Some(Tamper::Sid) => env.sid = unknown_device(env.sid),
                    None => {}
                }
                if s.no_key {
                    // The key is there, but for a device the IUT is not: it must not try it.
                    for k in &mut env.keys {
                        k.rid = unknown_device(k.rid);
                    }
                }
                Some(env)
            }
        };
        for id in low {
            if self.e2ee.low_sent.insert(id)
                && let Some(i) = self
                    .e2ee
                    .iut_ids
                    .iter()
                    .find(|(_, v)| **v == id)
                    .map(|(k, _)| *k)
            {
                let saved = self.cur;
                self.cur = i;
                let r = self.send_prekeys_low(id, deadline).await;
                self.cur = saved;
                r?;
            }
        }
        let id = format!("gc-{}", crate::roles::random_token(self.vars.rng(), 16));
        let mut message = Element::new("message", ns::JABBER_CLIENT)
            .with_attr("type", "chat")
            .with_attr("from", user_jid)
            .with_attr("to", own)
            .with_attr("id", id.clone());
        if let Some(env) = &envelope {
            message = message.with_child(env.to_element());
        }
        let mut decoy = None;
        if let Some(body) = s.body.as_ref().or(if s.plaintext_only {
            text.as_ref()
        } else {
            None
        }) {
            let body = self.vars.substitute(body).map_err(Deviation::error)?;
            self.e2ee.texts.push(body.clone());
            decoy = Some(body.clone());
            message = message.with_child(Element::new("body", ns::JABBER_CLIENT).with_text(body));
        }
        if s.receipt {
            message = message.with_child(Element::new("request", ns::RECEIPTS));
        }
        message = message.with_child(Element::new("store", ns::HINTS));
        let from_device = self
            .e2ee
            .users
            .get(actor)
            .and_then(|d| d.get(s.from_device))
            .map_or(0, |d| d.dev.device_id());
        self.e2ee.sent.insert(
            id.clone(),
            SentMessage {
                text,
                body: decoy,
                kind,
                from_bare: bare,
                from_device,
                after_identity_change,
            },
        );
        self.vars.set("e2ee.id", id.clone());
        if let Some(name) = &s.name {
            self.vars.set(&format!("{name}.id"), id);
            self.e2ee.kept.insert(name.clone(), message.clone());
            if s.hold {
                self.e2ee.held.insert(name.clone());
                return Ok(());
            }
        }
        self.deliver_to_iut(message, deadline).await
    }

    /// Writes a stanza from a gatekeeper user to every connected IUT device.
    async fn deliver_to_iut(
        &mut self,
        message: Element,
        deadline: Instant,
    ) -> Result<(), Deviation> {
        let text = message.to_xml_in(ns::JABBER_CLIENT);
        let saved = self.cur;
        for i in 0..self.devices.len() {
            if self.devices[i].conn.is_none() {
                continue;
            }
            self.cur = i;
            let r = self.write_bounded(text.as_bytes(), deadline).await;
            self.cur = saved;
            r?;
        }
        Ok(())
    }
}

/// What the IUT may do with a message built by `s`.
fn send_kind(s: &E2eeSend) -> Kind {
    if s.plaintext_only {
        Kind::Refused("E2EE-31", "a plaintext <body/> without an envelope")
    } else if s.key_transport {
        Kind::Refused("E2EE-26", "a key transport element without <payload/>")
    } else if s.no_key {
        Kind::Refused("E2EE-21", "no <key/> for the IUT's device")
    } else if s.tamper == Some(Tamper::Payload) {
        Kind::Refused("E2EE-17", "a payload whose GCM tag does not verify")
    } else if s.tamper == Some(Tamper::Key) {
        Kind::Refused("E2EE-21", "a Signal message that does not decrypt")
    } else if s.tamper == Some(Tamper::Sid) {
        Kind::Refused(
            "E2EE-21",
            "a message from a device the IUT has no session with",
        )
    } else if s.reuse_prekey {
        Kind::Refused(
            "E2EE-8",
            "a one-time prekey already used, with a new base key",
        )
    } else {
        Kind::Valid
    }
}

/// A device id next to `id` that no party of the scenario uses (ids are random 31-bit).
fn unknown_device(id: u32) -> u32 {
    if id >= e2ee::MAX_DEVICE_ID { 1 } else { id + 1 }
}
