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
  rss=$(idle_rss "${PID[$t]}" "${PORT[$t]}" "$IDLE_CONNS" "$WORK")
  read -r idle held <<<"$rss"
  echo "| $t | $idle | $held | $(python3 -c "print(f'{($held - $idle) / $IDLE_CONNS:.1f}')") |"
done
