//! Test tools that are not part of the repository.
//!
//! The real MidiEditor AI (built from its public source, driven by its
//! `midieditor` script) is kept beside the repository, not in it, as the
//! developers' guide describes. This module is the one place that names
//! that location: tests ask [`midieditor_tool`].

use std::path::PathBuf;

/// The environment variable that points the tests at the MidiEditor tool
/// folder (the one holding the `midieditor` script).
pub const MIDIEDITOR_TOOL_ENV: &str = "MIDIEDITOR_TOOL";

/// The MidiEditor tool folder: `$MIDIEDITOR_TOOL` when set and not empty,
/// else `../shared/tools/midieditor` relative to the repository root (the
/// developers' guide's layout). The path may not exist: a test that needs
/// the tool must fail saying so, naming [`MIDIEDITOR_TOOL_ENV`].
pub fn midieditor_tool() -> PathBuf {
    match std::env::var_os(MIDIEDITOR_TOOL_ENV) {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => repo_root().join("../shared/tools/midieditor"),
    }
}

/// The repository (workspace) root.
pub fn repo_root() -> PathBuf {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    root.canonicalize().unwrap_or(root)
}

/// `tests/interop` in the repository: the independent peers (aiortc,
/// Chromium, python-zeroconf) and the environments `scripts/setup.sh`
/// installs for them.
pub fn interop_dir() -> PathBuf {
    repo_root().join("tests/interop")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_anchored_at_the_repository() {
        assert!(repo_root().join("Cargo.toml").is_file());
        assert!(interop_dir().ends_with("tests/interop"));
        if std::env::var_os(MIDIEDITOR_TOOL_ENV).is_none() {
            assert!(midieditor_tool().ends_with("tools/midieditor"));
        }
    }
}
