#!/usr/bin/env bash
# Browser benchmark (DESIGN.md §8): the browser peer downloads a 256 MiB file from a node
# through the WebSocket endpoint in headless Chromium; target 50 MiB/s or more, and a wasm
# bundle under 1 MiB.
#
#   tests/bench/browser.sh [--size MiB] [--keep]
#
# Builds the web app (scripts/build-web.sh) and the node in release mode, starts one node on
# loopback with --ws holding a random file, opens its control panel in headless Chromium
# (driven by tests/bench/browser.py through chromedriver), clicks Download and times it in
# the page until every chunk is verified and stored in IndexedDB. Then the page assembles the
# file and its SHA-256 is checked. Everything started is killed on exit.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
size_mib=256
keep=false
while [ $# -gt 0 ]; do
  case "$1" in
    --size) size_mib=${2:?}; shift 2 ;;
    --keep) keep=true; shift ;;
    *) sed -n '6p' "$0" | sed 's/^# *//' >&2; exit 2 ;;
  esac
done

cd "$repo"
scripts/setup.sh --test >/dev/null
scripts/build-web.sh >/dev/null
cargo build --release --locked -p torronto-node >/dev/null 2>&1 || cargo build --release --locked -p torronto-node
bin=${TORRONTO_BIN:-$repo/target/release/torronto}

work=$(mktemp -d /tmp/torronto-browser-bench.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  if $keep; then echo "kept $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
listen=$(port)
ws=$(port)
token="bench-$$"
mkdir -p "$work/share" "$work/profile"
: > "$work/peers.txt"

name=bench-$size_mib.bin
head -c $((size_mib * 1024 * 1024)) /dev/urandom > "$work/$name"
sha=$(sha256sum "$work/$name" | cut -d' ' -f1)

"$bin" node --listen "127.0.0.1:$listen" --ws "127.0.0.1:$ws" --dir "$work/share" --peers "$work/peers.txt" \
  --token "$token" --join > "$work/node.log" 2>&1 &
pids+=($!)
for _ in $(seq 200); do
  (exec 3<>"/dev/tcp/127.0.0.1/$ws") 2>/dev/null && break
  sleep 0.05
done
"$bin" insert "$work/$name" --node "127.0.0.1:$listen" >/dev/null
rm "$work/$name"

result=$(python3 "$here/browser.py" --panel "http://127.0.0.1:$ws/#token=$token" --file "$name" \
  --size $((size_mib * 1024 * 1024)) --sha "$sha" --profile "$work/profile")
bundle=$(stat -c %s web/dist/torronto_web_bg.wasm)

python3 - "$result" "$size_mib" "$bundle" <<'PY'
import json, sys
r = json.loads(sys.argv[1]); mib = int(sys.argv[2]); bundle = int(sys.argv[3])
rate = mib / r["seconds"]
print(f"{'what':<34}{'MiB':>8}{'seconds':>10}{'MiB/s':>9}  target")
print(f"{'browser download via WebSocket':<34}{mib:>8}{r['seconds']:>10.2f}{rate:>9.1f}  >= 50 MiB/s  {'ok' if rate >= 50 else 'BELOW TARGET'}")
print(f"{'wasm bundle (torronto_web_bg.wasm)':<34}{bundle / 1048576:>8.2f}{'':>10}{'':>9}  < 1 MiB      {'ok' if bundle < 1048576 else 'OVER TARGET'}")
print(f"bytes verified in the page: {'identical' if r['sha_ok'] else 'MISMATCH'}")
sys.exit(0 if r["sha_ok"] else 1)
PY
