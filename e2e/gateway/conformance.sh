#!/usr/bin/env bash
# The official Gateway API conformance suite (sigs.k8s.io/gateway-api/conformance v1.6.3, its
# code unmodified) against lockstep on the one-node cluster, offline:
#
#   e2e/gateway/conformance.sh [SUITE FLAGS...]
#
# 1. e2e/setup (the node's tools), then builds, each cached: lockstep's images (e2e/images),
#    the suite (e2e/gateway/build.sh, `go test -c` of this folder's wrapper) and the images of
#    the suite's base manifests (e2e/gateway/images.sh: echo-basic, coredns);
# 2. brings up the node (e2e/node/up.sh), imports those images into its containerd under
#    their upstream names, installs the Gateway API v1.6.3 CRDs (deploy/gateway-api/standard/),
#    the GatewayParameters `conformance` and the Helm chart (deploy/helm/lockstep), whose
#    GatewayClass `lockstep` names them (gatewayClass.parametersRef.name);
# 3. runs the suite (GatewayClass lockstep, profiles GATEWAY-HTTP and GATEWAY-GRPC, the
#    features the class's status.supportedFeatures claims: the operator writes them from
#    core/src/gateway/features.rs, and the suite reads them there) and writes
#    e2e/gateway/report.yaml, with lockstep-e2e-gateway-barrier beside it checking
#    lockstep's promise at every lockstep.dev/Ready=True of a route (its count goes into the
#    report's notes);
# 4. keeps the suite's output, the Gateway API objects, the generated RouterConfigs, the
#    events and lockstep's Pod logs in a run folder (printed), brings the node down and
#    stops everything it started (also on failure or Ctrl-C); prints the summary per profile
#    and the wall time of each step.
#
# SUITE FLAGS go to the suite as they are (e.g. --run-test=HTTPRouteSimpleSameNamespace,
# --skip-tests=A,B, --timeout-config-overrides='MaxTimeToConsistency:120'); with any of them
# the report is written to the run folder instead of e2e/gateway/report.yaml.
# Exit status: the suite's (0 only when every test run passed).
# Needs root and a machine that can run the node (`e2e/node/up.sh --check`).
# Env: LOCKSTEP_CACHE (default ~/.cache/lockstep), LOCKSTEP_KEEP_LOGS=1 keeps the node's folder,
#      LOCKSTEP_CONFORMANCE_REPORT=run writes the report to the run folder (e2e/test does, so a
#      test run leaves the committed e2e/gateway/report.yaml alone).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
CACHE="${LOCKSTEP_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/lockstep}"
RUN="$CACHE/gateway-conformance-runs/$(date -u +%Y%m%dT%H%M%SZ)"
SYSTEM=lockstep-system
log() { printf '[conformance] %s\n' "$*" >&2; }
T0=$(date +%s)
STEPS=()
step() { STEPS+=("$1 $(( $(date +%s) - $2 ))s"); }

mkdir -p "$RUN"
log "run folder: $RUN"
t=$(date +%s)
"$ROOT/e2e/setup"
step setup "$t"
if ! why="$("$ROOT/e2e/node/up.sh" --check)"; then log "cannot start the node: $why"; exit 3; fi

DIR="$(mktemp -d /tmp/lockstep-conformance-XXXXXX)"
TEST_PID=""
BARRIER_PID=""
NODE_UP=""
# Notes for the report about what the harness decided (the wrapper adds them).
NOTES="lockstep installed by the Helm chart deploy/helm/lockstep with operator.replicas=1 and proxy.replicas=1 (CPU is short; the suite's Gateways do not use the chart's own fleet); GatewayClass lockstep (controllerName lockstep.dev/gateway-controller) is the chart's"$'\n'
export KUBECONFIG="$DIR/kubeconfig"
k() { kubectl "$@"; }

# What the run leaves for reading afterwards: objects, events, lockstep's logs.
collect() {
  local out="$RUN/cluster"
  mkdir -p "$out/logs"
  k get gatewayclasses,gateways,listenersets,httproutes,grpcroutes,referencegrants,backendtlspolicies -A -o yaml > "$out/gateway-api.yaml" 2>&1 || true
  k get routerconfigs,routerreplicas -A -o yaml > "$out/lockstep.yaml" 2>&1 || true
  k get pods,services,deployments -A -o wide > "$out/workloads.txt" 2>&1 || true
  k get events -A --sort-by=.lastTimestamp > "$out/events.txt" 2>&1 || true
  # Every Pod running a lockstep image: the chart's operator and proxies and any fleet the
  # operator provisions for a Gateway.
  k get pods -A -o jsonpath='{range .items[*]}{.metadata.namespace} {.metadata.name} {.spec.containers[0].image}{"\n"}{end}' 2>/dev/null |
    awk '$3 ~ /lockstep-(operator|proxy)/ {print $1, $2}' | while read -r ns pod; do
      k logs -n "$ns" "$pod" --all-containers --timestamps > "$out/logs/$ns.$pod.log" 2>&1 || true
      k logs -n "$ns" "$pod" --all-containers --timestamps --previous > "$out/logs/$ns.$pod.previous.log" 2>/dev/null ||
        rm -f "$out/logs/$ns.$pod.previous.log"
    done
  cp -r "$DIR/node/logs" "$out/node-logs" 2>/dev/null || true
}

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  if [[ -n "$TEST_PID" ]] && kill -0 "$TEST_PID" 2>/dev/null; then
    kill -TERM "$TEST_PID" 2>/dev/null || true
    wait "$TEST_PID" 2>/dev/null || true
  fi
  if [[ -n "${BARRIER_PID:-}" ]]; then
    kill -TERM "$BARRIER_PID" 2>/dev/null || true
    wait "$BARRIER_PID" 2>/dev/null || true
  fi
  if [[ -n "$NODE_UP" ]]; then
    collect
    local t; t=$(date +%s)
    "$ROOT/e2e/node/down.sh" "$DIR" >/dev/null 2>&1 || log "e2e/node/down.sh $DIR failed"
    step "node down" "$t"
  fi
  if [[ -n "${LOCKSTEP_KEEP_LOGS:-}" ]]; then log "node folder kept: $DIR"; else rm -rf "$DIR"; fi
  [[ ! -f "$RUN/summary.txt" ]] || cat "$RUN/summary.txt"
  log "steps: $(IFS=,; echo "${STEPS[*]}" | sed 's/,/, /g')"
  log "wall time: $(( $(date +%s) - T0 ))s; run folder: $RUN"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

t=$(date +%s)
log "building lockstep's images (e2e/images)"
IMAGES="$("$ROOT/e2e/images" "$DIR/images")"
step "lockstep images" "$t"
t=$(date +%s)
SUITE="$("$ROOT/e2e/gateway/build.sh")"
step "suite build" "$t"
t=$(date +%s)
CIMAGES="$("$ROOT/e2e/gateway/images.sh")"
step "suite images" "$t"

t=$(date +%s)
log "bringing up the node in $DIR"
NODE_UP=1
LOCKSTEP_IMAGES="$IMAGES" "$ROOT/e2e/node/up.sh" "$DIR" "$$"
SOCK="$DIR/node/containerd/containerd.sock"
cut -d' ' -f1 "$CIMAGES/images.txt" | sort -u | while read -r file; do
  ctr -a "$SOCK" -n k8s.io images import "$CIMAGES/$file" >/dev/null
done
have="$(ctr -a "$SOCK" -n k8s.io images ls -q)"
while read -r _ ref; do
  grep -qxF "$ref" <<< "$have" || { log "$ref is not in the node's containerd after the import"; exit 1; }
  log "image $ref"
done < "$CIMAGES/images.txt"
step "node up" "$t"

t=$(date +%s)
log "installing the Gateway API v1.6.3 CRDs and the lockstep chart"
k apply --server-side -f "$ROOT/deploy/gateway-api/standard/" >/dev/null
k wait --for=condition=Established --timeout=60s \
  crd/gatewayclasses.gateway.networking.k8s.io crd/gateways.gateway.networking.k8s.io \
  crd/httproutes.gateway.networking.k8s.io crd/grpcroutes.gateway.networking.k8s.io \
  crd/referencegrants.gateway.networking.k8s.io >/dev/null
# One proxy per provisioned fleet behind a ClusterIP Service: every Gateway of the suite gets
# its own fleet (no load-balancer controller runs on the node), and CPU is short: the suite's
# Gateways need about 20 fleets at once, and at the default request of 100m each their pods
# no longer fit the node's 2 cores (pods stayed Pending, "Insufficient cpu"), so each proxy
# requests 10m, as the suite's own echo pods do. The
# GatewayParameters exist before the chart's GatewayClass names them, so the class is
# accepted at once (the chart installs the same CRD from its crds/, skipping it as present).
k apply --server-side -f "$ROOT/deploy/helm/lockstep/crds/gatewayparameters.yaml" >/dev/null
k wait --for=condition=Established --timeout=60s crd/gatewayparameters.lockstep.dev >/dev/null
k apply -f - >/dev/null <<'YAML'
apiVersion: lockstep.dev/v1alpha1
kind: GatewayParameters
metadata: {name: conformance}
spec:
  replicas: 1
  serviceType: ClusterIP
  resources:
    requests: {cpu: 10m, memory: 64Mi}
    limits: {cpu: "1", memory: 256Mi}
YAML
NOTES+="each Gateway's provisioned fleet: 1 proxy replica requesting 10m CPU behind a ClusterIP Service (GatewayParameters conformance, named by the chart's GatewayClass lockstep through gatewayClass.parametersRef.name=conformance; the default is 2 replicas requesting 100m behind a LoadBalancer Service: about 20 fleets at 100m do not fit the node's 2 cores)"$'\n'
HELM="$("$ROOT/e2e/helm/build.sh")"
k create namespace "$SYSTEM" >/dev/null
# One operator and one proxy of the chart's own fleet: the suite's Gateways do not use that
# fleet, and CPU is short. The chart ships the GatewayClass lockstep the suite is told to use.
HELM_CONFIG_HOME="$DIR/helm/config" HELM_CACHE_HOME="$DIR/helm/cache" HELM_DATA_HOME="$DIR/helm/data" \
  "$HELM" install lockstep "$ROOT/deploy/helm/lockstep" -n "$SYSTEM" \
  --set operator.replicas=1 --set operator.pdb.enabled=false \
  --set proxy.replicas=1 --set proxy.pdb.enabled=false --set proxy.service.type=ClusterIP \
  --set gatewayClass.parametersRef.name=conformance \
  --wait --timeout 5m >/dev/null
k wait --for=condition=Accepted --timeout=120s gatewayclass/lockstep >/dev/null
step install "$t"

VERSION="$(sed -n 's/^version = "\(.*\)"/\1/p' "$ROOT/Cargo.toml" | head -n1)"
COMMIT="$(git -C "$ROOT" rev-parse --short=12 HEAD)"
git -C "$ROOT" diff --quiet HEAD -- . ':!e2e/gateway/report.yaml' || COMMIT="$COMMIT-dirty"
REPORT="$ROOT/e2e/gateway/report.yaml"
(($# == 0)) && [[ "${LOCKSTEP_CONFORMANCE_REPORT:-repo}" != run ]] || REPORT="$RUN/report.yaml"
# Lockstep's own promise beside the suite: at every lockstep.dev/Ready=True of a route, every
# live replica of its Gateway's fleet serves that route generation (checked at the revision
# the status was written; e2e/src/bin/gateway_barrier.rs).
BARRIER_BIN="${CARGO_TARGET_DIR:-$ROOT/target}/${LOCKSTEP_PROFILE:-debug}/lockstep-e2e-gateway-barrier"
"$BARRIER_BIN" --out "$RUN/barrier.json" > "$RUN/barrier.log" 2>&1 &
BARRIER_PID=$!
t=$(date +%s)
log "running the suite (output: $RUN/suite.log); report: $REPORT"
(cd "$RUN" && LOCKSTEP_CONFORMANCE_NOTES="$NOTES" exec "$SUITE" -test.v -test.timeout 4h -test.run '^TestConformance$' \
  --report-output="$REPORT" --version="$VERSION+$COMMIT" --cleanup-base-resources=false "$@") \
  > "$RUN/suite.log" 2>&1 &
TEST_PID=$!
if wait "$TEST_PID"; then rc=0; else rc=$?; fi
TEST_PID=""
step suite "$t"
kill -TERM "$BARRIER_PID" 2>/dev/null || true
wait "$BARRIER_PID" 2>/dev/null || true
BARRIER_PID=""
BARRIER="$(grep -E '^barrier:' "$RUN/barrier.log" || echo "barrier: the watcher wrote no summary (see $RUN/barrier.log)")"
if [[ -f "$REPORT" ]]; then
  # The report's notes are YAML comments at its top: this one is known only now.
  { printf '# %s (lockstep-e2e-gateway-barrier; reasons in the run folder'"'"'s barrier.json)\n' "$BARRIER"; cat "$REPORT"; } > "$REPORT.tmp"
  mv "$REPORT.tmp" "$REPORT"
fi
{
  echo "[conformance] $BARRIER"
  grep -E '^\[conformance\] summary' "$RUN/suite.log" || echo "[conformance] no summary: see $RUN/suite.log"
  echo "[conformance] suite exit status $rc; tests: $(grep -cE '^    --- PASS' "$RUN/suite.log") passed, $(grep -cE '^    --- FAIL' "$RUN/suite.log") failed, $(grep -cE '^    --- SKIP' "$RUN/suite.log") skipped (go test's count, unsupported features included)"
} > "$RUN/summary.txt"
[[ "$REPORT" == "$RUN/report.yaml" || ! -f "$REPORT" ]] || cp "$REPORT" "$RUN/report.yaml"
exit "$rc"
