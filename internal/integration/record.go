package integration

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/codemie-edge/caddy-webhooks/internal/seal"
)

// Mechanism is one way an integration has its sender prove that a request
// is its own.
type Mechanism struct {
	// Name names the mechanism to people: in the CLI's list and its
	// rotate-secret --field.
	Name string
	// Field is the record field whose presence configures it.
	Field string
	// SecretField is the record field that holds its secrets.
	SecretField string
	// secrets returns an integration's secrets for it: none when the
	// integration does not configure it.
	secrets func(in *Integration) Secrets
}

// Mechanisms are the mechanisms an integration can configure: the one list
// of them (in the order of SecretFields; verify checks them in the
// backend's own order).
var Mechanisms = []Mechanism{
	{"header", FieldSecureHeaderName, FieldSecureHeaderValue, func(in *Integration) Secrets {
		if in.SecureHeader == nil {
			return nil
		}
		return in.SecureHeader.Value
	}},
	{"github", FieldGitHubWebhookSecret, FieldGitHubWebhookSecret, func(in *Integration) Secrets { return in.GitHubSecret }},
	{"gitlab", FieldGitLabWebhookToken, FieldGitLabWebhookToken, func(in *Integration) Secrets {
		if in.GitLab == nil {
			return nil
		}
		return in.GitLab.Token
	}},
	{"signature", FieldSignatureScheme, FieldSignatureSecret, func(in *Integration) Secrets {
		if in.Sender == nil {
			return nil
		}
		return in.Sender.SignatureSecret
	}},
}

// SecretFields are the fields that hold secrets: the mechanisms' secret
// fields.
var SecretFields = func() []string {
	out := make([]string, len(Mechanisms))
	for i, m := range Mechanisms {
		out[i] = m.SecretField
	}
	return out
}()

// MechanismNamed returns the mechanism called name.
func MechanismNamed(name string) (Mechanism, bool) {
	i := slices.IndexFunc(Mechanisms, func(m Mechanism) bool { return m.Name == name })
	if i < 0 {
		return Mechanism{}, false
	}
	return Mechanisms[i], true
}

// MechanismNames are the mechanisms' names, in order.
func MechanismNames() []string {
	out := make([]string, len(Mechanisms))
	for i, m := range Mechanisms {
		out[i] = m.Name
	}
	return out
}

// HasAuth reports whether the integration configures any mechanism.
func (in *Integration) HasAuth() bool {
	return slices.ContainsFunc(Mechanisms, func(m Mechanism) bool { return len(m.secrets(in)) > 0 })
}

// Mask stands for a secret value in output.
const Mask = "********"

// SealSecrets returns a copy of the stored fields of webhook id with every
// plain secret value sealed with keys; without keys, fields as they are.
func SealSecrets(id string, fields map[string]string, keys *seal.Keys) map[string]string {
	if keys == nil {
		return fields
	}
	return mapSecrets(fields, func(_, v string) string {
		if seal.Sealed(v) {
			return v
		}
		return keys.Seal(id, []byte(v))
	})
}

// OpenSecrets returns a copy of the stored fields of webhook id with every
// secret value in clear, or the first field whose value no key opens.
func OpenSecrets(id string, fields map[string]string, keys *seal.Keys) (map[string]string, error) {
	var failed error
	out := mapSecrets(fields, func(field, v string) string {
		plain, err := keys.Open(id, v)
		if err != nil && failed == nil {
			failed = fmt.Errorf("field %s: %w", field, err)
		}
		return string(plain)
	})
	return out, failed
}

// OpenedValues returns the values of a stored secret field in clear; a
// value no key opens stays as stored, so that it differs from anything in
// clear.
func OpenedValues(id, v string, keys *seal.Keys) []string {
	values := SplitSecretValues(v)
	for i, s := range values {
		if plain, err := keys.Open(id, s); err == nil {
			values[i] = string(plain)
		}
	}
	return values
}

// MaskSecrets returns a copy of fields with every secret value replaced by
// Mask.
func MaskSecrets(fields map[string]string) map[string]string {
	return mapSecrets(fields, func(string, string) string { return Mask })
}

// mapSecrets returns a copy of fields with each value of each secret field
// replaced by f of the field's name and the value.
func mapSecrets(fields map[string]string, f func(field, value string) string) map[string]string {
	out := maps.Clone(fields)
	for _, name := range SecretFields {
		values := SplitSecretValues(out[name])
		if len(values) == 0 {
			continue
		}
		for i, v := range values {
			values[i] = f(name, v)
		}
		out[name] = strings.Join(values, "\n")
	}
	return out
}

// Summary describes a stored record without naming a secret.
type Summary struct {
	// Enabled is the record's is_enabled.
	Enabled bool
	// Mechanisms names the mechanisms it configures (for "signature", its
	// scheme), sorted.
	Mechanisms []string
	// PlainSecrets names the secret fields that hold a value in clear.
	PlainSecrets []string
	// Sealed reports whether any secret value is sealed.
	Sealed bool
}

// Summarise describes the stored fields of a record.
func Summarise(fields map[string]string) Summary {
	var s Summary
	s.Enabled, _ = ParseBool(fields[FieldIsEnabled])
	for _, m := range Mechanisms {
		switch v := fields[m.Field]; {
		case v == "":
		case m.Field == FieldSignatureScheme:
			s.Mechanisms = append(s.Mechanisms, v)
		default:
			s.Mechanisms = append(s.Mechanisms, m.Name)
		}
	}
	slices.Sort(s.Mechanisms)
	for _, f := range SecretFields {
		for _, v := range SplitSecretValues(fields[f]) {
			if seal.Sealed(v) {
				s.Sealed = true
			} else if !slices.Contains(s.PlainSecrets, f) {
				s.PlainSecrets = append(s.PlainSecrets, f)
			}
		}
	}
	return s
}

// AddSecret adds secret to the secret field of the stored fields, beside
// the values it holds (while the sender is moved to the new one), and
// returns how many it holds now.
func AddSecret(fields map[string]string, field, secret string) (int, error) {
	if secret == "" || strings.ContainsAny(secret, "\r\n") {
		return 0, errors.New("a secret must be one line, not empty")
	}
	values := append(SplitSecretValues(fields[field]), secret)
	fields[field] = strings.Join(values, "\n")
	return len(values), nil
}

// KeepNewestSecret drops every value of the secret field of the stored
// fields but the newest, once the sender uses it.
func KeepNewestSecret(fields map[string]string, field string) error {
	values := SplitSecretValues(fields[field])
	if len(values) < 2 {
		return fmt.Errorf("holds %d secret: nothing to finish", len(values))
	}
	fields[field] = values[len(values)-1]
	return nil
}

// NewSecret returns a new random secret for the secret field of the stored
// fields: 32 bytes, in hex, or as a Standard Webhooks secret (whsec_ and
// base64) for that scheme's signature secret.
func NewSecret(fields map[string]string, field string) string {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	if field == FieldSignatureSecret && fields[FieldSignatureScheme] == SchemeStandardWebhooks {
		return "whsec_" + base64.StdEncoding.EncodeToString(b)
	}
	return hex.EncodeToString(b)
}
