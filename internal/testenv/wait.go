package testenv

import (
	"testing"
	"time"
)

// eventuallyTimeout bounds every wait: far longer than any condition
// takes on a loaded machine, so that reaching it is a failure.
const eventuallyTimeout = 60 * time.Second

// Eventually polls cond until it holds, and fails the test, naming what it
// waited for, when it does not within a minute. It is the one way tests
// wait: on a condition, never for a fixed time.
func Eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(eventuallyTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}
