//! The media steps (SPEC.md §14).

use tokio::time::Instant;

use super::Exec;
use crate::roles::Deviation;
use crate::scenario::Step;
use crate::scenario::media_step::MediaStep;

impl Exec<'_> {
    /// Plays one media step.
    pub(super) async fn media(
        &mut self,
        _step: &Step,
        m: &MediaStep,
        _deadline: Instant,
    ) -> Result<(), Deviation> {
        Err(Deviation::error(format!(
            "{}: the harness cannot play media steps yet",
            m.name()
        )))
    }
}
