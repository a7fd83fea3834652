// Package mirror keeps the edge's integration records in step with
// CodeMie, where integrations are created: it reads CodeMie's webhook
// settings (from its settings API, or from an export of it), turns each
// into the record the edge serves, and makes a store match them.
package mirror

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	"github.com/codemie-edge/caddy-webhooks/internal/dispatch"
	"github.com/codemie-edge/caddy-webhooks/internal/integration"
)

// Masked is how CodeMie's settings API shows a sensitive value
// (secure_header_value): never a value to store.
const Masked = "**********"

// FieldSettingID is the record field holding CodeMie's setting id. It
// marks a record as written by the mirror: only such records are deleted
// when their setting is gone from CodeMie; records written by hand are
// left alone.
const FieldSettingID = "codemie_setting_id"

// credentialType is the settings rows' credential_type of webhooks.
const credentialType = "Webhook"

// Setting is one of CodeMie's settings rows, as its settings API answers
// it (GET /v1/settings/project): the webhook's fields are the
// credential_values; owner, project and name are columns.
type Setting struct {
	ID               string       `json:"id"`
	UserID           string       `json:"user_id"`
	ProjectName      string       `json:"project_name"`
	Alias            string       `json:"alias"`
	CredentialType   string       `json:"credential_type"`
	CredentialValues []Credential `json:"credential_values"`
}

// Credential is one key of a setting's credential_values. Its value is
// kept as JSON until the key is known to be a webhook's field: a value
// under a key that is ignored is never decoded (a listing's megabytes of
// [{},{},...] decoded would take gigabytes).
type Credential struct {
	Key   string          `json:"key"`
	Value json.RawMessage `json:"value"`
}

// Record is the record the edge serves for one setting.
type Record struct {
	// ID is the webhook id.
	ID string
	// Fields are the record's fields, secrets in clear.
	Fields map[string]string
	// Masked lists the fields CodeMie masked: the stored values are kept.
	Masked []string
	// Rivals are the records of the other settings that list the same
	// webhook id. The order of a listing cannot decide between them:
	// MakePlan keeps the one whose setting wrote the stored record, and
	// writes none for an id that none of them wrote.
	Rivals []Record
}

// Problem is a setting the edge cannot serve as CodeMie stores it:
// reported, never silently dropped.
type Problem struct {
	SettingID string
	WebhookID string
	Reason    string
}

// problem is a setting's Problem, each part cut to dispatch.MaxReason
// bytes: a setting's values are CodeMie users' text, and problems are
// logged at every sync.
func problem(settingID, webhookID, reason string) Problem {
	return Problem{SettingID: dispatch.ShortReason(settingID), WebhookID: dispatch.ShortReason(webhookID), Reason: dispatch.ShortReason(reason)}
}

func (p Problem) String() string {
	return fmt.Sprintf("setting %s (webhook %q): %s", p.SettingID, p.WebhookID, p.Reason)
}

// Records turns CodeMie's webhook settings into records. Settings of
// another credential type are skipped; one without a usable webhook id is
// a Problem and no record; settings that list the same id are each a
// Problem, and one record whose Rivals are the others'; one the edge will
// refuse when it is served (such as an unknown resource type) is a record
// and a Problem.
func Records(settings []Setting) ([]Record, []Problem) {
	var (
		records  []Record
		problems []Problem
		first    = map[string]int{} // index in records of the first record of each id
	)
	for _, s := range settings {
		if s.CredentialType != credentialType {
			continue
		}
		r, err := record(s)
		if err != nil {
			problems = append(problems, problem(s.ID, r.ID, err.Error()))
			continue
		}
		if i, ok := first[r.ID]; ok {
			if len(records[i].Rivals) == 0 {
				problems = append(problems, problem(records[i].Fields[FieldSettingID], r.ID, contested))
			}
			records[i].Rivals = append(records[i].Rivals, r)
			problems = append(problems, problem(s.ID, r.ID, contested))
			continue
		}
		first[r.ID] = len(records)
		records = append(records, r)
		if len(r.Masked) == 0 {
			if _, err := integration.DecodeForWrite(r.ID, r.Fields, nil); err != nil {
				problems = append(problems, problem(s.ID, r.ID, "the edge refuses it: "+err.Error()))
			}
		}
	}
	return records, problems
}

// contested is the problem of each setting that lists a webhook id
// another setting lists too.
const contested = "another setting lists this webhook id too: the stored record stays as its own setting wrote it, and none is written for an id none of them wrote"

// credentialFields are the credential_values keys a record takes:
// CodeMie's webhook fields (src/codemie/triggers/bindings/webhook.py) and
// the edge's own (integration.SenderFields). Other keys are ignored: they
// would do nothing but take room, and the owner, project and alias come
// from the setting's columns.
var credentialFields = append([]string{integration.FieldWebhookID, integration.FieldIsEnabled,
	integration.FieldSecureHeaderName, integration.FieldSecureHeaderValue, integration.FieldGitHubRequireSHA256,
	integration.FieldGitHubWebhookSecret, integration.FieldGitHubEventFilter, integration.FieldGitLabWebhookToken,
	integration.FieldGitLabEventFilter, integration.FieldResourceType, integration.FieldResourceID}, integration.SenderFields...)

// maxValue bounds a field's value, and a column's, in bytes: a setting
// with a longer one is a Problem and no record.
const maxValue = 64 << 10

// credentialValue is c's value as a record field holds it, decoded only
// when it is at most maxValue bytes of JSON.
func credentialValue(c Credential) (string, error) {
	if len(c.Value) > maxValue {
		return "", fmt.Errorf("field %s: longer than %d bytes", c.Key, maxValue)
	}
	var value any
	if err := decodeJSON(c.Value, &value); err != nil && len(c.Value) > 0 {
		return "", fmt.Errorf("field %s: %v", c.Key, err)
	}
	v, err := integration.FieldValue(c.Key, value)
	switch {
	case err != nil:
		return "", fmt.Errorf("field %s: %v", c.Key, err)
	case len(v) > maxValue:
		return "", fmt.Errorf("field %s: longer than %d bytes", c.Key, maxValue)
	}
	return v, nil
}

// record flattens one setting.
func record(s Setting) (Record, error) {
	r := Record{Fields: map[string]string{}}
	var bad error // the first field refused; the rest are read for the id
	for _, c := range s.CredentialValues {
		if !slices.Contains(credentialFields, c.Key) {
			continue
		}
		v, err := credentialValue(c)
		switch {
		case err != nil:
			if bad == nil {
				bad = err
			}
		case v == "":
		case v == Masked && slices.Contains(integration.SecretFields, c.Key):
			r.Masked = append(r.Masked, c.Key)
		default:
			r.Fields[c.Key] = v
		}
	}
	r.ID = r.Fields[integration.FieldWebhookID]
	if bad != nil {
		return r, bad
	}
	if !integration.ValidID(r.ID) {
		return r, fmt.Errorf("webhook id %q: the edge serves only 1 to 128 characters of A-Z a-z 0-9 . _ ~ -", r.ID)
	}
	if s.ID == "" {
		// Its record would be hand-written to every later sync: never
		// updated, nor deleted with the setting.
		return r, errors.New("the setting has no id")
	}
	for field, v := range map[string]string{integration.FieldUserID: s.UserID, integration.FieldProjectName: s.ProjectName,
		integration.FieldAlias: s.Alias, FieldSettingID: s.ID} {
		if len(v) > maxValue {
			return r, fmt.Errorf("%s: longer than %d bytes", field, maxValue)
		}
		if v != "" {
			r.Fields[field] = v
		}
	}
	return r, nil
}
