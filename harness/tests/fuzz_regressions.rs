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

/// stanza_differential: `<?xml version='1.0' encodi~ng='UTF-8'?>` was accepted: quick-xml's
/// declaration reader skips pseudo-attributes it does not know. XML 1.0 §2.8 allows version,
/// then encoding, then standalone, nothing else and in that order.
#[test]
fn a_malformed_xml_declaration_is_refused() {
    let limits = Limits::harness_ceilings();
    let stanza = "<a xmlns='urn:x'/>";
    for decl in [
        "<?xml version='1.0' encodi~ng='UTF-8'?>",
        "<?xml version='1.0' foo='bar'?>",
        "<?xml encoding='UTF-8' version='1.0'?>",
        "<?xml version='1.0' standalone='yes' encoding='UTF-8'?>",
        "<?xml version='1.0'encoding='UTF-8'?>",
        "<?xml version='1.0' encoding='UTF-8\"?>",
        "<?xml version='1.0' encoding='8bit'?>",
        "<?xml version='1.0' standalone='maybe'?>",
        "<?xml version='1.0' version='1.0'?>",
        "<?xml?>",
    ] {
        let input = format!("{decl}{stanza}");
        let err = parse_all(input.as_bytes(), &limits).expect_err(decl);
        assert_eq!(err.offset, 0, "{decl}");
        assert_eq!(err.condition().as_str(), "not-well-formed", "{decl}");
    }
    for decl in [
        "<?xml version='1.0'?>",
        "<?xml version = \"1.0\" ?>",
        "<?xml version='1.0' encoding='utf-8'?>",
        "<?xml version='1.0' standalone='no'?>",
        "<?xml version=\"1.0\"\n  encoding=\"UTF-8\"\tstandalone=\"yes\"?>",
    ] {
        let input = format!("{decl}{stanza}");
        assert!(parse_all(input.as_bytes(), &limits).is_ok(), "{decl}");
    }
    // The version and encoding keep their own violations.
    let err = parse_all(b"<?xml version='1.1'?><a xmlns='urn:x'/>", &limits).unwrap_err();
    assert!(matches!(
        err.violation,
        Violation::UnsupportedXmlVersion { .. }
    ));
    let err = parse_all(
        b"<?xml version='1.0' encoding='ISO-8859-1'?><a xmlns='urn:x'/>",
        &limits,
    )
    .unwrap_err();
    assert!(matches!(
        err.violation,
        Violation::UnsupportedEncoding { .. }
    ));
}

/// stanza_parse: `<xml:langssage/>` (an element in the XML namespace, through the `xml` prefix
/// that is always bound) was written back as `<langssage xmlns="http://www.w3.org/XML/1998/
/// namespace"/>`, which Namespaces in XML 1.0 §3 forbids, so the copy did not parse.
#[test]
fn an_element_in_the_xml_namespace_is_written_with_the_xml_prefix() {
    let limits = Limits::harness_ceilings();
    let input = b"<xml:langssage><xml:b xmlns='urn:x'><c/></xml:b></xml:langssage>";
    let events = parse_all(input, &limits).unwrap();
    let [StreamEvent::Stanza(element)] = &events[..] else {
        panic!("one stanza: {events:?}");
    };
    assert_eq!(element.ns, "http://www.w3.org/XML/1998/namespace");
    let written = element.to_xml();
    assert_eq!(
        written, "<xml:langssage><xml:b><c xmlns=\"urn:x\"/></xml:b></xml:langssage>",
        "the default namespace is declared where an element in it is written"
    );
    assert_eq!(
        gatecheck::wire::parse_fragment(written.as_bytes(), &limits).as_ref(),
        Ok(element)
    );
    // Inside a stream too.
    let in_stream = element.to_xml_in("jabber:client");
    assert_eq!(
        gatecheck::wire::parse_fragment(in_stream.as_bytes(), &limits).as_ref(),
        Ok(element)
    );
}

/// stanza_differential: `xmlns:="0"` (nothing after the colon) was taken as a declaration of
/// the empty prefix, that is of the default namespace, so it silently changed the namespace of
/// the element. Namespaces in XML 1.0 §3 (`PrefixedAttName ::= 'xmlns:' NCName`) makes it no
/// name at all.
#[test]
fn an_xmlns_colon_without_a_prefix_is_not_a_declaration() {
    let limits = Limits::harness_ceilings();
    for input in [
        &b"<message xmlns='jabber:client' xmlns:='urn:evil'/>"[..],
        b"<a xmlns:='urn:x'/>",
        b"<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' \
          xmlns:='urn:evil'>",
    ] {
        let err = parse_all(input, &limits).expect_err(&String::from_utf8_lossy(input));
        assert_eq!(
            err.violation,
            Violation::InvalidName {
                name: "xmlns:".into()
            }
        );
        assert_eq!(err.condition().as_str(), "not-well-formed");
    }
    // A prefix declaration proper still works.
    let ok = parse_all(b"<a xmlns='urn:x' xmlns:p='urn:p' p:b='1'/>", &limits).unwrap();
    assert!(matches!(&ok[..], [StreamEvent::Stanza(e)] if e.ns == "urn:x"));
}
