// Package keyspace is the Redis layout of caddy-webhooks: the name of every
// key, channel and stream the edge reads or writes, and nothing else. It is
// the one place in the code that knows them (docs/reference.md, "Redis
// layout", describes each for operators).
//
// Every key of one webhook carries the hash tag {<id>}, so a Redis Cluster
// keeps them on one slot and one script can use them all. The streams are
// not under a webhook's tag: a script may not use a webhook's keys together
// with them on a cluster (sameSlotKey puts a companion key on a stream's
// slot).
package keyspace

import "strings"

// DefaultPrefix is the key prefix used when none is configured.
const DefaultPrefix = "codemie:webhooks:"

// Group is the consumer group of Deliveries, the queue of earlier
// versions.
const Group = "dispatchers"

// Space is the key space under one key prefix.
type Space struct {
	// Prefix starts every name.
	Prefix string
}

// Record is the key of webhook id's record.
func (s Space) Record(id string) string { return s.Prefix + "{" + id + "}" }

// RecordPattern matches the key of every record (and nothing else under
// the prefix but keys of the same shape), for SCAN's MATCH.
func (s Space) RecordPattern() string { return globEscape(s.Prefix) + "{*}" }

// RecordID returns the webhook id whose record key is key.
func (s Space) RecordID(key string) (string, bool) {
	rest, ok := strings.CutPrefix(key, s.Prefix+"{")
	if !ok || !strings.HasSuffix(rest, "}") {
		return "", false
	}
	return strings.TrimSuffix(rest, "}"), true
}

// Rate is the key of webhook id's rate-limit counter.
func (s Space) Rate(id string) string { return s.Record(id) + ":rl" }

// Seen is the key marking a delivery of webhook id, told apart by
// replayKey, as seen.
func (s Space) Seen(id, replayKey string) string { return s.Record(id) + ":seen:" + replayKey }

// Reindex is the key that says a datasource reindex of webhook id is
// queued and not yet started: a trigger that arrives meanwhile is covered
// by it.
func (s Space) Reindex(id string) string { return s.Record(id) + ":reindex" }

// Changed is the channel announcing the id of every record written or
// deleted.
func (s Space) Changed() string { return s.Prefix + "changed" }

// Queue is the stream that holds queued webhooks, each an entry until it
// is delivered or dead. Its name carries a hash tag, so that the keys named
// after it (Lane, Ring, Leases, Busy, Due) are on its cluster slot and one
// script can use them all.
func (s Space) Queue() string {
	if q := s.Prefix + "queue"; hashedPart(q) != q {
		return q
	}
	return "{" + s.Prefix + "queue}"
}

// Lane is the list of webhook id's entries waiting to be dispatched, oldest
// first. Each member is an entry's ticket (internal/delivery).
func (s Space) Lane(id string) string { return s.LanePrefix() + id }

// LanePrefix is what every Lane starts with, for the scripts that name a
// lane from a ticket.
func (s Space) LanePrefix() string { return s.Queue() + ":lane:" }

// Ring is the list of the webhooks whose lane holds entries and is not
// parked, each once: dispatchers take from them in turn.
func (s Space) Ring() string { return s.Queue() + ":ring" }

// Parked is the list of the webhooks whose lane waits for resource (named
// as in Busy) to have fewer than its max in flight.
func (s Space) Parked(resource string) string { return s.ParkedPrefix() + resource }

// ParkedPrefix is what every Parked starts with.
func (s Space) ParkedPrefix() string { return s.Queue() + ":parked:" }

// Holders is the hash of which instance holds each ticket of Leases: only
// the holder renews, finishes or hands back its lease.
func (s Space) Holders() string { return s.Queue() + ":holders" }

// Parking is the set of the resources (named as in Busy) that have lanes
// parked on them.
func (s Space) Parking() string { return s.Queue() + ":parking" }

// Waiting is the sorted set of the webhooks whose lane holds entries,
// scored by how many.
func (s Space) Waiting() string { return s.Queue() + ":waiting" }

// Leases is the sorted set of the tickets of entries being dispatched,
// scored by when their lease ends (Unix ms): one not renewed by then is
// handed back to its lane.
func (s Space) Leases() string { return s.Queue() + ":leases" }

// Busy is the sorted set of the tickets in flight on one resource (named
// "<resource type>:<resource id>"), scored as in Leases: the count that
// max_in_flight bounds across instances.
func (s Space) Busy(resource string) string { return s.BusyPrefix() + resource }

// BusyPrefix is what every Busy starts with.
func (s Space) BusyPrefix() string { return s.Queue() + ":busy:" }

// Due is the sorted set of entries waiting for their next attempt, scored
// by when it is due (Unix ms).
func (s Space) Due() string { return s.Queue() + ":due" }

// Deliveries is the stream of queued webhooks of versions before Queue,
// read by the consumer group Group. Instances adopt what is left in it.
func (s Space) Deliveries() string { return s.Prefix + "deliveries" }

// Retry is Deliveries' sorted set of entries waiting for their next
// attempt, scored by when it is due. Instances adopt what is left in it.
func (s Space) Retry() string { return s.Prefix + "deliveries:retry" }

// Dead is the dead-letter stream.
func (s Space) Dead() string { return s.Prefix + "dead" }

// DeadBytes is the counter of the dead stream's size in bytes, on the dead
// stream's cluster slot so that one script changes both.
func (s Space) DeadBytes() string { return sameSlotKey(s.Dead(), ":bytes") }

// Log is the delivery log: a stream of one record per request that reached
// a webhook and per dispatch attempt's outcome, bounded by count and age
// (internal/history).
func (s Space) Log() string { return s.Prefix + "log" }

// LogUnauthenticated is the delivery log's stream of the records of
// requests whose sender never proved who it is (unknown ids, failed
// signatures...), kept apart and smaller so that they cannot push the
// others out.
func (s Space) LogUnauthenticated() string { return s.Prefix + "log:unauthenticated" }

// SyncLock is the lock held by the one instance that runs the sync from
// CodeMie.
func (s Space) SyncLock() string { return s.Prefix + "sync:lock" }

// globEscape escapes the characters SCAN's MATCH treats specially.
func globEscape(s string) string {
	var b strings.Builder
	for _, c := range s {
		if strings.ContainsRune(`*?[]\`, c) {
			b.WriteByte('\\')
		}
		b.WriteRune(c)
	}
	return b.String()
}
