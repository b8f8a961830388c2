//! Incoming messages: envelopes (E2EE-17, E2EE-21, E2EE-22, E2EE-25, E2EE-26, E2EE-31),
//! receipts (STANZA-13, STANZA-14), the gatekeeper's prekey notice (§9.1) and device list
//! events (E2EE-27).
//!
//! The client composes the two layers of `gatecheck::e2ee` itself (the Signal message, then
//! the payload), so that each check it owes (the tag, the text's size and encoding) sits
//! where it is made.

use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::{BuildHasher, RandomState};

use gatecheck::e2ee::LEGACY_IV_LEN;
use gatecheck::e2ee::payload::{self, KEY_LEN, KEY_MATERIAL_LEN, TAG_LEN};
use gatecheck::e2ee::{
    Address, DEVICELIST_NODE, DecryptError, Device, Envelope, IdentityStatus, KeyElement, NS,
};
use gatecheck::wire::{Element, ns};
use tokio::time::Instant;

use super::iq::{self, KEYS};
use super::{Action, Omemo, PREKEYS};
use crate::driver::Event;
use crate::mutant::Mutant;

/// The largest text surfaced (E2EE-25).
pub const MAX_TEXT_BYTES: usize = 65536;
/// How many decrypted Signal messages (and receipts) are remembered.
const MEMORY: usize = 4096;

/// What was decrypted before (replays, E2EE-22) and what was acknowledged (STANZA-14).
#[derive(Default)]
pub struct Seen {
    /// Keyed per process, so that a peer cannot aim collisions at the fingerprints.
    hasher: RandomState,
    /// Fingerprint of each Signal message decrypted, with the text it carried (kept for
    /// the accept-replays mutant only).
    texts: HashMap<u64, Option<String>>,
    order: VecDeque<u64>,
    /// `(sender full JID, message id)` of each receipt sent.
    receipted: HashSet<(String, String)>,
    receipt_order: VecDeque<(String, String)>,
    /// The halt-after-decrypt-failure mutant failed once and decrypts nothing more.
    halted: bool,
    /// The in-order-only mutant's highest counter per sender and chain (ratchet key).
    counters: HashMap<(Address, Vec<u8>), u32>,
}

impl Seen {
    fn fingerprint(&self, sender: &Address, data: &[u8]) -> u64 {
        self.hasher.hash_one((sender, data))
    }

    fn remember(&mut self, fingerprint: u64, text: Option<String>) {
        if self.texts.insert(fingerprint, text).is_none() {
            self.order.push_back(fingerprint);
        }
        while self.order.len() > MEMORY {
            if let Some(old) = self.order.pop_front() {
                self.texts.remove(&old);
            }
        }
    }

    /// For the in-order-only mutant: records the message's chain counter, false if an
    /// earlier message of the chain showed a higher one.
    fn in_order(&mut self, sender: &Address, key: &KeyElement) -> bool {
        let Some((chain, counter)) = chain_position(key) else {
            return true;
        };
        let highest = self
            .counters
            .entry((sender.clone(), chain))
            .or_insert(counter);
        if counter < *highest {
            return false;
        }
        *highest = counter;
        true
    }

    /// True the first time for this sender and id.
    fn first_receipt(&mut self, from: &str, id: &str) -> bool {
        let key = (from.to_owned(), id.to_owned());
        if !self.receipted.insert(key.clone()) {
            return false;
        }
        self.receipt_order.push_back(key);
        while self.receipt_order.len() > MEMORY {
            if let Some(old) = self.receipt_order.pop_front() {
                self.receipted.remove(&old);
            }
        }
        true
    }
}

/// What opening an envelope gave: the text (`None`: a key transport element), or why not.
type Opened = Result<Option<String>, &'static str>;

impl Omemo {
    /// A message (not of type error) arrived.
    pub fn on_message(&mut self, message: &Element, now: Instant) -> Vec<Action> {
        let Some(account) = &self.account else {
            return Vec::new();
        };
        // RFC 6120 §8.1.2.1: no `from` means our own account.
        let from = message.attr("from").unwrap_or(&account.bare).to_owned();
        let mut actions = Vec::new();
        if from == account.domain && message.child("prekeys-low", KEYS).is_some() {
            actions.extend(self.on_prekeys_low(now));
        }
        for (node, payload) in iq::event_items(message) {
            if node == DEVICELIST_NODE {
                actions.extend(self.on_list_event(iq::bare(&from), payload, now));
            }
        }
        if message.child("encrypted", NS).is_some() {
            actions.extend(self.on_encrypted(message, &from));
        } else if message.child("body", ns::JABBER_CLIENT).is_some() {
            actions.extend(self.on_plaintext(message, &from));
        }
        actions
    }

    /// A message with an envelope: decrypt, surface, acknowledge; or report and stay silent.
    fn on_encrypted(&mut self, message: &Element, from: &str) -> Vec<Action> {
        let id = message.attr("id").map(str::to_owned);
        let mut actions = Vec::new();
        let (sid, opened) = match self.parse_envelope(message) {
            Ok(_) if self.seen.halted => (None, Err("halted")),
            Ok(envelope) => (Some(envelope.sid), self.open(from, &envelope, &mut actions)),
            Err(reason) => (header_sid(message), Err(reason)),
        };
        match opened {
            Ok(Some(mut text)) => {
                if self.mutant == Mutant::BodyOverEnvelope
                    && let Some(body) = message.child("body", ns::JABBER_CLIENT)
                {
                    // E2EE-31 deviation: the correct client ignores a <body/> beside an
                    // envelope and shows only what it decrypted.
                    text = body.text();
                }
                if crate::client::media::is_reference(&text) {
                    // A file (SPEC.md §14): what is shown is the downloaded file, or nothing.
                    actions.push(Action::FetchMedia {
                        from: from.to_owned(),
                        id,
                        reference: text,
                    });
                } else {
                    actions.push(Action::Emit(Event::MessageReceived {
                        from: from.to_owned(),
                        id,
                        device_id: sid.unwrap_or_default(),
                        text,
                    }));
                }
                if self.mutant == Mutant::NoReceipts {
                    // STANZA-13 deviation: the correct client acknowledges what it surfaced.
                } else {
                    actions.extend(self.receipt(message, from));
                }
            }
            // A key transport element (E2EE-26): the session advanced, nothing to show.
            Ok(None) => {}
            Err(reason) => {
                if self.mutant == Mutant::HaltAfterDecryptFailure {
                    // E2EE-21 deviation: the correct client keeps decrypting what follows.
                    self.seen.halted = true;
                }
                actions.push(Action::Emit(Event::DecryptFailed {
                    from: from.to_owned(),
                    id,
                    device_id: sid,
                    reason,
                }));
                if self.mutant == Mutant::ReceiptForUndecryptable {
                    // STANZA-14 deviation: the correct client acknowledges only content it
                    // decrypted and surfaced.
                    actions.extend(self.receipt(message, from));
                }
            }
        }
        actions
    }

    /// The message's one envelope (E2EE-13), with a payload no larger than a text may be.
    fn parse_envelope(&self, message: &Element) -> Result<Envelope, &'static str> {
        if message.children_named("encrypted", NS).count() != 1 {
            return Err("malformed");
        }
        let encrypted = message.child("encrypted", NS).ok_or("malformed")?;
        let envelope = Envelope::from_element(encrypted).map_err(|_| "malformed")?;
        // GCM's ciphertext is as long as its plaintext (E2EE-25).
        if envelope
            .payload
            .as_ref()
            .is_some_and(|p| p.len() > MAX_TEXT_BYTES)
        {
            return Err("malformed");
        }
        Ok(envelope)
    }

    /// The Signal message for this device, then the payload. `identity_changed` goes into
    /// `actions` as soon as the Signal layer has accepted a new identity key (E2EE-11,
    /// E2EE-12), whatever the payload turns out to be.
    fn open(&mut self, from: &str, envelope: &Envelope, actions: &mut Vec<Action>) -> Opened {
        let sender = Address::new(iq::bare(from), envelope.sid);
        if self.mutant == Mutant::RefuseLegacyIv && envelope.iv.len() == LEGACY_IV_LEN {
            // E2EE-17 deviation: the correct client accepts 16-byte IVs too.
            return Err("malformed");
        }
        let key = envelope.key_for(self.device.device_id()).ok_or("no-key")?;
        if self.mutant == Mutant::RefuseIncomingSessions
            && key.prekey
            && !self.device.has_session(&sender)
        {
            // E2EE-30 deviation: the correct client accepts sessions a peer sets up.
            return Err("untrusted");
        }
        if self.mutant == Mutant::InOrderOnly && !self.seen.in_order(&sender, key) {
            // E2EE-23 deviation: the correct client decrypts late messages with the keys
            // it kept for them.
            return Err("bad-message");
        }
        let fingerprint = self.seen.fingerprint(&sender, &key.data);
        if let Some(earlier) = self.seen.texts.get(&fingerprint) {
            if self.mutant == Mutant::AcceptReplays
                && let Some(text) = earlier
            {
                // E2EE-22 deviation: the correct client never surfaces a message twice.
                return Ok(Some(text.clone()));
            }
            return Err("duplicate");
        }
        let signal = match self.device.signal_decrypt(&sender, key) {
            Ok(signal) => signal,
            Err(DecryptError::UnknownPrekey { consumed: true, .. })
                if self.mutant == Mutant::KeepConsumedPrekey =>
            {
                // E2EE-8 deviation: the correct client deleted the one-time prekey when it
                // was first used; this one still has it (a device regenerated from its seed
                // holds the keys of its first pool).
                let mut twin = Device::generate(self.device.device_id(), self.seed, PREKEYS);
                twin.signal_decrypt(&sender, key).map_err(|e| reason(&e))?
            }
            Err(e) => return Err(reason(&e)),
        };
        if let IdentityStatus::Changed { .. } = signal.identity_status {
            if self.mutant == Mutant::SilentKeyTransportIdentity && envelope.payload.is_none() {
                // E2EE-12 deviation: the correct client reports every identity key it
                // replaces; this one only those that come with content to show, so a key
                // transport element swaps the key in silently.
            } else {
                actions.extend(self.identity_changed(&sender.jid, sender.device));
            }
        }
        // The Signal message is used up now, whatever the payload holds.
        self.seen.remember(fingerprint, None);
        let material: [u8; KEY_MATERIAL_LEN] = signal
            .plaintext
            .as_slice()
            .try_into()
            .map_err(|_| "bad-message")?;
        let mut payload_key = [0u8; KEY_LEN];
        payload_key.copy_from_slice(&material[..KEY_LEN]);
        let mut tag = [0u8; TAG_LEN];
        tag.copy_from_slice(&material[KEY_LEN..]);
        let Some(ciphertext) = &envelope.payload else {
            if self.mutant == Mutant::SurfaceKeyTransport {
                // E2EE-26 deviation: the correct client shows nothing for a key transport
                // element.
                return Ok(Some(String::new()));
            }
            return Ok(None);
        };
        let bytes = if self.mutant == Mutant::IgnoreGcmTag {
            // E2EE-17 deviation: the correct client checks the tag before using the text.
            // GCM's keystream depends on key and IV only, so sealing the ciphertext again
            // strips it off, unauthenticated.
            payload::seal(&payload_key, &envelope.iv, ciphertext).map(|(plain, _)| plain)
        } else {
            payload::open(&payload_key, &envelope.iv, ciphertext, &tag)
        }
        .map_err(|e| reason(&e))?;
        let mut text = String::from_utf8(bytes).map_err(|_| "bad-message")?;
        if self.mutant == Mutant::TrimText {
            // E2EE-25 deviation: the correct client surfaces the text byte for byte.
            text = text.trim().to_owned();
        }
        if text.is_empty() {
            // E2EE-24 forbids sending an empty text; there is nothing to show.
            return Err("bad-message");
        }
        // Only the accept-replays mutant ever shows a text again; the correct client keeps
        // the fingerprint alone (4096 texts of up to 64 KiB would be a lot to hold).
        let kept = (self.mutant == Mutant::AcceptReplays).then(|| text.clone());
        self.seen.remember(fingerprint, kept);
        Ok(Some(text))
    }

    /// A `<body/>` without an envelope: never surfaced (E2EE-31).
    fn on_plaintext(&mut self, message: &Element, from: &str) -> Vec<Action> {
        let id = message.attr("id").map(str::to_owned);
        if self.mutant == Mutant::SurfacePlaintext {
            // E2EE-31 deviation: the correct client shows no unencrypted content.
            let text = message
                .child("body", ns::JABBER_CLIENT)
                .map(Element::text)
                .unwrap_or_default();
            return vec![Action::Emit(Event::MessageReceived {
                from: from.to_owned(),
                id,
                device_id: 0,
                text,
            })];
        }
        let mut actions = vec![Action::Emit(Event::DecryptFailed {
            from: from.to_owned(),
            id,
            device_id: None,
            reason: "unencrypted",
        })];
        if self.mutant == Mutant::ReceiptWithoutDelivery {
            // STANZA-14 deviation: the correct client acknowledges only surfaced content.
            actions.extend(self.receipt(message, from));
        }
        actions
    }

    /// The receipt a message asked for (STANZA-13), once per sender and id (STANZA-14),
    /// addressed to the full JID it came from.
    fn receipt(&mut self, message: &Element, from: &str) -> Option<Action> {
        message.child("request", ns::RECEIPTS)?;
        let id = message.attr("id").filter(|id| !id.is_empty())?;
        if !self.seen.first_receipt(from, id) {
            return None;
        }
        let receipt_id = self.message_id();
        Some(Action::Send(
            Element::new("message", ns::JABBER_CLIENT)
                .with_attr("to", from)
                .with_attr("id", receipt_id)
                .with_child(Element::new("received", ns::RECEIPTS).with_attr("id", id)),
        ))
    }
}

/// The `sid` of an envelope that did not parse, when it can still be read.
fn header_sid(message: &Element) -> Option<u32> {
    message
        .child("encrypted", NS)?
        .child("header", NS)?
        .attr("sid")?
        .parse()
        .ok()
}

/// The sending chain (the sender's ratchet key) and counter of the Signal message in `key`.
fn chain_position(key: &KeyElement) -> Option<(Vec<u8>, u32)> {
    use wacore_libsignal::protocol::{PreKeySignalMessage, SignalMessage};
    let message = if key.prekey {
        PreKeySignalMessage::try_from(key.data.as_slice())
            .ok()?
            .message()
            .clone()
    } else {
        SignalMessage::try_from(key.data.as_slice()).ok()?
    };
    let chain = message.sender_ratchet_key().serialize().to_vec();
    Some((chain, message.counter()))
}

/// DRIVER.md's `decrypt_failed` reason for each failure of the Signal layer.
fn reason(e: &DecryptError) -> &'static str {
    match e {
        DecryptError::NoKeyForDevice { .. } => "no-key",
        DecryptError::UnknownSession { .. } => "no-session",
        DecryptError::UnknownPrekey { .. } | DecryptError::UnknownSignedPrekey { .. } => {
            "bad-prekey"
        }
        DecryptError::Duplicate { .. } => "duplicate",
        DecryptError::BadTag => "bad-tag",
        DecryptError::BadIv { .. }
        | DecryptError::PayloadTooLarge { .. }
        | DecryptError::Malformed(_) => "malformed",
        // A wrong prekey flag, a Signal message that does not parse or authenticate, key
        // material of the wrong size, text that is not UTF-8, and whatever the library adds.
        _ => "bad-message",
    }
}
