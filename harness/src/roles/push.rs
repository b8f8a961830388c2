//! The gatekeeper's push call to a provider server (SPEC §13): one signed `POST
//! {provider}/gatecheck/v1/push` per wake-up, retried as PUSH-11 says.
//!
//! The harness plays the gatekeeper here, so everything it sends is what a conforming
//! gatekeeper must send (PUSH-3, PUSH-12) and the way it retries is what PUSH-11 demands;
//! a provider server under test can then be judged on its answers alone. The server is
//! hostile input: every attempt is bounded in time (the per-attempt timeout and the
//! scenario's `stop`), response bodies are bounded by [`crate::http::MAX_RESPONSE_BODY`],
//! redirects are never followed, and nothing the server sends can make this code panic.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ed25519_dalek::SigningKey;
use tokio::time::Instant;

use crate::http::client::BaseUrl;
use crate::http::{HttpRequest, send, signing};

/// The push endpoint's path under the provider's base URL (SPEC Appendix D).
pub const PUSH_PATH: &str = "/gatecheck/v1/push";

/// How urgently the provider should wake its client (`priority` in §13.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Priority {
    High,
    Normal,
}

impl Priority {
    /// The spelling §13.1 gives the value in the body.
    pub fn as_str(self) -> &'static str {
        match self {
            Priority::High => "high",
            Priority::Normal => "normal",
        }
    }
}

/// What one push says: the provider's user and device to wake, and how many messages wait.
/// These are the only facts a push may carry (PUSH-3); there is deliberately no field for
/// anything else.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Push {
    /// The provider's identifier of the user, as its identifier proof named it.
    pub user: String,
    /// The device to wake, as its identifier proof named it.
    pub device_id: u32,
    /// The number of queued messages; §13.1 requires at least 1.
    pub count: u32,
    pub priority: Priority,
}

/// Where pushes go: the provider server's onboarded base URL and, for an `https://` one, the
/// TLS client configuration trusting only the CA the provider named
/// ([`crate::http::client::tls_config`]).
#[derive(Debug, Clone)]
pub struct PushTarget {
    pub base_url: String,
    pub tls: Option<Arc<rustls::ClientConfig>>,
}

/// How long one attempt may take and how long to wait before each retry.
///
/// The default is PUSH-11's schedule; tests shorten it so that a run of five attempts takes
/// milliseconds rather than fifteen seconds. The number of attempts is one more than the
/// number of delays.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// The time an attempt has to get a complete answer (connect, TLS, head and body).
    pub attempt_timeout: Duration,
    /// The wait before the second, third, … attempt.
    pub delays: Vec<Duration>,
}

impl Default for RetryPolicy {
    /// 5 s per attempt, then 1, 2, 4 and 8 s between attempts: at most 5 attempts (PUSH-11).
    fn default() -> Self {
        RetryPolicy {
            attempt_timeout: Duration::from_secs(5),
            delays: [1, 2, 4, 8].map(Duration::from_secs).to_vec(),
        }
    }
}

/// One request sent and what came of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    /// When the attempt began (before connecting).
    pub started: Instant,
    /// The response's status, when a complete response arrived; `None` when the attempt
    /// failed before that (a head whose body then broke off or ran over the limit counts as
    /// no answer).
    pub status: Option<u16>,
    /// Why the attempt got no usable answer: a connection failure, a timeout, a body that
    /// broke off or ran over the limit, a status outside 200–599. `None` for any answer
    /// with a real status, 5xx included.
    pub error: Option<String>,
    /// From `started` to the answer or the failure.
    pub elapsed: Duration,
    /// The `X-Gatekeeper-Nonce` this attempt carried, so a test can tell attempts apart
    /// and a scenario can check the provider's replay handling against it.
    pub nonce: String,
}

/// How a push ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PushOutcome {
    /// A 2xx status: the provider took the push. Not retried (PUSH-11).
    Accepted(u16),
    /// A 4xx status: the provider refused the push. Not retried (PUSH-11).
    Refused(u16),
    /// A 3xx status: neither followed (the target of a push is fixed at onboarding and a
    /// redirect could lead a signed request anywhere) nor retried (PUSH-11 names only 5xx,
    /// timeouts and connection failures); left to the caller to judge.
    Redirected(u16),
    /// Every attempt failed with a 5xx status, a timeout or a connection failure, and either
    /// the retries ran out or the next one could not start before `stop`.
    GaveUp,
    /// Nothing was sent, for a reason on the harness's side: a base URL that is not a
    /// loopback `http(s)://` URL, an `https://` one without TLS settings, an idempotency key
    /// that is not a lowercase UUID, a `count` of 0, or a `stop` already past. Kept apart
    /// from [`PushOutcome::GaveUp`] so that a harness misconfiguration is never charged to the
    /// provider as a server that did not answer.
    NotSent(String),
}

/// Every attempt of one push, in order, and how it ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushReport {
    pub attempts: Vec<Attempt>,
    pub outcome: PushOutcome,
}

/// The push body of §13.1: compact JSON with exactly `v`, `user`, `device_id`, `count` and
/// `priority`, in that order (PUSH-12, PUSH-3).
///
/// Written out by hand rather than through a map, so the member order is the spec's and no
/// member can slip in; `user` goes through serde_json's string escaping, which cannot fail.
pub fn push_body(push: &Push) -> Vec<u8> {
    let user = serde_json::Value::from(push.user.as_str());
    format!(
        "{{\"v\":1,\"user\":{user},\"device_id\":{},\"count\":{},\"priority\":\"{}\"}}",
        push.device_id,
        push.count,
        push.priority.as_str()
    )
    .into_bytes()
}

/// A fresh idempotency key for a new push: a version 4 UUID in lowercase, drawn from `rng`
/// (the scenario's seeded generator, so a rerun sends the same keys).
pub fn new_idempotency_key(rng: &mut impl rand::Rng) -> String {
    crate::scenario::vars::random_uuid(rng)
}

/// Whether `s` is a UUID in its lowercase hyphenated form (8-4-4-4-12 hex digits), the only
/// form PUSH-12 allows inside the `Idempotency-Key` string.
pub fn is_lowercase_uuid(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 36
        && b.iter().enumerate().all(|(i, &c)| match i {
            8 | 13 | 18 | 23 => c == b'-',
            _ => c.is_ascii_digit() || (b'a'..=b'f').contains(&c),
        })
}

/// Sends `push` to the provider server at `target`, retrying as PUSH-11 says, and reports
/// every attempt.
///
/// Each attempt carries the same body and `Idempotency-Key` (so the provider can tell a
/// retry from a new push, PUSH-7) but a fresh timestamp, a fresh nonce from `rng` and so a
/// fresh signature (a reused nonce would be refused as a replay, PUSH-5). An attempt is
/// retried after a 5xx status, a connection failure, or no complete answer within
/// `policy.attempt_timeout`; never after a 2xx, 3xx or 4xx. Nothing waits past `stop`: an
/// attempt's time is cut to it, and a retry whose delay would end at or after it is not made.
pub async fn deliver(
    target: &PushTarget,
    key: &SigningKey,
    push: &Push,
    idempotency_key: &str,
    policy: &RetryPolicy,
    rng: &mut impl rand::Rng,
    stop: Instant,
) -> PushReport {
    let not_sent = |why: String| PushReport {
        attempts: Vec::new(),
        outcome: PushOutcome::NotSent(why),
    };
    let base = match BaseUrl::parse(&target.base_url) {
        Ok(base) => base,
        Err(e) => return not_sent(e),
    };
    if base.https && target.tls.is_none() {
        return not_sent(format!(
            "base URL {:?} is https:// but no TLS settings were given",
            target.base_url
        ));
    }
    if !is_lowercase_uuid(idempotency_key) {
        return not_sent(format!(
            "idempotency key {idempotency_key:?} is not a lowercase UUID"
        ));
    }
    if push.count == 0 {
        return not_sent("a push's count must be at least 1".into());
    }
    if Instant::now() >= stop {
        return not_sent("the scenario's deadline had passed before the first attempt".into());
    }

    let path = base.target(PUSH_PATH);
    let body = push_body(push);
    // Quoted: a structured-field string (RFC 8941 §3.3.3), as PUSH-12 requires.
    let idempotency = format!("\"{idempotency_key}\"");
    let mut attempts = Vec::with_capacity(policy.delays.len().saturating_add(1).min(16));
    let mut delays = policy.delays.iter();
    loop {
        let started = Instant::now();
        let nonce: [u8; 16] = rng.random();
        let signature = signing::sign(key, "POST", &path, unix_now(), nonce, &body);
        let mut headers = vec![
            ("Content-Type".to_string(), "application/json".to_string()),
            ("Idempotency-Key".to_string(), idempotency.clone()),
        ];
        headers.extend(
            signature
                .pairs()
                .into_iter()
                .map(|(name, value)| (name.to_string(), value)),
        );
        let request = HttpRequest {
            method: "POST".into(),
            path: path.clone(),
            headers,
            body: body.clone(),
        };
        let deadline = started
            .checked_add(policy.attempt_timeout)
            .map_or(stop, |end| end.min(stop));
        let result = send(&target.base_url, &request, deadline, target.tls.as_ref()).await;
        let mut attempt = Attempt {
            started,
            status: None,
            error: None,
            elapsed: started.elapsed(),
            nonce: signature.nonce,
        };
        match result {
            Ok(response) => {
                attempt.status = Some(response.status);
                let outcome = match response.status {
                    200..=299 => Some(PushOutcome::Accepted(response.status)),
                    300..=399 => Some(PushOutcome::Redirected(response.status)),
                    400..=499 => Some(PushOutcome::Refused(response.status)),
                    500..=599 => None,
                    // A 1xx as the final answer (hyper hands a 101 over) or a number past
                    // 599 is no HTTP answer at all: as good as none, so retried.
                    other => {
                        attempt.error = Some(format!("status {other} is not a final HTTP status"));
                        None
                    }
                };
                attempts.push(attempt);
                if let Some(outcome) = outcome {
                    return PushReport { attempts, outcome };
                }
            }
            Err(e) => {
                attempt.error = Some(e);
                attempts.push(attempt);
            }
        }
        // A retryable failure: wait and go again, unless retries are used up or the wait
        // would reach the scenario's deadline (no attempt could then be made in time).
        let next = delays.next().map(|d| Instant::now().checked_add(*d));
        match next {
            Some(Some(at)) if at < stop => tokio::time::sleep_until(at).await,
            _ => {
                return PushReport {
                    attempts,
                    outcome: PushOutcome::GaveUp,
                };
            }
        }
    }
}

/// Seconds since the Unix epoch for `X-Gatekeeper-Timestamp`; 0 on a clock before 1970,
/// which the provider then rightly refuses as stale.
fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
#[path = "push_tests.rs"]
mod tests;
