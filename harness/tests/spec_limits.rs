//! The codec's two sets of limits against the table of SPEC.md Appendix B, read out of the
//! embedded SPEC.md: `Limits::harness_ceilings` is the "refuse above" column and
//! `Limits::profile_floors` the "accept at least" column, and the codec behaves accordingly at
//! each edge. Every number a probe is built from comes from the table, never from `Limits`.
//! The scenario fixtures that probe the edges are checked to sit exactly on them.

use std::path::Path;

use gatecheck::spec::{EMBEDDED_SPEC, SizeLimit, size_limits};
use gatecheck::transport::MAX_FRAME;
use gatecheck::wire::{
    Limits, StreamErrorCondition, StreamEvent, Violation, WireError, fixture_bytes, parse_all,
};

/// The profile's size limits, one per row of the table that the codec enforces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    Stanza,
    Depth,
    Attributes,
    NamespaceDecls,
    AttrValue,
    Text,
}

const FIELDS: [Field; 6] = [
    Field::Stanza,
    Field::Depth,
    Field::Attributes,
    Field::NamespaceDecls,
    Field::AttrValue,
    Field::Text,
];

impl Field {
    /// The row of Appendix B that gives this limit, by the start of its first cell.
    fn row_prefix(self) -> &'static str {
        match self {
            Field::Stanza => "serialized stanza size",
            Field::Depth => "element nesting depth",
            Field::Attributes => "attributes per element",
            Field::NamespaceDecls => "namespace declarations",
            Field::AttrValue => "attribute value length",
            Field::Text => "text node length",
        }
    }

    fn get(self, l: &Limits) -> usize {
        match self {
            Field::Stanza => l.max_stanza_bytes,
            Field::Depth => l.max_depth,
            Field::Attributes => l.max_attributes,
            Field::NamespaceDecls => l.max_namespace_decls,
            Field::AttrValue => l.max_attr_value_bytes,
            Field::Text => l.max_text_bytes,
        }
    }

    fn get_mut(self, l: &mut Limits) -> &mut usize {
        match self {
            Field::Stanza => &mut l.max_stanza_bytes,
            Field::Depth => &mut l.max_depth,
            Field::Attributes => &mut l.max_attributes,
            Field::NamespaceDecls => &mut l.max_namespace_decls,
            Field::AttrValue => &mut l.max_attr_value_bytes,
            Field::Text => &mut l.max_text_bytes,
        }
    }

    /// `l` with this one limit moved by `delta`.
    fn shifted(self, l: &Limits, delta: isize) -> Limits {
        let mut l = l.clone();
        let v = self.get_mut(&mut l);
        *v = v.checked_add_signed(delta).expect("limit in range");
        l
    }

    /// Whether `v` is the refusal of this limit.
    fn refused_by(self, v: &Violation) -> bool {
        matches!(
            (self, v),
            (Field::Stanza, Violation::StanzaTooLarge { .. })
                | (Field::Depth, Violation::TooDeep { .. })
                | (Field::Attributes, Violation::TooManyAttributes { .. })
                | (
                    Field::NamespaceDecls,
                    Violation::TooManyNamespaceDecls { .. }
                )
                | (Field::AttrValue, Violation::AttributeValueTooLong { .. })
                | (Field::Text, Violation::TextTooLong { .. })
        )
    }

    /// A stanza that measures exactly `n` on this limit and little on every other one.
    fn probe(self, n: usize) -> String {
        match self {
            Field::Stanza => {
                let (head, foot) = ("<message id='s'><x xmlns='urn:x'>", "</x></message>");
                let fill = n - head.len() - foot.len();
                let (children, text) = (fill / 4, fill % 4);
                format!(
                    "{head}{}{}{foot}",
                    "<p/>".repeat(children),
                    "A".repeat(text)
                )
            }
            Field::Depth => format!(
                "<message id='s'>{}deepest{}</message>",
                "<n>".repeat(n - 1),
                "</n>".repeat(n - 1)
            ),
            Field::Attributes => {
                let attrs: String = (1..=n).map(|i| format!(" a{i}='{i}'")).collect();
                format!("<message id='s'><y{attrs}/></message>")
            }
            Field::NamespaceDecls => {
                let decls: String = (1..n).map(|i| format!(" xmlns:p{i}='urn:p{i}'")).collect();
                format!("<message><x xmlns='urn:p0'{decls}/></message>")
            }
            Field::AttrValue => format!("<message id='s'><x v='{}'/></message>", "v".repeat(n)),
            Field::Text => format!("<message id='s'><x>{}</x></message>", "A".repeat(n)),
        }
    }
}

/// The table rows, each matched to the one field it gives (the Noise frame row aside).
fn table() -> Vec<(Field, SizeLimit)> {
    let rows = size_limits(EMBEDDED_SPEC).unwrap_or_else(|e| panic!("{e}"));
    let mut out = Vec::new();
    for row in rows {
        if row.limit.starts_with("Noise frame length") {
            continue;
        }
        let fields: Vec<Field> = FIELDS
            .into_iter()
            .filter(|f| row.limit.starts_with(f.row_prefix()))
            .collect();
        assert_eq!(
            fields.len(),
            1,
            "SPEC.md:{}: the row {:?} must match exactly one codec limit",
            row.line,
            row.limit
        );
        out.push((fields[0], row));
    }
    for f in FIELDS {
        assert_eq!(
            out.iter().filter(|(g, _)| *g == f).count(),
            1,
            "{f:?}: Appendix B needs exactly one row for it"
        );
    }
    out
}

fn n(v: u64) -> usize {
    usize::try_from(v).expect("fits")
}

/// `stanza` inside a stream, as the receiver of a bound session sees it.
fn in_stream(stanza: &[u8]) -> Vec<u8> {
    let mut doc = b"<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' from='gk.gatecheck.test' id='s1' version='1.0'>".to_vec();
    doc.extend_from_slice(stanza);
    doc
}

fn parse(stanza: &[u8], limits: &Limits) -> Result<(), WireError> {
    let events = parse_all(&in_stream(stanza), limits)?;
    assert!(
        matches!(
            events.as_slice(),
            [StreamEvent::Header(_), StreamEvent::Stanza(_)]
        ),
        "one stanza expected"
    );
    Ok(())
}

fn refused(what: &str, f: Field, stanza: &[u8], limits: &Limits) {
    match parse(stanza, limits) {
        Ok(()) => panic!("{what}: accepted"),
        Err(e) => {
            assert_eq!(
                e.condition(),
                StreamErrorCondition::PolicyViolation,
                "{what}: {e}"
            );
            assert!(f.refused_by(&e.violation), "{what}: refused for {e}");
        }
    }
}

fn accepted(what: &str, stanza: &[u8], limits: &Limits) {
    if let Err(e) = parse(stanza, limits) {
        panic!("{what}: refused: {e}");
    }
}

#[test]
fn harness_ceilings_are_the_refuse_above_column() {
    let ceilings = Limits::harness_ceilings();
    for (f, row) in table() {
        assert_eq!(
            f.get(&ceilings) as u64,
            row.refuse_above,
            "SPEC.md:{}: {}",
            row.line,
            row.limit
        );
    }
}

#[test]
fn profile_floors_are_the_accept_at_least_column() {
    let floors = Limits::profile_floors();
    for (f, row) in table() {
        assert_eq!(
            f.get(&floors) as u64,
            row.accept_at_least,
            "SPEC.md:{}: {}",
            row.line,
            row.limit
        );
    }
}

#[test]
fn the_noise_frame_row_is_the_transport_limit() {
    let rows = size_limits(EMBEDDED_SPEC).unwrap();
    let row = rows
        .iter()
        .find(|r| r.limit.starts_with("Noise frame length"))
        .expect("a Noise frame row");
    assert_eq!(row.accept_at_least, MAX_FRAME as u64);
    assert_eq!(row.refuse_above, MAX_FRAME as u64);
}

/// With the floors, input exactly at each floor is accepted and one unit more refused.
#[test]
fn the_floors_accept_each_floor_and_refuse_one_more() {
    let floors = Limits::profile_floors();
    for (f, row) in table() {
        let at = n(row.accept_at_least);
        accepted(&format!("{f:?} at {at}"), f.probe(at).as_bytes(), &floors);
        let over = at + 1;
        refused(
            &format!("{f:?} at {over}"),
            f,
            f.probe(over).as_bytes(),
            &floors,
        );
    }
}

/// With the ceilings, input exactly at each ceiling is accepted and one unit more refused;
/// and everything at the floors is accepted too.
#[test]
fn the_ceilings_accept_each_ceiling_and_refuse_one_more() {
    let ceilings = Limits::harness_ceilings();
    for (f, row) in table() {
        let at = n(row.refuse_above);
        accepted(&format!("{f:?} at {at}"), f.probe(at).as_bytes(), &ceilings);
        let over = at + 1;
        refused(
            &format!("{f:?} at {over}"),
            f,
            f.probe(over).as_bytes(),
            &ceilings,
        );
        let floor = n(row.accept_at_least);
        accepted(
            &format!("{f:?} at {floor}"),
            f.probe(floor).as_bytes(),
            &ceilings,
        );
    }
}

/// Namespace declarations are not attributes (Appendix B): an element at both floors at once
/// is accepted with the floors, and one at both ceilings with the ceilings.
#[test]
fn declarations_are_counted_apart_from_attributes() {
    let rows = table();
    let row = |f: Field| rows.iter().find(|(g, _)| *g == f).map(|(_, r)| r).unwrap();
    let (attrs, decls) = (row(Field::Attributes), row(Field::NamespaceDecls));
    let element = |a: u64, d: u64| {
        let decls: String = (1..n(d))
            .map(|i| format!(" xmlns:p{i}='urn:p{i}'"))
            .collect();
        let attrs: String = (1..=n(a)).map(|i| format!(" a{i}='{i}'")).collect();
        format!("<message><x xmlns='urn:p0'{decls}{attrs}/></message>")
    };
    let floors = Limits::profile_floors();
    let both = element(attrs.accept_at_least, decls.accept_at_least);
    accepted("floors", both.as_bytes(), &floors);
    let more = element(attrs.accept_at_least + 1, decls.accept_at_least);
    refused(
        "floors + 1 attribute",
        Field::Attributes,
        more.as_bytes(),
        &floors,
    );
    let ceilings = Limits::harness_ceilings();
    let both = element(attrs.refuse_above, decls.refuse_above);
    accepted("ceilings", both.as_bytes(), &ceilings);
}

fn fixture(rel: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fixtures")
        .join(rel);
    fixture_bytes(&path).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// The fixtures of the `stream/floor-*` scenarios and of `stream/limits-minimum-accepted` sit
/// exactly on their floors: accepted with the floors, refused for that very limit when it is
/// one lower (which is what the `below-floors` mutant does).
#[test]
fn floor_fixtures_sit_exactly_on_their_floors() {
    let floors = Limits::profile_floors();
    let cases: &[(&str, &[Field])] = &[
        ("stream/floor-stanza-size.gen", &[Field::Stanza]),
        ("stream/floor-nesting-depth.gen", &[Field::Depth]),
        ("stream/floor-attributes.gen", &[Field::Attributes]),
        (
            "stream/floor-namespace-declarations.gen",
            &[Field::NamespaceDecls],
        ),
        ("stream/floor-attribute-value.gen", &[Field::AttrValue]),
        ("stream/floor-text-node.gen", &[Field::Text]),
        ("stream/accept-limits.gen", &FIELDS),
    ];
    for &(rel, fields) in cases {
        let bytes = fixture(rel);
        accepted(rel, &bytes, &floors);
        for &f in fields {
            refused(
                &format!("{rel}, {f:?} one lower"),
                f,
                &bytes,
                &f.shifted(&floors, -1),
            );
        }
    }
}

/// The fixtures of the `stream/limit-*` scenarios (but the 20 MiB one) sit exactly one above
/// their ceilings: refused for that limit with the ceilings, accepted when it is one higher
/// (which is what the `above-ceilings` mutant does).
#[test]
fn ceiling_fixtures_sit_exactly_one_above_their_ceilings() {
    let ceilings = Limits::harness_ceilings();
    for (rel, f) in [
        ("stream/over-stanza-size.gen", Field::Stanza),
        ("stream/over-nesting-depth.gen", Field::Depth),
        ("stream/over-attributes.gen", Field::Attributes),
        (
            "stream/over-namespace-declarations.gen",
            Field::NamespaceDecls,
        ),
        ("stream/over-attribute-value.gen", Field::AttrValue),
        ("stream/over-text-node.gen", Field::Text),
    ] {
        let bytes = fixture(rel);
        refused(rel, f, &bytes, &ceilings);
        accepted(
            &format!("{rel}, {f:?} one higher"),
            &bytes,
            &f.shifted(&ceilings, 1),
        );
    }
}
