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

/// The builder's working vectors, kept between elements so each stanza does not allocate them
/// again (they are always left empty).
#[derive(Debug, Default)]
pub(crate) struct Scratch {
    bindings: Vec<(Cow<'static, str>, Cow<'static, str>)>,
    marks: Vec<usize>,
    stack: Vec<Element>,
    /// The fast path's open tag names.
    open: Vec<(usize, usize)>,
    /// Length of the last element the fast path built.
    last_len: usize,
}

/// An empty vector reusing `v`'s allocation for an element type of another lifetime (the
/// in-place `collect` of the standard library keeps the buffer when the layouts match).
fn recycle<'x, 'y>(mut v: Vec<(Cow<'x, str>, Cow<'x, str>)>) -> Vec<(Cow<'y, str>, Cow<'y, str>)> {
    v.clear();
    // `filter_map` (not `filter`) because the item type changes; no item ever reaches it.
    #[allow(clippy::unnecessary_filter_map)]
    v.into_iter().filter_map(|_| None).collect()
}

/// Parses the complete bytes of one top-level element into a tree.
pub(crate) fn parse_element(
    bytes: &[u8],
    base: u64,
    ctx: &NsContext,
    limits: &Limits,
    scratch: &mut Scratch,
) -> Result<Element, WireError> {
    if let Some((element, len)) = parse_leading(bytes, base, ctx, limits, scratch)
        && len == bytes.len()
    {
        #[cfg(debug_assertions)]
        check_fast_path(bytes, base, ctx, limits, &element);
        return Ok(element);
    }
    let src = validate_text(bytes, base)?;
    let mut slow = Builder::new(src, base, limits, ctx, scratch);
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
    let mut b = Builder::new(src, base, limits, &empty, &mut Scratch::default());
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

struct Builder<'a> {
    /// The element as a string (the quick-xml path), or empty (the fast path reads `bytes`).
    src: &'a str,
    /// The bytes tokens are taken from (`src`'s, or the unvalidated buffer for the fast path).
    bytes: &'a [u8],
    base: u64,
    limits: &'a Limits,
    /// In-scope bindings, innermost last; `""` is the default namespace.
    bindings: Vec<(Cow<'a, str>, Cow<'a, str>)>,
    /// `bindings.len()` before each open element's declarations.
    marks: Vec<usize>,
    /// Open elements, innermost last.
    stack: Vec<Element>,
    /// Text of the innermost open element not yet attached.
    text: String,
}

impl<'a> Builder<'a> {
    fn new(
        src: &'a str,
        base: u64,
        limits: &'a Limits,
        ctx: &'a NsContext,
        scratch: &mut Scratch,
    ) -> Self {
        let mut bindings = recycle(std::mem::take(&mut scratch.bindings));
        bindings.extend(
            ctx.bindings
                .iter()
                .map(|(p, u)| (Cow::Borrowed(p.as_str()), Cow::Borrowed(u.as_str()))),
        );
        let mut marks = std::mem::take(&mut scratch.marks);
        marks.clear();
        let mut stack = std::mem::take(&mut scratch.stack);
        stack.clear();
        Self {
            src,
            bytes: src.as_bytes(),
            base,
            limits,
            bindings,
            marks,
            stack,
            text: String::new(),
        }
    }

    /// Returns the working vectors to `scratch`, emptied.
    fn give_back(self, scratch: &mut Scratch) {
        scratch.bindings = recycle(self.bindings);
        scratch.marks = self.marks;
        scratch.marks.clear();
        scratch.stack = self.stack;
        scratch.stack.clear();
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

    fn push_text(&mut self, s: &str, at: usize) -> Result<(), WireError> {
        if self.text.len().saturating_add(s.len()) > self.limits.max_text_bytes {
            let limit = self.limits.max_text_bytes;
            return Err(self.err(at, Violation::TextTooLong { limit }));
        }
        self.text.push_str(s);
        Ok(())
    }

    fn flush_text(&mut self) {
        if !self.text.is_empty() {
            let text = std::mem::take(&mut self.text);
            if let Some(parent) = self.stack.last_mut() {
                parent.children.push(Node::Text(text));
            }
        }
    }

    /// Closes the innermost element; returns the root when it closes.
    fn end(&mut self) -> Option<Element> {
        if let Some(mark) = self.marks.pop() {
            self.bindings.truncate(mark);
        }
        let done = self.stack.pop()?;
        match self.stack.last_mut() {
            Some(parent) => {
                parent.children.push(Node::Element(done));
                None
            }
            None => Some(done),
        }
    }

    /// Resolves a start tag at `at` (its `<`) into an element and pushes its bindings.
    fn start(&mut self, e: &BytesStart<'_>, at: usize) -> Result<Element, WireError> {
        self.start_with(e.name().0, at, e.attributes().with_checks(false), false)
    }

    /// [`Builder::start`] over any tokenizer: the qualified name and the attributes as written.
    /// `plain_values` promises that no value holds a reference or a literal TAB, LF or CR (so
    /// none needs expanding or normalizing).
    fn start_with<'x>(
        &mut self,
        qname: &str,
        at: usize,
        attributes: impl Iterator<Item = Result<Attribute<'x>, AttrError>>,
        plain_values: bool,
    ) -> Result<Element, WireError> {
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
        let mut attrs: Vec<(String, String)> = Vec::new();
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
                attrs.iter().any(|(n, _)| n == key)
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
                    attrs.push((key.to_owned(), value.to_string()));
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
            attrs.push((key.to_owned(), value.into_owned()));
        }
        // On error the builder is dropped, so bindings need no unwinding.
        let Some(ns) = self.resolve(prefix) else {
            let prefix = prefix.unwrap_or_default().to_owned();
            return Err(self.err(name_at, Violation::UndeclaredPrefix { prefix }));
        };
        let ns = ns.to_owned();
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
        Ok(Element {
            name: local.to_owned(),
            ns,
            attrs,
            children: Vec::new(),
        })
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
