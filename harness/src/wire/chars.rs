//! Character classes of XML 1.0 (Char, NameStartChar, NameChar) and fast byte scans over them.

/// Whether `c` is a `Char` of XML 1.0 §2.2.
pub(crate) fn is_xml_char(c: char) -> bool {
    matches!(c as u32,
        0x9 | 0xA | 0xD | 0x20..=0xD7FF | 0xE000..=0xFFFD | 0x1_0000..=0x10_FFFF)
}

/// Whether `c` is a `NameStartChar` of XML 1.0 §2.3 (colon excluded: names are split on it).
pub(crate) fn is_name_start_char(c: char) -> bool {
    matches!(c as u32,
        0x41..=0x5A | 0x5F | 0x61..=0x7A | 0xC0..=0xD6 | 0xD8..=0xF6 | 0xF8..=0x2FF
        | 0x370..=0x37D | 0x37F..=0x1FFF | 0x200C..=0x200D | 0x2070..=0x218F
        | 0x2C00..=0x2FEF | 0x3001..=0xD7FF | 0xF900..=0xFDCF | 0xFDF0..=0xFFFD
        | 0x1_0000..=0xE_FFFF)
}

/// Whether `c` is a `NameChar` of XML 1.0 §2.3 (colon excluded).
pub(crate) fn is_name_char(c: char) -> bool {
    is_name_start_char(c)
        || matches!(c as u32, 0x2D | 0x2E | 0x30..=0x39 | 0xB7 | 0x300..=0x36F | 0x203F..=0x2040)
}

/// Whether `s` is an `NCName` (a name without colons).
pub(crate) fn is_ncname(s: &str) -> bool {
    // Fast path for the usual ASCII names: one table lookup per byte.
    if let Some((&first, rest)) = s.as_bytes().split_first()
        && rest.iter().fold(first, |acc, &b| acc | b) < 0x80
    {
        return ASCII_NCNAME_CLASS.get(usize::from(first)) == Some(&2)
            && rest.iter().all(|&b| {
                ASCII_NCNAME_CLASS
                    .get(usize::from(b))
                    .is_some_and(|&c| c != 0)
            });
    }
    let mut chars = s.chars();
    match chars.next() {
        Some(c) if is_name_start_char(c) => chars.all(is_name_char),
        _ => false,
    }
}

/// Splits a qualified name into (prefix, local); `None` unless it is `NCName` or
/// `NCName:NCName`.
pub(crate) fn split_qname(name: &str) -> Option<(Option<&str>, &str)> {
    match name.bytes().position(|b| b == b':') {
        None => is_ncname(name).then_some((None, name)),
        Some(i) => {
            let (prefix, local) = (name.get(..i)?, name.get(i + 1..)?);
            (is_ncname(prefix) && is_ncname(local)).then_some((Some(prefix), local))
        }
    }
}

/// Byte classes the tag lexer cares about for ASCII: 0 = not allowed in a name,
/// 1 = name char, 2 = name start char (also a name char).
const fn ascii_name_class() -> [u8; 128] {
    let mut t = [0u8; 128];
    let mut b = 0;
    while b < 128 {
        let c = b as u8;
        t[b] = if c.is_ascii_alphabetic() || c == b'_' || c == b':' {
            2
        } else if c.is_ascii_digit() || c == b'-' || c == b'.' {
            1
        } else {
            0
        };
        b += 1;
    }
    t
}

static ASCII_NAME_CLASS: [u8; 128] = ascii_name_class();

/// [`ASCII_NAME_CLASS`] without the colon (NCName characters).
static ASCII_NCNAME_CLASS: [u8; 128] = {
    let mut t = ascii_name_class();
    t[b':' as usize] = 0;
    t
};

/// For a byte in a name: `Some(true)` if it may start a name, `Some(false)` if it may only
/// continue one, `None` if it may not appear in a name. Non-ASCII bytes are accepted here and
/// checked as characters once the name is known to be UTF-8.
pub(crate) fn name_byte_class(b: u8) -> Option<bool> {
    match ASCII_NAME_CLASS.get(usize::from(b)) {
        None => Some(true),
        Some(0) => None,
        Some(1) => Some(false),
        Some(_) => Some(true),
    }
}

/// XML whitespace (`S` in XML 1.0 §2.3).
pub(crate) fn is_xml_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r')
}

/// Position of the first byte equal to any of `needles`, eight bytes at a time.
pub(crate) fn find_any<const N: usize>(hay: &[u8], needles: [u8; N]) -> Option<usize> {
    const LO: u64 = 0x0101_0101_0101_0101;
    const HI: u64 = 0x8080_8080_8080_8080;
    let splat = needles.map(|n| LO * u64::from(n));
    let (words, rest) = hay.as_chunks::<8>();
    for (n, word) in words.iter().enumerate() {
        let x = u64::from_le_bytes(*word);
        let hit = splat.iter().fold(0, |acc, &v| {
            let y = x ^ v;
            acc | (y.wrapping_sub(LO) & !y & HI)
        });
        if hit != 0 {
            // The lowest flagged byte is exact (borrows only propagate upwards).
            return Some(n * 8 + (hit.trailing_zeros() / 8) as usize);
        }
    }
    let base = words.len() * 8;
    rest.iter()
        .position(|c| needles.contains(c))
        .map(|i| base + i)
}

/// Whether `b` is an ASCII byte allowed in a name (colon included).
pub(crate) fn is_ascii_name_byte(b: u8) -> bool {
    ASCII_NAME_CLASS
        .get(usize::from(b))
        .is_some_and(|&c| c != 0)
}

/// Position of the first byte equal to `a` or `b`, eight bytes at a time.
pub(crate) fn find2(hay: &[u8], a: u8, b: u8) -> Option<usize> {
    find_any(hay, [a, b])
}

/// The first character XML 1.0 forbids in valid UTF-8 `s`: C0 controls other than TAB, LF,
/// CR, and U+FFFE / U+FFFF (surrogates cannot occur in valid UTF-8). Returns its byte index
/// and code point.
pub(crate) fn find_forbidden_char(s: &[u8]) -> Option<(usize, u32)> {
    const BLOCK: usize = 32;
    let mut start = 0;
    while start < s.len() {
        let end = s.len().min(start + BLOCK);
        let block = s.get(start..end).unwrap_or_default();
        // Branch-free test the compiler vectorises; the exact check only runs on a hit.
        let suspicious = block
            .iter()
            .fold(false, |acc, &b| acc | (b < 0x20) | (b == 0xEF));
        if suspicious {
            for (i, &b) in block.iter().enumerate() {
                let at = start + i;
                if b < 0x20 && !matches!(b, b'\t' | b'\n' | b'\r') {
                    return Some((at, u32::from(b)));
                }
                if b == 0xEF
                    && s.get(at + 1) == Some(&0xBF)
                    && matches!(s.get(at + 2), Some(0xBE | 0xBF))
                {
                    let last = s.get(at + 2).copied().unwrap_or(0xBE);
                    return Some((at, 0xFFC0 | u32::from(last & 0x3F)));
                }
            }
        }
        start = end;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xml_chars() {
        assert!(is_xml_char('a') && is_xml_char('\t') && is_xml_char('\u{1F600}'));
        assert!(!is_xml_char('\0') && !is_xml_char('\u{B}') && !is_xml_char('\u{FFFE}'));
    }

    #[test]
    fn qualified_names() {
        assert_eq!(split_qname("a"), Some((None, "a")));
        assert_eq!(split_qname("xml:lang"), Some((Some("xml"), "lang")));
        assert_eq!(split_qname("é-1.x"), Some((None, "é-1.x")));
        assert_eq!(split_qname("a:b:c"), None);
        assert_eq!(split_qname(":a"), None);
        assert_eq!(split_qname("a:"), None);
        assert_eq!(split_qname("1a"), None);
        assert_eq!(split_qname(""), None);
    }

    #[test]
    fn find_any_matches_a_naive_search() {
        let hay = [
            b"0123456789abcdef".repeat(3),
            b"<ghij&klmnop>qrstuvwxyz".to_vec(),
        ]
        .concat();
        for start in 0..hay.len() {
            let slice = &hay[start..];
            let naive = slice.iter().position(|&c| c == b'&' || c == b'>');
            assert_eq!(find_any(slice, [b'&', b'>']), naive);
        }
        assert_eq!(
            find_any(b"\x80\x81\xff\xff\xff\xff\xff\xff\xff<", [b'<']),
            Some(9)
        );
        assert_eq!(find_any(&[b'a'; 70], [b'<', b'&', b'\r']), None);
    }

    #[test]
    fn find2_matches_a_naive_search() {
        let hay = b"0123456789abcdef<ghijklmnop>qrstuvwxyz";
        for start in 0..hay.len() {
            let slice = &hay[start..];
            let naive = slice.iter().position(|&c| c == b'<' || c == b'>');
            assert_eq!(find2(slice, b'<', b'>'), naive);
        }
        assert_eq!(find2(b"\x80\x81\xff<", b'<', b'>'), Some(3));
    }

    #[test]
    fn forbidden_chars_are_found_exactly() {
        assert_eq!(find_forbidden_char(b"abc\tdef\r\n"), None);
        assert_eq!(find_forbidden_char(b"abc\0"), Some((3, 0)));
        let long = [b"a".repeat(40), b"\x0b".to_vec()].concat();
        assert_eq!(find_forbidden_char(&long), Some((40, 0xB)));
        assert_eq!(
            find_forbidden_char("x\u{FFFF}".as_bytes()),
            Some((1, 0xFFFF))
        );
        assert_eq!(
            find_forbidden_char("x\u{FFFE}".as_bytes()),
            Some((1, 0xFFFE))
        );
        assert_eq!(find_forbidden_char("\u{FFFD}\u{F000}".as_bytes()), None);
    }
}
