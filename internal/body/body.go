// Package body reads webhook request bodies within four bounds: the most
// bytes of one body, the most bytes of all the bodies read or held at
// once (a shared memory budget), the most of that budget one webhook's
// bodies hold, and the time to receive one. A body costs memory only as
// its bytes arrive, whatever Content-Length announces.
package body

import (
	"errors"
	"io"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// Why a body could not be read.
var (
	// ErrTooLarge says the body exceeds the limit.
	ErrTooLarge = errors.New("request body too large")
	// ErrBudget says the bodies in flight use up the memory budget.
	ErrBudget = errors.New("request bodies in flight use up their memory budget")
	// ErrTimeout says the body was not received in time.
	ErrTimeout = errors.New("request body not received within body_timeout")
)

// pooledBody is the largest buffer kept for reuse, in bytes; larger bodies
// get a buffer of their own, left to the garbage collector.
const pooledBody = 64 << 10

// firstBuffer is the capacity a body's buffer starts with, in bytes; it
// doubles as the bytes arrive, so that a body holds at most twice what
// its sender sent (and the budget counts what it holds).
const firstBuffer = 512

// FirstByteTimeout bounds the wait for a body's first byte, within the
// body timeout: senders send the body right after the headers, and a
// request whose body does not come holds a connection's stream and a
// buffer until it times out (thousands of idle HTTP/2 streams took
// gigabytes in 10 s).
const FirstByteTimeout = 2 * time.Second

// Body is a request body, read into a buffer, and the share of the budget
// it holds.
type Body struct {
	// Bytes is the body.
	Bytes []byte
	// buf is the buffer Bytes is read into.
	buf *[]byte
	// held is the budget it takes: its buffer's whole capacity, from the
	// first byte on (nothing before it).
	held int64
	// owner is the webhook whose share held counts in.
	owner string
}

var bodyPool = sync.Pool{New: func() any { return new(Body) }}

// buffers are pools of buffers of firstBuffer bytes, then of each power of
// two up to pooledBody.
var buffers [8]sync.Pool

// class is the index in buffers of the smallest buffer of at least n
// bytes; -1 past pooledBody.
func class(n int64) int {
	for i := range buffers {
		if n <= firstBuffer<<i {
			return i
		}
	}
	return -1
}

// capacity is the capacity of a buffer got for n bytes.
func capacity(n int64) int64 {
	if i := class(n); i >= 0 {
		return firstBuffer << i
	}
	return n
}

// getBuffer returns an empty buffer of capacity(n).
func getBuffer(n int64) *[]byte {
	i := class(n)
	if i < 0 {
		b := make([]byte, 0, n)
		return &b
	}
	if b, ok := buffers[i].Get().(*[]byte); ok {
		return b
	}
	b := make([]byte, 0, firstBuffer<<i)
	return &b
}

// putBuffer gives b back to its pool, if it has one.
func putBuffer(b *[]byte) {
	if i := class(int64(cap(*b))); i >= 0 && cap(*b) == firstBuffer<<i {
		*b = (*b)[:0]
		buffers[i].Put(b)
	}
}

// Reader reads request bodies. The bodies being read or held at once stay
// within one budget: a flood of large or slow bodies is refused instead of
// growing the heap. A body takes its part as its bytes arrive, not
// before: a request whose body does not come (thousands of idle HTTP/2
// streams) takes none of it. The bodies of one webhook hold at most a
// share of the budget, so that a flood sent to one webhook (well-formed
// signatures, wrong ones: the body is read before that is known) leaves
// the others the rest of it.
type Reader struct {
	limit   int64         // the most bytes of one body (max_body)
	budget  int64         // the most bytes of buffers held at once (max_bodies_in_flight)
	share   int64         // the most of them one webhook's bodies hold
	timeout time.Duration // how long reading one body may take (body_timeout)
	used    atomic.Int64  // bytes of buffers held now

	mu    sync.Mutex
	owned map[string]int64 // bytes held now per webhook, for those holding any
}

// NewReader returns a Reader of bodies of at most limit bytes, all of them
// together within budget bytes, each received within timeout (0: none).
// One webhook's bodies hold at most half the budget, or one body of limit
// bytes if that is more.
func NewReader(limit, budget int64, timeout time.Duration) *Reader {
	return &Reader{limit: limit, budget: budget, timeout: timeout,
		share: max(budget/2, capacity(limit+1)), owned: map[string]int64{}}
}

// InFlight returns the bytes and the number of the bodies that every
// Reader holds now, for the gauges.
func InFlight() (bytes, count int64) { return bodyBytes.Load(), bodyCount.Load() }

// take adds n bytes of the budget to what bd holds; false when they are
// not there, in the budget or in the share of bd's webhook.
func (b *Reader) take(bd *Body, n int64) bool {
	if b.used.Add(n) > b.budget {
		b.used.Add(-n)
		return false
	}
	b.mu.Lock()
	owned := b.owned[bd.owner] + n
	if owned > b.share {
		b.mu.Unlock()
		b.used.Add(-n)
		return false
	}
	b.owned[bd.owner] = owned
	b.mu.Unlock()
	bodyBytes.Add(n)
	bd.held += n
	return true
}

// giveBack returns what bd holds to the budget and to its webhook's share.
func (b *Reader) giveBack(bd *Body) {
	if bd.held == 0 {
		return
	}
	b.mu.Lock()
	if owned := b.owned[bd.owner] - bd.held; owned > 0 {
		b.owned[bd.owner] = owned
	} else {
		delete(b.owned, bd.owner)
	}
	b.mu.Unlock()
	b.used.Add(-bd.held)
	bodyBytes.Add(-bd.held)
}

// bodyBytes and bodyCount are the bytes and number of bodies held by every
// Reader, for the gauges (read when scraped).
var bodyBytes, bodyCount atomic.Int64

// Read reads the whole request body of a request to webhook owner, byte
// for byte, into a pooled buffer
// that grows as bytes arrive, within the body_timeout, its first byte
// within FirstByteTimeout. It fails with
// ErrTooLarge as soon as the body exceeds the limit, ErrBudget
// when its bytes would exceed the budget or owner's share, and ErrTimeout
// when the sender is too slow. Give the Body back with Release once
// nothing refers to its bytes any more, whatever Read returned.
func (b *Reader) Read(w http.ResponseWriter, r *http.Request, owner string) (bd *Body, err error) {
	bd = bodyPool.Get().(*Body)
	bd.owner = owner
	bodyCount.Add(1)
	if r.Body == nil || r.Body == http.NoBody {
		return bd, nil
	}
	// The most the buffer needs: the announced length (+1 so that EOF is
	// seen without growing), or the limit (+1 to see it exceeded).
	want := b.limit + 1
	if r.ContentLength >= 0 && r.ContentLength < b.limit {
		want = r.ContentLength + 1
	}
	var (
		rc      = http.NewResponseController(w)
		started = time.Now()
		waiting = false // for the first byte, within FirstByteTimeout
	)
	if b.timeout > 0 && rc.SetReadDeadline(started.Add(min(b.timeout, FirstByteTimeout))) == nil {
		waiting = b.timeout > FirstByteTimeout
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
	bd.buf = getBuffer(firstBuffer)
	buf := *bd.buf
	defer func() { bd.Bytes = buf }()
	for {
		if len(buf) == cap(buf) {
			if buf, err = b.grow(bd, buf, want); err != nil {
				return bd, err
			}
		}
		n, rerr := r.Body.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if waiting && n > 0 {
			waiting = false
			_ = rc.SetReadDeadline(started.Add(b.timeout))
		}
		switch {
		case n > 0 && int64(cap(buf)) > bd.held && !b.take(bd, int64(cap(buf))-bd.held):
			return bd, ErrBudget
		case int64(len(buf)) > b.limit:
			return bd, ErrTooLarge
		case errors.Is(rerr, io.EOF):
			return bd, nil
		case errors.Is(rerr, os.ErrDeadlineExceeded):
			return bd, ErrTimeout
		case rerr != nil:
			return bd, rerr
		}
	}
}

// grow doubles buf's capacity, up to want, once the budget has room for
// the whole new buffer.
func (b *Reader) grow(bd *Body, buf []byte, want int64) ([]byte, error) {
	size := capacity(min(2*int64(cap(buf)), max(want, int64(cap(buf))+1)))
	if !b.take(bd, size-bd.held) {
		return buf, ErrBudget
	}
	grown := getBuffer(size)
	*grown = append(*grown, buf...)
	putBuffer(bd.buf)
	bd.buf = grown
	return *grown, nil
}

// Release gives back a Body from Read, and its share of the budget.
func (b *Reader) Release(bd *Body) {
	b.giveBack(bd)
	bodyCount.Add(-1)
	if bd.buf != nil {
		putBuffer(bd.buf)
	}
	*bd = Body{}
	bodyPool.Put(bd)
}
