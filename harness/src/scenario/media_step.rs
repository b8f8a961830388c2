//! The media steps (SPEC.md §14): a gatekeeper user sends media to the client, the client
//! shares media with a gatekeeper user, and (role `server`) objects are stored on the
//! provider's media host through its hook and fetched through the gatekeeper's media proxy.

use serde::Deserialize;

/// The largest object the profile allows (MEDIA-23): 100 MiB.
pub const MAX_OBJECT: u64 = 100 * 1024 * 1024;
/// The largest file whose object fits: the object adds the 16-byte tag.
pub const MAX_FILE: u64 = MAX_OBJECT - 16;

/// How the harness's media host serves an object a gatekeeper user sent (SPEC.md §14.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Fault {
    /// The object as encrypted.
    None,
    /// The last byte (in the tag) flipped: the tag fails.
    FlipTag,
    /// The full `Content-Length` announced, the connection closed after half the body.
    Truncate,
    /// Another object of the same size, under another key.
    Swap,
    /// `404 Not Found`.
    Status,
    /// A `302` to an `http://` URL.
    Redirect,
    /// `Content-Length` over 100 MiB, then zeros: the client must not read the body.
    Announce,
}

impl Fault {
    /// The client must refuse the object (`media_rejected`).
    pub fn must_reject(self) -> bool {
        self != Fault::None
    }
}

/// `media_send = { size = 1048576, fault = "flip-tag", name = "m1" }`, with `actor`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMediaSend {
    size: u64,
    #[serde(default)]
    fault: Option<Fault>,
    #[serde(default)]
    name: Option<String>,
}

/// `expect_media = { name = "m1", outcome = "received" }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawExpectMedia {
    #[serde(default)]
    name: Option<String>,
    outcome: Outcome,
}

/// `media_share = { size = 0, name = "s1", answer = "sent" }`, with `actor` (the recipient).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMediaShare {
    size: u64,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    answer: Option<ShareAnswer>,
}

/// `media_store = { size = 1024, name = "o1", status = 201 }` (role `server`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMediaStore {
    size: u64,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    status: Option<u16>,
}

/// `media_fetch = { name = "o1", expect = "served", range = [0, 99], guess = false }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMediaFetch {
    #[serde(default)]
    name: Option<String>,
    expect: Availability,
    #[serde(default)]
    range: Option<[u64; 2]>,
    #[serde(default)]
    guess: bool,
}

/// `media_clock = { to = "retention", offset_s = -60 }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMediaClock {
    to: ClockMark,
    #[serde(default)]
    offset_s: i64,
}

/// What the client must make of an object it was sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    Received,
    Rejected,
}

/// How the client must answer `send_media`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ShareAnswer {
    Sent,
    TooLarge,
}

/// What a fetch through the media proxy must find.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Availability {
    /// `200` with exactly the object (MEDIA-5), or a right `206` for a range (MEDIA-17).
    Served,
    /// `404` or `410` (MEDIA-10).
    Gone,
}

/// The point in an object's life the clock hook moves the server to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum ClockMark {
    /// The retention the server declares (`[server] media_retention_s`).
    #[serde(rename = "retention")]
    Retention,
    /// 24 hours, MEDIA-8's minimum.
    #[serde(rename = "24h")]
    Day,
    /// 14 days, MEDIA-9's.
    #[serde(rename = "14d")]
    Fortnight,
}

/// One media step, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MediaStep {
    /// A gatekeeper user encrypts a file of `size` bytes, the harness hosts the object
    /// (served with `fault`), and the user sends the reference to the client.
    Send {
        size: u64,
        fault: Fault,
        name: String,
    },
    /// The client's `media_received` or `media_rejected` for that message, judged.
    Expect { name: String, outcome: Outcome },
    /// The client shares a file of `size` bytes with the acting user (`send_media`).
    Share {
        size: u64,
        name: String,
        answer: ShareAnswer,
    },
    /// An object of `size` bytes stored through the provider's media hook.
    Store {
        size: u64,
        name: String,
        status: u16,
    },
    /// A fetch of a stored object through the gatekeeper's media proxy.
    Fetch {
        name: String,
        expect: Availability,
        range: Option<(u64, u64)>,
        guess: bool,
    },
    /// The provider server's clock moved to `offset_s` seconds from `to` after the objects
    /// were stored.
    Clock { to: ClockMark, offset_s: i64 },
}

impl MediaStep {
    /// Short name used in transcripts and failure messages.
    pub fn name(&self) -> &'static str {
        match self {
            MediaStep::Send { .. } => "media_send",
            MediaStep::Expect { .. } => "expect_media",
            MediaStep::Share { .. } => "media_share",
            MediaStep::Store { .. } => "media_store",
            MediaStep::Fetch { .. } => "media_fetch",
            MediaStep::Clock { .. } => "media_clock",
        }
    }

    /// Played against a provider server's media host (role `server`).
    pub fn of_server(&self) -> bool {
        matches!(
            self,
            MediaStep::Store { .. } | MediaStep::Fetch { .. } | MediaStep::Clock { .. }
        )
    }

    /// Done by a gatekeeper user (`actor` required).
    pub fn by_user(&self) -> bool {
        matches!(self, MediaStep::Send { .. } | MediaStep::Share { .. })
    }
}

/// The name objects and messages go by when a step gives none.
const DEFAULT_NAME: &str = "media";

fn name_ok(name: Option<String>) -> Result<String, String> {
    let name = name.unwrap_or_else(|| DEFAULT_NAME.to_string());
    if name.is_empty()
        || name.len() > 32
        || !name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
    {
        return Err(format!(
            "media name {name:?}: 1 to 32 of a-z, 0-9, '-' and '_'"
        ));
    }
    Ok(name)
}

pub(super) fn media_send(r: RawMediaSend) -> Result<MediaStep, String> {
    if r.size > MAX_FILE {
        return Err(format!(
            "media_send: size {} is over the largest file a sender may share ({MAX_FILE} bytes, MEDIA-23); `fault = \"announce\"` tests an oversized object",
            r.size
        ));
    }
    // Every fault applies to an empty file too: its object is the 16-byte tag.
    let fault = r.fault.unwrap_or(Fault::None);
    Ok(MediaStep::Send {
        size: r.size,
        fault,
        name: name_ok(r.name)?,
    })
}

pub(super) fn expect_media(r: RawExpectMedia) -> Result<MediaStep, String> {
    Ok(MediaStep::Expect {
        name: name_ok(r.name)?,
        outcome: r.outcome,
    })
}

pub(super) fn media_share(r: RawMediaShare) -> Result<MediaStep, String> {
    let answer = r.answer.unwrap_or(ShareAnswer::Sent);
    match answer {
        ShareAnswer::Sent if r.size > MAX_FILE => {
            return Err(format!(
                "media_share: a file of {} bytes is over the limit ({MAX_FILE}): write `answer = \"too-large\"`",
                r.size
            ));
        }
        ShareAnswer::TooLarge if r.size <= MAX_FILE => {
            return Err(format!(
                "media_share: `answer = \"too-large\"` needs a size over {MAX_FILE} bytes"
            ));
        }
        _ => {}
    }
    if r.size > MAX_OBJECT + 1024 * 1024 {
        return Err(format!(
            "media_share: size {} is needlessly large (at most {} bytes)",
            r.size,
            MAX_OBJECT + 1024 * 1024
        ));
    }
    Ok(MediaStep::Share {
        size: r.size,
        name: name_ok(r.name)?,
        answer,
    })
}

pub(super) fn media_store(r: RawMediaStore) -> Result<MediaStep, String> {
    let status = r.status.unwrap_or(201);
    if status != 201 && status != 413 {
        return Err(format!(
            "media_store: status {status}: 201 (stored) or 413 (too large, MEDIA-23)"
        ));
    }
    if (status == 413) != (r.size > MAX_OBJECT) {
        return Err(format!(
            "media_store: status {status} does not fit size {} (413 exactly for objects over {MAX_OBJECT} bytes)",
            r.size
        ));
    }
    if r.size > MAX_OBJECT + 1024 * 1024 {
        return Err(format!(
            "media_store: size {} is needlessly large (at most {} bytes)",
            r.size,
            MAX_OBJECT + 1024 * 1024
        ));
    }
    Ok(MediaStep::Store {
        size: r.size,
        name: name_ok(r.name)?,
        status,
    })
}

pub(super) fn media_fetch(r: RawMediaFetch) -> Result<MediaStep, String> {
    if let Some([a, b]) = r.range
        && a > b
    {
        return Err(format!("media_fetch: range [{a}, {b}]: first > last"));
    }
    if r.guess && (r.expect != Availability::Gone || r.range.is_some()) {
        return Err(
            "media_fetch: a guessed URL must be `expect = \"gone\"`, without a range".into(),
        );
    }
    Ok(MediaStep::Fetch {
        name: name_ok(r.name)?,
        expect: r.expect,
        range: r.range.map(|[a, b]| (a, b)),
        guess: r.guess,
    })
}

pub(super) fn media_clock(r: RawMediaClock) -> Result<MediaStep, String> {
    if r.offset_s.abs() > 3600 {
        return Err(format!(
            "media_clock: offset_s {} is more than an hour from the mark",
            r.offset_s
        ));
    }
    Ok(MediaStep::Clock {
        to: r.to,
        offset_s: r.offset_s,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_are_checked_when_loading() {
        let big = RawMediaSend {
            size: MAX_FILE + 1,
            fault: None,
            name: None,
        };
        assert!(media_send(big).unwrap_err().contains("MEDIA-23"));
        let wrong = RawMediaShare {
            size: 10,
            name: None,
            answer: Some(ShareAnswer::TooLarge),
        };
        assert!(media_share(wrong).is_err());
        let ok = RawMediaShare {
            size: MAX_FILE + 1,
            name: None,
            answer: Some(ShareAnswer::TooLarge),
        };
        assert!(media_share(ok).is_ok());
        let store = RawMediaStore {
            size: 5,
            name: Some("o1".into()),
            status: Some(413),
        };
        assert!(media_store(store).is_err());
        assert!(name_ok(Some("Bad Name".into())).is_err());
    }
}
