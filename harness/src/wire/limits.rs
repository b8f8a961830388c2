//! Resource limits the codec enforces on hostile input (exceeding any is a policy-violation).
//!
//! SPEC.md Appendix B gives every size limit of the profile two values: a floor every receiver
//! MUST accept (STREAM-31) and a ceiling above which every receiver MUST refuse with
//! `policy-violation` (STREAM-32); between the two a receiver may do either. So there are two
//! sets of limits, different on purpose, and no `Default` (a caller has to say which it means):
//!
//! - [`Limits::harness_ceilings`]: the ceilings. The harness accepts everything up to them and
//!   refuses anything above, wherever it reads XML (the IUT's stream, `check-stanza`, scenario
//!   patterns): it is the most lenient receiver the profile allows, so it never refuses what a
//!   provider may send.
//! - [`Limits::profile_floors`]: exactly the floors. The reference provider uses them: it is the
//!   strictest receiver the profile allows, so the suite passing against it shows that no
//!   scenario needs more than the floors.
//!
//! `harness/tests/spec_limits.rs` checks both against the table in SPEC.md Appendix B.

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
    /// Attributes on one element, namespace declarations not included: those count against
    /// [`Limits::max_namespace_decls`] only (SPEC.md Appendix B).
    pub max_attributes: usize,
    /// Bytes of one attribute value, as written (before entity expansion).
    pub max_attr_value_bytes: usize,
    /// Bytes of one text node after entity expansion (adjacent text, references and CDATA merge).
    pub max_text_bytes: usize,
    /// Namespace declarations (`xmlns`, `xmlns:p`) on one element.
    pub max_namespace_decls: usize,
    /// Bytes of one element or processing-instruction-target name. Not a limit of the
    /// profile: a guard of the codec, the same in both sets.
    pub max_name_bytes: usize,
    /// Bytes of the prolog (BOM, XML declaration, whitespace) plus the stream header tag. Not a
    /// limit of the profile: a guard of the codec, the same in both sets.
    pub max_header_bytes: usize,
}

/// [`Limits::max_name_bytes`] of both sets.
const NAME_GUARD: usize = 1024;
/// [`Limits::max_header_bytes`] of both sets.
const HEADER_GUARD: usize = 8 << 10;

impl Limits {
    /// The "refuse above" column of SPEC.md Appendix B (STREAM-32): input exactly at a ceiling
    /// is accepted, one unit more is refused. What the harness itself applies.
    pub fn harness_ceilings() -> Self {
        Self {
            max_stanza_bytes: 1 << 20,
            max_depth: 128,
            max_attributes: 256,
            max_attr_value_bytes: 64 << 10,
            max_text_bytes: (1 << 20) - (16 << 10),
            max_namespace_decls: 256,
            max_name_bytes: NAME_GUARD,
            max_header_bytes: HEADER_GUARD,
        }
    }

    /// The "accept at least" column of SPEC.md Appendix B (STREAM-31), used as hard limits:
    /// input exactly at a floor is accepted, one unit more is refused. What the reference
    /// provider applies.
    pub fn profile_floors() -> Self {
        Self {
            max_stanza_bytes: 256 << 10,
            max_depth: 32,
            max_attributes: 64,
            max_attr_value_bytes: 8 << 10,
            max_text_bytes: (256 << 10) - (16 << 10),
            max_namespace_decls: 64,
            max_name_bytes: NAME_GUARD,
            max_header_bytes: HEADER_GUARD,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The values themselves are checked against SPEC.md in `tests/spec_limits.rs`; here, only
    /// that the two sets are ordered as the profile needs.
    #[test]
    fn every_floor_is_below_its_ceiling_and_the_guards_agree() {
        let (f, c) = (Limits::profile_floors(), Limits::harness_ceilings());
        for (floor, ceiling) in [
            (f.max_stanza_bytes, c.max_stanza_bytes),
            (f.max_depth, c.max_depth),
            (f.max_attributes, c.max_attributes),
            (f.max_attr_value_bytes, c.max_attr_value_bytes),
            (f.max_text_bytes, c.max_text_bytes),
            (f.max_namespace_decls, c.max_namespace_decls),
        ] {
            assert!(floor < ceiling, "{floor} >= {ceiling}");
        }
        assert!(f.max_text_bytes < f.max_stanza_bytes);
        assert!(c.max_text_bytes < c.max_stanza_bytes);
        assert_eq!(f.max_name_bytes, c.max_name_bytes);
        assert_eq!(f.max_header_bytes, c.max_header_bytes);
    }
}
