#!/usr/bin/env bash
# make run: start the local control plane, install meshca's CRDs and the
# examples, and run meshca against it in the foreground until Ctrl-C.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

run=.cache/run
kubeconfig="$PWD/$run/kubeconfig"
step() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }

bin=$(hack/build-kube.sh)
kubectl() { "$bin/kubectl" --kubeconfig "$kubeconfig" "$@"; }

step "starting the local control plane (kube-apiserver + etcd) in $run"
rm -rf "$run"
mkdir -p "$run"
go build -o "$run/localcluster" ./hack/localcluster
"$run/localcluster" --dir "$run" --crds config/crd >"$run/localcluster.log" 2>&1 &
cluster=$!
cleanup() {
	step "stopping"
	[[ -n "${meshca:-}" ]] && kill "$meshca" 2>/dev/null && wait "$meshca" 2>/dev/null || true
	kill "$cluster" 2>/dev/null && wait "$cluster" 2>/dev/null || true
}
trap cleanup EXIT
for _ in $(seq 1 180); do
	[[ -f "$kubeconfig" ]] && break
	kill -0 "$cluster" 2>/dev/null || { cat "$run/localcluster.log"; exit 1; }
	sleep 0.5
done
[[ -f "$kubeconfig" ]] || { echo "control plane did not start"; cat "$run/localcluster.log"; exit 1; }
echo "API server: $(kubectl config view -o jsonpath='{.clusters[0].cluster.server}')"

step "applying examples/"
kubectl apply -f examples/

step "running meshca serve (Ctrl-C stops everything)"
cat <<EOT
Point kubectl at it from another terminal:
  export KUBECONFIG=$kubeconfig
  $bin/kubectl get tlscontexts,secrets -A
EOT
bin/meshca serve --kubeconfig "$kubeconfig" --namespace meshca-system \
	--webhook-names 127.0.0.1 --metrics-address 127.0.0.1:8080 --health-address 127.0.0.1:8081 \
	--log-format text &
meshca=$!
wait "$meshca"
