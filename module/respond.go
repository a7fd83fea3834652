package module

import (
	"encoding/json"
	"net/http"
)

// Response texts of the CodeMie backend (codemie-contract.md section 3).
const (
	msgFailed   = "Webhook processing failed"
	msgTooLarge = "Request body too large"
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

// writeNotFound answers an unknown or disabled webhook, with the same body
// for both so that ids cannot be probed.
func writeNotFound(w http.ResponseWriter, a answer) answer {
	return writeDetail(w, a, "Webhook with ID '"+a.id+"' not found or not enabled")
}

func writeJSON(w http.ResponseWriter, status int, key, msg string) {
	body, _ := json.Marshal(map[string]string{key: msg})
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_, _ = w.Write(body)
}
