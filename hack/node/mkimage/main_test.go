package main

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"syscall"
	"testing"
)

// TestRootLayer builds a layer from a folder and reads it back as a
// container runtime would: every entry in name order, owned by root, with
// its mode (the sticky bit of /tmp included) and content.
func TestRootLayer(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	mustMkdir(t, filepath.Join(dir, "usr/sbin"), 0o755)
	mustMkdir(t, filepath.Join(dir, "tmp"), 0o777)
	if err := os.Chmod(filepath.Join(dir, "tmp"), 0o777|os.ModeSticky); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "usr/sbin/nginx"), []byte("binary"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("usr/sbin", filepath.Join(dir, "sbin")); err != nil {
		t.Fatal(err)
	}
	layer, err := rootLayer(dir)
	if err != nil {
		t.Fatal(err)
	}
	type entry struct {
		Name, Link, Data string
		Type             byte
		Mode             int64
		UID, GID         int
	}
	var got []entry
	tr := tar.NewReader(bytes.NewReader(layer))
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		data, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, entry{h.Name, h.Linkname, string(data), h.Typeflag, h.Mode, h.Uid, h.Gid})
	}
	want := []entry{
		{Name: "sbin", Link: "usr/sbin", Type: tar.TypeSymlink, Mode: 0o777},
		{Name: "tmp/", Type: tar.TypeDir, Mode: 0o1777},
		{Name: "usr/", Type: tar.TypeDir, Mode: 0o755},
		{Name: "usr/sbin/", Type: tar.TypeDir, Mode: 0o755},
		{Name: "usr/sbin/nginx", Data: "binary", Type: tar.TypeReg, Mode: 0o755},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("layer entries\n got %+v\nwant %+v", got, want)
	}
	again, err := rootLayer(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(layer, again) {
		t.Error("two layers of the same folder differ")
	}
}

func TestRootLayerRefusesSpecialFiles(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	if err := syscall.Mkfifo(filepath.Join(dir, "fifo"), 0o644); err != nil {
		t.Skipf("mkfifo: %v", err)
	}
	if _, err := rootLayer(dir); err == nil {
		t.Error("a folder holding a FIFO made a layer")
	}
	if _, err := rootLayer(t.TempDir()); err == nil {
		t.Error("an empty folder made a layer")
	}
}

// TestWriteNames checks that every name given lands in the archive's
// manifest, which is what `ctr images import` tags the image with.
func TestWriteNames(t *testing.T) {
	t.Parallel()
	out := filepath.Join(t.TempDir(), "img.tar")
	img := image{names: []string{"localhost/a:1", "docker.io/library/b:2"}, user: "0:0", layer: []byte{}}
	if err := img.write(out); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if err != nil {
			t.Fatalf("no manifest.json: %v", err)
		}
		if h.Name != "manifest.json" {
			continue
		}
		var m []struct{ RepoTags []string }
		if err := json.NewDecoder(tr).Decode(&m); err != nil {
			t.Fatal(err)
		}
		if len(m) != 1 || !reflect.DeepEqual(m[0].RepoTags, img.names) {
			t.Errorf("manifest %+v, want RepoTags %v", m, img.names)
		}
		return
	}
}

func TestWriteRefusesBadNames(t *testing.T) {
	t.Parallel()
	for _, names := range [][]string{{""}, {"localhost/a:1", ""}, {"a b"}} {
		img := image{names: names, layer: []byte{}}
		if err := img.write(filepath.Join(t.TempDir(), "img.tar")); err == nil {
			t.Errorf("names %q: no error", names)
		}
	}
}

func mustMkdir(t *testing.T, p string, mode os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(p, mode); err != nil {
		t.Fatal(err)
	}
}
