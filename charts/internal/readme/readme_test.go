package readme

import (
	"errors"
	"testing"
)

func TestValues(t *testing.T) {
	t.Parallel()
	src := []byte(`# File comment.

# Number of pods.
replicaCount: 2
image:
  # Repository.
  repository: example/meshca
# --- section note ---

# Resources of the
# container.
resources:
  limits:
    memory: 1Gi
labels: {}
`)
	_, err := Values(src)
	if !errors.Is(err, ErrUndocumented) {
		t.Fatalf("Values with an undocumented key: err = %v, want ErrUndocumented", err)
	}
	got, err := Values([]byte(string(src[:len(src)-len("labels: {}\n")])))
	if err != nil {
		t.Fatal(err)
	}
	want := []Value{
		{Key: "replicaCount", Type: "int", Default: "2", Description: "Number of pods."},
		{Key: "image.repository", Type: "string", Default: `"example/meshca"`, Description: "Repository."},
		{Key: "resources", Type: "map", Default: `{"limits":{"memory":"1Gi"}}`, Description: "Resources of the container."},
	}
	if len(got) != len(want) {
		t.Fatalf("Values = %+v, want %+v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("value %d = %+v, want %+v", i, got[i], want[i])
		}
	}
}

func TestCode(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		`"a|b"`: "`\"a\\|b\"`",
		"`x`":   "`` `x` ``",
	} {
		if got := code(in); got != want {
			t.Errorf("code(%q) = %q, want %q", in, got, want)
		}
	}
}
