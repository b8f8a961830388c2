//! Fuzz target: the stream parser on raw bytes: owned API, zero-copy API and the exact path (one-pass
//! tokenizer off) compared on every input, in several chunkings; accepted stanzas written back
//! and parsed again.
//! The body is `gatecheck::fuzzing::stream_bytes`, which `cargo test` also runs on this target's corpus.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| gatecheck::fuzzing::stream_bytes(data));
