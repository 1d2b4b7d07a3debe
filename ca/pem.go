package ca

import "encoding/base64"

// pemLineLength is the base64 characters per line, as encoding/pem writes.
const pemLineLength = 64

// AppendPEM appends one PEM block without headers to dst, byte for byte
// what pem.EncodeToMemory writes for it. It encodes straight into dst
// instead of through encoding/pem's line-breaking writer, which is a
// measurable share of an issuance (two blocks per certificate).
func AppendPEM(dst []byte, typ string, der []byte) []byte {
	n := base64.StdEncoding.EncodedLen(len(der))
	lines := (n + pemLineLength - 1) / pemLineLength
	if need := PEMLen(typ, len(der)); cap(dst)-len(dst) < need {
		grown := make([]byte, len(dst), len(dst)+need)
		copy(grown, dst)
		dst = grown
	}
	dst = append(append(append(dst, "-----BEGIN "...), typ...), "-----\n"...)
	// Encode into the tail of the room reserved for the body, then move the
	// lines forward into place, so no second buffer is needed.
	start := len(dst)
	body := dst[start : start+n+lines]
	base64.StdEncoding.Encode(body[lines:], der)
	for i, off := 0, lines; off < lines+n; i++ {
		end := min(off+pemLineLength, lines+n)
		copy(body[off-lines+i:], body[off:end])
		body[end-lines+i] = '\n'
		off = end
	}
	dst = dst[:start+n+lines]
	return append(append(append(dst, "-----END "...), typ...), "-----\n"...)
}

// PEMLen is the length of the PEM block without headers that AppendPEM
// writes for typ and n bytes of DER, for callers that size a buffer.
func PEMLen(typ string, n int) int {
	b64 := base64.StdEncoding.EncodedLen(n)
	lines := (b64 + pemLineLength - 1) / pemLineLength
	return len("-----BEGIN -----\n") + len("-----END -----\n") + 2*len(typ) + b64 + lines
}
