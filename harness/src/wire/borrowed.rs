//! The zero-copy tree: [`StanzaRef`] holds one top-level element in three flat vectors
//! (elements, attributes, text) whose strings are `Cow<'a, str>`, borrowed from the parser's
//! buffer wherever the input needs no transformation (no reference to resolve, no
//! attribute-value or line-end normalisation) and owned otherwise. [`ElementRef`] is a `Copy`
//! handle on one element of it. [`StreamParser::next_event_ref`](super::StreamParser::next_event_ref)
//! builds it through the same tokenizers and checks as the owned path; only the
//! materialisation of strings differs, so [`ElementRef::to_owned`] equals the [`Element`]
//! [`StreamParser::next_event`](super::StreamParser::next_event) gives for the same input.
//!
//! Allocation: the vectors come from a pool in the parser and go back to it (emptied, with
//! their capacity) when the [`StanzaRef`] is dropped, so in the steady state a stanza allocates
//! only the strings that had to be owned.

use std::borrow::Cow;
use std::fmt;
use std::sync::Mutex;

use super::element::{Element, Node};
use super::event::{StreamEvent, StreamHeader};
use super::tree::{Tree, recycle};

/// One element in the arena: strings, and ranges into the attribute and child vectors.
#[derive(Debug, Clone)]
struct ElementData<'a> {
    name: Cow<'a, str>,
    ns: Cow<'a, str>,
    attrs: (usize, usize),
    kids: (usize, usize),
}

/// A child in the arena: an index into the elements or the texts.
#[derive(Debug, Clone, Copy)]
enum Kid {
    Element(usize),
    Text(usize),
}

static NO_ELEMENT: ElementData<'static> = ElementData {
    name: Cow::Borrowed(""),
    ns: Cow::Borrowed(""),
    attrs: (0, 0),
    kids: (0, 0),
};
static NO_TEXT: Cow<'static, str> = Cow::Borrowed("");

/// The arena a stanza is built into: elements in document order of their start tags (the
/// root first), each element's attributes and children contiguous. The last four vectors are
/// the builder's working state.
#[derive(Debug, Clone, Default)]
pub(crate) struct Arena<'a> {
    elements: Vec<ElementData<'a>>,
    attrs: Vec<(Cow<'a, str>, Cow<'a, str>)>,
    texts: Vec<Cow<'a, str>>,
    kids: Vec<Kid>,
    /// Open elements, innermost last.
    open: Vec<usize>,
    /// Children of the open elements not yet placed in `kids`, innermost last.
    pending: Vec<Kid>,
    /// `pending.len()` when each open element was opened.
    marks: Vec<usize>,
    /// `attrs.len()` at the last open: the attributes pushed since belong to the next element.
    attr_mark: usize,
}

impl Arena<'_> {
    /// Empty, keeping the capacity, for another lifetime.
    fn recycle(self) -> Arena<'static> {
        let mut kids = self.kids;
        let mut open = self.open;
        let mut pending = self.pending;
        let mut marks = self.marks;
        kids.clear();
        open.clear();
        pending.clear();
        marks.clear();
        Arena {
            elements: recycle(self.elements),
            attrs: recycle(self.attrs),
            texts: recycle(self.texts),
            kids,
            open,
            pending,
            marks,
            attr_mark: 0,
        }
    }

    fn element(&self, index: usize) -> &ElementData<'_> {
        self.elements.get(index).unwrap_or(&NO_ELEMENT)
    }
}

/// The parser's pool of emptied arenas. One is enough: a [`StanzaRef`] borrows the parser, so
/// it is dropped (and its arena back here) before the next one is built.
#[derive(Default)]
pub(crate) struct Pool(Mutex<Arena<'static>>);

impl fmt::Debug for Pool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Pool")
    }
}

impl Pool {
    /// An empty arena, with the capacity of the last one given back.
    pub(crate) fn take(&self) -> Arena<'static> {
        self.0
            .lock()
            .map(|mut a| std::mem::take(&mut *a))
            .unwrap_or_default()
    }

    pub(crate) fn give(&self, arena: Arena<'_>) {
        if let Ok(mut slot) = self.0.lock() {
            *slot = arena.recycle();
        }
    }
}

impl<'a> Tree<'a> for Arena<'a> {
    type Str = Cow<'a, str>;

    #[inline]
    fn borrow(s: &'a str) -> Self::Str {
        Cow::Borrowed(s)
    }

    #[inline]
    fn copy(s: &str) -> Self::Str {
        Cow::Owned(s.to_owned())
    }

    #[inline]
    fn from_cow(s: Cow<'a, str>) -> Self::Str {
        s
    }

    #[inline]
    fn append(acc: &mut Self::Str, s: &str) {
        acc.to_mut().push_str(s);
    }

    fn reset(&mut self) {
        self.elements.clear();
        self.attrs.clear();
        self.texts.clear();
        self.kids.clear();
        self.open.clear();
        self.pending.clear();
        self.marks.clear();
        self.attr_mark = 0;
    }

    #[inline]
    fn push_attr(&mut self, name: Self::Str, value: Self::Str) {
        self.attrs.push((name, value));
    }

    #[inline]
    fn has_attr(&self, name: &str) -> bool {
        let pushed = self.attrs.get(self.attr_mark..).unwrap_or_default();
        pushed.iter().any(|(n, _)| n == name)
    }

    #[inline]
    fn open(&mut self, name: Self::Str, ns: Self::Str) {
        let index = self.elements.len();
        let end = self.attrs.len();
        self.elements.push(ElementData {
            name,
            ns,
            attrs: (self.attr_mark, end),
            kids: (0, 0),
        });
        self.attr_mark = end;
        if !self.open.is_empty() {
            self.pending.push(Kid::Element(index));
        }
        self.open.push(index);
        self.marks.push(self.pending.len());
    }

    #[inline]
    fn text(&mut self, text: Self::Str) {
        if !self.open.is_empty() {
            self.pending.push(Kid::Text(self.texts.len()));
            self.texts.push(text);
        }
    }

    #[inline]
    fn close(&mut self) -> bool {
        let (Some(index), Some(mark)) = (self.open.pop(), self.marks.pop()) else {
            return false;
        };
        let start = self.kids.len();
        self.kids
            .extend(self.pending.drain(mark.min(self.pending.len())..));
        let end = self.kids.len();
        if let Some(e) = self.elements.get_mut(index) {
            e.kids = (start, end);
        }
        self.open.is_empty()
    }

    fn open_name(&self) -> String {
        self.open
            .last()
            .map(|&i| self.element(i).name.to_string())
            .unwrap_or_default()
    }

    #[cfg(debug_assertions)]
    fn to_element(&self) -> Element {
        ElementRef {
            arena: self,
            index: 0,
        }
        .to_owned()
    }
}

/// One top-level element from [`StreamParser::next_event_ref`](super::StreamParser::next_event_ref),
/// its strings borrowed from the parser's buffer where they could be. [`StanzaRef::root`]
/// gives the element; dropping it hands its storage back to the parser.
pub struct StanzaRef<'a> {
    arena: Arena<'a>,
    pool: Option<&'a Pool>,
}

impl<'a> StanzaRef<'a> {
    /// A built arena, returned to `pool` on drop.
    pub(crate) fn new(arena: Arena<'a>, pool: &'a Pool) -> Self {
        Self {
            arena,
            pool: Some(pool),
        }
    }

    /// The top-level element.
    pub fn root(&self) -> ElementRef<'_> {
        ElementRef {
            arena: &self.arena,
            index: 0,
        }
    }

    /// Number of elements in the stanza (the root included).
    pub fn element_count(&self) -> usize {
        self.arena.elements.len()
    }
}

impl Drop for StanzaRef<'_> {
    fn drop(&mut self) {
        if let Some(pool) = self.pool {
            pool.give(std::mem::take(&mut self.arena));
        }
    }
}

impl Clone for StanzaRef<'_> {
    /// A copy with its own storage (not returned to the parser).
    fn clone(&self) -> Self {
        Self {
            arena: self.arena.clone(),
            pool: None,
        }
    }
}

impl fmt::Debug for StanzaRef<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("StanzaRef").field(&self.root()).finish()
    }
}

impl PartialEq for StanzaRef<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.root() == other.root()
    }
}

impl Eq for StanzaRef<'_> {}

/// An owned tree as a [`StanzaRef`] of owned strings.
impl From<&Element> for StanzaRef<'static> {
    fn from(e: &Element) -> Self {
        fn add(arena: &mut Arena<'static>, e: &Element) {
            for (n, v) in &e.attrs {
                arena.push_attr(Cow::Owned(n.clone()), Cow::Owned(v.clone()));
            }
            arena.open(Cow::Owned(e.name.clone()), Cow::Owned(e.ns.clone()));
            for c in &e.children {
                match c {
                    Node::Element(child) => add(arena, child),
                    Node::Text(t) => arena.text(Cow::Owned(t.clone())),
                }
            }
            arena.close();
        }
        let mut arena = Arena::default();
        add(&mut arena, e);
        Self { arena, pool: None }
    }
}

/// A handle on one element of a [`StanzaRef`]: the shape of [`Element`] (same canonical form:
/// no empty text node, no two adjacent text nodes), read through methods.
#[derive(Clone, Copy)]
pub struct ElementRef<'s> {
    arena: &'s Arena<'s>,
    index: usize,
}

/// A child of an [`ElementRef`], in document order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeRef<'s> {
    /// A child element.
    Element(ElementRef<'s>),
    /// Character data, with references expanded and CDATA sections merged in (borrowed from
    /// the input when it needed no transformation).
    Text(&'s Cow<'s, str>),
}

impl<'s> ElementRef<'s> {
    fn data(&self) -> &'s ElementData<'s> {
        self.arena.element(self.index)
    }

    /// Local name (without prefix).
    pub fn name(&self) -> &'s str {
        &self.data().name
    }

    /// Resolved namespace name (URI); empty for no namespace.
    pub fn ns(&self) -> &'s str {
        &self.data().ns
    }

    /// The name as stored: borrowed from the input or owned.
    pub fn name_cow(&self) -> &'s Cow<'s, str> {
        &self.data().name
    }

    /// The namespace as stored: borrowed (from the input or `'static`) or owned.
    pub fn ns_cow(&self) -> &'s Cow<'s, str> {
        &self.data().ns
    }

    /// Attributes in document order, as in [`Element::attrs`], as stored.
    pub fn attrs_cow(&self) -> &'s [(Cow<'s, str>, Cow<'s, str>)] {
        let (start, end) = self.data().attrs;
        self.arena.attrs.get(start..end).unwrap_or_default()
    }

    /// Attributes in document order: `(qualified name, value)`.
    pub fn attrs(&self) -> impl Iterator<Item = (&'s str, &'s str)> + 's {
        self.attrs_cow()
            .iter()
            .map(|(n, v)| (n.as_ref(), v.as_ref()))
    }

    /// The value of the attribute with this qualified name.
    pub fn attr(&self, name: &str) -> Option<&'s str> {
        self.attrs().find(|&(n, _)| n == name).map(|(_, v)| v)
    }

    /// True if this element has this local name and namespace.
    pub fn is(&self, name: &str, ns: &str) -> bool {
        self.name() == name && self.ns() == ns
    }

    /// Child elements and text, in document order.
    pub fn children(&self) -> impl Iterator<Item = NodeRef<'s>> + 's {
        let arena = self.arena;
        let (start, end) = self.data().kids;
        let kids = arena.kids.get(start..end).unwrap_or_default();
        kids.iter().map(move |&k| match k {
            Kid::Element(index) => NodeRef::Element(ElementRef { arena, index }),
            Kid::Text(t) => NodeRef::Text(arena.texts.get(t).unwrap_or(&NO_TEXT)),
        })
    }

    /// Child elements, in order.
    pub fn child_elements(&self) -> impl Iterator<Item = ElementRef<'s>> + 's {
        self.children().filter_map(|n| match n {
            NodeRef::Element(e) => Some(e),
            NodeRef::Text(_) => None,
        })
    }

    /// The first child element with this local name and namespace.
    pub fn child(&self, name: &str, ns: &str) -> Option<ElementRef<'s>> {
        self.child_elements().find(|e| e.is(name, ns))
    }

    /// Every child element with this local name and namespace.
    pub fn children_named<'q>(
        &self,
        name: &'q str,
        ns: &'q str,
    ) -> impl Iterator<Item = ElementRef<'s>> + 'q
    where
        's: 'q,
    {
        self.child_elements().filter(move |e| e.is(name, ns))
    }

    /// The concatenated text of the direct text children (borrowed when there is at most one
    /// text child, as in a canonical tree with no child elements).
    pub fn text(&self) -> Cow<'s, str> {
        let mut texts = self.children().filter_map(|n| match n {
            NodeRef::Text(t) => Some(t.as_ref()),
            NodeRef::Element(_) => None,
        });
        let Some(first) = texts.next() else {
            return Cow::Borrowed("");
        };
        match texts.next() {
            None => Cow::Borrowed(first),
            Some(second) => {
                let mut out = String::from(first);
                out.push_str(second);
                texts.for_each(|t| out.push_str(t));
                Cow::Owned(out)
            }
        }
    }

    /// The owned tree: equal to what the owned parser path builds for the same input.
    pub fn to_owned(&self) -> Element {
        Element {
            name: self.name().to_owned(),
            ns: self.ns().to_owned(),
            attrs: self
                .attrs()
                .map(|(n, v)| (n.to_owned(), v.to_owned()))
                .collect(),
            children: self
                .children()
                .map(|c| match c {
                    NodeRef::Element(e) => Node::Element(e.to_owned()),
                    NodeRef::Text(t) => Node::Text(t.to_string()),
                })
                .collect(),
        }
    }
}

/// Equal trees (names, namespaces, attributes, children in order), wherever they are stored.
impl PartialEq for ElementRef<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.name() == other.name()
            && self.ns() == other.ns()
            && self.attrs().eq(other.attrs())
            && self.children().eq(other.children())
    }
}

impl Eq for ElementRef<'_> {}

impl PartialEq<Element> for ElementRef<'_> {
    fn eq(&self, other: &Element) -> bool {
        self.name() == other.name
            && self.ns() == other.ns
            && self
                .attrs()
                .eq(other.attrs.iter().map(|(n, v)| (n.as_str(), v.as_str())))
            && self.children().count() == other.children.len()
            && self.children().zip(&other.children).all(|pair| match pair {
                (NodeRef::Element(a), Node::Element(b)) => a == *b,
                (NodeRef::Text(a), Node::Text(b)) => a.as_ref() == b,
                _ => false,
            })
    }
}

impl fmt::Debug for ElementRef<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ElementRef")
            .field("name", self.name_cow())
            .field("ns", self.ns_cow())
            .field("attrs", &self.attrs_cow())
            .field("children", &self.children().collect::<Vec<_>>())
            .finish()
    }
}

/// What [`StreamParser::next_event_ref`](super::StreamParser::next_event_ref) delivers: a
/// [`StreamEvent`] whose stanza borrows from the parser.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamEventRef<'a> {
    /// The stream header (stream framing only).
    Header(StreamHeader),
    /// A complete top-level element.
    Stanza(StanzaRef<'a>),
    /// `</stream:stream>`.
    Close,
}

impl StreamEventRef<'_> {
    /// The owned event: equal to what `next_event` returns for the same input.
    pub fn to_owned(&self) -> StreamEvent {
        match self {
            StreamEventRef::Header(h) => StreamEvent::Header(h.clone()),
            StreamEventRef::Stanza(s) => StreamEvent::Stanza(s.root().to_owned()),
            StreamEventRef::Close => StreamEvent::Close,
        }
    }
}

impl From<StreamEvent> for StreamEventRef<'static> {
    fn from(event: StreamEvent) -> Self {
        match event {
            StreamEvent::Header(h) => StreamEventRef::Header(h),
            StreamEvent::Stanza(e) => StreamEventRef::Stanza(StanzaRef::from(&e)),
            StreamEvent::Close => StreamEventRef::Close,
        }
    }
}

#[cfg(test)]
#[path = "borrowed/tests.rs"]
mod tests;
