#!/usr/bin/env bash
# Two or more lockstep-proxy builds side by side, with nginx as the reference in the same run:
# requests per proxy CPU-second, split into user and system time per request.
#
#   e2e/bench/builds.sh OLD_BINARY NEW_BINARY         # e.g. a copy of target/release/lockstep-proxy
#   REPS=3 DURATION=5 MODES="ka new h2c" e2e/bench/builds.sh A B
#
# Built for A/B checks of a change to the data plane: proxy.sh compares one build with nginx
# and haproxy; this one tells whether a change moved the figures beyond the machine's noise.
# Roles as in proxy.sh (each proxy alone on CPU 1 with one worker; oha and the backend on
# CPU 0), targets alternating within each round (each round starting one target later), and
# every other target's ratio to the first build summarised over the rounds. Modes:
#   ka    64 keep-alive HTTP/1.1 connections
#   new   a new connection per request, 16 at a time
#   h2c   HTTP/2 with prior knowledge, 8 connections x 16 streams (lockstep builds only: the
#         nginx here is not configured for h2c)
# SYMBOLS="fdget,fput,clock_gettime": every run under `perf record -e cpu-clock` as well, and
# a second table of CPU µs per request in the symbols whose names contain those strings
# (perf_components.py --symbols), with user and kernel time as perf sampled them. For a
# change measured in one or two symbols, below the time figures' noise.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
WORK=$(mktemp -d /tmp/lockstep-bench-builds.XXXXXX)
DURATION=${DURATION:-5}
REPS=${REPS:-2}
MODES=${MODES:-ka new h2c}
BACKEND_PORT=18920; NGINX_PORT=18921; FIRST_PORT=18922
# shellcheck source=lib.sh
source "$ROOT/e2e/bench/lib.sh"
builds_from_args "$@"
bench_tools

start_backend $BACKEND_PORT
write_bench_routes $BACKEND_PORT

NAMES=(); declare -A PORT PID
i=0
for bin in "$@"; do
  name="$i:$(basename "$bin")"; port=$((FIRST_PORT + 2 * i))
  start_lockstep "$bin" $port $((port + 1)) "$WORK/lockstep-$i.log"
  PID[$name]=$STARTED_PID
  PORT[$name]=$port; NAMES+=("$name"); i=$((i + 1))
done
start_nginx_proxy $NGINX_PORT $BACKEND_PORT ";"
PORT[nginx]=$NGINX_PORT; PID[nginx]=$NGINX_PID; NAMES+=(nginx)
for name in "${NAMES[@]}"; do wait_port "${PORT[$name]}"; done

# One run: prints "requests user-µs system-µs" per request of the target's process.
run() {
  local name=$1 mode=$2 port=${PORT[$1]} pid=${PID[$1]} args
  case $mode in
    ka) args=(-c 64 -H "Host: bench.local" "http://127.0.0.1:$port/") ;;
    new) args=(-c 16 --disable-keepalive -H "Host: bench.local" "http://127.0.0.1:$port/") ;;
    h2c) args=(--http2 -c 8 -p 16 --connect-to "bench.local:$port:127.0.0.1:$port" "http://bench.local:$port/") ;;
  esac
  local before after n perf_pid=""
  if [[ -n "${SYMBOLS:-}" ]]; then
    perf record -q -e cpu-clock -F "$PERF_HZ" -p "$pid" -o "$WORK/$name.$mode.$rep.perf" 2>/dev/null & perf_pid=$!
    sleep 0.5
  fi
  before=$(awk '{print $14, $15}' "/proc/$pid/stat")
  n=$(taskset -c 0 oha --no-tui --output-format json -z "${DURATION}s" "${args[@]}" \
    | python3 -c 'import json, sys; print(json.load(sys.stdin)["statusCodeDistribution"].get("200", 0))')
  after=$(awk '{print $14, $15}' "/proc/$pid/stat")
  if [[ -n "$perf_pid" ]]; then
    kill -INT "$perf_pid"; wait "$perf_pid" || true
    echo "| $rep | $mode | $name | $(python3 "$ROOT/e2e/bench/perf_components.py" --symbols "$SYMBOLS" \
      "$WORK/$name.$mode.$rep.perf" "$name" "$n" "$PERF_HZ") |" >> "$WORK/symbols.md"
  fi
  python3 - "$n" "$before" "$after" "$CLK_TCK" <<'PY'
import sys
n, (u0, s0), (u1, s1), tck = int(sys.argv[1]), map(int, sys.argv[2].split()), map(int, sys.argv[3].split()), int(sys.argv[4])
u, s = (u1 - u0) / tck, (s1 - s0) / tck
print(n, round(u * 1e6 / max(n, 1), 2), round(s * 1e6 / max(n, 1), 2), round(n / max(u + s, 1e-9)))
PY
}

PERF_HZ=4999
if [[ -n "${SYMBOLS:-}" ]]; then
  command -v perf >/dev/null || apt_install linux-perf
  echo "| round | mode | target | user µs/req | kernel µs/req | $(sed 's/,/ µs\/req | /g' <<<"$SYMBOLS") µs/req |" > "$WORK/symbols.md"
  echo "|---|---|---|---:|---:|$(sed 's/[^,]*/---:/g; s/,/|/g' <<<"$SYMBOLS")|" >> "$WORK/symbols.md"
fi
echo "| round | mode | target | requests | user µs/req | system µs/req | req per proxy CPU-s |"
echo "|---|---|---|---:|---:|---:|---:|"
for rep in $(seq "$REPS"); do
  # Each round starts one target later, so that every target takes every place in turn: in
  # two A/B checks of the same pair of builds (2026-12-06), whichever ran first in its rounds
  # came out ahead, and with rounds merely reversed the middle target never moved.
  mapfile -t order < <(rotated "$rep" "${NAMES[@]}")
  for mode in $MODES; do
    for name in "${order[@]}"; do
      [[ $mode == h2c && $name == nginx ]] && continue
      read -r n user sys per_cpu <<<"$(run "$name" "$mode")"
      echo "| $rep | $mode | $name | $n | $user | $sys | $per_cpu |"
      echo "$rep $mode $name $per_cpu" >> "$WORK/rounds"
    done
  done
done
# Every other target against the first build, round by round: the machine's noise moves every target of a
# round alike more than it moves one against another.
echo
python3 - "$WORK/rounds" <<'PY'
import collections, statistics, sys
rows = [line.split() for line in open(sys.argv[1])]
per = collections.defaultdict(dict)
for rep, mode, name, value in rows:
    per[(mode, rep)][name] = float(value)
names = list(dict.fromkeys(name for _, _, name, _ in rows))
base = names[0]
for mode in dict.fromkeys(mode for _, mode, _, _ in rows):
    for name in names[1:]:
        ratios = [r[name] / r[base] for (m, _), r in per.items() if m == mode and name in r and r.get(base)]
        if ratios:
            ahead = sum(ratio > 1 for ratio in ratios)
            print(f"- {mode}: {name} ÷ {base} per proxy CPU-second, mean {statistics.mean(ratios):.3f}, "
                  f"median {statistics.median(ratios):.3f}, ahead in {ahead} of {len(ratios)} rounds "
                  f"({min(ratios):.2f} to {max(ratios):.2f})")
PY
if [[ -n "${SYMBOLS:-}" ]]; then
  echo
  echo "Sampled by perf (\`-e cpu-clock -F $PERF_HZ\`), CPU µs per request:"
  echo
  cat "$WORK/symbols.md"
  log "perf files: $WORK/*.perf"
fi
log "machine: $(machine); load average $(cut -d' ' -f1-3 /proc/loadavg)"
