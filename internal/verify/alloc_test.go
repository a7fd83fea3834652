//go:build !race

package verify

import "testing"

// The race detector allocates on its own, so this runs without it:
// `make test` runs the Allocs tests in a second, race-free pass.
func TestAllocsCheck1KB(t *testing.T) {
	in, h, body := benchCase(1 << 10)
	if n := testing.AllocsPerRun(100, func() { Check(in, h, body, Options{}) }); n > 10 {
		t.Errorf("verify-and-decide of a 1 KB body allocates %.0f times, want at most 10", n)
	}
}
