#!/usr/bin/env bash
# Runs every test of torronto: formatting and lints, the workspace tests (core,
# node, bridge, multi-node integration and fault tests, browser end-to-end tests in
# headless Chromium), and the core's tests under wasm (wasm-pack test --node).
# Installs what it needs first (scripts/setup.sh); a second run skips that.
set -euo pipefail
cd "$(dirname "$0")/.."
step() { printf '\033[1m==> %s\033[0m\n' "$*"; }

scripts/setup.sh --test

step "formatting and lints"
cargo fmt --all -- --check
cargo clippy --all-targets --locked -- -D warnings

step "building the node, the relay and the web app"
cargo build --locked -p torronto-node -p torronto-ws-bridge
cargo clippy --locked -p torronto-web --target wasm32-unknown-unknown -- -D warnings
scripts/build-web.sh

step "workspace tests (core, node, bridge, multi-node, faults, browser)"
cargo test --locked -- --test-threads=2

step "core tests under wasm (wasm-pack test --node)"
(cd core && wasm-pack test --node)

step "core builds for wasm32-unknown-unknown"
cargo build --locked -p torronto-core --target wasm32-unknown-unknown

echo "all tests passed"
