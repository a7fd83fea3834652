// Package seal encrypts secret values at rest: "enc:v1:" followed by the
// base64 of a random nonce and the AES-256-GCM ciphertext, with the webhook
// id as associated data, so that a value cannot be moved to another webhook.
package seal

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
)

// Prefix marks an encrypted value.
const Prefix = "enc:v1:"

// KeySize is the size of a key, in bytes.
const KeySize = 32

// ErrNoKey says a value is encrypted but no key is configured.
var ErrNoKey = errors.New("the value is encrypted and no secrets key is configured")

// ErrOpen says no configured key opens the value: a wrong key, a value
// tampered with, or one moved from another webhook.
var ErrOpen = errors.New("the value cannot be decrypted with the configured keys (wrong key, tampered, or from another webhook)")

// Keys seal with the first key and open with any of them, so that an older
// key can still be read while values are re-encrypted with a new one.
type Keys struct {
	aeads []cipher.AEAD
}

// ParseKeys reads base64 keys of KeySize bytes; the first seals. Empty
// strings are skipped; no keys at all gives nil, which opens only plain
// values.
func ParseKeys(encoded ...string) (*Keys, error) {
	var k Keys
	for i, e := range encoded {
		if e == "" {
			continue
		}
		raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(e))
		if err != nil || len(raw) != KeySize {
			return nil, fmt.Errorf("secrets key %d: want %d bytes in base64 (openssl rand -base64 32)", i+1, KeySize)
		}
		block, err := aes.NewCipher(raw)
		if err != nil {
			return nil, fmt.Errorf("secrets key %d: %v", i+1, err)
		}
		aead, err := cipher.NewGCM(block)
		if err != nil {
			return nil, fmt.Errorf("secrets key %d: %v", i+1, err)
		}
		k.aeads = append(k.aeads, aead)
	}
	if len(k.aeads) == 0 {
		return nil, nil
	}
	return &k, nil
}

// Seal encrypts plaintext for webhook id with the first key.
func (k *Keys) Seal(id string, plaintext []byte) string {
	aead := k.aeads[0]
	nonce := make([]byte, aead.NonceSize(), aead.NonceSize()+len(plaintext)+aead.Overhead())
	if _, err := rand.Read(nonce); err != nil {
		panic(fmt.Sprintf("reading random bytes: %v", err)) // crypto/rand does not fail on supported platforms
	}
	return Prefix + base64.StdEncoding.EncodeToString(aead.Seal(nonce, nonce, plaintext, []byte(id)))
}

// Sealed reports whether a stored value is encrypted.
func Sealed(value string) bool { return strings.HasPrefix(value, Prefix) }

// Open returns the plaintext of a stored value of webhook id: a plain value
// as it is, an encrypted one decrypted with whichever key opens it.
func (k *Keys) Open(id, value string) ([]byte, error) {
	enc, ok := strings.CutPrefix(value, Prefix)
	if !ok {
		return []byte(value), nil
	}
	if k == nil {
		return nil, ErrNoKey
	}
	raw, err := base64.StdEncoding.DecodeString(enc)
	if err != nil {
		return nil, ErrOpen
	}
	for _, aead := range k.aeads {
		if len(raw) < aead.NonceSize() {
			return nil, ErrOpen
		}
		nonce, ct := raw[:aead.NonceSize()], raw[aead.NonceSize():]
		if pt, err := aead.Open(nil, nonce, ct, []byte(id)); err == nil {
			return pt, nil
		}
	}
	return nil, ErrOpen
}
