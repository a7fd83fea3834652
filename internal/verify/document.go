package verify

import (
	"bytes"

	"github.com/tidwall/gjson"
)

// maxDepth is how deep a body's arrays and objects may nest for the body
// to be read as a JSON document (by the event filters on form-encoded
// deliveries, the filter expression and the prompt). A deeper body is read
// as no document: gjson's validation recurses once per level, so a body of
// a few megabytes of "[" would exhaust the goroutine's stack, a fatal
// error no recover catches, and a shallower but still deep one would grow
// the stack by about 100 bytes a level. Webhook payloads nest a few
// dozen levels at most.
const maxDepth = 1000

// validJSON reports whether b is one JSON document nesting at most
// maxDepth deep.
func validJSON(b []byte) bool {
	return nestsWithin(b, maxDepth) && gjson.ValidBytes(b)
}

// nestsWithin reports whether the arrays and objects of b, JSON or not,
// nest at most limit deep; brackets inside strings do not count. It does
// not recurse.
func nestsWithin(b []byte, limit int) bool {
	if len(b) <= limit { // each level takes a byte
		return true
	}
	depth := 0
	for i := 0; i < len(b); i++ {
		switch b[i] {
		case '"':
			i = closingQuote(b, i+1)
		case '[', '{':
			if depth++; depth > limit {
				return false
			}
		case ']', '}':
			depth--
		}
	}
	return true
}

// closingQuote returns the index of the quote that ends the string whose
// text starts at b[i], or len(b) if none does: the first quote not escaped
// by an odd run of backslashes.
func closingQuote(b []byte, i int) int {
	for {
		q := bytes.IndexByte(b[i:], '"')
		if q < 0 {
			return len(b)
		}
		i += q
		backslashes := 0
		for j := i - 1; b[j] == '\\'; j-- {
			backslashes++
		}
		if backslashes%2 == 0 {
			return i
		}
		i++
	}
}
