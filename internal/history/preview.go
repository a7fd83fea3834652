package history

import (
	"bytes"
	"encoding/json"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"unicode/utf8"
)

// redacted stands for what a preview hides.
const redacted = "[redacted]"

// MaxPreviewed is the largest body previewed, in bytes: a preview decodes
// the whole body to redact it, on the request's path.
const MaxPreviewed = 64 << 10

// secretKey matches the names of members (or of name/value pairs) whose
// values a preview hides, whatever the sender calls them.
var secretKey = regexp.MustCompile(`(?i)secret|token|passw|passphrase|^pass$|pwd|api.?key|access.?key|client.?key|private.?key|credential|^auth$|authori[sz]ation|signature|cookie|session|bearer|jwt`)

// Preview is the first max bytes of body, redacted, as JSON: a JSON body,
// or a form-encoded one (as an object of its fields). The values of
// members named like secrets are hidden, and so are those of name/value
// pairs whose name is like a secret (a list of headers); a string that
// holds JSON is redacted within; and any of secrets, as sent or escaped,
// is replaced wherever it appears. Other bodies, and bodies over
// MaxPreviewed, have no preview. The cut is on a UTF-8 boundary and
// marked with an ellipsis.
func Preview(body []byte, secrets [][]byte, max int) string {
	if max <= 0 || len(body) == 0 || len(body) > MaxPreviewed {
		return ""
	}
	r := redactor{secrets: secretForms(secrets)}
	v, ok := decodeBody(body)
	if !ok {
		return ""
	}
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if enc.Encode(r.value(v)) != nil {
		return ""
	}
	out := r.text(strings.TrimSuffix(b.String(), "\n"))
	if len(out) <= max {
		return out
	}
	cut := max
	for cut > 0 && !utf8.RuneStart(out[cut]) {
		cut--
	}
	return out[:cut] + "…"
}

// decodeBody reads body as JSON or, failing that, as a form.
func decodeBody(body []byte) (any, bool) {
	var v any
	if json.Unmarshal(body, &v) == nil {
		return v, true
	}
	if !utf8.Valid(body) || !bytes.Contains(body, []byte("=")) {
		return nil, false
	}
	form, err := url.ParseQuery(string(body))
	if err != nil {
		return nil, false
	}
	fields := make(map[string]any, len(form))
	for k, values := range form {
		if len(values) == 1 {
			fields[k] = values[0]
			continue
		}
		list := make([]any, len(values))
		for i, s := range values {
			list[i] = s
		}
		fields[k] = list
	}
	return fields, true
}

// secretForms are the secrets as they may appear in a body: as they are,
// JSON-escaped, and URL-encoded. Secrets shorter than 4 bytes are left
// out: hiding them would hide ordinary text, and guessing them is trivial.
func secretForms(secrets [][]byte) []string {
	var out []string
	for _, s := range secrets {
		if len(s) < 4 {
			continue
		}
		raw := string(s)
		quoted, _ := json.Marshal(raw)
		for _, form := range []string{raw, string(quoted[1 : len(quoted)-1]), url.QueryEscape(raw), url.PathEscape(raw)} {
			if !slices.Contains(out, form) {
				out = append(out, form)
			}
		}
	}
	return out
}

// redactor hides secrets in a decoded body.
type redactor struct{ secrets []string }

// value returns v with what is secret in it hidden.
func (r redactor) value(v any) any {
	switch t := v.(type) {
	case map[string]any:
		return r.object(t)
	case []any:
		for i := range t {
			t[i] = r.value(t[i])
		}
		return t
	case string:
		return r.str(t)
	}
	return v
}

func (r redactor) object(o map[string]any) map[string]any {
	pairName := ""
	for _, k := range []string{"name", "key", "Name", "Key"} {
		if s, ok := o[k].(string); ok {
			pairName = s
		}
	}
	for k, val := range o {
		switch {
		case secretKey.MatchString(k):
			o[k] = redacted
		case pairName != "" && secretKey.MatchString(pairName) && strings.EqualFold(k, "value"):
			o[k] = redacted
		default:
			o[k] = r.value(val)
		}
	}
	return o
}

// str hides the secrets in s, and, when s holds JSON, what is secret in it.
func (r redactor) str(s string) string {
	if t := strings.TrimSpace(s); len(t) > 1 && (t[0] == '{' || t[0] == '[') {
		var v any
		if json.Unmarshal([]byte(t), &v) == nil {
			if b, err := json.Marshal(r.value(v)); err == nil {
				return r.text(string(b))
			}
		}
	}
	return r.text(s)
}

// text replaces every form of every secret in s.
func (r redactor) text(s string) string {
	for _, secret := range r.secrets {
		s = strings.ReplaceAll(s, secret, redacted)
	}
	return s
}
