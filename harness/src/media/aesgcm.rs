//! XEP-0454 media references and streaming AES-256-GCM (SPEC.md §14, the issue 10 design).
//!
//! A reference is `aesgcm://` + authority + path [+ `?query`] + `#` + 88 hex digits: the
//! 12-byte IV, then the 32-byte key. The object it names is the AES-256-GCM ciphertext (no
//! associated data) followed by the 16-byte tag; it is fetched at the same URL with `https://`
//! and no fragment. Upper-case hex is accepted; the legacy 96-digit fragment (a 16-byte IV) is
//! accepted too, as the design allows.
//!
//! The cipher is built from the block cipher, the counter mode and GHASH so that objects of up
//! to 100 MiB go through in chunks: [`Encryptor`] seals chunk by chunk and gives the tag at the
//! end; [`Decryptor`] holds back the last 16 bytes it was fed (the tag) and verifies them in
//! [`Decryptor::finish`]. The plaintext a decryptor gives out before `finish` is unverified.

use std::fmt;

use aes::Aes256;
use aes::cipher::{
    BlockCipherEncrypt, InnerIvInit, KeyInit, StreamCipher, StreamCipherCoreWrapper,
};
use ghash::GHash;
use ghash::universal_hash::UniversalHash;
use ghash::universal_hash::array::Array;

/// Length of the GCM tag that ends every object.
pub const TAG_LEN: usize = 16;
/// Length of the key.
pub const KEY_LEN: usize = 32;
/// Length of the IV the design prescribes.
pub const IV_LEN: usize = 12;
/// Length of the legacy IV a receiver may accept.
pub const LEGACY_IV_LEN: usize = 16;

type Block = ghash::Block;
type Ctr = StreamCipherCoreWrapper<ctr::CtrCore<Aes256, ctr::flavors::Ctr32BE>>;

/// The IV of a reference: 12 bytes, or the legacy 16.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Iv {
    Standard([u8; IV_LEN]),
    Legacy([u8; LEGACY_IV_LEN]),
}

/// Shows the length only: an IV next to its key in a log is half a leak.
impl fmt::Debug for Iv {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Iv({} bytes)", self.as_bytes().len())
    }
}

impl Iv {
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            Iv::Standard(iv) => iv,
            Iv::Legacy(iv) => iv,
        }
    }
}

/// The key material of one object. `Debug` does not show it.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct MediaKey {
    pub iv: Iv,
    pub key: [u8; KEY_LEN],
}

impl MediaKey {
    /// A fresh key and 12-byte IV from the operating system's random source.
    pub fn generate() -> MediaKey {
        use rand::RngCore as _;
        use rand::SeedableRng as _;
        let mut rng = rand::rngs::StdRng::from_os_rng();
        let mut key = [0u8; KEY_LEN];
        let mut iv = [0u8; IV_LEN];
        rng.fill_bytes(&mut key);
        rng.fill_bytes(&mut iv);
        MediaKey {
            iv: Iv::Standard(iv),
            key,
        }
    }

    /// The fragment of a reference: lowercase hex of the IV, then of the key.
    pub fn fragment(&self) -> String {
        let mut s = hex_lower(self.iv.as_bytes());
        s.push_str(&hex_lower(&self.key));
        s
    }
}

impl fmt::Debug for MediaKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MediaKey")
            .field("iv_len", &self.iv.as_bytes().len())
            .finish_non_exhaustive()
    }
}

/// Why a text is not a media reference (the receiver's reason is always `bad-url`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RefError {
    #[error("not an aesgcm:// URL")]
    NotAesgcm,
    #[error("character {at} is not a printable ASCII character allowed there")]
    BadCharacter { at: usize },
    #[error("bad authority: {0}")]
    BadAuthority(&'static str),
    #[error("bad path: {0}")]
    BadPath(&'static str),
    #[error("no fragment with the IV and key")]
    NoFragment,
    #[error("the fragment has {0} characters, not 88 (or the legacy 96)")]
    FragmentLength(usize),
    #[error("the fragment is not hexadecimal")]
    FragmentNotHex,
}

impl RefError {
    /// The driver's `media_rejected` reason for any malformed reference.
    pub fn reason(&self) -> &'static str {
        "bad-url"
    }
}

/// A parsed `aesgcm://` reference.
#[derive(Clone, PartialEq, Eq)]
pub struct AesgcmRef {
    /// `host[:port]` as written.
    authority: String,
    /// From the first `/` up to the fragment, query included.
    path_and_query: String,
    pub secret: MediaKey,
}

impl fmt::Debug for AesgcmRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AesgcmRef")
            .field("https_url", &self.https_url())
            .finish_non_exhaustive()
    }
}

/// The whole reference, fragment included (lowercase hex): the text of the message.
impl fmt::Display for AesgcmRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "aesgcm://{}{}#{}",
            self.authority,
            self.path_and_query,
            self.secret.fragment()
        )
    }
}

impl AesgcmRef {
    /// Parses a reference exactly: no surrounding whitespace, nothing after the fragment.
    pub fn parse(text: &str) -> Result<AesgcmRef, RefError> {
        let (scheme, rest) = text.split_once("://").ok_or(RefError::NotAesgcm)?;
        if !scheme.eq_ignore_ascii_case("aesgcm") {
            return Err(RefError::NotAesgcm);
        }
        if let Some(at) = text.bytes().position(|b| !b.is_ascii_graphic()) {
            return Err(RefError::BadCharacter { at });
        }
        let (before, fragment) = rest.split_once('#').ok_or(RefError::NoFragment)?;
        let (authority, path_and_query) = split_url_rest(before)?;
        let secret = parse_fragment(fragment)?;
        Ok(AesgcmRef {
            authority: authority.to_owned(),
            path_and_query: path_and_query.to_owned(),
            secret,
        })
    }

    /// The reference for an object at `https_url` (no fragment) under `secret`.
    pub fn from_https(https_url: &str, secret: MediaKey) -> Result<AesgcmRef, RefError> {
        let (scheme, rest) = https_url.split_once("://").ok_or(RefError::NotAesgcm)?;
        if !scheme.eq_ignore_ascii_case("https") {
            return Err(RefError::NotAesgcm);
        }
        if let Some(at) = https_url.bytes().position(|b| !b.is_ascii_graphic()) {
            return Err(RefError::BadCharacter { at });
        }
        if rest.contains('#') {
            return Err(RefError::BadPath("the https URL has a fragment"));
        }
        let (authority, path_and_query) = split_url_rest(rest)?;
        Ok(AesgcmRef {
            authority: authority.to_owned(),
            path_and_query: path_and_query.to_owned(),
            secret,
        })
    }

    /// The URL to fetch: `https://`, the same authority, path and query, no fragment.
    pub fn https_url(&self) -> String {
        format!("https://{}{}", self.authority, self.path_and_query)
    }

    /// `host[:port]` as written.
    pub fn authority(&self) -> &str {
        &self.authority
    }

    /// The path, without the query.
    pub fn path(&self) -> &str {
        self.path_and_query
            .split_once('?')
            .map_or(self.path_and_query.as_str(), |(p, _)| p)
    }

    /// The query, without its `?`.
    pub fn query(&self) -> Option<&str> {
        self.path_and_query.split_once('?').map(|(_, q)| q)
    }
}

/// Splits `authority/path?query` (after `scheme://`, before any fragment) and checks each.
fn split_url_rest(rest: &str) -> Result<(&str, &str), RefError> {
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, path_and_query) = rest.split_at(end);
    check_authority(authority)?;
    if !path_and_query.starts_with('/') {
        return Err(RefError::BadPath("no path"));
    }
    let (path, query) = match path_and_query.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (path_and_query, None),
    };
    check_chars(path, "/", "bad character in the path")?;
    if let Some(q) = query {
        check_chars(q, "/?", "bad character in the query")?;
    }
    Ok((authority, path_and_query))
}

fn check_authority(a: &str) -> Result<(), RefError> {
    if a.is_empty() {
        return Err(RefError::BadAuthority("empty"));
    }
    if a.contains('@') {
        return Err(RefError::BadAuthority("user information is not allowed"));
    }
    let (host, port) = if let Some(v6) = a.strip_prefix('[') {
        let (inside, after) = v6
            .split_once(']')
            .ok_or(RefError::BadAuthority("unclosed ["))?;
        if inside.is_empty()
            || !inside
                .bytes()
                .all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.')
        {
            return Err(RefError::BadAuthority("bad IPv6 address"));
        }
        match after {
            "" => (inside, None),
            p => (
                inside,
                Some(
                    p.strip_prefix(':')
                        .ok_or(RefError::BadAuthority("junk after ]"))?,
                ),
            ),
        }
    } else {
        match a.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (a, None),
        }
    };
    let reg_name = |b: u8| b.is_ascii_alphanumeric() || b"-._~".contains(&b);
    if host.is_empty() || (!a.starts_with('[') && !host.bytes().all(reg_name)) {
        return Err(RefError::BadAuthority("bad host"));
    }
    if let Some(p) = port
        && (p.is_empty()
            || p.len() > 5
            || !p.bytes().all(|b| b.is_ascii_digit())
            || p.parse::<u32>().map_or(true, |n| n > 65535))
    {
        return Err(RefError::BadAuthority("bad port"));
    }
    Ok(())
}

/// RFC 3986 pchar (plus `extra`), with every `%` starting a two-digit escape.
fn check_chars(s: &str, extra: &str, why: &'static str) -> Result<(), RefError> {
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c == b'%' {
            if b.len() < i + 3 || !b[i + 1].is_ascii_hexdigit() || !b[i + 2].is_ascii_hexdigit() {
                return Err(RefError::BadPath("bad percent escape"));
            }
            i += 3;
            continue;
        }
        let ok = c.is_ascii_alphanumeric()
            || b"-._~!$&'()*+,;=:@".contains(&c)
            || extra.as_bytes().contains(&c);
        if !ok {
            return Err(RefError::BadPath(why));
        }
        i += 1;
    }
    Ok(())
}

fn parse_fragment(f: &str) -> Result<MediaKey, RefError> {
    let bytes = decode_hex(f).ok_or(if f.len().is_multiple_of(2) {
        RefError::FragmentNotHex
    } else {
        RefError::FragmentLength(f.len())
    })?;
    let (iv, key) = match bytes.len() {
        44 => {
            let mut iv = [0u8; IV_LEN];
            iv.copy_from_slice(&bytes[..IV_LEN]);
            (Iv::Standard(iv), &bytes[IV_LEN..])
        }
        48 => {
            let mut iv = [0u8; LEGACY_IV_LEN];
            iv.copy_from_slice(&bytes[..LEGACY_IV_LEN]);
            (Iv::Legacy(iv), &bytes[LEGACY_IV_LEN..])
        }
        _ => return Err(RefError::FragmentLength(f.len())),
    };
    let mut k = [0u8; KEY_LEN];
    k.copy_from_slice(key);
    Ok(MediaKey { iv, key: k })
}

/// Lowercase hex.
pub fn hex_lower(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[usize::from(b >> 4)] as char);
        s.push(DIGITS[usize::from(b & 15)] as char);
    }
    s
}

/// Hex of either case; `None` for an odd length or a non-hex digit.
pub fn decode_hex(s: &str) -> Option<Vec<u8>> {
    let b = s.as_bytes();
    if !b.len().is_multiple_of(2) {
        return None;
    }
    let digit = |c: u8| char::from(c).to_digit(16).map(|d| d as u8);
    b.chunks_exact(2)
        .map(|p| Some(digit(p[0])? << 4 | digit(p[1])?))
        .collect()
}

/// Why a stream did not seal or open.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum GcmError {
    /// The tag did not verify: an altered, swapped or wrongly keyed object.
    #[error("the GCM tag does not verify")]
    BadTag,
    /// Fewer than 16 bytes in all: not even a tag.
    #[error("the object is shorter than its 16-byte tag")]
    Truncated,
    /// More than GCM can carry under one IV (about 64 GiB).
    #[error("the object is longer than GCM allows")]
    TooLong,
}

/// GHASH over a byte stream fed in pieces of any size, with the tag mask E(K, J0).
struct Mac {
    ghash: GHash,
    partial: [u8; 16],
    partial_len: usize,
    len: u64,
    mask: [u8; 16],
}

impl Mac {
    fn absorb(&mut self, mut data: &[u8]) {
        self.len += data.len() as u64;
        if self.partial_len > 0 {
            let take = (16 - self.partial_len).min(data.len());
            self.partial[self.partial_len..self.partial_len + take].copy_from_slice(&data[..take]);
            self.partial_len += take;
            data = &data[take..];
            if self.partial_len < 16 {
                return;
            }
            self.ghash.update(&[Block::from(self.partial)]);
            self.partial_len = 0;
        }
        let (blocks, tail) = Array::slice_as_chunks(data);
        self.ghash.update(blocks);
        self.partial[..tail.len()].copy_from_slice(tail);
        self.partial_len = tail.len();
    }

    fn tag(mut self) -> [u8; TAG_LEN] {
        if self.partial_len > 0 {
            self.ghash.update_padded(&self.partial[..self.partial_len]);
        }
        // No associated data: the first half of the length block stays zero.
        let mut lengths = [0u8; 16];
        lengths[8..].copy_from_slice(&(self.len * 8).to_be_bytes());
        self.ghash.update(&[Block::from(lengths)]);
        let mut tag: [u8; TAG_LEN] = self.ghash.finalize().into();
        for (t, m) in tag.iter_mut().zip(self.mask) {
            *t ^= m;
        }
        tag
    }
}

/// The counter stream (from inc32(J0)) and the MAC for `secret` (NIST SP 800-38D §7.1).
fn setup(secret: &MediaKey) -> (Ctr, Mac) {
    let aes = Aes256::new(&Array::from(secret.key));
    let mut h = Block::default();
    aes.encrypt_block(&mut h);
    let ghash = GHash::new(&h);
    let j0: [u8; 16] = match &secret.iv {
        Iv::Standard(iv) => {
            let mut j0 = [0u8; 16];
            j0[..IV_LEN].copy_from_slice(iv);
            j0[15] = 1;
            j0
        }
        Iv::Legacy(iv) => {
            let mut g = ghash.clone();
            g.update_padded(iv);
            let mut lengths = [0u8; 16];
            lengths[8..].copy_from_slice(&((LEGACY_IV_LEN as u64) * 8).to_be_bytes());
            g.update(&[Block::from(lengths)]);
            g.finalize().into()
        }
    };
    let mut ctr = Ctr::from_core(ctr::CtrCore::inner_iv_init(aes, &Array::from(j0)));
    // The first counter block masks the tag; the data starts at the next.
    let mut mask = [0u8; 16];
    ctr.apply_keystream(&mut mask);
    let mac = Mac {
        ghash,
        partial: [0; 16],
        partial_len: 0,
        len: 0,
        mask,
    };
    (ctr, mac)
}

/// Seals a plaintext fed in chunks; the object is the chunks as encrypted, then the tag.
pub struct Encryptor {
    ctr: Ctr,
    mac: Mac,
}

impl fmt::Debug for Encryptor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Encryptor")
            .field("len", &self.mac.len)
            .finish_non_exhaustive()
    }
}

impl Encryptor {
    pub fn new(secret: &MediaKey) -> Encryptor {
        let (ctr, mac) = setup(secret);
        Encryptor { ctr, mac }
    }

    /// Encrypts `chunk` in place: plaintext in, ciphertext out.
    pub fn update(&mut self, chunk: &mut [u8]) -> Result<(), GcmError> {
        self.ctr
            .try_apply_keystream(chunk)
            .map_err(|_| GcmError::TooLong)?;
        self.mac.absorb(chunk);
        Ok(())
    }

    /// Plaintext bytes sealed so far.
    pub fn len(&self) -> u64 {
        self.mac.len
    }

    pub fn is_empty(&self) -> bool {
        self.mac.len == 0
    }

    /// The tag that follows the ciphertext.
    pub fn finish(self) -> [u8; TAG_LEN] {
        self.mac.tag()
    }
}

/// Opens an object fed in chunks of any size (the tag included, as the last 16 bytes).
pub struct Decryptor {
    ctr: Ctr,
    mac: Mac,
    /// The last bytes seen, which may be the tag.
    held: [u8; TAG_LEN],
    held_len: usize,
    /// Reused for each chunk's plaintext.
    out: Vec<u8>,
}

impl fmt::Debug for Decryptor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Decryptor")
            .field("len", &self.mac.len)
            .finish_non_exhaustive()
    }
}

impl Decryptor {
    pub fn new(secret: &MediaKey) -> Decryptor {
        let (ctr, mac) = setup(secret);
        Decryptor {
            ctr,
            mac,
            held: [0; TAG_LEN],
            held_len: 0,
            out: Vec::new(),
        }
    }

    /// Feeds the next bytes of the object; gives the plaintext of every byte that can no
    /// longer be part of the tag (unverified until [`Decryptor::finish`]).
    pub fn update(&mut self, chunk: &[u8]) -> Result<&[u8], GcmError> {
        self.out.clear();
        let total = self.held_len + chunk.len();
        if total <= TAG_LEN {
            self.held[self.held_len..total].copy_from_slice(chunk);
            self.held_len = total;
            return Ok(&self.out);
        }
        let release = total - TAG_LEN;
        let from_held = release.min(self.held_len);
        let from_chunk = release - from_held;
        self.out.extend_from_slice(&self.held[..from_held]);
        self.out.extend_from_slice(&chunk[..from_chunk]);
        // What stays held: the rest of the old held bytes, then the chunk's tail.
        let mut next = [0u8; TAG_LEN];
        let old = &self.held[from_held..self.held_len];
        next[..old.len()].copy_from_slice(old);
        next[old.len()..].copy_from_slice(&chunk[from_chunk..]);
        self.held = next;
        self.held_len = TAG_LEN;
        self.mac.absorb(&self.out);
        self.ctr
            .try_apply_keystream(&mut self.out)
            .map_err(|_| GcmError::TooLong)?;
        Ok(&self.out)
    }

    /// Ciphertext bytes released so far (the object's length minus what is held).
    pub fn released(&self) -> u64 {
        self.mac.len
    }

    /// Checks the tag, in constant time.
    pub fn finish(self) -> Result<(), GcmError> {
        if self.held_len < TAG_LEN {
            return Err(GcmError::Truncated);
        }
        let expected = self.mac.tag();
        let diff = expected
            .iter()
            .zip(self.held)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b));
        if std::hint::black_box(diff) == 0 {
            Ok(())
        } else {
            Err(GcmError::BadTag)
        }
    }
}

/// Seals a whole plaintext in memory: ciphertext then tag (for small objects and tests).
pub fn seal(secret: &MediaKey, plaintext: &[u8]) -> Result<Vec<u8>, GcmError> {
    let mut out = plaintext.to_vec();
    let mut e = Encryptor::new(secret);
    e.update(&mut out)?;
    out.extend_from_slice(&e.finish());
    Ok(out)
}

/// Opens a whole object in memory (for small objects and tests).
pub fn open(secret: &MediaKey, object: &[u8]) -> Result<Vec<u8>, GcmError> {
    let mut d = Decryptor::new(secret);
    let plain = d.update(object)?.to_vec();
    d.finish()?;
    Ok(plain)
}

#[cfg(test)]
#[path = "aesgcm_tests.rs"]
mod tests;
