// Command mkimage writes a single-layer container image holding one static
// binary as a docker-archive tar (the format `docker save` writes), which
// `ctr images import` reads. The node harness has no registry, so its images
// are built this way and imported into containerd.
//
// The format is written by hand rather than with go-containerregistry: it is
// three small JSON documents and two tars, and keeping it in the standard
// library keeps a large module out of meshca's go.mod for a test tool.
//
//	mkimage -name localhost/hello:dev -bin ./hello -o hello.tar [-- ARGS...]
package main

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"os"
	"path"
	"time"
)

func main() {
	name := flag.String("name", "", "image reference, e.g. localhost/hello:dev")
	bin := flag.String("bin", "", "static binary to put in the image")
	at := flag.String("path", "", "path of the binary in the image (default /<basename of -bin>)")
	out := flag.String("o", "", "output docker-archive tar")
	flag.Parse()
	if *name == "" || *bin == "" || *out == "" {
		log.Fatal("mkimage: -name, -bin and -o are required")
	}
	if *at == "" {
		*at = "/" + path.Base(*bin)
	}
	if err := write(*out, *name, *bin, *at, flag.Args()); err != nil {
		log.Fatalf("mkimage: %v", err)
	}
}

// epoch keeps the layer and config byte-identical across builds of the same binary.
var epoch = time.Unix(0, 0).UTC()

func write(out, name, bin, at string, args []string) error {
	exe, err := os.ReadFile(bin)
	if err != nil {
		return fmt.Errorf("read binary: %w", err)
	}
	layer, err := layerTar(at[1:], exe)
	if err != nil {
		return fmt.Errorf("build layer: %w", err)
	}
	diffID := sha256.Sum256(layer)
	config, err := json.Marshal(map[string]any{
		"architecture": "amd64",
		"os":           "linux",
		"created":      epoch.Format(time.RFC3339),
		"config":       map[string]any{"Entrypoint": []string{at}, "Cmd": args, "User": "65532:65532"},
		"rootfs":       map[string]any{"type": "layers", "diff_ids": []string{"sha256:" + hex.EncodeToString(diffID[:])}},
	})
	if err != nil {
		return fmt.Errorf("encode config: %w", err)
	}
	configSum := sha256.Sum256(config)
	configName := hex.EncodeToString(configSum[:]) + ".json"
	layerName := hex.EncodeToString(diffID[:]) + "/layer.tar"
	manifest, err := json.Marshal([]map[string]any{{
		"Config": configName, "RepoTags": []string{name}, "Layers": []string{layerName},
	}})
	if err != nil {
		return fmt.Errorf("encode manifest: %w", err)
	}

	f, err := os.Create(out)
	if err != nil {
		return err
	}
	tw := tar.NewWriter(f)
	for _, e := range []struct {
		name string
		data []byte
	}{{configName, config}, {layerName, layer}, {"manifest.json", manifest}} {
		if err := add(tw, e.name, 0o644, e.data); err != nil {
			f.Close()
			return err
		}
	}
	if err := tw.Close(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// layerTar returns an uncompressed layer holding exe at name with mode 0755.
func layerTar(name string, exe []byte) ([]byte, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	if err := add(tw, name, 0o755, exe); err != nil {
		return nil, err
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func add(tw *tar.Writer, name string, mode int64, data []byte) error {
	h := &tar.Header{Name: name, Mode: mode, Size: int64(len(data)), ModTime: epoch, Typeflag: tar.TypeReg, Format: tar.FormatPAX}
	if err := tw.WriteHeader(h); err != nil {
		return fmt.Errorf("tar header %s: %w", name, err)
	}
	_, err := io.Copy(tw, bytes.NewReader(data))
	return err
}
