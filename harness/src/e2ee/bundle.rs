//! The bundle `<bundle xmlns='eu.siacs.conversations.axolotl'>` (SPEC.md §9.1, E2EE-3/4/10).

use wacore_libsignal::protocol::IdentityKey;

use super::{
    E2eeError, NS, b64, clip, decimal_attr, expect_element, only_whitespace_text, text_of,
};
use crate::wire::Element;

/// A serialized Curve25519 public key: the type byte 0x05 and 32 key bytes.
pub(crate) const PUBLIC_KEY_LEN: usize = 33;
/// The type byte of a serialized Curve25519 key (libsignal's `DJB_TYPE`).
pub(crate) const DJB_TYPE: u8 = 0x05;
/// An XEdDSA signature.
pub(crate) const SIGNATURE_LEN: usize = 64;
/// Signatures longer than this are refused while parsing; 64 is the only valid length, checked
/// by [`Bundle::verify`] so that a wrong length reads as a bad signature (E2EE-4), not a
/// format error.
const MAX_SIGNATURE_BYTES: usize = 256;

/// A device's published keys. Keys are kept as their 33 serialized bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bundle {
    pub signed_prekey_id: u32,
    pub signed_prekey: Vec<u8>,
    pub signature: Vec<u8>,
    pub identity_key: Vec<u8>,
    /// One-time prekeys `(preKeyId, key)` in document order.
    pub prekeys: Vec<(u32, Vec<u8>)>,
}

impl Bundle {
    /// Parses a `<bundle/>`, checking its format (E2EE-3): each part present once, decimal
    /// ids, base64 values, 33-byte keys with the 0x05 type byte, distinct prekey ids. The
    /// signature is checked by [`Bundle::verify`].
    pub fn from_element(el: &Element) -> Result<Self, E2eeError> {
        expect_element(el, "bundle", "E2EE-3")?;
        only_whitespace_text(el, "E2EE-3")?;
        let mut signed: Option<(u32, Vec<u8>)> = None;
        let mut signature = None;
        let mut identity = None;
        let mut prekeys: Option<Vec<(u32, Vec<u8>)>> = None;
        for child in el.child_elements() {
            if child.ns != NS {
                return Err(unexpected(child, "bundle"));
            }
            match child.name.as_str() {
                "signedPreKeyPublic" => {
                    once(&signed, "signedPreKeyPublic")?;
                    let id = decimal_attr(child, "signedPreKeyId", "E2EE-3")?;
                    signed = Some((id, public_key(child)?));
                }
                "signedPreKeySignature" => {
                    once(&signature, "signedPreKeySignature")?;
                    signature = Some(b64::decode(
                        &text_of(child),
                        "signedPreKeySignature",
                        MAX_SIGNATURE_BYTES,
                        "E2EE-3",
                    )?);
                }
                "identityKey" => {
                    once(&identity, "identityKey")?;
                    identity = Some(public_key(child)?);
                }
                "prekeys" => {
                    once(&prekeys, "prekeys")?;
                    prekeys = Some(parse_prekeys(child)?);
                }
                _ => return Err(unexpected(child, "bundle")),
            }
        }
        let missing = |what: &str| E2eeError::new("E2EE-3", format!("<bundle/> has no <{what}/>"));
        let (signed_prekey_id, signed_prekey) =
            signed.ok_or_else(|| missing("signedPreKeyPublic"))?;
        Ok(Self {
            signed_prekey_id,
            signed_prekey,
            signature: signature.ok_or_else(|| missing("signedPreKeySignature"))?,
            identity_key: identity.ok_or_else(|| missing("identityKey"))?,
            prekeys: prekeys.ok_or_else(|| missing("prekeys"))?,
        })
    }

    /// Checks that the signed prekey signature verifies (XEdDSA) with the identity key over
    /// the 33-byte serialized signed prekey (E2EE-4), and that every key is a valid
    /// serialized Curve25519 key (E2EE-3), as a bundle must be before it is used (E2EE-10).
    pub fn verify(&self) -> Result<(), E2eeError> {
        check_key(&self.identity_key, "identityKey")?;
        check_key(&self.signed_prekey, "signedPreKeyPublic")?;
        for (id, key) in &self.prekeys {
            check_key(key, &format!("preKeyPublic preKeyId='{id}'"))?;
        }
        let identity = IdentityKey::decode(&self.identity_key).map_err(|e| {
            E2eeError::new("E2EE-3", format!("<identityKey/> is not a public key: {e}"))
        })?;
        if self.signature.len() != SIGNATURE_LEN {
            return Err(E2eeError::new(
                "E2EE-4",
                format!(
                    "<signedPreKeySignature/> is {} bytes, not a {SIGNATURE_LEN}-byte XEdDSA signature",
                    self.signature.len()
                ),
            ));
        }
        if !identity
            .public_key()
            .verify_signature(&self.signed_prekey, &self.signature)
        {
            return Err(E2eeError::new(
                "E2EE-4",
                format!(
                    "the signature of signed prekey {} does not verify with the identity key",
                    self.signed_prekey_id
                ),
            ));
        }
        Ok(())
    }

    /// A copy carrying only the one-time prekeys with these ids (as the gatekeeper hands a
    /// bundle out: with one of them, or none).
    pub fn with_prekeys(&self, ids: &[u32]) -> Bundle {
        Bundle {
            prekeys: self
                .prekeys
                .iter()
                .filter(|(id, _)| ids.contains(id))
                .cloned()
                .collect(),
            ..self.clone()
        }
    }

    /// The `<bundle/>` element, in §9.1's order.
    pub fn to_element(&self) -> Element {
        let prekeys = self
            .prekeys
            .iter()
            .fold(Element::new("prekeys", NS), |list, (id, key)| {
                list.with_child(
                    Element::new("preKeyPublic", NS)
                        .with_attr("preKeyId", id.to_string())
                        .with_text(b64::encode(key)),
                )
            });
        Element::new("bundle", NS)
            .with_child(
                Element::new("signedPreKeyPublic", NS)
                    .with_attr("signedPreKeyId", self.signed_prekey_id.to_string())
                    .with_text(b64::encode(&self.signed_prekey)),
            )
            .with_child(
                Element::new("signedPreKeySignature", NS).with_text(b64::encode(&self.signature)),
            )
            .with_child(Element::new("identityKey", NS).with_text(b64::encode(&self.identity_key)))
            .with_child(prekeys)
    }
}

fn parse_prekeys(el: &Element) -> Result<Vec<(u32, Vec<u8>)>, E2eeError> {
    only_whitespace_text(el, "E2EE-3")?;
    let mut out: Vec<(u32, Vec<u8>)> = Vec::new();
    for child in el.child_elements() {
        if !child.is("preKeyPublic", NS) {
            return Err(unexpected(child, "prekeys"));
        }
        let id = decimal_attr(child, "preKeyId", "E2EE-3")?;
        if out.iter().any(|(seen, _)| *seen == id) {
            return Err(E2eeError::new(
                "E2EE-3",
                format!("preKeyId='{id}' appears twice in <prekeys/>"),
            ));
        }
        out.push((id, public_key(child)?));
    }
    Ok(out)
}

/// The text of a key element, decoded and checked as a serialized Curve25519 key.
fn public_key(el: &Element) -> Result<Vec<u8>, E2eeError> {
    let key = b64::decode(&text_of(el), &el.name, 1024, "E2EE-3")?;
    check_key(&key, &el.name)?;
    Ok(key)
}

fn check_key(key: &[u8], what: &str) -> Result<(), E2eeError> {
    if key.len() != PUBLIC_KEY_LEN {
        return Err(E2eeError::new(
            "E2EE-3",
            format!(
                "<{what}/> is {} bytes, not a {PUBLIC_KEY_LEN}-byte serialized key",
                key.len()
            ),
        ));
    }
    if key[0] != DJB_TYPE {
        return Err(E2eeError::new(
            "E2EE-3",
            format!(
                "<{what}/> has type byte {:#04x}, not {DJB_TYPE:#04x} (Curve25519)",
                key[0]
            ),
        ));
    }
    Ok(())
}

fn once<T>(seen: &Option<T>, what: &str) -> Result<(), E2eeError> {
    if seen.is_some() {
        return Err(E2eeError::new(
            "E2EE-3",
            format!("<bundle/> has more than one <{what}/>"),
        ));
    }
    Ok(())
}

fn unexpected(child: &Element, parent: &str) -> E2eeError {
    E2eeError::new(
        "E2EE-3",
        format!(
            "unexpected <{} xmlns='{}'/> in <{parent}/>",
            clip(&child.name),
            clip(&child.ns)
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::e2ee::Device;
    use crate::wire::{Limits, parse_fragment};

    fn parse(xml: &str) -> Result<Bundle, String> {
        let el = parse_fragment(xml.as_bytes(), &Limits::harness_ceilings()).expect("well-formed");
        Bundle::from_element(&el).map_err(|e| e.to_string())
    }

    fn sample() -> Bundle {
        Device::generate(7, [7; 32], 3).bundle()
    }

    /// A bundle's XML with `edit` applied to its serialization.
    fn edited(edit: impl Fn(String) -> String) -> Result<Bundle, String> {
        parse(&edit(sample().to_element().to_xml()))
    }

    #[test]
    fn round_trip_and_verify() {
        let bundle = sample();
        assert_eq!(bundle.prekeys.len(), 3);
        assert_eq!(parse(&bundle.to_element().to_xml()), Ok(bundle.clone()));
        assert_eq!(bundle.verify(), Ok(()));
        let one = bundle.with_prekeys(&[bundle.prekeys[1].0]);
        assert_eq!(one.prekeys, vec![bundle.prekeys[1].clone()]);
        assert_eq!(one.verify(), Ok(()));
        assert!(bundle.with_prekeys(&[]).prekeys.is_empty());
    }

    #[test]
    fn pretty_printed_bundle_parses() {
        let b = sample();
        let k = |v: &[u8]| {
            let s = b64::encode(v);
            format!("\n      {}\n      {}\n    ", &s[..20], &s[20..])
        };
        let xml = format!(
            "<bundle xmlns='eu.siacs.conversations.axolotl'>\n  <signedPreKeyPublic signedPreKeyId='{}'>{}</signedPreKeyPublic>\n  <signedPreKeySignature>{}</signedPreKeySignature>\n  <identityKey>{}</identityKey>\n  <prekeys>\n    <preKeyPublic preKeyId='{}'>{}</preKeyPublic>\n  </prekeys>\n</bundle>",
            b.signed_prekey_id,
            k(&b.signed_prekey),
            k(&b.signature),
            k(&b.identity_key),
            b.prekeys[0].0,
            k(&b.prekeys[0].1)
        );
        assert_eq!(parse(&xml), Ok(b.with_prekeys(&[b.prekeys[0].0])));
    }

    #[test]
    fn format_errors() {
        let b = sample();
        let spk = b64::encode(&b.signed_prekey);
        let ik = b64::encode(&b.identity_key);
        let sig = b64::encode(&b.signature);
        let cases: Vec<(Result<Bundle, String>, &str)> = vec![
            (
                parse("<bundle xmlns='urn:x'/>"),
                "E2EE-3: expected <bundle xmlns='eu.siacs.conversations.axolotl'/>, found <bundle xmlns='urn:x'/>",
            ),
            (
                parse("<bundle xmlns='eu.siacs.conversations.axolotl'/>"),
                "E2EE-3: <bundle/> has no <signedPreKeyPublic/>",
            ),
            (
                edited(|x| {
                    x.replace(
                        "<prekeys>",
                        "<prekeys><preKeyPublic preKeyId=\"1\">BQ==</preKeyPublic>",
                    )
                }),
                "E2EE-3: <preKeyPublic/> is 1 bytes, not a 33-byte serialized key",
            ),
            (
                edited(|x| {
                    x.replace(
                        &ik,
                        &b64::encode(&[[0x06].as_slice(), &b.identity_key[1..]].concat()),
                    )
                }),
                "E2EE-3: <identityKey/> has type byte 0x06, not 0x05 (Curve25519)",
            ),
            (
                edited(|x| x.replace("signedPreKeyId=\"1\"", "signedPreKeyId=\"one\"")),
                "E2EE-3: signedPreKeyId='one' on <signedPreKeyPublic/> is not a decimal integer of at most 32 bits",
            ),
            (
                edited(|x| x.replace(&sig, "not base64!")),
                "E2EE-3: <signedPreKeySignature/> is not base64 (standard alphabet, padded): the character '!' in 'not base64!'",
            ),
            (
                edited(|x| {
                    x.replace(
                        &format!("preKeyId=\"{}\"", b.prekeys[1].0),
                        &format!("preKeyId=\"{}\"", b.prekeys[0].0),
                    )
                }),
                "E2EE-3: preKeyId='1' appears twice in <prekeys/>",
            ),
            (
                edited(|x| x.replace("<identityKey>", "<identityKey>AAAA")),
                "E2EE-3: <identityKey/> is 36 bytes, not a 33-byte serialized key",
            ),
            (
                edited(|x| x.replace("</bundle>", "<identityKey>x</identityKey></bundle>")),
                "E2EE-3: <bundle/> has more than one <identityKey/>",
            ),
            (
                edited(|x| x.replace("</bundle>", "<extra/></bundle>")),
                "E2EE-3: unexpected <extra xmlns='eu.siacs.conversations.axolotl'/> in <bundle/>",
            ),
            (
                edited(|x| x.replace("</prekeys>", "<preKey/></prekeys>")),
                "E2EE-3: unexpected <preKey xmlns='eu.siacs.conversations.axolotl'/> in <prekeys/>",
            ),
            (
                edited(|x| x.replace(&spk, "")),
                "E2EE-3: <signedPreKeyPublic/> is empty",
            ),
            (
                edited(|x| x.replace("<prekeys>", "x<prekeys>")),
                "E2EE-3: <bundle/> contains text 'x'",
            ),
        ];
        for (got, want) in cases {
            assert_eq!(got, Err(want.to_owned()));
        }
    }

    #[test]
    fn verify_errors() {
        let good = sample();
        let mut bad_sig = good.clone();
        bad_sig.signature[0] ^= 1;
        assert_eq!(
            bad_sig.verify().map_err(|e| e.to_string()),
            Err(
                "E2EE-4: the signature of signed prekey 1 does not verify with the identity key"
                    .into()
            )
        );
        let mut other_identity = good.clone();
        other_identity.identity_key = Device::generate(8, [8; 32], 0).identity_key();
        assert_eq!(
            other_identity
                .verify()
                .map(|_| ())
                .map_err(|e| e.requirement),
            Err("E2EE-4")
        );
        let mut short_sig = good.clone();
        short_sig.signature.truncate(63);
        assert_eq!(
            short_sig.verify().map_err(|e| e.to_string()),
            Err(
                "E2EE-4: <signedPreKeySignature/> is 63 bytes, not a 64-byte XEdDSA signature"
                    .into()
            )
        );
        let mut bad_prekey = good.clone();
        bad_prekey.prekeys[0].1.push(0);
        assert_eq!(
            bad_prekey.verify().map_err(|e| e.to_string()),
            Err(
                "E2EE-3: <preKeyPublic preKeyId='1'/> is 34 bytes, not a 33-byte serialized key"
                    .into()
            )
        );
    }
}
