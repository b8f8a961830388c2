//! The gatekeeper's side of end-to-end encryption (SPEC.md §9): its PEP service answering
//! the IUT's iqs whenever they arrive, its users' OMEMO devices, what its users take from
//! the IUT besides content (key transport elements), and the checks of the IUT's E2EE
//! driver events. The steps are in e2ee_send.rs, e2ee_expect.rs and e2ee_keys.rs.

use std::collections::HashMap;

use rand::RngCore;
use tokio::time::Instant;

use super::Exec;
use super::e2ee_ledger::UserDevice;
use crate::e2ee;
use crate::roles::Deviation;
use crate::roles::gatekeeper_server as gk;
use crate::roles::pep::PepStore;
use crate::wire::{Element, ns};

/// One-time prekeys each gatekeeper user's device publishes.
pub(super) const USER_PREKEYS: u32 = 100;
/// The requirement a step cites when the IUT published no usable bundle.
pub(super) const PUBLISH_BUNDLE: &str = "E2EE-3";

impl Exec<'_> {
    /// Creates the gatekeeper users' devices and publishes their device lists and bundles,
    /// once per scenario: from fixtures/keys when the user has fixed identities there, else
    /// from the scenario's seed (either way, reruns give the same keys).
    pub(super) fn e2ee_ready(&mut self) -> Result<(), Deviation> {
        if self.e2ee.ready {
            return Ok(());
        }
        self.e2ee.ready = true;
        let names: Vec<String> = self.actors.iter().map(|u| u.name.clone()).collect();
        for name in names {
            let dev = self.new_user_device(&name, 0)?;
            self.e2ee.users.insert(name.clone(), vec![dev]);
            self.publish_user(&name);
        }
        Ok(())
    }

    pub(super) fn new_user_device(
        &mut self,
        name: &str,
        index: u32,
    ) -> Result<UserDevice, Deviation> {
        let (seed, id) = match e2ee::test_identity(name, index) {
            Some(t) => t,
            None => {
                let mut seed = [0u8; 32];
                self.vars.rng().fill_bytes(&mut seed);
                let id = 1 + self.vars.rng().next_u32() % (e2ee::MAX_DEVICE_ID - 1);
                (seed, id)
            }
        };
        Ok(UserDevice {
            dev: e2ee::Device::generate(id, seed, USER_PREKEYS),
            removed: false,
            bad_signature: false,
            added_later: false,
            identity_changed: false,
            first_bundles: HashMap::new(),
        })
    }

    /// Publishes a user's device list and every device's bundle in the gatekeeper's store.
    pub(super) fn publish_user(&mut self, name: &str) {
        let bare = format!("{name}@{}", gk::DOMAIN);
        let Some(devs) = self.e2ee.users.get(name) else {
            return;
        };
        let list = e2ee::DeviceList {
            devices: devs
                .iter()
                .filter(|d| !d.removed)
                .map(|d| d.dev.device_id())
                .collect(),
        };
        let mut bundles = Vec::new();
        for d in devs.iter().filter(|d| !d.removed) {
            let mut b = d.dev.bundle();
            if d.bad_signature
                && let Some(byte) = b.signature.first_mut()
            {
                *byte ^= 0x40;
            }
            bundles.push((d.dev.device_id(), b));
        }
        self.e2ee
            .pep
            .publish(&bare, e2ee::DEVICELIST_NODE, Some(list.to_element()));
        for (id, b) in bundles {
            self.e2ee
                .pep
                .publish(&bare, &e2ee::bundle_node(id), Some(b.to_element()));
        }
    }

    /// Answers a stanza the gatekeeper server handles itself (PEP, SPEC.md §9.1) on the
    /// current device's connection. `Ok(false)` when it is not one.
    pub(super) async fn serve_pep(
        &mut self,
        e: &Element,
        deadline: Instant,
    ) -> Result<bool, Deviation> {
        if !PepStore::wants(e) {
            return Ok(false);
        }
        self.e2ee_ready()?;
        let own = self.client_bare();
        let answer = self.e2ee.pep.answer(&own, e);
        if let Some((owner, node)) = &answer.changed
            && owner == &own
            && let Some(id) = e2ee::parse_bundle_node(node)
        {
            self.e2ee.iut_ids.insert(self.cur, id);
            self.e2ee.low_sent.remove(&id);
        }
        let mut reply = answer.reply;
        if let Some(jid) = self.devices[self.cur].jid.clone() {
            reply.set_attr("to", jid);
        }
        self.devices[self.cur].transcript.note(format!(
            "answered by the gatekeeper's PEP service: <{}>",
            e.name
        ));
        let text = reply.to_xml_in(ns::JABBER_CLIENT);
        self.write_bounded(text.as_bytes(), deadline).await?;
        // The IUT's other devices follow its device list (PEP notifies the account's own
        // resources).
        if let Some((owner, node)) = answer.changed
            && owner == own
            && node == e2ee::DEVICELIST_NODE
        {
            self.notify_devices(&own, &node, Some(self.cur), deadline)
                .await?;
        }
        Ok(true)
    }

    /// Sends the current item of `owner`'s `node` as a pubsub event to every connected IUT
    /// device but `except`.
    pub(super) async fn notify_devices(
        &mut self,
        owner: &str,
        node: &str,
        except: Option<usize>,
        deadline: Instant,
    ) -> Result<(), Deviation> {
        let Some(event) = self.e2ee.pep.event(owner, node) else {
            return Ok(());
        };
        let saved = self.cur;
        for i in 0..self.devices.len() {
            if Some(i) == except || self.devices[i].conn.is_none() {
                continue;
            }
            let Some(jid) = self.devices[i].jid.clone() else {
                continue;
            };
            let message = Element::new("message", ns::JABBER_CLIENT)
                .with_attr("from", owner)
                .with_attr("to", jid)
                .with_attr("type", "headline")
                .with_child(event.clone());
            self.cur = i;
            let sent = self
                .write_bounded(message.to_xml_in(ns::JABBER_CLIENT).as_bytes(), deadline)
                .await;
            self.cur = saved;
            sent?;
        }
        Ok(())
    }

    pub(super) fn client_bare(&self) -> String {
        format!("{}@{}", self.account, gk::DOMAIN)
    }

    /// A key transport element (an envelope without `<payload/>`) the IUT sent a gatekeeper
    /// user: the user's devices take the keys meant for them, advancing their sessions as
    /// XEP-0384 v0.3.0 §4.6 has clients do, and it goes to no inbox (it carries no content
    /// a step could expect). `Ok(true)` when it was one.
    pub(super) fn absorb_key_transport(
        &mut self,
        user: usize,
        e: &Element,
    ) -> Result<bool, Deviation> {
        let Some(enc) = e.child("encrypted", e2ee::NS) else {
            return Ok(false);
        };
        if e.name != "message" || enc.child("payload", e2ee::NS).is_some() {
            return Ok(false);
        }
        let env = e2ee::Envelope::from_element(enc).map_err(|err| {
            Deviation::fail(
                err.requirement,
                "a key transport element as SPEC.md §9.2",
                err.message,
            )
        })?;
        let name = self.actors[user].name.clone();
        let peer = e2ee::Address::new(self.client_bare(), env.sid);
        let mut notes = Vec::new();
        for ud in self.e2ee.users.get_mut(&name).into_iter().flatten() {
            let id = ud.dev.device_id();
            let Some(key) = env.key_for(id) else {
                continue;
            };
            // A key transport's Signal message carries the 16-byte key alone (there is no
            // payload, so no tag) or key and tag; no requirement judges it (E2EE-26 is the
            // receiver's), and a session the scenario broke on purpose cannot take it.
            match ud.dev.signal_decrypt(&peer, key) {
                Ok(d) => notes.push(format!(
                    "key transport element for {name}'s device {id}: {} key bytes taken",
                    d.plaintext.len()
                )),
                Err(err) => notes.push(format!(
                    "key transport element for {name}'s device {id} not taken: {err}"
                )),
            }
        }
        for n in notes {
            self.devices[self.cur].transcript.note(n);
        }
        Ok(true)
    }

    /// DRIVER-3 for `sent`: the gatekeeper received a message with the id the IUT claims
    /// it wrote. The IUT writes before it reports, so the stanza is due at once; what has
    /// arrived is read (and routed) for up to half a second before the claim fails.
    pub(super) async fn check_sent_claims(&mut self) -> Result<(), Deviation> {
        let until = Instant::now() + std::time::Duration::from_millis(500);
        loop {
            let received =
                |e: &super::e2ee_ledger::E2eeState, id: &str| e.iut_ids_used.contains(id);
            let open: Vec<(usize, String)> = self
                .e2ee
                .sent_claims
                .iter()
                .filter(|(_, id)| {
                    !received(&self.e2ee, id)
                        && !self
                            .actors
                            .iter()
                            .any(|u| u.inbox.iter().any(|e| e.attr("id") == Some(id.as_str())))
                })
                .cloned()
                .collect();
            let Some((dev, id)) = open.first() else {
                return Ok(());
            };
            if Instant::now() >= until {
                return Err(Deviation::fail(
                    "DRIVER-3",
                    "sent only for a message stanza the gatekeeper received",
                    format!(
                        "{}sent with id {id:?}, but no message with that id arrived",
                        self.devices[*dev].label()
                    ),
                ));
            }
            tokio::time::sleep(super::expect::SERVICE_SLICE).await;
            self.service_connections(until).await?;
        }
    }

    /// Checks the E2EE claims every IUT device made since the last check.
    pub(super) fn check_e2ee_claims(&mut self) -> Result<(), Deviation> {
        for i in 0..self.devices.len() {
            let claims = std::mem::take(&mut self.devices[i].e2ee_claims);
            let label = self.devices[i].label();
            for ev in claims {
                self.e2ee.check_claim(i, &label, &ev)?;
            }
        }
        Ok(())
    }
}
