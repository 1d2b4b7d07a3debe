#!/usr/bin/env bash
# nginx-image.sh OUT.tar: writes the node harness's nginx image, a
# docker-archive tar for hack/node/up.sh's NODE_IMAGES, and prints nothing
# else on stdout.
#
# The image holds Debian's nginx (the binary from the `nginx` package, with
# the ssl module built in); curl, sh (dash), sed and a few coreutils (id,
# head, ls, stat, sleep) from this Debian host; the shared libraries they
# link (found with ldd); and a minimal /etc. It is tagged twice:
#   docker.io/library/nginx:stable   what examples/ name, so `kubectl apply -f
#                                    examples/` runs unchanged on a node that
#                                    cannot pull; a stand-in, not the official
#                                    image (its description label says so)
#   localhost/debian-nginx:meshca    what the harness's own Pods name
#
# The .deb is downloaded with `apt-get download` into
# $MESHCA_CACHE/debs, not installed: installing it would start an nginx on
# this host's port 80. Later runs reuse it.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=hack/node/lib.sh
source "$here/lib.sh"
out=${1:?usage: nginx-image.sh OUT.tar}
repo=$(cd "$here/../.." && pwd)
debs=${MESHCA_CACHE:-$HOME/.cache/meshca}/debs
mkdir -p "$debs"

newest_deb() { compgen -G "$debs/nginx_*_amd64.deb" | sort -V | tail -1 || true; }
exec 8>"$debs/.lock"
flock 8
deb=$(newest_deb)
if [[ -z $deb ]]; then
	log "downloading Debian's nginx package into $debs"
	if ! (cd "$debs" && apt-get download nginx >&2 2>/dev/null); then
		apt-get update >&2
		(cd "$debs" && apt-get download nginx >&2)
	fi
	deb=$(newest_deb)
	[[ -n $deb ]] || die "apt-get download nginx left no nginx_*_amd64.deb in $debs"
fi
exec 8>&-
version=$(dpkg-deb -f "$deb" Version)

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
dpkg-deb -x "$deb" "$work/deb"
fs=$work/fs
mkdir -p "$fs"/{bin,etc,usr/bin,usr/sbin}
mkdir -m 1777 "$fs/tmp"
install -m 0755 "$work/deb/usr/sbin/nginx" "$fs/usr/sbin/nginx"
for tool in curl sed id head ls stat sleep; do
	p=$(command -v "$tool") || die "$tool is needed on this host for the nginx image"
	install -m 0755 "$p" "$fs/usr/bin/$tool"
done
install -m 0755 "$(command -v dash)" "$fs/bin/sh"
# The libraries at the paths the loader looks them up by (ldd prints
# "name => /path (addr)" for each and "/path (addr)" for the loader).
for b in "$fs"/usr/sbin/nginx "$fs"/usr/bin/* "$fs"/bin/sh; do
	libs=$(ldd "$b") || die "ldd ${b#"$fs"} failed"
	for lib in $(awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }' <<<"$libs"); do
		[[ -e $fs$lib ]] && continue
		mkdir -p "$fs$(dirname "$lib")"
		cp -L "$lib" "$fs$lib"
	done
done
printf 'root:x:0:0:root:/root:/bin/sh\nnginx:x:101:101:nginx:/nonexistent:/bin/false\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' >"$fs/etc/passwd"
printf 'root:x:0:\nnginx:x:101:\nnogroup:x:65534:\n' >"$fs/etc/group"
printf 'hosts: files dns\n' >"$fs/etc/nsswitch.conf"
"$fs/usr/sbin/nginx" -V >/dev/null 2>&1 || die "the extracted nginx does not run on this host"

(cd "$repo" && go run ./hack/node/mkimage -root "$fs" -user 0:0 -o "$out" \
	-name docker.io/library/nginx:stable,localhost/debian-nginx:meshca \
	-description "stand-in for nginx:stable built by meshca's hack/node/nginx-image.sh from Debian's nginx $version" \
	-- nginx -g "daemon off;")
log "nginx image: Debian nginx $version, $(du -h "$out" | cut -f1) ($out)"
