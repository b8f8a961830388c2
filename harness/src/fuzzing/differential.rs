//! The codec against an independent parser: minidom (on rxml, the parser of xmpp-rs, which
//! nobody here wrote).
//!
//! On an input both accept, the trees must agree (names, namespaces, attributes resolved to
//! `(namespace, local name)`, text). Where one accepts and the other refuses, the case must
//! fall in one of the classes below, each of which names the rule that makes the two parsers
//! differ on purpose; any other disagreement is a finding.

use std::collections::BTreeSet;

use super::codec::roomy_limits;
use crate::wire::{Element, Framing, Node, StreamEvent, StreamParser, Violation, WireError, ns};

/// A known reason for the two parsers to disagree on whether an input is acceptable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disagreement {
    /// minidom requires every element to be in a namespace (its data model has no
    /// unqualified element); Namespaces in XML 1.0 §6.2 allows them, and the codec keeps them
    /// (RFC 6120 §4.8.3 makes the stream's content namespace the default instead, which
    /// fragments parsed alone do not have).
    UnqualifiedElement,
    /// minidom returns as soon as the first element is complete and never reads further; the
    /// codec's fragment framing reads the whole input and refuses what follows the element
    /// unless it is whitespace or more elements (XML 1.0 §2.1: a document is one element;
    /// RFC 6120 §4.1: a stream carries many).
    AfterTheFirstElement,
    /// The codec applies the ceilings of SPEC.md Appendix B (STREAM-32; RFC 6120 §13.12 lets
    /// a server limit what it accepts); minidom has no limits.
    HarnessLimit,
    /// minidom keeps the last value of an attribute given twice (rxml does not check it), where
    /// XML 1.0 §3.1 (well-formedness constraint Unique Att Spec) and Namespaces in XML 1.0 §6.3
    /// (after prefixes are resolved) make the element malformed; the codec refuses it.
    RepeatedAttribute,
    /// rxml refuses a UTF-8 byte order mark before the first element; XML 1.0 §4.3.3 and
    /// appendix F.1 allow one, and the codec skips it (RFC 6120 §11.6 asks for UTF-8 only).
    ByteOrderMark,
    /// rxml refuses whitespace before the first element when no XML declaration precedes it;
    /// XML 1.0 §2.1 and §2.8 allow it (`prolog ::= XMLDecl? Misc*`, `Misc` includes `S`).
    LeadingWhitespace,
    /// rxml refuses a carriage return that no line feed follows, or drops it from an attribute
    /// value; XML 1.0 §2.11 makes it a line end (read as a line feed, and as a space inside an
    /// attribute value, §3.3.3), which the codec does. Only claimed when the same input with
    /// each such CR written as LF leaves no unexplained disagreement.
    LoneCarriageReturn,
    /// rxml keeps a CR LF pair as it is in some places of a CDATA section (after `]]`, say),
    /// where XML 1.0 §2.11 turns every CR LF into one LF before parsing, CDATA sections
    /// included, as the codec does. Only claimed when the same input with each CR LF written
    /// as LF leaves no unexplained disagreement. (Found by a 10-minute campaign of
    /// `stanza_differential`.)
    CarriageReturnLineFeed,
    /// rxml refuses some non-ASCII name characters that the fifth edition of XML 1.0 (§2.3,
    /// 2008) allows in names (e.g. U+FEFF, inside the range #xFDF0-#xFFFD); the codec follows
    /// that edition, as RFC 6120 §11 (XML 1.0) reads today.
    NonAsciiName,
    /// minidom resolves the `xml` prefix on attributes only and refuses `<xml:name/>` as an
    /// element without a namespace; Namespaces in XML 1.0 §3 binds that prefix everywhere,
    /// without a declaration.
    XmlPrefixedElement,
    /// rxml refuses a character reference written with many digits (leading zeros, as in
    /// `&#0000000013;`) and calls it an undeclared entity; XML 1.0 §4.1 (`CharRef ::= '&#'
    /// [0-9]+ ';'`) bounds the value, not the digits. Only claimed when the same input with the
    /// zeros dropped leaves no unexplained disagreement.
    LongCharacterReference,
    /// RFC 6120 §11 restricts XML further than XML 1.0 (no DTD, comment, processing
    /// instruction or undefined entity); the codec enforces it where rxml does not.
    RestrictedXml,
}

/// What the codec makes of an input in fragment framing: the first element, how many
/// followed it, and the first error.
struct Ours {
    first: Option<Element>,
    more: usize,
    error: Option<WireError>,
}

fn ours(data: &[u8]) -> Ours {
    let mut parser = StreamParser::new(Framing::Fragments, roomy_limits());
    parser.feed(data);
    let mut out = Ours {
        first: None,
        more: 0,
        error: None,
    };
    loop {
        match parser.next_event() {
            Ok(Some(StreamEvent::Stanza(e))) if out.first.is_none() => out.first = Some(e),
            Ok(Some(_)) => out.more += 1,
            Ok(None) => break,
            Err(e) => {
                out.error = Some(e);
                return out;
            }
        }
    }
    out.error = parser.finish().err();
    out
}

/// A tree as both parsers can express it: attributes as `(namespace, local name, value)`,
/// namespace declarations left out, text merged.
#[derive(Debug, PartialEq, Eq)]
struct Comparable {
    name: String,
    ns: String,
    attrs: BTreeSet<(String, String, String)>,
    children: Vec<Part>,
}

#[derive(Debug, PartialEq, Eq)]
enum Part {
    Element(Comparable),
    Text(String),
}

fn push_text(children: &mut Vec<Part>, text: &str) {
    if text.is_empty() {
        return;
    }
    if let Some(Part::Text(last)) = children.last_mut() {
        last.push_str(text);
    } else {
        children.push(Part::Text(text.to_owned()));
    }
}

/// The codec's tree, prefixed attributes resolved with the declarations in scope.
fn from_ours(e: &Element, scope: &mut Vec<(String, String)>) -> Comparable {
    let mark = scope.len();
    for (name, value) in &e.attrs {
        if let Some(prefix) = name.strip_prefix("xmlns:") {
            scope.push((prefix.to_owned(), value.clone()));
        }
    }
    let mut attrs = BTreeSet::new();
    for (name, value) in &e.attrs {
        if name.starts_with("xmlns:") {
            continue;
        }
        let (uri, local) = match name.split_once(':') {
            Some(("xml", local)) => (ns::XML.to_owned(), local),
            Some((prefix, local)) => {
                let uri = scope.iter().rev().find(|(p, _)| p == prefix);
                (uri.map(|(_, u)| u.clone()).unwrap_or_default(), local)
            }
            None => (String::new(), name.as_str()),
        };
        attrs.insert((uri, local.to_owned(), value.clone()));
    }
    let mut children = Vec::new();
    for child in &e.children {
        match child {
            Node::Element(c) => children.push(Part::Element(from_ours(c, scope))),
            Node::Text(t) => push_text(&mut children, t),
        }
    }
    scope.truncate(mark);
    Comparable {
        name: e.name.clone(),
        ns: e.ns.clone(),
        attrs,
        children,
    }
}

fn from_minidom(e: &minidom::Element) -> Comparable {
    let attrs = e
        .attrs()
        .iter()
        .map(|((uri, local), value)| (uri.as_str().to_owned(), local.to_string(), value.clone()))
        .collect();
    let mut children = Vec::new();
    for node in e.nodes() {
        match node {
            minidom::Node::Element(c) => children.push(Part::Element(from_minidom(c))),
            minidom::Node::Text(t) => push_text(&mut children, t),
        }
    }
    Comparable {
        name: e.name().to_owned(),
        ns: e.ns(),
        attrs,
        children,
    }
}

fn has_unqualified(e: &Element) -> bool {
    e.ns.is_empty()
        || e.children.iter().any(|c| match c {
            Node::Element(c) => has_unqualified(c),
            Node::Text(_) => false,
        })
}

fn has_non_ascii_name(e: &Element) -> bool {
    !e.name.is_ascii()
        || e.attrs.iter().any(|(name, _)| !name.is_ascii())
        || e.children.iter().any(|c| match c {
            Node::Element(c) => has_non_ascii_name(c),
            Node::Text(_) => false,
        })
}

fn in_xml_namespace(e: &Element) -> bool {
    e.ns == ns::XML
        || e.children.iter().any(|c| match c {
            Node::Element(c) => in_xml_namespace(c),
            Node::Text(_) => false,
        })
}

fn has_lone_cr(data: &[u8]) -> bool {
    data.windows(2).any(|w| w[0] == b'\r' && w[1] != b'\n') || data.last() == Some(&b'\r')
}

/// Whether lone carriage returns explain a disagreement: with each of them written as the line
/// feed XML 1.0 §2.11 turns it into, the parsers agree (or differ only in another known class).
fn lone_cr_explains(data: &[u8]) -> Result<bool, String> {
    if !has_lone_cr(data) {
        return Ok(false);
    }
    let mut fixed = data.to_vec();
    for i in 0..fixed.len() {
        if fixed[i] == b'\r' && fixed.get(i + 1) != Some(&b'\n') {
            fixed[i] = b'\n';
        }
    }
    // Agreement, or only another known class (e.g. what follows the element).
    Ok(disagreement(&fixed).is_ok())
}

/// Whether CR LF pairs explain a disagreement: with each written as the one LF XML 1.0 §2.11
/// turns it into, the parsers agree (or differ only in another known class).
fn crlf_explains(data: &[u8]) -> Result<bool, String> {
    if !data.windows(2).any(|w| w == b"\r\n") {
        return Ok(false);
    }
    let mut fixed = Vec::with_capacity(data.len());
    let mut i = 0;
    while let Some(&b) = data.get(i) {
        if b == b'\r' && data.get(i + 1) == Some(&b'\n') {
            i += 1;
            continue;
        }
        fixed.push(b);
        i += 1;
    }
    Ok(disagreement(&fixed).is_ok())
}

/// `data` with the leading zeros of every character reference dropped, if it had any.
fn without_leading_zeros(data: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(data.len());
    let mut changed = false;
    let mut i = 0;
    while let Some(&b) = data.get(i) {
        out.push(b);
        i += 1;
        if b != b'&' || data.get(i) != Some(&b'#') {
            continue;
        }
        out.push(b'#');
        i += 1;
        if let Some(&x) = data.get(i).filter(|&&x| x == b'x') {
            out.push(x);
            i += 1;
        }
        let zeros = data
            .get(i..)
            .unwrap_or_default()
            .iter()
            .take_while(|&&z| z == b'0')
            .count();
        // Keep one zero when the value is all zeros.
        let next_is_digit = data.get(i + zeros).is_some_and(u8::is_ascii_hexdigit);
        let drop = if next_is_digit {
            zeros
        } else {
            zeros.saturating_sub(1)
        };
        changed |= drop > 0;
        i += drop;
    }
    changed.then_some(out)
}

fn is_limit(v: &Violation) -> bool {
    matches!(
        v,
        Violation::StanzaTooLarge { .. }
            | Violation::TooDeep { .. }
            | Violation::TooManyAttributes { .. }
            | Violation::AttributeValueTooLong { .. }
            | Violation::TextTooLong { .. }
            | Violation::TooManyNamespaceDecls { .. }
            | Violation::NameTooLong { .. }
    )
}

fn is_restricted_xml(v: &Violation) -> bool {
    matches!(
        v,
        Violation::DoctypeForbidden
            | Violation::ProcessingInstructionForbidden { .. }
            | Violation::CommentForbidden
            | Violation::UndefinedEntity { .. }
    )
}

/// Compares the two parsers on `data`: `Ok(None)` when they agree (both refuse, or both
/// accept the same tree), `Ok(Some(class))` for a known disagreement, `Err(why)` for anything
/// else.
pub fn disagreement(data: &[u8]) -> Result<Option<Disagreement>, String> {
    let ours = ours(data);
    let theirs = minidom::Element::from_reader(data);
    let we_accept_one = ours.first.is_some() && ours.more == 0 && ours.error.is_none();
    match (&ours.first, &theirs) {
        (Some(mine), Ok(other)) => {
            let mine = from_ours(mine, &mut Vec::new());
            let other = from_minidom(other);
            if mine != other {
                if lone_cr_explains(data)? {
                    return Ok(Some(Disagreement::LoneCarriageReturn));
                }
                if crlf_explains(data)? {
                    return Ok(Some(Disagreement::CarriageReturnLineFeed));
                }
                return Err(format!(
                    "both parse an element, and they differ:\n gatecheck {mine:?}\n minidom   {other:?}"
                ));
            }
            // minidom stops at the end of the first element.
            Ok((!we_accept_one).then_some(Disagreement::AfterTheFirstElement))
        }
        // minidom reads no further than the first element, so it refused that element.
        (Some(mine), Err(e)) => {
            if data.starts_with(b"\xEF\xBB\xBF") {
                Ok(Some(Disagreement::ByteOrderMark))
            } else if let Some(rest) = data
                .iter()
                .position(|b| !matches!(b, b' ' | b'\t' | b'\n' | b'\r'))
                .filter(|&n| n > 0)
                .and_then(|n| data.get(n..))
            {
                // Without the whitespace minidom must agree, or the case is another class.
                match disagreement(rest)? {
                    None => Ok(Some(Disagreement::LeadingWhitespace)),
                    other => Ok(other),
                }
            } else if lone_cr_explains(data)? {
                Ok(Some(Disagreement::LoneCarriageReturn))
            } else if let Some(short) = without_leading_zeros(data)
                && disagreement(&short).is_ok()
            {
                Ok(Some(Disagreement::LongCharacterReference))
            } else if has_non_ascii_name(mine) && e.to_string().contains("name") {
                Ok(Some(Disagreement::NonAsciiName))
            } else if in_xml_namespace(mine) {
                Ok(Some(Disagreement::XmlPrefixedElement))
            } else if has_unqualified(mine) {
                Ok(Some(Disagreement::UnqualifiedElement))
            } else {
                Err(format!("minidom refuses the element gatecheck parses: {e}"))
            }
        }
        (None, Err(_)) => Ok(None),
        (None, Ok(_)) => {
            let Some(error) = &ours.error else {
                return Err("minidom found an element where gatecheck found none".into());
            };
            if is_limit(&error.violation) {
                Ok(Some(Disagreement::HarnessLimit))
            } else if matches!(error.violation, Violation::DuplicateAttribute { .. }) {
                Ok(Some(Disagreement::RepeatedAttribute))
            } else if is_restricted_xml(&error.violation) {
                Ok(Some(Disagreement::RestrictedXml))
            } else {
                Err(format!("gatecheck refuses what minidom accepts: {error}"))
            }
        }
    }
}

/// The target `stanza_differential`.
pub fn differential(data: &[u8]) {
    if let Err(why) = disagreement(data) {
        panic!("{why}\ninput: {:?}", String::from_utf8_lossy(data));
    }
}
