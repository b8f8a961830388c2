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

/// One row of the size-limit table of SPEC.md Appendix B.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SizeLimit {
    /// The first column, as written (`serialized stanza size`, ...).
    pub limit: String,
    /// "accept at least": the floor every receiver must accept (STREAM-31).
    pub accept_at_least: u64,
    /// "refuse above": the ceiling above which every receiver must refuse (STREAM-32).
    pub refuse_above: u64,
    /// 1-based line of the row in SPEC.md.
    pub line: usize,
}

/// The rows of the `| limit | accept at least | refuse above |` table in the Appendix B
/// section of a SPEC.md, in document order. A value is a count (`32`) or a size (`65535 bytes`,
/// `8 KiB`, `1 MiB`), optionally followed by a parenthesis; a parenthesis of the form
/// `(N bytes)` must give the same number of bytes, any other is commentary.
pub fn size_limits(text: &str) -> Result<Vec<SizeLimit>, String> {
    let lines: Vec<&str> = text.lines().collect();
    let start = lines
        .iter()
        .position(|l| l.starts_with("## Appendix B"))
        .ok_or("SPEC.md has no `## Appendix B` section")?;
    let end = lines
        .iter()
        .skip(start + 1)
        .position(|l| l.starts_with("## "))
        .map_or(lines.len(), |n| start + 1 + n);
    let cells = |line: &str| -> Option<Vec<String>> {
        let inner = line.trim().strip_prefix('|')?.strip_suffix('|')?;
        Some(inner.split('|').map(|c| c.trim().to_string()).collect())
    };
    let header = (start..end)
        .find(|&i| {
            cells(lines[i]).is_some_and(|c| c == ["limit", "accept at least", "refuse above"])
        })
        .ok_or("Appendix B has no `| limit | accept at least | refuse above |` table")?;
    let mut rows = Vec::new();
    for (i, line) in lines.iter().enumerate().take(end).skip(header + 2) {
        let lineno = i + 1;
        let Some(c) = cells(line) else { break };
        let [limit, floor, ceiling] = c.as_slice() else {
            return Err(format!(
                "SPEC.md:{lineno}: a limit row has 3 cells: {line:?}"
            ));
        };
        let value =
            |cell: &str| parse_size(cell).map_err(|e| format!("SPEC.md:{lineno}: {limit}: {e}"));
        rows.push(SizeLimit {
            limit: limit.clone(),
            accept_at_least: value(floor)?,
            refuse_above: value(ceiling)?,
            line: lineno,
        });
    }
    if rows.is_empty() {
        return Err(format!(
            "SPEC.md:{}: the limit table has no rows",
            header + 1
        ));
    }
    Ok(rows)
}

/// `32`, `65535 bytes`, `8 KiB`, `1 MiB`, each optionally followed by `(N bytes)` (which must
/// agree) or another parenthesis (ignored).
fn parse_size(cell: &str) -> Result<u64, String> {
    let (main, note) = match cell.split_once('(') {
        Some((main, rest)) => {
            let note = rest
                .strip_suffix(')')
                .ok_or_else(|| format!("unclosed parenthesis in {cell:?}"))?;
            (main.trim(), Some(note.trim()))
        }
        None => (cell.trim(), None),
    };
    let (number, unit) = main.split_once(' ').unwrap_or((main, ""));
    let number: u64 = number
        .parse()
        .map_err(|_| format!("{cell:?} does not start with a number"))?;
    let scale: u64 = match unit.trim() {
        "" | "bytes" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        other => return Err(format!("unknown unit {other:?} in {cell:?}")),
    };
    let value = number
        .checked_mul(scale)
        .ok_or_else(|| format!("{cell:?} is too large"))?;
    if let Some(bytes) = note.and_then(|n| n.strip_suffix(" bytes")) {
        let bytes: u64 = bytes
            .parse()
            .map_err(|_| format!("{cell:?}: the parenthesis is not a byte count"))?;
        if bytes != value {
            return Err(format!("{cell:?}: {value} bytes, not {bytes}"));
        }
    }
    Ok(value)
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
    fn size_limit_table_is_read_with_its_units() {
        let doc = "## Appendix A. x\n\n| limit | accept at least | refuse above |\n| --- | --- | --- |\n| a | 1 | 2 |\n\n## Appendix B. Default limits\n\nText.\n\n| limit | accept at least | refuse above |\n| --- | --- | --- |\n| stanza | 256 KiB (262144 bytes) | 1 MiB |\n| depth (the stanza is 1) | 32 | 128 |\n| frame | 65535 bytes | 65535 bytes (format limit) |\n\n| item | value |\n| --- | --- |\n| x | 1 |\n";
        let rows = size_limits(doc).unwrap();
        let got: Vec<(&str, u64, u64, usize)> = rows
            .iter()
            .map(|r| (r.limit.as_str(), r.accept_at_least, r.refuse_above, r.line))
            .collect();
        assert_eq!(
            got,
            [
                ("stanza", 262_144, 1_048_576, 13),
                ("depth (the stanza is 1)", 32, 128, 14),
                ("frame", 65535, 65535, 15),
            ]
        );
        for (cell, want) in [
            ("8 KiB (8192 bytes)", Ok(8192)),
            (
                "8 KiB (8193 bytes)",
                Err("\"8 KiB (8193 bytes)\": 8192 bytes, not 8193"),
            ),
            ("8 kB", Err("unknown unit \"kB\" in \"8 kB\"")),
            ("many", Err("\"many\" does not start with a number")),
            (
                "1 MiB (lots",
                Err("unclosed parenthesis in \"1 MiB (lots\""),
            ),
        ] {
            assert_eq!(parse_size(cell), want.map_err(str::to_string), "{cell}");
        }
        assert!(size_limits("## Appendix B. x\n\nno table\n").is_err());
        let bad = "## Appendix B\n| limit | accept at least | refuse above |\n| --- | --- | --- |\n| a | 1 KiB |\n";
        assert_eq!(
            size_limits(bad).unwrap_err(),
            "SPEC.md:4: a limit row has 3 cells: \"| a | 1 KiB |\""
        );
    }

    #[test]
    fn embedded_size_limits_have_floors_within_ceilings() {
        let rows = size_limits(EMBEDDED_SPEC).unwrap_or_else(|e| panic!("{e}"));
        assert!(rows.len() >= 6, "only {} limit rows", rows.len());
        for r in &rows {
            assert!(r.accept_at_least <= r.refuse_above, "{r:?}");
        }
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
