use super::*;
use ed25519_dalek::Verifier as _;

const SEED: [u8; 32] = [7; 32];
const NOW: u64 = 1_767_225_600;

/// 0x05 followed by 0x01..=0x20.
const IK: [u8; 33] = {
    let mut k = [0u8; 33];
    k[0] = 0x05;
    let mut i = 1;
    while i < 33 {
        k[i] = i as u8;
        i += 1;
    }
    k
};

fn identity_key() -> [u8; 33] {
    IK
}

fn key() -> SigningKey {
    SigningKey::from_bytes(&SEED)
}

fn fields(ik: &[u8; 33]) -> ProofFields<'_> {
    ProofFields {
        provider_id: "example-provider",
        identifier: "+4915112345678",
        identity_key: ik,
        device_id: 1_834_299_211,
        issued_at: NOW,
        expires_at: NOW + 300,
        nonce: [9; 16],
    }
}

fn proof() -> Proof {
    Proof::sign(&key(), &fields(&IK))
}

fn registry() -> Registry {
    let mut r = Registry::new();
    r.add("example-provider", key().verifying_key());
    r
}

fn check(p: &Proof, now: u64, cache: &mut NonceCache) -> Result<(), ProofError> {
    let ik = identity_key();
    let expected = Expected {
        identifier: "+4915112345678",
        identity_key: &ik,
        device_id: 1_834_299_211,
    };
    verify(p, &registry(), &expected, now, cache)
}

fn code(r: Result<(), ProofError>) -> ProofCode {
    r.expect_err("should be refused").code
}

/// The JSON of `proof()` with member `name`'s value text replaced by `raw`.
fn with_member(name: &str, raw: &str) -> Vec<u8> {
    let mut obj: Vec<(String, String)> = Vec::new();
    let p = proof();
    let v: serde_json::Map<String, Value> = serde_json::from_str(&p.to_json()).unwrap();
    for (k, val) in v {
        let text = if k == name {
            raw.to_owned()
        } else {
            val.to_string()
        };
        obj.push((k, text));
    }
    let body: Vec<String> = obj.iter().map(|(k, v)| format!("\"{k}\":{v}")).collect();
    format!("{{{}}}", body.join(",")).into_bytes()
}

fn parse_err(json: &[u8]) -> ProofError {
    Proof::parse(json).expect_err("should not parse")
}

#[test]
fn codes_are_spelled_as_in_the_spec() {
    let all = [
        (ProofCode::Missing, "proof_missing"),
        (ProofCode::Invalid, "proof_invalid"),
        (ProofCode::Expired, "proof_expired"),
        (ProofCode::NotYetValid, "proof_not_yet_valid"),
        (ProofCode::Replayed, "proof_replayed"),
        (ProofCode::Mismatch, "proof_mismatch"),
        (ProofCode::UnknownProvider, "unknown_provider"),
    ];
    for (c, s) in all {
        assert_eq!(c.code(), s);
        assert_eq!(c.to_string(), s);
    }
    let e = ProofError::new(ProofCode::Expired, "late");
    assert_eq!(e.to_string(), "proof_expired: late");
}

#[test]
fn sign_parse_round_trip_and_accept() {
    let p = proof();
    let json = p.to_json();
    assert!(json.starts_with("{\"v\":1,\"provider_id\":\"example-provider\","));
    let back = Proof::parse(json.as_bytes()).unwrap();
    assert_eq!(back, p);
    let mut cache = NonceCache::new();
    check(&back, NOW, &mut cache).unwrap();
    assert!(cache.seen("example-provider", &p.nonce, NOW));
    assert_eq!(
        String::from_utf8(p.signed_bytes()).unwrap(),
        format!(
            "gatecheck-idproof-v1\nexample-provider\n+4915112345678\n{}\n1834299211\n{}\n{}\n{}",
            p.identity_key,
            NOW,
            NOW + 300,
            p.nonce
        )
    );
    // Whitespace around the object is allowed; it is not part of any value.
    assert!(Proof::parse(format!(" \n{json}\n ").as_bytes()).is_ok());
}

#[test]
fn every_code_is_reachable() {
    // Missing.
    assert_eq!(parse_err(b"").code, ProofCode::Missing);
    assert_eq!(parse_err(b" \r\n").code, ProofCode::Missing);
    // Invalid: does not parse, and a signature that does not verify.
    assert_eq!(parse_err(b"{").code, ProofCode::Invalid);
    let mut forged = proof();
    forged.device_id += 1;
    let mut cache = NonceCache::new();
    assert_eq!(code(check(&forged, NOW, &mut cache)), ProofCode::Invalid);
    // Unknown provider.
    let mut other = fields(&IK);
    other.provider_id = "other-provider";
    let p = Proof::sign(&key(), &other);
    assert_eq!(code(check(&p, NOW, &mut cache)), ProofCode::UnknownProvider);
    // Not yet valid: 61 s in the future is refused, 60 s is fine.
    let p = proof();
    assert_eq!(
        code(check(&p, NOW - 61, &mut NonceCache::new())),
        ProofCode::NotYetValid
    );
    check(&p, NOW - 60, &mut NonceCache::new()).unwrap();
    // Expired: 60 s after expires_at is fine, 61 s is not.
    check(&p, NOW + 360, &mut NonceCache::new()).unwrap();
    assert_eq!(
        code(check(&p, NOW + 361, &mut NonceCache::new())),
        ProofCode::Expired
    );
    // Mismatch: each of the three bound values.
    let mut f = fields(&IK);
    f.identifier = "+4915100000000";
    let p = Proof::sign(&key(), &f);
    assert_eq!(code(check(&p, NOW, &mut cache)), ProofCode::Mismatch);
    let mut f = fields(&IK);
    f.device_id = 7;
    let p = Proof::sign(&key(), &f);
    assert_eq!(code(check(&p, NOW, &mut cache)), ProofCode::Mismatch);
    let mut ik = identity_key();
    ik[32] ^= 1;
    let p = Proof::sign(&key(), &fields(&ik));
    assert_eq!(code(check(&p, NOW, &mut cache)), ProofCode::Mismatch);
    // None of the refused proofs used up the nonce they share with `proof()`.
    assert!(cache.is_empty());
    // Replayed.
    let p = proof();
    check(&p, NOW, &mut cache).unwrap();
    let e = check(&p, NOW + 1, &mut cache).unwrap_err();
    assert_eq!(e.code, ProofCode::Replayed);
    assert!(e.reason.contains(&p.nonce), "{e}");
}

#[test]
fn lifetime_limits() {
    let mut cache = NonceCache::new();
    for (life, ok) in [
        (0i64, false),
        (-1, false),
        (1, true),
        (300, true),
        (301, false),
    ] {
        let mut f = fields(&IK);
        f.expires_at = (NOW as i64 + life) as u64;
        f.nonce = [life as u8; 16];
        let p = Proof::sign(&key(), &f);
        let r = check(&p, NOW, &mut cache);
        if ok {
            r.unwrap();
        } else {
            let e = r.unwrap_err();
            assert_eq!(e.code, ProofCode::Invalid, "lifetime {life}");
            assert!(e.reason.contains("lifetime"), "{e}");
        }
    }
}

#[test]
fn first_failure_decides() {
    // Bad signature and expired: invalid, since authenticity comes first.
    let mut p = proof();
    p.identifier = "+4915100000000".into();
    assert_eq!(
        code(check(&p, NOW + 10_000, &mut NonceCache::new())),
        ProofCode::Invalid
    );
    // Unknown provider and bad signature: unknown_provider.
    let mut p = proof();
    p.provider_id = "nobody".into();
    assert_eq!(
        code(check(&p, NOW, &mut NonceCache::new())),
        ProofCode::UnknownProvider
    );
    // Expired and mismatching: expired.
    let mut f = fields(&IK);
    f.device_id = 5;
    let p = Proof::sign(&key(), &f);
    assert_eq!(
        code(check(&p, NOW + 10_000, &mut NonceCache::new())),
        ProofCode::Expired
    );
    // Replayed and mismatching: mismatch.
    let mut cache = NonceCache::new();
    check(&proof(), NOW, &mut cache).unwrap();
    assert_eq!(code(check(&p, NOW, &mut cache)), ProofCode::Mismatch);
}

#[test]
fn any_registered_key_verifies() {
    let other = SigningKey::from_bytes(&[8; 32]);
    let mut r = Registry::new();
    r.add("example-provider", other.verifying_key());
    r.add("example-provider", key().verifying_key());
    r.add("example-provider", key().verifying_key());
    assert_eq!(r.keys("example-provider").len(), 2);
    assert!(r.keys("nobody").is_empty());
    let ik = identity_key();
    let expected = Expected {
        identifier: "+4915112345678",
        identity_key: &ik,
        device_id: 1_834_299_211,
    };
    verify(&proof(), &r, &expected, NOW, &mut NonceCache::new()).unwrap();
    let p = Proof::sign(&other, &fields(&ik));
    verify(&p, &r, &expected, NOW, &mut NonceCache::new()).unwrap();
}

#[test]
fn duplicate_members_are_refused() {
    let json = proof().to_json();
    let dup = json.replacen("{\"v\":1,", "{\"v\":1,\"v\":1,", 1);
    let e = parse_err(dup.as_bytes());
    assert_eq!(e.code, ProofCode::Invalid);
    assert!(e.reason.contains("more than once"), "{e}");
    // The same name spelled with an escape is the same name.
    let dup = json.replacen(
        "\"device_id\":1834299211",
        "\"device_id\":1834299211,\"device\\u005fid\":1",
        1,
    );
    assert!(parse_err(dup.as_bytes()).reason.contains("more than once"));
    // A duplicate with a different value too.
    let dup = json.replacen("}", ",\"identifier\":\"+4915100000000\"}", 1);
    assert!(parse_err(dup.as_bytes()).reason.contains("\"identifier\""));
}

#[test]
fn members_exactly() {
    let json = proof().to_json();
    let extra = json.replacen("}", ",\"extra\":1}", 1);
    assert!(parse_err(extra.as_bytes()).reason.contains("\"extra\""));
    let missing = json.replacen("\"v\":1,", "", 1);
    assert!(
        parse_err(missing.as_bytes())
            .reason
            .contains("\"v\" is missing")
    );
    assert!(parse_err(b"[]").reason.contains("JSON object"));
    assert!(parse_err(b"\"x\"").reason.contains("JSON object"));
    let trailing = format!("{json}{{}}");
    assert!(
        parse_err(trailing.as_bytes())
            .reason
            .contains("not a proof object")
    );
    let big = format!("{json}{}", " ".repeat(MAX_PROOF_BYTES));
    assert!(parse_err(big.as_bytes()).reason.contains("more than"));
}

#[test]
fn member_syntax() {
    let cases: &[(&str, &str, &str)] = &[
        ("v", "2", "number 1"),
        ("v", "1.0", "integer"),
        ("v", "\"1\"", "integer"),
        ("device_id", "0", "between 1"),
        ("device_id", "2147483648", "between 1"),
        ("device_id", "1834299211.0", "integer"),
        ("device_id", "-5", "negative"),
        ("device_id", "\"1834299211\"", "integer"),
        ("issued_at", "1.7672256e9", "integer"),
        ("issued_at", "18446744073709551616", "integer"),
        ("expires_at", "null", "integer"),
        ("provider_id", "\"Example\"", "a-z"),
        ("provider_id", "\"\"", "1 to 64"),
        ("provider_id", &format!("\"{}\"", "a".repeat(65)), "1 to 64"),
        ("provider_id", "1", "string"),
        ("identifier", "\"+491511234\\n5678\"", "whitespace"),
        ("identifier", "\"+4915112345678 \"", "whitespace"),
        ("identifier", "\"+1234567\"", "E.164"),
        ("identifier", "\"+1234567890123456\"", "E.164"),
        ("identifier", "\"4915112345678\"", "local@domain"),
        ("identifier", "\"Alice@example.com\"", "lowercase"),
        ("identifier", "\"a@b@c\"", "one '@'"),
        ("identifier", "\"@example.com\"", "non-empty"),
        ("identifier", "\"a@example..com\"", "empty label"),
        ("identity_key", "\"BQECAwQ=\"", "33 bytes"),
        ("nonce", "\"AAECAwQFBgcICQoLDA0ODw==\"", "base64url"),
        ("nonce", "\"AAECAwQFBgcICQoLDA0ODx\"", "base64url"),
        ("nonce", "\"AAECAwQFBgcICQoLDA0O\"", "16 bytes"),
        ("signature", "\"\"", "64 bytes"),
    ];
    for (member, raw, why) in cases {
        let e = parse_err(&with_member(member, raw));
        assert_eq!(e.code, ProofCode::Invalid, "{member}={raw}");
        assert!(
            e.reason.contains(&format!("\"{member}\"")),
            "{member}={raw}: {e}"
        );
        assert!(e.reason.contains(why), "{member}={raw}: {e}");
    }
    // Accepted spellings of valid identifiers.
    for ok in [
        "+12345678",
        "+123456789012345",
        "alice@example.com",
        "ä@bücher.example",
    ] {
        check_identifier(ok).unwrap();
    }
    assert!(check_identifier(&format!("{}@example.com", "a".repeat(250))).is_err());
    assert!(check_identifier("a\u{7f}@example.com").is_err());
}

#[test]
fn non_canonical_base64_is_refused() {
    let p = proof();
    // identity_key: 33 bytes are 44 characters without padding; padding or a URL-safe
    // alphabet are other spellings of (nearly) the same bytes.
    let mut ik = [0xffu8; 33];
    ik[0] = 0x05;
    let std = STANDARD.encode(ik);
    assert!(std.contains('/'));
    let url = base64::engine::general_purpose::URL_SAFE.encode(ik);
    for bad in [
        format!("{std}===="),
        url,
        format!(" {std}"),
        format!("{std}\n"),
    ] {
        let mut q = p.clone();
        q.identity_key = bad.clone();
        let e = q.check_syntax().unwrap_err();
        assert!(e.reason.contains("identity_key"), "{bad}: {e}");
    }
    // The wrong type byte.
    let mut q = p.clone();
    q.identity_key = STANDARD.encode([0x04u8; 33]);
    assert!(q.check_syntax().unwrap_err().reason.contains("0x05"));
    // signature: 64 bytes end in "==", the last character before it carries 4 bits that
    // must be zero; setting one is the same 64 bytes spelt differently.
    let sig = p.signature.clone();
    assert!(sig.ends_with("=="));
    let last = sig.as_bytes()[sig.len() - 3];
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let pos = alphabet.iter().position(|&c| c == last).unwrap();
    assert_eq!(pos & 0x0f, 0);
    let mut odd = sig[..sig.len() - 3].to_owned();
    odd.push(alphabet[pos | 1] as char);
    odd.push_str("==");
    let mut q = p.clone();
    q.signature = odd;
    assert!(q.check_syntax().unwrap_err().reason.contains("signature"));
    let mut q = p.clone();
    q.signature = sig.trim_end_matches('=').to_owned();
    assert!(q.check_syntax().unwrap_err().reason.contains("signature"));
    // The same refusals reach the gatekeeper's answer through verify.
    let mut q = p;
    q.nonce.push('A');
    assert_eq!(
        code(check(&q, NOW, &mut NonceCache::new())),
        ProofCode::Invalid
    );
}

/// L, the order of the Ed25519 base point, little-endian.
const L: [u8; 32] = [
    0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde, 0x14,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
];

#[test]
fn unreduced_s_is_refused() {
    let mut p = proof();
    let mut sig = STANDARD.decode(&p.signature).unwrap();
    // S + L is the same scalar modulo L, so a lax verifier would accept it.
    let mut carry = 0u16;
    for (s, l) in sig[32..].iter_mut().zip(L) {
        let sum = *s as u16 + l as u16 + carry;
        *s = sum as u8;
        carry = sum >> 8;
    }
    assert_eq!(carry, 0);
    p.signature = STANDARD.encode(&sig);
    p.check_syntax().unwrap();
    let e = check(&p, NOW, &mut NonceCache::new()).unwrap_err();
    assert_eq!(e.code, ProofCode::Invalid);
    assert!(e.reason.contains("signature"), "{e}");
}

#[test]
fn small_order_key_is_refused() {
    // The neutral point as a "public key": with R the neutral point and S = 0 the
    // verification equation holds for every message, so the lax check accepts it.
    let mut neutral = [0u8; 32];
    neutral[0] = 1;
    let weak = VerifyingKey::from_bytes(&neutral).unwrap();
    let mut sig = [0u8; 64];
    sig[..32].copy_from_slice(&neutral);
    let signature = Signature::from_bytes(&sig);
    let mut p = proof();
    p.signature = STANDARD.encode(sig);
    assert!(weak.verify(&p.signed_bytes(), &signature).is_ok());
    let mut r = Registry::new();
    r.add("example-provider", weak);
    let ik = identity_key();
    let expected = Expected {
        identifier: "+4915112345678",
        identity_key: &ik,
        device_id: 1_834_299_211,
    };
    let e = verify(&p, &r, &expected, NOW, &mut NonceCache::new()).unwrap_err();
    assert_eq!(e.code, ProofCode::Invalid);
}

#[test]
fn nonce_cache_forgets_after_the_window() {
    let mut c = NonceCache::new();
    c.insert("p", "n1", 1000);
    assert!(c.seen("p", "n1", 1000));
    assert!(!c.seen("p", "n1", 1001));
    assert!(!c.seen("q", "n1", 1000), "nonces are per provider");
    // A later insert with a shorter horizon does not shorten the memory.
    c.insert("p", "n1", 900);
    assert!(c.seen("p", "n1", 1000));
    c.prune(1000);
    assert_eq!(c.len(), 1);
    c.prune(1001);
    assert!(c.is_empty());

    // Through verify: the nonce is refused until expires_at + 60, and after that the
    // proof itself is expired.
    let p = proof();
    let mut cache = NonceCache::new();
    check(&p, NOW, &mut cache).unwrap();
    assert_eq!(code(check(&p, NOW + 360, &mut cache)), ProofCode::Replayed);
    assert_eq!(code(check(&p, NOW + 361, &mut cache)), ProofCode::Expired);
}

#[test]
fn nonce_cache_stays_bounded() {
    // One accepted proof every 5 s for 1000 s, well past the 420 s an entry can live: the
    // cache holds only the proofs of the last few minutes. (Few iterations: Ed25519 is slow
    // in a debug build.)
    let mut cache = NonceCache::new();
    let signer = key();
    let registry = registry();
    let expected = Expected {
        identifier: "+4915112345678",
        identity_key: &IK,
        device_id: 1_834_299_211,
    };
    let mut peak = 0;
    for i in 0..200u64 {
        let now = NOW + 5 * i;
        let mut f = fields(&IK);
        f.issued_at = now;
        f.expires_at = now + MAX_LIFETIME_S;
        f.nonce[..8].copy_from_slice(&i.to_be_bytes());
        let p = Proof::sign(&signer, &f);
        verify(&p, &registry, &expected, now, &mut cache).unwrap();
        peak = peak.max(cache.len());
    }
    // An entry accepted at t lives until t + 360: 73 entries 5 s apart at most.
    assert!(peak <= 73, "peak {peak}");
    // Insert alone (no prune call) also bounds it.
    let mut c = NonceCache::new();
    for i in 0..10_000u64 {
        c.insert("p", &i.to_string(), 1_000_000 + i);
    }
    assert!(
        c.len() <= (MAX_LIFETIME_S + 2 * SKEW_S + 1) as usize,
        "{}",
        c.len()
    );
}

#[test]
fn random_nonces_differ() {
    let a = random_nonce();
    let b = try_random_nonce().unwrap();
    assert_ne!(a, b);
}

#[test]
fn invalid_rule_names_what_the_issuing_server_broke() {
    let keys = [key().verifying_key()];
    assert_eq!(invalid_rule(&proof(), &keys), None);
    // Another key than the onboarded one: not a signature by an onboarded key (IDPROOF-1).
    let stranger = Proof::sign(&SigningKey::from_bytes(&[8; 32]), &fields(&IK));
    assert_eq!(invalid_rule(&stranger, &keys), Some("IDPROOF-1"));
    // The onboarded key over the lines with a trailing line feed, or with a byte order mark:
    // the bytes are at fault (IDPROOF-2).
    for suffix_or_prefix in [0, 1] {
        let mut p = proof();
        let exact = p.signed_bytes();
        let spelt = if suffix_or_prefix == 0 {
            [&exact[..], b"\n"].concat()
        } else {
            [&b"\xEF\xBB\xBF"[..], &exact[..]].concat()
        };
        p.signature = STANDARD.encode(key().sign(&spelt).to_bytes());
        assert_eq!(invalid_rule(&p, &keys), Some("IDPROOF-2"));
    }
    // A lifetime over 300 s, correctly signed (IDPROOF-5).
    let mut long = fields(&IK);
    long.expires_at = NOW + 3600;
    assert_eq!(
        invalid_rule(&Proof::sign(&key(), &long), &keys),
        Some("IDPROOF-5")
    );
    // A signature that is not 64 bytes of base64 (IDPROOF-3).
    let mut p = proof();
    p.signature = "AAAA".into();
    assert_eq!(invalid_rule(&p, &keys), Some("IDPROOF-3"));
}
