//! The fast path of the tree builder: a tokenizer for the common shape of stanzas that hands
//! its tokens to the same [`Builder`] code as the quick-xml path.
//!
//! It accepts a strict subset of what the quick-xml path accepts — names of ASCII name bytes,
//! attributes written `name='value'` with no reference or literal TAB, LF or CR in the value,
//! text with no reference and no CR, no CDATA — and for that subset it makes the same tokens,
//! so it builds the same tree. On anything else, and on every error, it gives up (`None`) and
//! the element is parsed again by the quick-xml path, which reports the error exactly as
//! before. The framer has already matched the tags and refused comments, PIs and DTDs, and
//! the caller has checked UTF-8 and XML characters.

use std::borrow::Cow;

use quick_xml::events::attributes::{AttrError, Attribute};
use quick_xml::name::QName;

use super::Builder;
use crate::wire::chars::{find_by, is_xml_space};
use crate::wire::element::Element;

/// Whether `b` may appear in a name the fast path accepts (ASCII name bytes, colon included).
fn is_fast_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b':' | b'-' | b'.')
}

/// Length of the run of fast name bytes at the start of `s`.
fn name_len(s: &[u8]) -> usize {
    s.iter()
        .position(|&c| !is_fast_name_byte(c))
        .unwrap_or(s.len())
}

/// Length of the run of XML whitespace at the start of `s`.
fn space_len(s: &[u8]) -> usize {
    s.iter().position(|&c| !is_xml_space(c)).unwrap_or(s.len())
}

/// The attributes of one start tag, read lazily; `bad` is set (and iteration stops) at
/// anything the fast path does not handle.
struct Attrs<'a> {
    src: &'a str,
    pos: usize,
    bad: bool,
}

impl<'a> Iterator for Attrs<'a> {
    type Item = Result<Attribute<'a>, AttrError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.bad {
            return None;
        }
        let s = self.src.as_bytes();
        let rest = s.get(self.pos..).unwrap_or_default();
        let ws = space_len(rest);
        match rest.get(ws) {
            Some(b'>' | b'/') => {
                self.pos += ws;
                return None;
            }
            Some(_) if ws > 0 => {}
            _ => {
                self.bad = true;
                return None;
            }
        }
        let key_start = self.pos + ws;
        let key_len = name_len(s.get(key_start..).unwrap_or_default());
        let key_end = key_start + key_len;
        let quote = s.get(key_end + 1).copied();
        if key_len == 0 || s.get(key_end) != Some(&b'=') || !matches!(quote, Some(b'"' | b'\''))
        {
            self.bad = true;
            return None;
        }
        let value_start = key_end + 2;
        let value_rest = s.get(value_start..).unwrap_or_default();
        let q = quote.unwrap_or(b'"');
        let stop = value_rest
            .iter()
            .position(|&c| c == q || matches!(c, b'&' | b'<' | b'\t' | b'\n' | b'\r'));
        let Some(value_len) = stop.filter(|&n| value_rest.get(n).copied() == quote) else {
            self.bad = true;
            return None;
        };
        let (Some(key), Some(value)) = (
            self.src.get(key_start..key_end),
            self.src.get(value_start..value_start + value_len),
        ) else {
            self.bad = true;
            return None;
        };
        self.pos = value_start + value_len + 1;
        Some(Ok(Attribute {
            key: QName(key),
            value: Cow::Borrowed(value),
        }))
    }
}

impl<'a> Builder<'a> {
    /// Builds the tree if the element is in the fast path's subset and has no error.
    pub(super) fn run_fast(&mut self) -> Option<Element> {
        let src = self.src;
        let s = src.as_bytes();
        let mut i = 0usize;
        loop {
            let rest = s.get(i..)?;
            let lt = i + find_by(rest, |c| matches!(c, b'<' | b'&' | b'\r'))?;
            if s.get(lt) != Some(&b'<') {
                return None;
            }
            if lt > i {
                self.push_text(src.get(i..lt)?, i).ok()?;
            }
            match s.get(lt + 1)? {
                b'/' => {
                    let gt = lt + s.get(lt..)?.iter().position(|&c| c == b'>')?;
                    i = gt + 1;
                    self.flush_text();
                    if let Some(done) = self.end() {
                        return (i == s.len()).then_some(done);
                    }
                }
                b'!' | b'?' => return None,
                _ => {
                    let name_start = lt + 1;
                    let name_end = name_start + name_len(s.get(name_start..)?);
                    let qname = src.get(name_start..name_end)?;
                    let mut attrs = Attrs {
                        src,
                        pos: name_end,
                        bad: false,
                    };
                    self.flush_text();
                    let el = self.start_with(qname, lt, &mut attrs).ok()?;
                    if attrs.bad {
                        return None;
                    }
                    self.stack.push(el);
                    match s.get(attrs.pos..attrs.pos + 2)? {
                        [b'>', _] => i = attrs.pos + 1,
                        b"/>" => {
                            i = attrs.pos + 2;
                            if let Some(done) = self.end() {
                                return (i == s.len()).then_some(done);
                            }
                        }
                        _ => return None,
                    }
                }
            }
        }
    }
}
