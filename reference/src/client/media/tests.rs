//! Unit tests of the media code that needs no network: references, the cipher, sniffing.

use super::*;

const IV: [u8; IV_LEN] = [0xa5; IV_LEN];
const KEY: [u8; KEY_LEN] = [0x3c; KEY_LEN];

fn reference(url: &str) -> String {
    reference_for(url, &IV, &KEY).expect("a reference")
}

#[test]
fn references_are_lowercase_aesgcm_urls_with_iv_then_key() {
    let r = reference("https://media.example:8443/m/AbC_-0123456789012345678?x=1");
    assert_eq!(
        r,
        format!(
            "aesgcm://media.example:8443/m/AbC_-0123456789012345678?x=1#{}{}",
            "a5".repeat(12),
            "3c".repeat(32)
        )
    );
    assert!(is_reference(&r));
    let parsed = parse_reference(&r).expect("parses");
    assert_eq!(parsed.iv, IV);
    assert_eq!(parsed.key, KEY);
    assert_eq!(parsed.url.host, "media.example");
    assert_eq!(parsed.url.port, 8443);
    assert_eq!(parsed.url.authority, "media.example:8443");
    assert_eq!(parsed.url.target, "/m/AbC_-0123456789012345678?x=1");
    // Not a URL an object can be fetched from: no reference.
    for bad in [
        "http://h/x",
        "https://h/x#frag",
        "https://u@h/x",
        "https:///x",
        "https://h:0/x",
        "https://h:99999/x",
        "https://h/a b",
    ] {
        assert_eq!(reference_for(bad, &IV, &KEY), None, "{bad}");
    }
}

#[test]
fn receivers_accept_upper_case_and_legacy_ivs_and_nothing_else() {
    let upper = format!("AESGCM://h/x#{}", "AB".repeat(44));
    let parsed = parse_reference(&upper).expect("upper case");
    assert_eq!(parsed.iv, [0xab; 12]);
    assert_eq!(parsed.url.port, 443);
    assert_eq!(parsed.url.target, "/x");
    let legacy = format!("aesgcm://[::1]:9/x#{}", "01".repeat(48));
    let parsed = parse_reference(&legacy).expect("legacy");
    assert_eq!((parsed.iv.len(), parsed.url.host.as_str()), (16, "::1"));
    let ok_hex = "0".repeat(88);
    for bad in [
        format!("aesgcm://h/x#{}", "0".repeat(87)),
        format!("aesgcm://h/x#{}", "0".repeat(90)),
        format!("aesgcm://h/x#{}g", "0".repeat(87)),
        "aesgcm://h/x".to_owned(),
        format!("aesgcm://h/x #{ok_hex}"),
        format!("aesgcm://u:p@h/x#{ok_hex}"),
        format!("aesgcm://h/x#{ok_hex}#{ok_hex}"),
        format!("aesgcm://h/\u{e9}#{ok_hex}"),
        format!("aesgcm://#{ok_hex}"),
    ] {
        assert!(is_reference(&bad), "{bad}");
        assert!(parse_reference(&bad).is_none(), "{bad}");
    }
    assert!(!is_reference("look: aesgcm://h/x"));
    assert!(!is_reference("aesgcm:/"));
    assert!(!is_reference("ä"));
}

#[test]
fn objects_are_ciphertext_and_tag_and_open_only_with_their_tag() {
    let file = b"the quick brown fox".to_vec();
    let object = seal(&KEY, &IV, file.clone()).expect("seal");
    assert_eq!(object.len(), file.len() + TAG_LEN);
    assert_ne!(&object[..file.len()], file.as_slice());
    let r = parse_reference(&reference("https://h/x")).expect("parses");
    assert_eq!(open(&r, object.clone(), Mutant::None), Some(file.clone()));
    let mut flipped = object.clone();
    *flipped.last_mut().expect("tag") ^= 1;
    assert_eq!(open(&r, flipped.clone(), Mutant::None), None);
    let mut altered = object.clone();
    altered[0] ^= 1;
    assert_eq!(open(&r, altered, Mutant::None), None);
    assert_eq!(open(&r, object[..10].to_vec(), Mutant::None), None);
    assert_eq!(open(&r, Vec::new(), Mutant::None), None);
    // The no-tag-check mutant opens what it should refuse.
    assert_eq!(open(&r, flipped, Mutant::MediaNoTagCheck), Some(file));
}

/// NIST SP 800-38D test case 14 (AES-256, zero key and IV, one zero block): the cipher is
/// AES-256-GCM with the tag after the ciphertext.
#[test]
fn known_answer() {
    let object = seal(&[0; 32], &[0; 12], vec![0; 16]).expect("seal");
    let expected = "cea7403d4d606b6e074ec5d3baf39d18d0d1c8a799996bf0265b98b5d48ab919";
    assert_eq!(hex(&object), expected);
}

#[test]
fn empty_files_round_trip_and_legacy_ivs_open() {
    let object = seal(&KEY, &IV, Vec::new()).expect("seal");
    assert_eq!(object.len(), TAG_LEN);
    let r = parse_reference(&reference("https://h/x")).expect("parses");
    assert_eq!(open(&r, object, Mutant::None), Some(Vec::new()));
    let iv16 = [7u8; 16];
    let mut data = b"legacy".to_vec();
    let tag = gcm::<U16>(&KEY, &iv16, &mut data, None, false).expect("seal");
    data.extend_from_slice(&tag);
    let text = format!("aesgcm://h/x#{}{}", hex(&iv16), hex(&KEY));
    let r = parse_reference(&text).expect("legacy parses");
    assert_eq!(open(&r, data, Mutant::None), Some(b"legacy".to_vec()));
}

#[test]
fn keys_are_fresh_unless_the_mutant_reuses_them() {
    let a = fresh_key(Mutant::None).expect("random");
    let b = fresh_key(Mutant::None).expect("random");
    assert_ne!(a, b);
    let c = fresh_key(Mutant::MediaReusedKey).expect("random");
    assert_eq!(fresh_key(Mutant::MediaReusedKey), Some(c));
}

#[test]
fn sniffing_knows_a_few_types_and_guesses_nothing_else() {
    assert_eq!(sniff(b"\x89PNG\r\n\x1a\n...."), Some("image/png"));
    assert_eq!(sniff(b"\xff\xd8\xff\xe0"), Some("image/jpeg"));
    assert_eq!(sniff(b"GIF89a"), Some("image/gif"));
    assert_eq!(sniff(b"RIFF\0\0\0\0WEBPVP8 "), Some("image/webp"));
    assert_eq!(sniff(b"%PDF-1.7"), Some("application/pdf"));
    assert_eq!(sniff(b"\0\0\0\x18ftypmp42"), Some("video/mp4"));
    assert_eq!(sniff(b"PK\x03\x04"), Some("application/zip"));
    assert_eq!(sniff(b"plain text"), None);
    assert_eq!(sniff(b""), None);
    assert_eq!(sniff(b"RIFF"), None);
}

#[test]
fn only_https_urls_without_fragments_parse() {
    let u = HttpsUrl::parse("HTTPS://127.0.0.1:4443?k=v").expect("parses");
    assert_eq!(
        (u.host.as_str(), u.port, u.target.as_str()),
        ("127.0.0.1", 4443, "/?k=v")
    );
    assert_eq!(
        HttpsUrl::parse("https://h").map(|u| u.target),
        Some("/".into())
    );
    for bad in [
        "",
        "https://",
        "ftp://h/",
        "https://[::1/",
        "https://[::1]x/",
        "https://h:/",
        "https://h\t/",
    ] {
        assert_eq!(HttpsUrl::parse(bad), None, "{bad:?}");
    }
}
