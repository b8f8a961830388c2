//! Fuzz target: the E2EE layer's element parsers (envelope, bundle, device list) on hostile XML, and the
//! decryption of a parsed envelope by a fixed device holding a session; envelopes the target seals itself.
//! The body is `gatecheck::fuzzing::e2ee_envelope`, which `cargo test` also runs on this target's corpus.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| gatecheck::fuzzing::e2ee_envelope(data));
