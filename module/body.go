package module

import (
	"errors"
	"io"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

var (
	errBodyTooLarge = errors.New("request body too large")
	errBodyBudget   = errors.New("request bodies in flight use up their memory budget")
	errBodyTimeout  = errors.New("request body not received within body_timeout")
)

// pooledBody is the largest buffer kept for reuse, in bytes; larger bodies
// get a buffer of their own, left to the garbage collector.
const pooledBody = 64 << 10

// firstBody is the capacity a buffer starts with, in bytes.
const firstBody = 8 << 10

var bodyPool = sync.Pool{New: func() any { b := make([]byte, 0, firstBody); return &b }}

// bodies reads request bodies. A body costs memory only as its bytes
// arrive, whatever Content-Length announces, and the buffers of all the
// bodies being read or held at once stay within one budget: a flood of
// large or slow bodies is answered 503 instead of growing the heap.
type bodies struct {
	limit   int64         // the most bytes of one body (max_body)
	budget  int64         // the most bytes of buffers held at once (max_bodies_in_flight)
	timeout time.Duration // how long reading one body may take (body_timeout)
	used    atomic.Int64  // bytes of buffers held now
}

// reserve takes n bytes of the budget; false when they are not there.
func (b *bodies) reserve(n int64) bool {
	if b.used.Add(n) > b.budget {
		b.used.Add(-n)
		return false
	}
	bodyBytes.Add(n)
	return true
}

func (b *bodies) free(n int64) {
	b.used.Add(-n)
	bodyBytes.Add(-n)
}

// bodyBytes and bodyCount are the bytes and number of bodies held by every
// handler's bodies, for the gauges (read when scraped).
var bodyBytes, bodyCount atomic.Int64

// read reads the whole request body, byte for byte, into a pooled buffer
// that grows as bytes arrive, within the body_timeout. It fails with
// errBodyTooLarge as soon as the body exceeds the limit, errBodyBudget
// when growing the buffer would exceed the budget, and errBodyTimeout
// when the sender is too slow. The body is *bp; give bp back with release
// once nothing refers to the body any more, whatever read returned.
func (b *bodies) read(w http.ResponseWriter, r *http.Request) (bp *[]byte, err error) {
	bp = bodyPool.Get().(*[]byte)
	buf := (*bp)[:0]
	defer func() { *bp = buf }()
	if !b.reserve(int64(cap(buf))) {
		buf = nil
		return bp, errBodyBudget
	}
	bodyCount.Add(1)
	if r.Body == nil || r.Body == http.NoBody {
		return bp, nil
	}
	// The most the buffer needs: the announced length (+1 so that EOF is
	// seen without growing), or the limit (+1 to see it exceeded).
	want := b.limit + 1
	if r.ContentLength >= 0 && r.ContentLength < b.limit {
		want = r.ContentLength + 1
	}
	if b.timeout > 0 {
		rc := http.NewResponseController(w)
		if rc.SetReadDeadline(time.Now().Add(b.timeout)) == nil {
			// Once the body is read, the rest of this request has none of
			// our deadlines (the next request on the connection gets the
			// server's own). A body that failed keeps it: the server
			// must not wait without end for the rest of a refused body.
			defer func() {
				if err == nil {
					_ = rc.SetReadDeadline(time.Time{})
				}
			}()
		}
	}
	for {
		if len(buf) == cap(buf) {
			if buf, err = b.grow(buf, want); err != nil {
				return bp, err
			}
		}
		n, rerr := r.Body.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		switch {
		case int64(len(buf)) > b.limit:
			return bp, errBodyTooLarge
		case errors.Is(rerr, io.EOF):
			return bp, nil
		case errors.Is(rerr, os.ErrDeadlineExceeded):
			return bp, errBodyTimeout
		case rerr != nil:
			return bp, rerr
		}
	}
}

// grow doubles buf's capacity, up to want, once the budget has room for
// the difference.
func (b *bodies) grow(buf []byte, want int64) ([]byte, error) {
	size := min(max(2*int64(cap(buf)), firstBody), max(want, int64(cap(buf))+1))
	if !b.reserve(size - int64(cap(buf))) {
		return buf, errBodyBudget
	}
	grown := make([]byte, len(buf), size)
	copy(grown, buf)
	return grown, nil
}

// release gives back a buffer from read, and its share of the budget.
func (b *bodies) release(bp *[]byte) {
	if cap(*bp) == 0 {
		return // read could not reserve it
	}
	b.free(int64(cap(*bp)))
	bodyCount.Add(-1)
	if cap(*bp) <= pooledBody {
		*bp = (*bp)[:0]
		bodyPool.Put(bp)
	}
}
