//! Stanza fixtures on disk, including `.gen` recipes that expand to inputs too big to commit.
//!
//! A `.gen` file is UTF-8 text, one segment per line; the input is the concatenation of the
//! segments (line breaks between segments are not part of it). Blank lines and lines starting
//! with `#` are ignored. A segment is
//!
//! - `text:TEXT`: TEXT once;
//! - `repeat:COUNT:TEXT`: TEXT repeated COUNT times (COUNT a decimal integer).
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

/// The bytes of a fixture file: `.gen` recipes expanded, anything else as stored.
pub fn fixture_bytes(path: &Path) -> Result<Vec<u8>, FixtureError> {
    let io = |source| FixtureError::Io {
        path: path.to_owned(),
        source,
    };
    if path.extension().is_some_and(|e| e == "gen") {
        let text = std::fs::read_to_string(path).map_err(io)?;
        expand_recipe(&text)
    } else {
        std::fs::read(path).map_err(io)
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
                "unknown segment {line:?} (expected text: or repeat:)"
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
            "recipe line 1: unknown segment \"bogus\" (expected text: or repeat:)"
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
