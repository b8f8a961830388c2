//! Media (SPEC.md §14, issue 10): XEP-0454 references and streaming AES-256-GCM, the harness's
//! gatekeeper media host (HTTPS objects with scripted faults, upload slots) and the gatekeeper
//! media proxy (plain HTTP for the gatekeeper's own users, fetching provider objects over HTTPS).

pub mod aesgcm;

/// Largest object: 100 MiB (plaintext + 16-byte tag).
pub const MAX_OBJECT: u64 = 104_857_600;
/// Largest plaintext.
pub const MAX_PLAINTEXT: u64 = MAX_OBJECT - aesgcm::TAG_LEN as u64;
