//! The client's media (SPEC.md §14) end to end: `send_media` through an upload slot or the
//! reference's own server, and references received from Bob downloaded from the reference
//! server's media host or from scripted hosts, each failure reported as DRIVER.md says.
//! The client mutants get a test each showing their one deviation.

mod common;
mod media_client;
mod media_common;

use std::path::PathBuf;

use gatecheck::wire::ns;
use media_client::*;
use media_common::{Provider, scratch_dir};
use serde_json::{Value, json};

/// A file of `len` bytes under a fresh scratch directory.
fn file(len: usize, first: &[u8]) -> (PathBuf, Vec<u8>) {
    let mut data: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
    data[..first.len()].copy_from_slice(first);
    let path = scratch_dir("media-file").join("file");
    std::fs::write(&path, &data).expect("write the file");
    (path, data)
}

const CREATED: &[u8] = b"HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n";
const GET_URL: &str = "https://media.example/m/AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";

fn send_media(seq: i64, path: &std::path::Path, slot: Option<&ScriptedHost>) -> Value {
    let mut command = json!({"cmd":"send_media","seq":seq,"to":BOB_BARE,"path":path});
    if let Some(slot) = slot {
        command["upload"] = json!({"put_url": slot.url(&format!("/u/{seq}")),
            "get_url": GET_URL, "ca_pem": slot.ca_pem});
    }
    command
}

/// Shares `count` files through a slot with `mutant`: per file, what Bob read, what the slot
/// received, and the message.
async fn share(mutant: Option<&str>, count: i64) -> Vec<(String, Seen, gatecheck::wire::Element)> {
    let slot = ScriptedHost::start(CREATED.to_vec(), false, 1 << 20).await;
    let gk = gatekeeper().await;
    let args: Vec<&str> = mutant.map(|m| vec!["--mutant", m]).unwrap_or_default();
    let mut iut = Driver::spawn(&args, &[]).await;
    let (mut conn, _) = login(&mut iut, &gk, None).await;
    let mut bob = gatecheck::e2ee::Device::generate(BOB_ID, [2; 32], 10);
    let mut out = Vec::new();
    for seq in 10..10 + count {
        let (path, data) = file(1000, b"hello");
        iut.send(send_media(seq, &path, Some(&slot))).await;
        let message = message_to_bob(&mut conn, &bob).await;
        let sent = iut.expect("sent").await;
        assert_eq!(sent["seq"], seq);
        assert_eq!(sent["id"].as_str(), message.attr("id"));
        let text = bob_reads(&mut bob, &message);
        let seen = slot.seen().pop().expect("the upload");
        let (_, fragment) = text.split_once('#').expect("a fragment");
        let key_iv = unhex(fragment);
        assert_eq!(
            open(&key_iv[12..], &key_iv[..12], &seen.body),
            Some(data),
            "MEDIA-1"
        );
        out.push((text, seen, message));
    }
    iut.shutdown().await;
    out
}

#[tokio::test]
async fn a_file_goes_to_the_slot_and_its_reference_to_bob() {
    let shared = share(None, 2).await;
    let (text, seen, message) = &shared[0];
    let (locator, fragment) = text.split_once('#').expect("fragment");
    assert_eq!(
        locator,
        GET_URL.replace("https://", "aesgcm://"),
        "MEDIA-18"
    );
    assert_eq!(fragment.len(), 88);
    assert!(
        fragment
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    );
    let head = seen.head.to_ascii_lowercase();
    assert!(head.starts_with("put /u/10 http/1.1\r\n"), "{head}");
    assert!(head.contains("content-length: 1016\r\n"), "{head}");
    assert!(
        head.contains("content-type: application/octet-stream\r\n"),
        "{head}"
    );
    for forbidden in ["cookie", "authorization", &fragment[..24], &fragment[24..]] {
        assert!(
            !head.contains(forbidden),
            "MEDIA-19/20: {forbidden} in {head}"
        );
    }
    assert!(
        message.child("body", ns::JABBER_CLIENT).is_none(),
        "MEDIA-19"
    );
    assert_ne!(shared[0].0, shared[1].0, "a fresh key per file (MEDIA-1)");
}

#[tokio::test]
async fn mutant_upload_auth_key_in_body_and_reused_key() {
    let (_, seen, _) = &share(Some("media-upload-auth"), 1).await[0];
    assert!(
        seen.head
            .to_ascii_lowercase()
            .contains("\r\nauthorization: ")
    );
    let (text, _, message) = &share(Some("media-key-in-body"), 1).await[0];
    let body = message.child("body", ns::JABBER_CLIENT).expect("a body");
    assert_eq!(&body.text(), text);
    let shared = share(Some("media-reused-key"), 2).await;
    assert_eq!(shared[0].0, shared[1].0);
}

#[tokio::test]
async fn oversized_files_failed_uploads_and_bad_commands() {
    let slot = ScriptedHost::start(
        b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n".to_vec(),
        false,
        1 << 20,
    )
    .await;
    let gk = gatekeeper().await;
    let mut iut = Driver::spawn(&[], &[]).await;
    let (path, _) = file(10, b"x");
    iut.send(send_media(2, &path, Some(&slot))).await;
    assert_eq!(iut.expect("send_failed").await["reason"], "not-connected");
    let (_conn, _) = login(&mut iut, &gk, None).await;
    // MEDIA-23: one byte over the largest file; nothing is uploaded.
    let big = scratch_dir("media-big").join("big");
    std::fs::File::create(&big)
        .and_then(|f| f.set_len(104_857_585))
        .expect("sparse file");
    iut.send(send_media(3, &big, Some(&slot))).await;
    let failed = iut.expect("send_failed").await;
    assert_eq!(
        (failed["seq"].clone(), failed["reason"].clone()),
        (json!(3), json!("too-large"))
    );
    iut.send(send_media(4, &path, Some(&slot))).await;
    assert_eq!(iut.expect("send_failed").await["reason"], "upload-failed");
    assert_eq!(slot.seen().len(), 1, "only the 403 upload reached the slot");
    iut.send(send_media(
        5,
        &PathBuf::from("/nonexistent/file"),
        Some(&slot),
    ))
    .await;
    let error = iut.expect("error").await;
    assert_eq!(
        (error["seq"].clone(), error["code"].clone()),
        (json!(5), json!("bad-command"))
    );
    // Without a slot and without an own server there is nowhere to upload.
    iut.send(send_media(6, &path, None)).await;
    assert_eq!(iut.expect("send_failed").await["reason"], "upload-failed");
    iut.shutdown().await;
}

#[tokio::test]
async fn without_a_slot_the_file_goes_to_the_own_server() {
    let provider = Provider::start(None, &[]);
    let env = [
        ("GATECHECK_PROVIDER_URL", provider.base_url()),
        (
            "GATECHECK_PROVIDER_CA",
            provider.ca_file().display().to_string(),
        ),
    ];
    let gk = gatekeeper().await;
    let mut iut = Driver::spawn(&[], &env).await;
    let (mut conn, _) = login(&mut iut, &gk, None).await;
    let mut bob = gatecheck::e2ee::Device::generate(BOB_ID, [2; 32], 10);
    let (path, data) = file(3000, b"chain");
    iut.send(send_media(7, &path, None)).await;
    let message = message_to_bob(&mut conn, &bob).await;
    assert_eq!(iut.expect("sent").await["seq"], 7);
    let text = bob_reads(&mut bob, &message);
    let (locator, fragment) = text.split_once('#').expect("fragment");
    let url = locator.replace("aesgcm://", "https://");
    let reply = provider
        .call("GET", &provider.path_of(&url), &[], b"")
        .await;
    assert_eq!(reply.status, 200);
    let key_iv = unhex(fragment);
    assert_eq!(open(&key_iv[12..], &key_iv[..12], &reply.body), Some(data));
    iut.shutdown().await;
}

/// A client logged in with `media_ca`, and Bob with a session to it.
async fn receiver(
    mutant: Option<&str>,
    media_ca: Option<&str>,
) -> (Driver, common::Conn, gatecheck::e2ee::Device, Alice) {
    let gk = gatekeeper().await;
    let args: Vec<&str> = mutant.map(|m| vec!["--mutant", m]).unwrap_or_default();
    let mut iut = Driver::spawn(&args, &[]).await;
    let (conn, alice) = login(&mut iut, &gk, media_ca).await;
    let bob = bob_for(&alice);
    (iut, conn, bob, alice)
}

const KEY: [u8; 32] = [0x11; 32];
const IV: [u8; 12] = [0x22; 12];

#[tokio::test]
async fn received_media_is_downloaded_verified_and_reported() {
    let p = Provider::start(None, &[]);
    let (mut iut, mut conn, mut bob, alice) = receiver(None, Some(&p.ca_pem)).await;
    let png = [b"\x89PNG\r\n\x1a\n".as_slice(), &[7; 100]].concat();
    let untyped = vec![0x42u8; 5000];
    let big: Vec<u8> = (0..64 << 20)
        .map(|i: usize| (i >> 8) as u8 ^ i as u8)
        .collect();
    for (id, data, mime) in [
        ("m1", &png, "image/png"),
        ("m2", &untyped, "application/octet-stream"),
        ("m3", &big, "application/octet-stream"),
    ] {
        let url = p.store(seal(&KEY, &IV, data)).await;
        bob_sends(&mut conn, &mut bob, &alice, id, &reference(&url, &KEY, &IV)).await;
        let event = iut.expect("media_received").await;
        assert_eq!(
            event,
            json!({"event":"media_received","from":BOB_FULL,"id":id,"size":data.len(),
                   "sha256":sha256(data),"mime":mime})
        );
    }
    // Upper-case hex is a reference too; other text stays text.
    let url = p.store(seal(&KEY, &IV, &png)).await;
    let fragment = format!("{}{}", hex(&IV), hex(&KEY)).to_uppercase();
    let upper = format!("AESGCM://{}#{fragment}", &url["https://".len()..]);
    bob_sends(&mut conn, &mut bob, &alice, "m4", &upper).await;
    assert_eq!(iut.expect("media_received").await["id"], "m4");
    bob_sends(&mut conn, &mut bob, &alice, "m5", "just text").await;
    assert_eq!(iut.expect("message_received").await["text"], "just text");
    iut.shutdown().await;
}

#[tokio::test]
async fn failures_are_media_rejected_with_their_reason() {
    let p = Provider::start(None, &[]);
    let (mut iut, mut conn, mut bob, alice) = receiver(None, Some(&p.ca_pem)).await;
    let mut flipped = seal(&KEY, &IV, b"tampered");
    *flipped.last_mut().expect("tag") ^= 1;
    let good = p.store(seal(&KEY, &IV, b"fine")).await;
    let cases = [
        (
            "r1",
            reference(&p.store(flipped).await, &KEY, &IV),
            "bad-tag",
        ),
        ("r2", reference(&good, &[0x33; 32], &IV), "bad-tag"),
        (
            "r3",
            reference(
                &format!("{}/media/{}", p.base_url(), "B".repeat(43)),
                &KEY,
                &IV,
            ),
            "http-status",
        ),
        (
            "r4",
            format!("aesgcm://{}#{}", &good[8..], "0".repeat(87)),
            "bad-url",
        ),
        (
            "r5",
            format!("aesgcm://user@{}#{}", &good[8..], "0".repeat(88)),
            "bad-url",
        ),
        (
            "r6",
            reference("https://127.0.0.1:1/media/x", &KEY, &IV),
            "transport",
        ),
    ];
    for (id, text, reason) in cases {
        bob_sends(&mut conn, &mut bob, &alice, id, &text).await;
        let event = iut.expect("media_rejected").await;
        assert_eq!(
            event,
            json!({"event":"media_rejected","from":BOB_FULL,"id":id,"reason":reason})
        );
    }
    iut.shutdown().await;
    // A host whose certificate the given CA did not sign, and no CA at all.
    for media_ca in [
        Some(ScriptedHost::start(Vec::new(), false, 0).await.ca_pem),
        None,
    ] {
        let (mut iut, mut conn, mut bob, alice) = receiver(None, media_ca.as_deref()).await;
        bob_sends(
            &mut conn,
            &mut bob,
            &alice,
            "t1",
            &reference(&good, &KEY, &IV),
        )
        .await;
        assert_eq!(iut.expect("media_rejected").await["reason"], "tls");
        iut.shutdown().await;
    }
}

/// The reason a client with `mutant` gives for the object `answer` serves (None: media came
/// through), and the request head the host saw.
async fn from_scripted(mutant: Option<&str>, answer: Vec<u8>, hold: bool) -> (Value, String) {
    let host = ScriptedHost::start(answer, hold, 0).await;
    let (mut iut, mut conn, mut bob, alice) = receiver(mutant, Some(&host.ca_pem)).await;
    let text = reference(&host.url("/m/AbCdEfGhIjKlMnOpQrStUv"), &KEY, &IV);
    bob_sends(&mut conn, &mut bob, &alice, "s1", &text).await;
    let event = iut.event().await;
    let head = host.seen().pop().map(|s| s.head).unwrap_or_default();
    iut.shutdown().await;
    (event, head)
}

#[tokio::test]
async fn hostile_hosts_are_refused() {
    let object = seal(&KEY, &IV, &[9; 1000]);
    let mut truncated = answer_head("200 OK", Some(object.len()));
    truncated.extend_from_slice(&object[..500]);
    let mut unannounced = b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n".to_vec();
    unannounced.extend_from_slice(&object);
    let redirect =
        b"HTTP/1.1 302 Found\r\nLocation: http://127.0.0.1:1/x\r\nContent-Length: 0\r\n\r\n";
    for (answer, hold, reason) in [
        (truncated, false, "truncated"),
        (unannounced, false, "too-large"),
        (answer_head("200 OK", Some(104_857_601)), true, "too-large"),
        (redirect.to_vec(), false, "http-status"),
    ] {
        let (event, head) = from_scripted(None, answer, hold).await;
        assert_eq!(event["reason"], reason, "{event}");
        let head = head.to_ascii_lowercase();
        assert!(
            head.starts_with("get /m/abcdefghijklmnopqrstuv http/1.1\r\n"),
            "{head}"
        );
        assert!(
            !head.contains("cookie") && !head.contains("authorization"),
            "MEDIA-15: {head}"
        );
    }
}

#[tokio::test]
async fn the_session_is_served_while_a_download_waits() {
    let mut stalled = answer_head("200 OK", Some(1000));
    stalled.extend_from_slice(&[0; 10]);
    let host = ScriptedHost::start(stalled, true, 0).await;
    let (iut, mut conn, mut bob, alice) = receiver(None, Some(&host.ca_pem)).await;
    let text = reference(&host.url("/m/x"), &KEY, &IV);
    bob_sends(&mut conn, &mut bob, &alice, "w1", &text).await;
    while host.seen().is_empty() {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    conn.send("<iq type='get' id='p1' from='gk.gatecheck.test'><ping xmlns='urn:xmpp:ping'/></iq>")
        .await;
    let reply = next_stanza(&mut conn).await;
    assert_eq!(
        (reply.attr("id"), reply.attr("type")),
        (Some("p1"), Some("result"))
    );
    iut.shutdown().await;
}

#[tokio::test]
async fn mutant_sends_cookie_and_ignores_size_limit() {
    let mut answer = answer_head("200 OK", Some(20));
    answer.extend_from_slice(&[0; 20]);
    let (event, head) = from_scripted(Some("media-sends-cookie"), answer, false).await;
    assert_eq!(event["reason"], "bad-tag");
    assert!(head.to_ascii_lowercase().contains("\r\ncookie: "), "{head}");
    // The correct client refuses at once (above); the mutant reads on, to a short body.
    let answer = answer_head("200 OK", Some(104_857_601));
    let (event, _) = from_scripted(Some("media-ignores-size-limit"), answer, false).await;
    assert_eq!(event["reason"], "truncated");
}

#[tokio::test]
async fn mutant_no_tag_check_and_drops_untyped() {
    let p = Provider::start(None, &[]);
    let (mut iut, mut conn, mut bob, alice) =
        receiver(Some("media-no-tag-check"), Some(&p.ca_pem)).await;
    let mut flipped = seal(&KEY, &IV, b"tampered");
    *flipped.last_mut().expect("tag") ^= 1;
    let url = p.store(flipped).await;
    bob_sends(
        &mut conn,
        &mut bob,
        &alice,
        "n1",
        &reference(&url, &KEY, &IV),
    )
    .await;
    let event = iut.expect("media_received").await;
    assert_eq!(event["sha256"], sha256(b"tampered"));
    iut.shutdown().await;

    let (mut iut, mut conn, mut bob, alice) =
        receiver(Some("media-drops-untyped"), Some(&p.ca_pem)).await;
    let untyped = p.store(seal(&KEY, &IV, b"no type here")).await;
    let pdf = p.store(seal(&KEY, &IV, b"%PDF-1.7 ...")).await;
    bob_sends(
        &mut conn,
        &mut bob,
        &alice,
        "d1",
        &reference(&untyped, &KEY, &IV),
    )
    .await;
    bob_sends(
        &mut conn,
        &mut bob,
        &alice,
        "d2",
        &reference(&pdf, &KEY, &IV),
    )
    .await;
    let event = iut.expect("media_received").await;
    assert_eq!(
        (event["id"].clone(), event["mime"].clone()),
        (json!("d2"), json!("application/pdf"))
    );
    assert!(
        iut.event_within(std::time::Duration::from_millis(500))
            .await
            .is_none()
    );
    iut.shutdown().await;
}
