#!/usr/bin/env bash
# make e2e-node: issue 16's story on a real single-node cluster, every step
# asserted, then the machine left as it was found (also on a failure or
# Ctrl-C: the EXIT trap tears the node down and compares the machine's state
# with the state before).
#
#  helm      `helm install` of charts/meshca with meshca's image built here
#            (as the Dockerfile builds it) and the chart's defaults otherwise:
#            2 replicas Ready through their probes under the chart's
#            securityContext, one holds the Lease, the caBundle is filled, the
#            API server reaches the webhook through the chart's Service.
#  upstream  the user's path from docs/upstream-mtls.md, run verbatim (the
#            shell blocks marked <!-- e2e-node -->): kubectl apply -f
#            examples/, then the checks a user makes. Asserted besides: the
#            upstream Pod has /var/run/meshca/tls and /var/run/meshca/trust
#            mounted and serves with them (the served certificate is the
#            Secret's, the client CA names it asks for are the bundle's), it
#            requires a client certificate (none: 400 "No required SSL
#            certificate was sent", from a Pod and from the host; one from
#            another CA: 400 "The SSL certificate error"), and Service port
#            443 reaches its TLS port.
#  gateway   a gateway standing in for Emissary (examples/nginx-gateway:
#            Debian's nginx with the TLSContext's Secrets as client
#            certificate and trust) proxies HTTP to the upstream over mutual
#            TLS: a client on the host gets 200 through it, and the upstream
#            saw the TLSContext's certificate.
#
#  nonroot  containers running as a random non-root UID, with and without
#            an fsGroup, read tls.key from the Secret the webhook mounts, and
#            one that asks for defaultMode 0400 without an fsGroup is refused
#            (the modes and owners the kubelet gives the file are asserted).
#
# STORY="helm upstream gateway nonroot" (the default) chooses the steps; a
# step needs the ones before it. make node-helm runs STORY=helm. Prints the timings of
# each step at the end. Needs root (the node does).
set -euo pipefail
shopt -s extglob
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
# shellcheck source=hack/node/lib.sh
source "$here/lib.sh"
cd "$repo"
story=${STORY:-helm upstream gateway nonroot}
for s in $story; do
	[[ $s == @(helm|upstream|gateway|nonroot) ]] || die "STORY: unknown step $s (helm, upstream, gateway, nonroot)"
done
has() { [[ " $story " == *" $1 "* ]]; }
t_start=$(ms)
kube_bin=$(hack/build-kube.sh)
hack/build-node.sh >/dev/null
helm_bin=$(hack/go-tool.sh helm helm.sh/helm/v3/cmd/helm v3.22.0)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
d=$NODE_DIR
ns=meshca-system
version=${VERSION:-$(git describe --tags --always --dirty 2>/dev/null || echo dev)}
image=localhost/meshca:$version
declare -A took # step timings in ms, printed at the end
order=()        # their order
took() { took[$1]=$2; order+=("$1"); }

t=$(ms)
commit=$(git rev-parse HEAD 2>/dev/null || true)
# The Dockerfile's build line, with its VERSION and COMMIT build args.
CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=$version -X main.commit=$commit" -o "$work/meshca" ./cmd/meshca
go run ./hack/node/mkimage -name "$image" -bin "$work/meshca" -path /meshca -o "$work/meshca.tar"
images=("$work/meshca.tar")
if has upstream; then
	hack/node/nginx-image.sh "$work/nginx.tar"
	images+=("$work/nginx.tar")
fi
took "images (meshca$(has upstream && echo ', nginx'))" $(($(ms) - t))
echo "== image $image ($(du -h "$work/meshca.tar" | cut -f1))"
machine_state >"$work/before"

result=1
exec 3>&1 4>&2
finish() {
	exec 1>&3 2>&4
	# The teardown runs to its end whatever fails in it.
	set +e
	local t p
	# The watches and any port-forward a failed doc block left: by their
	# process groups (each runs in a session of its own).
	for p in "$work"/pgid.*; do
		[[ -f $p ]] && kill -TERM -- "-$(<"$p")" 2>/dev/null
	done
	if ((result != 0)) && [[ -f $d/kubeconfig ]] && pid_of kube-apiserver >/dev/null; then
		echo "== state on failure"
		kubectl get pods -A -o wide 2>&1 || true
		kubectl -n "$ns" get lease,endpointslices 2>&1 || true
		kubectl -n demo get secrets,configmaps,events 2>&1 | tail -40 || true
		for n in "$ns" demo; do
			for p in $(kubectl -n "$n" get pods -o name 2>/dev/null); do
				echo "-- $n/$p"
				kubectl -n "$n" describe "$p" 2>&1 | sed -n '/^Events:/,$p' | tail -15 || true
				kubectl -n "$n" logs "$p" --all-containers --tail=30 2>&1 || true
			done
		done
	fi
	# Only a node this run started: up.sh refuses to start beside another
	# node before it creates $d/saved, and down.sh would tear that one down.
	if [[ -n ${up_started:-} && -d $d/saved ]]; then
		t=$(ms)
		echo "== teardown"
		"$here/down.sh"
		took teardown $(($(ms) - t))
	fi
	machine_state >"$work/after"
	if ! diff -u "$work/before" "$work/after"; then
		echo "FAIL: the machine's state differs after teardown"
		result=1
	fi
	echo "== timings (ms)"
	for p in "${order[@]}"; do printf '   %-62s %7s\n' "$p" "${took[$p]}"; done
	printf '   %-62s %7s\n' "whole run" $(($(ms) - t_start))
	rm -rf "$work"
	((result == 0)) && echo "PASS" || echo "FAIL"
	exit "$result"
}
trap finish EXIT
trap 'exit 130' INT TERM

kubectl() { "$kube_bin/kubectl" --kubeconfig "$d/kubeconfig" "$@"; }
helm() { "$helm_bin" --kubeconfig "$d/kubeconfig" "$@"; }
fail() { echo "FAIL: $*"; exit 1; }
# session NAME CMD...: runs CMD in a session (and process group) of its own,
# whose ID finish and doc_block find in $work/pgid.NAME to end what is left.
session() {
	local name=$1
	shift
	setsid -w bash -c 'echo $$ >"$1"; shift; exec "$@"' _ "$work/pgid.$name" "$@"
}

t=$(ms)
up_started=1
NODE_IMAGES="${images[*]}" "$here/up.sh"
took "node up (nothing to Node Ready + ServiceAccount)" $(($(ms) - t))

# ---------------------------------------------------------------- helm
# No --wait: the timings below are the chart's own, measured from here.
t0=$(ms)
helm install meshca charts/meshca --namespace "$ns" --create-namespace \
	--set image.repository=localhost/meshca --set-string image.tag="$version" --set image.pullPolicy=Never
took "helm install (returns)" $(($(ms) - t0))

ready_pods() {
	kubectl -n "$ns" get pods -l app.kubernetes.io/name=meshca -o \
		jsonpath='{range .items[*]}{.status.phase}/{.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}' |
		grep -c '^Running/True$'
}
two_ready() { [[ $(ready_pods) == 2 ]]; }
wait_for "2 meshca pods Running and Ready" 120 two_ready || exit 1
took "helm install to 2 replicas Ready" $(($(ms) - t0))
kubectl -n "$ns" get pods -o wide
echo "OK: 2 replicas Running and Ready through the chart's probes ${took[helm install to 2 replicas Ready]} ms after helm install"

holder() { kubectl -n "$ns" get lease meshca -o jsonpath='{.spec.holderIdentity}'; }
lease_held() { [[ -n $(holder) ]]; }
wait_for "the Lease meshca to be held" 60 lease_held || exit 1
took "helm install to Lease held" $(($(ms) - t0))
h=$(holder)
pods=$(kubectl -n "$ns" get pods -l app.kubernetes.io/name=meshca -o jsonpath='{.items[*].metadata.name}')
match=
for p in $pods; do [[ $h == "$p"* ]] && match=$p; done
[[ -n $match ]] || fail "Lease holder $h is none of the pods: $pods"
echo "OK: pod $match holds the Lease (holderIdentity $h)"

cabundle() { kubectl get mutatingwebhookconfiguration meshca -o jsonpath='{.webhooks[0].clientConfig.caBundle}'; }
cabundle_filled() { [[ -n $(cabundle) ]]; }
wait_for "the webhook's caBundle" 60 cabundle_filled || exit 1
took "helm install to caBundle filled" $(($(ms) - t0))
subject=$(cabundle | base64 -d | openssl x509 -noout -subject 2>&1 | head -1)
echo "OK: caBundle filled: $subject"

# A namespace of its own, so the user's path below starts from nothing.
kubectl create namespace webhook-check >/dev/null
deployment() {
	kubectl apply --dry-run=server -o json -f - <<EOT
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: webhook-check
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
took "webhook dry-run through the Service" $(($(ms) - t))
mounts=$(grep -c '/var/run/meshca/trust' "$work/web.json" || true)
grep -q '"name": "meshca-trust-bundle"' "$work/web.json" && ((mounts > 0)) ||
	fail "the dry-run Deployment came back without the trust bundle volume: $(cat "$work/web.json")"
echo "OK: the API server called the webhook through Service $ns/meshca:443; the dry-run Deployment got the meshca-trust-bundle volume mounted at /var/run/meshca/trust"
restarts=$(kubectl -n "$ns" get pods -l app.kubernetes.io/name=meshca -o jsonpath='{.items[*].status.containerStatuses[0].restartCount}')
[[ $restarts == "0 0" ]] || fail "meshca containers restarted: $restarts"
# Not a failure: what the replicas complained about is material for the report.
for p in $pods; do
	kubectl -n "$ns" logs "$p" >"$work/$p.log" 2>&1 || true
	echo "== $p: $(wc -l <"$work/$p.log") log lines, $(grep -ciE '"level":"(warn|error)"|level=(warn|error)' "$work/$p.log" || true) warnings or errors"
	grep -iE '"level":"(warn|error)"|level=(warn|error)' "$work/$p.log" | head -5 || true
done

if ! has upstream; then
	result=0
	exit 0
fi

# ---------------------------------------------------------------- upstream
# The user's shell: kubectl and helm on PATH (the cache's, on this node's
# kubeconfig), in the repository's root.
user=$work/user
mkdir -p "$user/bin"
printf '#!/bin/sh\nexec %q --kubeconfig %q "$@"\n' "$kube_bin/kubectl" "$d/kubeconfig" >"$user/bin/kubectl"
printf '#!/bin/sh\nexec %q --kubeconfig %q "$@"\n' "$helm_bin" "$d/kubeconfig" >"$user/bin/helm"
chmod +x "$user/bin/kubectl" "$user/bin/helm"
# The repository's root as seen from the user's shell: its folders, linked,
# so the files the blocks write stay out of the clone.
for f in "$repo"/*/; do ln -s "${f%/}" "$user/$(basename "$f")"; done
doc=docs/upstream-mtls.md
# doc_block NAME: runs the ```sh block that follows <!-- e2e-node: NAME --> in
# $doc, as a user would paste it, in its own process group (a port-forward
# it leaves behind on a failure is killed with it). Output in
# $work/doc-NAME.out, echoed indented.
doc_block() {
	local name=$1 code=0
	awk -v want="<!-- e2e-node: $name -->" '
		$0 == want { armed = 1; next }
		armed && /^```sh$/ { inside = 1; next }
		inside && /^```$/ { exit }
		inside { print }' "$doc" >"$work/doc-$name.sh"
	[[ -s $work/doc-$name.sh ]] || fail "$doc has no shell block marked <!-- e2e-node: $name -->"
	echo "== $doc, block $name:"
	sed 's/^/   $ /' "$work/doc-$name.sh"
	(cd "$user" && PATH=$user/bin:$PATH session "doc-$name" bash -euo pipefail "$work/doc-$name.sh" >"$work/doc-$name.out" 2>&1) || code=$?
	# Whatever the block left running (a port-forward, after a failure).
	kill -TERM -- "-$(<"$work/pgid.doc-$name")" 2>/dev/null || true
	sed 's/^/   | /' "$work/doc-$name.out"
	((code == 0)) || fail "the block $name of $doc exited with $code"
}
secret_file() { # secret key file
	kubectl -n demo get secret "$1" -o "jsonpath={.data.${2//./\\.}}" | base64 -d >"$work/$3"
}
serial_of() { # a certificate file: its serial in upper-case hex, no leading zeros
	local s
	s=$(openssl x509 -in "$1" -noout -serial)
	s=${s#serial=}
	s=${s##+(0)}
	echo "${s^^}"
}
norm_serial() { local s=${1^^}; echo "${s##+(0)}"; }

# Milestones, watched from before the apply: when each Secret first exists
# and when the upstream Pod is first Ready.
watch_demo() { # name kubectl-get-args...: lines "ms line" into $work/watch.name
	local name=$1
	shift
	session "watch-$name" bash -c 'k=$1; shift; "$k" "$@" | while read -r l; do printf "%s %s\n" "$(date +%s%3N)" "$l"; done' \
		_ "$kube_bin/kubectl" --kubeconfig "$d/kubeconfig" -n demo get "$@" --watch >"$work/watch.$name" 2>/dev/null &
}
watch_demo secrets secrets -o name
watch_demo pods pods -o jsonpath='{.metadata.name} {.status.conditions[?(@.type=="Ready")].status}{"\n"}'
first_seen() { # name pattern: the first ms at which the watch saw a line matching pattern
	awk -v p="$2" '$0 ~ p { print $1; exit }' "$work/watch.$1"
}

doc_block mapping-crd
t0=$(ms)
doc_block apply
took "upstream: kubectl apply -f examples/ to rolled out" $(($(ms) - t0))
for s in upstream-certs upstream-ca upstream-service-meshca-tls; do
	kubectl -n demo get secret "$s" >/dev/null || fail "Secret demo/$s does not exist after the rollout"
done
up_pod=$(kubectl -n demo get pods -l app=upstream-service -o jsonpath='{.items[0].metadata.name}')
wait_for "the watches to see the Secrets and the Ready Pod" 10 \
	bash -c "grep -q upstream-service-meshca-tls '$work/watch.secrets' && grep -q '$up_pod True' '$work/watch.pods'" || true
for m in "secret/upstream-certs:Secret upstream-certs (TLSContext spec.secret)" \
	"secret/upstream-ca:Secret upstream-ca (TLSContext spec.ca_secret)" \
	"secret/upstream-service-meshca-tls:Secret upstream-service-meshca-tls (workload)"; do
	at=$(first_seen secrets "^[0-9]+ ${m%%:*}$")
	[[ -n $at ]] && took "  apply to ${m#*:}" $((at - t0))
done
at=$(first_seen pods "^[0-9]+ $up_pod True$")
[[ -n $at ]] && took "  apply to upstream Pod Ready (serving TLS with the Secret)" $((at - t0))

# The Pod has meshca's two mounts, from the webhook.
mounts=$(kubectl -n demo get pod "$up_pod" -o jsonpath='{range .spec.containers[0].volumeMounts[*]}{.name}={.mountPath}{"\n"}{end}')
grep -qx 'meshca-tls=/var/run/meshca/tls' <<<"$mounts" && grep -qx 'meshca-trust=/var/run/meshca/trust' <<<"$mounts" ||
	fail "upstream Pod $up_pod lacks meshca's mounts: $mounts"
echo "OK: upstream Pod $up_pod runs with $(tr '\n' ' ' <<<"$mounts")"

# It serves with the mounted certificate, and asks for client certificates of the mounted bundle.
secret_file upstream-certs tls.crt gw.crt
secret_file upstream-certs tls.key gw.key
secret_file upstream-ca tls.crt ca.crt
secret_file upstream-service-meshca-tls tls.crt up.crt
kubectl -n demo get configmap meshca-trust-bundle -o jsonpath='{.data.ca\.crt}' >"$work/bundle.crt"
cmp -s "$work/bundle.crt" "$work/ca.crt" || fail "ConfigMap meshca-trust-bundle and Secret upstream-ca hold different bundles"
svc_ip=$(kubectl -n demo get service upstream-service -o jsonpath='{.spec.clusterIP}')
host=upstream-service.demo.svc
echo | openssl s_client -connect "$svc_ip:443" -servername "$host" -verify_hostname "$host" -CAfile "$work/ca.crt" \
	-verify_return_error -showcerts >"$work/s_client.out" 2>&1 || fail "openssl s_client to $svc_ip:443: $(tail -5 "$work/s_client.out")"
openssl x509 -in "$work/s_client.out" -out "$work/served.crt" 2>/dev/null || fail "no certificate in the upstream's answer"
served=$(serial_of "$work/served.crt")
want=$(norm_serial "$(kubectl -n demo get secret upstream-service-meshca-tls -o jsonpath='{.metadata.annotations.meshca\.io/serial}')")
[[ $served == "$want" ]] || fail "the upstream serves certificate $served, Secret upstream-service-meshca-tls holds $want"
grep -q 'Verify return code: 0 (ok)' "$work/s_client.out" || fail "the upstream's chain does not verify: $(grep 'Verify return' "$work/s_client.out")"
asked=$(awk '/^Acceptable client certificate CA names/ { on = 1; next } on && /^(Requested|Client Certificate Types|Shared|Peer|---)/ { exit } on' "$work/s_client.out")
roots=$(openssl crl2pkcs7 -nocrl -certfile "$work/ca.crt" | openssl pkcs7 -print_certs -noout | sed -n 's/^subject=//p')
[[ -n $asked ]] && [[ $(tr -d ' ' <<<"$asked" | sort) == $(tr -d ' ' <<<"$roots" | sort) ]] ||
	fail "the upstream asks for client certificates of [$asked], the bundle's roots are [$roots]"
echo "OK: through Service port 443 ($svc_ip) the upstream serves the certificate of Secret upstream-service-meshca-tls (serial $served, verified as $host against the bundle) and asks for client certificates of the bundle's roots ($(tr '\n' ';' <<<"$asked"))"

curl_up() { curl -sS --max-time 10 --cacert "$work/ca.crt" --resolve "$host:443:$svc_ip" "$@" "https://$host/"; }
out=$(curl_up --cert "$work/gw.crt" --key "$work/gw.key" -w '\nHTTP %{http_code}') || fail "curl with the gateway certificate: $out"
gw_serial=$(norm_serial "$(kubectl -n demo get secret upstream-certs -o jsonpath='{.metadata.annotations.meshca\.io/serial}')")
grep -q '^HTTP 200$' <<<"$out" && grep -qi "client certificate serial 0*$gw_serial\$" <<<"$out" ||
	fail "curl with the gateway certificate (serial $gw_serial) got: $out"
echo "OK: curl from the host with upstream-certs: $(head -1 <<<"$out")"
out=$(curl_up -w '\nHTTP %{http_code}') || fail "curl without a client certificate: $out"
grep -q '^HTTP 400$' <<<"$out" && grep -q 'No required SSL certificate was sent' <<<"$out" ||
	fail "curl without a client certificate was not refused: $out"
echo "OK: curl from the host without a client certificate: 400 No required SSL certificate was sent"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$work/foreign.key" -subj /CN=foreign \
	-days 1 -out "$work/foreign.crt" 2>/dev/null
out=$(curl_up --cert "$work/foreign.crt" --key "$work/foreign.key" -w '\nHTTP %{http_code}') || fail "curl with a foreign certificate: $out"
grep -q '^HTTP 400$' <<<"$out" && grep -q 'The SSL certificate error' <<<"$out" ||
	fail "curl with a certificate from another CA was not refused: $out"
echo "OK: curl from the host with a certificate from another CA: 400 The SSL certificate error"

# A Pod without a certificate, straight to the upstream Service.
kubectl apply -f - >/dev/null <<'EOT'
apiVersion: v1
kind: Pod
metadata: {name: no-cert-client, namespace: demo}
spec:
  restartPolicy: Never
  terminationGracePeriodSeconds: 1
  securityContext: {runAsNonRoot: true, runAsUser: 65532}
  containers:
  - name: curl
    image: localhost/debian-nginx:meshca
    imagePullPolicy: Never
    command: [curl, -sS, --max-time, "10", --cacert, /trust/ca.crt, -w, "\nHTTP %{http_code}\n",
      --resolve, "upstream-service.demo.svc:443:$(UPSTREAM_SERVICE_SERVICE_HOST)", "https://upstream-service.demo.svc/"]
    volumeMounts: [{name: trust, mountPath: /trust, readOnly: true}]
  volumes: [{name: trust, configMap: {name: meshca-trust-bundle}}]
EOT
pod_done() { [[ $(kubectl -n demo get pod no-cert-client -o jsonpath='{.status.phase}') == @(Succeeded|Failed) ]]; }
wait_for "Pod no-cert-client to finish" 60 pod_done || fail "Pod no-cert-client did not finish"
out=$(kubectl -n demo logs no-cert-client)
grep -q '^HTTP 400$' <<<"$out" && grep -q 'No required SSL certificate was sent' <<<"$out" ||
	fail "a Pod without a client certificate was not refused by the upstream: $out"
echo "OK: a Pod without a client certificate is refused by the upstream: 400 No required SSL certificate was sent"

doc_block files
doc_block check
out=$(cat "$work/doc-check.out")
grep -q "^upstream-service: hello, client certificate serial 0*$gw_serial\$" <<<"$out" ||
	fail "the doc's check did not get through with the gateway certificate"
grep -q 'No required SSL certificate was sent' <<<"$out" || fail "the doc's check without a certificate was not refused"
echo "OK: $doc's checks, run as written, got through with upstream-certs and were refused without a certificate"

if ! has gateway; then
	result=0
	exit 0
fi

# ---------------------------------------------------------------- gateway
t0=$(ms)
doc_block gateway
took "gateway: kubectl apply to rolled out and 200 through it" $(($(ms) - t0))
grep -q "^upstream-service: hello, client certificate serial 0*$gw_serial\$" "$work/doc-gateway.out" ||
	fail "the doc's request through the gateway did not reach the upstream with the TLSContext's certificate"
gw_ip=$(kubectl -n demo get service gateway -o jsonpath='{.spec.clusterIP}')
out=$(curl -sS --max-time 10 -w '\nHTTP %{http_code}' "http://$gw_ip/backend/") || fail "curl to the gateway: $out"
grep -q '^HTTP 200$' <<<"$out" && grep -qi "client certificate serial 0*$gw_serial\$" <<<"$out" ||
	fail "through the gateway: $out"
echo "OK: the host gets 200 through the gateway's Service ($gw_ip:80/backend/): the gateway showed the upstream the certificate of Secret upstream-certs (serial $gw_serial) and accepted the upstream's against upstream-ca"
if ! has nonroot; then
	result=0
	exit 0
fi

# ---------------------------------------------------------------- nonroot
# Workloads as users write them: any UID, with or without an fsGroup. The
# webhook mounts the Secret with the kubelet's default mode (0644) unless the
# workload declares the volume meshca-tls itself (the webhook keeps its
# defaultMode); an fsGroup makes the files group-readable by it, and a 0400
# key without one is root's alone.
uid=$((20000 + RANDOM % 40000))
fsgroup=$((20000 + RANDOM % 40000))
reader() { # name pod-securityContext volumes
	kubectl apply -f - >/dev/null <<EOT
apiVersion: apps/v1
kind: Deployment
metadata:
  name: $1
  namespace: demo
  annotations: {meshca.io/certificate: "true"}
spec:
  selector: {matchLabels: {app: $1}}
  template:
    metadata: {labels: {app: $1}}
    spec:
      terminationGracePeriodSeconds: 1
      securityContext: $2
      containers:
      - name: reader
        image: localhost/debian-nginx:meshca
        imagePullPolicy: Never
        command: [sh, -c, 'id; stat -L -c "%a %u:%g" /var/run/meshca/tls/tls.key; head -1 /var/run/meshca/tls/tls.key; exec sleep 3600']
        securityContext: {allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, capabilities: {drop: [ALL]}}
      volumes: $3
EOT
}
t0=$(ms)
reader reader-uid "{runAsNonRoot: true, runAsUser: $uid, runAsGroup: $uid}" "[]"
reader reader-fsgroup "{runAsNonRoot: true, runAsUser: $uid, runAsGroup: $uid, fsGroup: $fsgroup}" "[]"
reader reader-0400 "{runAsNonRoot: true, runAsUser: $uid, runAsGroup: $uid, fsGroup: $fsgroup}" \
	"[{name: meshca-tls, secret: {secretName: reader-0400-meshca-tls, defaultMode: 0400}}]"
reader reader-0400-no-fsgroup "{runAsNonRoot: true, runAsUser: $uid, runAsGroup: $uid}" \
	"[{name: meshca-tls, secret: {secretName: reader-0400-no-fsgroup-meshca-tls, defaultMode: 0400}}]"
# name: mode and owner of tls.key, and whether uid $uid may read it
declare -A want=([reader-uid]="644 0:0 read" [reader-fsgroup]="644 0:$fsgroup read"
	[reader-0400]="440 0:$fsgroup read" [reader-0400-no-fsgroup]="400 0:0 refused")
for r in reader-uid reader-fsgroup reader-0400 reader-0400-no-fsgroup; do
	kubectl -n demo rollout status "deployment/$r" --timeout=2m >/dev/null || fail "deployment $r did not roll out"
	wait_for "$r's output" 30 bash -c "'$kube_bin/kubectl' --kubeconfig '$d/kubeconfig' -n demo logs deployment/$r | grep -q -e '-----BEGIN' -e 'Permission denied'" || true
	out=$(kubectl -n demo logs "deployment/$r")
	grep -q "^uid=$uid " <<<"$out" || fail "$r does not run as $uid: $out"
	mode=$(sed -n 2p <<<"$out")
	if grep -qx -- '-----BEGIN PRIVATE KEY-----' <<<"$out"; then got="$mode read"
	elif grep -q 'tls.key.*Permission denied' <<<"$out"; then got="$mode refused"
	else fail "$r: neither the key nor a refusal: $out"; fi
	[[ $got == "${want[$r]}" ]] || fail "$r: tls.key $got, want ${want[$r]}"
	verdict="reads it"
	[[ $got == *refused ]] && verdict="is refused, as expected"
	echo "OK: $r: tls.key is $mode (mode, owner); uid $uid $verdict ($(head -1 <<<"$out"))"
done
took "nonroot: 4 Deployments to tls.key read or refused" $(($(ms) - t0))
result=0
