# Sourced by controlplane/down.sh and node/down.sh: stop_pidfile FILE stops exactly the
# process whose pid FILE holds (TERM, up to 10 s, then KILL) and removes FILE.
stop_pidfile() {
  local f="$1"
  [[ -f "$f" ]] || return 0
  local pid; pid="$(cat "$f")"
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$f"
}
