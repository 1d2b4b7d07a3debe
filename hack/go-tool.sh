#!/usr/bin/env bash
# Builds one Go command from the module proxy into the tool cache and prints
# its path:  hack/go-tool.sh NAME PACKAGE VERSION
#   e.g.     hack/go-tool.sh helm helm.sh/helm/v3/cmd/helm v3.22.0
# The binary lands in ${MESHCA_CACHE:-$HOME/.cache/meshca}/tools/NAME-VERSION/NAME,
# built into a temporary folder and renamed into place under an flock, so a
# half-built or concurrently built tool is never mistaken for a finished one.
set -euo pipefail
name=$1 pkg=$2 version=$3
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cache=${MESHCA_CACHE:-$HOME/.cache/meshca}
dir="$cache/tools/$name-$version"
complete() { [[ -x "$dir/$name" ]]; }
# shellcheck source=hack/lib.sh
source "$here/lib.sh"
cache_begin "$name" "$cache/tools/.$name.lock" "$dir/$name"
log "building $name $version from the Go module proxy (first time only)"
work=$(mktemp -d "$cache/tools/.$name.XXXXXX")
trap 'rm -rf "$work"' EXIT
t=$SECONDS
if ! (GOBIN="$work/bin" GOFLAGS=-trimpath go install -v "$pkg@$version" 2>&1) | progress "$name"; then
	log "building $name $version failed"
	exit 1
fi
mkdir -p "$work/out"
mv "$work/bin/$(basename "$pkg")" "$work/out/$name"
rm -rf "$dir"
mv "$work/out" "$dir"
echo ">> built $name in $((SECONDS - t))s" >&2
echo "$dir/$name"
