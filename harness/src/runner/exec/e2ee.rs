//! The gatekeeper's side of end-to-end encryption (SPEC.md §9): its PEP service answering
//! the IUT's iqs whenever they arrive, its users' OMEMO devices, and the steps by which a
//! user encrypts to the IUT (`e2ee_send`) and the IUT's published keys are judged
//! (`e2ee_keys`, `e2ee_devices`).

use std::collections::HashMap;

use rand::RngCore;
use tokio::time::Instant;

use super::Exec;
use super::e2ee_ledger::{Kind, SentMessage, UserDevice};
use crate::e2ee::{self, Address};
use crate::roles::Deviation;
use crate::roles::conn::Inbound;
use crate::roles::gatekeeper_server as gk;
use crate::roles::pep::{self, PepStore};
use crate::scenario::Step;
use crate::scenario::step::{E2eeDevices, E2eeKeys, E2eeSend, Tamper};
use crate::wire::{Element, ns};

/// One-time prekeys each gatekeeper user's device publishes.
const USER_PREKEYS: u32 = 100;
/// The requirement a step cites when the IUT published no usable keys.
const PUBLISH_LIST: &str = "E2EE-2";
const PUBLISH_BUNDLE: &str = "E2EE-3";
const BUNDLE_SIGNED: &str = "E2EE-4";
const ENOUGH_PREKEYS: &str = "E2EE-5";
const REPLENISH: &str = "E2EE-6";
const DEVICE_ID: &str = "E2EE-1";
/// What E2EE-5 and E2EE-6 ask for (SPEC.md Appendix B).
const MIN_PREKEYS: usize = 100;

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

    fn new_user_device(&mut self, name: &str, index: u32) -> Result<UserDevice, Deviation> {
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
    fn publish_user(&mut self, name: &str) {
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
    async fn notify_devices(
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

    /// Waits, answering PEP iqs, until IUT instance `dev` has published a bundle; its
    /// OMEMO device id.
    async fn iut_device_id(
        &mut self,
        step: &Step,
        dev: usize,
        deadline: Instant,
    ) -> Result<u32, Deviation> {
        let saved = self.cur;
        self.cur = dev;
        let r = self
            .await_publication(step, dev, None, false, deadline)
            .await;
        self.cur = saved;
        r
    }

    /// Reads the current device until it publishes a bundle (after publication `after`,
    /// when given; with `with_list`, and a device list naming it); stanzas other than PEP
    /// iqs must be ignorable meanwhile.
    async fn await_publication(
        &mut self,
        step: &Step,
        dev: usize,
        after: Option<usize>,
        with_list: bool,
        deadline: Instant,
    ) -> Result<u32, Deviation> {
        let own = self.client_bare();
        loop {
            let published = self.e2ee.pep.publications().iter().any(|p| {
                p.owner == own
                    && after.is_none_or(|a| p.index > a)
                    && e2ee::parse_bundle_node(&p.node)
                        .is_some_and(|id| self.e2ee.iut_ids.get(&dev) == Some(&id))
            });
            if published && let Some(id) = self.e2ee.iut_ids.get(&dev) {
                let listed = self.e2ee.pep.device_list(&own).contains(id);
                if listed || !with_list {
                    return Ok(*id);
                }
            }
            // Read directly (next_for would keep reading after serving the publication).
            let got = self.read_conn(deadline).await?;
            if let Some(Inbound::Stanza(e)) = &got {
                let label = self.devices[self.cur].label();
                self.e2ee.scan(&label, e)?;
                if self.serve_pep(e, deadline).await? {
                    continue;
                }
            }
            match got {
                Some(Inbound::Stanza(e)) if self.ignorable(step, &e)? => {}
                None => {
                    let (req, what) = if after.is_some() {
                        (REPLENISH, "a republished bundle after prekeys-low")
                    } else if self.e2ee.pep.device_list(&own).is_empty() {
                        (
                            PUBLISH_LIST,
                            "the IUT's device list and bundle (SPEC.md §9.1)",
                        )
                    } else {
                        (PUBLISH_BUNDLE, "the IUT's bundle (SPEC.md §9.1)")
                    };
                    return Err(Deviation::fail(
                        req,
                        what,
                        format!(
                            "{}nothing published before the step's deadline",
                            self.dev().label()
                        ),
                    ));
                }
                other => {
                    return Err(gk::unexpected(
                        other,
                        "the IUT to publish its keys (SPEC.md §9.1)",
                        "",
                    )
                    .into_here());
                }
            }
        }
    }

    /// `e2ee_keys`: the current IUT device's device list and bundle, as published.
    pub(super) async fn e2ee_keys(
        &mut self,
        step: &Step,
        k: &E2eeKeys,
        deadline: Instant,
    ) -> Result<(), Deviation> {
        self.e2ee_ready()?;
        let dev = self.cur;
        let id = self
            .await_publication(step, dev, None, true, deadline)
            .await?;
        self.judge_keys(id, MIN_PREKEYS, ENOUGH_PREKEYS)?;
        if !k.low {
            return Ok(());
        }
        // Hand out prekeys (as fetches by other users would) until fewer than 25 remain,
        // then say so, as SPEC.md §9.1 has the gatekeeper do.
        let own = self.client_bare();
        while self.e2ee.pep.remaining(&own, id) >= pep::LOW_WATER {
            self.e2ee.pep.hand_out(&own, id);
        }
        let before = self.e2ee.pep.publications().len().saturating_sub(1);
        self.send_prekeys_low(id, deadline).await?;
        // E2EE-6 allows 60 s: the wait is that long whatever the step's own limit.
        let bound = crate::spec::embedded_time_bound(REPLENISH)
            .unwrap_or(std::time::Duration::from_secs(60));
        let until = deadline.max(Instant::now() + bound);
        self.await_publication(step, dev, Some(before), false, until)
            .await?;
        self.judge_keys(id, MIN_PREKEYS, REPLENISH)
    }

    async fn send_prekeys_low(&mut self, id: u32, deadline: Instant) -> Result<(), Deviation> {
        let Some(jid) = self.devices[self.cur].jid.clone() else {
            return Ok(());
        };
        let remaining = self.e2ee.pep.remaining(&self.client_bare(), id);
        let notice = pep::prekeys_low(gk::DOMAIN, &jid, remaining);
        self.e2ee.low_sent.insert(id);
        self.write_bounded(notice.to_xml_in(ns::JABBER_CLIENT).as_bytes(), deadline)
            .await
    }

    /// Judges the IUT's last publications for device `id`.
    fn judge_keys(&self, id: u32, min: usize, min_req: &'static str) -> Result<(), Deviation> {
        let own = self.client_bare();
        if id == 0 || id > e2ee::MAX_DEVICE_ID {
            return Err(Deviation::fail(
                DEVICE_ID,
                "a device id from 1 to 2147483647",
                format!("device id {id}"),
            ));
        }
        let list = self.e2ee.pep.device_list(&own);
        if !list.contains(&id) {
            return Err(Deviation::fail(
                PUBLISH_LIST,
                format!("a published device list containing the IUT's device {id}"),
                format!("device list {list:?}"),
            ));
        }
        let node = e2ee::bundle_node(id);
        for p in self
            .e2ee
            .pep
            .publications()
            .iter()
            .filter(|p| p.owner == own)
        {
            if (p.node == node || p.node == e2ee::DEVICELIST_NODE)
                && let Some(problem) = p.problems.first()
            {
                return Err(Deviation::fail(
                    problem.requirement,
                    format!("{} as SPEC.md §9.1 specifies", p.node),
                    problem.message.clone(),
                ));
            }
        }
        let Some(bundle) = self.e2ee.pep.bundle(&own, id) else {
            return Err(Deviation::fail(
                PUBLISH_BUNDLE,
                format!("a bundle at {node}"),
                "none stored",
            ));
        };
        bundle.verify().map_err(|e| {
            Deviation::fail(
                BUNDLE_SIGNED,
                "a signed prekey signed by the identity key",
                e.message,
            )
        })?;
        if bundle.prekeys.len() < min {
            return Err(Deviation::fail(
                min_req,
                format!("at least {min} one-time prekeys the gatekeeper has not handed out"),
                format!(
                    "{} ({} handed out before)",
                    bundle.prekeys.len(),
                    self.e2ee.pep.handed_out(&own, id).len()
                ),
            ));
        }
        Ok(())
    }

    /// `e2ee_devices`: changes the acting user's devices and tells the IUT's devices.
    pub(super) async fn e2ee_devices(
        &mut self,
        actor: &str,
        d: &E2eeDevices,
        deadline: Instant,
    ) -> Result<(), Deviation> {
        self.e2ee_ready()?;
        let count = self.e2ee.users.get(actor).map_or(0, Vec::len);
        // A device added after the IUT read the user's device list is a change it must
        // follow (E2EE-27); before that, it is simply one of the user's devices (E2EE-14).
        let seen = self
            .e2ee
            .pep
            .list_fetched(&format!("{actor}@{}", gk::DOMAIN));
        for i in 0..d.add {
            let mut dev = self.new_user_device(actor, count as u32 + i)?;
            dev.added_later = seen;
            if let Some(devs) = self.e2ee.users.get_mut(actor) {
                devs.push(dev);
            }
        }
        let bare = format!("{actor}@{}", gk::DOMAIN);
        let mut empty = None;
        {
            let devs = self
                .e2ee
                .users
                .get_mut(actor)
                .ok_or_else(|| Deviation::error(format!("no actor {actor}")))?;
            let pick = |i: Option<usize>| -> Result<Option<usize>, Deviation> {
                match i {
                    Some(i) if i >= devs.len() => Err(Deviation::error(format!(
                        "{actor} has {} device(s); there is no index {i}",
                        devs.len()
                    ))),
                    other => Ok(other),
                }
            };
            let (remove, bad, new_id, pool) = (
                pick(d.remove)?,
                pick(d.bad_signature)?,
                pick(d.new_identity)?,
                pick(d.empty_pool)?,
            );
            if let Some(i) = remove {
                devs[i].removed = true;
            }
            if let Some(i) = bad {
                devs[i].bad_signature = true;
            }
            if let Some(i) = new_id {
                let id = devs[i].dev.device_id();
                let mut seed = [0u8; 32];
                self.vars.rng().fill_bytes(&mut seed);
                devs[i].dev = e2ee::Device::generate(id, seed, USER_PREKEYS);
                devs[i].identity_changed = true;
                devs[i].first_bundles.clear();
            }
            if let Some(i) = pool {
                empty = Some(devs[i].dev.device_id());
            }
        }
        self.publish_user(actor);
        if let Some(id) = empty {
            while self.e2ee.pep.remaining(&bare, id) > 0 {
                self.e2ee.pep.hand_out(&bare, id);
            }
        }
        self.notify_devices(&bare, e2ee::DEVICELIST_NODE, None, deadline)
            .await
    }

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
