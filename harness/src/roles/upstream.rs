//! The gatekeeper chat server's upstream mode (SPEC.md §15): a connection a provider proxy
//! opens on behalf of one of its clients starts with a PROXY protocol v2 header, then the
//! Noise intro and handshake of STREAM-3 (amended so: on a proxy's upstream connection the
//! header comes first). Everything after the handshake is the ordinary gatekeeper stream.
//!
//! The header is read strictly ([`super::proxy_header`]) and kept with the connection
//! ([`IutConn::proxy_header`]); a fault in it is PROXY-2's. A proxy that speaks to the
//! gatekeeper over anything but Noise, or that does not pin the gatekeeper's key, breaks
//! PROXY-1 (the client-side names of those faults, STREAM-1 and STREAM-6, are PROXY-1's here).

use rand::RngCore;
use tokio::time::Instant;

use super::Deviation;
use super::conn::IutConn;
use super::gatekeeper_options::HandshakeMode;
use super::gatekeeper_server::{self as gk, ServerKeys};
use super::proxy_header::{self, ProxyHeader};
use crate::transcript::Transcript;
use crate::transport::{ByteStream, TransportKind};

/// What a proxy breaks when its upstream connection is not Noise to the pinned key.
pub const NOISE_TO_GATEKEEPER: &str = "PROXY-1";

/// Reads the PROXY v2 header a proxy writes first on an upstream connection.
pub async fn read_header(
    tcp: &mut impl ByteStream,
    deadline: Instant,
    transcript: &Transcript,
) -> Result<ProxyHeader, Deviation> {
    match proxy_header::read_proxy_header(tcp, deadline).await {
        Ok(h) => {
            transcript.record(crate::transcript::Direction::FromIut, &h.raw);
            transcript.note(format!(
                "upstream: PROXY v2 header, source {} destination {}",
                h.source, h.destination
            ));
            Ok(h)
        }
        Err(e) => {
            transcript.record(crate::transcript::Direction::FromIut, e.bytes());
            Err(Deviation::fail(
                proxy_header::REQUIREMENT,
                "a PROXY protocol v2 header (version 2, command PROXY, TCP over IPv4 or IPv6, no TLVs) before the Noise intro",
                e.to_string(),
            ))
        }
    }
}

/// Accepts a proxy's upstream connection: the PROXY v2 header, then the Noise handshake the
/// gatekeeper plays in `mode` (normal, or broken on purpose as for a client). Returns the
/// connection, its header recorded, when there is one left to observe.
pub async fn accept(
    mut tcp: impl ByteStream,
    mode: HandshakeMode,
    keys: &ServerKeys,
    deadline: Instant,
    transcript: &Transcript,
    rng: &mut impl RngCore,
) -> Result<Option<IutConn>, Deviation> {
    let header = read_header(&mut tcp, deadline, transcript).await?;
    let conn = gk::handshake(
        tcp,
        TransportKind::Noise,
        mode,
        keys,
        deadline,
        transcript,
        rng,
    )
    .await
    .map_err(|mut d| {
        if matches!(
            d.requirement.as_deref(),
            Some(gk::req::SECURE_TRANSPORT | gk::req::PINNED_KEY)
        ) {
            d.requirement = Some(NOISE_TO_GATEKEEPER.into());
        }
        d
    })?;
    Ok(conn.map(|mut c| {
        c.proxy_header = Some(header);
        c
    }))
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;
    use std::time::Duration;

    use rand::SeedableRng;
    use tokio::io::AsyncWriteExt;
    use tokio::net::{TcpListener, TcpStream};

    use super::*;
    use crate::roles::gatekeeper_options::{Negotiate, SaslAnswer, Stage};
    use crate::roles::gatekeeper_server::Credentials;
    use crate::transport::{NoiseKeypair, noise_connect};

    fn rng() -> rand::rngs::StdRng {
        rand::rngs::StdRng::seed_from_u64(7)
    }

    async fn pair() -> (TcpStream, TcpStream) {
        let l = TcpListener::bind(("127.0.0.1", 0)).await.expect("listen");
        let addr = l.local_addr().expect("addr");
        let (c, s) = tokio::join!(TcpStream::connect(addr), l.accept());
        (c.expect("connect"), s.expect("accept").0)
    }

    fn soon() -> Instant {
        Instant::now() + Duration::from_secs(5)
    }

    /// A stand-in proxy: header, then Noise to the gatekeeper's key, then a login.
    #[tokio::test]
    async fn a_header_then_noise_is_an_upstream_session_with_its_header_kept() {
        let keys = ServerKeys::new(&mut rng()).expect("keys");
        let pinned = keys.noise.public.clone();
        let (mut proxy, gatekeeper) = pair().await;
        let source: SocketAddr = "127.0.0.1:40001".parse().expect("addr");
        let destination: SocketAddr = "127.0.0.1:5222".parse().expect("addr");
        let transcript = Transcript::new(std::time::Instant::now());
        let proxy_side = async move {
            let header = proxy_header::encode(source, destination).expect("v4");
            proxy.write_all(&header).await.expect("header");
            let mut est = noise_connect(proxy, &NoiseKeypair::generate(), &pinned)
                .await
                .expect("noise");
            let login =
                base64::Engine::encode(&base64::engine::general_purpose::STANDARD, b"\0alice\0pw");
            let open = format!(
                "<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='{}' version='1.0'>",
                gk::DOMAIN
            );
            est.writer.send(open.as_bytes()).await.expect("header");
            est.writer
                .send(
                    format!(
                        "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{login}</auth>"
                    )
                    .as_bytes(),
                )
                .await
                .expect("auth");
            est
        };
        let gatekeeper_side = async {
            let mut conn = accept(
                gatekeeper,
                HandshakeMode::Normal,
                &keys,
                soon(),
                &transcript,
                &mut rng(),
            )
            .await
            .expect("accepted")
            .expect("a connection");
            let n = Negotiate {
                upto: Stage::Auth,
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
            gk::negotiate(&mut conn, &n, &creds, soon(), &mut rng())
                .await
                .expect("negotiated");
            conn
        };
        let (_proxy, conn) = tokio::join!(proxy_side, gatekeeper_side);
        let h = conn.proxy_header.as_ref().expect("header kept");
        assert_eq!((h.source, h.destination), (source, destination));
    }

    #[tokio::test]
    async fn the_intro_without_a_header_is_proxy_2s_fault() {
        let keys = ServerKeys::new(&mut rng()).expect("keys");
        let (proxy, gatekeeper) = pair().await;
        let pinned = keys.noise.public.clone();
        let _client = tokio::spawn(async move {
            let _ = noise_connect(proxy, &NoiseKeypair::generate(), &pinned).await;
        });
        let transcript = Transcript::new(std::time::Instant::now());
        let e = accept(
            gatekeeper,
            HandshakeMode::Normal,
            &keys,
            soon(),
            &transcript,
            &mut rng(),
        )
        .await
        .err()
        .expect("no header");
        assert_eq!(e.requirement.as_deref(), Some("PROXY-2"));
        assert!(e.got.contains("the Noise intro came first"), "{}", e.got);
    }

    #[tokio::test]
    async fn xml_after_the_header_is_proxy_1s_fault() {
        let keys = ServerKeys::new(&mut rng()).expect("keys");
        let (mut proxy, gatekeeper) = pair().await;
        let header = proxy_header::encode(
            "127.0.0.1:1".parse().expect("a"),
            "127.0.0.1:2".parse().expect("a"),
        )
        .expect("v4");
        proxy.write_all(&header).await.expect("header");
        proxy.write_all(b"<stream:stream>").await.expect("xml");
        let transcript = Transcript::new(std::time::Instant::now());
        let e = accept(
            gatekeeper,
            HandshakeMode::Normal,
            &keys,
            soon(),
            &transcript,
            &mut rng(),
        )
        .await
        .err()
        .expect("plain XML");
        assert_eq!(e.requirement.as_deref(), Some(NOISE_TO_GATEKEEPER));
    }

    #[tokio::test]
    async fn a_proxy_that_does_not_pin_the_key_is_proxy_1s_fault() {
        let keys = ServerKeys::new(&mut rng()).expect("keys");
        let (mut proxy, gatekeeper) = pair().await;
        let header = proxy_header::encode(
            "127.0.0.1:1".parse().expect("a"),
            "127.0.0.1:2".parse().expect("a"),
        )
        .expect("v4");
        let _client = tokio::spawn(async move {
            proxy.write_all(&header).await.expect("header");
            // Accepts any key: completes the handshake with the wrong one.
            let _ =
                crate::transport::noise_connect_verified(proxy, &NoiseKeypair::generate(), |_| {
                    Ok(())
                })
                .await;
            tokio::time::sleep(Duration::from_secs(2)).await;
        });
        let transcript = Transcript::new(std::time::Instant::now());
        let e = accept(
            gatekeeper,
            HandshakeMode::WrongKey,
            &keys,
            soon(),
            &transcript,
            &mut rng(),
        )
        .await
        .err()
        .expect("completed with the wrong key");
        assert_eq!(e.requirement.as_deref(), Some(NOISE_TO_GATEKEEPER));
    }
}
