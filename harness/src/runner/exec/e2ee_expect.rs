//! `e2ee_expect`: a gatekeeper user receives an encrypted message from the IUT, decrypts it
//! with each of its devices, and judges the stanza, the envelope and the Signal messages
//! against SPEC.md §8 and §9 (STANZA-11/12/15, E2EE-1/10/12..19/24/27).

use tokio::time::Instant;

use super::Exec;
use crate::e2ee::{self, Envelope};
use crate::roles::Deviation;
use crate::roles::conn::Inbound;
use crate::roles::gatekeeper_server as gk;
use crate::scenario::Step;
use crate::scenario::step::E2eeExpect;
use crate::wire::{Element, ns};

/// How long e2ee_expect reads before it looks at the driver events again.
const WAIT_SLICE: std::time::Duration = std::time::Duration::from_millis(50);

impl Exec<'_> {
    pub(super) async fn e2ee_expect(
        &mut self,
        step: &Step,
        actor: &str,
        x: &E2eeExpect,
        deadline: Instant,
    ) -> Result<(), Deviation> {
        let text = self.vars.substitute(&x.text).map_err(Deviation::error)?;
        self.e2ee.texts.push(text.clone());
        self.e2ee_receive(step, actor, Some(&text), deadline)
            .await
            .map(|_| ())
    }

    /// Receives the next encrypted message the IUT sends `actor` and judges it as
    /// `e2ee_expect` does; its text must be `want`, or (media, `None`) may be anything, and
    /// then a `<body/>` beside the envelope that gives the text away is MEDIA-19's rather than
    /// E2EE-19's. Returns the decrypted text and the message's id.
    pub(super) async fn e2ee_receive(
        &mut self,
        step: &Step,
        actor: &str,
        want: Option<&str>,
        deadline: Instant,
    ) -> Result<(String, String), Deviation> {
        self.e2ee_ready()?;
        let bare = format!("{actor}@{}", gk::DOMAIN);
        let expected = match want {
            Some(text) => format!("an encrypted message to {bare} with the text {text:?}"),
            None => format!("an encrypted message to {bare} sharing a file"),
        };
        let e = loop {
            // In slices, so that a send_failed the IUT reports ends the wait with its reason.
            let slice = deadline.min(Instant::now() + WAIT_SLICE);
            let got = self.next_for(Some(actor), slice).await?;
            if got.is_none() && Instant::now() < deadline {
                self.devices[self.cur].admit_queued()?;
                if let Some(ev) = self.devices[self.cur]
                    .pending
                    .iter()
                    .find(|ev| ev.name == "send_failed")
                {
                    return Err(Deviation::fail_here(
                        expected,
                        format!("the IUT reported {ev}"),
                    ));
                }
                continue;
            }
            match got {
                Some(Inbound::Stanza(e))
                    if e.name == "message"
                        && e.child("encrypted", e2ee::NS).is_none()
                        && self.e2ee.is_requested_receipt(&e) => {}
                Some(Inbound::Stanza(e)) if e.name == "message" && is_for(&e, &bare) => break e,
                Some(Inbound::Stanza(e)) if self.ignorable(step, &e)? => {}
                other => return Err(gk::unexpected(other, &expected, "").into_here()),
            }
        };
        let shown = e.to_xml();
        let fail = |req: &str, what: String| Deviation::fail(req, what, shown.clone());
        // STANZA-11, STANZA-12: the message itself.
        let id = e.attr("id").unwrap_or_default().to_string();
        if e.attr("type") != Some("chat") || e.attr("to") != Some(bare.as_str()) || id.is_empty() {
            return Err(fail(
                "STANZA-11",
                format!("a message with type='chat', to='{bare}' (the bare JID) and an id"),
            ));
        }
        if !self.e2ee.iut_ids_used.insert(id.clone()) {
            return Err(fail(
                "STANZA-12",
                format!("a message id not used before ({id})"),
            ));
        }
        // E2EE-19: nothing in clear beside the envelope (for a shared file, judged once the
        // reference is known).
        let clear = e
            .child_elements()
            .find(|c| c.ns == ns::JABBER_CLIENT && (c.name == "body" || c.name == "subject"))
            .map(|c| (c.name.clone(), c.text()));
        if let (Some((name, _)), Some(_)) = (&clear, want) {
            return Err(fail("E2EE-19", format!("no <{name}/> beside the envelope")));
        }
        let encrypted: Vec<&Element> = e.children_named("encrypted", e2ee::NS).collect();
        if encrypted.len() != 1 {
            return Err(fail(
                "E2EE-13",
                format!("exactly one <encrypted/> (found {})", encrypted.len()),
            ));
        }
        let env = Envelope::from_element(encrypted[0]).map_err(|err| {
            Deviation::fail(err.requirement, "an envelope as SPEC.md §9.2", err.message)
        })?;
        if env.payload.is_none() {
            return Err(fail(
                "E2EE-13",
                "a <payload/> in a message carrying user content".into(),
            ));
        }
        let dev = self.cur;
        if let Some(own) = self.e2ee.iut_ids.get(&dev)
            && *own != env.sid
        {
            return Err(fail(
                "E2EE-1",
                format!("sid='{own}', the device id the IUT published its bundle under"),
            ));
        }
        self.judge_recipients(&env, &bare, &shown)?;
        // What the IUT reported so far decides E2EE-12, E2EE-15 and E2EE-16: an event it
        // wrote before this stanza may still sit in the pipe (two channels, no order between
        // them), so what was written is read first, as before a write (DRIVER-3).
        if let Some(driver) = &self.devices[dev].driver {
            driver.settle(super::SETTLE_LIMIT).await;
        }
        self.devices[dev].admit_queued()?;
        self.check_e2ee_claims()?;
        let client = self.client_bare();
        let mut first = true;
        let mut devs = self
            .e2ee
            .users
            .get_mut(actor)
            .map(std::mem::take)
            .unwrap_or_default();
        let mut result = Ok(());
        let mut got = None;
        for ud in devs.iter_mut() {
            let bob_dev = ud.dev.device_id();
            let Some(key) = env.key_for(bob_dev) else {
                continue;
            };
            let prekey = key.prekey;
            let new_session = !ud
                .dev
                .has_session(&e2ee::Address::new(client.clone(), env.sid));
            let decrypted = match ud.dev.decrypt(&client, &env) {
                Ok(d) => d,
                Err(err) if ud.identity_changed => {
                    // The IUT still encrypts to the identity the device had before: its key
                    // is no key for the device as listed now.
                    result = Err(Deviation::fail(
                        "E2EE-14",
                        format!(
                            "a <key/> for {bare} device {bob_dev} under its current identity key (it changed, and the IUT reported identity_changed)"
                        ),
                        format!("{err}"),
                    ));
                    break;
                }
                Err(err) => {
                    result = Err(Deviation::fail(
                        err.requirement(),
                        format!("a <key/> for {bare} device {bob_dev} that decrypts"),
                        format!("{err}"),
                    ));
                    break;
                }
            };
            let surfaced_from = self
                .e2ee
                .iut_decrypted
                .contains(&(dev, bare.clone(), bob_dev));
            if ud.identity_changed
                && !self
                    .e2ee
                    .identity_events
                    .contains(&(dev, bare.clone(), bob_dev))
            {
                result = Err(fail(
                    "E2EE-12",
                    format!(
                        "identity_changed for {bare} device {bob_dev} before encrypting to its new identity key"
                    ),
                ));
                break;
            }
            if surfaced_from && prekey {
                result = Err(fail(
                    "E2EE-16",
                    format!(
                        "a SignalMessage for device {bob_dev}: the IUT already decrypted a message from it"
                    ),
                ));
                break;
            }
            if !surfaced_from && !prekey {
                result = Err(fail(
                    "E2EE-15",
                    format!(
                        "a PreKeySignalMessage (prekey='true') for device {bob_dev}: the IUT has decrypted nothing from it yet"
                    ),
                ));
                break;
            }
            // E2EE-9: a session set up from a fetched bundle that carried a one-time prekey
            // uses that prekey.
            if new_session
                && let Some(Some(handed)) = self.e2ee.pep.fetched_prekey(&bare, bob_dev)
                && decrypted.consumed_prekey != Some(handed)
            {
                result = Err(fail(
                    "E2EE-9",
                    format!(
                        "a session set up with the one-time prekey {handed} the gatekeeper handed out for device {bob_dev}"
                    ),
                ));
                break;
            }
            if decrypted.iv.len() != e2ee::IV_LEN {
                result = Err(fail(
                    "E2EE-17",
                    format!(
                        "a {}-byte IV (got {} bytes)",
                        e2ee::IV_LEN,
                        decrypted.iv.len()
                    ),
                ));
                break;
            }
            match (want, decrypted.text.as_deref()) {
                (Some(text), shown) if shown != Some(text) => {
                    result = Err(Deviation::fail(
                        "E2EE-24",
                        format!("the text {text:?} as the payload, in UTF-8"),
                        format!("{:?}", shown.unwrap_or_default()),
                    ));
                    break;
                }
                (None, None) => {
                    result = Err(fail(
                        "E2EE-24",
                        "a payload in UTF-8 (the file's reference)".into(),
                    ));
                    break;
                }
                _ => {}
            }
            if got.is_none() {
                got = decrypted.text.clone();
            }
            if first {
                first = false;
                if !self.e2ee.iut_keys.insert(decrypted.key.to_vec())
                    || !self.e2ee.iut_ivs.insert(decrypted.iv.clone())
                {
                    result = Err(fail(
                        "E2EE-18",
                        "a payload key and IV not used for an earlier message".into(),
                    ));
                    break;
                }
            }
        }
        if let Some(slot) = self.e2ee.users.get_mut(actor) {
            *slot = devs;
        }
        result?;
        let text = got.unwrap_or_default();
        if let Some((name, clear)) = clear {
            // A shared file: its reference (or the key in it) in clear gives the file away.
            let fragment = text.rsplit_once('#').map(|(_, f)| f.to_ascii_lowercase());
            let leaks = fragment
                .as_deref()
                .and_then(|f| f.get(24..))
                .is_some_and(|key| !key.is_empty() && clear.to_ascii_lowercase().contains(key))
                || (!text.is_empty() && clear.contains(text.as_str()));
            return Err(if leaks {
                fail(
                    "MEDIA-19",
                    format!(
                        "the file's key only in the encrypted reference, not in a <{name}/> in clear"
                    ),
                )
            } else {
                fail("E2EE-19", format!("no <{name}/> beside the envelope"))
            });
        }
        if e.child("request", ns::RECEIPTS).is_none() {
            self.warn(
                "STANZA-15".into(),
                "<request xmlns='urn:xmpp:receipts'/> in a message carrying user content",
                shown.clone(),
                self.current_step(step),
            );
        }
        self.vars.set("e2ee.received_id", id.clone());
        Ok((text, id))
    }

    /// E2EE-10, E2EE-14, E2EE-27: one `<key/>` for each of the recipient's devices whose
    /// bundle is valid and for each of the sender's other devices; none for a removed device
    /// or one whose bundle does not verify; no `rid` twice.
    fn judge_recipients(&self, env: &Envelope, bare: &str, shown: &str) -> Result<(), Deviation> {
        let fail = |req: &str, what: String| Deviation::fail(req, what, shown.to_string());
        let mut rids: Vec<u32> = env.keys.iter().map(|k| k.rid).collect();
        rids.sort_unstable();
        if rids.windows(2).any(|w| w[0] == w[1]) {
            return Err(fail(
                "E2EE-14",
                "no two <key/> elements with the same rid".into(),
            ));
        }
        let actor = bare.split('@').next().unwrap_or_default();
        for ud in self.e2ee.users.get(actor).into_iter().flatten() {
            let id = ud.dev.device_id();
            let has = rids.binary_search(&id).is_ok();
            match (ud.removed, ud.bad_signature, has) {
                (true, _, true) => {
                    return Err(fail(
                        "E2EE-27",
                        format!("no <key/> for device {id}, removed from {bare}'s device list"),
                    ));
                }
                (false, true, true) => {
                    return Err(fail(
                        "E2EE-10",
                        format!(
                            "no <key/> for device {id}, whose signed prekey signature does not verify"
                        ),
                    ));
                }
                (false, false, false) => {
                    let req = if ud.added_later { "E2EE-27" } else { "E2EE-14" };
                    return Err(fail(req, format!("a <key/> for {bare}'s device {id}")));
                }
                _ => {}
            }
        }
        // The sender's own other devices: every other IUT device that published keys.
        for (i, id) in &self.e2ee.iut_ids {
            if *i != self.cur && *id != env.sid && rids.binary_search(id).is_err() {
                return Err(fail(
                    "E2EE-14",
                    format!("a <key/> for the sender's own other device {id}"),
                ));
            }
        }
        Ok(())
    }
}

/// Whether a message is addressed to the user `bare` (bare or full JID).
fn is_for(e: &Element, bare: &str) -> bool {
    e.attr("to")
        .is_some_and(|to| to == bare || to.split('/').next() == Some(bare))
}
