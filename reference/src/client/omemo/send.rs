//! `send_text`: device lists, bundles, sessions, then one encrypted message (SPEC.md §9.2).
//!
//! Sends are worked on one at a time, in command order: two sends to a device without a
//! session must not both fetch its bundle (each fetch costs the peer a one-time prekey, and
//! the second session would replace the first).

use std::collections::BTreeSet;

use gatecheck::e2ee::{
    Address, Bundle, DEVICELIST_NODE, Device, DeviceList, E2eeError, IdentityStatus, KeyElement,
    MAX_KEYS, bundle_node,
};
use gatecheck::wire::{Element, ns};
use tokio::time::Instant;

use super::iq::{self, Answer, Purpose};
use super::{Action, KnownList, Omemo};
use crate::driver::Event;
use crate::mutant::Mutant;
use rand::Rng as _;

/// A fallback text such as OMEMO clients put beside an envelope (only a mutant does).
const FALLBACK_BODY: &str =
    "I sent you an OMEMO encrypted message but your client doesn't seem to support that.";

/// The one message id of the reused-message-id mutant.
const REUSED_ID: &str = "gatecheck-reference-message";

/// Why a device gets no `<key/>` in this message.
#[derive(Debug, thiserror::Error)]
enum NoKey {
    /// The bundle breaks §9.1 or does not verify (E2EE-10).
    #[error("its bundle is refused: {0}")]
    Refused(#[from] E2eeError),
    #[error("its bundle node has no item")]
    Missing,
    #[error("the bundle fetch was answered with {0}")]
    FetchFailed(String),
    #[error("the bundle fetch was not answered")]
    Unanswered,
}

/// One `send_text` on its way.
#[derive(Debug)]
pub struct PendingSend {
    pub seq: i64,
    /// The recipient's bare JID.
    to: String,
    text: String,
    stage: Stage,
    /// The recipient's device list could not be read.
    list_failed: bool,
    /// A bundle fetch was answered with an error or not at all.
    fetch_failed: bool,
    /// Devices whose bundle was missing or refused (E2EE-10): no `<key/>` for them.
    refused: BTreeSet<Address>,
}

#[derive(Debug)]
enum Stage {
    Queued,
    /// Waiting for these device lists (bare JIDs).
    Lists(BTreeSet<String>),
    /// Waiting for these bundles.
    Bundles(BTreeSet<Address>),
    /// Keys are in place; waiting for our own publication (E2EE-2) before writing.
    Ready,
}

impl Omemo {
    /// Driver `send_text`. The answer (`sent` or `send_failed`) comes as an action, now or
    /// after the fetches it needs.
    pub fn send_text(&mut self, seq: i64, to: &str, text: &str, now: Instant) -> Vec<Action> {
        if self.account.is_none() {
            return vec![failed(seq, "not-connected")];
        }
        self.sends.push_back(PendingSend {
            seq,
            to: to.to_owned(),
            text: text.to_owned(),
            stage: Stage::Queued,
            list_failed: false,
            fetch_failed: false,
            refused: BTreeSet::new(),
        });
        self.advance(now)
    }

    /// Moves the first send on as far as it goes without waiting, then the next.
    pub(super) fn advance(&mut self, now: Instant) -> Vec<Action> {
        let mut actions = Vec::new();
        while let Some(mut send) = self.sends.pop_front() {
            match &send.stage {
                Stage::Queued => {
                    send.stage = Stage::Lists(self.fetch_lists(&send.to, now, &mut actions));
                }
                Stage::Lists(waiting) if waiting.is_empty() => {
                    if send.list_failed {
                        actions.push(failed(send.seq, "fetch-failed"));
                        continue;
                    }
                    send.stage = Stage::Bundles(self.fetch_bundles(&send.to, now, &mut actions));
                }
                Stage::Bundles(waiting) if waiting.is_empty() => send.stage = Stage::Ready,
                Stage::Ready if self.publication.ready() => {
                    actions.extend(self.deliver(send));
                    continue;
                }
                Stage::Lists(_) | Stage::Bundles(_) | Stage::Ready => {
                    self.sends.push_front(send);
                    break;
                }
            }
            self.sends.push_front(send);
        }
        actions
    }

    /// Asks for the device lists of the recipient and of our own account, except one that
    /// a pubsub event brought since our last fetch (E2EE-27: it is the newest there is).
    fn fetch_lists(
        &mut self,
        to: &str,
        now: Instant,
        actions: &mut Vec<Action>,
    ) -> BTreeSet<String> {
        let own = self.own_bare().unwrap_or_default().to_owned();
        let mut waiting = BTreeSet::new();
        for owner in [to.to_owned(), own.clone()] {
            if waiting.contains(&owner) {
                continue;
            }
            if let Some(list) = self.lists.get_mut(&owner)
                && list.from_event
            {
                // Used once; the next send asks the gatekeeper again.
                list.from_event = false;
                continue;
            }
            let target = (owner != own).then_some(owner.as_str());
            actions.push(self.request(
                Purpose::DeviceList(owner.clone()),
                target,
                |id| iq::items_get(id, target, DEVICELIST_NODE),
                now,
            ));
            waiting.insert(owner);
        }
        waiting
    }

    /// A device list was answered (for a send, or our own read-back after bind).
    pub(super) fn on_device_list(
        &mut self,
        owner: &str,
        answer: Answer,
        now: Instant,
    ) -> Vec<Action> {
        let devices = match answer {
            Answer::Result(Some(payload)) => {
                DeviceList::from_element(&payload).ok().map(|l| l.devices)
            }
            // A node without an item lists no device.
            Answer::Result(None) => Some(Vec::new()),
            Answer::Error(_) | Answer::Timeout => None,
        };
        let mut actions = Vec::new();
        if let Some(devices) = &devices {
            self.learn_list(owner, devices.clone(), false);
        }
        if self.own_bare() == Some(owner) {
            actions.extend(self.on_own_list(devices.clone(), now));
        }
        if let Some(send) = self.sends.front_mut()
            && let Stage::Lists(waiting) = &mut send.stage
            && waiting.remove(owner)
            && devices.is_none()
            && send.to == owner
        {
            send.list_failed = true;
        }
        actions.extend(self.advance(now));
        actions
    }

    /// A pubsub event with a device list (E2EE-27; ours too, E2EE-2).
    pub(super) fn on_list_event(
        &mut self,
        owner: &str,
        payload: &Element,
        now: Instant,
    ) -> Vec<Action> {
        let Ok(list) = DeviceList::from_element(payload) else {
            return Vec::new();
        };
        self.learn_list(owner, list.devices.clone(), true);
        if self.own_bare() == Some(owner) {
            return self.on_own_list(Some(list.devices), now);
        }
        Vec::new()
    }

    /// Takes in a device list, fetched or pushed: the one the next message to `owner` uses.
    fn learn_list(&mut self, owner: &str, devices: Vec<u32>, from_event: bool) {
        if self.mutant == Mutant::StaleDeviceLists
            && self.own_bare() != Some(owner)
            && self.lists.contains_key(owner)
        {
            // E2EE-27 deviation: the correct client follows every change of a peer's list;
            // this one keeps the first it learned.
            return;
        }
        let list = KnownList {
            devices,
            from_event,
        };
        self.lists.insert(owner.to_owned(), list);
    }

    /// The devices to encrypt for: every device of `to`, and our own other devices (E2EE-14).
    fn targets(&self, to: &str) -> Vec<Address> {
        let own = self.own_bare().unwrap_or_default();
        let own_id = self.device.device_id();
        let mut targets: Vec<Address> = Vec::new();
        for owner in [to, own] {
            for &device in self.lists.get(owner).map_or(&[][..], |l| &l.devices) {
                let address = Address::new(owner, device);
                let ours = owner == own && device == own_id;
                if !ours && !targets.contains(&address) {
                    targets.push(address);
                }
            }
        }
        // No envelope carries more keys (gatecheck::e2ee's bound); a gatekeeper listing
        // more devices would otherwise have us fetch bundles without end.
        targets.truncate(MAX_KEYS);
        targets
    }

    /// Asks for the bundle of every target device without a session (E2EE-9).
    fn fetch_bundles(
        &mut self,
        to: &str,
        now: Instant,
        actions: &mut Vec<Action>,
    ) -> BTreeSet<Address> {
        let own = self.own_bare().unwrap_or_default().to_owned();
        let mut waiting = BTreeSet::new();
        for address in self.targets(to) {
            if self.device.has_session(&address) {
                continue;
            }
            let target = (address.jid != own).then(|| address.jid.clone());
            let node = bundle_node(address.device);
            actions.push(self.request(
                Purpose::Bundle(address.clone()),
                target.as_deref(),
                |id| iq::items_get(id, target.as_deref(), &node),
                now,
            ));
            waiting.insert(address);
        }
        waiting
    }

    /// A bundle was answered: set up the session, or refuse the device (E2EE-10).
    pub(super) fn on_bundle(
        &mut self,
        address: Address,
        answer: Answer,
        now: Instant,
    ) -> Vec<Action> {
        let mut actions = Vec::new();
        let waited = matches!(
            self.sends.front().map(|s| &s.stage),
            Some(Stage::Bundles(waiting)) if waiting.contains(&address)
        );
        if !waited {
            return actions;
        }
        let outcome = match answer {
            Answer::Result(Some(payload)) => self.start_session(&address, &payload),
            Answer::Result(None) => Err(NoKey::Missing),
            Answer::Error(condition) => Err(NoKey::FetchFailed(condition)),
            Answer::Timeout => Err(NoKey::Unanswered),
        };
        if let Some(send) = self.sends.front_mut()
            && let Stage::Bundles(waiting) = &mut send.stage
        {
            waiting.remove(&address);
            match outcome {
                Ok(Some(changed)) => actions.push(changed),
                Ok(None) => {}
                Err(why) => {
                    eprintln!("gatecheck-reference: no key for {address}: {why}");
                    send.fetch_failed |= matches!(why, NoKey::FetchFailed(_) | NoKey::Unanswered);
                    send.refused.insert(address);
                }
            }
        }
        actions.extend(self.advance(now));
        actions
    }

    /// X3DH from a fetched bundle; `identity_changed` if the device's identity key changed.
    fn start_session(
        &mut self,
        address: &Address,
        payload: &Element,
    ) -> Result<Option<Action>, NoKey> {
        let mut bundle = Bundle::from_element(payload)?;
        if bundle.prekeys.len() > 1 {
            // The gatekeeper hands out one (SPEC.md §9.1); a plain PEP service hands out the
            // whole pool, from which X3DH takes one, at random as stock clients do.
            let pick = self.rng.random_range(0..bundle.prekeys.len());
            bundle.prekeys = vec![bundle.prekeys.swap_remove(pick)];
        }
        if self.mutant == Mutant::IgnoreOneTimePrekey {
            // E2EE-9 deviation: the correct client uses the one-time prekey it was handed.
            bundle.prekeys.clear();
        }
        let status = match self.device.start_session(address, &bundle) {
            Ok(status) => status,
            Err(e) if self.mutant == Mutant::SkipBundleVerification => {
                // E2EE-10 deviation: the correct client sets up no session from a bundle
                // that does not verify. The Signal library checks the signature itself, so
                // this one sets the session up with keys of its own making instead, and so
                // encrypts to the device anyway.
                eprintln!("gatecheck-reference: ignoring a bad bundle: {e}");
                let mut stand_in = Device::generate(address.device, [7; 32], 0).bundle();
                stand_in.prekeys = Vec::new();
                self.device.start_session(address, &stand_in)?
            }
            Err(e) => return Err(e.into()),
        };
        Ok(match status {
            IdentityStatus::Changed { .. } => self.identity_changed(&address.jid, address.device),
            IdentityStatus::New | IdentityStatus::Same => None,
        })
    }

    /// Encrypts for every target device with a session and writes the message (E2EE-13,
    /// E2EE-14, E2EE-19, STANZA-11, STANZA-15).
    fn deliver(&mut self, send: PendingSend) -> Vec<Action> {
        let mut recipients: Vec<Address> = self
            .targets(&send.to)
            .into_iter()
            .filter(|a| !send.refused.contains(a) && self.device.has_session(a))
            .collect();
        if self.mutant == Mutant::NoOwnDevices {
            // E2EE-14 deviation: the correct client encrypts for its account's other
            // devices too, so that they can show what it sent.
            recipients.retain(|a| a.jid == send.to);
        }
        if self.mutant == Mutant::OneDeviceOnly
            && let Some(first) = recipients.iter().position(|a| a.jid == send.to)
        {
            // E2EE-14 deviation: the correct client encrypts for every device of the
            // recipient; this one keeps the first and drops the others.
            let keep = recipients[first].clone();
            recipients.retain(|a| a.jid != send.to || *a == keep);
        }
        if !recipients.iter().any(|a| a.jid == send.to) {
            let reason = if send.fetch_failed {
                "fetch-failed"
            } else {
                "no-valid-device"
            };
            return vec![failed(send.seq, reason)];
        }
        let mut plaintext = send.text.clone();
        if self.mutant == Mutant::TextWithNewline {
            // E2EE-24 deviation: the correct client encrypts the text as it is.
            plaintext.push('\n');
        }
        let envelope = if self.mutant == Mutant::FixedPayloadKey {
            // E2EE-18 deviation: the correct client draws a fresh key and IV per message.
            let (key, iv) = self.fixed_payload.clone();
            self.device
                .encrypt_with(&recipients, plaintext.as_bytes(), key, iv)
        } else {
            self.device.encrypt(&recipients, plaintext.as_bytes())
        };
        let mut envelope = match envelope {
            Ok(envelope) => envelope,
            Err(e) => {
                eprintln!("gatecheck-reference: encrypting for {}: {e}", send.to);
                return vec![failed(send.seq, "no-valid-device")];
            }
        };
        if self.mutant == Mutant::SidMismatch {
            // E2EE-1 deviation: the correct client sends as the device id it published.
            envelope.sid = if envelope.sid > 1 {
                envelope.sid - 1
            } else {
                2
            };
        }
        if self.mutant == Mutant::PrekeyOnlyOnce {
            self.unwrap_repeated_prekey_messages(&recipients, &mut envelope.keys);
        }
        if self.mutant == Mutant::PrekeyFlagAlways {
            // E2EE-16 deviation: the correct client marks only PreKeySignalMessages.
            for key in &mut envelope.keys {
                key.prekey = true;
            }
        }
        let id = if self.mutant == Mutant::ReusedMessageId {
            // STANZA-12 deviation: the correct client draws a fresh id per message.
            REUSED_ID.to_owned()
        } else if self.mutant == Mutant::TextInId {
            // E2EE-20 deviation: the correct client's ids carry nothing of the content.
            let hex: String = send.text.bytes().map(|b| format!("{b:02x}")).collect();
            format!("{hex}-{}", self.message_id())
        } else {
            self.message_id()
        };
        let mut encrypted = envelope.to_element();
        if self.mutant == Mutant::PayloadFirst {
            // E2EE-13 deviation: the correct envelope has <header/>, then <payload/>.
            encrypted.children.reverse();
        }
        let kind = if self.mutant == Mutant::NormalMessageType {
            // STANZA-11 deviation: the correct client sends user content as type chat.
            "normal"
        } else {
            "chat"
        };
        let mut message = Element::new("message", ns::JABBER_CLIENT)
            .with_attr("type", kind)
            .with_attr("to", send.to.as_str())
            .with_attr("id", id.as_str())
            .with_child(encrypted);
        if self.mutant == Mutant::FallbackBody {
            // E2EE-19 deviation: the correct client puts no <body/> beside an envelope.
            message = message
                .with_child(Element::new("body", ns::JABBER_CLIENT).with_text(FALLBACK_BODY));
        }
        if self.mutant == Mutant::MediaKeyInBody && crate::client::media::is_reference(&send.text) {
            // MEDIA-19 deviation: the correct client puts a file's key only in the reference
            // inside the envelope; this one repeats the reference in a plaintext <body/>.
            message = message
                .with_child(Element::new("body", ns::JABBER_CLIENT).with_text(send.text.as_str()));
        }
        if self.mutant == Mutant::NoReceiptRequest {
            // STANZA-15 deviation: the correct client asks for a receipt.
        } else {
            message = message.with_child(Element::new("request", ns::RECEIPTS));
        }
        let message = message.with_child(Element::new("store", ns::HINTS));
        vec![Action::Deliver {
            stanza: message,
            seq: send.seq,
            id,
        }]
    }
}

impl Omemo {
    /// E2EE-15 deviation, the prekey-only-once mutant: the correct client keeps sending
    /// PreKeySignalMessages to a device until it has decrypted a message from it (the Signal
    /// session says so); this one sends one, then the SignalMessage inside each next one,
    /// marked `prekey='false'`, as if the first had been answered.
    fn unwrap_repeated_prekey_messages(&mut self, recipients: &[Address], keys: &mut [KeyElement]) {
        use wacore_libsignal::protocol::PreKeySignalMessage;
        for key in keys.iter_mut().filter(|k| k.prekey) {
            let Some(address) = recipients.iter().find(|a| a.device == key.rid) else {
                continue;
            };
            if !self.prekey_sent.insert(address.clone())
                && let Ok(message) = PreKeySignalMessage::try_from(key.data.as_slice())
            {
                key.data = message.message().serialized().to_vec();
                key.prekey = false;
            }
        }
    }
}

fn failed(seq: i64, reason: &'static str) -> Action {
    Action::Emit(Event::SendFailed { seq, reason })
}
