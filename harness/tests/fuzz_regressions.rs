//! What the fuzz targets found in the harness, one test per finding, each checking the rule the
//! fix follows rather than the code that was changed. The inputs are also kept as
//! `fuzz/corpus/<target>/regress-*`, which tests/fuzz_corpus.rs replays.

use gatecheck::wire::{Framing, Limits, StreamEvent, StreamParser, Violation, parse_all};

/// stanza_differential: minidom refused `to='a'id='b'` and the codec took it as two
/// attributes. XML 1.0 §3.1 (`STag ::= '<' Name (S Attribute)* S? '>'`) requires whitespace
/// before every attribute; the exact path (quick-xml) did not check it.
#[test]
fn attributes_without_whitespace_between_them_are_not_well_formed() {
    let limits = Limits::harness_ceilings();
    let stanza = b"<message xmlns='jabber:client' to='a'id='b'/>";
    let err = parse_all(stanza, &limits).unwrap_err();
    assert_eq!(
        err.violation,
        Violation::NoSpaceBeforeAttribute { name: "id".into() }
    );
    assert_eq!(err.offset, 37, "the offset of the attribute's name");
    assert_eq!(err.condition().as_str(), "not-well-formed");

    // The same in a stream header, and in a stanza taken by each API.
    let header = b"<stream:stream xmlns='jabber:client' \
        xmlns:stream='http://etherx.jabber.org/streams'to='x'>";
    let err = parse_all(header, &limits).unwrap_err();
    assert!(matches!(
        err.violation,
        Violation::NoSpaceBeforeAttribute { .. }
    ));
    for fast in [true, false] {
        let parser = StreamParser::new(Framing::Fragments, limits.clone());
        let mut parser = if fast {
            parser
        } else {
            parser.without_fast_path()
        };
        parser.feed(b"<a xmlns='urn:x' b=\"1\"c='2'/>");
        assert!(matches!(
            parser.next_event_ref().map(|e| e.map(|e| e.to_owned())),
            Err(e) if matches!(e.violation, Violation::NoSpaceBeforeAttribute { .. })
        ));
    }

    // Whitespace of any of the four kinds separates attributes.
    for space in [" ", "\t", "\n", "\r"] {
        let ok = format!("<a xmlns='urn:x' b='1'{space}c='2'/>");
        let events = parse_all(ok.as_bytes(), &limits).unwrap();
        assert!(matches!(&events[..], [StreamEvent::Stanza(e)] if e.attr("c") == Some("2")));
    }
}
