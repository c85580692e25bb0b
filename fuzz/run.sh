#!/usr/bin/env bash
# Fuzzes the RouterConfig compiler, the standalone-file loader, the path normaliser, the
# header filter validation, the HTTP/1 request decoder and the upstream side of the codec for a bounded time each with
# cargo-fuzz (libFuzzer, nightly toolchain). e2e/test runs it as a smoke test (10 s per target); a finding fails the run
# and leaves the input in fuzz/artifacts/TARGET/.
#   fuzz/run.sh [SECONDS_PER_TARGET]   (default 60)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SECONDS_PER_TARGET="${1:-60}"
CACHE="${LOCKSTEP_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/lockstep}"
# cargo-fuzz from crates.io, pinned, installed once into the cache (not into ~/.cargo/bin).
CARGO_FUZZ_VERSION=0.13.2
FUZZ_ROOT="$CACHE/cargo-fuzz-$CARGO_FUZZ_VERSION"
if [[ ! -x "$FUZZ_ROOT/bin/cargo-fuzz" ]]; then
  echo "[fuzz] installing cargo-fuzz $CARGO_FUZZ_VERSION into $FUZZ_ROOT" >&2
  cargo install cargo-fuzz --version "$CARGO_FUZZ_VERSION" --locked --root "$FUZZ_ROOT" --quiet
fi
export PATH="$FUZZ_ROOT/bin:$PATH"
rustup toolchain list | grep -q '^nightly' || {
  echo "[fuzz] cargo-fuzz needs a nightly toolchain: rustup toolchain install nightly" >&2
  exit 1
}
cd "$ROOT/fuzz"
for target in route_table standalone_file path_normalize header_filters http1_request http1_upstream; do
  echo "[fuzz] $target for ${SECONDS_PER_TARGET}s" >&2
  cargo +nightly fuzz run "$target" -- -max_total_time="$SECONDS_PER_TARGET" -max_len=4096 2>&1 | tail -n 3
done
