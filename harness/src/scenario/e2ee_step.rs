//! The end-to-end encryption steps (SPEC.md §9): a gatekeeper user encrypting to the IUT
//! (`e2ee_send`), decrypting what the IUT sent it (`e2ee_expect`), the IUT's published keys
//! (`e2ee_keys`), and changes to a gatekeeper user's devices (`e2ee_devices`).

use serde::Deserialize;

/// How a sent message is broken on purpose.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tamper {
    /// One bit of the payload flipped: the tag no longer verifies (E2EE-17).
    Payload,
    /// One byte of the Signal message in the IUT's `<key/>` flipped: E2EE-21.
    Key,
    /// The header's `sid` names a device of the sender the IUT has no session with
    /// (E2EE-21's unknown session).
    Sid,
}

/// `e2ee_send`: what the gatekeeper user sends the IUT.
#[derive(Debug, Clone, PartialEq)]
pub struct E2eeSend {
    /// The text (after `${var}` substitution); `None` for `release`, `replay` and a key
    /// transport element.
    pub text: Option<String>,
    /// Name under which the stanza is kept for `release` and `replay`; also sets
    /// `${NAME.id}`.
    pub name: Option<String>,
    /// Build and encrypt, but keep the stanza for a later `release` (out-of-order delivery).
    pub hold: bool,
    pub release: Option<String>,
    pub replay: Option<String>,
    pub tamper: Option<Tamper>,
    /// A plaintext `<body/>` beside the envelope (E2EE-31).
    pub body: Option<String>,
    /// Only a `<body/>`, no envelope (E2EE-31).
    pub plaintext_only: bool,
    /// The envelope has a `<key/>` for another device only, none for the IUT's (E2EE-21).
    pub no_key: bool,
    /// An envelope without `<payload/>` (E2EE-26).
    pub key_transport: bool,
    /// 12 (SPEC.md §9.2) or 16 (older senders, which receivers accept: E2EE-17).
    pub iv_len: usize,
    /// Start a new session from the bundle the first one was set up with, so the same
    /// one-time prekey is used again with a new base key (E2EE-8).
    pub reuse_prekey: bool,
    /// Which of the user's devices sends (index into its devices, default 0).
    pub from_device: usize,
    /// Whether the message requests a receipt (default: yes, as SPEC.md §9.2 shows).
    pub receipt: bool,
    /// Encrypt and drop this many messages first: they count as skipped message keys for
    /// the IUT (E2EE-23).
    pub skip: u32,
}

/// `e2ee_expect`: the gatekeeper user receives an encrypted message from the IUT and must
/// decrypt exactly this text.
#[derive(Debug, Clone, PartialEq)]
pub struct E2eeExpect {
    pub text: String,
}

/// `e2ee_keys`: the IUT's device must have published its device list and bundle; with
/// `low`, the gatekeeper hands out prekeys until fewer than 25 remain, says `prekeys-low`,
/// and the IUT must republish (E2EE-6).
#[derive(Debug, Clone, PartialEq)]
pub struct E2eeKeys {
    pub low: bool,
}

/// `e2ee_devices`: changes to the acting gatekeeper user's devices, announced to the IUT as
/// a pubsub event (E2EE-27).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct E2eeDevices {
    /// Devices added (fresh keys, published bundles).
    pub add: u32,
    /// Index of a device removed from the list.
    pub remove: Option<usize>,
    /// Index of a device whose published signed-prekey signature is made invalid (E2EE-10).
    pub bad_signature: Option<usize>,
    /// Index of a device that gets a new identity key under the same device id (E2EE-11).
    pub new_identity: Option<usize>,
    /// Index of a device whose one-time prekeys are all handed out (X3DH without one).
    pub empty_pool: Option<usize>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawE2eeSend {
    text: Option<String>,
    name: Option<String>,
    #[serde(default)]
    hold: bool,
    release: Option<String>,
    replay: Option<String>,
    tamper: Option<String>,
    body: Option<String>,
    #[serde(default)]
    plaintext_only: bool,
    #[serde(default)]
    no_key: bool,
    #[serde(default)]
    key_transport: bool,
    iv_len: Option<usize>,
    #[serde(default)]
    reuse_prekey: bool,
    #[serde(default)]
    from_device: usize,
    receipt: Option<bool>,
    #[serde(default)]
    skip: u32,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawE2eeExpect {
    text: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawE2eeKeys {
    #[serde(default)]
    low: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawE2eeDevices {
    #[serde(default)]
    add: u32,
    remove: Option<usize>,
    bad_signature: Option<usize>,
    new_identity: Option<usize>,
    empty_pool: Option<usize>,
}

/// How many skipped message keys a step may ask for: beyond E2EE-23's 1000, a little.
const MAX_SKIP: u32 = 2000;

pub(super) fn e2ee_send(r: RawE2eeSend) -> Result<E2eeSend, String> {
    let tamper = match r.tamper.as_deref() {
        None => None,
        Some("payload") => Some(Tamper::Payload),
        Some("key") => Some(Tamper::Key),
        Some("sid") => Some(Tamper::Sid),
        Some(t) => {
            return Err(format!(
                "e2ee_send: tamper = {t:?} must be \"payload\", \"key\" or \"sid\""
            ));
        }
    };
    let resend = r.release.is_some() || r.replay.is_some();
    if r.release.is_some() && r.replay.is_some() {
        return Err("e2ee_send: release and replay exclude each other".into());
    }
    if resend
        && (r.text.is_some()
            || r.hold
            || tamper.is_some()
            || r.body.is_some()
            || r.plaintext_only
            || r.no_key
            || r.key_transport
            || r.reuse_prekey
            || r.skip > 0)
    {
        return Err(
            "e2ee_send: release and replay send a stanza built before; they take no text or options".into(),
        );
    }
    if !resend && !r.key_transport && r.text.is_none() {
        return Err("e2ee_send: needs text (or release, replay, key_transport)".into());
    }
    if r.key_transport && (r.text.is_some() || r.body.is_some() || tamper == Some(Tamper::Payload))
    {
        return Err("e2ee_send: a key transport element carries no text, body or payload".into());
    }
    if r.plaintext_only && (r.body.is_some() || tamper.is_some() || r.no_key || r.key_transport) {
        return Err(
            "e2ee_send: plaintext_only sends the text as a <body/> alone: no envelope options"
                .into(),
        );
    }
    if r.hold && r.name.is_none() {
        return Err("e2ee_send: hold needs a name to release it by".into());
    }
    let iv_len = r.iv_len.unwrap_or(12);
    if iv_len != 12 && iv_len != 16 {
        return Err(format!(
            "e2ee_send: iv_len = {iv_len} must be 12 or 16 (SPEC.md §9.2)"
        ));
    }
    if r.skip > MAX_SKIP {
        return Err(format!("e2ee_send: skip = {} is over {MAX_SKIP}", r.skip));
    }
    if let Some(t) = &r.text {
        super::step::vars_ok(t)?;
    }
    Ok(E2eeSend {
        text: r.text,
        name: r.name,
        hold: r.hold,
        release: r.release,
        replay: r.replay,
        tamper,
        body: r.body,
        plaintext_only: r.plaintext_only,
        no_key: r.no_key,
        key_transport: r.key_transport,
        iv_len,
        reuse_prekey: r.reuse_prekey,
        from_device: r.from_device,
        receipt: r.receipt.unwrap_or(true),
        skip: r.skip,
    })
}

pub(super) fn e2ee_expect(r: RawE2eeExpect) -> Result<E2eeExpect, String> {
    super::step::vars_ok(&r.text)?;
    Ok(E2eeExpect { text: r.text })
}

pub(super) fn e2ee_keys(r: RawE2eeKeys) -> E2eeKeys {
    E2eeKeys { low: r.low }
}

pub(super) fn e2ee_devices(r: RawE2eeDevices) -> Result<E2eeDevices, String> {
    let d = E2eeDevices {
        add: r.add,
        remove: r.remove,
        bad_signature: r.bad_signature,
        new_identity: r.new_identity,
        empty_pool: r.empty_pool,
    };
    if d == E2eeDevices::default() {
        return Err(
            "e2ee_devices: say what changes (add, remove, bad_signature, new_identity, empty_pool)"
                .into(),
        );
    }
    if d.add > 8 {
        return Err("e2ee_devices: add at most 8 devices".into());
    }
    Ok(d)
}
