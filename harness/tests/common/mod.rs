//! Helpers shared by the codec test crates: the fixture corpora and the proptest
//! generators of element trees.
// Each test crate uses a different subset of these helpers.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use gatecheck::wire::{Element, Framing, Limits, Node, StreamEvent, StreamParser, WireError, ns};
use proptest::prelude::*;

/// The files of `fixtures/stanzas/<kind>`, sorted.
pub fn corpus(kind: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fixtures/stanzas")
        .join(kind);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

pub fn is_xml_char(c: char) -> bool {
    matches!(c as u32, 0x9 | 0xA | 0xD | 0x20..=0xD7FF | 0xE000..=0xFFFD | 0x1_0000..=0x10_FFFF)
}

/// Text with the characters that need escaping, whitespace (CR included: it is written as a
/// character reference), non-ASCII and astral characters.
pub fn text() -> impl Strategy<Value = String> {
    let ch = prop_oneof![
        3 => prop::sample::select(vec!['&', '<', '>', '"', '\'', '\t', '\r', '\n', ' ', ']', ';', '#']),
        3 => prop::char::range('a', 'z'),
        2 => prop::sample::select(vec!['é', 'ß', '日', '€', '\u{FFFD}', '😀', '𝄞', '\u{10FFFF}', '\u{85}']),
        1 => any::<char>().prop_filter("XML Char", |c| is_xml_char(*c)),
    ];
    prop::collection::vec(ch, 0..24).prop_map(|v| v.into_iter().collect())
}

pub fn name() -> impl Strategy<Value = String> {
    prop::sample::select(vec![
        "a", "body", "x-y.z", "_u", "é", "名前", "message", "q1",
    ])
    .prop_map(str::to_owned)
}

pub fn namespace() -> impl Strategy<Value = String> {
    prop::sample::select(vec![
        "",
        ns::JABBER_CLIENT,
        ns::OMEMO,
        ns::STREAMS,
        "urn:x",
        "http://example.com/a?b=1&c=<2>\"'",
    ])
    .prop_map(str::to_owned)
}

pub fn attrs() -> impl Strategy<Value = Vec<(String, String)>> {
    let names = prop::sample::subsequence(vec!["a", "id", "to", "xml:lang", "x-1", "é"], 0..4);
    (names, prop::collection::vec(text(), 4)).prop_map(|(names, values)| {
        names
            .into_iter()
            .zip(values)
            .map(|(n, v)| (n.to_owned(), v))
            .collect()
    })
}

/// Merges adjacent text and drops empty text: the form the parser produces.
pub fn canonical(children: Vec<Node>) -> Vec<Node> {
    let mut out: Vec<Node> = Vec::new();
    for child in children {
        match (child, out.last_mut()) {
            (Node::Text(t), _) if t.is_empty() => {}
            (Node::Text(t), Some(Node::Text(last))) => last.push_str(&t),
            (child, _) => out.push(child),
        }
    }
    out
}

pub fn element() -> impl Strategy<Value = Element> {
    let leaf = (name(), namespace(), attrs()).prop_map(|(name, ns, attrs)| Element {
        name,
        ns,
        attrs,
        children: Vec::new(),
    });
    leaf.prop_recursive(4, 32, 5, |inner| {
        let child = prop_oneof![inner.prop_map(Node::Element), text().prop_map(Node::Text)];
        (
            name(),
            namespace(),
            attrs(),
            prop::collection::vec(child, 0..5),
        )
            .prop_map(|(name, ns, attrs, children)| Element {
                name,
                ns,
                attrs,
                children: canonical(children),
            })
    })
}

/// Snippets that exercise the error paths when spliced into valid input.
pub fn hostile() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::sample::select(vec![
            &b"<!DOCTYPE x>"[..],
            b"<!--c-->",
            b"<?pi x?>",
            b"&foo;",
            b"&#0;",
            b"\0",
            b"\xff",
            b"\xc0\xaf",
            b"</x>",
            b"<a b='1' b='2'>",
            b"<p:x/>",
            b"]]>",
            b"<![CDATA[x]]>",
            b"<",
            b">",
            b"'",
            b"\"",
            b"=",
            b"&",
            b"<?xml version='1.0'?>",
            b"\xef\xbb\xbf",
            b"\xf0\x9f",
        ])
        .prop_map(<[u8]>::to_vec),
        prop::collection::vec(any::<u8>(), 0..8),
    ]
}

/// `stream` (valid streams) and generated fragments, mutated; and plain random bytes.
pub fn mutated_from(stream: BoxedStrategy<Vec<u8>>) -> impl Strategy<Value = Vec<u8>> {
    let fragment = element().prop_map(|e| e.to_xml().into_bytes());
    let base = prop_oneof![stream.clone(), fragment];
    prop_oneof![
        3 => (base, any::<prop::sample::Index>(), hostile()).prop_map(|(mut bytes, at, snippet)| {
            let at = at.index(bytes.len() + 1);
            bytes.splice(at..at, snippet);
            bytes
        }),
        1 => (stream, any::<prop::sample::Index>()).prop_map(|(mut bytes, at)| {
            let at = at.index(bytes.len() + 1);
            bytes.truncate(at);
            bytes
        }),
        1 => prop::collection::vec(any::<u8>(), 0..64),
    ]
}

/// What the parser said: the events, then the first error or the end.
pub type Outcome = (Vec<StreamEvent>, Result<(), WireError>);

/// Feeds `input` cut at `cuts` and drains events after each feed, through `next`, then finishes.
pub fn drive(
    input: &[u8],
    cuts: &[usize],
    mut next: impl FnMut(&mut StreamParser) -> Result<Option<StreamEvent>, WireError>,
) -> Outcome {
    let mut parser = StreamParser::new(Framing::Auto, Limits::harness_ceilings());
    let mut events = Vec::new();
    let mut start = 0;
    let mut bounds: Vec<usize> = cuts.iter().map(|c| c % (input.len() + 1)).collect();
    bounds.sort_unstable();
    bounds.push(input.len());
    for end in bounds {
        if end < start {
            continue;
        }
        parser.feed(&input[start..end]);
        start = end;
        loop {
            match next(&mut parser) {
                Ok(Some(e)) => events.push(e),
                Ok(None) => break,
                Err(e) => return (events, Err(e)),
            }
        }
    }
    // Every event was taken through `next`; `finish` only checks the end.
    if let Err(e) = parser.finish() {
        return (events, Err(e));
    }
    (events, Ok(()))
}
