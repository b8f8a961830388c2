//! One direction of the relay's XML: the harness's streaming parser, plus the bytes it was fed,
//! so that each top-level unit (the stream header with any XML declaration before it, each
//! first-level element, the closing tag) comes out both parsed, for the proxy's checks, and as
//! the exact bytes received, to be forwarded unchanged (SPEC.md §15, PROXY-6 and PROXY-7).
//!
//! Memory: the copy holds the bytes the parser holds (at most one unit within the limits,
//! plus the last chunk fed), since bytes leave it as soon as the parser has settled them.

use gatecheck::wire::{Framing, Limits, StreamEvent, StreamParser, WireError};

pub struct Units {
    parser: StreamParser,
    limits: Limits,
    /// Bytes fed and not yet taken; `raw[0]` is at offset `raw_at` of the parser's input.
    raw: Vec<u8>,
    raw_at: u64,
}

impl Units {
    pub fn new(limits: Limits) -> Units {
        Units {
            parser: StreamParser::new(Framing::Stream, limits.clone()),
            limits,
            raw: Vec::new(),
            raw_at: 0,
        }
    }

    pub fn feed(&mut self, bytes: &[u8]) {
        self.raw.extend_from_slice(bytes);
        self.parser.feed(bytes);
    }

    /// The next complete unit and its bytes as received (from the end of the previous unit:
    /// any whitespace not yet taken comes first); `Ok(None)` when more input is needed.
    pub fn next(&mut self) -> Result<Option<(StreamEvent, Vec<u8>)>, WireError> {
        match self.parser.next_event()? {
            Some(event) => {
                let bytes = self.take_to(self.parser.settled());
                Ok(Some((event, bytes)))
            }
            None => Ok(None),
        }
    }

    /// Bytes settled since the last unit that belong to no unit: whitespace between
    /// elements (keepalives), or the XML declaration. Forwarding them at once keeps a
    /// whitespace keepalive a keepalive.
    pub fn take_settled(&mut self) -> Vec<u8> {
        self.take_to(self.parser.settled())
    }

    /// Everything fed and not taken yet (the unit being read, or faulty bytes).
    pub fn take_rest(&mut self) -> Vec<u8> {
        self.raw_at = self.raw_at.saturating_add(self.raw.len() as u64);
        std::mem::take(&mut self.raw)
    }

    /// A stream restart (after SASL success, RFC 6120 §6.4.6): a fresh parser, fed whatever
    /// arrived after the last unit taken.
    pub fn restart(&mut self) {
        let rest = std::mem::take(&mut self.raw);
        self.parser = StreamParser::new(Framing::Stream, self.limits.clone());
        self.raw_at = 0;
        self.feed(&rest);
    }

    fn take_to(&mut self, end: u64) -> Vec<u8> {
        let n = usize::try_from(end.saturating_sub(self.raw_at))
            .unwrap_or(usize::MAX)
            .min(self.raw.len());
        self.raw_at = self.raw_at.saturating_add(n as u64);
        self.raw.drain(..n).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STREAM: &[u8] = b"<?xml version='1.0'?><stream:stream xmlns='jabber:client' \
        xmlns:stream='http://etherx.jabber.org/streams' to='gk.gatecheck.test' version='1.0'>\n\
        <auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>AGEAYg==</auth> \
        <message to=\"b@x\"><encrypted  xmlns=\"eu.siacs.conversations.axolotl\" ><payload>\
        QQ==</payload></encrypted></message></stream:stream>";

    /// Whatever the chunking, the units and settled bytes put together are the input, and
    /// each element's bytes run from its `<` to its `>` (after leading whitespace).
    #[test]
    fn units_are_the_bytes_received_for_every_split() {
        for cut in 0..=STREAM.len() {
            let mut units = Units::new(Limits::profile_floors());
            let mut out = Vec::new();
            let mut pieces = Vec::new();
            for chunk in [&STREAM[..cut], &STREAM[cut..]] {
                units.feed(chunk);
                while let Some((event, bytes)) = units.next().expect("valid") {
                    out.extend_from_slice(&bytes);
                    pieces.push((event, bytes));
                }
                out.extend_from_slice(&units.take_settled());
            }
            assert_eq!(out, STREAM, "cut {cut}");
            assert_eq!(pieces.len(), 4, "cut {cut}");
            let message = String::from_utf8(pieces[2].1.clone()).unwrap();
            assert!(message.trim_start().starts_with("<message to=\"b@x\">"));
            assert!(message.ends_with("</message>"), "{message}");
            assert!(matches!(pieces[3].0, StreamEvent::Close));
        }
    }

    #[test]
    fn restart_keeps_what_came_after_the_last_unit() {
        let mut fresh = Units::new(Limits::profile_floors());
        fresh.feed(b"<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx");
        fresh.restart();
        fresh.feed(b".jabber.org/streams' version='1.0'>");
        assert!(matches!(
            fresh.next(),
            Ok(Some((StreamEvent::Header(_), _)))
        ));
    }
}
