//! References and namespace declarations: the checks and expansions the tree builder applies
//! to attribute values and text, whichever tokenizer produced them.

use std::borrow::Cow;

use crate::wire::chars::{is_ncname, is_xml_char};
use crate::wire::error::Violation;
use crate::wire::ns;

/// Namespaces in XML 1.0 §3 constraints on one declaration `key="value"`.
pub(super) fn check_declaration(key: &str, prefix: &str, value: &str) -> Result<(), Violation> {
    let bad = |reason| Violation::BadNamespaceDeclaration {
        attribute: key.to_owned(),
        value: value.to_owned(),
        reason,
    };
    if !prefix.is_empty() && !is_ncname(prefix) {
        return Err(Violation::InvalidName {
            name: key.to_owned(),
        });
    }
    match prefix {
        "xmlns" => Err(bad("the xmlns prefix cannot be declared")),
        "xml" if value != ns::XML => Err(bad("the xml prefix cannot be rebound")),
        "xml" => Ok(()),
        _ if value == ns::XML => Err(bad("only the xml prefix may be bound to the XML namespace")),
        _ if value == ns::XMLNS => Err(bad("the xmlns namespace cannot be declared")),
        "" => Ok(()),
        _ if value.is_empty() => Err(bad("a prefix cannot be bound to the empty namespace name")),
        _ => Ok(()),
    }
}

/// Resolves `&name;` (name as written between `&` and `;`) to its character.
pub(crate) fn resolve_reference(name: &str) -> Result<char, Violation> {
    match name {
        "lt" => Ok('<'),
        "gt" => Ok('>'),
        "amp" => Ok('&'),
        "apos" => Ok('\''),
        "quot" => Ok('"'),
        _ => match name.strip_prefix('#') {
            Some(num) => parse_char_ref(num).ok_or_else(|| Violation::InvalidCharReference {
                reference: name.to_owned(),
            }),
            None if is_ncname(name) => Err(Violation::UndefinedEntity {
                name: name.to_owned(),
            }),
            None => Err(Violation::Xml(format!(
                "'&{name};' is not a valid reference"
            ))),
        },
    }
}

/// `#` already stripped: decimal digits, or `x` and hex digits; must name an XML `Char`.
fn parse_char_ref(num: &str) -> Option<char> {
    let (digits, radix) = match num.strip_prefix('x') {
        Some(hex) => (hex, 16),
        None => (num, 10),
    };
    if digits.is_empty() {
        return None;
    }
    let mut value: u32 = 0;
    for c in digits.chars() {
        let d = c.to_digit(radix)?;
        value = value.checked_mul(radix)?.checked_add(d)?;
    }
    char::from_u32(value).filter(|&c| is_xml_char(c))
}

/// Expands references and applies attribute-value normalization (literal TAB, LF, CR and
/// CR LF become one space each; characters from references are kept as they are). On error,
/// returns the byte index in `raw` and the violation.
pub(super) fn unescape_attr(raw: &str) -> Result<Cow<'_, str>, (usize, Violation)> {
    let bytes = raw.as_bytes();
    if !bytes
        .iter()
        .any(|&b| matches!(b, b'&' | b'\t' | b'\n' | b'\r'))
    {
        return Ok(Cow::Borrowed(raw));
    }
    let mut out = String::with_capacity(raw.len());
    let mut i = 0;
    let mut run = 0;
    while let Some(&b) = bytes.get(i) {
        match b {
            b'&' => {
                out.push_str(raw.get(run..i).unwrap_or_default());
                let rest = raw.get(i + 1..).unwrap_or_default();
                let Some(semi) = rest.find(';') else {
                    return Err((
                        i,
                        Violation::Xml("'&' must start a reference ending with ';'".into()),
                    ));
                };
                let name = rest.get(..semi).unwrap_or_default();
                out.push(resolve_reference(name).map_err(|v| (i, v))?);
                i += semi + 2;
                run = i;
            }
            b'\t' | b'\n' | b'\r' => {
                out.push_str(raw.get(run..i).unwrap_or_default());
                out.push(' ');
                i += if b == b'\r' && bytes.get(i + 1) == Some(&b'\n') {
                    2
                } else {
                    1
                };
                run = i;
            }
            _ => i += 1,
        }
    }
    out.push_str(raw.get(run..).unwrap_or_default());
    Ok(Cow::Owned(out))
}
