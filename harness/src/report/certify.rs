//! Certification bundles: `gatecheck keygen`, `certify` and `verify`.
//!
//! `certify` runs every scenario that verifies a MUST (or MUST NOT) requirement applying to
//! one of the IUT's declared roles and writes one JSON file: a manifest (the report, the
//! iut.toml as given, the suite's version with the SHA-256 of every scenario and fixture file
//! and of SPEC.md, the harness version, the certification verdict with its reasons, the
//! signer's public key) and an Ed25519 signature over the manifest's exact bytes. `verify`
//! checks the signature with a public key it is given, that no byte outside the manifest
//! changed either, and that the suite it ships with (the one built into the verifying
//! gatecheck, or `--scenarios DIR`) has the very files the manifest hashes.
//!
//! Private keys are read from their file only to sign; no message, log or report carries
//! them (errors about a key file name the file, never its contents).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};

use super::Report;
use crate::iut::IutConfig;
use crate::runner::Verdict;
use crate::scenario::{Scenario, SuiteDirs};
use crate::spec::{Catalogue, Level};

/// The bundle layout's name and version.
pub const FORMAT: &str = "gatecheck-certification-bundle/1";
const PRIVATE_HEADER: &str = "gatecheck ed25519 private key";
const PUBLIC_HEADER: &str = "gatecheck ed25519 public key";

/// What went wrong with keys, suites or bundles.
#[derive(Debug, thiserror::Error)]
pub enum CertifyError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: {message}", path.display())]
    Invalid { path: PathBuf, message: String },
    #[error("{} already exists: keygen never overwrites a key", path.display())]
    Exists { path: PathBuf },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> CertifyError + '_ {
    move |source| CertifyError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn invalid(path: &Path, message: impl Into<String>) -> CertifyError {
    CertifyError::Invalid {
        path: path.to_path_buf(),
        message: message.into(),
    }
}

/// Lowercase hex of SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Makes a key pair: `<prefix>.key` (private, mode 0600) and `<prefix>.pub`. Neither file
/// may exist already. Returns their paths.
pub fn keygen(prefix: &Path) -> Result<(PathBuf, PathBuf), CertifyError> {
    use rand::TryRngCore as _;
    let name = prefix
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let private = prefix.with_file_name(format!("{name}.key"));
    let public = prefix.with_file_name(format!("{name}.pub"));
    for p in [&private, &public] {
        if p.exists() {
            return Err(CertifyError::Exists { path: p.clone() });
        }
    }
    let mut seed = [0u8; 32];
    rand::rngs::OsRng
        .try_fill_bytes(&mut seed)
        .map_err(|e| invalid(&private, format!("no randomness from the OS: {e}")))?;
    let key = SigningKey::from_bytes(&seed);
    seed.fill(0);
    let secret = format!("{PRIVATE_HEADER}\n{}\n", B64.encode(key.to_bytes()));
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&private)
            .map_err(io(&private))?;
        f.write_all(secret.as_bytes()).map_err(io(&private))?;
        f.sync_all().map_err(io(&private))?;
    }
    let public_text = format!(
        "{PUBLIC_HEADER}\n{}\n",
        B64.encode(key.verifying_key().to_bytes())
    );
    super::replace_file(&public, |out| out.write_all(public_text.as_bytes())).map_err(|e| {
        CertifyError::Io {
            path: e.path,
            source: e.source,
        }
    })?;
    Ok((private, public))
}

/// The 32 bytes of a key file with `header` on its first line.
fn key_bytes(path: &Path, header: &str) -> Result<[u8; 32], CertifyError> {
    let text = std::fs::read_to_string(path).map_err(io(path))?;
    let mut lines = text.lines();
    if lines.next() != Some(header) {
        return Err(invalid(
            path,
            format!("not a {header} file (its first line should be {header:?})"),
        ));
    }
    // The contents are never quoted back: for a private key that would leak it.
    let bytes = lines
        .next()
        .and_then(|l| B64.decode(l.trim()).ok())
        .ok_or_else(|| invalid(path, "the second line is not base64"))?;
    bytes
        .try_into()
        .map_err(|_| invalid(path, "the key is not 32 bytes long"))
}

/// Reads a private key made by [`keygen`].
pub fn load_signing_key(path: &Path) -> Result<SigningKey, CertifyError> {
    Ok(SigningKey::from_bytes(&key_bytes(path, PRIVATE_HEADER)?))
}

/// Reads a public key made by [`keygen`].
pub fn load_verifying_key(path: &Path) -> Result<VerifyingKey, CertifyError> {
    VerifyingKey::from_bytes(&key_bytes(path, PUBLIC_HEADER)?)
        .map_err(|_| invalid(path, "not a valid Ed25519 public key"))
}

/// Files below `dir` on disk, as (path relative to `dir` with `/`, contents), sorted.
fn walk(dir: &Path) -> Result<Vec<(String, Vec<u8>)>, CertifyError> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).map_err(io(&d))? {
            let path = entry.map_err(io(&d))?.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let rel = path
                    .strip_prefix(dir)
                    .unwrap_or(&path)
                    .components()
                    .map(|c| c.as_os_str().to_string_lossy().into_owned())
                    .collect::<Vec<_>>()
                    .join("/");
                let bytes = std::fs::read(&path).map_err(io(&path))?;
                out.push((rel, bytes));
            }
        }
    }
    out.sort();
    Ok(out)
}

/// The files of one part of a suite (`scenarios` or `fixtures`), bundled or on disk, keyed
/// `<part>/<relative path>`.
fn part_files(dir: &Path, part: &str) -> Result<Vec<(String, Vec<u8>)>, CertifyError> {
    match crate::bundle::bundled_files_under(dir) {
        Some(_) => Ok(crate::bundle::files()
            .iter()
            .filter(|(k, _)| k.starts_with(&format!("{part}/")))
            .map(|(k, v)| (k.to_string(), v.to_vec()))
            .collect()),
        None => Ok(walk(dir)?
            .into_iter()
            .map(|(rel, v)| (format!("{part}/{rel}"), v))
            .collect()),
    }
}

/// The suite as a bundle records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SuiteInfo {
    /// SHA-256 over the sorted `path hash` lines of every file and SPEC.md.
    pub version: String,
    pub spec_sha256: String,
    /// SHA-256 of every scenario and fixture file, by `scenarios/...` or `fixtures/...` path.
    pub files: BTreeMap<String, String>,
}

impl SuiteInfo {
    /// Hashes the suite of `dirs` and the SPEC.md built into this binary.
    pub fn of(dirs: &SuiteDirs) -> Result<SuiteInfo, CertifyError> {
        let mut files = BTreeMap::new();
        for (dir, part) in [(&dirs.scenarios, "scenarios"), (&dirs.fixtures, "fixtures")] {
            for (key, bytes) in part_files(dir, part)? {
                files.insert(key, sha256_hex(&bytes));
            }
        }
        let spec_sha256 = sha256_hex(crate::spec::EMBEDDED_SPEC.as_bytes());
        let mut all = String::new();
        for (k, v) in &files {
            all.push_str(&format!("{k} {v}\n"));
        }
        all.push_str(&format!("SPEC.md {spec_sha256}\n"));
        Ok(SuiteInfo {
            version: sha256_hex(all.as_bytes()),
            spec_sha256,
            files,
        })
    }

    /// How `self` (the bundle's) differs from `local`, one line a difference.
    pub fn differences(&self, local: &SuiteInfo) -> Vec<String> {
        let mut out = Vec::new();
        if self.spec_sha256 != local.spec_sha256 {
            out.push("SPEC.md differs from the one the bundle was made with".to_string());
        }
        for (k, v) in &self.files {
            match local.files.get(k) {
                None => out.push(format!("{k}: in the bundle, missing from this suite")),
                Some(l) if l != v => out.push(format!("{k}: changed since the bundle was made")),
                Some(_) => {}
            }
        }
        for k in local.files.keys().filter(|k| !self.files.contains_key(*k)) {
            out.push(format!("{k}: in this suite, not in the bundle"));
        }
        out
    }
}

fn is_must(level: Level) -> bool {
    matches!(level, Level::Must | Level::MustNot)
}

/// The MUST requirements `scenario` cites that apply to one of `roles`.
fn musts<'a>(scenario: &'a Scenario, roles: &[String], catalogue: &Catalogue) -> Vec<&'a str> {
    scenario
        .requirements
        .iter()
        .filter(|id| {
            catalogue
                .get(id)
                .is_some_and(|r| is_must(r.level) && r.applies_to.iter().any(|a| roles.contains(a)))
        })
        .map(String::as_str)
        .collect()
}

/// The scenarios a certification runs: those of a role the IUT declares that cite at least
/// one MUST requirement applying to its roles.
pub fn selection<'a>(
    suite: &'a [Scenario],
    iut: &IutConfig,
    catalogue: &Catalogue,
) -> Vec<&'a Scenario> {
    let roles: Vec<String> = iut.roles.iter().map(|r| r.to_string()).collect();
    suite
        .iter()
        .filter(|s| roles.contains(&s.role.to_string()))
        .filter(|s| !musts(s, &roles, catalogue).is_empty())
        .collect()
}

/// Whether a run certifies the IUT, and if not, why: every MUST a selected scenario cites
/// must have passed. A fail, inconclusive or error is a reason; so is a not-applicable
/// verdict, unless the scenario needs a capability the IUT does not claim (an optional
/// feature it never offered), and so is a scenario the run did not start.
pub fn assess(
    report: &Report,
    selected: &[&Scenario],
    iut: &IutConfig,
    catalogue: &Catalogue,
) -> Vec<String> {
    let roles: Vec<String> = iut.roles.iter().map(|r| r.to_string()).collect();
    let mut reasons = Vec::new();
    for s in selected {
        let reqs = musts(s, &roles, catalogue).join(", ");
        let Some(r) = report.scenarios.iter().find(|r| r.result.id == s.id) else {
            reasons.push(format!("{}: not run (MUST {reqs} unchecked)", s.id));
            continue;
        };
        let why = r
            .result
            .failure
            .as_ref()
            .map(|f| {
                let req = f
                    .requirement
                    .as_deref()
                    .map(|q| format!("{q}: "))
                    .unwrap_or_default();
                format!(": {req}{}", super::text::one_line(&f.got, 200))
            })
            .unwrap_or_default();
        match r.result.verdict {
            Verdict::Pass => {}
            Verdict::NotApplicable => {
                let unclaimed = s.needs.iter().any(|n| !iut.features.contains(n));
                if !unclaimed {
                    reasons.push(format!("{}: not applicable although the IUT claims what it needs (MUST {reqs} skipped){why}", s.id));
                }
            }
            v => reasons.push(format!("{}: {} (MUST {reqs}){why}", s.id, v.as_str())),
        }
    }
    reasons
}

/// The MUST requirements of the IUT's roles, split by whether the certification checked
/// them: a certificate says what it covers.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MustCoverage {
    /// Cited by a scenario the certification ran.
    pub checked: Vec<String>,
    /// No scenario of the suite verifies them yet (the suite's gaps, or waiting for a later
    /// area): the certificate says nothing about them.
    pub unchecked: Vec<String>,
}

/// Which MUST requirements of the IUT's roles `selected` checks, in SPEC.md order.
/// Requirements only the gatekeeper can break are left out: no IUT is judged on them.
pub fn must_coverage(
    selected: &[&Scenario],
    iut: &IutConfig,
    catalogue: &Catalogue,
) -> MustCoverage {
    let roles: Vec<String> = iut.roles.iter().map(|r| r.to_string()).collect();
    let cited: std::collections::BTreeSet<&str> = selected
        .iter()
        .flat_map(|s| musts(s, &roles, catalogue))
        .collect();
    let mut out = MustCoverage::default();
    for r in catalogue.iter() {
        let applies = is_must(r.level)
            && !r.withdrawn
            && !r.gatekeeper_only
            && r.applies_to.iter().any(|a| roles.contains(a));
        if !applies {
            continue;
        }
        if cited.contains(r.id.as_str()) {
            out.checked.push(r.id.clone());
        } else {
            out.unchecked.push(r.id.clone());
        }
    }
    out
}

/// The signed part of a bundle.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub format: String,
    pub created_at: String,
    pub harness_version: String,
    pub certified: bool,
    /// Why not, when not certified.
    pub reasons: Vec<String>,
    /// The iut.toml as given, and its text.
    pub iut_file: String,
    pub iut_toml: String,
    pub suite: SuiteInfo,
    /// The scenarios the certification ran.
    pub selection: Vec<String>,
    /// The MUST requirements of the IUT's roles those scenarios check, and the rest.
    pub musts: MustCoverage,
    /// The signer's Ed25519 public key (base64).
    pub public_key: String,
    /// The run's report.json.
    pub report: serde_json::Value,
}

/// The bundle file: the manifest's exact bytes and the signature over them, laid out so
/// that [`verify`] can rebuild the file byte for byte.
fn render(manifest: &str, signature: &str) -> String {
    format!(
        "{{\n\"format\": \"{FORMAT}\",\n\"manifest\": {manifest},\n\"signature\": \"{signature}\"\n}}\n"
    )
}

/// Signs `manifest` with `key` and returns the bundle's text.
pub fn seal(manifest: &Manifest, key: &SigningKey) -> Result<String, serde_json::Error> {
    let text = serde_json::to_string_pretty(manifest)?;
    let signature = key.sign(text.as_bytes());
    Ok(render(&text, &B64.encode(signature.to_bytes())))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Sealed<'a> {
    format: String,
    #[serde(borrow)]
    manifest: &'a RawValue,
    signature: String,
}

/// What [`verify`] found about a bundle whose signature holds.
#[derive(Debug)]
pub struct Verified {
    pub manifest: Manifest,
    /// How the local suite differs from the bundle's: empty when it is the same.
    pub suite_differences: Vec<String>,
}

/// Checks a bundle: its bytes, its signature with `key`, and its suite against `local`.
/// An error means the bundle cannot be trusted (or read); [`Verified::suite_differences`]
/// says whether it was made with this very suite.
pub fn verify(
    path: &Path,
    key: &VerifyingKey,
    local: &SuiteInfo,
) -> Result<Verified, CertifyError> {
    let text = std::fs::read_to_string(path).map_err(io(path))?;
    let sealed: Sealed<'_> = serde_json::from_str(&text)
        .map_err(|e| invalid(path, format!("not a certification bundle ({e})")))?;
    if sealed.format != FORMAT {
        return Err(invalid(
            path,
            format!("format {:?}, expected {FORMAT:?}", sealed.format),
        ));
    }
    if render(sealed.manifest.get(), &sealed.signature) != text {
        return Err(invalid(
            path,
            "altered: its bytes outside the signed manifest changed",
        ));
    }
    let signature = B64
        .decode(sealed.signature.trim())
        .ok()
        .and_then(|b| Signature::from_slice(&b).ok())
        .ok_or_else(|| invalid(path, "the signature is not a base64 Ed25519 signature"))?;
    key.verify_strict(sealed.manifest.get().as_bytes(), &signature)
        .map_err(|_| invalid(path, "the signature does not verify with this public key: the bundle was altered, or signed with another key"))?;
    let manifest: Manifest = serde_json::from_str(sealed.manifest.get()).map_err(|e| {
        invalid(
            path,
            format!("signed, but its manifest is not one this gatecheck reads ({e})"),
        )
    })?;
    let suite_differences = manifest.suite.differences(local);
    Ok(Verified {
        manifest,
        suite_differences,
    })
}

/// The base64 form of a public key, as a manifest records it.
pub fn public_key_text(key: &VerifyingKey) -> String {
    B64.encode(key.to_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(suite: SuiteInfo, key: &SigningKey) -> Manifest {
        Manifest {
            format: FORMAT.into(),
            created_at: "2026-11-26T02:30:45Z".into(),
            harness_version: "0.1.0".into(),
            certified: true,
            reasons: vec![],
            iut_file: "iut.toml".into(),
            iut_toml: "name = \"x\"\n".into(),
            suite,
            selection: vec!["stanza/ping".into()],
            musts: MustCoverage::default(),
            public_key: public_key_text(&key.verifying_key()),
            report: serde_json::json!({"t_ms": 0.1 + 0.2}),
        }
    }

    fn suite() -> SuiteInfo {
        SuiteInfo::of(&SuiteDirs::bundled()).expect("the bundled suite hashes")
    }

    #[test]
    fn a_sealed_bundle_verifies_and_any_changed_byte_breaks_it() {
        let key = SigningKey::from_bytes(&[7; 32]);
        let local = suite();
        let text = seal(&manifest(local.clone(), &key), &key).expect("seals");
        let dir = std::env::temp_dir().join(format!("gatecheck-seal-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("bundle.json");
        std::fs::write(&path, &text).expect("write");
        let ok = verify(&path, &key.verifying_key(), &local).expect("verifies");
        assert!(ok.suite_differences.is_empty());
        assert!(ok.manifest.certified);

        // Every byte position (sampled) changed to another character breaks it.
        let bytes = text.as_bytes();
        for at in (0..bytes.len()).step_by(97).chain([bytes.len() - 2]) {
            let mut changed = bytes.to_vec();
            changed[at] = if changed[at] == b'0' { b'1' } else { b'0' };
            std::fs::write(&path, &changed).expect("write");
            assert!(
                verify(&path, &key.verifying_key(), &local).is_err(),
                "a change at byte {at} went unnoticed"
            );
        }
        std::fs::write(&path, &text).expect("write");
        let other = SigningKey::from_bytes(&[8; 32]);
        let err = verify(&path, &other.verifying_key(), &local).expect_err("another key");
        assert!(
            err.to_string()
                .contains("does not verify with this public key"),
            "{err}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn suite_differences_name_the_file() {
        let bundle = suite();
        let mut local = bundle.clone();
        let (k, v) = local.files.iter_mut().next().expect("a file");
        let name = k.clone();
        v.replace_range(0..1, if v.starts_with('0') { "1" } else { "0" });
        assert_eq!(
            bundle.differences(&local),
            [format!("{name}: changed since the bundle was made")]
        );
        assert!(
            bundle
                .files
                .keys()
                .any(|k| k == "scenarios/stanza/ping.toml")
        );
    }
}
