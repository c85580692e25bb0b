#!/usr/bin/env bash
# TLS data-plane benchmark: lockstep-proxy (Kubernetes mode, certificate from a Secret on the
# local control plane) vs nginx vs haproxy terminating TLS with the same ECDSA P-256
# certificate, one core each.
#
#   e2e/bench/tls.sh                 # everything (about 10 minutes after the builds)
#   DURATION=5 REPS=1 e2e/bench/tls.sh   # a quicker look
#
# Each case repeats REPS times, alternating the targets within each round; the table shows each
# target's median round and every round's lockstep ÷ nginx ratio follows it.
#
# Roles as in proxy.sh: the proxy under test alone on CPU 1 with one worker; load generators,
# the shared trivial backend and the control plane (idle during the runs) on CPU 0.
# Cases:
#   ka          HTTP/1.1 over TLS, 64 keep-alive connections (oha): requests per CPU-second
#   h2          HTTP/2 over TLS (ALPN), 8 connections × 16 streams (oha)
#   handshake   a new connection per request, full handshake every time, no session
#               resumption (lockstep-e2e-tls-load, 16 at a time): handshakes per second and
#               per CPU-second. oha is not used here because its client resumes sessions.
#   idle        memory per idle client connection over TLS, HTTP/1.1 and HTTP/2 (IDLE_CONNS
#               connections that made one request each; lib.sh, idle_rss)
#   profile     where each target's CPU goes under the h2 load: one run per target under
#               `perf record` (cpu-clock sampling, so it works without hardware counters),
#               reported as CPU microseconds per request, user and kernel, by component
#               (e2e/bench/perf_components.py). Not part of the default. PERF_RECORD_ARGS=-g
#               records call chains too; the files stay in the run folder for `perf report`.
# CASES (default "load idle") picks them: CASES=idle runs the memory step alone.
# IDLE_MODES (default "tls h2") orders the memory step's protocols. Each step counts from the
# RSS the previous one left, which an allocator that keeps freed memory (glibc) and one that
# returns it (mimalloc) leave differently: IDLE_MODES=h2 measures HTTP/2 on fresh processes.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
WORK=$(mktemp -d /tmp/lockstep-bench-tls.XXXXXX)
OUT=${OUT:-$WORK/results.md}
DURATION=${DURATION:-10}
WARMUP=${WARMUP:-3}
CONNS=${CONNS:-64}
HANDSHAKE_CONNS=${HANDSHAKE_CONNS:-16}
REPS=${REPS:-3}
IDLE_CONNS=${IDLE_CONNS:-5000}
CASES=${CASES:-load idle}
IDLE_MODES=${IDLE_MODES:-tls h2}
BACKEND_PORT=18910; LOCKSTEP_PORT=18911; NGINX_PORT=18912; HAPROXY_PORT=18913; ADMIN_PORT=18914; PLAIN_PORT=18915
# shellcheck source=lib.sh
source "$ROOT/e2e/bench/lib.sh"
bench_tools
log "building the control plane and the TLS load generator"
"$ROOT/e2e/setup"
(cd "$ROOT" && cargo build --release --locked --workspace --bin lockstep-e2e-tls-load >/dev/null 2>&1)
TLS_LOAD="${CARGO_TARGET_DIR:-$ROOT/target}/release/lockstep-e2e-tls-load"

# --- certificates: a CA and a leaf for bench.local ---------------------------------------------
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 -subj "/CN=bench CA" \
  -keyout "$WORK/ca.key" -out "$WORK/ca.crt" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj "/CN=bench.local" \
  -keyout "$WORK/tls.key" -out "$WORK/tls.csr" 2>/dev/null
openssl x509 -req -in "$WORK/tls.csr" -CA "$WORK/ca.crt" -CAkey "$WORK/ca.key" -CAcreateserial -days 2 \
  -extfile <(printf 'subjectAltName=DNS:bench.local\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n') \
  -out "$WORK/tls.crt" 2>/dev/null
cat "$WORK/tls.crt" "$WORK/tls.key" > "$WORK/tls.pem"

# --- control plane, Secret and RouterConfig (CPU 0) ----------------------------------------------
export LOCKSTEP_STATE="$WORK/cluster"
CLEANUP_HOOKS+=("\"$ROOT/e2e/cluster\" down >/dev/null 2>&1")
eval "$(taskset -c 0 "$ROOT/e2e/cluster" up 2>"$WORK/cluster-up.log" | grep '^export KUBECONFIG=')"
kubectl apply -f "$ROOT/deploy/helm/lockstep/crds/routerconfig.yaml" >/dev/null
kubectl wait --for=condition=Established crd/routerconfigs.lockstep.dev --timeout=60s >/dev/null
kubectl -n default create secret tls bench-tls --cert "$WORK/tls.crt" --key "$WORK/tls.key" >/dev/null
kubectl apply -f - >/dev/null <<YAML
apiVersion: lockstep.dev/v1alpha1
kind: RouterConfig
metadata: {name: bench, namespace: default}
spec:
  fleet: bench
  rules:
  - host: bench.local
    tls: {secretName: bench-tls}
    paths:
    - {path: /, pathType: Prefix, backend: {url: "http://127.0.0.1:$BACKEND_PORT"}}
YAML

# --- backend and proxies -------------------------------------------------------------------------
start_backend $BACKEND_PORT
taskset -c 1 "$LOCKSTEP" --replica-name bench-0 --namespace default --fleet bench --worker-threads 1 \
  --listen 127.0.0.1:$PLAIN_PORT --tls-listen 127.0.0.1:$LOCKSTEP_PORT --admin 127.0.0.1:$ADMIN_PORT \
  2> "$WORK/lockstep.log" & LOCKSTEP_PID=$!; PIDS+=($LOCKSTEP_PID)
start_nginx_proxy $NGINX_PORT $BACKEND_PORT \
  "ssl http2; ssl_certificate $WORK/tls.crt; ssl_certificate_key $WORK/tls.key; ssl_protocols TLSv1.2 TLSv1.3;"
start_haproxy $HAPROXY_PORT $BACKEND_PORT "ssl crt $WORK/tls.pem alpn h2,http/1.1"
wait_port $NGINX_PORT; wait_port $HAPROXY_PORT; wait_port $LOCKSTEP_PORT
https() { curl -fsS --cacert "$WORK/ca.crt" --resolve "bench.local:$1:127.0.0.1" "https://bench.local:$1/" -o /dev/null; }
for _ in $(seq 200); do https $LOCKSTEP_PORT 2>/dev/null && break; sleep 0.05; done
for port in $LOCKSTEP_PORT $NGINX_PORT $HAPROXY_PORT; do https "$port" || { log "https on $port fails"; exit 1; }; done

declare -A PORT=([lockstep]=$LOCKSTEP_PORT [nginx]=$NGINX_PORT [haproxy]=$HAPROXY_PORT)
declare -A PID=([lockstep]=$LOCKSTEP_PID [nginx]=$NGINX_PID [haproxy]=$HAPROXY_PID)
TARGETS=(lockstep nginx haproxy)
# The HTTP/2 load of the `load` and `profile` cases: 8 connections × 16 streams.
H2_LOAD=(-c 8 -p 16 --http2)

target_load() {
  local t=$1; shift
  taskset -c 0 oha --no-tui --output-format json --cacert "$WORK/ca.crt" \
    --connect-to "bench.local:${PORT[$t]}:127.0.0.1:${PORT[$t]}" "$@" "https://bench.local:${PORT[$t]}/"
}

# Full handshakes: $1 target, $2 label; records H[target,label] = rate per CPU-second failed
# full p50 p99.
declare -A H
handshakes() {
  local t=$1 label=$2 before after
  before=$(cpu_ticks "${PID[$t]}")
  local s; s=$(taskset -c 0 "$TLS_LOAD" --connect "127.0.0.1:${PORT[$t]}" --sni bench.local --ca "$WORK/ca.crt" \
    --seconds "$DURATION" --concurrency "$HANDSHAKE_CONNS")
  after=$(cpu_ticks "${PID[$t]}")
  H[$t,$label]=$(python3 -c '
import json, sys
d = json.loads(sys.argv[1]); ticks = int(sys.argv[2]); hz = int(sys.argv[3])
ok = d["connections"] - d["failed"]
per_cpu = round(ok * hz / ticks) if ticks else "-"
print(round(d["rate"]), per_cpu, d["failed"], str(d["fullHandshakes"]) + "/" + str(ok), round(d["p50Ms"], 3), round(d["p99Ms"], 3))
if d["failed"]:
    print("[bench] first failure:", d["firstFailure"], file=sys.stderr)
' "$s" $((after - before)) "$CLK_TCK")
  log "$t handshake: ${H[$t,$label]} (rate per_cpu_s failed full p50 p99)"
}

if [[ " $CASES " == *" idle "* ]]; then
  # Memory first, on processes that have served nothing yet beyond the readiness checks.
  {
    echo "- Idle connections: \`CASES=idle IDLE_MODES=\"$IDLE_MODES\" e2e/bench/tls.sh\` ($IDLE_CONNS connections per target and protocol, each after one request; RSS of the proxy process), $(date -u +%Y-%m-%dT%H:%MZ); $(machine)"
    echo
    echo "| target | protocol | RSS before (KiB) | RSS with $IDLE_CONNS idle connections (KiB) | per connection (KiB) |"
    echo "|---|---|---:|---:|---:|"
    for mode in $IDLE_MODES; do
      for t in "${TARGETS[@]}"; do
        rss=$(idle_rss "${PID[$t]}" "${PORT[$t]}" "$IDLE_CONNS" "$WORK" "$mode")
        read -r idle held <<<"$rss"
        echo "| $t | $([[ $mode == h2 ]] && echo "HTTP/2 over TLS" || echo "HTTP/1.1 over TLS") | $idle | $held | $(python3 -c "print(f'{($held - $idle) / $IDLE_CONNS:.1f}')") |"
        sleep 2
      done
    done
    echo
  } > "$WORK/idle.md"
  cat "$WORK/idle.md" >&2
fi
if [[ " $CASES " == *" profile "* ]]; then
  perf_hz=4999
  command -v perf >/dev/null || apt_install linux-perf
  for t in "${TARGETS[@]}"; do target_load "$t" -z "${WARMUP}s" "${H2_LOAD[@]}" >/dev/null; done
  {
    echo "- Profile: \`CASES=profile e2e/bench/tls.sh\` (h2 over TLS, 8 connections × 16 streams, ${DURATION} s per target under \`perf record -e cpu-clock -F $perf_hz\`), $(date -u +%Y-%m-%dT%H:%MZ); $(machine)"
    echo
    for t in "${TARGETS[@]}"; do
      # shellcheck disable=SC2086 # PERF_RECORD_ARGS is a list of flags
      perf record -q -e cpu-clock -F "$perf_hz" ${PERF_RECORD_ARGS:-} -p "${PID[$t]}" -o "$WORK/$t.perf" 2>/dev/null & perf_pid=$!
      sleep 0.5
      n=$(target_load "$t" -z "${DURATION}s" "${H2_LOAD[@]}" | summarise | awk '{print $1}')
      kill -INT "$perf_pid"; wait "$perf_pid" || true
      python3 "$ROOT/e2e/bench/perf_components.py" "$WORK/$t.perf" "$t" "$n" "$perf_hz"
    done
  } > "$WORK/profile.md"
  cat "$WORK/profile.md" >&2
  log "perf files: $WORK/*.perf"
fi
if [[ " $CASES " != *" load "* ]]; then
  cat "$WORK"/idle.md "$WORK"/profile.md > "$OUT" 2>/dev/null || true
  cat "$OUT"; exit 0
fi

for t in "${TARGETS[@]}"; do target_load "$t" -z "${WARMUP}s" -c $CONNS >/dev/null; done
for rep in $(seq "$REPS"); do
  for t in "${TARGETS[@]}"; do
    measure "$t" "ka$rep" -z "${DURATION}s" -c $CONNS
    measure "$t" "h2$rep" -z "${DURATION}s" "${H2_LOAD[@]}"
    handshakes "$t" "$rep"
  done
done
# The median round of each target stands for it in the table.
median() { sort -n -k2 | sed -n "$(( (REPS + 1) / 2 ))p"; }
for t in "${TARGETS[@]}"; do
  for label in ka h2; do
    R[$t,$label]=$(for rep in $(seq "$REPS"); do echo "${R[$t,$label$rep]}"; done | median)
  done
  H[$t]=$(for rep in $(seq "$REPS"); do echo "${H[$t,$rep]}"; done | median)
done

{
  [[ -f "$WORK/idle.md" ]] && cat "$WORK/idle.md"
  [[ -f "$WORK/profile.md" ]] && cat "$WORK/profile.md"
  echo "- Command: \`e2e/bench/tls.sh\` (DURATION=$DURATION s per run, WARMUP=$WARMUP s, $CONNS keep-alive connections; h2: 8 connections × 16 streams; handshakes: $HANDSHAKE_CONNS at a time; REPS=$REPS alternating rounds, the table shows each target's median round)"
  echo "- Date: $(date -u +%Y-%m-%dT%H:%MZ); $(machine)"
  echo "- Versions: $(versions), $(openssl version | cut -d' ' -f1-2) (certificates)"
  echo "- Certificate: ECDSA P-256 leaf signed by a CA; both clients (oha, lockstep-e2e-tls-load) use rustls, which negotiates TLS 1.3 with all three servers"
  echo
  echo "| target | h1 keep-alive rps | h1 req per proxy CPU-s | h2 rps | h2 req per proxy CPU-s | full handshakes/s | handshakes per proxy CPU-s | full of completed | handshake+request p50 / p99 (ms) | failed |"
  echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
  for t in "${TARGETS[@]}"; do
    read -r ka_rps ka_cpu _ _ ka_bad <<<"${R[$t,ka]}"
    read -r h2_rps h2_cpu _ _ h2_bad <<<"${R[$t,h2]}"
    read -r hs_rate hs_cpu hs_bad hs_full hs50 hs99 <<<"${H[$t]}"
    echo "| $t | $ka_rps | $ka_cpu | $h2_rps | $h2_cpu | $hs_rate | $hs_cpu | $hs_full | $hs50 / $hs99 | $((ka_bad + h2_bad + hs_bad)) |"
  done
  echo
  read -r _ l_ka _ _ _ <<<"${R[lockstep,ka]}"; read -r _ n_ka _ _ _ <<<"${R[nginx,ka]}"; read -r _ h_ka _ _ _ <<<"${R[haproxy,ka]}"
  read -r _ l_h2 _ _ _ <<<"${R[lockstep,h2]}"; read -r _ n_h2 _ _ _ <<<"${R[nginx,h2]}"; read -r _ h_h2 _ _ _ <<<"${R[haproxy,h2]}"
  read -r _ l_hs _ _ _ _ <<<"${H[lockstep]}"; read -r _ n_hs _ _ _ _ <<<"${H[nginx]}"; read -r _ h_hs _ _ _ _ <<<"${H[haproxy]}"
  echo "Per proxy CPU-second, lockstep ÷ nginx (median rounds): h1 keep-alive $(ratio "$l_ka" "$n_ka"), h2 $(ratio "$l_h2" "$n_h2"), full handshakes $(ratio "$l_hs" "$n_hs"); lockstep ÷ haproxy: $(ratio "$l_ka" "$h_ka"), $(ratio "$l_h2" "$h_h2"), $(ratio "$l_hs" "$h_hs")."
  echo
  echo "Each round, per proxy CPU-second, lockstep ÷ nginx and ÷ haproxy (h1 keep-alive / h2):"
  for rep in $(seq "$REPS"); do
    read -r _ a _ _ _ <<<"${R[lockstep,ka$rep]}"; read -r _ b _ _ _ <<<"${R[nginx,ka$rep]}"; read -r _ e _ _ _ <<<"${R[haproxy,ka$rep]}"
    read -r _ c _ _ _ <<<"${R[lockstep,h2$rep]}"; read -r _ d _ _ _ <<<"${R[nginx,h2$rep]}"; read -r _ f _ _ _ <<<"${R[haproxy,h2$rep]}"
    echo "- round $rep: nginx $(ratio "$a" "$b") / $(ratio "$c" "$d"); haproxy $(ratio "$a" "$e") / $(ratio "$c" "$f")"
  done
} > "$OUT"
cat "$OUT"
