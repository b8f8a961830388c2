//! The requirement catalogue of the Interop Profile, read out of SPEC.md itself.
//!
//! SPEC.md is the source of truth: every requirement is a level-4 heading
//! `#### ID [LEVEL] Title`, followed by its normative text and an
//! `Applies to:` line. This module is the one parser of that format; the
//! binary embeds the SPEC.md it was built with, so `gatecheck explain` and the
//! scenario loader agree with the document shipped beside them.

use std::collections::HashMap;
use std::fmt;
use std::sync::OnceLock;

/// The SPEC.md this binary was built with.
pub const EMBEDDED_SPEC: &str = include_str!("../../SPEC.md");

/// Requirement ID prefixes the profile defines, in document order.
pub const PREFIXES: &[&str] = &[
    "STREAM", "STANZA", "E2EE", "ENROLL", "IDPROOF", "AUTH", "PUSH", "MEDIA", "PROXY",
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
    let mut paragraphs: Vec<String> = Vec::new();
    let mut current = String::new();
    for raw in body {
        let l = raw.trim();
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
    Ok(Requirement {
        id,
        level,
        title,
        text,
        applies_to,
        line,
        withdrawn,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "# Title\n\n## Streams\n\n#### STREAM-1 [MUST] Stream header\n\nThe client MUST open a stream.\nSecond line.\n\nApplies to: client\n\n#### STREAM-2 [MAY] Whitespace\n\nA peer MAY send whitespace.\n\nApplies to: client, server\n\n## Next\n";

    #[test]
    fn parses_requirements_in_order() {
        let c = Catalogue::parse(SAMPLE).expect("sample parses");
        assert_eq!(c.len(), 2);
        let r = c.get("STREAM-1").expect("STREAM-1");
        assert_eq!(r.level, Level::Must);
        assert_eq!(r.title, "Stream header");
        assert_eq!(r.text, "The client MUST open a stream.\nSecond line.");
        assert_eq!(r.applies_to, vec!["client"]);
        assert_eq!(r.line, 5);
        let r2 = c.get("STREAM-2").expect("STREAM-2");
        assert_eq!(r2.applies_to, vec!["client", "server"]);
        assert!(!c.contains("STREAM-3"));
    }

    #[test]
    fn duplicate_id_is_an_error() {
        let doc = format!("{SAMPLE}#### STREAM-1 [MUST] Again\n\nIt MUST.\n\nApplies to: client\n");
        let e = Catalogue::parse(&doc).unwrap_err();
        assert_eq!(
            e.to_string(),
            "SPEC.md:19: requirement STREAM-1 appears twice (first at line 5)"
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
            let doc = format!("{heading}\n\nIt MUST.\n\nApplies to: client\n");
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
}
