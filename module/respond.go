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

// writeDetail writes a FastAPI-style error body: {"detail":"<msg>"}.
func writeDetail(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, "detail", msg)
}

// writeNotFound answers an unknown or disabled webhook, with the same body
// for both so that ids cannot be probed.
func writeNotFound(w http.ResponseWriter, id string) {
	writeDetail(w, http.StatusBadRequest, "Webhook with ID '"+id+"' not found or not enabled")
}

func writeJSON(w http.ResponseWriter, status int, key, msg string) {
	body, _ := json.Marshal(map[string]string{key: msg})
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_, _ = w.Write(body)
}
