#!/usr/bin/env bash
# Builds cert-manager's controller (the peer in the side-by-side benchmark)
# from the Go module proxy into the tool cache and fetches the CRDs it needs:
#
#   ${MESHCA_CACHE:-$HOME/.cache/meshca}/tools/cert-manager-<version>/{controller,crds/}
#
# cert-manager v1.11.5 is the last release whose cmd/controller lives in the
# root module (later releases keep it in a module the proxy does not serve
# under its path); hack/certmanager pins it. Its own CRDs are Helm templates,
# so the plain YAML in deploy/crds of the root module at v1.20.3 is used; it
# serves cert-manager.io/v1, which v1.11.5 speaks.
#
# Same rules as build-kube.sh: skipped when the stamp matches; built into a
# temporary sibling and renamed into place under an flock. Prints the folder
# on stdout; progress goes to stderr. About 5 minutes on 2 cores, once.
set -euo pipefail

CM_VERSION=v1.11.5
CRD_VERSION=v1.20.3
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cache=${MESHCA_CACHE:-$HOME/.cache/meshca}
dir="$cache/tools/cert-manager-$CM_VERSION"
want="cert-manager controller $CM_VERSION, crds $CRD_VERSION"

complete() {
	[[ -f "$dir/.complete" && "$(cat "$dir/.complete")" == "$want" && -x "$dir/controller" ]]
}
# shellcheck source=hack/lib.sh
source "$here/lib.sh"
cache_begin cert-manager "$cache/tools/.cert-manager.lock" "$dir"

work=$(mktemp -d "$cache/tools/.cert-manager.XXXXXX")
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/out/crds"
t=$SECONDS
log "building cert-manager controller $CM_VERSION from the Go module proxy (first time only, ~5-10 min)"
if ! (cd "$here/certmanager" && go build -mod=readonly -v -trimpath -ldflags "-s -w" \
	-o "$work/out/controller" github.com/cert-manager/cert-manager/cmd/controller 2>&1) | progress cert-manager; then
	log "building cert-manager $CM_VERSION failed"
	exit 1
fi
echo ">> fetching CRDs from github.com/cert-manager/cert-manager@$CRD_VERSION" >&2
src=$(cd "$work" && go mod download -json "github.com/cert-manager/cert-manager@$CRD_VERSION" |
	sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
[[ -d "$src/deploy/crds" ]] || { echo ">> no deploy/crds in $src" >&2; exit 1; }
cp "$src"/deploy/crds/*.yaml "$work/out/crds/"
echo "$want" >"$work/out/.complete"
rm -rf "$dir"
mv "$work/out" "$dir"
echo ">> built cert-manager in $((SECONDS - t))s" >&2
echo "$dir"
