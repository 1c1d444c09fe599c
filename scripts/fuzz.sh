#!/usr/bin/env bash
# Fuzzes the host-independent core with cargo-fuzz (libFuzzer + AddressSanitizer):
#   scripts/fuzz.sh [seconds-per-target] [target...]      (default: 20 s each, every target)
# Installs what it needs, idempotently: cargo-fuzz (crates.io) and the seed corpora, made fresh
# by scripts/fuzz_seeds.py from real tokens, JWKS documents, STS answers and the example
# configurations. Nightly compiler features come from RUSTC_BOOTSTRAP=1 on the installed
# toolchain (stable is enough). Every target runs for its time box; the script fails if any
# crashed, and names the input to reproduce it with:
#   RUSTC_BOOTSTRAP=1 cargo fuzz run <target> fuzz/artifacts/<target>/<crash-file>
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${1:-20}
shift || true
targets=("$@")

export RUSTC_BOOTSTRAP=1
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "fuzz: installing cargo-fuzz"
  cargo install cargo-fuzz --locked
fi
if [ ${#targets[@]} -eq 0 ]; then
  # Every target fuzz/Cargo.toml declares, so a new one is fuzzed without editing this script.
  listed=$(cd fuzz && cargo fuzz list)
  if [ -z "$listed" ]; then
    echo "fuzz: cargo fuzz list found no targets in fuzz/" >&2
    exit 1
  fi
  mapfile -t targets <<<"$listed"
fi
# The seed script needs PyJWT, cryptography and PyYAML: the test virtualenv has them.
if ! .venv/bin/python -c 'import jwt, cryptography, yaml' >/dev/null 2>&1; then
  scripts/setup.sh
fi
.venv/bin/python scripts/fuzz_seeds.py fuzz/corpus

cd fuzz
cargo fuzz build
failed=()
for target in "${targets[@]}"; do
  echo "fuzz: $target for ${seconds}s"
  # -timeout: one input running longer than 10 s counts as a hang (a crash).
  if ! cargo fuzz run "$target" -- -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
       -print_final_stats=1 >"target/fuzz-$target.log" 2>&1; then
    failed+=("$target")
    tail -n 40 "target/fuzz-$target.log"
  fi
  grep -E '^Done [0-9]+ runs|^stat::number_of_executed_units' "target/fuzz-$target.log" | head -1 || true
done
if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz: crashes in: ${failed[*]}" >&2
  for target in "${failed[@]}"; do ls -1 "artifacts/$target" 2>/dev/null | sed "s|^|  fuzz/artifacts/$target/|" >&2; done
  exit 1
fi
echo "fuzz: ${#targets[@]} targets, ${seconds}s each, no crash"
