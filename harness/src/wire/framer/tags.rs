//! The framer's tag-level transitions: character data, start and end tags, tag matching and
//! the depth and name limits.

use super::{Frame, Framer, Lex, Mode, Region, invalid_name_char};
use crate::wire::chars::{find2, is_xml_space, name_byte_class};
use crate::wire::error::{Violation, WireError};
use crate::wire::limits::Limits;

impl Framer {
    /// Character data, or whitespace between elements.
    pub(super) fn text(
        &mut self,
        b: u8,
        window: &[u8],
        buf: &[u8],
    ) -> Result<Option<Frame>, WireError> {
        let pos = self.pos;
        if self.region == Region::Stanza {
            let Some(i) = find2(window, b'<', b'>') else {
                self.pos += window.len();
                return Ok(None);
            };
            let at = pos + i;
            self.pos = at + 1;
            if window.get(i) == Some(&b'<') {
                self.tag_start = at;
                self.lex = Lex::Lt;
            } else if buf.get(at.saturating_sub(2)..at) == Some(b"]]".as_slice()) {
                return Err(self.err(at.saturating_sub(2), Violation::CdataEndInText));
            }
            return Ok(None);
        }
        if is_xml_space(b) {
            self.pos += 1;
            return Ok(None);
        }
        if self.region == Region::Closed {
            return Err(self.err(pos, Violation::ContentAfterClose));
        }
        if b == b'<' {
            self.tag_start = pos;
            self.lex = Lex::Lt;
            self.pos += 1;
            return Ok(None);
        }
        if b < 0x20 {
            return Err(self.err(
                pos,
                Violation::InvalidChar {
                    codepoint: u32::from(b),
                },
            ));
        }
        Err(self.err(pos, Violation::TextAtStreamLevel))
    }

    /// The byte after `<`.
    pub(super) fn after_lt(&mut self, b: u8, limits: &Limits) -> Result<Option<Frame>, WireError> {
        let pos = self.pos;
        match b {
            b'/' => self.lex = Lex::EndLt,
            b'!' => self.lex = Lex::Bang,
            b'?' => {
                self.lex = Lex::PiTarget;
                self.name_start = pos + 1;
            }
            _ if name_byte_class(b) == Some(true) => {
                match self.region {
                    Region::Prolog => {
                        self.elem_start = self.tag_start;
                        self.region = match self.mode {
                            Mode::Auto => Region::Undecided,
                            Mode::Stream => Region::Header,
                            Mode::Fragments => Region::Stanza,
                        };
                    }
                    Region::Between => {
                        self.elem_start = self.tag_start;
                        self.region = Region::Stanza;
                    }
                    _ => {}
                }
                if matches!(self.region, Region::Stanza | Region::Undecided)
                    && self.open.len() >= limits.max_depth
                {
                    let limit = limits.max_depth;
                    return Err(self.err(self.tag_start, Violation::TooDeep { limit }));
                }
                self.name_start = pos;
                self.lex = Lex::StartName;
            }
            _ => return Err(self.err(pos, invalid_name_char(b))),
        }
        self.pos += 1;
        Ok(None)
    }

    pub(super) fn check_name_len(&self, name_end: usize, limits: &Limits) -> Result<(), WireError> {
        if name_end.saturating_sub(self.name_start) > limits.max_name_bytes {
            let at = self.name_start.saturating_add(limits.max_name_bytes);
            let limit = limits.max_name_bytes;
            return Err(self.err(at, Violation::NameTooLong { limit }));
        }
        Ok(())
    }

    /// A start tag's name ended at `self.pos`.
    pub(super) fn start_name_done(&mut self, buf: &[u8]) -> Result<(), WireError> {
        let name = self.name_start..self.pos;
        if self.region == Region::Undecided {
            let qname = buf.get(name.clone()).unwrap_or_default();
            let local = qname.rsplit(|&c| c == b':').next().unwrap_or_default();
            if local == b"stream" {
                self.mode = Mode::Stream;
                self.region = Region::Header;
            } else {
                self.mode = Mode::Fragments;
                self.region = Region::Stanza;
            }
        }
        match self.region {
            Region::Header => {
                self.stream_name = buf.get(name).unwrap_or_default().to_vec();
            }
            _ => self.open.push((name.start, name.end - name.start)),
        }
        Ok(())
    }

    /// The `>` of a start tag was consumed.
    pub(super) fn start_tag_done(
        &mut self,
        self_closing: bool,
    ) -> Result<Option<Frame>, WireError> {
        self.lex = Lex::Text;
        match self.region {
            Region::Header => {
                self.region = if self_closing {
                    Region::Closed
                } else {
                    Region::Between
                };
                Ok(Some(Frame::Header {
                    start: self.elem_start,
                    end: self.pos,
                    self_closing,
                }))
            }
            _ => {
                if self_closing {
                    self.open.pop();
                }
                if self.open.is_empty() {
                    self.region = Region::Between;
                    return Ok(Some(Frame::Element {
                        start: self.elem_start,
                        end: self.pos,
                    }));
                }
                Ok(None)
            }
        }
    }

    /// The `>` of an end tag whose name is `name_start..name_end` was consumed.
    pub(super) fn end_tag_done(
        &mut self,
        buf: &[u8],
        name_end: usize,
    ) -> Result<Option<Frame>, WireError> {
        self.lex = Lex::Text;
        let found = buf.get(self.name_start..name_end).unwrap_or_default();
        let lossy = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        if self.region == Region::Stanza {
            let Some((start, len)) = self.open.pop() else {
                return Err(self.err(
                    self.tag_start,
                    Violation::UnexpectedCloseTag { name: lossy(found) },
                ));
            };
            let expected = buf
                .get(start..start.saturating_add(len))
                .unwrap_or_default();
            if expected != found {
                return Err(self.err(
                    self.tag_start,
                    Violation::MismatchedTag {
                        expected: lossy(expected),
                        found: lossy(found),
                    },
                ));
            }
            if self.open.is_empty() {
                self.region = Region::Between;
                return Ok(Some(Frame::Element {
                    start: self.elem_start,
                    end: self.pos,
                }));
            }
            return Ok(None);
        }
        if self.mode == Mode::Stream && self.region == Region::Between {
            if found != self.stream_name.as_slice() {
                return Err(self.err(
                    self.tag_start,
                    Violation::MismatchedTag {
                        expected: lossy(&self.stream_name),
                        found: lossy(found),
                    },
                ));
            }
            self.region = Region::Closed;
            return Ok(Some(Frame::Close));
        }
        Err(self.err(
            self.tag_start,
            Violation::UnexpectedCloseTag { name: lossy(found) },
        ))
    }
}
