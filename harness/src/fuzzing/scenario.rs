//! The scenario-file loader on arbitrary text.
//!
//! Scenario files come from users (`--scenarios DIR`) and, for `gatecheck fuzz`, from
//! reproducers written by the harness; the loader must refuse bad ones with an error that
//! points at a line of the file, never panic. The bundled suite's fixtures are what
//! `send_fixture` paths resolve against.

use std::path::Path;
use std::sync::OnceLock;

use crate::scenario::{Scenario, SuiteDirs};
use crate::spec::Catalogue;

/// The target `scenario_file`: the text (if it is UTF-8) parsed as a scenario file outside
/// the suite's tree (so its id need not match its path). An error must name a line of the text.
pub fn scenario_file(data: &[u8]) {
    static DIRS: OnceLock<SuiteDirs> = OnceLock::new();
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let dirs = DIRS.get_or_init(SuiteDirs::bundled);
    let path = Path::new("fuzz-input.toml");
    if let Err(e) = Scenario::parse(path, text, Catalogue::embedded(), dirs) {
        let lines = text.lines().count() + 1;
        assert!(
            (1..=lines).contains(&e.line),
            "error at line {} of a {lines}-line file: {}",
            e.line,
            e.message
        );
    }
}
