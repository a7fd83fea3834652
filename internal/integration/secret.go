package integration

import (
	"fmt"
	"io"
	"strings"
)

const redacted = "[REDACTED]"

// Secret is one secret value. Every printed form (fmt's verbs, JSON, text)
// shows [REDACTED], so a secret that reaches a log line by mistake still
// does not leak.
type Secret []byte

// Format implements fmt.Formatter for every verb.
func (Secret) Format(f fmt.State, _ rune) { _, _ = io.WriteString(f, redacted) }

// MarshalJSON implements json.Marshaler.
func (Secret) MarshalJSON() ([]byte, error) { return []byte(`"` + redacted + `"`), nil }

// MarshalText implements encoding.TextMarshaler.
func (Secret) MarshalText() ([]byte, error) { return []byte(redacted), nil }

// Secrets holds the values of one secret field. A field may hold several
// values, one per line, while a secret is being rotated: any one of them
// verifies.
type Secrets []Secret

// SplitSecretValues splits a stored secret field into its values: one per
// line, a trailing carriage return dropped, empty lines skipped. Nothing
// else is trimmed: a secret is used byte for byte.
func SplitSecretValues(s string) []string {
	if s == "" {
		return nil
	}
	var out []string
	for _, line := range strings.Split(s, "\n") {
		line = strings.TrimSuffix(line, "\r")
		if line != "" {
			out = append(out, line)
		}
	}
	return out
}
