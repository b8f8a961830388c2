//! Process exit codes, in one place (architecture.md: CLI contract).

/// Every applicable scenario passed; `check-stanza` input is acceptable.
pub const OK: i32 = 0;
/// Some scenario failed; `check-stanza` input violates the profile.
pub const FAILED: i32 = 1;
/// Usage error, bad scenario or IUT file, or a harness fault.
pub const ERROR: i32 = 2;
