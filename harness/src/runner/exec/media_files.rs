//! Files and objects of the media steps, made and read in chunks on a blocking thread so that
//! a 64 MiB file never sits in memory: the gatekeeper user's file and its encrypted object,
//! the file a client is asked to share, and the decryption of what a client uploaded.

use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha20Rng;
use sha2::{Digest, Sha256};

use crate::media::aesgcm::{self, Decryptor, Encryptor, Iv, MediaKey};

/// Bytes per chunk.
const CHUNK: usize = 64 * 1024;

/// What a file is: its length and the lowercase hex of its SHA-256.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Digested {
    pub size: u64,
    pub sha256: String,
}

/// A key and 12-byte IV drawn from `rng` (the scenario's seed makes a rerun identical).
pub(super) fn key_from(rng: &mut impl RngCore) -> MediaKey {
    let mut key = [0u8; aesgcm::KEY_LEN];
    let mut iv = [0u8; aesgcm::IV_LEN];
    rng.fill_bytes(&mut key);
    rng.fill_bytes(&mut iv);
    MediaKey {
        iv: Iv::Standard(iv),
        key,
    }
}

/// Random file content from `seed`; its first byte is never that of a common file
/// signature, so nothing tells its type (MEDIA-21).
struct Content {
    rng: ChaCha20Rng,
    first: bool,
}

impl Content {
    fn new(seed: u64) -> Content {
        Content {
            rng: ChaCha20Rng::seed_from_u64(seed),
            first: true,
        }
    }

    fn fill(&mut self, buf: &mut [u8]) {
        self.rng.fill_bytes(buf);
        if self.first && !buf.is_empty() {
            // 0x00 to 0x0f start no signature `file` knows for media (PNG 0x89, JPEG 0xff,
            // GIF 'G', PDF '%', ZIP 'P', RIFF 'R', ISO media has a length first but then 'ftyp').
            buf[0] &= 0x0f;
            if buf.len() > 4 {
                buf[4] = b'x';
            }
            self.first = false;
        }
    }
}

/// Writes `size` bytes of content from `seed` to `path`.
pub(super) fn write_file(path: &Path, size: u64, seed: u64) -> io::Result<Digested> {
    let mut out = BufWriter::with_capacity(CHUNK, File::create(path)?);
    let mut content = Content::new(seed);
    let mut hash = Sha256::new();
    let mut buf = vec![0u8; CHUNK];
    let mut left = size;
    while left > 0 {
        let n = (left as usize).min(CHUNK);
        content.fill(&mut buf[..n]);
        hash.update(&buf[..n]);
        out.write_all(&buf[..n])?;
        left -= n as u64;
    }
    out.flush()?;
    Ok(Digested {
        size,
        sha256: aesgcm::hex_lower(&hash.finalize()),
    })
}

/// Writes the object of a `size`-byte file of content from `seed`, encrypted under `key`,
/// to `path`; returns what the file was.
pub(super) fn write_object(
    path: &Path,
    size: u64,
    seed: u64,
    key: &MediaKey,
) -> io::Result<Digested> {
    let mut out = BufWriter::with_capacity(CHUNK, File::create(path)?);
    let mut content = Content::new(seed);
    let mut hash = Sha256::new();
    let mut seal = Encryptor::new(key);
    let mut buf = vec![0u8; CHUNK];
    let mut left = size;
    while left > 0 {
        let n = (left as usize).min(CHUNK);
        content.fill(&mut buf[..n]);
        hash.update(&buf[..n]);
        seal.update(&mut buf[..n]).map_err(io::Error::other)?;
        out.write_all(&buf[..n])?;
        left -= n as u64;
    }
    out.write_all(&seal.finish())?;
    out.flush()?;
    Ok(Digested {
        size,
        sha256: aesgcm::hex_lower(&hash.finalize()),
    })
}

/// Why an object did not open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum OpenError {
    Io(String),
    /// Shorter than a tag, or the tag does not verify.
    Tag(String),
}

/// Decrypts the object stored at `path` under `key`, in chunks; the plaintext is hashed,
/// never kept.
pub(super) fn open_object(path: &Path, key: &MediaKey) -> Result<Digested, OpenError> {
    let mut file = File::open(path).map_err(|e| OpenError::Io(e.to_string()))?;
    let mut open = Decryptor::new(key);
    let mut hash = Sha256::new();
    let mut buf = vec![0u8; CHUNK];
    loop {
        let n = file
            .read(&mut buf)
            .map_err(|e| OpenError::Io(e.to_string()))?;
        if n == 0 {
            break;
        }
        let plain = open
            .update(&buf[..n])
            .map_err(|e| OpenError::Tag(e.to_string()))?;
        hash.update(plain);
    }
    let size = open.released();
    open.finish().map_err(|e| OpenError::Tag(e.to_string()))?;
    Ok(Digested {
        size,
        sha256: aesgcm::hex_lower(&hash.finalize()),
    })
}

/// The length and SHA-256 of bytes `first..=last` of a file (clipped to its end).
pub(super) fn digest_range(path: &Path, first: u64, last: u64) -> io::Result<Digested> {
    use std::io::{Seek, SeekFrom};
    let mut file = File::open(path)?;
    let len = file.metadata()?.len();
    let end = last.saturating_add(1).min(len);
    let mut left = end.saturating_sub(first);
    file.seek(SeekFrom::Start(first.min(len)))?;
    let size = left;
    let mut hash = Sha256::new();
    let mut buf = vec![0u8; CHUNK];
    while left > 0 {
        let n = (left as usize).min(CHUNK);
        file.read_exact(&mut buf[..n])?;
        hash.update(&buf[..n]);
        left -= n as u64;
    }
    Ok(Digested {
        size,
        sha256: aesgcm::hex_lower(&hash.finalize()),
    })
}

/// A file path in `dir` for `name` and `what` (`plain`, `object`, `swap`).
pub(super) fn path_in(dir: &Path, name: &str, what: &str) -> PathBuf {
    dir.join(format!("media-{name}.{what}"))
}

/// Runs blocking file work off the async threads.
pub(super) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, String> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| format!("file task failed: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn objects_open_to_their_files_and_not_under_another_key() {
        let dir =
            std::env::temp_dir().join(format!("gatecheck-media-files-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut rng = ChaCha20Rng::seed_from_u64(7);
        let key = key_from(&mut rng);
        let other = key_from(&mut rng);
        for size in [0u64, 1, 16, 65_535, 65_536, 200_001] {
            let plain = path_in(&dir, "t", "plain");
            let object = path_in(&dir, "t", "object");
            let file = write_file(&plain, size, 3).unwrap();
            let made = write_object(&object, size, 3, &key).unwrap();
            assert_eq!(file, made, "same seed, same content");
            assert_eq!(std::fs::metadata(&object).unwrap().len(), size + 16);
            assert_eq!(open_object(&object, &key).unwrap(), made);
            assert!(matches!(
                open_object(&object, &other),
                Err(OpenError::Tag(_))
            ));
        }
        let first = write_file(&path_in(&dir, "s", "plain"), 64, 9).unwrap();
        let bytes = std::fs::read(path_in(&dir, "s", "plain")).unwrap();
        assert!(bytes[0] < 0x10, "no known signature starts the content");
        assert_eq!(first.size, 64);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
