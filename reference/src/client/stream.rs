//! One XML stream over an established transport: reading, parsing, writing, and every way it ends.
//!
//! Whoever detects the end of a stream performs the profile's closing ritual right here (stream
//! error then closing tag then close, or closing tag then close), so that login and session
//! code only decide *that* the stream ends, never *how*.

use std::sync::Mutex;
use std::time::Duration;

use gatecheck::transport::{FrameMode, SecureReader, SecureWriter, TransportError};
use gatecheck::wire::{
    Element, Framing, Limits, StreamErrorCondition, StreamEvent, StreamParser, ns,
    stream_error_element,
};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::{Instant, timeout_at};

use super::Failure;
use crate::mutant::Mutant;

/// What the reader task passes on: plaintext, clean EOF, or a transport failure.
pub type Inbound = Result<Option<Vec<u8>>, TransportError>;

/// Writers kept open on purpose by the `linger-*` and `no-close-reply` mutants (the correct
/// client closes them); they live until the process exits.
static LINGERING: Mutex<Vec<SecureWriter>> = Mutex::new(Vec::new());

/// How long to wait for the server's closing tag after our own (driver `disconnect`).
pub const CLOSE_WAIT: Duration = Duration::from_secs(2);

/// A stream whose transport handshake is done.
pub struct XmlStream {
    writer: Option<SecureWriter>,
    rx: mpsc::Receiver<Inbound>,
    reader_task: JoinHandle<()>,
    parser: StreamParser,
    /// Only used by the `leak-per-stanza` mutant.
    leaked: LeakedCopies,
    pub mutant: Mutant,
    /// Whether our `</stream:stream>` went out.
    closed_by_us: bool,
    /// When we last wrote, and last received anything (whitespace included): the idle and
    /// keepalive timers (STREAM-35, STREAM-43).
    pub last_write: Instant,
    pub last_read: Instant,
}

impl Drop for XmlStream {
    fn drop(&mut self) {
        self.reader_task.abort();
    }
}

/// The profile's floors as hard limits (the strictest receiver SPEC.md allows), or a mutant's.
fn limits(mutant: Mutant) -> Limits {
    let mut limits = Limits::profile_floors();
    if mutant == Mutant::BelowFloors {
        // STREAM-31 deviation: the correct client accepts input exactly at every floor.
        limits.max_stanza_bytes -= 1;
        limits.max_depth -= 1;
        limits.max_attributes -= 1;
        limits.max_namespace_decls -= 1;
        limits.max_attr_value_bytes -= 1;
        limits.max_text_bytes -= 1;
    }
    if mutant == Mutant::AboveCeilings {
        // STREAM-32 deviation: the correct client refuses input one unit above any ceiling.
        limits = Limits::harness_ceilings();
        limits.max_stanza_bytes += 1;
        limits.max_depth += 1;
        limits.max_attributes += 1;
        limits.max_namespace_decls += 1;
        limits.max_attr_value_bytes += 1;
        limits.max_text_bytes += 1;
    }
    if mutant == Mutant::LaxStanzaLimit {
        // STREAM-32 deviation: the correct client refuses stanzas over 1 MiB.
        limits.max_stanza_bytes = 64 << 20;
        limits.max_text_bytes = 64 << 20;
        limits.max_depth = 100_000;
    }
    if mutant == Mutant::LeakPerStanza {
        // Legal on its own (the ceilings are the most a receiver may accept); the mutant's
        // STREAM-32 deviations are in `LeakedCopies`.
        limits = Limits::harness_ceilings();
    }
    if mutant == Mutant::TightStanzaLimit {
        // STREAM-31 deviation: the correct client accepts stanzas of 256 KiB.
        limits.max_stanza_bytes = 128 << 10;
    }
    limits
}

/// The crash mutants (STREAM-31 deviations, for `gatecheck fuzz` to find): the correct client
/// handles any stanza within the floors.
async fn crash_mutants(mutant: Mutant, stanza: &Element) {
    if mutant == Mutant::CrashOnDeepNesting && depth(stanza) >= 20 {
        eprintln!("gatecheck-reference: crash-on-deep-nesting: aborting");
        std::process::abort();
    }
    if mutant == Mutant::HangOnLongAttribute && longest_attribute(stanza) >= 4096 {
        eprintln!("gatecheck-reference: hang-on-long-attribute: hanging");
        std::future::pending::<()>().await;
    }
}

/// The copies the `leak-per-stanza` mutant keeps (STREAM-32 deviations, for `gatecheck fuzz`'s
/// memory oracle and the limit scenarios to find): the correct client keeps nothing of a
/// stanza once it is handled, and measures a stanza as it arrives.
static LEAKED: Mutex<Vec<Vec<u8>>> = Mutex::new(Vec::new());
/// The size of each kept copy: a 1 MiB buffer per stanza, so a few dozen stanzas take more
/// than `gatecheck fuzz`'s default bound of 64 MiB.
const LEAK_BUFFER: usize = 1 << 20;

/// The bytes received since the last stanza was complete, copied by the `leak-per-stanza`
/// mutant before its parser sees them. A copy that outgrows [`LEAK_BUFFER`] aborts the process:
/// the mutant buffers a stanza over 1 MiB before any limit is applied to it.
#[derive(Default)]
struct LeakedCopies {
    current: Vec<u8>,
}

impl LeakedCopies {
    fn received(&mut self, bytes: &[u8]) {
        self.current.extend_from_slice(bytes);
        if self.current.len() > LEAK_BUFFER {
            eprintln!("gatecheck-reference: leak-per-stanza: a stanza overflowed its buffer");
            std::process::abort();
        }
    }

    /// A stanza is complete: its copy is padded to [`LEAK_BUFFER`] (every byte written, so
    /// the pages are resident) and kept until the process exits.
    fn stanza_done(&mut self) {
        let mut copy = std::mem::take(&mut self.current);
        copy.resize(LEAK_BUFFER, b' ');
        if let Ok(mut kept) = LEAKED.lock() {
            kept.push(copy);
        }
    }
}

/// Nesting depth of an element (1 for an element without element children), without recursion.
fn depth(root: &Element) -> usize {
    let mut deepest = 0;
    let mut stack = vec![(root, 1usize)];
    while let Some((e, d)) = stack.pop() {
        deepest = deepest.max(d);
        stack.extend(e.child_elements().map(|c| (c, d + 1)));
    }
    deepest
}

/// The longest attribute value anywhere in the element, in bytes.
fn longest_attribute(root: &Element) -> usize {
    let mut longest = 0;
    let mut stack = vec![root];
    while let Some(e) = stack.pop() {
        longest = e
            .attrs
            .iter()
            .map(|(_, v)| v.len())
            .fold(longest, usize::max);
        stack.extend(e.child_elements());
    }
    longest
}

impl XmlStream {
    pub fn new(reader: SecureReader, writer: SecureWriter, mutant: Mutant) -> Self {
        let (tx, rx) = mpsc::channel(16);
        let reader_task = tokio::spawn(read_loop(reader, tx, mutant));
        XmlStream {
            writer: Some(writer),
            rx,
            reader_task,
            parser: StreamParser::new(Framing::Stream, limits(mutant)),
            leaked: LeakedCopies::default(),
            mutant,
            closed_by_us: false,
            last_write: Instant::now(),
            last_read: Instant::now(),
        }
    }

    /// Discards the parser state for a stream restart (STREAM-20).
    pub fn restart_parser(&mut self) {
        self.parser = StreamParser::new(Framing::Stream, limits(self.mutant));
    }

    /// Sends raw stream bytes.
    pub async fn send_raw(&mut self, xml: &str) -> Result<(), Failure> {
        let Some(writer) = self.writer.as_mut() else {
            return Err(Failure::Io(TransportError::Closed));
        };
        self.last_write = Instant::now();
        writer.send(xml.as_bytes()).await.map_err(Failure::Io)
    }

    /// Writes a zero-length Noise frame (mutants only; TLS has no frames, so nothing).
    pub async fn send_zero_length_frame(&mut self) {
        if let Some(writer) = self.writer.as_mut() {
            let _ = writer.send_framed(&[], FrameMode::Empty).await;
        }
    }

    /// Writes `xml` in a Noise transport frame cut short (mutants only; nothing over TLS).
    pub async fn send_truncated_frame(&mut self, xml: &str) {
        if let Some(writer) = self.writer.as_mut() {
            self.last_write = Instant::now();
            let _ = writer
                .send_framed(xml.as_bytes(), FrameMode::Truncate)
                .await;
        }
    }

    /// Sends one element inside the `jabber:client` stream.
    pub async fn send(&mut self, element: &Element) -> Result<(), Failure> {
        self.send_raw(&element.to_xml_in(ns::JABBER_CLIENT)).await
    }

    /// Next parsed event, reading from the transport as needed until `deadline`.
    /// A parse error is answered on the spot (stream error, closing tag, close).
    pub async fn next_event(&mut self, deadline: Instant) -> Result<StreamEvent, Failure> {
        loop {
            if let Some(event) = self.poll_parsed().await? {
                return Ok(event);
            }
            let inbound = match timeout_at(deadline, self.rx.recv()).await {
                Ok(Some(inbound)) => inbound,
                // The reader task only ends after sending EOF or an error.
                Ok(None) => Ok(None),
                Err(_) => return Err(Failure::Timeout),
            };
            self.feed(inbound)?;
        }
    }

    /// Feeds what the reader task delivered; EOF and transport errors end the stream.
    pub fn feed(&mut self, inbound: Inbound) -> Result<(), Failure> {
        match inbound {
            Ok(Some(bytes)) => {
                self.last_read = Instant::now();
                let bytes = mutated_input(self.mutant, bytes);
                if self.mutant == Mutant::LeakPerStanza {
                    // STREAM-32 deviation: the correct client copies nothing ahead of its
                    // parser, which measures the stanza as it arrives.
                    self.leaked.received(&bytes);
                }
                self.parser.feed(&bytes);
                Ok(())
            }
            Ok(None) => Err(Failure::Eof),
            Err(e) => Err(Failure::Io(e)),
        }
    }

    /// The next event already in the parser, if any.
    pub async fn poll_parsed(&mut self) -> Result<Option<StreamEvent>, Failure> {
        match self.parser.next_event() {
            Ok(event) => {
                if let Some(StreamEvent::Stanza(stanza)) = &event {
                    crash_mutants(self.mutant, stanza).await;
                    if self.mutant == Mutant::LeakPerStanza {
                        // STREAM-32 deviation: the correct client keeps nothing of a stanza
                        // once it is handled.
                        self.leaked.stanza_done();
                    }
                }
                Ok(event)
            }
            Err(e) => Err(self.refuse(e.condition(), &e.to_string()).await),
        }
    }

    /// The next inbound item from the reader task (cancel-safe, for `select!`).
    pub async fn recv_inbound(&mut self) -> Inbound {
        self.rx.recv().await.unwrap_or(Ok(None))
    }

    /// Refuses the stream (STREAM-24): `<stream:error>`, `</stream:stream>`, close.
    pub async fn refuse(&mut self, condition: StreamErrorCondition, detail: &str) -> Failure {
        let condition = match condition {
            // STREAM-41 deviation: the correct client names restricted XML restricted-xml.
            StreamErrorCondition::RestrictedXml if self.mutant == Mutant::RestrictedAsBadFormat => {
                StreamErrorCondition::BadFormat
            }
            // STREAM-46 deviation: the correct client names a stream element outside the
            // streams namespace invalid-namespace.
            StreamErrorCondition::InvalidNamespace
                if self.mutant == Mutant::NamespaceErrorAsBadFormat =>
            {
                StreamErrorCondition::BadFormat
            }
            // STREAM-30 deviation: the correct client names malformed XML not-well-formed.
            StreamErrorCondition::NotWellFormed if self.mutant == Mutant::MalformedAsBadFormat => {
                StreamErrorCondition::BadFormat
            }
            // STREAM-14 deviation: the correct client names a declared non-UTF-8 encoding
            // unsupported-encoding.
            StreamErrorCondition::UnsupportedEncoding
                if self.mutant == Mutant::EncodingAsNotWellFormed =>
            {
                StreamErrorCondition::NotWellFormed
            }
            c => c,
        };
        let error = stream_error_element(condition, None);
        let xml = format!("{}</stream:stream>", error.to_xml_in(ns::JABBER_CLIENT));
        let _ = self.send_raw(&xml).await;
        self.closed_by_us = true;
        if self.mutant == Mutant::LingerAfterStreamError {
            // STREAM-24 deviation: the correct client closes the connection here.
            self.linger();
        } else {
            self.close_transport().await;
        }
        Failure::StreamErrorSent {
            condition: condition.as_str().to_owned(),
            detail: detail.into(),
        }
    }

    /// Answers the server's `</stream:stream>` (STREAM-27) or `<stream:error>` (STREAM-26):
    /// our closing tag if not sent yet, then close.
    pub async fn close_in_reply(&mut self) {
        if !self.closed_by_us {
            let _ = self.send_raw("</stream:stream>").await;
            self.closed_by_us = true;
        }
        self.close_transport().await;
    }

    /// Closes the stream from our side (driver `disconnect`, SASL failure, missing PLAIN):
    /// closing tag, then wait up to [`CLOSE_WAIT`] for the server's, then close.
    pub async fn close_locally(&mut self) {
        if !self.closed_by_us {
            let _ = self.send_raw("</stream:stream>").await;
            self.closed_by_us = true;
        }
        let deadline = Instant::now() + CLOSE_WAIT;
        loop {
            match self.parser.next_event() {
                Ok(Some(StreamEvent::Close)) | Err(_) => break,
                Ok(Some(_)) => continue,
                Ok(None) => {}
            }
            match timeout_at(deadline, self.rx.recv()).await {
                Ok(Some(Ok(Some(bytes)))) => self.parser.feed(&bytes),
                _ => break,
            }
        }
        self.close_transport().await;
    }

    /// Keeps the connection open without closing it (mutants only).
    pub fn linger(&mut self) {
        if let Some(writer) = self.writer.take()
            && let Ok(mut lingering) = LINGERING.lock()
        {
            lingering.push(writer);
        }
    }

    /// Shuts the write side (FIN, or close_notify + FIN) and drops both halves.
    pub async fn close_transport(&mut self) {
        if let Some(mut writer) = self.writer.take() {
            let _ = tokio::time::timeout(CLOSE_WAIT, writer.shutdown()).await;
        }
        self.reader_task.abort();
    }
}

async fn read_loop(mut reader: SecureReader, tx: mpsc::Sender<Inbound>, mutant: Mutant) {
    loop {
        let item = reader.recv().await;
        match &item {
            // STREAM-5 deviation: the correct client ends the connection on a zero-length
            // frame.
            Err(TransportError::ZeroLengthFrame) if mutant == Mutant::IgnoreZeroLengthFrame => {
                continue;
            }
            // STREAM-8 deviation: the correct client ends the connection on a frame that
            // does not decrypt.
            Err(TransportError::Noise(_)) if mutant == Mutant::SkipUndecryptableFrames => {
                continue;
            }
            _ => {}
        }
        let last = !matches!(item, Ok(Some(_)));
        if tx.send(item).await.is_err() || last {
            return;
        }
    }
}

/// The input-side mutants: bytes the correct client parses as they are.
fn mutated_input(mutant: Mutant, bytes: Vec<u8>) -> Vec<u8> {
    match mutant {
        // STREAM-28 deviation: the correct client refuses DOCTYPE with restricted-xml.
        Mutant::AcceptDoctype => strip_markup(&bytes, b"<!DOCTYPE", b">"),
        // STREAM-28 deviation: the correct client refuses comments with restricted-xml.
        Mutant::SkipRestrictedXmlForComments => strip_markup(&bytes, b"<!--", b"-->"),
        // STREAM-33 deviation: the correct client accepts whitespace between stanzas; this
        // one turns a whitespace-only chunk into a NUL, which the codec refuses.
        Mutant::WhitespaceIsError
            if !bytes.is_empty() && bytes.iter().all(u8::is_ascii_whitespace) =>
        {
            vec![0]
        }
        // STREAM-9 deviation: the correct client decodes the byte stream as a whole, so a
        // character split across frames survives.
        Mutant::FrameLocalUtf8 => String::from_utf8_lossy(&bytes).into_owned().into_bytes(),
        // STREAM-45 deviation: the correct client lets the codec check the namespace the
        // stream element's prefix is bound to; this one rebinds `stream` to the streams
        // namespace before parsing.
        Mutant::StreamNsByPrefix => rebind_stream_prefix(bytes),
        // STREAM-16 deviation: the correct client reads namespaces by their declarations;
        // this one drops the declaration of the streams namespace under any prefix but
        // `stream`, so the codec finds that prefix undeclared.
        Mutant::StreamPrefixOnly => drop_other_stream_prefixes(bytes),
        // STREAM-25 deviation: the correct client refuses the first fault in stream order;
        // this one looks for restricted XML first, so a comment later in the chunk wins over
        // an earlier malformed tag.
        Mutant::RestrictedFirst => match bytes.windows(4).position(|w| w == b"<!--") {
            Some(at) => bytes[at..].to_vec(),
            None => bytes,
        },
        _ => bytes,
    }
}

/// The bytes with every `xmlns:stream` declaration's value replaced by the streams namespace.
fn rebind_stream_prefix(bytes: Vec<u8>) -> Vec<u8> {
    const DECL: &[u8] = b"xmlns:stream=";
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i..].starts_with(DECL) && i + DECL.len() < bytes.len() {
            let quote = bytes[i + DECL.len()];
            let value_at = i + DECL.len() + 1;
            if let Some(len) = bytes[value_at..].iter().position(|&b| b == quote) {
                out.extend_from_slice(DECL);
                out.push(quote);
                out.extend_from_slice(ns::STREAMS.as_bytes());
                out.push(quote);
                i = value_at + len + 1;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    out
}

/// The bytes with every `xmlns:P='http://etherx.jabber.org/streams'` declaration whose prefix
/// `P` is not `stream` renamed to `xmlns:gc-dropped-P`, leaving `P` undeclared.
fn drop_other_stream_prefixes(bytes: Vec<u8>) -> Vec<u8> {
    let Ok(text) = String::from_utf8(bytes.clone()) else {
        return bytes;
    };
    let mut out = String::with_capacity(text.len());
    let mut rest = text.as_str();
    while let Some(at) = rest.find("xmlns:") {
        let (before, decl) = rest.split_at(at);
        out.push_str(before);
        let name_end = decl.find('=').unwrap_or(decl.len());
        let prefix = &decl["xmlns:".len()..name_end];
        let value = decl[name_end..].trim_start_matches('=');
        let binds_streams = value.get(1..).is_some_and(|v| v.starts_with(ns::STREAMS));
        if prefix != "stream" && binds_streams {
            out.push_str("xmlns:gc-dropped-");
            rest = &decl["xmlns:".len()..];
        } else {
            out.push_str("xmlns:");
            rest = &decl["xmlns:".len()..];
        }
    }
    out.push_str(rest);
    out.into_bytes()
}

/// Removes every `open ... close` span inside one chunk (good enough for a mutant; a DOCTYPE
/// internal subset `[...]` is skipped as a whole).
fn strip_markup(bytes: &[u8], open: &[u8], close: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i..].starts_with(open) {
            let mut j = i + open.len();
            let mut in_subset = false;
            while j < bytes.len() && (in_subset || !bytes[j..].starts_with(close)) {
                match bytes[j] {
                    b'[' => in_subset = true,
                    b']' => in_subset = false,
                    _ => {}
                }
                j += 1;
            }
            i = (j + close.len()).min(bytes.len());
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::{drop_other_stream_prefixes, rebind_stream_prefix, strip_markup};

    #[test]
    fn drops_stream_declarations_under_other_prefixes() {
        let got = drop_other_stream_prefixes(
            b"<s:stream xmlns:s='http://etherx.jabber.org/streams' xmlns:stream='urn:x'>".to_vec(),
        );
        assert_eq!(
            String::from_utf8(got).unwrap(),
            "<s:stream xmlns:gc-dropped-s='http://etherx.jabber.org/streams' xmlns:stream='urn:x'>"
        );
    }

    #[test]
    fn rebinds_the_stream_prefix() {
        let got = rebind_stream_prefix(b"<stream:stream xmlns:stream='urn:x' id='1'>".to_vec());
        assert_eq!(
            got,
            b"<stream:stream xmlns:stream='http://etherx.jabber.org/streams' id='1'>"
        );
    }

    #[test]
    fn strips_doctype_and_comments() {
        assert_eq!(
            strip_markup(b"a<!DOCTYPE x [<!ENTITY e 'v'>]>b", b"<!DOCTYPE", b">"),
            b"ab"
        );
        assert_eq!(
            strip_markup(b"<a><!-- c --></a>", b"<!--", b"-->"),
            b"<a></a>"
        );
    }
}
