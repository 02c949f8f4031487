#!/usr/bin/env bash
# Regenerates every icon in icons/ from the one source image,
# icons/source.svg: ImageMagick renders it to a 1024 px RGBA PNG, then the
# Tauri CLI (`cargo tauri icon`, installed by scripts/package.sh) writes
# the PNG sizes, icon.ico, icon.icns and the store logos. Run it after
# editing the SVG and commit the result (the build reads the icons).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
png="$(mktemp --suffix=.png)"
trap 'rm -f "$png"' EXIT
convert -background none -density 96 icons/source.svg -resize 1024x1024 "PNG32:$png"
cargo tauri icon "$png" --output icons
# Mobile targets are not built; keep the folder to what desktops use.
rm -rf icons/android icons/ios
