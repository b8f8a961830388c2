//! `gatecheck serve`: the simulated gatekeeper server on its own, for pointing
//! a client at it by hand and watching the transcript live.

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant as StdInstant;

use tokio::net::TcpListener;
use tokio::time::{Duration, Instant};

use super::gatekeeper_server::{self as gk, Credentials, ServerKeys};
use crate::exit;
use crate::roles::conn::{Inbound, IutConn};
use crate::roles::gatekeeper_options::{HandshakeMode, Negotiate, SaslAnswer, Stage};
use crate::transcript::Transcript;
use crate::transport::TransportKind;
use crate::wire::{Element, ns, stream_error_element};

#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Address to listen on: loopback only (127.0.0.1 or ::1).
    #[arg(long, default_value = "127.0.0.1")]
    pub host: IpAddr,
    /// Port of the Noise_XX listener (0 picks a free one).
    #[arg(long, default_value_t = 0)]
    pub noise_port: u16,
    /// Port of the TLS 1.3 listener (0 picks a free one).
    #[arg(long, default_value_t = 0)]
    pub tls_port: u16,
    /// Account localpart clients must authenticate as.
    #[arg(long, default_value = "alice")]
    pub account: String,
    /// Credential clients must present (SASL PLAIN password).
    #[arg(long, default_value = "gatecheck-serve")]
    pub credential: String,
    /// Where to write the TLS CA certificate (PEM) for the client to trust.
    #[arg(long, default_value = "gatecheck-serve-ca.pem")]
    pub ca_out: PathBuf,
    /// Upstream mode, for a provider proxy (SPEC.md §15): each Noise connection must start
    /// with a PROXY protocol v2 header, then the intro.
    #[arg(long)]
    pub proxy_protocol: bool,
}

pub fn run(args: ServeArgs) -> i32 {
    if !args.host.is_loopback() {
        eprintln!(
            "gatecheck: error: serve binds loopback addresses only (127.0.0.1 or ::1), not {}",
            args.host
        );
        return exit::ERROR;
    }
    let runtime = match exit::runtime() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("gatecheck: error: {e}");
            return exit::ERROR;
        }
    };
    runtime.block_on(serve(args))
}

async fn serve(args: ServeArgs) -> i32 {
    let keys = match ServerKeys::new(&mut os_rng()) {
        Ok(k) => Arc::new(k),
        Err(e) => {
            eprintln!("gatecheck: error: {e}");
            return exit::ERROR;
        }
    };
    let noise = TcpListener::bind((args.host, args.noise_port)).await;
    let tls = TcpListener::bind((args.host, args.tls_port)).await;
    let (noise, tls) = match (noise, tls) {
        (Ok(n), Ok(t)) => (n, t),
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("gatecheck: error: cannot listen on {}: {e}", args.host);
            return exit::ERROR;
        }
    };
    if let Err(e) = std::fs::write(&args.ca_out, &keys.tls.ca_pem) {
        eprintln!(
            "gatecheck: error: cannot write {}: {e}",
            args.ca_out.display()
        );
        return exit::ERROR;
    }
    let port = |l: &TcpListener| l.local_addr().map(|a| a.port()).unwrap_or(0);
    println!(
        "gatecheck serve: simulated gatekeeper for domain {}",
        gk::DOMAIN
    );
    println!(
        "  noise  {}:{}  static key (base64) {}",
        args.host,
        port(&noise),
        keys.noise.public_base64()
    );
    println!(
        "  tls    {}:{}  CA {}  server name {}",
        args.host,
        port(&tls),
        args.ca_out.display(),
        gk::DOMAIN
    );
    println!(
        "  login  account {:?} credential {:?}",
        args.account, args.credential
    );
    if args.proxy_protocol {
        println!("  upstream mode: Noise connections start with a PROXY v2 header");
    }
    println!("transcripts follow on stderr; Ctrl-C stops");
    let proxy_protocol = args.proxy_protocol;
    let creds = Arc::new((args.account, args.credential));
    loop {
        let (accepted, kind) = tokio::select! {
            a = noise.accept() => (a, TransportKind::Noise),
            a = tls.accept() => (a, TransportKind::Tls),
            _ = tokio::signal::ctrl_c() => return exit::OK,
        };
        let Ok((tcp, peer)) = accepted else { continue };
        let _ = tcp.set_nodelay(true);
        let keys = Arc::clone(&keys);
        let creds = Arc::clone(&creds);
        tokio::spawn(async move {
            let transcript = Transcript::live(StdInstant::now());
            transcript.note(format!("{kind} connection from {peer}"));
            let upstream = proxy_protocol && kind == TransportKind::Noise;
            let why = session(tcp, kind, upstream, &keys, &creds, &transcript).await;
            transcript.note(format!("session with {peer} ended: {why}"));
        });
    }
}

async fn session(
    tcp: tokio::net::TcpStream,
    kind: TransportKind,
    upstream: bool,
    keys: &ServerKeys,
    creds: &(String, String),
    transcript: &Transcript,
) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut rng = os_rng();
    let mode = HandshakeMode::Normal;
    let conn = if upstream {
        super::upstream::accept(tcp, mode, keys, deadline, transcript, &mut rng).await
    } else {
        gk::handshake(tcp, kind, mode, keys, deadline, transcript, &mut rng).await
    };
    let mut conn: IutConn = match conn {
        Ok(Some(c)) => c,
        Ok(None) => return "handshake aborted".into(),
        Err(d) => {
            return format!(
                "{} (expected {}; got {})",
                d.requirement.unwrap_or_default(),
                d.expected,
                d.got
            );
        }
    };
    let n = Negotiate {
        upto: Stage::Session,
        mechanisms: vec!["PLAIN".into()],
        sasl: SaslAnswer::Verify,
        features_delay: None,
        idle_limit: None,
    };
    let c = Credentials {
        account: &creds.0,
        credential: &creds.1,
        enrolled: None,
    };
    if let Err(d) = gk::negotiate(&mut conn, &n, &c, deadline, &mut rng).await {
        return format!(
            "negotiation failed: {} (expected {}; got {})",
            d.requirement.unwrap_or_default(),
            d.expected,
            d.got
        );
    }
    loop {
        let idle = Instant::now() + Duration::from_secs(300);
        match conn.next(idle).await {
            None => {
                let error = stream_error_element(
                    crate::wire::StreamErrorCondition::ConnectionTimeout,
                    None,
                );
                let _ = conn
                    .send(error.to_xml_in(ns::JABBER_CLIENT).as_bytes())
                    .await;
                let _ = conn.send_close().await;
                return "idle for 300 s".into();
            }
            Some(Inbound::Stanza(e)) => {
                if let Some(answer) = answer_iq(&e) {
                    let _ = conn.send(answer.to_xml().as_bytes()).await;
                }
            }
            Some(Inbound::Close) => {
                // IutConn has already answered with our closing tag.
                conn.hangup().await;
                return "client closed the stream".into();
            }
            Some(Inbound::Invalid(e)) => {
                let error = stream_error_element(e.condition(), None);
                let _ = conn
                    .send(error.to_xml_in(ns::JABBER_CLIENT).as_bytes())
                    .await;
                let _ = conn.send_close().await;
                conn.hangup().await;
                return format!("client sent invalid XML: {e}");
            }
            Some(Inbound::Eof(_)) => return "connection closed".into(),
            Some(Inbound::BadFrame { detail, .. }) => {
                return format!("connection broken: {detail}");
            }
            Some(Inbound::Header(_)) | Some(Inbound::RawBytes(_)) => {
                return "unexpected input".into();
            }
        }
    }
}

fn os_rng() -> rand::rngs::StdRng {
    use rand::SeedableRng;
    rand::rngs::StdRng::from_os_rng()
}

/// Answers an iq get/set addressed to the server: ping with a result, anything else
/// with service-unavailable (SPEC.md STANZA-6, STANZA-7).
fn answer_iq(e: &Element) -> Option<Element> {
    if e.name != "iq" || !matches!(e.attr("type"), Some("get") | Some("set")) {
        return None;
    }
    let id = e.attr("id").unwrap_or_default();
    let mut answer = Element::new("iq", ns::JABBER_CLIENT)
        .with_attr("id", id)
        .with_attr("from", gk::DOMAIN);
    if e.child("ping", ns::PING).is_some() {
        answer.set_attr("type", "result");
    } else {
        answer.set_attr("type", "error");
        answer = answer.with_child(
            Element::new("error", ns::JABBER_CLIENT)
                .with_attr("type", "cancel")
                .with_child(Element::new("service-unavailable", ns::STANZAS)),
        );
    }
    Some(answer)
}
