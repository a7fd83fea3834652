package integration

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/codemie-edge/caddy-webhooks/internal/seal"
)

// DecodeFile decodes an integrations file: a JSON array of records with the
// field names of the Redis hash. Values may be strings, booleans, numbers or,
// for list and secret fields, arrays of strings (joined with commas and new
// lines respectively). Each record needs a webhook_id, unique in the file.
// An error names the record (by index or id) and field, never a value.
func DecodeFile(data []byte, keys *seal.Keys) (map[string]*Integration, error) {
	records, err := DecodeFileFields(data)
	if err != nil {
		return nil, err
	}
	out := make(map[string]*Integration, len(records))
	for i, fields := range records {
		in, err := Decode(fields[FieldWebhookID], fields, keys)
		if err != nil {
			return nil, fmt.Errorf("integrations file record %d: %w", i, err)
		}
		out[in.ID] = in
	}
	return out, nil
}

// DecodeFileFields decodes an integrations file into each record's fields,
// as they would be stored in a Redis hash, checking that every record has a
// webhook_id unique in the file.
func DecodeFileFields(data []byte) ([]map[string]string, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var records []map[string]any
	if err := dec.Decode(&records); err != nil {
		return nil, fmt.Errorf("decoding integrations file: %v", jsonErrorWithoutValue(err))
	}
	if dec.More() {
		return nil, fmt.Errorf("decoding integrations file: data after the array")
	}
	if err := repeatedField(data); err != nil {
		return nil, err
	}
	out := make([]map[string]string, 0, len(records))
	seen := map[string]bool{}
	for i, rec := range records {
		fields, err := flatten(rec)
		if err != nil {
			return nil, fmt.Errorf("integrations file record %d: %v", i, err)
		}
		id := fields[FieldWebhookID]
		if id == "" {
			return nil, fmt.Errorf("integrations file record %d: field %s: required", i, FieldWebhookID)
		}
		if seen[id] {
			return nil, fmt.Errorf("integrations file record %d: webhook_id %q appears more than once", i, id)
		}
		seen[id] = true
		out = append(out, fields)
	}
	return out, nil
}

// repeatedField refuses a record that names a field twice: encoding/json
// keeps the last value, so a secret followed by "github_webhook_secret":
// null would turn the check off unseen. data has decoded as an array of
// objects already (so its nesting is bounded).
func repeatedField(data []byte) error {
	type frame struct {
		object, wantKey bool
		names           map[string]bool
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	var stack []frame
	record := -1
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("decoding integrations file: %v", jsonErrorWithoutValue(err))
		}
		top := len(stack) - 1
		switch tok {
		case json.Delim('{'), json.Delim('['):
			if len(stack) == 1 {
				record++
			}
			stack = append(stack, frame{object: tok == json.Delim('{'), wantKey: true, names: map[string]bool{}})
			continue
		case json.Delim('}'), json.Delim(']'):
			stack = stack[:top]
		default:
			if top < 0 {
				continue // no scalar stands alone: the data is an array
			}
			if f := &stack[top]; f.object && f.wantKey {
				name, _ := tok.(string)
				if f.names[name] {
					return fmt.Errorf("integrations file record %d: field %q appears more than once", record, name)
				}
				f.names[name], f.wantKey = true, false
				continue
			}
		}
		if top := len(stack) - 1; top >= 0 && stack[top].object {
			stack[top].wantKey = true // a value ended: a name comes next
		}
	}
}

// jsonErrorWithoutValue keeps the position of a JSON syntax or type error but
// not the offending value, which could be a secret.
func jsonErrorWithoutValue(err error) error {
	switch e := err.(type) {
	case *json.SyntaxError:
		return fmt.Errorf("invalid JSON at byte %d", e.Offset)
	case *json.UnmarshalTypeError:
		return fmt.Errorf("want an array of objects, got %s at byte %d", e.Value, e.Offset)
	}
	if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
		return errors.New("invalid JSON: unexpected end of file")
	}
	return err
}

// flatten turns one JSON record into the string fields of a Redis hash.
func flatten(rec map[string]any) (map[string]string, error) {
	fields := make(map[string]string, len(rec))
	for name, v := range rec {
		s, err := FieldValue(name, v)
		if err != nil {
			return nil, fmt.Errorf("field %s: %v", name, err)
		}
		fields[name] = s
	}
	return fields, nil
}

// FieldValue is a JSON value of field name as a record stores it: strings
// as they are, booleans as true/false, numbers as written (decode with
// UseNumber), arrays of strings joined (secret fields' values one per
// line, others with commas); null is unset.
func FieldValue(name string, v any) (string, error) {
	switch v := v.(type) {
	case nil:
		return "", nil
	case string:
		return v, nil
	case bool:
		if v {
			return "true", nil
		}
		return "false", nil
	case json.Number:
		return v.String(), nil
	case []any:
		sep := ","
		if isSecretField(name) {
			sep = "\n"
		}
		parts := make([]string, len(v))
		for i, e := range v {
			s, ok := e.(string)
			if !ok {
				return "", fmt.Errorf("array entries must be strings")
			}
			if s == "" && sep == "\n" {
				return "", fmt.Errorf("a secret's values must not be empty")
			}
			parts[i] = s
		}
		return strings.Join(parts, sep), nil
	}
	return "", fmt.Errorf("must be a string, boolean, number or array of strings")
}

// isSecretField reports whether the named field holds secrets.
func isSecretField(name string) bool {
	return slices.Contains(SecretFields, name)
}
