//! The fast path of the tree builder: one pass over the bytes of a top-level element, for the
//! common shape of stanzas, handing its tokens to the same [`Builder`] code as the quick-xml
//! path.
//!
//! It accepts a strict subset of what the framer and the quick-xml path accept — names of
//! ASCII name bytes, attributes written `name='value'` with no reference or literal TAB, LF or
//! CR in the value, text with no reference, no CR and no `]]>`, no CDATA, comment, PI or DTD —
//! and for that subset it makes the same tokens, so it builds the same tree. It also finds the
//! element's end itself, matching the end tags and applying the framer's limits (depth, name
//! length, element size), and checks UTF-8 and XML characters slice by slice (tag bytes outside
//! values are ASCII it has looked at). On anything else, on every error and when the element is
//! not complete, it gives up (`None`) and the framer and the quick-xml path take the element
//! from the start, so errors are reported exactly as before.

use std::borrow::Cow;

use quick_xml::events::attributes::{AttrError, Attribute};
use quick_xml::name::QName;

#[cfg(any(test, debug_assertions))]
use super::OwnedTree;
use super::{Builder, NsContext, Scratch, Tree};
use crate::wire::chars::{find_any, find_forbidden_char, is_ascii_name_byte, is_xml_space};
#[cfg(any(test, debug_assertions))]
use crate::wire::element::Element;
use crate::wire::limits::Limits;

/// Length of the run of ASCII name bytes (colon included) at the start of `s`.
fn name_len(s: &[u8]) -> usize {
    s.iter()
        .position(|&c| !is_ascii_name_byte(c))
        .unwrap_or(s.len())
}

/// Length of the run of XML whitespace at the start of `s`.
fn space_len(s: &[u8]) -> usize {
    s.iter().position(|&c| !is_xml_space(c)).unwrap_or(s.len())
}

/// How much of the input [`Clean`] checks at first when there is no previous element's size
/// to go by.
const FIRST_HINT: usize = 4096;

/// The bytes that end a run of plain text on the fast path.
const TEXT_STOPS: [u8; 4] = [b'<', b'>', b'&', b'\r'];

/// Position of the first of [`TEXT_STOPS`] in `s`. Text between tags is mostly short, so the
/// first 32 bytes go through [`find_any`]'s word search; beyond them (a base64 payload is
/// long) 32-byte blocks are tested at once with a branch-free byte fold the compiler turns
/// into vector compares, and only the block with a hit is searched word by word.
fn find_text_stop(s: &[u8]) -> Option<usize> {
    const BLOCK: usize = 32;
    let (head, rest) = s.split_at(s.len().min(BLOCK));
    if let Some(i) = find_any(head, TEXT_STOPS) {
        return Some(i);
    }
    let (blocks, tail) = rest.as_chunks::<BLOCK>();
    for (n, block) in blocks.iter().enumerate() {
        let hit = block.iter().fold(0u8, |acc, &b| {
            acc | u8::from((b == b'<') | (b == b'>') | (b == b'&') | (b == b'\r'))
        });
        if hit != 0 {
            return find_any(block, TEXT_STOPS).map(|i| head.len() + n * BLOCK + i);
        }
    }
    find_any(tail, TEXT_STOPS).map(|i| head.len() + blocks.len() * BLOCK + i)
}

/// Whether an element name may start with `b` on the fast path.
fn is_ascii_name_start(b: u8) -> bool {
    b.is_ascii_alphabetic() || b == b'_' || b == b':'
}

/// A prefix of the element's bytes known to be UTF-8 made only of XML characters, grown by
/// doubling as tokens beyond it are needed (so each byte is checked about twice at most, by
/// the fast whole-slice checks), and the bytes themselves.
#[derive(Clone, Copy)]
struct Clean<'a> {
    bytes: &'a [u8],
    src: &'a str,
    /// How much to check at first: about the size of the previous element.
    hint: usize,
}

impl<'a> Clean<'a> {
    /// `bytes[start..end]` as a string, if that much of the input is clean.
    #[inline]
    fn get(&mut self, start: usize, end: usize) -> Option<&'a str> {
        if end > self.src.len() {
            self.grow(end);
        }
        self.src.get(start..end)
    }

    /// Checks more of the input: at least up to `end`, twice as much as before, or the hint.
    #[cold]
    fn grow(&mut self, end: usize) {
        let want = end
            .max(self.src.len() * 2)
            .max(self.hint)
            .min(self.bytes.len());
        let prefix = self.bytes.get(..want).unwrap_or_default();
        let clean = find_forbidden_char(prefix).map_or(want, |(i, _)| i);
        let prefix = prefix.get(..clean).unwrap_or_default();
        let src = match std::str::from_utf8(prefix) {
            Ok(src) => src,
            Err(e) => std::str::from_utf8(prefix.get(..e.valid_up_to()).unwrap_or_default())
                .unwrap_or_default(),
        };
        // Never shrink: what was clean stays clean.
        if src.len() > self.src.len() {
            self.src = src;
        }
    }
}

/// The attributes of one start tag, read lazily; `bad` is set (and iteration stops) at
/// anything the fast path does not handle.
struct Attrs<'a> {
    clean: Clean<'a>,
    pos: usize,
    bad: bool,
}

impl<'a> Attrs<'a> {
    fn fail(&mut self) -> Option<Result<Attribute<'a>, AttrError>> {
        self.bad = true;
        None
    }
}

impl<'a> Iterator for Attrs<'a> {
    type Item = Result<Attribute<'a>, AttrError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.bad {
            return None;
        }
        let s = self.clean.bytes;
        let rest = s.get(self.pos..).unwrap_or_default();
        let ws = space_len(rest);
        match rest.get(ws) {
            Some(b'>' | b'/') => {
                self.pos += ws;
                return None;
            }
            Some(_) if ws > 0 => {}
            _ => return self.fail(),
        }
        let key_start = self.pos + ws;
        let key_len = name_len(s.get(key_start..).unwrap_or_default());
        let key_end = key_start + key_len;
        let quote = s.get(key_end + 1).copied();
        if key_len == 0 || s.get(key_end) != Some(&b'=') || !matches!(quote, Some(b'"' | b'\'')) {
            return self.fail();
        }
        let value_start = key_end + 2;
        let value_rest = s.get(value_start..).unwrap_or_default();
        let q = quote.unwrap_or(b'"');
        let stop = value_rest
            .iter()
            .position(|&c| c == q || matches!(c, b'&' | b'<' | b'\t' | b'\n' | b'\r'));
        let Some(value_len) = stop.filter(|&n| value_rest.get(n).copied() == quote) else {
            return self.fail();
        };
        let value_end = value_start + value_len;
        let (Some(value), Some(key)) = (
            self.clean.get(value_start, value_end),
            self.clean.get(key_start, key_end),
        ) else {
            return self.fail();
        };
        self.pos = value_end + 1;
        Some(Ok(Attribute {
            key: QName(key),
            value: Cow::Borrowed(value),
        }))
    }
}

impl<'a, E: Tree<'a>> Builder<'a, '_, E> {
    /// Builds the element that starts at `self.bytes[0]` (a `<`) if it is complete, in the fast
    /// path's subset and free of errors; returns its length in bytes. `open` is working
    /// space for the open tags' name ranges.
    /// `hint` is the expected size (the previous element's).
    pub(super) fn run_fast(
        &mut self,
        open: &mut Vec<(usize, usize)>,
        hint: usize,
    ) -> Option<usize> {
        let s = self.bytes;
        let limits = self.limits;
        // With no previous element to go by (a parser's first element, e.g. every
        // `parse_fragment`), checking 4 KiB at once covers the usual stanza in one pass
        // instead of four doublings that re-check the start each time.
        let hint = match hint {
            0 => FIRST_HINT,
            _ => hint.saturating_add(hint / 8).max(256),
        };
        let mut clean = Clean {
            bytes: s,
            src: "",
            hint,
        };
        open.clear();
        let mut i = 0usize;
        loop {
            if i > limits.max_stanza_bytes {
                return None;
            }
            // Text up to the next tag; `>` is fine unless it ends `]]>`.
            let mut lt = i;
            loop {
                let k = lt + find_text_stop(s.get(lt..)?)?;
                match s.get(k)? {
                    b'<' => {
                        lt = k;
                        break;
                    }
                    b'>' if s.get(k.saturating_sub(2)..k) != Some(b"]]".as_slice()) => lt = k + 1,
                    _ => return None,
                }
            }
            if lt > i {
                let text = clean.get(i, lt)?;
                self.push_text_borrowed(text, i).ok()?;
            }
            match *s.get(lt + 1)? {
                b'/' => {
                    let name_start = lt + 2;
                    let name_end = name_start + name_len(s.get(name_start..)?);
                    let gt = name_end + space_len(s.get(name_end..)?);
                    let (start, end) = open.pop()?;
                    if s.get(gt) != Some(&b'>') || s.get(start..end) != s.get(name_start..name_end)
                    {
                        return None;
                    }
                    i = gt + 1;
                    self.flush_text();
                    if self.end() {
                        return (i <= limits.max_stanza_bytes).then_some(i);
                    }
                }
                c if is_ascii_name_start(c) => {
                    if open.len() >= limits.max_depth {
                        return None;
                    }
                    let name_start = lt + 1;
                    let name_end = name_start + name_len(s.get(name_start..)?);
                    if name_end - name_start > limits.max_name_bytes {
                        return None;
                    }
                    let qname = clean.get(name_start, name_end)?;
                    let mut attrs = Attrs {
                        clean,
                        pos: name_end,
                        bad: false,
                    };
                    self.flush_text();
                    self.start_with(qname, lt, &mut attrs, true, E::borrow)
                        .ok()?;
                    if attrs.bad {
                        return None;
                    }
                    clean = attrs.clean;
                    match s.get(attrs.pos..attrs.pos + 2)? {
                        [b'>', _] => {
                            open.push((name_start, name_end));
                            i = attrs.pos + 1;
                        }
                        b"/>" => {
                            i = attrs.pos + 2;
                            if self.end() {
                                return (i <= limits.max_stanza_bytes).then_some(i);
                            }
                        }
                        _ => return None,
                    }
                }
                _ => return None,
            }
        }
    }
}

/// The fast path over `bytes`, which start with the `<` of a top-level element: the element
/// (built into `tree`) and its length, or `None` if it is incomplete, has an error, or is not
/// in the fast path's subset (see `fast`; `tree` then holds garbage until its next reset).
/// Nothing is reported; the caller then takes the exact path.
pub(crate) fn parse_leading<'a, E: Tree<'a>>(
    bytes: &'a [u8],
    base: u64,
    ctx: &NsContext,
    limits: &Limits,
    scratch: &mut Scratch,
    tree: &mut E,
) -> Option<usize> {
    let mut b = Builder::new("", base, limits, ctx, scratch, tree);
    b.bytes = bytes;
    let mut open = std::mem::take(&mut scratch.open);
    let found = b.run_fast(&mut open, scratch.last_len);
    b.give_back(scratch);
    scratch.open = open;
    if let Some(len) = found {
        scratch.last_len = len;
    }
    found
}

/// Debug builds (the test suites) check every fast-path tree against the quick-xml path.
#[cfg(debug_assertions)]
pub(crate) fn check_fast_path(
    bytes: &[u8],
    base: u64,
    ctx: &NsContext,
    limits: &Limits,
    element: &Element,
) {
    let slow = super::validate_text(bytes, base).and_then(|src| {
        let mut tree = OwnedTree::default();
        let mut scratch = Scratch::default();
        Builder::new(src, base, limits, ctx, &mut scratch, &mut tree).run()?;
        Ok(tree.take_root())
    });
    debug_assert_eq!(slow.as_ref().ok(), Some(element), "fast path on {bytes:?}");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leading(bytes: &[u8], limits: &Limits) -> Option<(Element, usize)> {
        let ctx = NsContext {
            bindings: vec![(String::new(), "jabber:client".into())],
        };
        let mut tree = OwnedTree::default();
        let len = parse_leading(bytes, 0, &ctx, limits, &mut Scratch::default(), &mut tree)?;
        Some((tree.take_root(), len))
    }

    /// Every stop byte at every position of spans covering the head, whole blocks and a
    /// tail, with a later stop that must not be reported first.
    #[test]
    fn text_stop_is_the_first_stop_byte() {
        for len in 0..=140 {
            assert_eq!(find_text_stop(&vec![b'A'; len]), None);
            for at in 0..len {
                for stop in TEXT_STOPS {
                    let mut hay = vec![b'A'; len];
                    hay[at] = stop;
                    if let Some(later) = hay.get_mut(at + 33) {
                        *later = b'<';
                    }
                    assert_eq!(find_text_stop(&hay), Some(at), "{len} {at} {stop}");
                }
            }
        }
    }

    #[test]
    fn takes_a_whole_common_stanza_and_stops_after_it() {
        let input =
            b"<message to='a@b' id=\"1\"><body>hi &gt</body><x xmlns='urn:x' y='z'/></message>";
        // A reference in text is left to the exact path.
        assert!(leading(input, &Limits::harness_ceilings()).is_none());
        let input = b"<message to='a@b' id=\"1\"><body>hi > there</body><x xmlns='urn:x' y='z'/>\
                      </message >\n<next/>";
        let (element, len) = leading(input, &Limits::harness_ceilings()).unwrap();
        assert_eq!(&input[len..], b"\n<next/>");
        assert_eq!(element.ns, "jabber:client");
        assert_eq!(element.attr("id"), Some("1"));
        assert_eq!(
            element.child("body", "jabber:client").map(Element::text),
            Some("hi > there".into())
        );
        assert!(element.child("x", "urn:x").is_some());
    }

    #[test]
    fn declines_what_the_exact_path_must_see() {
        let limits = Limits::harness_ceilings();
        for bad in [
            &b"<a><b></a>"[..],
            b"<a><b></b>",
            b"<a>x]]>y</a>",
            b"<a><![CDATA[x]]></a>",
            b"<a>\x01</a>",
            b"<a>\xff</a>",
            b"<a b='\x01'/>",
            b"<a b='1' b='2'/>",
            b"<a b = '1'/>",
            b"<a b='&amp;'/>",
            b"<a b='x\ny'/>",
            b"<a>\r\n</a>",
            b"<a><!-- c --></a>",
            b"<a><?pi?></a>",
            b"<p:a/>",
            b"<a/ >",
            b"<\xc3\xa9/>",
        ] {
            assert!(
                leading(bad, &limits).is_none(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        let tight = Limits {
            max_depth: 1,
            ..Limits::harness_ceilings()
        };
        assert!(leading(b"<a/>", &tight).is_some());
        assert!(leading(b"<a><b/></a>", &tight).is_none());
        let short = Limits {
            max_name_bytes: 2,
            max_stanza_bytes: 12,
            ..Limits::harness_ceilings()
        };
        assert!(leading(b"<ab></ab>", &short).is_some());
        assert!(leading(b"<abc></abc>", &short).is_none());
        assert!(leading(b"<ab>123</ab>", &short).is_some());
        assert!(leading(b"<ab>1234</ab>", &short).is_none());
    }
}
