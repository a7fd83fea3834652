package verify

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"runtime/debug"
	"strings"
	"testing"

	"github.com/codemie-edge/caddy-webhooks/internal/integration"
)

func nested(open string, n int, tail string) []byte {
	return []byte(strings.Repeat(open, n) + tail)
}

// TestValidJSON: a document nesting deeper than maxDepth is no document,
// however many megabytes of brackets it holds, and reading one does not
// recurse (the stack is capped here, so a regression is a fatal error
// rather than a slow pass); brackets in strings do not count.
func TestValidJSON(t *testing.T) {
	defer debug.SetMaxStack(debug.SetMaxStack(8 << 20))
	closed := func(n int) []byte { return nested("[", n, strings.Repeat("]", n)) }
	for _, tc := range []struct {
		name string
		doc  []byte
		want bool
	}{
		{"flat", []byte(`{"action":"opened"}`), true},
		{"at the limit", closed(maxDepth), true},
		{"one level deeper", closed(maxDepth + 1), false},
		{"objects one level deeper", nested(`{"a":`, maxDepth+1, "1"+strings.Repeat("}", maxDepth+1)), false},
		{"megabytes of [", nested("[", 8<<20, ""), false},
		{"megabytes of {\"a\":", nested(`{"a":`, 2<<20, ""), false},
		{"brackets in a string", []byte(`{"s":"` + strings.Repeat("[{", 4*maxDepth) + `"}`), true},
		{"an escaped quote in a string", []byte(`{"s":"\"` + strings.Repeat("[", 4*maxDepth) + `"}`), true},
		{"not JSON", []byte(`payload=%7B%7D`), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := validJSON(tc.doc); got != tc.want {
				t.Errorf("validJSON = %v, want %v", got, tc.want)
			}
		})
	}
}

// TestDeepBodyIsNoDocument: the readers of a body's document see none in a
// deeply nested body, as in any body that is not JSON: the expressions'
// variables, a form-encoded delivery's payload, and its event filter.
func TestDeepBodyIsNoDocument(t *testing.T) {
	defer debug.SetMaxStack(debug.SetMaxStack(8 << 20))
	deep := append([]byte(`{"action":"opened","x":`), bytes.Repeat([]byte("["), 8<<20)...)
	in := &integration.Integration{ID: "deep"}
	if vars := ExpressionVars(in, http.Header{}, deep); vars.Body != nil {
		t.Error("the expressions see a document")
	}
	form := http.Header{"Content-Type": {"application/x-www-form-urlencoded"}}
	if doc, ok := FormPayload(form.Get("Content-Type"), deep); ok || doc != nil {
		t.Errorf("a form payload: %q, %v", doc, ok)
	}
	if doc := payload(form, deep); doc != nil {
		t.Error("a form-typed deep body is a document")
	}
}

// FuzzNestsWithin: for a JSON document, nestsWithin agrees with the depth
// encoding/json's tokenizer, which does not recurse, finds.
func FuzzNestsWithin(f *testing.F) {
	for _, s := range []string{`{}`, `[[1],[2,[3]]]`, `{"a":{"b":"[{"}}`, `"\"["`, `[[[[[[]]]]]]`} {
		f.Add([]byte(s), 3)
	}
	f.Fuzz(func(t *testing.T, doc []byte, limit int) {
		if !json.Valid(doc) || limit < 0 {
			return
		}
		depth, deepest := 0, 0
		d := json.NewDecoder(bytes.NewReader(doc))
		d.UseNumber() // a number too large for a float64 is still JSON
		for {
			tok, err := d.Token()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			switch tok {
			case json.Delim('['), json.Delim('{'):
				depth++
				deepest = max(deepest, depth)
			case json.Delim(']'), json.Delim('}'):
				depth--
			}
		}
		if got, want := nestsWithin(doc, limit), deepest <= limit; got != want {
			t.Fatalf("nestsWithin(%q, %d) = %v; the document nests %d deep", doc, limit, got, deepest)
		}
	})
}
