//! `keep_connected`: reconnecting by ourselves, paced (SPEC.md STREAM-37, STREAM-38).
//!
//! After a failed attempt the next waits [`FIRST_DELAY`]; from the second consecutive failure
//! on, the delay doubles (never under one second) up to [`MAX_DELAY`], plus jitter of up to a
//! quarter of it. A stream that reached a bound session resets the series.

use std::hash::{BuildHasher, Hasher};
use std::time::Duration;

use tokio::time::Instant;

use crate::driver::ConnectParams;
use crate::mutant::Mutant;

/// The delay after a first failure, and after a bound session ended.
pub const FIRST_DELAY: Duration = Duration::from_millis(500);
/// The shortest delay once two attempts in a row failed (STREAM-37).
const FLOOR: Duration = Duration::from_secs(1);
/// The longest delay (STREAM-38: at least 60 s).
const MAX_DELAY: Duration = Duration::from_secs(60);

pub struct Keep {
    pub params: Box<ConnectParams>,
    /// The `keep_connected` command's seq, until its first `connected` answers it.
    pub unanswered: Option<i64>,
    /// Failed attempts since the last bound session.
    failures: u32,
    /// The delay before the last attempt (without jitter).
    delay: Duration,
    /// When to make the next attempt; `None` while a session is up.
    pub next_at: Option<Instant>,
    mutant: Mutant,
}

impl Keep {
    pub fn new(params: Box<ConnectParams>, seq: i64, mutant: Mutant) -> Keep {
        Keep {
            params,
            unanswered: Some(seq),
            failures: 0,
            delay: Duration::ZERO,
            next_at: Some(Instant::now()),
            mutant,
        }
    }

    /// An attempt failed: schedules the next one.
    pub fn failed(&mut self) {
        self.failures += 1;
        let base = if self.mutant == Mutant::ReconnectFlood {
            // STREAM-37 deviation: retries five times a second, however many attempts failed.
            Duration::from_millis(200)
        } else if self.mutant == Mutant::ConstantBackoff {
            // STREAM-38 deviation: a fixed delay (above the one-second floor), never doubled.
            Duration::from_millis(1100)
        } else if self.failures == 1 && self.delay.is_zero() {
            FIRST_DELAY
        } else {
            (self.delay * 2).clamp(FLOOR, MAX_DELAY)
        };
        self.delay = base;
        self.next_at = Some(Instant::now() + base + jitter(base));
    }

    /// An attempt reached a bound session.
    pub fn connected(&mut self) {
        self.failures = 0;
        self.next_at = None;
        if self.mutant != Mutant::NoBackoffReset {
            self.delay = Duration::ZERO;
        }
        // STREAM-38 deviation (no-backoff-reset): the grown delay survives the session.
    }

    /// The bound session ended: reconnect after the first delay (or, for the mutant that
    /// never resets, after the next step of the old series).
    pub fn session_ended(&mut self) {
        if self.delay.is_zero() {
            self.delay = FIRST_DELAY;
            self.next_at = Some(Instant::now() + FIRST_DELAY + jitter(FIRST_DELAY));
        } else {
            self.failed();
        }
    }
}

/// Up to a quarter of `d`, drawn afresh each time.
fn jitter(d: Duration) -> Duration {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(0);
    let quarter = (d.as_millis() / 4) as u64;
    Duration::from_millis(if quarter == 0 {
        0
    } else {
        h.finish() % quarter
    })
}

/// Sleeps until the next attempt is due, or forever when none is.
pub async fn due(keep: &Option<Keep>) {
    match keep.as_ref().and_then(|k| k.next_at) {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
