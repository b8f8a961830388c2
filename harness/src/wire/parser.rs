//! The streaming parser: bytes in (any chunking), stream header, stanzas and close out.
//!
//! Design: the unconsumed bytes of the current top-level element are buffered; a resumable
//! lexer (`framer`) finds where that element ends, looking at each byte once, and only then
//! quick-xml tokenizes the complete element (`tree`). Why not drive quick-xml incrementally:
//! quick-xml cannot resume inside a token when input runs out, so it would have to re-parse the
//! partial element on every `feed` (quadratic with small chunks) and its errors would depend
//! on where the input was cut. The lexer makes framing, limits and errors a function of the
//! bytes alone, so the events and the first error (variant and offset) are identical for every
//! split of the input, and memory stays bounded: the buffer never holds more than one
//! element (at most `max_stanza_bytes`) plus the last chunk fed.
//!
//! Byte order mark: a UTF-8 BOM at offset 0 is tolerated and skipped (XML 1.0 §4.3.3 allows
//! it; RFC 6120 only requires UTF-8); UTF-16 BOMs are refused as unsupported-encoding.

use super::borrowed::{Pool, StanzaRef, StreamEventRef};
use super::chars::{is_xml_space, name_byte_class};
use super::element::Element;
use super::error::{Violation, WireError};
pub use super::event::{StreamEvent, StreamHeader};
use super::framer::{Frame, Framer, Mode};
use super::limits::Limits;
use super::tree::{self, NsContext, OwnedTree, Scratch, Tree};

mod header;

use header::{check_declaration, parse_header};

/// How the parser expects the input to be framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// An XMPP stream: `<stream:stream>` header, then stanzas (and other depth-1 elements such
    /// as `<stream:features>`), then `</stream:stream>`.
    Stream,
    /// A sequence of top-level elements, each a stanza (for `check-stanza` and fuzzing).
    Fragments,
    /// Decide at the first element: a root named `stream` (any prefix, so a wrong stream
    /// namespace is reported as such) means [`Framing::Stream`], anything else
    /// [`Framing::Fragments`].
    Auto,
}

/// Incremental parser over a byte stream; see the module documentation.
#[derive(Debug)]
pub struct StreamParser {
    buf: Vec<u8>,
    /// Storage for the borrowed API's stanzas, given back when they are dropped.
    pool: Pool,
    /// The owned API's tree under construction (its working vectors are reused).
    owned: OwnedTree,
    /// Everything else: kept apart from `buf` so a stanza can borrow the buffer while the
    /// framer and the rest of the state move on ([`StreamParser::next_event_ref`]).
    core: Core,
}

#[derive(Debug)]
struct Core {
    limits: Limits,
    framer: Framer,
    /// Bindings the stream header put in scope for stanzas.
    ctx: NsContext,
    /// `Close` owed after a self-closing header.
    pending_close: bool,
    /// The first error; every later call repeats it.
    error: Option<WireError>,
    fed: u64,
    finished: bool,
    /// Offset of the last element delivered.
    last_start: u64,
    /// The tree builder's working vectors, reused from stanza to stanza.
    scratch: Scratch,
    /// Offset of the last element the fast path declined (it is not tried there again).
    declined: u64,
    /// Whether the one-pass tokenizer may take elements ([`StreamParser::without_fast_path`]).
    fast_path: bool,
}

/// What comes next, found by [`Core::advance`].
enum Next {
    /// The header or the close.
    Event(StreamEvent),
    /// The framer delimited an element at `buf[start..end]` (it was split across feeds, or the
    /// fast path declined it, or it is the first one).
    Element { start: usize, end: usize },
    /// An element starts at `buf[start]` (offset `at`) between elements: the fast path may
    /// take it whole.
    Fast { start: usize, at: u64 },
}

impl StreamParser {
    /// A parser for the given framing and limits.
    pub fn new(framing: Framing, limits: Limits) -> Self {
        let mode = match framing {
            Framing::Stream => Mode::Stream,
            Framing::Fragments => Mode::Fragments,
            Framing::Auto => Mode::Auto,
        };
        Self {
            buf: Vec::new(),
            pool: Pool::default(),
            owned: OwnedTree::default(),
            core: Core {
                limits,
                framer: Framer::new(mode),
                ctx: NsContext::default(),
                pending_close: false,
                error: None,
                fed: 0,
                finished: false,
                last_start: 0,
                scratch: Scratch::default(),
                declined: u64::MAX,
                fast_path: true,
            },
        }
    }

    /// The same parser with the one-pass tokenizer ([`tree`]'s fast path) turned off: every
    /// element goes through the framer and the quick-xml path. The events, errors and offsets
    /// must be the same either way; the fuzz targets (the `fuzzing` module) compare the two in
    /// release builds, where the debug-build cross-check is compiled out. Not a switch for
    /// users: it only makes parsing slower.
    #[doc(hidden)]
    pub fn without_fast_path(mut self) -> Self {
        self.core.fast_path = false;
        self
    }

    /// Appends input. Call [`StreamParser::next_event`] until it returns `Ok(None)` after each
    /// feed: `feed` only buffers (after dropping what earlier events consumed), so the bound on
    /// memory holds when events are drained between feeds. Input after an error or after
    /// [`StreamParser::finish`] is discarded.
    pub fn feed(&mut self, bytes: &[u8]) {
        if self.sticky_error().is_some() || self.core.finished {
            return;
        }
        let keep = self.core.framer.keep_from().min(self.buf.len());
        if keep > 0 {
            self.buf.drain(..keep);
            self.core.framer.shift(keep);
        }
        self.buf.extend_from_slice(bytes);
        self.core.fed = self.core.fed.saturating_add(bytes.len() as u64);
    }

    /// Bytes currently buffered (for checking the memory bound).
    pub fn buffered_len(&self) -> usize {
        self.buf.len()
    }

    /// Total bytes fed so far.
    pub fn bytes_fed(&self) -> u64 {
        self.core.fed
    }

    /// The offset (counted like [`StreamParser::bytes_fed`]) before which every byte is
    /// settled: it belongs to an event already returned, to the XML declaration or to
    /// whitespace between top-level elements, and none to a unit still being read. Right after
    /// [`StreamParser::next_event`] returned an event it is the offset just past that event's
    /// last byte, so a relay can pass each unit on as the exact bytes it received (the provider
    /// proxy of SPEC.md §15). Meaningless after an error.
    pub fn settled(&self) -> u64 {
        let keep = self.core.framer.keep_from().min(self.buf.len());
        self.core.framer.base().saturating_add(keep as u64)
    }

    /// The framing in effect (for [`Framing::Auto`], once the first element decided it).
    pub fn framing(&self) -> Framing {
        match self.core.framer.mode() {
            Mode::Stream => Framing::Stream,
            Mode::Fragments => Framing::Fragments,
            Mode::Auto => Framing::Auto,
        }
    }

    /// The next event, `Ok(None)` if more input is needed (or, after `finish`, at the clean
    /// end). The first error is sticky: every later call returns it again.
    pub fn next_event(&mut self) -> Result<Option<StreamEvent>, WireError> {
        if let Some(e) = self.sticky_error() {
            return Err(e);
        }
        if self.core.pending_close {
            self.core.pending_close = false;
            return Ok(Some(StreamEvent::Close));
        }
        loop {
            match self.core.advance(&self.buf) {
                Ok(None) => return Ok(None),
                Ok(Some(Next::Event(event))) => return Ok(Some(event)),
                Ok(Some(Next::Fast { start, at })) => {
                    if self.core.fast(&self.buf, start, at, &mut self.owned) {
                        return Ok(Some(StreamEvent::Stanza(self.owned.take_root())));
                    }
                }
                Ok(Some(Next::Element { start, end })) => {
                    return match self.core.element(&self.buf, start, end, &mut self.owned) {
                        Ok(()) => Ok(Some(StreamEvent::Stanza(self.owned.take_root()))),
                        Err(e) => Err(self.fail(e)),
                    };
                }
                Err(e) => return Err(self.fail(e)),
            }
        }
    }

    fn fail(&mut self, e: WireError) -> WireError {
        self.core.error = Some(e.clone());
        // Nothing more will be parsed: release the buffer.
        self.buf = Vec::new();
        e
    }

    /// [`StreamParser::next_event`] without copying: the stanza's strings borrow from the
    /// parser's buffer wherever the input needs no transformation ([`StanzaRef`], whose
    /// storage is reused for the next stanza once it is dropped). Same
    /// framing, checks, errors and offsets, for every chunking of the input; the event's
    /// [`StreamEventRef::to_owned`] equals what `next_event` returns. Elements the one-pass
    /// tokenizer declines (references, CDATA, CR, unusual syntax, errors) are built by the
    /// exact path with owned strings. After an error, the buffer is released at the next call.
    pub fn next_event_ref(&mut self) -> Result<Option<StreamEventRef<'_>>, WireError> {
        if let Some(e) = self.sticky_error() {
            return Err(e);
        }
        if self.core.pending_close {
            self.core.pending_close = false;
            return Ok(Some(StreamEventRef::Close));
        }
        let Self {
            buf, core, pool, ..
        } = self;
        let buf: &[u8] = buf;
        let pool: &Pool = pool;
        loop {
            match core.advance(buf) {
                Ok(None) => return Ok(None),
                Ok(Some(Next::Event(event))) => return Ok(Some(event.into())),
                Ok(Some(Next::Fast { start, at })) => {
                    let mut arena = pool.take();
                    if core.fast(buf, start, at, &mut arena) {
                        return Ok(Some(StreamEventRef::Stanza(StanzaRef::new(arena, pool))));
                    }
                    pool.give(arena);
                }
                Ok(Some(Next::Element { start, end })) => {
                    let mut arena = pool.take();
                    return match core.element(buf, start, end, &mut arena) {
                        Ok(()) => Ok(Some(StreamEventRef::Stanza(StanzaRef::new(arena, pool)))),
                        Err(e) => {
                            pool.give(arena);
                            core.error = Some(e.clone());
                            Err(e)
                        }
                    };
                }
                Err(e) => {
                    // The buffer is borrowed here; `sticky_error` releases it next time.
                    core.error = Some(e.clone());
                    return Err(e);
                }
            }
        }
    }

    /// Declares end of input. Events not yet taken with `next_event` are still validated
    /// (and discarded); then it is an error to end inside a tag, an unfinished stanza or the
    /// stream header. Ending a stream after complete stanzas without `</stream:stream>` is not.
    pub fn finish(&mut self) -> Result<(), WireError> {
        self.core.finished = true;
        while self.next_event()?.is_some() {}
        Ok(())
    }

    /// [`StreamParser::finish`] through the borrowing path.
    fn finish_ref(&mut self) -> Result<(), WireError> {
        self.core.finished = true;
        while self.next_event_ref()?.is_some() {}
        Ok(())
    }

    /// The first error, if there was one; the buffer and the trees' storage are released then.
    fn sticky_error(&mut self) -> Option<WireError> {
        let e = self.core.error.clone()?;
        if self.buf.capacity() > 0 {
            self.buf = Vec::new();
            self.pool = Pool::default();
            self.owned = OwnedTree::default();
        }
        Some(e)
    }
}

impl Core {
    /// Runs the framer up to the next event or fast-path candidate. Never changes the buffer,
    /// so a stanza may keep borrowing it.
    fn advance(&mut self, buf: &[u8]) -> Result<Option<Next>, WireError> {
        loop {
            if let Some(start) = self
                .framer
                .element_ahead(buf, &self.limits)
                .filter(|_| self.fast_path)
            {
                let at = self.framer.base().saturating_add(start as u64);
                if at != self.declined {
                    return Ok(Some(Next::Fast { start, at }));
                }
            }
            let Some(frame) = self.framer.next_frame(buf, &self.limits)? else {
                if self.finished {
                    self.framer.at_eof(buf)?;
                }
                return Ok(None);
            };
            if let Some(next) = self.handle(buf, frame)? {
                return Ok(Some(next));
            }
        }
    }

    /// The fast path: between elements, a complete element in the common stanza shape is
    /// parsed in one pass and skipped by the framer. Anything else (an incomplete element, an
    /// error, an unusual construct) is left to the framer and the exact path, which then
    /// report exactly what they would have; each element start is tried once, so feeding an
    /// element in small pieces costs no rescans.
    /// Builds into `tree`; true if the element was taken.
    fn fast<'b, E: Tree<'b>>(
        &mut self,
        buf: &'b [u8],
        start: usize,
        at: u64,
        tree: &mut E,
    ) -> bool {
        let bytes = buf.get(start..).unwrap_or_default();
        let Some(len) =
            tree::parse_leading(bytes, at, &self.ctx, &self.limits, &mut self.scratch, tree)
        else {
            self.declined = at;
            return false;
        };
        #[cfg(debug_assertions)]
        {
            // The framer must have found the same element, and the exact path the same tree.
            let mut framer = self.framer.clone();
            let frame = framer.next_frame(buf, &self.limits);
            let expected = Frame::Element {
                start,
                end: start + len,
            };
            debug_assert_eq!(frame, Ok(Some(expected)));
            let whole = bytes.get(..len).unwrap_or_default();
            let owned = tree.to_element();
            tree::check_fast_path(whole, at, &self.ctx, &self.limits, &owned);
        }
        self.framer.skip_element(start, start + len);
        self.last_start = at;
        true
    }

    /// The element the framer delimited at `buf[start..end]`, built into `tree`.
    fn element<'b, E: Tree<'b>>(
        &mut self,
        buf: &'b [u8],
        start: usize,
        end: usize,
        tree: &mut E,
    ) -> Result<(), WireError> {
        let at = self.framer.base().saturating_add(start as u64);
        let bytes = buf.get(start..end).unwrap_or_default();
        let (ctx, limits) = (&self.ctx, &self.limits);
        if self.fast_path {
            tree::parse_element(bytes, at, ctx, limits, &mut self.scratch, tree)?;
        } else {
            tree::parse_element_exact(bytes, at, ctx, limits, &mut self.scratch, tree)?;
        }
        self.last_start = at;
        Ok(())
    }

    fn handle(&mut self, buf: &[u8], frame: Frame) -> Result<Option<Next>, WireError> {
        let base = self.framer.base();
        let at = |i: usize| base.saturating_add(i as u64);
        match frame {
            Frame::Decl { start, end } => {
                let bytes = buf.get(start..end).unwrap_or_default();
                check_declaration(bytes, at(start))?;
                Ok(None)
            }
            Frame::Header {
                start,
                end,
                self_closing,
            } => {
                let bytes = buf.get(start..end).unwrap_or_default();
                let (header, ctx) = parse_header(bytes, at(start), &self.limits)?;
                self.ctx = ctx;
                self.pending_close = self_closing;
                Ok(Some(Next::Event(StreamEvent::Header(header))))
            }
            Frame::Element { start, end } => Ok(Some(Next::Element { start, end })),
            Frame::Close => Ok(Some(Next::Event(StreamEvent::Close))),
        }
    }
}

/// Parses a whole input at once, framing auto-detected ([`Framing::Auto`]).
pub fn parse_all(bytes: &[u8], limits: &Limits) -> Result<Vec<StreamEvent>, WireError> {
    let mut parser = StreamParser::new(Framing::Auto, limits.clone());
    parser.feed(bytes);
    let mut events = Vec::new();
    while let Some(event) = parser.next_event()? {
        events.push(event);
    }
    parser.finish()?;
    Ok(events)
}

/// Parses exactly one element (fragment framing): for patterns, fixtures and tests.
pub fn parse_fragment(bytes: &[u8], limits: &Limits) -> Result<Element, WireError> {
    match lone_fragment(bytes, limits) {
        Some(element) => {
            // The parser must agree, tree for tree (it takes the same fast path, checked
            // there against the framer and the exact path).
            #[cfg(debug_assertions)]
            debug_assert_eq!(
                parse_fragment_buffered(bytes, limits).as_ref(),
                Ok(&element),
                "lone fragment {bytes:?}"
            );
            Ok(element)
        }
        None => parse_fragment_buffered(bytes, limits),
    }
}

/// The usual fragment: one element from the first byte, with at most whitespace after it,
/// taken by the fast path straight from `bytes`. The parser would do exactly this
/// ([`Framer`]'s `element_ahead` offers a fragment's first element on the same conditions:
/// `<` and a name byte at offset 0 within the header bound), then find only whitespace
/// before the end; this skips copying the input into its buffer. `None` for anything else,
/// and for every error, which [`parse_fragment_buffered`] then reports.
fn lone_fragment(bytes: &[u8], limits: &Limits) -> Option<Element> {
    let opens = bytes.first() == Some(&b'<')
        && bytes
            .get(1)
            .is_some_and(|&c| name_byte_class(c) == Some(true));
    if !opens || limits.max_header_bytes < 2 {
        return None;
    }
    let ctx = NsContext::default();
    let mut tree = OwnedTree::default();
    let len = tree::parse_leading(bytes, 0, &ctx, limits, &mut Scratch::default(), &mut tree)?;
    if !bytes.get(len..)?.iter().all(|&c| is_xml_space(c)) {
        return None;
    }
    Some(tree.take_root())
}

/// [`parse_fragment`] through a [`StreamParser`].
fn parse_fragment_buffered(bytes: &[u8], limits: &Limits) -> Result<Element, WireError> {
    let mut parser = StreamParser::new(Framing::Fragments, limits.clone());
    parser.feed(bytes);
    let mut found = None;
    while let Some(event) = parser.next_event()? {
        if let StreamEvent::Stanza(e) = event {
            if found.is_some() {
                let at = parser.core.last_start;
                return Err(WireError::new(
                    at,
                    Violation::ExpectedOneElement { found: 2 },
                ));
            }
            found = Some(e);
        }
    }
    parser.finish()?;
    let fed = parser.core.fed;
    found.ok_or_else(|| WireError::new(fed, Violation::ExpectedOneElement { found: 0 }))
}

/// Validates a whole document (auto-detected framing) and counts its stanzas (every
/// top-level element; the stream header is not counted). Ending inside a stanza is an error;
/// ending a stream without `</stream:stream>` after complete stanzas is not.
pub fn check_document(bytes: &[u8], limits: &Limits) -> Result<usize, WireError> {
    let mut parser = StreamParser::new(Framing::Auto, limits.clone());
    parser.feed(bytes);
    let mut stanzas = 0usize;
    // Only counted: the borrowing path, so no string is copied.
    while let Some(event) = parser.next_event_ref()? {
        if matches!(event, StreamEventRef::Stanza(_)) {
            stanzas += 1;
        }
    }
    parser.finish_ref()?;
    Ok(stanzas)
}
