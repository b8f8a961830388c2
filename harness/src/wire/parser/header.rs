//! The prologue: the XML declaration and the stream header tag.

use super::{StreamHeader, tree};
use crate::wire::error::{Violation, WireError};
use crate::wire::limits::Limits;
use crate::wire::ns;
use crate::wire::tree::NsContext;

/// Checks the leading `<?xml ...?>`: version 1.0, encoding (if given) UTF-8.
pub(super) fn check_declaration(bytes: &[u8], base: u64) -> Result<(), WireError> {
    use quick_xml::Reader;
    use quick_xml::events::Event;

    let src = tree::validate_text(bytes, base)?;
    let mut reader = Reader::from_str(src);
    let xml = |e: &dyn std::fmt::Display| WireError::new(base, Violation::Xml(e.to_string()));
    let decl = match reader.read_event() {
        Ok(Event::Decl(d)) => d,
        Ok(_) => return Err(xml(&"malformed XML declaration")),
        Err(e) => return Err(xml(&e)),
    };
    let version = decl.version().map_err(|e| xml(&e))?;
    if version != "1.0" {
        let version = version.into_owned();
        return Err(WireError::new(
            base,
            Violation::UnsupportedXmlVersion { version },
        ));
    }
    match decl.encoding() {
        None => Ok(()),
        Some(Ok(enc)) if enc.eq_ignore_ascii_case("utf-8") => Ok(()),
        Some(Ok(enc)) => Err(WireError::new(
            base,
            Violation::UnsupportedEncoding {
                encoding: enc.into_owned(),
            },
        )),
        Some(Err(e)) => Err(xml(&e)),
    }
}

/// Resolves and checks the header tag: `stream` in the streams namespace, default namespace
/// `jabber:client` or `jabber:server` (RFC 6120 §4.8).
pub(super) fn parse_header(
    bytes: &[u8],
    base: u64,
    limits: &Limits,
) -> Result<(StreamHeader, NsContext), WireError> {
    let parsed = tree::parse_start_tag(bytes, base, limits)?;
    let element = parsed.element;
    if element.name != "stream" {
        let name = qualified_name(bytes);
        return Err(WireError::new(base, Violation::NotAStreamHeader { name }));
    }
    if element.ns != ns::STREAMS {
        let found = element.ns;
        return Err(WireError::new(
            base,
            Violation::WrongStreamNamespace { found },
        ));
    }
    let default_ns = parsed
        .declared
        .iter()
        .rev()
        .find(|(p, _)| p.is_empty())
        .map(|(_, u)| u.clone())
        .unwrap_or_default();
    if default_ns != ns::JABBER_CLIENT && default_ns != ns::JABBER_SERVER {
        return Err(WireError::new(
            base,
            Violation::WrongContentNamespace { found: default_ns },
        ));
    }
    let mut header = StreamHeader::new(default_ns);
    for (name, value) in element.attrs {
        match name.as_str() {
            "to" => header.to = Some(value),
            "from" => header.from = Some(value),
            "id" => header.id = Some(value),
            "version" => header.version = Some(value),
            "xml:lang" => header.lang = Some(value),
            _ if name.starts_with("xmlns:") && value == ns::STREAMS => {}
            _ => header.other_attrs.push((name, value)),
        }
    }
    Ok((
        header,
        NsContext {
            bindings: parsed.declared,
        },
    ))
}

/// The tag name as written, from the bytes of a start tag.
fn qualified_name(tag: &[u8]) -> String {
    let name = tag.get(1..).unwrap_or_default();
    let end = name
        .iter()
        .position(|&c| matches!(c, b' ' | b'\t' | b'\n' | b'\r' | b'/' | b'>'))
        .unwrap_or(name.len());
    String::from_utf8_lossy(name.get(..end).unwrap_or_default()).into_owned()
}
