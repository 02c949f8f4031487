#!/usr/bin/env bash
# Runs MIDI Jam after installing what it needs:
#   run.sh                 the desktop app when there is a display ($DISPLAY or
#                          $WAYLAND_DISPLAY), otherwise `midi-rdv host` (the same
#                          jam, headless: rendezvous, host peer, LAN advert)
#   run.sh app             the desktop app
#   run.sh host [flags]    the headless jam host (`midi-rdv host --help`)
#   run.sh serve [flags]   the rendezvous alone, for a server (`midi-rdv serve --help`)
#   run.sh check [flags]   the connection test (`midi-rdv check --help`)
# Flags of the headless commands also have MIDI_RDV_* environment twins.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --run
export PATH="$HOME/.cargo/bin:$PATH"

cmd="${1:-}"
case "$cmd" in
  app|host|serve|check) shift ;;
  "")
    if [ -n "${DISPLAY:-}${WAYLAND_DISPLAY:-}" ]; then cmd=app; else
      cmd=host
      echo "run: no display here, so the jam is hosted headless (midi-rdv host)." >&2
    fi ;;
  -*) cmd=serve ;; # flags alone: the rendezvous server, as before
  *) echo "run: unknown command $cmd (app, host, serve or check)" >&2; exit 2 ;;
esac

if [ "$cmd" = app ]; then
  cargo build --release --locked -p midi-jam --bin midi-jam
  exec ./target/release/midi-jam "$@"
fi
cargo build --release --locked -p midi-rdv --bin midi-rdv
exec ./target/release/midi-rdv "$cmd" "$@"
