#!/usr/bin/env bash
# Builds target/wasm32-wasip1/release/mcp_auth_filter.wasm (extra arguments go to cargo, e.g.
# --manifest-path tests/bench/noop-filter/Cargo.toml for the benchmark's no-op filter).
# Prefers rustup's wasm32-wasip1 target; falls back to Debian's rustc-web, which ships the
# standard library sources, so std is built for the target with -Zbuild-std (see README).
set -euo pipefail
cd "$(dirname "$0")/.."

if command -v rustup >/dev/null 2>&1 && rustup target list --installed 2>/dev/null | grep -qx wasm32-wasip1; then
  exec cargo build --release --target wasm32-wasip1 --lib "$@"
fi

if [ ! -x /usr/bin/cargo ] || [ ! -d /usr/lib/rustlib/src/rust/library ] || [ ! -d /usr/lib/wasm32-wasi ]; then
  echo "build-wasm: no wasm32-wasip1 toolchain; run 'make setup' (or 'rustup target add wasm32-wasip1')" >&2
  exit 1
fi
# Debian's toolchain is stable; RUSTC_BOOTSTRAP=1 unlocks -Zbuild-std on it.
RUSTC=/usr/bin/rustc RUSTC_BOOTSTRAP=1 \
CARGO_TARGET_WASM32_WASIP1_LINKER=wasm-ld \
RUSTFLAGS="-C link-self-contained=no -L native=/usr/lib/wasm32-wasi" \
  exec /usr/bin/cargo build --release --target wasm32-wasip1 --lib -Zbuild-std=std,panic_abort "$@"
