//! The tables of SPEC.md read as data: Appendix B's size limits and time bounds, and §3.3's
//! optional capabilities. Tests and checks take their numbers from here, never from the
//! constants of the code they test.

use std::sync::OnceLock;

use super::EMBEDDED_SPEC;

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

/// The optional capabilities of SPEC.md §3.3 (the first column of its table), in order: the
/// only names an iut.toml's `features` and a scenario's `needs` may use. Mandatory areas
/// (E2EE, enrollment, ...) are not capabilities: an IUT cannot opt out of them.
pub fn optional_capabilities(text: &str) -> Vec<String> {
    let Some(start) = text.find("### 3.3 ") else {
        return Vec::new();
    };
    let section = &text[start..];
    let section = section[4..]
        .find("\n#")
        .map_or(section, |end| &section[..end + 4]);
    section
        .lines()
        .filter_map(|line| {
            let first = line.trim().strip_prefix('|')?.split('|').next()?.trim();
            let name = first.strip_prefix('`')?.strip_suffix('`')?;
            Some(name.to_string())
        })
        .collect()
}

/// The optional capabilities of the embedded SPEC.md.
pub fn embedded_capabilities() -> &'static [String] {
    static CAPS: OnceLock<Vec<String>> = OnceLock::new();
    CAPS.get_or_init(|| optional_capabilities(EMBEDDED_SPEC))
}

/// The time bound that the `| item | value | requirement |` table of Appendix B gives a
/// requirement, when its value is a number of seconds (`10 s`, `5 s`). Steps that wait for
/// something SPEC.md bounds in time wait that bound, never less.
pub fn time_bound(text: &str, requirement: &str) -> Option<std::time::Duration> {
    let start = text.find("## Appendix B")?;
    let section = &text[start..];
    let section = section[3..]
        .find("\n## ")
        .map_or(section, |end| &section[..end + 3]);
    section.lines().find_map(|line| {
        let inner = line.trim().strip_prefix('|')?.strip_suffix('|')?;
        let cells: Vec<&str> = inner.split('|').map(str::trim).collect();
        let [_, value, reqs] = cells.as_slice() else {
            return None;
        };
        if !reqs.split(',').any(|r| r.trim() == requirement) {
            return None;
        }
        let secs: u64 = value.strip_suffix(" s")?.trim().parse().ok()?;
        Some(std::time::Duration::from_secs(secs))
    })
}

/// The time bound of `requirement` in the embedded SPEC.md. Steps ask at every wait, so the
/// answers for the requirements that have one are read from the table once.
pub fn embedded_time_bound(requirement: &str) -> Option<std::time::Duration> {
    static BOUNDS: OnceLock<Vec<(String, std::time::Duration)>> = OnceLock::new();
    BOUNDS
        .get_or_init(|| {
            super::Catalogue::embedded()
                .iter()
                .filter_map(|r| Some((r.id.clone(), time_bound(EMBEDDED_SPEC, &r.id)?)))
                .collect()
        })
        .iter()
        .find(|(id, _)| id == requirement)
        .map(|(_, d)| *d)
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

#[cfg(test)]
mod tests {
    use super::*;

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
    fn capabilities_are_the_optional_ones_of_section_3_3() {
        let caps = embedded_capabilities();
        assert!(caps.iter().any(|c| c == "transport.noise"), "{caps:?}");
        assert!(caps.iter().any(|c| c == "chatstates"), "{caps:?}");
        // Mandatory areas are not optional capabilities.
        assert!(
            !caps.iter().any(|c| c == "e2ee" || c == "enroll"),
            "{caps:?}"
        );
    }

    #[test]
    fn time_bounds_come_from_the_appendix_b_table() {
        let b = |id| embedded_time_bound(id).map(|d| d.as_secs());
        assert_eq!(b("STANZA-3"), Some(10));
        assert_eq!(b("STREAM-44"), Some(5));
        assert_eq!(b("STREAM-27"), Some(5));
        // Values that are not plain seconds, and requirements without a row, have none.
        assert_eq!(b("STREAM-34"), None);
        assert_eq!(b("STANZA-2"), None);
    }
}
