//! The zero-copy tree: [`ElementRef`] has the shape of [`Element`] but its strings are
//! `Cow<'a, str>`, borrowed from the parser's buffer wherever the input needs no
//! transformation (no reference to resolve, no attribute-value or line-end normalisation) and
//! owned otherwise. [`StreamParser::next_event_ref`](super::StreamParser::next_event_ref)
//! produces it through the same tokenizers and checks as the owned path; only the
//! materialisation of strings differs, so [`ElementRef::to_owned`] equals the [`Element`]
//! [`StreamParser::next_event`](super::StreamParser::next_event) gives for the same input.

use std::borrow::Cow;

use super::element::{Element, Node};
use super::parser::{StreamEvent, StreamHeader};
use super::tree::{Scratch, Tree, recycle};

/// One XML element with its namespace resolved, borrowing its strings from the input where it
/// can. Same canonical form as [`Element`]: no empty text node, no two adjacent text nodes.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ElementRef<'a> {
    /// Local name (without prefix).
    pub name: Cow<'a, str>,
    /// Resolved namespace name (URI); empty for no namespace.
    pub ns: Cow<'a, str>,
    /// Attributes in document order, as in [`Element::attrs`].
    pub attrs: Vec<(Cow<'a, str>, Cow<'a, str>)>,
    /// Child elements and text, in document order.
    pub children: Vec<NodeRef<'a>>,
}

/// A child of an [`ElementRef`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeRef<'a> {
    /// A child element.
    Element(ElementRef<'a>),
    /// Character data, with references expanded and CDATA sections merged in.
    Text(Cow<'a, str>),
}

/// What [`StreamParser::next_event_ref`](super::StreamParser::next_event_ref) delivers: a
/// [`StreamEvent`] whose stanza borrows from the parser.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamEventRef<'a> {
    /// The stream header (stream framing only).
    Header(StreamHeader),
    /// A complete top-level element.
    Stanza(ElementRef<'a>),
    /// `</stream:stream>`.
    Close,
}

impl StreamEventRef<'_> {
    /// The owned event: equal to what `next_event` returns for the same input.
    pub fn to_owned(&self) -> StreamEvent {
        match self {
            StreamEventRef::Header(h) => StreamEvent::Header(h.clone()),
            StreamEventRef::Stanza(e) => StreamEvent::Stanza(e.to_owned()),
            StreamEventRef::Close => StreamEvent::Close,
        }
    }
}

impl From<StreamEvent> for StreamEventRef<'static> {
    fn from(event: StreamEvent) -> Self {
        match event {
            StreamEvent::Header(h) => StreamEventRef::Header(h),
            StreamEvent::Stanza(e) => StreamEventRef::Stanza(e.into()),
            StreamEvent::Close => StreamEventRef::Close,
        }
    }
}

impl<'a> ElementRef<'a> {
    /// The value of the attribute with this qualified name.
    pub fn attr(&self, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_ref())
    }

    /// True if this element has this local name and namespace.
    pub fn is(&self, name: &str, ns: &str) -> bool {
        self.name == name && self.ns == ns
    }

    /// Child elements, in order.
    pub fn child_elements(&self) -> impl Iterator<Item = &ElementRef<'a>> {
        self.children.iter().filter_map(|n| match n {
            NodeRef::Element(e) => Some(e),
            NodeRef::Text(_) => None,
        })
    }

    /// The first child element with this local name and namespace.
    pub fn child(&self, name: &str, ns: &str) -> Option<&ElementRef<'a>> {
        self.child_elements().find(|e| e.is(name, ns))
    }

    /// Every child element with this local name and namespace.
    pub fn children_named<'s>(
        &'s self,
        name: &'s str,
        ns: &'s str,
    ) -> impl Iterator<Item = &'s ElementRef<'a>> + 's {
        self.child_elements().filter(move |e| e.is(name, ns))
    }

    /// The concatenated text of the direct text children (borrowed when there is at most one
    /// text child, as in a canonical tree with no child elements).
    pub fn text(&self) -> Cow<'_, str> {
        let mut texts = self.children.iter().filter_map(|n| match n {
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
            name: self.name.to_string(),
            ns: self.ns.to_string(),
            attrs: self
                .attrs
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
            children: self
                .children
                .iter()
                .map(|c| match c {
                    NodeRef::Element(e) => Node::Element(e.to_owned()),
                    NodeRef::Text(t) => Node::Text(t.to_string()),
                })
                .collect(),
        }
    }

    /// The owned tree, reusing the strings already owned.
    pub fn into_owned(self) -> Element {
        Element {
            name: self.name.into_owned(),
            ns: self.ns.into_owned(),
            attrs: self
                .attrs
                .into_iter()
                .map(|(n, v)| (n.into_owned(), v.into_owned()))
                .collect(),
            children: self
                .children
                .into_iter()
                .map(|c| match c {
                    NodeRef::Element(e) => Node::Element(e.into_owned()),
                    NodeRef::Text(t) => Node::Text(t.into_owned()),
                })
                .collect(),
        }
    }
}

/// An owned tree as an [`ElementRef`] of owned strings (no copy).
impl From<Element> for ElementRef<'static> {
    fn from(e: Element) -> Self {
        ElementRef {
            name: Cow::Owned(e.name),
            ns: Cow::Owned(e.ns),
            attrs: e
                .attrs
                .into_iter()
                .map(|(n, v)| (Cow::Owned(n), Cow::Owned(v)))
                .collect(),
            children: e
                .children
                .into_iter()
                .map(|c| match c {
                    Node::Element(e) => NodeRef::Element(e.into()),
                    Node::Text(t) => NodeRef::Text(Cow::Owned(t)),
                })
                .collect(),
        }
    }
}

impl<'a> Tree<'a> for ElementRef<'a> {
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

    #[inline]
    fn build(name: Self::Str, ns: Self::Str, attrs: Vec<(Self::Str, Self::Str)>) -> Self {
        ElementRef {
            name,
            ns,
            attrs,
            children: Vec::new(),
        }
    }

    #[inline]
    fn add_element(&mut self, child: Self) {
        self.children.push(NodeRef::Element(child));
    }

    #[inline]
    fn add_text(&mut self, text: Self::Str) {
        self.children.push(NodeRef::Text(text));
    }

    fn take_stack(scratch: &mut Scratch) -> Vec<Self> {
        recycle(std::mem::take(&mut scratch.stack_ref))
    }

    fn give_stack(scratch: &mut Scratch, stack: Vec<Self>) {
        scratch.stack_ref = recycle(stack);
    }

    fn from_element(e: Element) -> Self {
        e.into()
    }

    #[cfg(debug_assertions)]
    fn to_element(&self) -> Element {
        self.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{Framing, Limits, StreamParser};

    fn stanzas(input: &[u8]) -> Vec<Element> {
        let mut p = StreamParser::new(Framing::Auto, Limits::default());
        p.feed(input);
        let mut out = Vec::new();
        while let Some(ev) = p.next_event_ref().unwrap() {
            if let StreamEventRef::Stanza(e) = ev {
                out.push(e.to_owned());
            }
        }
        out
    }

    #[test]
    fn plain_input_is_borrowed() {
        let input = b"<message xmlns='jabber:client' to='a@b'><body>hi</body></message>";
        let mut p = StreamParser::new(Framing::Fragments, Limits::default());
        p.feed(input);
        let Some(StreamEventRef::Stanza(e)) = p.next_event_ref().unwrap() else {
            panic!("no stanza");
        };
        assert!(matches!(e.name, Cow::Borrowed("message")));
        assert!(matches!(e.ns, Cow::Borrowed("jabber:client")));
        assert!(matches!(e.attrs[0].1, Cow::Borrowed("a@b")));
        let body = e.child("body", "jabber:client").unwrap();
        assert!(matches!(body.text(), Cow::Borrowed("hi")));
        assert_eq!(e.attr("to"), Some("a@b"));
        assert_eq!(e.child_elements().count(), 1);
        assert_eq!(e.children_named("body", "jabber:client").count(), 1);
        assert!(e.is("message", "jabber:client"));
    }

    #[test]
    fn stream_namespace_is_not_borrowed_from_the_parser_context() {
        let input = b"<stream:stream xmlns='jabber:client' \
            xmlns:stream='http://etherx.jabber.org/streams'><message><body>x</body></message>";
        let mut p = StreamParser::new(Framing::Stream, Limits::default());
        p.feed(input);
        assert!(matches!(
            p.next_event_ref(),
            Ok(Some(StreamEventRef::Header(_)))
        ));
        let Ok(Some(StreamEventRef::Stanza(e))) = p.next_event_ref() else {
            panic!("no stanza");
        };
        assert!(matches!(e.ns, Cow::Borrowed("jabber:client")));
    }

    #[test]
    fn transformed_input_is_owned_and_equal() {
        let input = b"<a x='1&amp;2' y='p\tq'>t&lt;u<![CDATA[v]]>\r\nw<b/>z</a>";
        let owned = crate::wire::parse_fragment(input, &Limits::default()).unwrap();
        assert_eq!(stanzas(input), vec![owned.clone()]);
        let e: ElementRef<'static> = owned.clone().into();
        assert_eq!(e.to_owned(), owned);
        assert_eq!(e.clone().into_owned(), owned);
        assert_eq!(e.text(), owned.text());
    }
}
