#!/usr/bin/env bash
# Validates the interop joiners against the throwaway aiortc host (mini_host.py) on a
# real `midi-rdv serve`, all inside a network namespace made for the run and deleted
# afterwards. Needs root (ip netns), `bash scripts/setup.sh` done, and midi-rdv built
# (`cargo build -p rdv`). Usage: tests/interop/selfcheck.sh [path/to/midi-rdv]
# Prints each joiner's JSON-line events; exits non-zero if a joiner did not get
# sessionWelcome as its first frame and a pong to its ping.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
rdv="${1:-$root/target/debug/midi-rdv}"
py="$here/.venv/bin/python"
[ -x "$rdv" ] || { echo "selfcheck: $rdv not built (cargo build -p rdv)" >&2; exit 1; }
[ -x "$py" ] || { echo "selfcheck: run scripts/setup.sh first (no $py)" >&2; exit 1; }
[ -d "$here/node_modules/playwright-core" ] || { echo "selfcheck: run scripts/setup.sh first (no node_modules)" >&2; exit 1; }

ns="jamcheck-$$"
work="$(mktemp -d)"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  ip netns del "$ns" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

ip netns add "$ns"
ip -n "$ns" link set lo up
ip -n "$ns" addr add 127.0.0.2/8 dev lo # aioice never offers 127.0.0.1
inns() { ip netns exec "$ns" "$@"; }
# Background jobs are started with `ip netns exec` itself (not through the function),
# so that $! is the pid of the server (ip execs it) and cleanup can end it.

ip netns exec "$ns" "$rdv" serve --bind 127.0.0.1 --port 0 >"$work/rdv.out" 2>"$work/rdv.err" &
pids+=($!)
for _ in $(seq 100); do grep -q 'listening on' "$work/rdv.out" 2>/dev/null && break; sleep 0.05; done
url="$(sed -n 's/^midi-rdv listening on //p' "$work/rdv.out")"
[ -n "$url" ] || { echo "selfcheck: midi-rdv did not start" >&2; cat "$work/rdv.err" >&2; exit 1; }

ip netns exec "$ns" "$py" "$here/mini_host.py" --url "$url" --heartbeat-interval 2 >"$work/host.out" 2>"$work/host.err" &
pids+=($!)
for _ in $(seq 100); do grep -q '"event":"session"' "$work/host.out" 2>/dev/null && break; sleep 0.05; done
code="$(sed -n 's/.*"event":"session".*"code":"\([A-Z0-9]*\)".*/\1/p' "$work/host.out")"
[ -n "$code" ] || { echo "selfcheck: mini_host did not start" >&2; cat "$work/host.err" >&2; exit 1; }
echo "selfcheck: rendezvous $url, code $code, namespace $ns"

fails=0
check() {
  local name="$1"; shift
  echo "== $name"
  local rc=0
  inns "$@" --url "$url" --code "$code" --expect-first sessionWelcome --exit-on sessionWelcome \
    --ping --stay 10 >"$work/$name.out" 2>"$work/$name.err" || rc=$?
  cat "$work/$name.out"
  if [ "$rc" -ne 0 ]; then
    echo "selfcheck: $name exited $rc" >&2; tail -20 "$work/$name.err" >&2; fails=$((fails + 1))
  fi
}
check aiortc "$py" "$here/aiortc_joiner.py"
check chromium node "$here/chromium_joiner.mjs"

passed=$((2 - fails))
echo "selfcheck: $passed passed, $fails failed"
[ "$fails" -eq 0 ]
