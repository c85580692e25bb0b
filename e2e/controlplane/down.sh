#!/usr/bin/env bash
# Stops the control plane started by up.sh DIR: exactly the processes in its pid files.
set -uo pipefail
DIR="$1"
stop() {
  local f="$DIR/$1.pid"
  [[ -f "$f" ]] || return 0
  local pid; pid="$(cat "$f")"
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$f"
}
stop apiserver
stop etcd
# The watchdog may be the caller; it exits by itself once apiserver.pid is gone (a restart
# keeps it: it is still watching for the test process).
[[ -n "${KEEP_WATCHDOG:-}" ]] || rm -f "$DIR/watchdog.pid"
