package ca

import (
	"crypto"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
)

// DefaultSecretName is the name of the CA Secret in the daemon's namespace.
const DefaultSecretName = "meshca-ca"

// Keys of the CA Secret; see doc.go for the layout. Per slot:
// "<slot>.root.crt", "<slot>.root.key", "<slot>.intermediate.crt",
// "<slot>.intermediate.key".
const (
	KeyState  = "state.json"
	KeyBundle = "ca.crt"

	suffixRootCert         = ".root.crt"
	suffixRootKey          = ".root.key"
	suffixIntermediateCert = ".intermediate.crt"
	suffixIntermediateKey  = ".intermediate.key"
)

// SlotKeys returns the four Secret keys of a slot: root certificate, root
// key, intermediate chain and intermediate key.
func SlotKeys(slot Slot) (rootCrt, rootKey, intCrt, intKey string) {
	p := string(slot)
	return p + suffixRootCert, p + suffixRootKey, p + suffixIntermediateCert, p + suffixIntermediateKey
}

var (
	// ErrNotFound means there is no CA where one was looked for.
	ErrNotFound = errors.New("CA not found")
	// ErrAlreadyExists means a CA is already stored where one was to be created.
	ErrAlreadyExists = errors.New("CA already exists")
	// ErrConflict means the stored CA changed since it was read.
	ErrConflict = errors.New("CA changed since it was read")
	// ErrNewerFormat means the CA was stored by a newer meshca, in a format
	// version this one does not know (a downgrade). Nothing is read from it
	// and nothing may be written over it.
	ErrNewerFormat = errors.New("CA stored by a newer meshca")
)

// checkFormat refuses a state record of a format version newer than
// StateRecordVersion. It reads the version alone, before anything else of
// the Secret, so that a newer layout (other keys, other fields) is refused
// for what it is rather than reported as a broken CA.
func checkFormat(js []byte) error {
	var v struct {
		Version int `json:"version"`
	}
	if err := json.Unmarshal(js, &v); err != nil {
		return fmt.Errorf("%w: key %s: %w", ErrInvalidCA, KeyState, err)
	}
	if v.Version > StateRecordVersion {
		return fmt.Errorf("%w: key %s has format version %d and this meshca reads versions up to %d: "+
			"run the meshca that wrote it or a newer one; nothing was read or changed "+
			"(do not delete the Secret: a new CA would replace the one every certificate chains to)",
			ErrNewerFormat, KeyState, v.Version, StateRecordVersion)
	}
	return nil
}

// SecretData encodes the state in the CA Secret layout.
func (s *State) SecretData() (map[string][]byte, error) {
	if s.Current == nil {
		return nil, errors.New("state has no current CA")
	}
	data := map[string][]byte{}
	rec := s.Record
	rec.Version = StateRecordVersion
	for _, slot := range Slots {
		c := s.Get(slot)
		r := rec.slot(slot)
		if c == nil {
			rec.setSlot(slot, nil)
			continue
		}
		rootCrt, rootKey, intCrt, intKey := SlotKeys(slot)
		data[rootCrt] = EncodeCertificatesPEM(c.Root)
		if len(c.Chain) == 0 {
			data[intCrt] = EncodeCertificatesPEM(c.Intermediate)
		} else {
			data[intCrt] = EncodeCertificatesPEM(c.Chain...)
		}
		k, err := MarshalPrivateKeyPEM(c.IntermediateKey)
		if err != nil {
			return nil, fmt.Errorf("%s intermediate: %w", slot, err)
		}
		data[intKey] = k
		if c.RootKey != nil {
			if data[rootKey], err = MarshalPrivateKeyPEM(c.RootKey); err != nil {
				return nil, fmt.Errorf("%s root: %w", slot, err)
			}
		}
		if r == nil {
			r = &SlotRecord{}
		} else {
			cp := *r
			r = &cp
		}
		r.Fingerprint = c.Fingerprint()
		rec.setSlot(slot, r)
	}
	js, err := json.MarshalIndent(rec, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("encode %s: %w", KeyState, err)
	}
	data[KeyState] = append(js, '\n')
	data[KeyBundle] = s.Bundle()
	return data, nil
}

func (r *StateRecord) slot(slot Slot) *SlotRecord {
	if f := slotField(slot, &r.Current, &r.Next, &r.Previous); f != nil {
		return *f
	}
	return nil
}

func (r *StateRecord) setSlot(slot Slot, v *SlotRecord) {
	if f := slotField(slot, &r.Current, &r.Next, &r.Previous); f != nil {
		*f = v
	}
}

// StateFromSecretData decodes the CA Secret layout. A state record of a newer
// format version is refused first, with an error wrapping ErrNewerFormat;
// other errors wrap ErrInvalidCA and name the offending key. They never
// include key material.
func StateFromSecretData(data map[string][]byte) (*State, error) {
	if js, ok := data[KeyState]; ok {
		if err := checkFormat(js); err != nil {
			return nil, err
		}
	}
	st := &State{}
	for _, slot := range Slots {
		c, err := slotFromData(data, slot)
		if err != nil {
			return nil, err
		}
		st.set(slot, c)
	}
	if st.Current == nil {
		var keys []string
		for k := range data {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		return nil, fmt.Errorf("%w: no current CA (keys present: %s)", ErrInvalidCA, strings.Join(keys, ", "))
	}
	if js, ok := data[KeyState]; ok {
		if err := json.Unmarshal(js, &st.Record); err != nil {
			return nil, fmt.Errorf("%w: key %s: %w", ErrInvalidCA, KeyState, err)
		}
	}
	st.Record.Version = StateRecordVersion
	for _, slot := range Slots {
		c, r := st.Get(slot), st.Record.slot(slot)
		switch {
		case c == nil && r != nil:
			return nil, fmt.Errorf("%w: key %s records a %s CA that the Secret does not hold", ErrInvalidCA, KeyState, slot)
		case c != nil && r == nil:
			st.Record.setSlot(slot, &SlotRecord{Fingerprint: c.Fingerprint()})
		case c != nil && r.Fingerprint != c.Fingerprint():
			return nil, fmt.Errorf("%w: key %s records %s CA %s but the Secret holds %s", ErrInvalidCA, KeyState, slot, r.Fingerprint, c.Fingerprint())
		}
	}
	return st, nil
}

func slotFromData(data map[string][]byte, slot Slot) (*CA, error) {
	rootCrt, rootKey, intCrt, intKey := SlotKeys(slot)
	c, err := caFromKeys(data, rootCrt, rootKey, intCrt, intKey)
	if err != nil {
		return nil, fmt.Errorf("%s CA: %w", slot, err)
	}
	return c, nil
}

// caFromKeys parses a CA from four entries of data (Secret keys or file
// names); it returns nil, nil when none is present. Errors name the entry.
func caFromKeys(data map[string][]byte, rootCrt, rootKey, intCrt, intKey string) (*CA, error) {
	present := 0
	for _, k := range []string{rootCrt, rootKey, intCrt, intKey} {
		if _, ok := data[k]; ok {
			present++
		}
	}
	if present == 0 {
		return nil, nil
	}
	for _, k := range []string{rootCrt, intCrt, intKey} {
		if len(data[k]) == 0 {
			return nil, fmt.Errorf("%w: %s missing or empty", ErrInvalidCA, k)
		}
	}
	roots, err := ParseCertificatesPEM(data[rootCrt])
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrInvalidCA, rootCrt, err)
	}
	if len(roots) != 1 {
		return nil, fmt.Errorf("%w: %s holds %d certificates, want 1", ErrInvalidCA, rootCrt, len(roots))
	}
	chain, err := ParseCertificatesPEM(data[intCrt])
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrInvalidCA, intCrt, err)
	}
	key, err := ParsePrivateKeyPEM(data[intKey])
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrInvalidCA, intKey, err)
	}
	var rk crypto.Signer
	if len(data[rootKey]) > 0 {
		if rk, err = ParsePrivateKeyPEM(data[rootKey]); err != nil {
			return nil, fmt.Errorf("%w: %s: %w", ErrInvalidCA, rootKey, err)
		}
	} else if isSelfSigned(chain[0]) {
		rk = key
	}
	c, err := newFromParts(roots, chain, key, rk)
	if err != nil {
		return nil, fmt.Errorf("%s, %s, %s: %w", rootCrt, intCrt, intKey, err)
	}
	if !sameCert(c.Root, roots[0]) {
		return nil, fmt.Errorf("%w: %s is not the root of %s", ErrInvalidCA, rootCrt, intCrt)
	}
	return c, nil
}
