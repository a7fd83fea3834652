package integration

import (
	"encoding/base64"
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/codemie-edge/caddy-webhooks/internal/seal"
)

func TestSealOpenMask(t *testing.T) {
	keys, err := seal.ParseKeys(base64.StdEncoding.EncodeToString(make([]byte, 32)))
	if err != nil {
		t.Fatal(err)
	}
	stored := map[string]string{
		FieldGitHubWebhookSecret: "old\nnew",
		FieldSecureHeaderName:    "X-Key",
		FieldSecureHeaderValue:   "hv",
		FieldResourceID:          "wf-1",
	}
	sealed := SealSecrets("wh", stored, keys)
	if stored[FieldGitHubWebhookSecret] != "old\nnew" {
		t.Error("SealSecrets changed its argument")
	}
	for _, v := range SplitSecretValues(sealed[FieldGitHubWebhookSecret]) {
		if !seal.Sealed(v) {
			t.Errorf("value %q not sealed", v)
		}
	}
	if sealed[FieldResourceID] != "wf-1" || sealed[FieldSecureHeaderName] != "X-Key" {
		t.Errorf("a field that is not secret changed: %v", sealed)
	}
	if again := SealSecrets("wh", sealed, keys); !maps.Equal(again, sealed) {
		t.Error("sealing sealed values sealed them again")
	}
	opened, err := OpenSecrets("wh", sealed, keys)
	if err != nil || !maps.Equal(opened, stored) {
		t.Errorf("OpenSecrets = %v, %v; want %v", opened, err, stored)
	}
	if _, err := OpenSecrets("other-webhook", sealed, keys); err == nil || !strings.Contains(err.Error(), "field ") {
		t.Errorf("values sealed for another webhook: %v; want an error naming the field", err)
	}
	masked := MaskSecrets(sealed)
	if masked[FieldGitHubWebhookSecret] != Mask+"\n"+Mask || masked[FieldSecureHeaderValue] != Mask || masked[FieldResourceID] != "wf-1" {
		t.Errorf("MaskSecrets = %v", masked)
	}
	if got := OpenedValues("wh", sealed[FieldGitHubWebhookSecret], keys); !slices.Equal(got, []string{"old", "new"}) {
		t.Errorf("OpenedValues = %v", got)
	}

	sum := Summarise(map[string]string{FieldIsEnabled: "true", FieldGitLabWebhookToken: "plain",
		FieldSignatureScheme: SchemeSlack, FieldSignatureSecret: sealed[FieldSecureHeaderValue], FieldSecureHeaderName: "X-Key"})
	want := Summary{Enabled: true, Mechanisms: []string{"gitlab", "header", "slack"}, PlainSecrets: []string{FieldGitLabWebhookToken}, Sealed: true}
	if !slices.Equal(sum.Mechanisms, want.Mechanisms) || !slices.Equal(sum.PlainSecrets, want.PlainSecrets) || sum.Enabled != want.Enabled || sum.Sealed != want.Sealed {
		t.Errorf("Summarise = %+v, want %+v", sum, want)
	}
}

func TestMechanisms(t *testing.T) {
	for _, m := range Mechanisms {
		got, ok := MechanismNamed(m.Name)
		if !ok || got.SecretField != m.SecretField {
			t.Errorf("MechanismNamed(%q) = %v, %v", m.Name, got, ok)
		}
		if !slices.Contains(SecretFields, m.SecretField) {
			t.Errorf("%s's secret field %s is not in SecretFields", m.Name, m.SecretField)
		}
	}
	if _, ok := MechanismNamed("nope"); ok {
		t.Error("an unknown mechanism was found")
	}
	for name, fields := range map[string]map[string]string{
		"":          {},
		"github":    {FieldGitHubWebhookSecret: "s"},
		"gitlab":    {FieldGitLabWebhookToken: "t"},
		"header":    {FieldSecureHeaderName: "X-Key", FieldSecureHeaderValue: "v"},
		"signature": {FieldSignatureScheme: SchemeSlack, FieldSignatureSecret: "s"},
	} {
		fields[FieldIsEnabled], fields[FieldResourceType], fields[FieldResourceID] = "true", ResourceWorkflow, "wf"
		in, err := Decode("wh", fields, nil)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if in.HasAuth() != (name != "") {
			t.Errorf("%q: HasAuth = %v", name, in.HasAuth())
		}
	}
}

func TestRotation(t *testing.T) {
	fields := map[string]string{FieldGitHubWebhookSecret: "old"}
	if n, err := AddSecret(fields, FieldGitHubWebhookSecret, "new"); n != 2 || err != nil || fields[FieldGitHubWebhookSecret] != "old\nnew" {
		t.Errorf("AddSecret = %d, %v; field %q", n, err, fields[FieldGitHubWebhookSecret])
	}
	for _, bad := range []string{"", "a\nb", "a\r"} {
		if _, err := AddSecret(fields, FieldGitHubWebhookSecret, bad); err == nil {
			t.Errorf("AddSecret took %q", bad)
		}
	}
	if err := KeepNewestSecret(fields, FieldGitHubWebhookSecret); err != nil || fields[FieldGitHubWebhookSecret] != "new" {
		t.Errorf("KeepNewestSecret: %v; field %q", err, fields[FieldGitHubWebhookSecret])
	}
	if err := KeepNewestSecret(fields, FieldGitHubWebhookSecret); err == nil {
		t.Error("finished a rotation of one secret")
	}
	if s := NewSecret(fields, FieldGitHubWebhookSecret); len(s) != 64 || s == NewSecret(fields, FieldGitHubWebhookSecret) {
		t.Errorf("NewSecret = %q", s)
	}
	sw := map[string]string{FieldSignatureScheme: SchemeStandardWebhooks}
	if s := NewSecret(sw, FieldSignatureSecret); !strings.HasPrefix(s, "whsec_") {
		t.Errorf("NewSecret for standard-webhooks = %q", s)
	}
}

// TestSchemesExplained: every scheme of Schemes is told to senders by check.
func TestSchemesExplained(t *testing.T) {
	for _, s := range Schemes {
		if words, ok := schemeWords[s]; !ok || words.headers == "" {
			t.Errorf("scheme %s has no words in Explain", s)
		}
	}
}
