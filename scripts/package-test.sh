#!/usr/bin/env bash
# Tests the packages scripts/package.sh made (target/packages/), as root:
#
# 1. Clean room: a minimal Debian 12 (debootstrap --variant=minbase, from
#    deb.debian.org; cached in target/cleanroom/ so reruns skip it) gets
#    `apt-get install ./midi-jam_<v>_amd64.deb`: the package's declared
#    dependencies must be complete, nothing else is installed by hand.
# 2. First launch as a user meets it: a new user starts the installed app
#    from its desktop entry's Exec line, under Xvfb, in a network namespace
#    of this test's own that has no LAN interface (loopback only), no MIDI
#    (no sound devices), and port 8787 already taken. The window must show a
#    code (the app prints `codeShown` once the code is painted), the status
#    line must say in words why another port is used (the app's log, in the
#    per-user log folder), and a screenshot goes to target/ui-screenshots/.
# 3. `apt-get remove` and `purge` leave that user's settings in place.
# 4. The server: `apt-get install ./midi-rdv_<v>_amd64.deb` in the same
#    clean room, its unit passes `systemd-analyze verify` and scores "OK"
#    or better in `systemd-analyze security`, and the Containerfile's
#    runtime stage (the same Debian base) is replayed: its user, its
#    environment, `midi-rdv serve` as that non-root user, and its
#    HEALTHCHECK command, which must pass while the server runs and fail
#    once it stops. (No container engine works on the test machines: the
#    docker client has no daemon and Docker Hub is out of reach.)
#
# Prints the figures: package and installed sizes, cold start to the code
# on screen, and this test's time.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" -ne 0 ]; then
  echo "package-test: needs root (debootstrap, chroot, network namespaces)" >&2
  exit 1
fi
# Every mount below lives in a mount namespace of this script's own, so
# nothing is left mounted whatever happens.
if [ -z "${MIDI_JAM_PKGTEST_NS:-}" ]; then
  exec env MIDI_JAM_PKGTEST_NS=1 unshare --mount --propagation private bash "$0" "$@"
fi

t0=$(date +%s.%N)
repo="$(pwd)"
version="$(cargo pkgid -p midi-rdv 2>/dev/null | sed 's/.*[#@]//')"
jam_deb="$repo/target/packages/midi-jam_${version}_amd64.deb"
rdv_deb="$repo/target/packages/midi-rdv_${version}_amd64.deb"
for f in "$jam_deb" "$rdv_deb"; do
  [ -f "$f" ] || { echo "package-test: $f is missing (run scripts/package.sh)" >&2; exit 1; }
done
shots="$repo/target/ui-screenshots"
cache="$repo/target/cleanroom"
mkdir -p "$cache/archives/partial" "$shots"

secs() { awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }'; }
say() { echo "package-test: $*"; }
fail() { echo "package-test: FAIL: $*" >&2; exit 1; }

# --- the clean Debian, made once --------------------------------------------
base="$cache/bookworm-minbase.tar"
if [ ! -f "$base" ]; then
  say "debootstrap a minimal Debian 12 (once; cached in $base)"
  rm -rf "$cache/debootstrap"
  debootstrap --variant=minbase bookworm "$cache/debootstrap" http://deb.debian.org/debian >/dev/null
  # A user's system has the updates and security suites too.
  cat >"$cache/debootstrap/etc/apt/sources.list" <<'EOF'
deb http://deb.debian.org/debian bookworm main
deb http://deb.debian.org/debian bookworm-updates main
deb http://deb.debian.org/debian-security bookworm-security main
EOF
  chroot "$cache/debootstrap" apt-get update -qq
  tar -C "$cache/debootstrap" -cf "$base.part" . && mv "$base.part" "$base"
  rm -rf "$cache/debootstrap"
fi

root="$(mktemp -d /tmp/midi-jam-cleanroom.XXXXXX)"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  umount -R "$root/proc" "$root/dev" "$root/sys" "$root/tmp/.X11-unix" "$root/var/cache/apt/archives" 2>/dev/null || true
  rm -rf "$root"
}
trap cleanup EXIT
tar -C "$root" -xf "$base"
mount -t proc proc "$root/proc"
mount --rbind /dev "$root/dev"
mount --rbind /sys "$root/sys"
# Downloaded packages are kept between runs (apt's own cache, outside).
mount --bind "$cache/archives" "$root/var/cache/apt/archives"
cp /etc/resolv.conf "$root/etc/resolv.conf"
in_root() { chroot "$root" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin DEBIAN_FRONTEND=noninteractive "$@"; }

# --- 1. install the desktop package -----------------------------------------
cp "$jam_deb" "$rdv_deb" "$root/tmp/"
used() { du -skx --exclude="$root/var/cache/apt/archives" "$root" | cut -f1; }
used_before=$(used)
t_install=$(date +%s.%N)
if ! in_root apt-get install -y -qq --no-install-recommends "/tmp/$(basename "$jam_deb")" >"$cache/apt-install.log" 2>&1; then
  # Stale package lists (a security update replaced a version): refresh once.
  in_root apt-get update -qq
  in_root apt-get install -y -qq --no-install-recommends "/tmp/$(basename "$jam_deb")" >"$cache/apt-install.log" 2>&1 ||
    { tail -20 "$cache/apt-install.log"; fail "apt-get install of the .deb"; }
fi
install_s=$(secs "$t_install")
used_after=$(used)
pkg_kb=$(in_root dpkg-query -W -f='${Installed-Size}' midi-jam)
say "installed midi-jam with its dependencies in ${install_s} s (--no-install-recommends)"

desktop="$(in_root dpkg -L midi-jam | grep '^/usr/share/applications/.*\.desktop$' | head -n1)"
[ -n "$desktop" ] || fail "no desktop entry in the package"
grep -q '^Categories=.*Audio' "$root$desktop" || fail "desktop entry lacks the Audio category: $(cat "$root$desktop")"
exec_line="$(sed -n 's/^Exec=//p' "$root$desktop" | head -n1 | sed 's/ %[a-zA-Z]//g')"
icon="$(sed -n 's/^Icon=//p' "$root$desktop" | head -n1)"
ls "$root"/usr/share/icons/hicolor/*/apps/"$icon".png >/dev/null 2>&1 || fail "icon $icon not installed"
say "desktop entry $desktop: Exec=$exec_line Icon=$icon"

# --- 2. first launch ---------------------------------------------------------
in_root useradd --create-home --shell /bin/bash musician
home=/home/musician
mkdir -p "$root/tmp/.X11-unix"
display=""
xvfb_out="$(mktemp)"
Xvfb -displayfd 3 -screen 0 1280x800x24 -nolisten tcp 3>"$xvfb_out" 2>/dev/null &
pids+=($!)
for _ in $(seq 100); do display="$(cat "$xvfb_out")"; [ -n "$display" ] && break; sleep 0.1; done
[ -n "$display" ] || fail "Xvfb did not start"
mount --bind /tmp/.X11-unix "$root/tmp/.X11-unix"
app_out="$cache/app-stdout.log"
# The network namespace: loopback only (no LAN interface), and a program
# of this test holding port 8787 on every address, as another app would.
launch="$(mktemp)"
cat >"$launch" <<EOF
ip link set lo up
python3 -c 'import socket,time; s=socket.socket(); s.bind(("0.0.0.0",8787)); s.listen(); time.sleep(600)' &
sleep 0.3
exec chroot "$root" runuser -u musician -- env -i HOME=$home USER=musician DISPLAY=:$display \
  PATH=/usr/local/bin:/usr/bin:/bin LANG=C.UTF-8 sh -c 'cd; exec $exec_line'
EOF
t_launch=$(date +%s.%N)
unshare --net --pid --fork --kill-child bash "$launch" >"$app_out" 2>"$cache/app-stderr.log" &
pids+=($!)
shown=""
for _ in $(seq 1200); do
  shown="$(grep -m1 '"codeShown"' "$app_out" || true)"
  [ -n "$shown" ] && break
  sleep 0.1
done
cold_s=$(secs "$t_launch")
[ -n "$shown" ] || { tail -20 "$cache/app-stderr.log"; fail "no code on screen within 120 s"; }
code="$(echo "$shown" | python3 -c 'import json,sys; print(json.load(sys.stdin)["code"] or "")')"
app_ms="$(echo "$shown" | python3 -c 'import json,sys; print(json.load(sys.stdin)["ms"])')"
[[ "$code" =~ ^[A-Z0-9]{4}$ ]] || fail "the window's code is not a code: $shown"
say "the window shows code $code: ${cold_s} s from launch (the app's own count: ${app_ms} ms)"
sleep 1.5
import -display ":$display" -window root "$shots/installed-first-launch.png"
log="$root$home/.local/share/org.midijam.app/logs/midi-jam.log"
[ -f "$log" ] || fail "no log in the per-user log folder ($log)"
status="$(grep -o 'status line (Warning): Port 8787 is busy.*' "$log" | head -n1 || true)"
[ -n "$status" ] || { cat "$log"; fail "the status line did not say port 8787 is busy"; }
say "status line: ${status#status line (Warning): }"
# SIGKILL to unshare: --kill-child then ends the namespace's first process,
# and with it every process in that PID namespace (the app included).
{ kill -KILL "${pids[-1]}"; wait "${pids[-1]}"; } 2>/dev/null || true

# --- 3. removing the package leaves the user's settings ----------------------
conf="$root$home/.config/org.midijam.app"
[ -d "$conf" ] || fail "no per-user settings folder ($conf)"
# The user's own settings, as Settings → Save would leave them (the first
# launch itself writes none).
[ -f "$conf/settings.json" ] || echo '{"displayName":"Keys in the kitchen"}' >"$conf/settings.json"
before="$(cd "$conf" && find . -type f -exec sha256sum {} + | sort)"
# Purge: removal and the package's own configuration (it has none in /etc,
# so a plain remove leaves nothing behind for apt to purge afterwards).
in_root apt-get purge -y -qq midi-jam >/dev/null
[ ! -e "$root/usr/bin/midi-jam" ] || fail "the binary survived removal"
after="$(cd "$conf" && find . -type f -exec sha256sum {} + | sort)"
[ "$before" = "$after" ] || fail "removal changed the user's settings"
say "purged: $(echo "$before" | wc -l) file(s) in ~/.config/org.midijam.app unchanged"

# --- 4. the server package, its unit, the container recipe -------------------
in_root apt-get install -y -qq --no-install-recommends "/tmp/$(basename "$rdv_deb")" >/dev/null 2>&1 ||
  fail "apt-get install of midi-rdv"
[ "$(in_root midi-rdv --version)" = "midi-rdv $version" ] || fail "midi-rdv --version"
unit=/lib/systemd/system/midi-rdv.service
# A server runs systemd (minbase has none): its units are what verify
# resolves the unit's dependencies against.
in_root apt-get install -y -qq --no-install-recommends systemd >/dev/null 2>&1 || fail "apt-get install systemd"
verify="$(systemd-analyze verify --root="$root" "$root$unit" 2>&1 || true)"
if [ -n "$verify" ]; then echo "$verify"; fail "systemd-analyze verify complained"; fi
security="$(systemd-analyze security --offline=true --root="$root" "$unit" 2>&1 || true)"
score="$(echo "$security" | grep -o 'Overall exposure level for .*' || true)"
echo "$score" | grep -Eq ' (OK|SAFE)' || { echo "$security" | tail -30; fail "security score not OK: $score"; }
say "unit: systemd-analyze verify clean; $score"

# The Containerfile's runtime stage, replayed on the same Debian base.
cf=packaging/Containerfile
user_cmd="$(grep -o 'useradd [^\\]*midi-rdv' "$cf")"
in_root $user_cmd
argv_file="$(mktemp)"
python3 - "$cf" >"$argv_file" <<'EOF'
import json, re, sys
text = open(sys.argv[1]).read().replace("\\\n", " ")
m = re.search(r"^HEALTHCHECK .*?CMD (\[.*\])\s*$", text, re.M)
sys.stdout.write("\0".join(json.loads(m.group(1))))
EOF
env_line="$(sed -n 's/^ENV //p' "$cf")"
mapfile -d '' -t health_argv <"$argv_file"
uid="$(in_root id -u midi-rdv):$(in_root id -g midi-rdv)"
srv="$(mktemp)"
cat >"$srv" <<EOF
ip link set lo up
chroot --userspec=$uid "$root" env -i PATH=/usr/bin:/bin $env_line /usr/bin/midi-rdv serve &
srv=\$!
for _ in \$(seq 50); do
  chroot --userspec=$uid "$root" env -i PATH=/usr/bin:/bin $env_line "\$@" && break
  sleep 0.2
done
chroot --userspec=$uid "$root" env -i PATH=/usr/bin:/bin $env_line "\$@" || { echo "healthy: no"; exit 1; }
echo "healthy: yes"
kill -TERM \$srv; wait \$srv || true
if chroot --userspec=$uid "$root" env -i PATH=/usr/bin:/bin $env_line "\$@" 2>/dev/null; then
  echo "unhealthy after stop: no"; exit 1
fi
echo "unhealthy after stop: yes"
EOF
unshare --net --pid --fork --kill-child bash "$srv" "${health_argv[@]}" >"$cache/container-replay.log" 2>&1 ||
  { cat "$cache/container-replay.log"; fail "the Containerfile's health check"; }
say "Containerfile runtime stage replayed: non-root midi-rdv serve, HEALTHCHECK passes while up, fails once stopped"

# --- figures -------------------------------------------------------------------
kb() { awk -v k="$1" 'BEGIN { printf "%.1f MB", k / 1024 }'; }
say "figures:"
for f in "$repo"/target/packages/*; do
  printf '  %-40s %s\n' "$(basename "$f")" "$(kb $(( $(stat -c %s "$f") / 1024 )))"
done
echo "  midi-jam installed size (dpkg):            $(kb "$pkg_kb")"
echo "  midi-jam with its dependencies on minbase:  $(kb $((used_after - used_before)))"
echo "  cold start of the installed app to code:    ${cold_s} s (app's own count ${app_ms} ms)"
echo "  apt-get install of the .deb:                ${install_s} s"
echo "  this test:                                  $(secs "$t0") s"
