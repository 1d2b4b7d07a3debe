#!/usr/bin/env bash
# Starts a single-node Kubernetes on this machine, following
# ../shared/kube-node.md: etcd, kube-apiserver, kube-controller-manager,
# kube-scheduler, containerd (own config, root, state and socket), a CNI
# bridge, kubelet and kube-proxy, then waits for the Node to be Ready and the
# default ServiceAccount and kube-root-ca.crt to exist.
#
# State, logs and the admin kubeconfig ($NODE_DIR/kubeconfig) live in
# $NODE_DIR (default .cache/node). What lives outside it is recorded in
# $NODE_DIR/saved first; hack/node/down.sh restores it. If up.sh fails it runs
# down.sh itself; once it succeeds the node keeps running until down.sh.
#
# Images: $PAUSE_IMAGE is built from hack/node/pause and imported; more
# docker-archive tars can be imported with NODE_IMAGES="a.tar b.tar".
# NODE_BIN=DIR uses node binaries from DIR instead of hack/build-node.sh.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
# shellcheck source=hack/node/lib.sh
source "$here/lib.sh"

[[ $(id -u) == 0 ]] || die "the node needs root (mounts, cgroups, iptables)"
kube_bin=$("$repo/hack/build-kube.sh")
node_bin=${NODE_BIN:-$("$repo/hack/build-node.sh")}
if pid_of kube-apiserver >/dev/null || pid_of kubelet >/dev/null; then
	die "a node from $NODE_DIR is already running; run hack/node/down.sh first"
fi
if [[ -d $NODE_DIR/saved ]]; then
	# down.sh removes every KUBE-* chain: with another node's kubelet or
	# kube-proxy alive, those chains may be its, not ours.
	for other in kubelet kube-proxy; do
		if pgrep -x "$other" >/dev/null; then
			die "$NODE_DIR/saved exists (a down that did not finish), but a $other that is not this node's runs: not cleaning up beside it; stop it, then run hack/node/down.sh"
		fi
	done
	log "$NODE_DIR/saved exists: the last down did not finish; running it now"
	"$here/down.sh"
fi

# down.sh removes every KUBE-* chain and kubepods cgroup: refuse to start
# beside another Kubernetes node rather than tear its state down later.
ip link show "$BRIDGE" >/dev/null 2>&1 && die "interface $BRIDGE exists already; not touching it"
rules=$(iptables-save 2>/dev/null; ip6tables-save 2>/dev/null) # saved first: grep -q under pipefail misleads
if grep -q '^:KUBE-' <<<"$rules"; then
	die "iptables has KUBE-* chains: another Kubernetes node runs on this machine"
fi
compgen -G '/sys/fs/cgroup/*/kubepods' >/dev/null && die "kubepods cgroups exist: another kubelet runs on this machine"

t0=$(ms)
ok=
# fds 3 and 4 keep stdout and stderr for the trap: an interrupt can land while
# a function runs with its output redirected (wait_up ... >/dev/null).
exec 3>&1 4>&2
trap '[[ -n $ok ]] || { exec 1>&3 2>&4; log "up failed; tearing down"; "$here/down.sh" || true; }' EXIT
trap 'exit 130' INT TERM

rm -rf "$NODE_DIR"
mkdir -p "$NODE_DIR"/{saved,pids,logs,pki,images,cni/net.d,cni/ipam,kubelet,containerd,etcd}
d=$NODE_DIR
kubectl() { "$kube_bin/kubectl" --kubeconfig "$d/kubeconfig" "$@"; }

# --- What the node changes outside $NODE_DIR, recorded before it does. ---
for s in "${SYSCTLS[@]}"; do
	v=$(sysctl -n "$s" 2>/dev/null) && printf '%s=%s\n' "$s" "$v"
done >"$d/saved/sysctl"
nft list tables >"$d/saved/nft-tables"
for p in "${OUTSIDE_PATHS[@]}"; do [[ -e $p ]] || echo "$p"; done >"$d/saved/absent-paths"

# --- Network: the bridge exists before the API server, which advertises its gateway. ---
ip link add "$BRIDGE" type bridge
echo "$BRIDGE" >"$d/saved/bridge"
ip addr add "$GATEWAY/${POD_CIDR#*/}" dev "$BRIDGE"
ip link set "$BRIDGE" up
# Pods talk to each other and to this host only: nothing is forwarded off the bridge.
iptables -N MESHCA-NODE-FORWARD
iptables -A MESHCA-NODE-FORWARD -i "$BRIDGE" ! -o "$BRIDGE" -j DROP
iptables -I FORWARD 1 -j MESHCA-NODE-FORWARD

# --- Certificates and credentials. ---
cd "$d/pki"
key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }
key ca.key
openssl req -x509 -new -key ca.key -subj /CN=meshca-node-ca -days 7 -out ca.crt 2>/dev/null
cert() { # name subject extensions
	key "$1.key"
	openssl req -new -key "$1.key" -subj "$2" 2>/dev/null |
		openssl x509 -req -CA ca.crt -CAkey ca.key -CAcreateserial -days 7 -out "$1.crt" \
			-extfile <(printf '%s\n' "$3") 2>/dev/null
}
cert apiserver /CN=kube-apiserver "subjectAltName=IP:$GATEWAY,IP:127.0.0.1,IP:$SERVICE_IP,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local
extendedKeyUsage=serverAuth"
cert kubelet-client "/O=system:masters/CN=kube-apiserver-kubelet-client" "extendedKeyUsage=clientAuth"
openssl genrsa -out sa.key 2048 2>/dev/null
openssl rsa -in sa.key -pubout -out sa.pub 2>/dev/null
: >tokens.csv
chmod 0600 tokens.csv
kubeconfig() { # file user token
	cat >"$d/$1" <<EOT
apiVersion: v1
kind: Config
clusters: [{name: node, cluster: {server: "https://$GATEWAY:$APISERVER_PORT", certificate-authority: "$d/pki/ca.crt"}}]
users: [{name: "$2", user: {token: "$3"}}]
contexts: [{name: node, context: {cluster: node, user: "$2"}}]
current-context: node
EOT
}
user() { # kubeconfig user groups
	local t
	t=$(openssl rand -hex 16)
	echo "$t,$2,$2,\"$3\"" >>tokens.csv
	kubeconfig "$1" "$2" "$t"
}
user kubeconfig admin system:masters
user kcm.kubeconfig system:kube-controller-manager ""
user scheduler.kubeconfig system:kube-scheduler ""
user proxy.kubeconfig system:kube-proxy ""
user kubelet.kubeconfig "system:node:$NODE_NAME" system:nodes
cd "$repo"

start() { # name binary args...: runs it in its own session, logs to logs/name.log
	local name=$1
	shift
	setsid "$@" >"$d/logs/$name.log" 2>&1 </dev/null 3>&- 4>&- &
	echo $! >"$d/pids/$name.pid"
}
alive() { pid_of "$1" >/dev/null || { tail -20 "$d/logs/$1.log" >&2; die "$1 exited"; }; }
wait_up() { # name seconds cmd...
	local name=$1 secs=$2 deadline
	shift 2
	deadline=$((SECONDS + secs))
	until "$@" >/dev/null 2>&1; do
		alive "$name"
		((SECONDS < deadline)) || { tail -20 "$d/logs/$name.log" >&2; die "$name not up after ${secs}s"; }
		sleep 0.2
	done
}

# --- Control plane. ---
start etcd "$kube_bin/etcd" --name node --data-dir "$d/etcd" --unsafe-no-fsync \
	--listen-client-urls "http://127.0.0.1:$ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
	--listen-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
	--initial-cluster "node=http://127.0.0.1:$ETCD_PEER_PORT"
start kube-apiserver "$kube_bin/kube-apiserver" --etcd-servers "http://127.0.0.1:$ETCD_PORT" \
	--bind-address "$GATEWAY" --advertise-address "$GATEWAY" --secure-port "$APISERVER_PORT" \
	--cert-dir "$d/pki/apiserver-cert-dir" --tls-cert-file "$d/pki/apiserver.crt" --tls-private-key-file "$d/pki/apiserver.key" \
	--client-ca-file "$d/pki/ca.crt" --token-auth-file "$d/pki/tokens.csv" \
	--authorization-mode Node,RBAC --enable-admission-plugins NodeRestriction --allow-privileged=true \
	--service-account-key-file "$d/pki/sa.pub" --service-account-signing-key-file "$d/pki/sa.key" \
	--service-account-issuer https://kubernetes.default.svc.cluster.local \
	--service-cluster-ip-range "$SERVICE_CIDR" \
	--kubelet-client-certificate "$d/pki/kubelet-client.crt" --kubelet-client-key "$d/pki/kubelet-client.key" \
	--kubelet-preferred-address-types InternalIP --enable-aggregator-routing=true
wait_up kube-apiserver 90 kubectl get --raw /readyz
log "API server ready at https://$GATEWAY:$APISERVER_PORT ($(($(ms) - t0)) ms)"
start kube-controller-manager "$node_bin/kube-controller-manager" --kubeconfig "$d/kcm.kubeconfig" \
	--authentication-kubeconfig "$d/kcm.kubeconfig" --authorization-kubeconfig "$d/kcm.kubeconfig" \
	--bind-address 127.0.0.1 --secure-port "$KCM_PORT" --leader-elect=false \
	--use-service-account-credentials --service-account-private-key-file "$d/pki/sa.key" \
	--root-ca-file "$d/pki/ca.crt" --service-cluster-ip-range "$SERVICE_CIDR" \
	--cluster-signing-cert-file "$d/pki/ca.crt" --cluster-signing-key-file "$d/pki/ca.key"
start kube-scheduler "$node_bin/kube-scheduler" --kubeconfig "$d/scheduler.kubeconfig" \
	--authentication-kubeconfig "$d/scheduler.kubeconfig" --authorization-kubeconfig "$d/scheduler.kubeconfig" \
	--bind-address 127.0.0.1 --secure-port "$SCHEDULER_PORT" --leader-elect=false

# --- containerd with the harness's own everything; the pause image imported. ---
cat >"$d/containerd/config.toml" <<EOT
version = 2
root = "$d/containerd/root"
state = "$d/containerd/state"
[grpc]
  address = "$SOCK"
[ttrpc]
  address = "$SOCK.ttrpc"
[plugins."io.containerd.internal.v1.opt"]
  path = "$d/containerd/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$PAUSE_IMAGE"
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = "$d/containerd/runc"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$d/cni/net.d"
EOT
# The default route sends Service traffic (10.96.0.0/16) to the bridge, where
# kube-proxy's DNAT applies; anything leaving the bridge is dropped above.
cat >"$d/cni/net.d/10-meshca.conflist" <<EOT
{"cniVersion": "1.0.0", "name": "meshca-node", "plugins": [{
  "type": "bridge", "bridge": "$BRIDGE", "isGateway": true, "ipMasq": false, "hairpinMode": true,
  "ipam": {"type": "host-local", "dataDir": "$d/cni/ipam", "ranges": [[{"subnet": "$POD_CIDR", "gateway": "$GATEWAY"}]],
           "routes": [{"dst": "0.0.0.0/0"}]}
}]}
EOT
start containerd containerd --config "$d/containerd/config.toml"
wait_up containerd 30 ctr -a "$SOCK" version
CGO_ENABLED=0 go build -trimpath -o "$d/images/pause" ./hack/node/pause
go build -o "$d/images/mkimage" ./hack/node/mkimage
"$d/images/mkimage" -name "$PAUSE_IMAGE" -bin "$d/images/pause" -o "$d/images/pause.tar"
for img in "$d/images/pause.tar" ${NODE_IMAGES:-}; do
	ctr -a "$SOCK" -n k8s.io images import "$img" >&2
done

# --- Node agents. ---
cat >"$d/kubelet/config.yaml" <<EOT
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
failCgroupV1: false
failSwapOn: false
cgroupDriver: cgroupfs
containerRuntimeEndpoint: unix://$SOCK
address: $GATEWAY
port: $KUBELET_PORT
healthzBindAddress: 127.0.0.1
healthzPort: $KUBELET_HEALTHZ_PORT
readOnlyPort: 0
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $d/pki/ca.crt}
authorization: {mode: Webhook}
podLogsDir: $d/kubelet/pod-logs
clusterDomain: cluster.local
# Images cannot be pulled back here: never evict or collect them.
evictionHard: {memory.available: 1Mi, nodefs.available: 1%, imagefs.available: 1%, nodefs.inodesFree: 1%}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
EOT
start kubelet "$node_bin/kubelet" --config "$d/kubelet/config.yaml" --kubeconfig "$d/kubelet.kubeconfig" \
	--root-dir "$d/kubelet/root" --hostname-override "$NODE_NAME" --node-ip "$GATEWAY"
cat >"$d/kube-proxy.yaml" <<EOT
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
mode: iptables
clientConnection: {kubeconfig: $d/proxy.kubeconfig}
hostnameOverride: $NODE_NAME
clusterCIDR: $POD_CIDR
nodePortAddresses: ["$GATEWAY/32"]
healthzBindAddress: 127.0.0.1:$PROXY_HEALTHZ_PORT
metricsBindAddress: 127.0.0.1:$PROXY_METRICS_PORT
# Leave the conntrack sysctls alone.
conntrack: {maxPerCore: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s}
EOT
start kube-proxy "$node_bin/kube-proxy" --config "$d/kube-proxy.yaml"

node_ready() {
	[[ $(kubectl get node "$NODE_NAME" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null) == True ]]
}
wait_up kubelet 120 node_ready
log "node $NODE_NAME Ready ($(($(ms) - t0)) ms)"
wait_up kube-controller-manager 60 kubectl -n default get serviceaccount default
wait_up kube-controller-manager 60 kubectl -n default get configmap kube-root-ca.crt
alive kube-proxy
alive kube-scheduler
ok=1
log "node up in $(($(ms) - t0)) ms; export KUBECONFIG=$d/kubeconfig; stop with hack/node/down.sh"
