package integration

import (
	"reflect"
	"strings"
	"testing"
)

func TestDecodeFile(t *testing.T) {
	got, err := DecodeFile([]byte(`[
		{"webhook_id": "a", "is_enabled": true, "resource_type": "workflow", "resource_id": "w1",
		 "github_webhook_secret": ["old", "new"], "github_event_filter": ["push", "ping"]},
		{"webhook_id": "b", "is_enabled": "False", "github_require_sha256": 0, "alias": null}
	]`), nil)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]*Integration{
		"a": {ID: "a", Enabled: true, ResourceType: "workflow", ResourceID: "w1", GitHubRequireSHA256: true,
			GitHubSecret: Secrets{Secret("old"), Secret("new")}, GitHubEventFilter: []string{"push", "ping"}},
		"b": {ID: "b"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %#v\nwant %#v", got, want)
	}
}

func TestDecodeFileErrors(t *testing.T) {
	const secret = "hunter2-secret"
	for _, tc := range []struct {
		name, data, want string
	}{
		{"not JSON", `[{"webhook_id": "a", "github_webhook_secret": "` + secret + `"`, "invalid JSON"},
		{"bad JSON", `[{"webhook_id": "a" "` + secret + `"}]`, "invalid JSON at byte"},
		{"empty", ``, "invalid JSON"},
		{"not an array", `{"webhook_id": "a"}`, "want an array of objects"},
		{"trailing data", `[] []`, "data after the array"},
		{"no id", `[{"is_enabled": true}]`, "record 0: field webhook_id: required"},
		{"duplicate id", `[{"webhook_id": "a"}, {"webhook_id": "a"}]`, `record 1: webhook_id "a" appears more than once`},
		{"object value", `[{"webhook_id": "a", "github_webhook_secret": {"v": "` + secret + `"}}]`, "field github_webhook_secret: must be"},
		{"array of numbers", `[{"webhook_id": "a", "github_event_filter": [1]}]`, "field github_event_filter: array entries"},
		{"bad boolean", `[{"webhook_id": "a", "is_enabled": "` + secret + `"}]`, `integration "a": field is_enabled: not a boolean`},
		{"bad id", `[{"webhook_id": "a b"}]`, "field webhook_id: must be"},
		{"empty token values", `[{"webhook_id": "a", "gitlab_webhook_token": ["", ""]}]`, "field gitlab_webhook_token: a secret's values must not be empty"},
		{"an empty secret among others", `[{"webhook_id": "a", "github_webhook_secret": ["` + secret + `", ""]}]`, "field github_webhook_secret: a secret's values must not be empty"},
		{"secret of a line break", `[{"webhook_id": "a", "github_webhook_secret": "\n"}]`, "field github_webhook_secret: holds no value"},
		{"secret of a space", `[{"webhook_id": "a", "github_webhook_secret": " "}]`, "field github_webhook_secret: a value is only spaces"},
		{"a space among the values", `[{"webhook_id": "a", "gitlab_webhook_token": "abc\r\n \t"}]`, "field gitlab_webhook_token: a value is only spaces"},
		{"secret of a NUL", `[{"webhook_id": "a", "signature_scheme": "github", "signature_secret": "\u0000"}]`, "field signature_secret: a value holds a control character"},
		{"secret with a control character", `[{"webhook_id": "a", "github_webhook_secret": "ab\u0007cd"}]`, "field github_webhook_secret: a value holds a control character"},
		{"id of two dots", `[{"webhook_id": ".."}]`, "field webhook_id: must be"},
		{"a field twice", `[{"webhook_id": "a", "github_webhook_secret": "` + secret + `"}, {"webhook_id": "b", "github_webhook_secret": "` + secret + `", "is_enabled": true, "github_webhook_secret": null}]`,
			`integrations file record 1: field "github_webhook_secret" appears more than once`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := DecodeFile([]byte(tc.data), nil)
			if err == nil {
				t.Fatal("want an error")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not contain %q", err, tc.want)
			}
			if strings.Contains(err.Error(), secret) {
				t.Errorf("error %q reveals a secret", err)
			}
		})
	}
}

// FuzzDecodeFileFields: any input is decoded or refused, never a panic;
// each record decoded has a webhook id.
func FuzzDecodeFileFields(f *testing.F) {
	for _, seed := range []string{`[]`, `[{"webhook_id": "a"}]`, `[{"webhook_id": "a", "x": [1, {"y": 2}]}]`,
		`[{"webhook_id": "a", "webhook_id": "b"}]`, `[{"webhook_id": "a", "s": ["x", "y"]}, {"webhook_id": "b"}]`, `[[]]`, `[{}`} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, data string) {
		records, err := DecodeFileFields([]byte(data))
		if err != nil {
			return
		}
		for i, r := range records {
			if r[FieldWebhookID] == "" {
				t.Errorf("record %d decoded without a webhook id: %v", i, r)
			}
		}
	})
}
