#!/usr/bin/env bash
# Tears down the node hack/node/up.sh started and restores what it changed
# outside $NODE_DIR, from the records in $NODE_DIR/saved: processes (by the
# PIDs up.sh recorded, and the Pods' processes and containerd shims found by
# the node's own cgroups and socket path), mounts under $NODE_DIR, the pod
# cgroups, the iptables rules and chains (kube-proxy --cleanup, then every
# KUBE-* and MESHCA-* chain, then nft tables that did not exist before), the
# bridge, the sysctls, and the paths containerd and libcni create outside.
# Safe to run twice, and after a failed or interrupted up.sh. Logs stay in
# $NODE_DIR/logs.
set -uo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=hack/node/lib.sh
source "$here/lib.sh"
d=$NODE_DIR
[[ -d $d ]] || exit 0
# A second Ctrl-C must not leave the machine half restored.
trap 'log "down: interrupt ignored until the teardown finishes"' INT TERM HUP
t0=$(ms)
node_bin=${MESHCA_CACHE:-$HOME/.cache/meshca}/kube/${KUBE_VERSION:-v1.37.2}/node-bin
kube_bin=$node_bin/../bin

at() { log "down: $* (+$(($(ms) - t0)) ms)"; }

stop() { # names...: SIGTERM to all, up to 10 s for all to exit, then SIGKILL
	local n p pids=()
	for n in "$@"; do
		if p=$(pid_of "$n"); then
			kill -TERM "$p" 2>/dev/null
			pids+=("$n:$p")
		fi
		rm -f "$d/pids/$n.pid"
	done
	local t=$(ms)
	for _ in $(seq 1 50); do
		local alive=0
		for n in "${pids[@]}"; do running "${n#*:}" && alive=1; done
		((alive)) || { log "down: stopped $* in $(($(ms) - t)) ms"; return 0; }
		sleep 0.2
	done
	for n in "${pids[@]}"; do kill -KILL "${n#*:}" 2>/dev/null && log "${n%%:*} (${n#*:}) killed after 10 s"; done
}

at "deleting Pods through the API"
# 1. Let the kubelet stop the Pods itself (CNI DEL, unmounts) while it can.
if pid_of kube-apiserver >/dev/null && [[ -f $d/kubeconfig ]] &&
	curl -fsS --max-time 2 "http://127.0.0.1:$KUBELET_HEALTHZ_PORT/healthz" >/dev/null 2>&1; then
	k() { timeout 40 "$kube_bin/kubectl" --kubeconfig "$d/kubeconfig" "$@"; }
	k delete deployments,replicasets,statefulsets,daemonsets,jobs --all -A --wait=false >/dev/null 2>&1
	k delete pods --all -A --grace-period=1 --timeout=30s >/dev/null 2>&1 || log "some Pods did not stop in 30 s"
fi

at "stopping processes"
# 2. The agents, then what is left of the Pods, then containerd.
stop kube-proxy kubelet
if pid_of containerd >/dev/null; then
	for t in $(ctr -a "$SOCK" -n k8s.io tasks ls -q 2>/dev/null); do
		ctr -a "$SOCK" -n k8s.io tasks kill -s SIGKILL "$t" >/dev/null 2>&1
	done
fi
# Processes still in the pod cgroups, then the shims of this containerd
# (their -address argument is this node's socket path, unique to $NODE_DIR).
pod_pids() { cat /sys/fs/cgroup/pids/kubepods/cgroup.procs /sys/fs/cgroup/pids/kubepods/*/cgroup.procs /sys/fs/cgroup/pids/kubepods/*/*/cgroup.procs /sys/fs/cgroup/pids/kubepods/*/*/*/cgroup.procs 2>/dev/null; }
shim_pids() {
	grep -lzxF -- "$SOCK" /proc/[0-9]*/cmdline 2>/dev/null | cut -d/ -f3
}
for p in $(pod_pids); do kill -KILL "$p" 2>/dev/null; done
stop containerd
for p in $(shim_pids); do kill -KILL "$p" 2>/dev/null && log "containerd shim $p killed"; done
stop kube-scheduler kube-controller-manager kube-apiserver
stop etcd

at "unmounting"
# 3. Mounts under $NODE_DIR (Secret tmpfs, netns, overlay rootfs), deepest first.
for _ in 1 2 3; do
	mapfile -t mnts < <(awk -v d="$d/" 'index($5, d) == 1 { print $5 }' /proc/self/mountinfo | awk '{ print length, $0 }' | sort -rn | cut -d' ' -f2-)
	((${#mnts[@]})) || break
	for m in "${mnts[@]}"; do umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null; done
done
left=$(awk -v d="$d/" 'index($5, d) == 1' /proc/self/mountinfo | wc -l)
((left == 0)) || log "WARNING: $left mounts under $d remain"

at "removing pod cgroups"
# 4. Pod cgroups (kubelet with cgroupfs creates kubepods in every hierarchy).
for c in /sys/fs/cgroup/*/kubepods /sys/fs/cgroup/kubepods; do
	[[ -d $c ]] && find "$c" -depth -type d -exec rmdir {} + 2>/dev/null
	[[ -d $c ]] && log "WARNING: $c remains"
done

at "removing iptables rules"
# 5. iptables: kube-proxy's own cleanup, then every KUBE-* and MESHCA-* rule and chain.
[[ -x $node_bin/kube-proxy ]] && "$node_bin/kube-proxy" --cleanup >"$d/logs/kube-proxy-cleanup.log" 2>&1
for ipt in iptables ip6tables; do
	# One save per family: the rules outside our chains that jump into them,
	# then our chains (flushed before deleted, since they refer to each other).
	dump=$("$ipt-save" 2>/dev/null)
	awk '/^\*/ { t = substr($0, 2) } /^-A / && $2 !~ /^(KUBE|MESHCA)-/ && / -j (KUBE|MESHCA)-/ { sub(/^-A /, ""); print t " " $0 }' <<<"$dump" |
		while read -r table rule; do eval "$ipt -t $table -D $rule" 2>/dev/null; done
	chains=$(awk '/^\*/ { t = substr($0, 2) } /^:(KUBE|MESHCA)-/ { print t " " substr($1, 2) }' <<<"$dump")
	while read -r table chain; do [[ -n $table ]] && "$ipt" -t "$table" -F "$chain" 2>/dev/null; done <<<"$chains"
	while read -r table chain; do [[ -n $table ]] && "$ipt" -t "$table" -X "$chain" 2>/dev/null; done <<<"$chains"
done
# Tables the node created (iptables-nft creates filter, nat, ... on first use) go entirely.
if [[ -f $d/saved/nft-tables ]]; then
	nft list tables 2>/dev/null | while read -r _ family name; do
		grep -qx "table $family $name" "$d/saved/nft-tables" || nft delete table "$family" "$name" 2>/dev/null ||
			log "WARNING: could not delete nft table $family $name"
	done
fi
conntrack -D -s "$POD_CIDR" >/dev/null 2>&1
conntrack -D -d "$POD_CIDR" >/dev/null 2>&1

at "removing the bridge"
# 6. The bridge.
if [[ -f $d/saved/bridge ]]; then
	ip link del "$(<"$d/saved/bridge")" 2>/dev/null
fi

at "restoring sysctls and paths"
# 7. Sysctls, and the paths outside $NODE_DIR that did not exist before.
if [[ -f $d/saved/sysctl ]]; then
	while IFS='=' read -r name value; do
		[[ $(sysctl -n "$name" 2>/dev/null) == "$value" ]] || sysctl -q -w "$name=$value" >/dev/null || log "WARNING: could not restore $name=$value"
	done <"$d/saved/sysctl"
fi
if [[ -f $d/saved/absent-paths ]]; then
	while read -r p; do rm -rf --one-file-system "$p"; done <"$d/saved/absent-paths"
fi

# 8. The state itself, once nothing is mounted in it; the logs stay.
if ((left == 0)); then
	for x in "$d"/*; do
		[[ $x == "$d/logs" ]] || rm -rf --one-file-system "$x"
	done
fi
log "node down in $(($(ms) - t0)) ms (logs in $d/logs)"
