//! The bodies of the fuzz targets in `fuzz/`, as plain functions.
//!
//! Each `fuzz/fuzz_targets/<name>.rs` is one line calling the function of the same name here,
//! so the same checks run in three places: under libFuzzer (`cargo fuzz run <name>`), in
//! ClusterFuzzLite, and in `cargo test` (tests/fuzz_corpus.rs replays every file of
//! `fuzz/corpus/<name>/` through them, on the stable toolchain, without a sanitizer). A body
//! panics when it finds something; it must never panic on a correct harness, whatever the
//! input.
//!
//! No target needs checks switched off to get past them: the Noise target holds the keys of
//! both ends and seals its own frames ([`noise_frames`]), and the E2EE target holds the keys of
//! the sending devices and seals its own envelopes ([`e2ee_envelope`]). A conformance tool ships no switch that turns validation off, so there is
//! no `cfg(fuzzing)` bypass in the library (see fuzz/README.md).

mod codec;
mod differential;
mod e2ee;
mod idproof;
mod noise;
mod scenario;
mod tree;

pub use codec::stream_bytes;
pub use differential::{Disagreement, differential, disagreement};
pub use e2ee::{SEED_TEXTS, e2ee_envelope, e2ee_envelope_decrypts, e2ee_seeds};
pub use idproof::{enroll_body, idproof_json, idproof_seeds};
pub use noise::noise_frames;
pub use scenario::scenario_file;
pub use tree::{TreeInput, TreePath, stanza_tree, stanza_tree_all_paths};

/// A target's body on the raw bytes of one input.
pub type Body = fn(&[u8]);

/// Every target: its name (the directory of its corpus and the name of its fuzz binary) and its
/// body on raw bytes (for the structure-aware target, the bytes `arbitrary` decodes).
pub const TARGETS: &[(&str, Body)] = &[
    ("stanza_parse", stream_bytes),
    ("stanza_tree", stanza_tree_bytes_all_paths),
    ("stanza_differential", differential),
    ("noise_frames", noise_frames),
    ("scenario_file", scenario_file),
    ("e2ee_envelope", e2ee_envelope),
    ("idproof_json", idproof_json),
    ("enroll_body", enroll_body),
];

/// [`stanza_tree`] on the raw bytes libFuzzer gives the target (decoded as `fuzz_target!`
/// decodes them: `arbitrary_take_rest`; undecodable input is skipped, as there).
pub fn stanza_tree_bytes(data: &[u8]) {
    use arbitrary::{Arbitrary, Unstructured};
    if let Ok(input) = TreeInput::arbitrary_take_rest(Unstructured::new(data)) {
        stanza_tree(input);
    }
}

/// [`stanza_tree_all_paths`] on raw bytes: what `cargo test` replays the corpus with.
pub fn stanza_tree_bytes_all_paths(data: &[u8]) {
    use arbitrary::{Arbitrary, Unstructured};
    if let Ok(input) = TreeInput::arbitrary_take_rest(Unstructured::new(data)) {
        stanza_tree_all_paths(input);
    }
}
