use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;

fn v4(s: &str) -> SocketAddr {
    s.parse().expect("address")
}

fn soon() -> Instant {
    Instant::now() + Duration::from_millis(300)
}

async fn read(bytes: &[u8]) -> Result<ProxyHeader, ProxyHeaderError> {
    let mut r = bytes;
    read_proxy_header(&mut r, soon()).await
}

fn valid_v4() -> Vec<u8> {
    encode(v4("127.0.0.1:40001"), v4("127.0.0.1:5222")).expect("v4")
}

#[tokio::test]
async fn a_valid_ipv4_header_gives_both_addresses_and_nothing_more_is_read() {
    let mut bytes = valid_v4();
    assert_eq!(bytes.len(), 28);
    bytes.extend_from_slice(&crate::transport::INTRO);
    let mut r = &bytes[..];
    let h = read_proxy_header(&mut r, soon()).await.expect("valid");
    assert_eq!(h.source, v4("127.0.0.1:40001"));
    assert_eq!(h.destination, v4("127.0.0.1:5222"));
    assert_eq!(h.raw, valid_v4());
    assert_eq!(r, &crate::transport::INTRO[..], "the intro is left unread");
}

#[tokio::test]
async fn a_valid_ipv6_header_is_read() {
    let (s, d) = (v4("[::1]:40002"), v4("[fe80::1]:5223"));
    let bytes = encode(s, d).expect("v6");
    assert_eq!(bytes.len(), 52);
    let h = read(&bytes).await.expect("valid");
    assert_eq!((h.source, h.destination), (s, d));
    assert!(encode(s, v4("127.0.0.1:1")).is_none(), "mixed families");
}

#[tokio::test]
async fn a_header_split_into_single_bytes_is_read() {
    let (mut w, mut r) = tokio::io::duplex(64);
    let bytes = valid_v4();
    let writer = tokio::spawn(async move {
        for b in bytes {
            w.write_all(&[b]).await.expect("write");
            tokio::task::yield_now().await;
        }
        w
    });
    let h = read_proxy_header(&mut r, soon()).await.expect("valid");
    assert_eq!(h.source.port(), 40001);
    drop(writer.await);
}

#[tokio::test]
async fn a_wrong_first_byte_fails_without_waiting_for_the_rest() {
    // Only one byte is sent, and the stream stays open: the check must not wait for 16.
    let (mut w, mut r) = tokio::io::duplex(64);
    w.write_all(b"<").await.expect("write");
    let far = Instant::now() + Duration::from_secs(30);
    let e = read_proxy_header(&mut r, far)
        .await
        .expect_err("not a header");
    assert_eq!(e, ProxyHeaderError::Signature { got: b"<".to_vec() });
    assert!(e.to_string().starts_with("PROXY-2: "), "{e}");
    assert!(e.to_string().ends_with(": 3c"), "{e}");
}

#[tokio::test]
async fn the_noise_intro_without_a_header_is_named() {
    let e = read(&crate::transport::INTRO).await.expect_err("no header");
    let text = e.to_string();
    assert!(text.contains("the Noise intro came first"), "{text}");
    assert!(text.ends_with(": 47 43 00 01"), "{text}");
}

#[tokio::test]
async fn a_version_1_text_header_is_refused() {
    let e = read(b"PROXY TCP4 127.0.0.1 127.0.0.1 40001 5222\r\n")
        .await
        .expect_err("v1");
    assert!(matches!(e, ProxyHeaderError::Signature { .. }));
    assert!(e.to_string().contains("version 1 text header"), "{e}");
}

#[tokio::test]
async fn every_signature_byte_is_checked() {
    for i in 0..SIGNATURE.len() {
        let mut bytes = valid_v4();
        bytes[i] ^= 0x40;
        let e = read(&bytes).await.expect_err("bad signature");
        assert!(
            matches!(e, ProxyHeaderError::Signature { .. }),
            "byte {i}: {e}"
        );
        // What arrived in one read is shown whole, and nothing past the fixed part.
        assert_eq!(e.bytes(), &bytes[..16], "byte {i}");
    }
}

#[tokio::test]
async fn version_and_command_must_be_0x21() {
    for (byte, hint) in [
        (0x20, "command LOCAL"),
        (0x22, "unknown command"),
        (0x11, "not version 2"),
        (0x31, "not version 2"),
    ] {
        let mut bytes = valid_v4();
        bytes[12] = byte;
        let e = read(&bytes).await.expect_err("bad version/command");
        assert!(
            matches!(e, ProxyHeaderError::VersionCommand { byte: b, .. } if b == byte),
            "{e}"
        );
        assert!(e.to_string().contains(hint), "{e}");
    }
}

#[tokio::test]
async fn only_tcp_families_are_accepted() {
    for (byte, hint) in [
        (0x00, "UNSPEC"),
        (0x12, "UDP"),
        (0x22, "UDP"),
        (0x31, "UNIX"),
        (0x13, ""),
    ] {
        let mut bytes = valid_v4();
        bytes[13] = byte;
        let e = read(&bytes).await.expect_err("bad family");
        assert!(matches!(e, ProxyHeaderError::Family { .. }), "{e}");
        assert!(e.to_string().contains(hint), "{e}");
        assert_eq!(e.bytes(), &bytes[..16]);
    }
}

#[tokio::test]
async fn the_length_must_be_exact_tlvs_included() {
    for declared in [0u16, 11, 13, 36, 12 + 8, 216, u16::MAX] {
        let mut bytes = valid_v4();
        bytes[14..16].copy_from_slice(&declared.to_be_bytes());
        // Whatever follows (a TLV, or a flood) is never read.
        bytes.extend(std::iter::repeat_n(0u8, 300));
        let e = read(&bytes).await.expect_err("bad length");
        match &e {
            ProxyHeaderError::Length {
                declared: d,
                expected: 12,
                got,
                ..
            } => {
                assert_eq!(*d, usize::from(declared));
                assert_eq!(got.len(), 16, "nothing past the fixed part is read");
            }
            other => panic!("{declared}: {other}"),
        }
        assert_eq!(
            e.to_string().contains("TLVs are not allowed"),
            declared > 12,
            "{e}"
        );
    }
    let mut v6 = encode(v4("[::1]:1"), v4("[::1]:2")).expect("v6");
    v6[15] = 12;
    let e = read(&v6).await.expect_err("v6 with a v4 length");
    assert!(
        matches!(e, ProxyHeaderError::Length { expected: 36, .. }),
        "{e}"
    );
}

#[tokio::test]
async fn a_cut_header_is_reported_with_what_arrived() {
    let bytes = valid_v4();
    for cut in [0, 1, 12, 15, 16, 27] {
        let e = read(&bytes[..cut]).await.expect_err("cut");
        assert_eq!(
            e,
            ProxyHeaderError::Ended {
                got: bytes[..cut].to_vec()
            },
            "cut at {cut}"
        );
    }
}

#[tokio::test]
async fn a_silent_or_slow_peer_times_out() {
    let (mut w, mut r) = tokio::io::duplex(64);
    w.write_all(&valid_v4()[..20]).await.expect("write");
    let deadline = Instant::now() + Duration::from_millis(50);
    let e = read_proxy_header(&mut r, deadline)
        .await
        .expect_err("timeout");
    assert!(
        matches!(&e, ProxyHeaderError::Timeout { got } if got.len() == 20),
        "{e}"
    );
    assert!(e.to_string().contains("20 byte(s) read"), "{e}");
    // The reader kept nothing back: what the peer writes later is still in the stream.
    w.write_all(b"x").await.expect("write");
    let mut one = [0u8; 1];
    r.read_exact(&mut one).await.expect("read");
    assert_eq!(&one, b"x");
}

#[test]
fn hex_is_bounded() {
    assert_eq!(hex(&[]), "no bytes");
    assert_eq!(hex(&[0x0d, 0x0a]), "0d 0a");
    let long = hex(&[0xab; 200]);
    assert!(long.ends_with('…'));
    assert_eq!(long.matches("ab").count(), SHOWN);
}

#[test]
fn mapped_addresses_are_the_same_endpoint() {
    assert!(same_endpoint(v4("127.0.0.1:5"), v4("[::ffff:127.0.0.1]:5")));
    assert!(!same_endpoint(v4("127.0.0.1:5"), v4("127.0.0.1:6")));
    assert!(!same_endpoint(v4("127.0.0.1:5"), v4("127.0.0.2:5")));
}
