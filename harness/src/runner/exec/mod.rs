//! Plays one scenario against one fresh IUT instance and turns what happens into a verdict.

mod client;
mod device;
mod e2ee;
mod e2ee_expect;
mod e2ee_keys;
mod e2ee_ledger;
mod e2ee_send;
mod enroll;
mod enroll_login;
mod enroll_refused;
mod expect;
mod frames;
mod grading;
mod http;
mod http_proof;
mod idle;
mod media;
mod media_files;
mod media_host;
mod media_post;
mod proxy;
mod proxy_optional;
mod proxy_relay;
mod proxy_steps;
mod push_step;
mod reconnect;
mod truth;
mod watchdog;

use std::collections::VecDeque;
use std::time::Duration;

use tokio::time::Instant;

use super::{Failure, StopSignal, Verdict, Warnings};
use crate::iut::IutConfig;
use crate::iut::driver::Event;
use crate::roles::Deviation;
use crate::roles::conn::IutConn;
use crate::roles::gatekeeper_server::{self as gk, Credentials, ServerKeys};
use crate::scenario::step::Negotiate;
use crate::scenario::vars::Vars;
use crate::scenario::{Action, Role, Scenario, Step, SuiteDirs, pattern};
use crate::transcript::Transcript;
use crate::wire::Element;
use device::Device;
pub use watchdog::TEARDOWN_GRACE;
use watchdog::{error_outcome, scenario_limit};
pub(super) use watchdog::{harness_error, run_guarded};

/// A reconnect starts afresh: nothing before the new stream's bind.
const RECONNECT_AFRESH: &str = "STREAM-36";
/// How long a write to the IUT may wait for the driver events already written to be read.
const SETTLE_LIMIT: Duration = Duration::from_millis(50);
/// How long a stopped IUT gets to exit before it is killed.
const STOP_GRACE: Duration = Duration::from_millis(500);
/// A gatekeeper user the harness plays: stanzas the IUT addresses to it wait in its inbox
/// until a step with `actor = NAME` expects them.
struct GatekeeperUser {
    name: String,
    jid: String,
    bare: String,
    inbox: VecDeque<Element>,
}

/// What a scenario's run gets from the runner besides the scenario and the IUT.
struct Context {
    seed: u64,
    transcript: Transcript,
    /// Marks the processes of this scenario's launch (procs::TOKEN_ENV).
    token: String,
    stop: Option<StopSignal>,
    warnings: Warnings,
}

/// The parties of one scenario: the IUT's instances (each a process with its driver and
/// connections), the harness's gatekeeper server (its keys and the account it serves), its
/// gatekeeper users, and its HTTP client towards a provider server; plus the scenario's
/// bookkeeping (variables, transcript, warnings, the step being played).
struct Exec<'a> {
    scenario: &'a Scenario,
    iut: &'a IutConfig,
    dirs: &'a SuiteDirs,
    transcript: Transcript,
    vars: Vars,
    token: String,
    warnings: Warnings,
    ignore: Vec<Element>,
    /// Index of the step being played.
    step_index: usize,
    /// The IUT's instances: one, or one per name in `devices`.
    devices: Vec<Device>,
    /// The instance the step being played drives or reads.
    cur: usize,
    /// How the IUT process ended, when it had ended by the time a step failed.
    iut_exit: Option<String>,
    /// The gatekeeper server's keys (Noise static key, TLS chain), made on first use.
    keys: Option<ServerKeys>,
    account: String,
    credential: String,
    /// The gatekeeper users of the scenario, with what was routed to them.
    actors: Vec<GatekeeperUser>,
    /// The HTTP client towards the provider server (server role).
    http: http::HttpClient,
    /// The gatekeeper's PEP store, its users' OMEMO devices, and what was sent (SPEC.md §9).
    e2ee: e2ee_ledger::E2eeState,
    /// The enrollment API and the stand-in provider server (SPEC.md §10, §6.1).
    enroll: Option<enroll::EnrollCtx>,
    /// How the current connection's login is judged when it is an enrolled device's.
    enrolled_login: Option<crate::roles::gatekeeper_proof::EnrolledLogin>,
    /// The media host and what was sent, shared and stored (SPEC.md §14).
    media: media::MediaState,
    /// A proxy scenario's proxy, its clients and the gatekeeper behind it (SPEC.md §15).
    proxy: Option<proxy::ProxyState>,
}

type Outcome = (Verdict, Option<Failure>, Option<String>);

impl<'a> Exec<'a> {
    async fn run(
        scenario: &'a Scenario,
        iut: &'a IutConfig,
        dirs: &'a SuiteDirs,
        ctx: Context,
    ) -> Outcome {
        let Context {
            seed,
            transcript,
            token,
            stop,
            warnings,
        } = ctx;
        if let Some(why) = not_applicable(scenario, iut) {
            return (
                Verdict::NotApplicable,
                Some(Failure::outside_steps(
                    "a scenario that applies to this IUT",
                    why,
                )),
                None,
            );
        }
        let names: Vec<Option<String>> = if scenario.devices.is_empty() {
            vec![None]
        } else {
            scenario.devices.iter().cloned().map(Some).collect()
        };
        let mut devices = Vec::with_capacity(names.len());
        for name in names {
            match Device::new(name, &transcript).await {
                Ok(d) => devices.push(d),
                Err(e) => return error_outcome(e),
            }
        }
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
        // What the IUT claims, for checks that hold in both directions ("listed if and only
        // if declared", STANZA-8): `${iut.lacks.chatstates}` is `true` or `false`.
        for cap in crate::scenario::known_capabilities() {
            vars.set(&format!("iut.lacks.{cap}"), (!iut.claims(cap)).to_string());
        }
        let mut actors = Vec::with_capacity(scenario.actors.len());
        for name in &scenario.actors {
            let bare = format!("{name}@{}", gk::DOMAIN);
            let resource = crate::roles::random_token(vars.rng(), 8);
            let jid = format!("{bare}/gc-{resource}");
            vars.set(&format!("{name}.bare"), bare.clone());
            vars.set(&format!("{name}.jid"), jid.clone());
            actors.push(GatekeeperUser {
                name: name.clone(),
                jid,
                bare,
                inbox: VecDeque::new(),
            });
        }
        let mut exec = Exec {
            scenario,
            iut,
            dirs,
            transcript,
            vars,
            token,
            warnings,
            ignore: Vec::new(),
            step_index: 0,
            devices,
            cur: 0,
            iut_exit: None,
            keys: None,
            account,
            credential,
            actors,
            http: http::HttpClient::default(),
            e2ee: e2ee_ledger::E2eeState::default(),
            enroll: None,
            enrolled_login: None,
            media: media::MediaState::default(),
            proxy: None,
        };
        let limit = scenario_limit(scenario, iut);
        let mut current: Option<(usize, &Step)> = None;
        let interrupted = async {
            match stop {
                Some(mut s) => s.stopped().await,
                None => std::future::pending().await,
            }
        };
        let result = tokio::select! {
            r = tokio::time::timeout(limit, exec.play(&mut current)) => r.map_err(|_| None),
            why = interrupted => Err(Some(why)),
        };
        // Only when the connection ended does the IUT's death explain the failure.
        let failed = exec.cur;
        let conn_ended = exec.devices[failed]
            .conn
            .as_ref()
            .is_none_or(IutConn::is_ended);
        if matches!(&result, Ok(Err(d)) if d.verdict == Verdict::Fail)
            && conn_ended
            && let Some(driver) = exec.devices[failed].driver.as_mut()
        {
            // A connection reset often comes a moment before the process is reaped.
            exec.iut_exit = driver
                .exit_status_within(Duration::from_millis(100))
                .await
                .map(|s| s.to_string());
        }
        let mut outcome = match result {
            Ok(Ok(())) => exec.after_pass().await.map_or((Verdict::Pass, None), |d| {
                (d.verdict, Some(exec.failure_after_steps(d)))
            }),
            Ok(Err(d)) => (d.verdict, Some(exec.failure(d, current))),
            Err(None) => (
                Verdict::Fail,
                Some(exec.failure(
                    Deviation::fail_here(
                        format!("the scenario to finish within {} ms", limit.as_millis()),
                        "the IUT kept it waiting",
                    ),
                    current,
                )),
            ),
            Err(Some(why)) => (
                Verdict::Inconclusive,
                Some(exec.failure(
                    Deviation::inconclusive(format!(
                        "the run was interrupted ({why}) during this scenario"
                    )),
                    current,
                )),
            ),
        };
        let stderr = match tokio::time::timeout(TEARDOWN_GRACE, exec.teardown()).await {
            Ok((stderr, lie)) => {
                if let (Verdict::Pass, Some(d)) = (outcome.0, lie) {
                    outcome = (d.verdict, Some(exec.failure_after_steps(d)));
                }
                stderr
            }
            Err(_) => {
                exec.transcript.note(format!(
                    "teardown took longer than {} ms: connection dropped, IUT killed",
                    TEARDOWN_GRACE.as_millis()
                ));
                exec.force_teardown()
            }
        };
        (outcome.0, outcome.1, stderr)
    }

    async fn play(&mut self, current: &mut Option<(usize, &'a Step)>) -> Result<(), Deviation> {
        for p in &self.scenario.ignore {
            let parsed = self.pattern(p)?;
            self.ignore.push(parsed);
        }
        match self.scenario.role {
            Role::Client => {
                if self.scenario.chain {
                    // The IUT's own server first: its clients are told where it is.
                    if !self.iut.roles.contains(&Role::Server) {
                        return Err(Deviation::not_applicable(
                            "a chain scenario needs an IUT that plays client and server (SPEC.md §6.1)",
                        ));
                    }
                    self.launch_server().await?;
                }
                for i in 0..self.devices.len() {
                    self.cur = i;
                    self.launch().await?;
                }
                self.cur = 0;
            }
            Role::Server => self.launch_server().await?,
            Role::Proxy => self.launch_proxy().await?,
        }
        let steps = &self.scenario.steps;
        for (i, step) in steps.iter().enumerate() {
            *current = Some((i, step));
            self.step_index = i;
            self.cur = self.device_index(step.device.as_deref())?;
            let deadline = Instant::now() + self.wait_of(step);
            self.transcript.note(format!(
                "step {} (line {}): {}",
                i + 1,
                step.line,
                step.action.name()
            ));
            let played = self.step(step, deadline).await;
            if let Err(d) = played.map_err(|d| self.proxy_charge(step, d)) {
                let Some(should) = self.should_level(&d, step) else {
                    return Err(d);
                };
                // A SHOULD not met is a warning, never a failure (SPEC.md §2.1); what the
                // later steps would check cannot be judged from here.
                self.warn(should, d.expected, d.got, Some((i, step)));
                if i + 1 < steps.len() {
                    self.transcript.note(format!(
                        "steps {} to {} not run after the warning",
                        i + 2,
                        steps.len()
                    ));
                }
                break;
            }
            for d in &mut self.devices {
                d.check_no_extra_connection().await?;
            }
            self.check_e2ee_claims()?;
            self.proxy_after_step()?;
        }
        *current = None;
        Ok(())
    }

    /// After the last step passed: what each device reported meanwhile, and extra
    /// connections.
    async fn after_pass(&mut self) -> Option<Deviation> {
        for d in &mut self.devices {
            if let Some(lie) = d.after_pass().await {
                return Some(lie);
            }
        }
        if let Err(d) = self.check_e2ee_claims() {
            return Some(d);
        }
        if let Err(d) = self.check_sent_claims().await {
            return Some(d);
        }
        if let Err(d) = self.proxy_after_step() {
            return Some(d);
        }
        // Strict matching holds for the gatekeeper users too: what the IUT sent one of them
        // and no step expected is as unexpected as a stray stanza to the server. Receipts a
        // user asked for need no step (STANZA-14 judged them as they came).
        for u in &mut self.actors {
            let e2ee = &self.e2ee;
            u.inbox.retain(|e| !e2ee.is_requested_receipt(e));
        }
        let user = self.actors.iter().find(|u| !u.inbox.is_empty())?;
        let stray: Vec<String> = user.inbox.iter().map(Element::to_xml).collect();
        Some(Deviation::fail_here(
            format!("nothing more for gatekeeper user {}", user.name),
            format!("stanza(s) no step expected: {}", stray.join(" ")),
        ))
    }

    /// The device a step names (`device = "laptop"`), or the first.
    fn device_index(&self, name: Option<&str>) -> Result<usize, Deviation> {
        let Some(name) = name else { return Ok(0) };
        self.devices
            .iter()
            .position(|d| d.name.as_deref() == Some(name))
            .ok_or_else(|| Deviation::error(format!("no device {name}")))
    }

    /// The IUT instance the current step drives or reads.
    fn dev(&mut self) -> &mut Device {
        &mut self.devices[self.cur]
    }

    async fn next_event(&mut self, deadline: Instant) -> Result<Option<Event>, Deviation> {
        self.dev().next_event(deadline).await
    }

    async fn send_command(&mut self, cmd: serde_json::Value) -> Result<u64, Deviation> {
        self.dev().send_command(cmd).await
    }

    fn pattern(&mut self, template: &str) -> Result<Element, Deviation> {
        let text = self.vars.substitute(template).map_err(Deviation::error)?;
        pattern::parse(&text).map_err(Deviation::error)
    }

    fn conn(&mut self) -> Result<&mut IutConn, Deviation> {
        self.dev().conn()
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
        if matches!(
            step.action,
            Action::Send(_)
                | Action::SendFixture(_)
                | Action::SendFrame { .. }
                | Action::CloseStream
                | Action::Hangup
                | Action::E2eeSend(_)
        ) && let Some(driver) = &self.dev().driver
        {
            // What the IUT reported before this write is stamped before it (DRIVER-3).
            driver.settle(SETTLE_LIMIT).await;
        }
        match &step.action {
            Action::Connect(c) => self.connect(c, deadline).await,
            Action::KeepConnected { refuse, transport } => {
                self.keep_connected(step, *refuse, *transport, deadline)
                    .await
            }
            Action::Negotiate(n) => self.negotiate(n, deadline).await,
            Action::Send(template) => {
                let text = self.vars.substitute(template).map_err(Deviation::error)?;
                let text = match &step.actor {
                    Some(name) => {
                        let (text, to) = self.routed_from(name, &text)?;
                        // The server delivers to the device whose full JID is addressed.
                        if let Some(j) = self
                            .devices
                            .iter()
                            .position(|d| d.jid.is_some() && d.jid == to)
                        {
                            self.cur = j;
                        }
                        text
                    }
                    None => text,
                };
                self.write_bounded(text.as_bytes(), deadline).await
            }
            Action::SendFixture(rel) => {
                let path = self.dirs.fixtures.join(rel);
                let bytes = crate::wire::fixture_bytes(&path)
                    .map_err(|e| Deviation::error(format!("fixture {}: {e}", path.display())))?;
                self.write_bounded(&bytes, deadline).await
            }
            Action::SendFrame { text, mode } => {
                self.send_frame(text.as_deref(), *mode, deadline).await
            }
            Action::ExpectAbort => self.expect_abort(step, deadline).await,
            Action::Expect(alternatives) => self.expect(step, alternatives, deadline).await,
            Action::ExpectStreamError(expect) => {
                self.expect_stream_error(step, expect, deadline).await
            }
            Action::ExpectClosed { close_tag, within } => {
                self.expect_closed(step, *close_tag, within.as_deref(), deadline)
                    .await
            }
            Action::ExpectNothing(d) => self.expect_nothing(step, Instant::now() + *d).await,
            Action::Driver(cmd) => {
                let cmd = self.vars.substitute_json(cmd).map_err(Deviation::error)?;
                if let Some(text) = cmd.get("text").and_then(|t| t.as_str()) {
                    // User content the IUT must never put on the wire in clear (E2EE-20).
                    self.e2ee.texts.push(text.to_string());
                }
                self.send_command(cmd).await.map(|_| ())
            }
            Action::ExpectEvent(alternatives) => self.expect_event(alternatives, deadline).await,
            Action::Idle(d) => self.idle(step, *d).await,
            Action::Sleep(d) => {
                // The gatekeeper keeps serving while the scenario waits.
                let until = Instant::now() + *d;
                while Instant::now() < until {
                    tokio::time::sleep_until(until.min(Instant::now() + expect::SERVICE_SLICE))
                        .await;
                    self.service_connections(until).await?;
                }
                Ok(())
            }
            Action::CloseStream => {
                let conn = self.conn()?;
                match tokio::time::timeout_at(deadline, conn.send_close()).await {
                    Ok(r) => r.map_err(Deviation::io),
                    Err(_) => Err(Deviation::fail_here(
                        "an IUT that reads its connection",
                        "</stream:stream> could not be written before the step's deadline",
                    )),
                }
            }
            Action::Hangup => {
                self.conn()?.hangup().await;
                Ok(())
            }
            Action::Http(h) => self.http(h, deadline).await,
            Action::ExpectHttp(e) => self.expect_http(e),
            Action::E2eeSend(s) => {
                let actor = step.actor.as_deref().unwrap_or_default();
                self.e2ee_send(step, actor, s, deadline).await
            }
            Action::E2eeExpect(x) => {
                let actor = step.actor.as_deref().unwrap_or_default();
                self.e2ee_expect(step, actor, x, deadline).await
            }
            Action::E2eeKeys(k) => self.e2ee_keys(step, k, deadline).await,
            Action::Enroll(e) => self.enroll(e, deadline).await,
            Action::Push(p) => self.push(p, deadline).await,
            Action::E2eeDevices(d) => {
                let actor = step.actor.as_deref().unwrap_or_default();
                self.e2ee_devices(actor, d, deadline).await
            }
            Action::Media(m) => self.media(step, m, deadline).await,
            Action::Proxy(p) => self.proxy_step(step, p, deadline).await,
        }
    }

    /// Negotiates the stream on the current device's connection as the gatekeeper; after a
    /// bind, the device must report `connected` with the bound JID.
    async fn negotiate(&mut self, n: &Negotiate, deadline: Instant) -> Result<(), Deviation> {
        let login = self.enrolled_login.take();
        let (creds_account, creds_credential) = match &login {
            Some(l) => (l.account.clone(), l.credential.clone()),
            None => (self.account.clone(), self.credential.clone()),
        };
        let creds = Credentials {
            account: &creds_account,
            credential: &creds_credential,
            enrolled: login.as_ref(),
        };
        let dev = &mut self.devices[self.cur];
        let label = dev.label();
        let conn = dev.conn.as_mut().ok_or_else(|| {
            Deviation::error(format!("{label}negotiate needs a completed handshake"))
        })?;
        // On a reconnect, a stanza before the new stream's bind is STREAM-36's own case.
        let reconnect = dev.past_conns.iter().any(|f| f.bound_at.is_some());
        let done = gk::negotiate(conn, n, &creds, deadline, self.vars.rng())
            .await
            .map_err(|mut d| {
                if reconnect && d.requirement.as_deref() == Some(gk::req::BIND_FIRST) {
                    d.requirement = Some(RECONNECT_AFRESH.into());
                    d.got = format!("{} (on a reconnect, after an earlier bound stream)", d.got);
                }
                d
            })?;
        if let Some(jid) = done.jid {
            // The bind result was the last thing written: `connected` may follow it.
            conn.facts.bound_at = conn.facts.last_write_at;
            dev.jid = Some(jid.clone());
            dev.idle_limit = n.idle_limit;
            match dev.name.clone() {
                Some(name) => {
                    if self.cur == 0 {
                        self.vars.set("client.jid", jid.clone());
                    }
                    self.vars.set(&format!("{name}.jid"), jid.clone());
                }
                None => self.vars.set("client.jid", jid.clone()),
            }
            self.await_connected(&jid, deadline).await?;
        }
        Ok(())
    }

    /// Writes to the IUT within the step's deadline. A receiver may refuse a hostile input
    /// before reading all of it: a write cut short is noted, and the next step judges the IUT.
    async fn write_bounded(&mut self, bytes: &[u8], deadline: Instant) -> Result<(), Deviation> {
        let conn = self.conn()?;
        match tokio::time::timeout_at(deadline, conn.send(bytes)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => self.transcript.note(format!("write stopped: {e}")),
            Err(_) => self
                .transcript
                .note("write stopped: the IUT stopped reading"),
        }
        Ok(())
    }

    /// Closes the connections, stops every IUT instance and everything it started, and
    /// returns their stderr tails and the first false event reported meanwhile. Each part is
    /// bounded; the caller bounds the whole by [`TEARDOWN_GRACE`]. Instances stop together.
    async fn teardown(&mut self) -> (Option<String>, Option<Deviation>) {
        if let Some(p) = self.http.server_process.as_mut() {
            // A chain scenario's server: stopped, not asked to stop.
            p.kill().await;
        }
        // A server or a proxy is not driven: it is stopped, not asked to stop.
        let server = self.scenario.role != Role::Client;
        let stops = self.devices.iter_mut().map(|d| async move {
            d.retire_conn().await;
            let mut lie = d.drain_checked();
            let driver = d.driver.as_mut()?;
            if server {
                // A server is not driven: it is stopped, not asked to stop.
                driver.kill().await;
            } else {
                driver.stop(STOP_GRACE).await;
            }
            let stderr = driver.stderr_tail().await;
            if lie.is_none() {
                lie = d.drain_checked();
            }
            Some((d.label(), stderr, lie))
        });
        let mut stderr: Option<String> = None;
        let mut first_lie = None;
        for (label, tail, lie) in futures_util::future::join_all(stops)
            .await
            .into_iter()
            .flatten()
        {
            let text = stderr.get_or_insert_with(String::new);
            if !label.is_empty() {
                text.push_str(&format!("--- {label}\n"));
            }
            text.push_str(&tail);
            if first_lie.is_none() {
                first_lie = lie;
            }
        }
        (stderr, first_lie)
    }

    /// Teardown that ran out of time: drop the connections, kill every process at once.
    fn force_teardown(&mut self) -> Option<String> {
        if let Some(p) = self.http.server_process.as_mut() {
            p.kill_now();
        }
        let mut stderr: Option<String> = None;
        for d in &mut self.devices {
            d.conn = None;
            let label = d.label();
            if let Some(driver) = d.driver.as_mut() {
                driver.kill_now();
                let text = stderr.get_or_insert_with(String::new);
                if !label.is_empty() {
                    text.push_str(&format!("--- {label}\n"));
                }
                text.push_str(&driver.stderr_now());
            }
        }
        stderr
    }
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
    let claimed: Vec<&str> = s
        .needs_not
        .iter()
        .filter(|n| iut.claims(n))
        .map(String::as_str)
        .collect();
    if !claimed.is_empty() {
        return Some(format!(
            "the scenario is for IUTs without {}, which this IUT claims",
            claimed.join(", ")
        ));
    }
    None
}
