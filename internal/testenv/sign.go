package testenv

import (
	"crypto/hmac"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/hex"
)

// HMACSHA256 is the HMAC-SHA256 of msg keyed with key.
func HMACSHA256(key []byte, msg string) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(msg))
	return m.Sum(nil)
}

// SignGitHub256 is body's X-Hub-Signature-256 value: "sha256=" and the
// hex HMAC-SHA256 keyed with secret.
func SignGitHub256(secret, body string) string {
	return "sha256=" + hex.EncodeToString(HMACSHA256([]byte(secret), body))
}

// SignGitHub1 is body's X-Hub-Signature value: "sha1=" and the hex
// HMAC-SHA1 keyed with secret.
func SignGitHub1(secret, body string) string {
	m := hmac.New(sha1.New, []byte(secret))
	m.Write([]byte(body))
	return "sha1=" + hex.EncodeToString(m.Sum(nil))
}
