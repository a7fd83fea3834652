package module

import (
	"encoding/json"
	"io"
	"net/http"
)

// Response texts of the CodeMie backend (codemie-contract.md section 3),
// and of the edge's own answers.
const (
	msgFailed       = "Webhook processing failed"
	msgTooLarge     = "Request body too large"
	msgInvoked      = "Webhook invoked successfully"
	msgDuplicate    = "Duplicate delivery ignored"
	msgMethod       = "Method Not Allowed"
	msgBadID        = "Invalid webhook ID"
	msgBadBody      = "Could not read the request body"
	msgBodyBudget   = "Too many request bodies in flight, retry later"
	msgBodyTimeout  = "Request body not received in time"
	msgStoreDown    = "Webhook store unavailable, retry later"
	msgQueueFull    = "Webhook queue is full, retry later"
	msgQueueDown    = "Webhook queue unavailable, retry later"
	msgFilteredOut  = "Webhook received, event filtered out"
	msgPong         = "pong"
	msgInvalidSig   = "Invalid GitHub webhook signature"
	msgMissingSig   = "Missing GitHub webhook signature header"
	msgGitLabToken  = "Invalid GitLab token"
	msgSecureHeader = "Invalid security header"
)

// encoded holds the bodies of constant answers, encoded once: the answers
// on the hot paths cost no encoding.
var encoded = func() map[string]map[string][]byte {
	m := map[string]map[string][]byte{"detail": {}, "message": {}}
	for _, msg := range []string{msgFailed, msgTooLarge, msgMethod, msgBadID, msgBadBody, msgBodyBudget, msgBodyTimeout, msgStoreDown,
		msgQueueFull, msgQueueDown, msgInvalidSig, msgMissingSig, msgGitLabToken, msgSecureHeader} {
		m["detail"][msg] = encode("detail", msg)
	}
	for _, msg := range []string{msgInvoked, msgDuplicate, msgFilteredOut, msgPong} {
		m["message"][msg] = encode("message", msg)
	}
	return m
}()

func encode(key, msg string) []byte {
	b, _ := json.Marshal(map[string]string{key: msg})
	return b
}

// Header values shared by every answer; never modified.
var (
	jsonContentType = []string{"application/json"}
	textContentType = []string{"text/plain; charset=utf-8"}
	noSniff         = []string{"nosniff"}
)

// writeDetail answers a.status with a FastAPI-style error body:
// {"detail":"<msg>"}.
func writeDetail(w http.ResponseWriter, a answer, msg string) answer {
	writeJSON(w, a.status, "detail", msg)
	return a
}

// writeResult answers a.status with {"message":"<msg>"} for 2xx, and
// {"detail":"<msg>"} otherwise.
func writeResult(w http.ResponseWriter, a answer, msg string) answer {
	key := "detail"
	if a.status < 300 {
		key = "message"
	}
	writeJSON(w, a.status, key, msg)
	return a
}

// writeUnread answers a request whose body was not read to its end, and
// closes the connection: otherwise the server would first read what is
// left of the body, as slowly as the sender sends it.
func writeUnread(w http.ResponseWriter, a answer, msg string) answer {
	w.Header().Set("Connection", "close")
	return writeDetail(w, a, msg)
}

// writeNotFound answers an unknown or disabled webhook, with the same body
// for both so that ids cannot be probed.
func writeNotFound(w http.ResponseWriter, a answer) answer {
	return writeDetail(w, a, "Webhook with ID '"+a.id+"' not found or not enabled")
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

func writeJSON(w http.ResponseWriter, status int, key, msg string) {
	body, ok := encoded[key][msg]
	if !ok {
		body = encode(key, msg)
	}
	h := w.Header()
	h["Content-Type"] = jsonContentType
	h["X-Content-Type-Options"] = noSniff
	w.WriteHeader(status)
	_, _ = w.Write(body)
}
