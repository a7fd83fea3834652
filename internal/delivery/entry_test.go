package delivery

import (
	"encoding/json"
	"net/http"
	"reflect"
	"testing"
	"time"

	"github.com/codemie-edge/caddy-webhooks/internal/dispatch"
	"github.com/codemie-edge/caddy-webhooks/internal/headers"
)

// FuzzAppendMeta: any entry's meta field is valid JSON that reads back as
// encoding/json would have written it.
func FuzzAppendMeta(f *testing.F) {
	f.Add("wh", "workflow", "wf-1", "user", "d-1", "", "application/json", int64(1764200000000))
	f.Add("wh", "workflow", "wf-1", "user", "", "sha256:0a1b", "application/json", int64(1764200000000))
	f.Add("a\"b", "\\", "\x00", "\xff", "\u2028", "\x1f\"", "é\n", int64(-1))
	f.Fuzz(func(t *testing.T, id, rtype, rid, user, delivery, replayKey, header string, ms int64) {
		e := Entry{
			Job:        dispatch.Job{WebhookID: id, ResourceType: rtype, ResourceID: rid, UserID: user, DeliveryID: delivery},
			ReceivedAt: time.UnixMilli(ms),
			ReplayKey:  replayKey,
			Headers:    map[string]string{"Content-Type": header, "X-Github-Event": id},
		}
		raw := e.appendMeta(nil)
		var got meta
		if err := json.Unmarshal(raw, &got); err != nil {
			t.Fatalf("meta %s: %v", raw, err)
		}
		std, _ := json.Marshal(meta{WebhookID: id, ResourceType: rtype, ResourceID: rid, UserID: user,
			DeliveryID: delivery, ReplayKey: replayKey, ReceivedAt: ms, Headers: e.Headers})
		var want meta
		if err := json.Unmarshal(std, &want); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("meta reads back as %+v, want %+v", got, want)
		}
	})
}

// TestMetaSize: the meta field of an entry with every member set, and
// nothing to escape, fits in what metaSize allocates for it.
func TestMetaSize(t *testing.T) {
	e := Entry{
		Job: dispatch.Job{WebhookID: "wh-1", ResourceType: "datasource", ResourceID: "ds-1", UserID: "user-1",
			DeliveryID: "72d3162e-cc78-11e3-81ab-4c9367dc0958", TraceParent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"},
		ReceivedAt: time.UnixMilli(-1764200000000),
		ReplayKey:  "sha256:0a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f9",
		Headers:    map[string]string{},
	}
	for _, name := range headers.Kept {
		e.Headers[name] = "v"
	}
	if n, size := len(e.appendMeta(nil)), e.metaSize(); n > size {
		t.Errorf("meta is %d bytes, metaSize %d", n, size)
	}
}

// TestDecodeEarlierLayout: an entry enqueued by an older instance, one
// field per value, still decodes during a rolling upgrade.
func TestDecodeEarlierLayout(t *testing.T) {
	got, err := decodeEntry("1-1", map[string]any{
		"webhook_id": "wh", "resource_type": "workflow", "resource_id": "wf", "user_id": "u",
		"delivery_id": "d-1", "received_at": "1764200000000", "attempts": "2",
		"headers": `{"X-Github-Event":"push"}`, "body": "payload",
	})
	if err != nil {
		t.Fatal(err)
	}
	want := Entry{
		Job: dispatch.Job{WebhookID: "wh", ResourceType: "workflow", ResourceID: "wf", UserID: "u",
			DeliveryID: "d-1", Body: []byte("payload")},
		ReceivedAt: time.UnixMilli(1764200000000), Attempts: 2, Headers: map[string]string{"X-Github-Event": "push"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("decoded %+v, want %+v", got, want)
	}
	for _, broken := range []map[string]any{
		{"received_at": "x"},
		{"meta": "{not json"},
		{"meta": `{"received_at":1}`, "attempts": "many"},
		{"meta": `{"received_at":1}`, "attempts": "-1"}, // its backoff shifted by a negative count: a panic
	} {
		if _, err := decodeEntry("1-1", broken); err == nil {
			t.Errorf("%v decoded", broken)
		}
	}
}

// TestReplayKey: the replay key round-trips through the meta field, and an
// entry without one (enqueued before it existed, or with none set) stands
// for its delivery id.
func TestReplayKey(t *testing.T) {
	for _, c := range []struct{ meta, want string }{
		{`{"webhook_id":"wh","delivery_id":"d-1","received_at":1}`, "d-1"},
		{`{"webhook_id":"wh","delivery_id":"d-1","replay_key":"sha256:0a1b","received_at":1}`, "sha256:0a1b"},
	} {
		e, err := decodeEntry("1-1", map[string]any{"meta": c.meta, "body": "x"})
		if err != nil {
			t.Fatal(err)
		}
		if got := e.replayKey(); got != c.want {
			t.Errorf("%s: replay key %q, want %q", c.meta, got, c.want)
		}
	}
	e := Entry{Job: dispatch.Job{DeliveryID: "d-2"}, ReplayKey: "sha256:ff"}
	back, err := decodeEntry("1-1", map[string]any{"meta": string(e.appendMeta(nil))})
	if err != nil || back.ReplayKey != "sha256:ff" {
		t.Errorf("round trip: %+v, %v", back, err)
	}
}

// TestContentTypeRoundTrip: the kept Content-Type comes back as the job's,
// so that a form-encoded delivery is still dispatched as its payload.
func TestContentTypeRoundTrip(t *testing.T) {
	const form = "application/x-www-form-urlencoded"
	e := NewEntry(dispatch.Job{DeliveryID: "d-1", ContentType: form}, http.Header{"Content-Type": {form}}, nil, time.UnixMilli(1))
	back, err := decodeEntry("1-1", map[string]any{"meta": string(e.appendMeta(nil)), "body": "payload=%7B%7D"})
	if err != nil || back.Job.ContentType != form {
		t.Errorf("content type %q after a round trip (%v), want %q", back.Job.ContentType, err, form)
	}
}
