//! Writing elements and stream headers as XML: the exact inverse of the parser.
//!
//! Namespaces are declared minimally: an element gets `xmlns="..."` when its namespace differs
//! from the default namespace in scope. Inside a stream ([`Element::to_xml_in`]) the `stream`
//! prefix is bound by the header, so elements in the streams namespace are written
//! `<stream:name>`; standalone ([`Element::to_xml`]) nothing is bound and they get a default
//! namespace declaration instead. Text escapes `&`, `<`, `>` and CR (so a literal CR survives
//! end-of-line normalization); attribute values escape `&`, `<`, `"` and TAB, LF, CR (so they
//! survive attribute-value normalization).

use super::element::{Element, Node};
use super::ns;
use super::parser::StreamHeader;

/// The stream close tag, matching [`StreamHeader::to_xml`].
pub const STREAM_CLOSE: &str = "</stream:stream>";

/// Whether the `stream` prefix is bound, and to what, where an element is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StreamPrefix {
    Unbound,
    Streams,
    Other,
}

/// Scope an element is written in: default namespace and `stream` prefix binding.
#[derive(Debug, Clone, Copy)]
struct Scope<'a> {
    default_ns: &'a str,
    stream_prefix: StreamPrefix,
}

impl Element {
    /// This element as a standalone XML fragment (its namespace declared if non-empty).
    pub fn to_xml(&self) -> String {
        let mut out = Vec::new();
        self.write_to(&mut out);
        bytes_to_string(out)
    }

    /// Appends this element as a standalone fragment.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        write_element(
            self,
            Scope {
                default_ns: "",
                stream_prefix: StreamPrefix::Unbound,
            },
            out,
        );
    }

    /// This element as written inside a stream opened by [`StreamHeader::to_xml`] whose
    /// default namespace is `parent_ns` (usually `jabber:client`): no redundant `xmlns`, and
    /// streams-namespace elements use the header's `stream:` prefix.
    pub fn to_xml_in(&self, parent_ns: &str) -> String {
        let mut out = Vec::new();
        self.write_in(parent_ns, &mut out);
        bytes_to_string(out)
    }

    /// Appends this element as written inside a stream; see [`Element::to_xml_in`].
    pub fn write_in(&self, parent_ns: &str, out: &mut Vec<u8>) {
        write_element(
            self,
            Scope {
                default_ns: parent_ns,
                stream_prefix: StreamPrefix::Streams,
            },
            out,
        );
    }
}

impl StreamHeader {
    /// The opening tag `<stream:stream xmlns='...' xmlns:stream='...' ...>` (no XML
    /// declaration); close the stream with [`STREAM_CLOSE`].
    pub fn to_xml(&self) -> String {
        let mut out = Vec::with_capacity(160);
        out.extend_from_slice(b"<stream:stream xmlns=\"");
        escape_attr(&self.default_ns, &mut out);
        out.extend_from_slice(b"\" xmlns:stream=\"");
        out.extend_from_slice(ns::STREAMS.as_bytes());
        out.push(b'"');
        for (name, value) in self.attrs() {
            write_attr(name, value, &mut out);
        }
        out.push(b'>');
        bytes_to_string(out)
    }
}

/// The writer only ever appends whole `&str`s, so this never loses data.
fn bytes_to_string(out: Vec<u8>) -> String {
    String::from_utf8(out).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// Writes one element iteratively (no recursion, whatever the depth of a hand-built tree).
fn write_element(root: &Element, scope: Scope<'_>, out: &mut Vec<u8>) {
    // Each frame: the element, the index of the next child, and the scope for its children.
    let mut stack: Vec<(&Element, usize, Scope<'_>, &'static [u8])> = Vec::new();
    let (inner, prefixed) = open_tag(root, scope, out);
    if root.children.is_empty() {
        out.extend_from_slice(b"/>");
        return;
    }
    out.push(b'>');
    stack.push((root, 0, inner, prefixed));
    while let Some(frame) = stack.last_mut() {
        let (element, next, inner, prefixed) = *frame;
        match element.children.get(next) {
            Some(Node::Text(text)) => {
                frame.1 += 1;
                escape_text(text, out);
            }
            Some(Node::Element(child)) => {
                frame.1 += 1;
                let (child_scope, child_prefixed) = open_tag(child, inner, out);
                if child.children.is_empty() {
                    out.extend_from_slice(b"/>");
                } else {
                    out.push(b'>');
                    stack.push((child, 0, child_scope, child_prefixed));
                }
            }
            None => {
                out.extend_from_slice(b"</");
                out.extend_from_slice(prefixed);
                out.extend_from_slice(element.name.as_bytes());
                out.push(b'>');
                stack.pop();
            }
        }
    }
}

/// Writes `<name ...attrs` (without the closing `>`); returns the scope for the children and
/// the prefix written before the name (`stream:`, `xml:` or none).
fn open_tag<'a>(e: &'a Element, scope: Scope<'a>, out: &mut Vec<u8>) -> (Scope<'a>, &'static [u8]) {
    let mut stream_prefix = scope.stream_prefix;
    for (name, value) in &e.attrs {
        if name == "xmlns:stream" {
            stream_prefix = if value == ns::STREAMS {
                StreamPrefix::Streams
            } else {
                StreamPrefix::Other
            };
        }
    }
    out.push(b'<');
    // The XML namespace can only be reached through the `xml` prefix, which is always bound
    // (Namespaces in XML 1.0 §3: it may not be declared as the default namespace).
    let prefixed: &'static [u8] = if e.ns == ns::XML {
        b"xml:"
    } else if e.ns == ns::STREAMS && stream_prefix == StreamPrefix::Streams {
        b"stream:"
    } else {
        b""
    };
    let default_ns = if !prefixed.is_empty() {
        out.extend_from_slice(prefixed);
        out.extend_from_slice(e.name.as_bytes());
        scope.default_ns
    } else {
        out.extend_from_slice(e.name.as_bytes());
        if e.ns != scope.default_ns {
            out.extend_from_slice(b" xmlns=\"");
            escape_attr(&e.ns, out);
            out.push(b'"');
        }
        e.ns.as_str()
    };
    for (name, value) in &e.attrs {
        write_attr(name, value, out);
    }
    (
        Scope {
            default_ns,
            stream_prefix,
        },
        prefixed,
    )
}

fn write_attr(name: &str, value: &str, out: &mut Vec<u8>) {
    out.push(b' ');
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b"=\"");
    escape_attr(value, out);
    out.push(b'"');
}

/// Escapes character data: `&`, `<`, `>` and CR.
pub(crate) fn escape_text(text: &str, out: &mut Vec<u8>) {
    escape_with(
        text,
        out,
        b"&<>\r",
        |b| (b == b'&') | (b == b'<') | (b == b'>') | (b == b'\r'),
        |b| match b {
            b'&' => Some(b"&amp;"),
            b'<' => Some(b"&lt;"),
            b'>' => Some(b"&gt;"),
            b'\r' => Some(b"&#13;"),
            _ => None,
        },
    );
}

/// Escapes an attribute value for double quotes: `&`, `<`, `"`, TAB, LF, CR.
pub(crate) fn escape_attr(value: &str, out: &mut Vec<u8>) {
    escape_with(
        value,
        out,
        b"&<\"\t\n\r",
        |b| (b == b'&') | (b == b'<') | (b == b'"') | (b == b'\t') | (b == b'\n') | (b == b'\r'),
        |b| match b {
            b'&' => Some(b"&amp;"),
            b'<' => Some(b"&lt;"),
            b'"' => Some(b"&quot;"),
            b'\t' => Some(b"&#9;"),
            b'\n' => Some(b"&#10;"),
            b'\r' => Some(b"&#13;"),
            _ => None,
        },
    );
}

/// Bytes [`escape_with`] tests at once on long text.
const BLOCK: usize = 32;

/// Copies `s`, replacing the ASCII bytes `replace` maps (exactly the bytes in `specials`, for
/// which `is_special` holds); runs without specials are copied whole. Long text (base64, the
/// bulk of an encrypted stanza) is tested 32 bytes at a time with a branch-free fold the
/// compiler turns into vector compares; the rest eight bytes at a time (a word holds none of
/// the specials unless one of its bytes equals one). Only blocks and words with a special are
/// scanned byte by byte.
fn escape_with(
    s: &str,
    out: &mut Vec<u8>,
    specials: &[u8],
    is_special: impl Fn(u8) -> bool,
    replace: impl Fn(u8) -> Option<&'static [u8]>,
) {
    let bytes = s.as_bytes();
    let mut start = 0;
    let at = |i: usize, b: u8, start: &mut usize, out: &mut Vec<u8>| {
        if let Some(rep) = replace(b) {
            out.extend_from_slice(bytes.get(*start..i).unwrap_or_default());
            out.extend_from_slice(rep);
            *start = i + 1;
        }
    };
    let (blocks, _) = bytes.as_chunks::<BLOCK>();
    for (n, block) in blocks.iter().enumerate() {
        // Folded as bytes, not booleans: that is what becomes plain compares and ORs.
        if block
            .iter()
            .fold(0u8, |acc, &b| acc | u8::from(is_special(b)))
            != 0
        {
            for (j, &b) in block.iter().enumerate() {
                at(n * BLOCK + j, b, &mut start, out);
            }
        }
    }
    let mut i = blocks.len() * BLOCK;
    while let Some(chunk) = bytes.get(i..i + 8) {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let word = u64::from_le_bytes(word);
        if specials.iter().any(|&c| has_byte(word, c)) {
            for (j, &b) in chunk.iter().enumerate() {
                at(i + j, b, &mut start, out);
            }
        }
        i += 8;
    }
    for (j, &b) in bytes.iter().enumerate().skip(i) {
        at(j, b, &mut start, out);
    }
    out.extend_from_slice(bytes.get(start..).unwrap_or_default());
}

/// Whether any byte of `word` equals `b` (the classic zero-byte test on `word ^ b…b`: no
/// false negatives, and a false positive only sends the word to the exact scan).
fn has_byte(word: u64, b: u8) -> bool {
    const LO: u64 = 0x0101_0101_0101_0101;
    const HI: u64 = 0x8080_8080_8080_8080;
    let x = word ^ (LO * u64::from(b));
    x.wrapping_sub(LO) & !x & HI != 0
}

/// Escapes a value for use inside XML text or a quoted attribute.
pub fn xml_escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\'' => out.push_str("&apos;"),
            '"' => out.push_str("&quot;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The word-at-a-time scan against a byte-by-byte one, with every special at every
    /// position of words and tails (and a multi-byte character across word boundaries).
    #[test]
    fn word_scan_escapes_exactly_as_the_byte_scan() {
        fn naive(s: &str, attr: bool) -> String {
            s.chars()
                .map(|c| match (c, attr) {
                    ('&', _) => "&amp;".to_string(),
                    ('<', _) => "&lt;".to_string(),
                    ('>', false) => "&gt;".to_string(),
                    ('"', true) => "&quot;".to_string(),
                    ('\t', true) => "&#9;".to_string(),
                    ('\n', true) => "&#10;".to_string(),
                    ('\r', _) => "&#13;".to_string(),
                    (c, _) => c.to_string(),
                })
                .collect()
        }
        let alphabet = ['a', '&', '<', '>', '"', '\t', '\n', '\r', 'é', '9', '='];
        // Past two 32-byte blocks, so blocks, words and tails are all exercised.
        for len in 0..=72 {
            for k in 0..alphabet.len() {
                for pos in 0..len.max(1) {
                    let s: String = (0..len)
                        .map(|i| {
                            if i == pos {
                                alphabet[k]
                            } else {
                                alphabet[(i * 7 + k) % 2 * 9]
                            }
                        })
                        .collect();
                    let (mut text, mut attr) = (Vec::new(), Vec::new());
                    escape_text(&s, &mut text);
                    escape_attr(&s, &mut attr);
                    assert_eq!(String::from_utf8(text).unwrap(), naive(&s, false), "{s:?}");
                    assert_eq!(String::from_utf8(attr).unwrap(), naive(&s, true), "{s:?}");
                }
            }
        }
    }

    #[test]
    fn minimal_element() {
        assert_eq!(
            Element::new("ping", ns::PING).to_xml(),
            "<ping xmlns=\"urn:xmpp:ping\"/>"
        );
        assert_eq!(Element::new("a", "").to_xml(), "<a/>");
    }

    #[test]
    fn namespaces_are_declared_only_where_they_change() {
        let e = Element::new("iq", ns::JABBER_CLIENT)
            .with_attr("type", "get")
            .with_child(Element::new("ping", ns::PING).with_child(Element::new("x", ns::PING)))
            .with_child(Element::new("y", ""));
        assert_eq!(
            e.to_xml(),
            "<iq xmlns=\"jabber:client\" type=\"get\"><ping xmlns=\"urn:xmpp:ping\"><x/></ping>\
             <y xmlns=\"\"/></iq>"
        );
        assert_eq!(
            e.to_xml_in(ns::JABBER_CLIENT),
            "<iq type=\"get\"><ping xmlns=\"urn:xmpp:ping\"><x/></ping><y xmlns=\"\"/></iq>"
        );
    }

    #[test]
    fn text_and_attributes_are_escaped() {
        let e = Element::new("body", "")
            .with_attr("a", "<&\"'>\t\n\r")
            .with_text("<&>\"'\r\n]]>");
        assert_eq!(
            e.to_xml(),
            "<body a=\"&lt;&amp;&quot;'>&#9;&#10;&#13;\">&lt;&amp;&gt;\"'&#13;\n]]&gt;</body>"
        );
    }

    #[test]
    fn streams_elements_use_the_header_prefix_inside_a_stream() {
        let features =
            Element::new("features", ns::STREAMS).with_child(Element::new("bind", ns::BIND));
        assert_eq!(
            features.to_xml_in(ns::JABBER_CLIENT),
            "<stream:features><bind xmlns=\"urn:ietf:params:xml:ns:xmpp-bind\"/></stream:features>"
        );
        assert_eq!(
            features.to_xml(),
            "<features xmlns=\"http://etherx.jabber.org/streams\">\
             <bind xmlns=\"urn:ietf:params:xml:ns:xmpp-bind\"/></features>"
        );
    }

    #[test]
    fn stream_header_opening_tag() {
        let header = StreamHeader {
            to: Some("example.net".into()),
            version: Some("1.0".into()),
            lang: Some("en".into()),
            ..StreamHeader::new(ns::JABBER_CLIENT)
        };
        assert_eq!(
            header.to_xml(),
            "<stream:stream xmlns=\"jabber:client\" xmlns:stream=\"http://etherx.jabber.org/streams\" \
             to=\"example.net\" version=\"1.0\" xml:lang=\"en\">"
        );
    }
}
