//! What the tree builder writes into: the [`Tree`] trait, implemented by [`OwnedTree`] (the
//! owned [`Element`] of `next_event`) and by the borrowed API's arena
//! ([`Arena`](crate::wire::borrowed::Arena)). The builder drives it with the element's events
//! (open with attributes, text, close) after every check; only the way strings are
//! materialised and stored differs.

use std::borrow::Cow;

use crate::wire::element::{Element, Node};

/// A tree being built, one element at a time. `Str` is the field string type; `borrow`
/// receives slices of the element's input. Attributes are pushed before the [`Tree::open`] of
/// their element; [`Tree::reset`] forgets everything (the builder calls it before each
/// element, so an abandoned build leaves nothing behind that matters).
pub(crate) trait Tree<'a> {
    type Str: AsRef<str>;
    /// A string that is a slice of the input.
    fn borrow(s: &'a str) -> Self::Str;
    /// A string that is not (a temporary: normalised text, a resolved reference).
    fn copy(s: &str) -> Self::Str;
    fn from_cow(s: Cow<'a, str>) -> Self::Str;
    fn append(acc: &mut Self::Str, s: &str);
    /// Empties the tree for a new top-level element.
    fn reset(&mut self);
    /// An attribute of the element about to be opened.
    fn push_attr(&mut self, name: Self::Str, value: Self::Str);
    /// Whether an attribute of this name was pushed for the element about to be opened.
    fn has_attr(&self, name: &str) -> bool;
    /// Opens an element with the attributes pushed since the last open.
    fn open(&mut self, name: Self::Str, ns: Self::Str);
    /// Text for the innermost open element.
    fn text(&mut self, text: Self::Str);
    /// Closes the innermost open element; true when that was the root.
    fn close(&mut self) -> bool;
    /// The innermost open element's name (for an error message).
    fn open_name(&self) -> String;
    /// The finished root as an owned tree (debug builds check the fast path against the
    /// exact one).
    #[cfg(debug_assertions)]
    fn to_element(&self) -> Element;
}

/// The owned tree of [`StreamParser::next_event`](crate::wire::StreamParser::next_event),
/// with its working vectors kept from element to element.
#[derive(Debug, Default)]
pub(crate) struct OwnedTree {
    stack: Vec<Element>,
    attrs: Vec<(String, String)>,
    root: Option<Element>,
}

impl OwnedTree {
    /// The finished root (empty if there is none, which the builder rules out).
    pub(crate) fn take_root(&mut self) -> Element {
        self.root.take().unwrap_or_default()
    }

    /// The innermost open element (a lone start tag: the stream header).
    pub(crate) fn take_open(&mut self) -> Element {
        self.stack.pop().unwrap_or_default()
    }
}

impl<'a> Tree<'a> for OwnedTree {
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

    fn reset(&mut self) {
        self.stack.clear();
        self.attrs.clear();
        self.root = None;
    }

    #[inline]
    fn push_attr(&mut self, name: String, value: String) {
        self.attrs.push((name, value));
    }

    #[inline]
    fn has_attr(&self, name: &str) -> bool {
        self.attrs.iter().any(|(n, _)| n == name)
    }

    #[inline]
    fn open(&mut self, name: String, ns: String) {
        let attrs = self.attrs.drain(..).collect();
        self.stack.push(Element {
            name,
            ns,
            attrs,
            children: Vec::new(),
        });
    }

    #[inline]
    fn text(&mut self, text: String) {
        if let Some(parent) = self.stack.last_mut() {
            parent.children.push(Node::Text(text));
        }
    }

    #[inline]
    fn close(&mut self) -> bool {
        let Some(done) = self.stack.pop() else {
            return false;
        };
        match self.stack.last_mut() {
            Some(parent) => {
                parent.children.push(Node::Element(done));
                false
            }
            None => {
                self.root = Some(done);
                true
            }
        }
    }

    fn open_name(&self) -> String {
        self.stack
            .last()
            .map(|e| e.name.clone())
            .unwrap_or_default()
    }

    #[cfg(debug_assertions)]
    fn to_element(&self) -> Element {
        self.root.clone().unwrap_or_default()
    }
}
