//go:build !race

package module

import "testing"

// The race detector allocates on its own, so this runs without it:
// `make test` runs the Allocs tests in a second, race-free pass.
func TestAllocsHandlerAccepted(t *testing.T) {
	res := testing.Benchmark(BenchmarkHandlerAcceptedNoRedis)
	if n := res.AllocsPerOp(); n > 19 {
		t.Errorf("an accepted 1 KB webhook allocates %d times through the handler, want at most 19 (19 measured)", n)
	}
	if n := testing.Benchmark(BenchmarkHandlerRejected).AllocsPerOp(); n > 9 {
		t.Errorf("a rejected webhook allocates %d times, want at most 9 (8 measured)", n)
	}
}
