//! Every fuzz target's corpus replayed through its body (`gatecheck::fuzzing`), on the stable
//! toolchain and without a sanitizer: what CI runs of the fuzz targets on every change. The
//! committed seeds (`fuzz/corpus/<target>/seed-*`, from fuzz/seed_corpora.py) and the inputs
//! that once found a bug (`regress-*`) are always there; a local corpus grown by libFuzzer is
//! replayed too.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

use gatecheck::fuzzing::{
    Disagreement, TARGETS, disagreement, e2ee_envelope_decrypts, e2ee_seeds, idproof_seeds,
};

fn corpus(target: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/corpus")
        .join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .flatten()
        .map(|entry| entry.path())
        .filter(|path| path.is_file())
        .collect();
    files.sort();
    files
}

#[test]
fn every_target_replays_its_corpus_without_a_finding() {
    let mut findings = Vec::new();
    for &(target, body) in TARGETS {
        let files = corpus(target);
        let seeds = files
            .iter()
            .filter(|p| {
                p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with("seed-"))
            })
            .count();
        // Seeds from the fixtures and the suite alone are at least this many per target.
        assert!(
            seeds >= 8,
            "{target}: only {seeds} seed files; run fuzz/seed_corpora.py"
        );
        for path in files {
            let data = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            if catch_unwind(AssertUnwindSafe(|| body(&data))).is_err() {
                findings.push(path.display().to_string());
            }
        }
    }
    assert!(
        findings.is_empty(),
        "inputs that make a target fail:\n{}",
        findings.join("\n")
    );
}

/// The E2EE seeds are made by the layer itself (`gatecheck::fuzzing::e2ee_seeds`, from fixed
/// devices): each must be committed as it is made today, and the valid envelopes among them must
/// still decrypt, or the target stops at the MACs. With `GATECHECK_E2EE_SEEDS_OUT=DIR` the test
/// writes them to DIR instead (fuzz/seed_corpora.py does, to refresh the committed files).
#[test]
fn e2ee_seeds_are_the_layers_own_and_decrypt() {
    let seeds = e2ee_seeds();
    if let Some(out) = std::env::var_os("GATECHECK_E2EE_SEEDS_OUT") {
        let out = PathBuf::from(out);
        std::fs::create_dir_all(&out).unwrap_or_else(|e| panic!("{}: {e}", out.display()));
        for (name, data) in &seeds {
            std::fs::write(out.join(name), data).unwrap_or_else(|e| panic!("{name}: {e}"));
        }
        return;
    }
    let committed: Vec<(String, Vec<u8>)> = corpus("e2ee_envelope")
        .into_iter()
        .filter_map(|path| {
            let name = path.file_name()?.to_string_lossy().into_owned();
            let data = std::fs::read(&path).ok()?;
            name.starts_with("seed-").then_some((name, data))
        })
        .collect();
    for (name, data) in &seeds {
        assert!(
            committed.iter().any(|(_, c)| c == data),
            "the seed {name} is not committed as the layer makes it now: run fuzz/seed_corpora.py"
        );
        assert_eq!(
            e2ee_envelope_decrypts(data),
            name.starts_with("valid-envelope-"),
            "{name}"
        );
    }
    let valid = committed
        .iter()
        .filter(|(name, _)| name.starts_with("seed-valid-envelope-"))
        .count();
    assert!(valid >= 8, "only {valid} valid envelope seeds");
}

/// The seeds of `idproof_json` and `enroll_body` are made by `gatecheck::fuzzing::idproof_seeds`
/// (bodies and proofs signed with the key the targets hold, so libFuzzer's mutations start past
/// the signature check): each must be committed as it is made today. With
/// `GATECHECK_IDPROOF_SEEDS_OUT=DIR` the test writes them to `DIR/<target>/` instead.
#[test]
fn idproof_seeds_are_committed_as_made() {
    let seeds = idproof_seeds();
    if let Some(out) = std::env::var_os("GATECHECK_IDPROOF_SEEDS_OUT") {
        for (target, name, data) in &seeds {
            let dir = PathBuf::from(&out).join(target);
            std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
            std::fs::write(dir.join(name), data).unwrap_or_else(|e| panic!("{name}: {e}"));
        }
        return;
    }
    for (target, name, data) in &seeds {
        let path = corpus(target)
            .into_iter()
            .find(|p| p.file_name().is_some_and(|n| n.to_string_lossy() == *name));
        let committed = path.and_then(|p| std::fs::read(p).ok());
        assert_eq!(
            committed.as_ref(),
            Some(data),
            "{target}/{name} is not committed as made: GATECHECK_IDPROOF_SEEDS_OUT=fuzz/corpus cargo test -p gatecheck --features fuzzing --test fuzz_corpus idproof_seeds"
        );
    }
}

#[test]
fn the_differential_target_classifies_known_disagreements() {
    // Both accept, the same tree.
    assert_eq!(disagreement(b"<a xmlns='urn:x' b='c'>t<d/></a>"), Ok(None));
    // Both refuse.
    assert_eq!(disagreement(b"<a xmlns='urn:x'>"), Ok(None));
    assert_eq!(
        disagreement(b"<a/>"),
        Ok(Some(Disagreement::UnqualifiedElement))
    );
    assert_eq!(
        disagreement(b"<a xmlns='urn:x'/>junk"),
        Ok(Some(Disagreement::AfterTheFirstElement))
    );
    // rxml restricts XML as RFC 6120 §11 does: both refuse a comment.
    assert_eq!(disagreement(b"<a xmlns='urn:x'><!-- c --></a>"), Ok(None));
    assert_eq!(
        disagreement(b"<a xmlns='urn:x' b='1' b='2'/>"),
        Ok(Some(Disagreement::RepeatedAttribute))
    );
    assert_eq!(
        disagreement(b"\xEF\xBB\xBF<a xmlns='urn:x'/>"),
        Ok(Some(Disagreement::ByteOrderMark))
    );
    assert_eq!(
        disagreement(b"<a xmlns='urn:x\rx'/>"),
        Ok(Some(Disagreement::LoneCarriageReturn))
    );
    // Found by a 10-minute campaign: rxml keeps this CR LF inside CDATA (after "]]").
    assert_eq!(
        disagreement(
            b"<message xmlns='jabbexmlns:nt'><body><![CDATA[if (a < b \r\n { return \"]]\r\n\"; }]]]\"; }]]></body></message>\n"
        ),
        Ok(Some(Disagreement::CarriageReturnLineFeed))
    );
    assert_eq!(
        disagreement("<a\u{FEFF} xmlns='urn:x'/>".as_bytes()),
        Ok(Some(Disagreement::NonAsciiName))
    );
    assert_eq!(
        disagreement(b"<xml:a/>"),
        Ok(Some(Disagreement::XmlPrefixedElement))
    );
    assert_eq!(
        disagreement(b"\n\t<a xmlns='urn:x'/>"),
        Ok(Some(Disagreement::LeadingWhitespace))
    );
    assert_eq!(
        disagreement(b"<a xmlns='urn:x'>&#000000000000000000000065;</a>"),
        Ok(Some(Disagreement::LongCharacterReference))
    );
    let deep = format!(
        "<a xmlns='urn:x'>{}{}</a>",
        "<b>".repeat(200),
        "</b>".repeat(200)
    );
    assert_eq!(
        disagreement(deep.as_bytes()),
        Ok(Some(Disagreement::HarnessLimit))
    );
}
