#!/usr/bin/env bash
# Runs the rendezvous headless (`midi-rdv serve`), after installing what it
# needs. Extra arguments go to `midi-rdv serve` (see `--help`); every flag
# also has a MIDI_RDV_* environment variable. `run.sh host [flags]` hosts a
# jam headless instead (rendezvous plus WebRTC host peer).
#
# The desktop app (Tauri) is not built yet; until it is, this is what runs.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export PATH="$HOME/.cargo/bin:$PATH"
cargo build --release --locked -p midi-rdv --bin midi-rdv
cmd=serve
if [ "${1:-}" = "host" ] || [ "${1:-}" = "serve" ]; then cmd="$1"; shift; fi
exec ./target/release/midi-rdv "$cmd" "$@"
