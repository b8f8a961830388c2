//! Building one element tree from the complete bytes of a top-level element, with quick-xml.
//!
//! The framer has already delimited the element, matched its tags, bounded its depth and size,
//! and refused comments, PIs and DTDs. Here the bytes are checked for UTF-8 and XML characters,
//! tokenized by quick-xml, and every token is checked for what quick-xml does not enforce:
//! names, references (only the five predefined entities; character references must name XML
//! characters), attribute syntax and duplicates (also after namespace resolution), namespace
//! declarations and prefixes, and the per-element and per-text limits. The tree is built
//! iteratively, so no recursion depends on the input.
//!
//! Common stanzas take the one-pass tokenizer in [`fast`] instead (it also delimits the element
//! itself when the parser offers it the rest of the buffer); it shares the checks above and
//! hands anything unusual, and every error, back to this exact path.

use std::borrow::Cow;

use quick_xml::Reader;
use quick_xml::events::attributes::{AttrError, Attribute};
use quick_xml::events::{BytesStart, Event};

use super::chars::{find_forbidden_char, is_xml_space, split_qname};
use super::element::Element;
use super::error::{Violation, WireError};
use super::limits::Limits;
use super::ns;

mod fast;
mod refs;
mod sink;

#[cfg(debug_assertions)]
pub(crate) use fast::check_fast_path;
pub(crate) use fast::parse_leading;
pub(crate) use refs::resolve_reference;
use refs::{check_declaration, unescape_attr};
pub(crate) use sink::{OwnedTree, Tree};

/// Namespace bindings inherited from the stream header: `(prefix, uri)`, `""` for the default.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct NsContext {
    pub(crate) bindings: Vec<(String, String)>,
}

/// A start tag as the builder resolved it, plus the bindings it declared.
pub(crate) struct ParsedStart {
    pub(crate) element: Element,
    pub(crate) declared: Vec<(String, String)>,
}

/// Checks that `bytes` are UTF-8 made of XML characters; returns them as a string.
pub(crate) fn validate_text(bytes: &[u8], base: u64) -> Result<&str, WireError> {
    let at = |i: usize| base.saturating_add(i as u64);
    // The character scan works on raw bytes; a UTF-8 error before the first bad character
    // wins so the earliest violation is the one reported.
    let Some((i, codepoint)) = find_forbidden_char(bytes) else {
        return std::str::from_utf8(bytes)
            .map_err(|e| WireError::new(at(e.valid_up_to()), Violation::InvalidUtf8));
    };
    let prefix = bytes.get(..i).unwrap_or_default();
    if let Err(e) = std::str::from_utf8(prefix) {
        return Err(WireError::new(at(e.valid_up_to()), Violation::InvalidUtf8));
    }
    Err(WireError::new(at(i), Violation::InvalidChar { codepoint }))
}

/// The builder's working vectors, kept between elements so each stanza does not allocate them
/// again (they are always left empty).
#[derive(Debug, Default)]
pub(crate) struct Scratch {
    bindings: Vec<(Cow<'static, str>, Cow<'static, str>)>,
    marks: Vec<usize>,
    /// The fast path's open tag names.
    open: Vec<(usize, usize)>,
    /// Length of the last element the fast path built.
    last_len: usize,
}

/// An empty vector reusing `v`'s allocation for an element type of another lifetime (the
/// in-place `collect` of the standard library keeps the buffer when the layouts match).
pub(crate) fn recycle<A, B>(mut v: Vec<A>) -> Vec<B> {
    v.clear();
    // `filter_map` (not `filter`) because the item type changes; no item ever reaches it.
    #[allow(clippy::unnecessary_filter_map)]
    v.into_iter().filter_map(|_| None).collect()
}

/// Parses the complete bytes of one top-level element into `tree` (reset first).
pub(crate) fn parse_element<'a, E: Tree<'a>>(
    bytes: &'a [u8],
    base: u64,
    ctx: &NsContext,
    limits: &Limits,
    scratch: &mut Scratch,
    tree: &mut E,
) -> Result<(), WireError> {
    if parse_leading(bytes, base, ctx, limits, scratch, tree) == Some(bytes.len()) {
        #[cfg(debug_assertions)]
        check_fast_path(bytes, base, ctx, limits, &tree.to_element());
        return Ok(());
    }
    parse_element_exact(bytes, base, ctx, limits, scratch, tree)
}

/// [`parse_element`] without trying the fast path: quick-xml and the checks around it only.
pub(crate) fn parse_element_exact<'a, E: Tree<'a>>(
    bytes: &'a [u8],
    base: u64,
    ctx: &NsContext,
    limits: &Limits,
    scratch: &mut Scratch,
    tree: &mut E,
) -> Result<(), WireError> {
    let src = validate_text(bytes, base)?;
    let mut slow = Builder::new(src, base, limits, ctx, scratch, tree);
    let result = slow.run();
    slow.give_back(scratch);
    result
}

/// Parses a lone start tag (the stream header) with no inherited bindings.
pub(crate) fn parse_start_tag(
    bytes: &[u8],
    base: u64,
    limits: &Limits,
) -> Result<ParsedStart, WireError> {
    let src = validate_text(bytes, base)?;
    let empty = NsContext::default();
    let mut tree = OwnedTree::default();
    let mut scratch = Scratch::default();
    let mut b = Builder::new(src, base, limits, &empty, &mut scratch, &mut tree);
    let mut reader = Reader::from_str(src);
    reader.config_mut().check_end_names = false;
    match reader.read_event() {
        Ok(Event::Start(e) | Event::Empty(e)) => {
            b.start(&e, 0)?;
            let declared = b
                .bindings
                .iter()
                .map(|(p, u)| (p.to_string(), u.to_string()))
                .collect();
            drop(b);
            let element = tree.take_open();
            Ok(ParsedStart { element, declared })
        }
        Ok(_) => Err(WireError::new(
            base,
            Violation::Xml("expected a start tag".into()),
        )),
        Err(e) => Err(b.xml_error(&reader, &e)),
    }
}

/// Offset of `part` inside `whole`, if `part` is a sub-slice of it.
fn offset_in(whole: &[u8], part: &[u8]) -> Option<usize> {
    let start = (part.as_ptr() as usize).checked_sub(whole.as_ptr() as usize)?;
    (start.checked_add(part.len())? <= whole.len()).then_some(start)
}

/// A namespace binding inherited from the stream header, as a `'static` string when it is a
/// well-known one (so trees borrowing their namespaces need not borrow the context).
fn intern(s: &str) -> Cow<'static, str> {
    const KNOWN: [&str; 6] = [
        "",
        "stream",
        ns::JABBER_CLIENT,
        ns::JABBER_SERVER,
        ns::STREAMS,
        "jabber:server:dialback",
    ];
    match KNOWN.iter().find(|&&k| k == s) {
        Some(k) => Cow::Borrowed(k),
        None => Cow::Owned(s.to_owned()),
    }
}

struct Builder<'a, 'l, E: Tree<'a> = OwnedTree> {
    /// The element as a string (the quick-xml path), or empty (the fast path reads `bytes`).
    src: &'a str,
    /// The bytes tokens are taken from (`src`'s, or the unvalidated buffer for the fast path).
    bytes: &'a [u8],
    base: u64,
    limits: &'l Limits,
    /// In-scope bindings, innermost last; `""` is the default namespace.
    bindings: Vec<(Cow<'a, str>, Cow<'a, str>)>,
    /// `bindings.len()` before each open element's declarations.
    marks: Vec<usize>,
    /// The tree being built.
    tree: &'l mut E,
    /// Text of the innermost open element not yet attached.
    text: Option<E::Str>,
}

impl<'a, 'l, E: Tree<'a>> Builder<'a, 'l, E> {
    fn new(
        src: &'a str,
        base: u64,
        limits: &'l Limits,
        ctx: &NsContext,
        scratch: &mut Scratch,
        tree: &'l mut E,
    ) -> Self {
        let mut bindings = recycle(std::mem::take(&mut scratch.bindings));
        bindings.extend(ctx.bindings.iter().map(|(p, u)| (intern(p), intern(u))));
        let mut marks = std::mem::take(&mut scratch.marks);
        marks.clear();
        tree.reset();
        Self {
            src,
            bytes: src.as_bytes(),
            base,
            limits,
            bindings,
            marks,
            tree,
            text: None,
        }
    }

    /// Returns the working vectors to `scratch`, emptied.
    fn give_back(self, scratch: &mut Scratch) {
        scratch.bindings = recycle(self.bindings);
        scratch.marks = self.marks;
        scratch.marks.clear();
    }

    fn err(&self, at: usize, violation: Violation) -> WireError {
        WireError::new(self.base.saturating_add(at as u64), violation)
    }

    fn xml_error(&self, reader: &Reader<&[u8]>, e: &quick_xml::Error) -> WireError {
        WireError::new(
            self.base.saturating_add(reader.error_position()),
            Violation::Xml(e.to_string()),
        )
    }

    /// The `src` slice equal to `part` (borrowed for `'a`), or a copy if it is not from `src`.
    fn reborrow(&self, part: &str) -> Cow<'a, str> {
        let bytes = self.bytes;
        let same = offset_in(bytes, part.as_bytes())
            .and_then(|o| bytes.get(o..o + part.len()))
            .and_then(|b| std::str::from_utf8(b).ok());
        match same {
            Some(s) => Cow::Borrowed(s),
            None => Cow::Owned(part.to_owned()),
        }
    }

    fn offset_of(&self, part: &str, fallback: usize) -> usize {
        offset_in(self.bytes, part.as_bytes()).unwrap_or(fallback)
    }

    fn resolve(&self, prefix: Option<&str>) -> Option<&str> {
        match prefix {
            Some("xml") => Some(ns::XML),
            Some(p) => self
                .bindings
                .iter()
                .rev()
                .find(|(bp, _)| bp == p)
                .map(|(_, u)| u.as_ref()),
            None => Some(
                self.bindings
                    .iter()
                    .rev()
                    .find(|(bp, _)| bp.is_empty())
                    .map_or("", |(_, u)| u.as_ref()),
            ),
        }
    }

    /// [`Builder::resolve`] as a string borrowed for `'a` (or owned, like the binding).
    fn resolve_cow(&self, prefix: Option<&str>) -> Option<Cow<'a, str>> {
        match prefix {
            Some("xml") => Some(Cow::Borrowed(ns::XML)),
            Some(p) => self
                .bindings
                .iter()
                .rev()
                .find(|(bp, _)| bp == p)
                .map(|(_, u)| u.clone()),
            None => Some(
                self.bindings
                    .iter()
                    .rev()
                    .find(|(bp, _)| bp.is_empty())
                    .map_or(Cow::Borrowed(""), |(_, u)| u.clone()),
            ),
        }
    }
}

impl<'a, E: Tree<'a>> Builder<'a, '_, E> {
    /// The exact path: quick-xml over `src`.
    fn run(&mut self) -> Result<(), WireError> {
        let mut reader = Reader::from_str(self.src);
        // The framer has matched the end tags already.
        reader.config_mut().check_end_names = false;
        loop {
            let at = usize::try_from(reader.buffer_position()).unwrap_or(usize::MAX);
            let event = match reader.read_event() {
                Ok(ev) => ev,
                Err(e) => return Err(self.xml_error(&reader, &e)),
            };
            match event {
                Event::Start(e) => {
                    self.flush_text();
                    self.start(&e, at)?;
                }
                Event::Empty(e) => {
                    self.flush_text();
                    self.start(&e, at)?;
                    if self.end() {
                        return Ok(());
                    }
                }
                Event::End(_) => {
                    self.flush_text();
                    if self.end() {
                        return Ok(());
                    }
                }
                Event::Text(t) => {
                    let raw: &str = &t;
                    if raw.as_bytes().contains(&b'\r') {
                        let normalized = raw.replace("\r\n", "\n").replace('\r', "\n");
                        self.push_text(&normalized, at)?;
                    } else {
                        self.push_text(raw, at)?;
                    }
                }
                Event::CData(c) => {
                    let raw: &str = &c;
                    let normalized = raw.replace("\r\n", "\n").replace('\r', "\n");
                    self.push_text(&normalized, at)?;
                }
                Event::GeneralRef(r) => {
                    let c = resolve_reference(&r).map_err(|v| self.err(at, v))?;
                    let mut utf8 = [0u8; 4];
                    self.push_text(c.encode_utf8(&mut utf8), at)?;
                }
                Event::Comment(_) => return Err(self.err(at, Violation::CommentForbidden)),
                Event::DocType(_) => return Err(self.err(at, Violation::DoctypeForbidden)),
                Event::PI(p) => {
                    let target = p.target().to_owned();
                    return Err(self.err(at, Violation::ProcessingInstructionForbidden { target }));
                }
                Event::Decl(_) => return Err(self.err(at, Violation::XmlDeclarationNotAtStart)),
                Event::Eof => {
                    let name = self.tree.open_name();
                    return Err(self.err(self.src.len(), Violation::UnclosedTag { name }));
                }
            }
        }
    }

    /// Resolves a start tag at `at` (its `<`) into an element and pushes its bindings.
    fn start(&mut self, e: &BytesStart<'_>, at: usize) -> Result<(), WireError> {
        let mut attributes = e.attributes();
        attributes.with_checks(false);
        self.start_with(e.name().0, at, attributes, false, E::copy)
    }

    /// Checks the text limit before `add` more bytes of text.
    fn text_fits(&self, add: usize, at: usize) -> Result<(), WireError> {
        let have = self.text.as_ref().map_or(0, |t| t.as_ref().len());
        if have.saturating_add(add) > self.limits.max_text_bytes {
            let limit = self.limits.max_text_bytes;
            return Err(self.err(at, Violation::TextTooLong { limit }));
        }
        Ok(())
    }

    fn push_text(&mut self, s: &str, at: usize) -> Result<(), WireError> {
        self.text_fits(s.len(), at)?;
        match &mut self.text {
            Some(t) => E::append(t, s),
            None => self.text = Some(E::copy(s)),
        }
        Ok(())
    }

    /// [`Builder::push_text`] for a slice of the input (kept borrowed if it is all the text).
    fn push_text_borrowed(&mut self, s: &'a str, at: usize) -> Result<(), WireError> {
        self.text_fits(s.len(), at)?;
        match &mut self.text {
            Some(t) => E::append(t, s),
            None => self.text = Some(E::borrow(s)),
        }
        Ok(())
    }

    fn flush_text(&mut self) {
        if let Some(text) = self.text.take()
            && !text.as_ref().is_empty()
        {
            self.tree.text(text);
        }
    }

    /// Closes the innermost element; true when that was the root.
    fn end(&mut self) -> bool {
        if let Some(mark) = self.marks.pop() {
            self.bindings.truncate(mark);
        }
        self.tree.close()
    }

    /// [`Builder::start`] over any tokenizer: the qualified name and the attributes as written;
    /// opens the element in the tree.
    /// `plain_values` promises that no value holds a reference or a literal TAB, LF or CR (so
    /// none needs expanding or normalizing).
    /// `lift` makes a field string of a slice of `qname` or of an attribute as given.
    fn start_with<'x>(
        &mut self,
        qname: &'x str,
        at: usize,
        attributes: impl Iterator<Item = Result<Attribute<'x>, AttrError>>,
        plain_values: bool,
        lift: impl Fn(&'x str) -> E::Str,
    ) -> Result<(), WireError> {
        let name_at = at.saturating_add(1);
        let Some((prefix, local)) = split_qname(qname) else {
            return Err(self.err(
                name_at,
                Violation::InvalidName {
                    name: qname.to_owned(),
                },
            ));
        };
        let mark = self.bindings.len();
        let limits = self.limits;
        let mut default_declared = false;
        // Prefixed (non-declaration) attributes, resolved once all declarations are known.
        let mut prefixed: Vec<(&str, &str, &str, usize)> = Vec::new();
        // Namespace declarations and other attributes are counted apart (SPEC.md Appendix B):
        // a declaration counts against `max_namespace_decls` only.
        let mut decls = 0usize;
        let mut plain = 0usize;
        for attr in attributes {
            let attr = attr.map_err(|err| self.attr_error(&err, name_at))?;
            let key: &str = attr.key.0;
            let key_at = self.offset_of(key, name_at);
            // quick-xml reads `a='1'b='2'` as two attributes; XML 1.0 §3.1 requires whitespace
            // between them (the name before the first is followed by whitespace or `>` anyway).
            if let Some(i) = offset_in(self.bytes, key.as_bytes())
                && !i
                    .checked_sub(1)
                    .and_then(|before| self.bytes.get(before))
                    .is_some_and(|&b| is_xml_space(b))
            {
                return Err(self.err(
                    key_at,
                    Violation::NoSpaceBeforeAttribute {
                        name: key.to_owned(),
                    },
                ));
            }
            let declared = if key == "xmlns" {
                Some("")
            } else {
                key.strip_prefix("xmlns:")
            };
            // `xmlns:` with nothing after the colon is no name at all (Namespaces in XML 1.0
            // §3, PrefixedAttName); taken as a declaration it would rebind the default namespace.
            if declared == Some("") && key != "xmlns" {
                return Err(self.err(
                    key_at,
                    Violation::InvalidName {
                        name: key.to_owned(),
                    },
                ));
            }
            if declared.is_some() {
                decls += 1;
                if decls > limits.max_namespace_decls {
                    let limit = limits.max_namespace_decls;
                    return Err(self.err(key_at, Violation::TooManyNamespaceDecls { limit }));
                }
            } else {
                plain += 1;
                if plain > limits.max_attributes {
                    let limit = limits.max_attributes;
                    return Err(self.err(key_at, Violation::TooManyAttributes { limit }));
                }
            }
            // Every attribute but the default declaration lands in `attrs`, so that is where
            // literal duplicates show (at most `max_attributes + max_namespace_decls`
            // comparisons).
            let duplicate = if key == "xmlns" {
                std::mem::replace(&mut default_declared, true)
            } else {
                self.tree.has_attr(key)
            };
            if duplicate {
                return Err(self.err(
                    key_at,
                    Violation::DuplicateAttribute {
                        name: key.to_owned(),
                    },
                ));
            }
            let raw: &str = &attr.value;
            let value_at = self.offset_of(raw, key_at);
            if raw.len() > limits.max_attr_value_bytes {
                let limit = limits.max_attr_value_bytes;
                return Err(self.err(value_at, Violation::AttributeValueTooLong { limit }));
            }
            let value = if plain_values {
                Cow::Borrowed(raw)
            } else {
                unescape_attr(raw).map_err(|(i, v)| self.err(value_at.saturating_add(i), v))?
            };
            if let Some(decl_prefix) = declared {
                check_declaration(key, decl_prefix, &value).map_err(|v| self.err(key_at, v))?;
                let value = match value {
                    Cow::Borrowed(s) => self.reborrow(s),
                    Cow::Owned(s) => Cow::Owned(s),
                };
                let prefix_cow = self.reborrow(decl_prefix);
                if !decl_prefix.is_empty() {
                    self.tree.push_attr(lift(key), E::from_cow(value.clone()));
                }
                self.bindings.push((prefix_cow, value));
                continue;
            }
            match split_qname(key) {
                None => {
                    return Err(self.err(
                        key_at,
                        Violation::InvalidName {
                            name: key.to_owned(),
                        },
                    ));
                }
                Some((Some(p), l)) => prefixed.push((p, l, key, key_at)),
                Some((None, _)) => {}
            }
            let unescaped = match value {
                Cow::Owned(s) => Some(s),
                Cow::Borrowed(_) => None,
            };
            let value = match (unescaped, attr.value) {
                (Some(s), _) | (None, Cow::Owned(s)) => E::from_cow(Cow::Owned(s)),
                (None, Cow::Borrowed(s)) => lift(s),
            };
            self.tree.push_attr(lift(key), value);
        }
        // On error the builder is dropped, so bindings need no unwinding.
        let Some(ns) = self.resolve_cow(prefix) else {
            let prefix = prefix.unwrap_or_default().to_owned();
            return Err(self.err(name_at, Violation::UndeclaredPrefix { prefix }));
        };
        let mut resolved: Vec<(&str, &str)> = Vec::with_capacity(prefixed.len());
        for &(p, l, key, key_at) in &prefixed {
            let Some(uri) = self.resolve(Some(p)) else {
                return Err(self.err(
                    key_at,
                    Violation::UndeclaredPrefix {
                        prefix: p.to_owned(),
                    },
                ));
            };
            if resolved.iter().any(|&(u, rl)| u == uri && rl == l) {
                return Err(self.err(
                    key_at,
                    Violation::DuplicateAttribute {
                        name: key.to_owned(),
                    },
                ));
            }
            resolved.push((uri, l));
        }
        drop(resolved);
        self.marks.push(mark);
        self.tree.open(lift(local), E::from_cow(ns));
        Ok(())
    }

    fn attr_error(&self, err: &AttrError, name_at: usize) -> WireError {
        let rel = |p: usize| name_at.saturating_add(p);
        match *err {
            AttrError::UnquotedValue(p) => self.err(rel(p), Violation::UnquotedAttributeValue),
            AttrError::Duplicated(p, _) => self.err(
                rel(p),
                Violation::DuplicateAttribute {
                    name: String::new(),
                },
            ),
            AttrError::ExpectedEq(p)
            | AttrError::ExpectedValue(p)
            | AttrError::ExpectedQuote(p, _) => self.err(rel(p), Violation::Xml(err.to_string())),
        }
    }
}
