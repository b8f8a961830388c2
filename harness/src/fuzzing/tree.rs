//! Structure-aware stanzas: trees derived with `arbitrary`, written out, parsed by every API of
//! the codec, and compared with the tree that was written.
//!
//! The tree is described flat (an element head, then open/text/close operations), so neither
//! decoding nor building it recurses on the input. Names, namespaces and text are drawn from
//! XMPP's vocabulary or cleaned into what XML 1.0 allows (the cleaning follows the XML
//! specification's productions, not the codec's own tables), so every generated tree is one the
//! codec must accept and give back unchanged.

use arbitrary::Arbitrary;

use super::codec::roomy_limits;
use crate::wire::{
    Element, Framing, STREAM_CLOSE, StreamEvent, StreamEventRef, StreamHeader, StreamParser, ns,
};

/// Element names from the stanzas the suite exchanges.
const NAMES: &[&str] = &[
    "message",
    "iq",
    "presence",
    "body",
    "query",
    "error",
    "ping",
    "features",
    "bind",
    "jid",
    "encrypted",
    "header",
    "key",
    "iv",
    "payload",
    "request",
    "received",
    "active",
    "x",
    "item",
    "text",
    "show",
    "status",
    "priority",
    "c",
    "stream",
];

/// Namespaces the stanzas use, the empty one (no namespace) among them.
const NAMESPACES: &[&str] = &[
    "",
    ns::JABBER_CLIENT,
    ns::STREAMS,
    ns::OMEMO,
    ns::HINTS,
    "urn:xmpp:ping",
    "urn:ietf:params:xml:ns:xmpp-stanzas",
    "urn:ietf:params:xml:ns:xmpp-streams",
    "urn:xmpp:receipts",
    "jabber:iq:roster",
    "jabber:server",
];

/// Attribute names from the stanzas the suite exchanges (`xml:lang` is the one prefixed).
const ATTRS: &[&str] = &[
    "to", "from", "id", "type", "xml:lang", "rid", "sid", "prekey", "node", "ver", "hash", "jid",
    "name", "code", "by", "version",
];

/// The input of the `stanza_tree` target.
#[derive(Debug, Arbitrary)]
pub struct TreeInput {
    root: Head,
    ops: Vec<Op>,
    /// Written inside a `jabber:client` stream instead of standalone.
    in_stream: bool,
    /// Size of the pieces the zero-copy run is fed in.
    piece: u8,
    /// The parse the fuzz target checks on this input (the corpus replay checks all three).
    path: TreePath,
}

/// One of the codec's three ways in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Arbitrary)]
pub enum TreePath {
    /// The owned API, whole, with the one-pass tokenizer.
    Fast,
    /// The owned API, whole, the exact path only.
    Exact,
    /// The zero-copy API, fed in pieces.
    Pieces,
}

#[derive(Debug, Arbitrary)]
struct Head {
    name: Name,
    ns: Namespace,
    attrs: Vec<(AttrName, String)>,
}

#[derive(Debug, Arbitrary)]
enum Op {
    Open(Head),
    Text(String),
    Close,
}

#[derive(Debug, Arbitrary)]
enum Name {
    Known(u8),
    Any(String),
}

#[derive(Debug, Arbitrary)]
enum Namespace {
    /// The parent's (the root: `jabber:client`).
    Inherit,
    Known(u8),
    Any(String),
}

#[derive(Debug, Arbitrary)]
enum AttrName {
    Known(u8),
    Any(String),
}

/// Deeper trees are cut here: the harness refuses depth above 128 (SPEC.md Appendix B).
const MAX_DEPTH: usize = 100;

fn pick<'a>(list: &[&'a str], i: u8) -> &'a str {
    list.get(usize::from(i) % list.len())
        .copied()
        .unwrap_or("x")
}

/// XML 1.0 (fifth edition) §2.3 NameStartChar, without ':' (namespaces forbid it in local names).
fn is_name_start(c: char) -> bool {
    matches!(c,
        'A'..='Z' | '_' | 'a'..='z' | '\u{C0}'..='\u{D6}' | '\u{D8}'..='\u{F6}'
        | '\u{F8}'..='\u{2FF}' | '\u{370}'..='\u{37D}' | '\u{37F}'..='\u{1FFF}'
        | '\u{200C}'..='\u{200D}' | '\u{2070}'..='\u{218F}' | '\u{2C00}'..='\u{2FEF}'
        | '\u{3001}'..='\u{D7FF}' | '\u{F900}'..='\u{FDCF}' | '\u{FDF0}'..='\u{FFFD}'
        | '\u{10000}'..='\u{EFFFF}')
}

/// XML 1.0 §2.3 NameChar, without ':'.
fn is_name_char(c: char) -> bool {
    is_name_start(c)
        || matches!(c, '-' | '.' | '0'..='9' | '\u{B7}' | '\u{300}'..='\u{36F}' | '\u{203F}'..='\u{2040}')
}

/// XML 1.0 §2.2 Char.
fn is_xml_char(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..)
}

/// `s` made into an NCName (at most 64 characters), or `fallback` when nothing is left.
fn ncname(s: &str, fallback: &str) -> String {
    let mut out: String = s.chars().filter(|&c| is_name_char(c)).take(64).collect();
    if !out.starts_with(is_name_start) {
        out.insert(0, 'n');
    }
    // `xmlns` as an attribute name would be a declaration, not an attribute.
    if out.eq_ignore_ascii_case("xmlns") || out.is_empty() {
        return fallback.to_owned();
    }
    out
}

fn xml_text(s: &str) -> String {
    s.chars().filter(|&c| is_xml_char(c)).collect()
}

impl Head {
    fn element(&self, parent_ns: &str) -> Element {
        let name = match &self.name {
            Name::Known(i) => pick(NAMES, *i).to_owned(),
            Name::Any(s) => ncname(s, "e"),
        };
        let ns = match &self.ns {
            Namespace::Inherit => parent_ns.to_owned(),
            Namespace::Known(i) => pick(NAMESPACES, *i).to_owned(),
            Namespace::Any(s) => {
                let uri = format!("urn:{}", xml_text(s));
                // The two reserved namespaces may not be bound to a default namespace.
                if uri == ns::XML || uri == ns::XMLNS {
                    "urn:x".to_owned()
                } else {
                    uri
                }
            }
        };
        let mut element = Element::new(name, ns);
        for (name, value) in &self.attrs {
            let name = match name {
                AttrName::Known(i) => pick(ATTRS, *i).to_owned(),
                AttrName::Any(s) => ncname(s, "a"),
            };
            // The first value of a name wins (a duplicate attribute is malformed XML).
            if element.attr(&name).is_none() {
                element = element.with_attr(name, xml_text(value));
            }
        }
        element
    }
}

impl TreeInput {
    /// The tree this input describes, in canonical form (no empty or adjacent text nodes).
    pub fn build(&self) -> Element {
        let mut open = vec![self.root.element(ns::JABBER_CLIENT)];
        for op in &self.ops {
            match op {
                Op::Open(head) if open.len() < MAX_DEPTH => {
                    let parent_ns = open.last().map(|e| e.ns.clone()).unwrap_or_default();
                    open.push(head.element(&parent_ns));
                }
                Op::Open(_) => {}
                Op::Text(text) => {
                    if let Some(top) = open.last_mut() {
                        top.append_text(&xml_text(text));
                    }
                }
                Op::Close => close_one(&mut open),
            }
        }
        while open.len() > 1 {
            close_one(&mut open);
        }
        open.pop().unwrap_or_default()
    }
}

/// Closes the innermost open element (never the root) into its parent.
fn close_one(open: &mut Vec<Element>) {
    if open.len() > 1
        && let Some(child) = open.pop()
        && let Some(parent) = open.last_mut()
    {
        parent.children.push(crate::wire::Node::Element(child));
    }
}

/// The target `stanza_tree`: the tree written out (standalone, or as the one stanza of a
/// stream), then parsed the way the input chose ([`TreePath`]): it must give back exactly the
/// tree. One parse per execution keeps the target above 20,000 executions per second;
/// libFuzzer explores the three paths through the input's choice, and `stanza_parse`
/// compares all three on every raw input.
pub fn stanza_tree(input: TreeInput) {
    let path = input.path;
    check_tree(input, &[path]);
}

/// [`stanza_tree`] on all three paths (the corpus replay of `cargo test`).
pub fn stanza_tree_all_paths(input: TreeInput) {
    check_tree(input, &[TreePath::Fast, TreePath::Exact, TreePath::Pieces]);
}

fn check_tree(input: TreeInput, paths: &[TreePath]) {
    let element = input.build();
    let (bytes, expected) = if input.in_stream {
        let header = StreamHeader::new(ns::JABBER_CLIENT);
        let xml = format!(
            "{}{}{STREAM_CLOSE}",
            header.to_xml(),
            element.to_xml_in(ns::JABBER_CLIENT)
        );
        let events = vec![
            StreamEvent::Header(header),
            StreamEvent::Stanza(element.clone()),
            StreamEvent::Close,
        ];
        (xml, events)
    } else {
        (element.to_xml(), vec![StreamEvent::Stanza(element.clone())])
    };
    let bytes = bytes.as_bytes();
    // Not `Auto`: a standalone element named `stream` is a stanza here.
    let framing = if input.in_stream {
        Framing::Stream
    } else {
        Framing::Fragments
    };
    // stanza_parse feeds byte by byte; here pieces of at least 8 bytes keep the target fast.
    let piece = usize::from(input.piece).max(8);
    for path in paths {
        let (fast, cut_every) = match path {
            TreePath::Fast => (true, None),
            TreePath::Exact => (false, None),
            TreePath::Pieces => (true, Some(piece)),
        };
        let events = parse(bytes, framing, fast, cut_every);
        assert_eq!(
            events.as_ref(),
            Ok(&expected),
            "fast path {fast}, pieces {cut_every:?}: the codec did not give back the tree \
             it was written from; written: {:?}",
            String::from_utf8_lossy(bytes)
        );
    }
}

/// Parses with the owned API (`fast`: one-pass tokenizer on) when fed whole, with the
/// zero-copy API when fed in pieces.
fn parse(
    bytes: &[u8],
    framing: Framing,
    fast: bool,
    cut_every: Option<usize>,
) -> Result<Vec<StreamEvent>, crate::wire::WireError> {
    let parser = StreamParser::new(framing, roomy_limits());
    let mut parser = if fast {
        parser
    } else {
        parser.without_fast_path()
    };
    let mut events = Vec::new();
    match cut_every {
        None => {
            parser.feed(bytes);
            while let Some(event) = parser.next_event()? {
                events.push(event);
            }
        }
        Some(n) => {
            for chunk in bytes.chunks(n) {
                parser.feed(chunk);
                while let Some(event) = parser.next_event_ref()? {
                    events.push(StreamEventRef::to_owned(&event));
                }
            }
        }
    }
    parser.finish()?;
    Ok(events)
}
