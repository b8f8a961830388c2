//! Our own keys on the gatekeeper: the device list (E2EE-2) and the bundle with its one-time
//! prekeys (E2EE-3, E2EE-5, E2EE-6, E2EE-7), published after every bind and kept current.

use gatecheck::e2ee::{DEVICELIST_NODE, DeviceList, bundle_node};
use tokio::time::Instant;

use super::iq::{self, Answer, Purpose};
use super::{Account, Action, KnownList, Omemo, PREKEYS};
use crate::mutant::Mutant;

/// Where the publication of one node stands on the current stream.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Nothing asked yet (no stream).
    #[default]
    Idle,
    /// A read or publish is in flight.
    Waiting,
    /// Answered (or given up on after the deadline).
    Done,
}

/// The publication of our device list and bundle on the current stream.
#[derive(Debug, Default)]
pub struct Publication {
    list: Phase,
    bundle: Phase,
}

impl Publication {
    /// Both are out: user content may follow (E2EE-2 wants the list published first).
    pub fn ready(&self) -> bool {
        self.list == Phase::Done && self.bundle == Phase::Done
    }
}

impl Omemo {
    /// A stream was bound as `jid`: publish the bundle, and read our device list back to
    /// publish it merged with our id (E2EE-2: other devices of the account stay listed).
    pub fn on_bound(&mut self, jid: &str, domain: &str, now: Instant) -> Vec<Action> {
        self.account = Some(Account {
            bare: iq::bare(jid).to_owned(),
            domain: domain.to_owned(),
        });
        self.publication = Publication {
            list: Phase::Waiting,
            bundle: Phase::Waiting,
        };
        let own = iq::bare(jid).to_owned();
        let read = self.request(
            Purpose::DeviceList(own),
            None,
            |id| iq::items_get(id, None, DEVICELIST_NODE),
            now,
        );
        vec![self.publish_bundle(now), read]
    }

    /// Publishes the whole bundle, topped up to [`PREKEYS`] one-time prekeys first: E2EE-5
    /// counts every publication, and prekeys consumed since the last one are gone.
    fn publish_bundle(&mut self, now: Instant) -> Action {
        let have = u32::try_from(self.device.prekey_ids().len()).unwrap_or(u32::MAX);
        if have < PREKEYS {
            self.device.replenish(PREKEYS - have);
        }
        let mut bundle = self.device.bundle();
        if self.mutant == Mutant::FewPrekeys {
            // E2EE-5 deviation: the correct client publishes at least 100.
            bundle.prekeys.truncate(PREKEYS as usize - 1);
        }
        if self.mutant == Mutant::UntypedPrekeys {
            // E2EE-3 deviation: the correct client writes each key as 33 bytes, 0x05 first.
            for (_, key) in &mut bundle.prekeys {
                key.remove(0);
            }
        }
        if self.mutant == Mutant::CorruptSignature
            && let Some(byte) = bundle.signature.first_mut()
        {
            // E2EE-4 deviation: the correct client publishes the signature it computed.
            *byte ^= 0x01;
        }
        let node = bundle_node(self.device.device_id());
        self.request(
            Purpose::PublishBundle,
            None,
            |id| iq::publish_set(id, &node, bundle.to_element()),
            now,
        )
    }

    /// The gatekeeper says our pool runs low (SPEC.md §9.1): republish with [`PREKEYS`]
    /// fresh prekeys. Fresh ids were never handed out, so at least that many remain after
    /// the gatekeeper drops what it handed out (E2EE-6); the unused ones go along unchanged
    /// (same id, same key: E2EE-7).
    pub(super) fn on_prekeys_low(&mut self, now: Instant) -> Vec<Action> {
        if self.mutant == Mutant::IgnorePrekeysLow {
            // E2EE-6 deviation: the correct client republishes within 60 s.
            return Vec::new();
        }
        let fresh = self.device.replenish(PREKEYS);
        if self.mutant == Mutant::ReusedPrekeyIds {
            // E2EE-7 deviation: the correct client gives fresh prekeys ids never published;
            // this one numbers them from 1 again, ids its first bundle used for other keys.
            let mut bundle = self.device.bundle();
            bundle.prekeys.retain(|(id, _)| fresh.contains(id));
            for (n, (id, _)) in (1..).zip(bundle.prekeys.iter_mut()) {
                *id = n;
            }
            let node = bundle_node(self.device.device_id());
            let publish = |id: &str| iq::publish_set(id, &node, bundle.to_element());
            return vec![self.request(Purpose::PublishBundle, None, publish, now)];
        }
        vec![self.publish_bundle(now)]
    }

    /// Our own device list as read back or pushed: publish it again, with our id added, if
    /// it lacks our id (E2EE-2). `None`: the read failed (no node yet, an error, no answer).
    pub(super) fn on_own_list(&mut self, devices: Option<Vec<u32>>, now: Instant) -> Vec<Action> {
        let own_id = self.device.device_id();
        let mut devices = devices.unwrap_or_else(|| {
            // Nothing to merge with but what we knew: better than dropping the others.
            self.own_bare()
                .and_then(|own| self.lists.get(own))
                .map(|l| l.devices.clone())
                .unwrap_or_default()
        });
        if devices.contains(&own_id) {
            if self.publication.list == Phase::Waiting {
                self.publication.list = Phase::Done;
            }
            return Vec::new();
        }
        if self.mutant == Mutant::NoDeviceList {
            // E2EE-2 deviation: the correct client publishes a list that names it.
            self.publication.list = Phase::Done;
            return Vec::new();
        }
        devices.push(own_id);
        if let Some(own) = self.own_bare().map(str::to_owned) {
            self.lists.insert(
                own,
                KnownList {
                    devices: devices.clone(),
                    from_event: false,
                },
            );
        }
        self.publication.list = Phase::Waiting;
        let list = DeviceList { devices };
        vec![self.request(
            Purpose::PublishList,
            None,
            |id| iq::publish_set(id, DEVICELIST_NODE, list.to_element()),
            now,
        )]
    }

    /// A publication was answered (or timed out): done either way, since waiting longer
    /// would not make the gatekeeper accept it. A refusal is logged for the operator.
    pub(super) fn on_published(&mut self, purpose: &Purpose, answer: &Answer) -> Vec<Action> {
        match answer {
            Answer::Result(_) => {}
            Answer::Error(condition) => {
                eprintln!("gatecheck-reference: publication {purpose:?} refused: {condition}");
            }
            Answer::Timeout => {
                eprintln!("gatecheck-reference: publication {purpose:?} not answered");
            }
        }
        match purpose {
            Purpose::PublishList => self.publication.list = Phase::Done,
            Purpose::PublishBundle => self.publication.bundle = Phase::Done,
            Purpose::DeviceList(_) | Purpose::Bundle(_) => {}
        }
        Vec::new()
    }
}
