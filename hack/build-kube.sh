#!/usr/bin/env bash
# Builds the local control plane (kube-apiserver, kubectl, etcd) from source
# through the Go module proxy into the tool cache shared by every clone,
# worktree and CI run on this machine:
#
#   ${MESHCA_CACHE:-$HOME/.cache/meshca}/kube/<kube-version>/bin
#
# The build is skipped when that folder holds a stamp written after all three
# binaries were built. A half-finished build never becomes that folder: the
# binaries are built into a temporary sibling and renamed into place at the end,
# and an flock serialises concurrent runs (the second waits, then finds the
# stamp and returns). Prints the bin folder on stdout; progress goes to stderr.
set -euo pipefail

KUBE_VERSION=${KUBE_VERSION:-v1.37.2}
ETCD_VERSION=${ETCD_VERSION:-v3.7.3}
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cache=${MESHCA_CACHE:-$HOME/.cache/meshca}
root="$cache/kube/$KUBE_VERSION"
bin="$root/bin"
stamp="$bin/.complete"
want="kube-apiserver $KUBE_VERSION, kubectl $KUBE_VERSION, etcd $ETCD_VERSION"

complete() {
	[[ -f "$stamp" && "$(cat "$stamp")" == "$want" && -x "$bin/kube-apiserver" && -x "$bin/kubectl" && -x "$bin/etcd" ]]
}

# shellcheck source=hack/lib.sh
source "$here/lib.sh"
cache_begin "the control plane" "$root/.lock" "$bin"

work=$(mktemp -d "$root/.build.XXXXXX")
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/bin"

started=$SECONDS
log "building the local control plane from source into $bin"
log "first time on this machine only: about 10-15 minutes on 2 cores (later runs reuse it)"

ldflags=$(kube_ldflags "$KUBE_VERSION")

build() { # module-dir output package
	local dir=$1 out=$2 pkg=$3 name
	name=$(basename "$out")
	log "building $name ($pkg)"
	local t=$SECONDS
	if ! (cd "$dir" && go build -mod=readonly -v -trimpath -ldflags "$ldflags" -o "$out" "$pkg" 2>&1) | progress "$name" || [[ ! -x "$out" ]]; then
		log "building $name failed"
		exit 1
	fi
	log "built $name in $((SECONDS - t))s"
}

build "$here/etcd" "$work/bin/etcd" go.etcd.io/etcd/server/v3
build "$here/kube" "$work/bin/kube-apiserver" k8s.io/kubernetes/cmd/kube-apiserver
build "$here/kube" "$work/bin/kubectl" k8s.io/kubernetes/cmd/kubectl
echo "$want" >"$work/bin/.complete"

# Swap the finished folder into place; a stale or partial one is moved aside first.
if [[ -e "$bin" ]]; then
	mv "$bin" "$work/old-bin"
fi
mv "$work/bin" "$bin"
log "control plane ready in $bin (built in $((SECONDS - started))s)"
echo "$bin"
