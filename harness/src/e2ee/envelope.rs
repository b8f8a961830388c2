//! The envelope `<encrypted xmlns='eu.siacs.conversations.axolotl'>` (SPEC.md §9.2, E2EE-13).

use super::{
    E2eeError, IV_LEN, LEGACY_IV_LEN, MAX_KEY_BYTES, MAX_KEYS, MAX_PAYLOAD_BYTES, NS, b64, clip,
    device_id_attr, expect_element, only_whitespace_text, text_of,
};
use crate::wire::Element;

/// One `<key rid='...'>`: a Signal message for one recipient device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyElement {
    /// The recipient device id.
    pub rid: u32,
    /// The `prekey` attribute: the data claims to be a PreKeySignalMessage.
    pub prekey: bool,
    /// The serialized Signal message (a PreKeySignalMessage or a SignalMessage).
    pub data: Vec<u8>,
}

/// An OMEMO 0.3 envelope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    /// The sender's device id.
    pub sid: u32,
    /// One key per recipient device, in document order.
    pub keys: Vec<KeyElement>,
    /// The AES-GCM IV: 12 bytes, or 16 from older OMEMO senders.
    pub iv: Vec<u8>,
    /// The AES-GCM ciphertext without its tag; `None` for a key transport element (E2EE-26).
    pub payload: Option<Vec<u8>>,
}

impl Envelope {
    /// Parses an `<encrypted/>` element, checking its structure (E2EE-13): one `<header/>`
    /// with a decimal `sid`, one or more `<key/>` with decimal `rid`s (distinct, E2EE-14) and
    /// boolean `prekey` attributes, exactly one `<iv/>` of 12 or 16 bytes (E2EE-17), then at
    /// most one `<payload/>`; all values base64. Sizes are bounded ([`MAX_KEYS`],
    /// [`MAX_KEY_BYTES`], [`MAX_PAYLOAD_BYTES`]) so hostile input costs little.
    pub fn from_element(el: &Element) -> Result<Self, E2eeError> {
        expect_element(el, "encrypted", "E2EE-13")?;
        only_whitespace_text(el, "E2EE-13")?;
        let mut header = None;
        let mut payload = None;
        for child in el.child_elements() {
            match (child.ns == NS, child.name.as_str()) {
                (true, "header") => {
                    if header.is_some() {
                        return Err(structure("<encrypted/> has more than one <header/>"));
                    }
                    if payload.is_some() {
                        return Err(structure("<payload/> comes before <header/>"));
                    }
                    header = Some(child);
                }
                (true, "payload") => {
                    if payload.is_some() {
                        return Err(structure("<encrypted/> has more than one <payload/>"));
                    }
                    payload = Some(parse_payload(child)?);
                }
                _ => return Err(unexpected(child, "encrypted")),
            }
        }
        let header = header.ok_or_else(|| structure("<encrypted/> has no <header/>"))?;
        let (sid, keys, iv) = parse_header(header)?;
        Ok(Self {
            sid,
            keys,
            iv,
            payload,
        })
    }

    /// The `<encrypted/>` element. `prekey='true'` is written for prekey keys only, and no
    /// attribute otherwise (as §9.2 allows and OMEMO clients do).
    pub fn to_element(&self) -> Element {
        let mut header = Element::new("header", NS).with_attr("sid", self.sid.to_string());
        for key in &self.keys {
            let mut el = Element::new("key", NS).with_attr("rid", key.rid.to_string());
            if key.prekey {
                el.set_attr("prekey", "true");
            }
            header = header.with_child(el.with_text(b64::encode(&key.data)));
        }
        header = header.with_child(Element::new("iv", NS).with_text(b64::encode(&self.iv)));
        let mut encrypted = Element::new("encrypted", NS).with_child(header);
        if let Some(payload) = &self.payload {
            encrypted =
                encrypted.with_child(Element::new("payload", NS).with_text(b64::encode(payload)));
        }
        encrypted
    }

    /// The key addressed to `device`, if any.
    pub fn key_for(&self, device: u32) -> Option<&KeyElement> {
        self.keys.iter().find(|k| k.rid == device)
    }
}

fn parse_header(header: &Element) -> Result<(u32, Vec<KeyElement>, Vec<u8>), E2eeError> {
    only_whitespace_text(header, "E2EE-13")?;
    let sid = device_id_attr(header, "sid", "E2EE-13")?;
    let mut keys: Vec<KeyElement> = Vec::new();
    let mut iv = None;
    for child in header.child_elements() {
        match (child.ns == NS, child.name.as_str()) {
            (true, "key") => {
                if keys.len() == MAX_KEYS {
                    return Err(structure(format!(
                        "<header/> has more than {MAX_KEYS} <key/> elements"
                    )));
                }
                let key = parse_key(child)?;
                if keys.iter().any(|k| k.rid == key.rid) {
                    return Err(E2eeError::new(
                        "E2EE-14",
                        format!("two <key/> elements have rid='{}'", key.rid),
                    ));
                }
                keys.push(key);
            }
            (true, "iv") => {
                if iv.is_some() {
                    return Err(structure("<header/> has more than one <iv/>"));
                }
                let bytes = b64::decode(&text_of(child), "iv", LEGACY_IV_LEN, "E2EE-13")?;
                if bytes.len() != IV_LEN && bytes.len() != LEGACY_IV_LEN {
                    return Err(E2eeError::new(
                        "E2EE-17",
                        format!(
                            "<iv/> is {} bytes, not {IV_LEN} (or {LEGACY_IV_LEN} from older senders)",
                            bytes.len()
                        ),
                    ));
                }
                iv = Some(bytes);
            }
            _ => return Err(unexpected(child, "header")),
        }
    }
    if keys.is_empty() {
        return Err(structure("<header/> has no <key/>"));
    }
    let iv = iv.ok_or_else(|| structure("<header/> has no <iv/>"))?;
    Ok((sid, keys, iv))
}

fn parse_key(el: &Element) -> Result<KeyElement, E2eeError> {
    let rid = device_id_attr(el, "rid", "E2EE-13")?;
    // xs:boolean's four lexical forms; anything else is neither true nor false.
    let prekey = match el.attr("prekey") {
        None | Some("false") | Some("0") => false,
        Some("true") | Some("1") => true,
        Some(other) => {
            return Err(structure(format!(
                "prekey='{}' on <key rid='{rid}'/> is not a boolean (true, false, 1, 0)",
                clip(other)
            )));
        }
    };
    let data = b64::decode(&text_of(el), "key", MAX_KEY_BYTES, "E2EE-13")?;
    Ok(KeyElement { rid, prekey, data })
}

fn parse_payload(el: &Element) -> Result<Vec<u8>, E2eeError> {
    only_element_free(el)?;
    let text = text_of(el);
    // An empty text encrypts to an empty ciphertext: `<payload/>` is then still a payload,
    // unlike its absence (a key transport element).
    if text.bytes().all(b64::is_xml_space) {
        return Ok(Vec::new());
    }
    b64::decode(&text, "payload", MAX_PAYLOAD_BYTES, "E2EE-13")
}

fn only_element_free(el: &Element) -> Result<(), E2eeError> {
    match el.child_elements().next() {
        Some(child) => Err(unexpected(child, &el.name)),
        None => Ok(()),
    }
}

fn structure(message: impl Into<String>) -> E2eeError {
    E2eeError::new("E2EE-13", message)
}

fn unexpected(child: &Element, parent: &str) -> E2eeError {
    structure(format!(
        "unexpected <{} xmlns='{}'/> in <{parent}/>",
        clip(&child.name),
        clip(&child.ns)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{Limits, parse_fragment};

    fn parse(xml: &str) -> Result<Envelope, String> {
        let el = parse_fragment(xml.as_bytes(), &Limits::harness_ceilings()).expect("well-formed");
        Envelope::from_element(&el).map_err(|e| e.to_string())
    }

    fn enc(inner: &str) -> String {
        format!("<encrypted xmlns='eu.siacs.conversations.axolotl'>{inner}</encrypted>")
    }

    const IV: &str = "AAECAwQFBgcICQoL"; // 12 bytes

    fn sample() -> Envelope {
        Envelope {
            sid: 1834299211,
            keys: vec![
                KeyElement {
                    rid: 7,
                    prekey: true,
                    data: vec![0x33, 1, 2, 3],
                },
                KeyElement {
                    rid: 8,
                    prekey: false,
                    data: vec![0x33, 4],
                },
            ],
            iv: (0..12).collect(),
            payload: Some(b"ciphertext".to_vec()),
        }
    }

    #[test]
    fn round_trip() {
        let e = sample();
        let xml = e.to_element().to_xml();
        assert_eq!(
            xml,
            "<encrypted xmlns=\"eu.siacs.conversations.axolotl\"><header sid=\"1834299211\"><key rid=\"7\" prekey=\"true\">MwECAw==</key><key rid=\"8\">MwQ=</key><iv>AAECAwQFBgcICQoL</iv></header><payload>Y2lwaGVydGV4dA==</payload></encrypted>"
        );
        assert_eq!(parse(&xml), Ok(e.clone()));
        let transport = Envelope {
            payload: None,
            ..e.clone()
        };
        assert_eq!(parse(&transport.to_element().to_xml()), Ok(transport));
        let empty = Envelope {
            payload: Some(Vec::new()),
            ..e
        };
        assert_eq!(parse(&empty.to_element().to_xml()), Ok(empty));
    }

    #[test]
    fn accepts_boolean_forms_legacy_iv_and_whitespace() {
        let xml = enc(
            "\n <header sid='5'>\n  <key rid='1' prekey='1'>Mw==</key>\n  <key rid='2' prekey='0'>Mw==</key>\n  <key rid='3' prekey='false'>Mw==</key>\n  <iv>\n AAECAwQFBgcI\n CQoLDA0ODw==\n </iv>\n </header>\n <payload>\n  AA==\n </payload>\n",
        );
        let e = parse(&xml).expect("valid");
        assert_eq!(
            e.keys.iter().map(|k| k.prekey).collect::<Vec<_>>(),
            [true, false, false]
        );
        assert_eq!(e.iv.len(), 16);
        assert_eq!(e.payload, Some(vec![0]));
        assert_eq!(e.key_for(2).map(|k| k.rid), Some(2));
        assert_eq!(e.key_for(9), None);
    }

    #[test]
    fn structure_errors() {
        let key = "<key rid='1'>Mw==</key>";
        let iv = format!("<iv>{IV}</iv>");
        let cases: Vec<(String, &str)> = vec![
            (
                "<encrypted xmlns='urn:x'/>".into(),
                "E2EE-13: expected <encrypted xmlns='eu.siacs.conversations.axolotl'/>, found <encrypted xmlns='urn:x'/>",
            ),
            (enc(""), "E2EE-13: <encrypted/> has no <header/>"),
            (
                enc(&format!(
                    "<header sid='1'>{key}{iv}</header><header sid='1'>{key}{iv}</header>"
                )),
                "E2EE-13: <encrypted/> has more than one <header/>",
            ),
            (
                enc(&format!(
                    "<payload>AA==</payload><header sid='1'>{key}{iv}</header>"
                )),
                "E2EE-13: <payload/> comes before <header/>",
            ),
            (
                enc(&format!(
                    "<header sid='1'>{key}{iv}</header><payload>AA==</payload><payload>AA==</payload>"
                )),
                "E2EE-13: <encrypted/> has more than one <payload/>",
            ),
            (
                enc(&format!("<header>{key}{iv}</header>")),
                "E2EE-13: <header/> has no sid attribute",
            ),
            (
                enc(&format!("<header sid='x1'>{key}{iv}</header>")),
                "E2EE-13: sid='x1' on <header/> is not a decimal integer of at most 32 bits",
            ),
            (
                enc(&format!("<header sid='0'>{key}{iv}</header>")),
                "E2EE-1: sid='0' on <header/> is outside the device id range 1..=2147483647",
            ),
            (
                enc(&format!("<header sid='1'>{iv}</header>")),
                "E2EE-13: <header/> has no <key/>",
            ),
            (
                enc(&format!("<header sid='1'>{key}</header>")),
                "E2EE-13: <header/> has no <iv/>",
            ),
            (
                enc(&format!("<header sid='1'>{key}{iv}{iv}</header>")),
                "E2EE-13: <header/> has more than one <iv/>",
            ),
            (
                enc(&format!("<header sid='1'><key>Mw==</key>{iv}</header>")),
                "E2EE-13: <key/> has no rid attribute",
            ),
            (
                enc(&format!(
                    "<header sid='1'><key rid='-1'>Mw==</key>{iv}</header>"
                )),
                "E2EE-13: rid='-1' on <key/> is not a decimal integer of at most 32 bits",
            ),
            (
                enc(&format!("<header sid='1'>{key}{key}{iv}</header>")),
                "E2EE-14: two <key/> elements have rid='1'",
            ),
            (
                enc(&format!(
                    "<header sid='1'><key rid='1' prekey='yes'>Mw==</key>{iv}</header>"
                )),
                "E2EE-13: prekey='yes' on <key rid='1'/> is not a boolean (true, false, 1, 0)",
            ),
            (
                enc(&format!(
                    "<header sid='1'><key rid='1' prekey='TRUE'>Mw==</key>{iv}</header>"
                )),
                "E2EE-13: prekey='TRUE' on <key rid='1'/> is not a boolean (true, false, 1, 0)",
            ),
            (
                enc(&format!(
                    "<header sid='1'><key rid='1'>M w=</key>{iv}</header>"
                )),
                "E2EE-13: <key/> is not base64 (standard alphabet, padded): misplaced or missing padding in 'M w='",
            ),
            (
                enc(&format!("<header sid='1'><key rid='1'/>{iv}</header>")),
                "E2EE-13: <key/> is empty",
            ),
            (
                enc(&format!("<header sid='1'>{key}<iv>AAAA</iv></header>")),
                "E2EE-17: <iv/> is 3 bytes, not 12 (or 16 from older senders)",
            ),
            (
                enc(&format!(
                    "<header sid='1'>{key}<iv>{}</iv></header>",
                    "AAAA".repeat(8)
                )),
                "E2EE-13: <iv/> holds more than 16 bytes",
            ),
            (
                enc(&format!("<header sid='1'>{key}{iv}<extra/></header>")),
                "E2EE-13: unexpected <extra xmlns='eu.siacs.conversations.axolotl'/> in <header/>",
            ),
            (
                enc(&format!(
                    "<header sid='1'>{key}{iv}</header><body xmlns='jabber:client'/>"
                )),
                "E2EE-13: unexpected <body xmlns='jabber:client'/> in <encrypted/>",
            ),
            (
                enc(&format!(
                    "<header sid='1'>{key}{iv}</header><payload><x/></payload>"
                )),
                "E2EE-13: unexpected <x xmlns='eu.siacs.conversations.axolotl'/> in <payload/>",
            ),
            (
                enc(&format!(
                    "<header sid='1'>{key}{iv}</header><payload>!!!!</payload>"
                )),
                "E2EE-13: <payload/> is not base64 (standard alphabet, padded): the character '!' in '!!!!'",
            ),
            (
                enc(&format!("<header sid='1'>x{key}{iv}</header>")),
                "E2EE-13: <header/> contains text 'x'",
            ),
        ];
        for (xml, want) in cases {
            assert_eq!(parse(&xml), Err(want.to_owned()), "{xml}");
        }
    }

    #[test]
    fn size_bounds() {
        let iv = format!("<iv>{IV}</iv>");
        let keys: String = (1..=1001)
            .map(|rid| format!("<key rid='{rid}'>Mw==</key>"))
            .collect();
        assert_eq!(
            parse(&enc(&format!("<header sid='1'>{keys}{iv}</header>"))),
            Err("E2EE-13: <header/> has more than 1000 <key/> elements".to_owned())
        );
        let big_key = "AAAA".repeat(MAX_KEY_BYTES / 3 + 1);
        assert_eq!(
            parse(&enc(&format!(
                "<header sid='1'><key rid='1'>{big_key}</key>{iv}</header>"
            ))),
            Err("E2EE-13: <key/> holds more than 4096 bytes".to_owned())
        );
        let big_payload = "AAAA".repeat(MAX_PAYLOAD_BYTES / 3 + 1);
        let el = Element::new("encrypted", NS)
            .with_child(
                Element::new("header", NS)
                    .with_attr("sid", "1")
                    .with_child(
                        Element::new("key", NS)
                            .with_attr("rid", "1")
                            .with_text("Mw=="),
                    )
                    .with_child(Element::new("iv", NS).with_text(IV)),
            )
            .with_child(Element::new("payload", NS).with_text(big_payload));
        assert_eq!(
            Envelope::from_element(&el).map_err(|e| e.to_string()),
            Err("E2EE-13: <payload/> holds more than 1048576 bytes".to_owned())
        );
    }
}
