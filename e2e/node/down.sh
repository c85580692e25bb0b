#!/usr/bin/env bash
# Stops the node started by up.sh DIR and undoes what it did to this machine: exactly the
# processes in its pid files (and the containerd shims whose parent it was), the mounts under
# DIR, the network namespaces and cgroups of its Pods, kube-proxy's iptables rules and its
# own, the bridge and the sysctls it changed; then the control plane.
set -uo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
DIR="$1"
N="$DIR/node"
# shellcheck source=../controlplane/pidfile.sh
source "$HERE/../controlplane/pidfile.sh"
stop() { stop_pidfile "$N/$1.pid"; }
if [[ -d "$N" ]]; then
  stop kubelet
  SOCK="$N/containerd/containerd.sock"
  # Every Pod sandbox and container containerd runs for this node: kill its tasks, then
  # remove them, so runc and the CNI plugin tear down cgroups and network namespaces.
  if [[ -S "$SOCK" ]]; then
    for c in $(ctr -a "$SOCK" -n k8s.io tasks ls -q 2>/dev/null); do
      ctr -a "$SOCK" -n k8s.io tasks kill -s SIGKILL "$c" >/dev/null 2>&1
    done
    sleep 1
    for c in $(ctr -a "$SOCK" -n k8s.io containers ls -q 2>/dev/null); do
      ctr -a "$SOCK" -n k8s.io tasks rm -f "$c" >/dev/null 2>&1
      ctr -a "$SOCK" -n k8s.io containers rm "$c" >/dev/null 2>&1
    done
  fi
  # Shims outlive containerd; ours are those started with our socket (by pid, from /proc).
  for p in /proc/[0-9]*; do
    if { tr '\0' ' ' < "$p/cmdline"; } 2>/dev/null | grep -qF -- "-address $SOCK "; then kill -KILL "${p#/proc/}" 2>/dev/null; fi
  done
  stop kube-proxy
  stop kube-scheduler
  stop kube-controller-manager
  stop containerd
  # Network namespaces the CNI plugin made for our sandboxes: the cni-* ones that were not
  # there before up.sh.
  if [[ -f "$N/netns.before" ]]; then
    for ns in $(ls /var/run/netns 2>/dev/null | grep '^cni-' | sort | comm -13 "$N/netns.before" -); do
      umount "/var/run/netns/$ns" 2>/dev/null; rm -f "/var/run/netns/$ns"
    done
  fi
  # Mounts under DIR (overlay rootfs, shm, kubelet volumes), deepest first.
  awk -v d="$N" 'index($2, d) == 1 {print $2}' /proc/self/mounts | sort -r | while read -r m; do umount -l "$m" 2>/dev/null; done
  # The kubelet's links to our Pods' logs (its /var/log/containers is not configurable).
  for l in /var/log/containers/*.log; do
    [[ -L "$l" && "$(readlink "$l")" == "$N/"* ]] && rm -f "$l"
  done
  # The kubelet's cgroups (cgroupfs driver): kubepods under each v1 controller.
  for c in /sys/fs/cgroup/*/kubepods /sys/fs/cgroup/unified/kubepods; do
    [[ -d "$c" ]] && find "$c" -depth -type d -exec rmdir {} \; 2>/dev/null
  done
  if [[ -f "$N/kube-proxy.yaml" ]]; then
    BIN="$("$HERE/build.sh" 2>/dev/null)" && "$BIN/kube-proxy" --cleanup --v 0 >/dev/null 2>&1
  fi
  # The kubelet's own chains (KUBE-FIREWALL and its canaries), which kube-proxy leaves.
  for ipt in iptables ip6tables; do
    for table in filter nat mangle; do
      $ipt -t "$table" -S 2>/dev/null | grep -E '^-A (INPUT|OUTPUT|FORWARD|PREROUTING|POSTROUTING) .*-j KUBE-(FIREWALL|KUBELET-CANARY)' \
        | sed 's/^-A/-D/' | while read -r rule; do eval "$ipt -t $table $rule" 2>/dev/null; done
      for chain in KUBE-FIREWALL KUBE-KUBELET-CANARY KUBE-IPTABLES-HINT KUBE-PROXY-CANARY; do
        $ipt -t "$table" -F "$chain" 2>/dev/null; $ipt -t "$table" -X "$chain" 2>/dev/null
      done
    done
  done
  # up.sh's chain that refuses Service addresses kube-proxy has not programmed.
  if [[ -f "$N/iptables-chain" ]]; then
    chain="$(cat "$N/iptables-chain")"
    while iptables -D OUTPUT -j "$chain" 2>/dev/null; do :; done
    while iptables -D FORWARD -j "$chain" 2>/dev/null; do :; done
    iptables -F "$chain" 2>/dev/null; iptables -X "$chain" 2>/dev/null
    rm -f "$N/iptables-chain"
  fi
  if [[ -f "$N/bridge" ]]; then ip link del "$(cat "$N/bridge")" 2>/dev/null; rm -f "$N/bridge"; fi
  [[ -f "$N/ip_forward.orig" ]] && cat "$N/ip_forward.orig" > /proc/sys/net/ipv4/ip_forward && rm -f "$N/ip_forward.orig"
  [[ -f "$N/bridge-nf-call-iptables.orig" ]] && cat "$N/bridge-nf-call-iptables.orig" > /proc/sys/net/bridge/bridge-nf-call-iptables && rm -f "$N/bridge-nf-call-iptables.orig"
fi
rm -f "$N/watchdog.pid"
"$HERE/../controlplane/down.sh" "$DIR"
