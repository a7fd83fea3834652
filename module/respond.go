package module

import (
	"io"
	"net/http"
	"strings"
	"time"

	answers "github.com/codemie-edge/caddy-webhooks/internal/answer"
)

// Header values shared by every answer; never modified.
var (
	jsonContentType = []string{"application/json"}
	textContentType = []string{"text/plain; charset=utf-8"}
	noSniff         = []string{"nosniff"}
	closeConnection = []string{"close"}
)

// writeAnswer answers a.status with text as JSON: answer.Body.
func writeAnswer(w http.ResponseWriter, a answer, text string) answer {
	h := w.Header()
	h["Content-Type"] = jsonContentType
	h["X-Content-Type-Options"] = noSniff
	w.WriteHeader(a.status)
	_, _ = w.Write(answers.Body(a.status, text))
	return a
}

// unreadGrace is how long net/http may go on reading a body an answer
// left unread. Before it writes the answer, it reads up to 256 KiB of
// what is left, so that the connection can be kept and a sender still
// sending at full speed reads the answer; with more left, it answers, then
// closes the connection gracefully (it stops writing, and waits 500 ms
// before it drops what is still coming). That read has no deadline of its
// own: a sender refused before its body (an unknown id, a signature
// missing) could hold the connection as long as it trickled the rest.
const unreadGrace = time.Second

// bodyUnread gives net/http unreadGrace to read what is left of r's body,
// when an answer is given before it has been read to its end (HTTP/1; an
// HTTP/2 stream is reset on its own). Past it, the connection is closed.
//
// A Connection: close on the answer would not do: net/http then reads
// nothing before answering, and, with Caddy's reader around the body, it
// no longer sees the body was left unread, so it closes at once with the
// rest still coming, which resets the connection, and the reset drops the
// answer on the sender's side.
//
// A request that says Connection: close itself is read here, as net/http
// reads nothing of it before it closes the connection.
func bodyUnread(w http.ResponseWriter, r *http.Request) {
	if r.ContentLength == 0 || r.ProtoMajor != 1 {
		return
	}
	_ = http.NewResponseController(w).SetReadDeadline(time.Now().Add(unreadGrace))
	if r.Close {
		_, _ = io.CopyN(io.Discard, r.Body, maxUnread)
	}
}

// awaitsContinue reports whether r's sender waits for 100 Continue
// before it sends its body (Expect: 100-continue, HTTP/1.1). Reading the
// body sends it; an answer before that gets no body, and is marked to
// close the connection (closeConnection): net/http would otherwise wait,
// to read the body, for the sender's own timeout (Caddy's reader around
// the body hides the waiting from it), then race it and reset.
func awaitsContinue(r *http.Request) bool {
	return r.ProtoMajor == 1 && r.ContentLength != 0 && strings.EqualFold(r.Header.Get("Expect"), "100-continue")
}

// maxUnread is what net/http reads of a body left unread (its
// maxPostHandlerReadBytes), in bytes: past it, it closes the connection
// without reading more.
const maxUnread = 256 << 10

// writeNotFound answers an unknown or disabled webhook, with the same body
// for both so that ids cannot be probed.
func writeNotFound(w http.ResponseWriter, a answer) answer {
	return writeAnswer(w, a, answers.NotFound(a.id))
}

// writeText answers a.status with a handshake's token as text/plain.
func writeText(w http.ResponseWriter, a answer, text string) answer {
	h := w.Header()
	h["Content-Type"] = textContentType
	h["X-Content-Type-Options"] = noSniff
	w.WriteHeader(a.status)
	_, _ = io.WriteString(w, text)
	return a
}
