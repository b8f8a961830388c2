//! The media steps of a server scenario (SPEC.md §14, Appendix G.1): objects stored through
//! the provider server's media hook, fetched through the gatekeeper's media proxy, and the
//! server's clock moved through its clock hook.

use std::path::PathBuf;

use tokio::time::Instant;

use super::Exec;
use crate::roles::Deviation;
use crate::scenario::media_step::{Availability, ClockMark};

/// An object stored on the provider's host.
pub(super) struct Stored {
    pub url: String,
    pub path: PathBuf,
    pub size: u64,
    pub sha256: String,
}

impl Exec<'_> {
    pub(super) async fn media_store(
        &mut self,
        _size: u64,
        _name: &str,
        _status: u16,
        _deadline: Instant,
    ) -> Result<(), Deviation> {
        Err(Deviation::error("media_store: not wired yet"))
    }

    pub(super) async fn media_fetch(
        &mut self,
        _name: &str,
        _expect: Availability,
        _range: Option<(u64, u64)>,
        _guess: bool,
        _deadline: Instant,
    ) -> Result<(), Deviation> {
        Err(Deviation::error("media_fetch: not wired yet"))
    }

    pub(super) async fn media_clock(
        &mut self,
        _to: ClockMark,
        _offset_s: i64,
        _deadline: Instant,
    ) -> Result<(), Deviation> {
        Err(Deviation::error("media_clock: not wired yet"))
    }

    pub(super) async fn fetch_shared(
        &mut self,
        _url: &str,
        _name: &str,
        _deadline: Instant,
    ) -> Result<PathBuf, Deviation> {
        Err(Deviation::error(
            "fetch through the media proxy: not wired yet",
        ))
    }
}
