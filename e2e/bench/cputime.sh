#!/usr/bin/env bash
# User and system CPU time per request of a lockstep-proxy build and of nginx, alternating:
# where a difference in requests per CPU-second lies, the process's own side or the
# kernel's, without a profiler's overhead.
#
#   e2e/bench/cputime.sh BINARY
#   MODE=ka CONNS=64 REPS=3 DURATION=8 e2e/bench/cputime.sh BINARY
#
# proxy.sh's roles: each proxy one worker on CPU 1, oha and the nginx `return 200` backend on
# CPU 0. Each round loads lockstep, then nginx, for DURATION seconds, and reads the proxy's
# utime and stime (/proc/PID/stat, in clock ticks of 10 ms: about 1,000 ticks a run at full
# load, so a tenth of a microsecond per request is near the resolution) and its voluntary
# context switches (/proc/PID/status: how often it slept in epoll_wait) and minor page faults
# (a fault is kernel time no system call count shows) before and after.
# MODE=new (default): a connection per request (oha sends `Connection: close`), CONNS at a
# time (default 16); MODE=ka: CONNS keep-alive connections; MODE=open: CONNS keep-alive
# connections sent RATE requests a second (default 16,000; proxy.sh's latency phase).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
WORK=$(mktemp -d /tmp/lockstep-bench-cputime.XXXXXX)
MODE=${MODE:-new}
CONNS=${CONNS:-16}
DURATION=${DURATION:-8}
REPS=${REPS:-3}
BACKEND_PORT=18990; LOCKSTEP_PORT=18991; NGINX_PORT=18993
# shellcheck source=lib.sh
source "$ROOT/e2e/bench/lib.sh"
builds_from_args "$@"
bench_tools
load_for_mode

start_backend $BACKEND_PORT
write_bench_routes $BACKEND_PORT
start_lockstep "$LOCKSTEP" $LOCKSTEP_PORT $((LOCKSTEP_PORT + 1)) "$WORK/lockstep.log"
LOCKSTEP_PID=$STARTED_PID
start_nginx_proxy $NGINX_PORT $BACKEND_PORT ";"
wait_port $NGINX_PORT

# "utime stime minor-faults voluntary-switches" of pid $1.
sample() { echo "$(awk '{print $14, $15, $10}' "/proc/$1/stat") $(awk '/^voluntary_ctxt_switches/ {print $2}' "/proc/$1/status")"; }

echo "- Command: \`MODE=$MODE ${RATE:+RATE=$RATE }CONNS=$CONNS REPS=$REPS DURATION=$DURATION e2e/bench/cputime.sh $*\`"
echo "- Date: $(date -u +%Y-%m-%dT%H:%MZ); $(machine); load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo
echo "| round | target | requests | user µs | system µs | total µs | page faults per request | sleeps per request |"
echo "|---:|---|---:|---:|---:|---:|---:|---:|"
for rep in $(seq "$REPS"); do
  for target in lockstep:$LOCKSTEP_PID:$LOCKSTEP_PORT nginx:$NGINX_PID:$NGINX_PORT; do
    IFS=: read -r name pid port <<<"$target"
    taskset -c 0 oha --no-tui -z 1s "${load[@]}" -H "Host: bench.local" "http://127.0.0.1:$port/" >/dev/null
    read -r u0 s0 f0 c0 < <(sample "$pid")
    n=$(taskset -c 0 oha --no-tui --output-format json -z "${DURATION}s" "${load[@]}" \
      -H "Host: bench.local" "http://127.0.0.1:$port/" |
      python3 -c 'import json, sys; print(json.load(sys.stdin)["statusCodeDistribution"].get("200", 0))')
    read -r u1 s1 f1 c1 < <(sample "$pid")
    python3 - "$rep" "$name" "$n" "$u0" "$u1" "$s0" "$s1" "$f0" "$f1" "$c0" "$c1" <<'PY'
import os, sys
rep, name, n, u0, u1, s0, s1, f0, f1, c0, c1 = sys.argv[1:]
n = int(n)
tick = 1e6 / os.sysconf("SC_CLK_TCK")
user = (int(u1) - int(u0)) * tick / n
system = (int(s1) - int(s0)) * tick / n
print(f"| {rep} | {name} | {n} | {user:.2f} | {system:.2f} | {user + system:.2f} | {(int(f1) - int(f0)) / n:.4f} | {(int(c1) - int(c0)) / n:.3f} |")
PY
  done
done
