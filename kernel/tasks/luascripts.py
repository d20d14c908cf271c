"""The Lua scripts of the Redis result backend (:mod:`kernel.tasks.backends`).

Each runs in Redis in one step: it reads a task's stored state and writes only
what may be written over it (never a ``REVOKED``, nor a ``SUCCESS``), together
with the records that go along (the recent-tasks record, :mod:`kernel.tasks.recent`),
so a worker's write is one round trip.
"""

from __future__ import annotations

# Shared by the scripts below: the state stored under a key (nil when it holds
# no task meta), and a write with the results' expiry and its announcement.
_LUA_HELPERS = """
local function status_of(key)
  local raw = redis.call('GET', key)
  if not raw then return nil end
  local ok, meta = pcall(cjson.decode, raw)
  if ok and type(meta) == 'table' and type(meta['status']) == 'string' then
    return meta['status']
  end
  return nil
end
local function store(key, value, expires, announce)
  if tonumber(expires) > 0 then
    redis.call('SET', key, value, 'EX', expires)
  else
    redis.call('SET', key, value)
  end
  if announce then redis.call('PUBLISH', key, value) end
end
"""

# Fields set on a hash that exists (never making one of them alone), which then
# expires in ``expires`` seconds (0: keeps its expiry). ``first``: the index in
# ARGV of the expiry, followed by the number of fields and the fields as name,
# value pairs.
_LUA_NOTE = """
local function note(hash, first)
  if redis.call('EXISTS', hash) == 0 then return end
  local fields = first + 2
  redis.call('HSET', hash, unpack(ARGV, fields, fields + 2 * tonumber(ARGV[first + 1]) - 1))
  if tonumber(ARGV[first]) > 0 then redis.call('EXPIRE', hash, ARGV[first]) end
end
"""

#: Every write of the Redis backend. KEYS: the key, and with a note (the fields
#: of a record of the task's, set when its result is: ``note_with_result``)
#: that record's hash; ARGV: the value, its expiry in seconds (0: none), then the
#: note's expiry, number of fields and fields. Returns 1 when written (and
#: announced, as Celery does). The note is written either way (the run did end);
#: an error of its own (a key of another type) costs the note, never the result.
GUARDED_SET_SCRIPT = _LUA_HELPERS + _LUA_NOTE + """
if #KEYS > 1 then pcall(note, KEYS[2], 3) end
local status = status_of(KEYS[1])
if status == 'REVOKED' or status == 'SUCCESS' then
  return 0
end
store(KEYS[1], ARGV[1], ARGV[2], true)
return 1
"""

#: A note written alone (``flush_note``). KEYS: the hash; ARGV: its expiry,
#: the number of fields and the fields.
NOTE_SCRIPT = _LUA_NOTE + """
note(KEYS[1], 1)
"""

#: ``cancel_task`` on Redis. KEYS: the result key; ARGV: the
#: REVOKED meta (a JSON object), its expiry. Returns the final state found (then
#: nothing is written), or false once ``REVOKED`` is stored and announced, with
#: the request id the task's stored state had (checked as the edge checks it).
CANCEL_SCRIPT = _LUA_HELPERS + """
local status = status_of(KEYS[1])
if status == 'SUCCESS' or status == 'FAILURE' or status == 'REVOKED' then
  return status
end
local value = ARGV[1]
local ok, current = pcall(cjson.decode, redis.call('GET', KEYS[1]) or 'null')
local kept = ok and type(current) == 'table' and current['request_id']
if type(kept) == 'string' and #kept <= 128 and string.match(kept, '^[%w%._%-]+$')
    and not string.find(value, '"request_id"', 1, true) then
  value = string.sub(value, 1, -2) .. ', "request_id": "' .. kept .. '"}'
end
store(KEYS[1], value, ARGV[2], true)
return false
"""

# A listing (``Listing``): a hash of fields per item and a sorted set of the
# items by score, cut to its size (the hashes of the items cut are deleted with
# them: only the set finds them), both expiring. ``first``: the index in ARGV of
# the listing's arguments: the item, its score, the size, the expiry in seconds
# (0: none), the hashes' prefix, the number of fields, then the fields as name,
# value pairs.
_LUA_LISTING = """
local function list_item(index, hash, first)
  local item, score = ARGV[first], ARGV[first + 1]
  local cut = -tonumber(ARGV[first + 2]) - 1
  local prefix, expires = ARGV[first + 4], tonumber(ARGV[first + 3])
  local fields = first + 6
  redis.call('HSET', hash, unpack(ARGV, fields, fields + 2 * tonumber(ARGV[first + 5]) - 1))
  -- At once: a script that fails later keeps what it wrote, and the hash
  -- must not outlive the results then.
  if expires > 0 then redis.call('EXPIRE', hash, expires) end
  redis.call('ZADD', index, score, item)
  for _, old in ipairs(redis.call('ZRANGE', index, 0, cut)) do
    redis.call('DEL', prefix .. old)
  end
  redis.call('ZREMRANGEBYRANK', index, 0, cut)
  if expires > 0 then
    redis.call('EXPIRE', index, expires)
    redis.call('ZREMRANGEBYSCORE', index, '-inf', tonumber(score) - expires)
  end
end
"""

#: A ``Listing`` written alone. KEYS: the sorted set, the item's hash; ARGV:
#: the listing's arguments (see ``_LUA_LISTING``).
LISTING_SCRIPT = _LUA_LISTING + """
list_item(KEYS[1], KEYS[2], 1)
"""

#: ``start_task`` on Redis. KEYS: the result key, a cancellation record of the
#: kind kept beside it, and with a ``Listing`` its sorted set and the task's hash;
#: ARGV: the STARTED meta, its expiry, then the listing's arguments and the name
#: of its field emptied when the task was cancelled. Returns 1 when the task was
#: cancelled, 2 when it was by a record beside the result which the caller must
#: fold into it (rare: an old-form id, or a kernel before this one; the REVOKED
#: meta is not built for every start), else 0 once STARTED is stored (never over
#: a SUCCESS of an earlier delivery). STARTED is not announced: nobody waits for
#: a task to start, only for it to end. The listing is written either way; an
#: error of its own (a key of another type) costs the listing, never the start.
START_SCRIPT = _LUA_HELPERS + _LUA_LISTING + """
local function start()
  local status = status_of(KEYS[1])
  if status == 'REVOKED' then
    return 1
  end
  if redis.call('EXISTS', KEYS[2]) == 1 then
    if status ~= 'SUCCESS' and status ~= 'FAILURE' then
      return 2
    end
    return 1
  end
  if status ~= 'SUCCESS' then
    store(KEYS[1], ARGV[1], ARGV[2], false)
  end
  return 0
end
local cancelled = start()
if #KEYS > 2 then
  pcall(function()
    list_item(KEYS[3], KEYS[4], 3)
    if cancelled ~= 0 then
      redis.call('HSET', KEYS[4], ARGV[#ARGV], '')
    end
  end)
end
return cancelled
"""
