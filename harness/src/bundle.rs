//! The bundled suite, compiled into the binary by `build.rs`: `scenarios/` and the fixtures
//! its scenarios send (`fixtures/stream`, `fixtures/stanzas`). An installed `gatecheck` thus
//! works from any directory, without the source tree.
//!
//! Bundled files live under the virtual directory [`ROOT`] (`<bundled>/scenarios/stanza/ping.toml`)
//! and are read from memory: nothing is written to disk. Files a run makes for itself (the
//! fixtures of `gatecheck fuzz`'s sessions) can be kept in memory the same way, under a
//! [`MemoryDir`] (`<memory>/3/fixtures/fuzz/s7-0-12.bin`). [`read`], [`read_to_string`],
//! [`is_file`] and [`bundled_files_under`] are the one place that tells such a path from a
//! real one; every reader of suite files (scenario loading, `send_fixture` checks,
//! [`crate::wire::fixture_bytes`]) goes through them, and serves any other path from disk.

use std::collections::BTreeMap;
use std::io;
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

include!(concat!(env!("OUT_DIR"), "/bundle.rs"));

/// The virtual directory the bundled files appear under.
pub const ROOT: &str = "<bundled>";
/// The virtual directory [`MemoryDir`]s appear under.
pub const MEMORY_ROOT: &str = "<memory>";

/// Where a path's file is.
enum Place {
    /// On disk.
    Disk,
    /// In the bundle, under this key (`scenarios/stanza/ping.toml`).
    Bundled(String),
    /// In a [`MemoryDir`], under this key (`3/fixtures/fuzz/s7-0-12.bin`).
    Memory(String),
    /// Under [`ROOT`] or [`MEMORY_ROOT`], but not a name a file there can have (`..`).
    Nowhere,
}

/// `rel`'s parts joined with `/`; `None` for anything but plain UTF-8 names (`..`, a root).
fn key_of(rel: &Path) -> Option<String> {
    let mut parts = Vec::new();
    for c in rel.components() {
        match c {
            Component::Normal(part) => parts.push(part.to_str()?),
            Component::CurDir => {}
            _ => return None,
        }
    }
    Some(parts.join("/"))
}

fn place(path: &Path) -> Place {
    if let Ok(rel) = path.strip_prefix(ROOT) {
        return key_of(rel).map_or(Place::Nowhere, Place::Bundled);
    }
    if let Ok(rel) = path.strip_prefix(MEMORY_ROOT) {
        return key_of(rel).map_or(Place::Nowhere, Place::Memory);
    }
    Place::Disk
}

/// Every [`MemoryDir`]'s files, by key.
static MEMORY: Mutex<BTreeMap<String, Arc<[u8]>>> = Mutex::new(BTreeMap::new());
/// The number of the next [`MemoryDir`].
static NEXT_MEMORY_DIR: AtomicU64 = AtomicU64::new(0);

fn memory() -> std::sync::MutexGuard<'static, BTreeMap<String, Arc<[u8]>>> {
    MEMORY.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A virtual directory of files kept in memory (`<memory>/N`, N unique in the process),
/// read like files on disk through [`read`], [`is_file`] and [`bundled_files_under`], and
/// gone with the `MemoryDir`. For files a run makes only to read them back itself (a fuzz
/// session's fixtures): writing and removing real files costs far more than the rest of such
/// a case.
#[derive(Debug)]
pub struct MemoryDir {
    /// `<memory>/N`.
    path: PathBuf,
    /// `N/`, the prefix of its files' keys.
    prefix: String,
}

impl MemoryDir {
    pub fn new() -> MemoryDir {
        let n = NEXT_MEMORY_DIR.fetch_add(1, Ordering::Relaxed);
        MemoryDir {
            path: Path::new(MEMORY_ROOT).join(n.to_string()),
            prefix: format!("{n}/"),
        }
    }

    /// The directory's path, for joining file names to.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The key of `rel` in this directory, if `rel` is a relative path of plain names.
    fn key(&self, rel: &Path) -> io::Result<String> {
        match key_of(rel) {
            Some(k) if !k.is_empty() && !rel.is_absolute() => Ok(format!("{}{k}", self.prefix)),
            _ => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "{}: not a file name below a memory directory",
                    rel.display()
                ),
            )),
        }
    }

    /// Writes (or replaces) the file at `rel`, relative to [`MemoryDir::path`].
    pub fn write(&self, rel: impl AsRef<Path>, bytes: &[u8]) -> io::Result<()> {
        let key = self.key(rel.as_ref())?;
        memory().insert(key, Arc::from(bytes));
        Ok(())
    }

    /// Removes the file at `rel`, if there is one.
    pub fn remove(&self, rel: impl AsRef<Path>) {
        if let Ok(key) = self.key(rel.as_ref()) {
            memory().remove(&key);
        }
    }
}

impl Default for MemoryDir {
    fn default() -> Self {
        MemoryDir::new()
    }
}

impl Drop for MemoryDir {
    fn drop(&mut self) {
        memory().retain(|k, _| !k.starts_with(&self.prefix));
    }
}

fn in_memory(key: &str) -> Option<Arc<[u8]>> {
    memory().get(key).cloned()
}

fn bundled(key: &str) -> Option<&'static [u8]> {
    FILES
        .binary_search_by(|(k, _)| (*k).cmp(key))
        .ok()
        .map(|i| FILES[i].1)
}

fn not_bundled() -> io::Error {
    io::Error::new(io::ErrorKind::NotFound, "no such file in the bundled suite")
}

fn not_in_memory() -> io::Error {
    io::Error::new(io::ErrorKind::NotFound, "no such file in memory")
}

/// The contents of a file, bundled or on disk.
pub fn read(path: &Path) -> io::Result<Vec<u8>> {
    match place(path) {
        Place::Disk => std::fs::read(path),
        Place::Bundled(key) => bundled(&key).map(<[u8]>::to_vec).ok_or_else(not_bundled),
        Place::Memory(key) => in_memory(&key)
            .map(|b| b.to_vec())
            .ok_or_else(not_in_memory),
        Place::Nowhere => Err(not_bundled()),
    }
}

/// The contents of a UTF-8 text file, bundled or on disk.
pub fn read_to_string(path: &Path) -> io::Result<String> {
    String::from_utf8(read(path)?)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.utf8_error()))
}

/// Whether `path` is a file, bundled or on disk.
pub fn is_file(path: &Path) -> bool {
    match place(path) {
        Place::Disk => path.is_file(),
        Place::Bundled(key) => bundled(&key).is_some(),
        Place::Memory(key) => memory().contains_key(&key),
        Place::Nowhere => false,
    }
}

/// For a directory under [`ROOT`], every bundled file below it (sorted); under
/// [`MEMORY_ROOT`], every file in memory below it (sorted); `None` for a directory on disk,
/// which the caller walks itself.
pub fn bundled_files_under(dir: &Path) -> Option<Vec<PathBuf>> {
    let prefix = match place(dir) {
        Place::Disk => return None,
        Place::Memory(key) => {
            let prefix = key + "/";
            return Some(
                memory()
                    .keys()
                    .filter(|k| k.starts_with(&prefix))
                    .map(|k| Path::new(MEMORY_ROOT).join(k))
                    .collect(),
            );
        }
        Place::Nowhere => return Some(Vec::new()),
        Place::Bundled(key) if key.is_empty() => key,
        Place::Bundled(key) => key + "/",
    };
    Some(
        FILES
            .iter()
            .filter(|(k, _)| k.starts_with(&prefix))
            .map(|(k, _)| Path::new(ROOT).join(k))
            .collect(),
    )
}

/// Every bundled file: (path relative to the workspace root, contents), sorted by path.
pub fn files() -> &'static [(&'static str, &'static [u8])] {
    FILES
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bundle_is_the_suite_and_the_fixtures_it_sends() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        for key in [
            "scenarios/stanza/ping.toml",
            "fixtures/stanzas/README.md",
            "fixtures/stream/billion-laughs.xml",
            "fixtures/stanzas/bad/12-huge-text.gen",
        ] {
            let on_disk = std::fs::read(root.join(key)).expect(key);
            assert_eq!(
                read(&Path::new(ROOT).join(key)).expect(key),
                on_disk,
                "{key}"
            );
        }
        assert!(files().iter().all(|(k, _)| !k.starts_with("fixtures/iut")));
        assert!(files().windows(2).all(|w| w[0].0 < w[1].0), "sorted");
    }

    #[test]
    fn paths_under_the_root_never_reach_the_disk() {
        let bundled = Path::new(ROOT);
        assert!(is_file(&bundled.join("scenarios/./stanza/ping.toml")));
        assert!(
            !is_file(&bundled.join("scenarios")),
            "a directory is not a file"
        );
        assert!(!is_file(
            &bundled.join("scenarios/../scenarios/stanza/ping.toml")
        ));
        assert!(!is_file(&bundled.join("Cargo.toml")));
        let e = read(&bundled.join("fixtures/nope.xml")).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
        let toml = bundled_files_under(&bundled.join("scenarios")).expect("bundled");
        assert!(toml.contains(&bundled.join("scenarios/stanza/ping.toml")));
        assert!(
            toml.iter()
                .all(|p| p.starts_with(bundled.join("scenarios")))
        );
        // A sibling whose name merely starts the same is not below the directory.
        assert!(
            bundled_files_under(&bundled.join("fixtures/stanza"))
                .expect("bundled")
                .is_empty()
        );
        assert!(bundled_files_under(Path::new("scenarios")).is_none());
    }

    #[test]
    fn memory_files_are_read_like_files_and_go_with_their_directory() {
        let dir = MemoryDir::new();
        let other = MemoryDir::new();
        let path = dir.path().join("fixtures/fuzz/a.bin");
        assert!(!is_file(&path));
        dir.write("fixtures/fuzz/a.bin", b"<message/>").unwrap();
        dir.write("fixtures/fuzz/b.bin", b"\xff").unwrap();
        assert!(is_file(&path));
        assert!(!is_file(&other.path().join("fixtures/fuzz/a.bin")));
        assert!(
            !is_file(&dir.path().join("fixtures/fuzz")),
            "a directory is not a file"
        );
        assert_eq!(read(&path).unwrap(), b"<message/>");
        assert_eq!(
            read(&dir.path().join("fixtures/./fuzz/b.bin")).unwrap(),
            b"\xff"
        );
        assert!(!is_file(
            &dir.path().join("fixtures/../fixtures/fuzz/a.bin")
        ));
        assert!(dir.write("../x.bin", b"x").is_err());
        assert!(dir.write("/tmp/x.bin", b"x").is_err());
        assert_eq!(
            bundled_files_under(&dir.path().join("fixtures")).unwrap(),
            [path.clone(), dir.path().join("fixtures/fuzz/b.bin")]
        );
        dir.remove("fixtures/fuzz/b.bin");
        assert_eq!(
            read(&dir.path().join("fixtures/fuzz/b.bin"))
                .unwrap_err()
                .kind(),
            io::ErrorKind::NotFound
        );
        let gone = dir.path().to_path_buf();
        drop(dir);
        assert!(!is_file(&gone.join("fixtures/fuzz/a.bin")));
        assert!(bundled_files_under(&gone).unwrap().is_empty());
    }
}
