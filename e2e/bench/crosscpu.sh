#!/usr/bin/env bash
# The machine's own floor under the latency figures: a 1-byte TCP echo between CPU 0 and CPU 1
# (the load generator's core and the proxy's, as proxy.sh pins them), sent every PERIOD_NS
# (open loop, default 62,500 ns: 16,000 a second, proxy.sh's half-load rate) TRIPS times, with
# nothing else running. Prints each run's round trip at p50, p90, p99, p99.9 and max. No proxy
# can answer faster than this, and its tail shows what the platform alone adds (on a virtual
# machine: the virtual CPUs' waking and preemption).
#
#   e2e/bench/crosscpu.sh
#   RUNS=5 TRIPS=320000 e2e/bench/crosscpu.sh
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
WORK=$(mktemp -d /tmp/lockstep-bench-crosscpu.XXXXXX)
# shellcheck source=lib.sh
source "$ROOT/e2e/bench/lib.sh"
CLEANUP_HOOKS+=("rm -rf '$WORK'")
RUNS=${RUNS:-3}
TRIPS=${TRIPS:-160000}
PERIOD_NS=${PERIOD_NS:-62500}
gcc -O2 -o "$WORK/echo" "$ROOT/e2e/bench/crosscpu/echo.c"
echo "Cross-CPU TCP echo (\`e2e/bench/crosscpu.sh\`, $(date -u +%Y-%m-%dT%H:%MZ); $(machine); $TRIPS trips every $PERIOD_NS ns)"
for run in $(seq "$RUNS"); do
  echo "run $run: $("$WORK/echo" "$TRIPS" "$PERIOD_NS")"
done
