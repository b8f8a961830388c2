//! The test vectors of fixtures/idproof/vectors.json (SPEC Appendix F): the harness's own
//! code must reproduce every value in the file, accept the signed objects and refuse them
//! with one bit changed. Then two independent implementations, fixtures/idproof/check.mjs
//! (node's built-in crypto) and check.py (Python's `cryptography`), rebuild the same values
//! from the inputs alone; agreement between unrelated Ed25519 and SHA-256 code is what makes
//! the vectors worth publishing.
//!
//! To regenerate the file after a deliberate change to the format:
//! `cargo test -p gatecheck --test idproof_vectors -- --ignored write_vectors`.

use std::path::{Path, PathBuf};
use std::process::Command;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use ed25519_dalek::{Signer as _, SigningKey, VerifyingKey};
use gatecheck::http::signing::{self, Reject, ReplayCache};
use gatecheck::idproof::{self, Expected, NonceCache, Proof, ProofCode, ProofFields, Registry};
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

/// RFC 8032 §7.1, TEST 1.
const SEED_HEX: &str = "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60";
const PUBLIC_HEX: &str = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a";
/// TEST 1's signature of the empty message: lets a checker confirm it loaded the key right.
const EMPTY_SIG_HEX: &str = "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b";

const AUTH_BODY: &str = r#"{"v":1,"user":"+4915112345678","token":"tok-valid-1","request_id":"5f0c6a4e-2b1d-4e7a-9c55-0d4f7b1e9a10","timestamp":1767225600}"#;
const PUSH_BODY: &str =
    r#"{"v":1,"user":"+4915112345678","device_id":1834299211,"count":1,"priority":"high"}"#;
const IDEMPOTENCY_KEY: &str = "0b6e8f2a-3c4d-4e5f-8a9b-1c2d3e4f5a6b";

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

fn vectors_path() -> PathBuf {
    root().join("fixtures/idproof/vectors.json")
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex<const N: usize>(s: &str) -> [u8; N] {
    assert_eq!(s.len(), 2 * N, "{s}");
    let mut out = [0u8; N];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).expect("hex");
    }
    out
}

fn key() -> SigningKey {
    SigningKey::from_bytes(&unhex::<32>(SEED_HEX))
}

/// Bytes `first`, `first + 1`, … (the spec's recognisable placeholder inputs).
fn counting<const N: usize>(first: u8) -> [u8; N] {
    std::array::from_fn(|i| first + i as u8)
}

fn identity_key() -> [u8; 33] {
    let mut k = [0u8; 33];
    k[0] = 0x05;
    k[1..].copy_from_slice(&counting::<32>(1));
    k
}

fn proof_fields(ik: &[u8; 33]) -> ProofFields<'_> {
    ProofFields {
        provider_id: "example-provider",
        identifier: "+4915112345678",
        identity_key: ik,
        device_id: 1_834_299_211,
        issued_at: 1_767_225_600,
        expires_at: 1_767_225_900,
        nonce: counting(0x00),
    }
}

struct RequestVector {
    name: &'static str,
    base_url: &'static str,
    path: &'static str,
    timestamp: u64,
    nonce: [u8; 16],
    body: &'static str,
    unsigned_headers: Value,
}

fn requests() -> [RequestVector; 2] {
    [
        RequestVector {
            name: "auth",
            base_url: "https://provider.example",
            path: "/gatecheck/v1/auth",
            timestamp: 1_767_225_600,
            nonce: counting(0x10),
            body: AUTH_BODY,
            unsigned_headers: json!({"Content-Type": "application/json"}),
        },
        RequestVector {
            name: "push-under-path-prefix",
            base_url: "https://provider.example/api",
            path: "/api/gatecheck/v1/push",
            timestamp: 1_767_225_630,
            nonce: counting(0x20),
            body: PUSH_BODY,
            unsigned_headers: json!({
                "Content-Type": "application/json",
                "Idempotency-Key": IDEMPOTENCY_KEY,
            }),
        },
    ]
}

/// Every value of vectors.json, computed by the harness's own code.
fn generate() -> Value {
    let key = key();
    let ik = identity_key();
    let f = proof_fields(&ik);
    let proof = Proof::sign(&key, &f);
    let signed = String::from_utf8(proof.signed_bytes()).expect("ASCII");

    let requests: Vec<Value> = requests()
        .iter()
        .map(|r| {
            let h = signing::sign(
                &key,
                "POST",
                r.path,
                r.timestamp,
                r.nonce,
                r.body.as_bytes(),
            );
            let signed =
                signing::signed_bytes("POST", r.path, &h.timestamp, &h.nonce, r.body.as_bytes());
            let headers: serde_json::Map<String, Value> = h
                .pairs()
                .into_iter()
                .map(|(n, v)| (n.to_owned(), Value::String(v)))
                .collect();
            json!({
                "name": r.name,
                "inputs": {
                    "method": "POST",
                    "base_url": r.base_url,
                    "path": r.path,
                    "timestamp": r.timestamp,
                    "nonce_hex": hex(&r.nonce),
                    "body": r.body,
                },
                "unsigned_headers": r.unsigned_headers,
                "body_sha256": hex(&Sha256::digest(r.body.as_bytes())),
                "signed_bytes": String::from_utf8(signed).expect("ASCII"),
                "headers": headers,
            })
        })
        .collect();

    json!({
        "description": "Test vectors for the identifier proof (SPEC §11) and the signed gatekeeper requests (SPEC §12.1); SPEC Appendix F. Strings are exact: every signed byte string and body is ASCII and carries no trailing line feed.",
        "key": {
            "source": "RFC 8032 §7.1 TEST 1",
            "seed_hex": SEED_HEX,
            "public_hex": hex(key.verifying_key().as_bytes()),
            "public_base64": STANDARD.encode(key.verifying_key().as_bytes()),
            "empty_message_signature_hex": hex(&key.sign(b"").to_bytes()),
        },
        "identifier_proof": {
            "inputs": {
                "provider_id": f.provider_id,
                "identifier": f.identifier,
                "identity_key_hex": hex(&ik),
                "device_id": f.device_id,
                "issued_at": f.issued_at,
                "expires_at": f.expires_at,
                "nonce_hex": hex(&f.nonce),
            },
            "identity_key": proof.identity_key,
            "nonce": proof.nonce,
            "signed_bytes": signed,
            "signature": proof.signature,
            "json": proof.to_json(),
        },
        "signed_requests": requests,
    })
}

fn file() -> Value {
    let text = std::fs::read_to_string(vectors_path()).expect("read fixtures/idproof/vectors.json");
    serde_json::from_str(&text).expect("vectors.json is JSON")
}

#[test]
#[ignore = "writes fixtures/idproof/vectors.json; run by hand after a deliberate change"]
fn write_vectors() {
    let text = serde_json::to_string_pretty(&generate()).expect("serialize") + "\n";
    std::fs::write(vectors_path(), text).expect("write vectors.json");
}

#[test]
fn key_is_rfc8032_test1() {
    let key = key();
    assert_eq!(hex(key.verifying_key().as_bytes()), PUBLIC_HEX);
    assert_eq!(hex(&key.sign(b"").to_bytes()), EMPTY_SIG_HEX);
}

#[test]
fn file_holds_exactly_what_the_code_computes() {
    let (have, want) = (file(), generate());
    if have != want {
        panic!(
            "fixtures/idproof/vectors.json differs from what the code computes:\n{}",
            serde_json::to_string_pretty(&want).unwrap_or_default()
        );
    }
    // The values the spec's prose quotes, checked on their own.
    let p = &have["identifier_proof"];
    assert_eq!(p["nonce"], "AAECAwQFBgcICQoLDA0ODw");
    assert_eq!(
        p["signed_bytes"].as_str().unwrap().split('\n').count(),
        8,
        "eight lines"
    );
    for r in have["signed_requests"].as_array().unwrap() {
        assert_eq!(r["signed_bytes"].as_str().unwrap().split('\n').count(), 6);
    }
}

#[test]
fn proof_vector_verifies_and_a_flipped_bit_does_not() {
    let v = file();
    let json = v["identifier_proof"]["json"].as_str().unwrap();
    let proof = Proof::parse(json.as_bytes()).expect("the vector parses");
    assert_eq!(
        proof.signed_bytes(),
        v["identifier_proof"]["signed_bytes"]
            .as_str()
            .unwrap()
            .as_bytes()
    );
    let mut registry = Registry::new();
    registry.add(
        "example-provider",
        VerifyingKey::from_bytes(&unhex::<32>(PUBLIC_HEX)).unwrap(),
    );
    let ik = identity_key();
    let expected = Expected {
        identifier: "+4915112345678",
        identity_key: &ik,
        device_id: 1_834_299_211,
    };
    let now = 1_767_225_600;
    idproof::verify(&proof, &registry, &expected, now, &mut NonceCache::new())
        .expect("the vector verifies");

    // One bit of the signature.
    let mut sig = STANDARD.decode(&proof.signature).unwrap();
    sig[0] ^= 1;
    let mut bad = proof.clone();
    bad.signature = STANDARD.encode(&sig);
    let e = idproof::verify(&bad, &registry, &expected, now, &mut NonceCache::new()).unwrap_err();
    assert_eq!(e.code, ProofCode::Invalid, "{e}");
    // One bit of a signed value (the last nonce byte 0x0f becomes 0x0e).
    let mut bad = proof.clone();
    bad.nonce = "AAECAwQFBgcICQoLDA0ODg".into();
    let e = idproof::verify(&bad, &registry, &expected, now, &mut NonceCache::new()).unwrap_err();
    assert_eq!(e.code, ProofCode::Invalid, "{e}");
    // One bit of the JSON text (the device id's last digit 1 becomes 0): still parses, no
    // longer verifies.
    let flipped = json.replace("1834299211", "1834299210");
    let bad = Proof::parse(flipped.as_bytes()).unwrap();
    let e = idproof::verify(&bad, &registry, &expected, now, &mut NonceCache::new()).unwrap_err();
    assert_eq!(e.code, ProofCode::Invalid, "{e}");
}

#[test]
fn request_vectors_verify_and_a_flipped_bit_does_not() {
    let v = file();
    let vk = VerifyingKey::from_bytes(&unhex::<32>(PUBLIC_HEX)).unwrap();
    for r in v["signed_requests"].as_array().unwrap() {
        let name = r["name"].as_str().unwrap();
        let inputs = &r["inputs"];
        let path = inputs["path"].as_str().unwrap();
        let body = inputs["body"].as_str().unwrap().as_bytes();
        let now = inputs["timestamp"].as_u64().unwrap();
        let headers = r["headers"].as_object().unwrap().clone();
        // The path is the base URL's path followed by the endpoint.
        let base_path = inputs["base_url"]
            .as_str()
            .unwrap()
            .splitn(4, '/')
            .nth(3)
            .map_or(String::new(), |p| format!("/{p}"));
        assert!(path.starts_with(&base_path), "{name}");

        signing::verify(
            &vk,
            "POST",
            path,
            &lookup(&headers),
            body,
            now,
            &mut ReplayCache::new(),
        )
        .unwrap_or_else(|e| panic!("{name}: {e}"));

        // One bit of the body.
        let mut flipped = body.to_vec();
        flipped[5] ^= 1;
        let r1 = signing::verify(
            &vk,
            "POST",
            path,
            &lookup(&headers),
            &flipped,
            now,
            &mut ReplayCache::new(),
        );
        assert_eq!(r1, Err(Reject::BadSignature), "{name}");
        // One bit of the signature.
        let mut h2 = headers.clone();
        let mut sig = STANDARD
            .decode(h2["X-Gatekeeper-Signature"].as_str().unwrap())
            .unwrap();
        sig[40] ^= 0x80;
        h2["X-Gatekeeper-Signature"] = Value::String(STANDARD.encode(&sig));
        let r2 = signing::verify(
            &vk,
            "POST",
            path,
            &lookup(&h2),
            body,
            now,
            &mut ReplayCache::new(),
        );
        assert_eq!(r2, Err(Reject::BadSignature), "{name}");
        // The path without its prefix (what a provider that forgot its base path would
        // rebuild) does not verify.
        if !base_path.is_empty() {
            let bare = &path[base_path.len()..];
            let r3 = signing::verify(
                &vk,
                "POST",
                bare,
                &lookup(&headers),
                body,
                now,
                &mut ReplayCache::new(),
            );
            assert_eq!(r3, Err(Reject::BadSignature), "{name}");
        }
    }
}

/// SPEC.md's Appendix F quotes every value of vectors.json, so the prose cannot drift from
/// the data the checkers test.
#[test]
fn appendix_quotes_every_value() {
    let path = root().join("SPEC.md");
    let text = std::fs::read_to_string(&path).expect("read SPEC.md");
    let v = file();
    let quoted = |s: &str| serde_json::to_string(s).expect("string");
    let p = &v["identifier_proof"];
    let signed = p["signed_bytes"].as_str().unwrap();
    let mut wanted: Vec<String> = vec![
        v["key"]["seed_hex"].as_str().unwrap().into(),
        v["key"]["public_hex"].as_str().unwrap().into(),
        v["key"]["public_base64"].as_str().unwrap().into(),
        v["key"]["empty_message_signature_hex"]
            .as_str()
            .unwrap()
            .into(),
        p["inputs"]["identity_key_hex"].as_str().unwrap().into(),
        p["inputs"]["nonce_hex"].as_str().unwrap().into(),
        p["identity_key"].as_str().unwrap().into(),
        p["nonce"].as_str().unwrap().into(),
        quoted(signed),
        format!("Signed bytes (§11.2), {} bytes:", signed.len()),
        p["signature"].as_str().unwrap().into(),
        p["json"].as_str().unwrap().into(),
    ];
    for r in v["signed_requests"].as_array().unwrap() {
        let body = r["inputs"]["body"].as_str().unwrap();
        wanted.push(format!("\n    {body}\n"));
        wanted.push(format!("Body ({} bytes", body.len()));
        wanted.push(format!(
            "| path | `{}` |",
            r["inputs"]["path"].as_str().unwrap()
        ));
        wanted.push(r["inputs"]["nonce_hex"].as_str().unwrap().into());
        wanted.push(r["body_sha256"].as_str().unwrap().into());
        wanted.push(quoted(r["signed_bytes"].as_str().unwrap()));
        for (name, value) in r["headers"].as_object().unwrap() {
            wanted.push(format!("    {name}: {}\n", value.as_str().unwrap()));
        }
    }
    for w in wanted {
        assert!(text.contains(&w), "SPEC.md Appendix F does not quote {w:?}");
    }
}

/// SPEC.md F.4: the PLAIN-IDPROOF message of §7.4 for the proof of F.1, as
/// `idproof::sasl` builds it, and parsed back.
#[test]
fn appendix_f4_is_the_sasl_message() {
    use base64::Engine as _;
    let text = std::fs::read_to_string(root().join("SPEC.md")).expect("read SPEC.md");
    let f4 = &text[text.find("### F.4").expect("F.4")..];
    let f4 = &f4[..f4.find("\n## ").unwrap_or(f4.len())];
    let b64: String = f4.lines().filter_map(|l| l.strip_prefix("    ")).collect();
    let v = file();
    let json = v["identifier_proof"]["json"].as_str().unwrap();
    let built = gatecheck::idproof::sasl::initial_response("u7f3k2q9", "s3cret-credential", json);
    assert_eq!(
        base64::engine::general_purpose::STANDARD.encode(&built),
        b64,
        "F.4 differs from the message idproof::sasl builds"
    );
    let parsed = gatecheck::idproof::sasl::parse(&built).expect("parses");
    assert_eq!(
        (
            parsed.authzid.as_str(),
            parsed.authcid.as_str(),
            parsed.password.as_str()
        ),
        ("", "u7f3k2q9", "s3cret-credential")
    );
    assert_eq!(parsed.proof, json.as_bytes());
}

/// A header lookup over a vector's header object, by case-insensitive name.
fn lookup(h: &serde_json::Map<String, Value>) -> impl Fn(&str) -> Option<String> + '_ {
    move |n: &str| {
        h.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(n))
            .and_then(|(_, v)| v.as_str().map(str::to_owned))
    }
}

/// Runs an independent checker; `None` (with the reason) where its interpreter is absent.
fn run_checker(program: &str, args: &[&str]) -> Option<std::process::Output> {
    match Command::new(program)
        .args(args)
        .current_dir(root())
        .output()
    {
        Ok(out) => Some(out),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => panic!("cannot run {program}: {e}"),
    }
}

fn report(what: &str, out: &std::process::Output) {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{what} disagrees with vectors.json ({}):\n{stdout}{stderr}",
        out.status
    );
    println!("{what}: {}", stdout.trim());
}

#[test]
fn node_builtin_crypto_agrees() {
    match run_checker("node", &["fixtures/idproof/check.mjs"]) {
        Some(out) => report("node fixtures/idproof/check.mjs", &out),
        None if std::env::var("CI").as_deref() == Ok("true") => panic!(
            "CI=true but node is not on PATH: the independent check of fixtures/idproof/vectors.json needs it"
        ),
        None => println!("skipped: node is not on PATH (fixtures/idproof/check.mjs not run)"),
    }
}

#[test]
fn python_cryptography_agrees_when_installed() {
    // check.py itself exits 0 with a skip note when `cryptography` is not importable, so
    // only a missing python3 is a skip here.
    match run_checker("python3", &["fixtures/idproof/check.py"]) {
        Some(out) => report("python3 fixtures/idproof/check.py", &out),
        None => println!("skipped: python3 is not on PATH (fixtures/idproof/check.py not run)"),
    }
}
