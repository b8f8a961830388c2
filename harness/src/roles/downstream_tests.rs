//! The downstream client against the harness's own gatekeeper server, directly (no proxy),
//! over real loopback sockets.

use rand::SeedableRng;
use tokio::net::TcpListener;

use super::*;
use crate::roles::conn::{Inbound, IutConn};
use crate::roles::gatekeeper_options::{HandshakeMode, Negotiate, SaslAnswer, Stage};
use crate::roles::gatekeeper_server::{self as gk, Credentials, ServerKeys};

fn rng() -> rand::rngs::StdRng {
    rand::rngs::StdRng::seed_from_u64(11)
}

fn soon() -> Instant {
    Instant::now() + Duration::from_secs(5)
}

fn transcript() -> Transcript {
    Transcript::new(StdInstant::now())
}

fn trust(keys: &ServerKeys, kind: TransportKind) -> Trust {
    match kind {
        TransportKind::Noise => Trust::NoiseKey(keys.noise.public.clone()),
        TransportKind::Tls => Trust::TlsCa {
            pem: keys.tls.ca_pem.clone(),
            server_name: DOMAIN.into(),
        },
    }
}

/// The gatekeeper accepts one connection and negotiates up to `upto` for alice.
async fn gatekeeper(
    listener: TcpListener,
    keys: &ServerKeys,
    kind: TransportKind,
    upto: Stage,
) -> Result<(IutConn, Option<String>), Deviation> {
    let (tcp, _) = listener.accept().await.expect("accept");
    let t = transcript();
    let mut conn = gk::handshake(
        tcp,
        kind,
        HandshakeMode::Normal,
        keys,
        soon(),
        &t,
        &mut rng(),
    )
    .await?
    .expect("a connection");
    let n = Negotiate {
        upto,
        mechanisms: vec!["PLAIN".into()],
        sasl: SaslAnswer::Verify,
        features_delay: None,
        idle_limit: None,
    };
    let creds = Credentials {
        account: "alice",
        credential: "pw",
        enrolled: None,
    };
    let done = gk::negotiate(&mut conn, &n, &creds, soon(), &mut rng()).await?;
    Ok((conn, done.jid))
}

async fn session(kind: TransportKind) -> (Downstream, IutConn, String) {
    let keys = ServerKeys::new(&mut rng()).expect("keys");
    let listener = TcpListener::bind(("127.0.0.1", 0)).await.expect("listen");
    let addr = listener.local_addr().expect("addr");
    let client = async {
        let tcp = connect_tcp(addr, soon(), soon()).await.expect("tcp");
        let mut down = Downstream::handshake(
            tcp,
            &trust(&keys, kind),
            Disco::default(),
            soon(),
            transcript(),
        )
        .await
        .expect("handshake");
        let jid = down
            .login(Upto::Session, "alice", "pw", soon())
            .await
            .expect("login");
        (down, jid)
    };
    let ((down, jid), served) =
        tokio::join!(client, gatekeeper(listener, &keys, kind, Stage::Session));
    let (conn, bound) = served.expect("negotiated");
    assert_eq!(
        jid, bound,
        "the client binds the JID the gatekeeper assigned"
    );
    (down, conn, jid.expect("bound"))
}

#[tokio::test]
async fn a_noise_session_logs_in_and_binds() {
    let (down, _conn, jid) = session(TransportKind::Noise).await;
    assert!(jid.starts_with("alice@gk.gatecheck.test/"), "{jid}");
    assert_eq!(down.kind, TransportKind::Noise);
    assert_eq!(down.local.ip(), down.peer.ip());
}

#[tokio::test]
async fn a_tls_session_logs_in_and_binds_and_answers_disco_itself() {
    let (down, mut conn, jid) = session(TransportKind::Tls).await;
    let ask = format!(
        "<iq type='get' id='d1' from='{DOMAIN}' to='{jid}'><query xmlns='{}'/></iq>",
        ns::DISCO_INFO
    );
    conn.send(ask.as_bytes()).await.expect("send");
    let Some(Inbound::Stanza(answer)) = conn.next(soon()).await else {
        panic!("no disco answer");
    };
    assert_eq!(answer.attr("type"), Some("result"));
    assert_eq!(answer.attr("id"), Some("d1"));
    assert_eq!(answer.attr("to"), Some(DOMAIN));
    let q = answer.child("query", ns::DISCO_INFO).expect("query");
    let vars: Vec<&str> = q
        .children_named("feature", ns::DISCO_INFO)
        .filter_map(|f| f.attr("var"))
        .collect();
    assert_eq!(vars, DEFAULT_FEATURES);
    assert_eq!(down.disco_answered(), 1);
}

#[tokio::test]
async fn stanzas_arrive_as_trees_and_as_the_exact_bytes_tapped() {
    let (mut down, mut conn, jid) = session(TransportKind::Noise).await;
    let envelope = "<encrypted xmlns=\"eu.siacs.conversations.axolotl\"><header sid='7'><iv>AAAA</iv></header><payload>&#x41;Q==</payload></encrypted>";
    let message = format!("<message  to='{jid}' id='m1' type='chat'>{envelope}</message>");
    down.start_tap();
    conn.send(message.as_bytes()).await.expect("send");
    let Some(Down::Stanza(m)) = down.next(soon()).await else {
        panic!("no message");
    };
    assert_eq!(m.attr("id"), Some("m1"));
    assert!(m.child("encrypted", ns::OMEMO).is_some());
    let tapped = down.tapped();
    assert!(
        tapped
            .windows(envelope.len())
            .any(|w| w == envelope.as_bytes()),
        "{}",
        String::from_utf8_lossy(&tapped)
    );
    // And the other way: what the client writes reaches the gatekeeper as written.
    conn.start_tap();
    down.send(message.as_bytes()).await.expect("send");
    let Some(Inbound::Stanza(back)) = conn.next(soon()).await else {
        panic!("nothing upstream");
    };
    assert_eq!(back, m);
    assert_eq!(conn.tapped(), message.as_bytes());
}

#[tokio::test]
async fn a_closing_tag_is_answered_and_the_end_is_seen() {
    let (mut down, mut conn, _) = session(TransportKind::Noise).await;
    conn.send_close().await.expect("close");
    assert!(matches!(down.next(soon()).await, Some(Down::Close)));
    // The client answered with its own closing tag.
    assert!(matches!(conn.next(soon()).await, Some(Inbound::Close)));
    conn.hangup().await;
    assert!(matches!(down.next(soon()).await, Some(Down::Eof(None))));
    assert!(down.is_ended());
    assert!(down.ended_at().is_some());
    assert!(matches!(down.next(soon()).await, Some(Down::Eof(None))));
}

#[tokio::test]
async fn forbidden_xml_from_the_proxy_ends_the_connection() {
    let (mut down, mut conn, _) = session(TransportKind::Noise).await;
    conn.send(b"<message><!-- no --></message>")
        .await
        .expect("send");
    match down.next(soon()).await {
        Some(Down::Invalid(e)) => assert_eq!(e.condition().as_str(), "restricted-xml"),
        other => panic!("{other:?}"),
    }
    // The client closed its side: the gatekeeper sees the end.
    assert!(matches!(conn.next(soon()).await, Some(Inbound::Eof(_))));
}

#[tokio::test]
async fn a_login_refused_by_sasl_stops_at_the_failure() {
    let keys = ServerKeys::new(&mut rng()).expect("keys");
    let listener = TcpListener::bind(("127.0.0.1", 0)).await.expect("listen");
    let addr = listener.local_addr().expect("addr");
    let client = async {
        let tcp = connect_tcp(addr, soon(), soon()).await.expect("tcp");
        let mut down = Downstream::handshake(
            tcp,
            &trust(&keys, TransportKind::Noise),
            Disco::default(),
            soon(),
            transcript(),
        )
        .await
        .expect("handshake");
        down.login(Upto::Session, "alice", "wrong", soon()).await
    };
    let (login, _) = tokio::join!(
        client,
        gatekeeper(listener, &keys, TransportKind::Noise, Stage::Session)
    );
    let e = login.expect_err("refused");
    assert!(e.got.contains("<not-authorized"), "{}", e.got);
    assert_eq!(e.requirement, None, "charged to the step");
}

#[tokio::test]
async fn a_wrong_pinned_key_aborts_the_handshake() {
    let keys = ServerKeys::new(&mut rng()).expect("keys");
    let listener = TcpListener::bind(("127.0.0.1", 0)).await.expect("listen");
    let addr = listener.local_addr().expect("addr");
    let tcp = connect_tcp(addr, soon(), soon()).await.expect("tcp");
    let (tcp_server, _) = listener.accept().await.expect("accept");
    let server = tokio::spawn(async move {
        let _ = transport::noise_accept(tcp_server, &keys.other_noise).await;
    });
    let keys = ServerKeys::new(&mut rng()).expect("keys");
    let e = Downstream::handshake(
        tcp,
        &trust(&keys, TransportKind::Noise),
        Disco::default(),
        soon(),
        transcript(),
    )
    .await
    .err()
    .expect("mismatch");
    assert!(matches!(e, TransportError::ServerKeyMismatch { .. }), "{e}");
    server.abort();
}

#[tokio::test]
async fn a_refused_connection_is_retried_until_the_proxy_listens() {
    let probe = TcpListener::bind(("127.0.0.1", 0)).await.expect("listen");
    let addr = probe.local_addr().expect("addr");
    drop(probe);
    let late = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let l = TcpListener::bind(addr).await.expect("rebind");
        let _ = l.accept().await;
    });
    let tcp = connect_tcp(addr, soon(), soon()).await;
    assert!(tcp.is_ok(), "{tcp:?}");
    late.abort();
    // Without time to retry, a refusal is reported at once.
    let probe = TcpListener::bind(("127.0.0.1", 0)).await.expect("listen");
    let addr = probe.local_addr().expect("addr");
    drop(probe);
    let e = connect_tcp(addr, Instant::now(), soon())
        .await
        .expect_err("refused");
    assert!(e.contains("cannot connect"), "{e}");
}
