//! Files and objects of the media steps, made and read in chunks (crate::media::sink) on a
//! blocking thread so that a 64 MiB file never sits in memory: the gatekeeper user's file and
//! its encrypted object, the file a client is asked to share, the decryption of what a client
//! uploaded, and a range of a stored object.

use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use rand::RngCore;
use sha2::{Digest, Sha256};

use crate::media::aesgcm::{self, Iv, MediaKey};
use crate::media::sink;

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

/// Writes `size` bytes of content from `seed` to `path`.
pub(super) fn write_file(path: &Path, size: u64, seed: u64) -> io::Result<Digested> {
    let sha256 = sink::write_random_file(path, size, seed)?;
    Ok(Digested { size, sha256 })
}

/// Writes the object of a `size`-byte file of content from `seed`, encrypted under `key`,
/// to `path`; returns what the file was.
pub(super) fn write_object(
    path: &Path,
    size: u64,
    seed: u64,
    key: &MediaKey,
) -> io::Result<Digested> {
    let sealed = sink::write_random_object(path, size, key, seed)?;
    Ok(Digested {
        size: sealed.plain_len,
        sha256: sealed.plain_sha256,
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
    match sink::decrypt_file(path, key) {
        Err(e) => Err(OpenError::Io(e.to_string())),
        Ok(Err(e)) => Err(OpenError::Tag(e.to_string())),
        Ok(Ok(opened)) => Ok(Digested {
            size: opened.size,
            sha256: opened.sha256,
        }),
    }
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
    use rand::SeedableRng;
    use rand_chacha::ChaCha20Rng;

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
        let plain = path_in(&dir, "r", "plain");
        let whole = write_file(&plain, 1000, 9).unwrap();
        assert_eq!(
            digest_range(&plain, 0, 5000).unwrap(),
            whole,
            "clipped to the end"
        );
        let part = digest_range(&plain, 10, 19).unwrap();
        assert_eq!(part.size, 10);
        assert_ne!(part.sha256, whole.sha256);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
