//! gatecheck: a conformance harness for third-party messaging interoperability.
//!
//! Layers, each depending only on those above it: `wire` (stanza codec) and
//! `transport` (Noise_XX, TLS 1.3); `spec` (SPEC.md's requirements);
//! `scenario` (the suite's files); `roles` (what the harness plays); `iut`
//! (the implementation under test); `runner`; `report`; `coverage`; `cli`.
#![forbid(unsafe_code)]

pub mod bundle;
pub mod cli;
pub mod coverage;
pub mod e2ee;
pub mod exit;
pub mod fuzz;
/// The bodies of the fuzz targets in fuzz/ (and of the test that replays their corpora).
#[cfg(feature = "fuzzing")]
pub mod fuzzing;
pub mod http;
pub mod idproof;
pub mod iut;
pub mod media;
pub mod report;
pub mod roles;
pub mod runner;
pub mod scenario;
pub mod spec;
pub mod transcript;
pub mod transport;
pub mod verdict;
pub mod wire;
