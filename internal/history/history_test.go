package history_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/codemie-edge/caddy-webhooks/internal/history"
	"github.com/codemie-edge/caddy-webhooks/internal/testenv"
)

const key = "codemie:webhooks:log"

func record(webhook, delivery, outcome string) history.Record {
	return history.Record{Time: time.Now(), WebhookID: webhook, DeliveryID: delivery, Outcome: outcome}
}

func TestBoundsHold(t *testing.T) {
	r := testenv.StartRedis(t)
	ctx := context.Background()
	l := history.New(r.Client, key, history.Limits{MaxEntries: 50, MaxAge: time.Hour})
	for i := range 4 {
		batch := make([]history.Record, 0, 40)
		for j := range 40 {
			batch = append(batch, record("wh", fmt.Sprint("d-", i*40+j), history.Accepted))
		}
		if err := l.Append(ctx, batch); err != nil {
			t.Fatal(err)
		}
		if n := r.Client.XLen(ctx, key).Val(); n > 50 {
			t.Fatalf("after batch %d the log holds %d records, want at most 50", i, n)
		}
	}
	records, _, err := l.List(ctx, history.Query{Count: 1000})
	if err != nil {
		t.Fatal(err)
	}
	if len(records) != 50 || records[0].DeliveryID != "d-159" || records[49].DeliveryID != "d-110" {
		t.Fatalf("kept %d records, newest %+v", len(records), records[0])
	}

	// The age bound drops what is older, whatever the count.
	aged := history.New(r.Client, "aged", history.Limits{MaxEntries: 1000, MaxAge: time.Hour})
	if err := r.Client.XAdd(ctx, oldEntry("aged", 2*time.Hour)).Err(); err != nil {
		t.Fatal(err)
	}
	if err := aged.Append(ctx, []history.Record{record("wh", "new", history.Accepted)}); err != nil {
		t.Fatal(err)
	}
	if n := r.Client.XLen(ctx, "aged").Val(); n != 1 {
		t.Errorf("the aged log holds %d records, want only the new one", n)
	}
}

func TestListFiltersAndPages(t *testing.T) {
	r := testenv.StartRedis(t)
	ctx := context.Background()
	l := history.New(r.Client, key, history.Limits{MaxEntries: 10_000})
	var batch []history.Record
	for i := range 1200 { // more than one chunk of the scan
		o := history.Accepted
		if i%100 == 0 {
			o = history.Dead
		}
		batch = append(batch, record(fmt.Sprint("wh-", i%3), fmt.Sprint("d-", i), o))
	}
	if err := l.Append(ctx, batch); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		q     history.Query
		want  int
		first string
	}{
		{"all, one page", history.Query{Count: 10}, 10, "d-1199"},
		{"one webhook", history.Query{WebhookID: "wh-1", Count: 1000}, 400, "d-1198"},
		{"one outcome, past the first chunk", history.Query{Outcome: history.Dead}, 12, "d-1100"},
		{"one delivery", history.Query{DeliveryID: "d-7"}, 1, "d-7"},
		{"nothing", history.Query{WebhookID: "wh-9"}, 0, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, _, err := l.List(ctx, tc.q)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != tc.want || (tc.want > 0 && got[0].DeliveryID != tc.first) {
				t.Errorf("%d records, first %+v; want %d, first %s", len(got), got, tc.want, tc.first)
			}
		})
	}
	// Pages follow on without a gap or a repeat.
	seen := map[string]bool{}
	q := history.Query{WebhookID: "wh-2", Count: 150}
	for {
		page, next, err := l.List(ctx, q)
		if err != nil {
			t.Fatal(err)
		}
		for _, rec := range page {
			if seen[rec.DeliveryID] {
				t.Fatalf("%s twice", rec.DeliveryID)
			}
			seen[rec.DeliveryID] = true
		}
		if next == "" {
			break
		}
		q.Before = next
	}
	if len(seen) != 400 {
		t.Errorf("paged through %d records, want 400", len(seen))
	}
	if _, _, err := l.List(ctx, history.Query{Before: "not-an-id"}); err == nil {
		t.Error("a bad before was taken")
	}
}

func TestWriterAndFollow(t *testing.T) {
	r := testenv.StartRedis(t)
	l := history.New(r.Client, key, history.Limits{MaxEntries: 1000})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	after, err := l.Last(ctx)
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan history.Record, 10)
	done := make(chan error, 1)
	go func() {
		done <- l.Follow(ctx, after, history.Query{WebhookID: "wh"}, 10*time.Millisecond, func(rec history.Record) error {
			got <- rec
			return nil
		})
	}()
	w := l.StartWriter(100, nil, zap.NewNop())
	w.Add(record("other", "x", history.Accepted))
	w.Add(record("wh", "d-1", history.Accepted))
	w.Add(record("wh", "d-1", history.Dispatched))
	for _, want := range []string{history.Accepted, history.Dispatched} {
		select {
		case rec := <-got:
			if rec.WebhookID != "wh" || rec.Outcome != want || rec.ID == "" {
				t.Errorf("followed %+v, want wh's %s", rec, want)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("the followed record never came")
		}
	}
	w.Stop()
	cancel()
	if err := <-done; err != context.Canceled {
		t.Errorf("Follow ended with %v", err)
	}
}

func TestWriterDropsRatherThanWaits(t *testing.T) {
	r := testenv.StartRedis(t)
	l := history.New(r.Client, key, history.Limits{MaxEntries: 1000})
	r.Stop() // every batch fails
	dropped := make(chan int, 100)
	w := l.StartWriter(2, func(n int) { dropped <- n }, zap.NewNop())
	for range 10 {
		w.Add(record("wh", "d", history.Accepted)) // never blocks
	}
	w.Stop()
	w.Add(record("wh", "late", history.Accepted)) // after Stop: neither written nor a panic
	total := 0
	for len(dropped) > 0 {
		total += <-dropped
	}
	if total != 10 {
		t.Errorf("%d records counted as dropped, want 10", total)
	}
}

func TestCounts(t *testing.T) {
	r := testenv.StartRedis(t)
	ctx := context.Background()
	l := history.New(r.Client, key, history.Limits{MaxEntries: 1000})
	now := time.Now()
	var batch []history.Record
	for i := range 30 {
		rec := record("busy", fmt.Sprint(i), history.Accepted)
		rec.Time = now.Add(-time.Duration(i%3) * time.Minute)
		batch = append(batch, rec)
	}
	batch = append(batch, record("quiet", "q", history.Accepted))
	if err := l.Append(ctx, batch); err != nil {
		t.Fatal(err)
	}
	counts, err := l.Counts(ctx, now.Add(time.Second), time.Minute, 60, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(counts) != 2 || counts[0].WebhookID != "busy" || counts[0].Total != 30 || counts[1].Total != 1 {
		t.Fatalf("counts %+v", counts)
	}
	if b := counts[0].Buckets; len(b) != 60 || b[59]+b[58]+b[57] != 30 || b[59] == 0 {
		t.Errorf("busy's buckets end %v", b[55:])
	}
}

func TestPreview(t *testing.T) {
	secret := []byte("s3cr3t-value")
	for _, tc := range []struct {
		name, body string
		max        int
		want       string
	}{
		{"json members named like secrets", `{"action":"opened","token":"abc","nested":{"client_secret":"x","Authorization":"Bearer y"},"author":"ann"}`, 512,
			`{"action":"opened","author":"ann","nested":{"Authorization":"[redacted]","client_secret":"[redacted]"},"token":"[redacted]"}`},
		{"a secret's value anywhere", `{"comment":"the key is s3cr3t-value"}`, 512, `{"comment":"the key is [redacted]"}`},
		{"text", "payload=s3cr3t-value&x=<b>", 512, "payload=[redacted]&x=<b>"},
		{"cut on a rune boundary", `"ééééé"`, 4, `"é…`},
		{"off", `{"a":1}`, 0, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := history.Preview([]byte(tc.body), [][]byte{secret, []byte("ab")}, tc.max); got != tc.want {
				t.Errorf("got %s\nwant %s", got, tc.want)
			}
		})
	}
}

// oldEntry is a record written age ago.
func oldEntry(stream string, age time.Duration) *redis.XAddArgs {
	return &redis.XAddArgs{Stream: stream, ID: fmt.Sprintf("%d-0", time.Now().Add(-age).UnixMilli()),
		Values: []string{"r", `{"time":"2000-01-01T00:00:00Z","webhook_id":"old","outcome":"accepted"}`}}
}
