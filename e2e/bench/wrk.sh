#!/usr/bin/env bash
# A quick look at plain HTTP/1.1 keep-alive requests per proxy CPU-second, lockstep-proxy
# vs nginx, with wrk (apt) instead of oha: fewer tools to build than proxy.sh, and no
# latency, new-connection or reload runs. Same roles as proxy.sh: each proxy alone on CPU 1
# with one worker, wrk and the shared nginx backend on CPU 0; the proxies alternate within
# each of REPS rounds.
#
#   LOCKSTEP=target/release/lockstep-proxy e2e/bench/wrk.sh
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
WORK=$(mktemp -d /tmp/lockstep-wrk.XXXXXX)
DURATION=${DURATION:-10}
CONNS=${CONNS:-64}
REPS=${REPS:-3}
BACKEND_PORT=18920; LOCKSTEP_PORT=18921; NGINX_PORT=18922; ADMIN_PORT=18924
# shellcheck source=lib.sh
source "$ROOT/e2e/bench/lib.sh"
command -v nginx >/dev/null && command -v wrk >/dev/null || { log "needs nginx and wrk (apt-get install nginx wrk)"; exit 1; }
LOCKSTEP=${LOCKSTEP:-${CARGO_TARGET_DIR:-$ROOT/target}/release/lockstep-proxy}
CLK_TCK=$(getconf CLK_TCK)

start_lockstep_and_nginx

declare -A PORT=([lockstep]=$LOCKSTEP_PORT [nginx]=$NGINX_PORT)
declare -A PID=([lockstep]=$LOCKSTEP_PID [nginx]=$NGINX_PID)
load() { taskset -c 0 wrk -t1 -c"$CONNS" -d"$1"s -H "Host: bench.local" "http://127.0.0.1:${PORT[$2]}/"; }
for t in lockstep nginx; do load 3 "$t" >/dev/null; done
echo "| round | target | requests | rps | proxy CPU-s | req per proxy CPU-s |"
echo "|---:|---|---:|---:|---:|---:|"
for rep in $(seq "$REPS"); do
  for t in lockstep nginx; do
    before=$(cpu_ticks "${PID[$t]}")
    out=$(load "$DURATION" "$t")
    after=$(cpu_ticks "${PID[$t]}")
    if grep -q "Non-2xx\|Socket errors" <<<"$out"; then log "$t: $(grep 'Non-2xx\|Socket errors' <<<"$out")"; fi
    requests=$(awk '/requests in/ {print $1}' <<<"$out")
    rps=$(awk '/Requests\/sec/ {printf "%d", $2}' <<<"$out")
    cpu=$(python3 -c "print(f'{($after - $before) / $CLK_TCK:.2f}')")
    echo "| $rep | $t | $requests | $rps | $cpu | $(python3 -c "print(round($requests / max($cpu, 0.01)))") |"
  done
done
