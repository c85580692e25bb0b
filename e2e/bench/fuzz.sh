#!/usr/bin/env bash
# Fuzzes the RouterConfig compiler, the standalone-file loader, the path normaliser and the
# header filter validation for a bounded time each
# (default 60 s per target) with cargo-fuzz (libFuzzer, nightly toolchain).
#   e2e/bench/fuzz.sh [SECONDS]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
SECONDS_PER_TARGET="${1:-60}"
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
rustup toolchain list | grep -q nightly || { echo "cargo-fuzz needs a nightly toolchain (rustup toolchain install nightly)" >&2; exit 1; }
cd "$ROOT/fuzz"
for target in route_table standalone_file path_normalize header_filters; do
  echo "== fuzzing $target for ${SECONDS_PER_TARGET}s"
  cargo +nightly fuzz run "$target" -- -max_total_time="$SECONDS_PER_TARGET" -max_len=4096 2>&1 | tail -n 5
done
