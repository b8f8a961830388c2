use super::*;
use crate::wire::{Framing, Limits, StreamParser};

fn stanzas(input: &[u8]) -> Vec<Element> {
    let mut p = StreamParser::new(Framing::Auto, Limits::harness_ceilings());
    p.feed(input);
    let mut out = Vec::new();
    while let Some(ev) = p.next_event_ref().unwrap() {
        if let StreamEventRef::Stanza(s) = ev {
            out.push(s.root().to_owned());
        }
    }
    out
}

#[test]
fn plain_input_is_borrowed() {
    let input = b"<message xmlns='jabber:client' to='a@b'><body>hi</body></message>";
    let mut p = StreamParser::new(Framing::Fragments, Limits::harness_ceilings());
    p.feed(input);
    let Some(StreamEventRef::Stanza(s)) = p.next_event_ref().unwrap() else {
        panic!("no stanza");
    };
    let e = s.root();
    assert!(matches!(e.name_cow(), Cow::Borrowed("message")));
    assert!(matches!(e.ns_cow(), Cow::Borrowed("jabber:client")));
    assert!(matches!(e.attrs_cow()[0].1, Cow::Borrowed("a@b")));
    let body = e.child("body", "jabber:client").unwrap();
    assert!(matches!(body.text(), Cow::Borrowed("hi")));
    assert_eq!(e.attr("to"), Some("a@b"));
    assert_eq!(e.attrs().collect::<Vec<_>>(), [("to", "a@b")]);
    assert_eq!(e.child_elements().count(), 1);
    assert_eq!(e.children_named("body", "jabber:client").count(), 1);
    assert!(e.is("message", "jabber:client"));
    assert_eq!(s.element_count(), 2);
}

#[test]
fn stream_namespace_is_not_borrowed_from_the_parser_context() {
    let input = b"<stream:stream xmlns='jabber:client' \
        xmlns:stream='http://etherx.jabber.org/streams'><message><body>x</body></message>";
    let mut p = StreamParser::new(Framing::Stream, Limits::harness_ceilings());
    p.feed(input);
    assert!(matches!(
        p.next_event_ref(),
        Ok(Some(StreamEventRef::Header(_)))
    ));
    let Ok(Some(StreamEventRef::Stanza(s))) = p.next_event_ref() else {
        panic!("no stanza");
    };
    assert!(matches!(s.root().ns_cow(), Cow::Borrowed("jabber:client")));
}

#[test]
fn transformed_input_is_owned_and_equal() {
    let input = b"<a x='1&amp;2' y='p\tq'>t&lt;u<![CDATA[v]]>\r\nw<b/>z</a>";
    let owned = crate::wire::parse_fragment(input, &Limits::harness_ceilings()).unwrap();
    assert_eq!(stanzas(input), vec![owned.clone()]);
    let s = StanzaRef::from(&owned);
    assert_eq!(s.root().to_owned(), owned);
    assert_eq!(s.root(), owned);
    assert_eq!(s.root().text(), owned.text());
    assert_eq!(s.clone(), s);
}

#[test]
fn children_keep_document_order() {
    let input = b"<a>1<b>2<c/>3</b>4<d/><e>5</e>6</a>";
    let owned = crate::wire::parse_fragment(input, &Limits::harness_ceilings()).unwrap();
    let mut p = StreamParser::new(Framing::Fragments, Limits::harness_ceilings());
    p.feed(input);
    let Ok(Some(StreamEventRef::Stanza(s))) = p.next_event_ref() else {
        panic!("no stanza");
    };
    assert_eq!(s.root().to_owned(), owned);
    let kinds: Vec<String> = s
        .root()
        .children()
        .map(|n| match n {
            NodeRef::Element(e) => format!("<{}>", e.name()),
            NodeRef::Text(t) => t.to_string(),
        })
        .collect();
    assert_eq!(kinds, ["1", "<b>", "4", "<d>", "<e>", "6"]);
    assert_eq!(s.element_count(), 5);
}

#[test]
fn storage_is_reused_from_stanza_to_stanza() {
    let mut p = StreamParser::new(Framing::Fragments, Limits::harness_ceilings());
    p.feed(b"<a x='1'><b>t</b></a><c y='2'>u<d/></c>");
    let first = match p.next_event_ref() {
        Ok(Some(StreamEventRef::Stanza(s))) => s.root().to_owned(),
        other => panic!("{other:?}"),
    };
    assert_eq!(first.name, "a");
    // The first stanza's vectors went back to the pool and hold nothing of it.
    let Ok(Some(StreamEventRef::Stanza(s))) = p.next_event_ref() else {
        panic!("no stanza");
    };
    assert_eq!(s.element_count(), 2);
    assert_eq!(s.root().attrs().collect::<Vec<_>>(), [("y", "2")]);
    assert_eq!(s.root().text(), "u");
}
