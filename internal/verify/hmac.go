package verify

import (
	"crypto/hmac"
	"crypto/sha1"
	"crypto/sha256"
	"hash"
	"sync"

	"github.com/codemie-edge/caddy-webhooks/internal/integration"
)

// blockSize is the block size of SHA-1 and SHA-256, in bytes.
const blockSize = 64

// mac computes HMACs (RFC 2104) over one hash function with pooled state,
// so that checking a signature allocates nothing.
type mac struct {
	pool sync.Pool // of *macState
}

// macState is one computation's hash and buffers; kept on the heap by the
// pool, so passing its arrays to the hash does not allocate.
type macState struct {
	h     hash.Hash
	key   [blockSize]byte
	pad   [blockSize]byte
	inner [blockSize]byte
	outer [blockSize]byte
}

func newMAC(newHash func() hash.Hash) *mac {
	return &mac{pool: sync.Pool{New: func() any { return &macState{h: newHash()} }}}
}

var (
	hmacSHA256 = newMAC(sha256.New)
	hmacSHA1   = newMAC(sha1.New)
)

// matchAny reports whether any of sums is the HMAC, under any of keys, of
// the concatenation of parts. Every key and every sum is tried, so the time
// taken does not say which matched.
func (m *mac) matchAny(keys integration.Secrets, sums [][]byte, parts ...[]byte) bool {
	s := m.pool.Get().(*macState)
	defer m.pool.Put(s)
	ok := false
	for _, key := range keys {
		got := s.compute(key, parts...)
		for _, sum := range sums {
			ok = hmac.Equal(got, sum) || ok
		}
	}
	return ok
}

// compute returns the HMAC of the concatenation of parts under key, in the
// state's own buffer.
func (s *macState) compute(key []byte, parts ...[]byte) []byte {
	h := s.h
	s.key = [blockSize]byte{}
	if len(key) > blockSize {
		h.Reset()
		h.Write(key)
		h.Sum(s.key[:0])
	} else {
		copy(s.key[:], key)
	}

	for i := range s.pad {
		s.pad[i] = s.key[i] ^ 0x36
	}
	h.Reset()
	h.Write(s.pad[:])
	for _, p := range parts {
		h.Write(p)
	}
	inner := h.Sum(s.inner[:0])

	for i := range s.pad {
		s.pad[i] = s.key[i] ^ 0x5c
	}
	h.Reset()
	h.Write(s.pad[:])
	h.Write(inner)
	return h.Sum(s.outer[:0])
}
