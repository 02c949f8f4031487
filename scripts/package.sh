#!/usr/bin/env bash
# Builds the release packages into target/packages/:
#   midi-jam_<version>_amd64.deb, midi-jam-<version>-1.x86_64.rpm
#       the desktop app, by the Tauri bundler (`cargo tauri build`), as
#       configured in src-tauri/tauri.conf.json (desktop entry, icons,
#       category Audio/Music, dependencies)
#   midi-rdv_<version>_amd64.deb
#       the headless server: the binary, a hardened systemd unit
#       (packaging/midi-rdv.service) and its settings file
#       /etc/default/midi-rdv (packaging/midi-rdv.default)
# <version> is the workspace version (Cargo.toml, [workspace.package]).
# Needs what building needs (scripts/setup.sh --run) and the Tauri CLI,
# which it installs (pinned to the 2.x line of our tauri) when missing.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"

# tauri-cli 2.11.x is the CLI of tauri 2.12 / tauri-build 2.7 (the 2.x
# line: 3.0 is an alpha). `cargo install` compiles it once (~5 min).
TAURI_CLI_VERSION=2.11.5
if [ "$(cargo tauri --version 2>/dev/null | awk '{print $NF}')" != "$TAURI_CLI_VERSION" ]; then
  echo "package: cargo install tauri-cli $TAURI_CLI_VERSION"
  cargo install tauri-cli --version "$TAURI_CLI_VERSION" --locked --quiet
fi

version="$(cargo pkgid -p midi-rdv | sed 's/.*[#@]//')"
out=target/packages
rm -rf "$out"
mkdir -p "$out"

# The desktop app. `tauri build` compiles in release mode with the
# production asset protocol, then bundles. --ci: no prompts.
echo "== package: midi-jam $version (.deb, .rpm)"
cargo tauri build --ci --bundles deb,rpm -- --locked
cp "target/release/bundle/deb/MIDI Jam_${version}_amd64.deb" "$out/midi-jam_${version}_amd64.deb"
cp "target/release/bundle/rpm/MIDI Jam-${version}-1.x86_64.rpm" "$out/midi-jam-${version}-1.x86_64.rpm"

# The server package, made with dpkg-deb: one binary, a unit and a settings
# file need no more, and dpkg-shlibdeps (from dpkg-dev, which
# build-essential brings) computes the library dependencies from the binary.
echo "== package: midi-rdv $version (.deb)"
cargo build --release --locked -p midi-rdv --bin midi-rdv
stage="$(mktemp -d)"
trap 'rm -rf "$stage"' EXIT
root="$stage/root"
install -Dm0755 target/release/midi-rdv "$root/usr/bin/midi-rdv"
install -Dm0644 packaging/midi-rdv.service "$root/lib/systemd/system/midi-rdv.service"
install -Dm0644 packaging/midi-rdv.default "$root/etc/default/midi-rdv"
install -Dm0644 docs/rendezvous.md "$root/usr/share/doc/midi-rdv/README.md"
install -Dm0644 CHANGELOG.md "$root/usr/share/doc/midi-rdv/changelog"
install -Dm0644 packaging/copyright "$root/usr/share/doc/midi-rdv/copyright"
strip --strip-unneeded "$root/usr/bin/midi-rdv"
mkdir -p "$stage/debian" "$root/DEBIAN"
printf 'Source: midi-rdv\n\nPackage: midi-rdv\nArchitecture: amd64\n' >"$stage/debian/control"
depends="$(cd "$stage" && dpkg-shlibdeps -O -e root/usr/bin/midi-rdv 2>/dev/null | sed -n 's/^shlibs:Depends=//p')"
installed_kb="$(du -sk --exclude=DEBIAN "$root" | cut -f1)"
cat >"$root/DEBIAN/control" <<EOF
Package: midi-rdv
Version: $version
Architecture: amd64
Maintainer: MIDI Jam contributors <midi-jam@localhost>
Installed-Size: $installed_kb
Depends: $depends
Section: sound
Priority: optional
Description: rendezvous server for MidiEditor AI jams
 midi-rdv serve pairs MidiEditor AI hosts and joiners on a server you run
 (it replaces the public Cloudflare Worker). Installed as the systemd
 service midi-rdv (a dynamic user, read-only system); settings are the
 MIDI_RDV_* variables in /etc/default/midi-rdv. The same binary also hosts,
 joins and tests jams headless (midi-rdv host, join, check).
EOF
echo /etc/default/midi-rdv >"$root/DEBIAN/conffiles"
# Start at install and restart on upgrade where systemd runs (not in a
# chroot or a container); stop before removal.
cat >"$root/DEBIAN/postinst" <<'EOF'
#!/bin/sh
set -e
if [ "$1" = configure ] && [ -d /run/systemd/system ]; then
  systemctl daemon-reload >/dev/null || true
  systemctl enable midi-rdv.service >/dev/null || true
  systemctl restart midi-rdv.service >/dev/null || true
fi
EOF
cat >"$root/DEBIAN/prerm" <<'EOF'
#!/bin/sh
set -e
if [ -d /run/systemd/system ]; then
  systemctl stop midi-rdv.service >/dev/null || true
fi
EOF
cat >"$root/DEBIAN/postrm" <<'EOF'
#!/bin/sh
set -e
if [ "$1" = purge ] && [ -d /run/systemd/system ]; then
  systemctl disable midi-rdv.service >/dev/null || true
fi
if [ -d /run/systemd/system ]; then
  systemctl daemon-reload >/dev/null || true
fi
EOF
chmod 0755 "$root/DEBIAN/postinst" "$root/DEBIAN/prerm" "$root/DEBIAN/postrm"
dpkg-deb --root-owner-group -Zxz --build "$root" "$out/midi-rdv_${version}_amd64.deb" >/dev/null

echo "== packages"
ls -l "$out"
