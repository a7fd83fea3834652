package history

import (
	"bytes"
	"encoding/json"
	"regexp"
	"unicode/utf8"
)

// redacted stands for what a preview hides.
const redacted = "[redacted]"

// secretKey matches the names of JSON members whose values a preview
// hides, whatever the sender calls them.
var secretKey = regexp.MustCompile(`(?i)secret|token|passw|pwd|api.?key|private.?key|credential|^auth$|authori[sz]ation|signature|cookie|session`)

// Preview is the first max bytes of body, redacted: in a JSON body the
// values of members named like secrets are hidden, and any of secrets
// that appears anywhere in it is replaced. A body that is not JSON is
// previewed as text, with secrets replaced. The cut is on a UTF-8
// boundary and marked with an ellipsis.
func Preview(body []byte, secrets [][]byte, max int) string {
	if max <= 0 || len(body) == 0 {
		return ""
	}
	out := body
	var v any
	if json.Unmarshal(body, &v) == nil {
		var b bytes.Buffer
		enc := json.NewEncoder(&b)
		enc.SetEscapeHTML(false)
		if enc.Encode(redact(v)) == nil {
			out = bytes.TrimSuffix(b.Bytes(), []byte("\n"))
		}
	}
	for _, s := range secrets {
		if len(s) >= 4 { // shorter would hide ordinary text, and guessing it is trivial anyway
			out = bytes.ReplaceAll(out, s, []byte(redacted))
		}
	}
	if len(out) <= max {
		return string(out)
	}
	cut := max
	for cut > 0 && !utf8.RuneStart(out[cut]) {
		cut--
	}
	return string(out[:cut]) + "…"
}

// redact hides the values of v's members named like secrets, at any depth.
func redact(v any) any {
	switch t := v.(type) {
	case map[string]any:
		for k, val := range t {
			if secretKey.MatchString(k) {
				t[k] = redacted
			} else {
				t[k] = redact(val)
			}
		}
	case []any:
		for i := range t {
			t[i] = redact(t[i])
		}
	}
	return v
}
