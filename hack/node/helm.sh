#!/usr/bin/env bash
# make node-helm: step 1 of issue 16's story. Builds meshca's image the way
# the Dockerfile does (a static, trimmed binary of ./cmd/meshca on an empty
# base, USER 65532) with hack/node/mkimage, brings the node up with it
# imported as localhost/meshca:VERSION, `helm install`s charts/meshca with
# that image and the chart's defaults otherwise, and asserts: 2 replicas
# Running and Ready through the chart's own probes under its
# securityContext; one of them holds the Lease; the
# MutatingWebhookConfiguration's caBundle is filled; the API server reaches
# the webhook through the chart's Service (a Deployment annotated
# meshca.io/inject-trust-bundle, created with --dry-run=server, comes back
# with the trust bundle volume). Then tears the node down and fails unless
# the machine's state after equals the state before.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
# shellcheck source=hack/node/lib.sh
source "$here/lib.sh"
cd "$repo"
kube_bin=$(hack/build-kube.sh)
hack/build-node.sh >/dev/null
helm_bin=$(hack/go-tool.sh helm helm.sh/helm/v3/cmd/helm v3.22.0)
work=$(mktemp -d)
d=$NODE_DIR
ns=meshca-system
version=${VERSION:-$(git describe --tags --always --dirty 2>/dev/null || echo dev)}
image=localhost/meshca:$version

t=$(ms)
commit=$(git rev-parse HEAD 2>/dev/null || true)
# The Dockerfile's build line, with its VERSION and COMMIT build args.
CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=$version -X main.commit=$commit" -o "$work/meshca" ./cmd/meshca
go run ./hack/node/mkimage -name "$image" -bin "$work/meshca" -path /meshca -o "$work/meshca.tar"
image_ms=$(($(ms) - t))
echo "== image $image ($(du -h "$work/meshca.tar" | cut -f1)) built in ${image_ms} ms"
machine_state >"$work/before"

result=1
exec 3>&1 4>&2
finish() {
	exec 1>&3 2>&4
	local t
	if ((result != 0)) && [[ -f $d/kubeconfig ]] && pid_of kube-apiserver >/dev/null; then
		echo "== state on failure"
		kubectl -n "$ns" get pods,lease,endpointslices -o wide 2>&1 || true
		kubectl -n "$ns" describe pods 2>&1 | tail -40 || true
		local p
		for p in $(kubectl -n "$ns" get pods -o name 2>/dev/null); do
			echo "-- logs $p"; kubectl -n "$ns" logs "$p" --tail=30 2>&1 || true
		done
	fi
	t=$(ms)
	echo "== teardown"
	"$here/down.sh"
	down_ms=$(($(ms) - t))
	machine_state >"$work/after"
	if ! diff -u "$work/before" "$work/after"; then
		echo "FAIL: the machine's state differs after teardown"
		result=1
	fi
	echo "== timings: image ${image_ms} ms, node up ${up_ms:-?} ms, helm install ${install_ms:-?} ms," \
		"install to 2 Ready ${ready_ms:-?} ms, to Lease held ${lease_ms:-?} ms, to caBundle ${cabundle_ms:-?} ms," \
		"webhook dry-run ${webhook_ms:-?} ms, teardown ${down_ms} ms"
	rm -rf "$work"
	((result == 0)) && echo "PASS" || echo "FAIL"
	exit "$result"
}
trap finish EXIT
trap 'exit 130' INT TERM

kubectl() { "$kube_bin/kubectl" --kubeconfig "$d/kubeconfig" "$@"; }
helm() { "$helm_bin" --kubeconfig "$d/kubeconfig" "$@"; }

t=$(ms)
NODE_IMAGES="$work/meshca.tar" "$here/up.sh"
up_ms=$(($(ms) - t))

# No --wait: the timings below are the chart's own, measured from here.
t0=$(ms)
helm install meshca charts/meshca --namespace "$ns" --create-namespace \
	--set image.repository=localhost/meshca --set image.tag="$version" --set image.pullPolicy=Never
install_ms=$(($(ms) - t0))

ready_pods() {
	kubectl -n "$ns" get pods -l app.kubernetes.io/name=meshca -o \
		jsonpath='{range .items[*]}{.status.phase}/{.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}' |
		grep -c '^Running/True$'
}
two_ready() { [[ $(ready_pods) == 2 ]]; }
wait_for "2 meshca pods Running and Ready" 120 two_ready || exit 1
ready_ms=$(($(ms) - t0))
kubectl -n "$ns" get pods -o wide
echo "OK: 2 replicas Running and Ready through the chart's probes ${ready_ms} ms after helm install"

holder() { kubectl -n "$ns" get lease meshca -o jsonpath='{.spec.holderIdentity}'; }
lease_held() { [[ -n $(holder) ]]; }
wait_for "the Lease meshca to be held" 60 lease_held || exit 1
lease_ms=$(($(ms) - t0))
h=$(holder)
pods=$(kubectl -n "$ns" get pods -l app.kubernetes.io/name=meshca -o jsonpath='{.items[*].metadata.name}')
match=
for p in $pods; do [[ $h == "$p"* ]] && match=$p; done
[[ -n $match ]] || { echo "FAIL: Lease holder $h is none of the pods: $pods"; exit 1; }
echo "OK: pod $match holds the Lease (holderIdentity $h), ${lease_ms} ms after helm install"

cabundle() { kubectl get mutatingwebhookconfiguration meshca -o jsonpath='{.webhooks[0].clientConfig.caBundle}'; }
cabundle_filled() { [[ -n $(cabundle) ]]; }
wait_for "the webhook's caBundle" 60 cabundle_filled || exit 1
cabundle_ms=$(($(ms) - t0))
subject=$(cabundle | base64 -d | openssl x509 -noout -subject 2>&1 | head -1)
echo "OK: caBundle filled ${cabundle_ms} ms after helm install: $subject"

kubectl create namespace demo >/dev/null
deployment() {
	kubectl apply --dry-run=server -o json -f - <<EOT
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: demo
  annotations: {meshca.io/inject-trust-bundle: "true"}
spec:
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers: [{name: web, image: localhost/hello:none}]
EOT
}
t=$(ms)
# The webhook's endpoints may trail the pods' readiness by a moment.
webhook_answers() { deployment >"$work/web.json"; }
wait_for "the API server to call the webhook" 30 webhook_answers || { deployment || true; exit 1; }
webhook_ms=$(($(ms) - t))
mounts=$(grep -c '/var/run/meshca/trust' "$work/web.json" || true)
grep -q '"name": "meshca-trust-bundle"' "$work/web.json" && ((mounts > 0)) || {
	echo "FAIL: the dry-run Deployment came back without the trust bundle volume:"
	cat "$work/web.json"
	exit 1
}
echo "OK: the API server called the webhook through Service $ns/meshca:443; the dry-run Deployment got the meshca-trust-bundle volume mounted at /var/run/meshca/trust (${webhook_ms} ms)"
restarts=$(kubectl -n "$ns" get pods -l app.kubernetes.io/name=meshca -o jsonpath='{.items[*].status.containerStatuses[0].restartCount}')
[[ $restarts == "0 0" ]] || { echo "FAIL: meshca containers restarted: $restarts"; exit 1; }
# Not a failure yet: what the replicas complained about is the report's
# material for the next steps.
for p in $pods; do
	kubectl -n "$ns" logs "$p" >"$work/$p.log" 2>&1 || true
	echo "== $p: $(wc -l <"$work/$p.log") log lines, $(grep -ciE '"level":"(warn|error)"|level=(warn|error)' "$work/$p.log" || true) warnings or errors"
	grep -iE '"level":"(warn|error)"|level=(warn|error)' "$work/$p.log" | head -5 || true
done
result=0
