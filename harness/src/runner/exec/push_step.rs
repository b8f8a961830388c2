//! The `push` step of a chain scenario (SPEC.md §13, PUSH-10): the gatekeeper pushes to the
//! IUT's own server for its enrolled, disconnected device, and the client must report the
//! wake (`push_received`) within 10 s and connect, authenticate and bind within 30 s. The
//! connection it makes is an enrolled login like any other, judged the same way.

use std::time::Duration;

use tokio::time::Instant;

use super::Exec;
use crate::idproof::sasl;
use crate::roles::Deviation;
use crate::roles::gatekeeper_options::{HandshakeMode, Negotiate, SaslAnswer, Stage};
use crate::roles::push::{
    Priority, Push, PushOutcome, PushTarget, RetryPolicy, deliver, new_idempotency_key,
};
use crate::scenario::push_step::PushStep;

/// PUSH-10's bounds: the event, then the bound session, counted from the accepted push.
const EVENT_WITHIN: Duration = Duration::from_secs(10);
const BOUND_WITHIN: Duration = Duration::from_secs(30);

impl Exec<'_> {
    pub(super) async fn push(&mut self, p: &PushStep, deadline: Instant) -> Result<(), Deviation> {
        if !self.scenario.chain {
            return Err(Deviation::error(
                "push needs a chain scenario: the IUT's own server wakes its client",
            ));
        }
        let (url, tls, key) = self
            .provider_target()
            .ok_or_else(|| Deviation::error("push needs the IUT's server running"))?;
        let (user, device_id) = self
            .enrolled_device()
            .ok_or_else(|| Deviation::error("push needs an enroll step before it"))?;
        if self.dev().conn.as_ref().is_some_and(|c| !c.is_ended()) {
            return Err(Deviation::error(
                "push wakes a client that is not connected: disconnect it first",
            ));
        }
        let push = Push {
            user,
            device_id,
            count: 1,
            priority: Priority::High,
        };
        let idem = match (&p.repeat, &self.http.last_push_key) {
            (true, Some(k)) => k.clone(),
            (true, None) => {
                return Err(Deviation::error(
                    "push with repeat = true needs a push before it",
                ));
            }
            (false, _) => new_idempotency_key(self.vars.rng()),
        };
        self.http.last_push_key = Some(idem.clone());
        let target = PushTarget { base_url: url, tls };
        let report = deliver(
            &target,
            &key,
            &push,
            &idem,
            &RetryPolicy::default(),
            self.vars.rng(),
            deadline,
        )
        .await;
        for a in &report.attempts {
            self.transcript.note(format!(
                "push attempt: {} in {} ms{}",
                a.status.map_or("no status".to_string(), |s| s.to_string()),
                a.elapsed.as_millis(),
                a.error
                    .as_deref()
                    .map(|e| format!(" ({e})"))
                    .unwrap_or_default()
            ));
        }
        match report.outcome {
            PushOutcome::Accepted(_) => {}
            PushOutcome::NotSent(why) => return Err(Deviation::error(why)),
            other => {
                return Err(Deviation::fail(
                    "PUSH-6",
                    "a 2xx answer to a signed, fresh push for the enrolled device",
                    format!("{other:?}"),
                ));
            }
        }
        let accepted = Instant::now();
        if !p.wakes {
            // A repeated key: the server must not wake the client again (PUSH-7).
            return self
                .no_wake(accepted + Duration::from_secs(3).min(deadline - accepted))
                .await;
        }
        let until = deadline.min(accepted + EVENT_WITHIN);
        let mut seen = false;
        let mut others = Vec::new();
        while let Some(ev) = self.next_event(until).await? {
            if ev.name == "push_received" {
                seen = true;
                break;
            }
            others.push(ev);
        }
        let dev = self.dev();
        for ev in others.into_iter().rev() {
            dev.pending.push_front(ev);
        }
        if !seen {
            return Err(Deviation::fail(
                "PUSH-10",
                format!(
                    "push_received within {} s of the accepted push",
                    EVENT_WITHIN.as_secs()
                ),
                "no such event",
            ));
        }
        let bound_by = deadline.min(accepted + BOUND_WITHIN);
        let kind = self.transport_for(None)?;
        let (tcp, at) = self.accept(0, kind, bound_by).await.map_err(|d| {
            if d.verdict == crate::verdict::Verdict::Fail {
                Deviation::fail(
                    "PUSH-10",
                    format!(
                        "a connection within {} s of the push",
                        BOUND_WITHIN.as_secs()
                    ),
                    d.got,
                )
            } else {
                d
            }
        })?;
        self.dev().retire_conn().await;
        self.handshake(tcp, at, kind, HandshakeMode::Normal, bound_by)
            .await?;
        let (_, login) = self.enrolled_login(crate::scenario::enroll_step::ProofKind::Valid)?;
        self.enrolled_login = Some(login);
        let session = Negotiate {
            upto: Stage::Session,
            mechanisms: vec![sasl::MECHANISM.to_string(), "PLAIN".to_string()],
            sasl: SaslAnswer::Verify,
            features_delay: None,
            idle_limit: None,
        };
        self.negotiate(&session, bound_by).await
    }

    /// After a push the server must not turn into a wake: no `push_received` and no
    /// connection until `until`.
    async fn no_wake(&mut self, until: Instant) -> Result<(), Deviation> {
        let listener = std::sync::Arc::clone(&self.dev().listener);
        loop {
            tokio::select! {
                accepted = listener.accept() => {
                    if let Ok((_, peer)) = accepted {
                        return Err(Deviation::fail(
                            "PUSH-7",
                            "no second wake for a push whose Idempotency-Key was accepted before",
                            format!("a connection from {peer}"),
                        ));
                    }
                }
                ev = self.dev().recv_event(until) => match ev? {
                    None => return Ok(()),
                    Some(ev) if ev.name == "push_received" => {
                        return Err(Deviation::fail(
                            "PUSH-7",
                            "no second wake for a push whose Idempotency-Key was accepted before",
                            ev.to_string(),
                        ));
                    }
                    Some(ev) => self.dev().pending.push_back(ev),
                },
            }
        }
    }
}
