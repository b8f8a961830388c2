//! What the harness plays towards an IUT: the gatekeeper's chat server (and,
//! in later flows, its enrollment API, media proxy and users' clients).

pub mod conn;
pub mod downstream;
pub mod enroll_api;
pub mod gatekeeper_options;
pub mod gatekeeper_proof;
pub mod gatekeeper_server;
pub mod pep;
pub mod proxy_header;
pub mod push;
pub mod serve;
pub mod upstream;

pub use crate::verdict::Deviation;

/// A random token of `len` characters from `[0-9a-z]` (stream ids, resources, scenario
/// variables), drawn from the scenario's seeded generator.
pub fn random_token(rng: &mut impl rand::Rng, len: usize) -> String {
    (0..len)
        .map(|_| char::from_digit(rng.random_range(0..36u32), 36).unwrap_or('x'))
        .collect()
}
