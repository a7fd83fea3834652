package keyspace

import "testing"

// TestNames holds the layout that docs/reference.md ("Redis layout")
// documents: instances of different versions share these names.
func TestNames(t *testing.T) {
	s := Space{Prefix: DefaultPrefix}
	for got, want := range map[string]string{
		s.Record("gh-42"):               "codemie:webhooks:{gh-42}",
		s.Rate("gh-42"):                 "codemie:webhooks:{gh-42}:rl",
		s.Seen("gh-42", "d-1"):          "codemie:webhooks:{gh-42}:seen:d-1",
		s.Reindex("gh-42"):              "codemie:webhooks:{gh-42}:reindex",
		s.Changed():                     "codemie:webhooks:changed",
		s.Queue():                       "{codemie:webhooks:queue}",
		s.Lane("gh-42"):                 "{codemie:webhooks:queue}:lane:gh-42",
		s.Ring():                        "{codemie:webhooks:queue}:ring",
		s.Parked("assistant:a-1"):       "{codemie:webhooks:queue}:parked:assistant:a-1",
		s.Waiting():                     "{codemie:webhooks:queue}:waiting",
		s.Parking():                     "{codemie:webhooks:queue}:parking",
		s.Holders():                     "{codemie:webhooks:queue}:holders",
		s.Leases():                      "{codemie:webhooks:queue}:leases",
		s.Busy("assistant:a-1"):         "{codemie:webhooks:queue}:busy:assistant:a-1",
		s.Due():                         "{codemie:webhooks:queue}:due",
		Space{"{t}:"}.Queue():           "{t}:queue",
		Space{"a}b:"}.Lane("x"):         "{a}b:queue}:lane:x",
		s.Deliveries():                  "codemie:webhooks:deliveries",
		s.Retry():                       "codemie:webhooks:deliveries:retry",
		s.Dead():                        "codemie:webhooks:dead",
		s.DeadBytes():                   "{codemie:webhooks:dead}:bytes",
		s.SyncLock():                    "codemie:webhooks:sync:lock",
		s.RecordPattern():               "codemie:webhooks:{*}",
		Space{"a*[b]:"}.RecordPattern(): `a\*\[b\]:{*}`,
	} {
		if got != want {
			t.Errorf("%q, want %q", got, want)
		}
	}
	for key, want := range map[string]string{
		"codemie:webhooks:{gh-42}":    "gh-42",
		"codemie:webhooks:{gh-42}:rl": "",
		"other:{gh-42}":               "",
	} {
		if id, ok := s.RecordID(key); id != want || ok != (want != "") {
			t.Errorf("RecordID(%q) = %q, %v; want %q", key, id, ok, want)
		}
	}
}
