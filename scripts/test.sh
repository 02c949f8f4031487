#!/usr/bin/env bash
# The whole test suite: formatting, lints (which also compile the benchmark,
# so it cannot rot), unit and integration tests against real servers on
# loopback ports. Installs what it needs first.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export PATH="$HOME/.cargo/bin:$PATH"

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== type-check ui/ and the join page (JSDoc, tsc --checkJs)"
tests/interop/node_modules/.bin/tsc --noEmit --allowJs --checkJs --target es2022 \
  --module es2022 --lib es2022,dom,dom.iterable ui/main.js crates/rdv/web/app.js
echo "== cargo machete (unused dependencies)"
cargo machete
echo "== cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "== cargo test"
cargo test --workspace --locked
# The midir backend on real ports: midir built on JACK (a compile-time swap,
# hence its own run), against a dummy-driver JACK server the test starts
# under a server name of its own and stops (jackd -r -d dummy -r 48000 -p 128).
echo "== cargo test -p midi --features jack --test jack"
cargo test -p midi --features jack --test jack --locked
# Windows: the whole app and the CLI must keep compiling for it (the MinGW
# cross compiler builds the C parts; no Windows machine here to link or run).
echo "== cargo check --target x86_64-pc-windows-gnu"
# test-support (Linux namespaces, test-only, never shipped) is left out.
cargo check --workspace --exclude test-support --target x86_64-pc-windows-gnu --locked
# The packages (one release build), then installed into a clean Debian and
# started as a user would (see the script's header).
echo "== packages: scripts/package.sh, scripts/package-test.sh"
bash scripts/package.sh
bash scripts/package-test.sh
