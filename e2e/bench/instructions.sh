#!/usr/bin/env bash
# User-space instructions per request of lockstep-proxy builds, counted by callgrind: a
# figure that does not move with a noisy neighbour, for A/B checks of a data-plane change
# when the time-based runs (builds.sh, proxy.sh) cannot tell 5% from the machine's noise.
#
#   e2e/bench/instructions.sh OLD_BINARY NEW_BINARY ...
#   MODE=new N=20000 e2e/bench/instructions.sh A B
#
# Each build serves N requests from oha (after 2,000 of warm-up) under valgrind, in
# standalone mode with one route to an nginx `return 200` backend. MODE=ka (default): 16
# keep-alive connections, counted inside the client connection's future (server::conn's
# `Connection::poll`, which polls the HTTP/1 server and, inside it, the request path; one
# toggle only: callgrind's toggles nest, so a second one for Proxy::handle would switch
# counting off inside the request path; builds before the HTTP/1 server's future was held in
# the connection's own counted it alike, plus a call); MODE=new:
# a connection per request, 8 at a time, the whole process counted (start-up included, a
# few percent of it); MODE=h2c: HTTP/2 with prior knowledge, 8 connections x 16 streams, the
# whole process counted (hyper's HTTP/2 server runs each stream as a task of its own, outside
# any one function to toggle on). Prints instructions
# per request and keeps each build's callgrind file for `callgrind_annotate` (the run folder
# is printed). Instructions are not time: a memcpy or an allocation costs fewer cycles per
# instruction than parsing; confirm a change in time too.
#
# CACHE=1: callgrind also simulates the caches (its model of this CPU's, the run several times
# slower) and the table adds data writes, instruction-cache misses and first-level data-cache
# read and write misses per request: where the same instructions cost more cycles (on
# 2026-12-06 lockstep missed the instruction cache 1.44× as often per new connection as nginx
# and the data cache on writes 3×; RESULTS.md, "Data plane, 2026-12-06 afternoon").
#
# REFERENCE=nginx: every build and an nginx proxy (proxy.sh's configuration, one worker) are
# counted alike, the whole process from after the warm-up to after the load (callgrind_control
# zeroes, then dumps), so that lockstep's event loop counts as nginx's does. These rows are not
# comparable with the default ones.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
WORK=$(mktemp -d /tmp/lockstep-bench-instructions.XXXXXX)
MODE=${MODE:-ka}
N=${N:-20000}
BACKEND_PORT=18940; FIRST_PORT=18941
# shellcheck source=lib.sh
source "$ROOT/e2e/bench/lib.sh"
builds_from_args "$@"
bench_tools
command -v valgrind >/dev/null || apt_install valgrind

start_backend $BACKEND_PORT
write_bench_routes $BACKEND_PORT
case $MODE in
  ka) load=(-c 16); collect=(--collect-atstart=no '--toggle-collect=*server*conn*Connection*as*Future*poll*') ;;
  new) load=(-c 8 --disable-keepalive); collect=(--collect-atstart=yes) ;;
  h2c) load=(--http2 -c 8 -p 16); collect=(--collect-atstart=yes) ;;
  *) echo "MODE is ka, new or h2c" >&2; exit 2 ;;
esac
REFERENCE=${REFERENCE:-}
case $REFERENCE in
  "") ;;
  nginx)
    collect=(--collect-atstart=yes)
    # proxy.sh's nginx is not configured for h2c.
    [[ $MODE != h2c ]] || { echo "REFERENCE=nginx does not take MODE=h2c" >&2; exit 2; }
    ;;
  *) echo "REFERENCE is nginx or unset" >&2; exit 2 ;;
esac
CACHE=${CACHE:-}
[[ -z "$CACHE" ]] || collect+=(--cache-sim=yes)

# Loads the process under callgrind (pid $1) on port $2 and prints its table row ($3: name,
# $4: its callgrind file). With a reference, only what follows the warm-up is counted.
count() {
  local vg=$1 port=$2 name=$3 out=$4 total
  # HTTP/2 has no Host header to set: its :authority comes from the URL, which then names
  # the host (and the connection goes to 127.0.0.1).
  local target=(-H "Host: bench.local" "http://127.0.0.1:$port/")
  [[ $MODE != h2c ]] || target=(--connect-to "bench.local:$port:127.0.0.1:$port" "http://bench.local:$port/")
  oha --no-tui -n 2000 "${load[@]}" "${target[@]}" >/dev/null
  [[ -z "$REFERENCE" ]] || callgrind_control -z "$vg" >/dev/null 2>&1
  oha --no-tui -n "$N" "${load[@]}" "${target[@]}" >/dev/null
  if [[ -n "$REFERENCE" ]]; then
    callgrind_control -d "$vg" >/dev/null 2>&1
    out=$(ls -t "$out".* | head -n1)
  fi
  kill -INT "$vg"; wait "$vg" || true
  # The totals line: each event's count, then its "(100.0%)"; with CACHE, the events are
  # Ir Dr Dw I1mr D1mr D1mw ILmr DLmr DLmw.
  local totals
  totals=$(callgrind_annotate "$out" 2>/dev/null | awk '/PROGRAM TOTALS/ {
    for (i = 1; i <= NF; i++) if ($i ~ /^[0-9,]+$/) { gsub(",", "", $i); printf "%s ", $i } }')
  read -r total _ writes i1 d1r d1w _ <<<"$totals"
  local counted=$((N + 2000)) mode=$MODE
  [[ -z "$REFERENCE" ]] || { counted=$N; mode="$MODE, whole process"; }
  local cache=""
  [[ -z "$CACHE" ]] ||
    cache=" $((writes / counted)) | $((i1 / counted)) | $((d1r / counted)) | $((d1w / counted)) |"
  echo "| $name | $mode | $counted | $total | $((total / counted)) |$cache"
}

cache_columns=("" "")
[[ -z "$CACHE" ]] ||
  cache_columns=(" data writes | I1 misses | D1 read misses | D1 write misses |" "---:|---:|---:|---:|")
echo "| build | mode | requests | instructions | per request |${cache_columns[0]}"
echo "|---|---|---:|---:|---:|${cache_columns[1]}"
i=0
for bin in "$@"; do
  port=$((FIRST_PORT + 2 * i)); admin=$((port + 1)); out="$WORK/$i.callgrind"
  valgrind --tool=callgrind --callgrind-out-file="$out" "${collect[@]}" \
    "$bin" --config "$WORK/routes.yaml" --listen 127.0.0.1:$port --admin 127.0.0.1:$admin \
    --worker-threads 1 2> "$WORK/$i.log" & vg=$!
  PIDS+=($vg)
  for _ in $(seq 600); do curl -fs "http://127.0.0.1:$admin/readyz" >/dev/null 2>&1 && break; sleep 0.1; done
  count $vg $port "$i:$(basename "$bin")" "$out"
  i=$((i + 1))
done
if [[ "$REFERENCE" == nginx ]]; then
  port=$((FIRST_PORT + 2 * i)); out="$WORK/nginx.callgrind"
  write_nginx_proxy_conf $port $BACKEND_PORT ";"
  valgrind --tool=callgrind --callgrind-out-file="$out" "${collect[@]}" \
    nginx -c "$WORK/nginx/nginx.conf" -e "$WORK/nginx/error.log" 2> "$WORK/nginx.log" & vg=$!
  PIDS+=($vg)
  wait_port $port
  count $vg $port nginx "$out"
fi
log "callgrind files: $WORK/*.callgrind"
