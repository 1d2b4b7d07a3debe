package main

import (
	"fmt"
	"math"
	"runtime/metrics"

	"k8s.io/apimachinery/pkg/api/resource"
)

// defaultGCPercent is meshca's GOGC when the environment sets none. Go's
// default, 100, lets the heap grow to twice what is live before it
// collects; meshca's live heap is mostly its informer cache, which lives as
// long as the process, and between bursts it allocates little, so the
// smaller headroom costs little CPU: about 25% less memory at 1,000
// managed Secrets for a few percent more of meshca's own CPU in a burst.
const defaultGCPercent = 50

// memoryLimitShare is the part of the container's memory limit that
// becomes Go's soft limit: the rest is for what the Go runtime does not
// count (the mapped binary, thread stacks outside Go).
const memoryLimitShare = 0.9

// memorySettings are the Go runtime settings serve applies at start; a
// zero field means leave the runtime's value alone.
type memorySettings struct {
	gcPercent int
	// softLimit in bytes (debug.SetMemoryLimit).
	softLimit int64
}

// parseMemoryLimit reads --memory-limit: a Kubernetes quantity (256Mi) or
// a number of bytes, as the downward API gives resources.limits.memory;
// "" means none.
func parseMemoryLimit(s string) (int64, error) {
	if s == "" {
		return 0, nil
	}
	q, err := resource.ParseQuantity(s)
	if err != nil {
		return 0, fmt.Errorf("--memory-limit %q: %w", s, err)
	}
	v, ok := q.AsInt64()
	if !ok || v <= 0 {
		return 0, fmt.Errorf("--memory-limit %q: want a positive number of bytes or a quantity such as 256Mi", s)
	}
	return v, nil
}

// memoryFor decides the runtime settings: GOGC and GOMEMLIMIT, when set in
// the environment, win (the runtime has read them already); otherwise GC
// percent defaultGCPercent and, with a container limit, a soft limit of
// memoryLimitShare of it.
func memoryFor(containerLimit int64, lookupEnv func(string) (string, bool)) memorySettings {
	var m memorySettings
	if _, set := lookupEnv("GOGC"); !set {
		m.gcPercent = defaultGCPercent
	}
	if _, set := lookupEnv("GOMEMLIMIT"); !set && containerLimit > 0 {
		m.softLimit = int64(math.Floor(float64(containerLimit) * memoryLimitShare))
	}
	return m
}

// currentGCPercent reads the GC percent in force (GOGC) without changing it.
func currentGCPercent() int64 {
	sample := []metrics.Sample{{Name: "/gc/gogc:percent"}}
	metrics.Read(sample)
	if sample[0].Value.Kind() != metrics.KindUint64 {
		return -1
	}
	return int64(sample[0].Value.Uint64())
}
