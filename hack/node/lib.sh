# Shared by hack/node/up.sh, down.sh and smoke.sh. Source it; it sets the
# layout of one node's state folder and defines functions only.
#
# Every path the node writes is under $NODE_DIR except what the kernel and
# the components keep elsewhere (the bridge, iptables/nft tables, cgroups
# under /sys/fs/cgroup/*/kubepods, sysctls, OUTSIDE_PATHS); down.sh restores
# those from what up.sh recorded in $NODE_DIR/saved before touching anything.

NODE_DIR=${NODE_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)/.cache/node}
NODE_NAME=${NODE_NAME:-meshca-node}
BRIDGE=${NODE_BRIDGE:-meshca0}
POD_CIDR=${NODE_POD_CIDR:-10.88.0.0/16}
GATEWAY=${NODE_GATEWAY:-10.88.0.1}
SERVICE_CIDR=${NODE_SERVICE_CIDR:-10.96.0.0/16}
SERVICE_IP=${NODE_SERVICE_IP:-10.96.0.1}
# Fixed ports below the ephemeral range, where the envtest control planes that
# tests start beside the node pick theirs.
ETCD_PORT=${NODE_ETCD_PORT:-12379}
ETCD_PEER_PORT=${NODE_ETCD_PEER_PORT:-12380}
APISERVER_PORT=${NODE_APISERVER_PORT:-16443}
KUBELET_PORT=${NODE_KUBELET_PORT:-10350}
KUBELET_HEALTHZ_PORT=${NODE_KUBELET_HEALTHZ_PORT:-10348}
KCM_PORT=${NODE_KCM_PORT:-10357}
SCHEDULER_PORT=${NODE_SCHEDULER_PORT:-10359}
PROXY_HEALTHZ_PORT=${NODE_PROXY_HEALTHZ_PORT:-10356}
PROXY_METRICS_PORT=${NODE_PROXY_METRICS_PORT:-10349}

SOCK=$NODE_DIR/containerd/containerd.sock
# Paths outside $NODE_DIR that containerd 1.6 (shim sockets), libcni (its
# cache) or the kubelet (container log symlinks, a few fixed defaults) may
# create; down.sh removes those that did not exist before up.sh.
OUTSIDE_PATHS=(/run/containerd /var/lib/cni /var/log/containers /var/log/pods /var/lib/kubelet /etc/kubernetes /etc/cni /opt/cni)
PAUSE_IMAGE=localhost/pause:meshca
# Sysctls the kubelet, kube-proxy and the CNI bridge plugin may change.
SYSCTLS=(vm.overcommit_memory vm.panic_on_oom kernel.panic kernel.panic_on_oops
	kernel.keys.root_maxkeys kernel.keys.root_maxbytes net.ipv4.ip_forward
	net.ipv4.conf.all.route_localnet net.ipv6.conf.all.forwarding
	net.bridge.bridge-nf-call-iptables net.bridge.bridge-nf-call-ip6tables)

log() { printf '>> %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

# wait_for WHAT SECONDS CMD...: polls CMD every 0.2 s.
wait_for() {
	local what=$1 secs=$2
	shift 2
	local deadline=$((SECONDS + secs))
	until "$@" >/dev/null 2>&1; do
		((SECONDS < deadline)) || { log "timed out after ${secs}s waiting for $what"; return 1; }
		sleep 0.2
	done
}

# pid_of NAME: the PID up.sh recorded for NAME, if that process is still
# the one up.sh started (its command line names $NODE_DIR, so a reused PID
# is never taken for it) and not a zombie waiting to be reaped.
pid_of() {
	local f=$NODE_DIR/pids/$1.pid p
	[[ -f $f ]] || return 1
	p=$(<"$f")
	running "$p" || return 1
	tr '\0' '\n' 2>/dev/null <"/proc/$p/cmdline" | grep -qF -- "$NODE_DIR" || return 1
	echo "$p"
}

# running PID: the process exists and is not a zombie (the daemons outlive
# up.sh, so whoever reaps them may take a moment after they exit).
running() {
	local state
	state=$(awk '{ print $3 }' "/proc/$1/stat" 2>/dev/null) || return 1
	[[ -n $state && $state != Z ]]
}

# ms: milliseconds since the epoch, for the timings.
ms() { date +%s%3N; }

# machine_state: what the node changes outside $NODE_DIR, one line each;
# smoke.sh and helm.sh compare it before up.sh and after down.sh.
machine_state() {
	echo "ip link: $(ip -o link | awk -F': ' '{ printf "%s ", $2 }')"
	echo "iptables-save | wc -l: $(iptables-save | wc -l)"
	echo "ip6tables-save | wc -l: $(ip6tables-save | wc -l)"
	echo "nft list tables: $(nft list tables | tr '\n' ' ')"
	echo "mount | grep -c kubelet: $(mount | grep -c kubelet || true)"
	echo "mounts under $NODE_DIR: $(awk -v d="$NODE_DIR/" 'index($5, d) == 1' /proc/self/mountinfo | wc -l)"
	echo "kubepods cgroups: $(ls -d /sys/fs/cgroup/*/kubepods 2>/dev/null | wc -l)"
	echo "paths outside the node's folder: $(ls -d "${OUTSIDE_PATHS[@]}" 2>/dev/null | tr '\n' ' ')"
	local s
	for s in "${SYSCTLS[@]}"; do echo "sysctl $s = $(sysctl -n "$s" 2>/dev/null)"; done
}
