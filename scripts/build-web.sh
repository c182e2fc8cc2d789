#!/usr/bin/env bash
# Builds the browser app into web/dist (served by a node's --ws listener at /):
#   cargo build -p torronto-web --target wasm32-unknown-unknown --profile web
#   wasm-bindgen --target web (the CLI pinned by Cargo.lock; scripts/setup.sh installs it)
#   + web/static (index.html, style.css, worker.js: the engine's module worker)
# Skips the work when web/dist is newer than every input; prints the bundle size.
# Downloads nothing: no trunk, no wasm-opt.
set -euo pipefail
cd "$(dirname "$0")/.."

dist=web/dist
stamp=$dist/.built
target_dir=${CARGO_TARGET_DIR:-target}
wasm=$target_dir/wasm32-unknown-unknown/web/torronto_web.wasm

inputs=(Cargo.toml Cargo.lock web/Cargo.toml web/src web/static core/Cargo.toml core/src scripts/build-web.sh)

report() {
  local raw gz
  raw=$(stat -c %s "$dist/torronto_web_bg.wasm")
  gz=$(gzip -9c "$dist/torronto_web_bg.wasm" | wc -c)
  printf 'web bundle: %s/torronto_web_bg.wasm %d bytes (%.1f KiB; %.1f KiB gzipped)\n' \
    "$dist" "$raw" "$(echo "$raw / 1024" | bc -l)" "$(echo "$gz / 1024" | bc -l)"
}

if [ -f "$stamp" ] && [ -z "$(find "${inputs[@]}" -newer "$stamp" -print -quit)" ]; then
  echo "web/dist is up to date"
  report
  exit 0
fi

if ! rustup target list --installed 2>/dev/null | grep -qx wasm32-unknown-unknown; then
  echo "the wasm32-unknown-unknown target is missing: run scripts/setup.sh" >&2
  exit 1
fi
want=$(awk '/^name = "wasm-bindgen"$/ { getline; gsub(/version = |"/, ""); print; exit }' Cargo.lock)
have=$(wasm-bindgen --version 2>/dev/null | awk '{print $2}')
if [ "$have" != "$want" ]; then
  echo "wasm-bindgen CLI ${have:-not installed}, Cargo.lock wants $want: run scripts/setup.sh" >&2
  exit 1
fi

cargo build --locked -p torronto-web --target wasm32-unknown-unknown --profile web
rm -rf "$dist.tmp"
mkdir -p "$dist.tmp"
wasm-bindgen --target web --no-typescript --remove-name-section --remove-producers-section --out-dir "$dist.tmp" "$wasm"
cp web/static/* "$dist.tmp/"
# Swap in whole, so a node serving web/dist never sees half a build.
rm -rf "$dist"
mv "$dist.tmp" "$dist"
touch "$stamp"
report
