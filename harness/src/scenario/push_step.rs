//! The `push` step (SPEC.md §13, chain scenarios only): the gatekeeper pushes to the IUT's
//! own server for its enrolled device, and the client must wake (PUSH-10), or, for a push
//! repeating an accepted Idempotency-Key, must not wake again (PUSH-7).

use serde::Deserialize;

/// `push = { … }` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPush {
    /// Repeat the previous push's Idempotency-Key (a gatekeeper retry).
    #[serde(default)]
    repeat: bool,
}

/// `push`, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushStep {
    pub repeat: bool,
    /// Whether the client must wake: a fresh push wakes it, a repeated one must not.
    pub wakes: bool,
}

pub(super) fn push_step(r: RawPush) -> PushStep {
    PushStep {
        repeat: r.repeat,
        wakes: !r.repeat,
    }
}
