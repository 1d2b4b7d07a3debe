#!/usr/bin/env bash
# make run: the whole story on the local control plane.
#
#  1. start kube-apiserver + etcd (built from source once per machine)
#  2. install what the Helm chart installs, except the Deployment: meshca runs
#     here, out of cluster, as the chart's ServiceAccount (impersonated), so it
#     has exactly the chart's RBAC
#  3. apply examples/: Emissary's upstream mTLS setup (TLSContext
#     upstream-context, Mapping) and an annotated upstream-service Deployment
#  4. wait for the Secrets, print them and `meshca status`
#  5. prove the mTLS hop with real peers: openssl s_server with the upstream's
#     workload certificate, requiring client certificates from the trust
#     bundle; curl with the gateway certificate from upstream-certs succeeds,
#     curl without one is refused
#  6. keep running until Ctrl-C (RUN_ONCE=1: stop after step 5)
#
# Environment:
#   RUN_ONCE=1              exit after the proof (the test of this script uses it)
#   RUN_DIR=D               state folder (default .cache/run)
#   WEBHOOK_PORT, METRICS_PORT, HEALTH_PORT, MTLS_PORT   local ports
#   USE_EXISTING_CLUSTER=1  use $KUBECONFIG's cluster instead of a local one
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
root=$PWD

run=${RUN_DIR:-.cache/run}
mkdir -p "$run"
run=$(cd "$run" && pwd)
webhook_port=${WEBHOOK_PORT:-9443}
metrics_port=${METRICS_PORT:-8080}
health_port=${HEALTH_PORT:-8081}
mtls_port=${MTLS_PORT:-8443}
ns=meshca-system
once=${RUN_ONCE:-}

bold=$'\033[1m' green=$'\033[32m' red=$'\033[31m' off=$'\033[0m'
if [[ ! -t 1 ]]; then bold='' green='' red='' off=''; fi
step() { printf '\n%s==> %s%s\n' "$bold" "$*" "$off"; }
ok() { printf '%s    OK%s %s\n' "$green" "$off" "$*"; }
fail() { printf '%s    FAILED%s %s\n' "$red" "$off" "$*"; exit 1; }

step "building what is needed (the first run on a machine builds the control plane: 10-15 minutes)"
bin=$(hack/build-kube.sh)
helm=$(hack/go-tool.sh helm helm.sh/helm/v3/cmd/helm v3.22.0)
go build -o "$run/meshca" ./cmd/meshca
go build -o "$run/localcluster" ./hack/localcluster
echo "    control plane binaries: $bin"

pids=()
cleanup() {
	local code=$?
	step "stopping"
	for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
		kill "${pids[i]}" 2>/dev/null || true
		wait "${pids[i]}" 2>/dev/null || true
	done
	exit $code
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if [[ -n "${USE_EXISTING_CLUSTER:-}" ]]; then
	step "using the existing cluster of KUBECONFIG=${KUBECONFIG:?set KUBECONFIG to use an existing cluster}"
	admin=$KUBECONFIG
	meshca_kc=$KUBECONFIG
else
	step "starting the local control plane (kube-apiserver + etcd) in $run"
	rm -rf "$run/etcd" "$run/kubeconfig" "$run/kubeconfig-meshca"
	"$run/localcluster" --dir "$run" --crds config/crd --impersonate "$ns/meshca" >"$run/localcluster.log" 2>&1 &
	pids+=($!)
	for _ in $(seq 1 240); do
		[[ -f "$run/kubeconfig" ]] && break
		kill -0 "${pids[0]}" 2>/dev/null || { cat "$run/localcluster.log"; fail "the control plane did not start"; }
		sleep 0.5
	done
	[[ -f "$run/kubeconfig" ]] || fail "the control plane did not start in 2 minutes"
	admin=$run/kubeconfig
	meshca_kc=$run/kubeconfig-meshca
fi
kubectl() { "$bin/kubectl" --kubeconfig "$admin" "$@"; }
echo "    API server: $(kubectl config view --minify -o jsonpath='{.clusters[0].cluster.server}')"

step "installing what the chart installs (all but the Deployment: meshca runs here as the chart's ServiceAccount)"
kubectl create namespace "$ns" --dry-run=client -o yaml | kubectl apply -f - >/dev/null
"$helm" template meshca charts/meshca --namespace "$ns" --set crds.install=false \
	--set webhook.failurePolicy=Fail >"$run/chart.yaml"
# Drop the Deployment; keep everything else.
awk 'BEGIN { RS = "\n---\n"; ORS = "\n---\n" } !/\nkind: Deployment\n/ { print }' "$run/chart.yaml" >"$run/chart-objects.yaml"
kubectl apply -f "$run/chart-objects.yaml" | sed 's/^/    /'
# The API server reaches this out-of-cluster meshca at 127.0.0.1.
kubectl patch mutatingwebhookconfiguration meshca --type=json -p "[
  {\"op\": \"remove\", \"path\": \"/webhooks/0/clientConfig/service\"},
  {\"op\": \"add\", \"path\": \"/webhooks/0/clientConfig/url\", \"value\": \"https://127.0.0.1:$webhook_port/mutate\"}]" | sed 's/^/    /'

step "starting meshca serve as system:serviceaccount:$ns:meshca (log: $run/meshca.log)"
"$run/meshca" serve --kubeconfig "$meshca_kc" --namespace "$ns" \
	--webhook-names 127.0.0.1 --webhook-port "$webhook_port" \
	--metrics-address "127.0.0.1:$metrics_port" --health-address "127.0.0.1:$health_port" \
	--log-format text >"$run/meshca.log" 2>&1 &
pids+=($!)
meshca_pid=$!
for _ in $(seq 1 120); do
	curl -fsS "http://127.0.0.1:$health_port/readyz" >/dev/null 2>&1 && break
	kill -0 "$meshca_pid" 2>/dev/null || { tail -20 "$run/meshca.log"; fail "meshca exited"; }
	sleep 0.5
done
curl -fsS "http://127.0.0.1:$health_port/readyz" >/dev/null || { tail -20 "$run/meshca.log"; fail "meshca not ready"; }
ok "meshca is ready (webhook serving certificate loaded)"
for _ in $(seq 1 120); do
	[[ -n "$(kubectl get mutatingwebhookconfiguration meshca -o jsonpath='{.webhooks[0].clientConfig.caBundle}')" ]] && break
	sleep 0.5
done
ok "meshca filled the webhook's caBundle with its trust bundle"
# The API server picks up a new webhook configuration asynchronously.
sleep 1

step "applying examples/ (upstream mTLS: TLSContext upstream-context, Mapping, upstream-service)"
kubectl apply -f examples/ | sed 's/^/    /'

step "waiting for meshca to write the Secrets"
for s in upstream-certs upstream-ca upstream-service-meshca-tls; do
	for _ in $(seq 1 120); do
		kubectl -n demo get secret "$s" >/dev/null 2>&1 && break
		sleep 0.5
	done
	kubectl -n demo get secret "$s" >/dev/null 2>&1 || { tail -20 "$run/meshca.log"; fail "Secret demo/$s did not appear"; }
	ok "demo/$s"
done
echo
kubectl get secrets -A -l app.kubernetes.io/managed-by=meshca | sed 's/^/    /'
echo
"$run/meshca" status --kubeconfig "$admin" --namespace "$ns" | sed 's/^/    /'

step "the webhook mounted the trust bundle and the workload certificate into upstream-service"
kubectl -n demo get deployment upstream-service \
	-o jsonpath='{range .spec.template.spec.containers[*].volumeMounts[*]}    {.name} -> {.mountPath}{"\n"}{end}'

step "proving the mTLS hop with real peers"
mtls=$run/mtls
rm -rf "$mtls" && mkdir -m 0700 "$mtls"
secret() { kubectl -n demo get secret "$1" -o "jsonpath={.data.${2//./\\.}}" | base64 -d >"$mtls/$3"; chmod 0600 "$mtls/$3"; }
secret upstream-service-meshca-tls tls.crt upstream.crt
secret upstream-service-meshca-tls tls.key upstream.key
secret upstream-certs tls.crt gateway.crt
secret upstream-certs tls.key gateway.key
secret upstream-certs ca.crt ca.crt
host=upstream-service.demo.svc
echo "    upstream: openssl s_server on 127.0.0.1:$mtls_port with upstream-service's certificate, verifying clients against the trust bundle"
openssl s_server -accept "127.0.0.1:$mtls_port" -cert "$mtls/upstream.crt" -cert_chain "$mtls/upstream.crt" \
	-key "$mtls/upstream.key" -CAfile "$mtls/ca.crt" -Verify 2 -verify_return_error -www -quiet >"$run/s_server.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 50); do
	(exec 3<>"/dev/tcp/127.0.0.1/$mtls_port") 2>/dev/null && break
	sleep 0.1
done
curl_up() {
	curl -sS --max-time 10 --cacert "$mtls/ca.crt" --resolve "$host:$mtls_port:127.0.0.1" "$@" "https://$host:$mtls_port/"
}
echo "    gateway: curl --cert upstream-certs/tls.crt --key upstream-certs/tls.key --cacert upstream-certs/ca.crt https://$host:$mtls_port/"
if out=$(curl_up --cert "$mtls/gateway.crt" --key "$mtls/gateway.key" 2>&1) && grep -q "s_server" <<<"$out"; then
	ok "mTLS with the gateway certificate: the upstream accepted it"
else
	echo "$out" | head -5
	fail "mTLS with the gateway certificate did not succeed"
fi
echo "    gateway without a client certificate: curl --cacert upstream-certs/ca.crt https://$host:$mtls_port/"
if out=$(curl_up 2>&1); then
	fail "the upstream accepted a client without a certificate"
else
	ok "without a client certificate: refused ($(head -1 <<<"$out"))"
fi

if [[ -n "$once" ]]; then
	step "RUN_ONCE is set: done"
	exit 0
fi
step "meshca keeps running; Ctrl-C stops everything"
cat <<EOT
    kubectl:        export KUBECONFIG=$admin
                    $bin/kubectl get tlscontexts,secrets -A
    meshca status:  $run/meshca status --kubeconfig $admin
    meshca log:     tail -f $run/meshca.log
    metrics:        curl http://127.0.0.1:$metrics_port/metrics
EOT
wait "$meshca_pid"
