//! Plays one scenario against one fresh IUT instance and turns what happens into a verdict.

mod client;
mod expect;
mod http;

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant as StdInstant};

use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::conn::IutConn;
use super::transcript::{Direction, Transcript};
use super::{Failure, ScenarioResult, Verdict};
use crate::http::HttpResponse;
use crate::iut::IutConfig;
use crate::iut::driver::{DriverMsg, DriverProcess};
use crate::roles::Deviation;
use crate::roles::gatekeeper_server::{self as gk, Credentials, ServerKeys};
use crate::scenario::vars::Vars;
use crate::scenario::{Action, Role, Scenario, Step, SuiteDirs, pattern};
use crate::wire::Element;

/// How long a stopped IUT gets to exit before it is killed.
const STOP_GRACE: Duration = Duration::from_millis(500);

/// Runs a scenario in its own task so that a panic becomes an error verdict.
pub(super) async fn run_guarded(
    scenario: Arc<Scenario>,
    iut: Arc<IutConfig>,
    dirs: Arc<SuiteDirs>,
    seed: u64,
) -> ScenarioResult {
    let started = StdInstant::now();
    let transcript = Transcript::new(started);
    let task = {
        let scenario = Arc::clone(&scenario);
        let transcript = transcript.clone();
        async move { Exec::run(&scenario, &iut, &dirs, seed, transcript).await }
    };
    let (verdict, failure, stderr) = catch_panic(task).await;
    let keep_details = verdict != Verdict::Pass;
    ScenarioResult {
        id: scenario.id.clone(),
        title: scenario.title.clone(),
        requirements: scenario.requirements.clone(),
        verdict,
        duration_ms: started.elapsed().as_millis() as u64,
        seed,
        failure,
        transcript: keep_details.then(|| transcript.entries()),
        iut_stderr: if keep_details {
            stderr.filter(|s| !s.is_empty())
        } else {
            None
        },
    }
}

/// Runs a scenario's future in its own task: a panic there becomes an error
/// verdict for that scenario alone, and the run goes on.
async fn catch_panic<F>(scenario: F) -> Outcome
where
    F: std::future::Future<Output = Outcome> + Send + 'static,
{
    match tokio::spawn(scenario).await {
        Ok(outcome) => outcome,
        Err(e) => {
            let why = if e.is_panic() {
                let p = e.into_panic();
                let msg = p
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| p.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "non-string panic payload".into());
                format!("harness panic: {msg}")
            } else {
                "scenario task cancelled".to_string()
            };
            (
                Verdict::Error,
                Some(Failure {
                    step: None,
                    line: None,
                    requirement: None,
                    expected: "a harness that does not panic".into(),
                    got: why,
                }),
                None,
            )
        }
    }
}

/// A result for a scenario that never ran.
pub(super) fn harness_error(s: &Scenario, seed: u64, why: &str) -> ScenarioResult {
    ScenarioResult {
        id: s.id.clone(),
        title: s.title.clone(),
        requirements: s.requirements.clone(),
        verdict: Verdict::Error,
        duration_ms: 0,
        seed,
        failure: Some(Failure {
            step: None,
            line: None,
            requirement: None,
            expected: "a scenario that runs".into(),
            got: why.into(),
        }),
        transcript: None,
        iut_stderr: None,
    }
}

struct Exec<'a> {
    scenario: &'a Scenario,
    iut: &'a IutConfig,
    dirs: &'a SuiteDirs,
    transcript: Transcript,
    vars: Vars,
    listener: Arc<TcpListener>,
    port: u16,
    keys: Option<ServerKeys>,
    driver: Option<DriverProcess>,
    events: mpsc::Receiver<DriverMsg>,
    events_tx: Option<mpsc::Sender<DriverMsg>>,
    pending: VecDeque<serde_json::Value>,
    driver_gone: bool,
    conn: Option<IutConn>,
    account: String,
    credential: String,
    ignore: Vec<Element>,
    /// The provider server's base URL for this scenario (server role).
    server_url: Option<String>,
    /// The response to the last `http` step, or why there is none.
    last_http: Option<Result<HttpResponse, String>>,
}

type Outcome = (Verdict, Option<Failure>, Option<String>);

impl<'a> Exec<'a> {
    async fn run(
        scenario: &'a Scenario,
        iut: &'a IutConfig,
        dirs: &'a SuiteDirs,
        seed: u64,
        transcript: Transcript,
    ) -> Outcome {
        if let Some(why) = not_applicable(scenario, iut) {
            return (
                Verdict::NotApplicable,
                Some(Failure {
                    step: None,
                    line: None,
                    requirement: None,
                    expected: "a scenario that applies to this IUT".into(),
                    got: why,
                }),
                None,
            );
        }
        let listener = match TcpListener::bind(("127.0.0.1", 0)).await {
            Ok(l) => l,
            Err(e) => return error_outcome(format!("cannot listen on loopback: {e}")),
        };
        let port = listener.local_addr().map(|a| a.port()).unwrap_or(0);
        let (tx, rx) = mpsc::channel(crate::iut::driver::QUEUE);
        let mut vars = Vars::new(seed);
        let account = format!("alice-{}", vars.get("rand:account").unwrap_or_default());
        let credential = vars.get("rand:credential").unwrap_or_default();
        vars.set("gk.domain", gk::DOMAIN);
        vars.set("gk.user", gk::GK_USER);
        vars.set(
            "gk.user.bare",
            gk::GK_USER.split('/').next().unwrap_or(gk::GK_USER),
        );
        vars.set("client.account", account.clone());
        vars.set("client.bare", format!("{account}@{}", gk::DOMAIN));
        let mut exec = Exec {
            scenario,
            iut,
            dirs,
            transcript,
            vars,
            listener: Arc::new(listener),
            port,
            keys: None,
            driver: None,
            events: rx,
            events_tx: Some(tx),
            pending: VecDeque::new(),
            driver_gone: false,
            conn: None,
            account,
            credential,
            ignore: Vec::new(),
            server_url: None,
            last_http: None,
        };
        let limit = scenario
            .timeout_ms
            .map(Duration::from_millis)
            .unwrap_or(iut.timeouts.scenario());
        let mut current: Option<(usize, &Step)> = None;
        let result = tokio::time::timeout(limit, exec.play(&mut current)).await;
        let outcome = match result {
            Ok(Ok(())) => (Verdict::Pass, None),
            Ok(Err(d)) => (d.verdict, Some(exec.failure(d, current))),
            Err(_) => (
                Verdict::Fail,
                Some(exec.failure(
                    Deviation::fail_here(
                        format!("the scenario to finish within {} ms", limit.as_millis()),
                        "the IUT kept it waiting",
                    ),
                    current,
                )),
            ),
        };
        let stderr = exec.teardown().await;
        (outcome.0, outcome.1, stderr)
    }

    fn failure(&self, d: Deviation, current: Option<(usize, &Step)>) -> Failure {
        let requirement = d
            .requirement
            .or_else(|| current.and_then(|(_, s)| s.requirement.clone()))
            .or_else(|| {
                (d.verdict == Verdict::Fail)
                    .then(|| self.scenario.requirements.first().cloned())
                    .flatten()
            });
        Failure {
            step: current.map(|(i, _)| i + 1),
            line: current.map(|(_, s)| s.line),
            requirement,
            expected: d.expected,
            got: d.got,
        }
    }

    async fn play(&mut self, current: &mut Option<(usize, &'a Step)>) -> Result<(), Deviation> {
        for p in &self.scenario.ignore {
            let parsed = self.pattern(p)?;
            self.ignore.push(parsed);
        }
        match self.scenario.role {
            Role::Client => self.launch().await?,
            Role::Server => self.launch_server().await?,
            Role::Proxy => {
                return Err(Deviation::error(
                    "scenarios for the proxy role are not supported by this harness version",
                ));
            }
        }
        let steps = &self.scenario.steps;
        for (i, step) in steps.iter().enumerate() {
            *current = Some((i, step));
            let deadline = Instant::now() + step.timeout.unwrap_or(self.iut.timeouts.step());
            self.transcript.note(format!(
                "step {} (line {}): {}",
                i + 1,
                step.line,
                step.action.name()
            ));
            self.step(step, deadline).await?;
        }
        *current = None;
        Ok(())
    }

    /// The next driver event, from the queue or the IUT. `Ok(None)` on timeout.
    async fn next_event(
        &mut self,
        deadline: Instant,
    ) -> Result<Option<serde_json::Value>, Deviation> {
        if let Some(ev) = self.pending.pop_front() {
            return Ok(Some(ev));
        }
        if self.driver_gone {
            return Err(self.driver_exited().await);
        }
        match tokio::time::timeout_at(deadline, self.events.recv()).await {
            Err(_) => Ok(None),
            Ok(Some(DriverMsg::Event(v))) => {
                self.transcript
                    .record(Direction::DriverEvent, v.to_string());
                Ok(Some(v))
            }
            Ok(Some(DriverMsg::Bad { line, why })) => {
                self.transcript.record(Direction::DriverEvent, &line);
                Err(Deviation::fail_here(
                    "driver events as DRIVER.md defines them",
                    format!("{why}: {line}"),
                ))
            }
            Ok(Some(DriverMsg::Eof)) | Ok(None) => {
                self.driver_gone = true;
                Err(self.driver_exited().await)
            }
        }
    }

    async fn driver_exited(&mut self) -> Deviation {
        let status = match self.driver.as_mut() {
            Some(d) => d.exit_status_within(Duration::from_millis(200)).await,
            None => None,
        };
        Deviation::fail_here(
            "the IUT process to keep running",
            match status {
                Some(s) => format!("the IUT exited ({s})"),
                None => "the IUT closed its driver output".to_string(),
            },
        )
    }

    async fn send_command(&mut self, cmd: serde_json::Value) -> Result<u64, Deviation> {
        let driver = self
            .driver
            .as_mut()
            .ok_or_else(|| Deviation::error("no IUT process"))?;
        match driver.send(cmd).await {
            Ok((seq, line)) => {
                self.transcript.record(Direction::DriverCommand, line);
                Ok(seq)
            }
            Err(e) => Err(Deviation::fail_here(
                "the IUT to read driver commands",
                format!("{e}"),
            )),
        }
    }

    fn pattern(&mut self, template: &str) -> Result<Element, Deviation> {
        let text = self.vars.substitute(template).map_err(Deviation::error)?;
        pattern::parse(&text).map_err(Deviation::error)
    }

    fn conn(&mut self) -> Result<&mut IutConn, Deviation> {
        self.conn.as_mut().ok_or_else(|| {
            Deviation::error(
                "this step needs a connection: add a `connect` or `session` step before it",
            )
        })
    }

    fn keys(&mut self) -> Result<&ServerKeys, Deviation> {
        if self.keys.is_none() {
            let keys = ServerKeys::new(self.vars.rng()).map_err(Deviation::error)?;
            self.keys = Some(keys);
        }
        self.keys
            .as_ref()
            .ok_or_else(|| Deviation::error("no server keys"))
    }

    async fn step(&mut self, step: &Step, deadline: Instant) -> Result<(), Deviation> {
        match &step.action {
            Action::Connect(c) => self.connect(c, deadline).await,
            Action::Negotiate(n) => {
                let creds_account = self.account.clone();
                let creds_credential = self.credential.clone();
                let creds = Credentials {
                    account: &creds_account,
                    credential: &creds_credential,
                };
                let conn = self
                    .conn
                    .as_mut()
                    .ok_or_else(|| Deviation::error("negotiate needs a completed handshake"))?;
                let done = gk::negotiate(conn, n, &creds, deadline, self.vars.rng()).await?;
                if let Some(jid) = done.jid {
                    self.vars.set("client.jid", jid.clone());
                    self.await_connected(&jid, deadline).await?;
                }
                Ok(())
            }
            Action::Send(template) => {
                let text = self.vars.substitute(template).map_err(Deviation::error)?;
                self.conn()?
                    .send(text.as_bytes())
                    .await
                    .map_err(Deviation::io)
            }
            Action::SendFixture(rel) => {
                let path = self.dirs.fixtures.join(rel);
                let bytes = crate::wire::fixture_bytes(&path)
                    .map_err(|e| Deviation::error(format!("fixture {}: {e}", path.display())))?;
                // A receiver may refuse a hostile input before reading all of it:
                // a write cut short is noted, and the next step judges the IUT.
                let conn = self.conn()?;
                match tokio::time::timeout_at(deadline, conn.send(&bytes)).await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => self.transcript.note(format!("write stopped: {e}")),
                    Err(_) => self
                        .transcript
                        .note("write stopped: the IUT stopped reading"),
                }
                Ok(())
            }
            Action::Expect(alternatives) => self.expect(step, alternatives, deadline).await,
            Action::ExpectStreamError(conds) => {
                self.expect_stream_error(step, conds, deadline).await
            }
            Action::ExpectClosed { close_tag } => {
                self.expect_closed(step, *close_tag, deadline).await
            }
            Action::ExpectNothing(d) => self.expect_nothing(step, Instant::now() + *d).await,
            Action::Driver(cmd) => {
                let cmd = self.vars.substitute_json(cmd).map_err(Deviation::error)?;
                self.send_command(cmd).await.map(|_| ())
            }
            Action::ExpectEvent(alternatives) => self.expect_event(alternatives, deadline).await,
            Action::Sleep(d) => {
                tokio::time::sleep(*d).await;
                Ok(())
            }
            Action::CloseStream => self.conn()?.send_close().await.map_err(Deviation::io),
            Action::Hangup => {
                self.conn()?.hangup().await;
                Ok(())
            }
            Action::Http(h) => self.http(h, deadline).await,
            Action::ExpectHttp(e) => self.expect_http(e),
        }
    }

    /// Closes the connection, stops the IUT, and returns its stderr tail.
    async fn teardown(&mut self) -> Option<String> {
        if let Some(mut conn) = self.conn.take() {
            conn.hangup().await;
        }
        while let Ok(msg) = self.events.try_recv() {
            if let DriverMsg::Event(v) = msg {
                self.transcript
                    .record(Direction::DriverEvent, v.to_string());
            }
        }
        let driver = self.driver.as_mut()?;
        if self.scenario.role == Role::Server {
            // A server is not driven: it is stopped, not asked to stop.
            driver.kill().await;
        } else {
            driver.stop(STOP_GRACE).await;
        }
        Some(driver.stderr_tail().await)
    }
}

fn error_outcome(why: String) -> Outcome {
    (
        Verdict::Error,
        Some(Failure {
            step: None,
            line: None,
            requirement: None,
            expected: "a working harness".into(),
            got: why,
        }),
        None,
    )
}

/// Why a scenario does not apply to an IUT, if it does not.
fn not_applicable(s: &Scenario, iut: &IutConfig) -> Option<String> {
    if !iut.roles.contains(&s.role) {
        return Some(format!("the IUT does not implement the {} role", s.role));
    }
    let missing: Vec<&str> = s
        .needs
        .iter()
        .filter(|n| !iut.claims(n))
        .map(String::as_str)
        .collect();
    if !missing.is_empty() {
        return Some(format!("the IUT does not claim {}", missing.join(", ")));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_panic_becomes_an_error_verdict() {
        let (verdict, failure, _) = catch_panic(async {
            let v: Vec<u8> = Vec::new();
            // A deliberate out-of-bounds index, as a harness bug would do.
            let i = v.len() + 3;
            (Verdict::Pass, None, Some(v[i].to_string()))
        })
        .await;
        assert_eq!(verdict, Verdict::Error);
        let got = failure.map(|f| f.got).unwrap_or_default();
        assert!(
            got.starts_with("harness panic: index out of bounds"),
            "{got}"
        );
    }

    #[tokio::test]
    async fn an_outcome_passes_through() {
        let (verdict, failure, stderr) =
            catch_panic(async { (Verdict::Fail, None, Some("e".into())) }).await;
        assert_eq!(
            (verdict, failure, stderr.as_deref()),
            (Verdict::Fail, None, Some("e"))
        );
    }
}
