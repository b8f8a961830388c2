//! `keep_connected`: the IUT is told to stay connected by itself; the gatekeeper drops its
//! first attempts, lets one in, drops that bound session, and times every attempt. What is
//! judged (SPEC.md STREAM-37, STREAM-38), from the harness's own accept times only:
//!
//! - STREAM-37 (MUST NOT): once two attempts in a row failed, the next starts at least one
//!   second after the previous one started;
//! - STREAM-38 (SHOULD, so a warning): each delay (from the harness closing a failed attempt
//!   to the next attempt) is at least 1.6 times the one before (doubled, less a jitter of at
//!   most a quarter), and the first delay after the bound session ended is less than half
//!   the last delay of the failed series (the delay was reset; judged only when the series
//!   grew).

use std::time::{Duration, Instant as StdInstant};

use tokio::net::TcpStream;
use tokio::time::Instant;

use super::Exec;
use crate::iut::driver::Command;
use crate::roles::Deviation;
use crate::roles::conn::ConnFacts;
use crate::scenario::Step;
use crate::scenario::step::{HandshakeMode, Negotiate, SaslAnswer, Stage};
use crate::transport::TransportKind;

pub const NO_FLOODING: &str = "STREAM-37";
pub const BACKOFF: &str = "STREAM-38";
/// The shortest interval between attempt starts once two attempts in a row failed.
const FLOOR: Duration = Duration::from_secs(1);
/// The least ratio of consecutive delays that counts as doubling with a jitter of at most a
/// quarter of the delay (2 / 1.25).
const GROWTH: f64 = 1.6;

/// One connection attempt the harness dropped.
struct Attempt {
    started: StdInstant,
    dropped: StdInstant,
}

impl Exec<'_> {
    pub(super) async fn keep_connected(
        &mut self,
        step: &Step,
        refuse: u32,
        transport: Option<TransportKind>,
        deadline: Instant,
    ) -> Result<(), Deviation> {
        let kind = self.transport_for(transport)?;
        self.dev().retire_conn().await;
        let cmd = Command::KeepConnected(self.connect_params(kind)?).to_json();
        let seq = self.send_command(cmd).await?;
        // From now on further attempts are this command's, not DRIVER-4's extra connections.
        self.dev().keeps_connected = true;
        let t0 = StdInstant::now();
        let mut failed: Vec<Attempt> = Vec::new();
        for n in 1..=refuse {
            let (tcp, started) = self.next_attempt(seq, kind, deadline, &failed, t0).await?;
            let dropped = self.drop_attempt(tcp, started, n);
            failed.push(Attempt { started, dropped });
            check_pacing(&failed, None, t0)?;
        }
        let (tcp, accepted_at) = self.next_attempt(seq, kind, deadline, &failed, t0).await?;
        check_pacing(&failed, Some(accepted_at), t0)?;
        self.dev()
            .transcript
            .note(format!("attempt {}: let in", refuse + 1));
        self.handshake(tcp, accepted_at, kind, HandshakeMode::Normal, deadline)
            .await?;
        let session = Negotiate {
            upto: Stage::Session,
            mechanisms: vec!["PLAIN".into()],
            sasl: SaslAnswer::Verify,
            features_delay: None,
            idle_limit: None,
        };
        self.negotiate(&session, deadline).await?;
        // The bound session ends under the client: it must come back, after a reset delay.
        let dev = self.dev();
        dev.transcript
            .note("the gatekeeper drops the bound session (no closing tag)");
        dev.retire_conn().await;
        let lost = StdInstant::now();
        let (tcp, again) = self.next_attempt(seq, kind, deadline, &failed, t0).await?;
        self.drop_attempt(tcp, again, refuse + 2);
        self.judge_backoff(step, &failed, accepted_at, lost, again);
        Ok(())
    }

    /// Waits for the device's next connection attempt: the connection, and when it started
    /// (was accepted). Running out of time is inconclusive, never a failure: a slow
    /// backoff breaks nothing.
    async fn next_attempt(
        &mut self,
        seq: u64,
        kind: TransportKind,
        deadline: Instant,
        failed: &[Attempt],
        t0: StdInstant,
    ) -> Result<(TcpStream, StdInstant), Deviation> {
        match self.accept(seq, kind, deadline).await {
            Ok(accepted) => Ok(accepted),
            Err(_) if Instant::now() >= deadline => Err(Deviation::inconclusive(format!(
                "the IUT made {} connection attempt(s) ({}) and no further one within the step's time: its reconnect delays outgrew what this scenario waits, so the rest of STREAM-37 and STREAM-38 is not judged",
                failed.len(),
                starts(failed, t0)
            ))),
            Err(d) => Err(d),
        }
    }

    /// Closes the attempt accepted last, at once; the harness keeps what it saw.
    fn drop_attempt(&mut self, tcp: TcpStream, started: StdInstant, n: u32) -> StdInstant {
        let dev = self.dev();
        drop(tcp);
        let dropped = StdInstant::now();
        dev.past_conns.push(ConnFacts {
            accepted_at: Some(started),
            hangup_at: Some(dropped),
            ..ConnFacts::default()
        });
        dev.transcript
            .note(format!("attempt {n}: dropped at once by the gatekeeper"));
        dropped
    }

    /// STREAM-38, graded as a SHOULD: warnings, never a failure.
    fn judge_backoff(
        &mut self,
        step: &Step,
        failed: &[Attempt],
        let_in: StdInstant,
        lost: StdInstant,
        again: StdInstant,
    ) {
        let mut delays: Vec<Duration> = failed
            .windows(2)
            .map(|w| w[1].started.saturating_duration_since(w[0].dropped))
            .collect();
        if let Some(last) = failed.last() {
            delays.push(let_in.saturating_duration_since(last.dropped));
        }
        let shown = delays
            .iter()
            .map(|d| format!("{} ms", d.as_millis()))
            .collect::<Vec<_>>()
            .join(", ");
        let mut grew = true;
        for (k, w) in delays.windows(2).enumerate() {
            if w[1].as_secs_f64() < GROWTH * w[0].as_secs_f64() {
                grew = false;
                self.warn(
                    BACKOFF.into(),
                    format!("each delay between failed attempts at least {GROWTH} times the one before (doubled, jitter at most a quarter)"),
                    format!(
                        "delay {} was {} ms after a delay of {} ms (delays: {shown})",
                        k + 2,
                        w[1].as_millis(),
                        w[0].as_millis()
                    ),
                    self.current_step(step),
                );
                break;
            }
        }
        // A reset is only visible after a series that grew.
        let reset = again.saturating_duration_since(lost);
        if grew
            && let Some(last) = delays.last()
            && reset.as_secs_f64() >= last.as_secs_f64() / 2.0
        {
            self.warn(
                BACKOFF.into(),
                format!(
                    "the delay reset after a bound session: the next attempt sooner than half the last delay ({} ms)",
                    last.as_millis()
                ),
                format!(
                    "the next attempt came {} ms after the bound session was dropped (delays before: {shown})",
                    reset.as_millis()
                ),
                self.current_step(step),
            );
        }
    }
}

/// STREAM-37 over the attempts so far (and the one about to be let in).
fn check_pacing(
    failed: &[Attempt],
    next: Option<StdInstant>,
    t0: StdInstant,
) -> Result<(), Deviation> {
    let starts_all: Vec<StdInstant> = failed.iter().map(|a| a.started).chain(next).collect();
    // Attempt k (0-based) follows two failed ones when k >= 2.
    for k in 2..starts_all.len() {
        let gap = starts_all[k].saturating_duration_since(starts_all[k - 1]);
        if gap < FLOOR {
            return Err(Deviation::fail(
                NO_FLOODING,
                "after two failed attempts in a row, at most one connection attempt per second",
                format!(
                    "attempt {} started {} ms after attempt {} (attempts at {} ms from keep_connected)",
                    k + 1,
                    gap.as_millis(),
                    k,
                    starts_all
                        .iter()
                        .map(|s| s.saturating_duration_since(t0).as_millis().to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ));
        }
    }
    Ok(())
}

fn starts(failed: &[Attempt], t0: StdInstant) -> String {
    let at: Vec<String> = failed
        .iter()
        .map(|a| format!("{} ms", a.started.saturating_duration_since(t0).as_millis()))
        .collect();
    if at.is_empty() {
        "none".into()
    } else {
        format!("at {}", at.join(", "))
    }
}
