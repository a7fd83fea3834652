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

// Preview is the first max bytes of body, redacted, as JSON: a JSON body
// (one document, a byte order mark allowed), or one whose contentType is
// a form (as an object of its fields). The values of
// members named like secrets are hidden, and so are those of name/value
// pairs whose name is like a secret (a list of headers); a string that
// holds JSON is redacted within; and any of secrets, as sent or escaped,
// is replaced wherever it appears. Other bodies, and bodies over
// MaxPreviewed, have no preview. The cut is on a UTF-8 boundary and
// marked with an ellipsis.
func Preview(body []byte, contentType string, secrets [][]byte, max int) string {
	if max <= 0 || len(body) == 0 || len(body) > MaxPreviewed {
		return ""
	}
	r := redactor{secrets: secretForms(secrets)}
	v, ok := decodeBody(body, contentType)
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

// decodeBody reads body as one JSON document (numbers kept as written)
// or, when contentType says so, as a form.
func decodeBody(body []byte, contentType string) (any, bool) {
	doc := bytes.TrimPrefix(body, []byte("\xef\xbb\xbf"))
	if json.Valid(doc) {
		d := json.NewDecoder(bytes.NewReader(doc))
		d.UseNumber()
		var v any
		if d.Decode(&v) == nil {
			return v, true
		}
	}
	media, _, _ := strings.Cut(contentType, ";")
	if !strings.EqualFold(strings.TrimSpace(media), "application/x-www-form-urlencoded") || !utf8.Valid(body) {
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

// secretForms are the secrets as they may appear in a body or a preview:
// as they are, JSON-escaped (with and without HTML escaping), and
// URL-encoded (in either case), longest first, so that a secret that
// holds another is replaced whole. Secrets shorter than 4 bytes are left
// out: hiding them would hide ordinary text, and guessing them is trivial.
func secretForms(secrets [][]byte) []string {
	var out []string
	for _, s := range secrets {
		if len(s) < 4 {
			continue
		}
		raw := string(s)
		query, path := url.QueryEscape(raw), url.PathEscape(raw)
		for _, form := range []string{raw, jsonEscaped(raw, true), jsonEscaped(raw, false),
			query, strings.ToLower(query), path, strings.ToLower(path)} {
			if form != "" && !slices.Contains(out, form) {
				out = append(out, form)
			}
		}
	}
	slices.SortStableFunc(out, func(a, b string) int { return len(b) - len(a) })
	return out
}

// jsonEscaped is s as it stands between the quotes of a JSON string, with
// or without encoding/json's escaping of <, > and &.
func jsonEscaped(s string, escapeHTML bool) string {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(escapeHTML)
	_ = enc.Encode(s)
	quoted := strings.TrimSuffix(b.String(), "\n")
	return quoted[1 : len(quoted)-1]
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
	secretPair := false // {"name": "Authorization", "value": ...}
	for _, k := range []string{"name", "key", "Name", "Key"} {
		if s, ok := o[k].(string); ok && secretKey.MatchString(s) {
			secretPair = true
		}
	}
	out := make(map[string]any, len(o))
	for k, val := range o {
		name := r.text(k) // a key may hold a secret too
		switch {
		case secretKey.MatchString(k):
			out[name] = redacted
		case secretPair && strings.EqualFold(k, "value"):
			out[name] = redacted
		default:
			out[name] = r.value(val)
		}
	}
	return out
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
