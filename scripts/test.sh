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
