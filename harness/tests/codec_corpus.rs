//! The stanza corpora: every bad input is refused as snapshotted, every good one round-trips.

use std::path::Path;
use std::time::{Duration, Instant};

use gatecheck::wire::{
    Framing, Limits, StreamErrorCondition, StreamEvent, StreamParser, check_document,
    fixture_bytes, parse_all, parse_fragment,
};

mod common;
use common::corpus;

fn file_name(path: &Path) -> String {
    path.file_name().unwrap().to_string_lossy().into_owned()
}

#[test]
fn bad_inputs_are_refused_as_snapshotted() {
    let files = corpus("bad");
    assert!(files.len() >= 34, "only {} bad inputs", files.len());
    for path in files {
        let name = file_name(&path);
        let bytes = fixture_bytes(&path).unwrap();
        let err = match check_document(&bytes, &Limits::harness_ceilings()) {
            Ok(n) => panic!("{name}: accepted ({n} stanzas)"),
            Err(e) => e,
        };
        let report = serde_json::json!({
            "file": name,
            "condition": err.condition(),
            "offset": err.offset,
            "message": err.to_string(),
        });
        insta::assert_json_snapshot!(format!("bad__{name}"), report);
    }
}

#[test]
fn good_inputs_parse_and_round_trip() {
    let files = corpus("good");
    assert!(files.len() >= 12, "only {} good inputs", files.len());
    let limits = Limits::harness_ceilings();
    for path in files {
        let name = file_name(&path);
        let bytes = fixture_bytes(&path).unwrap();
        let events = parse_all(&bytes, &limits).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(
            events.iter().any(|e| matches!(e, StreamEvent::Stanza(_))),
            "{name}: no stanza"
        );
        let mut default_ns = None;
        for event in events {
            match event {
                StreamEvent::Header(h) => {
                    let again = parse_all(
                        format!("{}</stream:stream>", h.to_xml()).as_bytes(),
                        &limits,
                    )
                    .unwrap_or_else(|e| panic!("{name}: header {e}"));
                    default_ns = Some(h.default_ns.clone());
                    assert_eq!(
                        again,
                        vec![StreamEvent::Header(h), StreamEvent::Close],
                        "{name}"
                    );
                }
                StreamEvent::Stanza(e) => {
                    let standalone = e.to_xml();
                    let again = parse_fragment(standalone.as_bytes(), &limits)
                        .unwrap_or_else(|err| panic!("{name}: {err}\n{standalone}"));
                    assert_eq!(again, e, "{name}: {standalone}");
                    if let Some(ns) = &default_ns {
                        // Written inside a stream, it parses back the same there too.
                        let head = format!(
                            "<stream:stream xmlns='{ns}' xmlns:stream='http://etherx.jabber.org/streams'>"
                        );
                        let doc = format!("{head}{}</stream:stream>", e.to_xml_in(ns));
                        let evs = parse_all(doc.as_bytes(), &limits).unwrap();
                        assert_eq!(
                            evs.get(1),
                            Some(&StreamEvent::Stanza(e.clone())),
                            "{name}: {doc}"
                        );
                    }
                }
                StreamEvent::Close => {}
            }
        }
    }
}

/// The 20 MiB text node is refused as soon as the stanza passes 1 MiB, and fed in 64 KiB
/// chunks the buffer never holds more than the limit plus one chunk.
#[test]
fn huge_text_is_refused_quickly_with_bounded_memory() {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/stanzas/bad/12-huge-text.gen");
    let bytes = fixture_bytes(&path).unwrap();
    assert!(bytes.len() > 20 << 20);
    let limits = Limits::harness_ceilings();
    let chunk = 64 << 10;
    let bound = limits.max_stanza_bytes + chunk;
    let started = Instant::now();
    let mut parser = StreamParser::new(Framing::Auto, limits.clone());
    let mut max_buffered = 0;
    let mut error = None;
    'feed: for piece in bytes.chunks(chunk) {
        parser.feed(piece);
        max_buffered = max_buffered.max(parser.buffered_len());
        loop {
            match parser.next_event() {
                Ok(Some(_)) => {}
                Ok(None) => break,
                Err(e) => {
                    error = Some(e);
                    break 'feed;
                }
            }
        }
    }
    let error = error.expect("the huge text node was accepted");
    assert_eq!(error.condition(), StreamErrorCondition::PolicyViolation);
    assert_eq!(error.offset, limits.max_stanza_bytes as u64);
    assert!(max_buffered <= bound, "buffered {max_buffered} > {bound}");
    assert!(
        parser.bytes_fed() <= bound as u64,
        "fed {} bytes before refusing",
        parser.bytes_fed()
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    // Input after the error is not buffered.
    parser.feed(&bytes[..chunk]);
    assert_eq!(parser.buffered_len(), 0);
}

/// 10,000 nested elements are refused one level past the depth limit, at the `<` of that
/// element (each `<a>` is 3 bytes), without building anything.
#[test]
fn deep_nesting_is_refused_at_the_depth_limit() {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/stanzas/bad/11-deep-nesting.gen");
    let bytes = fixture_bytes(&path).unwrap();
    let limits = Limits::harness_ceilings();
    let err = check_document(&bytes, &limits).unwrap_err();
    assert_eq!(err.condition(), StreamErrorCondition::PolicyViolation);
    assert_eq!(err.offset, (limits.max_depth * 3) as u64);
}
