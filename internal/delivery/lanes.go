package delivery

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/redis/go-redis/v9"
)

// The queue's schedule. Each entry of the stream has a ticket,
//
//	<entry id>|<max in flight>|<webhook id>|<resource type>:<resource id>
//
// which is in exactly one place while the entry is queued: its webhook's
// lane (waiting), the leases (being dispatched, with the resource's busy
// set), or the due set (waiting to retry). A lane is in the ring while it
// holds tickets. Dispatchers take from the lanes in the ring's turn, one
// ticket per lane, skipping a lane whose resource already has its max in
// flight: a backlog on one webhook delays no other, and no resource gets
// more calls at once than its limit, across every instance. Every move of
// a ticket is one script on the stream's cluster slot (keyspace.Queue).

// ticket is an entry's ticket.
type ticket string

// ticketTail is what follows entry e's id in its ticket.
func ticketTail(e Entry, maxInFlight int) string {
	return "|" + strconv.Itoa(max(maxInFlight, 0)) + "|" + e.Job.WebhookID + "|" + e.Job.ResourceType + ":" + e.Job.ResourceID
}

// entryID is the stream id of the ticket's entry.
func (t ticket) entryID() string {
	id, _, _ := strings.Cut(string(t), "|")
	return id
}

// ticketLua reads tickets, in every script that moves them: KEYS and ARGV
// are each script's own, and lanePrefix and busyPrefix are set from them.
const ticketLua = `
local lanePrefix, busyPrefix

local function parse(t)
  return string.match(t, '^([^|]+)|(%d+)|([^|]*)|(.*)$')
end

-- ready puts ticket t at the front (LPUSH) or back (RPUSH) of its lane,
-- and the lane in the ring if it was empty.
local function ready(ring, t, push)
  local _, _, webhook = parse(t)
  webhook = webhook or ''
  if redis.call(push, lanePrefix .. webhook, t) == 1 then
    redis.call('RPUSH', ring, webhook)
  end
end

-- release takes t off the leases and its resource's busy set; false when
-- it held no lease.
local function release(leases, t)
  local _, _, _, resource = parse(t)
  redis.call('ZREM', busyPrefix .. (resource or ''), t)
  return redis.call('ZREM', leases, t) == 1
end

local function nowMs()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
`

// takeScript takes up to ARGV[4] tickets, one per lane in the ring's turn,
// visiting at most ARGV[5] lanes, and leases each for ARGV[3] ms. A lane
// whose next ticket's resource has its max in flight keeps its turn.
// KEYS[1] the stream, KEYS[2] the ring, KEYS[3] the leases; ARGV[1] the
// lane prefix, ARGV[2] the busy prefix. Returns {lanes still in the ring,
// {ticket, entry fields}...}; a ticket whose entry is gone is dropped.
var takeScript = redis.NewScript(ticketLua + `
lanePrefix, busyPrefix = ARGV[1], ARGV[2]
local now, lease, want = nowMs(), tonumber(ARGV[3]), tonumber(ARGV[4])
local out, full = {}, 0
for _ = 1, tonumber(ARGV[5]) do
  local lanes = redis.call('LLEN', KEYS[2])
  if #out >= want or lanes == 0 or full >= lanes then
    break
  end
  local webhook = redis.call('LMOVE', KEYS[2], KEYS[2], 'LEFT', 'RIGHT')
  local lane = lanePrefix .. webhook
  local t = redis.call('LINDEX', lane, 0)
  if not t then
    redis.call('LREM', KEYS[2], -1, webhook)
  else
    local id, limit, _, resource = parse(t)
    local busy = busyPrefix .. (resource or '')
    limit = tonumber(limit) or 0
    if limit > 0 and redis.call('ZCARD', busy) >= limit then
      -- leases that ended (their instance died) count no more
      redis.call('ZREMRANGEBYSCORE', busy, '-inf', now)
    end
    if limit > 0 and redis.call('ZCARD', busy) >= limit then
      full = full + 1
    else
      full = 0
      redis.call('LPOP', lane)
      if redis.call('LLEN', lane) == 0 then
        redis.call('LREM', KEYS[2], -1, webhook)
      end
      local e = id and redis.call('XRANGE', KEYS[1], id, id)[1]
      if e then
        redis.call('ZADD', KEYS[3], now + lease, t)
        redis.call('ZADD', busy, now + lease, t)
        out[#out + 1] = {t, e[2]}
      end
    end
  end
end
return {redis.call('LLEN', KEYS[2]), out}
`)

// taken is an entry taken for dispatch.
type taken struct {
	ticket ticket
	fields streamFields
}

// take leases up to n entries, one per lane in turn, and reports how many
// lanes still hold tickets.
func (q *Queue) take(ctx context.Context, n int) ([]taken, int64, error) {
	reply, err := takeScript.Run(ctx, q.client, []string{q.stream, q.ring, q.leases},
		q.lanePrefix, q.busyPrefix, q.lease().Milliseconds(), n, n+256).Slice()
	if err != nil {
		return nil, 0, fmt.Errorf("taking deliveries: %w", err)
	}
	if len(reply) != 2 {
		return nil, 0, fmt.Errorf("taking deliveries: unexpected reply %v", reply)
	}
	lanes, _ := reply[0].(int64)
	rows, _ := reply[1].([]any)
	out := make([]taken, 0, len(rows))
	for _, r := range rows {
		row, _ := r.([]any)
		if len(row) != 2 {
			return out, lanes, fmt.Errorf("taking deliveries: unexpected row %v", r)
		}
		t, _ := row[0].(string)
		flat, _ := row[1].([]any)
		fields := make(streamFields, len(flat)/2)
		for i := 0; i+1 < len(flat); i += 2 {
			if name, ok := flat[i].(string); ok {
				fields[name] = flat[i+1]
			}
		}
		out = append(out, taken{ticket: ticket(t), fields: fields})
	}
	return out, lanes, nil
}

// renewScript extends the leases of the tickets ARGV[3..] that still hold
// one to ARGV[1] ms from now, and their place in their resource's busy
// set. KEYS[1] the leases; ARGV[2] the busy prefix.
var renewScript = redis.NewScript(ticketLua + `
busyPrefix = ARGV[2]
local expires = nowMs() + tonumber(ARGV[1])
for i = 3, #ARGV do
  local t = ARGV[i]
  if redis.call('ZSCORE', KEYS[1], t) then
    local _, _, _, resource = parse(t)
    redis.call('ZADD', KEYS[1], expires, t)
    redis.call('ZADD', busyPrefix .. (resource or ''), expires, t)
  end
end
return 0
`)

// renew extends the leases of tickets.
func (q *Queue) renew(ctx context.Context, tickets []string) error {
	args := make([]any, 0, 2+len(tickets))
	args = append(args, q.lease().Milliseconds(), q.busyPrefix)
	for _, t := range tickets {
		args = append(args, t)
	}
	return renewScript.Run(ctx, q.client, []string{q.leases}, args...).Err()
}

// finishScript removes a finished entry (delivered, or moved to the dead
// stream) and its ticket's lease. KEYS[1] the stream, KEYS[2] the leases;
// ARGV[1] the ticket, ARGV[2] the busy prefix.
var finishScript = redis.NewScript(ticketLua + `
busyPrefix = ARGV[2]
release(KEYS[2], ARGV[1])
local id = parse(ARGV[1])
return redis.call('XDEL', KEYS[1], id)
`)

// finish removes ticket t's entry. Concurrent dispatches' finishes share
// round trips, as requests' scripts do.
func (q *Queue) finish(ctx context.Context, t ticket) error {
	return finishScript.Run(ctx, q.requests, []string{q.stream, q.leases}, string(t), q.busyPrefix).Err()
}

// scheduleScript moves ticket ARGV[1] from the leases to the due set, as
// member ARGV[2] scored ARGV[3] (ms). KEYS[1] the leases, KEYS[2] the due
// set; ARGV[4] the busy prefix.
var scheduleScript = redis.NewScript(ticketLua + `
busyPrefix = ARGV[4]
release(KEYS[1], ARGV[1])
return redis.call('ZADD', KEYS[2], ARGV[3], ARGV[2])
`)

// schedule sets ticket t's next attempt, its attempt+1st, for dueMs.
func (q *Queue) schedule(ctx context.Context, t ticket, attempt int, dueMs int64) error {
	member := strconv.Itoa(attempt) + "|" + string(t)
	return scheduleScript.Run(ctx, q.client, []string{q.leases, q.due}, string(t), member, dueMs, q.busyPrefix).Err()
}

// moveDueScript puts up to ARGV[2] entries due at ARGV[1] (ms) back at the
// end of their lanes, each as a new entry with its attempts counted, and
// returns how many it moved. KEYS[1] the due set, KEYS[2] the stream,
// KEYS[3] the ring; ARGV[3] the lane prefix.
var moveDueScript = redis.NewScript(ticketLua + `
lanePrefix = ARGV[3]
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[2])
for _, m in ipairs(due) do
  local attempts, t = string.match(m, '^(%d+)|(.*)$')
  local id = t and parse(t)
  local e = id and redis.call('XRANGE', KEYS[2], id, id)[1]
  if e then
    local fields = {}
    for i = 1, #e[2], 2 do
      if e[2][i] ~= '` + fieldAttempts + `' then
        fields[#fields + 1] = e[2][i]
        fields[#fields + 1] = e[2][i + 1]
      end
    end
    fields[#fields + 1] = '` + fieldAttempts + `'
    fields[#fields + 1] = attempts
    local moved = redis.call('XADD', KEYS[2], '*', unpack(fields))
    redis.call('XDEL', KEYS[2], id)
    ready(KEYS[3], moved .. string.sub(t, #id + 1), 'RPUSH')
  end
  redis.call('ZREM', KEYS[1], m)
end
return #due
`)

// moveDue moves up to n entries whose retry is due at nowMs back to their
// lanes, and returns how many it moved.
func (q *Queue) moveDue(ctx context.Context, nowMs int64, n int) (int, error) {
	moved, err := moveDueScript.Run(ctx, q.client, []string{q.due, q.stream, q.ring}, nowMs, n, q.lanePrefix).Int()
	if err != nil {
		return 0, fmt.Errorf("moving due retries: %w", err)
	}
	return moved, nil
}

// handBackScript puts tickets back at the front of their lanes: those
// ARGV[3..], or, when ARGV[3] is absent, up to 100 whose lease has ended.
// Only tickets that hold a lease move. KEYS[1] the leases, KEYS[2] the
// ring; ARGV[1] the lane prefix, ARGV[2] the busy prefix. Returns the
// tickets moved.
var handBackScript = redis.NewScript(ticketLua + `
lanePrefix, busyPrefix = ARGV[1], ARGV[2]
local tickets = {unpack(ARGV, 3)}
if #tickets == 0 then
  tickets = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', nowMs(), 'LIMIT', 0, 100)
end
local moved = {}
for i = #tickets, 1, -1 do
  local t = tickets[i]
  if release(KEYS[1], t) then
    ready(KEYS[2], t, 'LPUSH')
    moved[#moved + 1] = t
  end
end
return moved
`)

// handBack puts tickets back at the front of their lanes, or, with none,
// those whose lease has ended; it returns those it moved.
func (q *Queue) handBack(ctx context.Context, tickets ...string) ([]string, error) {
	args := make([]any, 0, 2+len(tickets))
	args = append(args, q.lanePrefix, q.busyPrefix)
	for _, t := range tickets {
		args = append(args, t)
	}
	moved, err := handBackScript.Run(ctx, q.client, []string{q.leases, q.ring}, args...).StringSlice()
	if err != nil {
		return nil, fmt.Errorf("handing back deliveries: %w", err)
	}
	return moved, nil
}
