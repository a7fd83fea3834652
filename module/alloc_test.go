//go:build !race

package module

import "testing"

// The race detector allocates on its own, so this runs without it:
// `make test` runs the Allocs tests in a second, race-free pass.
func TestAllocsHandlerAccepted(t *testing.T) {
	res := testing.Benchmark(BenchmarkHandlerAcceptedNoRedis)
	// 15 measured: the wait for Redis's answer (its deadline) is the
	// intake's, so no longer counted here (it was 19 with it).
	if n := res.AllocsPerOp(); n > 16 {
		t.Errorf("an accepted 1 KB webhook allocates %d times through the handler, want at most 16 (15 measured)", n)
	}
	if n := testing.Benchmark(BenchmarkHandlerRejected).AllocsPerOp(); n > 9 {
		t.Errorf("a rejected webhook allocates %d times, want at most 9 (8 measured)", n)
	}
}
