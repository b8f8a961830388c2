//! Helpers shared by the codec test crates: the fixture corpora and the proptest
//! generators of element trees.
// Each test crate uses a different subset of these helpers.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use gatecheck::wire::{Element, Node, ns};
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
