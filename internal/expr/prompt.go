package expr

import (
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"
	"unsafe"

	"github.com/tidwall/gjson"
)

// MaxPromptBytes caps a rendered prompt; the rest is cut off.
const MaxPromptBytes = 64 << 10

// Prompt is a compiled prompt template: text with references in double
// braces to the variables a filter sees, such as
//
//	Review {{body.pull_request.html_url}}: {{body.pull_request.title}}
//
// A reference is event, action, body, body.<path> (keys and array indexes
// separated by dots, as Path reads them), headers.<name> or webhook.<field>. A string renders as its text, anything else as its JSON;
// what is missing renders empty. \n in the text is a newline. Templates
// read the delivery and nothing else.
type Prompt struct {
	src   string
	parts []part
	// fields are the body's paths the references read, each once.
	fields []string
}

// part is a literal text, or a reference (root set); a reference to a
// field of the body reads fields[field].
type part struct {
	text       string
	root, path string
	field      int
}

// CompilePrompt parses src.
func CompilePrompt(src string) (*Prompt, error) {
	if len(src) > MaxSourceBytes {
		return nil, fmt.Errorf("longer than %d bytes", MaxSourceBytes)
	}
	p := &Prompt{src: src}
	rest := src
	for rest != "" {
		before, after, found := strings.Cut(rest, "{{")
		if before != "" {
			p.parts = append(p.parts, part{text: strings.ReplaceAll(before, `\n`, "\n")})
		}
		if !found {
			break
		}
		ref, tail, closed := strings.Cut(after, "}}")
		if !closed {
			return nil, errors.New("a {{ without its }}")
		}
		r, err := reference(strings.TrimSpace(ref))
		if err != nil {
			return nil, err
		}
		if r.root == "body" && r.path != "" {
			if r.field = slices.Index(p.fields, r.path); r.field < 0 {
				r.field = len(p.fields)
				p.fields = append(p.fields, r.path)
			}
		}
		p.parts = append(p.parts, r)
		rest = tail
	}
	if len(p.fields) > MaxBodyFields {
		return nil, fmt.Errorf("reads %d fields of the body, more than %d", len(p.fields), MaxBodyFields)
	}
	return p, nil
}

// reference parses one reference.
func reference(ref string) (part, error) {
	root, path, _ := strings.Cut(ref, ".")
	switch {
	case (root == "event" || root == "action" || root == "body") && path == "" && ref == root:
		return part{root: root}, nil
	case root == "body" && path != "":
		p, err := Path(path)
		if err != nil {
			return part{}, fmt.Errorf("{{%s}}: %v", ref, err)
		}
		return part{root: root, path: p}, nil
	case (root == "headers" || root == "webhook") && path != "":
		return part{root: root, path: path}, nil
	}
	return part{}, fmt.Errorf("{{%s}}: not event, action, body, body.<path>, headers.<name> or webhook.<field>", ref)
}

// Source is the template as written.
func (p *Prompt) Source() string { return p.src }

// Render fills the template from v, as valid UTF-8 (each invalid byte
// replaced), at most MaxPromptBytes. Each field of the body is looked for
// once, however many references read it.
func (p *Prompt) Render(v Vars) string {
	var b strings.Builder
	read := make([]*string, len(p.fields))
	for _, pt := range p.parts {
		room := MaxPromptBytes - b.Len()
		if room <= 0 {
			break
		}
		text := pt.text
		switch {
		case pt.root == "body" && pt.path != "":
			if read[pt.field] == nil {
				got := v.field(pt.path)
				read[pt.field] = &got
			}
			text = *read[pt.field]
		case pt.root != "":
			text = v.lookup(pt)
		}
		if len(text) > room {
			for room > 0 && !utf8.RuneStart(text[room]) {
				room-- // not a character's first bytes alone
			}
			b.WriteString(strings.ToValidUTF8(text[:room], "\uFFFD"))
			break
		}
		b.WriteString(strings.ToValidUTF8(text, "\uFFFD"))
	}
	out := b.String()
	if len(out) > MaxPromptBytes { // invalid bytes replaced by longer characters
		cut := MaxPromptBytes
		for cut > 0 && !utf8.RuneStart(out[cut]) {
			cut--
		}
		out = out[:cut]
	}
	return out
}

// lookup is the text of one reference.
func (v Vars) lookup(pt part) string {
	switch pt.root {
	case "event":
		return v.Event
	case "action":
		return v.Action
	case "headers":
		return strings.Join(v.Headers[http.CanonicalHeaderKey(pt.path)], ", ")
	case "webhook":
		return v.Webhook[pt.path]
	}
	// The whole body: no more of it than a prompt holds.
	return string(v.Body[:min(len(v.Body), MaxPromptBytes+utf8.UTFMax)])
}

// field is the text of the body's field at path, a gjson path as Path
// makes it. It may share the body's memory: it is copied into the prompt
// before Render returns.
func (v Vars) field(path string) string {
	r := fieldOf(unsafe.String(unsafe.SliceData(v.Body), len(v.Body)), path)
	if r.Type == gjson.String {
		return r.Str
	}
	return r.Raw
}

// Field is the text of doc's field at path, a gjson path as Path makes
// it, as gjson's String gives it (a string's text, other values' JSON,
// nothing for null or nothing), in memory of its own.
func Field(doc []byte, path string) string {
	return strings.Clone(fieldOf(unsafe.String(unsafe.SliceData(doc), len(doc)), path).String())
}

// fieldOf is doc's field at path, a gjson path as Path makes it; it shares
// doc's memory. A path through # is followed element by element, up to
// MaxPromptBytes of values: gjson's own # made a copy of each element (32
// of them over 25 MB took 18 s and 4.9 GB).
func fieldOf(doc, path string) gjson.Result {
	prefix, suffix, each := splitCount(path)
	if !each {
		return gjson.Get(doc, path)
	}
	list := gjson.Parse(doc)
	if prefix != "" {
		list = gjson.Get(doc, prefix)
	}
	if !list.IsArray() {
		return gjson.Result{}
	}
	var b strings.Builder
	n := 0
	list.ForEach(func(_, el gjson.Result) bool {
		n++
		if suffix == "" {
			return true
		}
		r := el.Get(suffix)
		if !r.Exists() {
			return true
		}
		if b.Len() == 0 {
			b.WriteByte('[')
		} else {
			b.WriteByte(',')
		}
		b.WriteString(r.Raw)
		return b.Len() <= MaxPromptBytes
	})
	switch {
	case suffix == "":
		return gjson.Result{Type: gjson.Number, Raw: strconv.Itoa(n), Num: float64(n)}
	case b.Len() == 0:
		return gjson.Result{Type: gjson.JSON, Raw: "[]"}
	}
	b.WriteByte(']')
	return gjson.Result{Type: gjson.JSON, Raw: b.String()}
}

// splitCount splits a gjson path as Path makes it at its #, if it has
// one: what is before it, and after it.
func splitCount(path string) (prefix, suffix string, ok bool) {
	for i := 0; i < len(path); i++ {
		switch {
		case path[i] == '\\':
			i++
		case path[i] == '#' && (i == 0 || path[i-1] == '.'):
			return strings.TrimSuffix(path[:i], "."), strings.TrimPrefix(path[i+1:], "."), true
		}
	}
	return path, "", false
}
