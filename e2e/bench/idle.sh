#!/usr/bin/env bash
# Memory per idle keep-alive client connection, the method of proxy.sh's memory step alone
# (no oha or haproxy needed): lockstep-proxy and an nginx proxy in front of the same nginx
# backend, each holding IDLE_CONNS client connections that made one request each (sent 100
# at a time, so the upstream side holds about 100 connections). Prints RSS before and while
# the connections are held, and the difference per connection.
#
#   LOCKSTEP=target/release/lockstep-proxy e2e/bench/idle.sh
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
WORK=$(mktemp -d /tmp/lockstep-idle.XXXXXX)
IDLE_CONNS=${IDLE_CONNS:-9900}
BACKEND_PORT=18910; LOCKSTEP_PORT=18911; NGINX_PORT=18912; ADMIN_PORT=18914
# shellcheck source=lib.sh
source "$ROOT/e2e/bench/lib.sh"
command -v nginx >/dev/null || { log "needs nginx (apt-get install nginx)"; exit 1; }
LOCKSTEP=${LOCKSTEP:-${CARGO_TARGET_DIR:-$ROOT/target}/release/lockstep-proxy}

start_lockstep_and_nginx

declare -A PORT=([lockstep]=$LOCKSTEP_PORT [nginx]=$NGINX_PORT)
declare -A PID=([lockstep]=$LOCKSTEP_PID [nginx]=$NGINX_PID)
echo "| target | RSS idle (KiB) | RSS with $IDLE_CONNS idle connections (KiB) | per connection (KiB) |"
echo "|---|---:|---:|---:|"
for t in lockstep nginx; do
  idle=$(rss_kib "${PID[$t]}")
  python3 - "${PORT[$t]}" "$IDLE_CONNS" "$WORK/$t.held" <<'PY' &
import socket, sys, time
port, n, flag = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
socks = []
for start in range(0, n, 100):
    batch = [socket.create_connection(("127.0.0.1", port)) for _ in range(min(100, n - start))]
    for s in batch:
        s.sendall(b"GET / HTTP/1.1\r\nHost: bench.local\r\n\r\n")
    for s in batch:
        assert s.recv(4096).startswith(b"HTTP/1.1 200")
    socks.extend(batch)
open(flag, "w").close()
time.sleep(30)
PY
  holder=$!
  for _ in $(seq 1200); do [[ -f "$WORK/$t.held" ]] && break; sleep 0.05; done
  sleep 0.5
  held=$(rss_kib "${PID[$t]}")
  kill $holder 2>/dev/null || true; wait $holder 2>/dev/null || true
  echo "| $t | $idle | $held | $(python3 -c "print(f'{($held - $idle) / $IDLE_CONNS:.1f}')") |"
done
