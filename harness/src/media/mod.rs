//! Media (SPEC.md §14, issue 10): XEP-0454 references and streaming AES-256-GCM, the harness's
//! gatekeeper media host (HTTPS objects with scripted faults, upload slots) and the gatekeeper
//! media proxy (plain HTTP for the gatekeeper's own users, fetching provider objects over HTTPS).

pub mod aesgcm;
pub mod client;
pub mod files;
pub mod host;
pub mod proxy;
pub mod serve;
pub mod sink;
#[cfg(test)]
mod testutil;

pub use aesgcm::{AesgcmRef, Decryptor, Encryptor, GcmError, Iv, MediaKey, RefError};
pub use host::{Fault, HostConfig, HostRequest, MediaHost, ObjectInfo, UploadSlot};
pub use proxy::{MediaProxy, ProxyConfig, ProxyFetch, fetch_via_proxy};
pub use serve::Limits;
pub use sink::{DecryptSink, Discard, Opened, Sink};

/// Largest object: 100 MiB (plaintext + 16-byte tag).
pub const MAX_OBJECT: u64 = 104_857_600;
/// Largest plaintext.
pub const MAX_PLAINTEXT: u64 = MAX_OBJECT - aesgcm::TAG_LEN as u64;

/// Decodes `%XX` escapes (lossy UTF-8; a `%` not followed by two hex digits stays as it is).
pub fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && let Some(v) = b
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Escapes everything but RFC 3986 unreserved characters (for a URL as a query value).
pub fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
