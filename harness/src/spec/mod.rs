//! The requirement catalogue of the Interop Profile, read out of SPEC.md itself.
//!
//! SPEC.md is the source of truth: every requirement is a level-4 heading
//! `#### ID [LEVEL] Title`, followed by its normative text, a `Basis:` line
//! (whether it restates an RFC or XEP or is the profile's own rule, and whether
//! only the gatekeeper can break it or its test waits for a later area) and an
//! `Applies to:` line. This module is the one parser of that format; the
//! binary embeds the SPEC.md it was built with, so `gatecheck explain` and the
//! scenario loader agree with the document shipped beside them.

use std::collections::HashMap;
use std::fmt;
use std::sync::OnceLock;

/// The SPEC.md this binary was built with.
mod tables;

pub use tables::{
    SizeLimit, embedded_capabilities, embedded_time_bound, optional_capabilities, size_limits,
    time_bound,
};

pub const EMBEDDED_SPEC: &str = include_str!("../../../SPEC.md");

/// Requirement ID prefixes the profile defines, in document order.
pub const PREFIXES: &[&str] = &[
    "STREAM", "STANZA", "E2EE", "ENROLL", "IDPROOF", "AUTH", "PUSH", "MEDIA", "PROXY", "DRIVER",
];

/// The areas a requirement's test can wait for (`; waits-for AREA`, SPEC.md §2.1): the
/// prefixes whose flows the harness and the reference provider do not have yet. STREAM and
/// STANZA are the ground everything stands on, and DRIVER is checked on every event.
pub const LATER_AREAS: &[&str] = &[
    "E2EE", "ENROLL", "IDPROOF", "AUTH", "PUSH", "MEDIA", "PROXY",
];

/// RFC 2119 requirement level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
pub enum Level {
    #[serde(rename = "MUST")]
    Must,
    #[serde(rename = "MUST NOT")]
    MustNot,
    #[serde(rename = "SHOULD")]
    Should,
    #[serde(rename = "SHOULD NOT")]
    ShouldNot,
    #[serde(rename = "MAY")]
    May,
}

impl Level {
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Must => "MUST",
            Level::MustNot => "MUST NOT",
            Level::Should => "SHOULD",
            Level::ShouldNot => "SHOULD NOT",
            Level::May => "MAY",
        }
    }

    fn parse(s: &str) -> Option<Level> {
        Some(match s {
            "MUST" => Level::Must,
            "MUST NOT" => Level::MustNot,
            "SHOULD" => Level::Should,
            "SHOULD NOT" => Level::ShouldNot,
            "MAY" => Level::May,
            _ => return None,
        })
    }

    /// The keyword that must appear in the requirement's text.
    fn keyword(self) -> &'static str {
        match self {
            Level::Must | Level::MustNot => "MUST",
            Level::Should | Level::ShouldNot => "SHOULD",
            Level::May => "MAY",
        }
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a requirement comes from (SPEC.md §2.1, the `Basis:` line).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BasisKind {
    /// Restates an RFC or XEP requirement, on the same party, at the same level.
    Rfc,
    /// This profile's own rule, including one stricter than the RFC it builds on.
    Profile,
}

impl BasisKind {
    pub fn as_str(self) -> &'static str {
        match self {
            BasisKind::Rfc => "rfc",
            BasisKind::Profile => "profile",
        }
    }
}

impl fmt::Display for BasisKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The basis of a requirement: its kind and the parenthesis of the `Basis:` line
/// (for `rfc`, the RFC or XEP section it restates; for `profile`, an optional note
/// naming what it departs from).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Basis {
    pub kind: BasisKind,
    pub reference: String,
}

impl Basis {
    /// `rfc (RFC 6120 §8.2.3)`, `profile (stricter than …)`, `profile`.
    pub fn describe(&self) -> String {
        if self.reference.is_empty() {
            self.kind.to_string()
        } else {
            format!("{} ({})", self.kind, self.reference)
        }
    }

    /// The first `RFC N` or `XEP-NNNN` the reference names, if any.
    pub fn first_document(&self) -> Option<String> {
        let r = &self.reference;
        let mut best: Option<(usize, String)> = None;
        for (at, _) in r.match_indices("RFC ").chain(r.match_indices("XEP-")) {
            // Both prefixes, `RFC ` and `XEP-`, are 4 bytes.
            let start = at + 4;
            let digits: String = r[start..]
                .chars()
                .take_while(|c| c.is_ascii_digit())
                .collect();
            if digits.is_empty() {
                continue;
            }
            let name = format!("{}{digits}", &r[at..start]);
            if best.as_ref().is_none_or(|(b, _)| at < *b) {
                best = Some((at, name));
            }
        }
        best.map(|(_, name)| name)
    }

    /// For a `profile` requirement, the words a failure verdict carries so that nobody
    /// reads it as a violation of the base specification: `profile requirement (not an
    /// RFC 6120 violation)`, naming the first document the note names.
    pub fn verdict_note(&self) -> Option<String> {
        match self.kind {
            BasisKind::Rfc => None,
            BasisKind::Profile => Some(match self.first_document() {
                Some(doc) => {
                    let article = if doc.starts_with("XEP") { "a" } else { "an" };
                    format!("profile requirement (not {article} {doc} violation)")
                }
                None => "profile requirement (this profile's own rule, not an RFC's)".into(),
            }),
        }
    }
}

/// One requirement of the profile.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Requirement {
    pub id: String,
    pub level: Level,
    pub title: String,
    /// Normative text, paragraphs joined with blank lines, `Applies to:` excluded.
    pub text: String,
    /// Actor roles the requirement constrains (client, server, proxy, gatekeeper).
    pub applies_to: Vec<String>,
    /// Whether it restates an RFC or XEP or is the profile's own rule.
    pub basis: Basis,
    /// Only the gatekeeper (the harness) can break it: no IUT is judged on it, and
    /// coverage figures for an IUT leave it out.
    pub gatekeeper_only: bool,
    /// The later area (one of [`LATER_AREAS`]) whose flow a test of this requirement needs:
    /// `gatecheck coverage` shows it as waiting rather than as a silent gap.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub waits_for: Option<&'static str>,
    /// 1-based line of the heading in SPEC.md.
    pub line: usize,
    /// True when the text marks the requirement as withdrawn.
    pub withdrawn: bool,
}

/// A defect in SPEC.md's requirement format.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    #[error(
        "SPEC.md:{line}: malformed requirement heading {heading:?}: expected `#### PREFIX-N [LEVEL] Title`"
    )]
    MalformedHeading { line: usize, heading: String },
    #[error("SPEC.md:{line}: unknown requirement prefix {prefix:?} (known: {})", PREFIXES.join(", "))]
    UnknownPrefix { line: usize, prefix: String },
    #[error("SPEC.md:{line}: unknown level {level:?} (MUST, MUST NOT, SHOULD, SHOULD NOT, MAY)")]
    UnknownLevel { line: usize, level: String },
    #[error("SPEC.md:{line}: requirement {id} appears twice (first at line {first})")]
    Duplicate {
        line: usize,
        id: String,
        first: usize,
    },
    #[error("SPEC.md:{line}: requirement {id} has no normative text")]
    NoText { line: usize, id: String },
    #[error("SPEC.md:{line}: requirement {id} is {level} but its text never says {keyword}")]
    KeywordMissing {
        line: usize,
        id: String,
        level: Level,
        keyword: &'static str,
    },
    #[error("SPEC.md:{line}: requirement {id} lacks an `Applies to:` line")]
    NoAppliesTo { line: usize, id: String },
    #[error("SPEC.md:{line}: requirement {id} lacks a `Basis:` line (SPEC.md §2.1)")]
    NoBasis { line: usize, id: String },
    #[error("SPEC.md:{line}: requirement {id}: malformed `Basis:` line: {reason}")]
    MalformedBasis {
        line: usize,
        id: String,
        reason: String,
    },
}

/// All requirements of one SPEC.md, in document order.
#[derive(Debug, Clone)]
pub struct Catalogue {
    requirements: Vec<Requirement>,
    by_id: HashMap<String, usize>,
}

impl Catalogue {
    /// Parses SPEC.md text. Any format defect is an error: a catalogue with a
    /// silently skipped requirement would let scenarios cite nothing.
    pub fn parse(text: &str) -> Result<Catalogue, SpecError> {
        let mut requirements: Vec<Requirement> = Vec::new();
        let mut by_id: HashMap<String, usize> = HashMap::new();
        let mut body: Vec<&str> = Vec::new();

        let lines: Vec<&str> = text.lines().collect();
        let mut i = 0;
        while i < lines.len() {
            let line = lines[i];
            let Some(heading) = line.strip_prefix("#### ") else {
                i += 1;
                continue;
            };
            let lineno = i + 1;
            let (id, level, title) = parse_heading(heading, lineno)?;
            if let Some(&first) = by_id.get(&id) {
                return Err(SpecError::Duplicate {
                    line: lineno,
                    id,
                    first: requirements[first].line,
                });
            }
            body.clear();
            i += 1;
            while i < lines.len() && !lines[i].starts_with('#') {
                body.push(lines[i]);
                i += 1;
            }
            let requirement = build_requirement(id, level, title, &body, lineno)?;
            by_id.insert(requirement.id.clone(), requirements.len());
            requirements.push(requirement);
        }
        Ok(Catalogue {
            requirements,
            by_id,
        })
    }

    /// The catalogue of the SPEC.md embedded in this binary.
    pub fn embedded() -> &'static Catalogue {
        static CATALOGUE: OnceLock<Catalogue> = OnceLock::new();
        CATALOGUE.get_or_init(|| {
            // The embedded SPEC.md is checked by the test suite; failing here means the
            // binary was built from a SPEC.md that does not pass its own tests.
            Catalogue::parse(EMBEDDED_SPEC).unwrap_or_else(|e| panic!("embedded SPEC.md: {e}"))
        })
    }

    pub fn get(&self, id: &str) -> Option<&Requirement> {
        self.by_id.get(id).map(|&i| &self.requirements[i])
    }

    pub fn contains(&self, id: &str) -> bool {
        self.by_id.contains_key(id)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Requirement> {
        self.requirements.iter()
    }

    pub fn len(&self) -> usize {
        self.requirements.len()
    }

    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }
}

fn parse_heading(heading: &str, line: usize) -> Result<(String, Level, String), SpecError> {
    let malformed = || SpecError::MalformedHeading {
        line,
        heading: heading.to_string(),
    };
    let (id, rest) = heading.split_once(' ').ok_or_else(malformed)?;
    let (prefix, number) = id.split_once('-').ok_or_else(malformed)?;
    let number_ok = !number.is_empty()
        && !number.starts_with('0')
        && number.bytes().all(|b| b.is_ascii_digit());
    if !number_ok {
        return Err(malformed());
    }
    if !PREFIXES.contains(&prefix) {
        return Err(SpecError::UnknownPrefix {
            line,
            prefix: prefix.to_string(),
        });
    }
    let rest = rest.strip_prefix('[').ok_or_else(malformed)?;
    let (level, title) = rest.split_once(']').ok_or_else(malformed)?;
    let level = Level::parse(level).ok_or_else(|| SpecError::UnknownLevel {
        line,
        level: level.to_string(),
    })?;
    let title = title.trim();
    if title.is_empty() {
        return Err(malformed());
    }
    Ok((id.to_string(), level, title.to_string()))
}

fn build_requirement(
    id: String,
    level: Level,
    title: String,
    body: &[&str],
    line: usize,
) -> Result<Requirement, SpecError> {
    let mut applies_to = None;
    let mut basis: Option<(Basis, Marks, usize)> = None;
    let mut paragraphs: Vec<String> = Vec::new();
    let mut current = String::new();
    for (i, raw) in body.iter().enumerate() {
        let l = raw.trim();
        // The body starts on the line after the heading.
        let lineno = line + 1 + i;
        if let Some(rest) = l.strip_prefix("Basis:") {
            let malformed = |reason: String| SpecError::MalformedBasis {
                line: lineno,
                id: id.clone(),
                reason,
            };
            if basis.is_some() {
                return Err(malformed("a second `Basis:` line".into()));
            }
            let next = body.get(i + 1).map(|n| n.trim()).unwrap_or("");
            if !next.starts_with("Applies to:") {
                return Err(malformed(
                    "it must be the line right before `Applies to:`".into(),
                ));
            }
            let (parsed, marks) = parse_basis(rest).map_err(malformed)?;
            if let Some(area) = marks.waits_for
                && id.split('-').next() == Some(area)
            {
                return Err(malformed(format!(
                    "{id} cannot wait for its own area {area}"
                )));
            }
            basis = Some((parsed, marks, lineno));
            continue;
        }
        if let Some(roles) = l.strip_prefix("Applies to:") {
            applies_to = Some(
                roles
                    .split(|c: char| c == ',' || c == '|' || c.is_whitespace())
                    .filter(|r| !r.is_empty())
                    .map(str::to_string)
                    .collect::<Vec<_>>(),
            );
            continue;
        }
        if l.is_empty() {
            if !current.is_empty() {
                paragraphs.push(std::mem::take(&mut current));
            }
            continue;
        }
        if !current.is_empty() {
            current.push('\n');
        }
        current.push_str(raw.trim_end());
    }
    if !current.is_empty() {
        paragraphs.push(current);
    }
    let text = paragraphs.join("\n\n");
    if text.is_empty() {
        return Err(SpecError::NoText { line, id });
    }
    let withdrawn = text.contains("Withdrawn");
    if !withdrawn && !text.contains(level.keyword()) {
        return Err(SpecError::KeywordMissing {
            line,
            id,
            level,
            keyword: level.keyword(),
        });
    }
    let applies_to = applies_to.ok_or_else(|| SpecError::NoAppliesTo {
        line,
        id: id.clone(),
    })?;
    let (basis, marks, basis_line) = basis.ok_or_else(|| SpecError::NoBasis {
        line,
        id: id.clone(),
    })?;
    if applies_to == ["gatekeeper"] && !marks.gatekeeper_only {
        return Err(SpecError::MalformedBasis {
            line: basis_line,
            id,
            reason: "the requirement applies to the gatekeeper only, so the line must end \
                     with `; gatekeeper-only`"
                .into(),
        });
    }
    Ok(Requirement {
        id,
        level,
        title,
        text,
        applies_to,
        basis,
        gatekeeper_only: marks.gatekeeper_only,
        waits_for: marks.waits_for,
        line,
        withdrawn,
    })
}

/// The marker that ends the `Basis:` line of a requirement only the gatekeeper can break.
pub const GATEKEEPER_ONLY: &str = "; gatekeeper-only";

/// The marker, followed by an area of [`LATER_AREAS`], that ends the `Basis:` line of a
/// requirement whose test needs a flow of a later area.
pub const WAITS_FOR: &str = "; waits-for";

/// What may follow a `Basis:` line's kind and parenthesis.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Marks {
    gatekeeper_only: bool,
    waits_for: Option<&'static str>,
}

/// Parses what follows `Basis:`: `KIND [(REFERENCE)] [; gatekeeper-only | ; waits-for AREA]`,
/// KIND `rfc` or `profile`. An `rfc` basis needs a reference that names an RFC or XEP and a
/// section (`RFC 6120 §8.2.3`, `XEP-0199 §4.1`); a `profile` basis may carry a note. The
/// reference may hold `;` itself, so the marks are what follows its closing parenthesis.
fn parse_basis(rest: &str) -> Result<(Basis, Marks), String> {
    let rest = rest.trim();
    let after_reference = match rest.find('(') {
        Some(open) => rest
            .rfind(')')
            .filter(|&close| close > open)
            .map_or(rest.len(), |c| c + 1),
        None => 0,
    };
    let (mut rest, mut marks_text) = match rest[after_reference..].find(';') {
        Some(at) => rest.split_at(after_reference + at),
        None => (rest, ""),
    };
    rest = rest.trim_end();
    let mut marks = Marks::default();
    while !marks_text.is_empty() {
        let (mark, more) = match marks_text[1..].find(';') {
            Some(at) => marks_text.split_at(at + 1),
            None => (marks_text, ""),
        };
        marks_text = more;
        let words: Vec<&str> = mark[1..].split_whitespace().collect();
        match words.as_slice() {
            ["gatekeeper-only"] if !marks.gatekeeper_only => marks.gatekeeper_only = true,
            ["waits-for", area] if marks.waits_for.is_none() => {
                let known = LATER_AREAS.iter().find(|a| *a == area).ok_or_else(|| {
                    format!(
                        "`; waits-for` names {area:?}, not one of the later areas {}",
                        LATER_AREAS.join(", ")
                    )
                })?;
                marks.waits_for = Some(*known);
            }
            ["waits-for"] => {
                return Err(format!(
                    "`; waits-for` names no area (one of {})",
                    LATER_AREAS.join(", ")
                ));
            }
            ["gatekeeper-only"] | ["waits-for", ..] if words.len() <= 2 => {
                return Err(format!("{:?} appears twice", mark.trim()));
            }
            _ => {
                return Err(format!(
                    "unknown mark {:?} after the basis: expected `{GATEKEEPER_ONLY}` or \
                     `{WAITS_FOR} AREA`",
                    mark.trim()
                ));
            }
        }
    }
    if marks.gatekeeper_only && marks.waits_for.is_some() {
        return Err(
            "a gatekeeper-only requirement waits for nothing: no IUT is judged on it".into(),
        );
    }
    let (kind, tail) = match rest.find(|c: char| c == '(' || c.is_whitespace()) {
        Some(at) => (&rest[..at], rest[at..].trim()),
        None => (rest, ""),
    };
    let kind = match kind {
        "rfc" => BasisKind::Rfc,
        "profile" => BasisKind::Profile,
        other => {
            return Err(format!(
                "the kind is {other:?}, not `rfc` or `profile` (SPEC.md §2.1)"
            ));
        }
    };
    let reference = if tail.is_empty() {
        String::new()
    } else {
        let inner = tail
            .strip_prefix('(')
            .and_then(|t| t.strip_suffix(')'))
            .ok_or_else(|| format!("after `{kind}` comes `(REFERENCE)` or nothing, not {tail:?}"))?
            .trim();
        if inner.is_empty() {
            return Err("the parenthesis is empty".into());
        }
        inner.to_string()
    };
    if kind == BasisKind::Rfc {
        let names_document = ["RFC ", "XEP-"].iter().any(|p| reference.starts_with(p));
        if !names_document || !reference.contains('§') {
            return Err(format!(
                "an `rfc` basis names the section it restates, e.g. `rfc (RFC 6120 §4.4)`, not {:?}",
                reference
            ));
        }
    }
    Ok((Basis { kind, reference }, marks))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "# Title\n\n## Streams\n\n#### STREAM-1 [MUST] Stream header\n\nThe client MUST open a stream.\nSecond line.\n\nBasis: rfc (RFC 6120 §4.2)\nApplies to: client\n\n#### STREAM-2 [MAY] Whitespace\n\nA peer MAY send whitespace.\n\nBasis: profile\nApplies to: client, server\n\n## Next\n";

    #[test]
    fn parses_requirements_in_order() {
        let c = Catalogue::parse(SAMPLE).expect("sample parses");
        assert_eq!(c.len(), 2);
        let r = c.get("STREAM-1").expect("STREAM-1");
        assert_eq!(r.level, Level::Must);
        assert_eq!(r.title, "Stream header");
        assert_eq!(r.text, "The client MUST open a stream.\nSecond line.");
        assert_eq!(r.applies_to, vec!["client"]);
        assert_eq!(
            r.basis,
            Basis {
                kind: BasisKind::Rfc,
                reference: "RFC 6120 §4.2".into()
            }
        );
        assert!(!r.gatekeeper_only);
        assert_eq!(r.line, 5);
        let r2 = c.get("STREAM-2").expect("STREAM-2");
        assert_eq!(r2.applies_to, vec!["client", "server"]);
        assert_eq!(r2.basis.kind, BasisKind::Profile);
        assert_eq!(r2.basis.reference, "");
        assert!(!c.contains("STREAM-3"));
    }

    #[test]
    fn duplicate_id_is_an_error() {
        let doc = format!(
            "{SAMPLE}#### STREAM-1 [MUST] Again\n\nIt MUST.\n\nBasis: profile\nApplies to: client\n"
        );
        let e = Catalogue::parse(&doc).unwrap_err();
        assert_eq!(
            e.to_string(),
            "SPEC.md:21: requirement STREAM-1 appears twice (first at line 5)"
        );
    }

    #[test]
    fn malformed_headings_are_errors() {
        for (heading, want) in [
            ("#### STREAM-01 [MUST] T", "malformed"),
            ("#### STREAM-1 MUST T", "malformed"),
            ("#### STREAM-1 [MUST]", "malformed"),
            ("#### FOO-1 [MUST] T", "unknown requirement prefix \"FOO\""),
            ("#### STREAM-1 [MUSTN'T] T", "unknown level"),
        ] {
            let doc = format!("{heading}\n\nIt MUST.\n\nBasis: profile\nApplies to: client\n");
            let e = Catalogue::parse(&doc).unwrap_err().to_string();
            assert!(e.contains(want), "{heading}: {e}");
        }
    }

    #[test]
    fn level_keyword_and_applies_to_are_required() {
        let e = Catalogue::parse("#### STANZA-1 [SHOULD] T\n\nIt MUST.\n\nApplies to: client\n")
            .unwrap_err();
        assert!(matches!(e, SpecError::KeywordMissing { .. }), "{e}");
        let e = Catalogue::parse("#### STANZA-1 [MUST] T\n\nIt MUST.\n").unwrap_err();
        assert!(matches!(e, SpecError::NoAppliesTo { .. }), "{e}");
        let e = Catalogue::parse("#### STANZA-1 [MUST] T\n\nApplies to: client\n").unwrap_err();
        assert!(matches!(e, SpecError::NoText { .. }), "{e}");
    }

    fn parse_one(basis: &str, applies: &str) -> Result<Requirement, SpecError> {
        let doc = format!("#### STANZA-1 [MUST] T\n\nIt MUST.\n\n{basis}\nApplies to: {applies}\n");
        Catalogue::parse(&doc).map(|c| c.get("STANZA-1").expect("parsed").clone())
    }

    #[test]
    fn basis_lines_are_typed() {
        let r = parse_one("Basis: rfc (XEP-0199 §4.1)", "client").expect("rfc");
        assert_eq!(r.basis.kind, BasisKind::Rfc);
        assert_eq!(r.basis.reference, "XEP-0199 §4.1");
        assert_eq!(r.basis.describe(), "rfc (XEP-0199 §4.1)");
        assert_eq!(r.basis.verdict_note(), None);
        assert!(!r.gatekeeper_only);
        assert!(!r.text.contains("Basis"), "{}", r.text);

        let r = parse_one(
            "Basis: profile (stricter than RFC 6120 §11.1, which says SHOULD)",
            "client, gatekeeper",
        )
        .expect("profile");
        assert_eq!(r.basis.kind, BasisKind::Profile);
        assert_eq!(
            r.basis.reference,
            "stricter than RFC 6120 §11.1, which says SHOULD"
        );
        assert_eq!(
            r.basis.verdict_note().as_deref(),
            Some("profile requirement (not an RFC 6120 violation)")
        );

        let r = parse_one("Basis: profile (after XEP-0184 §5)", "client").expect("xep");
        assert_eq!(
            r.basis.verdict_note().as_deref(),
            Some("profile requirement (not a XEP-0184 violation)")
        );

        let r = parse_one("Basis: profile; gatekeeper-only", "gatekeeper").expect("gk");
        assert!(r.gatekeeper_only);
        assert_eq!(r.basis.describe(), "profile");
        assert_eq!(
            r.basis.verdict_note().as_deref(),
            Some("profile requirement (this profile's own rule, not an RFC's)")
        );
        let r = parse_one(
            "Basis: rfc (RFC 6120 §7.1); gatekeeper-only",
            "client, gatekeeper",
        )
        .expect("flag on a shared requirement");
        assert!(r.gatekeeper_only);
        assert_eq!(r.basis.reference, "RFC 6120 §7.1");
    }

    #[test]
    fn waits_for_names_a_later_area() {
        let r = parse_one(
            "Basis: profile (after XEP-0184 §5); waits-for E2EE",
            "client",
        )
        .expect("waits-for");
        assert_eq!(r.waits_for, Some("E2EE"));
        assert_eq!(r.basis.reference, "after XEP-0184 §5");
        assert!(!r.gatekeeper_only);
        // A `;` inside the parenthesis belongs to the reference, not to the marks.
        let r = parse_one(
            "Basis: rfc (RFC 6120 §8.2.3; the bound is this profile's);  waits-for   ENROLL",
            "client",
        )
        .expect("reference with a semicolon");
        assert_eq!(
            r.basis.reference,
            "RFC 6120 §8.2.3; the bound is this profile's"
        );
        assert_eq!(r.waits_for, Some("ENROLL"));
        let r = parse_one("Basis: profile; waits-for PROXY", "client").expect("no reference");
        assert_eq!(
            (r.basis.reference.as_str(), r.waits_for),
            ("", Some("PROXY"))
        );
        let r = parse_one("Basis: rfc (RFC 6120 §8.2.3; a note)", "client").expect("none");
        assert_eq!(r.waits_for, None);
        for area in LATER_AREAS {
            let r = parse_one(&format!("Basis: profile; waits-for {area}"), "client")
                .unwrap_or_else(|e| panic!("{area}: {e}"));
            assert_eq!(r.waits_for, Some(*area));
        }
    }

    #[test]
    fn malformed_waits_for_is_an_error_with_its_line() {
        for (basis, want) in [
            (
                "Basis: profile; waits-for",
                "`; waits-for` names no area (one of E2EE, ENROLL, IDPROOF, AUTH, PUSH, MEDIA, PROXY)",
            ),
            (
                "Basis: profile; waits-for e2ee",
                "`; waits-for` names \"e2ee\", not one of the later areas E2EE, ENROLL, IDPROOF, AUTH, PUSH, MEDIA, PROXY",
            ),
            (
                "Basis: profile (x); waits-for STREAM",
                "`; waits-for` names \"STREAM\", not one of the later areas",
            ),
            (
                "Basis: profile; waits-for E2EE MEDIA",
                "unknown mark \"; waits-for E2EE MEDIA\" after the basis: expected `; gatekeeper-only` or `; waits-for AREA`",
            ),
            (
                "Basis: profile; wait-for E2EE",
                "unknown mark \"; wait-for E2EE\"",
            ),
            (
                "Basis: profile; waits-for E2EE; waits-for MEDIA",
                "\"; waits-for MEDIA\" appears twice",
            ),
            (
                "Basis: profile; gatekeeper-only; gatekeeper-only",
                "\"; gatekeeper-only\" appears twice",
            ),
            (
                "Basis: profile; gatekeeper-only; waits-for E2EE",
                "a gatekeeper-only requirement waits for nothing",
            ),
            ("Basis: profile (x);", "unknown mark \";\""),
        ] {
            let e = parse_one(basis, "client").unwrap_err();
            let shown = e.to_string();
            assert!(
                shown.starts_with("SPEC.md:5: requirement STANZA-1: malformed `Basis:` line: "),
                "{basis}: {shown}"
            );
            assert!(shown.contains(want), "{basis}: {shown}");
        }
        let doc = "#### E2EE-1 [MUST] T\n\nIt MUST.\n\nBasis: profile; waits-for E2EE\nApplies to: client\n";
        assert_eq!(
            Catalogue::parse(doc).unwrap_err().to_string(),
            "SPEC.md:5: requirement E2EE-1: malformed `Basis:` line: E2EE-1 cannot wait for its own area E2EE"
        );
    }

    #[test]
    fn missing_or_malformed_basis_is_an_error_with_its_line() {
        let e = Catalogue::parse("#### STANZA-1 [MUST] T\n\nIt MUST.\n\nApplies to: client\n")
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "SPEC.md:1: requirement STANZA-1 lacks a `Basis:` line (SPEC.md §2.1)"
        );
        for (basis, applies, want) in [
            (
                "Basis: rfcs (RFC 6120 §4.4)",
                "client",
                "the kind is \"rfcs\"",
            ),
            ("Basis: rfc", "client", "names the section it restates"),
            (
                "Basis: rfc (RFC 6120)",
                "client",
                "names the section it restates",
            ),
            (
                "Basis: rfc (see RFC 6120 §4.4)",
                "client",
                "names the section",
            ),
            ("Basis: profile ()", "client", "the parenthesis is empty"),
            ("Basis: profile (unclosed", "client", "comes `(REFERENCE)`"),
            ("Basis: profile stricter", "client", "comes `(REFERENCE)`"),
            (
                "Basis: profile",
                "gatekeeper",
                "must end with `; gatekeeper-only`",
            ),
        ] {
            let e = parse_one(basis, applies).unwrap_err();
            let shown = e.to_string();
            assert!(
                matches!(e, SpecError::MalformedBasis { line: 5, .. }),
                "{basis}: {shown}"
            );
            assert!(
                shown.starts_with("SPEC.md:5: requirement STANZA-1: malformed `Basis:` line:"),
                "{shown}"
            );
            assert!(shown.contains(want), "{basis}: {shown}");
        }
        // Not right before `Applies to:`, or twice.
        let e = Catalogue::parse(
            "#### STANZA-1 [MUST] T\n\nBasis: profile\n\nIt MUST.\n\nApplies to: client\n",
        )
        .unwrap_err();
        assert!(
            e.to_string()
                .starts_with("SPEC.md:3: requirement STANZA-1: malformed `Basis:` line: it must be the line right before"),
            "{e}"
        );
        let e = Catalogue::parse(
            "#### STANZA-1 [MUST] T\n\nIt MUST.\n\nBasis: profile\nBasis: profile\nApplies to: client\n",
        )
        .unwrap_err();
        assert!(e.to_string().starts_with("SPEC.md:5:"), "{e}");
    }

    #[test]
    fn embedded_spec_is_well_formed_and_large_enough() {
        let c = Catalogue::parse(EMBEDDED_SPEC).unwrap_or_else(|e| panic!("{e}"));
        assert!(c.len() >= 60, "SPEC.md has only {} requirements", c.len());
        for prefix in PREFIXES {
            assert!(
                c.iter().any(|r| r.id.starts_with(&format!("{prefix}-"))),
                "no {prefix} requirement"
            );
        }
    }

    #[test]
    fn embedded_bases_are_consistent() {
        let c = Catalogue::parse(EMBEDDED_SPEC).unwrap_or_else(|e| panic!("{e}"));
        let rfc = c.iter().filter(|r| r.basis.kind == BasisKind::Rfc).count();
        assert!(rfc >= 5, "only {rfc} rfc-based requirements");
        for r in c.iter() {
            // Appendix E: the driver interface is the harness's own.
            if r.id.starts_with("DRIVER-") {
                assert_eq!(r.basis.kind, BasisKind::Profile, "{}", r.id);
            }
            // A requirement that constrains the gatekeeper alone is never judged on an IUT.
            if r.applies_to == ["gatekeeper"] {
                assert!(r.gatekeeper_only, "{}", r.id);
            }
            // Only what an IUT is judged on can wait for a later area to be tested.
            if r.waits_for.is_some() {
                assert!(!r.gatekeeper_only && !r.withdrawn, "{}", r.id);
            }
        }
    }
}
