#!/usr/bin/env bash
# make node-smoke: proves the node harness end to end. Brings the node up,
# runs a Pod from a locally built static-Go image (hack/node/hello) with a
# Secret volume to Running and Ready through a real HTTP readiness probe
# (ready only once the mounted Secret file is readable), checks the mounted
# content from the host through the Pod network, has the Pod call the API
# server through the kubernetes Service with its ServiceAccount token, reads
# its logs through the API server and the kubelet, tears the node down, and
# fails unless the machine's state after equals the state before.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
# shellcheck source=hack/node/lib.sh
source "$here/lib.sh"
cd "$repo"
kube_bin=$(hack/build-kube.sh)
hack/build-node.sh >/dev/null
work=$(mktemp -d)
d=$NODE_DIR

CGO_ENABLED=0 go build -trimpath -o "$work/hello" ./hack/node/hello
go run ./hack/node/mkimage -name localhost/hello:smoke -bin "$work/hello" -o "$work/hello.tar"
machine_state >"$work/before"
echo "== machine before"; cat "$work/before"

result=1
# An interrupt can land while a shell function runs with its output
# redirected (kubectl >/dev/null); the trap then inherits that redirection.
# Keep the real stdout and stderr to put back.
exec 3>&1 4>&2
finish() {
	exec 1>&3 2>&4
	local t
	t=$(ms)
	echo "== teardown"
	"$here/down.sh"
	down_ms=$(($(ms) - t))
	machine_state >"$work/after"
	echo "== machine after"; cat "$work/after"
	if ! diff -u "$work/before" "$work/after"; then
		echo "FAIL: the machine's state differs after teardown"
		result=1
	fi
	echo "== timings: node up ${up_ms:-?} ms, pod ready ${ready_ms:-?} ms, teardown ${down_ms} ms"
	rm -rf "$work"
	((result == 0)) && echo "PASS" || echo "FAIL"
	exit "$result"
}
trap finish EXIT
trap 'exit 130' INT TERM

t=$(ms)
NODE_IMAGES="$work/hello.tar" "$here/up.sh"
up_ms=$(($(ms) - t))
kubectl() { "$kube_bin/kubectl" --kubeconfig "$d/kubeconfig" "$@"; }

token=$(openssl rand -hex 24)
kubectl create secret generic hello-token --from-literal=token="$token" >/dev/null
t=$(ms)
kubectl apply -f - <<EOT
apiVersion: v1
kind: Pod
metadata: {name: hello, namespace: default}
spec:
  terminationGracePeriodSeconds: 2
  securityContext: {runAsNonRoot: true, runAsUser: 65532}
  containers:
  - name: hello
    image: localhost/hello:smoke
    imagePullPolicy: Never
    args: [-file, /etc/hello/token]
    ports: [{containerPort: 8080}]
    readinessProbe:
      httpGet: {path: /readyz, port: 8080}
      periodSeconds: 1
    volumeMounts: [{name: token, mountPath: /etc/hello, readOnly: true}]
  volumes:
  - name: token
    secret: {secretName: hello-token}
EOT
if ! kubectl wait pod/hello --for=condition=Ready --timeout=90s; then
	kubectl describe pod hello | tail -20
	exit 1
fi
ready_ms=$(($(ms) - t))
kubectl get pod hello -o wide
ip=$(kubectl get pod hello -o jsonpath='{.status.podIP}')
got=$(curl -fsS --max-time 5 "http://$ip:8080/file")
want=$(printf '%s' "$token" | sha256sum | cut -d' ' -f1)
[[ $got == "$want" ]] || { echo "FAIL: the Pod read $got from its Secret volume, want $want"; exit 1; }
echo "OK: Pod hello Ready in ${ready_ms} ms through its readiness probe; it reads the Secret volume (sha256 $got, from the host via $ip)"
echo "OK: kubelet mounted: $(mount | grep -c "$d/kubelet") mounts under the kubelet root"
who=$(curl -sS --max-time 10 "http://$ip:8080/whoami" 2>&1 || true)
[[ $who == system:serviceaccount:default:default ]] || { echo "FAIL: the Pod's API call through the kubernetes Service answered $who"; exit 1; }
echo "OK: the Pod reached the API server through the kubernetes Service (kube-proxy) with its ServiceAccount token: $who"
logs=$(kubectl logs hello)
grep -q 'hello: listening' <<<"$logs" || { echo "FAIL: kubectl logs hello: $logs"; exit 1; }
echo "OK: kubectl logs (API server to kubelet): $logs"
result=0
