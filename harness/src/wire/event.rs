//! What a stream parser delivers: the header, complete top-level elements, the close. A
//! module of its own so that both parsers (owned and borrowed) depend on it, not on each other.

use super::element::Element;

/// The opening `<stream:stream>` tag.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StreamHeader {
    /// The content namespace (the header's default namespace): `jabber:client` or
    /// `jabber:server`.
    pub default_ns: String,
    /// `to`.
    pub to: Option<String>,
    /// `from`.
    pub from: Option<String>,
    /// `id`.
    pub id: Option<String>,
    /// `version`.
    pub version: Option<String>,
    /// `xml:lang`.
    pub lang: Option<String>,
    /// Every other attribute in document order, including prefix declarations other than the
    /// stream prefix's.
    pub other_attrs: Vec<(String, String)>,
}

impl StreamHeader {
    /// A header for `default_ns` with no attributes.
    pub fn new(default_ns: impl Into<String>) -> Self {
        Self {
            default_ns: default_ns.into(),
            ..Self::default()
        }
    }

    /// The value of the attribute with this qualified name.
    pub fn attr(&self, name: &str) -> Option<&str> {
        match name {
            "to" => self.to.as_deref(),
            "from" => self.from.as_deref(),
            "id" => self.id.as_deref(),
            "version" => self.version.as_deref(),
            "xml:lang" => self.lang.as_deref(),
            _ => self
                .other_attrs
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.as_str()),
        }
    }

    /// `to`, as a `&str` (the field is public too).
    pub fn to(&self) -> Option<&str> {
        self.to.as_deref()
    }

    /// `from`.
    pub fn from(&self) -> Option<&str> {
        self.from.as_deref()
    }

    /// `id`.
    pub fn id(&self) -> Option<&str> {
        self.id.as_deref()
    }

    /// `version`.
    pub fn version(&self) -> Option<&str> {
        self.version.as_deref()
    }

    /// `xml:lang`.
    pub fn lang(&self) -> Option<&str> {
        self.lang.as_deref()
    }

    /// Every attribute as written by [`StreamHeader::to_xml`]: `to`, `from`, `id`, `version`,
    /// `xml:lang`, then the others.
    pub fn attrs(&self) -> impl Iterator<Item = (&str, &str)> {
        let known = [
            ("to", &self.to),
            ("from", &self.from),
            ("id", &self.id),
            ("version", &self.version),
            ("xml:lang", &self.lang),
        ];
        known
            .into_iter()
            .filter_map(|(n, v)| v.as_deref().map(|v| (n, v)))
            .chain(
                self.other_attrs
                    .iter()
                    .map(|(n, v)| (n.as_str(), v.as_str())),
            )
    }
}

/// What the parser delivers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamEvent {
    /// The stream header (stream framing only).
    Header(StreamHeader),
    /// A complete top-level element: a stanza, or in a stream any depth-1 element
    /// (`<stream:features>`, `<stream:error>`, SASL `<auth>`…); name and namespace tell them
    /// apart.
    Stanza(Element),
    /// `</stream:stream>`.
    Close,
}
