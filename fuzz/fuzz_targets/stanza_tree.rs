//! Fuzz target: structure-aware stanzas: a tree derived with `arbitrary` from the input, written out, parsed by
//! every API of the codec, and compared with the tree it was written from.
//! The body is `gatecheck::fuzzing::stanza_tree_bytes`, which `cargo test` also runs on this target's corpus.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| gatecheck::fuzzing::stanza_tree_bytes(data));
