//! How the CLI tests start programs: piped stdout/stderr, no stdin, and no
//! `MIDI_RDV_*` variable inherited from the environment (it would change
//! the CLI's defaults under the test). The namespaces themselves come from
//! `test-support`. Shared by `host_interop.rs`, `join_lan.rs`, `serve_redis.rs` and
//! `two_machines.rs` (`#[path]`).

#![allow(dead_code)]

use std::path::Path;
use std::process::{Command, Stdio};

use test_support::Netns;

/// Piped stdout/stderr, no stdin, and no `MIDI_RDV_*` from the environment.
pub fn plain(cmd: &mut Command) {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("MIDI_RDV_") {
            cmd.env_remove(k);
        }
    }
}

/// `program args...` inside namespace `ns`, see [`plain`].
pub fn command(ns: &Netns, program: &Path, args: &[&str]) -> Command {
    let mut cmd = ns.command(program);
    cmd.args(args);
    plain(&mut cmd);
    cmd
}
