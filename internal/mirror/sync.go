package mirror

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"

	"github.com/codemie-edge/caddy-webhooks/internal/integration"
	"github.com/codemie-edge/caddy-webhooks/internal/seal"
	"github.com/codemie-edge/caddy-webhooks/internal/store"
)

// Store is where the edge's records are kept (redisstore.Store).
type Store interface {
	// IDs lists the stored webhook ids.
	IDs(ctx context.Context) ([]string, error)
	// Fields returns a record as stored, or store.ErrNotFound.
	Fields(ctx context.Context, id string) (map[string]string, error)
	// Put replaces a record atomically and announces the change.
	Put(ctx context.Context, id string, fields map[string]string) error
	// Delete removes a record and announces the change.
	Delete(ctx context.Context, id string) (bool, error)
}

// Actions of a Change.
const (
	Create = "create"
	Update = "update"
	Delete = "delete"
)

// Change is what a sync does to one integration.
type Change struct {
	ID     string
	Action string
	// Fields names the fields written, changed or removed; never a value.
	Fields []string

	write map[string]string // the record to write, secrets sealed
}

// Plan is what a sync would do.
type Plan struct {
	Changes []Change
	// NeedsValue lists, by webhook id, the fields CodeMie masks that the
	// store holds no value for: such a record is written without them and
	// so stays malformed (never served without its check) until they are
	// set by hand (caddy codemie-webhooks set).
	NeedsValue map[string][]string
	// HandWritten lists the ids CodeMie lists whose stored record was
	// written by hand (it has no codemie_setting_id): such a record is the
	// operator's, and is left alone. Any CodeMie user who can save a
	// setting could otherwise claim an id that exists only at the edge, and
	// have its verified deliveries sent to a resource of theirs.
	HandWritten []string
	// Contested lists the ids that several settings list, none of which
	// wrote the stored record (or there is none): nothing is written for
	// them, and a stored record stays as it is.
	Contested []string
}

// edgeFields are the record fields beyond CodeMie's (for senders other
// than GitHub and GitLab): CodeMie never lists them, so a value set at the
// edge is kept.
var edgeFields = integration.SenderFields

// ErrNoKey says the store holds encrypted secrets and no key was given:
// comparing or writing them would store secrets in clear.
var ErrNoKey = errors.New("the stored integrations hold encrypted secrets: give the secrets key (CODEMIE_WEBHOOKS_KEY)")

// ErrMassDelete says a plan would delete more than half of the records the
// mirror wrote; see PlanOptions.MassDelete.
var ErrMassDelete = errors.New("the listing would delete most of the integrations synced from CodeMie")

// PlanOptions change what a plan may do.
type PlanOptions struct {
	// MassDelete allows deleting more than half of the records the
	// mirror wrote (and more than one) in one plan. Without it such a plan
	// is refused: a listing that misses settings (an account that is not
	// an admin of every project sees only its own) must not empty Redis.
	MassDelete bool
	// KeepOthers plans no deletion: the records are added or updated, and
	// the other stored records stay (an import of some settings).
	KeepOthers bool
}

// MakePlan compares records with what st holds and returns the changes
// that make st match. A masked field keeps its stored value, and so does
// a field of the edge's own (edgeFields) that CodeMie does not list; a
// record equal to the stored one (secrets compared in clear) is no change;
// a stored record written by the mirror whose setting is gone is deleted;
// one written by hand is neither updated nor deleted (Plan.HandWritten);
// an id several settings list takes the record of the one that wrote the
// stored record, or none (Plan.Contested).
// keys opens stored secrets and seals
// the written ones (nil: stored in clear, refused when the store holds
// encrypted ones).
func MakePlan(ctx context.Context, st Store, keys *seal.Keys, records []Record, opts PlanOptions) (Plan, error) {
	p := Plan{NeedsValue: map[string][]string{}}
	want := map[string]bool{}
	for _, r := range records {
		want[r.ID] = true
		stored, err := st.Fields(ctx, r.ID)
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return Plan{}, err
		}
		if stored != nil && stored[FieldSettingID] == "" {
			p.HandWritten = append(p.HandWritten, r.ID)
			continue
		}
		if len(r.Rivals) > 0 {
			var ok bool
			if r, ok = writer(r, stored); !ok {
				p.Contested = append(p.Contested, r.ID)
				continue
			}
		}
		if keys == nil && integration.Summarise(stored).Sealed {
			return Plan{}, ErrNoKey
		}
		fields := maps.Clone(r.Fields)
		for _, f := range r.Masked {
			if v, ok := stored[f]; ok {
				fields[f] = v
			} else {
				p.NeedsValue[r.ID] = append(p.NeedsValue[r.ID], f)
			}
		}
		for _, f := range edgeFields {
			if _, listed := fields[f]; !listed && stored[f] != "" {
				fields[f] = stored[f]
			}
		}
		changed := differing(r.ID, stored, fields, keys)
		if len(changed) == 0 {
			continue
		}
		action := Update
		if stored == nil {
			action = Create
		}
		p.Changes = append(p.Changes, Change{ID: r.ID, Action: action, Fields: changed, write: integration.SealSecrets(r.ID, fields, keys)})
	}
	ids, err := st.IDs(ctx)
	if err != nil {
		return Plan{}, err
	}
	owned, deletes := 0, 0
	for _, id := range ids {
		stored, err := st.Fields(ctx, id)
		switch {
		case errors.Is(err, store.ErrNotFound):
			continue
		case err != nil:
			return Plan{}, err
		}
		if stored[FieldSettingID] == "" {
			continue
		}
		owned++
		if !want[id] && !opts.KeepOthers {
			deletes++
			p.Changes = append(p.Changes, Change{ID: id, Action: Delete, Fields: slices.Sorted(maps.Keys(stored))})
		}
	}
	if deletes > 1 && 2*deletes > owned && !opts.MassDelete {
		return Plan{}, fmt.Errorf("%w (%d of %d): is the account an admin of every project? Allow it explicitly (--force) if it is meant",
			ErrMassDelete, deletes, owned)
	}
	return p, nil
}

// writer returns, of r and its rivals, the record of the setting that
// wrote stored; false when none did.
func writer(r Record, stored map[string]string) (Record, bool) {
	for _, c := range append([]Record{r}, r.Rivals...) {
		if stored != nil && c.Fields[FieldSettingID] == stored[FieldSettingID] {
			return c, true
		}
	}
	return r, false
}

// Apply makes the plan's changes, each integration atomically and
// announced on the change channel, and stops at the first error.
func (p Plan) Apply(ctx context.Context, st Store) error {
	for _, c := range p.Changes {
		var err error
		if c.Action == Delete {
			_, err = st.Delete(ctx, c.ID)
		} else {
			err = st.Put(ctx, c.ID, c.write)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// differing returns the sorted names of the fields in which the stored
// record and want differ; secrets are compared in clear.
func differing(id string, stored, want map[string]string, keys *seal.Keys) []string {
	var out []string
	for f := range joined(stored, want) {
		s, sok := stored[f]
		w, wok := want[f]
		if sok != wok || !sameValue(id, f, s, w, keys) {
			out = append(out, f)
		}
	}
	slices.Sort(out)
	return out
}

func joined(a, b map[string]string) map[string]bool {
	out := map[string]bool{}
	for k := range a {
		out[k] = true
	}
	for k := range b {
		out[k] = true
	}
	return out
}

// sameValue compares two values of field f; a secret's values in clear.
func sameValue(id, f, a, b string, keys *seal.Keys) bool {
	if a == b {
		return true
	}
	if !slices.Contains(integration.SecretFields, f) {
		return false
	}
	return slices.Equal(integration.OpenedValues(id, a, keys), integration.OpenedValues(id, b, keys))
}
