package history_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/codemie-edge/caddy-webhooks/internal/history"
	"github.com/codemie-edge/caddy-webhooks/internal/testenv"
)

const (
	key    = "codemie:webhooks:log"
	unauth = "codemie:webhooks:log:unauthenticated"
)

func record(webhook, delivery, outcome string) history.Record {
	return history.Record{Time: time.Now(), WebhookID: webhook, DeliveryID: delivery, Outcome: outcome}
}

func TestBoundsHold(t *testing.T) {
	r := testenv.StartRedis(t)
	ctx := context.Background()
	l := history.New(r.Client, key, unauth, history.Limits{MaxEntries: 50, MaxAge: time.Hour})
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
	aged := history.New(r.Client, "aged", "aged:u", history.Limits{MaxEntries: 1000, MaxAge: time.Hour})
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
	l := history.New(r.Client, key, unauth, history.Limits{MaxEntries: 10_000})
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
	if seen := pageAll(t, l, history.Query{WebhookID: "wh-2", Count: 150}); len(seen) != 400 {
		t.Errorf("paged through %d records, want 400", len(seen))
	}
	if _, _, err := l.List(ctx, history.Query{Before: "not-an-id"}); err == nil {
		t.Error("a bad before was taken")
	}
}

func TestWriterAndFollow(t *testing.T) {
	r := testenv.StartRedis(t)
	l := history.New(r.Client, key, unauth, history.Limits{MaxEntries: 1000})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	from, err := l.Now(ctx)
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan history.Record, 10)
	done := make(chan error, 1)
	go func() {
		done <- l.Follow(ctx, from, history.Query{WebhookID: "wh"}, 10*time.Millisecond, func(rec history.Record) error {
			got <- rec
			return nil
		})
	}()
	w := l.StartWriter(100, nil, zap.NewNop())
	w.Add(record("other", "x", history.Accepted))
	w.Add(record("wh", "d-1", history.Accepted))
	forged := record("wh", "d-2", history.Refused)
	forged.Unauthenticated = true
	w.Add(forged)
	w.Add(record("wh", "d-1", history.Dispatched))
	// Within a millisecond, the two streams' records come in either order;
	// each stream's own, in order.
	var outcomes []string
	for range 3 {
		select {
		case rec := <-got:
			if rec.WebhookID != "wh" || rec.ID == "" {
				t.Errorf("followed %+v, want one of wh's", rec)
			}
			if !rec.Unauthenticated {
				outcomes = append(outcomes, rec.Outcome)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("the followed record never came")
		}
	}
	if fmt.Sprint(outcomes) != fmt.Sprint([]string{history.Accepted, history.Dispatched}) {
		t.Errorf("followed %v", outcomes)
	}
	w.Stop()
	cancel()
	if err := <-done; err != context.Canceled {
		t.Errorf("Follow ended with %v", err)
	}
}

// TestWriterWakesForAFullBatch: records wait for the writer's interval,
// unless a batch's worth waits; Stop writes what waits.
func TestWriterWakesForAFullBatch(t *testing.T) {
	r := testenv.StartRedis(t)
	l := history.New(r.Client, key, unauth, history.Limits{MaxEntries: 10 * history.FlushSize})
	ctx := context.Background()
	w := l.StartWriterEvery(10*history.FlushSize, time.Hour)
	for range history.FlushSize - 1 {
		w.Add(record("wh", "d", history.Accepted))
	}
	w.Add(record("wh", "last", history.Accepted)) // a batch's worth: written now
	testenv.Eventually(t, "a full batch written before the interval", func() bool {
		n, _ := l.Length(ctx)
		return n == int64(history.FlushSize)
	})
	w.Add(record("wh", "more", history.Accepted)) // waits for the interval
	w.Stop()
	if n, err := l.Length(ctx); err != nil || n != int64(history.FlushSize)+1 {
		t.Errorf("after Stop the log holds %d records (%v), want %d", n, err, history.FlushSize+1)
	}
}

func TestWriterDropsRatherThanWaits(t *testing.T) {
	r := testenv.StartRedis(t)
	l := history.New(r.Client, key, unauth, history.Limits{MaxEntries: 1000})
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
	l := history.New(r.Client, key, unauth, history.Limits{MaxEntries: 1000})
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
	secret := []byte(`s3cr"et\value`)
	// A numeric secret, longer than a float holds exactly.
	numeric := []byte("12345678901234567")
	if got := history.Preview([]byte(`{"id":12345678901234567}`), "application/json", [][]byte{numeric}, 512); got != `{"id":[redacted]}` {
		t.Errorf("a numeric secret: %s", got)
	}
	// Overlapping secrets are hidden whole.
	if got := history.Preview([]byte(`{"a":"abcdefghijkl"}`), "application/json", [][]byte{[]byte("abcdefgh"), []byte("abcdefghijkl")}, 512); got != `{"a":"[redacted]"}` {
		t.Errorf("overlapping secrets: %s", got)
	}
	for _, tc := range []struct {
		name, body string
		max        int
		want       string
	}{
		{"json members named like secrets", `{"action":"opened","token":"abc","nested":{"client_secret":"x","Authorization":"Bearer y","passphrase":"p","jwt":"j"},"author":"ann"}`, 512,
			`{"action":"opened","author":"ann","nested":{"Authorization":"[redacted]","client_secret":"[redacted]","jwt":"[redacted]","passphrase":"[redacted]"},"token":"[redacted]"}`},
		{"a secret's value anywhere, escaped as JSON escapes it", `{"comment":"the key is s3cr\"et\\value!"}`, 512, `{"comment":"the key is [redacted]!"}`},
		{"a secret, URL-encoded", `{"url":"https://x.example/?k=s3cr%22et%5Cvalue"}`, 512, `{"url":"https://x.example/?k=[redacted]"}`},
		{"json inside a string", `{"Message":"{\"token\":\"tok-1\",\"a\":1}"}`, 512, `{"Message":"{\"a\":1,\"token\":\"[redacted]\"}"}`},
		{"name/value pairs", `{"headers":[{"name":"Authorization","value":"Bearer z"},{"name":"Accept","value":"*/*"}]}`, 512,
			`{"headers":[{"name":"Authorization","value":"[redacted]"},{"name":"Accept","value":"*/*"}]}`},
		{"a form, GitHub's payload within", `payload=%7B%22token%22%3A%22t%22%2C%22a%22%3A1%7D&password=hunter2`, 512,
			`{"password":"[redacted]","payload":"{\"a\":1,\"token\":\"[redacted]\"}"}`},
		{"text is not previewed", "user=bob the password is hunter2", 512, ""},
		{"JSON after a byte order mark", "\xef\xbb\xbf" + `{"password":"pw"}`, 512, `{"password":"[redacted]"}`},
		{"not one JSON document", `{"sig":"YWJj="} {"client_secret":"cs"}`, 512, ""},
		{"invalid JSON is not previewed", `{"n":s3cr}`, 512, ""},
		{"a secret in a key", `{"s3cr\"et\\value":1}`, 512, `{"[redacted]":1}`},
		{"a pair named by name and key", `[{"name":"x","key":"Authorization","value":"v"}]`, 512, `[{"key":"Authorization","name":"x","value":"[redacted]"}]`},
		{"cut on a rune boundary", `"ééééé"`, 4, `"é…`},
		{"off", `{"a":1}`, 0, ""},
		{"too large to preview", `"` + strings.Repeat("x", history.MaxPreviewed) + `"`, 512, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			contentType := "application/json"
			if strings.HasPrefix(tc.body, "payload=") {
				contentType = "application/x-www-form-urlencoded"
			}
			if got := history.Preview([]byte(tc.body), contentType, [][]byte{secret, []byte("ab")}, tc.max); got != tc.want {
				t.Errorf("got  %s\nwant %s", got, tc.want)
			}
		})
	}
}

// oldEntry is a record written age ago.
func oldEntry(stream string, age time.Duration) *redis.XAddArgs {
	return &redis.XAddArgs{Stream: stream, ID: fmt.Sprintf("%d-0", time.Now().Add(-age).UnixMilli()),
		Values: []string{"r", `{"time":"2000-01-01T00:00:00Z","webhook_id":"old","outcome":"accepted"}`}}
}

// TestUnauthenticatedKeptApart: a flood of records of requests that never
// authenticated cannot push the others out, and both read as one log.
func TestUnauthenticatedKeptApart(t *testing.T) {
	r := testenv.StartRedis(t)
	ctx := context.Background()
	l := history.New(r.Client, key, unauth, history.Limits{MaxEntries: 20_000})
	if err := l.Append(ctx, []history.Record{record("wh", "d-legit", history.Dispatched)}); err != nil {
		t.Fatal(err)
	}
	for i := range 30 { // 6,000 forged requests: more than the 2,000 kept apart
		batch := make([]history.Record, 200)
		for j := range batch {
			batch[j] = record(fmt.Sprint("attacker-", i), fmt.Sprint("f-", i*200+j), history.Refused)
			batch[j].Unauthenticated = true
		}
		if err := l.Append(ctx, batch); err != nil {
			t.Fatal(err)
		}
	}
	if n := r.Client.XLen(ctx, unauth).Val(); n != 2000 {
		t.Errorf("%d unauthenticated records kept, want 2,000 (a tenth of max_entries)", n)
	}
	got, _, err := l.List(ctx, history.Query{DeliveryID: "d-legit"})
	if err != nil || len(got) != 1 {
		t.Fatalf("the legitimate record is gone: %v %v", got, err)
	}
	counts, err := l.Counts(ctx, time.Now().Add(time.Second), time.Minute, 60, 10)
	if err != nil || len(counts) != 1 || counts[0].WebhookID != "wh" {
		t.Errorf("the chart counts %+v, want only wh", counts)
	}
	// Newest first across both streams, paged without a gap.
	if err := l.Append(ctx, []history.Record{record("wh", "d-last", history.Accepted)}); err != nil {
		t.Fatal(err)
	}
	page, next, err := l.List(ctx, history.Query{Count: 3})
	if err != nil || len(page) != 3 || page[0].DeliveryID != "d-last" || page[1].DeliveryID != "f-5999" || next == "" {
		t.Fatalf("first page %+v next %q: %v", page, next, err)
	}
	if seen := 3 + len(pageAll(t, l, history.Query{Count: 1000, Before: next})); seen != 2002 {
		t.Errorf("paged through %d records, want 2,002", seen)
	}
}

// TestRecordEncoding: the hand-written encoding reads back as the record,
// as encoding/json's own does, zero fields left out.
func TestRecordEncoding(t *testing.T) {
	for _, r := range []history.Record{
		{Time: time.Date(2026, 11, 27, 10, 42, 0, 123456789, time.UTC), WebhookID: "wh", Outcome: history.Accepted},
		{Time: time.Now(), WebhookID: "wh\"<&>\n", DeliveryID: "d\u2028\xff", Outcome: history.Dead, Reason: "create workflow execution: CodeMie answered 404",
			Status: 200, Attempts: 12, Step: "s", CodeMieStatus: 503, DurationMs: 0.125, AgeMs: 3_600_000.5, BodyBytes: 1 << 20,
			Preview: `{"a":"é"}`, Entry: "1-0", TraceID: "0af7651916cd43dd8448eb211c80319c", Unauthenticated: true},
	} {
		got := history.EncodeForTest(r)
		var back, want history.Record
		std, _ := json.Marshal(r)
		if err := json.Unmarshal(got, &back); err != nil {
			t.Fatalf("%s: %v", got, err)
		}
		_ = json.Unmarshal(std, &want)
		if !back.Time.Equal(want.Time) || fmt.Sprint(back.Time.Location()) != fmt.Sprint(want.Time.Location()) {
			t.Errorf("time %v, want %v", back.Time, want.Time)
		}
		back.Time, want.Time = time.Time{}, time.Time{}
		if back != want {
			t.Errorf("%s reads back as\n%+v, want\n%+v", got, back, want)
		}
		if strings.Contains(string(got), `"id"`) || strings.Contains(string(got), `:""`) || strings.Contains(string(got), `:0,`) {
			t.Errorf("%s holds the id or a zero field", got)
		}
	}
}

// TestPagingAcrossEqualIDs: both streams number their entries apart, so a
// batch writes the same stream ids to both; record ids still tell them
// apart, and pages of one record each miss none.
func TestPagingAcrossEqualIDs(t *testing.T) {
	r := testenv.StartRedis(t)
	ctx := context.Background()
	l := history.New(r.Client, key, unauth, history.Limits{MaxEntries: 1000})
	var batch []history.Record
	for i := range 4 {
		rec := record("wh", fmt.Sprint("d-", i), history.Refused)
		rec.Unauthenticated = i%2 == 1
		batch = append(batch, rec)
	}
	if err := l.Append(ctx, batch); err != nil {
		t.Fatal(err)
	}
	if ids := pageAll(t, l, history.Query{Count: 1}); len(ids) != 4 {
		t.Errorf("paged through %v, want 4 records", ids)
	}
}

// pageAll lists every record q selects, a page after another, and fails
// on a record listed twice; it returns the ids listed.
func pageAll(t *testing.T, l *history.Log, q history.Query) map[string]bool {
	t.Helper()
	ids := map[string]bool{}
	for {
		page, next, err := l.List(context.Background(), q)
		if err != nil {
			t.Fatal(err)
		}
		for _, rec := range page {
			if ids[rec.ID] {
				t.Fatalf("%s twice", rec.ID)
			}
			ids[rec.ID] = true
		}
		if next == "" {
			return ids
		}
		q.Before = next
	}
}
