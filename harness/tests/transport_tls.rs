//! Direct TLS 1.3 transport over real loopback sockets: round trip, CA pinning, version floor.

use std::sync::Arc;
use std::time::Duration;

use gatecheck::transport::{
    Established, TlsIdentity, TransportError, TransportKind, client_config, server_config,
    tls_accept, tls_connect,
};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio::time::timeout;

const LIMIT: Duration = Duration::from_secs(5);
const NAME: &str = "gk.gatecheck.test";

async fn serve(
    config: Arc<rustls::ServerConfig>,
) -> (JoinHandle<Result<Established, TransportError>>, u16) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let task = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.expect("accept");
        tls_accept(tcp, config).await
    });
    (task, port)
}

async fn connect(ca_pem: &str, port: u16) -> Result<Established, TransportError> {
    let tcp = TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    let config = client_config(ca_pem).expect("client config");
    timeout(LIMIT, tls_connect(tcp, config, NAME))
        .await
        .expect("client in time")
}

async fn recv_all(conn: &mut Established, want: usize) -> Vec<u8> {
    let mut got = Vec::new();
    while got.len() < want {
        let chunk = timeout(LIMIT, conn.reader.recv())
            .await
            .expect("recv in time")
            .expect("recv ok")
            .expect("not eof");
        got.extend_from_slice(&chunk);
    }
    got
}

#[tokio::test]
async fn round_trip_both_ways() {
    let id = TlsIdentity::generate(NAME);
    assert!(id.ca_pem.starts_with("-----BEGIN CERTIFICATE-----"));
    let (task, port) = serve(server_config(&id, false)).await;
    let mut c = connect(&id.ca_pem, port).await.expect("client handshake");
    let mut s = timeout(LIMIT, task)
        .await
        .expect("server in time")
        .expect("join")
        .expect("server handshake");
    assert_eq!(c.kind, TransportKind::Tls);
    assert!(c.peer_static.is_none());

    c.writer
        .send(b"<stream:stream>")
        .await
        .expect("client send");
    assert_eq!(recv_all(&mut s, 15).await, b"<stream:stream>");
    let big = vec![b'x'; 100_000];
    s.writer.send(&big).await.expect("server send");
    assert_eq!(recv_all(&mut c, big.len()).await, big);

    // close_notify + FIN reads as a clean end of stream.
    s.writer.shutdown().await.expect("shutdown");
    let eof = timeout(LIMIT, c.reader.recv())
        .await
        .expect("in time")
        .expect("ok");
    assert!(eof.is_none());
}

#[tokio::test]
async fn client_refuses_unknown_ca() {
    let id = TlsIdentity::generate(NAME);
    let other = TlsIdentity::generate(NAME);
    let (task, port) = serve(server_config(&id, false)).await;
    let err = connect(&other.ca_pem, port).await.expect_err("unknown CA");
    match &err {
        TransportError::Tls(msg) => assert!(msg.contains("certificate"), "{msg}"),
        other => panic!("expected Tls, got {other:?}"),
    }
    let server = timeout(LIMIT, task)
        .await
        .expect("server in time")
        .expect("join");
    assert!(server.is_err());
}

#[tokio::test]
async fn client_refuses_wrong_server_name() {
    let id = TlsIdentity::generate("other.gatecheck.test");
    let (_task, port) = serve(server_config(&id, false)).await;
    let err = connect(&id.ca_pem, port).await.expect_err("wrong name");
    assert!(matches!(err, TransportError::Tls(_)), "{err:?}");
}

#[tokio::test]
async fn tls13_client_refuses_tls12_only_server() {
    let id = TlsIdentity::generate(NAME);
    let (task, port) = serve(server_config(&id, true)).await;
    let err = connect(&id.ca_pem, port).await.expect_err("tls 1.2 only");
    assert!(matches!(err, TransportError::Tls(_)), "{err:?}");
    let server = timeout(LIMIT, task)
        .await
        .expect("server in time")
        .expect("join");
    assert!(matches!(server, Err(TransportError::Tls(_))), "{server:?}");
}

#[tokio::test]
async fn bad_ca_pem_is_an_error() {
    assert!(matches!(
        client_config("not a pem"),
        Err(TransportError::Tls(_))
    ));
    assert!(matches!(client_config(""), Err(TransportError::Tls(_))));
}

#[tokio::test]
async fn cut_handshake_is_a_tls_error_not_a_hang() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.expect("accept");
        drop(tcp);
    });
    let id = TlsIdentity::generate(NAME);
    let err = connect(&id.ca_pem, port).await.expect_err("cut");
    assert!(matches!(err, TransportError::Tls(_)), "{err:?}");
}
