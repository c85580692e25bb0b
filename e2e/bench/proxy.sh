#!/usr/bin/env bash
# Data-plane benchmark: lockstep-proxy vs nginx vs haproxy vs Pingora on one pinned core each.
#
#   e2e/bench/proxy.sh            # everything (about 12 minutes)
#   DURATION=5 SWAPS=200 REPS=1 e2e/bench/proxy.sh   # a quicker look
#
# The throughput runs repeat REPS times, alternating the targets within each round (so a
# noisy neighbour hits all of them alike), each round starting one target later (so no target
# always runs in the same place: builds.sh measured a place moving a target by several
# percent); each round's ratios are reported, and the median.
#
# Roles (2-core machine; results in e2e/bench/RESULTS.md, "Data plane"): the proxy under test runs
# alone on CPU 1 with one worker; the load generator (oha) and the one shared trivial backend
# (an nginx `return 200`) run on CPU 0. Every proxy gets upstream keep-alive and no access
# log. All traffic stays on 127.0.0.1. Results go to stdout and $OUT (a markdown fragment).
# Pingora is the Rust anchor: the smallest reverse proxy on Cloudflare's crates
# (e2e/bench/pingora, built here in release on first use; PINGORA=path/to/binary skips that).
# lockstep, nginx (`deferred`) and haproxy (`defer-accept`) accept a connection once its client
# has sent (TCP_DEFER_ACCEPT); Pingora 0.8's listener options have no such setting, so it takes
# each connection on the handshake and wakes again for the request.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
WORK=$(mktemp -d /tmp/lockstep-bench.XXXXXX)
OUT=${OUT:-$WORK/results.md}
DURATION=${DURATION:-10}      # seconds per measured run
WARMUP=${WARMUP:-3}           # seconds of discarded warm-up per target
CONNS=${CONNS:-64}            # keep-alive connections of the closed-loop runs
SWAPS=${SWAPS:-1000}          # config rewrites in the reload test (at 10/s)
IDLE_CONNS=${IDLE_CONNS:-9900}   # haproxy cannot hold more under a 20,000 open-file hard limit
REPS=${REPS:-3}
BACKEND_PORT=18900; LOCKSTEP_PORT=18901; NGINX_PORT=18902; HAPROXY_PORT=18903; ADMIN_PORT=18904; PINGORA_PORT=18905
RELOAD_PORT=18906; RELOAD_ADMIN_PORT=18907
# shellcheck source=lib.sh
source "$ROOT/e2e/bench/lib.sh"
bench_tools

# Every target is reached over plain HTTP with the bench host.
target_load() { local t=$1; shift; taskset -c 0 oha --no-tui --output-format json -H "Host: bench.local" "$@" "http://127.0.0.1:${PORT[$t]}/"; }

start_backend $BACKEND_PORT

# --- proxies (CPU 1, one worker each) --------------------------------------------------------
route_yaml() { # $1 = generation, $2 = extra path (changes the table on every rewrite)
  cat <<YAML
apiVersion: lockstep.dev/v1alpha1
kind: RouterConfig
metadata: {name: bench, namespace: default, generation: $1}
spec:
  rules:
  - host: bench.local
    paths:
    - {path: /, pathType: Prefix, backend: {url: "http://127.0.0.1:$BACKEND_PORT"}}
    - {path: /$2, pathType: Prefix, backend: {url: "http://127.0.0.1:$BACKEND_PORT"}}
YAML
}
# lockstep as deployed, its file read at the default interval (500 ms). The reload test below
# restarts it reading every 20 ms: for the whole run that would keep a second thread busy,
# which cost it about 5% of its keep-alive requests per CPU-second (builds.sh, 2026-12-06;
# RESULTS.md).
route_yaml 1 gen-1 > "$WORK/routes.yaml"
start_lockstep "$LOCKSTEP" $LOCKSTEP_PORT $ADMIN_PORT "$WORK/lockstep.log"
LOCKSTEP_PID=$STARTED_PID

start_nginx_proxy $NGINX_PORT $BACKEND_PORT ";"
start_haproxy $HAPROXY_PORT $BACKEND_PORT ""
start_pingora $PINGORA_PORT $BACKEND_PORT

wait_port $NGINX_PORT; wait_port $HAPROXY_PORT; wait_port $PINGORA_PORT

declare -A PORT=([direct]=$BACKEND_PORT [lockstep]=$LOCKSTEP_PORT [nginx]=$NGINX_PORT [haproxy]=$HAPROXY_PORT [pingora]=$PINGORA_PORT)
declare -A PID=([direct]=0 [lockstep]=$LOCKSTEP_PID [nginx]=$NGINX_PID [haproxy]=$HAPROXY_PID [pingora]=$PINGORA_PID)
TARGETS=(direct lockstep nginx haproxy pingora)
PROXIES=(lockstep nginx haproxy pingora)
for t in "${TARGETS[@]}"; do target_load "$t" -z "${WARMUP}s" -c $CONNS >/dev/null; done
for rep in $(seq "$REPS"); do
  for t in $(rotated "$rep" "${TARGETS[@]}"); do
    measure "$t" "ka$rep" -z "${DURATION}s" -c $CONNS
    measure "$t" "newconn$rep" -z "${DURATION}s" -c 16 --disable-keepalive
  done
done
# The median round of each target stands for it in the summary table.
for t in "${TARGETS[@]}"; do
  for label in ka newconn; do
    R[$t,$label]=$(for rep in $(seq "$REPS"); do echo "${R[$t,$label$rep]}"; done | sort -n -k2 | sed -n "$(( (REPS + 1) / 2 ))p")
  done
done

# Open-loop latency at half the slowest proxy's keep-alive maximum.
slowest=$(for t in "${PROXIES[@]}"; do echo "${R[$t,ka]%% *}"; done | sort -n | head -1)
RATE=$(( slowest / 2 ))
log "open-loop rate: $RATE req/s"
# Tail latency is the noisiest figure: REPS alternating rounds, and each target's median round
# (by p99) stands for it.
for rep in $(seq "$REPS"); do
  for t in $(rotated "$rep" "${TARGETS[@]}"); do
    measure "$t" "open$rep" -z "${DURATION}s" -c $CONNS -q $RATE --latency-correction
  done
done
for t in "${TARGETS[@]}"; do
  R[$t,open]=$(for rep in $(seq "$REPS"); do echo "${R[$t,open$rep]}"; done | sort -n -k4 | sed -n "$(( (REPS + 1) / 2 ))p")
done

# Memory: idle, then with IDLE_CONNS idle keep-alive connections (lib.sh, idle_rss).
declare -A MEM
for t in "${PROXIES[@]}"; do
  rss=$(idle_rss "${PID[$t]}" "${PORT[$t]}" "$IDLE_CONNS" "$WORK")
  read -r idle held <<<"$rss"
  MEM[$t]="$idle $held"
  log "$t RSS idle=${idle}KiB with $IDLE_CONNS idle conns=${held}KiB"
done

# Reload: the open-loop load while the standalone file is rewritten SWAPS times at 10/s. The
# lockstep measured above is done; one that reads the file every 20 ms, so that it sees every
# rewrite, takes its place (on ports of its own: the old ones may linger).
kill "$LOCKSTEP_PID"; wait "$LOCKSTEP_PID" 2>/dev/null || true
start_lockstep "$LOCKSTEP" $RELOAD_PORT $RELOAD_ADMIN_PORT "$WORK/lockstep-reload.log" --reload-interval 20ms
PORT[reload]=$RELOAD_PORT
target_load reload -z "${WARMUP}s" -c $CONNS >/dev/null
swaps_before=$(curl -fs "http://127.0.0.1:$RELOAD_ADMIN_PORT/config" | python3 -c 'import json,sys; print(json.load(sys.stdin)["swaps"])')
reload_secs=$(( SWAPS / 10 + 2 ))
( for i in $(seq 2 $((SWAPS + 1))); do
    route_yaml "$i" "gen-$i" > "$WORK/routes.yaml.tmp" && mv "$WORK/routes.yaml.tmp" "$WORK/routes.yaml"
    sleep 0.1
  done ) & writer=$!
s=$(target_load reload -z "${reload_secs}s" -c $CONNS -q $RATE --latency-correction | summarise)
wait $writer
sleep 0.5
swaps_after=$(curl -fs "http://127.0.0.1:$RELOAD_ADMIN_PORT/config" | python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["swaps"], d["routerConfigs"][0]["generation"])')
read -r total rps p50 p99 bad <<<"$s"
read -r swaps_end gen_end <<<"$swaps_after"
SWAPPED=$(( swaps_end - swaps_before ))
log "reload: $total requests, $bad failed, $SWAPPED swaps, final generation $gen_end, p50=${p50}ms p99=${p99}ms"

# --- report ------------------------------------------------------------------------------------
added() { python3 -c "print(f'{float(\"$1\")-float(\"$2\"):+.3f}')"; }
{
  echo "- Command: \`e2e/bench/proxy.sh\` (DURATION=$DURATION s per run, WARMUP=$WARMUP s, $CONNS keep-alive connections, 16 for new-connection runs, REPS=$REPS alternating rounds of throughput and of open-loop latency, each round starting one target later; the table shows each target's median round)"
  echo "- Date: $(date -u +%Y-%m-%dT%H:%MZ); $(machine)"
  echo "- Versions: $(versions)"
  echo
  echo "| target | keep-alive rps | req per proxy CPU-s | new-conn rps | new-conn req per CPU-s | p50 / p99 at $RATE rps (ms) | added p50 / p99 (ms) |"
  echo "|---|---:|---:|---:|---:|---:|---:|"
  for t in "${TARGETS[@]}"; do
    read -r ka_rps ka_cpu _ _ _ <<<"${R[$t,ka]}"
    read -r nc_rps nc_cpu _ _ _ <<<"${R[$t,newconn]}"
    read -r _ _ o50 o99 _ <<<"${R[$t,open]}"
    read -r _ _ d50 d99 _ <<<"${R[direct,open]}"
    add="-"; [[ $t != direct ]] && add="$(added "$o50" "$d50") / $(added "$o99" "$d99")"
    echo "| $t | $ka_rps | $ka_cpu | $nc_rps | $nc_cpu | $o50 / $o99 | $add |"
  done
  echo
  read -r _ l_ka _ _ _ <<<"${R[lockstep,ka]}"; read -r _ n_ka _ _ _ <<<"${R[nginx,ka]}"; read -r _ h_ka _ _ _ <<<"${R[haproxy,ka]}"
  read -r _ l_nc _ _ _ <<<"${R[lockstep,newconn]}"; read -r _ n_nc _ _ _ <<<"${R[nginx,newconn]}"; read -r _ h_nc _ _ _ <<<"${R[haproxy,newconn]}"
  read -r _ p_ka _ _ _ <<<"${R[pingora,ka]}"; read -r _ p_nc _ _ _ <<<"${R[pingora,newconn]}"
  echo "Requests per proxy CPU-second, lockstep ÷ nginx (median rounds): keep-alive $(ratio "$l_ka" "$n_ka"), new connection $(ratio "$l_nc" "$n_nc"); lockstep ÷ haproxy: keep-alive $(ratio "$l_ka" "$h_ka"), new connection $(ratio "$l_nc" "$h_nc"); lockstep ÷ Pingora: keep-alive $(ratio "$l_ka" "$p_ka"), new connection $(ratio "$l_nc" "$p_nc")."
  echo
  echo "Each round, lockstep ÷ nginx per proxy CPU-second (keep-alive / new connection):"
  pairs=()
  for rep in $(seq "$REPS"); do
    read -r _ a _ _ _ <<<"${R[lockstep,ka$rep]}"; read -r _ b _ _ _ <<<"${R[nginx,ka$rep]}"
    read -r _ c _ _ _ <<<"${R[lockstep,newconn$rep]}"; read -r _ d _ _ _ <<<"${R[nginx,newconn$rep]}"
    echo "- round $rep: $(ratio "$a" "$b") / $(ratio "$c" "$d") (lockstep $a / $c, nginx $b / $d)"
    pairs+=("$a/$b/$c/$d")
  done
  # The line above the table divides each target's median round, which may come from
  # different rounds; the median of the rounds' own ratios compares like with like.
  python3 - "${pairs[@]}" <<'PY'
import statistics, sys
rows = [[int(x) for x in p.split("/")] for p in sys.argv[1:] if "-" not in p]
if rows:
    ka = statistics.median(a / b for a, b, _, _ in rows)
    nc = statistics.median(c / d for _, _, c, d in rows)
    print(f"- median of the rounds' ratios: {ka:.2f}× / {nc:.2f}×")
PY
  echo
  echo "Each round, added p99 at $RATE req/s over direct's in the same round (ms), lockstep / nginx / haproxy / pingora:"
  for rep in $(seq "$REPS"); do
    read -r _ _ _ d99 _ <<<"${R[direct,open$rep]}"
    line=""
    for t in "${PROXIES[@]}"; do
      read -r _ _ _ o99 _ <<<"${R[$t,open$rep]}"
      line+="${line:+ / }$(added "$o99" "$d99")"
    done
    echo "- round $rep: $line"
  done
  echo
  echo "| target | RSS idle (KiB) | RSS with $IDLE_CONNS idle connections (KiB) | per connection (KiB) |"
  echo "|---|---:|---:|---:|"
  for t in "${PROXIES[@]}"; do
    read -r i h <<<"${MEM[$t]}"
    echo "| $t | $i | $h | $(python3 -c "print(f'{($h-$i)/$IDLE_CONNS:.1f}')") |"
  done
  echo
  echo "Reload under load: $SWAPS rewrites of the standalone file at 10/s (lockstep restarted reading it every 20 ms) while oha sent $RATE req/s (open loop, $CONNS connections) for ${reload_secs} s: **$bad failed of $total requests**, $SWAPPED table swaps observed (final generation $gen_end), p50 $p50 ms, p99 $p99 ms."
} > "$OUT"
cat "$OUT"
