package stepca

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/smallstep/certificates/authority/provisioner"
	stepclient "github.com/smallstep/certificates/ca"
	"go.step.sm/crypto/jose"
)

// provisionerKey returns the provisioner's private key: the configured one,
// or the encrypted one step-ca publishes, fetched and decrypted once. A
// failed fetch is retried by the next call.
func (s *Signer) provisionerKey(ctx context.Context) (*jose.JSONWebKey, error) {
	s.keyMu.Lock()
	defer s.keyMu.Unlock()
	if s.key != nil {
		return s.key, nil
	}
	var (
		cursor string
		found  bool
	)
	for {
		resp, err := s.client.ProvisionersWithContext(ctx, stepclient.WithProvisionerCursor(cursor), stepclient.WithProvisionerLimit(100))
		if err != nil {
			return nil, fmt.Errorf("%w: list step-ca's provisioners: %w", ErrProvisionerKey, err)
		}
		for _, p := range resp.Provisioners {
			if p.GetName() != s.cfg.Provisioner || p.GetType() != provisioner.TypeJWK {
				continue
			}
			_, encrypted, ok := p.GetEncryptedKey()
			if !ok {
				continue
			}
			found = true
			if key, err := parseKey([]byte(encrypted), s.cfg.ProvisionerPassword); err == nil {
				s.key = key
				return key, nil
			}
		}
		if resp.NextCursor == "" {
			break
		}
		cursor = resp.NextCursor
	}
	if found {
		return nil, fmt.Errorf("%w: JWK provisioner %q: the configured password does not decrypt its key", ErrProvisionerKey, s.cfg.Provisioner)
	}
	return nil, fmt.Errorf("%w: step-ca has no JWK provisioner %q with an encrypted key", ErrProvisionerKey, s.cfg.Provisioner)
}

// parseKey reads a private JWK, decrypting it with password if it is a JWE.
func parseKey(data, password []byte) (*jose.JSONWebKey, error) {
	if enc, err := jose.ParseEncrypted(string(data)); err == nil {
		if len(password) == 0 {
			return nil, fmt.Errorf("%w: the key is encrypted and no password is configured", ErrProvisionerKey)
		}
		if data, err = enc.Decrypt(password); err != nil {
			return nil, fmt.Errorf("%w: the configured password does not decrypt the key", ErrProvisionerKey)
		}
	}
	key := new(jose.JSONWebKey)
	if err := json.Unmarshal(data, key); err != nil {
		return nil, fmt.Errorf("%w: not a JWK", ErrProvisionerKey)
	}
	switch {
	case key.IsPublic():
		return nil, fmt.Errorf("%w: a public key, not the private one", ErrProvisionerKey)
	case key.KeyID == "" || key.Algorithm == "":
		return nil, fmt.Errorf("%w: the key has no kid or alg", ErrProvisionerKey)
	}
	return key, nil
}
