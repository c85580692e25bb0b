#!/usr/bin/env bash
# Soak with configuration churn: a standalone lockstep-proxy under closed-loop load while its
# file is rewritten every REWRITE_MS with one path renamed each time (preview environments
# coming and going). Samples the proxy's RSS and the number of per-route series on /metrics
# every SAMPLE_S seconds; both must level off, not grow with the number of rewrites.
#
#   e2e/bench/churn.sh                         # 150 s, a rewrite every 100 ms, 16 clients
#   SECONDS_TOTAL=30 e2e/bench/churn.sh        # a quicker look
#   PROFILE=dev e2e/bench/churn.sh             # debug build (no release build needed)
#   BIN_DIR=/some/dir e2e/bench/churn.sh       # prebuilt lockstep-proxy, lockstep-e2e-backend
#                                              # and lockstep-e2e-churn (e.g. another version)
#
# Everything stays on 127.0.0.1 with ephemeral ports; processes are stopped by pid.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
WORK=$(mktemp -d /tmp/lockstep-churn.XXXXXX)
SECONDS_TOTAL=${SECONDS_TOTAL:-150}
REWRITE_MS=${REWRITE_MS:-100}
SAMPLE_S=${SAMPLE_S:-10}
CONCURRENCY=${CONCURRENCY:-16}
ROUTES=${ROUTES:-20}
PROFILE=${PROFILE:-release}

PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT
log() { echo "[churn] $*" >&2; }

if [ -n "${BIN_DIR:-}" ]; then
  DIR=$BIN_DIR
else
  log "building lockstep-proxy and the e2e tools ($PROFILE)"
  (cd "$ROOT" && cargo build --locked --profile "$PROFILE" -p lockstep-proxy -p lockstep-e2e \
    --bin lockstep-proxy --bin lockstep-e2e-backend --bin lockstep-e2e-churn >&2)
  DIR="${CARGO_TARGET_DIR:-$ROOT/target}/$([ "$PROFILE" = dev ] && echo debug || echo "$PROFILE")"
fi

# The address a process logs as `… listening KIND=ADDR`.
logged_addr() { # $1 = log file, $2 = kind
  for _ in $(seq 200); do
    addr=$(grep -o "listening $2=[0-9.:]*" "$1" 2>/dev/null | head -1 | cut -d= -f2) || true
    [ -n "${addr:-}" ] && { echo "$addr"; return 0; }
    sleep 0.05
  done
  echo "no $2 address in $1" >&2; return 1
}

"$DIR/lockstep-e2e-backend" --listen 127.0.0.1:0 --name churn > "$WORK/backend.log" 2>&1 & PIDS+=($!)
BACKEND=$(logged_addr "$WORK/backend.log" http)

# The driver writes version 1 before it starts the load; the proxy needs a file to start.
cat > "$WORK/routes.yaml" <<YAML
apiVersion: lockstep.dev/v1alpha1
kind: RouterConfig
metadata: {name: churn, namespace: default, generation: 1}
spec:
  rules:
  - host: churn.test
    paths:
    - {path: /, pathType: Prefix, backend: {url: "http://$BACKEND"}}
YAML
"$DIR/lockstep-proxy" --config "$WORK/routes.yaml" --listen 127.0.0.1:0 --admin 127.0.0.1:0 \
  --reload-interval 20ms > /dev/null 2> "$WORK/proxy.log" & PROXY_PID=$!; PIDS+=($PROXY_PID)
PROXY=$(logged_addr "$WORK/proxy.log" http)
ADMIN=$(logged_addr "$WORK/proxy.log" admin)

log "$(date -u +%FT%TZ); $(nproc) CPUs ($(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)), load $(cut -d' ' -f1-3 /proc/loadavg); $DIR/lockstep-proxy"
log "proxy $PROXY (pid $PROXY_PID), admin $ADMIN, backend $BACKEND; ${SECONDS_TOTAL}s, a rewrite every ${REWRITE_MS}ms, $CONCURRENCY clients"
"$DIR/lockstep-e2e-churn" --proxy "$PROXY" --admin "$ADMIN" --pid "$PROXY_PID" --config "$WORK/routes.yaml" \
  --backend "http://$BACKEND" --seconds "$SECONDS_TOTAL" --rewrite-ms "$REWRITE_MS" --sample-s "$SAMPLE_S" \
  --concurrency "$CONCURRENCY" --routes "$ROUTES"
