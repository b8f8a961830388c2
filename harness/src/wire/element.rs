//! The stanza tree model: elements with resolved namespaces, attributes in document order, text.

/// One XML element with its namespace resolved.
///
/// Canonical form (what the parser produces, and what the builder methods keep): no empty
/// [`Node::Text`] and no two adjacent text nodes. Serializing and re-parsing a canonical tree
/// gives the same tree.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Element {
    /// Local name (without prefix).
    pub name: String,
    /// Resolved namespace name (URI); empty for no namespace.
    pub ns: String,
    /// Attributes in document order. Default-namespace declarations (`xmlns`) are not here (they
    /// become `ns`); prefixed attributes keep their qualified name (`xml:lang`), and prefix
    /// declarations (`xmlns:p`) are kept so prefixed attributes stay resolvable when the element
    /// is written out again.
    pub attrs: Vec<(String, String)>,
    /// Child elements and text, in document order.
    pub children: Vec<Node>,
}

/// A child of an [`Element`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    /// A child element.
    Element(Element),
    /// Character data, with references expanded and CDATA sections merged in.
    Text(String),
}

impl Element {
    /// An element with no attributes and no children.
    pub fn new(name: impl Into<String>, ns: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            ns: ns.into(),
            attrs: Vec::new(),
            children: Vec::new(),
        }
    }

    /// Sets an attribute (replacing a previous value of the same name).
    pub fn with_attr(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.set_attr(name, value);
        self
    }

    /// Appends a child element.
    pub fn with_child(mut self, child: Element) -> Self {
        self.children.push(Node::Element(child));
        self
    }

    /// Appends text, merging it into a trailing text node; empty text is ignored. A `String`
    /// becomes the new text node as it is (no copy).
    pub fn with_text(mut self, text: impl Into<String>) -> Self {
        let text = text.into();
        match self.children.last_mut() {
            _ if text.is_empty() => {}
            Some(Node::Text(last)) => last.push_str(&text),
            _ => self.children.push(Node::Text(text)),
        }
        self
    }

    /// Sets an attribute in place (replacing a previous value of the same name).
    pub fn set_attr(&mut self, name: impl Into<String>, value: impl Into<String>) {
        let name = name.into();
        let value = value.into();
        match self.attrs.iter_mut().find(|(n, _)| *n == name) {
            Some(slot) => slot.1 = value,
            None => self.attrs.push((name, value)),
        }
    }

    /// Appends text in place, keeping the tree canonical.
    pub fn append_text(&mut self, text: &str) {
        if text.is_empty() {
            return;
        }
        if let Some(Node::Text(last)) = self.children.last_mut() {
            last.push_str(text);
        } else {
            self.children.push(Node::Text(text.to_owned()));
        }
    }

    /// The value of the attribute with this qualified name.
    pub fn attr(&self, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// True if this element has this local name and namespace.
    pub fn is(&self, name: &str, ns: &str) -> bool {
        self.name == name && self.ns == ns
    }

    /// Child elements, in order.
    pub fn child_elements(&self) -> impl Iterator<Item = &Element> {
        self.children.iter().filter_map(|n| match n {
            Node::Element(e) => Some(e),
            Node::Text(_) => None,
        })
    }

    /// The first child element with this local name and namespace.
    pub fn child(&self, name: &str, ns: &str) -> Option<&Element> {
        self.child_elements().find(|e| e.is(name, ns))
    }

    /// Every child element with this local name and namespace.
    pub fn children_named<'a>(
        &'a self,
        name: &'a str,
        ns: &'a str,
    ) -> impl Iterator<Item = &'a Element> + 'a {
        self.child_elements().filter(move |e| e.is(name, ns))
    }

    /// The concatenated text of the direct text children.
    pub fn text(&self) -> String {
        let mut out = String::new();
        for node in &self.children {
            if let Node::Text(t) = node {
                out.push_str(t);
            }
        }
        out
    }
}

impl From<Element> for Node {
    fn from(e: Element) -> Self {
        Node::Element(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builder_keeps_text_canonical() {
        let e = Element::new("body", "jabber:client")
            .with_text("a")
            .with_text("")
            .with_text("b");
        assert_eq!(e.children, vec![Node::Text("ab".into())]);
        assert_eq!(e.text(), "ab");
    }

    #[test]
    fn with_attr_replaces() {
        let e = Element::new("a", "")
            .with_attr("x", "1")
            .with_attr("x", "2");
        assert_eq!(e.attrs, vec![("x".into(), "2".into())]);
        assert_eq!(e.attr("x"), Some("2"));
        assert_eq!(e.attr("y"), None);
    }

    #[test]
    fn children_are_found_by_name_and_namespace() {
        let e = Element::new("message", "jabber:client")
            .with_child(Element::new("body", "jabber:client").with_text("hi"))
            .with_text(" ")
            .with_child(Element::new("request", "urn:xmpp:receipts"))
            .with_child(Element::new("body", "jabber:client"));
        assert_eq!(
            e.child("body", "jabber:client").map(Element::text),
            Some("hi".into())
        );
        assert!(e.child("body", "urn:other").is_none());
        assert_eq!(e.children_named("body", "jabber:client").count(), 2);
        assert_eq!(e.child_elements().count(), 3);
        assert_eq!(e.text(), " ");
    }
}
