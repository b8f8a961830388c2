//! What the harness knows about the encrypted messages of a scenario, to judge the IUT's
//! claims about them: every message its gatekeeper users sent (and what the IUT may do with
//! it), what the IUT surfaced, and what the users received. A `message_received` event is a
//! claim; it counts only when it matches a message the harness sent as valid, once.

use std::collections::{HashMap, HashSet};

use crate::e2ee;
use crate::roles::Deviation;
use crate::roles::pep::PepStore;
use crate::wire::{Element, ns};

/// A gatekeeper user's device, as the harness plays it.
pub(super) struct UserDevice {
    pub dev: e2ee::Device,
    /// Left out of the published device list (E2EE-27).
    pub removed: bool,
    /// Its published signed-prekey signature does not verify (E2EE-10).
    pub bad_signature: bool,
    /// Added by `e2ee_devices` after the scenario began (E2EE-27 rather than E2EE-14).
    pub added_later: bool,
    /// Its identity key changed under the same device id (E2EE-11, E2EE-12).
    pub identity_changed: bool,
    /// The first bundle of each IUT device this device set a session up from (E2EE-8's
    /// reuse of its one-time prekey).
    pub first_bundles: HashMap<u32, e2ee::Bundle>,
}

/// Whether the IUT may surface a message the harness sent, and if not, which requirement
/// forbids it.
#[derive(Debug, Clone)]
pub(super) enum Kind {
    /// A valid envelope: surface `text`, exactly once per device.
    Valid,
    /// Must not be surfaced; the requirement and why.
    Refused(&'static str, &'static str),
}

#[derive(Debug, Clone)]
pub(super) struct SentMessage {
    pub text: Option<String>,
    /// A plaintext `<body/>` sent beside the envelope (surfacing it is E2EE-31's).
    pub body: Option<String>,
    pub kind: Kind,
    /// The sending user's bare JID and device id.
    pub from_bare: String,
    pub from_device: u32,
    /// The sender's identity changed before this message: `identity_changed` must come
    /// first (E2EE-11).
    pub after_identity_change: bool,
}

/// A file a gatekeeper user sent as media (SPEC.md §14): what the client may report.
#[derive(Debug, Clone)]
pub(super) struct MediaExpect {
    /// The file the object decrypts to.
    pub file: super::media_files::Digested,
    /// The host's fault, when the client must refuse the object (MEDIA-24).
    pub refuse: Option<&'static str>,
}

#[derive(Default)]
pub(super) struct E2eeState {
    pub pep: PepStore,
    pub ready: bool,
    /// Per actor name, its devices.
    pub users: HashMap<String, Vec<UserDevice>>,
    /// The OMEMO device id each IUT instance published under (by instance index).
    pub iut_ids: HashMap<usize, u32>,
    /// Messages the users sent, by stanza id.
    pub sent: HashMap<String, SentMessage>,
    /// Stanzas kept by name for `release` and `replay`.
    pub kept: HashMap<String, Element>,
    /// Names of held stanzas not yet released.
    pub held: HashSet<String>,
    /// (IUT instance, stanza id) pairs the IUT surfaced.
    pub surfaced: HashSet<(usize, String)>,
    /// (IUT instance, sender bare JID, sender device) the IUT surfaced a message from: its
    /// messages to that device must be SignalMessages from then on (E2EE-16).
    pub iut_decrypted: HashSet<(usize, String, u32)>,
    /// (IUT instance, peer bare JID, peer device) for which it reported `identity_changed`.
    pub identity_events: HashSet<(usize, String, u32)>,
    /// Receipts the users got, by (IUT sender full JID, id): one each (STANZA-14).
    pub receipts: HashSet<(String, String)>,
    /// Payload keys and IVs of the IUT's messages (E2EE-18).
    pub iut_keys: HashSet<Vec<u8>>,
    pub iut_ivs: HashSet<Vec<u8>>,
    /// Message ids the IUT used (STANZA-12).
    pub iut_ids_used: HashSet<String>,
    /// Texts of the scenario, for the plaintext scan (E2EE-20).
    pub texts: Vec<String>,
    /// `sent` claims not yet matched with a message the gatekeeper received: (IUT
    /// instance, stanza id).
    pub sent_claims: Vec<(usize, String)>,
    /// Devices of the IUT told `prekeys-low` since their last publication.
    pub low_sent: HashSet<u32>,
    /// Media messages the users sent, by stanza id.
    pub media: HashMap<String, MediaExpect>,
}

/// Requirement IDs this module's checks cite.
pub(super) mod req {
    pub const EVENTS_TRUE: &str = "DRIVER-3";
    pub const REPLAY: &str = "E2EE-22";
    pub const EXACT_TEXT: &str = "E2EE-25";
    pub const IDENTITY_EVENT: &str = "E2EE-11";
    pub const NO_RECEIPT: &str = "STANZA-14";
}

impl E2eeState {
    /// Judges one E2EE driver event of IUT instance `dev` against what the harness sent.
    pub fn check_claim(
        &mut self,
        dev: usize,
        label: &str,
        ev: &serde_json::Value,
    ) -> Result<(), Deviation> {
        let name = ev.get("event").and_then(|v| v.as_str()).unwrap_or_default();
        match name {
            "identity_changed" => {
                let peer = str_of(ev, "peer");
                let device = ev.get("device_id").and_then(serde_json::Value::as_u64);
                if let Some(d) = device.and_then(|d| u32::try_from(d).ok()) {
                    let peer = peer.split('/').next().unwrap_or_default().to_string();
                    self.identity_events.insert((dev, peer, d));
                }
                Ok(())
            }
            "message_received" => self.check_received(dev, label, ev),
            "media_received" => self.check_media_received(dev, label, ev),
            "sent" => {
                self.sent_claims.push((dev, str_of(ev, "id")));
                Ok(())
            }
            _ => Ok(()),
        }
    }

    fn check_received(
        &mut self,
        dev: usize,
        label: &str,
        ev: &serde_json::Value,
    ) -> Result<(), Deviation> {
        let id = str_of(ev, "id");
        let text = str_of(ev, "text");
        let Some(sent) = self.sent.get(&id) else {
            return Err(Deviation::fail(
                req::EVENTS_TRUE,
                "message_received only for a message a gatekeeper user sent",
                format!("{label}{ev}: no gatekeeper user sent a message with id {id:?}"),
            ));
        };
        if let Kind::Refused(requirement, why) = sent.kind {
            return Err(Deviation::fail(
                requirement,
                format!("the IUT not to surface the message {id} ({why})"),
                format!("{label}{ev}"),
            ));
        }
        if !self.surfaced.insert((dev, id.clone())) {
            return Err(Deviation::fail(
                req::REPLAY,
                format!("message {id} surfaced once (a replay must not be surfaced again)"),
                format!("{label}a second {ev}"),
            ));
        }
        if sent.body.as_deref() == Some(text.as_str()) {
            return Err(Deviation::fail(
                "E2EE-31",
                format!(
                    "message_received with the decrypted text {:?}, not the plaintext <body/> beside the envelope",
                    sent.text.as_deref().unwrap_or_default()
                ),
                format!("{label}{ev}"),
            ));
        }
        if sent.text.as_deref() != Some(text.as_str()) {
            return Err(Deviation::fail(
                req::EXACT_TEXT,
                format!(
                    "message_received with text {:?}, exactly as encrypted",
                    sent.text.as_deref().unwrap_or_default()
                ),
                format!("{label}{ev}"),
            ));
        }
        let key = (dev, sent.from_bare.clone(), sent.from_device);
        if sent.after_identity_change && !self.identity_events.contains(&key) {
            return Err(Deviation::fail(
                req::IDENTITY_EVENT,
                format!(
                    "identity_changed for {} device {} before content under its new identity key",
                    sent.from_bare, sent.from_device
                ),
                format!("{label}{ev} without an identity_changed before it"),
            ));
        }
        self.iut_decrypted.insert(key);
        Ok(())
    }

    /// Judges a receipt the IUT sent a gatekeeper user: only for a message it surfaced, and
    /// one per message (STANZA-14). `Ok(true)` when `e` is a receipt.
    pub fn check_receipt(&mut self, label: &str, e: &Element) -> Result<bool, Deviation> {
        let Some(received) = e.child("received", ns::RECEIPTS) else {
            return Ok(false);
        };
        let id = received.attr("id").unwrap_or_default().to_string();
        let from = e.attr("from").unwrap_or_default().to_string();
        if let Some(SentMessage {
            kind: Kind::Refused(_, why),
            ..
        }) = self.sent.get(&id)
        {
            return Err(Deviation::fail(
                req::NO_RECEIPT,
                format!("no receipt for message {id}, which must not be surfaced ({why})"),
                format!("{label}{}", e.to_xml()),
            ));
        }
        if !self.receipts.insert((from, id.clone())) {
            return Err(Deviation::fail(
                req::NO_RECEIPT,
                format!("one receipt for message {id}"),
                format!("{label}a second receipt: {}", e.to_xml()),
            ));
        }
        Ok(true)
    }

    /// Whether `e` is a receipt for a message a user sent validly (a receipt the user asked
    /// for, which no step has to expect).
    pub fn is_requested_receipt(&self, e: &Element) -> bool {
        e.child("received", ns::RECEIPTS)
            .and_then(|r| r.attr("id"))
            .and_then(|id| self.sent.get(id))
            .is_some_and(|s| matches!(s.kind, Kind::Valid))
    }
}

/// Texts shorter than this are not looked for: short strings occur by chance.
const SCAN_MIN_LEN: usize = 8;

impl E2eeState {
    /// E2EE-20: looks for the scenario's texts in a stanza the IUT sent, in clear and in
    /// the encodings SPEC.md names (UTF-8, base64 of each alignment, URL-safe base64, hex).
    /// The `<body/>` of a message that carries an envelope is E2EE-19's to judge.
    pub fn scan(&self, label: &str, e: &Element) -> Result<(), Deviation> {
        if self.texts.is_empty() {
            return Ok(());
        }
        let mut haystacks = Vec::new();
        let skip_body = e.name == "message" && e.child("encrypted", e2ee::NS).is_some();
        collect_strings(e, skip_body, &mut haystacks);
        for text in self.texts.iter().filter(|t| t.len() >= SCAN_MIN_LEN) {
            for (encoding, needle) in encodings(text) {
                if let Some(h) = haystacks.iter().find(|h| h.contains(needle.as_str())) {
                    return Err(Deviation::fail(
                        "E2EE-20",
                        format!(
                            "no user content outside the encrypted payload ({text:?} {encoding})"
                        ),
                        format!("{label}{} (found in {h:?})", e.to_xml()),
                    ));
                }
            }
        }
        Ok(())
    }
}

/// Every attribute value and text of an element tree.
fn collect_strings(e: &Element, skip_body: bool, out: &mut Vec<String>) {
    for (_, v) in &e.attrs {
        out.push(v.clone());
    }
    for c in &e.children {
        match c {
            crate::wire::Node::Text(t) => out.push(t.clone()),
            crate::wire::Node::Element(child) => {
                if skip_body && child.name == "body" && child.ns == ns::JABBER_CLIENT {
                    continue;
                }
                collect_strings(child, false, out);
            }
        }
    }
}

/// The forms of `text` E2EE-20's scan looks for.
fn encodings(text: &str) -> Vec<(&'static str, String)> {
    use base64::Engine;
    use base64::engine::general_purpose::{STANDARD_NO_PAD, URL_SAFE_NO_PAD};
    let bytes = text.as_bytes();
    let mut out = vec![("in clear", text.to_string())];
    for offset in 0..3 {
        let tail = &bytes[offset.min(bytes.len())..];
        for (name, engine) in [
            ("in base64", &STANDARD_NO_PAD),
            ("in URL-safe base64", &URL_SAFE_NO_PAD),
        ] {
            let mut enc = engine.encode(tail);
            // The last characters depend on what follows the text: look for the stable part.
            enc.truncate(enc.len().saturating_sub(3));
            if enc.len() >= SCAN_MIN_LEN {
                out.push((name, enc));
            }
        }
    }
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    out.push(("in hex", hex.to_ascii_uppercase()));
    out.push(("in hex", hex));
    out
}

fn str_of(ev: &serde_json::Value, key: &str) -> String {
    ev.get(key)
        .and_then(|v| v.as_str())
        .unwrap_or_default()
        .to_string()
}

impl E2eeState {
    /// `media_received`: only for a file a user sent, whose object the host served intact,
    /// once, with the file's size and hash (MEDIA-24).
    fn check_media_received(
        &mut self,
        dev: usize,
        label: &str,
        ev: &serde_json::Value,
    ) -> Result<(), Deviation> {
        let id = str_of(ev, "id");
        let Some(expect) = self.media.get(&id) else {
            return Err(Deviation::fail(
                req::EVENTS_TRUE,
                "media_received only for a file a gatekeeper user sent",
                format!("{label}{ev}: no gatekeeper user sent a file in a message with id {id:?}"),
            ));
        };
        if let Some(fault) = expect.refuse {
            return Err(Deviation::fail(
                "MEDIA-24",
                format!(
                    "the client to refuse the file of message {id}: the media host served its object with the fault {fault}"
                ),
                format!("{label}{ev}"),
            ));
        }
        let size = ev.get("size").and_then(serde_json::Value::as_u64);
        let sha256 = str_of(ev, "sha256").to_ascii_lowercase();
        if size != Some(expect.file.size) || sha256 != expect.file.sha256 {
            return Err(Deviation::fail(
                "MEDIA-24",
                format!(
                    "media_received with the file's size {} and SHA-256 {}",
                    expect.file.size, expect.file.sha256
                ),
                format!("{label}{ev}"),
            ));
        }
        if !self.surfaced.insert((dev, id.clone())) {
            return Err(Deviation::fail(
                req::REPLAY,
                format!("the file of message {id} surfaced once"),
                format!("{label}a second {ev}"),
            ));
        }
        if let Some(sent) = self.sent.get(&id) {
            self.iut_decrypted
                .insert((dev, sent.from_bare.clone(), sent.from_device));
        }
        Ok(())
    }
}
