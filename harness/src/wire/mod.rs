//! The stanza layer: typed model, streaming codec on quick-xml, stream framing, limits (RFC 6120 §11).
//!
//! - [`StreamParser`] turns bytes (in any chunking) into [`StreamEvent`]s: the stream header,
//!   each top-level element as an [`Element`] tree, the stream close. It enforces RFC 6120 §11
//!   itself (no DTD, comment, processing instruction or undefined entity; UTF-8 only) and the
//!   [`Limits`], and reports the first violation as a [`WireError`] with its byte offset and
//!   the stream error condition to answer with.
//! - [`Element::to_xml`] / [`Element::to_xml_in`] write trees back; parsing what they write
//!   gives the same tree.
//! - [`Stanza`] is the typed layer over `<message>`, `<iq>` and `<presence>`.
//! - [`StreamParser::next_event_ref`] is the zero-copy variant: a [`StanzaRef`] per stanza (a
//!   flat arena reused from stanza to stanza, read through [`ElementRef`] handles) whose
//!   strings borrow from the parser's buffer where the input needs no transformation.
//! - [`check_document`] backs `gatecheck check-stanza`.

mod borrowed;
mod chars;
mod condition;
mod element;
mod error;
mod event;
mod fixture;
mod framer;
mod limits;
pub mod ns;
mod parser;
mod serialize;
mod stanza;
mod tree;

pub use borrowed::{ElementRef, NodeRef, StanzaRef, StreamEventRef};
pub use condition::{ErrorCondition, StanzaErrorCondition, StreamErrorCondition, UnknownCondition};
pub use element::{Element, Node};
pub use error::{Violation, WireError, stream_error_element};
pub use fixture::{FixtureError, MAX_GENERATED_BYTES, expand_recipe, fixture_bytes};
pub use limits::Limits;
pub use parser::{
    Framing, StreamEvent, StreamHeader, StreamParser, check_document, parse_all, parse_fragment,
};
pub use serialize::{STREAM_CLOSE, xml_escape};
pub use stanza::{
    Envelope, Iq, IqType, Message, MessageType, Presence, PresenceType, Stanza, StanzaError,
};

#[cfg(test)]
mod tests;
