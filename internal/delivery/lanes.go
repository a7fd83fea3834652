package delivery

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/redis/go-redis/v9"
)

// The queue's schedule. Each entry of the stream has a ticket,
//
//	<entry id>|<webhook id>|<resource type>:<resource id>
//
// which is in exactly one place while the entry is queued: its webhook's
// lane (waiting), the leases (being dispatched, with the resource's busy
// set), or the due set (waiting to retry). A lane that holds tickets is in
// the ring, or, while its first ticket's resource has its max in flight,
// parked on that resource; the waiting set holds each lane's length, as
// the dispatchers last left it or, as it grows, its last power of two
// (the intake records it only as it doubles: internal/guard/admit.lua).
// Dispatchers take from the lanes in the ring's turn, one ticket per lane:
// a backlog on one webhook delays no other. A lane whose resource is full
// is parked rather than visited again, and each lease of that resource
// that ends brings one parked lane back to the ring: no resource gets more
// calls at once than its limit, across every instance, and nobody polls.
// Every move of a ticket is one script on the stream's cluster slot
// (keyspace.Queue).

// ticket is an entry's ticket.
type ticket string

// ticketTail is what follows entry e's id in its ticket.
func ticketTail(e Entry) string {
	return "|" + e.Job.WebhookID + "|" + e.Job.ResourceType + ":" + e.Job.ResourceID
}

// entryID is the stream id of the ticket's entry.
func (t ticket) entryID() string {
	id, _, _ := strings.Cut(string(t), "|")
	return id
}

// ticketLua reads and moves tickets, in every script that moves them. Each
// such script's ARGV starts with the five names of q.names (the lane, busy
// and parked prefixes, the parking set and the holders hash); its own
// arguments follow, from ARGV[6].
const ticketLua = `
local lanePrefix, busyPrefix, parkedPrefix, parking, holders = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]

-- parse splits ticket t; its id is nil when t is not a ticket (a bad
-- edit of a lane or the due set), which every caller then drops.
local function parse(t)
  local id, webhook, resource = string.match(t, '^(%d+%-%d+)|([^|]*)|(.*)$')
  return id, webhook or '', resource or ''
end

-- ready puts ticket t at the front (LPUSH) or back (RPUSH) of its lane,
-- and the lane in the ring if it was empty.
local function ready(ring, waiting, t, push)
  local _, webhook = parse(t)
  local n = redis.call(push, lanePrefix .. webhook, t)
  if n == 1 then
    redis.call('RPUSH', ring, webhook)
  end
  redis.call('ZADD', waiting, n, webhook)
end

-- park moves webhook's lane, the ring's tail, to those parked on resource.
local function park(ring, webhook, resource)
  redis.call('RPOP', ring)
  redis.call('RPUSH', parkedPrefix .. resource, webhook)
  redis.call('SADD', parking, resource)
end

-- unpark brings up to n lanes parked on resource back to the ring.
local function unpark(ring, resource, n)
  local parked = parkedPrefix .. resource
  for _ = 1, n do
    if not redis.call('LMOVE', parked, ring, 'LEFT', 'RIGHT') then
      break
    end
  end
  if n > 0 and redis.call('EXISTS', parked) == 0 then
    redis.call('SREM', parking, resource)
  end
end

-- holds reports whether holder (nil: anyone) holds t's lease.
local function holds(t, holder)
  return holder == nil or redis.call('HGET', holders, t) == holder
end

-- release ends t's lease, if holder (nil: anyone) holds it, and its place
-- in its resource's busy set, which brings a lane parked on the resource
-- back; false when holder held no lease.
local function release(leases, ring, t, holder)
  if not holds(t, holder) then
    return false
  end
  redis.call('HDEL', holders, t)
  local _, _, resource = parse(t)
  if redis.call('ZREM', busyPrefix .. resource, t) == 1 then
    unpark(ring, resource, 1)
  end
  return redis.call('ZREM', leases, t) == 1
end

local function nowMs()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
`

// names are the first five arguments of every script that moves tickets
// (ticketLua), followed by args.
func (q *Queue) names(args ...any) []any {
	return append([]any{q.lanePrefix, q.busyPrefix, q.parkedPrefix, q.parking, q.holders}, args...)
}

// takeScript takes up to ARGV[8] tickets, one per lane in the ring's turn,
// visiting at most ARGV[9] lanes, and leases each for ARGV[6] ms to holder
// ARGV[10]. A lane
// whose first ticket's resource has ARGV[7] in flight (0: no limit) is
// parked on it. KEYS[1] the stream, KEYS[2] the ring, KEYS[3] the leases,
// KEYS[4] the waiting set. Returns {lanes in the ring, {ticket, entry
// fields}..., error}; a ticket whose entry is gone, or that is no ticket,
// is dropped. A visit that fails (a key of the wrong type) ends the take:
// the ticket it took goes back to the front of its lane, what was taken
// before it is returned, and the error is the third element (else false).
var takeScript = redis.NewScript(ticketLua + `
local now, lease, limit, want = nowMs(), tonumber(ARGV[6]), tonumber(ARGV[7]), tonumber(ARGV[8])
local out = {}
-- the visit's ticket once out of its lane ({lane, ticket, webhook}), its
-- lane once out of the ring, and its busy set once its lease began
local popped, unringed, leased

-- visit takes the ticket at the front of the next lane in turn; false when
-- the ring is empty.
local function visit()
  -- the ring's head, now at its tail until the visit is over
  local webhook = redis.call('LMOVE', KEYS[2], KEYS[2], 'LEFT', 'RIGHT')
  if not webhook then
    return false
  end
  local lane = lanePrefix .. webhook
  local t = redis.call('LINDEX', lane, 0)
  if not t then
    redis.call('RPOP', KEYS[2])
    redis.call('ZREM', KEYS[4], webhook)
    return true
  end
  local id, _, resource = parse(t)
  local busy = busyPrefix .. resource
  -- room made, for lanes parked on the resource, once the visit is over
  local room = 0
  local full = limit > 0 and redis.call('ZCARD', busy) >= limit
  if full then
    -- leases that ended (their instance died) count no more
    room = redis.call('ZREMRANGEBYSCORE', busy, '-inf', now)
    full = redis.call('ZCARD', busy) >= limit
  end
  if full then
    park(KEYS[2], webhook, resource)
  else
    redis.call('LPOP', lane)
    popped = {lane, t, webhook}
    local left = redis.call('LLEN', lane)
    if left == 0 then
      redis.call('RPOP', KEYS[2])
      unringed = true
      redis.call('ZREM', KEYS[4], webhook)
    else
      redis.call('ZADD', KEYS[4], left, webhook)
    end
    local e = id and redis.call('XRANGE', KEYS[1], id, id)[1]
    if e then
      leased = busy
      redis.call('ZADD', KEYS[3], now + lease, t)
      redis.call('ZADD', busy, now + lease, t)
      redis.call('HSET', holders, t, ARGV[10])
      out[#out + 1] = {t, e[2]}
      popped = nil -- handed out
    else
      room = room + 1 -- no lease follows: the turn passes on
    end
  end
  unpark(KEYS[2], resource, room)
  return true
end

local failure = false
for _ = 1, tonumber(ARGV[9]) do
  if #out >= want then
    break
  end
  popped, unringed, leased = nil, nil, nil
  local ok, more = pcall(visit)
  if not ok then
    failure = type(more) == 'table' and more.err or tostring(more)
    if popped then
      local lane, t, webhook = popped[1], popped[2], popped[3]
      if leased then
        redis.pcall('ZREM', KEYS[3], t)
        redis.pcall('ZREM', leased, t)
        redis.pcall('HDEL', holders, t)
      end
      redis.pcall('LPUSH', lane, t)
      if unringed then
        redis.pcall('RPUSH', KEYS[2], webhook)
      end
    end
    break
  end
  if not more then
    break
  end
end
local lanes = redis.pcall('LLEN', KEYS[2])
if type(lanes) ~= 'number' then
  lanes = 0
end
return {lanes, out, failure}
`)

// taken is an entry taken for dispatch.
type taken struct {
	ticket ticket
	fields streamFields
}

// take leases up to n entries to holder, one per lane in turn, and reports
// how many lanes are in the ring (not parked).
func (q *Queue) take(ctx context.Context, n int, holder string) ([]taken, int64, error) {
	reply, err := takeScript.Run(ctx, q.client, []string{q.stream, q.ring, q.leases, q.waiting},
		q.names(q.lease().Milliseconds(), max(q.cfg.MaxInFlight, 0), n, n+64, holder)...).Slice()
	if err != nil {
		return nil, 0, fmt.Errorf("taking deliveries: %w", err)
	}
	if len(reply) != 3 {
		return nil, 0, fmt.Errorf("taking deliveries: unexpected reply %v", reply)
	}
	lanes, _ := reply[0].(int64)
	rows, _ := reply[1].([]any)
	if failed, ok := reply[2].(string); ok {
		err = fmt.Errorf("taking deliveries: %s", failed)
	}
	out := make([]taken, 0, len(rows))
	for _, r := range rows {
		row, _ := r.([]any)
		if len(row) != 2 {
			return out, lanes, fmt.Errorf("taking deliveries: unexpected row %v", r)
		}
		t, _ := row[0].(string)
		flat, _ := row[1].([]any)
		out = append(out, taken{ticket: ticket(t), fields: fieldsOf(flat)})
	}
	return out, lanes, err
}

// renewScript extends the leases of the tickets ARGV[8..] that holder
// ARGV[7] still holds to ARGV[6] ms from now, and their place in their
// resource's busy set. KEYS[1] the leases.
var renewScript = redis.NewScript(ticketLua + `
local expires = nowMs() + tonumber(ARGV[6])
for i = 8, #ARGV do
  local t = ARGV[i]
  if holds(t, ARGV[7]) and redis.call('ZSCORE', KEYS[1], t) then
    local _, _, resource = parse(t)
    redis.call('ZADD', KEYS[1], expires, t)
    redis.call('ZADD', busyPrefix .. resource, expires, t)
  end
end
return 0
`)

// renew extends the leases of tickets that holder holds.
func (q *Queue) renew(ctx context.Context, tickets []string, holder string) error {
	args := q.names(q.lease().Milliseconds(), holder)
	for _, t := range tickets {
		args = append(args, t)
	}
	return renewScript.Run(ctx, q.client, []string{q.leases}, args...).Err()
}

// finishScript removes a finished entry (delivered, or moved to the dead
// stream) and its ticket's lease, if holder ARGV[7] holds it (else the
// instance that took it over finishes it too). KEYS[1] the stream, KEYS[2]
// the leases, KEYS[3] the ring; ARGV[6] the ticket.
var finishScript = redis.NewScript(ticketLua + `
release(KEYS[2], KEYS[3], ARGV[6], ARGV[7])
local id = parse(ARGV[6])
return redis.call('XDEL', KEYS[1], id)
`)

// finish removes ticket t's entry, and holder's lease of it. Concurrent
// dispatches' finishes share round trips, as requests' scripts do.
func (q *Queue) finish(ctx context.Context, t ticket, holder string) error {
	return finishScript.Run(ctx, q.requests, []string{q.stream, q.leases, q.ring}, q.names(string(t), holder)...).Err()
}

// scheduleScript moves ticket ARGV[6] from the leases to the due set, as
// member ARGV[7] scored ARGV[8] (ms), if holder ARGV[9] still holds its
// lease (else
// its entry is already back in its lane, or taken again). KEYS[1] the
// leases, KEYS[2] the due set, KEYS[3] the ring. Returns 1 when it moved
// it.
var scheduleScript = redis.NewScript(ticketLua + `
if not release(KEYS[1], KEYS[3], ARGV[6], ARGV[9]) then
  return 0
end
redis.call('ZADD', KEYS[2], ARGV[8], ARGV[7])
return 1
`)

// errLeaseLost says an entry's lease ended before its attempt did: the
// entry is back in its lane or with another instance, which decides.
var errLeaseLost = errors.New("its lease ended during the attempt; the entry was handed back")

// schedule sets ticket t's next attempt, its attempt+1st, for dueMs, if
// holder holds it.
func (q *Queue) schedule(ctx context.Context, t ticket, attempt int, dueMs int64, holder string) error {
	member := strconv.Itoa(attempt) + "|" + string(t)
	moved, err := scheduleScript.Run(ctx, q.client, []string{q.leases, q.due, q.ring},
		q.names(string(t), member, dueMs, holder)...).Int()
	if err == nil && moved == 0 {
		err = errLeaseLost
	}
	return err
}

// moveDueScript puts up to ARGV[7] entries due at ARGV[6] (ms) back at the
// end of their lanes, each as a new entry with its attempts counted, and
// returns how many it moved; a member that names no entry is dropped. KEYS[1] the due set, KEYS[2] the stream,
// KEYS[3] the ring, KEYS[4] the waiting set.
var moveDueScript = redis.NewScript(ticketLua + `
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[6], 'LIMIT', 0, ARGV[7])
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
    ready(KEYS[3], KEYS[4], moved .. string.sub(t, #id + 1), 'RPUSH')
  end
  redis.call('ZREM', KEYS[1], m)
end
return #due
`)

// moveDue moves up to n entries whose retry is due at nowMs back to their
// lanes, and returns how many it moved.
func (q *Queue) moveDue(ctx context.Context, nowMs int64, n int) (int, error) {
	moved, err := moveDueScript.Run(ctx, q.client, []string{q.due, q.stream, q.ring, q.waiting}, q.names(nowMs, n)...).Int()
	if err != nil {
		return 0, fmt.Errorf("moving due retries: %w", err)
	}
	return moved, nil
}

// handBackScript puts tickets back at the front of their lanes: those
// ARGV[9..] that holder ARGV[7] holds, or, when there are none, up to 100
// whose lease has ended, whoever held them. Then it brings back lanes parked on a
// resource with room (a raised limit, a lease ended unseen) for ARGV[6]
// (0: no limit). A lease lasts ARGV[8] ms from when it was taken or
// renewed, so one that ends more than twice that from now (Redis's clock
// went back, a bad edit) counts as ended: it would hold its resource's
// room for as long. With no tickets it also puts back in the ring lanes
// that hold tickets but were left out of it (strandedSample). KEYS[1] the
// leases, KEYS[2] the ring, KEYS[3] the waiting set. Returns the tickets
// moved.
var handBackScript = redis.NewScript(ticketLua + `
local strandedSample = ` + strconv.Itoa(strandedSample) + `
local tickets, holder = {unpack(ARGV, 9)}, ARGV[7]
local expired = #tickets == 0
local now = nowMs()
local beyond = '(' .. (now + 2 * tonumber(ARGV[8]))
if expired then
  tickets, holder = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, 100), nil
  for _, t in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], beyond, '+inf', 'LIMIT', 0, 100)) do
    tickets[#tickets + 1] = t
  end
end
local moved = {}
for i = #tickets, 1, -1 do
  local t = tickets[i]
  if release(KEYS[1], KEYS[2], t, holder) then
    ready(KEYS[2], KEYS[3], t, 'LPUSH')
    moved[#moved + 1] = t
  end
end
if expired then
  local limit = tonumber(ARGV[6])
  for _, resource in ipairs(redis.call('SMEMBERS', parking)) do
    local busy = busyPrefix .. resource
    redis.call('ZREMRANGEBYSCORE', busy, '-inf', now)
    redis.call('ZREMRANGEBYSCORE', busy, beyond, '+inf')
    local room, count = 0, redis.call('ZCARD', busy)
    if limit == 0 then
      room = redis.call('LLEN', parkedPrefix .. resource)
    elseif limit > count then
      room = limit - count
    end
    unpark(KEYS[2], resource, room)
  end
  -- A lane holding tickets whose webhook is in neither the ring nor the
  -- list parked on its first ticket's resource (the ring deleted, a partial
  -- restore) would never be visited: a sample of the lanes that hold
  -- tickets is checked each time, and such a one joins the ring.
  for _, webhook in ipairs(redis.call('ZRANDMEMBER', KEYS[3], strandedSample)) do
    local t = redis.call('LINDEX', lanePrefix .. webhook, 0)
    if t and not redis.call('LPOS', KEYS[2], webhook) then
      local _, _, resource = parse(t)
      if not redis.call('LPOS', parkedPrefix .. resource, webhook) then
        redis.call('RPUSH', KEYS[2], webhook)
      end
    end
  end
end
return moved
`)

// strandedSample is how many lanes holding tickets each reclaim checks for
// a webhook missing from the ring: each check scans the ring (LPOS), so a
// few per reclaim; a lane so stranded is found within about (lanes holding
// tickets / strandedSample) reclaims.
const strandedSample = 10

// handBack puts the tickets holder holds back at the front of their lanes,
// or, with none, those whose lease has ended, and the parked lanes that
// have room back in the ring; it returns the tickets it moved.
func (q *Queue) handBack(ctx context.Context, holder string, tickets ...string) ([]string, error) {
	args := q.names(max(q.cfg.MaxInFlight, 0), holder, q.lease().Milliseconds())
	for _, t := range tickets {
		args = append(args, t)
	}
	moved, err := handBackScript.Run(ctx, q.client, []string{q.leases, q.ring, q.waiting}, args...).StringSlice()
	if err != nil {
		return nil, fmt.Errorf("handing back deliveries: %w", err)
	}
	return moved, nil
}
