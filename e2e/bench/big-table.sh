#!/usr/bin/env bash
# A standalone proxy serving a large route table under open-loop load while its file is
# rewritten: the latency of the requests that run while a new table is parsed, compiled and
# swapped in. Compares the lockstep-proxy builds given, alternating.
#
#   e2e/bench/big-table.sh OLD_BINARY NEW_BINARY
#   ROUTES=20000 RATE=2000 DURATION=30 EVERY=5 REPS=2 e2e/bench/big-table.sh A B
#
# The file holds ROUTES routes in RouterConfigs of 250 rules x 100 paths (the per-object
# limits); every EVERY seconds it is rewritten with one path renamed, so each rewrite is a
# new table. The standalone loader's YAML parser refuses files of more than 250,000 nodes
# (serde-saphyr's default budget), about 25,000 routes written this way: hence the default. The proxy runs alone on CPU 1 with one worker thread (--worker-threads 1: a
# single-threaded runtime, where anything long on it stalls every request); oha and the
# backend run on CPU 0. Per run: p50, p99 and the slowest request, and the swaps seen.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
WORK=$(mktemp -d /tmp/lockstep-bench-big.XXXXXX)
ROUTES=${ROUTES:-20000}
RATE=${RATE:-2000}
DURATION=${DURATION:-30}
EVERY=${EVERY:-5}
REPS=${REPS:-2}
BACKEND_PORT=18930; PROXY_PORT=18931; ADMIN_PORT=18932
# shellcheck source=lib.sh
source "$ROOT/e2e/bench/lib.sh"
builds_from_args "$@"
bench_tools
start_backend $BACKEND_PORT

# The table, version $1: path /p0 of host h0 is renamed in every version but the requests'.
write_table() {
  python3 - "$1" "$ROUTES" "$BACKEND_PORT" > "$WORK/routes.yaml.tmp" <<'PY'
import sys
version, routes, port = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
per_object, per_rule = 250 * 100, 100
out = []
for obj in range((routes + per_object - 1) // per_object):
    out.append(f"apiVersion: lockstep.dev/v1alpha1\nkind: RouterConfig\n"
               f"metadata: {{name: big-{obj}, namespace: default, generation: {version}}}\nspec:\n  rules:\n")
    first = obj * per_object
    for rule in range(first, min(first + per_object, routes), per_rule):
        host = f"h{rule // per_rule}.bench.local"
        out.append(f"  - host: {host}\n    paths:\n")
        for i in range(rule, min(rule + per_rule, routes)):
            path = f"/p{i}" if i != 1 else f"/renamed-{version}"
            out.append(f"    - {{path: {path}, pathType: Prefix, backend: {{url: \"http://127.0.0.1:{port}\"}}}}\n")
    out.append("---\n")
print("".join(out), end="")
PY
  mv "$WORK/routes.yaml.tmp" "$WORK/routes.yaml"
}

swaps() { curl -fs "http://127.0.0.1:$ADMIN_PORT/config" | python3 -c 'import json,sys; print(json.load(sys.stdin)["swaps"])'; }

echo "| round | build | requests | failed | p50 (ms) | p99 (ms) | slowest (ms) | swaps during the run |"
echo "|---|---|---:|---:|---:|---:|---:|---:|"
version=1
for rep in $(seq "$REPS"); do
  for bin in "$@"; do
    write_table $version
    start_lockstep "$bin" $PROXY_PORT $ADMIN_PORT "$WORK/proxy.log" --reload-interval 100ms
    pid=$STARTED_PID
    before=$(swaps)
    ( end=$((SECONDS + DURATION)); while [[ $SECONDS -lt $end ]]; do
        sleep "$EVERY"; version=$((version + 1)); write_table $version
      done ) & writer=$!
    s=$(taskset -c 0 oha --no-tui --output-format json -z "${DURATION}s" -c 16 -q "$RATE" --latency-correction \
      -H "Host: h0.bench.local" "http://127.0.0.1:$PROXY_PORT/p0" | python3 -c '
import json, sys
d = json.load(sys.stdin)
codes = d.get("statusCodeDistribution", {})
ok = codes.get("200", 0)
errors = {e: n for e, n in d.get("errorDistribution", {}).items() if "deadline" not in e}
lat = d.get("latencyPercentiles", {})
print(sum(codes.values()) + sum(errors.values()), sum(codes.values()) - ok + sum(errors.values()),
      round(lat.get("p50", 0) * 1000, 2), round(lat.get("p99", 0) * 1000, 2), round(d["summary"]["slowest"] * 1000, 1))
')
    wait $writer
    version=$((version + DURATION / EVERY + 1))
    after=$(swaps)
    kill "$pid"; wait "$pid" 2>/dev/null || true
    read -r total bad p50 p99 slowest <<<"$s"
    echo "| $rep | $(basename "$bin") | $total | $bad | $p50 | $p99 | $slowest | $((after - before)) |"
  done
done
log "machine: $(machine); load average $(cut -d' ' -f1-3 /proc/loadavg)"
