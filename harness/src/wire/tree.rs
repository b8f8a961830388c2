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

use super::borrowed::ElementRef;
use super::chars::{find_forbidden_char, is_ncname, is_xml_char, split_qname};
use super::element::{Element, Node};
use super::error::{Violation, WireError};
use super::limits::Limits;
use super::ns;

mod fast;

#[cfg(debug_assertions)]
pub(crate) use fast::check_fast_path;
pub(crate) use fast::parse_leading;

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

/// What the builder makes: the owned [`Element`] or the borrowing [`ElementRef`]. The checks
/// and the tokenizers are the same for both; only the way strings are materialised differs.
/// `Str` is the field string type; `borrow` receives slices of the element's input.
pub(crate) trait Tree<'a>: Sized {
    type Str: AsRef<str>;
    /// A string that is a slice of the input.
    fn borrow(s: &'a str) -> Self::Str;
    /// A string that is not (a temporary: normalised text, a resolved reference).
    fn copy(s: &str) -> Self::Str;
    fn from_cow(s: Cow<'a, str>) -> Self::Str;
    fn append(acc: &mut Self::Str, s: &str);
    fn build(name: Self::Str, ns: Self::Str, attrs: Vec<(Self::Str, Self::Str)>) -> Self;
    fn add_element(&mut self, child: Self);
    fn add_text(&mut self, text: Self::Str);
    /// The open-element stack kept in `scratch`, empty.
    fn take_stack(scratch: &mut Scratch) -> Vec<Self>;
    fn give_stack(scratch: &mut Scratch, stack: Vec<Self>);
    /// The tree the exact (quick-xml) path built, which is always owned.
    fn from_element(e: Element) -> Self;
    /// The owned tree (debug builds check the fast path against the exact one).
    #[cfg(debug_assertions)]
    fn to_element(&self) -> Element;
}

impl<'a> Tree<'a> for Element {
    type Str = String;

    #[inline]
    fn borrow(s: &'a str) -> String {
        s.to_owned()
    }

    #[inline]
    fn copy(s: &str) -> String {
        s.to_owned()
    }

    #[inline]
    fn from_cow(s: Cow<'a, str>) -> String {
        s.into_owned()
    }

    #[inline]
    fn append(acc: &mut String, s: &str) {
        acc.push_str(s);
    }

    #[inline]
    fn build(name: String, ns: String, attrs: Vec<(String, String)>) -> Self {
        Element {
            name,
            ns,
            attrs,
            children: Vec::new(),
        }
    }

    #[inline]
    fn add_element(&mut self, child: Self) {
        self.children.push(Node::Element(child));
    }

    #[inline]
    fn add_text(&mut self, text: String) {
        self.children.push(Node::Text(text));
    }

    fn take_stack(scratch: &mut Scratch) -> Vec<Self> {
        let mut stack = std::mem::take(&mut scratch.stack);
        stack.clear();
        stack
    }

    fn give_stack(scratch: &mut Scratch, mut stack: Vec<Self>) {
        stack.clear();
        scratch.stack = stack;
    }

    fn from_element(e: Element) -> Self {
        e
    }

    #[cfg(debug_assertions)]
    fn to_element(&self) -> Element {
        self.clone()
    }
}

/// The builder's working vectors, kept between elements so each stanza does not allocate them
/// again (they are always left empty).
#[derive(Debug, Default)]
pub(crate) struct Scratch {
    bindings: Vec<(Cow<'static, str>, Cow<'static, str>)>,
    marks: Vec<usize>,
    stack: Vec<Element>,
    /// The open-element stack of the borrowing builder.
    pub(crate) stack_ref: Vec<ElementRef<'static>>,
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

/// Parses the complete bytes of one top-level element into a tree.
pub(crate) fn parse_element<'a, E: Tree<'a>>(
    bytes: &'a [u8],
    base: u64,
    ctx: &NsContext,
    limits: &Limits,
    scratch: &mut Scratch,
) -> Result<E, WireError> {
    if let Some((element, len)) = parse_leading::<E>(bytes, base, ctx, limits, scratch)
        && len == bytes.len()
    {
        #[cfg(debug_assertions)]
        check_fast_path(bytes, base, ctx, limits, &element.to_element());
        return Ok(element);
    }
    let src = validate_text(bytes, base)?;
    let mut slow: Builder<'_, '_> = Builder::new(src, base, limits, ctx, scratch);
    let result = slow.run();
    slow.give_back(scratch);
    result.map(E::from_element)
}

/// Parses a lone start tag (the stream header) with no inherited bindings.
pub(crate) fn parse_start_tag(
    bytes: &[u8],
    base: u64,
    limits: &Limits,
) -> Result<ParsedStart, WireError> {
    let src = validate_text(bytes, base)?;
    let empty = NsContext::default();
    let mut b: Builder<'_, '_> = Builder::new(src, base, limits, &empty, &mut Scratch::default());
    let mut reader = Reader::from_str(src);
    reader.config_mut().check_end_names = false;
    match reader.read_event() {
        Ok(Event::Start(e) | Event::Empty(e)) => {
            let element = b.start(&e, 0)?;
            let declared = b
                .bindings
                .iter()
                .map(|(p, u)| (p.to_string(), u.to_string()))
                .collect();
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

struct Builder<'a, 'l, E: Tree<'a> = Element> {
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
    /// Open elements, innermost last.
    stack: Vec<E>,
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
    ) -> Self {
        let mut bindings = recycle(std::mem::take(&mut scratch.bindings));
        bindings.extend(ctx.bindings.iter().map(|(p, u)| (intern(p), intern(u))));
        let mut marks = std::mem::take(&mut scratch.marks);
        marks.clear();
        let stack = E::take_stack(scratch);
        Self {
            src,
            bytes: src.as_bytes(),
            base,
            limits,
            bindings,
            marks,
            stack,
            text: None,
        }
    }

    /// Returns the working vectors to `scratch`, emptied.
    fn give_back(self, scratch: &mut Scratch) {
        scratch.bindings = recycle(self.bindings);
        scratch.marks = self.marks;
        scratch.marks.clear();
        E::give_stack(scratch, self.stack);
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

impl Builder<'_, '_, Element> {
    fn run(&mut self) -> Result<Element, WireError> {
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
                    let el = self.start(&e, at)?;
                    self.stack.push(el);
                }
                Event::Empty(e) => {
                    self.flush_text();
                    let el = self.start(&e, at)?;
                    self.stack.push(el);
                    if let Some(done) = self.end() {
                        return Ok(done);
                    }
                }
                Event::End(_) => {
                    self.flush_text();
                    if let Some(done) = self.end() {
                        return Ok(done);
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
                    let name = self
                        .stack
                        .last()
                        .map(|e| e.name.clone())
                        .unwrap_or_default();
                    return Err(self.err(self.src.len(), Violation::UnclosedTag { name }));
                }
            }
        }
    }

    /// Resolves a start tag at `at` (its `<`) into an element and pushes its bindings.
    fn start(&mut self, e: &BytesStart<'_>, at: usize) -> Result<Element, WireError> {
        let mut attributes = e.attributes();
        attributes.with_checks(false);
        self.start_with(e.name().0, at, attributes, false, str::to_owned)
    }
}

impl<'a, E: Tree<'a>> Builder<'a, '_, E> {
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
            && let Some(parent) = self.stack.last_mut()
        {
            parent.add_text(text);
        }
    }

    /// Closes the innermost element; returns the root when it closes.
    fn end(&mut self) -> Option<E> {
        if let Some(mark) = self.marks.pop() {
            self.bindings.truncate(mark);
        }
        let done = self.stack.pop()?;
        match self.stack.last_mut() {
            Some(parent) => {
                parent.add_element(done);
                None
            }
            None => Some(done),
        }
    }

    /// [`Builder::start`] over any tokenizer: the qualified name and the attributes as written.
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
    ) -> Result<E, WireError> {
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
        let mut attrs: Vec<(E::Str, E::Str)> = Vec::new();
        let mut default_declared = false;
        // Prefixed (non-declaration) attributes, resolved once all declarations are known.
        let mut prefixed: Vec<(&str, &str, &str, usize)> = Vec::new();
        let mut decls = 0usize;
        for (count, attr) in attributes.enumerate() {
            let attr = attr.map_err(|err| self.attr_error(&err, name_at))?;
            let key: &str = attr.key.0;
            let key_at = self.offset_of(key, name_at);
            let declared = if key == "xmlns" {
                Some("")
            } else {
                key.strip_prefix("xmlns:")
            };
            if declared.is_some() {
                decls += 1;
                if decls > limits.max_namespace_decls {
                    let limit = limits.max_namespace_decls;
                    return Err(self.err(key_at, Violation::TooManyNamespaceDecls { limit }));
                }
            }
            if count >= limits.max_attributes {
                let limit = limits.max_attributes;
                return Err(self.err(key_at, Violation::TooManyAttributes { limit }));
            }
            // Every attribute but the default declaration lands in `attrs`, so that is where
            // literal duplicates show (at most `max_attributes` comparisons).
            let duplicate = if key == "xmlns" {
                std::mem::replace(&mut default_declared, true)
            } else {
                attrs.iter().any(|(n, _)| n.as_ref() == key)
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
                    attrs.push((lift(key), E::from_cow(value.clone())));
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
            attrs.push((lift(key), value));
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
        Ok(E::build(lift(local), E::from_cow(ns), attrs))
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

/// Namespaces in XML 1.0 §3 constraints on one declaration `key="value"`.
fn check_declaration(key: &str, prefix: &str, value: &str) -> Result<(), Violation> {
    let bad = |reason| Violation::BadNamespaceDeclaration {
        attribute: key.to_owned(),
        value: value.to_owned(),
        reason,
    };
    if !prefix.is_empty() && !is_ncname(prefix) {
        return Err(Violation::InvalidName {
            name: key.to_owned(),
        });
    }
    match prefix {
        "xmlns" => Err(bad("the xmlns prefix cannot be declared")),
        "xml" if value != ns::XML => Err(bad("the xml prefix cannot be rebound")),
        "xml" => Ok(()),
        _ if value == ns::XML => Err(bad("only the xml prefix may be bound to the XML namespace")),
        _ if value == ns::XMLNS => Err(bad("the xmlns namespace cannot be declared")),
        "" => Ok(()),
        _ if value.is_empty() => Err(bad("a prefix cannot be bound to the empty namespace name")),
        _ => Ok(()),
    }
}

/// Resolves `&name;` (name as written between `&` and `;`) to its character.
pub(crate) fn resolve_reference(name: &str) -> Result<char, Violation> {
    match name {
        "lt" => Ok('<'),
        "gt" => Ok('>'),
        "amp" => Ok('&'),
        "apos" => Ok('\''),
        "quot" => Ok('"'),
        _ => match name.strip_prefix('#') {
            Some(num) => parse_char_ref(num).ok_or_else(|| Violation::InvalidCharReference {
                reference: name.to_owned(),
            }),
            None if is_ncname(name) => Err(Violation::UndefinedEntity {
                name: name.to_owned(),
            }),
            None => Err(Violation::Xml(format!(
                "'&{name};' is not a valid reference"
            ))),
        },
    }
}

/// `#` already stripped: decimal digits, or `x` and hex digits; must name an XML `Char`.
fn parse_char_ref(num: &str) -> Option<char> {
    let (digits, radix) = match num.strip_prefix('x') {
        Some(hex) => (hex, 16),
        None => (num, 10),
    };
    if digits.is_empty() {
        return None;
    }
    let mut value: u32 = 0;
    for c in digits.chars() {
        let d = c.to_digit(radix)?;
        value = value.checked_mul(radix)?.checked_add(d)?;
    }
    char::from_u32(value).filter(|&c| is_xml_char(c))
}

/// Expands references and applies attribute-value normalization (literal TAB, LF, CR and
/// CR LF become one space each; characters from references are kept as they are). On error,
/// returns the byte index in `raw` and the violation.
fn unescape_attr(raw: &str) -> Result<Cow<'_, str>, (usize, Violation)> {
    let bytes = raw.as_bytes();
    if !bytes
        .iter()
        .any(|&b| matches!(b, b'&' | b'\t' | b'\n' | b'\r'))
    {
        return Ok(Cow::Borrowed(raw));
    }
    let mut out = String::with_capacity(raw.len());
    let mut i = 0;
    let mut run = 0;
    while let Some(&b) = bytes.get(i) {
        match b {
            b'&' => {
                out.push_str(raw.get(run..i).unwrap_or_default());
                let rest = raw.get(i + 1..).unwrap_or_default();
                let Some(semi) = rest.find(';') else {
                    return Err((
                        i,
                        Violation::Xml("'&' must start a reference ending with ';'".into()),
                    ));
                };
                let name = rest.get(..semi).unwrap_or_default();
                out.push(resolve_reference(name).map_err(|v| (i, v))?);
                i += semi + 2;
                run = i;
            }
            b'\t' | b'\n' | b'\r' => {
                out.push_str(raw.get(run..i).unwrap_or_default());
                out.push(' ');
                i += if b == b'\r' && bytes.get(i + 1) == Some(&b'\n') {
                    2
                } else {
                    1
                };
                run = i;
            }
            _ => i += 1,
        }
    }
    out.push_str(raw.get(run..).unwrap_or_default());
    Ok(Cow::Owned(out))
}
