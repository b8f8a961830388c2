//! The wire transcript of one scenario: both directions, timestamped, bounded.

use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Who sent an entry's bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Direction {
    /// Stream bytes from the harness (gatekeeper) to the IUT.
    ToIut,
    /// Stream bytes from the IUT to the harness.
    FromIut,
    /// A driver command to the IUT.
    DriverCommand,
    /// A driver event from the IUT.
    DriverEvent,
    /// The harness's own remark (handshake steps, connection state).
    Note,
}

impl Direction {
    pub fn arrow(self) -> &'static str {
        match self {
            Direction::ToIut => "gk -> iut",
            Direction::FromIut => "iut -> gk",
            Direction::DriverCommand => "drv -> iut",
            Direction::DriverEvent => "iut -> drv",
            Direction::Note => "note",
        }
    }
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Entry {
    /// Milliseconds since the scenario started (microsecond precision).
    pub t_ms: f64,
    pub dir: Direction,
    /// The IUT instance the entry belongs to, in scenarios with several (`devices`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
    pub data: String,
}

/// Total bytes of data kept per scenario; later entries are counted, not kept.
pub const MAX_TRANSCRIPT_BYTES: usize = 256 * 1024;
/// Bytes kept of one entry.
const MAX_ENTRY_BYTES: usize = 16 * 1024;

#[derive(Debug)]
struct Inner {
    entries: Vec<Entry>,
    bytes: usize,
    dropped: usize,
}

/// Shared, so that a scenario that panics still leaves its transcript behind.
#[derive(Debug, Clone)]
pub struct Transcript {
    start: Instant,
    inner: Arc<Mutex<Inner>>,
    /// Echo each entry to stderr as it is recorded (`gatecheck serve`).
    live: bool,
    /// Stamped on every entry recorded through this handle ([`Transcript::for_device`]).
    device: Option<Arc<str>>,
}

impl Transcript {
    pub fn new(start: Instant) -> Transcript {
        Transcript {
            start,
            inner: Arc::new(Mutex::new(Inner {
                entries: Vec::new(),
                bytes: 0,
                dropped: 0,
            })),
            live: false,
            device: None,
        }
    }

    /// The same transcript, each entry recorded through the returned handle marked as
    /// belonging to IUT instance `name`.
    pub fn for_device(&self, name: &str) -> Transcript {
        Transcript {
            device: Some(Arc::from(name)),
            ..self.clone()
        }
    }

    /// A transcript that also prints each entry to stderr as it happens.
    pub fn live(start: Instant) -> Transcript {
        Transcript {
            live: true,
            ..Transcript::new(start)
        }
    }

    pub fn record(&self, dir: Direction, data: impl AsRef<[u8]>) {
        self.record_at(dir, data, Instant::now());
    }

    /// Records an entry stamped with the time it happened (a driver event is stamped when
    /// its line arrived, not when a step reads it).
    pub fn record_at(&self, dir: Direction, data: impl AsRef<[u8]>, at: Instant) {
        let bytes = data.as_ref();
        let t_ms = at.saturating_duration_since(self.start).as_micros() as f64 / 1000.0;
        if self.live {
            let device = self
                .device
                .as_deref()
                .map(|d| format!("[{d}] "))
                .unwrap_or_default();
            eprintln!(
                "{t_ms:>10.3} ms  {:<10}  {device}{}",
                dir.arrow(),
                String::from_utf8_lossy(bytes)
            );
        }
        let Ok(mut inner) = self.inner.lock() else {
            return;
        };
        if inner.bytes >= MAX_TRANSCRIPT_BYTES {
            inner.dropped += 1;
            return;
        }
        let keep = bytes.len().min(MAX_ENTRY_BYTES);
        let mut text = String::from_utf8_lossy(&bytes[..keep]).into_owned();
        if keep < bytes.len() {
            text.push_str(&format!("… [{} more bytes]", bytes.len() - keep));
        }
        inner.bytes += text.len();
        inner.entries.push(Entry {
            t_ms,
            dir,
            device: self.device.as_deref().map(str::to_string),
            data: text,
        });
    }

    pub fn note(&self, text: impl AsRef<str>) {
        self.record(Direction::Note, text.as_ref());
    }

    /// The entries, with a final note when some were dropped.
    pub fn entries(&self) -> Vec<Entry> {
        let Ok(inner) = self.inner.lock() else {
            return Vec::new();
        };
        let mut out = inner.entries.clone();
        // Entries stamped at arrival can be recorded after later ones; the sort is stable.
        out.sort_by(|a, b| a.t_ms.total_cmp(&b.t_ms));
        if inner.dropped > 0 {
            out.push(Entry {
                t_ms: self.start.elapsed().as_micros() as f64 / 1000.0,
                dir: Direction::Note,
                device: None,
                data: format!(
                    "{} later entries dropped: transcript limit of {MAX_TRANSCRIPT_BYTES} bytes",
                    inner.dropped
                ),
            });
        }
        out
    }
}
