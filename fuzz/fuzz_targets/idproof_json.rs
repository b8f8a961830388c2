//! Fuzz target: identifier proofs (SPEC §11) and `PLAIN-IDPROOF` SASL messages on arbitrary bytes:
//! parsing, writing back, and verification of proofs the target re-signs with the key it holds.
//! The body is `gatecheck::fuzzing::idproof_json`, which `cargo test` also runs on this target's corpus.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| gatecheck::fuzzing::idproof_json(data));
