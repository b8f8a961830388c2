//! Fuzz target: the enrollment API's body checks (SPEC §10.1) on arbitrary bytes, and for a valid
//! request the proof checks and verification the API runs next (seeds signed with the key it holds).
//! The body is `gatecheck::fuzzing::enroll_body`, which `cargo test` also runs on this target's corpus.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| gatecheck::fuzzing::enroll_body(data));
