#!/usr/bin/env bash
# System calls per request of lockstep-proxy builds and of nginx, at full speed: the kernel's
# side of an A/B check, which instructions.sh (user space, under valgrind) cannot see.
#
#   e2e/bench/syscalls.sh BINARY...
#   MODE=ka CONNS=64 DURATION=5 e2e/bench/syscalls.sh A B
#
# Each proxy (proxy.sh's roles: one worker on CPU 1; oha and the nginx `return 200` backend on
# CPU 0) serves oha for DURATION seconds while `perf stat` counts its entries into each system
# call (the `syscalls:sys_enter_*` tracepoints, which cost little and do not slow the proxy
# the way strace or valgrind do); each row is calls per request, the last the total. MODE=new (default): a connection per request (oha sends `Connection: close`), CONNS
# at a time (default 16); MODE=ka: CONNS keep-alive connections; MODE=open: CONNS keep-alive
# connections sent RATE requests a second (default 16,000; proxy.sh's latency phase).
#
# Why at full speed: what a proxy finds when it reads depends on timing. Under valgrind a
# request is always in the socket when its connection is accepted; at full speed, with 16
# clients, three in four new connections were accepted before their request arrived (see
# RESULTS.md, "a socket outside the reactor"), so a change that counted well under valgrind
# cost a system call at full speed.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
WORK=$(mktemp -d /tmp/lockstep-bench-syscalls.XXXXXX)
MODE=${MODE:-new}
CONNS=${CONNS:-16}
DURATION=${DURATION:-4}
BACKEND_PORT=18950; NGINX_PORT=18951; FIRST_PORT=18952
# shellcheck source=lib.sh
source "$ROOT/e2e/bench/lib.sh"
builds_from_args "$@"
bench_tools
load_for_mode
if [[ $(perf list 'syscalls:sys_enter_accept4' 2>/dev/null) != *sys_enter_accept4* ]]; then
  echo "perf cannot see the syscalls tracepoints here (perf from apt: linux-perf; tracefs mounted; root)" >&2
  exit 1
fi

start_backend $BACKEND_PORT
write_bench_routes $BACKEND_PORT

# Counts system calls of pid $1 while oha loads port $2; writes "name calls-per-request" rows
# to $3 and returns the number of requests answered 200 in $COUNTED.
count() {
  local pid=$1 port=$2 out=$3 perf_pid
  taskset -c 0 oha --no-tui -z 2s "${load[@]}" -H "Host: bench.local" "http://127.0.0.1:$port/" >/dev/null
  perf stat -e 'syscalls:sys_enter_*' -p "$pid" -o "$out.perf" 2>/dev/null & perf_pid=$!
  sleep 0.5
  COUNTED=$(taskset -c 0 oha --no-tui --output-format json -z "${DURATION}s" "${load[@]}" \
    -H "Host: bench.local" "http://127.0.0.1:$port/" |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["statusCodeDistribution"].get("200", 0))')
  kill -INT "$perf_pid"; wait "$perf_pid" || true
  awk -v n="$COUNTED" '$1 ~ /^[0-9,]+$/ && $2 ~ /sys_enter_/ {
      gsub(",", "", $1); if ($1 > 0) { sub("syscalls:sys_enter_", "", $2); printf "%s %.3f\n", $2, $1 / n } }' \
    "$out.perf" > "$out"
}

names=(); i=0
for bin in "$@"; do
  port=$((FIRST_PORT + 2 * i)); name="$i:$(basename "$bin")"
  start_lockstep "$bin" $port $((port + 1)) "$WORK/$i.log"
  count "$STARTED_PID" $port "$WORK/calls.$i"
  kill "$STARTED_PID"
  names+=("$name")
  log "$name: $COUNTED requests"
  i=$((i + 1))
done
start_nginx_proxy $NGINX_PORT $BACKEND_PORT ";"
wait_port $NGINX_PORT
count "$NGINX_PID" $NGINX_PORT "$WORK/calls.$i"
names+=(nginx)
log "nginx: $COUNTED requests"

echo "- Command: \`MODE=$MODE ${RATE:+RATE=$RATE }CONNS=$CONNS DURATION=$DURATION e2e/bench/syscalls.sh $*\`"
echo "- Date: $(date -u +%Y-%m-%dT%H:%MZ); $(machine); load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo
python3 - "$WORK" "${names[@]}" <<'PY'
import sys
work, names = sys.argv[1], sys.argv[2:]
tables = []
for i, _ in enumerate(names):
    rows = {}
    for line in open(f"{work}/calls.{i}"):
        call, per = line.split()
        rows[call] = float(per)
    tables.append(rows)
calls = sorted({c for t in tables for c in t if t[c] >= 0.01}, key=lambda c: -max(t.get(c, 0) for t in tables))
print("| system call | " + " | ".join(names) + " |")
print("|---|" + "---:|" * len(names))
for c in calls:
    print(f"| {c} | " + " | ".join(f"{t.get(c, 0):.3f}" for t in tables) + " |")
print("| **all** | " + " | ".join(f"**{sum(t.values()):.2f}**" for t in tables) + " |")
PY
