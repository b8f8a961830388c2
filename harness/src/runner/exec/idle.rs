//! `idle`: the gatekeeper goes quiet on a bound stream. The IUT must not close it for
//! inactivity before the idle limit (STREAM-43: 300 s, or the limit announced with
//! `<bind/>`, STREAM-47); it may close it once the limit has passed (STREAM-34), with the
//! stream error `connection-timeout` (STREAM-48); and it should keep it alive with whitespace
//! or a ping once it has sent nothing for four fifths of the limit (STREAM-35, a SHOULD: a
//! warning). Silence is timed from the harness's last write on the connection. Pings the IUT
//! sends are answered, as a server does; any other stanza is unexpected.

use std::time::Duration;

use tokio::time::Instant;

use super::Exec;
use crate::roles::Deviation;
use crate::roles::conn::Inbound;
use crate::roles::gatekeeper_server as gk;
use crate::scenario::Step;
use crate::wire::{ns, xml_escape};

pub const NO_EARLY_IDLE_CLOSE: &str = "STREAM-43";
pub const KEEPALIVE: &str = "STREAM-35";
pub const IDLE_CLOSE: &str = "STREAM-48";
/// How often the byte count is looked at for a whitespace keepalive.
const TICK: Duration = Duration::from_millis(100);
/// How long the IUT's last writes before the silence may take to arrive.
const SETTLE: Duration = Duration::from_secs(1);
/// Time for a keepalive due at four fifths of the limit to reach the harness.
const KEEPALIVE_SLACK: Duration = Duration::from_millis(1000);

impl Exec<'_> {
    pub(super) async fn idle(&mut self, step: &Step, span: Duration) -> Result<(), Deviation> {
        let limit = self.dev().idle_limit;
        let started = Instant::now();
        let until = started + span;
        let mut base: Option<u64> = None;
        let mut traffic: Option<Duration> = None;
        loop {
            let now = Instant::now();
            if now >= until {
                break;
            }
            // The harness's last write before this read: answering the IUT's closing tag
            // inside `next` must not restart the silence.
            let quiet_since = self.conn()?.facts.last_write_at;
            let got = self.read_conn((now + TICK).min(until)).await?;
            if let Some(Inbound::Stanza(e)) = &got
                && self.server_takes(e, until).await?
            {
                continue;
            }
            let silent = quiet_since.map_or(Duration::ZERO, |t| t.elapsed());
            let at = started.elapsed();
            match got {
                None => {}
                Some(Inbound::Stanza(e)) if is_ping(&e) => {
                    let id = e.attr("id").unwrap_or_default();
                    let answer = format!("<iq type='result' id='{}'/>", xml_escape(id));
                    self.write_bounded(answer.as_bytes(), until).await?;
                }
                Some(Inbound::Stanza(e)) if self.ignorable(step, &e)? => {}
                Some(Inbound::Stanza(e)) if is_stream_error(&e) => {
                    let condition = e
                        .child_elements()
                        .find(|c| c.ns == ns::STREAM_ERRORS && c.name != "text")
                        .map(|c| c.name.clone())
                        .unwrap_or_default();
                    return self.idle_close(silent, limit, &e.to_xml(), condition == TIMEOUT);
                }
                Some(Inbound::Close) | Some(Inbound::Eof(_)) => {
                    return self.idle_close(silent, limit, "the stream closed", false);
                }
                other => {
                    return Err(gk::unexpected(
                        other,
                        "nothing but keepalives while the gatekeeper is silent",
                        "",
                    )
                    .into_here());
                }
            }
            // What the IUT wrote just before the silence (its initial presence, say) may still
            // be arriving: only bytes after the first second count as keepalive traffic.
            let count = self.conn()?.bytes_received();
            match base {
                None if at >= SETTLE => base = Some(count),
                Some(b) if traffic.is_none() && count > b => traffic = Some(at),
                _ => {}
            }
        }
        let Some(limit) = limit else {
            return Ok(());
        };
        let due = limit * 4 / 5;
        match traffic {
            Some(at) => self.dev().transcript.note(format!(
                "keepalive traffic {} ms into the silence (due by {} ms)",
                at.as_millis(),
                due.as_millis()
            )),
            None if span >= due + KEEPALIVE_SLACK => self.warn(
                KEEPALIVE.into(),
                format!(
                    "whitespace or a ping within {} ms of silence (four fifths of the announced idle limit of {} s)",
                    due.as_millis(),
                    limit.as_secs()
                ),
                format!("nothing for {} ms", span.as_millis()),
                self.current_step(step),
            ),
            None => {}
        }
        Ok(())
    }
}

impl Exec<'_> {
    /// The IUT closed (or began closing, with `what`) after `silent` of silence: before the
    /// idle limit that is STREAM-43's failure; after it, STREAM-34 allows it, with the
    /// stream error connection-timeout first (STREAM-48). A proper idle close ends the step.
    fn idle_close(
        &mut self,
        silent: Duration,
        limit: Option<Duration>,
        what: &str,
        timeout_error: bool,
    ) -> Result<(), Deviation> {
        let bound = limit.unwrap_or(DEFAULT_LIMIT);
        if silent < bound {
            return Err(early_close(silent, limit, what));
        }
        if !timeout_error {
            return Err(Deviation::fail(
                IDLE_CLOSE,
                format!(
                    "an idle close announced with the stream error {TIMEOUT}, after {} ms of silence (limit {} s)",
                    silent.as_millis(),
                    bound.as_secs()
                ),
                what.to_string(),
            ));
        }
        self.dev().transcript.note(format!(
            "the IUT closed the stream for inactivity after {} ms of silence (limit {} s), as STREAM-34 allows",
            silent.as_millis(),
            bound.as_secs()
        ));
        Ok(())
    }
}

/// The idle limit of a stream without an announcement (STREAM-43).
const DEFAULT_LIMIT: Duration = Duration::from_secs(300);
/// The stream error an idle close carries (STREAM-48).
const TIMEOUT: &str = "connection-timeout";

fn is_ping(e: &crate::wire::Element) -> bool {
    e.name == "iq" && e.attr("type") == Some("get") && e.child("ping", ns::PING).is_some()
}

fn is_stream_error(e: &crate::wire::Element) -> bool {
    e.name == "error" && e.ns == ns::STREAMS
}

fn early_close(at: Duration, limit: Option<Duration>, what: &str) -> Deviation {
    let limit = limit.map_or("300 s".to_string(), |l| {
        format!("{} s, announced", l.as_secs())
    });
    Deviation::fail(
        NO_EARLY_IDLE_CLOSE,
        format!("no close for inactivity before the idle limit ({limit})"),
        format!(
            "{what} after {} ms of silence from the gatekeeper",
            at.as_millis()
        ),
    )
}
