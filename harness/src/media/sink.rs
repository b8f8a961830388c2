//! Where downloaded bytes go ([`Sink`]: a file, a hash, the decryptor, nowhere) and streaming
//! file helpers: seal a file into an object, open an object file, write random plaintext.
//! None of them holds a whole object in memory.

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::Path;

use rand::{RngCore as _, SeedableRng as _};
use sha2::{Digest, Sha256};

use super::aesgcm::{Decryptor, Encryptor, GcmError, MediaKey, hex_lower};
use super::files::CHUNK;

/// Receives a download chunk by chunk. Called on the runtime's thread: keep it quick (a hash,
/// the decryptor, a buffered file write of one chunk).
pub trait Sink: Send {
    fn put(&mut self, chunk: &[u8]) -> Result<(), String>;
}

impl<S: Sink + ?Sized> Sink for &mut S {
    fn put(&mut self, chunk: &[u8]) -> Result<(), String> {
        (**self).put(chunk)
    }
}

/// Keeps everything (small objects and tests only).
impl Sink for Vec<u8> {
    fn put(&mut self, chunk: &[u8]) -> Result<(), String> {
        self.extend_from_slice(chunk);
        Ok(())
    }
}

impl Sink for Sha256 {
    fn put(&mut self, chunk: &[u8]) -> Result<(), String> {
        self.update(chunk);
        Ok(())
    }
}

impl Sink for File {
    fn put(&mut self, chunk: &[u8]) -> Result<(), String> {
        self.write_all(chunk).map_err(|e| e.to_string())
    }
}

/// Counts and drops.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Discard {
    pub bytes: u64,
}

impl Sink for Discard {
    fn put(&mut self, chunk: &[u8]) -> Result<(), String> {
        self.bytes += chunk.len() as u64;
        Ok(())
    }
}

/// What an object opened to: the fields of the driver's `media_received`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Opened<S> {
    /// Plaintext byte length.
    pub size: u64,
    /// Lowercase hex SHA-256 of the plaintext.
    pub sha256: String,
    /// Where the (now verified) plaintext went.
    pub inner: S,
}

/// Decrypts an object as it arrives, hashing the plaintext and passing it on to `inner`
/// (which must treat it as unverified until [`DecryptSink::finish`] says otherwise).
pub struct DecryptSink<S = Discard> {
    dec: Decryptor,
    hash: Sha256,
    size: u64,
    inner: S,
}

impl DecryptSink<Discard> {
    pub fn new(secret: &MediaKey) -> DecryptSink<Discard> {
        DecryptSink::with_inner(secret, Discard::default())
    }
}

impl<S: Sink> DecryptSink<S> {
    pub fn with_inner(secret: &MediaKey, inner: S) -> DecryptSink<S> {
        DecryptSink {
            dec: Decryptor::new(secret),
            hash: Sha256::new(),
            size: 0,
            inner,
        }
    }

    /// Verifies the tag.
    pub fn finish(self) -> Result<Opened<S>, GcmError> {
        self.dec.finish()?;
        Ok(Opened {
            size: self.size,
            sha256: hex_lower(&self.hash.finalize()),
            inner: self.inner,
        })
    }
}

impl<S: Sink> Sink for DecryptSink<S> {
    fn put(&mut self, chunk: &[u8]) -> Result<(), String> {
        let plain = self.dec.update(chunk).map_err(|e| e.to_string())?;
        self.hash.update(plain);
        self.size += plain.len() as u64;
        self.inner.put(plain)
    }
}

/// A sealed file: its plaintext and its object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sealed {
    pub plain_len: u64,
    /// Lowercase hex SHA-256 of the plaintext.
    pub plain_sha256: String,
    /// `plain_len + 16`.
    pub object_len: u64,
    /// Lowercase hex SHA-256 of the object.
    pub object_sha256: String,
}

/// Seals the file `src` into the object file `dst` under `secret`.
pub fn encrypt_file(src: &Path, dst: &Path, secret: &MediaKey) -> io::Result<Sealed> {
    let mut input = File::open(src)?;
    seal_stream(|buf| input.read(buf), dst, secret)
}

/// Writes `plain_len` bytes of seeded random plaintext, sealed under `secret`, to `dst`
/// (an object nobody can tell from a real one without the key).
pub fn write_random_object(
    dst: &Path,
    plain_len: u64,
    secret: &MediaKey,
    seed: u64,
) -> io::Result<Sealed> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let mut left = plain_len;
    seal_stream(
        |buf| {
            let n = usize::try_from(left).map_or(buf.len(), |l| l.min(buf.len()));
            rng.fill_bytes(&mut buf[..n]);
            left -= n as u64;
            Ok(n)
        },
        dst,
        secret,
    )
}

/// Writes `len` bytes of seeded random data to `dst`; returns the lowercase hex SHA-256.
pub fn write_random_file(dst: &Path, len: u64, seed: u64) -> io::Result<String> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let mut out = io::BufWriter::with_capacity(CHUNK, File::create(dst)?);
    let mut hash = Sha256::new();
    let mut buf = vec![0u8; CHUNK];
    let mut left = len;
    while left > 0 {
        let n = usize::try_from(left).map_or(CHUNK, |l| l.min(CHUNK));
        rng.fill_bytes(&mut buf[..n]);
        out.write_all(&buf[..n])?;
        hash.update(&buf[..n]);
        left -= n as u64;
    }
    out.flush()?;
    Ok(hex_lower(&hash.finalize()))
}

fn seal_stream(
    mut read: impl FnMut(&mut [u8]) -> io::Result<usize>,
    dst: &Path,
    secret: &MediaKey,
) -> io::Result<Sealed> {
    let mut out = io::BufWriter::with_capacity(CHUNK, File::create(dst)?);
    let mut enc = Encryptor::new(secret);
    let (mut plain_hash, mut object_hash) = (Sha256::new(), Sha256::new());
    let mut buf = vec![0u8; CHUNK];
    loop {
        let n = read(&mut buf)?;
        if n == 0 {
            break;
        }
        plain_hash.update(&buf[..n]);
        enc.update(&mut buf[..n]).map_err(io::Error::other)?;
        object_hash.update(&buf[..n]);
        out.write_all(&buf[..n])?;
    }
    let plain_len = enc.len();
    let tag = enc.finish();
    object_hash.update(tag);
    out.write_all(&tag)?;
    out.flush()?;
    Ok(Sealed {
        plain_len,
        plain_sha256: hex_lower(&plain_hash.finalize()),
        object_len: plain_len + tag.len() as u64,
        object_sha256: hex_lower(&object_hash.finalize()),
    })
}

/// Opens the object file `path` under `secret` without keeping the plaintext: the outer
/// error is the file's, the inner one the object's.
pub fn decrypt_file(
    path: &Path,
    secret: &MediaKey,
) -> io::Result<Result<Opened<Discard>, GcmError>> {
    let mut input = File::open(path)?;
    let mut sink = DecryptSink::new(secret);
    let mut buf = vec![0u8; CHUNK];
    loop {
        let n = input.read(&mut buf)?;
        if n == 0 {
            break;
        }
        if sink.put(&buf[..n]).is_err() {
            return Ok(Err(GcmError::TooLong));
        }
    }
    Ok(sink.finish())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::aesgcm::open;
    use crate::media::testutil::TempDir;

    #[test]
    fn files_seal_and_open_in_chunks() {
        let dir = TempDir::new("sink");
        let secret = MediaKey::generate();
        for len in [
            0u64,
            1,
            15,
            16,
            17,
            CHUNK as u64 - 1,
            CHUNK as u64,
            3 * CHUNK as u64 + 5,
        ] {
            let plain = dir.path().join("plain");
            let object = dir.path().join("object");
            let sha = write_random_file(&plain, len, len).unwrap();
            let sealed = encrypt_file(&plain, &object, &secret).unwrap();
            assert_eq!(sealed.plain_len, len);
            assert_eq!(sealed.plain_sha256, sha);
            assert_eq!(sealed.object_len, len + 16);
            let bytes = std::fs::read(&object).unwrap();
            assert_eq!(bytes.len() as u64, len + 16);
            assert_eq!(sealed.object_sha256, hex_lower(&Sha256::digest(&bytes)));
            assert_eq!(
                open(&secret, &bytes).unwrap(),
                std::fs::read(&plain).unwrap()
            );
            let opened = decrypt_file(&object, &secret).unwrap().unwrap();
            assert_eq!((opened.size, opened.sha256.as_str()), (len, sha.as_str()));

            let other = MediaKey::generate();
            assert_eq!(
                decrypt_file(&object, &other).unwrap(),
                Err(GcmError::BadTag)
            );
        }
    }

    #[test]
    fn random_objects_open_under_their_key_only() {
        let dir = TempDir::new("sink-random");
        let (a, b) = (MediaKey::generate(), MediaKey::generate());
        let path = dir.path().join("o");
        let sealed = write_random_object(&path, 100_000, &a, 7).unwrap();
        assert_eq!(sealed.object_len, 100_016);
        let opened = decrypt_file(&path, &a).unwrap().unwrap();
        assert_eq!(opened.sha256, sealed.plain_sha256);
        assert_eq!(decrypt_file(&path, &b).unwrap(), Err(GcmError::BadTag));
    }

    #[test]
    fn a_decrypt_sink_passes_plaintext_on_and_checks_the_tag() {
        let secret = MediaKey::generate();
        let object = crate::media::aesgcm::seal(&secret, b"hello media").unwrap();
        let mut sink = DecryptSink::with_inner(&secret, Vec::new());
        for piece in object.chunks(3) {
            sink.put(piece).unwrap();
        }
        let opened = sink.finish().unwrap();
        assert_eq!(opened.inner, b"hello media");
        assert_eq!(opened.size, 11);
        assert_eq!(opened.sha256, hex_lower(&Sha256::digest(b"hello media")));

        let mut bad = object.clone();
        bad[0] ^= 1;
        let mut sink = DecryptSink::new(&secret);
        sink.put(&bad).unwrap();
        assert_eq!(sink.finish().map(|o| o.size), Err(GcmError::BadTag));
    }
}
