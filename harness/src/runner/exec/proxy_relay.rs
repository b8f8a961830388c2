//! The `relay` step of a proxy scenario: one stanza written on one side of the proxy, read on
//! the other, and judged. The infoset must be the one written, reformatting aside (PROXY-7),
//! with nothing that carries an identifier added, dropped or changed and nothing of the
//! proxy's own added (PROXY-8); every `<encrypted xmlns='eu.siacs.conversations.axolotl'>`
//! must arrive as exactly the bytes written (PROXY-6); and the stanza must be out within
//! 1 s of its last byte going in (PROXY-15).

use std::time::Duration;

use tokio::time::Instant;

use super::Exec;
use crate::roles::Deviation;
use crate::roles::conn::Inbound;
use crate::roles::downstream::{self, Down};
use crate::roles::gatekeeper_server as gk;
use crate::roles::proxy_header::hex;
use crate::scenario::proxy_step::{PAD_MARKER, Relay, RelayFrom};
use crate::wire::{Element, Framing, Limits, Node, StreamEvent, StreamParser, ns};

const ENVELOPE_BYTES: &str = "PROXY-6";
const REFORMAT_ONLY: &str = "PROXY-7";
const NO_IDENTIFIER_CHANGES: &str = "PROXY-8";
const PROMPT: &str = "PROXY-15";
/// Attributes that carry an identifier (SPEC.md PROXY-8: `from`, `to`, `id`, JIDs, device
/// ids); the OMEMO header's `sid` and key `rid` are device ids.
const IDENTIFIER_ATTRS: &[&str] = &["from", "to", "id", "jid", "sid", "rid", "device", "node"];
/// Bytes of a stanza quoted in a failure.
const QUOTED: usize = 600;

impl Exec<'_> {
    pub(super) async fn relay(&mut self, r: &Relay, deadline: Instant) -> Result<(), Deviation> {
        self.select_client(&r.client)?;
        let text = self.vars.substitute(&r.stanza).map_err(Deviation::error)?;
        let text = pad(text, r.pad_to).map_err(Deviation::error)?;
        let sent = as_written(&text).map_err(|e| {
            Deviation::error(format!(
                "relay: the stanza is not one element in jabber:client: {e}"
            ))
        })?;
        let envelopes = envelope_spans(&text);
        if envelopes.len() != count_envelopes(&sent) {
            return Err(Deviation::error(
                "relay: write each <encrypted/> unprefixed, as <encrypted xmlns='eu.siacs.conversations.axolotl' …>, so its bytes can be found",
            ));
        }
        let client = r.client.as_str();
        let (got, took, tapped) = match r.from {
            RelayFrom::Client => {
                self.upstream_conn()?.start_tap();
                self.down(client)?
                    .send(text.as_bytes())
                    .await
                    .map_err(Deviation::io)?;
                let written = Instant::now();
                let expected = format!(
                    "the stanza client {client:?} wrote ({} bytes), forwarded to the gatekeeper",
                    text.len()
                );
                // Strict: the next stanza is the one relayed (an initial presence included).
                let got = match self.next_for(None, deadline).await? {
                    Some(Inbound::Stanza(e)) => e,
                    other => return Err(gk::unexpected(other, &expected, "").into_here()),
                };
                let took = written.elapsed();
                (got, took, self.upstream_conn()?.tapped())
            }
            RelayFrom::Gatekeeper => {
                self.down(client)?.start_tap();
                let conn = self.upstream_conn()?;
                tokio::time::timeout_at(deadline, conn.send(text.as_bytes()))
                    .await
                    .map_err(|_| {
                        Deviation::fail_here(
                            "a proxy that reads its upstream connection",
                            "the stanza could not be written before the step's deadline",
                        )
                    })?
                    .map_err(Deviation::io)?;
                let written = Instant::now();
                let expected = format!(
                    "the stanza the gatekeeper wrote ({} bytes), forwarded to client {client:?}",
                    text.len()
                );
                let got = match self.down(client)?.next(deadline).await {
                    Some(Down::Stanza(e)) => e,
                    other => return Err(downstream::unexpected(other, &expected)),
                };
                let took = written.elapsed();
                (got, took, self.down(client)?.tapped())
            }
        };
        judge(&text, &sent, &got, &envelopes, &tapped, took)
    }
}

/// Shares filler out between the stanza's `@PAD@` markers so that it is exactly `pad_to`
/// bytes (several markers keep each text node under its own limit).
fn pad(text: String, pad_to: Option<usize>) -> Result<String, String> {
    let Some(n) = pad_to else { return Ok(text) };
    let markers = text.matches(PAD_MARKER).count().max(1);
    let rest = text.len().saturating_sub(markers * PAD_MARKER.len());
    let fill = n.checked_sub(rest).ok_or_else(|| {
        format!("relay: the stanza is {rest} bytes without its padding, more than pad_to = {n}")
    })?;
    let mut out = String::with_capacity(n);
    for (i, part) in text.split(PAD_MARKER).enumerate() {
        if i > 0 {
            let share = fill / markers + usize::from(i <= fill % markers);
            out.extend(std::iter::repeat_n('x', share));
        }
        out.push_str(part);
    }
    Ok(out)
}

/// The tree of a stanza as written in a `jabber:client` stream.
fn as_written(text: &str) -> Result<Element, String> {
    let mut p = StreamParser::new(Framing::Stream, Limits::harness_ceilings());
    p.feed(
        format!(
            "<stream:stream xmlns='{}' xmlns:stream='{}'>",
            ns::JABBER_CLIENT,
            ns::STREAMS
        )
        .as_bytes(),
    );
    p.feed(text.as_bytes());
    let mut stanza = None;
    while let Some(ev) = p.next_event().map_err(|e| e.to_string())? {
        match ev {
            StreamEvent::Header(_) => {}
            StreamEvent::Stanza(e) if stanza.is_none() => stanza = Some(e),
            _ => return Err("more than one element".into()),
        }
    }
    stanza.ok_or_else(|| "no complete element".into())
}

/// Byte ranges of each unprefixed `<encrypted …>…</encrypted>` (or `<encrypted …/>`) in `text`.
fn envelope_spans(text: &str) -> Vec<std::ops::Range<usize>> {
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(at) = text[from..].find("<encrypted") {
        let start = from + at;
        let after = start + "<encrypted".len();
        if !text[after..].starts_with([' ', '\t', '\r', '\n', '>', '/']) {
            from = after;
            continue;
        }
        let Some(gt) = text[after..].find('>').map(|i| after + i) else {
            break;
        };
        let end = if text[..gt].ends_with('/') {
            gt + 1
        } else {
            match text[gt..].find("</encrypted").and_then(|i| {
                let close = gt + i;
                text[close..].find('>').map(|j| close + j + 1)
            }) {
                Some(end) => end,
                None => break,
            }
        };
        out.push(start..end);
        from = end;
    }
    out
}

fn count_envelopes(e: &Element) -> usize {
    usize::from(e.is("encrypted", ns::OMEMO))
        + e.child_elements().map(count_envelopes).sum::<usize>()
}

fn judge(
    text: &str,
    sent: &Element,
    got: &Element,
    envelopes: &[std::ops::Range<usize>],
    tapped: &[u8],
    took: Duration,
) -> Result<(), Deviation> {
    if let Some(d) = difference(sent, got, &format!("/{}", sent.name)) {
        let (requirement, what) = d;
        return Err(Deviation::fail(
            requirement,
            format!(
                "the stanza forwarded with the infoset written (reformatting aside): {}",
                quote(text.as_bytes())
            ),
            format!("{what}: {}", quote(got.to_xml().as_bytes())),
        ));
    }
    for span in envelopes {
        let want = &text.as_bytes()[span.clone()];
        if !tapped.windows(want.len()).any(|w| w == want) {
            let seen = match find(tapped, b"<encrypted") {
                Some(at) => quote(&tapped[at..]),
                None => "no `<encrypted` in the bytes received".to_string(),
            };
            return Err(Deviation::fail(
                ENVELOPE_BYTES,
                format!(
                    "the <encrypted/> element forwarded byte for byte: {}",
                    quote(want)
                ),
                format!("other bytes: {seen}"),
            ));
        }
    }
    let bound = crate::spec::embedded_time_bound(PROMPT).unwrap_or(Duration::from_secs(1));
    if took > bound {
        return Err(Deviation::fail(
            PROMPT,
            format!(
                "the stanza forwarded within {} ms of its last byte",
                bound.as_millis()
            ),
            format!(
                "it arrived {} ms after the harness wrote it ({} bytes)",
                took.as_millis(),
                text.len()
            ),
        ));
    }
    Ok(())
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// At most [`QUOTED`] bytes, lossily decoded, with the rest counted; binary shown in hex.
fn quote(bytes: &[u8]) -> String {
    let shown = &bytes[..bytes.len().min(QUOTED)];
    let text = match std::str::from_utf8(shown) {
        Ok(t) => t.to_string(),
        Err(_) => hex(shown),
    };
    if bytes.len() > QUOTED {
        format!("{text}… [{} more bytes]", bytes.len() - QUOTED)
    } else {
        text
    }
}

/// Attributes compared: prefix declarations are reformatting (PROXY-7 allows them to change).
fn attrs(e: &Element) -> Vec<(&str, &str)> {
    let mut a: Vec<(&str, &str)> = e
        .attrs
        .iter()
        .filter(|(k, _)| !k.starts_with("xmlns:"))
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    a.sort_unstable();
    a
}

/// Children compared: whitespace-only text between elements is reformatting.
fn children(e: &Element) -> Vec<&Node> {
    e.children
        .iter()
        .filter(|n| !matches!(n, Node::Text(t) if t.chars().all(char::is_whitespace)))
        .collect()
}

fn carries_identifier(e: &Element) -> bool {
    e.attrs
        .iter()
        .any(|(k, _)| IDENTIFIER_ATTRS.contains(&k.as_str()))
        || e.child_elements().any(carries_identifier)
}

/// The first difference between the tree written and the tree forwarded, with the
/// requirement it breaks.
fn difference(sent: &Element, got: &Element, path: &str) -> Option<(&'static str, String)> {
    if sent.name != got.name || sent.ns != got.ns {
        return Some((
            REFORMAT_ONLY,
            format!(
                "{path} arrived as {{{}}}{} instead of {{{}}}{}",
                got.ns, got.name, sent.ns, sent.name
            ),
        ));
    }
    let (a, b) = (attrs(sent), attrs(got));
    for (k, v) in &b {
        match a.iter().find(|(n, _)| n == k) {
            None => {
                return Some((
                    NO_IDENTIFIER_CHANGES,
                    format!("{path}: attribute {k}='{v}' was added"),
                ));
            }
            Some((_, w)) if w != v => {
                let r = if IDENTIFIER_ATTRS.contains(k) {
                    NO_IDENTIFIER_CHANGES
                } else {
                    REFORMAT_ONLY
                };
                return Some((r, format!("{path}: attribute {k}='{w}' became '{v}'")));
            }
            Some(_) => {}
        }
    }
    if let Some((k, v)) = a.iter().find(|(k, _)| !b.iter().any(|(n, _)| n == k)) {
        let r = if IDENTIFIER_ATTRS.contains(k) {
            NO_IDENTIFIER_CHANGES
        } else {
            REFORMAT_ONLY
        };
        return Some((r, format!("{path}: attribute {k}='{v}' was dropped")));
    }
    let (ca, cb) = (children(sent), children(got));
    for i in 0..ca.len().max(cb.len()) {
        match (ca.get(i), cb.get(i)) {
            (Some(Node::Element(x)), Some(Node::Element(y))) => {
                if let Some(d) = difference(x, y, &format!("{path}/{}", x.name)) {
                    return Some(d);
                }
            }
            (Some(Node::Text(x)), Some(Node::Text(y))) if x == y => {}
            (Some(Node::Text(x)), Some(Node::Text(y))) => {
                return Some((
                    REFORMAT_ONLY,
                    format!("{path}: text {:?} became {:?}", clip(x), clip(y)),
                ));
            }
            (_, Some(Node::Element(y))) if cb.len() > ca.len() => {
                return Some((
                    NO_IDENTIFIER_CHANGES,
                    format!("{path}: element <{}/> was added", y.name),
                ));
            }
            (Some(Node::Element(x)), _) if ca.len() > cb.len() => {
                let r = if carries_identifier(x) {
                    NO_IDENTIFIER_CHANGES
                } else {
                    REFORMAT_ONLY
                };
                return Some((r, format!("{path}: element <{}/> was dropped", x.name)));
            }
            _ => {
                return Some((
                    REFORMAT_ONLY,
                    format!("{path}: the content differs from child {}", i + 1),
                ));
            }
        }
    }
    None
}

fn clip(s: &str) -> String {
    if s.len() <= 60 {
        return s.to_string();
    }
    let mut end = 60;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    const ENV: &str = "<encrypted xmlns=\"eu.siacs.conversations.axolotl\"><header sid='5'><key rid='9'>a2V5</key><iv>aXY=</iv></header><payload>cA==</payload></encrypted>";

    fn msg(inner: &str) -> String {
        format!("<message to='bob@gk.gatecheck.test' id='m1' type='chat'>{inner}</message>")
    }

    #[test]
    fn envelopes_are_found_byte_for_byte() {
        let text = msg(&format!("{ENV}<store xmlns='urn:xmpp:hints'/>"));
        let spans = envelope_spans(&text);
        assert_eq!(spans.len(), 1);
        assert_eq!(&text[spans[0].clone()], ENV);
        let selfclosing = msg("<encrypted xmlns='eu.siacs.conversations.axolotl'/><encryptedx/>");
        let spans = envelope_spans(&selfclosing);
        assert_eq!(spans.len(), 1);
        assert_eq!(
            &selfclosing[spans[0].clone()],
            "<encrypted xmlns='eu.siacs.conversations.axolotl'/>"
        );
        assert_eq!(count_envelopes(&as_written(&text).expect("tree")), 1);
    }

    #[test]
    fn reformatting_is_no_difference_but_identifiers_and_additions_are() {
        let text = msg(ENV);
        let sent = as_written(&text).expect("tree");
        let same = as_written(
            "<message type=\"chat\" id=\"m1\" to=\"bob@gk.gatecheck.test\">\n <encrypted xmlns='eu.siacs.conversations.axolotl'><header sid='5'><key rid='9'>a2V5</key><iv>aXY=</iv></header><payload>cA==</payload></encrypted>\n</message>",
        )
        .expect("tree");
        assert_eq!(difference(&sent, &same, "/message"), None);
        let added =
            as_written(&text.replace("type='chat'", "type='chat' data-x='1'")).expect("tree");
        assert_eq!(
            difference(&sent, &added, "/message").map(|d| d.0),
            Some("PROXY-8")
        );
        let dropped = as_written(&text.replace(" id='m1'", "")).expect("tree");
        assert_eq!(
            difference(&sent, &dropped, "/message").map(|d| d.0),
            Some("PROXY-8")
        );
        let changed = as_written(&text.replace("type='chat'", "type='normal'")).expect("tree");
        assert_eq!(
            difference(&sent, &changed, "/message").map(|d| d.0),
            Some("PROXY-7")
        );
        let sid = as_written(&text.replace("sid='5'", "sid='6'")).expect("tree");
        assert_eq!(
            difference(&sent, &sid, "/message").map(|d| d.0),
            Some("PROXY-8")
        );
        let child = as_written(&msg(&format!("{ENV}<x xmlns='urn:p'/>"))).expect("tree");
        assert_eq!(
            difference(&sent, &child, "/message").map(|d| d.0),
            Some("PROXY-8")
        );
        let text2 = as_written(&text.replace("cA==", "cB==")).expect("tree");
        assert_eq!(
            difference(&sent, &text2, "/message").map(|d| d.0),
            Some("PROXY-7")
        );
    }

    #[test]
    fn judging_names_bytes_then_time() {
        let text = msg(ENV);
        let sent = as_written(&text).expect("tree");
        let spans = envelope_spans(&text);
        let fast = Duration::from_millis(5);
        assert!(judge(&text, &sent, &sent, &spans, text.as_bytes(), fast).is_ok());
        let requoted = text.replace(
            "xmlns=\"eu.siacs.conversations.axolotl\"",
            "xmlns='eu.siacs.conversations.axolotl'",
        );
        let e = judge(&text, &sent, &sent, &spans, requoted.as_bytes(), fast).expect_err("bytes");
        assert_eq!(e.requirement.as_deref(), Some("PROXY-6"));
        assert!(e.got.contains("<encrypted xmlns='eu"), "{}", e.got);
        let e = judge(
            &text,
            &sent,
            &sent,
            &spans,
            text.as_bytes(),
            Duration::from_millis(1500),
        )
        .expect_err("slow");
        assert_eq!(e.requirement.as_deref(), Some("PROXY-15"));
    }

    #[test]
    fn padding_reaches_the_exact_size() {
        let t = pad(msg("<body>@PAD@</body>"), Some(262_144)).expect("pads");
        assert_eq!(t.len(), 262_144);
        let two = pad(
            msg("<body>@PAD@</body><x xmlns='urn:p'>@PAD@</x>"),
            Some(1001),
        )
        .expect("pads");
        assert_eq!(two.len(), 1001);
        assert!(!two.contains(PAD_MARKER));
        assert!(pad(msg("<body>@PAD@</body>"), Some(10)).is_err());
        assert_eq!(pad("<a/>".into(), None).expect("as is"), "<a/>");
    }
}
