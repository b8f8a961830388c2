//! Unit tests of the parser, framer and tree builder: each violation with its exact message.

use super::*;

fn events(input: &[u8]) -> Result<Vec<StreamEvent>, WireError> {
    parse_all(input, &Limits::harness_ceilings())
}

fn error(input: &[u8]) -> String {
    match events(input) {
        Ok(evs) => panic!("accepted {:?}: {evs:?}", String::from_utf8_lossy(input)),
        Err(e) => e.to_string(),
    }
}

fn error_with(input: &[u8], limits: &Limits) -> WireError {
    parse_all(input, limits).unwrap_err()
}

fn stanza(input: &str) -> Element {
    parse_fragment(input.as_bytes(), &Limits::harness_ceilings()).unwrap()
}

#[test]
fn minimal_fragment() {
    let e = stanza("<message xmlns='jabber:client'/>");
    assert_eq!(e, Element::new("message", ns::JABBER_CLIENT));
}

#[test]
fn fragment_tree_with_attributes_text_and_unknown_children() {
    let e = stanza(
        "<message xmlns='jabber:client' to='a@b' xml:lang='en' type=\"chat\">\
         <body>hi &amp; &lt;bye&gt; &#x1F600;&#65;</body><x xmlns='urn:unknown' a='1'><y/></x>\
         </message>",
    );
    let expected = Element::new("message", ns::JABBER_CLIENT)
        .with_attr("to", "a@b")
        .with_attr("xml:lang", "en")
        .with_attr("type", "chat")
        .with_child(Element::new("body", ns::JABBER_CLIENT).with_text("hi & <bye> 😀A"))
        .with_child(
            Element::new("x", "urn:unknown")
                .with_attr("a", "1")
                .with_child(Element::new("y", "urn:unknown")),
        );
    assert_eq!(e, expected);
    assert_eq!(stanza(&e.to_xml()), e);
}

#[test]
fn prefixes_resolve_and_declarations_are_kept_for_prefixed_attributes() {
    let e = stanza("<p:a xmlns:p='urn:p' p:x='1' x='2'><p:b/><c/></p:a>");
    assert_eq!(e.name, "a");
    assert_eq!(e.ns, "urn:p");
    assert_eq!(
        e.attrs,
        vec![
            ("xmlns:p".into(), "urn:p".into()),
            ("p:x".into(), "1".into()),
            ("x".into(), "2".into())
        ]
    );
    assert_eq!(e.child("b", "urn:p").map(|b| b.ns.as_str()), Some("urn:p"));
    assert!(e.child("c", "").is_some());
    assert_eq!(stanza(&e.to_xml()), e);
}

#[test]
fn cdata_and_line_ends_become_text() {
    let e = stanza("<a>x<![CDATA[<&]]>]]y\r\nz\rw</a>");
    assert_eq!(e.text(), "x<&]]y\nz\nw");
    let e = stanza("<a b='1\r\n2\t3&#10;4'/>");
    assert_eq!(e.attr("b"), Some("1 2 3\n4"));
}

#[test]
fn stream_with_header_features_stanzas_and_close() {
    let input = "<?xml version='1.0' encoding='utf-8'?>\n<stream:stream xmlns='jabber:client' \
                 xmlns:stream='http://etherx.jabber.org/streams' to='example.net' version='1.0' \
                 xml:lang='en'>\n<stream:features><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/>\
                 </stream:features> <message><body>x</body></message>\n</stream:stream> \n";
    let evs = events(input.as_bytes()).unwrap();
    assert_eq!(evs.len(), 4);
    let StreamEvent::Header(h) = &evs[0] else {
        panic!("{evs:?}")
    };
    assert_eq!(h.to.as_deref(), Some("example.net"));
    assert_eq!(h.version.as_deref(), Some("1.0"));
    assert_eq!(h.lang.as_deref(), Some("en"));
    assert_eq!(h.default_ns, ns::JABBER_CLIENT);
    assert!(h.other_attrs.is_empty());
    let StreamEvent::Stanza(f) = &evs[1] else {
        panic!()
    };
    assert!(f.is("features", ns::STREAMS));
    assert!(f.child("bind", ns::BIND).is_some());
    let StreamEvent::Stanza(m) = &evs[2] else {
        panic!()
    };
    assert!(m.is("message", ns::JABBER_CLIENT));
    assert_eq!(
        m.to_xml_in(ns::JABBER_CLIENT),
        "<message><body>x</body></message>"
    );
    assert_eq!(evs[3], StreamEvent::Close);
    // The header writes back to an equivalent header.
    let again = events(format!("{}{}", h.to_xml(), STREAM_CLOSE).as_bytes()).unwrap();
    assert_eq!(again, vec![evs[0].clone(), StreamEvent::Close]);
    assert_eq!(
        check_document(input.as_bytes(), &Limits::harness_ceilings()),
        Ok(2)
    );
}

#[test]
fn self_closing_header_is_header_then_close() {
    let evs = events(
        b"<stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams'/>",
    )
    .unwrap();
    assert!(matches!(
        &evs[..],
        [StreamEvent::Header(_), StreamEvent::Close]
    ));
}

#[test]
fn stream_without_close_is_fine_but_not_inside_a_stanza() {
    let head =
        "<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>";
    assert_eq!(
        check_document(
            format!("{head}<presence/>").as_bytes(),
            &Limits::harness_ceilings()
        ),
        Ok(1)
    );
    assert_eq!(
        error(format!("{head}<presence>").as_bytes()),
        "element <presence> at byte 95: it is not closed at the end of the input"
    );
}

#[test]
fn bom_is_skipped_and_empty_input_has_no_stanzas() {
    assert_eq!(
        check_document(
            b"\xEF\xBB\xBF<?xml version='1.0'?><a/>",
            &Limits::harness_ceilings()
        ),
        Ok(1)
    );
    assert_eq!(check_document(b"", &Limits::harness_ceilings()), Ok(0));
    assert_eq!(check_document(b" \n\t", &Limits::harness_ceilings()), Ok(0));
}

#[test]
fn explicit_framings() {
    let limits = Limits::harness_ceilings();
    let mut p = StreamParser::new(Framing::Stream, limits.clone());
    p.feed(b"<message/>");
    assert_eq!(
        p.next_event().unwrap_err().to_string(),
        "root element <message> at byte 0: a stream must open with <stream:stream> (RFC 6120 §4.2)"
    );
    let mut p = StreamParser::new(Framing::Fragments, limits);
    p.feed(b"<stream xmlns='x'/>");
    assert!(matches!(p.next_event(), Ok(Some(StreamEvent::Stanza(_)))));
    assert_eq!(p.framing(), Framing::Fragments);
}

#[test]
fn parse_fragment_wants_exactly_one_element() {
    let l = Limits::harness_ceilings();
    assert_eq!(
        parse_fragment(b"<a/><b/>", &l).unwrap_err().to_string(),
        "input at byte 4: it must hold exactly one element, found 2"
    );
    assert_eq!(
        parse_fragment(b" ", &l).unwrap_err().to_string(),
        "input at byte 1: it must hold exactly one element, found 0"
    );
}

#[test]
fn restricted_xml_is_refused() {
    assert_eq!(
        error(b"<!DOCTYPE x [<!ENTITY a 'b'>]><x/>"),
        "DOCTYPE declaration at byte 0: DTDs are forbidden (RFC 6120 §11.1)"
    );
    assert_eq!(
        error(b"<a><?php x?></a>"),
        "processing instruction <?php at byte 3: processing instructions are forbidden (RFC 6120 §11.1)"
    );
    assert_eq!(
        error(b"<a/><?xml version='1.0'?>"),
        "XML declaration at byte 4: it is only allowed at the very start of the stream (XML 1.0 §2.8)"
    );
    assert_eq!(
        error(b"<a><!-- c --></a>"),
        "comment at byte 3: comments are forbidden (RFC 6120 §11.1)"
    );
    assert_eq!(
        error(b"<a>&foo;</a>"),
        "entity reference &foo; at byte 3: only the five predefined entities are allowed (RFC 6120 §11.1)"
    );
    assert_eq!(
        error(b"<a b='&foo;'/>"),
        "entity reference &foo; at byte 6: only the five predefined entities are allowed (RFC 6120 §11.1)"
    );
}

#[test]
fn bad_characters_are_refused() {
    assert_eq!(
        error(b"<a>&#0;</a>"),
        "character reference &#0; at byte 3: it does not denote a character allowed in XML 1.0 (XML 1.0 §4.1)"
    );
    assert_eq!(
        error(b"<a>&#xD800;</a>"),
        "character reference &#xD800; at byte 3: it does not denote a character allowed in XML 1.0 (XML 1.0 §4.1)"
    );
    assert_eq!(
        error(b"<a>x\0</a>"),
        "character U+0000 at byte 4: it is not allowed in XML 1.0 (XML 1.0 §2.2)"
    );
    assert_eq!(
        error(b"<a>\xC0\xAF</a>"),
        "byte sequence at byte 3: it is not valid UTF-8 (RFC 6120 §11.6)"
    );
    assert_eq!(
        error(b"<1a/>"),
        "name character '1' at byte 1: it is not allowed here in an XML name (XML 1.0 §2.3)"
    );
    assert_eq!(
        error("<a·b/><·/>".as_bytes()),
        "name \"·\" at byte 8: it is not a valid qualified name (Namespaces in XML 1.0 §4)"
    );
    assert_eq!(
        error(b"<a>]]></a>"),
        "']]>' in text at byte 3: it must be escaped as ]]&gt; outside CDATA sections (XML 1.0 §2.4)"
    );
}

#[test]
fn structure_errors() {
    assert_eq!(
        error(b"<a><b></a>"),
        "end tag </a> at byte 6: it does not match the open element <b>"
    );
    assert_eq!(
        error(b"</a>"),
        "end tag </a> at byte 0: there is no open element to close"
    );
    assert_eq!(
        error(b"<a><b"),
        "end of input at byte 5: the input ends inside a tag"
    );
    assert_eq!(
        error(b"<a b='1' b='2'/>"),
        "attribute b at byte 9: it appears more than once on the element (XML 1.0 §3.1)"
    );
    assert_eq!(
        error(b"<a xmlns:p='u' xmlns:q='u' p:x='1' q:x='2'/>"),
        "attribute q:x at byte 35: it appears more than once on the element (XML 1.0 §3.1)"
    );
    assert_eq!(
        error(b"<a b='<'/>"),
        "'<' in attribute value at byte 6: it must be escaped as &lt; (XML 1.0 §3.1)"
    );
    assert_eq!(
        error(b"<a b=c/>"),
        "attribute value at byte 5: it must be quoted (XML 1.0 §3.1)"
    );
    assert_eq!(
        error(b"<a/>text"),
        "character data between stanzas at byte 4: only whitespace may appear outside stanzas"
    );
    assert_eq!(
        error(b"<a><!x></a>"),
        "markup declaration at byte 3: only <![CDATA[ may follow <! here"
    );
}

#[test]
fn namespace_errors() {
    assert_eq!(
        error(b"<p:a/>"),
        "prefix p at byte 1: it is not bound to a namespace (Namespaces in XML 1.0 §5)"
    );
    assert_eq!(
        error(b"<a q:b='1'/>"),
        "prefix q at byte 3: it is not bound to a namespace (Namespaces in XML 1.0 §5)"
    );
    assert_eq!(
        error(b"<a xmlns:xml='urn:x'/>"),
        "namespace declaration xmlns:xml=\"urn:x\" at byte 3: the xml prefix cannot be rebound (Namespaces in XML 1.0 §3)"
    );
    assert_eq!(
        error(b"<a xmlns:p=''/>"),
        "namespace declaration xmlns:p=\"\" at byte 3: a prefix cannot be bound to the empty namespace name (Namespaces in XML 1.0 §3)"
    );
    assert_eq!(
        error(b"<stream:stream xmlns='jabber:client' xmlns:stream='urn:wrong'>"),
        "stream namespace \"urn:wrong\" at byte 0: the stream element must be in http://etherx.jabber.org/streams (RFC 6120 §4.8.1)"
    );
    assert_eq!(
        error(b"<stream:stream xmlns='urn:x' xmlns:stream='http://etherx.jabber.org/streams'>"),
        "content namespace \"urn:x\" at byte 0: the default namespace must be jabber:client or jabber:server (RFC 6120 §4.8.3)"
    );
}

#[test]
fn stream_level_errors() {
    let head =
        "<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>";
    assert_eq!(
        error(format!("{head}</stream:other>").as_bytes()),
        "end tag </stream:other> at byte 85: it does not match the open element <stream:stream>"
    );
    assert_eq!(
        error(format!("{head}</stream:stream><a/>").as_bytes()),
        "content after the stream close at byte 101: only whitespace may follow </stream:stream>"
    );
    assert_eq!(
        error(format!("{head}x").as_bytes()),
        "character data between stanzas at byte 85: only whitespace may appear outside stanzas"
    );
}

#[test]
fn encoding_errors() {
    assert_eq!(
        error(b"<?xml version='1.0' encoding='ISO-8859-1'?><a/>"),
        "encoding ISO-8859-1 at byte 0: only UTF-8 is allowed (RFC 6120 §11.6)"
    );
    assert_eq!(
        error(b"\xFF\xFE<\0a\0/\0>\0"),
        "encoding UTF-16 (byte order mark) at byte 0: only UTF-8 is allowed (RFC 6120 §11.6)"
    );
    assert_eq!(
        error(b"<?xml version='1.1'?><a/>"),
        "XML version 1.1 at byte 0: only XML 1.0 is allowed (RFC 6120 §11)"
    );
}

#[test]
fn limits_are_policy_violations() {
    let limits = Limits {
        max_stanza_bytes: 32,
        max_depth: 3,
        max_attributes: 2,
        max_attr_value_bytes: 4,
        max_text_bytes: 5,
        max_namespace_decls: 1,
        max_name_bytes: 8,
        max_header_bytes: 100,
    };
    let msg = |input: &[u8]| error_with(input, &limits).to_string();
    assert_eq!(
        msg(b"<a>0123456789012345678901234567890123</a>"),
        "stanza at byte 32: it is larger than the limit of 32 bytes"
    );
    assert_eq!(
        msg(b"<a><a><a><a>"),
        "element at byte 9: it nests deeper than the limit of 3 levels"
    );
    assert_eq!(
        msg(b"<a b='' c='' d=''/>"),
        "attribute at byte 13: the element has more than the limit of 2 attributes"
    );
    assert_eq!(
        msg(b"<a b='12345'/>"),
        "attribute value at byte 6: it is longer than the limit of 4 bytes"
    );
    assert_eq!(
        msg(b"<a>12&amp;456</a>"),
        "text node at byte 10: it is longer than the limit of 5 bytes"
    );
    assert_eq!(
        msg(b"<a xmlns='u' xmlns:p='v'/>"),
        "namespace declaration at byte 13: the element has more than the limit of 1 declarations"
    );
    // Declarations and attributes are counted apart (SPEC.md Appendix B).
    let two_each = Limits {
        max_stanza_bytes: 64,
        max_namespace_decls: 2,
        ..limits.clone()
    };
    assert!(parse_fragment(b"<a xmlns='u' b='' xmlns:p='v' p:c=''/>", &two_each).is_ok());
    assert_eq!(
        error_with(b"<a xmlns='u' b='' xmlns:p='v' c='' d=''/>", &two_each).to_string(),
        "attribute at byte 35: the element has more than the limit of 2 attributes"
    );
    assert_eq!(
        error_with(b"<a xmlns='u' xmlns:p='v' xmlns:q='w'/>", &two_each).to_string(),
        "namespace declaration at byte 25: the element has more than the limit of 2 declarations"
    );
    assert_eq!(
        msg(b"<abcdefghijk/>"),
        "name at byte 9: it is longer than the limit of 8 bytes"
    );
    assert_eq!(
        msg(format!("<?xml version='1.0'?>{}<stream:stream>", " ".repeat(100)).as_bytes()),
        "stream header at byte 100: it is larger than the limit of 100 bytes"
    );
    let e = error_with(b"<a>0123456789012345678901234567890123</a>", &limits);
    assert_eq!(e.condition(), StreamErrorCondition::PolicyViolation);
}

#[test]
fn errors_are_sticky_and_input_after_them_is_dropped() {
    let mut p = StreamParser::new(Framing::Fragments, Limits::harness_ceilings());
    p.feed(b"<a/><!-- x -->");
    assert!(matches!(p.next_event(), Ok(Some(StreamEvent::Stanza(_)))));
    let first = p.next_event().unwrap_err();
    p.feed(b"<b/>");
    assert_eq!(p.buffered_len(), 0);
    assert_eq!(p.next_event().unwrap_err(), first);
    assert_eq!(p.finish().unwrap_err(), first);
}

#[test]
fn finish_reports_truncation() {
    let mut p = StreamParser::new(Framing::Auto, Limits::harness_ceilings());
    p.feed(b"<a x='1");
    assert_eq!(p.next_event(), Ok(None));
    assert_eq!(
        p.finish().unwrap_err().to_string(),
        "end of input at byte 7: the input ends inside a tag"
    );
}

/// `settled` marks the end of each event's bytes, and never falls inside an element, for
/// every split of the input (SPEC.md §15: a proxy relays each unit as received).
#[test]
fn settled_ends_each_unit_for_every_split() {
    let header: &[u8] = b"<?xml version='1.0'?><stream:stream xmlns='jabber:client' \
        xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>";
    let units: [&[u8]; 6] = [
        header,
        b" \n",
        b"<message id=\"a\"><body>x &amp; y</body></message>",
        b"\t",
        b"<iq type='get' id='b'/>",
        b"</stream:stream>",
    ];
    let input = units.concat();
    let mut bounds = vec![0u64];
    for unit in units {
        bounds.push(bounds.last().copied().unwrap_or(0) + unit.len() as u64);
    }
    // The events end where units 0, 2, 4 and 5 end. The XML declaration settles on its own.
    let event_ends = [bounds[1], bounds[3], bounds[5], bounds[6]];
    let decl = b"<?xml version='1.0'?>".len() as u64;
    let elements = [
        (decl, bounds[1]),
        (bounds[2], bounds[3]),
        (bounds[4], bounds[5]),
    ];
    for cut in 0..=input.len() {
        let mut p = StreamParser::new(Framing::Stream, Limits::harness_ceilings());
        let mut ends = Vec::new();
        for chunk in [&input[..cut], &input[cut..]] {
            p.feed(chunk);
            while let Some(_event) = p.next_event().unwrap() {
                ends.push(p.settled());
            }
            let settled = p.settled();
            assert!(settled <= p.bytes_fed());
            assert!(
                elements.iter().all(|&(s, e)| settled <= s || settled >= e),
                "cut {cut}: settled {settled} inside an element"
            );
        }
        assert_eq!(ends, event_ends, "cut {cut}");
    }
}
