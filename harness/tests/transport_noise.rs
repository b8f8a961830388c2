//! Noise_XX transport over real loopback sockets: round trips, key pinning, broken handshakes.

use std::time::Duration;

use gatecheck::transport::{
    Established, INTRO, MAX_NOISE_PLAINTEXT, NoiseKeypair, TransportError, TransportKind,
    noise_accept, noise_connect, read_frame, write_frame,
};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio::time::timeout;

const LIMIT: Duration = Duration::from_secs(5);

/// Listens on a loopback port and runs `noise_accept` on the first connection.
async fn serve(server: NoiseKeypair) -> (JoinHandle<Result<Established, TransportError>>, u16) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let task = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.expect("accept");
        noise_accept(tcp, &server).await
    });
    (task, port)
}

async fn handshake(server: &NoiseKeypair, client: &NoiseKeypair) -> (Established, Established) {
    let (task, port) = serve(server.clone()).await;
    let tcp = TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    let c = timeout(LIMIT, noise_connect(tcp, client, &server.public))
        .await
        .expect("client in time")
        .expect("client handshake");
    let s = timeout(LIMIT, task)
        .await
        .expect("server in time")
        .expect("join")
        .expect("server handshake");
    (s, c)
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
async fn round_trip_both_ways_and_keys_seen() {
    let server = NoiseKeypair::generate();
    let client = NoiseKeypair::generate();
    let (mut s, mut c) = handshake(&server, &client).await;
    assert_eq!(s.kind, TransportKind::Noise);
    assert_eq!(s.peer_static.as_deref(), Some(&client.public[..]));
    assert_eq!(c.peer_static.as_deref(), Some(&server.public[..]));

    c.writer
        .send(b"<stream:stream>")
        .await
        .expect("client send");
    assert_eq!(recv_all(&mut s, 15).await, b"<stream:stream>");
    s.writer
        .send(b"<stream:features/>")
        .await
        .expect("server send");
    assert_eq!(recv_all(&mut c, 18).await, b"<stream:features/>");

    // Larger than one frame: split on send, reassembled by the reader.
    let big: Vec<u8> = (0..(MAX_NOISE_PLAINTEXT * 2 + 7))
        .map(|i| (i % 251) as u8)
        .collect();
    c.writer.send(&big).await.expect("big send");
    assert_eq!(recv_all(&mut s, big.len()).await, big);

    // Clean shutdown: the other side sees Ok(None).
    c.writer.shutdown().await.expect("shutdown");
    let eof = timeout(LIMIT, s.reader.recv())
        .await
        .expect("in time")
        .expect("ok");
    assert!(eof.is_none());
}

#[tokio::test]
async fn seeded_keypairs_are_deterministic() {
    let a = NoiseKeypair::from_seed([7; 32]);
    let b = NoiseKeypair::from_seed([7; 32]);
    let c = NoiseKeypair::from_seed([8; 32]);
    assert_eq!(a, b);
    assert_ne!(a.public, c.public);
    assert_eq!(a.public.len(), 32);
    assert_ne!(
        NoiseKeypair::generate().public,
        NoiseKeypair::generate().public
    );
}

#[tokio::test]
async fn client_detects_server_key_mismatch_and_sends_nothing_more() {
    let server = NoiseKeypair::generate();
    let client = NoiseKeypair::generate();
    let pinned = NoiseKeypair::generate().public;
    let (task, port) = serve(server).await;
    let tcp = TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    let err = timeout(LIMIT, noise_connect(tcp, &client, &pinned))
        .await
        .expect("client in time")
        .expect_err("mismatch must fail");
    assert!(
        matches!(err, TransportError::ServerKeyMismatch { .. }),
        "{err:?}"
    );
    // The client dropped the socket without message 3: the server sees EOF, not success.
    let server_result = timeout(LIMIT, task)
        .await
        .expect("server in time")
        .expect("join");
    assert!(
        server_result.is_err(),
        "server must not complete the handshake"
    );
}

#[tokio::test]
async fn truncated_handshake_is_an_error_not_a_hang() {
    let server = NoiseKeypair::generate();
    let (task, port) = serve(server).await;
    let mut tcp = TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    tcp.write_all(&INTRO).await.expect("intro");
    // A frame announcing 32 bytes, of which only 5 arrive before the FIN.
    tcp.write_all(&[0x00, 0x20, 1, 2, 3, 4, 5])
        .await
        .expect("partial");
    tcp.shutdown().await.expect("fin");
    let err = timeout(LIMIT, task)
        .await
        .expect("server must not hang")
        .expect("join")
        .expect_err("truncated");
    assert!(matches!(err, TransportError::Io(_)), "{err:?}");

    // The client side: the server answers message 1 and then hangs up before message 2 ends.
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move {
        let (mut tcp, _) = listener.accept().await.expect("accept");
        let mut intro = [0u8; 4];
        tokio::io::AsyncReadExt::read_exact(&mut tcp, &mut intro)
            .await
            .expect("intro");
        let _msg1 = read_frame(&mut tcp).await.expect("msg1");
        tcp.write_all(&[0x00, 0x60, 9, 9])
            .await
            .expect("partial msg2");
        tcp.shutdown().await.expect("fin");
    });
    let tcp = TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    let err = timeout(
        LIMIT,
        noise_connect(tcp, &NoiseKeypair::generate(), &[0; 32]),
    )
    .await
    .expect("client must not hang")
    .expect_err("truncated");
    assert!(matches!(err, TransportError::Io(_)), "{err:?}");
}

#[tokio::test]
async fn garbage_intro_is_bad_intro() {
    let (task, port) = serve(NoiseKeypair::generate()).await;
    let mut tcp = TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    // Only two bytes and no FIN: the server must refuse at the first wrong byte.
    tcp.write_all(b"<?").await.expect("garbage");
    let err = timeout(LIMIT, task)
        .await
        .expect("server in time")
        .expect("join")
        .expect_err("garbage");
    match err {
        TransportError::BadIntro { got } => assert_eq!(got, b"<"),
        other => panic!("expected BadIntro, got {other:?}"),
    }
}

#[tokio::test]
async fn zero_length_frame_is_refused() {
    let (task, port) = serve(NoiseKeypair::generate()).await;
    let mut tcp = TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    tcp.write_all(&INTRO).await.expect("intro");
    tcp.write_all(&[0, 0]).await.expect("zero frame");
    let err = timeout(LIMIT, task)
        .await
        .expect("server in time")
        .expect("join")
        .expect_err("zero");
    assert!(matches!(err, TransportError::ZeroLengthFrame), "{err:?}");

    // And write_frame refuses to produce one, or an oversized one.
    let mut sink = Vec::new();
    assert!(matches!(
        write_frame(&mut sink, &[]).await,
        Err(TransportError::ZeroLengthFrame)
    ));
    assert!(matches!(
        write_frame(&mut sink, &vec![0; 65536]).await,
        Err(TransportError::FrameTooLarge { len: 65536 })
    ));
    write_frame(&mut sink, b"abc").await.expect("frame");
    assert_eq!(sink, [0, 3, b'a', b'b', b'c']);
}

#[tokio::test]
async fn wrong_length_handshake_message_is_refused() {
    let (task, port) = serve(NoiseKeypair::generate()).await;
    let mut tcp = TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    tcp.write_all(&INTRO).await.expect("intro");
    // Message 1 of XX is a 32-byte ephemeral key; 3 bytes cannot be one.
    write_frame(&mut tcp, b"abc").await.expect("frame");
    let err = timeout(LIMIT, task)
        .await
        .expect("server in time")
        .expect("join")
        .expect_err("garbage");
    assert!(
        matches!(
            err,
            TransportError::HandshakeLength {
                message: 1,
                got: 3,
                expected: 32
            }
        ),
        "{err:?}"
    );

    // 33 bytes: snow alone would accept the extra byte as a cleartext payload.
    let (task, port) = serve(NoiseKeypair::generate()).await;
    let mut tcp = TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    tcp.write_all(&INTRO).await.expect("intro");
    write_frame(&mut tcp, &[5; 33]).await.expect("frame");
    let err = timeout(LIMIT, task)
        .await
        .expect("in time")
        .expect("join")
        .expect_err("33");
    assert!(
        matches!(err, TransportError::HandshakeLength { got: 33, .. }),
        "{err:?}"
    );
}

#[tokio::test]
async fn tampered_transport_frame_is_refused() {
    let server = NoiseKeypair::generate();
    let client = NoiseKeypair::generate();
    let (task, port) = serve(server.clone()).await;
    // A hand-driven initiator (snow directly) that completes the handshake, then sends a
    // transport frame with a flipped bit.
    let mut tcp = TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    let params = gatecheck::transport::NOISE_PARAMS.parse().expect("params");
    let mut hs = snow::Builder::new(params)
        .prologue(&INTRO)
        .and_then(|b| b.local_private_key(&client.private))
        .and_then(|b| b.build_initiator())
        .expect("initiator");
    let mut buf = vec![0u8; 65535];
    tcp.write_all(&INTRO).await.expect("intro");
    let n = hs.write_message(&[], &mut buf).expect("msg1");
    write_frame(&mut tcp, &buf[..n]).await.expect("send msg1");
    let msg2 = read_frame(&mut tcp).await.expect("msg2");
    hs.read_message(&msg2, &mut buf).expect("read msg2");
    let n = hs.write_message(&[], &mut buf).expect("msg3");
    write_frame(&mut tcp, &buf[..n]).await.expect("send msg3");
    let mut transport = hs.into_transport_mode().expect("transport");
    let mut s = timeout(LIMIT, task)
        .await
        .expect("in time")
        .expect("join")
        .expect("server");

    let n = transport
        .write_message(b"<presence/>", &mut buf)
        .expect("encrypt");
    buf[3] ^= 0x40;
    write_frame(&mut tcp, &buf[..n])
        .await
        .expect("send tampered");
    let err = timeout(LIMIT, s.reader.recv())
        .await
        .expect("in time")
        .expect_err("tampered");
    assert!(matches!(err, TransportError::Noise(_)), "{err:?}");

    // A frame shorter than the tag is refused without touching the cipher.
    write_frame(&mut tcp, &[1, 2, 3]).await.expect("send short");
    let err = timeout(LIMIT, s.reader.recv())
        .await
        .expect("in time")
        .expect_err("short");
    assert!(err.to_string().contains("shorter than"), "{err}");
}

/// Sends `text` from the server side in frames shaped by `mode`; returns what the client's
/// reader makes of them: the plaintext read before the first error, and that error.
async fn client_reads_framed(
    text: &[u8],
    mode: gatecheck::transport::FrameMode,
) -> (Vec<u8>, Option<TransportError>) {
    let (mut s, mut c) = handshake(&NoiseKeypair::generate(), &NoiseKeypair::generate()).await;
    s.writer.send_framed(text, mode).await.expect("send");
    s.writer.shutdown().await.expect("fin");
    let mut got = Vec::new();
    loop {
        match timeout(LIMIT, c.reader.recv()).await.expect("in time") {
            Ok(Some(chunk)) => got.extend_from_slice(&chunk),
            Ok(None) => return (got, None),
            Err(e) => return (got, Some(e)),
        }
    }
}

#[tokio::test]
async fn split_frames_carry_the_text_one_byte_each() {
    use gatecheck::transport::FrameMode;
    let text = "<a id='é€𝄞'/>".as_bytes();
    let (got, err) = client_reads_framed(text, FrameMode::Split).await;
    assert!(err.is_none(), "{err:?}");
    assert_eq!(got, text);
}

#[tokio::test]
async fn broken_frame_modes_fail_to_decrypt_before_any_of_their_text() {
    use gatecheck::transport::FrameMode;
    let text = b"<presence/>";
    for mode in [FrameMode::Corrupt, FrameMode::Truncate, FrameMode::Reorder] {
        let (got, err) = client_reads_framed(text, mode).await;
        assert!(got.is_empty(), "{mode}: {got:?}");
        assert!(
            matches!(err, Some(TransportError::Noise(_))),
            "{mode}: {err:?}"
        );
    }
    // A replay: the first copy is fine, the second reuses its nonce.
    let (got, err) = client_reads_framed(text, FrameMode::Replay).await;
    assert_eq!(got, text);
    assert!(matches!(err, Some(TransportError::Noise(_))), "{err:?}");
    let (got, err) = client_reads_framed(&[], FrameMode::Empty).await;
    assert!(got.is_empty());
    assert!(
        matches!(err, Some(TransportError::ZeroLengthFrame)),
        "{err:?}"
    );
}

#[tokio::test]
async fn frame_modes_refuse_what_they_cannot_carry() {
    use gatecheck::transport::FrameMode;
    let (mut s, _c) = handshake(&NoiseKeypair::generate(), &NoiseKeypair::generate()).await;
    let empty = s.writer.send_framed(b"", FrameMode::Corrupt).await;
    assert!(
        matches!(empty, Err(TransportError::FrameMode { .. })),
        "{empty:?}"
    );
    let one = s.writer.send_framed(b"x", FrameMode::Reorder).await;
    assert!(
        matches!(one, Err(TransportError::FrameMode { .. })),
        "{one:?}"
    );
    let big = vec![b' '; MAX_NOISE_PLAINTEXT + 1];
    let too_big = s.writer.send_framed(&big, FrameMode::Corrupt).await;
    assert!(
        matches!(too_big, Err(TransportError::FrameMode { .. })),
        "{too_big:?}"
    );
}
