-- The admit script: the rate limit, the replay guard and, once a request is
-- admitted, its entry appended to a stream, in one atomic round trip. Its
-- KEYS and ARGV are built in one place, admitCall in redis.go.
--
-- KEYS[1] the rate-limit counter
-- KEYS[2] the delivery's marker, checked and set
-- KEYS[3] a marker set unchecked (the body's digest of a delivery with an id)
-- KEYS[4] the webhook's queued-reindex marker: the id of its queued entry
-- KEYS[5] the stream to append to; absent: nothing is appended
-- KEYS[6] the webhook's lane, KEYS[7] the ring of lanes, KEYS[8] the set of
-- lanes' lengths (with KEYS[5])
-- A marker (KEYS[2] to KEYS[4]) that is KEYS[1] is not used: the rate
-- counter's name stands in for it, a placeholder on the same cluster slot.
-- ARGV[1] limit per window (0: none)    ARGV[2] window, ms
-- ARGV[3] replay window, ms             ARGV[4] KEYS[4]'s time to live, ms
-- ARGV[5] the ticket's tail, after the entry id
-- ARGV[6] the stream's most entries (0: none)
-- ARGV[7] the lane's member of the ring
-- ARGV[8..] the entry's fields and values
--
-- Returns {1, 0} for a duplicate, {2, ms} when limited for ms more, {3, 0}
-- when admitted and covered by a queued entry (nothing appended), {0, 0}
-- when admitted (and appended); the error STREAMFULL when the stream is
-- full, with nothing recorded; any other error (a key of the wrong type)
-- with the delivery's markers and entry taken back, so that the sender's
-- retry is not a duplicate of a webhook that was never queued. The marker is set (NX) before the limit is
-- counted and removed again when the request is limited, so a duplicate is
-- not counted and a limited delivery's retry after the window is admitted.
--
-- An appended entry's ticket (its id and ARGV[5]) joins the end of its
-- lane, and the lane joins the ring if it was empty (a lane that holds
-- tickets is in the ring or parked, internal/delivery/lanes.go). The set of
-- lengths learns the lane's new length only when it is a power of two:
-- enough to rank the longest lanes within a factor of two, for a write
-- every doubling rather than every request. A request collapses
-- when KEYS[4] holds a ticket still waiting in the lane: the marker checks
-- itself, so one that outlives its entry (taken, deleted) covers nothing.

local append = #KEYS == 8
if append then
  local cap = tonumber(ARGV[6])
  if cap > 0 and redis.call('XLEN', KEYS[5]) >= cap then
    return redis.error_reply('STREAMFULL stream is full')
  end
end
local replay = KEYS[2] ~= KEYS[1]
if replay and not redis.call('SET', KEYS[2], '1', 'NX', 'PX', ARGV[3]) then
  return {1, 0}
end
local record = KEYS[3] ~= KEYS[1]
local appended, ticket -- the entry's id and its ticket, once appended

-- admit does the rest once the delivery is marked; an error in any of its
-- commands (a key of the wrong type) is caught below.
local function admit()
  local limit = tonumber(ARGV[1])
  if limit > 0 then
    local n = redis.call('INCR', KEYS[1])
    if n == 1 then
      redis.call('PEXPIRE', KEYS[1], ARGV[2])
    end
    if n > limit then
      if replay then
        redis.call('DEL', KEYS[2])
      end
      local ttl = redis.call('PTTL', KEYS[1])
      if ttl < 0 then
        redis.call('PEXPIRE', KEYS[1], ARGV[2])
        ttl = tonumber(ARGV[2])
      end
      return {2, ttl}
    end
  end
  if record then
    redis.call('SET', KEYS[3], '1', 'PX', ARGV[3])
  end
  local collapse = append and KEYS[4] ~= KEYS[1]
  if collapse then
    local queued = redis.call('GET', KEYS[4])
    if queued and redis.call('LPOS', KEYS[6], queued, 'RANK', -1) then
      return {3, 0}
    end
  end
  if append then
    appended = redis.call('XADD', KEYS[5], '*', unpack(ARGV, 8))
    ticket = appended .. ARGV[5]
    local n = redis.call('RPUSH', KEYS[6], ticket)
    if n == 1 then
      redis.call('RPUSH', KEYS[7], ARGV[7])
    end
    if bit.band(n, n - 1) == 0 then
      redis.call('ZADD', KEYS[8], n, ARGV[7])
    end
    if collapse then
      redis.call('SET', KEYS[4], ticket, 'PX', ARGV[4])
    end
  end
  return {0, 0}
end

local ok, reply = pcall(admit)
if ok then
  return reply
end
-- Not queued after all: no entry without its ticket is left, and the
-- sender's retry must not be a duplicate.
if ticket then
  redis.pcall('LREM', KEYS[6], -1, ticket)
end
if appended then
  redis.pcall('XDEL', KEYS[5], appended)
end
if replay then
  redis.pcall('DEL', KEYS[2])
end
if record then
  redis.pcall('DEL', KEYS[3])
end
return redis.error_reply(type(reply) == 'table' and reply.err or tostring(reply))
