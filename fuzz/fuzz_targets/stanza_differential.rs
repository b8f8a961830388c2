//! Fuzz target: the codec against minidom (xmpp-rs): on inputs both accept the trees agree; disagreements on
//! acceptance must fall in a class `gatecheck::fuzzing::Disagreement` names.
//! The body is `gatecheck::fuzzing::differential`, which `cargo test` also runs on this target's corpus.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| gatecheck::fuzzing::differential(data));
