//! The stream parser on raw bytes: owned API, zero-copy API and the exact path (one-pass
//! tokenizer off), compared on every input, in any chunking.
//!
//! In debug builds the parser checks its one-pass tokenizer against the quick-xml path itself;
//! release builds (what `gatecheck run` and cargo-fuzz's default build run) do not, so this
//! body makes the comparison explicit. It also writes every accepted stanza back out and
//! parses it again: the serializer promises the exact inverse of the parser.

use crate::wire::{
    Element, Framing, Limits, StreamEvent, StreamEventRef, StreamParser, WireError, parse_fragment,
};

/// Events delivered, then the first error (or none).
pub(crate) type Outcome = (Vec<StreamEvent>, Result<(), WireError>);

/// Which API takes the events out of the parser.
#[derive(Clone, Copy, Debug)]
enum Api {
    /// `next_event`, one-pass tokenizer on (the default).
    Owned,
    /// `next_event` with the one-pass tokenizer off: every element through quick-xml.
    Exact,
    /// `next_event_ref`, converted to owned events for the comparison.
    Borrowed,
}

/// Feeds `input` cut at `cuts` (offsets, sorted, within the input) and drains the events after
/// each feed through `api`.
fn drive(input: &[u8], cuts: &[usize], api: Api, limits: &Limits) -> Outcome {
    let parser = StreamParser::new(Framing::Auto, limits.clone());
    let mut parser = match api {
        Api::Exact => parser.without_fast_path(),
        Api::Owned | Api::Borrowed => parser,
    };
    let mut events = Vec::new();
    let mut start = 0;
    for &end in cuts.iter().chain(std::iter::once(&input.len())) {
        let Some(chunk) = input.get(start..end) else {
            continue;
        };
        parser.feed(chunk);
        start = end;
        loop {
            let next = match api {
                Api::Owned | Api::Exact => parser.next_event(),
                Api::Borrowed => parser
                    .next_event_ref()
                    .map(|e| e.as_ref().map(StreamEventRef::to_owned)),
            };
            match next {
                Ok(Some(event)) => events.push(event),
                Ok(None) => break,
                Err(e) => return (events, Err(e)),
            }
        }
    }
    // Every event was taken above; `finish` only checks how the input ends.
    let end = parser.finish();
    (events, end)
}

/// The target `stanza_parse`. Three runs: the owned API on the whole input (the reference), the
/// exact path on the input cut in two, the zero-copy API on it fed in pieces. The first byte
/// chooses where the cut falls and the size of the pieces.
pub fn stream_bytes(input: &[u8]) {
    let Some((&cut, data)) = input.split_first() else {
        return;
    };
    let limits = Limits::harness_ceilings();
    let whole = drive(data, &[], Api::Owned, &limits);

    // The exact path, fed in two parts: the one-pass tokenizer and chunking must change nothing.
    let at = usize::from(cut) * data.len() / 256;
    let exact = drive(data, &[at], Api::Exact, &limits);
    assert_eq!(
        whole, exact,
        "the exact path (input cut at byte {at}) and the one-pass tokenizer disagree"
    );

    // The zero-copy API fed in small pieces (elements split across feeds take the framer).
    let piece = 1 + usize::from(cut % 61);
    let cuts: Vec<usize> = (piece..data.len()).step_by(piece).collect();
    let borrowed = drive(data, &cuts, Api::Borrowed, &limits);
    assert_eq!(
        whole, borrowed,
        "the zero-copy API (fed {piece}-byte pieces) and the owned API disagree"
    );

    for event in &whole.0 {
        if let StreamEvent::Stanza(element) = event {
            round_trip(element);
        }
    }
}

/// Limits no parsed-then-written stanza reaches: writing adds declarations and escapes, so the
/// copy may be larger than the ceiling its original was checked against.
pub(crate) fn roomy_limits() -> Limits {
    let mut limits = Limits::harness_ceilings();
    limits.max_stanza_bytes = usize::MAX / 4;
    limits.max_attr_value_bytes = usize::MAX / 4;
    limits.max_text_bytes = usize::MAX / 4;
    limits.max_attributes = usize::MAX / 4;
    limits.max_namespace_decls = usize::MAX / 4;
    limits
}

/// Writes `element` out standalone and parses it back: the same tree.
pub(crate) fn round_trip(element: &Element) {
    let xml = element.to_xml();
    let again = parse_fragment(xml.as_bytes(), &roomy_limits());
    assert_eq!(
        again.as_ref(),
        Ok(element),
        "writing the tree and parsing it again changed it; written: {xml:?}"
    );
}
