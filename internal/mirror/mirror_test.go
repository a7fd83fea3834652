package mirror

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/url"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/codemie-edge/caddy-webhooks/internal/dispatch"
	"github.com/codemie-edge/caddy-webhooks/internal/integration"
	"github.com/codemie-edge/caddy-webhooks/internal/keyspace"
	"github.com/codemie-edge/caddy-webhooks/internal/seal"
	"github.com/codemie-edge/caddy-webhooks/internal/store"
	"github.com/codemie-edge/caddy-webhooks/internal/store/redisstore"
	"github.com/codemie-edge/caddy-webhooks/internal/testenv"
)

const testKey = "AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA="

func webhookSetting(id, settingID string, values ...any) testenv.Setting {
	s := testenv.Setting{ID: settingID, UserID: "u-1", ProjectName: "demo", Alias: "CI " + id, CredentialType: "Webhook", SettingType: "project",
		CredentialValues: []testenv.CredentialValue{{Key: "webhook_id", Value: id}, {Key: "is_enabled", Value: true}}}
	for i := 0; i+1 < len(values); i += 2 {
		s.CredentialValues = append(s.CredentialValues, testenv.CredentialValue{Key: values[i].(string), Value: values[i+1]})
	}
	return s
}

// fixture is CodeMie's settings: a GitHub webhook, a secure-header one
// (its value masked by the API), one whose id the edge refuses, one with
// an unknown resource type, and a setting that is not a webhook.
func fixture() []testenv.Setting {
	return []testenv.Setting{
		webhookSetting("gh-1", "s-1", "github_webhook_secret", "gh-secret", "resource_type", "workflow", "resource_id", "wf-1"),
		webhookSetting("hdr-1", "s-2", "secure_header_name", "X-Webhook-Key", "secure_header_value", "hdr-secret",
			"resource_type", "assistant", "resource_id", "asst-1"),
		webhookSetting("bad id", "s-3", "resource_type", "workflow", "resource_id", "wf-3"),
		webhookSetting("robot-1", "s-4", "resource_type", "robot", "resource_id", "r-1"),
		{ID: "s-5", CredentialType: "Git", CredentialValues: []testenv.CredentialValue{{Key: "url", Value: "https://git"}}},
	}
}

type env struct {
	api   *testenv.CodeMie
	st    *redisstore.Store
	keys  *seal.Keys
	src   *Source
	redis *testenv.Redis
}

func newEnv(t *testing.T) *env {
	t.Helper()
	r := testenv.StartRedis(t)
	api := testenv.StartCodeMie(t)
	keys, err := seal.ParseKeys(testKey)
	if err != nil {
		t.Fatal(err)
	}
	u, _ := url.Parse(api.URL)
	api.SetSettings(fixture())
	return &env{api: api, keys: keys, redis: r,
		st:  redisstore.New(r.Client, keyspace.Space{Prefix: keyspace.DefaultPrefix}, keys, zap.NewNop()),
		src: &Source{BaseURL: u, Tokens: dispatch.StaticToken("admin-token"), Client: &http.Client{}, PerPage: 2}}
}

// sync runs one sync and returns its plan and problems.
func (e *env) sync(t *testing.T) (Plan, []Problem) {
	t.Helper()
	ctx := context.Background()
	settings, err := e.src.Settings(ctx)
	if err != nil {
		t.Fatal(err)
	}
	records, problems := Records(settings)
	plan, err := MakePlan(ctx, e.st, e.keys, records, PlanOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := plan.Apply(ctx, e.st); err != nil {
		t.Fatal(err)
	}
	return plan, problems
}

func summary(p Plan) []string {
	var out []string
	for _, c := range p.Changes {
		out = append(out, c.Action+" "+c.ID+" "+strings.Join(c.Fields, ","))
	}
	slices.Sort(out)
	return out
}

func TestSync(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()

	// First sync: every webhook the edge can key is written; the refused
	// id and the unknown resource type are reported.
	plan, problems := e.sync(t)
	if got := summary(plan); len(got) != 3 || !strings.HasPrefix(got[0], "create gh-1 ") ||
		!strings.HasPrefix(got[1], "create hdr-1 ") || !strings.HasPrefix(got[2], "create robot-1 ") {
		t.Errorf("first sync: %v", got)
	}
	if len(problems) != 2 || problems[0].SettingID != "s-3" || problems[1].WebhookID != "robot-1" {
		t.Errorf("problems %v", problems)
	}
	if !slices.Equal(plan.NeedsValue["hdr-1"], []string{"secure_header_value"}) {
		t.Errorf("needs value: %v", plan.NeedsValue)
	}
	stored, _ := e.st.Fields(ctx, "gh-1")
	if stored[FieldSettingID] != "s-1" || stored["user_id"] != "u-1" || stored["project_name"] != "demo" ||
		stored["alias"] != "CI gh-1" || !seal.Sealed(stored["github_webhook_secret"]) {
		t.Errorf("gh-1 stored as %v", stored)
	}
	// The masked value has no stored value: the record stays malformed,
	// never served without its check.
	if _, err := e.st.Load(ctx, "hdr-1"); !integration.IsMalformed(err) {
		t.Errorf("hdr-1 without its secure header value: %v, want malformed", err)
	}

	// Nothing changed: nothing written.
	if plan, _ := e.sync(t); len(plan.Changes) != 0 {
		t.Errorf("second sync: %v", summary(plan))
	}

	// The masked value set by hand is kept by later syncs.
	fields, _ := e.st.Fields(ctx, "hdr-1")
	fields["secure_header_value"] = e.keys.Seal("hdr-1", []byte("hdr-secret"))
	if err := e.st.Put(ctx, "hdr-1", fields); err != nil {
		t.Fatal(err)
	}
	// A record written by hand, unknown to CodeMie, is left alone.
	if err := e.st.Put(ctx, "manual", map[string]string{"webhook_id": "manual", "is_enabled": "true"}); err != nil {
		t.Fatal(err)
	}
	if plan, _ := e.sync(t); len(plan.Changes) != 0 || len(plan.NeedsValue) != 0 {
		t.Errorf("after setting the masked value: %v, needs %v", summary(plan), plan.NeedsValue)
	}
	if in, err := e.st.Load(ctx, "hdr-1"); err != nil || string(in.SecureHeader.Value[0]) != "hdr-secret" {
		t.Errorf("hdr-1: %v", err)
	}

	// A changed secret, a disabled webhook, a deleted one.
	settings := fixture()
	settings[0] = webhookSetting("gh-1", "s-1", "github_webhook_secret", "rotated", "resource_type", "workflow", "resource_id", "wf-1")
	settings[1].CredentialValues[1].Value = false // hdr-1's is_enabled
	settings = slices.Delete(settings, 3, 4)      // robot-1
	e.api.SetSettings(settings)
	plan, _ = e.sync(t)
	want := []string{"delete robot-1 " + strings.Join([]string{"alias", FieldSettingID, "is_enabled", "project_name", "resource_id", "resource_type", "user_id", "webhook_id"}, ","),
		"update gh-1 github_webhook_secret", "update hdr-1 is_enabled"}
	if got := summary(plan); !slices.Equal(got, want) {
		t.Errorf("changes\n%v\nwant\n%v", got, want)
	}
	if _, err := e.st.Fields(ctx, "robot-1"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("robot-1 still stored: %v", err)
	}
	if _, err := e.st.Fields(ctx, "manual"); err != nil {
		t.Errorf("the hand-written record: %v", err)
	}
	if in, err := e.st.Load(ctx, "gh-1"); err != nil || string(in.GitHubSecret[0]) != "rotated" {
		t.Errorf("gh-1 after the rotation: %v", err)
	}
}

// TestSyncListingFails: CodeMie failing on a later page, or refusing the
// account, fails the whole listing (TestCLISync shows Redis unchanged).
func TestSyncListingFails(t *testing.T) {
	e := newEnv(t)
	e.api.FailWith(func(c testenv.Call) int {
		if strings.Contains(c.Path, "page=1&") {
			return http.StatusInternalServerError
		}
		return 0
	})
	if _, err := e.src.Settings(context.Background()); err == nil || !strings.Contains(err.Error(), "page 1: CodeMie answered 500") {
		t.Fatalf("err %v", err)
	}
	// Without a token: CodeMie's 401.
	e.api.FailWith(nil)
	e.src.Tokens = nil
	if _, err := e.src.Settings(context.Background()); err == nil || !strings.Contains(err.Error(), "401") {
		t.Errorf("without a token: %v", err)
	}
}

// TestSyncListingBounded: an API that keeps announcing more pages, each
// padded to a megabyte, is refused once the pages together pass
// maxListing, before they can take more memory.
func TestSyncListingBounded(t *testing.T) {
	var pages atomic.Int64
	padding := strings.Repeat(" ", 1<<20)
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := pages.Add(1)
		fmt.Fprintf(w, `{"data":[{"id":"s-%d","credential_type":"Webhook"}],"pagination":{"total":1000000000,"pages":1000000000}}%s`, n, padding)
	}))
	t.Cleanup(api.Close)
	u, _ := url.Parse(api.URL)
	src := &Source{BaseURL: u, Client: api.Client()}
	_, err := src.Settings(context.Background())
	if err == nil || !strings.Contains(err.Error(), "the listing is larger than 67108864 bytes") {
		t.Errorf("err %v, want the listing refused past maxListing", err)
	}
	if n := pages.Load(); n > maxListing>>20+1 {
		t.Errorf("%d pages read, want at most %d", n, maxListing>>20+1)
	}
}

// recordingTokens is a token source that says which tokens were dropped.
type recordingTokens struct {
	mu      sync.Mutex
	dropped []string
}

func (*recordingTokens) Token(context.Context, string) (string, error) { return "tok-1", nil }
func (r *recordingTokens) Invalidate(_, token string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.dropped = append(r.dropped, token)
	return true
}

// TestSyncDropsRefusedToken: a token the settings API refuses (401) is
// dropped, so the next sync fetches a new one instead of sending it again
// until a reload.
func TestSyncDropsRefusedToken(t *testing.T) {
	e := newEnv(t)
	tokens := &recordingTokens{}
	e.src.Tokens = tokens
	e.api.FailWith(func(testenv.Call) int { return http.StatusUnauthorized })
	if _, err := e.src.Settings(context.Background()); err == nil || !strings.Contains(err.Error(), "CodeMie answered 401") {
		t.Fatalf("err %v", err)
	}
	if !slices.Equal(tokens.dropped, []string{"tok-1"}) {
		t.Errorf("dropped %v, want the refused token", tokens.dropped)
	}
}

// TestSyncGivesUpAfterItsInterval: a settings API that never answers
// fails the sync at the end of its interval (reported, and tried again
// at the next tick), rather than holding the instance's sync for good.
func TestSyncGivesUpAfterItsInterval(t *testing.T) {
	e := newEnv(t)
	e.api.HangOn(func(testenv.Call) bool { return true })
	var failures atomic.Int64
	core, logs := observer.New(zap.WarnLevel)
	r := &Runner{Source: e.src, Store: e.st, Keys: e.keys, Redis: e.redis.Client, LockKey: "sync-lock", Holder: "me",
		Interval: 200 * time.Millisecond, Logger: zap.New(core), Failed: func() { failures.Add(1) }}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { r.Run(ctx); close(done) }()
	testenv.Eventually(t, "two syncs that gave up", func() bool { return failures.Load() >= 2 })
	cancel()
	<-done
	if got := logs.FilterMessage("integration sync failed; the next interval tries again").All(); len(got) < 2 ||
		!strings.Contains(fmt.Sprint(got[0].ContextMap()["error"]), "gave up after the interval (200ms)") {
		t.Errorf("logged %v, want each sync to say it gave up", got)
	}
}

// TestParseExport reads the settings API's answer and a list of rows.
func TestParseExport(t *testing.T) {
	for _, data := range []string{
		`{"data":[{"id":"s-1","credential_type":"Webhook","user_id":"u","credential_values":[{"key":"webhook_id","value":"a"},{"key":"is_enabled","value":true},{"key":"n","value":3}]}],"pagination":{"page":0,"per_page":10,"total":1,"pages":1}}`,
		`[{"id":"s-1","credential_type":"Webhook","user_id":"u","credential_values":[{"key":"webhook_id","value":"a"},{"key":"is_enabled","value":true},{"key":"n","value":3}]}]`,
	} {
		settings, err := ParseExport([]byte(data))
		if err != nil {
			t.Fatal(err)
		}
		records, problems := Records(settings)
		// "n" is no field of a webhook's: ignored.
		if len(records) != 1 || records[0].Fields["is_enabled"] != "true" || records[0].Fields["n"] != "" ||
			records[0].Fields[FieldSettingID] != "s-1" || records[0].Fields["user_id"] != "u" || len(problems) != 1 {
			t.Errorf("%s: %+v %v", data[:10], records, problems)
		}
	}
	if _, err := ParseExport([]byte(`{"items":[]}`)); err == nil {
		t.Error("an object without data was read")
	}
}

// TestRecordsTakeOnlyWebhookFields: of a setting's credential_values, a
// record takes only the fields of a webhook (CodeMie's and the edge's
// own); a value or column past maxValue makes the setting a Problem.
func TestRecordsTakeOnlyWebhookFields(t *testing.T) {
	long := strings.Repeat("x", maxValue+1)
	setting := func(id string, values ...any) Setting {
		s := Setting{ID: id, UserID: "u-1", CredentialType: "Webhook"}
		for _, v := range webhookSetting("w-"+id, id, values...).CredentialValues {
			raw, err := json.Marshal(v.Value)
			if err != nil {
				t.Fatal(err)
			}
			s.CredentialValues = append(s.CredentialValues, Credential{Key: v.Key, Value: raw})
		}
		return s
	}
	withLongID := setting("s-4")
	withLongID.ID = long
	records, problems := Records([]Setting{
		setting("s-1", "resource_type", "workflow", "resource_id", "wf", "github_webhook_secret\n", "x", "user_id", "someone-else",
			strings.Repeat("k", 100_000), "v", "filter", `event == "push"`),
		setting("s-2", "resource_type", "workflow", "resource_id", "wf", "github_webhook_secret", long),
		setting("s-3", "resource_type", "workflow", "resource_id", long),
		withLongID,
	})
	want := map[string]string{"webhook_id": "w-s-1", "is_enabled": "true", "resource_type": "workflow", "resource_id": "wf",
		"filter": `event == "push"`, "user_id": "u-1", FieldSettingID: "s-1"}
	if len(records) != 1 || !maps.Equal(records[0].Fields, want) {
		t.Errorf("records %+v\nwant one with %v", records, want)
	}
	if len(problems) != 3 {
		t.Fatalf("problems %v, want the three settings with a value too long", problems)
	}
	for _, p := range problems {
		if !strings.Contains(p.Reason, "longer than 65536 bytes") || strings.Contains(p.Reason, "xxx") {
			t.Errorf("problem %q, want the value too long, never the value", p.Reason)
		}
		if p.SettingID == "s-2" && p.WebhookID != "w-s-2" {
			t.Errorf("s-2's problem names webhook %q, want w-s-2", p.WebhookID)
		}
		if len(p.SettingID) > dispatch.MaxReason || len(p.WebhookID) > dispatch.MaxReason {
			t.Errorf("problem of setting %.20q... (%d bytes), webhook %.20q... (%d bytes): want each cut to %d",
				p.SettingID, len(p.SettingID), p.WebhookID, len(p.WebhookID), dispatch.MaxReason)
		}
	}
}

// TestRecordsNeedTheSettingID: a setting listed without its id is a
// Problem, not a record that later syncs would take for hand-written and
// keep after CodeMie deleted the setting.
func TestRecordsNeedTheSettingID(t *testing.T) {
	s := Setting{UserID: "u-1", CredentialType: "Webhook"}
	for _, v := range webhookSetting("w-1", "", "resource_type", "workflow", "resource_id", "wf").CredentialValues {
		raw, err := json.Marshal(v.Value)
		if err != nil {
			t.Fatal(err)
		}
		s.CredentialValues = append(s.CredentialValues, Credential{Key: v.Key, Value: raw})
	}
	records, problems := Records([]Setting{s})
	if len(records) != 0 || len(problems) != 1 || problems[0].WebhookID != "w-1" || problems[0].Reason != "the setting has no id" {
		t.Errorf("records %+v, problems %+v; want one problem for w-1, no record", records, problems)
	}
}

// TestRecordsDecodeOnlyWebhookFields: a value under a key that is no
// webhook field is never decoded (megabytes of [{},{},...] decoded took
// gigabytes), and one under a webhook field past maxValue is refused
// before it is.
func TestRecordsDecodeOnlyWebhookFields(t *testing.T) {
	junk := json.RawMessage("[" + strings.Repeat("{},", 4<<20) + "{}]")
	setting := func(key string) Setting {
		return Setting{ID: "s-" + key, CredentialType: "Webhook", CredentialValues: []Credential{
			{Key: "webhook_id", Value: json.RawMessage(`"w-` + key + `"`)}, {Key: "is_enabled", Value: json.RawMessage(`true`)},
			{Key: key, Value: junk}}}
	}
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	records, problems := Records([]Setting{setting("junk"), setting("resource_id")})
	runtime.ReadMemStats(&after)
	if grew := after.TotalAlloc - before.TotalAlloc; grew > 1<<20 {
		t.Errorf("Records allocated %d bytes for %d bytes of values, want them left undecoded", grew, 2*len(junk))
	}
	if len(records) != 1 || records[0].ID != "w-junk" || records[0].Fields["junk"] != "" {
		t.Errorf("records %+v, want w-junk without the junk", records)
	}
	if !slices.ContainsFunc(problems, func(p Problem) bool {
		return p.SettingID == "s-resource_id" && strings.Contains(p.Reason, "longer than 65536 bytes")
	}) {
		t.Errorf("problems %v, want s-resource_id's value refused", problems)
	}
}

// TestSyncContestedIDs: settings that list the same webhook id do not
// decide by the listing's order. The stored record stays its setting's;
// an id none of them wrote gets no record.
func TestSyncContestedIDs(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.sync(t)
	rival := webhookSetting("gh-1", "s-evil", "github_webhook_secret", "attacker-secret", "resource_type", "workflow", "resource_id", "attacker")
	e.api.SetSettings(append([]testenv.Setting{rival}, fixture()...))
	plan, problems := e.sync(t)
	if len(plan.Changes) != 0 || len(plan.Contested) != 0 {
		t.Errorf("plan %v, contested %v: want gh-1 kept as s-1 wrote it", summary(plan), plan.Contested)
	}
	if f, _ := e.st.Fields(ctx, "gh-1"); f[FieldSettingID] != "s-1" || f["resource_id"] != "wf-1" {
		t.Errorf("gh-1 after the rival's listing: %v", f)
	}
	contested := 0
	for _, p := range problems {
		if p.WebhookID == "gh-1" && strings.Contains(p.Reason, "another setting lists this webhook id too") {
			contested++
		}
	}
	if contested != 2 {
		t.Errorf("problems %v, want one for each of gh-1's two settings", problems)
	}

	// A new id two settings claim: neither is written.
	e.api.SetSettings(append(fixture(),
		webhookSetting("new-1", "s-a", "resource_type", "workflow", "resource_id", "a"),
		webhookSetting("new-1", "s-b", "resource_type", "workflow", "resource_id", "b")))
	plan, _ = e.sync(t)
	if !slices.Equal(plan.Contested, []string{"new-1"}) {
		t.Errorf("contested %v, want new-1", plan.Contested)
	}
	if _, err := e.st.Fields(ctx, "new-1"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("new-1 written: %v", err)
	}
}

// TestSyncLeavesHandWrittenRecords: an id CodeMie lists whose record was
// written by hand is neither updated nor, once CodeMie no longer lists it,
// deleted. Any CodeMie user who can save a setting could otherwise claim
// an id that exists only at the edge (a Stripe webhook, say), and have
// its verified deliveries sent to a workflow of theirs.
func TestSyncLeavesHandWrittenRecords(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	operator := map[string]string{"webhook_id": "stripe-1", "is_enabled": "true", "resource_type": "workflow",
		"resource_id": "billing", "user_id": "ops", "signature_scheme": "stripe", "signature_secret": "whsec_x"}
	if err := e.st.Put(ctx, "stripe-1", operator); err != nil {
		t.Fatal(err)
	}
	e.api.SetSettings(append(fixture(), webhookSetting("stripe-1", "s-9", "resource_type", "workflow", "resource_id", "attacker")))
	plan, _ := e.sync(t)
	if !slices.Equal(plan.HandWritten, []string{"stripe-1"}) || slices.ContainsFunc(plan.Changes, func(c Change) bool { return c.ID == "stripe-1" }) {
		t.Errorf("plan %v, hand-written %v: want stripe-1 left alone", summary(plan), plan.HandWritten)
	}
	e.api.SetSettings(fixture())
	e.sync(t)
	if got, err := e.st.Fields(ctx, "stripe-1"); err != nil || !maps.Equal(got, operator) {
		t.Errorf("stripe-1 after the syncs: %v %v, want the operator's record", got, err)
	}
}

// TestSyncSafety: what must never make a sync delete or weaken what is
// stored.
func TestSyncSafety(t *testing.T) {
	ctx := context.Background()
	t.Run("a listing that moves while read", func(t *testing.T) {
		e := newEnv(t)
		e.api.FailWith(func(c testenv.Call) int {
			if strings.Contains(c.Path, "page=1&") {
				e.api.SetSettings(fixture()[1:]) // a setting deleted after page 0 was read
			}
			return 0
		})
		if _, err := e.src.Settings(ctx); err == nil || !strings.Contains(err.Error(), "the total changed") {
			t.Errorf("err %v, want the listing refused", err)
		}
	})
	t.Run("one page of an export", func(t *testing.T) {
		_, err := ParseExport([]byte(`{"data":[{"id":"s-1","credential_type":"Webhook"}],"pagination":{"page":0,"per_page":1,"total":4,"pages":4}}`))
		if err == nil || !strings.Contains(err.Error(), "page 0 of 4") {
			t.Errorf("err %v, want a partial export refused", err)
		}
	})
	t.Run("most integrations gone", func(t *testing.T) {
		e := newEnv(t)
		e.sync(t)
		e.api.SetSettings(nil) // an account that sees no project, say
		settings, _ := e.src.Settings(ctx)
		records, _ := Records(settings)
		if _, err := MakePlan(ctx, e.st, e.keys, records, PlanOptions{}); !errors.Is(err, ErrMassDelete) {
			t.Errorf("err %v, want ErrMassDelete", err)
		}
		if p, err := MakePlan(ctx, e.st, e.keys, records, PlanOptions{MassDelete: true}); err != nil || len(p.Changes) != 3 {
			t.Errorf("allowed: %v %v", summary(p), err)
		}
	})
	t.Run("no key for encrypted secrets", func(t *testing.T) {
		e := newEnv(t)
		e.sync(t)
		settings, _ := e.src.Settings(ctx)
		records, _ := Records(settings)
		if _, err := MakePlan(ctx, e.st, nil, records, PlanOptions{}); !errors.Is(err, ErrNoKey) {
			t.Errorf("err %v, want ErrNoKey", err)
		}
	})
	t.Run("fields of the edge's own are kept", func(t *testing.T) {
		e := newEnv(t)
		e.sync(t)
		fields, _ := e.st.Fields(ctx, "gh-1")
		fields["graph_validation"], fields["event_field"] = "true", "action"
		if err := e.st.Put(ctx, "gh-1", fields); err != nil {
			t.Fatal(err)
		}
		if plan, _ := e.sync(t); len(plan.Changes) != 0 {
			t.Errorf("a sync changed fields CodeMie does not have: %v", summary(plan))
		}
		if f, _ := e.st.Fields(ctx, "gh-1"); f["graph_validation"] != "true" || f["event_field"] != "action" {
			t.Errorf("gh-1 after the sync: %v", f)
		}
	})
}
