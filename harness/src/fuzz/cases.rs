//! Fuzz cases for a client IUT: stanza bytes made from a corpus (as is, mutated, spliced) or
//! hostile by construction, and what SPEC.md says the IUT must do with them.
//!
//! The oracle is the harness's own codec, applying SPEC.md Appendix B at both columns: input the
//! codec accepts under the profile floors (what every receiver must accept, STREAM-31) must leave
//! the IUT serving (a ping afterwards is answered, STANZA-7); input it refuses the same way under
//! the floors and the ceilings must be answered with that stream error and a close (STREAM-30,
//! STREAM-24). Input between the two columns, input that ends inside an element, that closes the
//! stream or that holds something other than the three stanza kinds is not used: SPEC.md leaves
//! the IUT a choice there.

use std::collections::HashMap;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::wire::{
    ElementRef, Framing, Limits, StreamEventRef, StreamParser, Violation, WireError, ns,
};

/// What the IUT must do with a case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expect {
    /// Keep serving: answer a ping sent after the case.
    Live,
    /// Send one of these stream error conditions (the first is the one SPEC.md §7.3 assigns),
    /// then close the stream.
    StreamError(Vec<String>),
}

/// One case: the bytes, how they were made, and the expectation.
#[derive(Debug, Clone)]
pub struct Case {
    pub bytes: Vec<u8>,
    pub how: String,
    pub expect: Expect,
    /// How the bytes are written: in order, each piece `len` bytes, then a pause of
    /// `pause_ms` (0: none). Empty: in one write. The pieces cover the bytes exactly.
    pub writes: Vec<Piece>,
}

/// One write of a case split into pieces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Piece {
    pub len: usize,
    pub pause_ms: u64,
}

impl Case {
    /// The bytes of each write, with the pause after it.
    pub fn pieces(&self) -> Vec<(&[u8], u64)> {
        if self.writes.is_empty() {
            return vec![(self.bytes.as_slice(), 0)];
        }
        let mut rest = self.bytes.as_slice();
        let mut out = Vec::with_capacity(self.writes.len());
        for piece in &self.writes {
            let (head, tail) = rest.split_at(piece.len.min(rest.len()));
            out.push((head, piece.pause_ms));
            rest = tail;
        }
        if !rest.is_empty() {
            out.push((rest, 0));
        }
        out
    }
}

/// Which cases a caller of [`Generator::next_wanted`] wants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Want {
    /// Any usable case.
    Any,
    /// Only cases that must leave the IUT serving ([`Expect::Live`]). A candidate the codec
    /// does not accept under the floors is passed over there and then, without the second read
    /// under the ceilings that tells a stream-ending case from an unusable one.
    Live,
}

/// One case in this many is written in pieces, at most this many.
const SPLIT_ONE_IN: u32 = 8;
const MAX_PIECES: usize = 8;
// No pauses between pieces are generated yet: every waiting step (`sleep` included) keeps the
// gatekeeper serving the IUT, and a stanza it writes then (a PEP answer) lands inside the
// half-written case and breaks the stream, which the IUT rightly refuses. Slow writes need a
// step that waits without serving; [`Piece::pause_ms`] and the scenario's `sleep` are ready
// for it.

/// Tokens mutations insert.
const TOKENS: &[&str] = &[
    "<",
    ">",
    "/>",
    "</",
    "'",
    "\"",
    "=",
    "&amp;",
    "&#x0;",
    "&#xD800;",
    "&undefined;",
    "<![CDATA[",
    "]]>",
    "<!--",
    "-->",
    "<?pi?>",
    "<!DOCTYPE x>",
    "xmlns='",
    "xmlns:p='",
    "p:",
    "xml:lang='",
    "<body>",
    "</body>",
    "<message>",
    "</message>",
    "<iq type='get' id='x'>",
    "</iq>",
    "<presence/>",
    "\u{0}",
    "\u{FEFF}",
    "\u{10FFFF}",
    "\r",
    "\t",
];

/// Makes cases from a corpus, deterministically from a seed.
///
/// The candidates that recur (a corpus input as it is, and the hostile ones, a few hundred
/// different inputs in all) are classified once: [`classify`] is a function of the bytes, so
/// its answer is kept and reused (and a hostile input known to be unusable is not even made
/// again). The cases made, and their order, are the same as classifying every candidate.
pub struct Generator {
    rng: ChaCha8Rng,
    corpus: Vec<Vec<u8>>,
    /// [`classify`] of each corpus input as it is, once asked.
    corpus_expect: Vec<Option<Option<Expect>>>,
    /// [`classify`] of each hostile input, once asked.
    hostile_expect: HashMap<Hostile, Option<Expect>>,
}

/// A candidate, before it is classified.
enum Candidate {
    /// Bytes made from the corpus (mutated, spliced), and how.
    Made(Vec<u8>, String),
    /// Corpus input `i` as it is.
    Corpus(usize),
    Hostile(Hostile),
}

/// A hostile input: these few values make its bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Hostile {
    /// A message with elements nested this deep.
    Nesting(usize),
    /// A message with an attribute value of this many bytes.
    AttributeValue(usize),
    /// A message with a body of this many bytes of text.
    Text(usize),
    /// A message with this many attributes.
    Attributes(usize),
    /// A message whose text has this byte where UTF-8 does not allow it.
    InvalidUtf8(u8),
    /// A message whose text has a NUL byte.
    Nul,
}

impl Hostile {
    fn bytes(self) -> Vec<u8> {
        match self {
            Hostile::Nesting(depth) => {
                let mut s = String::from("<message>");
                s.push_str(&"<x xmlns='urn:x'>".repeat(depth));
                s.push_str(&"</x>".repeat(depth));
                s.push_str("</message>");
                s.into_bytes()
            }
            Hostile::AttributeValue(len) => {
                format!("<message id='{}'/>", "a".repeat(len)).into_bytes()
            }
            Hostile::Text(len) => {
                format!("<message><body>{}</body></message>", "t".repeat(len)).into_bytes()
            }
            Hostile::Attributes(n) => {
                let attrs: String = (0..n).map(|i| format!(" a{i}='{i}'")).collect();
                format!("<message{attrs}/>").into_bytes()
            }
            Hostile::InvalidUtf8(byte) => {
                let mut b = b"<message><body>caf".to_vec();
                b.push(byte);
                b.extend_from_slice(b"</body></message>");
                b
            }
            Hostile::Nul => b"<message><body>a\0b</body></message>".to_vec(),
        }
    }

    fn how(self) -> String {
        let what = match self {
            Hostile::Nesting(depth) => format!("nesting {depth} deep"),
            Hostile::AttributeValue(len) => format!("attribute value of {len} bytes"),
            Hostile::Text(len) => format!("text of {len} bytes"),
            Hostile::Attributes(n) => format!("{n} attributes"),
            Hostile::InvalidUtf8(_) => "invalid UTF-8 in text".into(),
            Hostile::Nul => "NUL byte in text".into(),
        };
        format!("hostile: {what}")
    }
}

impl Generator {
    pub fn new(seed: u64, corpus: Vec<Vec<u8>>) -> Generator {
        let corpus = if corpus.is_empty() {
            vec![b"<message to='a@b'><body>hi</body></message>".to_vec()]
        } else {
            corpus
        };
        Generator {
            rng: ChaCha8Rng::seed_from_u64(seed),
            corpus_expect: vec![None; corpus.len()],
            corpus,
            hostile_expect: HashMap::new(),
        }
    }

    pub fn corpus_len(&self) -> usize {
        self.corpus.len()
    }

    /// Adds an input (a finding's) for later mutation.
    pub fn keep(&mut self, bytes: Vec<u8>) {
        self.corpus.push(bytes);
        self.corpus_expect.push(None);
    }

    fn pick(&mut self) -> (usize, Vec<u8>) {
        let i = self.rng.random_range(0..self.corpus.len());
        (i, self.corpus.get(i).cloned().unwrap_or_default())
    }

    /// The next usable case; gives up (None) after many unusable ones in a row.
    pub fn next_case(&mut self) -> Option<Case> {
        self.next_wanted(Want::Any)
    }

    /// The next usable case of the kind wanted; gives up (None) after many candidates in a row
    /// that are not.
    pub fn next_wanted(&mut self, want: Want) -> Option<Case> {
        for _ in 0..1000 {
            let Some((bytes, how, expect)) = self.classified(want) else {
                continue;
            };
            let (writes, how) = self.split(bytes.len(), how);
            return Some(Case {
                bytes,
                how,
                expect,
                writes,
            });
        }
        None
    }

    /// The next candidate, its bytes, how it was made and what SPEC.md asks of the IUT for
    /// it; None when SPEC.md leaves a choice (an unusable candidate) or it is not of the kind
    /// wanted.
    fn classified(&mut self, want: Want) -> Option<(Vec<u8>, String, Expect)> {
        let (bytes, how, expect) = match self.candidate() {
            Candidate::Made(bytes, how) => {
                let expect = match want {
                    Want::Any => classify(&bytes)?,
                    Want::Live if live(&bytes) => Expect::Live,
                    Want::Live => return None,
                };
                (bytes, how, expect)
            }
            Candidate::Corpus(i) => {
                let bytes = self.corpus.get(i)?;
                let known = self.corpus_expect.get_mut(i)?;
                let expect = known.get_or_insert_with(|| classify(bytes)).clone()?;
                (bytes.clone(), format!("corpus input {i}"), expect)
            }
            Candidate::Hostile(h) => match self.hostile_expect.get(&h) {
                Some(known) => {
                    let expect = known.clone()?;
                    if want == Want::Live && expect != Expect::Live {
                        return None;
                    }
                    (h.bytes(), h.how(), expect)
                }
                None => {
                    let bytes = h.bytes();
                    let expect = classify(&bytes);
                    self.hostile_expect.insert(h, expect.clone());
                    (bytes, h.how(), expect?)
                }
            },
        };
        if want == Want::Live && expect != Expect::Live {
            return None;
        }
        Some((bytes, how, expect))
    }

    /// Sometimes a plan to write `len` bytes in small pieces (1 to 64 bytes each, the last
    /// one taking the rest), each its own write; the oracle is the same either way.
    fn split(&mut self, len: usize, how: String) -> (Vec<Piece>, String) {
        if len < 2 || !self.rng.random_ratio(1, SPLIT_ONE_IN) {
            return (Vec::new(), how);
        }
        let count = self.rng.random_range(2..=MAX_PIECES.min(len));
        let mut writes = Vec::with_capacity(count);
        let mut left = len;
        for i in 0..count {
            let piece = if i + 1 == count {
                left
            } else {
                self.rng.random_range(1..=64.min(left - (count - 1 - i)))
            };
            left -= piece;
            writes.push(Piece {
                len: piece,
                pause_ms: 0,
            });
        }
        let how = format!("{how}, written in {count} pieces");
        (writes, how)
    }

    fn candidate(&mut self) -> Candidate {
        match self.rng.random_range(0..10u8) {
            0 => Candidate::Corpus(self.rng.random_range(0..self.corpus.len())),
            1 => {
                let (a, first) = self.pick();
                let (b, second) = self.pick();
                let cut_a = self.rng.random_range(0..=first.len());
                let cut_b = self.rng.random_range(0..=second.len());
                let mut out = first.get(..cut_a).unwrap_or_default().to_vec();
                out.extend_from_slice(second.get(cut_b..).unwrap_or_default());
                Candidate::Made(out, format!("splice of corpus inputs {a} and {b}"))
            }
            2 | 3 => Candidate::Hostile(self.hostile()),
            _ => {
                let (i, mut bytes) = self.pick();
                let n = self.rng.random_range(1..=4);
                for _ in 0..n {
                    self.mutate(&mut bytes);
                }
                Candidate::Made(bytes, format!("corpus input {i}, {n} mutations"))
            }
        }
    }

    fn mutate(&mut self, bytes: &mut Vec<u8>) {
        let at = self.rng.random_range(0..=bytes.len());
        match self.rng.random_range(0..5u8) {
            0 if at < bytes.len() => {
                let bit = self.rng.random_range(0..8);
                if let Some(b) = bytes.get_mut(at) {
                    *b ^= 1 << bit;
                }
            }
            1 => {
                let token = TOKENS[self.rng.random_range(0..TOKENS.len())];
                bytes.splice(at..at, token.bytes());
            }
            2 if at < bytes.len() => {
                let end = self.rng.random_range(at..=bytes.len().min(at + 16));
                bytes.drain(at..end);
            }
            3 if at < bytes.len() => {
                let end = self.rng.random_range(at..=bytes.len().min(at + 32));
                let copy = bytes.get(at..end).unwrap_or_default().to_vec();
                bytes.splice(at..at, copy);
            }
            _ => bytes.insert(at, self.rng.random()),
        }
    }

    /// One of `sizes` (chosen around SPEC.md Appendix B's floors and ceilings, where receivers
    /// go wrong), give or take a little.
    fn near_limits(&mut self, sizes: &[usize]) -> usize {
        let base = sizes[self.rng.random_range(0..sizes.len())];
        match self.rng.random_range(0..4u8) {
            0 => base.saturating_sub(1).max(1),
            1 => base + 1,
            _ => base,
        }
    }

    /// Hostile by construction: deep nesting, huge attributes and text, many attributes,
    /// invalid UTF-8, a NUL byte.
    fn hostile(&mut self) -> Hostile {
        match self.rng.random_range(0..6u8) {
            0 => Hostile::Nesting(
                self.near_limits(&[8, 16, 20, 24, 28, 30, 31, 32, 33, 64, 127, 128]),
            ),
            1 => Hostile::AttributeValue(
                self.near_limits(&[1024, 2048, 4096, 6000, 8192, 8193, 16384, 65536, 65537]),
            ),
            2 => Hostile::Text(self.near_limits(&[
                1024,
                65536,
                200 << 10,
                240 << 10,
                (240 << 10) + 1,
            ])),
            3 => Hostile::Attributes(self.near_limits(&[10, 32, 63, 64, 65, 128, 256, 257])),
            4 => Hostile::InvalidUtf8([0xC3, 0xFF, 0x80, 0xED][self.rng.random_range(0..4)]),
            _ => Hostile::Nul,
        }
    }
}

/// The stream header the harness opens with before a case (the stanzas' context).
const HEADER: &[u8] = b"<stream:stream xmlns='jabber:client' \
    xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>";

/// What the codec reads in a case inside a `jabber:client` stream.
enum Reading {
    /// The first complete element SPEC.md has the IUT refuse, or leaves open, came at this
    /// index (after that many stanzas SPEC.md has the IUT serve): what [`stanza_error`] says of
    /// it. Reading stops there; what follows cannot change the answer.
    Element(usize, Result<&'static str, ()>),
    /// Only stanzas the IUT must serve, then: whether the input closed the stream, how many
    /// stanzas, or the first error (`Err(None)` when the input ends inside an element).
    End(Result<bool, Option<WireError>>, usize),
}

/// The codec's reading of a case inside a `jabber:client` stream under `limits`, through the
/// borrowing parser (the same framing, checks and errors as the owned one, without building
/// each stanza's tree).
fn read(bytes: &[u8], limits: Limits) -> Reading {
    let mut parser = StreamParser::new(Framing::Stream, limits);
    parser.feed(HEADER);
    parser.feed(bytes);
    let mut stanzas = 0;
    let mut closed = false;
    loop {
        match parser.next_event_ref() {
            Ok(Some(StreamEventRef::Stanza(s))) => match stanza_error(&s.root()) {
                Ok(None) => stanzas += 1,
                Ok(Some(condition)) => return Reading::Element(stanzas, Ok(condition)),
                Err(()) => return Reading::Element(stanzas, Err(())),
            },
            Ok(Some(StreamEventRef::Close)) => closed = true,
            Ok(Some(StreamEventRef::Header(_))) => {}
            Ok(None) => break,
            Err(e) => return Reading::End(Err(Some(e)), stanzas),
        }
    }
    // Whatever is left is an element not yet complete: the IUT would just wait for the rest.
    if parser.buffered_len() > 0 && parser.finish().is_err() {
        return Reading::End(Err(None), stanzas);
    }
    Reading::End(Ok(closed), stanzas)
}

/// The first error the codec finds in a case under `limits`, whatever the stanzas before it
/// (None also when the input only ends inside an element).
fn first_error(bytes: &[u8], limits: Limits) -> Option<WireError> {
    let mut parser = StreamParser::new(Framing::Stream, limits);
    parser.feed(HEADER);
    parser.feed(bytes);
    loop {
        match parser.next_event_ref() {
            Ok(Some(_)) => {}
            Ok(None) => return None,
            Err(e) => return Some(e),
        }
    }
}

fn is_stanza(e: &ElementRef<'_>) -> bool {
    e.ns() == ns::JABBER_CLIENT && matches!(e.name(), "message" | "iq" | "presence")
}

/// The stream error SPEC.md asks for a complete top-level element, if any: STANZA-1 (not one of
/// the three stanza kinds) and STANZA-2 (an iq without id, or without a known type). `Err` when
/// SPEC.md leaves the answer open (another namespace, a streams-namespace element).
fn stanza_error(e: &ElementRef<'_>) -> Result<Option<&'static str>, ()> {
    if e.ns() != ns::JABBER_CLIENT {
        return Err(());
    }
    if !is_stanza(e) {
        return Ok(Some("unsupported-stanza-type"));
    }
    if e.name() == "iq" {
        let typed = matches!(e.attr("type"), Some("get" | "set" | "result" | "error"));
        if !typed || e.attr("id").is_none_or(str::is_empty) {
            return Ok(Some("bad-format"));
        }
    }
    Ok(None)
}

/// Whether [`classify`] says [`Expect::Live`] of these bytes, found by the first of its reads
/// alone.
pub fn live(bytes: &[u8]) -> bool {
    !bytes.iter().all(u8::is_ascii_whitespace)
        && matches!(
            read(bytes, Limits::profile_floors()),
            Reading::End(Ok(false), _)
        )
}

/// What SPEC.md asks of the IUT for these bytes, or None when it leaves a choice.
pub fn classify(bytes: &[u8]) -> Option<Expect> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return None;
    }
    let (floors, stanzas) = match read(bytes, Limits::profile_floors()) {
        // The first complete element SPEC.md has the IUT refuse decides, if it comes first
        // (the IUT may answer stanzas before it, which the scenario would not expect).
        Reading::Element(0, Ok(condition)) => {
            return Some(Expect::StreamError(vec![condition.to_owned()]));
        }
        Reading::Element(..) => return None,
        Reading::End(floors, stanzas) => (floors, stanzas),
    };
    match floors {
        Ok(false) => Some(Expect::Live),
        Ok(true) | Err(None) => None,
        Err(Some(at_floors)) => {
            // Stanzas before the error may be answered first; only a clean refusal is used.
            if stanzas > 0 {
                return None;
            }
            let ceilings = first_error(bytes, Limits::harness_ceilings())?;
            if ceilings.condition() != at_floors.condition() {
                return None;
            }
            let mut conditions = vec![at_floors.condition().as_str().to_owned()];
            // SPEC.md §7.3: for bytes that are not UTF-8 either condition is correct.
            if matches!(at_floors.violation, Violation::InvalidUtf8) {
                conditions.push("unsupported-encoding".to_owned());
            }
            Some(Expect::StreamError(conditions))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_oracle_follows_the_spec_columns() {
        assert_eq!(
            classify(b"<message to='a@b'><body>hi</body></message>"),
            Some(Expect::Live)
        );
        let error = |c: &[&str]| {
            Some(Expect::StreamError(
                c.iter().map(|s| s.to_string()).collect(),
            ))
        };
        assert_eq!(
            classify(b"<message><body>hi</message>"),
            error(&["not-well-formed"])
        );
        assert_eq!(
            classify(b"<message><!-- c --></message>"),
            error(&["restricted-xml"])
        );
        assert_eq!(
            classify(b"<message><body>caf\xC3</body></message>"),
            error(&["not-well-formed", "unsupported-encoding"])
        );
        // STANZA-1 and STANZA-2.
        assert_eq!(classify(b"<foo/>"), error(&["unsupported-stanza-type"]));
        assert_eq!(
            classify(b"<iq type='get'><ping xmlns='urn:xmpp:ping'/></iq>"),
            error(&["bad-format"])
        );
        assert_eq!(classify(b"<iq type='geT' id='a'/>"), error(&["bad-format"]));
        // Another namespace, an unfinished element, a close: left out.
        assert_eq!(classify(b"<foo xmlns='urn:x'/>"), None);
        assert_eq!(classify(b"<message><body>"), None);
        assert_eq!(classify(b"</stream:stream>"), None);
        // Between the floor (8 KiB) and the ceiling (64 KiB) of an attribute value: a choice.
        let between = format!("<message id='{}'/>", "a".repeat(9000));
        assert_eq!(classify(between.as_bytes()), None);
    }

    #[test]
    fn split_writes_cover_the_bytes_in_order() {
        let corpus = vec![b"<message><body>some text to cut</body></message>".to_vec()];
        let mut g = Generator::new(11, corpus);
        let mut split = 0;
        for _ in 0..400 {
            let Some(case) = g.next_case() else { continue };
            let pieces = case.pieces();
            assert_eq!(pieces.concat_bytes(), case.bytes, "{}", case.how);
            if case.writes.is_empty() {
                assert_eq!(pieces.len(), 1);
                continue;
            }
            split += 1;
            assert!(
                pieces.len() >= 2 && pieces.len() <= MAX_PIECES,
                "{}",
                case.how
            );
            assert!(pieces.iter().all(|(b, _)| !b.is_empty()));
            assert!(pieces.iter().all(|(_, p)| *p == 0));
        }
        assert!(split > 10, "only {split} split cases in 400");
    }

    trait Concat {
        fn concat_bytes(&self) -> Vec<u8>;
    }

    impl Concat for Vec<(&[u8], u64)> {
        fn concat_bytes(&self) -> Vec<u8> {
            self.iter().flat_map(|(b, _)| b.iter().copied()).collect()
        }
    }

    #[test]
    fn known_classifications_are_what_classify_says() {
        let corpus = vec![
            b"<message><body>x</body></message>".to_vec(),
            b"<message><body>".to_vec(),
            b"<foo/>".to_vec(),
        ];
        let mut g = Generator::new(3, corpus);
        let mut hostile = 0;
        for _ in 0..2000 {
            let Some(case) = g.next_case() else { continue };
            assert_eq!(classify(&case.bytes), Some(case.expect), "{}", case.how);
            hostile += usize::from(case.how.starts_with("hostile"));
        }
        assert!(hostile > 100, "{hostile}");
        for (h, known) in &g.hostile_expect {
            assert_eq!(classify(&h.bytes()), *known, "{h:?}");
        }
        for (bytes, known) in g.corpus.iter().zip(&g.corpus_expect) {
            if let Some(known) = known {
                assert_eq!(classify(bytes), *known);
            }
        }
    }

    #[test]
    fn live_is_what_classify_says_and_wanting_live_cases_gives_only_those() {
        let corpus = vec![
            b"<message><body>x</body></message>".to_vec(),
            b"<iq type='get' id='a'><ping xmlns='urn:xmpp:ping'/></iq>".to_vec(),
        ];
        let mut g = Generator::new(5, corpus.clone());
        for _ in 0..1000 {
            let Some(case) = g.next_case() else { continue };
            let mut cut = case.bytes.clone();
            cut.truncate(cut.len() / 2);
            for bytes in [&case.bytes, &cut] {
                assert_eq!(live(bytes), classify(bytes) == Some(Expect::Live));
            }
        }
        let mut g = Generator::new(5, corpus);
        for _ in 0..300 {
            let case = g.next_wanted(Want::Live).expect("live cases");
            assert_eq!(case.expect, Expect::Live, "{}", case.how);
            assert_eq!(classify(&case.bytes), Some(Expect::Live), "{}", case.how);
        }
        // A corpus that gives no live case: given up, not an endless search.
        let mut g = Generator::new(5, vec![b"<foo/>".to_vec()]);
        let _ = g.next_wanted(Want::Live);
    }

    #[test]
    fn a_seed_gives_the_same_cases() {
        let corpus = vec![b"<message><body>x</body></message>".to_vec()];
        let mut a = Generator::new(7, corpus.clone());
        let mut b = Generator::new(7, corpus);
        for _ in 0..50 {
            let (x, y) = (a.next_case(), b.next_case());
            assert_eq!(x.map(|c| c.bytes), y.map(|c| c.bytes));
        }
    }
}
