package module

import (
	"io"
	"net/http"
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

// closeUntilRead marks any answer to r given before its body is read to
// its end to close the connection, when r is HTTP/1 and has a body:
// otherwise the server would first read what is left of the body, as
// slowly as the sender sends it. bodyRead takes the mark off once it has
// been read. HTTP/2 resets the stream of an unread body on its own; a
// Connection header there would close the connection, and every other
// stream on it.
func closeUntilRead(w http.ResponseWriter, r *http.Request) {
	if r.ContentLength != 0 && r.ProtoMajor == 1 {
		w.Header()["Connection"] = closeConnection
	}
}

// unreadGrace is how long net/http may go on reading a body left unread by
// an answer, after the answer: it reads up to 256 KiB of it so that a
// sender still sending at full speed reads the answer (closing with
// unread bytes resets the connection, and the reset drops the answer on
// the sender's side too). Go's own wait for the same purpose, before it
// closes a connection with more than that unread, is 500 ms.
const unreadGrace = time.Second

// stopReadingUnread bounds the reading of a body left unread by an answer
// closeUntilRead marked to unreadGrace: net/http reads up to 256 KiB of it
// before it closes the connection, under no deadline but ours, so a
// sender refused before its body could hold the connection as long as it
// trickled (or sent nothing).
func stopReadingUnread(w http.ResponseWriter) {
	if _, marked := w.Header()["Connection"]; marked {
		_ = http.NewResponseController(w).SetReadDeadline(time.Now().Add(unreadGrace))
	}
}

// bodyRead takes off the mark of closeUntilRead, if any: the connection is
// kept.
func bodyRead(w http.ResponseWriter) { delete(w.Header(), "Connection") }

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
