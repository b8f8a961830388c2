//! End-to-end encryption (SPEC.md §9): OMEMO 0.3 wire elements over the Signal protocol.
//!
//! - [`DeviceList`], [`Bundle`] and [`Envelope`] are the three XEP-0384 v0.3.0 elements
//!   (namespace [`NS`]) as typed values: `from_element` checks an element against §9.1/§9.2 and
//!   names the requirement a defect breaks ([`E2eeError`]); `to_element` writes one.
//! - [`Device`] is one OMEMO device (identity, signed prekey, one-time prekeys, sessions, known
//!   identities) on wacore-libsignal: X3DH from a bundle, envelopes out, envelopes in. It is
//!   deterministic: the same seed gives the same keys and the same bytes on every run.
//! - The payload is XEP-0384 v0.3.0's: the UTF-8 text under AES-128-GCM, the 16-byte key and
//!   the tag carried in each recipient's Signal message ([`payload`]).
//! - [`test_identity`] names the fixed seeds of the gatekeeper's test users
//!   (fixtures/keys/identities.toml).

mod b64;
mod bundle;
mod device;
mod devicelist;
mod envelope;
mod error;
mod identities;
pub mod payload;
mod store;

#[cfg(test)]
mod device_tests;
#[cfg(test)]
mod parse_props;

use std::fmt;

pub use bundle::Bundle;
pub use device::{Decrypted, Device, DeviceKeys, IdentityStatus, SignalDecrypted};
pub use devicelist::DeviceList;
pub use envelope::{Envelope, KeyElement};
pub use error::DecryptError;
pub use identities::{TestIdentity, test_identities, test_identity};

/// The XEP-0384 v0.3.0 namespace of every element here.
pub const NS: &str = "eu.siacs.conversations.axolotl";
/// The PEP node holding an account's device list (§9.1).
pub const DEVICELIST_NODE: &str = "eu.siacs.conversations.axolotl.devicelist";
/// The prefix of a device's bundle node; the device id follows in decimal.
pub const BUNDLE_NODE_PREFIX: &str = "eu.siacs.conversations.axolotl.bundles:";

/// The largest device id E2EE-1 allows (ids are 1..=2^31-1).
pub const MAX_DEVICE_ID: u32 = 0x7FFF_FFFF;
/// Envelopes with more `<key/>` elements than this are refused before any crypto runs.
pub const MAX_KEYS: usize = 1000;
/// The largest decoded `<payload/>` accepted (1 MiB): far above any text a stanza can carry.
pub const MAX_PAYLOAD_BYTES: usize = 1 << 20;
/// The largest decoded `<key/>` accepted: a PreKeySignalMessage carrying 32 bytes is about
/// 200 bytes; PQXDH (E2EE-28) adds a 1568-byte KEM ciphertext, hence the headroom.
pub const MAX_KEY_BYTES: usize = 4096;
/// The IV length a sender must use (E2EE-17).
pub const IV_LEN: usize = 12;
/// The IV length of older OMEMO senders, which a receiver accepts too.
pub const LEGACY_IV_LEN: usize = 16;

/// The bundle node of a device: `eu.siacs.conversations.axolotl.bundles:N`.
pub fn bundle_node(device_id: u32) -> String {
    format!("{BUNDLE_NODE_PREFIX}{device_id}")
}

/// The device id in a bundle node name, if it is one. Node names are compared as strings by
/// pubsub services, so only the canonical decimal form (no sign, no leading zero) counts.
pub fn parse_bundle_node(node: &str) -> Option<u32> {
    let digits = node.strip_prefix(BUNDLE_NODE_PREFIX)?;
    if digits.starts_with('0') {
        return None;
    }
    parse_decimal(digits)
}

/// A violation found in E2EE data, naming the SPEC.md requirement it breaks.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{requirement}: {message}")]
pub struct E2eeError {
    /// The SPEC.md requirement id, e.g. `E2EE-13`.
    pub requirement: &'static str,
    /// What is wrong, naming the element or attribute.
    pub message: String,
}

impl E2eeError {
    pub(crate) fn new(requirement: &'static str, message: impl Into<String>) -> Self {
        Self {
            requirement,
            message: message.into(),
        }
    }
}

/// One device of one account: the bare JID and the device id (a Signal protocol address).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Address {
    /// The account's bare JID.
    pub jid: String,
    /// The device id (E2EE-1).
    pub device: u32,
}

impl Address {
    /// The address of `device` of the account `jid` (a bare JID).
    pub fn new(jid: impl Into<String>, device: u32) -> Self {
        Self {
            jid: jid.into(),
            device,
        }
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.jid, self.device)
    }
}

/// An unsigned decimal integer that fits in u32: ASCII digits only (no sign, no whitespace).
/// Leading zeros are accepted: `007` is still a decimal integer (xs:integer's lexical form).
pub(crate) fn parse_decimal(s: &str) -> Option<u32> {
    if s.is_empty() || s.len() > 32 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let trimmed = s.trim_start_matches('0');
    if trimmed.is_empty() {
        return Some(0);
    }
    trimmed.parse().ok()
}

/// A required decimal attribute, with the requirement to name when it is missing or malformed.
pub(crate) fn decimal_attr(
    el: &crate::wire::Element,
    attr: &str,
    requirement: &'static str,
) -> Result<u32, E2eeError> {
    let Some(value) = el.attr(attr) else {
        return Err(E2eeError::new(
            requirement,
            format!("<{}/> has no {attr} attribute", el.name),
        ));
    };
    parse_decimal(value).ok_or_else(|| {
        E2eeError::new(
            requirement,
            format!(
                "{attr}='{}' on <{}/> is not a decimal integer of at most 32 bits",
                clip(value),
                el.name
            ),
        )
    })
}

/// A device id attribute: decimal (else a `malformed` violation) and within E2EE-1's range.
pub(crate) fn device_id_attr(
    el: &crate::wire::Element,
    attr: &str,
    malformed: &'static str,
) -> Result<u32, E2eeError> {
    let id = decimal_attr(el, attr, malformed)?;
    if id == 0 || id > MAX_DEVICE_ID {
        return Err(E2eeError::new(
            "E2EE-1",
            format!(
                "{attr}='{id}' on <{}/> is outside the device id range 1..=2147483647",
                el.name
            ),
        ));
    }
    Ok(id)
}

/// The text of an element, borrowed when it is one text node (the usual case), so decoding
/// a large `<payload/>` does not copy it first.
pub(crate) fn text_of(el: &crate::wire::Element) -> std::borrow::Cow<'_, str> {
    match el.children.as_slice() {
        [] => std::borrow::Cow::Borrowed(""),
        [crate::wire::Node::Text(t)] => std::borrow::Cow::Borrowed(t),
        _ => std::borrow::Cow::Owned(el.text()),
    }
}

/// At most 40 characters of untrusted text, for error messages.
pub(crate) fn clip(s: &str) -> String {
    const MAX: usize = 40;
    match s.char_indices().nth(MAX) {
        Some((at, _)) => format!("{}…", &s[..at]),
        None => s.to_owned(),
    }
}

/// The element must be `<name xmlns=NS>`.
pub(crate) fn expect_element(
    el: &crate::wire::Element,
    name: &str,
    requirement: &'static str,
) -> Result<(), E2eeError> {
    if el.is(name, NS) {
        Ok(())
    } else {
        Err(E2eeError::new(
            requirement,
            format!(
                "expected <{name} xmlns='{NS}'/>, found <{} xmlns='{}'/>",
                clip(&el.name),
                clip(&el.ns)
            ),
        ))
    }
}

/// Text between child elements must be whitespace (what pretty-printers add).
pub(crate) fn only_whitespace_text(
    el: &crate::wire::Element,
    requirement: &'static str,
) -> Result<(), E2eeError> {
    for node in &el.children {
        if let crate::wire::Node::Text(t) = node
            && !t.bytes().all(b64::is_xml_space)
        {
            return Err(E2eeError::new(
                requirement,
                format!("<{}/> contains text '{}'", el.name, clip(t.trim())),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bundle_node_round_trip() {
        assert_eq!(
            bundle_node(1834299211),
            "eu.siacs.conversations.axolotl.bundles:1834299211"
        );
        assert_eq!(parse_bundle_node(&bundle_node(7)), Some(7));
        assert_eq!(
            parse_bundle_node("eu.siacs.conversations.axolotl.bundles:007"),
            None
        );
        assert_eq!(
            parse_bundle_node("eu.siacs.conversations.axolotl.bundles:"),
            None
        );
        assert_eq!(
            parse_bundle_node("eu.siacs.conversations.axolotl.bundles:+7"),
            None
        );
        assert_eq!(
            parse_bundle_node("eu.siacs.conversations.axolotl.bundles:4294967296"),
            None
        );
        assert_eq!(parse_bundle_node(DEVICELIST_NODE), None);
    }

    #[test]
    fn decimal_forms() {
        assert_eq!(parse_decimal("0"), Some(0));
        assert_eq!(parse_decimal("007"), Some(7));
        assert_eq!(parse_decimal("4294967295"), Some(u32::MAX));
        assert_eq!(parse_decimal("4294967296"), None);
        for bad in ["", " 1", "1 ", "+1", "-1", "1e3", "0x10", "١"] {
            assert_eq!(parse_decimal(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn address_display() {
        assert_eq!(
            Address::new("alice@gatekeeper.example", 42).to_string(),
            "alice@gatekeeper.example/42"
        );
    }

    #[test]
    fn error_display_names_the_requirement() {
        let e = E2eeError::new("E2EE-13", "no <iv/>");
        assert_eq!(e.to_string(), "E2EE-13: no <iv/>");
    }
}
