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
//! - `gc:children='any-order'` on a pattern element drops the order: its
//!   children must match distinct children of the stanza in any order (a
//!   bipartite matching, so a loose pattern child never takes the one stanza
//!   child a stricter sibling needs); `gc:optional='true'` on a pattern child
//!   lets it be absent. With `gc:only='true'`, "only these children, in any
//!   order, each optional" is a closed set of allowed children;
//! - `gc:absent='true'` on a pattern child inverts it: no child of the stanza may match it
//!   (a disco#info result that must not list a feature), whatever the other rules;
//! - non-blank text in a pattern must equal the stanza's trimmed text (`*`
//!   accepts any non-empty text; `@{name}` captures it).

use crate::wire::{Element, Limits, Node};

use super::vars::Vars;

const WRAP_OPEN: &str = "<gc-pattern xmlns='jabber:client' xmlns:gc='urn:gatecheck:pattern' xmlns:stream='http://etherx.jabber.org/streams'>";
const WRAP_CLOSE: &str = "</gc-pattern>";
const ONLY: &str = "gc:only";
const CHILDREN: &str = "gc:children";
const OPTIONAL: &str = "gc:optional";
const ABSENT: &str = "gc:absent";
const ANY_ORDER: &str = "any-order";
const IN_ORDER: &str = "in-order";

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
    let top = match (elements.next(), elements.next()) {
        (Some(e), None) => e,
        (None, _) => return Err("pattern holds no element".into()),
        (Some(_), Some(_)) => return Err("pattern holds more than one top-level element".into()),
    };
    for directive in [OPTIONAL, ABSENT] {
        if top.attr(directive).is_some() {
            return Err(format!(
                "/{}: {directive} belongs on a child element: the stanza itself cannot be absent",
                top.name
            ));
        }
    }
    check_directives(&top, &format!("/{}", top.name))?;
    Ok(top)
}

/// Refuses a `gc:` attribute this module does not know, or a value it does not define, so
/// that a typo never turns a check off.
fn check_directives(e: &Element, path: &str) -> Result<(), String> {
    for (k, v) in &e.attrs {
        let Some(name) = k.strip_prefix("gc:") else {
            continue;
        };
        let allowed: &[&str] = match k.as_str() {
            ONLY | OPTIONAL | ABSENT => &["true", "false"],
            CHILDREN => &[IN_ORDER, ANY_ORDER],
            _ => {
                return Err(format!(
                    "{path}: unknown pattern attribute gc:{name} (known: {ONLY}, {CHILDREN}, {OPTIONAL}, {ABSENT})"
                ));
            }
        };
        if !allowed.contains(&v.as_str()) {
            return Err(format!(
                "{path}: {k}={v:?} is not one of {}",
                allowed.join(", ")
            ));
        }
    }
    for c in e.child_elements() {
        check_directives(c, &format!("{path}/{}", c.name))?;
    }
    Ok(())
}

fn flag(e: &Element, name: &str) -> bool {
    e.attr(name) == Some("true")
}

/// Validates a template before any value is known: variables become `x` (an
/// `iut.lacks.CAPABILITY` flag `true`).
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
        // A capability flag stands where `true` or `false` must (`gc:absent`).
        let value = if n.starts_with("iut.lacks.") {
            "true"
        } else {
            "x"
        };
        probe.set(&n, value);
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
    for (k, v) in &p.attrs {
        if k.starts_with("gc:") {
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
    for pc in p.child_elements().filter(|c| flag(c, ABSENT)) {
        let child_path = format!("{path}/{}", pc.name);
        if let Some(found) = a_children
            .iter()
            .find(|ac| match_at(pc, ac, &child_path, &mut Vec::new()).is_ok())
        {
            return Err(Mismatch {
                path: child_path,
                reason: format!(
                    "a child matching this must be absent ({ABSENT}), got {}",
                    found.to_xml()
                ),
            });
        }
    }
    let only = flag(p, ONLY);
    if p.attr(CHILDREN) == Some(ANY_ORDER) {
        return match_any_order(p, &a_children, only, path, caps);
    }
    let mut next = 0;
    let mut matched = 0;
    for pc in p.child_elements().filter(|c| !flag(c, ABSENT)) {
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
            Some(i) => {
                next = i + 1;
                matched += 1;
            }
            None if flag(pc, OPTIONAL) => {}
            None => {
                return Err(first_miss.unwrap_or_else(|| Mismatch {
                    path: child_path,
                    reason: format!("missing child {{{}}}{}", pc.ns, pc.name),
                }));
            }
        }
    }
    if only && a_children.len() != matched {
        let names: Vec<&str> = a_children.iter().map(|c| c.name.as_str()).collect();
        return Err(fail(format!(
            "expected exactly {matched} child element(s), got {} ({})",
            a_children.len(),
            names.join(", ")
        )));
    }
    Ok(())
}

/// Whether a pattern child matches a stanza child, and with which captures.
type Fit = Option<Vec<(String, String)>>;

/// `gc:children='any-order'`: each pattern child takes a distinct stanza child, wherever it
/// is. Which pattern child may take which stanza child is a bipartite graph; a maximum
/// matching (augmenting paths, required pattern children first, so that an optional one
/// never keeps a required one out) decides, in time polynomial in the number of children
/// whatever the IUT sends.
fn match_any_order(
    p: &Element,
    a_children: &[&Element],
    only: bool,
    path: &str,
    caps: &mut Vec<(String, String)>,
) -> Result<(), Mismatch> {
    let p_children: Vec<&Element> = p.child_elements().filter(|c| !flag(c, ABSENT)).collect();
    // fits[i][j]: the captures when pattern child i matches stanza child j.
    let mut fits: Vec<Vec<Fit>> = Vec::with_capacity(p_children.len());
    let mut misses: Vec<Option<Mismatch>> = Vec::with_capacity(p_children.len());
    for pc in &p_children {
        let child_path = format!("{path}/{}", pc.name);
        let mut row = Vec::with_capacity(a_children.len());
        let mut first_miss = None;
        for ac in a_children {
            let mut trial = Vec::new();
            match match_at(pc, ac, &child_path, &mut trial) {
                Ok(()) => row.push(Some(trial)),
                Err(m) => {
                    if first_miss.is_none() && ac.name == pc.name && ac.ns == pc.ns {
                        first_miss = Some(m);
                    }
                    row.push(None);
                }
            }
        }
        fits.push(row);
        misses.push(first_miss);
    }

    // owner[j]: the pattern child that holds stanza child j.
    let mut owner: Vec<Option<usize>> = vec![None; a_children.len()];
    let required = (0..p_children.len()).filter(|&i| !flag(p_children[i], OPTIONAL));
    let optional = (0..p_children.len()).filter(|&i| flag(p_children[i], OPTIONAL));
    for i in required.chain(optional) {
        let mut seen = vec![false; a_children.len()];
        if augment(i, &fits, &mut owner, &mut seen) || flag(p_children[i], OPTIONAL) {
            continue;
        }
        let pc = p_children[i];
        let child_path = format!("{path}/{}", pc.name);
        let any_fit = fits[i].iter().any(Option::is_some);
        return Err(if any_fit {
            Mismatch {
                path: child_path,
                reason: format!(
                    "no distinct child left for {{{}}}{}: every child it matches is taken by \
                     another child of the pattern",
                    pc.ns, pc.name
                ),
            }
        } else {
            let namesakes = a_children
                .iter()
                .filter(|c| c.name == pc.name && c.ns == pc.ns)
                .count();
            match misses[i].take() {
                // In any order, the first namesake is no better a guess than the others.
                Some(first) => Mismatch {
                    path: child_path,
                    reason: format!(
                        "no {{{}}}{} child matches ({namesakes} compared; the first: {})",
                        pc.ns, pc.name, first
                    ),
                },
                None => Mismatch {
                    path: child_path,
                    reason: format!("missing child {{{}}}{}", pc.ns, pc.name),
                },
            }
        });
    }
    if only && let Some(j) = owner.iter().position(Option::is_none) {
        let extra = a_children[j];
        return Err(Mismatch {
            path: format!("{path}/{}", extra.name),
            reason: format!(
                "child {{{}}}{} is not one of the children the pattern allows ({ONLY})",
                extra.ns, extra.name
            ),
        });
    }
    // Captures in pattern order, so that a rerun with the same stanza binds the same values.
    let mut taken: Vec<(usize, usize)> = owner
        .iter()
        .enumerate()
        .filter_map(|(j, o)| o.map(|i| (i, j)))
        .collect();
    taken.sort_unstable();
    for (i, j) in taken {
        if let Some(found) = fits[i][j].take() {
            caps.extend(found);
        }
    }
    Ok(())
}

/// Kuhn's augmenting path from pattern child `i`.
fn augment(i: usize, fits: &[Vec<Fit>], owner: &mut [Option<usize>], seen: &mut [bool]) -> bool {
    for j in 0..owner.len() {
        if fits[i][j].is_none() || seen[j] {
            continue;
        }
        seen[j] = true;
        let free = match owner[j] {
            None => true,
            Some(other) => augment(other, fits, owner, seen),
        };
        if free {
            owner[j] = Some(i);
            return true;
        }
    }
    false
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

    const DISCO: &str = "<query xmlns='http://jabber.org/protocol/disco#info' gc:children='any-order'>\
        <feature var='urn:xmpp:ping'/><identity category='client' type='@{kind}'/>\
        <feature var='http://jabber.org/protocol/disco#info'/></query>";

    #[test]
    fn any_order_children_match_wherever_they_are() {
        let p = parse(DISCO).unwrap();
        let answer = stanza(
            "<query xmlns='http://jabber.org/protocol/disco#info'>\
             <identity category='client' type='phone'/>\
             <feature var='http://jabber.org/protocol/disco#info'/>\
             <feature var='jabber:iq:version'/><feature var='urn:xmpp:ping'/></query>",
        );
        let caps = matches(&p, &answer).unwrap();
        assert_eq!(caps, vec![("kind".to_string(), "phone".to_string())]);
        // The same children in pattern order would not match the answer in order.
        let in_order = parse(&DISCO.replace(" gc:children='any-order'", "")).unwrap();
        assert!(matches(&in_order, &answer).is_err());

        let no_ping = stanza(
            "<query xmlns='http://jabber.org/protocol/disco#info'>\
             <identity category='client' type='pc'/>\
             <feature var='http://jabber.org/protocol/disco#info'/></query>",
        );
        let m = matches(&p, &no_ping).unwrap_err();
        assert_eq!(m.path, "/query/feature");
        assert_eq!(
            m.reason,
            "no {http://jabber.org/protocol/disco#info}feature child matches \
             (1 compared; the first: /query/feature: attribute var: expected \"urn:xmpp:ping\", got \
             \"http://jabber.org/protocol/disco#info\")"
        );
        let m = matches(&p, &stanza("<query xmlns='http://jabber.org/protocol/disco#info'><feature var='urn:xmpp:ping'/><feature var='http://jabber.org/protocol/disco#info'/></query>")).unwrap_err();
        assert_eq!(
            m.to_string(),
            "/query/identity: missing child {http://jabber.org/protocol/disco#info}identity"
        );
    }

    #[test]
    fn any_order_children_take_distinct_stanza_children() {
        // A loose first child must not take the one stanza child its stricter sibling needs.
        let p = parse("<x xmlns='y' gc:children='any-order'><f/><f v='1'/></x>").unwrap();
        assert!(matches(&p, &stanza("<x xmlns='y'><f v='1'/><f v='2'/></x>")).is_ok());
        let m = matches(&p, &stanza("<x xmlns='y'><f v='1'/></x>")).unwrap_err();
        assert_eq!(m.path, "/x/f");
        assert_eq!(
            m.reason,
            "no distinct child left for {y}f: every child it matches is taken by another child of the pattern"
        );
    }

    #[test]
    fn only_these_children_in_any_order_each_optional() {
        let p = parse(
            "<presence gc:children='any-order' gc:only='true'>\
             <show gc:optional='true' gc:only='true'/>\
             <priority gc:optional='true' gc:only='true'/>\
             <c xmlns='http://jabber.org/protocol/caps' gc:optional='true' gc:only='true'/></presence>",
        )
        .unwrap();
        for ok in [
            "<presence/>",
            "<presence><priority>5</priority><show>away</show></presence>",
            "<presence><c xmlns='http://jabber.org/protocol/caps' hash='sha-1' node='n' ver='v'/><show>dnd</show></presence>",
        ] {
            assert!(matches(&p, &stanza(ok)).is_ok(), "{ok}");
        }
        let m = matches(
            &p,
            &stanza("<presence><show>away</show><status>+4915112345678</status></presence>"),
        )
        .unwrap_err();
        assert_eq!(
            m.to_string(),
            "/presence/status: child {jabber:client}status is not one of the children the pattern allows (gc:only)"
        );
        // Each allowed child once: a second <show/> has no pattern child left.
        let m = matches(
            &p,
            &stanza("<presence><show>away</show><show>xa</show></presence>"),
        )
        .unwrap_err();
        assert_eq!(m.path, "/presence/show");
        // The caps element's own children are closed too.
        let m = matches(
            &p,
            &stanza("<presence><c xmlns='http://jabber.org/protocol/caps'><nick xmlns='http://jabber.org/protocol/nick'>Al</nick></c></presence>"),
        )
        .unwrap_err();
        assert_eq!(m.path, "/presence/c");
    }

    #[test]
    fn absent_children_must_match_nothing() {
        let p = parse(
            "<query xmlns='http://jabber.org/protocol/disco#info' gc:children='any-order'>\
             <feature var='urn:xmpp:ping'/>\
             <feature var='http://jabber.org/protocol/chatstates' gc:absent='true'/></query>",
        )
        .unwrap();
        let ok = parse(
            "<query xmlns='http://jabber.org/protocol/disco#info'><feature var='x'/><feature var='urn:xmpp:ping'/></query>",
        )
        .unwrap();
        assert!(matches(&p, &ok).is_ok());
        let listed = parse(
            "<query xmlns='http://jabber.org/protocol/disco#info'><feature var='urn:xmpp:ping'/><feature var='http://jabber.org/protocol/chatstates'/></query>",
        )
        .unwrap();
        let m = matches(&p, &listed).unwrap_err();
        assert_eq!(m.path, "/query/feature");
        assert!(m.reason.contains("must be absent"), "{m}");
        // In order too, and never counted as a child the stanza must have.
        let in_order = parse(&p_text_without_any_order()).unwrap();
        assert!(matches(&in_order, &ok).is_ok());
        assert!(matches(&in_order, &listed).is_err());
        assert!(parse("<iq gc:absent='true'/>").is_err());
    }

    fn p_text_without_any_order() -> String {
        "<query xmlns='http://jabber.org/protocol/disco#info'>\
         <feature var='http://jabber.org/protocol/chatstates' gc:absent='true'/>\
         <feature var='urn:xmpp:ping'/></query>"
            .to_string()
    }

    #[test]
    fn optional_children_in_order() {
        let p = parse("<m gc:only='true'><a gc:optional='true'/><b/></m>").unwrap();
        assert!(matches(&p, &stanza("<m><b/></m>")).is_ok());
        assert!(matches(&p, &stanza("<m><a/><b/></m>")).is_ok());
        let m = matches(&p, &stanza("<m><b/><c/></m>")).unwrap_err();
        assert_eq!(
            m.reason,
            "expected exactly 1 child element(s), got 2 (b, c)"
        );
        let m = matches(&p, &stanza("<m><a/></m>")).unwrap_err();
        assert_eq!(m.reason, "missing child {jabber:client}b");
    }

    #[test]
    fn pattern_directives_are_checked() {
        for (pattern, want) in [
            (
                "<iq gc:onyl='true'/>",
                "/iq: unknown pattern attribute gc:onyl (known: gc:only, gc:children, gc:optional, gc:absent)",
            ),
            (
                "<iq><q xmlns='x' gc:children='any'/></iq>",
                "/iq/q: gc:children=\"any\" is not one of in-order, any-order",
            ),
            (
                "<iq gc:only='yes'/>",
                "/iq: gc:only=\"yes\" is not one of true, false",
            ),
            (
                "<iq gc:optional='true'/>",
                "/iq: gc:optional belongs on a child element: the stanza itself cannot be absent",
            ),
        ] {
            assert_eq!(validate_template(pattern).unwrap_err(), want, "{pattern}");
        }
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
