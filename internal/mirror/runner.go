package mirror

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/codemie-edge/caddy-webhooks/internal/seal"
)

// Runner syncs on an interval, one instance at a time across the
// instances that share a Redis: the instance holding a lock syncs at each
// of its ticks and renews the lock for one and a half intervals; the
// others find it held and do nothing. When the holder stops (or misses
// ticks), the lock expires and another instance takes it at its next
// tick. So each interval sees one sync.
type Runner struct {
	Source   *Source
	Store    Store
	Keys     *seal.Keys
	Redis    redis.UniversalClient
	LockKey  string
	Holder   string // this instance, unique across the fleet
	Interval time.Duration
	Logger   *zap.Logger
	// Synced is told, after each sync this instance made, how many webhook
	// settings CodeMie listed and how many changes were written.
	Synced func(settings, changes int)
	// Failed is told of each sync that failed.
	Failed func()
}

// Run syncs at once and then every Interval, while this instance holds
// the lock, until ctx is done.
func (r *Runner) Run(ctx context.Context) {
	t := time.NewTicker(r.Interval)
	defer t.Stop()
	for {
		r.tick(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// lockScript takes the lock for ARGV[1], or renews it when ARGV[1] holds
// it, for ARGV[2] ms; 1 when this instance holds it now.
var lockScript = redis.NewScript(`
local holder = redis.call('GET', KEYS[1])
if holder and holder ~= ARGV[1] then
  return 0
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
`)

func (r *Runner) tick(ctx context.Context) {
	ttl := max(r.Interval*3/2, time.Millisecond)
	held, err := lockScript.Run(ctx, r.Redis, []string{r.LockKey}, r.Holder, ttl.Milliseconds()).Int()
	if err != nil {
		if ctx.Err() == nil {
			r.fail("taking the sync lock", err)
		}
		return
	}
	if held != 1 {
		return // another instance syncs this interval
	}
	// A sync ends within its interval, well before the lock (one and a
	// half intervals) can pass to another instance: an API that answers
	// slowly, or never, would otherwise hold this one for good.
	syncCtx, cancel := context.WithTimeout(ctx, r.Interval)
	settings, changes, err := r.sync(syncCtx)
	if err != nil && errors.Is(syncCtx.Err(), context.DeadlineExceeded) {
		err = fmt.Errorf("gave up after the interval (%v): %v", r.Interval, err)
	}
	cancel()
	if err != nil {
		if ctx.Err() == nil {
			r.fail("syncing integrations from CodeMie", err)
		}
		return
	}
	if r.Synced != nil {
		r.Synced(settings, changes)
	}
}

// sync reads CodeMie's settings and applies the plan, logging each change
// (the webhook, the action, the fields: never a value) and each problem.
func (r *Runner) sync(ctx context.Context) (settings, changes int, err error) {
	all, err := r.Source.Settings(ctx)
	if err != nil {
		return 0, 0, err
	}
	records, problems := Records(all)
	plan, err := MakePlan(ctx, r.Store, r.Keys, records, PlanOptions{})
	if err != nil {
		return 0, 0, err
	}
	if err := plan.Apply(ctx, r.Store); err != nil {
		return 0, 0, err
	}
	for _, c := range plan.Changes {
		r.Logger.Info("integration synced from CodeMie", zap.String("webhook_id", c.ID), zap.String("action", c.Action),
			zap.Strings("fields", c.Fields))
	}
	for _, p := range problems {
		r.Logger.Warn("CodeMie webhook setting not served as stored", zap.String("setting_id", p.SettingID),
			zap.String("webhook_id", p.WebhookID), zap.String("reason", p.Reason))
	}
	for _, id := range plan.Contested {
		r.Logger.Warn("several CodeMie settings list a webhook id that none of them wrote; nothing is written for it",
			zap.String("webhook_id", id))
	}
	for _, id := range plan.HandWritten {
		r.Logger.Warn("CodeMie lists a webhook id whose record was written by hand; the record is left as it is",
			zap.String("webhook_id", id))
	}
	for _, id := range slices.Sorted(maps.Keys(plan.NeedsValue)) {
		fields := plan.NeedsValue[id]
		r.Logger.Warn("integration refused until a value CodeMie masks is set with caddy codemie-webhooks set",
			zap.String("webhook_id", id), zap.Strings("fields", fields))
	}
	return len(all), len(plan.Changes), nil
}

func (r *Runner) fail(doing string, err error) {
	if r.Failed != nil {
		r.Failed()
	}
	r.Logger.Warn("integration sync failed; the next interval tries again", zap.String("while", doing), zap.Error(err))
}
