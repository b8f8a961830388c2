//! Codec errors: one `Violation` variant per rule broken, with its byte offset and RFC condition.

use std::fmt;

use super::condition::StreamErrorCondition;
use super::element::Element;
use super::ns;

/// A violation of XML 1.0, Namespaces in XML or RFC 6120 found in the input, and where.
///
/// `offset` counts bytes from the first byte ever fed to the parser; it is the position of the
/// offending construct (its `<` or `&`, the bad byte), of the byte that crossed a limit, or the
/// end of input for truncation errors. It does not depend on how the input was chunked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WireError {
    /// Byte offset in the whole stream where the violation was detected.
    pub offset: u64,
    /// What was violated.
    pub violation: Violation,
}

impl WireError {
    /// Pairs a violation with its offset.
    pub fn new(offset: u64, violation: Violation) -> Self {
        Self { offset, violation }
    }

    /// The stream error condition a receiver must answer with (RFC 6120 §4.9.3).
    pub fn condition(&self) -> StreamErrorCondition {
        self.violation.condition()
    }
}

impl fmt::Display for WireError {
    /// Renders `"<what> at byte <offset>: <why>"`: every violation message has the shape
    /// `"<what>: <why>"` and the offset is spliced in after the subject.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let message = self.violation.to_string();
        match message.split_once(": ") {
            Some((what, why)) => write!(f, "{what} at byte {}: {why}", self.offset),
            None => write!(f, "{message} at byte {}", self.offset),
        }
    }
}

impl std::error::Error for WireError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.violation)
    }
}

/// One rule of XML 1.0 / Namespaces in XML / RFC 6120 §11 (or one limit) the input broke.
///
/// Every message reads `"<what>: <why>"` so that [`WireError`] can place the offset after the
/// subject.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Violation {
    /// `<!DOCTYPE`: any DTD, so entity expansion attacks never start.
    #[error("DOCTYPE declaration: DTDs are forbidden (RFC 6120 §11.1)")]
    DoctypeForbidden,
    /// `<?target ...?>` anywhere except the leading XML declaration.
    #[error(
        "processing instruction <?{target}: processing instructions are forbidden (RFC 6120 §11.1)"
    )]
    ProcessingInstructionForbidden {
        /// The PI target as written.
        target: String,
    },
    /// `<?xml ...?>` after the first byte of the stream.
    #[error("XML declaration: it is only allowed at the very start of the stream (XML 1.0 §2.8)")]
    XmlDeclarationNotAtStart,
    /// `<!-- ... -->`.
    #[error("comment: comments are forbidden (RFC 6120 §11.1)")]
    CommentForbidden,
    /// `&name;` other than `lt`, `gt`, `amp`, `apos`, `quot`.
    #[error(
        "entity reference &{name};: only the five predefined entities are allowed (RFC 6120 §11.1)"
    )]
    UndefinedEntity {
        /// The entity name.
        name: String,
    },
    /// `&#...;` that is malformed or names a character XML 1.0 forbids (e.g. `&#0;`).
    #[error(
        "character reference &{reference};: it does not denote a character allowed in XML 1.0 (XML 1.0 §4.1)"
    )]
    InvalidCharReference {
        /// The reference between `&` and `;`.
        reference: String,
    },
    /// A literal character XML 1.0 forbids (NUL, most C0 controls, U+FFFE, U+FFFF).
    #[error("character U+{codepoint:04X}: it is not allowed in XML 1.0 (XML 1.0 §2.2)")]
    InvalidChar {
        /// The code point.
        codepoint: u32,
    },
    /// Bytes that are not UTF-8 (including overlong forms and surrogates).
    #[error("byte sequence: it is not valid UTF-8 (RFC 6120 §11.6)")]
    InvalidUtf8,
    /// A character that may not appear in (or start) an XML name.
    #[error("name character {ch:?}: it is not allowed here in an XML name (XML 1.0 §2.3)")]
    InvalidNameChar {
        /// The character.
        ch: char,
    },
    /// A name that is not a valid XML qualified name.
    #[error("name {name:?}: it is not a valid qualified name (Namespaces in XML 1.0 §4)")]
    InvalidName {
        /// The name as written.
        name: String,
    },
    /// End of input while an element is still open.
    #[error("element <{name}>: it is not closed at the end of the input")]
    UnclosedTag {
        /// The innermost open element.
        name: String,
    },
    /// End of input inside markup (a tag, reference, declaration, byte order mark).
    #[error("end of input: the input ends inside {context}")]
    UnexpectedEof {
        /// What was being read.
        context: &'static str,
    },
    /// An end tag that does not close the innermost open element.
    #[error("end tag </{found}>: it does not match the open element <{expected}>")]
    MismatchedTag {
        /// The open element's name.
        expected: String,
        /// The end tag's name.
        found: String,
    },
    /// An end tag with nothing open to close.
    #[error("end tag </{name}>: there is no open element to close")]
    UnexpectedCloseTag {
        /// The end tag's name.
        name: String,
    },
    /// The same attribute twice on one element, literally or after namespace resolution.
    #[error("attribute {name}: it appears more than once on the element (XML 1.0 §3.1)")]
    DuplicateAttribute {
        /// The second occurrence's name as written.
        name: String,
    },
    /// A prefix with no namespace declaration in scope.
    #[error("prefix {prefix}: it is not bound to a namespace (Namespaces in XML 1.0 §5)")]
    UndeclaredPrefix {
        /// The prefix.
        prefix: String,
    },
    /// A namespace declaration Namespaces in XML forbids (rebinding `xml` or `xmlns`, binding a
    /// prefix to the empty name).
    #[error("namespace declaration {attribute}=\"{value}\": {reason} (Namespaces in XML 1.0 §3)")]
    BadNamespaceDeclaration {
        /// `xmlns` or `xmlns:p`.
        attribute: String,
        /// The declared namespace name.
        value: String,
        /// Which rule.
        reason: &'static str,
    },
    /// A stream whose root is not `<stream:stream>`.
    #[error("root element <{name}>: a stream must open with <stream:stream> (RFC 6120 §4.2)")]
    NotAStreamHeader {
        /// The root element's name as written.
        name: String,
    },
    /// The stream element is not in `http://etherx.jabber.org/streams`.
    #[error(
        "stream namespace {found:?}: the stream element must be in http://etherx.jabber.org/streams (RFC 6120 §4.8.1)"
    )]
    WrongStreamNamespace {
        /// The namespace found.
        found: String,
    },
    /// The stream header's default namespace is not a supported content namespace.
    #[error(
        "content namespace {found:?}: the default namespace must be jabber:client or jabber:server (RFC 6120 §4.8.3)"
    )]
    WrongContentNamespace {
        /// The default namespace found (empty if none).
        found: String,
    },
    /// A byte order mark or encoding declaration other than UTF-8.
    #[error("encoding {encoding}: only UTF-8 is allowed (RFC 6120 §11.6)")]
    UnsupportedEncoding {
        /// The encoding named or implied.
        encoding: String,
    },
    /// An XML declaration with a version other than 1.0.
    #[error("XML version {version}: only XML 1.0 is allowed (RFC 6120 §11)")]
    UnsupportedXmlVersion {
        /// The version declared.
        version: String,
    },
    /// A top-level element longer than `Limits::max_stanza_bytes`.
    #[error("stanza: it is larger than the limit of {limit} bytes")]
    StanzaTooLarge {
        /// The limit.
        limit: usize,
    },
    /// Prolog plus stream header longer than `Limits::max_header_bytes`.
    #[error("stream header: it is larger than the limit of {limit} bytes")]
    HeaderTooLarge {
        /// The limit.
        limit: usize,
    },
    /// Nesting deeper than `Limits::max_depth`.
    #[error("element: it nests deeper than the limit of {limit} levels")]
    TooDeep {
        /// The limit.
        limit: usize,
    },
    /// More attributes than `Limits::max_attributes` on one element.
    #[error("attribute: the element has more than the limit of {limit} attributes")]
    TooManyAttributes {
        /// The limit.
        limit: usize,
    },
    /// An attribute value longer than `Limits::max_attr_value_bytes`.
    #[error("attribute value: it is longer than the limit of {limit} bytes")]
    AttributeValueTooLong {
        /// The limit.
        limit: usize,
    },
    /// A text node longer than `Limits::max_text_bytes`.
    #[error("text node: it is longer than the limit of {limit} bytes")]
    TextTooLong {
        /// The limit.
        limit: usize,
    },
    /// More namespace declarations than `Limits::max_namespace_decls` on one element.
    #[error("namespace declaration: the element has more than the limit of {limit} declarations")]
    TooManyNamespaceDecls {
        /// The limit.
        limit: usize,
    },
    /// A name longer than `Limits::max_name_bytes`.
    #[error("name: it is longer than the limit of {limit} bytes")]
    NameTooLong {
        /// The limit.
        limit: usize,
    },
    /// Non-whitespace character data (or a reference, or CDATA) between stanzas.
    #[error("character data between stanzas: only whitespace may appear outside stanzas")]
    TextAtStreamLevel,
    /// Anything but whitespace after `</stream:stream>`.
    #[error("content after the stream close: only whitespace may follow </stream:stream>")]
    ContentAfterClose,
    /// A literal `<` inside an attribute value.
    #[error("'<' in attribute value: it must be escaped as &lt; (XML 1.0 §3.1)")]
    AttributeValueLt,
    /// An attribute value without quotes.
    #[error("attribute value: it must be quoted (XML 1.0 §3.1)")]
    UnquotedAttributeValue,
    /// An attribute written straight after the previous one's closing quote.
    #[error(
        "attribute {name}: it must be separated from the one before by whitespace (XML 1.0 §3.1)"
    )]
    NoSpaceBeforeAttribute { name: String },
    /// A literal `]]>` in character data.
    #[error("']]>' in text: it must be escaped as ]]&gt; outside CDATA sections (XML 1.0 §2.4)")]
    CdataEndInText,
    /// CDATA or markup declaration syntax that is not recognised.
    #[error("markup declaration: only <![CDATA[ may follow <! here")]
    UnknownMarkupDeclaration,
    /// [`parse_fragment`](crate::wire::parse_fragment) input without exactly one element.
    #[error("input: it must hold exactly one element, found {found}")]
    ExpectedOneElement {
        /// Elements found (2 means "more than one").
        found: usize,
    },
    /// Any other syntax error, as reported by the XML tokenizer.
    #[error("malformed XML: {0}")]
    Xml(String),
}

impl Violation {
    /// The stream error condition for this violation (RFC 6120 §4.9.3).
    pub fn condition(&self) -> StreamErrorCondition {
        use StreamErrorCondition as C;
        use Violation as V;
        match self {
            V::DoctypeForbidden
            | V::ProcessingInstructionForbidden { .. }
            | V::CommentForbidden
            | V::UndefinedEntity { .. } => C::RestrictedXml,
            V::UndeclaredPrefix { .. } => C::BadNamespacePrefix,
            V::WrongStreamNamespace { .. } | V::WrongContentNamespace { .. } => C::InvalidNamespace,
            V::NotAStreamHeader { .. } => C::BadFormat,
            V::UnsupportedEncoding { .. } => C::UnsupportedEncoding,
            V::StanzaTooLarge { .. }
            | V::HeaderTooLarge { .. }
            | V::TooDeep { .. }
            | V::TooManyAttributes { .. }
            | V::AttributeValueTooLong { .. }
            | V::TextTooLong { .. }
            | V::TooManyNamespaceDecls { .. }
            | V::NameTooLong { .. } => C::PolicyViolation,
            V::XmlDeclarationNotAtStart
            | V::InvalidCharReference { .. }
            | V::InvalidChar { .. }
            | V::InvalidUtf8
            | V::InvalidNameChar { .. }
            | V::InvalidName { .. }
            | V::UnclosedTag { .. }
            | V::UnexpectedEof { .. }
            | V::MismatchedTag { .. }
            | V::UnexpectedCloseTag { .. }
            | V::DuplicateAttribute { .. }
            | V::BadNamespaceDeclaration { .. }
            | V::UnsupportedXmlVersion { .. }
            | V::TextAtStreamLevel
            | V::ContentAfterClose
            | V::AttributeValueLt
            | V::UnquotedAttributeValue
            | V::NoSpaceBeforeAttribute { .. }
            | V::CdataEndInText
            | V::UnknownMarkupDeclaration
            | V::ExpectedOneElement { .. }
            | V::Xml(_) => C::NotWellFormed,
        }
    }
}

/// Builds `<stream:error><COND xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>[<text>]</stream:error>`
/// (RFC 6120 §4.9.2). Serialize it with [`Element::to_xml_in`] inside a stream to get the
/// `stream:` prefix.
pub fn stream_error_element(condition: StreamErrorCondition, text: Option<&str>) -> Element {
    let mut error = Element::new("error", ns::STREAMS)
        .with_child(Element::new(condition.as_str(), ns::STREAM_ERRORS));
    if let Some(text) = text {
        error = error.with_child(Element::new("text", ns::STREAM_ERRORS).with_text(text));
    }
    error
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(offset: u64, v: Violation) -> String {
        WireError::new(offset, v).to_string()
    }

    #[test]
    fn offset_is_spliced_after_the_subject() {
        assert_eq!(
            msg(0, Violation::DoctypeForbidden),
            "DOCTYPE declaration at byte 0: DTDs are forbidden (RFC 6120 §11.1)"
        );
        assert_eq!(
            msg(12, Violation::UndefinedEntity { name: "foo".into() }),
            "entity reference &foo; at byte 12: only the five predefined entities are allowed (RFC 6120 §11.1)"
        );
        assert_eq!(
            msg(3, Violation::Xml("bad: thing".into())),
            "malformed XML at byte 3: bad: thing"
        );
    }

    #[test]
    fn every_violation_message_has_a_subject() {
        let all = [
            Violation::DoctypeForbidden,
            Violation::ProcessingInstructionForbidden { target: "x".into() },
            Violation::XmlDeclarationNotAtStart,
            Violation::CommentForbidden,
            Violation::UndefinedEntity { name: "a".into() },
            Violation::InvalidCharReference {
                reference: "#0".into(),
            },
            Violation::InvalidChar { codepoint: 0 },
            Violation::InvalidUtf8,
            Violation::InvalidNameChar { ch: '1' },
            Violation::InvalidName { name: "a:".into() },
            Violation::UnclosedTag { name: "a".into() },
            Violation::UnexpectedEof { context: "a tag" },
            Violation::MismatchedTag {
                expected: "a".into(),
                found: "b".into(),
            },
            Violation::UnexpectedCloseTag { name: "a".into() },
            Violation::DuplicateAttribute { name: "a".into() },
            Violation::UndeclaredPrefix { prefix: "a".into() },
            Violation::BadNamespaceDeclaration {
                attribute: "xmlns:a".into(),
                value: String::new(),
                reason: "r",
            },
            Violation::NotAStreamHeader { name: "a".into() },
            Violation::WrongStreamNamespace { found: "a".into() },
            Violation::WrongContentNamespace { found: "a".into() },
            Violation::UnsupportedEncoding {
                encoding: "a".into(),
            },
            Violation::UnsupportedXmlVersion {
                version: "1.1".into(),
            },
            Violation::StanzaTooLarge { limit: 1 },
            Violation::HeaderTooLarge { limit: 1 },
            Violation::TooDeep { limit: 1 },
            Violation::TooManyAttributes { limit: 1 },
            Violation::AttributeValueTooLong { limit: 1 },
            Violation::TextTooLong { limit: 1 },
            Violation::TooManyNamespaceDecls { limit: 1 },
            Violation::NameTooLong { limit: 1 },
            Violation::TextAtStreamLevel,
            Violation::ContentAfterClose,
            Violation::AttributeValueLt,
            Violation::UnquotedAttributeValue,
            Violation::CdataEndInText,
            Violation::UnknownMarkupDeclaration,
            Violation::ExpectedOneElement { found: 0 },
            Violation::Xml("x".into()),
        ];
        for v in all {
            let text = msg(7, v.clone());
            assert!(text.contains(" at byte 7: "), "{text}");
            let _ = v.condition();
        }
    }

    #[test]
    fn conditions_follow_rfc_6120() {
        use StreamErrorCondition as C;
        assert_eq!(Violation::DoctypeForbidden.condition(), C::RestrictedXml);
        assert_eq!(Violation::CommentForbidden.condition(), C::RestrictedXml);
        assert_eq!(Violation::InvalidUtf8.condition(), C::NotWellFormed);
        assert_eq!(
            Violation::UndeclaredPrefix { prefix: "p".into() }.condition(),
            C::BadNamespacePrefix
        );
        assert_eq!(
            Violation::WrongContentNamespace {
                found: String::new()
            }
            .condition(),
            C::InvalidNamespace
        );
        assert_eq!(
            Violation::StanzaTooLarge { limit: 1 }.condition(),
            C::PolicyViolation
        );
        assert_eq!(
            Violation::UnsupportedEncoding {
                encoding: "x".into()
            }
            .condition(),
            C::UnsupportedEncoding
        );
    }

    #[test]
    fn stream_error_element_has_the_condition_and_text() {
        let e = stream_error_element(StreamErrorCondition::NotWellFormed, Some("bad"));
        assert_eq!(
            e.to_xml_in(ns::JABBER_CLIENT),
            "<stream:error><not-well-formed xmlns=\"urn:ietf:params:xml:ns:xmpp-streams\"/>\
             <text xmlns=\"urn:ietf:params:xml:ns:xmpp-streams\">bad</text></stream:error>"
        );
        assert_eq!(
            stream_error_element(StreamErrorCondition::Reset, None).to_xml(),
            "<error xmlns=\"http://etherx.jabber.org/streams\">\
             <reset xmlns=\"urn:ietf:params:xml:ns:xmpp-streams\"/></error>"
        );
    }
}
