package body

import (
	"errors"
	"io"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/codemie-edge/caddy-webhooks/internal/testenv"
)

func TestRead(t *testing.T) {
	for _, tc := range []struct {
		name          string
		limit, budget int64
		body          string
		want          error
	}{
		{"fits", 100, 1 << 20, strings.Repeat("x", 100), nil},
		{"empty", 100, 1 << 20, "", nil},
		{"one byte over the limit", 100, 1 << 20, strings.Repeat("x", 101), ErrTooLarge},
		{"over the budget", 1 << 20, 4096, strings.Repeat("x", 8192), ErrBudget},
		{"within the budget, buffers doubled", 1 << 20, 16384, strings.Repeat("x", 8192), nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := NewReader(tc.limit, tc.budget, 0)
			req := httptest.NewRequest("POST", "/", strings.NewReader(tc.body))
			bp, err := r.Read(httptest.NewRecorder(), req, "w")
			if !errors.Is(err, tc.want) {
				t.Fatalf("Read: %v, want %v", err, tc.want)
			}
			if err == nil && string(bp.Bytes) != tc.body {
				t.Errorf("read %d bytes, want %d", len(bp.Bytes), len(tc.body))
			}
			if bytes, _ := InFlight(); bytes <= 0 && err == nil && tc.body != "" {
				t.Errorf("a held body takes %d bytes of the budget", bytes)
			}
			r.Release(bp)
			if r.used.Load() != 0 {
				t.Errorf("after Release, %d bytes of the budget are still taken", r.used.Load())
			}
		})
	}
}

// TestBudgetTakenAsBytesArrive: a body takes its share of the budget as
// its bytes arrive, not before: idle requests (HTTP/2 streams whose body
// never comes, 32,768 of them filled 256 MiB) take none of it, and a body
// that arrives beside them is read. A body's buffer grows with its bytes,
// and the budget counts the buffer: a byte holds firstBuffer, not 8 KiB.
func TestBudgetTakenAsBytesArrive(t *testing.T) {
	const kib8 = 8 << 10
	r := NewReader(1<<20, 4*kib8, 0)
	var idle []*io.PipeWriter
	done := make(chan *Body, 16)
	_, before := InFlight()
	for range 16 {
		pr, pw := io.Pipe()
		idle = append(idle, pw)
		go func() {
			bd, _ := r.Read(httptest.NewRecorder(), httptest.NewRequest("POST", "/", pr), "w")
			done <- bd
		}()
	}
	testenv.Eventually(t, "the 16 reads to start", func() bool { _, n := InFlight(); return n >= before+16 })
	if used := r.used.Load(); used != 0 {
		t.Errorf("16 bodies without a byte take %d bytes of the budget, want 0", used)
	}
	bd, err := r.Read(httptest.NewRecorder(), httptest.NewRequest("POST", "/", strings.NewReader(strings.Repeat("x", 3*kib8))), "w")
	if err != nil || len(bd.Bytes) != 3*kib8 {
		t.Errorf("a body beside idle ones: %d bytes, %v", len(bd.Bytes), err)
	}
	r.Release(bd)
	// A byte each: each holds its first buffer, and takes all of it.
	for _, pw := range idle {
		_, _ = pw.Write([]byte("a"))
	}
	testenv.Eventually(t, "the first bytes to take their buffers", func() bool { return r.used.Load() == 16*firstBuffer })
	for _, pw := range idle {
		_, _ = pw.Write([]byte("bc"))
		pw.Close()
	}
	for range 16 {
		r.Release(<-done)
	}
	if used := r.used.Load(); used != 0 {
		t.Errorf("after Release, %d bytes of the budget are still taken", used)
	}
}

// TestShareOfOneWebhook: the bodies of one webhook hold at most half the
// budget (here 32 KiB of 64: four bodies of 8 KiB buffers); the fifth
// is refused while another webhook's body is read, and Release gives
// each webhook's part back.
func TestShareOfOneWebhook(t *testing.T) {
	const kib8 = 8 << 10
	r := NewReader(kib8, 8*kib8, 0)
	if r.share != 4*kib8 {
		t.Fatalf("share %d, want %d", r.share, 4*kib8)
	}
	read := func(owner string, body io.Reader) (*Body, error) {
		return r.Read(httptest.NewRecorder(), httptest.NewRequest("POST", "/", body), owner)
	}
	type result struct {
		bd  *Body
		err error
	}
	done := make(chan result, 5)
	var open []*io.PipeWriter
	for range 5 {
		pr, pw := io.Pipe()
		open = append(open, pw)
		go func() { bd, err := read("noisy", pr); done <- result{bd, err} }()
	}
	for i, pw := range open[:4] {
		if _, err := pw.Write([]byte(strings.Repeat("x", 8000))); err != nil {
			t.Fatalf("body %d: %v", i, err)
		}
	}
	testenv.Eventually(t, "four bodies to hold their buffers", func() bool { return r.used.Load() == 4*kib8 })
	// The fifth would go past the share: refused at its first bytes.
	go func() { _, _ = open[4].Write([]byte(strings.Repeat("x", 8000))) }()
	refused := <-done
	if !errors.Is(refused.err, ErrBudget) {
		t.Fatalf("a fifth body of the same webhook: %v, want ErrBudget", refused.err)
	}
	r.Release(refused.bd)
	quiet, err := read("quiet", strings.NewReader(strings.Repeat("y", 8000)))
	if err != nil || len(quiet.Bytes) != 8000 {
		t.Fatalf("another webhook's body beside them: %d bytes, %v", len(quiet.Bytes), err)
	}
	r.Release(quiet)
	open[4].CloseWithError(io.ErrUnexpectedEOF)
	for _, pw := range open[:4] {
		pw.Close()
	}
	for range 4 {
		got := <-done
		if got.err != nil {
			t.Errorf("a body within the share: %v", got.err)
		}
		r.Release(got.bd)
	}
	if used, owned := r.used.Load(), len(r.owned); used != 0 || owned != 0 {
		t.Errorf("after Release: %d bytes of the budget taken, %d webhooks holding a share", used, owned)
	}
}

// TestBufferClasses: buffers of firstBuffer to pooledBody bytes, each
// power of two, come from a pool; larger ones do not.
func TestBufferClasses(t *testing.T) {
	for _, tc := range []struct {
		n           int64
		class, size int
	}{{1, 0, firstBuffer}, {firstBuffer, 0, firstBuffer}, {firstBuffer + 1, 1, 2 * firstBuffer},
		{pooledBody, 7, pooledBody}, {pooledBody + 1, -1, pooledBody + 1}} {
		if c, size := class(tc.n), capacity(tc.n); c != tc.class || size != int64(tc.size) {
			t.Errorf("%d bytes: class %d, capacity %d; want %d, %d", tc.n, c, size, tc.class, tc.size)
		}
	}
}
