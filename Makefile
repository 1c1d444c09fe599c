# mcp-auth-filter: build the proxy-wasm filter, test it in a real Envoy, run the demo.
#
#   make demo    set up, build, and run the end-to-end demo on a local Envoy
#   make test    set up, build, run the unit tests and the integration tests
#   make bench   build, then measure every case side by side against Envoy's jwt_authn (not in test)
#   make oci     build, then package the .wasm as an OCI image layout for Istio (target/oci/)
#
# Both install what they need first (idempotent): see scripts/setup.sh.

WASM := target/wasm32-wasip1/release/mcp_auth_filter.wasm
PY   := .venv/bin/python
# The size budget (768 KiB): Envoy copies the module into every worker's VM.
MAX_WASM_BYTES := 786432

# Seconds each fuzz target runs in `make test` (scripts/fuzz.sh; longer runs: make fuzz FUZZ_SECONDS=600).
FUZZ_SECONDS ?= 15

.PHONY: all setup build unit integration fuzz test demo lint clean oci bench

all: build

setup:
	@scripts/setup.sh

build: setup
	@scripts/build-wasm.sh
	@size=$$(stat -c %s $(WASM)); echo "built $(WASM): $$size bytes"; \
	  if [ $$size -ge $(MAX_WASM_BYTES) ]; then echo "error: .wasm is over its budget of $(MAX_WASM_BYTES) bytes" >&2; exit 1; fi

# Unit tests of both crates and src/core/tests/ (hostile input against the public core API).
unit:
	cargo test --workspace

# The fuzz targets and the benchmark's crates are workspaces of their own: linted here, so that
# a change of the core's API cannot break them unnoticed until `make fuzz` or `make bench`.
SIDE_CRATES := fuzz tests/bench/noop-filter tests/bench/verify-wasm

lint:
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings
	for crate in $(SIDE_CRATES); do \
	  cargo fmt --manifest-path $$crate/Cargo.toml -- --check && \
	  cargo clippy --manifest-path $$crate/Cargo.toml --all-targets -- -D warnings || exit 1; \
	done
	.venv/bin/ruff check tests scripts
	.venv/bin/mypy tests scripts

integration: build
	$(PY) -m pytest tests

fuzz: setup
	scripts/fuzz.sh $(FUZZ_SECONDS)

test: build lint unit integration fuzz

demo: build
	$(PY) tests/demo.py

# Side-by-side benchmark (tests/bench/run_bench.py): prints a table, BENCH and RATIO lines.
bench: build
	@scripts/setup.sh --bench
	@scripts/build-wasm.sh --manifest-path tests/bench/noop-filter/Cargo.toml
	$(PY) tests/bench/run_bench.py

# An OCI image layout (no Docker needed) with the .wasm as the `plugin.wasm` layer, as Istio's
# WasmPlugin pulls it; push it with oras, crane or skopeo (docs/deploying.md).
oci: build
	$(PY) scripts/build_oci.py

clean:
	cargo clean
