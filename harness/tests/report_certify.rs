//! Certification end to end: `gatecheck keygen`, `certify` against the reference provider
//! (and against a mutant), and `verify`, which must fail after one byte of the bundle or of
//! any scenario file changes. The private key appears in no output, report or bundle.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_gatecheck"))
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn tempdir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("gatecheck-certify-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// An iut.toml for the reference provider beside gatecheck, with `mutant` switched on.
fn iut_file(dir: &Path, mutant: Option<&str>) -> PathBuf {
    let reference = PathBuf::from(env!("CARGO_BIN_EXE_gatecheck")).with_file_name(format!(
        "gatecheck-reference{}",
        std::env::consts::EXE_SUFFIX
    ));
    assert!(
        reference.is_file(),
        "{} is missing: `cargo test --workspace` builds it",
        reference.display()
    );
    let args = match mutant {
        Some(m) => format!("[\"--mutant\", \"{m}\", \"client\"]"),
        None => "[\"client\"]".to_string(),
    };
    let path = dir.join(format!("iut-{}.toml", mutant.unwrap_or("plain")));
    std::fs::write(
        &path,
        format!(
            "name = \"reference {}\"\nroles = [\"client\"]\nfeatures = [\"transport.noise\", \"transport.tls\"]\n\n[launch]\ncommand = {:?}\nargs = {args}\n",
            mutant.unwrap_or("plain"),
            reference.display().to_string()
        ),
    )
    .expect("write iut.toml");
    path
}

/// A small suite: three scenarios of the real one (their fixtures come from the built-in
/// suite, as there is no fixtures/ beside it).
fn small_suite(dir: &Path) -> PathBuf {
    let suite = dir.join("suite");
    std::fs::create_dir_all(suite.join("stanza")).expect("dir");
    for name in ["ping", "iq-without-child", "iq-two-children"] {
        std::fs::copy(
            root().join(format!("scenarios/stanza/{name}.toml")),
            suite.join(format!("stanza/{name}.toml")),
        )
        .expect("copy scenario");
    }
    suite
}

fn certify(dir: &Path, iut: &Path, suite: &Path, bundle: &Path) -> Output {
    bin()
        .arg("certify")
        .arg("--iut")
        .arg(iut)
        .arg("--key")
        .arg(dir.join("k.key"))
        .arg("--scenarios")
        .arg(suite)
        .args(["--seed", "11", "--report-dir"])
        .arg(dir.join("reports"))
        .arg("--out")
        .arg(bundle)
        .env("CI", "true")
        .output()
        .expect("certify runs")
}

fn verify(dir: &Path, bundle: &Path, suite: &Path, key: &str) -> Output {
    bin()
        .arg("verify")
        .arg(bundle)
        .arg("--pub")
        .arg(dir.join(key))
        .arg("--scenarios")
        .arg(suite)
        .output()
        .expect("verify runs")
}

#[test]
fn a_bundle_verifies_until_one_byte_of_it_or_of_the_suite_changes() {
    let dir = tempdir("bundle");
    let keygen = |prefix: &str| {
        bin()
            .args(["keygen", "--out"])
            .arg(dir.join(prefix))
            .output()
            .expect("keygen runs")
    };
    let out = keygen("k");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let mut all_output = text(&out);
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(dir.join("k.key"))
            .expect("key")
            .permissions()
            .mode();
        assert_eq!(
            mode & 0o777,
            0o600,
            "the private key is readable by its owner only"
        );
    }
    let again = keygen("k");
    assert_eq!(again.status.code(), Some(2));
    assert!(text(&again).contains("already exists"), "{}", text(&again));
    assert_eq!(keygen("other").status.code(), Some(0));

    let suite = small_suite(&dir);
    let bundle = dir.join("bundle.json");
    let out = certify(&dir, &iut_file(&dir, None), &suite, &bundle);
    all_output.push_str(&text(&out));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        text(&out).contains("CERTIFIED: reference plain"),
        "{}",
        text(&out)
    );

    let out = verify(&dir, &bundle, &suite, "k.pub");
    all_output.push_str(&text(&out));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(text(&out).contains("signature: valid"), "{}", text(&out));
    assert!(
        text(&out).contains("CERTIFIED: reference plain (3 scenarios"),
        "{}",
        text(&out)
    );
    // STANZA-3, 4 and 7: a certificate says how much of the profile it covers.
    assert!(text(&out).contains("checked: 3 of the "), "{}", text(&out));
    let sealed: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&bundle).expect("bundle")).expect("JSON");
    assert_eq!(
        sealed["manifest"]["musts"]["checked"],
        serde_json::json!(["STANZA-3", "STANZA-4", "STANZA-7"])
    );

    // Another key does not verify it.
    let out = verify(&dir, &bundle, &suite, "other.pub");
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("INVALID: "), "{}", text(&out));

    // One byte of the bundle: in the signed manifest, and outside it.
    let original = std::fs::read(&bundle).expect("bundle");
    let body = String::from_utf8_lossy(&original).into_owned();
    for (what, at) in [
        (
            "the verdict count",
            body.find("\"pass\": 3").expect("a pass count") + 8,
        ),
        (
            "the signature",
            body.rfind("\"signature\"").expect("signature") + 16,
        ),
        (
            "the layout",
            body.find("\"manifest\"").expect("manifest") - 1,
        ),
    ] {
        let mut changed = original.clone();
        changed[at] = if changed[at] == b'2' { b'4' } else { b'2' };
        std::fs::write(&bundle, &changed).expect("write");
        let out = verify(&dir, &bundle, &suite, "k.pub");
        assert_eq!(out.status.code(), Some(1), "{what}: {}", text(&out));
        assert!(text(&out).contains("INVALID: "), "{what}: {}", text(&out));
    }
    std::fs::write(&bundle, &original).expect("restore");

    // One byte of a scenario file.
    let ping = suite.join("stanza/ping.toml");
    let mut scenario = std::fs::read(&ping).expect("scenario");
    scenario[0] ^= 0x20;
    std::fs::write(&ping, &scenario).expect("write");
    let out = verify(&dir, &bundle, &suite, "k.pub");
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("scenarios/stanza/ping.toml: changed since the bundle was made"),
        "{}",
        text(&out)
    );

    // The private key is nowhere: not in any output, the bundle or the report.
    let secret = std::fs::read_to_string(dir.join("k.key")).expect("key");
    let secret = secret.lines().nth(1).expect("key line").trim().to_string();
    assert!(!all_output.contains(&secret), "the private key was printed");
    assert!(!body.contains(&secret), "the private key is in the bundle");
    let mut stack = vec![dir.join("reports")];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("dir").filter_map(|e| e.ok()) {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let t = std::fs::read_to_string(&p).unwrap_or_default();
                assert!(
                    !t.contains(&secret),
                    "the private key is in {}",
                    p.display()
                );
            }
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_failed_must_is_not_certified_and_verify_says_so() {
    let dir = tempdir("mutant");
    let out = bin()
        .args(["keygen", "--out"])
        .arg(dir.join("k"))
        .output()
        .expect("keygen");
    assert_eq!(out.status.code(), Some(0));
    let suite = small_suite(&dir);
    let bundle = dir.join("bundle.json");
    let out = certify(&dir, &iut_file(&dir, Some("ping-error")), &suite, &bundle);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("NOT CERTIFIED: reference ping-error"),
        "{}",
        text(&out)
    );
    assert!(
        text(&out).contains("  - stanza/ping: fail (MUST STANZA-7, STANZA-3): STANZA-7: "),
        "{}",
        text(&out)
    );
    let out = verify(&dir, &bundle, &suite, "k.pub");
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("signature: valid"), "{}", text(&out));
    assert!(
        text(&out).contains("NOT CERTIFIED: reference ping-error"),
        "{}",
        text(&out)
    );

    // A key file that is no key is refused before anything runs, without quoting it.
    std::fs::write(
        dir.join("k.key"),
        "gatecheck ed25519 private key\nnot-base64-SECRETISH\n",
    )
    .expect("write");
    let out = certify(&dir, &iut_file(&dir, None), &suite, &dir.join("b2.json"));
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("the second line is not base64"),
        "{}",
        text(&out)
    );
    assert!(!text(&out).contains("SECRETISH"), "{}", text(&out));
    let _ = std::fs::remove_dir_all(&dir);
}
