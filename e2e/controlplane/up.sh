#!/usr/bin/env bash
# Starts a real etcd and kube-apiserver on 127.0.0.1 with state in DIR, waits until the
# apiserver is ready and the `default` namespace exists, and writes DIR/kubeconfig.
#
# Usage: up.sh DIR [WATCH_PID]
#   LOCKSTEP_APISERVER_HOST=IP (default 127.0.0.1): the address the apiserver binds and
#   advertises. e2e/node/up.sh passes its bridge address so Pods reach the apiserver through
#   the `kubernetes` Service; then the apiserver also keeps that Service's endpoints (lease
#   reconciler) and runs the ServiceAccount admission plugin (Pods get their tokens).
#   Processes run in the background; their pids are in DIR/etcd.pid and DIR/apiserver.pid.
#   With WATCH_PID, a watchdog stops both when that process exits (test binaries that die
#   without running destructors leave nothing behind).
# Stop with down.sh DIR.
set -euo pipefail
DIR="$1"
WATCH_PID="${2:-}"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
BIN="$("$HERE/build.sh")"
mkdir -p "$DIR/certs" "$DIR/etcd"

log() { printf '[controlplane] %s\n' "$*" >&2; }
alive() { [[ -f "$1" ]] && kill -0 "$(cat "$1")" 2>/dev/null; }

if alive "$DIR/apiserver.pid" && [[ -f "$DIR/kubeconfig" ]]; then
  log "already running (apiserver pid $(cat "$DIR/apiserver.pid"))"
  exit 0
fi
KEEP_WATCHDOG=1 "$HERE/down.sh" "$DIR" >/dev/null 2>&1 || true
# A restart (restart.sh) keeps the ports, so running clients reconnect to the same address.
if [[ -n "${REUSE_PORTS:-}" && ! -f "$DIR/apiserver.port" ]]; then REUSE_PORTS=""; fi

HOST="${LOCKSTEP_APISERVER_HOST:-127.0.0.1}"
node_flags=(--endpoint-reconciler-type none --disable-admission-plugins ServiceAccount)
[[ "$HOST" == 127.0.0.1 ]] || node_flags=(--endpoint-reconciler-type lease --kubelet-preferred-address-types InternalIP)
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }

# Credentials: an admin bearer token and the service-account signing key pair.
if [[ ! -f "$DIR/token" ]]; then
  python3 -c 'import secrets; print(secrets.token_hex(24))' > "$DIR/token"
  printf '%s,lockstep-admin,lockstep-admin,system:masters\n' "$(cat "$DIR/token")" > "$DIR/tokens.csv"
  openssl genrsa -out "$DIR/sa.key" 2048 2>/dev/null
  openssl rsa -in "$DIR/sa.key" -pubout -out "$DIR/sa.pub" 2>/dev/null
  chmod 600 "$DIR/token" "$DIR/tokens.csv" "$DIR/sa.key"
fi
TOKEN="$(cat "$DIR/token")"

start_etcd() {
  if [[ -n "${REUSE_PORTS:-}" ]]; then EP=$(cat "$DIR/etcd.port"); PP=$(cat "$DIR/etcd.peer-port"); else EP=$(free_port); PP=$(free_port); fi
  setsid "$BIN/etcd" --name lockstep --data-dir "$DIR/etcd" \
    --listen-client-urls "http://127.0.0.1:$EP" --advertise-client-urls "http://127.0.0.1:$EP" \
    --listen-peer-urls "http://127.0.0.1:$PP" --initial-advertise-peer-urls "http://127.0.0.1:$PP" \
    --initial-cluster "lockstep=http://127.0.0.1:$PP" \
    --unsafe-no-fsync=true --quota-backend-bytes=2147483648 --log-level=warn \
    >"$DIR/etcd.log" 2>&1 < /dev/null &
  echo $! > "$DIR/etcd.pid"
  echo "$EP" > "$DIR/etcd.port"
  echo "$PP" > "$DIR/etcd.peer-port"
  for _ in $(seq 1 100); do
    if curl -fsS "http://127.0.0.1:$EP/health" 2>/dev/null | grep -q '"health":"true"'; then return 0; fi
    alive "$DIR/etcd.pid" || return 1
    sleep 0.1
  done
  return 1
}

start_apiserver() {
  if [[ -n "${REUSE_PORTS:-}" ]]; then P=$(cat "$DIR/apiserver.port"); else P=$(free_port); fi
  setsid "$BIN/kube-apiserver" \
    --etcd-servers "http://127.0.0.1:$(cat "$DIR/etcd.port")" \
    --bind-address "$HOST" --secure-port "$P" --cert-dir "$DIR/certs" \
    --advertise-address "$HOST" "${node_flags[@]}" \
    --service-cluster-ip-range 10.0.0.0/24 --allow-privileged=true \
    --authorization-mode RBAC --token-auth-file "$DIR/tokens.csv" \
    --service-account-issuer "https://$HOST:$P" \
    --service-account-key-file "$DIR/sa.pub" --service-account-signing-key-file "$DIR/sa.key" \
    --event-ttl 1h --v 1 \
    >"$DIR/apiserver.log" 2>&1 < /dev/null &
  echo $! > "$DIR/apiserver.pid"
  echo "$P" > "$DIR/apiserver.port"
}

for attempt in 1 2 3; do
  if start_etcd; then break; fi
  log "etcd did not start (attempt $attempt), see $DIR/etcd.log"
  "$HERE/down.sh" "$DIR" >/dev/null 2>&1 || true
  [[ $attempt == 3 ]] && { tail -n 20 "$DIR/etcd.log" >&2; exit 1; }
done

ready=""
for attempt in 1 2 3; do
  start_apiserver
  for _ in $(seq 1 600); do
    if ! alive "$DIR/apiserver.pid"; then break; fi
    if curl -fsS -k -H "Authorization: Bearer $TOKEN" "https://$HOST:$P/readyz" >/dev/null 2>&1 &&
       curl -fsS -k -H "Authorization: Bearer $TOKEN" "https://$HOST:$P/api/v1/namespaces/default" >/dev/null 2>&1; then
      ready=1; break
    fi
    sleep 0.1
  done
  [[ -n "$ready" ]] && break
  log "kube-apiserver did not become ready (attempt $attempt), see $DIR/apiserver.log"
  kill "$(cat "$DIR/apiserver.pid")" 2>/dev/null || true
done
if [[ -z "$ready" ]]; then tail -n 30 "$DIR/apiserver.log" >&2; "$HERE/down.sh" "$DIR"; exit 1; fi

cat > "$DIR/kubeconfig" <<KC
apiVersion: v1
kind: Config
clusters:
- name: lockstep-local
  cluster:
    server: https://$HOST:$P
    certificate-authority: $DIR/certs/apiserver.crt
    tls-server-name: kubernetes
users:
- name: lockstep-admin
  user:
    token: $TOKEN
contexts:
- name: lockstep-local
  context: {cluster: lockstep-local, user: lockstep-admin, namespace: default}
current-context: lockstep-local
KC
chmod 600 "$DIR/kubeconfig"

if [[ -n "$WATCH_PID" && ! -f "$DIR/watchdog.pid" ]]; then
  # Stops the control plane once the process that asked for it is gone.
  setsid bash -c 'while kill -0 "$1" 2>/dev/null && [ -f "$2/watchdog.pid" ]; do sleep 1; done
    if ! kill -0 "$1" 2>/dev/null; then "$3/down.sh" "$2"; [ -n "$4" ] || rm -rf "$2"; fi' \
    watchdog "$WATCH_PID" "$DIR" "$HERE" "${LOCKSTEP_KEEP_LOGS:-}" >/dev/null 2>&1 < /dev/null &
  echo $! > "$DIR/watchdog.pid"
fi
log "kube-apiserver $("$BIN/kube-apiserver" --version | cut -d' ' -f2) on https://$HOST:$P, etcd on 127.0.0.1:$(cat "$DIR/etcd.port")"
