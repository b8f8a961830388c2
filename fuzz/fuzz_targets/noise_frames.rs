//! Fuzz target: the Noise transport's frame decoder after a real handshake, on frames the target seals itself
//! and frames it forges, with the plaintext fed to the stream parser.
//! The body is `gatecheck::fuzzing::noise_frames`, which `cargo test` also runs on this target's corpus.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| gatecheck::fuzzing::noise_frames(data));
