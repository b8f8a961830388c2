//! Upload slots over real TLS: stored and served, the MEDIA-20 and MEDIA-23 deviations of an
//! upload, and MEDIA-19 (the key or IV in a request) checked once the key is known.

use std::time::Duration;

use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::super::*;
use super::fixture;
use crate::media::aesgcm::hex_lower;
use crate::media::sink::DecryptSink;

fn put_request(token: &str, headers: &str, body: &[u8]) -> Vec<u8> {
    let mut r = format!(
        "PUT /u/{token} HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-length: {}\r\n{headers}connection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    r.extend_from_slice(body);
    r
}

#[tokio::test]
async fn an_upload_is_stored_then_served_at_its_get_url() {
    let f = fixture("host-upload", |_| {}).await;
    let (path, key, sha) = f.object("f", 200_000);
    let object = std::fs::read(&path).unwrap();
    let slot = f.host.upload_slot();
    assert!(slot.put_url.ends_with(&format!("/u/{}", slot.put_token)));
    assert!(slot.get_url.ends_with(&format!("/m/{}", slot.get_token)));
    assert_ne!(slot.put_token, slot.get_token);
    assert_eq!(f.get(&slot.get_url, &[], &mut Vec::new()).await.status, 404);
    assert!(f.host.upload(&slot.put_token).is_none());

    let ok = f
        .raw(&put_request(
            &slot.put_token,
            "content-type: application/octet-stream\r\n",
            &object,
        ))
        .await;
    assert!(ok.starts_with("HTTP/1.1 201"), "{ok}");
    let up = f.host.upload(&slot.put_token).unwrap();
    assert_eq!(up.len, object.len() as u64);
    assert_eq!(up.sha256, hex_lower(&Sha256::digest(&object)));
    assert!(up.path.starts_with(f.dir.path()));
    assert_eq!(std::fs::read(&up.path).unwrap(), object);
    let r = f.host.requests().pop().unwrap();
    assert_eq!(
        r.kind,
        RequestKind::Upload {
            token: slot.put_token.clone()
        }
    );
    assert_eq!(
        (r.status, r.body_bytes, r.complete),
        (201, object.len() as u64, Some(true))
    );
    assert!(r.deviations.is_empty(), "{:?}", r.deviations);

    let mut sink = DecryptSink::new(&key);
    assert_eq!(f.get(&slot.get_url, &[], &mut sink).await.status, 200);
    assert_eq!(sink.finish().unwrap().sha256, sha);
    f.host
        .set_fault(&slot.get_token, Fault::Status)
        .await
        .unwrap();
    assert_eq!(f.get(&slot.get_url, &[], &mut Vec::new()).await.status, 404);

    // A slot takes one upload; an unknown slot none.
    let again = f.raw(&put_request(&slot.put_token, "", b"x")).await;
    assert!(again.starts_with("HTTP/1.1 409"), "{again}");
    let unknown = f.raw(&put_request("nope", "", b"x")).await;
    assert!(unknown.starts_with("HTTP/1.1 404"), "{unknown}");
    let get = f
        .raw(
            format!(
                "GET /u/{} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
                slot.put_token
            )
            .as_bytes(),
        )
        .await;
    assert!(get.starts_with("HTTP/1.1 405"), "{get}");
}

#[tokio::test]
async fn an_identifying_upload_is_media_20() {
    let f = fixture("host-upload-ids", |_| {}).await;
    let slot = f.host.upload_slot();
    let headers = "content-type: image/jpeg\r\ncookie: a=b\r\nauthorization: Basic eA==\r\nx-user: alice@provider.test\r\n";
    let ok = f
        .raw(&put_request(&slot.put_token, headers, &[7u8; 100]))
        .await;
    assert!(ok.starts_with("HTTP/1.1 201"), "{ok}");
    let r = f.host.requests().pop().unwrap();
    let d: Vec<_> = r
        .deviations
        .iter()
        .map(|d| (d.requirement.as_deref().unwrap(), d.got.as_str()))
        .collect();
    assert_eq!(d.len(), 3, "{d:?}");
    assert!(d.iter().all(|(req, _)| *req == "MEDIA-20"), "{d:?}");
    assert!(d.iter().any(|(_, g)| g.contains("cookie")));
    assert!(d.iter().any(|(_, g)| g.contains("authorization")));
    assert!(d.iter().any(|(_, g)| g.contains("alice@provider.test")));
    assert_eq!(
        r.header("content-type"),
        Some("image/jpeg"),
        "recorded, not judged"
    );

    // Chunked, without Content-Length: MEDIA-20 too.
    let slot = f.host.upload_slot();
    let chunked = format!(
        "PUT /u/{} HTTP/1.1\r\nhost: x\r\ncontent-type: application/octet-stream\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
        slot.put_token
    );
    let ok = f.raw(chunked.as_bytes()).await;
    assert!(ok.starts_with("HTTP/1.1 201"), "{ok}");
    let r = f.host.requests().pop().unwrap();
    assert_eq!(r.deviations.len(), 1);
    assert!(r.deviations[0].got.contains("no Content-Length"));
}

#[tokio::test]
async fn uploads_over_the_limit_are_refused_with_413() {
    let f = fixture("host-413", |c| c.max_upload = 100_000).await;
    // Announced too large: refused before any body byte is read.
    let slot = f.host.upload_slot();
    let head = format!(
        "PUT /u/{} HTTP/1.1\r\nhost: x\r\ncontent-type: application/octet-stream\r\ncontent-length: 104857601\r\n\r\n",
        slot.put_token
    );
    let answer = f.raw(head.as_bytes()).await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    let r = f.host.requests().pop().unwrap();
    assert_eq!((r.status, r.body_bytes), (413, 0));
    assert_eq!(r.deviations[0].requirement.as_deref(), Some("MEDIA-23"));

    // Chunked past the limit: reading stops, 413, nothing kept.
    let mut s = f.tls_stream().await;
    let head = format!(
        "PUT /u/{} HTTP/1.1\r\nhost: x\r\ncontent-type: application/octet-stream\r\ntransfer-encoding: chunked\r\n\r\n",
        slot.put_token
    );
    s.write_all(head.as_bytes()).await.unwrap();
    let chunk = format!("{:x}\r\n{}\r\n", 8192, "z".repeat(8192));
    let mut answer = Vec::new();
    for _ in 0..200 {
        if s.write_all(chunk.as_bytes()).await.is_err() {
            break;
        }
        let mut buf = [0u8; 256];
        if let Ok(Ok(n)) = tokio::time::timeout(Duration::from_millis(5), s.read(&mut buf)).await {
            answer.extend_from_slice(&buf[..n]);
            break;
        }
    }
    let _ = tokio::time::timeout(Duration::from_secs(1), s.read_to_end(&mut answer)).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    let r = f.host.requests().pop().unwrap();
    assert_eq!(r.status, 413);
    assert!(
        r.body_bytes > 100_000 && r.body_bytes <= 100_000 + 8192,
        "{}",
        r.body_bytes
    );
    assert_eq!(
        r.deviations.last().unwrap().requirement.as_deref(),
        Some("MEDIA-23")
    );
    assert!(f.host.upload(&slot.put_token).is_none());
    tokio::time::sleep(Duration::from_millis(200)).await;
    let left: Vec<_> = std::fs::read_dir(f.dir.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with("upload-"))
        .collect();
    assert!(left.is_empty(), "partial uploads are removed: {left:?}");
}

#[tokio::test]
async fn the_key_or_iv_in_a_request_is_media_19() {
    use base64::Engine as _;
    let f = fixture("host-leak", |_| {}).await;
    let key = MediaKey::generate();
    let other = MediaKey::generate();
    let slot = f.host.upload_slot();
    let hex_key = hex_lower(&key.key).to_uppercase();
    let leak_query = format!(
        "PUT /u/{}?k={hex_key} HTTP/1.1\r\nhost: x\r\ncontent-type: application/octet-stream\r\ncontent-length: 1\r\nconnection: close\r\n\r\nx",
        slot.put_token
    );
    let _ = f.raw(leak_query.as_bytes()).await;
    let b64_iv = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(key.iv.as_bytes());
    let _ = f
        .raw(&put_request(
            &slot.put_token,
            &format!("x-meta: iv={b64_iv}\r\n"),
            b"x",
        ))
        .await;
    let b64_key = base64::engine::general_purpose::STANDARD.encode(key.key);
    let escaped = crate::media::percent_encode(&b64_key);
    let _ = f
        .raw(
            format!("GET /m/x?{escaped} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
                .as_bytes(),
        )
        .await;
    let leaks = f.host.key_leaks(&key);
    assert_eq!(leaks.len(), 3, "{leaks:?}");
    assert!(
        leaks
            .iter()
            .all(|d| d.requirement.as_deref() == Some("MEDIA-19"))
    );
    assert!(
        leaks[0].got.contains("the key in the request line"),
        "{:?}",
        leaks[0]
    );
    assert!(
        leaks[1].got.contains("the IV in a header"),
        "{:?}",
        leaks[1]
    );
    assert!(
        leaks[2].got.contains("the key in the request line"),
        "{:?}",
        leaks[2]
    );
    assert!(
        !leaks[0].got.contains(&hex_key),
        "the key itself is not repeated"
    );
    assert!(f.host.key_leaks(&other).is_empty());
}
