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
# keep-alive connections, counted inside the HTTP/1 connection (http1::server::serve, which
# runs the request path, Proxy::handle, inside it; one toggle only: callgrind's toggles nest,
# so a second one for handle would switch counting off inside the request path); MODE=new:
# a connection per request, 8 at a time, the whole process counted (start-up included, a
# few percent of it). Prints instructions
# per request and keeps each build's callgrind file for `callgrind_annotate` (the run folder
# is printed). Instructions are not time: a memcpy or an allocation costs fewer cycles per
# instruction than parsing; confirm a change in time too.
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
if ! command -v valgrind >/dev/null; then
  log "installing valgrind"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq valgrind >/dev/null
fi

start_backend $BACKEND_PORT
write_bench_routes $BACKEND_PORT
case $MODE in
  ka) load=(-c 16); collect=(--collect-atstart=no '--toggle-collect=*http1*server*serve*') ;;
  new) load=(-c 8 --disable-keepalive); collect=(--collect-atstart=yes) ;;
  *) echo "MODE is ka or new" >&2; exit 2 ;;
esac

echo "| build | mode | requests | instructions | per request |"
echo "|---|---|---:|---:|---:|"
i=0
for bin in "$@"; do
  port=$((FIRST_PORT + 2 * i)); admin=$((port + 1)); out="$WORK/$i.callgrind"
  valgrind --tool=callgrind --callgrind-out-file="$out" "${collect[@]}" \
    "$bin" --config "$WORK/routes.yaml" --listen 127.0.0.1:$port --admin 127.0.0.1:$admin \
    --worker-threads 1 2> "$WORK/$i.log" & vg=$!
  PIDS+=($vg)
  for _ in $(seq 600); do curl -fs "http://127.0.0.1:$admin/readyz" >/dev/null 2>&1 && break; sleep 0.1; done
  oha --no-tui -n 2000 "${load[@]}" -H "Host: bench.local" "http://127.0.0.1:$port/" >/dev/null
  oha --no-tui -n "$N" "${load[@]}" -H "Host: bench.local" "http://127.0.0.1:$port/" >/dev/null
  kill -INT $vg; wait $vg || true
  total=$(callgrind_annotate "$out" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1}')
  echo "| $i:$(basename "$bin") | $MODE | $((N + 2000)) | $total | $((total / (N + 2000))) |"
  i=$((i + 1))
done
log "callgrind files: $WORK/*.callgrind"
