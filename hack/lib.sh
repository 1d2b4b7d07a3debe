# Shared by the scripts that build into the tool cache (build-kube.sh, build-node.sh,
# build-certmanager.sh, go-tool.sh). Source it; it defines functions only.
#
# Every build follows one discipline: skip when a finished result is there;
# otherwise take an flock (a concurrent run waits, then finds the result),
# build into a temporary sibling and rename it into place, so a half-built
# tool is never mistaken for a finished one.

log() { printf '>> %s\n' "$*" >&2; }

# cache_begin WHAT LOCKFILE RESULT: prints RESULT and exits the script when
# the caller's `complete` function says the result is there, before or after
# taking the lock; otherwise returns holding the lock on fd 9.
cache_begin() {
	local what=$1 lock=$2 result=$3
	if complete; then
		echo "$result"
		exit 0
	fi
	mkdir -p "$(dirname "$lock")"
	exec 9>"$lock"
	if ! flock -n 9; then
		log "another build of $what is running; waiting for it"
		flock 9
	fi
	if complete; then
		echo "$result"
		exit 0
	fi
}

# progress WHAT: reads `go build -v` output and prints a line every 100
# packages compiled, passing compiler errors through, all on stderr.
progress() {
	awk -v what="$1" '{ n++; if (n % 100 == 0) { printf "   %s: %d packages compiled\n", what, n > "/dev/stderr"; fflush("/dev/stderr") } }
		/^(#|go: |.*:[0-9]+:[0-9]+: )/ { print > "/dev/stderr" }'
}

# kube_ldflags VERSION: the -ldflags of every Kubernetes binary built into
# the tool cache (build-kube.sh, build-node.sh). One definition, because the
# build cache is shared only while the flags are identical: a difference
# recompiles k8s.io/kubernetes (minutes), and the binaries report VERSION
# instead of v0.0.0.
kube_ldflags() {
	local v=$1 major minor
	major=${v#v}; major=${major%%.*}
	minor=${v#v*.}; minor=${minor%%.*}
	echo "-s -w -X k8s.io/component-base/version.gitVersion=$v -X k8s.io/component-base/version.gitMajor=$major -X k8s.io/component-base/version.gitMinor=$minor -X k8s.io/component-base/version.gitTreeState=clean"
}
