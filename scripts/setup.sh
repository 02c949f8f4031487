#!/usr/bin/env bash
# Installs what building and testing the workspace needs on Debian/Ubuntu:
# system packages through apt (as root, or with sudo), and a Rust toolchain
# through rustup when none is installed. Safe to run again: it only installs
# what is missing.
#   setup.sh          everything the test command needs (scripts/test.sh)
#   setup.sh --run    only what building and running needs (scripts/run.sh):
#                     no browsers, TURN server, WebDriver, npm or Python venv
set -euo pipefail
mode=test
[ "${1:-}" = --run ] && mode=run

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else
    echo "setup: need root or sudo to install system packages" >&2; exit 1
  fi
fi

# Packages for building the rendezvous (pure Rust plus a C toolchain for
# build scripts), and iproute2 for the namespaces the run script can use.
# The interop joiners (tests/interop) need Debian's Chromium, driven by the
# playwright-core package (which never downloads a browser), and a Python
# venv for aiortc. coturn is the TURN/STUN server the connection-test tests
# (crates/jam/tests/check.rs) start on loopback.
# The desktop app (src-tauri) builds against WebKitGTK and GTK, lists MIDI
# ports through ALSA's library, and its UI tests run it under Xvfb behind
# Debian's WebKitWebDriver, each test with a D-Bus session bus of its own
# (dbus-daemon: the single-instance check talks over it).
# jackd2 + libjack-jackd2-dev: real MIDI ports on a machine without ALSA
# devices; crates/midi/tests/jack.rs runs the midir backend (built with
# the `jack` feature) against a JACK server with the dummy driver.
PKGS=(build-essential pkg-config curl ca-certificates iproute2 procps
  libwebkit2gtk-4.1-dev libgtk-3-dev libsoup-3.0-dev librsvg2-dev
  libayatana-appindicator3-dev libxdo-dev libasound2-dev)
# Packaging tests (scripts/package-test.sh): debootstrap makes the clean
# Debian the .deb is installed into, ImageMagick takes its screenshot, the
# MinGW cross compiler builds the C parts (ring) for
# `cargo check --target x86_64-pc-windows-gnu`, systemd-analyze checks the
# server's unit.
if [ "$mode" = test ]; then
  PKGS+=(chromium python3-venv coturn
    xvfb xauth webkit2gtk-driver dbus-daemon
    jackd2 libjack-jackd2-dev
    debootstrap imagemagick gcc-mingw-w64-x86-64 systemd)
fi

missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  # jackd2 asks whether to allow realtime scheduling for the audio group;
  # answer no beforehand (the dummy driver needs none) so nothing prompts.
  echo "jackd2 jackd/tweak_rt_limits boolean false" | $SUDO debconf-set-selections
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

if ! command -v cargo >/dev/null 2>&1 && [ -x "$HOME/.cargo/bin/cargo" ]; then
  export PATH="$HOME/.cargo/bin:$PATH"
fi
if ! command -v cargo >/dev/null 2>&1; then
  echo "setup: installing the Rust toolchain with rustup"
  curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal --component rustfmt,clippy
  export PATH="$HOME/.cargo/bin:$PATH"
fi
for c in rustfmt clippy; do
  if ! cargo "${c/rustfmt/fmt}" --version >/dev/null 2>&1; then
    rustup component add "$c" >/dev/null 2>&1 || true
  fi
done

[ "$mode" = run ] && exit 0

# redis-server: the shared store tests (crates/rdv/tests/conformance_redis.rs,
# crates/midi-rdv/tests/serve_redis.rs) start their own on 127.0.0.1 with a
# free port and a temp folder. The package must not leave a service of its
# own running: a policy-rc.d refuses every service start during the install
# (only when none is in place already), and any redis-server.service is
# disabled so no boot starts one either.
if ! command -v redis-server >/dev/null 2>&1; then
  echo "setup: installing redis-server (no service started)"
  policy=/usr/sbin/policy-rc.d
  own_policy=0
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$policy" >/dev/null
    $SUDO chmod 755 "$policy"
    own_policy=1
  fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends redis-server >/dev/null
  [ "$own_policy" = 1 ] && $SUDO rm -f "$policy"
  if command -v systemctl >/dev/null 2>&1; then
    $SUDO systemctl disable --now redis-server.service >/dev/null 2>&1 || true
  fi
fi

# The Windows target, for `cargo check --target x86_64-pc-windows-gnu`.
if ! rustup target list --installed 2>/dev/null | grep -qx x86_64-pc-windows-gnu; then
  rustup target add x86_64-pc-windows-gnu >/dev/null
fi

# tauri-driver puts WebDriver in front of WebKitWebDriver for the UI tests
# (src-tauri/tests); 2.1.0 is the version known to work with Tauri 2.
if ! tauri-driver --help >/dev/null 2>&1 && ! "$HOME/.cargo/bin/tauri-driver" --help >/dev/null 2>&1; then
  echo "setup: cargo install tauri-driver 2.1.0"
  cargo install tauri-driver --version 2.1.0 --locked --quiet
fi

# cargo-machete finds dependencies no code uses (scripts/test.sh runs it).
MACHETE_VERSION=0.9.2
if [ "$(cargo machete --version 2>/dev/null | awk '{print $NF}')" != "$MACHETE_VERSION" ] &&
  [ "$("$HOME/.cargo/bin/cargo-machete" --version 2>/dev/null | awk '{print $NF}')" != "$MACHETE_VERSION" ]; then
  echo "setup: cargo install cargo-machete $MACHETE_VERSION"
  cargo install cargo-machete --version "$MACHETE_VERSION" --locked --quiet
fi

# Interop joiners (tests/interop): npm packages and a Python venv with aiortc.
# Each step is skipped when its lock file has not changed since it last ran.
interop="$(cd "$(dirname "$0")/.." && pwd)/tests/interop"

if ! command -v npm >/dev/null 2>&1; then
  echo "setup: installing nodejs and npm"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq nodejs npm >/dev/null
fi
want="$({ cat "$interop/package-lock.json"; node --version; } | sha256sum | cut -d' ' -f1)"
if [ "$(cat "$interop/node_modules/.setup-stamp" 2>/dev/null)" != "$want" ]; then
  echo "setup: npm ci in tests/interop"
  (cd "$interop" && npm ci --no-audit --no-fund --loglevel=error)
  echo "$want" >"$interop/node_modules/.setup-stamp"
fi

venv="$interop/.venv"
want="$({ cat "$interop/requirements.txt"; python3 --version; } | sha256sum | cut -d' ' -f1)"
if [ "$(cat "$venv/.setup-stamp" 2>/dev/null)" != "$want" ] || [ ! -x "$venv/bin/python" ]; then
  echo "setup: python venv with aiortc in tests/interop/.venv"
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check --no-input -r "$interop/requirements.txt"
  echo "$want" >"$venv/.setup-stamp"
fi

# The real MidiEditor AI (../shared/tools/midieditor, used by the tests that
# join it or have it join us) brings its own list of runtime packages (Qt 6,
# xdotool, ...); its `deps` subcommand installs what is missing. Where the
# tool is absent those tests report themselves skipped.
midieditor="${MIDIEDITOR_TOOL:-$(cd "$(dirname "$0")/.." && pwd)/../shared/tools/midieditor}"
if [ -x "$midieditor/midieditor" ]; then
  $SUDO "$midieditor/midieditor" deps >/dev/null
fi
