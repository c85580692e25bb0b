#!/usr/bin/env bash
# Rollout benchmark: apply -> Ready=True latency at 3, 10 and 30 proxy replicas, 100 rollouts
# each, on the local control plane with release builds; prints a Markdown table.
#   e2e/bench/rollout.sh [--replicas 3,10,30] [--rollouts 100]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
"$ROOT/e2e/setup"
cargo build --manifest-path "$ROOT/Cargo.toml" --workspace --bins --release --locked
echo "# $(date -u +%FT%TZ) $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
exec "${CARGO_TARGET_DIR:-$ROOT/target}/release/lockstep-e2e-rollout-bench" "$@"
