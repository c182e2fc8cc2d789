#!/usr/bin/env bash
# Installs what building and testing torronto needs, skipping what is already there:
#   the wasm32 target, wasm-bindgen-cli at the Cargo.lock version, wasm-pack,
#   and (with --test) what the tests use from Debian: chromium and chromium-driver for
#   the browser tests, iproute2 (ip, tc) for the network-namespace fault tests, aria2
#   (aria2c), transmission-cli and python3-libtorrent as the BitTorrent clients of
#   tests/tests/bittorrent.rs.
# Nothing here downloads prebuilt binaries at build time: wasm tools come from crates.io,
# the browser from Debian.
set -euo pipefail
cd "$(dirname "$0")/.."

want_test=false
for arg in "$@"; do
  case "$arg" in
    --test) want_test=true ;;
    *) echo "usage: $0 [--test]" >&2; exit 2 ;;
  esac
done

# shellcheck source=scripts/apt-install.sh
. scripts/apt-install.sh
step() { printf '\033[1m==> %s\033[0m\n' "$*"; }

if ! rustup target list --installed | grep -qx wasm32-unknown-unknown; then
  step "adding the wasm32-unknown-unknown target"
  rustup target add wasm32-unknown-unknown
fi

# wasm-bindgen-cli must match the wasm-bindgen library version exactly.
bindgen_version=$(awk '/^name = "wasm-bindgen"$/ { getline; gsub(/version = |"/, ""); print; exit }' Cargo.lock)
if [ -n "$bindgen_version" ] && [ "$(wasm-bindgen --version 2>/dev/null | awk '{print $2}')" != "$bindgen_version" ]; then
  step "installing wasm-bindgen-cli $bindgen_version"
  cargo install wasm-bindgen-cli --version "$bindgen_version" --locked || cargo install wasm-bindgen-cli --version "$bindgen_version"
fi

if ! command -v wasm-pack >/dev/null; then
  step "installing wasm-pack"
  cargo install wasm-pack --locked || cargo install wasm-pack
fi

missing=()
if $want_test; then
  command -v chromium >/dev/null || missing+=(chromium)
  command -v chromedriver >/dev/null || missing+=(chromium-driver)
  { command -v ip >/dev/null && command -v tc >/dev/null; } || missing+=(iproute2)
  command -v aria2c >/dev/null || missing+=(aria2)
  command -v transmission-cli >/dev/null || missing+=(transmission-cli)
  # Debian's Python: another python3 on the PATH may not see Debian's modules.
  /usr/bin/python3 -c 'import libtorrent' 2>/dev/null || missing+=(python3-libtorrent)
fi
if [ ${#missing[@]} -gt 0 ]; then
  step "installing ${missing[*]} (Debian)"
  apt_install "${missing[@]}"
fi
