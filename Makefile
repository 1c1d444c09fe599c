# mcp-auth-filter: build the proxy-wasm filter, test it in a real Envoy, run the demo.
#
#   make demo    set up, build, and run the end-to-end demo on a local Envoy
#   make test    set up, build, run the unit tests and the integration tests
#
# Both install what they need first (idempotent): see scripts/setup.sh.

WASM := target/wasm32-wasip1/release/mcp_auth_filter.wasm
PY   := .venv/bin/python
MAX_WASM_BYTES := 1048576

.PHONY: all setup build unit integration test demo lint clean

all: build

setup:
	@scripts/setup.sh

build: setup
	@scripts/build-wasm.sh
	@size=$$(stat -c %s $(WASM)); echo "built $(WASM): $$size bytes"; \
	  if [ $$size -ge $(MAX_WASM_BYTES) ]; then echo "error: .wasm is over 1 MiB" >&2; exit 1; fi

unit:
	cargo test --lib

lint:
	cargo fmt --all -- --check
	cargo clippy --all-targets -- -D warnings

integration: build
	$(PY) -m pytest tests

test: build lint unit integration

demo: build
	$(PY) tests/demo.py

clean:
	cargo clean
