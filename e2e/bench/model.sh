#!/usr/bin/env bash
# Model checking of the barrier protocol (model/, stateright) over the project's own decision
# code, in release mode: each configuration of the test suite, exhaustively, then each mutant
# (a bug put back) until the checker finds its counterexample, then the deep runs: the barrier
# model's `wide` (three proxies, two edits, a rejecting replica, two faults) up to a state
# budget, and the fleet model's `tls-freeze` and `takeover-steps`, exhaustively. Prints
# states, depth and time per run.
#   e2e/bench/model.sh [--max-states N]   (budget of the wide run; default 50,000,000)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
BUDGET=50000000
if [[ "${1:-}" == "--max-states" ]]; then BUDGET="$2"; fi
cargo build --manifest-path "$ROOT/Cargo.toml" --release --locked -p lockstep-model --example check
CHECK="${CARGO_TARGET_DIR:-$ROOT/target}/release/examples/check"
echo "# $(date -u +%FT%TZ) $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
for config in small rollout failover names recreate tls takeover takeover-unserved widen faults; do
  "$CHECK" "$config"
done
for run in "rollout late-renewal" "rollout join-without-check" "names name-only" "rollout no-relist" \
  "recreate name-generation" "tls certificate-from-current-spec" "takeover certificate-from-current-spec" \
  "widen stale-replica-spec" "faults unsupervised-sync-loop" "faults leave-recreates-lease" \
  "takeover-unserved edited-object-only-rejudged" "tls operator-judges-tls-apart" "faults no-replica-garbage-collection"; do
  set -- $run
  # A mutant must break a property: the checker exits 1 with the trace.
  if "$CHECK" "$1" --mutation "$2" --stop-at-first; then
    echo "mutant $2 was NOT caught in $1" >&2
    exit 1
  fi
done
"$CHECK" tls-freeze
"$CHECK" takeover-steps
"$CHECK" wide --max-states "$BUDGET"
