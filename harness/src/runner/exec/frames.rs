//! The steps on the Noise transport's frames: plaintext in frames shaped on purpose
//! (`send_frame`), and the close without a further byte that a refused frame calls for
//! (`expect_abort`; SPEC.md STREAM-5, STREAM-8).

use tokio::time::Instant;

use super::Exec;
use crate::roles::Deviation;
use crate::roles::conn::Inbound;
use crate::roles::gatekeeper_server as gk;
use crate::scenario::Step;
use crate::scenario::step::FrameMode;

/// The requirement whose Appendix B bound limits how long an IUT may take to drop a
/// connection after a refused frame.
const ABORT_BOUND_OF: &str = "STREAM-8";

impl Exec<'_> {
    pub(super) async fn send_frame(
        &mut self,
        text: Option<&str>,
        mode: FrameMode,
        deadline: Instant,
    ) -> Result<(), Deviation> {
        let text = match text {
            Some(t) => self.vars.substitute(t).map_err(Deviation::error)?,
            None => String::new(),
        };
        let conn = self.conn()?;
        if !conn.is_secure() {
            return Err(Deviation::error(
                "send_frame needs a connection whose Noise handshake completed",
            ));
        }
        match tokio::time::timeout_at(deadline, conn.send_framed(text.as_bytes(), mode)).await {
            Ok(Ok(())) => Ok(()),
            // An IUT may drop the connection before taking every frame: the next step judges.
            Ok(Err(e)) => {
                self.transcript.note(format!("write stopped: {e}"));
                Ok(())
            }
            Err(_) => {
                self.transcript
                    .note("write stopped: the IUT stopped reading");
                Ok(())
            }
        }
    }

    /// The IUT must close the connection without writing anything after the refused frame:
    /// no stanza, no stream error, no closing tag, not even whitespace.
    pub(super) async fn expect_abort(
        &mut self,
        step: &Step,
        deadline: Instant,
    ) -> Result<(), Deviation> {
        let deadline = match (
            step.timeout,
            crate::spec::embedded_time_bound(ABORT_BOUND_OF),
        ) {
            (None, Some(bound)) => deadline.max(Instant::now() + bound),
            _ => deadline,
        };
        let expected = "the IUT closes the connection without writing another byte";
        // Whatever the IUT sends before it closes (a stanza, a stream error, a closing tag)
        // is already the failure: there is nothing to skip.
        let got = self.read_conn(deadline).await?;
        let conn = self.conn()?;
        match got {
            Some(Inbound::Eof(_)) => {}
            None => {
                return Err(Deviation::fail_here(expected, "the connection stayed open"));
            }
            other => return Err(gk::unexpected(other, expected, "").into_here()),
        }
        match conn.bytes_since_fault() {
            Some(n) if n > 0 => Err(Deviation::fail_here(
                expected,
                format!("{n} byte(s) of stream data before the close"),
            )),
            _ => Ok(()),
        }
    }
}
