#!/usr/bin/env bash
# Rollout benchmark: apply -> Ready=True latency, apiserver requests, RouterConfig watch events,
# apiserver + etcd CPU-seconds per rollout and the replicas' own CPU per replica per rollout, at
# 3, 10 and 30 real proxy replicas (100 rollouts each) and 100, 300 and 1,000 hollow replicas
# (the real fleet code without a data plane, many in one process; 50 rollouts each), on the
# local control plane with release builds; prints a Markdown table.
#   e2e/bench/rollout.sh [--replicas 3,10,30] [--hollow 100,300,1000] [--rollouts 100] [--hollow-rollouts 50]
#                        [--pause-ms 250 (0: back to back)] [--timeline (each event, on stderr)]
#                        [--route (also an HTTPRoute edit and a Gateway listener edit per fleet,
#                         through a Gateway it serves)]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
"$ROOT/e2e/setup"
cargo build --manifest-path "$ROOT/Cargo.toml" --workspace --bins --release --locked
echo "# $(date -u +%FT%TZ) $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
# A thousand hollow replicas hold several thousand connections to the apiserver.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
if [[ $# -eq 0 ]]; then set -- --replicas 3,10,30 --hollow 100,300,1000; fi
exec "${CARGO_TARGET_DIR:-$ROOT/target}/release/lockstep-e2e-rollout-bench" "$@"
