//! The prologue: the XML declaration and the stream header tag.

use super::{StreamHeader, tree};
use crate::wire::error::{Violation, WireError};
use crate::wire::limits::Limits;
use crate::wire::ns;
use crate::wire::tree::NsContext;

/// Checks the leading `<?xml ...?>`: the grammar of XML 1.0 §2.8 (`XMLDecl`: version, then
/// optionally encoding, then optionally standalone, in that order, nothing else), version 1.0,
/// encoding (if given) UTF-8. quick-xml's declaration reader skips pseudo-attributes it does
/// not know, so the grammar is checked here.
pub(super) fn check_declaration(bytes: &[u8], base: u64) -> Result<(), WireError> {
    let src = tree::validate_text(bytes, base)?;
    let malformed = |why: &str| {
        WireError::new(
            base,
            Violation::Xml(format!("malformed XML declaration: {why} (XML 1.0 §2.8)")),
        )
    };
    let body = src
        .strip_prefix("<?xml")
        .and_then(|rest| rest.strip_suffix("?>"))
        .ok_or_else(|| malformed("it must be <?xml ... ?>"))?;
    let mut pseudo = Vec::with_capacity(3);
    let mut rest = body;
    loop {
        let trimmed = rest.trim_start_matches(is_space);
        if trimmed.is_empty() {
            break;
        }
        if trimmed.len() == rest.len() {
            return Err(malformed(
                "whitespace must come before each pseudo-attribute",
            ));
        }
        let name_len = trimmed
            .find(|c: char| !c.is_ascii_alphabetic())
            .unwrap_or(trimmed.len());
        let (name, after) = trimmed.split_at(name_len);
        let after = after.trim_start_matches(is_space);
        let after = after
            .strip_prefix('=')
            .ok_or_else(|| malformed("a pseudo-attribute needs = and a quoted value"))?
            .trim_start_matches(is_space);
        let quote = after
            .chars()
            .next()
            .filter(|&q| q == '\'' || q == '"')
            .ok_or_else(|| malformed("a pseudo-attribute value must be quoted"))?;
        let inner = &after[1..];
        let close = inner
            .find(quote)
            .ok_or_else(|| malformed("unterminated pseudo-attribute value"))?;
        pseudo.push((name, &inner[..close]));
        rest = &inner[close + 1..];
    }
    let names: Vec<&str> = pseudo.iter().map(|&(n, _)| n).collect();
    let expected: &[&[&str]] = &[
        &["version"],
        &["version", "encoding"],
        &["version", "standalone"],
        &["version", "encoding", "standalone"],
    ];
    if !expected.contains(&names.as_slice()) {
        return Err(malformed(
            "only version, encoding and standalone, in that order, with version first",
        ));
    }
    for &(name, value) in &pseudo {
        match name {
            "version" if value != "1.0" => {
                return Err(WireError::new(
                    base,
                    Violation::UnsupportedXmlVersion {
                        version: value.to_owned(),
                    },
                ));
            }
            "encoding" if !is_enc_name(value) => return Err(malformed("bad encoding name")),
            "encoding" if !value.eq_ignore_ascii_case("utf-8") => {
                return Err(WireError::new(
                    base,
                    Violation::UnsupportedEncoding {
                        encoding: value.to_owned(),
                    },
                ));
            }
            "standalone" if value != "yes" && value != "no" => {
                return Err(malformed("standalone must be yes or no"));
            }
            _ => {}
        }
    }
    Ok(())
}

fn is_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\r')
}

/// XML 1.0 §4.3.3 `EncName ::= [A-Za-z] ([A-Za-z0-9._] | '-')*`.
fn is_enc_name(s: &str) -> bool {
    s.starts_with(|c: char| c.is_ascii_alphabetic())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
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
