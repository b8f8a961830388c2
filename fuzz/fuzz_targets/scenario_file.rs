//! Fuzz target: the scenario-file loader on arbitrary text: errors name a line of the file, never a panic.
//! The body is `gatecheck::fuzzing::scenario_file`, which `cargo test` also runs on this target's corpus.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| gatecheck::fuzzing::scenario_file(data));
