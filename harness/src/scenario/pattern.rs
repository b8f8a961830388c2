//! Stanza patterns: XML templates that an IUT's stanza is matched against.
//!
//! A pattern is written as the stanza it matches, in the `jabber:client`
//! namespace by default (`stream:` is declared too). Rules:
//! - name and namespace must be equal;
//! - every attribute of the pattern must be present with the same value; the
//!   value `*` accepts any value, `!` requires the attribute to be absent, and
//!   `@{name}` accepts any value and captures it as variable `name`;
//! - every child element of the pattern must match a distinct child of the
//!   stanza, in order; other children are allowed unless the pattern element
//!   has `gc:only='true'`, which allows no other element children;
//! - non-blank text in a pattern must equal the stanza's trimmed text (`*`
//!   accepts any non-empty text; `@{name}` captures it).

use crate::wire::{Element, Limits, Node};

use super::vars::Vars;

const WRAP_OPEN: &str = "<gc-pattern xmlns='jabber:client' xmlns:gc='urn:gatecheck:pattern' xmlns:stream='http://etherx.jabber.org/streams'>";
const WRAP_CLOSE: &str = "</gc-pattern>";
const ONLY: &str = "gc:only";

/// Parses a pattern after substitution.
pub fn parse(pattern: &str) -> Result<Element, String> {
    let mut doc = String::with_capacity(pattern.len() + WRAP_OPEN.len() + WRAP_CLOSE.len());
    doc.push_str(WRAP_OPEN);
    doc.push_str(pattern);
    doc.push_str(WRAP_CLOSE);
    let wrapper = crate::wire::parse_fragment(doc.as_bytes(), &Limits::harness_ceilings())
        .map_err(|e| format!("pattern is not well-formed XML: {e}"))?;
    let mut elements = wrapper.children.into_iter().filter_map(|n| match n {
        Node::Element(e) => Some(e),
        Node::Text(_) => None,
    });
    match (elements.next(), elements.next()) {
        (Some(e), None) => Ok(e),
        (None, _) => Err("pattern holds no element".into()),
        (Some(_), Some(_)) => Err("pattern holds more than one top-level element".into()),
    }
}

/// Validates a template before any value is known: variables become `x`.
pub fn validate_template(template: &str) -> Result<(), String> {
    super::vars::check_template(template)?;
    let mut probe = Vars::new(0);
    let mut names = Vec::new();
    let mut rest = template;
    while let Some(at) = rest.find("${") {
        let after = &rest[at + 2..];
        let Some(end) = after.find('}') else { break };
        names.push(after[..end].to_string());
        rest = &after[end + 1..];
    }
    for n in names {
        probe.set(&n, "x");
    }
    let text = probe.substitute(template)?;
    parse(&text).map(|_| ())
}

/// Why a stanza does not match, with the path to the first difference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mismatch {
    pub path: String,
    pub reason: String,
}

impl std::fmt::Display for Mismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.path, self.reason)
    }
}

/// Matches `actual` against `pattern`; on success returns the captures.
pub fn matches(pattern: &Element, actual: &Element) -> Result<Vec<(String, String)>, Mismatch> {
    let mut captures = Vec::new();
    match_at(
        pattern,
        actual,
        &format!("/{}", pattern.name),
        &mut captures,
    )?;
    Ok(captures)
}

fn capture_name(value: &str) -> Option<&str> {
    value.strip_prefix("@{")?.strip_suffix('}')
}

fn match_at(
    p: &Element,
    a: &Element,
    path: &str,
    caps: &mut Vec<(String, String)>,
) -> Result<(), Mismatch> {
    let fail = |reason: String| Mismatch {
        path: path.to_string(),
        reason,
    };
    if p.name != a.name || p.ns != a.ns {
        return Err(fail(format!(
            "expected element {{{}}}{}, got {{{}}}{}",
            p.ns, p.name, a.ns, a.name
        )));
    }
    let mut only = false;
    for (k, v) in &p.attrs {
        if k == ONLY {
            only = v == "true";
            continue;
        }
        let got = a.attr(k);
        match (v.as_str(), got) {
            ("!", None) => {}
            ("!", Some(g)) => return Err(fail(format!("attribute {k} must be absent, got {g:?}"))),
            (_, None) => return Err(fail(format!("attribute {k} is missing (expected {v:?})"))),
            ("*", Some(_)) => {}
            (v, Some(g)) => match capture_name(v) {
                Some(name) => caps.push((name.to_string(), g.to_string())),
                None if v == g => {}
                None => return Err(fail(format!("attribute {k}: expected {v:?}, got {g:?}"))),
            },
        }
    }

    let p_text = p.text();
    let p_text = p_text.trim();
    if !p_text.is_empty() {
        let a_text = a.text();
        let a_text = a_text.trim();
        if let Some(name) = capture_name(p_text) {
            caps.push((name.to_string(), a_text.to_string()));
        } else if p_text == "*" {
            if a_text.is_empty() {
                return Err(fail("expected some text, got none".into()));
            }
        } else if p_text != a_text {
            return Err(fail(format!("text: expected {p_text:?}, got {a_text:?}")));
        }
    }

    let a_children: Vec<&Element> = a.child_elements().collect();
    let mut next = 0;
    for pc in p.child_elements() {
        let child_path = format!("{path}/{}", pc.name);
        let mut found = None;
        let mut first_miss = None;
        for (i, ac) in a_children.iter().enumerate().skip(next) {
            let mut trial = Vec::new();
            match match_at(pc, ac, &child_path, &mut trial) {
                Ok(()) => {
                    caps.extend(trial);
                    found = Some(i);
                    break;
                }
                Err(m) => {
                    if first_miss.is_none() && ac.name == pc.name && ac.ns == pc.ns {
                        first_miss = Some(m);
                    }
                }
            }
        }
        match found {
            Some(i) => next = i + 1,
            None => {
                return Err(first_miss.unwrap_or_else(|| Mismatch {
                    path: child_path,
                    reason: format!("missing child {{{}}}{}", pc.ns, pc.name),
                }));
            }
        }
    }
    if only {
        let expected = p.child_elements().count();
        if a_children.len() != expected {
            let names: Vec<&str> = a_children.iter().map(|c| c.name.as_str()).collect();
            return Err(fail(format!(
                "expected exactly {expected} child element(s), got {} ({})",
                a_children.len(),
                names.join(", ")
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stanza(xml: &str) -> Element {
        parse(xml).expect("test stanza parses")
    }

    #[test]
    fn attributes_wildcards_and_captures() {
        let p = parse("<iq type='result' id='@{id}' from='*' to='!'/>").unwrap();
        let caps = matches(&p, &stanza("<iq type='result' id='q1' from='a@b'/>")).unwrap();
        assert_eq!(caps, vec![("id".to_string(), "q1".to_string())]);
        let m = matches(&p, &stanza("<iq type='error' id='q1' from='a'/>")).unwrap_err();
        assert_eq!(
            m.to_string(),
            "/iq: attribute type: expected \"result\", got \"error\""
        );
        let m = matches(&p, &stanza("<iq type='result' id='q1'/>")).unwrap_err();
        assert_eq!(
            m.to_string(),
            "/iq: attribute from is missing (expected \"*\")"
        );
        let m = matches(&p, &stanza("<iq type='result' id='q1' from='a' to='b'/>")).unwrap_err();
        assert_eq!(m.to_string(), "/iq: attribute to must be absent, got \"b\"");
    }

    #[test]
    fn children_in_order_and_only() {
        let p = parse("<iq type='error'><error type='cancel'><service-unavailable xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>").unwrap();
        let ok = stanza(
            "<iq type='error'><ping xmlns='urn:xmpp:ping'/><error type='cancel'><service-unavailable xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/><text xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'>no</text></error></iq>",
        );
        assert!(matches(&p, &ok).is_ok());
        let bad = stanza(
            "<iq type='error'><error type='cancel'><item-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>",
        );
        let m = matches(&p, &bad).unwrap_err();
        assert_eq!(m.path, "/iq/error/service-unavailable");

        let empty = parse("<iq type='result' gc:only='true'/>").unwrap();
        assert!(matches(&empty, &stanza("<iq type='result'/>")).is_ok());
        let m = matches(&empty, &stanza("<iq type='result'><x xmlns='y'/></iq>")).unwrap_err();
        assert_eq!(m.reason, "expected exactly 0 child element(s), got 1 (x)");
    }

    #[test]
    fn namespace_and_text() {
        let p =
            parse("<message><received xmlns='urn:xmpp:receipts' id='m1'/><body>*</body></message>")
                .unwrap();
        let m = matches(
            &p,
            &stanza(
                "<message><received xmlns='urn:xmpp:receipt' id='m1'/><body>hi</body></message>",
            ),
        )
        .unwrap_err();
        assert_eq!(m.reason, "missing child {urn:xmpp:receipts}received");
        assert!(matches(&p, &stanza("<message><received xmlns='urn:xmpp:receipts' id='m1'/><body>hi</body></message>")).is_ok());
        let m = matches(
            &p,
            &stanza("<message><received xmlns='urn:xmpp:receipts' id='m1'/><body/></message>"),
        )
        .unwrap_err();
        assert_eq!(m.reason, "expected some text, got none");
    }

    #[test]
    fn invalid_patterns_are_reported() {
        assert!(validate_template("<iq type='${x}'/>").is_ok());
        assert!(
            validate_template("<iq")
                .unwrap_err()
                .starts_with("pattern is not well-formed XML")
        );
        assert_eq!(
            validate_template("<a/><b/>").unwrap_err(),
            "pattern holds more than one top-level element"
        );
    }
}
