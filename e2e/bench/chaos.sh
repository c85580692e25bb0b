#!/usr/bin/env bash
# Chaos run: rollouts under faults, checking at every Ready=True that every ready replica
# serves the generation; bounded in count and time, loopback only. Prints a Markdown row.
#   e2e/bench/chaos.sh [--rollouts 200] [--seconds 600] [--replicas 3] [--seed N]
# LOCKSTEP_PROFILE (default release) is the cargo profile of the binaries, as for e2e/demo.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
"$ROOT/e2e/setup"
# libfaketime gives one proxy a wall clock 30 s ahead (Debian package faketime).
if [[ ! -e /usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1 && ! -e /usr/lib/aarch64-linux-gnu/faketime/libfaketime.so.1 ]]; then
  echo "[chaos] installing faketime" >&2
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq faketime >/dev/null) \
    || echo "[chaos] faketime unavailable: running without clock skew" >&2
fi
PROFILE="${LOCKSTEP_PROFILE:-release}"
cargo build --manifest-path "$ROOT/Cargo.toml" --workspace --bins --profile "$PROFILE" --locked
echo "# $(date -u +%FT%TZ) $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
exec "${CARGO_TARGET_DIR:-$ROOT/target}/$([[ $PROFILE == dev ]] && echo debug || echo "$PROFILE")/lockstep-e2e-chaos" "$@"
