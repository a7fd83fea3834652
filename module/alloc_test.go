//go:build !race

package module

import "testing"

// The race detector allocates on its own, so this runs without it:
// `make test` runs the Allocs tests in a second, race-free pass.
func TestAllocsHandlerAccepted(t *testing.T) {
	res := testing.Benchmark(BenchmarkHandlerAcceptedNoRedis)
	if n := res.AllocsPerOp(); n > 20 {
		t.Errorf("an accepted 1 KB webhook allocates %d times through the handler, want at most 20", n)
	}
	if res := testing.Benchmark(BenchmarkHandlerRejected); res.AllocsPerOp() > 20 {
		t.Errorf("a rejected webhook allocates %d times", res.AllocsPerOp())
	}
}
