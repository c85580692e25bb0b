#!/usr/bin/env bash
# Traffic-features benchmark: requests per proxy CPU-second on a route with 2 weighted
# backends, 2 header matches and a request header filter, as a ratio to a plain one-backend
# route, in the same run and the same proxy process.
#
#   e2e/bench/traffic.sh                  # 5 rounds of 10 s per route (about 2 minutes)
#   DURATION=5 ROUNDS=2 e2e/bench/traffic.sh
#
# The proxy (release build, one worker thread) runs alone on CPU 1; the load generator
# (lockstep-e2e-http-load, 16 keep-alive connections) and the two backends
# (lockstep-e2e-backend) run on CPU 0. Rounds alternate plain and traffic runs so that drift
# of a shared, busy machine hits both alike. Results go to stdout as a markdown fragment.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
WORK=$(mktemp -d /tmp/lockstep-traffic-bench.XXXXXX)
DURATION=${DURATION:-10}
ROUNDS=${ROUNDS:-5}
CONNS=${CONNS:-16}
V1_PORT=18910; V2_PORT=18911; PROXY_PORT=18912; ADMIN_PORT=18913
# shellcheck source=lib.sh
source "$ROOT/e2e/bench/lib.sh"
CLEANUP_HOOKS+=('rm -rf "$WORK"')

log "building lockstep-proxy (release) and the e2e backend and load generator"
(cd "$ROOT" && cargo build --release --locked -p lockstep-proxy >/dev/null 2>&1)
# (-p lockstep-proxy too: it picks the k8s-openapi version feature the e2e crate leaves open)
(cd "$ROOT" && cargo build --locked -p lockstep-e2e -p lockstep-proxy --bin lockstep-e2e-backend --bin lockstep-e2e-http-load >/dev/null 2>&1)
TARGET="${CARGO_TARGET_DIR:-$ROOT/target}"
PROXY="$TARGET/release/lockstep-proxy"
BACKEND="$TARGET/debug/lockstep-e2e-backend"
LOAD="$TARGET/debug/lockstep-e2e-http-load"
CLK_TCK=$(getconf CLK_TCK)

taskset -c 0 "$BACKEND" --listen 127.0.0.1:$V1_PORT --name v1 2>/dev/null & PIDS+=($!)
taskset -c 0 "$BACKEND" --listen 127.0.0.1:$V2_PORT --name v2 2>/dev/null & PIDS+=($!)
cat > "$WORK/routes.yaml" <<YAML
apiVersion: lockstep.dev/v1alpha1
kind: RouterConfig
metadata: {name: bench, namespace: default}
spec:
  rules:
  - host: bench.local
    paths:
    - path: /plain
      backend: {url: "http://127.0.0.1:$V1_PORT"}
    - path: /traffic
      match:
        headers: [{name: x-canary, value: "true"}, {name: x-env, type: RegularExpression, value: "^prod"}]
      backends:
      - {url: "http://127.0.0.1:$V1_PORT", weight: 90}
      - {url: "http://127.0.0.1:$V2_PORT", weight: 10}
      filters:
        requestHeaders: {set: [{name: x-route, value: traffic}], remove: [x-debug]}
    - path: /traffic
      backend: {url: "http://127.0.0.1:$V1_PORT"}
YAML
wait_port $V1_PORT; wait_port $V2_PORT
start_lockstep "$PROXY" $PROXY_PORT $ADMIN_PORT "$WORK/proxy.log"
PROXY_PID=$STARTED_PID

load() { # $1 = path, $2 = seconds, rest: headers
  local path=$1 seconds=$2; shift 2
  local args=()
  for h in "$@"; do args+=(--header "$h"); done
  taskset -c 0 "$LOAD" --connect 127.0.0.1:$PROXY_PORT --host bench.local --path "$path" \
    --seconds "$seconds" --concurrency "$CONNS" "${args[@]}"
}
TRAFFIC_HEADERS=("x-canary: true" "x-env: production")

# One measured run: prints "requests failures per-cpu-second rps by-backend-json".
measure() { # $1 = plain|traffic
  local before after json
  before=$(cpu_ticks $PROXY_PID)
  if [[ $1 == plain ]]; then json=$(load /plain "$DURATION"); else json=$(load /traffic "$DURATION" "${TRAFFIC_HEADERS[@]}"); fi
  after=$(cpu_ticks $PROXY_PID)
  python3 -c '
import json, sys
d = json.loads(sys.argv[1]); ticks = int(sys.argv[2]) - int(sys.argv[3]); hz = int(sys.argv[4])
cpu = ticks / hz
print(d["requests"], d["failures"], round(d["requests"] / cpu) if cpu else 0, int(d["rps"]), json.dumps(d["byBackend"], separators=(",", ":")))
' "$json" "$after" "$before" "$CLK_TCK"
}

log "warm-up"
load /plain 3 >/dev/null
load /traffic 3 "${TRAFFIC_HEADERS[@]}" >/dev/null

declare -a PLAIN TRAFFIC
ROWS=""
for round in $(seq "$ROUNDS"); do
  for kind in plain traffic; do
    read -r reqs fails per_cpu rps backends < <(measure $kind)
    log "round $round $kind: $reqs requests, $fails failures, $rps rps, $per_cpu req per proxy CPU-s, $backends"
    ROWS+="| $round | $kind | $reqs | $fails | $rps | $per_cpu | \`$backends\` |"$'\n'
    if [[ $kind == plain ]]; then PLAIN+=("$per_cpu"); else TRAFFIC+=("$per_cpu"); fi
  done
done

RATIO=$(python3 -c '
import statistics, sys
p = [int(x) for x in sys.argv[1].split()]; t = [int(x) for x in sys.argv[2].split()]
pairs = [b / a for a, b in zip(p, t)]
print(f"{sum(t)/len(t):.0f} {sum(p)/len(p):.0f} {sum(t)/sum(p):.3f} {statistics.median(pairs):.3f} {min(pairs):.3f} {max(pairs):.3f}")
' "${PLAIN[*]}" "${TRAFFIC[*]}")
read -r T_MEAN P_MEAN R MEDIAN LOW HIGH <<<"$RATIO"

cat <<MD
- Command: \`e2e/bench/traffic.sh\` (DURATION=${DURATION} s per run, ROUNDS=${ROUNDS}, ${CONNS} keep-alive connections)
- Date: $(date -u +%Y-%m-%dT%H:%MZ); $(nproc) × $(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo); $(uname -r)

| round | route | requests | failures | rps | req per proxy CPU-s | by backend |
|---:|---|---:|---:|---:|---:|---|
${ROWS}
Mean requests per proxy CPU-second: traffic route ${T_MEAN}, plain route ${P_MEAN}: **ratio ${R}×**
(per-round paired ratios: median ${MEDIAN}×, range ${LOW}× to ${HIGH}×).
MD
