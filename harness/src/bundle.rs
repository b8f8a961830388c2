//! The bundled suite, compiled into the binary by `build.rs`: `scenarios/` and the fixtures
//! its scenarios send (`fixtures/stream`, `fixtures/stanzas`). An installed `gatecheck` thus
//! works from any directory, without the source tree.
//!
//! Bundled files live under the virtual directory [`ROOT`] (`<bundled>/scenarios/stanza/ping.toml`)
//! and are read from memory: nothing is written to disk. [`read`], [`read_to_string`],
//! [`is_file`] and [`bundled_files_under`] are the one place that tells such a path from a
//! real one; every reader of suite files (scenario loading, `send_fixture` checks,
//! [`crate::wire::fixture_bytes`]) goes through them, and serves any other path from disk.

use std::io;
use std::path::{Component, Path, PathBuf};

include!(concat!(env!("OUT_DIR"), "/bundle.rs"));

/// The virtual directory the bundled files appear under.
pub const ROOT: &str = "<bundled>";

/// Where a path's file is.
enum Place {
    /// On disk.
    Disk,
    /// In the bundle, under this key (`scenarios/stanza/ping.toml`).
    Bundled(String),
    /// Under [`ROOT`], but not a name a bundled file can have (`..`).
    Nowhere,
}

fn place(path: &Path) -> Place {
    let Ok(rel) = path.strip_prefix(ROOT) else {
        return Place::Disk;
    };
    let mut parts = Vec::new();
    for c in rel.components() {
        match c {
            Component::Normal(part) => match part.to_str() {
                Some(p) => parts.push(p),
                None => return Place::Nowhere,
            },
            Component::CurDir => {}
            _ => return Place::Nowhere,
        }
    }
    Place::Bundled(parts.join("/"))
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

/// The contents of a file, bundled or on disk.
pub fn read(path: &Path) -> io::Result<Vec<u8>> {
    match place(path) {
        Place::Disk => std::fs::read(path),
        Place::Bundled(key) => bundled(&key).map(<[u8]>::to_vec).ok_or_else(not_bundled),
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
        Place::Nowhere => false,
    }
}

/// For a directory under [`ROOT`], every bundled file below it (sorted); `None` for a
/// directory on disk, which the caller walks itself.
pub fn bundled_files_under(dir: &Path) -> Option<Vec<PathBuf>> {
    let prefix = match place(dir) {
        Place::Disk => return None,
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
}
