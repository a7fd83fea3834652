package jsontext

import (
	"encoding/json"
	"testing"
)

// TestAppendString: the hand-written encoder reads back as
// encoding/json's own encoding does, for every kind of character.
func TestAppendString(t *testing.T) {
	for _, s := range []string{
		"", "plain", `quote " and backslash \`, "newline\n tab\t cr\r", "\x00\x01\x1f\x7f",
		"<script>&amp;</script>", "ünïcödé ☃ 𝄞", "bad utf-8 \xff\xfe end", "\u2028\u2029", "\xed\xa0\x80",
	} {
		got := AppendString(nil, s)
		if !json.Valid(got) {
			t.Errorf("%q: not valid JSON: %s", s, got)
			continue
		}
		var back, want string
		std, _ := json.Marshal(s)
		if err := json.Unmarshal(got, &back); err != nil {
			t.Fatal(err)
		}
		_ = json.Unmarshal(std, &want)
		if back != want {
			t.Errorf("%q: reads back as %q, encoding/json's as %q", s, back, want)
		}
	}
}
