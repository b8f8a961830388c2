//! gatecheck-reference: the reference provider, driven over the driver protocol (harness/DRIVER.md).
//!
//! Modelled on rustls' BoGo shim: arguments are read in one flat loop, commands are dispatched
//! in one flat `match`, and failures are mapped onto the protocol's vocabulary in one place
//! ([`client::Failure`]). Logs go to stderr; stdout carries only driver events.
#![forbid(unsafe_code)]

mod client;
mod driver;
mod mutant;
mod proxy;
mod reconnect;
mod server;

use std::process::ExitCode;

use base64::Engine as _;

use driver::{Command, Event, EventSink, InputLine, parse_command, spawn_stdin_reader};
use mutant::Mutant;

const NAME: &str = "gatecheck-reference";
const VERSION: &str = env!("CARGO_PKG_VERSION");
const ROLES: &[&str] = &["client"];
const FEATURES: &[&str] = &["transport.noise", "transport.tls", "media", "chatstates"];

const EXIT_USAGE: u8 = 2;
const USAGE: &str = "usage: gatecheck-reference [--mutant NAME] [--list-mutants] \
[client|server ARGS...|proxy ARGS...]";

/// The async runtime both roles run on; `None` (after saying why on stderr) when the
/// operating system will not give it.
fn runtime() -> Option<tokio::runtime::Runtime> {
    match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => Some(runtime),
        Err(e) => {
            eprintln!("{NAME}: cannot start the async runtime: {e}");
            None
        }
    }
}

fn main() -> ExitCode {
    let mut mutant = Mutant::None;
    let mut list = false;
    let mut role = "client".to_owned();
    // Everything after `server` or `proxy` is that role's own (server::USAGE, proxy::USAGE).
    let mut server_args = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mutant_name = match arg.as_str() {
            "--list-mutants" => {
                list = true;
                continue;
            }
            "--mutant" => match args.next() {
                Some(name) => name,
                None => return usage_error("--mutant needs a NAME"),
            },
            "-h" | "--help" => {
                println!("{USAGE}");
                return ExitCode::SUCCESS;
            }
            "server" | "proxy" => {
                role = arg;
                server_args.extend(args.by_ref());
                continue;
            }
            "client" => {
                role = arg;
                continue;
            }
            other => match other.strip_prefix("--mutant=") {
                Some(name) => name.to_owned(),
                None => return usage_error(&format!("unknown argument {other:?}")),
            },
        };
        match Mutant::from_name(&mutant_name) {
            Some(m) => mutant = m,
            None => {
                return usage_error(&format!(
                    "unknown mutant {mutant_name:?} (see --list-mutants)"
                ));
            }
        }
    }

    if list {
        for m in Mutant::ALL {
            println!("{}\t{}\t{}", m.name(), m.requirement(), m.description());
        }
        return ExitCode::SUCCESS;
    }
    if let Some(fits) = mutant.role()
        && fits != role
    {
        return usage_error(&format!(
            "mutant {} applies to the {fits} role, not to {role}",
            mutant.name()
        ));
    }
    if role == "server" {
        return server::main(mutant, server_args);
    }
    if role == "proxy" {
        return proxy::main(mutant, server_args);
    }
    if role != "client" {
        eprintln!("{NAME}: role {role:?} is not implemented yet");
        return ExitCode::from(EXIT_USAGE);
    }

    let Some(runtime) = runtime() else {
        return ExitCode::from(EXIT_USAGE);
    };
    runtime.block_on(run_client(mutant));
    // Lingering connections (mutants) and the stdin reader must not keep the process alive.
    runtime.shutdown_background();
    ExitCode::SUCCESS
}

fn usage_error(message: &str) -> ExitCode {
    eprintln!("{NAME}: {message}\n{USAGE}");
    ExitCode::from(EXIT_USAGE)
}

/// The client role's driver loop: commands from stdin and bytes from the session, whichever
/// comes first, until `shutdown` or the end of stdin.
async fn run_client(mutant: Mutant) {
    let mut events = EventSink::new();
    if mutant != Mutant::None {
        eprintln!(
            "{NAME}: running mutant {} (breaks {})",
            mutant.name(),
            mutant.requirement()
        );
    }
    events
        .emit(Event::Ready {
            driver: driver::DRIVER_VERSION,
            name: NAME,
            version: VERSION,
            roles: ROLES,
            features: FEATURES,
            mutant: (mutant != Mutant::None).then(|| mutant.name()),
        })
        .await;

    let mut commands = spawn_stdin_reader();
    let mut session: Option<client::Session> = None;
    // The OMEMO device: made at the first identity, enroll or connect, kept for the process's
    // lifetime (E2EE-1); a device id conflict renumbers it (ENROLL-12).
    let mut omemo: Option<client::Omemo> = None;
    // The latest successful enrollment: what a connect without account logs in as (ENROLL-9).
    let mut enrollment: Option<client::enroll::Enrollment> = None;
    // The user the client signed in as at its own provider: identifier and token.
    let mut provider_user: Option<(String, String)> = None;
    // The last enrolled login's endpoint: where a push wake-up connects (PUSH-10).
    let mut last_login: Option<Box<driver::EnrolledConnect>> = None;
    // Wake-ups from the own server, watched once an enrollment went through it.
    let (wake_tx, mut wake_rx) = tokio::sync::mpsc::channel::<()>(4);
    let mut watching = false;
    // Set by keep_connected: we reconnect by ourselves until disconnect or shutdown.
    let mut keep: Option<reconnect::Keep> = None;
    // A session of this process reached binding: later logins are reconnects (STREAM-36).
    let mut was_bound = false;
    // Media uploads and downloads run beside the loop and report here (SPEC.md §14).
    let (media_tx, mut media_rx) = tokio::sync::mpsc::channel::<client::media::Done>(16);
    loop {
        tokio::select! {
            line = commands.recv() => {
                let Some(line) = line else {
                    // The harness went away: close as for shutdown.
                    if let Some(s) = session.take() {
                        end_sends(&mut omemo, &mut events).await;
                        s.disconnect().await;
                    }
                    return;
                };
                let text = match line {
                    InputLine::Line(text) if text.trim().is_empty() => continue,
                    InputLine::Line(text) => text,
                    InputLine::TooLong => {
                        bad_command(&mut events, None, "line longer than 1 MiB").await;
                        continue;
                    }
                    InputLine::NotUtf8 => {
                        bad_command(&mut events, None, "line is not UTF-8").await;
                        continue;
                    }
                };
                let (seq, command) = match parse_command(&text) {
                    Ok(parsed) => parsed,
                    Err(bad) => {
                        bad_command(&mut events, bad.seq, &bad.detail).await;
                        continue;
                    }
                };
                match command {
                    Command::ConnectEnrolled(_) | Command::Connect(_)
                        if session.is_some() || keep.is_some() =>
                    {
                        bad_command(&mut events, Some(seq), "already connected").await;
                    }
                    Command::ConnectEnrolled(login) => {
                        // ENROLL-9: the latest enrollment's account, domain, credential and
                        // key, with the command's fresh proof.
                        let Some(enrolled) = enrollment.as_ref() else {
                            if mutant == Mutant::LoginWithoutEnrollment
                                && let Some((identifier, token)) = &provider_user
                            {
                                // ENROLL-1 deviation: the correct client has no credential
                                // without a successful enrollment, so it does not log in.
                                let params = client::enroll::unenrolled_params(&login, identifier, token);
                                connect_command(Some(seq), &params, mutant, &mut was_bound, &mut session, &mut omemo, &mut keep, &mut events).await;
                                continue;
                            }
                            // ENROLL-1: no enrollment result, so no stream and no SASL.
                            events
                                .emit(Event::Error {
                                    seq: Some(seq),
                                    code: "not-enrolled",
                                    detail: "connect without account and credential, but no enrollment succeeded".into(),
                                })
                                .await;
                            continue;
                        };
                        let fresh = match (&login.proof, &provider_user) {
                            (Some(p), _) => Ok(p.clone()),
                            // The whole chain: a fresh proof from the own server (IDPROOF-14).
                            (None, Some((identifier, token))) => {
                                let device = device(&mut omemo, mutant);
                                client::enroll::proof_from_own_server(identifier, token, &device.identity_key(), enrolled.device_id).await
                            }
                            (None, None) => Err("connect without a proof, and no own server to ask".to_string()),
                        };
                        let fresh = match fresh {
                            Ok(f) => f,
                            Err(why) => {
                                bad_command(&mut events, Some(seq), &why).await;
                                continue;
                            }
                        };
                        let params = client::enroll::login_params(&login, &fresh, enrolled, mutant);
                        connect_command(Some(seq), &params, mutant, &mut was_bound, &mut session, &mut omemo, &mut keep, &mut events).await;
                        last_login = Some(login);
                    }
                    Command::Connect(params) => {
                        connect_command(Some(seq), &params, mutant, &mut was_bound, &mut session, &mut omemo, &mut keep, &mut events).await;
                    }
                    Command::Identity => {
                        let device = device(&mut omemo, mutant);
                        let identity_key = base64::engine::general_purpose::STANDARD.encode(device.identity_key());
                        events.emit(Event::Identity { seq, identity_key, device_id: device.device_id() }).await;
                    }
                    Command::Enroll(params) => {
                        // Who the client's own server knows the user as, for later proofs.
                        provider_user = Some((params.identifier.clone(), params.token.clone()));
                        let device = device(&mut omemo, mutant);
                        let device_id = device.device_id();
                        let keys = device.enrollment_keys();
                        match client::enroll::enroll(&params, device_id, &keys, mutant).await {
                            Err(detail) => bad_command(&mut events, Some(seq), &detail).await,
                            Ok(client::enroll::Outcome::Enrolled(e)) => {
                                let credential = if mutant == Mutant::CredentialInEvent {
                                    // ENROLL-10 deviation: the correct client never shows the
                                    // credential outside the SASL exchange.
                                    Some(e.credential_for_mutant().to_owned())
                                } else {
                                    None
                                };
                                events.emit(Event::Enrolled { seq, account: e.account.clone(), domain: e.domain.clone(), device_id: e.device_id, credential }).await;
                                if !watching && mutant != Mutant::IgnorePush
                                    && let Some((identifier, _)) = provider_user.clone()
                                    && client::enroll::own_server().is_some()
                                {
                                    // The provider's own channel to its client (a mobile push
                                    // service in real life): the reference polls its server.
                                    watching = true;
                                    tokio::spawn(client::enroll::watch_wakes(identifier, e.device_id, wake_tx.clone()));
                                }
                                // The latest enrollment wins (ENROLL-9).
                                enrollment = Some(e);
                            }
                            Ok(failed @ client::enroll::Outcome::Failed { .. }) => {
                                if failed.is_device_id_conflict() {
                                    if mutant == Mutant::SameDeviceIdAfterConflict {
                                        // ENROLL-12 deviation: the correct client draws a new
                                        // device id after a conflict.
                                    } else {
                                        device.renumber();
                                        eprintln!("{NAME}: device id conflict: now device {}", device.device_id());
                                    }
                                }
                                if let client::enroll::Outcome::Failed { status, code } = failed {
                                    events.emit(Event::EnrollFailed { seq, status, code }).await;
                                }
                            }
                        }
                    }
                    Command::KeepConnected(params) => {
                        if session.is_some() || keep.is_some() {
                            bad_command(&mut events, Some(seq), "already connected").await;
                            continue;
                        }
                        // The first attempt is due at once; the `due` arm makes it.
                        keep = Some(reconnect::Keep::new(params, seq, mutant));
                    }
                    Command::Disconnect => match (keep.take(), session.take()) {
                        (_, Some(s)) => {
                            end_sends(&mut omemo, &mut events).await;
                            s.disconnect().await;
                            events.emit(local_disconnect(seq)).await;
                        }
                        (Some(_), None) => {
                            bad_command(&mut events, Some(seq), "not connected (reconnect attempts stopped)").await;
                        }
                        (None, None) => bad_command(&mut events, Some(seq), "not connected").await,
                    },
                    Command::Shutdown => {
                        if let Some(s) = session.take() {
                            end_sends(&mut omemo, &mut events).await;
                            s.disconnect().await;
                            events.emit(local_disconnect(seq)).await;
                        }
                        return;
                    }
                    Command::SendText(params) => {
                        if let Err(detail) = check_send_text(&params) {
                            bad_command(&mut events, Some(seq), &detail).await;
                            continue;
                        }
                        let (Some(s), Some(o)) = (session.as_mut(), omemo.as_mut()) else {
                            events.emit(Event::SendFailed { seq, reason: "not-connected" }).await;
                            continue;
                        };
                        let actions = o.send_text(seq, &params.to, &params.text, tokio::time::Instant::now());
                        if let Err(failure) = s.perform(actions, &mut events).await {
                            session = None;
                            session_ended(failure, &mut events, keep.as_mut(), &mut omemo).await;
                        }
                    }
                    Command::SendChatState(params) => {
                        if let Err(detail) = check_chat_state(&params) {
                            bad_command(&mut events, Some(seq), &detail).await;
                            continue;
                        }
                        let Some(s) = session.as_mut() else {
                            bad_command(&mut events, Some(seq), "not connected").await;
                            continue;
                        };
                        if let Err(failure) = s.send_chat_state(&params.to, &params.state).await {
                            session = None;
                            session_ended(failure, &mut events, keep.as_mut(), &mut omemo).await;
                        }
                    }
                    Command::SendMedia(params) => {
                        if let Some(answer) = client::media::send(seq, *params, session.is_some(), mutant, &media_tx) {
                            events.emit(answer).await;
                        }
                    }
                    Command::Unsupported(cmd) => {
                        events.emit(Event::Unsupported { seq, cmd }).await;
                    }
                }
            }
            () = reconnect::due(&keep), if session.is_none() => {
                let Some(k) = keep.as_mut() else { continue };
                let mut notes = Vec::new();
                let outcome = client::connect(&k.params, mutant, was_bound, &mut notes).await;
                for note in notes {
                    events.emit(note).await;
                }
                match outcome {
                    Ok(mut s) => {
                        k.connected();
                        let seq = k.unanswered.take();
                        events.emit(Event::Connected { seq, jid: s.jid().to_owned() }).await;
                        was_bound = true;
                        let domain = k.params.domain.clone();
                        match publish_keys(&mut s, &mut omemo, mutant, &domain, &mut events).await {
                            Ok(()) => session = Some(s),
                            Err(failure) => {
                                session_ended(failure, &mut events, keep.as_mut(), &mut omemo).await;
                            }
                        }
                    }
                    Err(failure) => {
                        // Attempts are not answers: the command stays pending until a session.
                        eprintln!("{NAME}: connection attempt failed: {failure}");
                        for event in failure.events(None) {
                            if !matches!(event, Event::Error { .. }) {
                                events.emit(event).await;
                            }
                        }
                        k.failed();
                    }
                }
            }
            () = session_timer(session.as_ref().zip(omemo.as_ref()).map(|(s, o)| s.timer_at(o))) => {
                let (Some(s), Some(o)) = (session.as_mut(), omemo.as_mut()) else { continue };
                if let Err(failure) = s.on_timer(o, &mut events).await {
                    session = None;
                    session_ended(failure, &mut events, keep.as_mut(), &mut omemo).await;
                }
            }
            Some(()) = wake_rx.recv() => {
                // PUSH-10: woken while not connected, report it and log in as the enrolled
                // device, with a fresh proof from the own server.
                if session.is_some() || keep.is_some() {
                    continue;
                }
                let (Some(login), Some(enrolled), Some((identifier, token))) = (&last_login, &enrollment, &provider_user) else { continue };
                events.emit(Event::PushReceived { device_id: enrolled.device_id }).await;
                let device = device(&mut omemo, mutant);
                match client::enroll::proof_from_own_server(identifier, token, &device.identity_key(), enrolled.device_id).await {
                    Ok(fresh) => {
                        let params = client::enroll::login_params(login, &fresh, enrolled, mutant);
                        connect_command(None, &params, mutant, &mut was_bound, &mut session, &mut omemo, &mut keep, &mut events).await;
                    }
                    Err(why) => eprintln!("{NAME}: woken, but no proof from the own server: {why}"),
                }
            }
            Some(done) = media_rx.recv() => match done {
                client::media::Done::Answer(event) => events.emit(event).await,
                client::media::Done::Uploaded { seq, to, reference } => {
                    // The object is stored: its reference goes out as send_text's text would.
                    let (Some(s), Some(o)) = (session.as_mut(), omemo.as_mut()) else {
                        events.emit(Event::SendFailed { seq, reason: "not-connected" }).await;
                        continue;
                    };
                    let actions = o.send_text(seq, &to, &reference, tokio::time::Instant::now());
                    if let Err(failure) = s.perform(actions, &mut events).await {
                        session = None;
                        session_ended(failure, &mut events, keep.as_mut(), &mut omemo).await;
                    }
                }
            },
            inbound = next_inbound(&mut session) => {
                let (Some(s), Some(o)) = (session.as_mut(), omemo.as_mut()) else { continue };
                let outcome = s.on_inbound(inbound, o, &mut events).await;
                client::media::spawn_downloads(s, mutant, &media_tx);
                if let Err(failure) = outcome {
                    session = None;
                    session_ended(failure, &mut events, keep.as_mut(), &mut omemo).await;
                }
            }
        }
    }
}

/// Answers a `connect` (a provisioned account's, or an enrolled device's once its
/// parameters were resolved): `connected` and the key publication, or the failure's events.
#[allow(clippy::too_many_arguments)] // the driver loop's state, lent for one command
async fn connect_command(
    seq: Option<i64>,
    params: &driver::ConnectParams,
    mutant: Mutant,
    was_bound: &mut bool,
    session: &mut Option<client::Session>,
    omemo: &mut Option<client::Omemo>,
    keep: &mut Option<reconnect::Keep>,
    events: &mut EventSink,
) {
    let mut notes = Vec::new();
    let outcome = client::connect(params, mutant, *was_bound, &mut notes).await;
    for note in notes {
        events.emit(note).await;
    }
    match outcome {
        Ok(mut s) => {
            events
                .emit(Event::Connected {
                    seq,
                    jid: s.jid().to_owned(),
                })
                .await;
            *was_bound = true;
            match publish_keys(&mut s, omemo, mutant, &params.domain, events).await {
                Ok(()) => *session = Some(s),
                Err(failure) => {
                    session_ended(failure, events, keep.as_mut(), omemo).await;
                }
            }
        }
        Err(failure) => {
            eprintln!("{NAME}: connect failed: {failure}");
            for event in failure.events(seq) {
                events.emit(event).await;
            }
        }
    }
}

/// The OMEMO device, made now if this is its first use: its id and keys must exist before
/// the first `identity` or `enroll`, since the bundle published after binding has to carry
/// the same ones (ENROLL-15, E2EE-1).
fn device(omemo: &mut Option<client::Omemo>, mutant: Mutant) -> &mut client::Omemo {
    omemo.get_or_insert_with(|| {
        let omemo = client::Omemo::generate(mutant);
        eprintln!("{NAME}: OMEMO device id {}", omemo.device_id());
        omemo
    })
}

/// A session ended by itself (the server, the network or a timer): its events, and under
/// `keep_connected` the next attempt is scheduled.
async fn session_ended(
    failure: client::Failure,
    events: &mut EventSink,
    keep: Option<&mut reconnect::Keep>,
    omemo: &mut Option<client::Omemo>,
) {
    eprintln!("{NAME}: session ended: {failure}");
    end_sends(omemo, events).await;
    for event in failure.events(None) {
        events.emit(event).await;
    }
    if let Some(k) = keep {
        k.session_ended();
    }
}

/// A session was bound: the OMEMO device (made now if this is the first) publishes its keys
/// (E2EE-2, E2EE-3).
async fn publish_keys(
    session: &mut client::Session,
    omemo: &mut Option<client::Omemo>,
    mutant: Mutant,
    domain: &str,
    events: &mut EventSink,
) -> Result<(), client::Failure> {
    let omemo = device(omemo, mutant);
    let actions = omemo.on_bound(session.jid(), domain, tokio::time::Instant::now());
    session.perform(actions, events).await
}

/// The session is over: `send_text` commands still waiting fail (`not-connected`).
async fn end_sends(omemo: &mut Option<client::Omemo>, events: &mut EventSink) {
    for event in omemo
        .as_mut()
        .map(client::Omemo::session_ended)
        .unwrap_or_default()
    {
        events.emit(event).await;
    }
}

/// `send_chat_state` takes a bare JID and one of XEP-0085's five states.
fn check_chat_state(params: &driver::SendChatState) -> Result<(), String> {
    if !is_bare_jid(&params.to) {
        return Err(format!(
            "send_chat_state: {:?} is not a bare JID",
            params.to
        ));
    }
    if !client::CHAT_STATES.contains(&params.state.as_str()) {
        return Err(format!(
            "send_chat_state: unknown state {:?} (known: {})",
            params.state,
            client::CHAT_STATES.join(", ")
        ));
    }
    Ok(())
}

fn is_bare_jid(jid: &str) -> bool {
    let (local, domain) = jid.split_once('@').unwrap_or(("", jid));
    !local.is_empty() && !domain.is_empty() && !domain.contains(['/', '@'])
}

/// `send_text` takes a bare JID and a text E2EE-24 allows (not empty, at most 65536 bytes).
fn check_send_text(params: &driver::SendText) -> Result<(), String> {
    if !is_bare_jid(&params.to) {
        return Err(format!("send_text: {:?} is not a bare JID", params.to));
    }
    if params.text.is_empty() || params.text.len() > client::MAX_TEXT_BYTES {
        return Err(format!(
            "send_text: the text must be 1 to {} bytes, not {}",
            client::MAX_TEXT_BYTES,
            params.text.len()
        ));
    }
    Ok(())
}

/// The session's keepalive and idle-close timer, or never when there is no session.
async fn session_timer(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Bytes from the session's transport, or never when there is no session.
async fn next_inbound(session: &mut Option<client::Session>) -> client::SessionInbound {
    match session {
        Some(s) => s.recv_inbound().await,
        None => std::future::pending().await,
    }
}

fn local_disconnect(seq: i64) -> Event {
    Event::Disconnected {
        seq: Some(seq),
        reason: "local",
        condition: None,
        detail: None,
    }
}

async fn bad_command(events: &mut EventSink, seq: Option<i64>, detail: &str) {
    events
        .emit(Event::Error {
            seq,
            code: "bad-command",
            detail: detail.to_owned(),
        })
        .await;
}
