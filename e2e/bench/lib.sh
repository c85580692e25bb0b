# Shared by the data-plane benchmarks (proxy.sh, tls.sh, idle.sh, wrk.sh, builds.sh, big-table.sh,
# traffic.sh, cputime.sh, syscalls.sh, instructions.sh, pgo.sh, stay.sh, crosscpu.sh); sourced,
# not run.
# Expects ROOT and WORK to be set; defines PIDS (stopped on exit by pid) and the helpers below.
PIDS=()
CLEANUP_HOOKS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  for hook in "${CLEANUP_HOOKS[@]}"; do eval "$hook" || true; done
}
trap cleanup EXIT

log() { echo "[bench] $*" >&2; }

# apt_install PKG...: Debian packages a benchmark needs and the machine lacks (callers check).
apt_install() {
  log "installing $*"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

# nginx, haproxy and oha if missing; lockstep-proxy built with the release profile.
bench_tools() {
  if ! command -v nginx >/dev/null || ! command -v haproxy >/dev/null; then
    apt_install nginx haproxy
  fi
  export PATH="$HOME/.cargo/bin:$PATH"
  if ! command -v oha >/dev/null; then
    log "installing oha"
    cargo install oha --locked >/dev/null
  fi
  # LOCKSTEP=path/to/lockstep-proxy measures a binary built beforehand (a release build takes
  # minutes on a busy 2-core machine).
  if [[ -z "${LOCKSTEP:-}" ]]; then
    log "building lockstep-proxy (release)"
    (cd "$ROOT" && cargo build --release --locked -p lockstep-proxy >/dev/null 2>&1)
    LOCKSTEP="${CARGO_TARGET_DIR:-$ROOT/target}/release/lockstep-proxy"
  fi
  CLK_TCK=$(getconf CLK_TCK)
}

# For the scripts that compare builds given as arguments (builds.sh, big-table.sh): at least
# one binary, and the first stands in as LOCKSTEP so that bench_tools builds nothing.
builds_from_args() {
  [[ $# -ge 1 ]] || { echo "usage: $0 LOCKSTEP_PROXY_BINARY..." >&2; exit 2; }
  LOCKSTEP=$1
}

# load_for_mode: oha's connection flags for MODE in the array `load`: new, a connection per
# request (oha sends `Connection: close`), CONNS at a time; ka, CONNS keep-alive connections;
# open, CONNS keep-alive connections sent RATE requests a second (open loop, as proxy.sh's
# latency phase: a proxy that is not saturated sleeps between requests).
load_for_mode() {
  case $MODE in
    new) load=(-c "$CONNS" --disable-keepalive) ;;
    ka) load=(-c "$CONNS") ;;
    open) load=(-c "$CONNS" -q "${RATE:-16000}" --latency-correction) ;;
    *) echo "MODE is new, ka or open" >&2; exit 2 ;;
  esac
}
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
# rotated REP NAME...: the names one per line, round REP's order when each round starts one
# target later (rotated left by REP - 1), so that every target takes every place in turn.
rotated() { local rep=$1 i; shift; for ((i = 0; i < $#; i++)); do local k=$(((i + rep - 1) % $# + 1)); echo "${!k}"; done; }
rss_kib() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }
wait_port() { for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0; sleep 0.05; done; echo "port $1 never opened" >&2; return 1; }
machine() { echo "$(nproc) × $(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo); $(uname -r)"; }
versions() {
  local pingora=""
  [[ -n "${PINGORA:-}" ]] && pingora=", pingora-proxy $(awk '/^name = "pingora-proxy"/ {getline; gsub(/"/, "", $3); print $3}' "$ROOT/e2e/bench/pingora/Cargo.lock")"
  echo "$("$LOCKSTEP" --version), nginx $(nginx -v 2>&1 | sed 's/.*\///'), haproxy $(haproxy -v | awk 'NR==1 {print $3}')$pingora, $(oha --version)"
}
# idle_rss PID PORT N FLAGDIR [MODE]: "RSS-before RSS-with" (KiB) of process PID with N idle
# client connections to PORT that each made one request and got its 200. The requests go out
# 100 at a time, so the upstream side holds about 100 connections, not one per client: what
# stays is the cost of an idle client connection. MODE: plain (default), tls (HTTP/1.1 over
# TLS, ALPN http/1.1) or h2 (HTTP/2 over TLS: the preface, SETTINGS and one GET on stream 1,
# answered with HEADERS; the server's SETTINGS acknowledged). TLS modes send SNI bench.local
# and do not verify the certificate.
idle_rss() {
  local pid=$1 port=$2 n=$3 flag="$4/idle.$2.held" mode=${5:-plain} before after holder
  before=$(rss_kib "$pid")
  rm -f "$flag"
  python3 - "$port" "$n" "$flag" "$mode" <<'PY' &
import socket, ssl, struct, sys, time
port, n, flag, mode = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
ctx.set_alpn_protocols(["h2"] if mode == "h2" else ["http/1.1"])

def frame(kind, flags, stream, payload=b""):
    return struct.pack(">I", len(payload))[1:] + bytes([kind, flags]) + struct.pack(">I", stream) + payload

# GET https://bench.local/ in HPACK: :method GET, :scheme https, :path / (static table), then
# :authority as a literal with its name from the static table.
H2_GET = (b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + frame(4, 0, 0)
          + frame(1, 0x5, 1, b"\x82\x87\x84\x41\x0bbench.local"))

def connect():
    s = socket.create_connection(("127.0.0.1", port))
    return ctx.wrap_socket(s, server_hostname="bench.local") if mode != "plain" else s

def answered_h2(s):
    buf = b""
    while True:
        while len(buf) < 9 or len(buf) < 9 + int.from_bytes(buf[:3], "big"):
            chunk = s.recv(65536)
            assert chunk, "closed before the response"
            buf += chunk
        length, kind, flags = int.from_bytes(buf[:3], "big"), buf[3], buf[4]
        stream = int.from_bytes(buf[5:9], "big") & 0x7FFFFFFF
        buf = buf[9 + length:]
        if kind == 4 and not flags & 1:
            s.sendall(frame(4, 1, 0))
        if kind == 1 and stream == 1:
            return

socks = []
for start in range(0, n, 100):
    batch = [connect() for _ in range(min(100, n - start))]
    for s in batch:
        s.sendall(H2_GET if mode == "h2" else b"GET / HTTP/1.1\r\nHost: bench.local\r\n\r\n")
    for s in batch:
        if mode == "h2":
            answered_h2(s)
        else:
            assert s.recv(4096).startswith(b"HTTP/1.1 200")
    socks.extend(batch)
open(flag, "w").close()
time.sleep(30)
PY
  holder=$!
  for _ in $(seq 2400); do [[ -f "$flag" ]] && break; sleep 0.05; done
  sleep 0.5
  after=$(rss_kib "$pid")
  kill $holder 2>/dev/null || true; wait $holder 2>/dev/null || true
  [[ -f "$flag" ]] || { echo "idle_rss: the connections to port $port were never all answered" >&2; return 1; }
  echo "$before $after"
}
ratio() { python3 -c "a,b='$1','$2'; print('-' if '-' in (a,b) else f'{int(a)/int(b):.2f}×')"; }

# Fields of an oha JSON summary: total requests, rps, p50 ms, p99 ms, non-2xx + errors.
summarise() {
  python3 -c '
import json, sys
d = json.load(sys.stdin)
codes = d.get("statusCodeDistribution", {})
ok = sum(n for c, n in codes.items() if c.startswith("2"))
# A closed-loop run that ends at its deadline cancels the requests in flight; oha reports
# them as "aborted due to deadline". They are not failures of the target.
errors = {e: n for e, n in d.get("errorDistribution", {}).items() if "deadline" not in e}
for e, n in errors.items():
    print(f"[bench] error x{n}: {e}", file=sys.stderr)
bad = sum(n for c, n in codes.items() if not c.startswith("2")) + sum(errors.values())
lat = d.get("latencyPercentiles", {})
print(ok + bad, round(d["summary"]["requestsPerSec"]), round(lat.get("p50", 0) * 1000, 3), round(lat.get("p99", 0) * 1000, 3), bad)
'
}

# The start of an nginx.conf for one worker whose state lives in directory $1, up to and
# including the opening of its `http` block; $2 = its keep-alive timeout. The caller closes it.
nginx_conf_head() {
  cat <<CONF
daemon off; master_process off; worker_processes 1; error_log $1/error.log warn; pid $1/nginx.pid;
events { worker_connections 20000; }
http { access_log off; keepalive_requests 1000000; keepalive_timeout $2;
  client_body_temp_path $1; proxy_temp_path $1; fastcgi_temp_path $1; uwsgi_temp_path $1; scgi_temp_path $1;
CONF
}

# The one shared trivial backend: nginx `return 200` on CPU 0, port $1.
start_backend() {
  mkdir -p "$WORK/backend"
  { nginx_conf_head "$WORK/backend" 300s; cat <<CONF
  server { listen 127.0.0.1:$1 backlog=4096; location / { default_type text/plain; return 200 "ok\n"; } } }
CONF
  } > "$WORK/backend/nginx.conf"
  taskset -c 0 nginx -c "$WORK/backend/nginx.conf" -e "$WORK/backend/error.log" & PIDS+=($!)
  wait_port "$1"
}

# An nginx reverse proxy to the backend on CPU 1, one worker. $1 = port, $2 = backend port,
# $3 = extra `listen` parameters and server directives (e.g. ssl and certificates). `deferred`
# (TCP_DEFER_ACCEPT) as lockstep's listener has it (proxy/src/server/listen.rs), so that a new
# connection costs each the same kernel hand-over.
start_nginx_proxy() {
  write_nginx_proxy_conf "$@"
  taskset -c 1 nginx -c "$WORK/nginx/nginx.conf" -e "$WORK/nginx/error.log" & NGINX_PID=$!; PIDS+=($NGINX_PID)
}

# The configuration of start_nginx_proxy (same arguments), in $WORK/nginx/nginx.conf.
write_nginx_proxy_conf() {
  mkdir -p "$WORK/nginx"
  { nginx_conf_head "$WORK/nginx" 75s; cat <<CONF
  upstream backend { server 127.0.0.1:$2; keepalive 128; }
  server { listen 127.0.0.1:$1 backlog=4096 deferred $3 server_name bench.local;
    location / { proxy_pass http://backend; proxy_http_version 1.1; proxy_set_header Connection ""; proxy_set_header Host \$host;
      proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for; proxy_set_header X-Forwarded-Proto \$scheme; } } }
CONF
  } > "$WORK/nginx/nginx.conf"
}

# The standalone file of the single-route runs, $WORK/routes.yaml: host bench.local, every path
# to the backend on port $1.
write_bench_routes() {
  cat > "$WORK/routes.yaml" <<YAML
apiVersion: lockstep.dev/v1alpha1
kind: RouterConfig
metadata: {name: bench, namespace: default, generation: 1}
spec:
  rules:
  - host: bench.local
    paths:
    - {path: /, pathType: Prefix, backend: {url: "http://127.0.0.1:$1"}}
YAML
}

# start_lockstep BIN PORT ADMIN_PORT LOG [FLAGS...]: a lockstep-proxy binary in standalone
# mode on $WORK/routes.yaml, one worker thread on CPU 1 (as every proxy measured here), HTTP
# on PORT and admin on ADMIN_PORT, stderr to LOG; returns once it listens and is ready (its
# table loaded). Sets STARTED_PID.
start_lockstep() {
  local bin=$1 port=$2 admin=$3 log_file=$4; shift 4
  taskset -c 1 "$bin" --config "$WORK/routes.yaml" --listen 127.0.0.1:$port --admin 127.0.0.1:$admin \
    --worker-threads 1 "$@" 2> "$log_file" & STARTED_PID=$!
  PIDS+=($STARTED_PID)
  wait_port "$port"
  for _ in $(seq 600); do curl -fs "http://127.0.0.1:$admin/readyz" >/dev/null && return 0; sleep 0.1; done
  echo "lockstep on port $port never got ready (see $log_file)" >&2
  return 1
}

# The nginx backend on BACKEND_PORT, lockstep-proxy ($LOCKSTEP, standalone, one route to the
# backend, one worker on CPU 1) on LOCKSTEP_PORT with its admin on ADMIN_PORT, and an nginx
# proxy on NGINX_PORT; returns once all listen and lockstep is ready. Sets LOCKSTEP_PID and
# NGINX_PID (idle.sh, wrk.sh).
start_lockstep_and_nginx() {
  start_backend $BACKEND_PORT
  write_bench_routes $BACKEND_PORT
  start_lockstep "$LOCKSTEP" $LOCKSTEP_PORT $ADMIN_PORT "$WORK/lockstep.log"
  LOCKSTEP_PID=$STARTED_PID
  start_nginx_proxy $NGINX_PORT $BACKEND_PORT ";"
  wait_port $NGINX_PORT
}

# An haproxy in front of the backend on CPU 1, one thread. $1 = port, $2 = backend port,
# $3 = extra `bind` parameters. `defer-accept` as lockstep's and nginx's listeners defer.
start_haproxy() {
  cat > "$WORK/haproxy.cfg" <<CONF
global
  nbthread 1
  maxconn 9950
defaults
  mode http
  timeout connect 5s
  timeout client 60s
  timeout server 60s
  timeout http-keep-alive 60s
  option forwardfor
  http-reuse always
frontend fe
  bind 127.0.0.1:$1 defer-accept $3
  default_backend be
backend be
  server b1 127.0.0.1:$2
CONF
  taskset -c 1 haproxy -db -f "$WORK/haproxy.cfg" & HAPROXY_PID=$!; PIDS+=($HAPROXY_PID)
}

# The Pingora anchor (e2e/bench/pingora) on CPU 1, one worker thread, 128 idle upstream
# connections kept (as nginx's `keepalive 128`). $1 = port, $2 = backend port. Built in release
# on first use unless PINGORA names a binary.
start_pingora() {
  if [[ -z "${PINGORA:-}" ]]; then
    log "building the Pingora anchor (release)"
    cargo build --release --locked --manifest-path "$ROOT/e2e/bench/pingora/Cargo.toml" \
      --target-dir "${CARGO_TARGET_DIR:-$ROOT/target}/bench-pingora" >/dev/null 2>&1
    PINGORA="${CARGO_TARGET_DIR:-$ROOT/target}/bench-pingora/release/lockstep-bench-pingora"
  fi
  printf 'version: 1\nthreads: 1\nupstream_keepalive_pool_size: 128\ngrace_period_seconds: 0\ngraceful_shutdown_timeout_seconds: 1\n' \
    > "$WORK/pingora.yaml"
  PINGORA_LISTEN="127.0.0.1:$1" PINGORA_UPSTREAM="127.0.0.1:$2" RUST_LOG=error \
    taskset -c 1 "$PINGORA" -c "$WORK/pingora.yaml" 2> "$WORK/pingora.log" & PINGORA_PID=$!; PIDS+=($PINGORA_PID)
}

# One measured run: $1 target, $2 label, rest = oha args. `target_load TARGET ARGS...` (defined
# by the script) runs oha against TARGET. Records in R[target,label]: rps, requests per proxy
# CPU-second, p50, p99, failures.
declare -A R
measure() {
  local t=$1 label=$2; shift 2
  local pid=${PID[$t]} before=0 after=0
  [[ $pid != 0 ]] && before=$(cpu_ticks "$pid")
  local s; s=$(target_load "$t" "$@" | summarise)
  [[ $pid != 0 ]] && after=$(cpu_ticks "$pid")
  read -r total rps p50 p99 bad <<<"$s"
  local per_cpu="-"
  if [[ $pid != 0 && $after -gt $before ]]; then per_cpu=$(( total * CLK_TCK / (after - before) )); fi
  R[$t,$label]="$rps $per_cpu $p50 $p99 $bad"
  log "$t $label: rps=$rps per_cpu_s=$per_cpu p50=${p50}ms p99=${p99}ms failed=$bad"
}
