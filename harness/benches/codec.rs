//! Stanza codec throughput against the quick-xml floor and xmpp-parsers, on OMEMO messages.
//!
//! Corpus: 200 `<message>` stanzas of about 1 KiB each (OMEMO `<encrypted>` envelope: header
//! with sid, three `<key rid>` with base64, `<iv>`, base64 `<payload>`, plus hints, a receipt
//! request and a fallback body), each with `xmlns='jabber:client'`, concatenated in a stream.
//! All benchmarks share one group with byte throughput so the figures sit side by side;
//! `owned_tree_clone` is a reference point (the allocation cost of the owned result), not a codec.
//! `gatecheck_codec` is the owned API (`next_event`), `gatecheck_codec_borrowed` the zero-copy
//! one (`next_event_ref`).

use std::hint::black_box;

use base64::Engine;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use gatecheck::wire::{Framing, Limits, StreamEvent, StreamEventRef, StreamParser};
use quick_xml::Reader;
use quick_xml::events::Event;

const STANZAS: usize = 200;
const HEADER: &str = "<stream:stream xmlns='jabber:client' \
    xmlns:stream='http://etherx.jabber.org/streams' from='example.net' id='s1' version='1.0'>";

/// Deterministic pseudo-random bytes (xorshift), base64-encoded.
fn b64(seed: &mut u64, len: usize) -> String {
    let bytes: Vec<u8> = (0..len)
        .map(|_| {
            *seed ^= *seed << 13;
            *seed ^= *seed >> 7;
            *seed ^= *seed << 17;
            (*seed >> 24) as u8
        })
        .collect();
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn omemo_message(i: usize, seed: &mut u64) -> String {
    format!(
        "<message xmlns='jabber:client' from='juliet@example.com/balcony' \
         to='romeo@example.net' id='msg-{i:05}' type='chat'>\
         <encrypted xmlns='eu.siacs.conversations.axolotl'><header sid='27183'>\
         <key rid='31415'>{}</key><key prekey='true' rid='12321'>{}</key>\
         <key rid='4223'>{}</key><iv>{}</iv></header><payload>{}</payload></encrypted>\
         <store xmlns='urn:xmpp:hints'/><request xmlns='urn:xmpp:receipts'/>\
         <body>I sent you an OMEMO encrypted message.</body></message>",
        b64(seed, 60),
        b64(seed, 60),
        b64(seed, 60),
        b64(seed, 12),
        b64(seed, 320),
    )
}

fn corpus() -> (Vec<String>, Vec<u8>) {
    let mut seed = 0x9E37_79B9_7F4A_7C15;
    let stanzas: Vec<String> = (0..STANZAS).map(|i| omemo_message(i, &mut seed)).collect();
    let mut stream = String::from(HEADER);
    for s in &stanzas {
        stream.push_str(s);
    }
    stream.push_str("</stream:stream>");
    (stanzas, stream.into_bytes())
}

fn codec(c: &mut Criterion) {
    let (stanzas, stream) = corpus();
    let mut group = c.benchmark_group("codec");
    group.throughput(Throughput::Bytes(stream.len() as u64));

    group.bench_function("quick_xml_floor", |b| {
        let mut buf = Vec::with_capacity(4096);
        b.iter(|| {
            let mut reader = Reader::from_reader(stream.as_slice());
            let mut events = 0usize;
            loop {
                match reader.read_event_into(&mut buf) {
                    Ok(Event::Eof) => break,
                    Ok(ev) => {
                        events += 1;
                        black_box(&ev);
                    }
                    Err(e) => panic!("{e}"),
                }
                buf.clear();
            }
            black_box(events)
        });
    });

    group.bench_function("gatecheck_codec", |b| {
        b.iter(|| {
            let mut parser = StreamParser::new(Framing::Stream, Limits::harness_ceilings());
            parser.feed(&stream);
            let mut stanzas = 0usize;
            while let Some(event) = parser.next_event().unwrap() {
                if let StreamEvent::Stanza(e) = event {
                    stanzas += 1;
                    black_box(e);
                }
            }
            assert_eq!(stanzas, STANZAS);
            black_box(stanzas)
        });
    });

    // The same parser through the zero-copy API: each stanza (a `StanzaRef` arena, given back
    // to the parser when dropped) borrows its strings from the parser's buffer; touched
    // minimally (its root's name length), as the floor touches its events.
    group.bench_function("gatecheck_codec_borrowed", |b| {
        b.iter(|| {
            let mut parser = StreamParser::new(Framing::Stream, Limits::harness_ceilings());
            parser.feed(&stream);
            let mut stanzas = 0usize;
            let mut names = 0usize;
            while let Some(event) = parser.next_event_ref().unwrap() {
                if let StreamEventRef::Stanza(s) = event {
                    stanzas += 1;
                    names += s.root().name().len();
                    black_box(&s);
                }
            }
            assert_eq!(stanzas, STANZAS);
            black_box(names)
        });
    });

    // Not a codec: the allocate-copy-free cost of the owned `Element` trees the codec returns
    // (a clone and drop of all 200), the share of `gatecheck_codec` the model's field types fix.
    let trees: Vec<gatecheck::wire::Element> = {
        let mut parser = StreamParser::new(Framing::Stream, Limits::harness_ceilings());
        parser.feed(&stream);
        let mut trees = Vec::new();
        while let Some(event) = parser.next_event().unwrap() {
            if let StreamEvent::Stanza(e) = event {
                trees.push(e);
            }
        }
        trees
    };
    group.bench_function("owned_tree_clone", |b| {
        b.iter(|| {
            for t in &trees {
                black_box(t.clone());
            }
        });
    });

    let stanza_bytes: usize = stanzas.iter().map(String::len).sum();
    group.throughput(Throughput::Bytes(stanza_bytes as u64));
    group.bench_function("xmpp_parsers", |b| {
        b.iter(|| {
            for s in &stanzas {
                let element: xmpp_parsers::minidom::Element = s.parse().unwrap();
                let message = xmpp_parsers::message::Message::try_from(element).unwrap();
                black_box(message);
            }
        });
    });
    group.finish();
}

criterion_group!(benches, codec);
criterion_main!(benches);
