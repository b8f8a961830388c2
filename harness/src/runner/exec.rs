//! Plays one scenario against one fresh IUT instance and turns what happens into a verdict.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant as StdInstant};

use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::conn::{Inbound, IutConn};
use super::transcript::{Direction, Transcript};
use super::{Failure, ScenarioResult, Verdict};
use crate::http::{HttpRequest, HttpResponse};
use crate::iut::IutConfig;
use crate::iut::driver::{DriverMsg, DriverProcess, event_matches};
use crate::roles::Deviation;
use crate::roles::gatekeeper_server::{self as gk, Credentials, ServerKeys};
use crate::scenario::step::{ExpectHttp, HttpStep};
use crate::scenario::vars::Vars;
use crate::scenario::{Action, Role, Scenario, Step, SuiteDirs, pattern};
use crate::transport::TransportKind;
use crate::wire::{Element, ns};

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
    events: mpsc::UnboundedReceiver<DriverMsg>,
    events_tx: Option<mpsc::UnboundedSender<DriverMsg>>,
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
        let (tx, rx) = mpsc::unbounded_channel();
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

    async fn launch(&mut self) -> Result<(), Deviation> {
        let Some(tx) = self.events_tx.take() else {
            return Err(Deviation::error("IUT launched twice"));
        };
        self.transcript.note(format!("launching {}", self.iut.name));
        let launch = self
            .iut
            .launch
            .as_ref()
            .ok_or_else(|| Deviation::error("the IUT has no [launch] for its client"))?;
        let driver = DriverProcess::spawn(launch, tx)
            .map_err(|e| Deviation::inconclusive(format!("the IUT did not start: {e}")))?;
        self.driver = Some(driver);
        let deadline = Instant::now() + self.iut.timeouts.ready();
        match self.next_event(deadline).await {
            Ok(Some(ev)) if ev.get("event").and_then(|e| e.as_str()) == Some("ready") => Ok(()),
            Ok(Some(ev)) => Err(Deviation::inconclusive(format!(
                "the IUT's first driver event was {ev}, not ready"
            ))),
            Ok(None) => Err(Deviation::inconclusive(format!(
                "the IUT sent no ready event within {} ms",
                self.iut.timeouts.ready_ms
            ))),
            Err(d) => Err(Deviation::inconclusive(d.got)),
        }
    }

    /// Starts the provider's server (when the IUT says how) on a fresh port and
    /// waits until it accepts connections.
    async fn launch_server(&mut self) -> Result<(), Deviation> {
        let server = self
            .iut
            .server
            .as_ref()
            .ok_or_else(|| Deviation::error("the IUT has no [server] section"))?;
        let port =
            free_port().map_err(|e| Deviation::error(format!("no free loopback port: {e}")))?;
        let url = server.base_url.replace("${port}", &port.to_string());
        let (host, port) =
            crate::http::client::loopback_authority(&url).map_err(Deviation::error)?;
        if let Some(launch) = &server.launch {
            let Some(tx) = self.events_tx.take() else {
                return Err(Deviation::error("IUT launched twice"));
            };
            self.transcript.note(format!(
                "launching the provider server {} at {url}",
                self.iut.name
            ));
            let process = DriverProcess::spawn(&launch.with_port(port), tx).map_err(|e| {
                Deviation::inconclusive(format!("the provider server did not start: {e}"))
            })?;
            self.driver = Some(process);
        }
        let deadline = Instant::now() + self.iut.timeouts.ready();
        loop {
            if tokio::net::TcpStream::connect((host.as_str(), port))
                .await
                .is_ok()
            {
                break;
            }
            if let Some(status) = self.driver.as_mut().and_then(|d| d.try_exit_status()) {
                return Err(Deviation::inconclusive(format!(
                    "the provider server exited ({status}) before listening"
                )));
            }
            if Instant::now() >= deadline {
                return Err(Deviation::inconclusive(format!(
                    "the provider server did not accept connections at {url} within {} ms",
                    self.iut.timeouts.ready_ms
                )));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        self.server_url = Some(url);
        Ok(())
    }

    async fn http(&mut self, h: &HttpStep, deadline: Instant) -> Result<(), Deviation> {
        let url = self.server_url.clone().ok_or_else(|| {
            Deviation::error("an http step needs a scenario with role = \"server\"")
        })?;
        let sub = |v: &mut Vars, s: &str| v.substitute_raw(s).map_err(Deviation::error);
        let path = sub(&mut self.vars, &h.path)?;
        let mut headers = Vec::with_capacity(h.headers.len() + 1);
        for (k, v) in &h.headers {
            headers.push((k.clone(), sub(&mut self.vars, v)?));
        }
        let body = match (&h.body, &h.json) {
            (Some(b), _) => sub(&mut self.vars, b)?.into_bytes(),
            (None, Some(j)) => {
                if !headers
                    .iter()
                    .any(|(k, _)| k.eq_ignore_ascii_case("content-type"))
                {
                    headers.push(("content-type".into(), "application/json".into()));
                }
                self.vars
                    .substitute_json(j)
                    .map_err(Deviation::error)?
                    .to_string()
                    .into_bytes()
            }
            (None, None) => Vec::new(),
        };
        let req = HttpRequest {
            method: h.method.clone(),
            path,
            headers,
            body,
        };
        self.transcript.record(
            Direction::ToIut,
            http_text(
                &format!("{} {} HTTP/1.1", req.method, req.path),
                &req.headers,
                &req.body,
            ),
        );
        let result = crate::http::send(&url, &req, deadline).await;
        match &result {
            Ok(r) => self.transcript.record(
                Direction::FromIut,
                http_text(
                    &format!("HTTP/1.1 {} ({} ms)", r.status, r.elapsed.as_millis()),
                    &r.headers,
                    &r.body,
                ),
            ),
            Err(e) => self.transcript.note(format!("HTTP request failed: {e}")),
        }
        self.last_http = Some(result);
        Ok(())
    }

    fn expect_http(&mut self, e: &ExpectHttp) -> Result<(), Deviation> {
        let r = match &self.last_http {
            None => return Err(Deviation::error("expect_http needs an http step before it")),
            Some(Err(why)) => {
                return Err(Deviation::fail_here(
                    format!("an HTTP response with status {:?}", e.status),
                    why.clone(),
                ));
            }
            Some(Ok(r)) => r.clone(),
        };
        let body_text = String::from_utf8_lossy(&r.body).into_owned();
        if !e.status.contains(&r.status) {
            return Err(Deviation::fail_here(
                format!("status {:?}", e.status),
                format!("status {}: {}", r.status, cut(&body_text)),
            ));
        }
        if let Some(ms) = e.within_ms
            && r.elapsed.as_millis() > u128::from(ms)
        {
            return Err(Deviation::fail_here(
                format!("a response within {ms} ms"),
                format!("{} ms", r.elapsed.as_millis()),
            ));
        }
        for (name, want) in &e.headers {
            let want = self.vars.substitute_raw(want).map_err(Deviation::error)?;
            match (want.as_str(), r.header(name)) {
                ("!", None) | ("*", Some(_)) => {}
                ("!", Some(v)) => {
                    return Err(Deviation::fail_here(
                        format!("no {name} header"),
                        format!("{name}: {v}"),
                    ));
                }
                (w, Some(v)) if w == v => {}
                (w, got) => {
                    return Err(Deviation::fail_here(
                        format!("{name}: {w}"),
                        format!("{name}: {}", got.unwrap_or("(absent)")),
                    ));
                }
            }
        }
        if let Some(want) = &e.body {
            let want = self.vars.substitute_raw(want).map_err(Deviation::error)?;
            if want != body_text {
                return Err(Deviation::fail_here(
                    format!("body {want:?}"),
                    format!("body {:?}", cut(&body_text)),
                ));
            }
        }
        if let Some(want) = &e.json {
            let want = self.vars.substitute_json(want).map_err(Deviation::error)?;
            let got: serde_json::Value = serde_json::from_slice(&r.body).map_err(|err| {
                Deviation::fail_here(
                    format!("a JSON body containing {want}"),
                    format!("not JSON ({err}): {}", cut(&body_text)),
                )
            })?;
            event_matches(&want, &got).map_err(|m| {
                Deviation::fail_here(
                    format!("a JSON body containing {want}"),
                    format!("{m} in {}", cut(&body_text)),
                )
            })?;
        }
        for secret in &e.body_excludes {
            let secret = self.vars.substitute_raw(secret).map_err(Deviation::error)?;
            if !secret.is_empty() && body_text.contains(&secret) {
                return Err(Deviation::fail_here(
                    format!("a body without {secret:?}"),
                    cut(&body_text),
                ));
            }
        }
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

    /// Whether an IUT stanza may be skipped while waiting for something else.
    fn ignorable(&self, step: &Step, e: &Element) -> Result<bool, Deviation> {
        if !self.scenario.strict_presence
            && e.name == "presence"
            && e.ns == ns::JABBER_CLIENT
            && e.attr("to").is_none()
            && e.attr("type").is_none()
        {
            return Ok(true);
        }
        if self.ignore.iter().any(|p| pattern::matches(p, e).is_ok()) {
            return Ok(true);
        }
        for p in &step.ignore {
            let text = self.vars_peek(p)?;
            let parsed = pattern::parse(&text).map_err(Deviation::error)?;
            if pattern::matches(&parsed, e).is_ok() {
                return Ok(true);
            }
        }
        Ok(false)
    }

    fn vars_peek(&self, template: &str) -> Result<String, Deviation> {
        // Ignore patterns may only use variables that already exist.
        let mut probe = Vars::new(0);
        for (k, v) in self.known_vars() {
            probe.set(&k, v);
        }
        probe.substitute(template).map_err(Deviation::error)
    }

    fn known_vars(&self) -> Vec<(String, String)> {
        self.vars.snapshot()
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

    async fn connect(
        &mut self,
        c: &crate::scenario::step::Connect,
        deadline: Instant,
    ) -> Result<(), Deviation> {
        let kind = c
            .transport
            .or(self.scenario.transport)
            .unwrap_or(self.iut.transport);
        if !self.iut.claims(&format!("transport.{kind}")) {
            return Err(Deviation::not_applicable(format!(
                "the IUT does not claim transport.{kind}"
            )));
        }
        if let Some(a) = &c.account {
            self.account = self.vars.substitute_raw(a).map_err(Deviation::error)?;
        }
        if let Some(p) = &c.credential {
            self.credential = self.vars.substitute_raw(p).map_err(Deviation::error)?;
        }
        // A new connection replaces the old one (reconnect scenarios).
        if let Some(mut old) = self.conn.take() {
            old.hangup().await;
        }
        let keys = self.keys()?;
        let server_key = keys.noise.public_base64();
        let ca_pem = keys.tls.ca_pem.clone();
        let cmd = serde_json::json!({
            "cmd": "connect",
            "host": "127.0.0.1",
            "port": self.port,
            "transport": kind.as_str(),
            "domain": gk::DOMAIN,
            "account": self.account,
            "credential": self.credential,
            "server_key": if kind == TransportKind::Noise { serde_json::Value::from(server_key) } else { serde_json::Value::Null },
            "ca_pem": if kind == TransportKind::Tls { serde_json::Value::from(ca_pem) } else { serde_json::Value::Null },
            "server_name": gk::DOMAIN,
        });
        let seq = self.send_command(cmd).await?;
        let listener = Arc::clone(&self.listener);
        let tcp = loop {
            tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((tcp, peer)) => {
                        self.transcript.note(format!("accepted TCP connection from {peer}"));
                        // Small writes (header, then features) must not wait for delayed ACKs.
                        let _ = tcp.set_nodelay(true);
                        break tcp;
                    }
                    Err(e) => return Err(Deviation::error(format!("accept failed: {e}"))),
                },
                ev = self.next_event(deadline) => match ev? {
                    None => return Err(Deviation::fail_here(
                        format!("a {kind} connection to 127.0.0.1:{}", self.port),
                        "no connection before the step's deadline",
                    )),
                    Some(ev) if is_unsupported(&ev, seq) => {
                        return Err(Deviation::not_applicable("the IUT answered `unsupported` to connect"));
                    }
                    Some(ev) => self.pending.push_back(ev),
                },
            }
        };
        let keys = self
            .keys
            .take()
            .ok_or_else(|| Deviation::error("no server keys"))?;
        let result = gk::handshake(
            tcp,
            kind,
            c.handshake,
            &keys,
            deadline,
            &self.transcript,
            self.vars.rng(),
        )
        .await;
        self.keys = Some(keys);
        self.conn = result?;
        Ok(())
    }

    /// After binding, the IUT reports `connected` with the JID it was given.
    async fn await_connected(&mut self, jid: &str, deadline: Instant) -> Result<(), Deviation> {
        loop {
            let ev = self.next_event(deadline).await?;
            let Some(ev) = ev else {
                return Err(Deviation::fail(
                    gk::req::BOUND_JID,
                    "the driver event connected after resource binding",
                    "no event before the step's deadline",
                ));
            };
            match ev.get("event").and_then(|e| e.as_str()) {
                Some("connected") => {
                    let got = ev.get("jid").and_then(|j| j.as_str()).unwrap_or_default();
                    if got != jid {
                        return Err(Deviation::fail(
                            gk::req::BOUND_JID,
                            format!("connected with jid {jid}"),
                            ev.to_string(),
                        ));
                    }
                    return Ok(());
                }
                Some("error") | Some("disconnected") => {
                    return Err(Deviation::fail_here(
                        "the driver event connected",
                        ev.to_string(),
                    ));
                }
                _ => {}
            }
        }
    }

    async fn expect(
        &mut self,
        step: &Step,
        alternatives: &[String],
        deadline: Instant,
    ) -> Result<(), Deviation> {
        let mut patterns = Vec::with_capacity(alternatives.len());
        for a in alternatives {
            patterns.push(self.pattern(a)?);
        }
        let expected = alternatives.join("  or  ");
        let expected = self.vars.substitute(&expected).unwrap_or(expected);
        loop {
            let got = self.conn()?.next(deadline).await;
            let Some(Inbound::Stanza(e)) = got else {
                return Err(gk::unexpected(got, &expected, "").into_here());
            };
            let mut first_mismatch = None;
            for p in &patterns {
                match pattern::matches(p, &e) {
                    Ok(captures) => {
                        for (k, v) in captures {
                            self.vars.set(&k, v);
                        }
                        return Ok(());
                    }
                    Err(m) => {
                        first_mismatch.get_or_insert(m);
                    }
                }
            }
            if self.ignorable(step, &e)? {
                self.transcript.note(format!("ignored: <{}>", e.name));
                continue;
            }
            let why = first_mismatch
                .map(|m| format!(" (mismatch at {m})"))
                .unwrap_or_default();
            return Err(Deviation::fail_here(
                expected,
                format!("{}{why}", e.to_xml()),
            ));
        }
    }

    async fn expect_stream_error(
        &mut self,
        step: &Step,
        conds: &[String],
        deadline: Instant,
    ) -> Result<(), Deviation> {
        let expected = format!("<stream:error> with condition {}", conds.join(" or "));
        loop {
            let got = self.conn()?.next(deadline).await;
            let Some(Inbound::Stanza(e)) = got else {
                return Err(gk::unexpected(got, &expected, "").into_here());
            };
            if e.name == "error" && e.ns == ns::STREAMS {
                let cond = e
                    .child_elements()
                    .find(|c| c.ns == ns::STREAM_ERRORS && c.name != "text")
                    .map(|c| c.name.clone());
                return match cond {
                    Some(c) if conds.contains(&c) => Ok(()),
                    _ => Err(Deviation::fail("STREAM-25", expected, e.to_xml())),
                };
            }
            if self.ignorable(step, &e)? {
                continue;
            }
            return Err(Deviation::fail_here(expected, e.to_xml()));
        }
    }

    async fn expect_closed(
        &mut self,
        step: &Step,
        close_tag: bool,
        deadline: Instant,
    ) -> Result<(), Deviation> {
        let Some(_) = self.conn.as_ref() else {
            self.transcript
                .note("no connection left open: the handshake was aborted");
            return Ok(());
        };
        let mut saw_close = false;
        loop {
            let got = self.conn()?.next(deadline).await;
            match got {
                Some(Inbound::Close) => saw_close = true,
                Some(Inbound::Eof(_)) => {
                    if close_tag && !saw_close {
                        return Err(Deviation::fail_here(
                            "</stream:stream> before the connection closes",
                            "the connection closed without the closing tag",
                        ));
                    }
                    return Ok(());
                }
                Some(Inbound::Stanza(e)) if !saw_close && self.ignorable(step, &e)? => {}
                None => {
                    return Err(Deviation::fail_here(
                        "the IUT to close the connection",
                        if saw_close {
                            "</stream:stream>, but the connection stayed open"
                        } else {
                            "the connection stayed open"
                        },
                    ));
                }
                other => {
                    return Err(gk::unexpected(
                        other,
                        "nothing more before the connection closes",
                        "",
                    )
                    .into_here());
                }
            }
        }
    }

    async fn expect_nothing(&mut self, step: &Step, until: Instant) -> Result<(), Deviation> {
        loop {
            let got = self.conn()?.next(until).await;
            match got {
                None => return Ok(()),
                Some(Inbound::Stanza(e)) if self.ignorable(step, &e)? => {}
                other => return Err(gk::unexpected(other, "nothing from the IUT", "").into_here()),
            }
        }
    }

    async fn expect_event(
        &mut self,
        alternatives: &[serde_json::Value],
        deadline: Instant,
    ) -> Result<(), Deviation> {
        let mut expected = Vec::with_capacity(alternatives.len());
        for a in alternatives {
            expected.push(self.vars.substitute_json(a).map_err(Deviation::error)?);
        }
        let names: Vec<&str> = expected
            .iter()
            .filter_map(|e| e.get("event")?.as_str())
            .collect();
        let shown = expected
            .iter()
            .map(|e| e.to_string())
            .collect::<Vec<_>>()
            .join(" or ");
        loop {
            let Some(ev) = self.next_event(deadline).await? else {
                return Err(Deviation::fail_here(
                    format!("driver event {shown}"),
                    "no such event before the step's deadline",
                ));
            };
            if ev.get("event").and_then(|e| e.as_str()) == Some("unsupported") {
                return Err(Deviation::not_applicable(format!("the IUT answered {ev}")));
            }
            if expected.iter().any(|e| event_matches(e, &ev).is_ok()) {
                return Ok(());
            }
            let name = ev.get("event").and_then(|e| e.as_str()).unwrap_or_default();
            if names.contains(&name) {
                return Err(Deviation::fail_here(
                    format!("driver event {shown}"),
                    ev.to_string(),
                ));
            }
            // Other kinds of events (informative ones such as stream_error) are skipped.
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

/// A loopback port that was free a moment ago (for a server IUT to listen on).
fn free_port() -> std::io::Result<u16> {
    let l = std::net::TcpListener::bind(("127.0.0.1", 0))?;
    Ok(l.local_addr()?.port())
}

/// An HTTP message as the transcript shows it.
fn http_text(first: &str, headers: &[(String, String)], body: &[u8]) -> String {
    let mut t = String::from(first);
    for (k, v) in headers {
        t.push_str(&format!("\n{k}: {v}"));
    }
    t.push_str("\n\n");
    t.push_str(&String::from_utf8_lossy(body));
    t
}

/// At most 300 characters of a body, for failure messages.
fn cut(s: &str) -> String {
    if s.chars().count() > 300 {
        format!("{}…", s.chars().take(300).collect::<String>())
    } else {
        s.to_string()
    }
}

fn is_unsupported(ev: &serde_json::Value, seq: u64) -> bool {
    ev.get("event").and_then(|e| e.as_str()) == Some("unsupported")
        && ev
            .get("seq")
            .and_then(|s| s.as_u64())
            .is_none_or(|s| s == seq)
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

impl Deviation {
    /// Drops an empty requirement so the step's or scenario's applies.
    fn into_here(mut self) -> Deviation {
        if self.requirement.as_deref() == Some("") {
            self.requirement = None;
        }
        self
    }
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
