#!/usr/bin/env bash
# A one-node cluster in DIR: the control plane (e2e/controlplane/up.sh, with the apiserver on
# the pod bridge's address so Pods reach it), containerd (its own config, socket, root and
# state under DIR), runc, the CNI bridge + host-local plugins, kube-controller-manager,
# kube-scheduler, kube-proxy (iptables mode) and a kubelet, all built from the apiserver's
# k8s.io/kubernetes module (e2e/node/build.sh). The images of e2e/images are imported into
# containerd under the names deploy/ uses; the pause image is containerd's sandbox image.
#
# Usage: up.sh DIR [WATCH_PID]       stop with down.sh DIR (WATCH_PID: as controlplane/up.sh)
#        up.sh --check               exit 0 if this machine can run the node, else print why
# Needs root. Pod network 10.244.0.0/24 on bridge lkstp0 (gateway 10.244.0.1, the node and
# apiserver address), Services 10.0.0.0/24. Only one node per machine at a time.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
BRIDGE=lkstp0
GATEWAY=10.244.0.1
POD_CIDR=10.244.0.0/24
SERVICE_CIDR=10.0.0.0/24
NODE=lockstep-node
log() { printf '[node] %s\n' "$*" >&2; }

# Why this machine cannot run the node, or nothing.
preflight() {
  [[ "$(id -u)" == 0 ]] || { echo "not root (a kubelet and containerd need root)"; return; }
  local tool
  for tool in containerd ctr runc iptables conntrack ip umoci gcc; do
    command -v "$tool" >/dev/null 2>&1 || { echo "$tool is not installed (e2e/setup installs it)"; return; }
  done
  [[ -x /usr/lib/cni/bridge && -x /usr/lib/cni/host-local ]] || { echo "CNI plugins missing in /usr/lib/cni (Debian containernetworking-plugins)"; return; }
  grep -qw overlay /proc/filesystems || { echo "the kernel has no overlay filesystem"; return; }
  [[ -d /sys/fs/cgroup/memory || -f /sys/fs/cgroup/cgroup.controllers ]] || { echo "no memory cgroup"; return; }
  unshare -n true 2>/dev/null || { echo "cannot create network namespaces (unshare -n failed)"; return; }
  if ip link show "$BRIDGE" >/dev/null 2>&1; then echo "bridge $BRIDGE exists: another node is running (e2e/cluster down?)"; return; fi
  iptables -t nat -S >/dev/null 2>&1 || { echo "iptables -t nat does not work: $(iptables -t nat -S 2>&1 | head -n1)"; return; }
}

if [[ "${1:-}" == --check ]]; then
  why="$(preflight)"
  if [[ -n "$why" ]]; then echo "$why"; exit 1; fi
  exit 0
fi

DIR="$1"
WATCH_PID="${2:-}"
why="$(preflight)"
[[ -z "$why" ]] || { log "cannot start a node: $why"; exit 3; }
BIN="$("$HERE/build.sh")"
IMAGES="${LOCKSTEP_IMAGES:-$("$HERE/../images")}"
N="$DIR/node"
mkdir -p "$N"/{cni/net.d,cni/ipam,containerd,kubelet,logs}
alive() { [[ -f "$1" ]] && kill -0 "$(cat "$1")" 2>/dev/null; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }
fail() { log "$*"; "$HERE/down.sh" "$DIR" >&2 || true; exit 1; }

# The bridge first: the apiserver binds its address.
ip link add "$BRIDGE" type bridge
ip addr add "$GATEWAY/24" dev "$BRIDGE"
ip link set "$BRIDGE" up
echo "$BRIDGE" > "$N/bridge"
# Pod -> Service -> Pod on the same bridge goes through iptables (kube-proxy's DNAT).
modprobe br_netfilter 2>/dev/null || true
if [[ -w /proc/sys/net/bridge/bridge-nf-call-iptables ]]; then
  cat /proc/sys/net/bridge/bridge-nf-call-iptables > "$N/bridge-nf-call-iptables.orig"
  echo 1 > /proc/sys/net/bridge/bridge-nf-call-iptables
fi
cat /proc/sys/net/ipv4/ip_forward > "$N/ip_forward.orig"
echo 1 > /proc/sys/net/ipv4/ip_forward
# A Service address kube-proxy has not programmed yet (a new Service, in the second before
# its rules are in) must not leave the machine. Its packets would follow the default route to
# whatever answers there (on the machines this runs on, an egress proxy that answers HTTP/2
# with 404), and a client that keeps its connection, as gRPC's does, keeps that answer for
# good. Refused, a client retries and reaches the Service once its rules are in. Packets
# kube-proxy translated carry a Pod's address by the filter table, so only those to an
# unprogrammed Service address match. down.sh removes the chain.
echo LOCKSTEP-UNROUTED-SERVICES > "$N/iptables-chain"
iptables -N LOCKSTEP-UNROUTED-SERVICES 2>/dev/null || iptables -F LOCKSTEP-UNROUTED-SERVICES
iptables -A LOCKSTEP-UNROUTED-SERVICES -d "$SERVICE_CIDR" -p tcp -j REJECT --reject-with tcp-reset
iptables -A LOCKSTEP-UNROUTED-SERVICES -d "$SERVICE_CIDR" -j REJECT
iptables -I OUTPUT -j LOCKSTEP-UNROUTED-SERVICES
iptables -I FORWARD -j LOCKSTEP-UNROUTED-SERVICES

ls /var/run/netns 2>/dev/null | sort > "$N/netns.before" || true
LOCKSTEP_APISERVER_HOST="$GATEWAY" "$HERE/../controlplane/up.sh" "$DIR" || fail "control plane did not start"
if [[ -n "$WATCH_PID" ]]; then
  # Stops the node and the control plane once the process that asked for them is gone.
  setsid bash -c 'while kill -0 "$1" 2>/dev/null && [ -f "$2/node/watchdog.pid" ]; do sleep 1; done
    if ! kill -0 "$1" 2>/dev/null; then "$3/down.sh" "$2"; [ -n "$4" ] || rm -rf "$2"; fi' \
    watchdog "$WATCH_PID" "$DIR" "$HERE" "${LOCKSTEP_KEEP_LOGS:-}" >/dev/null 2>&1 < /dev/null &
  echo $! > "$N/watchdog.pid"
fi
KC="$DIR/kubeconfig"

cat > "$N/cni/net.d/10-lockstep.conflist" <<JSON
{"cniVersion": "1.0.0", "name": "lockstep", "plugins": [
  {"type": "bridge", "bridge": "$BRIDGE", "isGateway": true, "ipMasq": false, "hairpinMode": true,
   "ipam": {"type": "host-local", "ranges": [[{"subnet": "$POD_CIDR", "gateway": "$GATEWAY"}]],
            "routes": [{"dst": "0.0.0.0/0"}],
            "dataDir": "$N/cni/ipam"}}]}
JSON

PAUSE="$(awk '$1 == "pause.tar" {print $2}' "$IMAGES/images.txt")"
SOCK="$N/containerd/containerd.sock"
cat > "$N/containerd/config.toml" <<TOML
version = 2
root = "$N/containerd/root"
state = "$N/containerd/state"
[grpc]
  address = "$SOCK"
[ttrpc]
  address = "$SOCK.ttrpc"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$PAUSE"
  disable_apparmor = true
  # This machine grants root no CAP_SYS_RESOURCE: the kubelet's negative oom_score_adj for
  # sandboxes (-998) would fail in runc ("can't get final child's PID from pipe: EOF").
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$N/cni/net.d"
TOML
setsid containerd --config "$N/containerd/config.toml" > "$N/logs/containerd.log" 2>&1 < /dev/null &
echo $! > "$N/containerd.pid"
for _ in $(seq 1 100); do [[ -S "$SOCK" ]] && break; alive "$N/containerd.pid" || break; sleep 0.1; done
[[ -S "$SOCK" ]] || fail "containerd did not start: $(tail -n 5 "$N/logs/containerd.log")"
while read -r file ref; do
  ctr -a "$SOCK" -n k8s.io images import "$IMAGES/$file" >/dev/null || fail "ctr import $file failed"
  log "image $ref"
done < "$IMAGES/images.txt"

KCM_PORT=$(free_port); SCHED_PORT=$(free_port)
setsid "$BIN/kube-controller-manager" --kubeconfig "$KC" \
  --authentication-kubeconfig "$KC" --authorization-kubeconfig "$KC" \
  --bind-address 127.0.0.1 --secure-port "$KCM_PORT" --leader-elect=false \
  --service-account-private-key-file "$DIR/sa.key" --root-ca-file "$DIR/certs/apiserver.crt" \
  --use-service-account-credentials=false --allocate-node-cidrs=false \
  --service-cluster-ip-range "$SERVICE_CIDR" --cluster-cidr "$POD_CIDR" \
  --controllers '*' --v 1 \
  > "$N/logs/kube-controller-manager.log" 2>&1 < /dev/null &
echo $! > "$N/kube-controller-manager.pid"
setsid "$BIN/kube-scheduler" --kubeconfig "$KC" \
  --authentication-kubeconfig "$KC" --authorization-kubeconfig "$KC" \
  --bind-address 127.0.0.1 --secure-port "$SCHED_PORT" --leader-elect=false --v 1 \
  > "$N/logs/kube-scheduler.log" 2>&1 < /dev/null &
echo $! > "$N/kube-scheduler.pid"

cat > "$N/kube-proxy.yaml" <<YAML
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection: {kubeconfig: "$KC"}
mode: iptables
hostnameOverride: $NODE
clusterCIDR: $POD_CIDR
healthzBindAddress: 127.0.0.1:$(free_port)
metricsBindAddress: 127.0.0.1:$(free_port)
nodePortAddresses: ["$GATEWAY/32"]
conntrack: {maxPerCore: 0, min: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s}
iptables: {localhostNodePorts: false}
YAML
setsid "$BIN/kube-proxy" --config "$N/kube-proxy.yaml" --v 1 > "$N/logs/kube-proxy.log" 2>&1 < /dev/null &
echo $! > "$N/kube-proxy.pid"

cat > "$N/kubelet.yaml" <<YAML
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
failCgroupV1: false
cgroupDriver: cgroupfs
containerRuntimeEndpoint: unix://$SOCK
# On the bridge: the apiserver reaches it there for logs and exec (anonymous, AlwaysAllow:
# only this machine's own Pods and processes can reach the bridge).
address: $GATEWAY
port: $(free_port)
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: $(free_port)
authentication: {anonymous: {enabled: true}, webhook: {enabled: false}}
authorization: {mode: AlwaysAllow}
failSwapOn: false
podCIDR: $POD_CIDR
clusterDomain: cluster.local
resolvConf: ""
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {memory.available: "100Mi", nodefs.available: "1%", imagefs.available: "1%", nodefs.inodesFree: "1%"}
serializeImagePulls: false
protectKernelDefaults: false
podLogsDir: $N/pods
YAML
setsid "$BIN/kubelet" --config "$N/kubelet.yaml" --kubeconfig "$KC" --root-dir "$N/kubelet" \
  --cert-dir "$N/kubelet/pki" --hostname-override "$NODE" --node-ip "$GATEWAY" --v 1 \
  > "$N/logs/kubelet.log" 2>&1 < /dev/null &
echo $! > "$N/kubelet.pid"

for _ in $(seq 1 1200); do
  for p in containerd kube-controller-manager kube-scheduler kube-proxy kubelet; do
    alive "$N/$p.pid" || fail "$p exited: $(tail -n 15 "$N/logs/$p.log")"
  done
  if KUBECONFIG="$KC" kubectl get node "$NODE" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null | grep -q True; then
    log "node $NODE Ready (kubelet, containerd $(containerd --version | awk '{print $3}'), runc, bridge CNI, kube-proxy iptables)"
    exit 0
  fi
  sleep 0.1
done
fail "node $NODE not Ready after 120 s: $(KUBECONFIG="$KC" kubectl get node "$NODE" -o jsonpath='{.status.conditions[?(@.type=="Ready")].message}' 2>&1); kubelet: $(tail -n 15 "$N/logs/kubelet.log")"
