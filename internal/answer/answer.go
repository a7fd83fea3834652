// Package answer holds every text the edge answers a sender with, the
// CodeMie backend's (docs/codemie-api.md section 3, "Answers") and the
// edge's own, and their JSON bodies: {"message":...} for a success,
// {"detail":...} otherwise, as the backend's FastAPI answers. It is the one
// home of those texts.
package answer

import (
	"encoding/json"
	"strconv"
	"time"
)

// Texts of the CodeMie backend's answers.
const (
	Invoked          = "Webhook invoked successfully"
	Failed           = "Webhook processing failed"
	MethodNotAllowed = "Method Not Allowed"
	SignatureMissing = "Missing GitHub webhook signature header"
	SignatureInvalid = "Invalid GitHub webhook signature"
	GitLabToken      = "Invalid GitLab token"
	SecureHeader     = "Invalid security header"
	FilteredOut      = "Webhook received, event filtered out"
	Pong             = "pong"
)

// Texts of the edge's own answers.
const (
	BadID        = "Invalid webhook ID"
	TooLarge     = "Request body too large"
	BadBody      = "Could not read the request body"
	BodyBudget   = "Too many request bodies in flight, retry later"
	BodyTimeout  = "Request body not received in time"
	StoreDown    = "Webhook store unavailable, retry later"
	QueueFull    = "Webhook queue is full, retry later"
	QueueDown    = "Webhook queue unavailable, retry later"
	Duplicate    = "Duplicate delivery ignored"
	AuthRequired = "Webhook has no authentication configured"
	BadHandshake = "Invalid handshake"
	// Of the signature schemes.
	SchemeSignatureMissing = "Missing webhook signature"
	SchemeSignatureInvalid = "Invalid webhook signature"
	SignatureStale         = "Webhook timestamp outside the allowed window"
)

// NotFound answers an unknown or disabled webhook alike, so that ids
// cannot be probed.
func NotFound(id string) string { return "Webhook with ID '" + id + "' not found or not enabled" }

// EventNotAllowed answers a GitHub event the integration's filter drops,
// with filtered_status 400.
func EventNotAllowed(event string) string {
	return "GitHub event type '" + event + "' is not allowed for this webhook"
}

// RateLimited answers a webhook over its limit of requests per window.
func RateLimited(requests int, window time.Duration) string {
	return "Webhook rate limit exceeded: maximum " + strconv.Itoa(requests) + " requests per " +
		strconv.FormatFloat(window.Seconds(), 'f', -1, 64) + " seconds allowed."
}

// UnsupportedResourceType answers an integration whose resource type
// cannot be dispatched.
func UnsupportedResourceType(t string) string { return "Unsupported resource type '" + t + "'" }

// UnsupportedDatasourceType answers a datasource whose index type cannot
// be reindexed by a webhook.
func UnsupportedDatasourceType(t string) string {
	return "Datasource type '" + t + "' is not supported via webhook."
}

// DispatchFailed answers a dispatch that failed at step, with CodeMie's
// status when it answered (0: it did not); retryable adds that the sender
// should retry.
func DispatchFailed(step string, status int, retryable bool) string {
	msg := "Webhook dispatch failed at step '" + step + "'"
	if status != 0 {
		msg += ": CodeMie answered " + strconv.Itoa(status)
	}
	if retryable {
		msg += ", retry later"
	}
	return msg
}

// Body returns the JSON body answering status with text: {"message":text}
// below 300, {"detail":text} otherwise. The constant texts' bodies are
// encoded once, so the answers on the hot paths cost no encoding; the
// returned slice must not be modified.
func Body(status int, text string) []byte {
	key := "detail"
	if status < 300 {
		key = "message"
	}
	if b, ok := encoded[key][text]; ok {
		return b
	}
	return encode(key, text)
}

var encoded = func() map[string]map[string][]byte {
	m := map[string]map[string][]byte{"detail": {}, "message": {}}
	for _, text := range []string{Failed, MethodNotAllowed, SignatureMissing, SignatureInvalid, GitLabToken, SecureHeader,
		BadID, TooLarge, BadBody, BodyBudget, BodyTimeout, StoreDown, QueueFull, QueueDown, AuthRequired, BadHandshake,
		SchemeSignatureMissing, SchemeSignatureInvalid, SignatureStale} {
		m["detail"][text] = encode("detail", text)
	}
	for _, text := range []string{Invoked, FilteredOut, Pong, Duplicate} {
		m["message"][text] = encode("message", text)
	}
	return m
}()

func encode(key, text string) []byte {
	b, _ := json.Marshal(map[string]string{key: text})
	return b
}
