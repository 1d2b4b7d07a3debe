package ca

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// File names of a CA folder (meshca ca init --dir).
const (
	FileRootCert         = "root.crt"
	FileRootKey          = "root.key"
	FileIntermediateCert = "intermediate.crt"
	FileIntermediateKey  = "intermediate.key"
)

var dirFiles = []string{FileRootCert, FileRootKey, FileIntermediateCert, FileIntermediateKey}

// WriteDir writes c into dir: root.crt, root.key (when held),
// intermediate.crt (the signing certificate and any further intermediates)
// and intermediate.key. dir is created with mode 0700 if missing and every
// file is written with mode 0600. It refuses, with ErrAlreadyExists, to
// write into a folder that already holds any of these files.
func WriteDir(dir string, c *CA) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("write CA to %s: %w", dir, err)
	}
	for _, name := range dirFiles {
		if _, err := os.Lstat(filepath.Join(dir, name)); err == nil {
			return fmt.Errorf("write CA to %s: %s: %w (meshca never overwrites a CA)", dir, name, ErrAlreadyExists)
		}
	}
	st := NewState(c, SourceDir, c.Intermediate.NotBefore)
	data, err := st.SecretData()
	if err != nil {
		return fmt.Errorf("write CA to %s: %w", dir, err)
	}
	rootCrt, rootKey, intCrt, intKey := SlotKeys(SlotCurrent)
	files := []struct {
		name string
		data []byte
	}{
		{FileRootCert, data[rootCrt]},
		{FileIntermediateCert, data[intCrt]},
		{FileIntermediateKey, data[intKey]},
		{FileRootKey, data[rootKey]},
	}
	for _, f := range files {
		if f.data == nil {
			continue
		}
		if err := writeNewFile(filepath.Join(dir, f.name), f.data); err != nil {
			return fmt.Errorf("write CA to %s: %w", dir, err)
		}
	}
	return nil
}

// writeNewFile creates path with mode 0600, failing if it exists.
func writeNewFile(path string, data []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("%s: %w", filepath.Base(path), ErrAlreadyExists)
	}
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// LoadDir reads a CA written by WriteDir. It returns an error wrapping
// ErrNotFound when dir holds none of the CA files, and one wrapping
// ErrInvalidCA when they are incomplete, do not parse or do not match.
func LoadDir(dir string) (*CA, error) {
	data := map[string][]byte{}
	for _, name := range dirFiles {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("load CA from %s: %w", dir, err)
		}
		data[name] = b
	}
	if len(data) == 0 {
		return nil, fmt.Errorf("load CA from %s: %w", dir, ErrNotFound)
	}
	c, err := caFromKeys(data, FileRootCert, FileRootKey, FileIntermediateCert, FileIntermediateKey)
	if err != nil {
		return nil, fmt.Errorf("load CA from %s: %w", dir, err)
	}
	return c, nil
}
