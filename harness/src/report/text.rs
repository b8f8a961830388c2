//! Text helpers the report formats share: escaping, cutting long values, and the decoding
//! of transcript entries (stanzas indented, driver lines as pretty JSON).

/// `s` with the five HTML/XML special characters escaped.
pub fn escape_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + s.len() / 8);
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// `s` with the characters XML 1.0 cannot carry (control characters other than tab, line
/// feed and carriage return; U+FFFE, U+FFFF) spelled out as `\u{..}`, so that they are
/// seen rather than silently dropped.
pub fn visible(s: &str) -> String {
    if !s.chars().any(invisible) {
        return s.to_string();
    }
    s.chars()
        .map(|c| {
            if invisible(c) {
                format!("\\u{{{:x}}}", c as u32)
            } else {
                c.to_string()
            }
        })
        .collect()
}

fn invisible(c: char) -> bool {
    matches!(c, '\u{0}'..='\u{8}' | '\u{b}' | '\u{c}' | '\u{e}'..='\u{1f}' | '\u{fffe}' | '\u{ffff}')
}

/// `s` on one line (line breaks become spaces), cut at `max` characters with `…`.
pub fn one_line(s: &str, max: usize) -> String {
    let flat: String = s
        .chars()
        .map(|c| if c == '\n' || c == '\r' { ' ' } else { c })
        .collect();
    cut(&flat, max)
}

/// `s` cut to about `max` characters by leaving out its middle: the start and the end of
/// a long value (where a mismatch explanation sits) both stay.
pub fn cut_middle(s: &str, max: usize) -> String {
    let n = s.chars().count();
    if n <= max {
        return s.to_string();
    }
    let head: String = s.chars().take(max / 2).collect();
    let tail: String = s.chars().skip(n - max / 2).collect();
    format!("{head} … {tail}")
}

/// `s` cut at `max` characters, with `…` when something was cut.
pub fn cut(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((at, _)) => format!("{}…", &s[..at]),
        None => s.to_string(),
    }
}

/// One lexical piece of XML text, as far as indentation needs to know.
#[derive(Debug, PartialEq)]
enum Piece<'a> {
    Open(&'a str),
    Close(&'a str),
    /// A self-closed element, a declaration, a comment or anything else in angle brackets.
    Lone(&'a str),
    Text(&'a str),
}

/// Splits `s` into tags and text. A `>` inside a quoted attribute value does not end a tag;
/// an unterminated tag is text. Only ASCII delimiters are matched, so every slice falls on a
/// character boundary.
fn pieces(s: &str) -> Vec<Piece<'_>> {
    let bytes = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'<' {
            let end = s[i..].find('<').map_or(bytes.len(), |n| i + n);
            out.push(Piece::Text(&s[i..end]));
            i = end;
            continue;
        }
        let mut quote: Option<u8> = None;
        let mut end = None;
        for (j, &b) in bytes.iter().enumerate().skip(i + 1) {
            match (quote, b) {
                (Some(q), b) if b == q => quote = None,
                (Some(_), _) => {}
                (None, b'"' | b'\'') => quote = Some(b),
                (None, b'>') => {
                    end = Some(j + 1);
                    break;
                }
                (None, _) => {}
            }
        }
        let Some(end) = end else {
            out.push(Piece::Text(&s[i..]));
            break;
        };
        let tag = &s[i..end];
        out.push(if tag.starts_with("</") {
            Piece::Close(tag)
        } else if tag.ends_with("/>") || tag.starts_with("<?") || tag.starts_with("<!") {
            Piece::Lone(tag)
        } else {
            Piece::Open(tag)
        });
        i = end;
    }
    out
}

/// XML text indented two spaces a level, an element holding only text kept on one line.
/// None when `s` does not look like XML (it does not start with `<`).
pub fn pretty_xml(s: &str) -> Option<String> {
    if !s.trim_start().starts_with('<') {
        return None;
    }
    let mut out = String::with_capacity(s.len() + s.len() / 4);
    let mut depth = 0usize;
    // True right after an opening tag, or after text that followed one: a closing tag
    // then stays on the same line.
    let mut inline = false;
    let newline = |out: &mut String, depth: usize| {
        if !out.is_empty() {
            out.push('\n');
        }
        out.push_str(&"  ".repeat(depth.min(40)));
    };
    for piece in pieces(s) {
        match piece {
            Piece::Open(t) => {
                newline(&mut out, depth);
                out.push_str(t);
                depth += 1;
                inline = true;
            }
            Piece::Lone(t) => {
                newline(&mut out, depth);
                out.push_str(t);
                inline = false;
            }
            Piece::Text(t) => {
                let t = t.trim();
                if t.is_empty() {
                    continue;
                }
                if !inline {
                    newline(&mut out, depth);
                }
                out.push_str(t);
            }
            Piece::Close(t) => {
                depth = depth.saturating_sub(1);
                if !inline {
                    newline(&mut out, depth);
                }
                out.push_str(t);
                inline = false;
            }
        }
    }
    Some(out)
}

/// An HTTP exchange as the transcript records it (a request or status line, headers, a
/// blank line, the body) with a JSON body pretty-printed; None when `s` is not one.
pub fn pretty_http(s: &str) -> Option<String> {
    let first = s.lines().next()?;
    let is_http = first.starts_with("HTTP/")
        || (first.ends_with(" HTTP/1.1")
            && first
                .split(' ')
                .next()
                .is_some_and(|m| !m.is_empty() && m.bytes().all(|b| b.is_ascii_uppercase())));
    if !is_http {
        return None;
    }
    let (head, body) = s.split_once("\n\n")?;
    let body = pretty_json(body).unwrap_or_else(|| body.to_string());
    Some(format!("{head}\n\n{body}"))
}

/// A JSON value pretty-printed, or None when `s` is not JSON.
pub fn pretty_json(s: &str) -> Option<String> {
    let v: serde_json::Value = serde_json::from_str(s.trim()).ok()?;
    serde_json::to_string_pretty(&v).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stanzas_are_indented_and_text_stays_inline() {
        let got = pretty_xml(
            "<message to='a' id=\"x>y\"><body>hi &amp; bye</body><request xmlns='urn:xmpp:receipts'/></message>",
        )
        .expect("xml");
        assert_eq!(
            got,
            "<message to='a' id=\"x>y\">\n  <body>hi &amp; bye</body>\n  <request xmlns='urn:xmpp:receipts'/>\n</message>"
        );
    }

    #[test]
    fn broken_xml_is_shown_not_refused() {
        assert_eq!(pretty_xml("not xml"), None);
        assert_eq!(
            pretty_xml("<a><b attr='unterminated").as_deref(),
            Some("<a><b attr='unterminated")
        );
        assert_eq!(
            pretty_xml("</x></y><z>").as_deref(),
            Some("</x>\n</y>\n<z>")
        );
        assert_eq!(pretty_xml("<é>ü</é>").as_deref(), Some("<é>ü</é>"));
    }

    #[test]
    fn http_exchanges_keep_their_head_and_indent_a_json_body() {
        assert_eq!(
            pretty_http("POST /v1/auth HTTP/1.1\ncontent-type: application/json\n\n{\"a\":1}")
                .as_deref(),
            Some("POST /v1/auth HTTP/1.1\ncontent-type: application/json\n\n{\n  \"a\": 1\n}")
        );
        assert_eq!(
            pretty_http("HTTP/1.1 204 (3 ms)\n\n").as_deref(),
            Some("HTTP/1.1 204 (3 ms)\n\n")
        );
        assert_eq!(pretty_http("<iq/>"), None);
        assert_eq!(pretty_http("note: GET HTTP/1.1"), None);
    }

    #[test]
    fn cuts_count_characters() {
        assert_eq!(cut("ééé", 2), "éé…");
        assert_eq!(cut("ab", 2), "ab");
        assert_eq!(cut_middle("abcdefgh", 4), "ab … gh");
        assert_eq!(cut_middle("abcd", 4), "abcd");
        assert_eq!(one_line("a\nb", 10), "a b");
        assert_eq!(visible("a\u{0}b\tc\u{ffff}"), "a\\u{0}b\tc\\u{ffff}");
        assert_eq!(
            escape_html("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
    }
}
