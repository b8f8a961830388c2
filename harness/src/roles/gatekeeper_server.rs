//! The gatekeeper chat server, as the harness plays it towards a client IUT:
//! transport handshakes (correct and deliberately broken) and stream
//! negotiation (header, SASL PLAIN, restart, resource binding), checking the
//! IUT's side of each exchange against SPEC.md as it goes.

use base64::Engine;
use rand::RngCore;
use tokio::time::Instant;

use super::Deviation;
use crate::roles::conn::{Inbound, IutConn};
use crate::roles::gatekeeper_options::{HandshakeMode, Negotiate, SaslAnswer, Stage};
use crate::transcript::Transcript;
use crate::transport::{
    self, BoxStream, ByteStream, INTRO, NOISE_PARAMS, NoiseKeypair, TlsIdentity, TransportKind,
    read_frame,
};
use crate::wire::{Element, Limits, StreamHeader, ns};

/// The gatekeeper's domain in every scenario.
pub const DOMAIN: &str = "gk.gatecheck.test";
/// A gatekeeper user that talks to the IUT.
pub const GK_USER: &str = "bob@gk.gatecheck.test/phone";

/// Requirement IDs the server's built-in checks cite (each is in SPEC.md; a test checks).
pub mod req {
    pub const SECURE_TRANSPORT: &str = "STREAM-1";
    pub const INTRO: &str = "STREAM-3";
    pub const FRAMING: &str = "STREAM-4";
    pub const ZERO_LENGTH_FRAME: &str = "STREAM-5";
    pub const FRAME_AUTH: &str = "STREAM-8";
    pub const PINNED_KEY: &str = "STREAM-6";
    pub const ABORT_HANDSHAKE: &str = "STREAM-7";
    pub const NOISE: &str = "STREAM-2";
    pub const TLS: &str = "STREAM-10";
    pub const TLS_AUTH: &str = "STREAM-11";
    pub const TLS_VERSION: &str = "STREAM-12";
    pub const HEADER: &str = "STREAM-13";
    pub const WAIT_FEATURES: &str = "STREAM-17";
    pub const SASL_PLAIN: &str = "STREAM-18";
    pub const NO_PLAIN: &str = "STREAM-19";
    pub const RESTART: &str = "STREAM-20";
    pub const SASL_FAILURE: &str = "STREAM-21";
    pub const BIND_FIRST: &str = "STREAM-22";
    pub const BOUND_JID: &str = "STREAM-23";
    pub const RESTRICTED_XML_SENT: &str = "STREAM-29";
    pub const WELL_FORMED: &str = "STREAM-42";
    pub const IQ_ID: &str = "STANZA-2";
    pub const ALL: &[&str] = &[
        SECURE_TRANSPORT,
        INTRO,
        FRAMING,
        ZERO_LENGTH_FRAME,
        FRAME_AUTH,
        PINNED_KEY,
        ABORT_HANDSHAKE,
        NOISE,
        TLS,
        TLS_AUTH,
        TLS_VERSION,
        HEADER,
        WAIT_FEATURES,
        SASL_PLAIN,
        NO_PLAIN,
        RESTART,
        SASL_FAILURE,
        BIND_FIRST,
        BOUND_JID,
        RESTRICTED_XML_SENT,
        WELL_FORMED,
        IQ_ID,
    ];
}

/// The server's keys for one scenario.
pub struct ServerKeys {
    pub noise: NoiseKeypair,
    /// A second key, for the wrong-key handshake.
    pub other_noise: NoiseKeypair,
    pub tls: TlsIdentity,
    /// A second identity (its own CA), for the unknown-CA handshake.
    pub other_tls: TlsIdentity,
    /// A certificate from `tls`'s CA for another name, for the wrong-name handshake.
    pub wrong_name_tls: TlsIdentity,
}

/// The name on the wrong-name certificate: under the gatekeeper's domain, but not it.
pub const WRONG_NAME: &str = "not-the-gatekeeper.gatecheck.test";

impl ServerKeys {
    /// Noise keys come from the scenario's seed; TLS keys are fresh (their bytes
    /// never influence a verdict).
    pub fn new(rng: &mut impl RngCore) -> Result<ServerKeys, String> {
        let mut seed = [0u8; 32];
        rng.fill_bytes(&mut seed);
        let noise = NoiseKeypair::from_seed(seed);
        rng.fill_bytes(&mut seed);
        let other_noise = NoiseKeypair::from_seed(seed);
        let (tls, wrong_name_tls) =
            TlsIdentity::try_generate_pair(DOMAIN, WRONG_NAME).map_err(|e| e.to_string())?;
        let other_tls = TlsIdentity::try_generate(DOMAIN).map_err(|e| e.to_string())?;
        Ok(ServerKeys {
            noise,
            other_noise,
            tls,
            other_tls,
            wrong_name_tls,
        })
    }
}

/// Runs the server side of the transport handshake on an accepted connection.
/// Returns the connection when there is one left to observe.
pub async fn handshake(
    tcp: impl ByteStream,
    kind: TransportKind,
    mode: HandshakeMode,
    keys: &ServerKeys,
    deadline: Instant,
    transcript: &Transcript,
    rng: &mut impl RngCore,
) -> Result<Option<IutConn>, Deviation> {
    let tcp: BoxStream = Box::new(tcp);
    let timeout = |what: &str| {
        Deviation::fail(
            if mode.completes() {
                req::NOISE
            } else {
                req::ABORT_HANDSHAKE
            },
            format!("the {kind} handshake to {what}"),
            "nothing: the IUT neither completed nor aborted the handshake in time",
        )
    };
    match (kind, mode) {
        (TransportKind::Noise, HandshakeMode::Normal) => {
            transcript.note("noise: accepting handshake with the pinned static key");
            match tokio::time::timeout_at(deadline, transport::noise_accept(tcp, &keys.noise)).await
            {
                Err(_) => Err(timeout("complete")),
                Ok(Err(e)) => Err(Deviation::fail(
                    noise_handshake_requirement(&e),
                    "a complete Noise_XX handshake",
                    e.to_string(),
                )),
                Ok(Ok(est)) => {
                    transcript.note("noise: handshake complete");
                    Ok(Some(IutConn::secure(
                        est,
                        Limits::harness_ceilings(),
                        transcript.clone(),
                    )))
                }
            }
        }
        (TransportKind::Tls, HandshakeMode::Normal) => {
            transcript.note("tls: accepting TLS 1.3 handshake");
            let cfg = transport::server_config(&keys.tls, false);
            match tokio::time::timeout_at(deadline, transport::tls_accept(tcp, cfg)).await {
                Err(_) => Err(timeout("complete")),
                Ok(Err(e)) => Err(Deviation::fail(
                    req::TLS,
                    "a complete TLS 1.3 handshake with ALPN xmpp-client",
                    e.to_string(),
                )),
                Ok(Ok(est)) if est.alpn.as_deref() != Some(transport::ALPN_XMPP_CLIENT) => {
                    Err(Deviation::fail(
                        req::TLS,
                        "a TLS ClientHello offering the ALPN protocol xmpp-client",
                        "a client that offered no ALPN protocol (the server had none to select)",
                    ))
                }
                Ok(Ok(est)) if est.sni.as_deref() != Some(DOMAIN) => Err(Deviation::fail(
                    req::TLS,
                    format!("a TLS ClientHello naming {DOMAIN} in SNI"),
                    match &est.sni {
                        Some(name) => format!("SNI {name:?}"),
                        None => "no SNI".to_string(),
                    },
                )),
                Ok(Ok(est)) => {
                    transcript.note("tls: handshake complete, ALPN xmpp-client, SNI ok");
                    Ok(Some(IutConn::secure(
                        est,
                        Limits::harness_ceilings(),
                        transcript.clone(),
                    )))
                }
            }
        }
        (TransportKind::Noise, HandshakeMode::WrongKey) => {
            transcript.note("noise: answering with a static key the IUT did not pin");
            let accepted =
                tokio::time::timeout_at(deadline, transport::noise_accept(tcp, &keys.other_noise))
                    .await;
            aborted(
                accepted,
                req::PINNED_KEY,
                "the client aborts after message 2 (server static key is not the pinned one)",
                transcript,
            )
        }
        (TransportKind::Tls, HandshakeMode::TlsUnknownCa) => {
            transcript.note("tls: presenting a certificate from a CA the IUT was not given");
            let cfg = transport::server_config(&keys.other_tls, false);
            let expected =
                "the client refuses a certificate that does not chain to its trust anchor";
            tls_refused(tcp, cfg, deadline, req::TLS_AUTH, expected, transcript).await
        }
        (TransportKind::Tls, HandshakeMode::TlsWrongName) => {
            transcript.note(format!(
                "tls: presenting a certificate from the trusted CA, for {WRONG_NAME}"
            ));
            let cfg = transport::server_config(&keys.wrong_name_tls, false);
            let expected =
                "the client refuses a certificate for a name other than the gatekeeper's";
            tls_refused(tcp, cfg, deadline, req::TLS_AUTH, expected, transcript).await
        }
        (TransportKind::Tls, HandshakeMode::Tls12Only) => {
            transcript.note("tls: offering TLS 1.2 only");
            let cfg = transport::server_config(&keys.tls, true);
            let expected = "the client refuses a TLS 1.2 connection";
            tls_refused(tcp, cfg, deadline, req::TLS_VERSION, expected, transcript).await
        }
        (TransportKind::Noise, HandshakeMode::Truncate) => {
            truncated(tcp, keys, deadline, transcript).await.map(Some)
        }
        (TransportKind::Noise, HandshakeMode::Garbage) => {
            let mut tcp = tcp;
            let mut junk = vec![0u8; 66];
            rng.fill_bytes(&mut junk[2..]);
            junk[0] = 0;
            junk[1] = 64;
            transcript.note(
                "noise: sending a 64-byte frame of random bytes before any handshake message",
            );
            transport::write_raw(&mut tcp, &junk)
                .await
                .map_err(|e| Deviation::inconclusive(format!("could not send garbage: {e}")))?;
            // The client writes its intro and message 1 before it reads anything:
            // those bytes are legitimate; whatever follows them is not.
            let _ = tokio::time::timeout_at(deadline, read_intro_and_first(&mut tcp)).await;
            Ok(Some(IutConn::raw(tcp, transcript.clone())))
        }
        (kind, mode) => Err(Deviation::error(format!(
            "handshake mode {mode:?} does not exist for transport {kind}"
        ))),
    }
}

/// The requirement a client breaks when its side of a Noise handshake fails: its first bytes
/// are XML, not the intro (the stream over plain TCP: STREAM-1), another intro (STREAM-3), a
/// zero-length frame (STREAM-5), anything else (protocol and message lengths: STREAM-2).
fn noise_handshake_requirement(e: &transport::TransportError) -> &'static str {
    use transport::TransportError as E;
    match e {
        E::BadIntro { got } if got.first() == Some(&b'<') => req::SECURE_TRANSPORT,
        E::BadIntro { .. } => req::INTRO,
        E::ZeroLengthFrame => req::ZERO_LENGTH_FRAME,
        _ => req::NOISE,
    }
}

/// Serves a TLS handshake the client must abort (`cfg` is the server's broken side).
async fn tls_refused(
    tcp: BoxStream,
    cfg: std::sync::Arc<rustls::ServerConfig>,
    deadline: Instant,
    requirement: &str,
    expected: &str,
    transcript: &Transcript,
) -> Result<Option<IutConn>, Deviation> {
    let accepted = tokio::time::timeout_at(deadline, transport::tls_accept(tcp, cfg)).await;
    aborted(accepted, requirement, expected, transcript)
}

fn aborted<T>(
    accepted: Result<Result<T, transport::TransportError>, tokio::time::error::Elapsed>,
    requirement: &str,
    expected: &str,
    transcript: &Transcript,
) -> Result<Option<IutConn>, Deviation> {
    match accepted {
        Err(_) => Err(Deviation::fail(
            req::ABORT_HANDSHAKE,
            expected,
            "the IUT neither completed nor aborted the handshake in time",
        )),
        Ok(Ok(_)) => Err(Deviation::fail(
            requirement,
            expected,
            "the IUT completed the handshake",
        )),
        Ok(Err(e)) => {
            transcript.note(format!("handshake aborted as expected: {e}"));
            Ok(None)
        }
    }
}

/// Reads the client's intro and its first handshake frame.
async fn read_intro_and_first(tcp: &mut BoxStream) -> Result<Vec<u8>, String> {
    use tokio::io::AsyncReadExt;
    let mut intro = [0u8; 4];
    tcp.read_exact(&mut intro)
        .await
        .map_err(|e| e.to_string())?;
    if intro != INTRO {
        return Err(format!("bad intro {intro:02x?}"));
    }
    read_frame(tcp).await.map_err(|e| e.to_string())
}

/// Reads the intro and message 1, then sends half of a genuine message 2 and
/// closes the write side.
async fn truncated(
    mut tcp: BoxStream,
    keys: &ServerKeys,
    deadline: Instant,
    transcript: &Transcript,
) -> Result<IutConn, Deviation> {
    transcript.note("noise: reading intro and message 1, then sending half of message 2");
    let msg1 = match tokio::time::timeout_at(deadline, read_intro_and_first(&mut tcp)).await {
        Err(_) => {
            return Err(Deviation::fail(
                req::NOISE,
                "the intro and handshake message 1",
                "nothing in time",
            ));
        }
        Ok(Err(e)) => {
            return Err(Deviation::fail(
                req::NOISE,
                "the intro and handshake message 1",
                e,
            ));
        }
        Ok(Ok(m)) => m,
    };
    let params = NOISE_PARAMS
        .parse()
        .map_err(|e| Deviation::error(format!("noise params: {e:?}")))?;
    let mut hs = snow::Builder::new(params)
        .prologue(&INTRO)
        .and_then(|b| b.local_private_key(&keys.noise.private))
        .and_then(|b| b.build_responder())
        .map_err(|e| Deviation::error(format!("noise responder: {e}")))?;
    let mut scratch = vec![0u8; transport::MAX_FRAME];
    hs.read_message(&msg1, &mut scratch)
        .map_err(|e| Deviation::fail(req::NOISE, "a valid handshake message 1", e.to_string()))?;
    let n = hs
        .write_message(&[], &mut scratch)
        .map_err(|e| Deviation::error(format!("noise message 2: {e}")))?;
    let mut bytes = Vec::with_capacity(2 + n);
    bytes.extend_from_slice(&(n as u16).to_be_bytes());
    bytes.extend_from_slice(&scratch[..n]);
    bytes.truncate(2 + n / 2);
    let mut conn = IutConn::raw(tcp, transcript.clone());
    conn.send(&bytes)
        .await
        .map_err(|e| Deviation::inconclusive(format!("could not send: {e}")))?;
    conn.hangup().await;
    Ok(conn)
}

/// The server's stream header.
pub fn server_header(stream_id: &str) -> String {
    format!(
        "<?xml version='1.0'?><stream:stream xmlns='{}' xmlns:stream='{}' id='{stream_id}' from='{DOMAIN}' version='1.0' xml:lang='en'>",
        ns::JABBER_CLIENT,
        ns::STREAMS
    )
}

fn sasl_features(mechanisms: &[String]) -> String {
    let mut s = format!("<stream:features><mechanisms xmlns='{}'>", ns::SASL);
    for m in mechanisms {
        s.push_str("<mechanism>");
        s.push_str(&crate::wire::xml_escape(m));
        s.push_str("</mechanism>");
    }
    s.push_str("</mechanisms></stream:features>");
    s
}

/// What negotiation established.
#[derive(Debug, Default)]
pub struct Negotiated {
    pub jid: Option<String>,
}

/// Credentials the IUT was told to use.
pub struct Credentials<'a> {
    pub account: &'a str,
    pub credential: &'a str,
    /// An enrolled device's login (`PLAIN-IDPROOF`, SPEC.md §7.4) instead of a provisioned
    /// account's PLAIN.
    pub enrolled: Option<&'a super::gatekeeper_proof::EnrolledLogin>,
}

/// Negotiates the stream up to `n.upto`, checking the IUT at each exchange.
pub async fn negotiate(
    conn: &mut IutConn,
    n: &Negotiate,
    creds: &Credentials<'_>,
    deadline: Instant,
    rng: &mut impl RngCore,
) -> Result<Negotiated, Deviation> {
    let out = Negotiated::default();
    expect_header(conn, deadline, req::HEADER).await?;
    if n.upto == Stage::Header {
        return Ok(out);
    }
    let sid = token(rng);
    conn.send(server_header(&sid).as_bytes())
        .await
        .map_err(Deviation::io)?;
    hold_features(conn, n, deadline).await?;
    conn.send(sasl_features(&n.mechanisms).as_bytes())
        .await
        .map_err(Deviation::io)?;
    if n.upto == Stage::Features {
        return Ok(out);
    }
    let plain_offered = n.mechanisms.iter().any(|m| m == "PLAIN");
    let auth = next_stanza(conn, deadline, "the SASL <auth> element", req::SASL_PLAIN).await?;
    if let Some(login) = creds.enrolled {
        let judged = super::gatekeeper_proof::judge(&auth, login);
        if let Err(r) = &judged {
            conn.send(
                format!(
                    "<failure xmlns='{}'><not-authorized/><text>{}</text></failure>",
                    ns::SASL,
                    r.code
                )
                .as_bytes(),
            )
            .await
            .map_err(Deviation::io)?;
        }
        return match (judged, login.expect_refusal) {
            (Ok(()), None) => after_auth(conn, n, creds, deadline, rng, out).await,
            // The refusal the scenario arranged: what the client does next is for its steps.
            (Err(r), Some(code)) if r.code == code => Ok(out),
            (Err(r), _) => Err(r.deviation),
            (Ok(()), Some(code)) => Err(Deviation::error(format!(
                "the gatekeeper accepted a login proof the harness spoiled ({code})"
            ))),
        };
    }
    if !plain_offered {
        return Err(Deviation::fail(
            req::NO_PLAIN,
            "no credentials: PLAIN was not offered",
            auth.to_xml(),
        ));
    }
    if auth.name != "auth" || auth.ns != ns::SASL || auth.attr("mechanism") != Some("PLAIN") {
        return Err(Deviation::fail(
            req::SASL_PLAIN,
            "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>",
            auth.to_xml(),
        ));
    }
    // SPEC.md §7.4: the initial response is the direct character data, whitespace removed.
    let expected = format!("\0{}\0{}", creds.account, creds.credential);
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(auth.text().split_whitespace().collect::<String>())
        .unwrap_or_default();
    let creds_ok = decoded == expected.as_bytes();
    if n.sasl == SaslAnswer::Reject || !creds_ok {
        conn.send(format!("<failure xmlns='{}'><not-authorized/></failure>", ns::SASL).as_bytes())
            .await
            .map_err(Deviation::io)?;
        if n.sasl == SaslAnswer::Verify {
            return Err(Deviation::fail(
                req::SASL_PLAIN,
                "PLAIN initial response with empty authzid, the given account and credential",
                format!("{:?}", String::from_utf8_lossy(&decoded)),
            ));
        }
        return Ok(out);
    }
    after_auth(conn, n, creds, deadline, rng, out).await
}

/// Reads the client's stream header, offers `mechanisms`, and returns the first element the
/// client sends after them, answering nothing: the evidence of a login the client should not
/// have attempted at all (ENROLL-1).
pub async fn first_after_features(
    conn: &mut IutConn,
    mechanisms: &[String],
    deadline: Instant,
    rng: &mut impl RngCore,
) -> Result<Element, Deviation> {
    expect_header(conn, deadline, req::HEADER).await?;
    let sid = token(rng);
    conn.send(server_header(&sid).as_bytes())
        .await
        .map_err(Deviation::io)?;
    conn.send(sasl_features(mechanisms).as_bytes())
        .await
        .map_err(Deviation::io)?;
    next_stanza(conn, deadline, "the SASL <auth> element", req::SASL_PLAIN).await
}

/// From `<success/>` on: the stream restart and, up to `n.upto`, resource binding.
async fn after_auth(
    conn: &mut IutConn,
    n: &Negotiate,
    creds: &Credentials<'_>,
    deadline: Instant,
    rng: &mut impl RngCore,
    mut out: Negotiated,
) -> Result<Negotiated, Deviation> {
    conn.restart();
    conn.send(format!("<success xmlns='{}'/>", ns::SASL).as_bytes())
        .await
        .map_err(Deviation::io)?;
    if n.upto == Stage::Auth {
        return Ok(out);
    }
    expect_header(conn, deadline, req::RESTART).await?;
    let sid = token(rng);
    conn.send(server_header(&sid).as_bytes())
        .await
        .map_err(Deviation::io)?;
    hold_features(conn, n, deadline).await?;
    let idle = n
        .idle_limit
        .map(|l| format!("<idle xmlns='{}' seconds='{}'/>", ns::IDLE, l.as_secs()))
        .unwrap_or_default();
    conn.send(
        format!(
            "<stream:features><bind xmlns='{}'/>{idle}</stream:features>",
            ns::BIND
        )
        .as_bytes(),
    )
    .await
    .map_err(Deviation::io)?;
    let bind = next_stanza(conn, deadline, "the resource binding iq", req::BIND_FIRST).await?;
    let bind_child = bind.child("bind", ns::BIND);
    if bind.name != "iq"
        || bind.ns != ns::JABBER_CLIENT
        || bind.attr("type") != Some("set")
        || bind_child.is_none()
    {
        return Err(Deviation::fail(
            req::BIND_FIRST,
            "<iq type='set'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></iq> before any other stanza",
            bind.to_xml(),
        ));
    }
    let id = match bind.attr("id") {
        Some(id) if !id.is_empty() => id.to_string(),
        _ => {
            return Err(Deviation::fail(
                req::IQ_ID,
                "an iq with a non-empty id",
                bind.to_xml(),
            ));
        }
    };
    // The server always assigns its own resource, so a client that ignores the
    // bind result and keeps its proposed one is caught (STREAM-23).
    let jid = format!("{}@{DOMAIN}/gk-{}", creds.account, token(rng));
    let result = Element::new("iq", ns::JABBER_CLIENT)
        .with_attr("type", "result")
        .with_attr("id", &id)
        .with_child(
            Element::new("bind", ns::BIND)
                .with_child(Element::new("jid", ns::BIND).with_text(&jid)),
        );
    conn.send(result.to_xml().as_bytes())
        .await
        .map_err(Deviation::io)?;
    out.jid = Some(jid);
    Ok(out)
}

/// With `features_delay`, waits that long between a stream header and its features: a
/// client that sends anything before the features arrive breaks STREAM-17.
async fn hold_features(
    conn: &mut IutConn,
    n: &Negotiate,
    deadline: Instant,
) -> Result<(), Deviation> {
    let Some(delay) = n.features_delay else {
        return Ok(());
    };
    let until = (Instant::now() + delay).min(deadline);
    match conn.next(until).await {
        None => Ok(()),
        Some(Inbound::Stanza(e)) => Err(Deviation::fail(
            req::WAIT_FEATURES,
            format!(
                "nothing from the client until <stream:features> ({} ms after the header)",
                delay.as_millis()
            ),
            e.to_xml(),
        )),
        other => Err(unexpected(
            other,
            "nothing from the client until <stream:features>",
            req::WAIT_FEATURES,
        )),
    }
}

fn token(rng: &mut impl RngCore) -> String {
    crate::roles::random_token(rng, 10)
}

async fn expect_header(
    conn: &mut IutConn,
    deadline: Instant,
    requirement: &str,
) -> Result<StreamHeader, Deviation> {
    let what = "the client's stream header";
    match conn.next(deadline).await {
        Some(Inbound::Header(h)) => {
            check_header(&h, requirement)?;
            Ok(h)
        }
        other => Err(unexpected(other, what, requirement)),
    }
}

fn check_header(h: &StreamHeader, requirement: &str) -> Result<(), Deviation> {
    let expected = format!("a stream header in jabber:client with to='{DOMAIN}' and version='1.0'");
    if h.default_ns != ns::JABBER_CLIENT {
        return Err(Deviation::fail(
            requirement,
            expected,
            format!("content namespace {:?}", h.default_ns),
        ));
    }
    if h.to.as_deref() != Some(DOMAIN) {
        return Err(Deviation::fail(
            requirement,
            expected,
            format!("to={:?}", h.to),
        ));
    }
    if h.version.as_deref() != Some("1.0") {
        return Err(Deviation::fail(
            requirement,
            expected,
            format!("version={:?}", h.version),
        ));
    }
    Ok(())
}

async fn next_stanza(
    conn: &mut IutConn,
    deadline: Instant,
    what: &str,
    requirement: &str,
) -> Result<Element, Deviation> {
    match conn.next(deadline).await {
        Some(Inbound::Stanza(e)) => Ok(e),
        other => Err(unexpected(other, what, requirement)),
    }
}

/// A deviation for anything other than what a negotiation step waited for.
pub fn unexpected(got: Option<Inbound>, what: &str, requirement: &str) -> Deviation {
    match got {
        None => Deviation::fail(requirement, what, "nothing before the step's deadline"),
        Some(Inbound::Invalid(e)) => Deviation::fail(
            if e.condition().as_str() == "restricted-xml" {
                req::RESTRICTED_XML_SENT
            } else {
                req::WELL_FORMED
            },
            what,
            format!("XML the profile forbids: {e}"),
        ),
        Some(Inbound::Eof(why)) => Deviation::fail(
            requirement,
            what,
            match why {
                Some(w) => format!("the connection failed: {w}"),
                None => "the IUT closed the connection".to_string(),
            },
        ),
        Some(Inbound::Close) => Deviation::fail(requirement, what, "</stream:stream>"),
        Some(Inbound::Header(_)) => Deviation::fail(requirement, what, "a second stream header"),
        Some(Inbound::Stanza(e)) => Deviation::fail(requirement, what, e.to_xml()),
        Some(Inbound::RawBytes(n)) => Deviation::fail(
            requirement,
            what,
            format!("{n} bytes after an aborted handshake"),
        ),
        Some(Inbound::BadFrame {
            requirement,
            detail,
        }) => Deviation::fail(requirement, what, detail),
    }
}

#[cfg(test)]
#[path = "gatekeeper_server_tests.rs"]
mod tests;
