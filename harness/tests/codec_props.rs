//! Properties of the stanza codec: serialize-then-parse is the identity, and the parser's
//! events and first error do not depend on how the input is chunked.

use gatecheck::wire::{
    Element, Limits, StreamEvent, StreamHeader, StreamParser, ns, parse_fragment,
};
use proptest::prelude::*;

mod common;
use common::{Outcome, drive, element, mutated_from};

fn mutated() -> impl Strategy<Value = Vec<u8>> {
    mutated_from(stream().boxed())
}

/// A stream: header, stanzas written in it (with keepalive whitespace), maybe the close.
fn stream() -> impl Strategy<Value = Vec<u8>> {
    (
        prop::collection::vec(
            (
                element(),
                prop::sample::select(vec!["", " ", "\n", "\r\n\t"]),
            ),
            0..6,
        ),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(|(stanzas, declaration, close)| {
            let mut out = String::new();
            if declaration {
                out.push_str("<?xml version='1.0' encoding='UTF-8'?>\n");
            }
            let header = StreamHeader {
                to: Some("example.net".into()),
                version: Some("1.0".into()),
                ..StreamHeader::new(ns::JABBER_CLIENT)
            };
            out.push_str(&header.to_xml());
            for (stanza, ws) in stanzas {
                out.push_str(ws);
                out.push_str(&stanza.to_xml_in(ns::JABBER_CLIENT));
            }
            if close {
                out.push_str("</stream:stream>");
            }
            out.into_bytes()
        })
}

/// Everything the parser says about `input` fed in pieces cut at `cuts`: the events, then
/// either the first error or the end.
fn run(input: &[u8], cuts: &[usize]) -> Outcome {
    drive(input, cuts, StreamParser::next_event)
}

fn one_byte_cuts(len: usize) -> Vec<usize> {
    (1..len).collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn serialize_then_parse_is_identity(e in element()) {
        let xml = e.to_xml();
        let parsed = parse_fragment(xml.as_bytes(), &Limits::harness_ceilings());
        prop_assert_eq!(parsed.as_ref(), Ok(&e), "{}", xml);
    }

    #[test]
    fn written_in_a_stream_parses_back(stanzas in prop::collection::vec(element(), 1..4)) {
        let mut doc = StreamHeader::new(ns::JABBER_CLIENT).to_xml();
        for s in &stanzas {
            doc.push_str(&s.to_xml_in(ns::JABBER_CLIENT));
        }
        let (events, end) = run(doc.as_bytes(), &[]);
        prop_assert_eq!(end, Ok(()));
        let got: Vec<&Element> = events.iter().filter_map(|e| match e {
            StreamEvent::Stanza(s) => Some(s),
            _ => None,
        }).collect();
        prop_assert_eq!(got, stanzas.iter().collect::<Vec<_>>(), "{}", doc);
    }

    #[test]
    fn valid_streams_are_chunking_invariant(
        input in stream(),
        cuts in prop::collection::vec(any::<usize>(), 0..12),
    ) {
        let whole = run(&input, &[]);
        prop_assert_eq!(&whole.1, &Ok(()), "{}", String::from_utf8_lossy(&input));
        prop_assert_eq!(&run(&input, &cuts), &whole);
        prop_assert_eq!(&run(&input, &one_byte_cuts(input.len())), &whole);
    }

    #[test]
    fn hostile_input_is_chunking_invariant(
        input in mutated(),
        cuts in prop::collection::vec(any::<usize>(), 0..12),
    ) {
        let whole = run(&input, &[]);
        prop_assert_eq!(&run(&input, &cuts), &whole, "{:?}", String::from_utf8_lossy(&input));
        prop_assert_eq!(&run(&input, &one_byte_cuts(input.len())), &whole);
    }
}
