//! Compiles the bundled suite into the library, so that an installed `gatecheck` needs no
//! source tree: writes `$OUT_DIR/bundle.rs`, a table of every file under [`TREES`] as
//! `(path relative to the workspace root, include_bytes!(absolute path))`, sorted by path.
//! `src/bundle.rs` serves it.
//!
//! `include_bytes!` makes cargo rebuild when a bundled file changes; `rerun-if-changed` on
//! each tree (cargo scans a directory recursively) reruns this script when a file is added
//! or removed.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// The trees compiled in, relative to the workspace root: the suite and the fixtures its
/// scenarios send (not fixtures/iut, which describes IUTs rather than being sent to them).
const TREES: &[&str] = &["scenarios", "fixtures/stream", "fixtures/stanzas"];

fn main() {
    let manifest = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets it"));
    let root = manifest
        .parent()
        .expect("harness/ has a parent")
        .to_path_buf();
    let mut files = Vec::new();
    for tree in TREES {
        let dir = root.join(tree);
        println!("cargo::rerun-if-changed={}", dir.display());
        walk(&dir, &mut files);
    }
    let mut table: Vec<(String, PathBuf)> = files
        .into_iter()
        .map(|path| {
            let rel = path.strip_prefix(&root).expect("below the root");
            let parts: Vec<&str> = rel
                .components()
                .map(|c| {
                    c.as_os_str()
                        .to_str()
                        .unwrap_or_else(|| panic!("{}: not a UTF-8 file name", path.display()))
                })
                .collect();
            (parts.join("/"), path.clone())
        })
        .collect();
    table.sort();
    let mut out = String::from(
        "/// Every bundled file: (path relative to the workspace root, contents), sorted by path.\n\
         pub(crate) static FILES: &[(&str, &[u8])] = &[\n",
    );
    for (rel, path) in &table {
        let abs = path.to_str().expect("UTF-8 path");
        writeln!(out, "    ({rel:?}, include_bytes!({abs:?})),").expect("write to a String");
    }
    out.push_str("];\n");
    let dest = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets it")).join("bundle.rs");
    std::fs::write(&dest, out).unwrap_or_else(|e| panic!("{}: {e}", dest.display()));
}

/// Every file below `dir`, recursively.
fn walk(dir: &Path, files: &mut Vec<PathBuf>) {
    let entries = std::fs::read_dir(dir).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (the bundled suite is compiled in from the source tree)",
            dir.display()
        )
    });
    for entry in entries {
        let path = entry
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .path();
        if path.is_dir() {
            walk(&path, files);
        } else {
            files.push(path);
        }
    }
}
