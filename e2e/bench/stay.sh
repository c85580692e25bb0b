#!/usr/bin/env bash
# How long each proxy holds a request at half load, measured from a packet capture rather than
# at the client: proxy.sh's added p99 is a difference of two client-side p99s taken in
# different runs, each mostly the load generator's and the backend's scheduling on CPU 0
# (one shared core, where single rounds move by milliseconds). Here every request carries a
# unique path and tcpdump stamps each segment on the loopback as it leaves its sender; a
# request's stay is (response to the client - request from the client) - (backend's response -
# request to the backend), per request (e2e/bench/stay.py). lockstep, nginx and haproxy in
# proxy.sh's roles (the proxy alone on CPU 1, one worker; oha, the backend and tcpdump on
# CPU 0), REPS alternating rounds at RATE req/s over 64 keep-alive connections (open loop).
#
#   LOCKSTEP=target/release/lockstep-proxy e2e/bench/stay.sh
#   REPS=5 DURATION=10 RATE=16000 e2e/bench/stay.sh
#
# The capture costs every target alike (the kernel copies each segment to tcpdump's ring);
# a run that loses segments says so. Prints a markdown table, one row per target and round.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
WORK=$(mktemp -d /tmp/lockstep-stay.XXXXXX)
DURATION=${DURATION:-10}
WARMUP=${WARMUP:-3}
REPS=${REPS:-3}
RATE=${RATE:-16000}
CONNS=64
BACKEND_PORT=18930; LOCKSTEP_PORT=18931; NGINX_PORT=18932; HAPROXY_PORT=18933; ADMIN_PORT=18934
# shellcheck source=lib.sh
source "$ROOT/e2e/bench/lib.sh"
bench_tools
command -v tcpdump >/dev/null || apt_install tcpdump

start_lockstep_and_nginx
start_haproxy $HAPROXY_PORT $BACKEND_PORT ""
wait_port $HAPROXY_PORT
declare -A PORT=([lockstep]=$LOCKSTEP_PORT [nginx]=$NGINX_PORT [haproxy]=$HAPROXY_PORT)
TARGETS=(lockstep nginx haproxy)
declare -A STAY50 STAY99
# 16 random letters per path: a repeat among a few hundred thousand requests is vanishingly
# unlikely, and stay.py drops a path it cannot pair.
load() { local port=$1; shift; taskset -c 0 oha --no-tui --output-format json -H "Host: bench.local" \
  --rand-regex-url "$@" "http://127.0.0.1:$port/[a-z]{16}"; }
for t in "${TARGETS[@]}"; do load "${PORT[$t]}" -z "${WARMUP}s" -c $CONNS >/dev/null; done

echo "Stay of a request in each proxy (µs; \`e2e/bench/stay.sh\`, $(date -u +%Y-%m-%dT%H:%MZ), $(machine); $RATE req/s, $CONNS connections, ${DURATION} s per round; client p99 from oha, ms; burst: requests sent less than 20 µs apart)"
echo
echo "| round | target | requests | p50 | p90 | p99 | p99.9 | max | in p50 | in p99 | out p50 | out p99 | client p99 | burst p99 | segments lost |"
echo "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
for rep in $(seq "$REPS"); do
  for t in $(rotated "$rep" "${TARGETS[@]}"); do
    cap="$WORK/$t-$rep.pcap"
    # PSH segments only: the ones that carry a message (the handshake and bare ACKs are not needed).
    taskset -c 0 tcpdump -i lo -s 160 -B 262144 --time-stamp-precision nano -w "$cap" \
      "tcp and (port ${PORT[$t]} or port $BACKEND_PORT) and (tcp[13] & 8 != 0)" 2> "$WORK/tcpdump.log" & cap_pid=$!
    PIDS+=($cap_pid)
    sleep 1   # tcpdump has no "ready" signal; it attaches well within a second
    s=$(load "${PORT[$t]}" -z "${DURATION}s" -c $CONNS -q "$RATE" --latency-correction | summarise)
    sleep 0.5
    kill -INT "$cap_pid"; wait "$cap_pid" || true
    lost=$(awk '/dropped by kernel/ {print $1}' "$WORK/tcpdump.log")
    read -r total _ _ p99 bad <<<"$s"
    [[ $bad == 0 ]] || log "$t round $rep: $bad of $total requests failed"
    read -r both _ p50 p90 s99 s999 max in50 in99 out50 out99 burst <<<"$(python3 "$ROOT/e2e/bench/stay.py" "$cap" "${PORT[$t]}" $BACKEND_PORT)"
    echo "| $rep | $t | $both | $p50 | $p90 | $s99 | $s999 | $max | $in50 | $in99 | $out50 | $out99 | $p99 | $burst | ${lost:-?} |"
    STAY99[$t]+=" $s99"; STAY50[$t]+=" $p50"
    rm -f "$cap"
  done
done
median() { tr ' ' '\n' | sed '/^$/d' | sort -n | awk '{v[NR] = $1} END {print v[int((NR + 1) / 2)]}'; }
echo
for t in "${TARGETS[@]}"; do
  echo "- $t, medians over the rounds: p50 $(median <<<"${STAY50[$t]}") µs, p99 $(median <<<"${STAY99[$t]}") µs"
done
