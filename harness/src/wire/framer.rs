//! The resumable lexer that finds where each top-level element ends, one byte state at a time.
//!
//! It keeps its state between `feed`s, so every byte is looked at once whatever the chunking,
//! and it decides everything from the bytes alone: the same input gives the same frames and
//! the same first error (same offset) however it was split. It also enforces what must be
//! known before a whole element is buffered: the size, depth and name limits, tag matching,
//! and RFC 6120 §11's refusals of DTDs, comments and processing instructions.

use super::chars::{find_any, find2, is_xml_space, name_byte_class};
use super::error::{Violation, WireError};
use super::limits::Limits;

mod tags;

/// How the input is framed, once known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Decide at the first element: `stream` (any prefix) means a stream.
    Auto,
    /// `<stream:stream>` header, stanzas at depth 1, `</stream:stream>`.
    Stream,
    /// A sequence of top-level elements.
    Fragments,
}

/// A unit the framer delimited; ranges index the parser's buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Frame {
    /// The leading XML declaration.
    Decl { start: usize, end: usize },
    /// The stream header start tag; `self_closing` for `<stream:stream/>`.
    Header {
        start: usize,
        end: usize,
        self_closing: bool,
    },
    /// One complete top-level element (a stanza).
    Element { start: usize, end: usize },
    /// `</stream:stream>`.
    Close,
}

/// Where the lexer is relative to the document structure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Region {
    /// Before the first element: BOM, XML declaration, whitespace.
    Prolog,
    /// In the first element's start tag before its name is complete (auto framing).
    Undecided,
    /// In the stream header's start tag.
    Header,
    /// Between top-level elements (inside the stream, or between fragments).
    Between,
    /// Inside a top-level element.
    Stanza,
    /// After `</stream:stream>`.
    Closed,
}

/// Lexical state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lex {
    /// Nothing read yet: a byte order mark may follow.
    Start,
    /// Inside a UTF-8 byte order mark, this many bytes matched.
    Bom(u8),
    /// Character data (or whitespace between elements).
    Text,
    /// After `<`.
    Lt,
    /// In a start tag's name.
    StartName,
    /// In a start tag after its name, outside quotes.
    InTag,
    /// In a quoted attribute value.
    AttrValue(u8),
    /// After `/` in a start tag.
    EmptySlash,
    /// After `</`.
    EndLt,
    /// In an end tag's name.
    EndName,
    /// After an end tag's name.
    EndTail,
    /// After `<!`.
    Bang,
    /// After `<![`, this many bytes of `CDATA[` matched.
    BangCData(u8),
    /// In a CDATA section.
    CData,
    /// After `<?`, reading the target.
    PiTarget,
    /// In the leading XML declaration.
    Decl,
}

const CDATA_OPEN: &[u8] = b"CDATA[";

/// Which bound [`Framer::limit_end`] returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Over {
    Header,
    Stanza,
    /// No size bound (between elements); the index is `usize::MAX`.
    Text,
}

#[derive(Debug, Clone)]
pub(crate) struct Framer {
    mode: Mode,
    lex: Lex,
    region: Region,
    /// Absolute offset of `buf[0]`.
    base: u64,
    /// Absolute offset where a document may have its XML declaration (0, or 3 after a BOM).
    doc_start: u64,
    /// Next byte to look at.
    pos: usize,
    /// `<` of the markup being read.
    tag_start: usize,
    /// First byte of the name (or PI target) being read.
    name_start: usize,
    /// `<` of the top-level element (or header) being collected.
    elem_start: usize,
    /// First byte of CDATA content.
    cdata_start: usize,
    /// End of the name of the end tag being read.
    end_name_end: usize,
    /// Open elements of the current stanza: name ranges in the buffer.
    open: Vec<(usize, usize)>,
    /// Qualified name of the stream element.
    stream_name: Vec<u8>,
}

impl Framer {
    pub(crate) fn new(mode: Mode) -> Self {
        Self {
            mode,
            lex: Lex::Start,
            region: Region::Prolog,
            base: 0,
            doc_start: 0,
            pos: 0,
            tag_start: 0,
            name_start: 0,
            elem_start: 0,
            cdata_start: 0,
            end_name_end: 0,
            open: Vec::new(),
            stream_name: Vec::new(),
        }
    }

    pub(crate) fn mode(&self) -> Mode {
        self.mode
    }

    pub(crate) fn base(&self) -> u64 {
        self.base
    }

    fn abs(&self, idx: usize) -> u64 {
        self.base.saturating_add(idx as u64)
    }

    fn err(&self, idx: usize, violation: Violation) -> WireError {
        WireError::new(self.abs(idx), violation)
    }

    /// The earliest buffer index still needed; bytes before it may be dropped.
    pub(crate) fn keep_from(&self) -> usize {
        match self.region {
            Region::Undecided | Region::Header | Region::Stanza => self.elem_start,
            _ if self.lex == Lex::Text => self.pos,
            Region::Prolog if self.lex == Lex::Start || matches!(self.lex, Lex::Bom(_)) => 0,
            _ => self.tag_start,
        }
    }

    /// The buffer index of the `<` of the next top-level element, if the lexer is between
    /// elements and only whitespace precedes a start tag there: the parser may then take the
    /// element whole ([`Framer::skip_element`]) instead of having it framed byte by byte.
    ///
    /// With fragment framing the first element qualifies too, once the prolog holds nothing
    /// but whitespace before it (or an XML declaration already framed) and its `<` and first
    /// name byte lie within the header bound that governs the prolog: the framer would then
    /// enter the element exactly there, with no check left that the fast path skips. A byte
    /// order mark is not whitespace, so a BOM-led input is framed as before.
    pub(crate) fn element_ahead(&self, buf: &[u8], limits: &Limits) -> Option<usize> {
        let prolog = match (self.region, self.lex) {
            (Region::Between, Lex::Text) => false,
            (Region::Prolog, Lex::Start | Lex::Text) if self.mode == Mode::Fragments => true,
            _ => return None,
        };
        let rest = buf.get(self.pos..)?;
        let ws = rest.iter().position(|&c| !is_xml_space(c))?;
        let starts_tag = rest.get(ws) == Some(&b'<')
            && rest
                .get(ws + 1)
                .is_some_and(|&c| name_byte_class(c) == Some(true));
        let start = self.pos + ws;
        if prolog && self.abs(start).saturating_add(2) > limits.max_header_bytes as u64 {
            return None;
        }
        starts_tag.then_some(start)
    }

    /// The element at `start..end` (from [`Framer::element_ahead`]) was taken whole and checked
    /// by the caller: continue after it, as if it had been framed.
    pub(crate) fn skip_element(&mut self, start: usize, end: usize) {
        // Set already between elements; the first fragment leaves the prolog here.
        self.region = Region::Between;
        self.lex = Lex::Text;
        self.elem_start = start;
        self.tag_start = start;
        self.pos = end;
    }

    /// The buffer dropped its first `n` bytes.
    pub(crate) fn shift(&mut self, n: usize) {
        self.base = self.base.saturating_add(n as u64);
        self.pos = self.pos.saturating_sub(n);
        self.tag_start = self.tag_start.saturating_sub(n);
        self.name_start = self.name_start.saturating_sub(n);
        self.elem_start = self.elem_start.saturating_sub(n);
        self.cdata_start = self.cdata_start.saturating_sub(n);
        self.end_name_end = self.end_name_end.saturating_sub(n);
        for (start, _) in &mut self.open {
            *start = start.saturating_sub(n);
        }
    }

    /// Exclusive buffer index past which bytes exceed a limit, and which limit it is.
    fn limit_end(&self, limits: &Limits) -> (usize, Over) {
        let header_end =
            usize::try_from((limits.max_header_bytes as u64).saturating_sub(self.base))
                .unwrap_or(usize::MAX);
        let stanza_end = self.elem_start.saturating_add(limits.max_stanza_bytes);
        match self.region {
            Region::Prolog | Region::Header => (header_end, Over::Header),
            Region::Undecided if header_end <= stanza_end => (header_end, Over::Header),
            Region::Undecided | Region::Stanza => (stanza_end, Over::Stanza),
            Region::Between | Region::Closed => (usize::MAX, Over::Text),
        }
    }

    /// Reads on from where it stopped; `Ok(None)` means more bytes are needed.
    pub(crate) fn next_frame(
        &mut self,
        buf: &[u8],
        limits: &Limits,
    ) -> Result<Option<Frame>, WireError> {
        loop {
            let (limit, over) = self.limit_end(limits);
            let end = buf.len().min(limit);
            if self.pos >= end {
                if self.pos >= limit && buf.len() > limit {
                    let violation = match over {
                        Over::Header => Violation::HeaderTooLarge {
                            limit: limits.max_header_bytes,
                        },
                        Over::Stanza => Violation::StanzaTooLarge {
                            limit: limits.max_stanza_bytes,
                        },
                        Over::Text => Violation::TextAtStreamLevel,
                    };
                    return Err(self.err(limit, violation));
                }
                return Ok(None);
            }
            // The bound depends only on the region, the element start and the base (which
            // only `shift` moves): step on without recomputing it while they stay put.
            let (region, elem_start) = (self.region, self.elem_start);
            while let Some(window) = buf.get(self.pos..end) {
                let Some(&b) = window.first() else {
                    break;
                };
                if let Some(frame) = self.step(b, window, buf, limits)? {
                    return Ok(Some(frame));
                }
                if self.region != region || self.elem_start != elem_start {
                    break;
                }
            }
        }
    }

    /// Consumes at least one byte of `window` (which starts at `self.pos`).
    fn step(
        &mut self,
        b: u8,
        window: &[u8],
        buf: &[u8],
        limits: &Limits,
    ) -> Result<Option<Frame>, WireError> {
        let pos = self.pos;
        match self.lex {
            Lex::Start => {
                match b {
                    0xEF => {
                        self.lex = Lex::Bom(1);
                        self.pos += 1;
                    }
                    0xFE | 0xFF => {
                        return Err(self.err(
                            pos,
                            Violation::UnsupportedEncoding {
                                encoding: "UTF-16 (byte order mark)".into(),
                            },
                        ));
                    }
                    _ => self.lex = Lex::Text,
                }
                Ok(None)
            }
            Lex::Bom(n) => {
                if UTF8_BOM.get(usize::from(n)) != Some(&b) {
                    return Err(self.err(
                        pos.saturating_sub(usize::from(n)),
                        Violation::TextAtStreamLevel,
                    ));
                }
                self.pos += 1;
                if n + 1 == 3 {
                    self.lex = Lex::Text;
                    self.doc_start = self.abs(self.pos);
                } else {
                    self.lex = Lex::Bom(n + 1);
                }
                Ok(None)
            }
            Lex::Text => self.text(b, window, buf),
            Lex::Lt => self.after_lt(b, limits),
            Lex::StartName => {
                let n = name_len(window);
                self.check_name_len(pos + n, limits)?;
                self.pos += n;
                let Some(&t) = window.get(n) else {
                    return Ok(None);
                };
                self.start_name_done(buf)?;
                self.pos += 1;
                match t {
                    b'>' => self.start_tag_done(false),
                    b'/' => {
                        self.lex = Lex::EmptySlash;
                        Ok(None)
                    }
                    _ if is_xml_space(t) => {
                        self.lex = Lex::InTag;
                        Ok(None)
                    }
                    _ => Err(self.err(pos + n, Violation::InvalidNameChar { ch: char::from(t) })),
                }
            }
            Lex::InTag => {
                let Some(i) = find_any(window, [b'>', b'/', b'"', b'\'', b'<']) else {
                    self.pos += window.len();
                    return Ok(None);
                };
                let at = pos + i;
                self.pos = at + 1;
                match window.get(i).copied().unwrap_or(b'>') {
                    b'>' => self.start_tag_done(false),
                    b'/' => {
                        self.lex = Lex::EmptySlash;
                        Ok(None)
                    }
                    b'<' => {
                        Err(self.err(at, Violation::Xml("'<' is not allowed inside a tag".into())))
                    }
                    q => {
                        self.lex = Lex::AttrValue(q);
                        Ok(None)
                    }
                }
            }
            Lex::AttrValue(q) => {
                let Some(i) = find2(window, q, b'<') else {
                    self.pos += window.len();
                    return Ok(None);
                };
                let at = pos + i;
                if window.get(i) == Some(&b'<') {
                    return Err(self.err(at, Violation::AttributeValueLt));
                }
                self.pos = at + 1;
                self.lex = Lex::InTag;
                Ok(None)
            }
            Lex::EmptySlash => {
                if b != b'>' {
                    return Err(self.err(
                        pos,
                        Violation::Xml("expected '>' after '/' in a tag".into()),
                    ));
                }
                self.pos += 1;
                self.start_tag_done(true)
            }
            Lex::EndLt => {
                if name_byte_class(b) != Some(true) {
                    return Err(self.err(pos, invalid_name_char(b)));
                }
                self.name_start = pos;
                self.lex = Lex::EndName;
                self.pos += 1;
                Ok(None)
            }
            Lex::EndName => {
                let n = name_len(window);
                self.check_name_len(pos + n, limits)?;
                self.pos += n;
                let Some(&t) = window.get(n) else {
                    return Ok(None);
                };
                let name_end = pos + n;
                self.pos += 1;
                match t {
                    b'>' => self.end_tag_done(buf, name_end),
                    _ if is_xml_space(t) => {
                        // Remember where the name ended: EndTail only skips whitespace.
                        self.end_name_end = name_end;
                        self.lex = Lex::EndTail;
                        Ok(None)
                    }
                    _ => Err(self.err(name_end, invalid_name_char(t))),
                }
            }
            Lex::EndTail => {
                self.pos += 1;
                match b {
                    b'>' => {
                        let name_end = self.end_name_end;
                        self.end_tag_done(buf, name_end)
                    }
                    _ if is_xml_space(b) => Ok(None),
                    _ => Err(self.err(
                        pos,
                        Violation::Xml("only whitespace may follow the name in an end tag".into()),
                    )),
                }
            }
            Lex::Bang => match b {
                b'-' => Err(self.err(self.tag_start, Violation::CommentForbidden)),
                b'D' | b'd' => Err(self.err(self.tag_start, Violation::DoctypeForbidden)),
                b'[' if self.region == Region::Stanza => {
                    self.lex = Lex::BangCData(0);
                    self.pos += 1;
                    Ok(None)
                }
                b'[' => Err(self.err(self.tag_start, Violation::TextAtStreamLevel)),
                _ => Err(self.err(self.tag_start, Violation::UnknownMarkupDeclaration)),
            },
            Lex::BangCData(n) => {
                if CDATA_OPEN.get(usize::from(n)) != Some(&b) {
                    return Err(self.err(self.tag_start, Violation::UnknownMarkupDeclaration));
                }
                self.pos += 1;
                if usize::from(n) + 1 == CDATA_OPEN.len() {
                    self.lex = Lex::CData;
                    self.cdata_start = self.pos;
                } else {
                    self.lex = Lex::BangCData(n + 1);
                }
                Ok(None)
            }
            Lex::CData => {
                let Some(i) = window.iter().position(|&c| c == b'>') else {
                    self.pos += window.len();
                    return Ok(None);
                };
                let at = pos + i;
                self.pos = at + 1;
                if at >= self.cdata_start.saturating_add(2)
                    && buf.get(at.saturating_sub(2)..at) == Some(b"]]".as_slice())
                {
                    self.lex = Lex::Text;
                }
                Ok(None)
            }
            Lex::PiTarget => {
                let n = name_len(window);
                self.check_name_len(pos + n, limits)?;
                self.pos += n;
                if n == window.len() {
                    return Ok(None);
                }
                let target = buf.get(self.name_start..pos + n).unwrap_or_default();
                if target == b"xml"
                    && self.region == Region::Prolog
                    && self.abs(self.tag_start) == self.doc_start
                {
                    self.lex = Lex::Decl;
                    return Ok(None);
                }
                if target.eq_ignore_ascii_case(b"xml") {
                    return Err(self.err(self.tag_start, Violation::XmlDeclarationNotAtStart));
                }
                let target = String::from_utf8_lossy(target).into_owned();
                Err(self.err(
                    self.tag_start,
                    Violation::ProcessingInstructionForbidden { target },
                ))
            }
            Lex::Decl => {
                let Some(i) = window.iter().position(|&c| c == b'>') else {
                    self.pos += window.len();
                    return Ok(None);
                };
                let at = pos + i;
                self.pos = at + 1;
                if at > self.name_start.saturating_add(3) && buf.get(at - 1) == Some(&b'?') {
                    self.lex = Lex::Text;
                    return Ok(Some(Frame::Decl {
                        start: self.tag_start,
                        end: self.pos,
                    }));
                }
                Ok(None)
            }
        }
    }

    /// At end of input (`len` bytes buffered): an error unless between elements.
    pub(crate) fn at_eof(&self, buf: &[u8]) -> Result<(), WireError> {
        let eof = buf.len();
        let context = match self.lex {
            Lex::Start => return Ok(()),
            Lex::Text => match self.region {
                Region::Stanza => {
                    let name = self
                        .open
                        .last()
                        .and_then(|&(s, l)| buf.get(s..s.saturating_add(l)))
                        .map(|n| String::from_utf8_lossy(n).into_owned())
                        .unwrap_or_default();
                    return Err(self.err(eof, Violation::UnclosedTag { name }));
                }
                _ => return Ok(()),
            },
            Lex::Bom(_) => "a byte order mark",
            Lex::Lt
            | Lex::StartName
            | Lex::InTag
            | Lex::AttrValue(_)
            | Lex::EmptySlash
            | Lex::EndLt
            | Lex::EndName
            | Lex::EndTail => "a tag",
            Lex::Bang | Lex::BangCData(_) => "a markup declaration",
            Lex::CData => "a CDATA section",
            Lex::PiTarget => "a processing instruction",
            Lex::Decl => "the XML declaration",
        };
        Err(self.err(eof, Violation::UnexpectedEof { context }))
    }
}

const UTF8_BOM: &[u8] = &[0xEF, 0xBB, 0xBF];

/// Length of the run of name bytes at the start of `window`.
fn name_len(window: &[u8]) -> usize {
    window
        .iter()
        .position(|&c| name_byte_class(c).is_none())
        .unwrap_or(window.len())
}

fn invalid_name_char(b: u8) -> Violation {
    if b < 0x20 && !is_xml_space(b) {
        Violation::InvalidChar {
            codepoint: u32::from(b),
        }
    } else if b < 0x80 {
        Violation::InvalidNameChar { ch: char::from(b) }
    } else {
        Violation::InvalidUtf8
    }
}
