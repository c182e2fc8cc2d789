#!/usr/bin/env bash
# Starts `torronto demo`: a local network of three nodes on loopback with sample files,
# and the control panel (node 1 serves it; open the printed URL in a browser).
# Installs and builds what it needs first; a second run is quick.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/build-web.sh
cargo build --release --locked -p torronto-node
exec target/release/torronto demo "$@"
