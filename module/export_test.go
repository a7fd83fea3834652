package module

import "time"

// SetEvictionInterval makes the Redis eviction policy be read every d, and
// returns what restores the interval.
func SetEvictionInterval(d time.Duration) (restore func()) {
	old := evictionInterval.Swap(int64(d))
	return func() { evictionInterval.Store(old) }
}
