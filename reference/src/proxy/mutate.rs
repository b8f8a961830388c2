//! The byte-level deviations of the proxy's mutants (the correct proxy forwards every unit as
//! received and answers nothing itself). Each works on a unit the parser already accepted;
//! on anything it does not recognise it leaves the bytes alone.

use base64::Engine as _;
use gatecheck::wire::{Element, ns, xml_escape};

/// The `proxy-reserializes-envelope` deviation (PROXY-6): the start tag of the first
/// `encrypted` element written again with its attributes in reverse order and the other quote
/// character (or, when that changes nothing, one more space): the same infoset, other bytes.
pub fn reserialize_envelope(raw: &[u8]) -> Vec<u8> {
    let Some(start) = find_start_tag(raw, b"encrypted") else {
        return raw.to_vec();
    };
    let Some((tag_end, rewritten)) = rewrite_start_tag(&raw[start..]) else {
        return raw.to_vec();
    };
    let mut out = Vec::with_capacity(raw.len() + 4);
    out.extend_from_slice(&raw[..start]);
    out.extend_from_slice(&rewritten);
    out.extend_from_slice(&raw[start + tag_end..]);
    out
}

/// The `proxy-adds-attribute` deviation (PROXY-8): `attribute` (` name='value'`) inserted
/// right after the name of the unit's first start tag.
pub fn add_attribute(raw: &[u8], attribute: &str) -> Vec<u8> {
    let Some(lt) = raw.iter().position(|&b| b == b'<') else {
        return raw.to_vec();
    };
    let name_end = raw[lt + 1..]
        .iter()
        .position(|&b| b.is_ascii_whitespace() || b == b'/' || b == b'>')
        .map_or(raw.len(), |n| lt + 1 + n);
    let mut out = Vec::with_capacity(raw.len() + attribute.len());
    out.extend_from_slice(&raw[..name_end]);
    out.extend_from_slice(attribute.as_bytes());
    out.extend_from_slice(&raw[name_end..]);
    out
}

/// The `proxy-answers-disco` deviation (PROXY-10): the proxy's own answer to a disco#info
/// request, advertising what the reference client implements plus Jingle, which it does not.
pub fn disco_answer(iq: &Element) -> Option<String> {
    if !iq.is("iq", ns::JABBER_CLIENT) || iq.attr("type") != Some("get") {
        return None;
    }
    iq.child("query", ns::DISCO_INFO)?;
    let mut query = Element::new("query", ns::DISCO_INFO).with_child(
        Element::new("identity", ns::DISCO_INFO)
            .with_attr("category", "client")
            .with_attr("type", "phone"),
    );
    for feature in [
        ns::DISCO_INFO,
        ns::OMEMO,
        ns::RECEIPTS,
        ns::CHATSTATES,
        "urn:xmpp:jingle:1",
    ] {
        query = query.with_child(Element::new("feature", ns::DISCO_INFO).with_attr("var", feature));
    }
    let mut answer = Element::new("iq", ns::JABBER_CLIENT)
        .with_attr("type", "result")
        .with_child(query);
    if let Some(id) = iq.attr("id") {
        answer.set_attr("id", id);
    }
    if let Some(to) = iq.attr("from") {
        answer.set_attr("to", to);
    }
    if let Some(from) = iq.attr("to") {
        answer.set_attr("from", from);
    }
    Some(answer.to_xml_in(ns::JABBER_CLIENT))
}

/// The `proxy-trims-body` deviation (PROXY-7): the text of every `body` element (any prefix)
/// that holds only text, with leading and trailing XML whitespace cut off. Everything else,
/// an `<encrypted/>` element included, keeps its bytes.
pub fn trim_body_text(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len());
    let mut at = 0;
    while let Some(n) = find_start_tag(&raw[at..], b"body") {
        let start = at + n;
        let Some(gt) = tag_end(raw, start) else {
            break;
        };
        let open_end = gt + 1;
        let text_end = raw[open_end..]
            .iter()
            .position(|&b| b == b'<')
            .map_or(raw.len(), |n| open_end + n);
        let pure_text = raw[gt - 1] != b'/' && closes(&raw[text_end..], &raw[start + 1..]);
        out.extend_from_slice(&raw[at..open_end]);
        if pure_text {
            out.extend_from_slice(raw[open_end..text_end].trim_ascii());
        } else {
            out.extend_from_slice(&raw[open_end..text_end]);
        }
        at = text_end;
    }
    out.extend_from_slice(&raw[at..]);
    out
}

/// The `proxy-rewrites-auth` deviation (PROXY-13): the client's PLAIN or PLAIN-IDPROOF
/// `<auth>` written anew, its message's authorization identity (the part before the first NUL)
/// replaced by `jid`. `None` for anything else.
pub fn auth_with_authzid(auth: &Element, jid: &str) -> Option<String> {
    let mechanism = auth.attr("mechanism")?;
    if !auth.is("auth", ns::SASL) || !matches!(mechanism, "PLAIN" | "PLAIN-IDPROOF") {
        return None;
    }
    let b64 = base64::engine::general_purpose::STANDARD;
    let text: String = auth.text().split_whitespace().collect();
    let message = b64.decode(text).ok()?;
    let nul = message.iter().position(|&b| b == 0)?;
    let mut rewritten = jid.as_bytes().to_vec();
    rewritten.extend_from_slice(&message[nul..]);
    Some(format!(
        "<auth xmlns='{}' mechanism='{}'>{}</auth>",
        ns::SASL,
        xml_escape(mechanism),
        b64.encode(rewritten)
    ))
}

/// The proxy's own ping (the `proxy-pings-upstream` deviation, PROXY-9).
pub fn own_ping(id: &str) -> String {
    format!(
        "<iq type='get' id='{}'><ping xmlns='{}'/></iq>",
        xml_escape(id),
        ns::PING
    )
}

/// The offset of the `>` that ends the tag starting at `start` (quoted values skipped).
fn tag_end(raw: &[u8], start: usize) -> Option<usize> {
    let mut quote = None;
    for (i, &b) in raw.iter().enumerate().skip(start) {
        match quote {
            Some(q) if b == q => quote = None,
            Some(_) => {}
            None if b == b'\'' || b == b'"' => quote = Some(b),
            None if b == b'>' => return Some(i),
            None => {}
        }
    }
    None
}

/// Whether `rest` starts with the end tag of the element whose start tag's name begins
/// `name` (`body ...` or `p:body ...`).
fn closes(rest: &[u8], name: &[u8]) -> bool {
    let name_len = name
        .iter()
        .position(|&b| b.is_ascii_whitespace() || b == b'/' || b == b'>')
        .unwrap_or(name.len());
    rest.strip_prefix(b"</")
        .and_then(|r| r.strip_prefix(&name[..name_len]))
        .is_some_and(|r| {
            r.first()
                .is_some_and(|&b| b == b'>' || b.is_ascii_whitespace())
        })
}

/// The offset of the first start tag whose local name is `local`.
fn find_start_tag(raw: &[u8], local: &[u8]) -> Option<usize> {
    let mut at = 0;
    while let Some(n) = raw.get(at..)?.iter().position(|&b| b == b'<') {
        let lt = at + n;
        let name_end = raw[lt + 1..]
            .iter()
            .position(|&b| b.is_ascii_whitespace() || b == b'/' || b == b'>')
            .map_or(raw.len(), |n| lt + 1 + n);
        let name = &raw[lt + 1..name_end];
        let local_name = name.rsplit(|&b| b == b':').next().unwrap_or(name);
        if local_name == local {
            return Some(lt);
        }
        at = lt + 1;
    }
    None
}

/// The start tag at the beginning of `tag` rewritten (see [`reserialize_envelope`]), and the
/// length of the original tag.
fn rewrite_start_tag(tag: &[u8]) -> Option<(usize, Vec<u8>)> {
    let mut i = 1;
    while i < tag.len() && !(tag[i].is_ascii_whitespace() || tag[i] == b'/' || tag[i] == b'>') {
        i += 1;
    }
    let name = &tag[1..i];
    let mut attrs: Vec<(&[u8], &[u8], u8)> = Vec::new();
    let close: &[u8] = loop {
        while tag.get(i)?.is_ascii_whitespace() {
            i += 1;
        }
        match tag.get(i)? {
            b'>' => break b">",
            b'/' => break b"/>",
            _ => {}
        }
        let name_start = i;
        while !matches!(tag.get(i)?, b'=' | b' ' | b'\t' | b'\r' | b'\n') {
            i += 1;
        }
        let attr_name = &tag[name_start..i];
        while tag.get(i)?.is_ascii_whitespace() || tag[i] == b'=' {
            i += 1;
        }
        let quote = *tag.get(i)?;
        let value_start = i + 1;
        let len = tag.get(value_start..)?.iter().position(|&b| b == quote)?;
        attrs.push((attr_name, &tag[value_start..value_start + len], quote));
        i = value_start + len + 1;
    };
    let end = i + close.len();
    let mut out = Vec::with_capacity(end + 2);
    out.push(b'<');
    out.extend_from_slice(name);
    for (attr_name, value, quote) in attrs.iter().rev() {
        let other = if *quote == b'\'' { b'"' } else { b'\'' };
        let q = if value.contains(&other) {
            *quote
        } else {
            other
        };
        out.push(b' ');
        out.extend_from_slice(attr_name);
        out.push(b'=');
        out.push(q);
        out.extend_from_slice(value);
        out.push(q);
    }
    if out.as_slice() == tag.get(..end - close.len())? {
        out.push(b' ');
    }
    out.extend_from_slice(close);
    Some((end, out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use gatecheck::wire::{Limits, parse_fragment};

    /// Equal trees up to attribute order (which the infoset does not keep).
    fn same_infoset(a: &[u8], b: &[u8]) {
        fn sorted(mut e: Element) -> Element {
            e.attrs.sort();
            for child in &mut e.children {
                if let gatecheck::wire::Node::Element(c) = child {
                    *c = sorted(std::mem::take(c));
                }
            }
            e
        }
        let limits = Limits::profile_floors();
        let parse = |x| sorted(parse_fragment(x, &limits).unwrap());
        assert_eq!(parse(a), parse(b));
    }

    #[test]
    fn envelope_start_tag_changes_bytes_not_infoset() {
        let raw = b"<message xmlns='jabber:client' to='b@x'><encrypted \
            xmlns='eu.siacs.conversations.axolotl'><header sid='1'/></encrypted></message>";
        let out = reserialize_envelope(raw);
        assert_ne!(out, raw);
        assert!(
            String::from_utf8_lossy(&out)
                .contains("<encrypted xmlns=\"eu.siacs.conversations.axolotl\">")
        );
        same_infoset(raw, &out);
        let prefixed = b"<message xmlns='jabber:client'><o:encrypted xmlns:o=\"eu.siacs.conversations.axolotl\" \
            a='x\"'><o:payload>QQ==</o:payload></o:encrypted></message>";
        let out = reserialize_envelope(prefixed);
        assert_ne!(out, prefixed);
        same_infoset(prefixed, &out);
        assert_eq!(reserialize_envelope(b"<message/>"), b"<message/>");
    }

    #[test]
    fn attribute_goes_after_the_name() {
        assert_eq!(
            add_attribute(b" <message to='x'/>", " a='1'"),
            b" <message a='1' to='x'/>"
        );
        assert_eq!(add_attribute(b"<message>", " a='1'"), b"<message a='1'>");
    }

    #[test]
    fn body_text_is_trimmed_and_nothing_else() {
        let raw = b"<message to='b@x'><body xml:lang='en'>  hi there\n</body>\
            <encrypted xmlns='eu.siacs.conversations.axolotl'><payload> cA== </payload></encrypted>\
            <x:body xmlns:x='urn:x' a='>'> y </x:body><body/><body><b>k</b> </body></message>";
        let out = String::from_utf8(trim_body_text(raw)).unwrap();
        assert_eq!(
            out,
            "<message to='b@x'><body xml:lang='en'>hi there</body>\
            <encrypted xmlns='eu.siacs.conversations.axolotl'><payload> cA== </payload></encrypted>\
            <x:body xmlns:x='urn:x' a='>'>y</x:body><body/><body><b>k</b> </body></message>"
        );
        assert_eq!(trim_body_text(b"<message/>"), b"<message/>");
        assert_eq!(trim_body_text(b"<body>cut"), b"<body>cut");
    }

    #[test]
    fn auth_gets_the_jid_as_authzid() {
        let b64 = base64::engine::general_purpose::STANDARD;
        let auth = parse_fragment(
            format!(
                "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{}</auth>",
                b64.encode(b"\0alice\0pw")
            )
            .as_bytes(),
            &Limits::profile_floors(),
        )
        .unwrap();
        let out = auth_with_authzid(&auth, "alice@gk.gatecheck.test").unwrap();
        let again = parse_fragment(out.as_bytes(), &Limits::profile_floors()).unwrap();
        assert_eq!(again.attr("mechanism"), Some("PLAIN"));
        assert_eq!(
            b64.decode(again.text()).unwrap(),
            b"alice@gk.gatecheck.test\0alice\0pw"
        );
        let other = parse_fragment(
            b"<response xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>",
            &Limits::profile_floors(),
        )
        .unwrap();
        assert_eq!(auth_with_authzid(&other, "a@b"), None);
    }

    #[test]
    fn disco_answer_only_for_info_gets() {
        let limits = Limits::profile_floors();
        let get = parse_fragment(
            b"<iq xmlns='jabber:client' type='get' id='d1' from='gk.gatecheck.test' to='a@gk/r'>\
              <query xmlns='http://jabber.org/protocol/disco#info'/></iq>",
            &limits,
        )
        .unwrap();
        let answer = disco_answer(&get).unwrap();
        assert!(answer.contains("urn:xmpp:jingle:1"), "{answer}");
        assert!(answer.contains("id=\"d1\""), "{answer}");
        let other =
            parse_fragment(b"<iq xmlns='jabber:client' type='result' id='x'/>", &limits).unwrap();
        assert_eq!(disco_answer(&other), None);
    }
}
