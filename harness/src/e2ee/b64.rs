//! Strict base64 for OMEMO element text: standard alphabet, canonical padding, and only the
//! XML whitespace a pretty-printer puts around or inside the text.

use base64::engine::general_purpose::STANDARD;
use base64::{DecodeError, Engine as _};

use super::{E2eeError, clip};

/// XML's whitespace characters (XML 1.0 §2.3 `S`); no other control character can occur in
/// XML text.
pub(crate) fn is_xml_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r')
}

/// Standard base64 with padding, as §9.1/§9.2 use it.
pub(crate) fn encode(bytes: &[u8]) -> String {
    STANDARD.encode(bytes)
}

/// Decodes the text of `<what/>`, refusing it before decoding when it would exceed
/// `max_len` bytes, so a huge value costs no allocation beyond the text itself.
pub(crate) fn decode(
    text: &str,
    what: &str,
    max_len: usize,
    requirement: &'static str,
) -> Result<Vec<u8>, E2eeError> {
    // Every 4 characters carry at most 3 bytes; whitespace only makes the text longer, so
    // this bound is checked before any decoding.
    if text.len() / 4 * 3 > max_len.saturating_add(3)
        && text.bytes().filter(|b| !is_xml_space(*b)).count() / 4 * 3 > max_len.saturating_add(3)
    {
        return Err(E2eeError::new(
            requirement,
            format!("<{what}/> holds more than {max_len} bytes"),
        ));
    }
    // Most senders write base64 without line breaks: decode the text as it is first, and
    // copy it without its whitespace only when that fails.
    if !text.is_empty()
        && let Ok(bytes) = STANDARD.decode(text)
    {
        return check_len(bytes, what, max_len, requirement);
    }
    let compact: Vec<u8> = text.bytes().filter(|b| !is_xml_space(*b)).collect();
    if compact.is_empty() {
        return Err(E2eeError::new(requirement, format!("<{what}/> is empty")));
    }
    let bytes = STANDARD.decode(&compact).map_err(|e| {
        // The decoder's offsets count the text without its whitespace, so they would
        // mislead; the kind of defect and the text itself say enough.
        let defect = match e {
            DecodeError::InvalidByte(_, byte) => {
                format!("the character '{}'", char::from(byte).escape_default())
            }
            DecodeError::InvalidLength(_) => "a length that is not a multiple of 4".into(),
            DecodeError::InvalidLastSymbol(_, _) => "nonzero bits after the last byte".into(),
            DecodeError::InvalidPadding => "misplaced or missing padding".into(),
        };
        E2eeError::new(
            requirement,
            format!(
                "<{what}/> is not base64 (standard alphabet, padded): {defect} in '{}'",
                clip(text.trim())
            ),
        )
    })?;
    check_len(bytes, what, max_len, requirement)
}

fn check_len(
    bytes: Vec<u8>,
    what: &str,
    max_len: usize,
    requirement: &'static str,
) -> Result<Vec<u8>, E2eeError> {
    if bytes.len() > max_len {
        return Err(E2eeError::new(
            requirement,
            format!("<{what}/> holds more than {max_len} bytes"),
        ));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dec(s: &str) -> Result<Vec<u8>, String> {
        decode(s, "iv", 16, "E2EE-13").map_err(|e| e.to_string())
    }

    #[test]
    fn tolerates_whitespace_only() {
        assert_eq!(dec("AAEC"), Ok(vec![0, 1, 2]));
        assert_eq!(dec("\n  AA\r\n EC\t\n"), Ok(vec![0, 1, 2]));
    }

    #[test]
    fn refuses_non_canonical_forms() {
        assert_eq!(
            dec("AAE"),
            Err("E2EE-13: <iv/> is not base64 (standard alphabet, padded): misplaced or missing padding in 'AAE'".into())
        );
        assert_eq!(
            dec("AAECA"),
            Err("E2EE-13: <iv/> is not base64 (standard alphabet, padded): a length that is not a multiple of 4 in 'AAECA'".into())
        );
        assert_eq!(
            dec("AB=="),
            Err("E2EE-13: <iv/> is not base64 (standard alphabet, padded): nonzero bits after the last byte in 'AB=='".into())
        );
        assert_eq!(
            dec("AA\u{0}A"),
            Err("E2EE-13: <iv/> is not base64 (standard alphabet, padded): the character '\\u{0}' in 'AA\u{0}A'".into())
        );
        // Unpadded, URL-safe alphabet, trailing bits set: all refused.
        assert!(dec("AA").is_err());
        assert!(dec("-_-_").is_err());
        assert!(dec("AB==").is_err());
        assert!(dec("AA==AA==").is_err());
        assert_eq!(dec(" \n"), Err("E2EE-13: <iv/> is empty".into()));
    }

    #[test]
    fn refuses_oversized_values() {
        assert_eq!(
            dec(&"AAAA".repeat(7)),
            Err("E2EE-13: <iv/> holds more than 16 bytes".into())
        );
        assert_eq!(dec(&"AAAA".repeat(5)).map(|v| v.len()), Ok(15));
        assert_eq!(
            dec(&"AAAA".repeat(6)),
            Err("E2EE-13: <iv/> holds more than 16 bytes".into())
        );
    }
}
