//! OMEMO end-to-end encryption for the reference client (SPEC.md §9), over the harness's
//! Signal layer (`gatecheck::e2ee`).
//!
//! Sans-IO: every entry point takes what arrived (a command, a stanza, the clock) and returns
//! the [`Action`]s to perform, in order. Order is part of the contract: `identity_changed`
//! must reach the harness before the stanza encrypted to the new key (E2EE-12), and `sent`
//! only after its stanza (DRIVER-3), so stanzas and events share one queue. Nothing here
//! waits: a request for keys is an iq with a deadline ([`iq::ANSWER_WAIT`]), and its answer
//! (or the deadline) is one more input, so the session keeps serving the stream meanwhile.
//!
//! The device (id, identity, prekeys, sessions) lives as long as the process; what belongs to
//! one stream (requests in flight, queued sends) ends with it ([`Omemo::session_ended`]).

mod iq;
mod publish;
mod receive;
mod send;
#[cfg(test)]
mod tests;

use std::collections::{HashMap, HashSet, VecDeque};

use gatecheck::e2ee::{Address, Device, MAX_DEVICE_ID};
use gatecheck::wire::Element;
use rand::rngs::StdRng;
use rand::{Rng as _, RngCore as _, SeedableRng as _};
use tokio::time::Instant;

use crate::driver::Event;
use crate::mutant::Mutant;

pub use receive::MAX_TEXT_BYTES;

/// One-time prekeys in every bundle this client publishes (E2EE-5: at least 100).
pub const PREKEYS: u32 = 100;

/// Something the session must do, in the order given.
#[derive(Debug)]
pub enum Action {
    /// Write a stanza.
    Send(Element),
    /// Write a driver event.
    Emit(Event),
    /// A decrypted text that is a media reference (SPEC.md §14): download it, and report
    /// `media_received` or `media_rejected` instead of `message_received`.
    FetchMedia {
        from: String,
        id: Option<String>,
        reference: String,
    },
    /// Write the message answering `send_text` `seq`, then emit `sent` with `id`; if the
    /// write fails, `send_failed` with `not-connected`.
    Deliver {
        stanza: Element,
        seq: i64,
        id: String,
    },
}

/// The account of the current stream.
struct Account {
    /// Our bare JID.
    bare: String,
    /// The gatekeeper domain: the only sender of `prekeys-low` (SPEC.md §9.1).
    domain: String,
}

/// A device list as last learned.
#[derive(Debug, Clone)]
struct KnownList {
    devices: Vec<u32>,
    /// It came in a pubsub event after our last fetch of it: newer than the store's answer
    /// could be, so the next send uses it as it is (E2EE-27).
    from_event: bool,
}

/// The client's end-to-end encryption state.
pub struct Omemo {
    mutant: Mutant,
    device: Device,
    /// The seed the device was generated from (the keep-consumed-prekey mutant regenerates
    /// its pristine twin from it).
    seed: [u8; 32],
    rng: StdRng,
    account: Option<Account>,
    /// Device lists by bare JID (ours included).
    lists: HashMap<String, KnownList>,
    pending: iq::Pending,
    publication: publish::Publication,
    /// `send_text` commands in order; the first is being worked on.
    sends: VecDeque<send::PendingSend>,
    seen: receive::Seen,
    /// The fixed-payload-key mutant's one key and IV.
    fixed_payload: ([u8; 16], Vec<u8>),
    /// Devices the prekey-only-once mutant already sent a PreKeySignalMessage to.
    prekey_sent: HashSet<Address>,
    id_prefix: String,
    next_id: u64,
}

/// A device id drawn uniformly from 1 to 2147483647 (ENROLL-5).
fn choose_device_id(rng: &mut StdRng, mutant: Mutant) -> u32 {
    if mutant == Mutant::FixedDeviceId {
        // ENROLL-5 deviation: the correct client draws the id at random.
        return 1;
    }
    rng.random_range(1..=MAX_DEVICE_ID)
}

impl Omemo {
    /// A new device: a random device id (E2EE-1, ENROLL-5) and keys seeded from the OS's
    /// randomness. Made before the first enrollment or connect, whichever comes first, so the
    /// id and keys the enrollment carries are the ones the bundle later publishes (E2EE-4,
    /// ENROLL-15).
    pub fn generate(mutant: Mutant) -> Omemo {
        let mut rng = StdRng::from_os_rng();
        let device_id = choose_device_id(&mut rng, mutant);
        let mut seed = [0u8; 32];
        rng.fill_bytes(&mut seed);
        Omemo::with_seed(mutant, device_id, seed, rng)
    }

    /// After a 409 `device_id_conflict` the device takes a new random id (ENROLL-12). The
    /// keys stay (they come from the same seed), since only the id collided; the device has
    /// not been enrolled under the new id, so there is nothing of it to keep but its keys.
    pub fn renumber(&mut self) {
        let mut rng = StdRng::from_os_rng();
        let old = self.device_id();
        let mut device_id = choose_device_id(&mut rng, self.mutant);
        // A repeat has odds of 1 in 2^31, but the gatekeeper just refused this one.
        while device_id == old && self.mutant != Mutant::FixedDeviceId {
            device_id = choose_device_id(&mut rng, self.mutant);
        }
        *self = Omemo::with_seed(self.mutant, device_id, self.seed, rng);
    }

    /// The serialized (33-byte) identity key, as the `identity` event and the enrollment
    /// request carry it.
    pub fn identity_key(&self) -> Vec<u8> {
        self.device.identity_key()
    }

    /// The keys an enrollment request carries: the bundle the next bind publishes, topped up
    /// to [`PREKEYS`] one-time prekeys first exactly as that publication is, so that the
    /// gatekeeper holds the same prekeys from both (ENROLL-3, ENROLL-15).
    pub fn enrollment_keys(&mut self) -> gatecheck::e2ee::Bundle {
        let have = u32::try_from(self.device.prekey_ids().len()).unwrap_or(u32::MAX);
        if have < PREKEYS {
            self.device.replenish(PREKEYS - have);
        }
        self.device.bundle()
    }

    /// A device with the given id and seed (tests use fixed ones).
    pub fn with_seed(mutant: Mutant, device_id: u32, seed: [u8; 32], mut rng: StdRng) -> Omemo {
        let device = Device::generate(device_id, seed, PREKEYS);
        let mut key = [0u8; 16];
        rng.fill_bytes(&mut key);
        let mut iv = vec![0u8; gatecheck::e2ee::IV_LEN];
        rng.fill_bytes(&mut iv);
        let id_prefix = format!("omemo-{:08x}", rng.next_u32());
        Omemo {
            mutant,
            device,
            seed,
            rng,
            account: None,
            lists: HashMap::new(),
            pending: iq::Pending::default(),
            publication: publish::Publication::default(),
            sends: VecDeque::new(),
            seen: receive::Seen::default(),
            fixed_payload: (key, iv),
            prekey_sent: HashSet::new(),
            id_prefix,
            next_id: 0,
        }
    }

    pub fn device_id(&self) -> u32 {
        self.device.device_id()
    }

    /// When [`Omemo::on_timer`] must run next: the earliest deadline of a request.
    pub fn deadline(&self) -> Option<Instant> {
        self.pending.deadline()
    }

    /// The stream ended: requests in flight are void, and queued sends fail.
    pub fn session_ended(&mut self) -> Vec<Event> {
        self.account = None;
        self.pending.clear();
        self.publication = publish::Publication::default();
        self.sends
            .drain(..)
            .map(|s| Event::SendFailed {
                seq: s.seq,
                reason: "not-connected",
            })
            .collect()
    }

    /// Deadlines that passed count as answers that never came.
    pub fn on_timer(&mut self, now: Instant) -> Vec<Action> {
        let mut actions = Vec::new();
        for purpose in self.pending.expired(now) {
            actions.extend(self.on_answer(purpose, iq::Answer::Timeout, now));
        }
        actions
    }

    /// An iq result or error: the actions it leads to, or `None` when it answers nothing of
    /// ours (the session then treats it as it treats any stray answer).
    pub fn on_iq_answer(&mut self, iq: &Element, now: Instant) -> Option<Vec<Action>> {
        let own = self.account.as_ref()?.bare.clone();
        let (purpose, answer) = self.pending.answer(iq, &own)?;
        Some(self.on_answer(purpose, answer, now))
    }

    fn on_answer(&mut self, purpose: iq::Purpose, answer: iq::Answer, now: Instant) -> Vec<Action> {
        match purpose {
            iq::Purpose::PublishList | iq::Purpose::PublishBundle => {
                let mut actions = self.on_published(&purpose, &answer);
                actions.extend(self.advance(now));
                actions
            }
            iq::Purpose::DeviceList(owner) => self.on_device_list(&owner, answer, now),
            iq::Purpose::Bundle(address) => self.on_bundle(address, answer, now),
        }
    }

    /// Sends an iq request and remembers what it is for.
    fn request(
        &mut self,
        purpose: iq::Purpose,
        to: Option<&str>,
        build: impl FnOnce(&str) -> Element,
        now: Instant,
    ) -> Action {
        self.next_id += 1;
        let id = format!("{}-{}", self.id_prefix, self.next_id);
        let stanza = build(&id);
        self.pending.insert(id, purpose, to.map(str::to_owned), now);
        Action::Send(stanza)
    }

    /// A message id: 128 random bits (STANZA-12 asks for at least 64).
    fn message_id(&mut self) -> String {
        format!("{:032x}", self.rng.random::<u128>())
    }

    /// Our bare JID, once a stream is bound.
    fn own_bare(&self) -> Option<&str> {
        self.account.as_ref().map(|a| a.bare.as_str())
    }

    /// `identity_changed` for a peer device whose identity key changed (E2EE-11): the one
    /// place both directions (a bundle fetched, a PreKeySignalMessage received) report it.
    fn identity_changed(&self, peer: &str, device_id: u32) -> Option<Action> {
        if self.mutant == Mutant::SilentIdentityChange {
            // E2EE-11 deviation: the correct client tells the user before anything under
            // the new key.
            return None;
        }
        Some(Action::Emit(Event::IdentityChanged {
            peer: peer.to_owned(),
            device_id,
        }))
    }
}
