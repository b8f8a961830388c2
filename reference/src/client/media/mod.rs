//! Media (SPEC.md §14, after XEP-0454): sharing a file as an AES-256-GCM object on a media
//! host plus an `aesgcm://` reference sent as the text of one encrypted message, and
//! downloading the objects of references received.
//!
//! The reference's own implementation, on purpose independent of the harness's media code, so
//! that a bug in one is not silently cancelled by the same bug in the other. Uploads and
//! downloads run as tasks beside the driver loop, which keeps serving the session meanwhile;
//! their outcome comes back to it as a [`Done`].
//!
//! Everything a media host answers is untrusted: every step has a time bound, a body is read
//! only when its announced length is within the limit and never past that length, and nothing
//! of a file is reported before its whole object arrived and its tag verified (MEDIA-24).

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use aes_gcm::aead::array::ArraySize;
use aes_gcm::aead::consts::{U12, U16};
use aes_gcm::aes::Aes256;
use aes_gcm::{AeadInOut, AesGcm, KeyInit, Nonce, Tag};
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use hyper::header::{CONTENT_LENGTH, COOKIE, HOST};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use rand::TryRngCore as _;
use rustls::ClientConfig;
use rustls::pki_types::ServerName;
use sha2::{Digest as _, Sha256};
use tokio::net::TcpStream;
use tokio::sync::{Semaphore, mpsc};
use tokio::time::{Instant, timeout, timeout_at};

mod upload;

pub use upload::send;

use super::Session;
use crate::driver::Event;
use crate::mutant::Mutant;

/// The largest object (MEDIA-23): 100 MiB.
pub const MAX_OBJECT: u64 = 104_857_600;
/// The GCM tag after the ciphertext.
pub const TAG_LEN: usize = 16;
/// The largest file: its object is 16 bytes longer.
pub const MAX_FILE: u64 = MAX_OBJECT - TAG_LEN as u64;
const KEY_LEN: usize = 32;
const IV_LEN: usize = 12;
/// XEP-0454's older IV length, accepted from senders (SPEC.md §14.1 allows it).
const LEGACY_IV_LEN: usize = 16;
const SCHEME: &[u8] = b"aesgcm://";
/// The reference's own upload path on its own server (chain scenarios).
pub const UPLOAD_PATH: &str = "/media/v1/upload";
/// TCP connect and TLS handshake, each.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// From the request to the answer's head.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest pause between two pieces of a body.
const IDLE_TIMEOUT: Duration = Duration::from_secs(10);
/// A whole download or upload, whatever the pieces took.
const DEADLINE: Duration = Duration::from_secs(120);
/// The media-ignores-size-limit mutant still stops somewhere.
const MUTANT_CAP: u64 = 2 * MAX_OBJECT;

/// Downloads at once: each holds up to one object in memory.
static DOWNLOADS: Semaphore = Semaphore::const_new(4);

/// A reference a decrypted message carried, to download.
#[derive(Debug)]
pub struct Fetch {
    pub from: String,
    pub id: Option<String>,
    pub reference: String,
}

/// What a media task hands back to the driver loop.
#[derive(Debug)]
pub enum Done {
    /// The object of `send_media` `seq` is stored: send `reference` to `to` as send_text does.
    Uploaded {
        seq: i64,
        to: String,
        reference: String,
    },
    /// An event to write as it is (`send_failed`, `media_received`, `media_rejected`).
    Answer(Event),
}

/// Whether a decrypted text is meant as a media reference (well-formed or not): it starts
/// with the `aesgcm://` scheme. Anything else is an ordinary text.
pub fn is_reference(text: &str) -> bool {
    text.as_bytes()
        .get(..SCHEME.len())
        .is_some_and(|s| s.eq_ignore_ascii_case(SCHEME))
}

/// An `https` URL as the media code uses it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct HttpsUrl {
    /// Host to connect to and to check the certificate for (IPv6 without brackets).
    host: String,
    port: u16,
    /// The `Host` header: the authority as written.
    authority: String,
    /// Path and query, as sent in the request line.
    target: String,
}

impl HttpsUrl {
    /// `https://host[:port][/path][?query]`: ASCII without spaces or controls, no user info,
    /// no fragment.
    fn parse(url: &str) -> Option<HttpsUrl> {
        let scheme = b"https://";
        if !url.is_ascii()
            || url.bytes().any(|b| b <= b' ' || b == 0x7f)
            || url.contains('#')
            || !url
                .as_bytes()
                .get(..scheme.len())?
                .eq_ignore_ascii_case(scheme)
        {
            return None;
        }
        let rest = &url[scheme.len()..];
        let end = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, target) = rest.split_at(end);
        if authority.contains('@') {
            return None;
        }
        let (host, port) = match authority.strip_prefix('[') {
            Some(v6) => {
                let (host, after) = v6.split_once(']')?;
                match after {
                    "" => (host, None),
                    _ => (host, Some(after.strip_prefix(':')?)),
                }
            }
            None => match authority.rsplit_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (authority, None),
            },
        };
        let port = match port {
            None => 443,
            Some(p) => p.parse().ok().filter(|p| *p != 0)?,
        };
        if host.is_empty() || host.contains(['[', ']']) {
            return None;
        }
        let target = match target {
            "" => "/".to_owned(),
            t if t.starts_with('?') => format!("/{t}"),
            t => t.to_owned(),
        };
        target.parse::<hyper::Uri>().ok()?;
        Some(HttpsUrl {
            host: host.to_owned(),
            port,
            authority: authority.to_owned(),
            target,
        })
    }
}

/// A parsed reference: where the object is, and the IV and key that open it.
struct Reference {
    url: HttpsUrl,
    iv: Vec<u8>,
    key: [u8; KEY_LEN],
}

/// SPEC.md §14.1: `aesgcm://` locator `#` 88 hex digits (IV, then key), either case; the
/// legacy 96 digits (16-byte IV) too.
fn parse_reference(text: &str) -> Option<Reference> {
    if !is_reference(text) {
        return None;
    }
    let (locator, fragment) = text[SCHEME.len()..].split_once('#')?;
    let bytes = hex_decode(fragment)?;
    let iv_len = match bytes.len() {
        44 => IV_LEN,
        48 => LEGACY_IV_LEN,
        _ => return None,
    };
    let (iv, key) = bytes.split_at(iv_len);
    Some(Reference {
        url: HttpsUrl::parse(&format!("https://{locator}"))?,
        iv: iv.to_vec(),
        key: key.try_into().ok()?,
    })
}

/// The reference to an object at `url` (https, no fragment), lowercase hex (MEDIA-18).
fn reference_for(url: &str, iv: &[u8; IV_LEN], key: &[u8; KEY_LEN]) -> Option<String> {
    HttpsUrl::parse(url)?;
    let locator = &url["https://".len()..];
    Some(format!("aesgcm://{locator}#{}{}", hex(iv), hex(key)))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn hex_decode(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    let digit = |b: u8| (b as char).to_digit(16);
    text.as_bytes()
        .chunks(2)
        .map(|pair| Some((digit(pair[0])? * 16 + digit(pair[1])?) as u8))
        .collect()
}

/// AES-256-GCM with an IV of `N` bytes, in place on `buffer`: seals when `tag` is `None`
/// (returning the tag), opens and verifies otherwise. `unchecked` runs the cipher without the
/// tag (the media-no-tag-check mutant: GCM's keystream depends on key and IV alone, so
/// sealing a ciphertext again yields its plaintext).
fn gcm<N: ArraySize>(
    key: &[u8; KEY_LEN],
    iv: &[u8],
    buffer: &mut [u8],
    tag: Option<&[u8; TAG_LEN]>,
    unchecked: bool,
) -> Option<[u8; TAG_LEN]> {
    let cipher = AesGcm::<Aes256, N>::new(key.into());
    let nonce = Nonce::<N>::try_from(iv).ok()?;
    match tag {
        Some(tag) if !unchecked => {
            let tag = Tag::try_from(tag.as_slice()).ok()?;
            cipher
                .decrypt_inout_detached(&nonce, &[], buffer.into(), &tag)
                .ok()?;
            Some([0; TAG_LEN])
        }
        _ => {
            let tag = cipher
                .encrypt_inout_detached(&nonce, &[], buffer.into())
                .ok()?;
            tag.as_slice().try_into().ok()
        }
    }
}

/// The object of `file` (MEDIA-1): ciphertext, then the tag.
fn seal(key: &[u8; KEY_LEN], iv: &[u8; IV_LEN], mut file: Vec<u8>) -> Option<Vec<u8>> {
    let tag = gcm::<U12>(key, iv, &mut file, None, false)?;
    file.extend_from_slice(&tag);
    Some(file)
}

/// The file inside `object`, once its tag verified (MEDIA-24).
fn open(reference: &Reference, mut object: Vec<u8>, mutant: Mutant) -> Option<Vec<u8>> {
    let split = object.len().checked_sub(TAG_LEN)?;
    let tag: [u8; TAG_LEN] = object[split..].try_into().ok()?;
    object.truncate(split);
    // MEDIA-24 deviation (media-no-tag-check): the correct client verifies the tag first.
    let unchecked = mutant == Mutant::MediaNoTagCheck;
    let (key, iv) = (&reference.key, reference.iv.as_slice());
    match iv.len() {
        IV_LEN => gcm::<U12>(key, iv, &mut object, Some(&tag), unchecked)?,
        LEGACY_IV_LEN => gcm::<U16>(key, iv, &mut object, Some(&tag), unchecked)?,
        _ => return None,
    };
    Some(object)
}

/// A fresh key and IV from the operating system's randomness (MEDIA-1).
fn fresh_key(mutant: Mutant) -> Option<([u8; KEY_LEN], [u8; IV_LEN])> {
    fn draw() -> Option<([u8; KEY_LEN], [u8; IV_LEN])> {
        let (mut key, mut iv) = ([0u8; KEY_LEN], [0u8; IV_LEN]);
        rand::rngs::OsRng.try_fill_bytes(&mut key).ok()?;
        rand::rngs::OsRng.try_fill_bytes(&mut iv).ok()?;
        Some((key, iv))
    }
    if mutant == Mutant::MediaReusedKey {
        // MEDIA-1 deviation: the correct client draws a key and IV for every file; this one
        // draws one pair per process and uses it for all.
        static ONCE: OnceLock<Option<([u8; KEY_LEN], [u8; IV_LEN])>> = OnceLock::new();
        return *ONCE.get_or_init(draw);
    }
    draw()
}

/// A media type from the file's first bytes, when it is one of a few well-known kinds.
pub fn sniff(file: &[u8]) -> Option<&'static str> {
    let at = |offset: usize, magic: &[u8]| file.get(offset..offset + magic.len()) == Some(magic);
    Some(if at(0, b"\x89PNG\r\n\x1a\n") {
        "image/png"
    } else if at(0, b"\xff\xd8\xff") {
        "image/jpeg"
    } else if at(0, b"GIF87a") || at(0, b"GIF89a") {
        "image/gif"
    } else if at(0, b"RIFF") && at(8, b"WEBP") {
        "image/webp"
    } else if at(0, b"RIFF") && at(8, b"WAVE") {
        "audio/wav"
    } else if at(0, b"%PDF-") {
        "application/pdf"
    } else if at(4, b"ftyp") {
        "video/mp4"
    } else if at(0, b"OggS") {
        "audio/ogg"
    } else if at(0, b"ID3") {
        "audio/mpeg"
    } else if at(0, b"PK\x03\x04") {
        "application/zip"
    } else {
        return None;
    })
}

/// TLS for a media host: trusting `ca_pem` and nothing else, ALPN `http/1.1`.
fn tls_config(ca_pem: &str) -> Result<Arc<ClientConfig>, String> {
    let roots = gatecheck::transport::root_store(ca_pem).map_err(|e| e.to_string())?;
    if roots.is_empty() {
        return Err("the CA PEM holds no certificate".into());
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Why a request got no answer: `tls` or `transport`, and the detail for stderr.
type Broken = (&'static str, String);

/// Aborts a connection's task when the exchange is over or abandoned.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// One request on a fresh connection; the answer's body is the caller's to read while it
/// holds the guard.
async fn exchange(
    url: &HttpsUrl,
    config: Arc<ClientConfig>,
    request: Request<Full<Bytes>>,
) -> Result<(Response<Incoming>, AbortOnDrop), Broken> {
    let tcp = timeout(
        CONNECT_TIMEOUT,
        TcpStream::connect((url.host.as_str(), url.port)),
    )
    .await
    .map_err(|_| ("transport", "connect timed out".to_owned()))?
    .map_err(|e| ("transport", format!("connect: {e}")))?;
    let _ = tcp.set_nodelay(true);
    let name = ServerName::try_from(url.host.clone())
        .map_err(|e| ("tls", format!("server name {:?}: {e}", url.host)))?;
    let tls = timeout(
        CONNECT_TIMEOUT,
        tokio_rustls::TlsConnector::from(config).connect(name, tcp),
    )
    .await
    .map_err(|_| ("tls", "handshake timed out".to_owned()))?
    .map_err(|e| ("tls", format!("handshake: {e}")))?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .map_err(|e| ("transport", format!("HTTP: {e}")))?;
    let guard = AbortOnDrop(tokio::spawn(async move {
        let _ = connection.await;
    }));
    // An upload's body goes out before the answer comes, so its time counts against the
    // caller's deadline, not this one.
    let wait = if request.method() == hyper::Method::GET {
        ANSWER_TIMEOUT
    } else {
        DEADLINE
    };
    let response = timeout(wait, sender.send_request(request))
        .await
        .map_err(|_| ("transport", "no answer in time".to_owned()))?
        .map_err(|e| ("transport", format!("no answer: {e}")))?;
    Ok((response, guard))
}

/// The single `Content-Length` of an answer, if it has one that parses.
fn content_length(response: &Response<Incoming>) -> Option<u64> {
    let mut values = response.headers().get_all(CONTENT_LENGTH).iter();
    let value = values.next()?;
    if values.next().is_some() {
        return None;
    }
    value.to_str().ok()?.trim().parse().ok()
}

/// Runs the downloads the session's received references asked for, each in a task of its
/// own; their events come back through `tx`.
pub fn spawn_downloads(session: &mut Session, mutant: Mutant, tx: &mpsc::Sender<Done>) {
    let (jobs, ca_pem) = session.take_media();
    for job in jobs {
        let (tx, ca_pem) = (tx.clone(), ca_pem.clone());
        tokio::spawn(async move {
            let Ok(_permit) = DOWNLOADS.acquire().await else {
                return;
            };
            if let Some(event) = receive(job, ca_pem.as_deref(), mutant).await {
                let _ = tx.send(Done::Answer(event)).await;
            }
        });
    }
}

/// Downloads and opens one reference: `media_received` or `media_rejected` (or, for the
/// media-drops-untyped mutant, nothing).
async fn receive(job: Fetch, ca_pem: Option<&str>, mutant: Mutant) -> Option<Event> {
    let Fetch {
        from,
        id,
        reference,
    } = job;
    let file = match download(&reference, ca_pem, mutant).await {
        Ok(file) => file,
        Err(reason) => return Some(Event::MediaRejected { from, id, reason }),
    };
    let mime = sniff(&file);
    if mime.is_none() && mutant == Mutant::MediaDropsUntyped {
        // MEDIA-21 deviation: the correct client offers a file of unknown type, or refuses
        // it with unsupported-type; this one drops it without a word.
        return None;
    }
    if mime.is_none() && mutant == Mutant::MediaRefusesUntyped {
        // MEDIA-25 deviation: refused instead of offered as a file.
        return Some(Event::MediaRejected {
            from,
            id,
            reason: "unsupported-type",
        });
    }
    let size = file.len() as u64;
    let digest = tokio::task::spawn_blocking(move || hex(&Sha256::digest(&file)))
        .await
        .ok()?;
    Some(Event::MediaReceived {
        from,
        id,
        size,
        sha256: digest,
        mime: Some(mime.unwrap_or("application/octet-stream")),
    })
}

/// The file a reference points to, or the `media_rejected` reason.
async fn download(
    text: &str,
    ca_pem: Option<&str>,
    mutant: Mutant,
) -> Result<Vec<u8>, &'static str> {
    let reference = parse_reference(text).ok_or("bad-url")?;
    let config = ca_pem
        .ok_or_else(|| "no media_ca_pem was given".to_owned())
        .and_then(tls_config)
        .map_err(|why| {
            eprintln!("gatecheck-reference: media download TLS: {why}");
            "tls"
        })?;
    let mut request =
        Request::get(reference.url.target.as_str()).header(HOST, reference.url.authority.as_str());
    if mutant == Mutant::MediaSendsCookie {
        // MEDIA-15 deviation: the correct client's GET carries no cookie or credential.
        request = request.header(COOKIE, "gcr-session=gatecheck-reference");
    }
    let request = request
        .body(Full::new(Bytes::new()))
        .map_err(|_| "bad-url")?;
    let object = timeout_at(Instant::now() + DEADLINE, async {
        let (response, _guard) =
            exchange(&reference.url, config, request)
                .await
                .map_err(|(reason, detail)| {
                    eprintln!("gatecheck-reference: media download: {detail}");
                    reason
                })?;
        if response.status() != hyper::StatusCode::OK {
            return Err("http-status");
        }
        let limit = if mutant == Mutant::MediaIgnoresSizeLimit {
            // MEDIA-23 deviation: the correct client refuses an object announced over
            // 100 MiB before reading any of it.
            MUTANT_CAP
        } else {
            MAX_OBJECT
        };
        // MEDIA-23: no announced length, or one over the limit, and not a byte is read.
        let length = content_length(&response)
            .filter(|n| *n <= limit)
            .ok_or("too-large")?;
        read_exactly(response.into_body(), length).await
    })
    .await
    .unwrap_or(Err("transport"))?;
    tokio::task::spawn_blocking(move || open(&reference, object, mutant))
        .await
        .ok()
        .flatten()
        .ok_or("bad-tag")
}

/// The body's first `length` bytes (never more); `truncated` when it ends sooner.
async fn read_exactly(mut body: Incoming, length: u64) -> Result<Vec<u8>, &'static str> {
    let mut object = Vec::with_capacity(usize::try_from(length.min(1 << 20)).unwrap_or(0));
    while (object.len() as u64) < length {
        let frame = match timeout(IDLE_TIMEOUT, body.frame()).await {
            Err(_) => return Err("transport"),
            Ok(None) => break,
            Ok(Some(Err(_))) => return Err("truncated"),
            Ok(Some(Ok(frame))) => frame,
        };
        if let Ok(data) = frame.into_data() {
            let room = usize::try_from(length - object.len() as u64).unwrap_or(usize::MAX);
            object.extend_from_slice(&data[..data.len().min(room)]);
        }
    }
    if (object.len() as u64) < length {
        return Err("truncated");
    }
    Ok(object)
}

#[cfg(test)]
mod tests;
