//! Fuzz target: the stanza codec on arbitrary bytes, whole and split in two.
//! The codec must never panic, and where the input is split must not change
//! the events or the error (chunking invariance).
#![no_main]

use gatecheck::wire::{Framing, Limits, StreamEvent, StreamParser, WireError, parse_all};
use libfuzzer_sys::fuzz_target;

fn split_parse(data: &[u8], at: usize, limits: &Limits) -> Result<Vec<StreamEvent>, WireError> {
    let mut parser = StreamParser::new(Framing::Auto, limits.clone());
    let mut events = Vec::new();
    for chunk in [&data[..at], &data[at..]] {
        parser.feed(chunk);
        while let Some(ev) = parser.next_event()? {
            events.push(ev);
        }
    }
    parser.finish()?;
    Ok(events)
}

fuzz_target!(|input: &[u8]| {
    let Some((&cut, data)) = input.split_first() else {
        return;
    };
    let limits = Limits::harness_ceilings();
    let whole = parse_all(data, &limits);
    let at = usize::from(cut) * data.len() / 256;
    let split = split_parse(data, at, &limits);
    assert_eq!(whole, split, "splitting at byte {at} changed the result");
});
