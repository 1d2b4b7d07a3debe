package ca_test

import (
	"bytes"
	"encoding/pem"
	"math/rand/v2"
	"testing"

	"github.com/meshca/meshca/ca"
)

// TestAppendPEMMatchesEncodingPEM checks AppendPEM against encoding/pem
// for every length around the line and base64 group boundaries, and keeps
// what was already in dst.
func TestAppendPEMMatchesEncodingPEM(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for n := 0; n <= 400; n++ {
		der := make([]byte, n)
		for i := range der {
			der[i] = byte(r.Uint32())
		}
		want := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
		if got := ca.AppendPEM(nil, "CERTIFICATE", der); !bytes.Equal(got, want) {
			t.Fatalf("%d bytes: got\n%s\nwant\n%s", n, got, want)
		}
		if got := ca.PEMLen("CERTIFICATE", n); got != len(want) {
			t.Fatalf("%d bytes: PEMLen %d, want %d", n, got, len(want))
		}
		prefix := []byte("prefix\n")
		roomy := append(make([]byte, 0, 2048), prefix...)
		got := ca.AppendPEM(roomy, "PRIVATE KEY", der)
		if want := append(append([]byte{}, prefix...), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})...); !bytes.Equal(got, want) {
			t.Fatalf("%d bytes after a prefix: got\n%s\nwant\n%s", n, got, want)
		}
	}
}

func BenchmarkAppendPEM(b *testing.B) {
	der := make([]byte, 700)
	b.Run("encoding/pem", func(b *testing.B) {
		for b.Loop() {
			pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
		}
	})
	b.Run("AppendPEM", func(b *testing.B) {
		for b.Loop() {
			ca.AppendPEM(nil, "CERTIFICATE", der)
		}
	})
}
