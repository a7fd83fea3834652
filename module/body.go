package module

import (
	"errors"
	"io"
	"net/http"
	"sync"
)

var errBodyTooLarge = errors.New("request body too large")

// pooledBody is the largest buffer kept for reuse, in bytes; larger bodies
// get a buffer of their own, left to the garbage collector.
const pooledBody = 64 << 10

var bodyPool = sync.Pool{New: func() any { b := make([]byte, 0, 8<<10); return &b }}

// readBody reads the whole request body, byte for byte, into a pooled
// buffer, failing with errBodyTooLarge as soon as it exceeds limit bytes.
// The body is *buf; give buf back with releaseBody once nothing refers to
// the body any more.
func readBody(r *http.Request, limit int64) (*[]byte, error) {
	bp := bodyPool.Get().(*[]byte)
	buf := (*bp)[:0]
	if r.ContentLength > int64(cap(buf)) && r.ContentLength <= limit {
		buf = make([]byte, 0, r.ContentLength+1) // +1: EOF is seen without growing
	}
	defer func() { *bp = buf }()
	if r.Body == nil || r.Body == http.NoBody {
		return bp, nil
	}
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := r.Body.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if int64(len(buf)) > limit {
			return bp, errBodyTooLarge
		}
		switch {
		case errors.Is(err, io.EOF):
			return bp, nil
		case err != nil:
			return bp, err
		}
	}
}

// releaseBody gives a buffer from readBody back to the pool.
func releaseBody(bp *[]byte) {
	if cap(*bp) <= pooledBody {
		*bp = (*bp)[:0]
		bodyPool.Put(bp)
	}
}
