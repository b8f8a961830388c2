//! The IUT's published keys as the gatekeeper judges them (`e2ee_keys`: E2EE-1..7, with the
//! `prekeys-low` notice of SPEC.md §9.1) and changes to a gatekeeper user's devices
//! (`e2ee_devices`, announced as pubsub events).

use rand::RngCore;
use tokio::time::Instant;

use super::Exec;
use crate::e2ee;
use crate::roles::Deviation;
use crate::roles::conn::Inbound;
use crate::roles::gatekeeper_server as gk;
use crate::roles::pep;
use crate::scenario::Step;
use crate::scenario::step::{E2eeDevices, E2eeKeys};
use crate::wire::ns;

use super::e2ee::{PUBLISH_BUNDLE, USER_PREKEYS};
const PUBLISH_LIST: &str = "E2EE-2";
const BUNDLE_SIGNED: &str = "E2EE-4";
const ENOUGH_PREKEYS: &str = "E2EE-5";
const REPLENISH: &str = "E2EE-6";
const DEVICE_ID: &str = "E2EE-1";
/// What E2EE-5 and E2EE-6 ask for (SPEC.md Appendix B).
const MIN_PREKEYS: usize = 100;

impl Exec<'_> {
    /// Waits, answering PEP iqs, until IUT instance `dev` has published a bundle; its
    /// OMEMO device id.
    pub(super) async fn iut_device_id(
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
            if let Some(Inbound::Stanza(e)) = &got
                && self.server_takes(e, deadline).await?
            {
                continue;
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

    pub(super) async fn send_prekeys_low(
        &mut self,
        id: u32,
        deadline: Instant,
    ) -> Result<(), Deviation> {
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
}
