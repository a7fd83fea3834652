package keyspace

import (
	"strconv"
	"strings"
	"testing"
)

func TestSameSlotKey(t *testing.T) {
	// Slots from the Redis Cluster specification and CLUSTER KEYSLOT's
	// documentation.
	for key, slot := range map[string]uint16{
		"123456789": 0x31c3 & 16383, "somekey": 11058, "foo{hash_tag}": 2515, "hash_tag": 2515,
		"{}x": keySlot("{}x"), "{user1000}.following": keySlot("user1000"),
	} {
		if got := keySlot(key); got != slot {
			t.Errorf("slot of %q: %d, want %d", key, got, slot)
		}
	}
	for key, want := range map[string]string{
		"codemie:webhooks:dead": "{codemie:webhooks:dead}:bytes",
		"{cm}:dead":             "{cm}:dead:bytes",
		"a{b:dead":              "{a{b:dead}:bytes",
		"x{}y:dead":             "",
		"a}b:dead":              "",
	} {
		got := sameSlotKey(key, ":bytes")
		if want != "" && got != want {
			t.Errorf("%q: %q, want %q", key, got, want)
		}
		if keySlot(got) != keySlot(key) {
			t.Errorf("%q: %q is on slot %d, not %d", key, got, keySlot(got), keySlot(key))
		}
		if !strings.HasPrefix(got, key) && !strings.HasPrefix(got, "{"+key) {
			t.Errorf("%q: %q does not name it", key, got)
		}
	}
	if got := sameSlotKey("a}b:dead", ":bytes"); !strings.HasPrefix(got, "a}b:dead:bytes:") {
		t.Errorf("%q", got)
	} else if _, err := strconv.Atoi(strings.TrimPrefix(got, "a}b:dead:bytes:")); err != nil {
		t.Errorf("%q: %v", got, err)
	}
}

// TestQueueKeysShareASlot: every key named after Queue is on its slot,
// whatever the prefix, so one script can use them all on a cluster.
func TestQueueKeysShareASlot(t *testing.T) {
	for _, prefix := range []string{DefaultPrefix, "{t}:", "a}b:", "x{", "{}:", "p{q}r:"} {
		s := Space{Prefix: prefix}
		slot := keySlot(s.Queue())
		for _, k := range []string{s.Lane("gh-42"), s.Ring(), s.Parked("assistant:a"), s.Waiting(), s.Parking(), s.Holders(), s.Leases(), s.Busy("assistant:a"), s.Due()} {
			if keySlot(k) != slot {
				t.Errorf("prefix %q: %q is not on the slot of %q", prefix, k, s.Queue())
			}
		}
	}
}
