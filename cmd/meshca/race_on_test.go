//go:build race

package main

// raceBuild: the test binary runs with -race, so the daemon it starts as a
// subprocess is built with -race too (and shares the build cache).
const raceBuild = true
