// Command mkimage writes a single-layer container image as a docker-archive
// tar (the format `docker save` writes), which `ctr images import` reads.
// The node harness has no registry, so its images are built this way and
// imported into containerd. The layer is either one static binary (-bin) or
// a whole root file system prepared in a folder (-root), such as Debian's
// nginx with the shared libraries it links.
//
// The format is written by hand rather than with go-containerregistry: it is
// three small JSON documents and two tars, and keeping it in the standard
// library keeps a large module out of meshca's go.mod for a test tool.
//
//	mkimage -name localhost/hello:dev -bin ./hello -o hello.tar [-- ARGS...]
//	mkimage -name localhost/a:1,localhost/b:1 -root ./rootfs -path /usr/sbin/nginx -user 0:0 -o nginx.tar
package main

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// defaultPath is the PATH an image's processes get.
const defaultPath = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

func main() {
	name := flag.String("name", "", "image reference, e.g. localhost/hello:dev; several separated by commas")
	bin := flag.String("bin", "", "static binary to put in the image (or -root)")
	root := flag.String("root", "", "folder holding the image's whole root file system (or -bin)")
	at := flag.String("path", "", "entrypoint in the image (default /<basename of -bin>; none with -root)")
	user := flag.String("user", "65532:65532", "user the image runs as")
	desc := flag.String("description", "", "org.opencontainers.image.description label")
	out := flag.String("o", "", "output docker-archive tar")
	flag.Parse()
	if *name == "" || *out == "" || (*bin == "") == (*root == "") {
		log.Fatal("mkimage: -name, -o and one of -bin or -root are required")
	}
	img := image{names: strings.Split(*name, ","), entry: *at, args: flag.Args(), user: *user, description: *desc}
	var err error
	if *bin != "" {
		if img.entry == "" {
			img.entry = "/" + path.Base(*bin)
		}
		img.layer, err = binaryLayer(img.entry[1:], *bin)
	} else {
		img.layer, err = rootLayer(*root)
	}
	if err != nil {
		log.Fatalf("mkimage: build layer: %v", err)
	}
	if err := img.write(*out); err != nil {
		log.Fatalf("mkimage: %v", err)
	}
}

// epoch keeps the layer and config byte-identical across builds of the same input.
var epoch = time.Unix(0, 0).UTC()

type image struct {
	names       []string
	entry       string
	args        []string
	user        string
	description string
	layer       []byte
}

func (img image) write(out string) error {
	for _, n := range img.names {
		if n == "" || strings.ContainsAny(n, " \t") {
			return fmt.Errorf("bad image name %q", n)
		}
	}
	diffID := sha256.Sum256(img.layer)
	cfg := map[string]any{"Env": []string{defaultPath}, "User": img.user}
	if img.entry != "" {
		cfg["Entrypoint"] = []string{img.entry}
	}
	if len(img.args) > 0 {
		cfg["Cmd"] = img.args
	}
	if img.description != "" {
		cfg["Labels"] = map[string]string{"org.opencontainers.image.description": img.description}
	}
	config, err := json.Marshal(map[string]any{
		"architecture": "amd64",
		"os":           "linux",
		"created":      epoch.Format(time.RFC3339),
		"config":       cfg,
		"rootfs":       map[string]any{"type": "layers", "diff_ids": []string{"sha256:" + hex.EncodeToString(diffID[:])}},
	})
	if err != nil {
		return fmt.Errorf("encode config: %w", err)
	}
	configSum := sha256.Sum256(config)
	configName := hex.EncodeToString(configSum[:]) + ".json"
	layerName := hex.EncodeToString(diffID[:]) + "/layer.tar"
	manifest, err := json.Marshal([]map[string]any{{
		"Config": configName, "RepoTags": img.names, "Layers": []string{layerName},
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
	}{{configName, config}, {layerName, img.layer}, {"manifest.json", manifest}} {
		if err := addFile(tw, e.name, 0o644, e.data); err != nil {
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

// binaryLayer returns an uncompressed layer holding the file bin at name
// with mode 0755.
func binaryLayer(name, bin string) ([]byte, error) {
	exe, err := os.ReadFile(bin)
	if err != nil {
		return nil, fmt.Errorf("read binary: %w", err)
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	if err := addFile(tw, name, 0o755, exe); err != nil {
		return nil, err
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// rootLayer returns an uncompressed layer holding the tree under dir:
// folders, regular files and symbolic links, in name order, owned by root,
// with their modes (sticky bit included, for /tmp) and no timestamps. Other
// file types are an error rather than silently left out.
func rootLayer(dir string) ([]byte, error) {
	var paths []string
	err := filepath.WalkDir(dir, func(p string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p != dir {
			paths = append(paths, p)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if len(paths) == 0 {
		return nil, fmt.Errorf("%s is empty", dir)
	}
	sort.Strings(paths)
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, p := range paths {
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return nil, err
		}
		name := filepath.ToSlash(rel)
		fi, err := os.Lstat(p)
		if err != nil {
			return nil, err
		}
		mode := int64(fi.Mode().Perm())
		if fi.Mode()&fs.ModeSticky != 0 {
			mode |= 0o1000
		}
		h := &tar.Header{Name: name, Mode: mode, ModTime: epoch, Format: tar.FormatPAX}
		switch {
		case fi.IsDir():
			h.Typeflag, h.Name = tar.TypeDir, name+"/"
		case fi.Mode()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return nil, err
			}
			h.Typeflag, h.Linkname = tar.TypeSymlink, target
		case fi.Mode().IsRegular():
			data, err := os.ReadFile(p)
			if err != nil {
				return nil, err
			}
			if err := addFile(tw, name, mode, data); err != nil {
				return nil, err
			}
			continue
		default:
			return nil, errors.New(p + ": neither a folder, a regular file nor a symbolic link")
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, fmt.Errorf("tar header %s: %w", name, err)
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func addFile(tw *tar.Writer, name string, mode int64, data []byte) error {
	h := &tar.Header{Name: name, Mode: mode, Size: int64(len(data)), ModTime: epoch, Typeflag: tar.TypeReg, Format: tar.FormatPAX}
	if err := tw.WriteHeader(h); err != nil {
		return fmt.Errorf("tar header %s: %w", name, err)
	}
	_, err := io.Copy(tw, bytes.NewReader(data))
	return err
}
