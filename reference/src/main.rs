//! gatecheck-reference: the reference provider, driven over the driver protocol (harness/DRIVER.md).
//!
//! Modelled on rustls' BoGo shim: arguments are read in one flat loop, commands are dispatched
//! in one flat `match`, and failures are mapped onto the protocol's vocabulary in one place
//! ([`client::Failure`]). Logs go to stderr; stdout carries only driver events.
#![forbid(unsafe_code)]

mod client;
mod driver;
mod mutant;
mod reconnect;

use std::process::ExitCode;

use driver::{Command, Event, EventSink, InputLine, parse_command, spawn_stdin_reader};
use mutant::Mutant;

const NAME: &str = "gatecheck-reference";
const VERSION: &str = env!("CARGO_PKG_VERSION");
const ROLES: &[&str] = &["client"];
const FEATURES: &[&str] = &["transport.noise", "transport.tls"];

const EXIT_USAGE: u8 = 2;
const USAGE: &str =
    "usage: gatecheck-reference [--mutant NAME] [--list-mutants] [client|server|proxy]";

fn main() -> ExitCode {
    let mut mutant = Mutant::None;
    let mut list = false;
    let mut role = "client".to_owned();
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
            "client" | "server" | "proxy" => {
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
    if role != "client" {
        eprintln!("{NAME}: role {role:?} is not implemented yet");
        return ExitCode::from(EXIT_USAGE);
    }

    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("{NAME}: cannot start the async runtime: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
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
    // Set by keep_connected: we reconnect by ourselves until disconnect or shutdown.
    let mut keep: Option<reconnect::Keep> = None;
    // A session of this process reached binding: later logins are reconnects (STREAM-36).
    let mut was_bound = false;
    loop {
        tokio::select! {
            line = commands.recv() => {
                let Some(line) = line else {
                    // The harness went away: close as for shutdown.
                    if let Some(s) = session.take() {
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
                    Command::Connect(params) => {
                        if session.is_some() || keep.is_some() {
                            bad_command(&mut events, Some(seq), "already connected").await;
                            continue;
                        }
                        let mut notes = Vec::new();
                        let outcome = client::connect(&params, mutant, was_bound, &mut notes).await;
                        for note in notes {
                            events.emit(note).await;
                        }
                        match outcome {
                            Ok(s) => {
                                events.emit(Event::Connected { seq: Some(seq), jid: s.jid().to_owned() }).await;
                                session = Some(s);
                        was_bound = true;
                            }
                            Err(failure) => {
                                eprintln!("{NAME}: connect failed: {failure}");
                                for event in failure.events(Some(seq)) {
                                    events.emit(event).await;
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
                            s.disconnect().await;
                            events.emit(local_disconnect(seq)).await;
                        }
                        return;
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
                    Ok(s) => {
                        k.connected();
                        let seq = k.unanswered.take();
                        events.emit(Event::Connected { seq, jid: s.jid().to_owned() }).await;
                        session = Some(s);
                        was_bound = true;
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
            () = session_timer(session.as_ref().map(client::Session::timer_at)) => {
                let Some(s) = session.as_mut() else { continue };
                if let Err(failure) = s.on_timer().await {
                    session = None;
                    session_ended(failure, &mut events, keep.as_mut()).await;
                }
            }
            inbound = next_inbound(&mut session) => {
                let Some(s) = session.as_mut() else { continue };
                let mut notes = Vec::new();
                let outcome = s.on_inbound(inbound, &mut notes).await;
                for note in notes {
                    events.emit(note).await;
                }
                if let Err(failure) = outcome {
                    session = None;
                    session_ended(failure, &mut events, keep.as_mut()).await;
                }
            }
        }
    }
}

/// A session ended by itself (the server, the network or a timer): its events, and under
/// `keep_connected` the next attempt is scheduled.
async fn session_ended(
    failure: client::Failure,
    events: &mut EventSink,
    keep: Option<&mut reconnect::Keep>,
) {
    eprintln!("{NAME}: session ended: {failure}");
    for event in failure.events(None) {
        events.emit(event).await;
    }
    if let Some(k) = keep {
        k.session_ended();
    }
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
