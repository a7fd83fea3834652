package headers

import (
	"net/textproto"
	"slices"
	"testing"
)

// TestLists holds the lists' relations: what is kept with a queued webhook
// and what carries a delivery id may be logged; no credential is.
func TestLists(t *testing.T) {
	logged := canonical(Logged)
	for _, name := range append(slices.Clone(Kept), DeliveryID...) {
		if !slices.Contains(logged, textproto.CanonicalMIMEHeaderKey(name)) {
			t.Errorf("%s is kept or a delivery id but not in Logged", name)
		}
	}
	for _, name := range canonical(Credentials) {
		if slices.Contains(logged, name) {
			t.Errorf("credential %s is in Logged", name)
		}
	}
}

func canonical(names []string) []string {
	out := make([]string, len(names))
	for i, n := range names {
		out[i] = textproto.CanonicalMIMEHeaderKey(n)
	}
	return out
}
