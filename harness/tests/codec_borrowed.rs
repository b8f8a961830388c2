//! The borrowing codec path (`StreamParser::next_event_ref`) against the owned one
//! (`next_event`): the same events (`StanzaRef::root().to_owned() == Element`), the same first
//! error, for every fixture and for generated, mutated and randomly chunked input.

use std::borrow::Cow;

use gatecheck::wire::{
    Framing, Limits, NodeRef, StanzaRef, StreamEvent, StreamEventRef, StreamHeader, StreamParser,
    check_document, fixture_bytes, ns,
};
use proptest::prelude::*;

mod common;
use common::{Outcome, corpus, drive, element, mutated_from};

fn owned(input: &[u8], cuts: &[usize]) -> Outcome {
    drive(input, cuts, StreamParser::next_event)
}

fn borrowed(input: &[u8], cuts: &[usize]) -> Outcome {
    drive(input, cuts, |p| {
        p.next_event_ref()
            .map(|e| e.as_ref().map(StreamEventRef::to_owned))
    })
}

#[test]
fn good_fixtures_give_the_same_trees() {
    let files = corpus("good");
    assert!(files.len() >= 12);
    for path in files {
        let bytes = fixture_bytes(&path).unwrap();
        let name = path.display();
        let expected = owned(&bytes, &[]);
        assert_eq!(expected.1, Ok(()), "{name}");
        assert!(
            expected
                .0
                .iter()
                .any(|e| matches!(e, StreamEvent::Stanza(_))),
            "{name}"
        );
        assert_eq!(borrowed(&bytes, &[]), expected, "{name}");
        // Split in the middle of every element too: the framer-delimited path.
        let cuts: Vec<usize> = (1..bytes.len()).step_by(7).collect();
        assert_eq!(borrowed(&bytes, &cuts), expected, "{name} cut");
        let stanzas = expected
            .0
            .iter()
            .filter(|e| matches!(e, StreamEvent::Stanza(_)))
            .count();
        assert_eq!(
            check_document(&bytes, &Limits::harness_ceilings()),
            Ok(stanzas)
        );
    }
}

#[test]
fn bad_fixtures_give_the_same_error() {
    let files = corpus("bad");
    assert!(files.len() >= 34);
    for path in files {
        let bytes = fixture_bytes(&path).unwrap();
        let name = path.display();
        let expected = owned(&bytes, &[]);
        assert!(expected.1.is_err(), "{name}: accepted");
        let got = borrowed(&bytes, &[]);
        assert_eq!(got, expected, "{name}");
        assert_eq!(
            check_document(&bytes, &Limits::harness_ceilings()).map(|_| ()),
            expected.1,
            "{name}"
        );
    }
}

#[test]
fn errors_are_sticky_and_the_buffer_is_released() {
    let mut p = StreamParser::new(Framing::Fragments, Limits::harness_ceilings());
    p.feed(b"<a/><!-- x -->");
    assert!(matches!(
        p.next_event_ref(),
        Ok(Some(StreamEventRef::Stanza(_)))
    ));
    let first = p.next_event_ref().unwrap_err();
    assert_eq!(p.next_event_ref().unwrap_err(), first);
    assert_eq!(p.buffered_len(), 0);
    p.feed(b"<b/>");
    assert_eq!(p.buffered_len(), 0);
    assert_eq!(p.next_event().unwrap_err(), first);
    assert_eq!(p.finish().unwrap_err(), first);
}

#[test]
fn a_common_stanza_borrows_its_strings() {
    let doc = b"<stream:stream xmlns='jabber:client' \
        xmlns:stream='http://etherx.jabber.org/streams'><message to='a@b'><body>hi</body>\
        </message><message to='c@d'><body>x &amp; y</body></message>";
    let mut p = StreamParser::new(Framing::Stream, Limits::harness_ceilings());
    p.feed(doc);
    assert!(matches!(
        p.next_event_ref(),
        Ok(Some(StreamEventRef::Header(_)))
    ));
    for (to, body, body_borrowed) in [("a@b", "hi", true), ("c@d", "x & y", false)] {
        let Ok(Some(StreamEventRef::Stanza(s))) = p.next_event_ref() else {
            panic!("no stanza");
        };
        let e = s.root();
        assert!(e.is("message", ns::JABBER_CLIENT));
        assert_eq!(e.attr("to"), Some(to));
        let body_el = e.child("body", ns::JABBER_CLIENT).unwrap();
        assert_eq!(body_el.text(), body);
        // Borrowed from the input only when it needed no reference resolved.
        let children: Vec<NodeRef<'_>> = body_el.children().collect();
        let from_input = matches!(children[..], [NodeRef::Text(Cow::Borrowed(_))]);
        assert_eq!(from_input, body_borrowed);
        let copy = StanzaRef::from(&e.to_owned());
        assert_eq!(copy.root(), e);
        assert_eq!(copy, s);
    }
}

/// A stream of written stanzas, plain ones (the one-pass path) mixed with generated ones.
fn stream() -> impl Strategy<Value = Vec<u8>> {
    let plain = prop::sample::select(vec![
        "<message to='a@b' id='1'><body>hi there</body><x xmlns='urn:x' y='z'/></message>",
        "<presence/>",
        "<iq type='get' id='p'><ping xmlns='urn:xmpp:ping'/></iq>",
    ])
    .prop_map(str::to_owned);
    let stanza = prop_oneof![
        element().prop_map(|e| e.to_xml_in(ns::JABBER_CLIENT)),
        plain
    ];
    (
        prop::collection::vec(
            (stanza, prop::sample::select(vec!["", " ", "\n", "\r\n\t"])),
            0..6,
        ),
        any::<bool>(),
    )
        .prop_map(|(stanzas, close)| {
            let mut out = StreamHeader::new(ns::JABBER_CLIENT).to_xml();
            for (stanza, ws) in stanzas {
                out.push_str(ws);
                out.push_str(&stanza);
            }
            if close {
                out.push_str("</stream:stream>");
            }
            out.into_bytes()
        })
}

fn mutated() -> impl Strategy<Value = Vec<u8>> {
    mutated_from(stream().boxed())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn both_apis_agree_on_generated_streams(
        input in stream(),
        cuts in prop::collection::vec(any::<usize>(), 0..12),
    ) {
        let whole = owned(&input, &[]);
        prop_assert_eq!(&whole.1, &Ok(()), "{}", String::from_utf8_lossy(&input));
        prop_assert_eq!(&borrowed(&input, &[]), &whole);
        prop_assert_eq!(&borrowed(&input, &cuts), &whole);
    }

    #[test]
    fn both_apis_agree_on_mutated_input(
        input in mutated(),
        cuts in prop::collection::vec(any::<usize>(), 0..12),
    ) {
        let whole = owned(&input, &[]);
        let lossy = String::from_utf8_lossy(&input);
        prop_assert_eq!(&borrowed(&input, &[]), &whole, "{:?}", lossy);
        prop_assert_eq!(&borrowed(&input, &cuts), &whole, "{:?}", lossy);
        prop_assert_eq!(&owned(&input, &cuts), &whole, "{:?}", lossy);
    }

    #[test]
    fn to_owned_equals_the_owned_tree(e in element()) {
        let xml = e.to_xml();
        let mut p = StreamParser::new(Framing::Fragments, Limits::harness_ceilings());
        p.feed(xml.as_bytes());
        let got = p.next_event_ref().map(|ev| ev.as_ref().map(StreamEventRef::to_owned));
        prop_assert_eq!(got, Ok(Some(StreamEvent::Stanza(e))), "{}", xml);
    }
}
