//! Stanza fixtures on disk, including `.gen` recipes that expand to inputs too big to commit.
//!
//! A `.gen` file is UTF-8 text, one segment per line; the input is the concatenation of the
//! segments (line breaks between segments are not part of it). Blank lines and lines starting
//! with `#` are ignored. A segment is
//!
//! - `text:TEXT`: TEXT once;
//! - `repeat:COUNT:TEXT`: TEXT repeated COUNT times (COUNT a decimal integer);
//! - `seq:FIRST:LAST:TEXT`: TEXT once for each integer N from FIRST to LAST inclusive (none if
//!   LAST < FIRST), every `{n}` in it replaced by N in decimal (`seq:0:2: a{n}='{n}'` is
//!   ` a0='0' a1='1' a2='2'`).
//!
//! TEXT may use the escapes `\n`, `\r`, `\t`, `\\` and `\xHH` (any byte, so invalid UTF-8
//! can be written). The expansion is capped at [`MAX_GENERATED_BYTES`].

use std::path::{Path, PathBuf};

/// Largest expansion a recipe may produce (64 MiB).
pub const MAX_GENERATED_BYTES: usize = 64 << 20;

/// Why a fixture could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum FixtureError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A recipe line is malformed.
    #[error("recipe line {line}: {reason}")]
    Recipe {
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        reason: String,
    },
}

/// The bytes of a fixture file, on disk or bundled ([`crate::bundle`]): `.gen` recipes
/// expanded, anything else as stored.
pub fn fixture_bytes(path: &Path) -> Result<Vec<u8>, FixtureError> {
    let io = |source| FixtureError::Io {
        path: path.to_owned(),
        source,
    };
    if path.extension().is_some_and(|e| e == "gen") {
        let text = crate::bundle::read_to_string(path).map_err(io)?;
        expand_recipe(&text)
    } else {
        crate::bundle::read(path).map_err(io)
    }
}

/// Expands a `.gen` recipe (see the module documentation).
pub fn expand_recipe(recipe: &str) -> Result<Vec<u8>, FixtureError> {
    let mut out = Vec::new();
    for (i, line) in recipe.lines().enumerate() {
        let bad = |reason: String| FixtureError::Recipe {
            line: i + 1,
            reason,
        };
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(rest) = line.strip_prefix("seq:") {
            expand_seq(rest, &mut out).map_err(bad)?;
            continue;
        }
        let (count, text) = if let Some(text) = line.strip_prefix("text:") {
            (1usize, text)
        } else if let Some(rest) = line.strip_prefix("repeat:") {
            let (count, text) = rest
                .split_once(':')
                .ok_or_else(|| bad("expected repeat:COUNT:TEXT".into()))?;
            let count = count
                .parse::<usize>()
                .map_err(|e| bad(format!("bad count {count:?}: {e}")))?;
            (count, text)
        } else {
            return Err(bad(format!(
                "unknown segment {line:?} (expected text:, repeat: or seq:)"
            )));
        };
        let unit = unescape(text).map_err(bad)?;
        let total = unit
            .len()
            .checked_mul(count)
            .and_then(|n| n.checked_add(out.len()))
            .filter(|&n| n <= MAX_GENERATED_BYTES)
            .ok_or_else(|| bad(format!("expansion exceeds {MAX_GENERATED_BYTES} bytes")))?;
        out.reserve(total - out.len());
        for _ in 0..count {
            out.extend_from_slice(&unit);
        }
    }
    Ok(out)
}

/// A `seq:FIRST:LAST:TEXT` segment (after `seq:`), appended to `out`.
fn expand_seq(rest: &str, out: &mut Vec<u8>) -> Result<(), String> {
    let (first, rest) = rest.split_once(':').ok_or("expected seq:FIRST:LAST:TEXT")?;
    let (last, text) = rest.split_once(':').ok_or("expected seq:FIRST:LAST:TEXT")?;
    let number = |s: &str| {
        s.parse::<u64>()
            .map_err(|e| format!("bad bound {s:?}: {e}"))
    };
    let (first, last) = (number(first)?, number(last)?);
    let too_big = || format!("expansion exceeds {MAX_GENERATED_BYTES} bytes");
    // Even an empty TEXT may not loop more often than the cap allows bytes.
    if last.saturating_sub(first) >= MAX_GENERATED_BYTES as u64 {
        return Err(too_big());
    }
    for n in first..=last {
        let unit = unescape(&text.replace("{n}", &n.to_string()))?;
        if out.len().saturating_add(unit.len()) > MAX_GENERATED_BYTES {
            return Err(too_big());
        }
        out.extend_from_slice(&unit);
    }
    Ok(())
}

fn unescape(text: &str) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(text.len());
    let mut bytes = text.bytes();
    while let Some(b) = bytes.next() {
        if b != b'\\' {
            out.push(b);
            continue;
        }
        match bytes.next() {
            Some(b'n') => out.push(b'\n'),
            Some(b'r') => out.push(b'\r'),
            Some(b't') => out.push(b'\t'),
            Some(b'\\') => out.push(b'\\'),
            Some(b'x') => {
                let hex: Vec<u8> = bytes.by_ref().take(2).collect();
                let value = std::str::from_utf8(&hex)
                    .ok()
                    .filter(|h| h.len() == 2)
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or_else(|| "\\x needs two hex digits".to_owned())?;
                out.push(value);
            }
            other => {
                let what =
                    other.map_or("end of line".to_owned(), |c| format!("{:?}", char::from(c)));
                return Err(format!("unknown escape before {what}"));
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_concatenate() {
        let recipe = "# ten deep\nrepeat:3:<a>\ntext:x\\x00\\n\nrepeat:0:never\n";
        assert_eq!(expand_recipe(recipe).unwrap(), b"<a><a><a>x\0\n");
        let recipe = "text:<a\nseq:0:2: b{n}='{n}\\t'\nseq:5:4:never\ntext:/>";
        assert_eq!(
            expand_recipe(recipe).unwrap(),
            b"<a b0='0\t' b1='1\t' b2='2\t'/>"
        );
    }

    #[test]
    fn errors_name_the_line() {
        let err = expand_recipe("text:a\nrepeat:x:b").unwrap_err();
        assert_eq!(
            err.to_string(),
            "recipe line 2: bad count \"x\": invalid digit found in string"
        );
        let err = expand_recipe("bogus").unwrap_err();
        assert_eq!(
            err.to_string(),
            "recipe line 1: unknown segment \"bogus\" (expected text:, repeat: or seq:)"
        );
        let err = expand_recipe("seq:1:x:a").unwrap_err();
        assert_eq!(
            err.to_string(),
            "recipe line 1: bad bound \"x\": invalid digit found in string"
        );
        let err = expand_recipe("seq:1:2").unwrap_err();
        assert_eq!(
            err.to_string(),
            "recipe line 1: expected seq:FIRST:LAST:TEXT"
        );
        let err = expand_recipe("seq:0:99999999999:").unwrap_err();
        assert_eq!(
            err.to_string(),
            "recipe line 1: expansion exceeds 67108864 bytes"
        );
        let err = expand_recipe("repeat:99999999999:ab").unwrap_err();
        assert_eq!(
            err.to_string(),
            "recipe line 1: expansion exceeds 67108864 bytes"
        );
        let err = expand_recipe("text:\\xZ1").unwrap_err();
        assert_eq!(err.to_string(), "recipe line 1: \\x needs two hex digits");
    }
}
