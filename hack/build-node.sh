#!/usr/bin/env bash
# Builds the node components (kubelet, kube-controller-manager,
# kube-scheduler, kube-proxy) from source through the tools module in
# hack/kube into the tool cache, next to the control plane:
#
#   ${MESHCA_CACHE:-$HOME/.cache/meshca}/kube/<kube-version>/node-bin
#
# Same discipline as build-kube.sh (hack/lib.sh): skip when the stamp is there,
# otherwise flock, build into a temporary sibling and rename it into place.
# The go flags match build-kube.sh's, so the packages kube-apiserver already
# compiled come from the build cache. It also installs the Debian packages a
# node needs (containerd, runc, the CNI plugins, iptables, conntrack, and nft
# for hack/node/down.sh) when any is missing. Prints the node-bin folder on
# stdout; progress goes to stderr.
set -euo pipefail

KUBE_VERSION=${KUBE_VERSION:-v1.37.2}
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cache=${MESHCA_CACHE:-$HOME/.cache/meshca}
root="$cache/kube/$KUBE_VERSION"
bin="$root/node-bin"
stamp="$bin/.complete"
cmds=(kubelet kube-controller-manager kube-scheduler kube-proxy)
want="${cmds[*]} $KUBE_VERSION"
debs=(containerd runc containernetworking-plugins iptables conntrack nftables)

# shellcheck source=hack/lib.sh
source "$here/lib.sh"

# The packages come first: they are not part of the stamp (a machine can lose
# them while the cache survives), and checking them costs one dpkg-query.
missing=()
for p in "${debs[@]}"; do
	[[ "$(dpkg-query -W -f '${db:Status-Status}' "$p" 2>/dev/null)" == installed ]] || missing+=("$p")
done
if ((${#missing[@]})); then
	log "installing Debian packages: ${missing[*]}"
	exec 8>"$cache/.apt.lock"
	flock 8
	export DEBIAN_FRONTEND=noninteractive
	if ! apt-get install -y --no-install-recommends "${missing[@]}" >&2; then
		apt-get update >&2
		apt-get install -y --no-install-recommends "${missing[@]}" >&2
	fi
	# The packages start their daemons; the harness runs its own containerd.
	if systemctl is-active --quiet containerd 2>/dev/null; then systemctl disable --now containerd >&2 || true; fi
	exec 8>&-
fi

complete() {
	[[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]] || return 1
	local c
	for c in "${cmds[@]}"; do [[ -x "$bin/$c" ]] || return 1; done
}

cache_begin "the node components" "$root/.lock-node" "$bin"

work=$(mktemp -d "$root/.build-node.XXXXXX")
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/bin"

started=$SECONDS
log "building ${cmds[*]} $KUBE_VERSION from source into $bin"
log "first time on this machine only: about 10-20 minutes on 2 cores after the control plane (later runs reuse it)"

ldflags=$(kube_ldflags "$KUBE_VERSION")

pkgs=()
for c in "${cmds[@]}"; do pkgs+=("k8s.io/kubernetes/cmd/$c"); done
# One go build for the four: they share most packages, and the linker runs in parallel.
if ! (cd "$here/kube" && go build -mod=readonly -v -trimpath -ldflags "$ldflags" -o "$work/bin/" "${pkgs[@]}" 2>&1) | progress node; then
	log "building the node components failed"
	exit 1
fi
for c in "${cmds[@]}"; do
	[[ -x "$work/bin/$c" ]] || { log "building $c failed: no binary"; exit 1; }
done
echo "$want" >"$work/bin/.complete"

if [[ -e "$bin" ]]; then
	mv "$bin" "$work/old-bin"
fi
mv "$work/bin" "$bin"
log "node components ready in $bin (built in $((SECONDS - started))s)"
echo "$bin"
