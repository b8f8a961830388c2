//! What the provider server knows and remembers: its users' tokens, the devices it can wake,
//! the push keys it already honoured and the wakes it made.
//!
//! Every collection that grows with requests has a bound. The ones fed only by correctly
//! signed gatekeeper requests (idempotency keys) could not be flooded by a stranger anyway,
//! but a bug in the gatekeeper under test must not turn into unbounded memory here either.

use std::collections::{HashSet, VecDeque};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// How long an accepted `Idempotency-Key` is remembered (PUSH-7: 24 hours).
pub const IDEMPOTENCY_WINDOW: Duration = Duration::from_secs(24 * 60 * 60);
/// Most idempotency keys kept; past it the oldest is forgotten first.
const MAX_IDEMPOTENCY_KEYS: usize = 100_000;
/// Most devices learnt from issued proofs (the ones from `--user` are always kept).
const MAX_LEARNT_DEVICES: usize = 65_536;
/// Most wakes listed by the introspection endpoint (the count itself is not bounded).
const MAX_LISTED_WAKES: usize = 1_024;

/// Locks a mutex even if a thread panicked while holding it: the data behind every lock here
/// stays consistent between statements, and one failed request must not stop the others.
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The provider's accounts: which token was issued to whom, and which of those no longer hold.
#[derive(Debug, Default)]
pub struct Tokens {
    /// (identifier, token) pairs issued and still good, unless also in `withdrawn`.
    issued: HashSet<(String, String)>,
    /// (identifier, token) pairs that expired or were revoked.
    withdrawn: HashSet<(String, String)>,
}

impl Tokens {
    /// A token issued to `identifier` and currently good.
    pub fn issue(&mut self, identifier: &str, token: &str) {
        self.issued
            .insert((identifier.to_owned(), token.to_owned()));
    }

    /// A token once issued to `identifier` that no longer holds (expired or revoked). Both
    /// answer `valid: false`; the server does not need to tell them apart.
    pub fn withdraw(&mut self, identifier: &str, token: &str) {
        let pair = (identifier.to_owned(), token.to_owned());
        self.issued.insert(pair.clone());
        self.withdrawn.insert(pair);
    }

    /// Whether `token` was issued to `identifier` and still holds (AUTH-9).
    pub fn valid_for(&self, identifier: &str, token: &str) -> bool {
        let pair = (identifier.to_owned(), token.to_owned());
        self.issued.contains(&pair) && !self.withdrawn.contains(&pair)
    }

    /// Whether `token` currently holds for any user at all: what a server that forgets to
    /// bind tokens to their users would check instead.
    pub fn valid_for_anyone(&self, token: &str) -> bool {
        self.issued
            .iter()
            .any(|pair| pair.1 == token && !self.withdrawn.contains(pair))
    }
}

/// The devices a push may wake: (provider identifier, device id).
#[derive(Debug, Default)]
pub struct Devices {
    configured: HashSet<(String, u32)>,
    learnt: HashSet<(String, u32)>,
}

impl Devices {
    /// A device given on the command line.
    pub fn configure(&mut self, identifier: &str, device_id: u32) {
        self.configured.insert((identifier.to_owned(), device_id));
    }

    /// A device the server signed a proof for: from now on a push may name it. Returns false
    /// when the bound was reached and the device was not remembered.
    pub fn learn(&mut self, identifier: &str, device_id: u32) -> bool {
        let key = (identifier.to_owned(), device_id);
        if self.configured.contains(&key) || self.learnt.contains(&key) {
            return true;
        }
        if self.learnt.len() >= MAX_LEARNT_DEVICES {
            return false;
        }
        self.learnt.insert(key)
    }

    /// The lowest device id given on the command line for `identifier`: the device a
    /// provider keeps on record for the user (what the server-proof-recorded-device mutant
    /// puts in its proofs).
    pub fn on_record(&self, identifier: &str) -> Option<u32> {
        self.configured
            .iter()
            .filter(|(i, _)| i == identifier)
            .map(|(_, d)| *d)
            .min()
    }

    pub fn knows(&self, identifier: &str, device_id: u32) -> bool {
        let key = (identifier.to_owned(), device_id);
        self.configured.contains(&key) || self.learnt.contains(&key)
    }
}

/// The `Idempotency-Key`s of accepted pushes, oldest first, for 24 hours.
#[derive(Debug, Default)]
pub struct IdempotencyKeys {
    order: VecDeque<(Instant, String)>,
    seen: HashSet<String>,
}

impl IdempotencyKeys {
    /// Records `key` at `now`; true when it is new, false when a push with this key was
    /// already accepted within the window (the push is then answered but wakes nobody).
    pub fn first_use(&mut self, key: &str, now: Instant) -> bool {
        while let Some((at, _)) = self.order.front() {
            if now.saturating_duration_since(*at) < IDEMPOTENCY_WINDOW {
                break;
            }
            if let Some((_, old)) = self.order.pop_front() {
                self.seen.remove(&old);
            }
        }
        if self.seen.contains(key) {
            return false;
        }
        if self.order.len() >= MAX_IDEMPOTENCY_KEYS
            && let Some((_, old)) = self.order.pop_front()
        {
            self.seen.remove(&old);
        }
        self.seen.insert(key.to_owned());
        self.order.push_back((now, key.to_owned()));
        true
    }
}

/// One wake: in server-only mode there is no mobile push service, so a wake is logged and
/// kept here for the tests to count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wake {
    pub user: String,
    pub device_id: u32,
    pub idempotency_key: String,
}

/// The wakes made, most recent last.
#[derive(Debug, Default)]
pub struct Wakes {
    total: u64,
    recent: VecDeque<Wake>,
}

impl Wakes {
    pub fn record(&mut self, wake: Wake) {
        self.total = self.total.saturating_add(1);
        if self.recent.len() >= MAX_LISTED_WAKES {
            self.recent.pop_front();
        }
        self.recent.push_back(wake);
    }

    pub fn total(&self) -> u64 {
        self.total
    }

    pub fn recent(&self) -> impl Iterator<Item = &Wake> {
        self.recent.iter()
    }
}

/// The server's changing state, each part behind a lock of its own. A handler holds at most
/// one of them at a time, never across an await, so they cannot deadlock or stall a request.
#[derive(Debug, Default)]
pub struct Memory {
    pub devices: Mutex<Devices>,
    pub idempotency: Mutex<IdempotencyKeys>,
    pub wakes: Mutex<Wakes>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_bound_to_their_user_and_withdrawal_wins() {
        let mut t = Tokens::default();
        t.issue("+491", "good");
        t.withdraw("+491", "old");
        t.issue("+492", "both");
        t.withdraw("+492", "both");
        assert!(t.valid_for("+491", "good"));
        assert!(!t.valid_for("+492", "good"));
        assert!(!t.valid_for("+491", "old"));
        assert!(!t.valid_for("+492", "both"));
        assert!(t.valid_for_anyone("good"));
        assert!(!t.valid_for_anyone("old"));
        assert!(!t.valid_for_anyone("both"));
    }

    #[test]
    fn idempotency_keys_last_a_day() {
        let mut k = IdempotencyKeys::default();
        let t0 = Instant::now();
        assert!(k.first_use("a", t0));
        assert!(!k.first_use("a", t0 + Duration::from_secs(3600)));
        assert!(k.first_use("b", t0 + Duration::from_secs(3600)));
        assert!(k.first_use("a", t0 + IDEMPOTENCY_WINDOW));
        assert!(!k.first_use("b", t0 + IDEMPOTENCY_WINDOW));
    }

    #[test]
    fn devices_learnt_are_known() {
        let mut d = Devices::default();
        d.configure("+491", 7);
        assert!(d.knows("+491", 7));
        assert!(!d.knows("+491", 8));
        assert!(d.learn("+491", 8));
        assert!(d.knows("+491", 8));
        assert!(!d.knows("+492", 8));
        assert_eq!(d.on_record("+491"), Some(7));
        assert_eq!(d.on_record("+492"), None);
    }

    #[test]
    fn wakes_are_counted_beyond_the_listed_ones() {
        let mut w = Wakes::default();
        for i in 0..(MAX_LISTED_WAKES as u32 + 5) {
            w.record(Wake {
                user: "u".into(),
                device_id: i,
                idempotency_key: String::new(),
            });
        }
        assert_eq!(w.total(), MAX_LISTED_WAKES as u64 + 5);
        assert_eq!(w.recent().count(), MAX_LISTED_WAKES);
        assert_eq!(w.recent().next().map(|w| w.device_id), Some(5));
    }
}
