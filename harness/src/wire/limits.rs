//! Resource limits the codec enforces on hostile input (exceeding any is a policy-violation).

/// Bounds on what one stanza (or the stream header) may cost. Every field is a hard limit:
/// input beyond it is refused with a policy-violation
/// ([`StreamErrorCondition::PolicyViolation`](crate::wire::StreamErrorCondition::PolicyViolation))
/// and never buffered further.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Bytes of one top-level element, from its `<` to the `>` of its end tag.
    pub max_stanza_bytes: usize,
    /// Element nesting inside one stanza (the stanza element itself is depth 1).
    pub max_depth: usize,
    /// Attributes on one element, namespace declarations included.
    pub max_attributes: usize,
    /// Bytes of one attribute value, as written (before entity expansion).
    pub max_attr_value_bytes: usize,
    /// Bytes of one text node after entity expansion (adjacent text, references and CDATA merge).
    pub max_text_bytes: usize,
    /// Namespace declarations (`xmlns`, `xmlns:p`) on one element.
    pub max_namespace_decls: usize,
    /// Bytes of one element, attribute or processing-instruction-target name.
    pub max_name_bytes: usize,
    /// Bytes of the prolog (BOM, XML declaration, whitespace) plus the stream header tag.
    pub max_header_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_stanza_bytes: 1 << 20,
            max_depth: 64,
            max_attributes: 64,
            max_attr_value_bytes: 64 << 10,
            max_text_bytes: 1 << 20,
            max_namespace_decls: 64,
            max_name_bytes: 1024,
            max_header_bytes: 8 << 10,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_the_documented_values() {
        let l = Limits::default();
        assert_eq!(l.max_stanza_bytes, 1_048_576);
        assert_eq!(l.max_depth, 64);
        assert_eq!(l.max_attributes, 64);
        assert_eq!(l.max_attr_value_bytes, 65_536);
        assert_eq!(l.max_text_bytes, 1_048_576);
        assert_eq!(l.max_namespace_decls, 64);
        assert_eq!(l.max_name_bytes, 1024);
        assert_eq!(l.max_header_bytes, 8192);
    }
}
