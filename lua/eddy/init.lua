--- eddy: an event log in SQLite, for Lua.
--
-- `local eddy = require "eddy"` gives this module.  Its native half is the
-- C module `eddy.core` (runtime/leddy.c, runtime/llog.c); this file is the
-- Lua half, where the app-facing pieces (consumers, permanent handlers,
-- sagas ...) are added.
--
-- Conventions: misuse (a wrong type, a missing field) raises an error;
-- a failure a caller must expect (an unknown topic, a busy store) returns
-- `nil, message`, where the message names the thing and the reason.
--
-- @module eddy
-- @usage
-- local eddy = require "eddy"
-- local log <close> = assert(eddy.open{ data = "./data" })
-- assert(log:topic_ensure("orders", 3))
-- local partition, offset, id = assert(log:produce("orders", {
--   key = "customer-42", value = '{"total": 10}',
--   headers = { { "content-type", "application/json" } },
-- }))

local core = require "eddy.core"

local M = {}

--- The version of eddy, e.g. `"0.1.0-dev"`.
-- @field _VERSION
M._VERSION = core._VERSION

--- Opens (by default creating) the store in a data directory.
-- @function open
-- @tparam table opts
-- @tparam[opt="./data"] string opts.data the data directory; the store is
--   the file `eddy.db` in it
-- @tparam[opt=true] boolean opts.create create the directory and the store
--   when they are missing
-- @tparam[opt] integer opts.lock_timeout how long, in milliseconds (>= 1),
--   a write waits for another process to release the store's lock before
--   failing; 10000 when absent
-- @treturn log the open log
-- @return or `nil, message` when the store cannot be opened, e.g.
--   `"no eddy store in 'x'"`, `"'x/eddy.db' is not an eddy store (...)"`
-- @raise when opts is not a table or a field has the wrong type
M.open = core.open

--- A new message id: a UUIDv7 in canonical lower-case text.
-- Ids made by one process sort in the order they were made.
-- @function uuid
-- @treturn string
M.uuid = core.uuid

--- The partition Kafka's default partitioner gives a message with this key:
-- `(murmur2(key) & 0x7fffffff) % partitions`, as the Java producer does it.
-- @function partition_for
-- @tparam string key
-- @tparam integer partitions the topic's partition count, >= 1
-- @treturn integer the partition, from 0
-- @raise when key is not a string or partitions not a positive integer
M.partition_for = core.partition_for

--- The wall clock in milliseconds since the epoch (what message
-- timestamps use).
-- @function now_ms
M.now_ms = core.now_ms

--- The versions of eddy and of the libraries it runs on.
-- @function versions
-- @treturn table `{ eddy =, lua =, sqlite =, librdkafka =, libuv = }`, all
--   strings
M.versions = core.versions

--- An open event log: one connection to a store.
--
-- Every method raises `"attempt to use a closed eddy log"` once the log is
-- closed, except `close` and `tostring(log)` (`"eddy.log (DIR)"`, or
-- `"eddy.log (closed)"`).  A log also closes as a `<close>` variable and
-- when it is collected.
-- @type log

--- Closes the log.  Idempotent.
-- @function log:close
-- @treturn boolean true

--- Creates a topic.
-- @function log:topic_create
-- @tparam string name 1 to 249 characters of `[A-Za-z0-9._-]`
-- @tparam integer partitions 1 to 4096
-- @tparam[opt] table opts `{ retention_ms =, retention_bytes =,
--   max_message_bytes = }`, integers; retention -1 (the default) keeps
--   messages forever; retention_bytes is per partition;
--   max_message_bytes (default 1 MiB) limits the key, the value and the
--   headers of a message each
-- @treturn boolean true
-- @return or `nil, message`, e.g. `"topic 'x' already exists"`,
--   `"topic 'x': partition count must be between 1 and 4096, got 0"`
-- @raise when partitions or an option is not an integer

--- Creates a topic unless it exists.  An existing topic keeps its
-- configuration; it fails only when it has fewer partitions than asked.
-- @function log:topic_ensure
-- @tparam string name
-- @tparam integer partitions
-- @tparam[opt] table opts as for `topic_create`
-- @treturn boolean true
-- @treturn boolean whether the topic was created now
-- @return or `nil, message`

--- The topics, in name order.
-- @function log:topics
-- @treturn {table,...} `{ name =, partitions =, retention_ms =,
--   retention_bytes =, max_message_bytes =, messages =, created_at = }`
--   each; messages is the number stored now over all partitions,
--   created_at is in milliseconds since the epoch
-- @return or `nil, message`

--- One topic.
-- @function log:topic
-- @tparam string name
-- @treturn table what `topics` has for it, plus `offsets`, an array of
--   `{ partition =, log_start =, next_offset = }` by partition
-- @return or `nil, "unknown topic 'x'"`

--- Appends a message to a topic.
--
-- Headers may be an array of `{ name, value }` pairs (kept in order; names
-- may repeat), a map `{ name = value }` (stored sorted by name), or both
-- (the pairs first).  Names and values are strings.
-- @function log:produce
-- @tparam string topic
-- @tparam table msg `{ value = string, key = string|nil, headers =,
--   id = string|nil, partition = integer|nil, timestamp = integer|nil }`;
--   without an id the message gets a new UUIDv7; without a partition a
--   keyed message goes where `partition_for` says and an unkeyed one round
--   robin; timestamp is in milliseconds, now when absent or 0
-- @treturn integer partition
-- @treturn integer offset
-- @treturn string id
-- @return or `nil, message` (unknown topic, no such partition, over the
--   size limit, a bad id, a busy store)
-- @raise when msg is not a table or a field has the wrong type
--   (e.g. `"value must be a string"`)

--- Appends messages to a topic in one transaction: all of them or none.
-- @function log:produce_batch
-- @tparam string topic
-- @tparam {table,...} msgs messages as for `produce`
-- @treturn {table,...} `{ partition =, offset =, id = }` for each message,
--   in order
-- @return or `nil, message`; a failure caused by one message ends in
--   `" (message I)"`
-- @raise as `produce`, the message prefixed with `"message I: "`

--- Reads messages of one partition in offset order.
-- @function log:read
-- @tparam string topic
-- @tparam integer partition
-- @tparam integer offset the first offset to read; below the log start,
--   reading starts at the log start
-- @tparam[opt=100] integer limit at most this many, 1 to 100000
-- @treturn {table,...} `{ topic =, partition =, offset =, id =, key =,
--   value =, timestamp =, headers = }` each (key nil when the message has
--   none); headers is an array of `{ name, value }` pairs in order that
--   also maps each name to its value (the last one when a name repeats)
-- @return or `nil, message` (unknown topic, no such partition)

--- The offsets of a partition.
-- @function log:offsets
-- @tparam string topic
-- @tparam integer partition
-- @treturn integer the log start: the first offset still stored
-- @treturn integer the next offset: the one the next message gets
-- @return or `nil, message`

--- Commits a consumer group's offset: the next one it will read.
-- @function log:commit
-- @tparam string group
-- @tparam string topic
-- @tparam integer partition
-- @tparam integer offset
-- @treturn boolean true
-- @return or `nil, message`

--- A consumer group's committed offset.
-- @function log:committed
-- @tparam string group
-- @tparam string topic
-- @tparam integer partition
-- @treturn integer the offset; `nil` alone when the group committed none
--   there
-- @return or `nil, message`

--- Applies retention (by age and size) now.
-- @function log:trim
-- @tparam[opt] string topic one topic; every topic when nil
-- @treturn integer the number of messages removed
-- @return or `nil, message`

-- Consumers --------------------------------------------------------------

--- The metatable of every consumer made by `consumer`.
-- @table Consumer
M.Consumer = { __name = "eddy.Consumer" }

function M.Consumer.__tostring(c)
  return "eddy.consumer '" .. c.name .. "'"
end

--- The metatable of the values made by `permanent`.
-- @table Permanent
M.Permanent = { __name = "eddy.Permanent" }

function M.Permanent.__tostring(p)
  return p.why
end

-- Names a consumer, its group and a topic may use.
local NAME_PATTERN = "^[A-Za-z0-9._%-]+$"
local MAX_CONSUMER_NAME = 200
local MAX_TOPIC_NAME = 249      -- EDDY_MAX_TOPIC_NAME in runtime/log.h
local MIB = 1024 * 1024

local DEFAULT_ATTEMPTS = 5
local DEFAULT_BACKOFF_MS = 100
local DEFAULT_MAX_BACKOFF_MS = 30000
local DEFAULT_INSTRUCTIONS = 50000000
local DEFAULT_MEMORY = 64 * MIB
local MIN_INSTRUCTIONS = 1000
local DEFAULT_TIMEOUT_MS = 30000
local MIN_TIMEOUT_MS = 10
local DEFAULT_EMITS = 100000

local CONSUMER_OPTIONS = { "name", "topics", "handle", "dedupe", "retry",
                           "dlq", "from", "limits", "consumes", "emits", "sandbox" }
local RETRY_OPTIONS = { "attempts", "backoff", "max_backoff" }
local LIMITS_OPTIONS = { "instructions", "memory", "timeout", "emits" }

-- The optimal string alignment distance between a and b (insertions,
-- deletions, substitutions and swaps of two neighbours cost 1 each),
-- case-insensitive.  O(#a * #b): fine for option names.
local function distance(a, b)
  a, b = a:lower(), b:lower()
  local d = {}
  for i = 0, #a do d[i] = { [0] = i } end
  for j = 1, #b do d[0][j] = j end
  for i = 1, #a do
    for j = 1, #b do
      local cost = a:byte(i) == b:byte(j) and 0 or 1
      local v = math.min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost)
      if i > 1 and j > 1 and a:byte(i) == b:byte(j - 1) and a:byte(i - 1) == b:byte(j) then
        v = math.min(v, d[i - 2][j - 2] + 1)
      end
      d[i][j] = v
    end
  end
  return d[#a][#b]
end

-- The candidate closest to word when it is within edit distance 2 (and
-- closer than the length of word, so that "x" suggests nothing), else nil.
-- Ties go to the candidate listed first.
local function closest(word, candidates)
  local best, best_d
  for _, c in ipairs(candidates) do
    local d = distance(word, c)
    if d <= 2 and d < #word and (not best_d or d < best_d) then best, best_d = c, d end
  end
  return best
end

--- Internal, used by `eddy.app`: the message for an unknown option.
-- `unknown <what> 'k' (did you mean 'x'?)` when an option is close to k,
-- else `unknown <what> 'k' (known: a, b, c)`.  A key that is not a string
-- is shown in brackets.
-- @local
-- @tparam string what e.g. `"option"`, `"retry option"`
-- @param key the unknown key
-- @tparam {string,...} known the known options
-- @treturn string
function M._unknown_option(what, key, known)
  if type(key) ~= "string" then
    return string.format("unexpected item [%s] (%ss are given as name = value)",
                         tostring(key), what)
  end
  local near = closest(key, known)
  if near then
    return string.format("unknown %s '%s' (did you mean '%s'?)", what, key, near)
  end
  local sorted = table.move(known, 1, #known, 1, {})
  table.sort(sorted)
  return string.format("unknown %s '%s' (known: %s)", what, key,
                       table.concat(sorted, ", "))
end

--- Internal, used by `eddy.app`: how a value of the right type but out
-- of range is shown after "got": a number as itself (`got 0`), a string
-- quoted (`got '512KiB'`), anything else by its type.  (A value of the
-- wrong type is shown by its type: `got table`.)
-- @local
function M._got(v)
  if math.type(v) then return tostring(v) end
  if type(v) == "string" then return "'" .. v .. "'" end
  return type(v)
end
local got = M._got

--- Internal, used by `eddy.app`: v as an integer when it is a number
-- with an integral value (5 or 5.0), else nil.
-- @local
function M._integer(v)
  if type(v) ~= "number" then return nil end
  return math.tointeger(v)
end
local integer = M._integer

--- Internal, used by `eddy.app`: why name is not a valid topic name, or
-- nil when it is one (the rules of `log:topic_create`).
-- @local
function M._topic_name_problem(name)
  if name == "" then return "is empty" end
  if #name > MAX_TOPIC_NAME then
    return "is longer than " .. MAX_TOPIC_NAME .. " characters"
  end
  if name == "." or name == ".." then return "is reserved" end
  if not name:find(NAME_PATTERN) then
    return "is invalid (use letters, digits, '.', '_' and '-')"
  end
  return nil
end

--- Internal, used by `eddy.app`: a duration in milliseconds from a string
-- (`"250ms"`, `"30s"`, `"7d"`, `"100"`) or an integer >= 0; nil otherwise.
-- @local
function M._duration_ms(v)
  if type(v) == "string" then return core.duration_ms(v) end
  local n = integer(v)
  if n and n >= 0 then return n end
  return nil
end

--- Internal, used by `eddy.app`: a size in bytes from a string
-- (`"512KiB"`, `"1MB"`, `"1048576"`) or an integer >= 0; nil otherwise.
-- @local
function M._size_bytes(v)
  if type(v) == "string" then return core.size_bytes(v) end
  local n = integer(v)
  if n and n >= 0 then return n end
  return nil
end

-- A mistake in a definition: raised by the checks below as a table
-- holding the message, caught by `consumer`, which raises the message at
-- its caller's position whatever the depth of the check that failed.
local Failure = {}

local function fail(msg)
  error(setmetatable({ msg = msg }, Failure), 0)
end

--- Internal, used by `eddy.app` too: the key of t that is not in the list
-- known, the first in text order (so that a message does not depend on the
-- hash order of the table), or nil.
-- @local
function M._unknown_key(t, known)
  local set = {}
  for _, k in ipairs(known) do set[k] = true end
  local bad
  for k in pairs(t) do
    if not set[k] and (bad == nil or tostring(k) < tostring(bad)) then bad = k end
  end
  return bad
end

-- Fails with "<prefix>unknown <what> ..." when t has a key not in known.
local function check_keys(prefix, what, t, known)
  local bad = M._unknown_key(t, known)
  if bad ~= nil then fail(prefix .. M._unknown_option(what, bad, known)) end
end

--- Internal, used by `eddy.saga`: the message check_keys would fail with,
-- or nil.
-- @local
function M._key_problem(prefix, what, t, known)
  local bad = M._unknown_key(t, known)
  if bad ~= nil then return prefix .. M._unknown_option(what, bad, known) end
end

-- The normalized topics of a consumer (p is the message prefix).
local function check_topics(p, topics)
  if topics == nil then
    fail(p .. "'topics' is missing (a topic name or a list of them)")
  end
  if type(topics) == "string" then topics = { topics } end
  if type(topics) ~= "table" then
    fail(p .. "'topics' must be a topic name or a list of them, got " .. type(topics))
  end
  local n = 0
  for k in pairs(topics) do
    n = n + 1
    if math.type(k) ~= "integer" or k < 1 then
      fail(p .. "'topics' must be a list of topic names, found key " ..
           (type(k) == "string" and "'" .. k .. "'" or "[" .. tostring(k) .. "]"))
    end
  end
  if n == 0 then fail(p .. "'topics' must list at least one topic") end
  local out, seen = {}, {}
  for i = 1, n do
    local t = topics[i]
    if type(t) ~= "string" then
      fail(p .. "topics[" .. i .. "] must be a topic name (a string), got " .. type(t))
    end
    local problem = M._topic_name_problem(t)
    if problem then fail(p .. "topic name '" .. t .. "' " .. problem) end
    if seen[t] then fail(p .. "topic '" .. t .. "' is listed twice") end
    seen[t] = true
    out[i] = t
  end
  return out
end

-- A duration option of retry, in ms (field is e.g. "retry.backoff").
local function check_duration(p, field, v, default)
  if v == nil then return default end
  local ms = M._duration_ms(v)
  if ms then return ms end
  if type(v) == "string" then
    fail(p .. field .. " '" .. v .. "' is not a duration (e.g. 250ms, 30s, 5m)")
  end
  fail(p .. field .. " must be a duration (e.g. 250ms, 30s, 5m) or a number of" ..
       " milliseconds >= 0, got " .. got(v))
end

local function check_retry(p, retry)
  if retry == nil then retry = {} end
  if type(retry) ~= "table" then
    fail(p .. "'retry' must be a table ({ attempts =, backoff =, max_backoff = }), got " ..
         type(retry))
  end
  check_keys(p, "retry option", retry, RETRY_OPTIONS)
  local attempts = DEFAULT_ATTEMPTS
  if retry.attempts ~= nil then
    attempts = integer(retry.attempts)
    if not attempts or attempts < 1 then
      fail(p .. "retry.attempts must be an integer >= 1, got " .. got(retry.attempts))
    end
  end
  local backoff = check_duration(p, "retry.backoff", retry.backoff, DEFAULT_BACKOFF_MS)
  local max_backoff = check_duration(p, "retry.max_backoff", retry.max_backoff,
                                     math.max(DEFAULT_MAX_BACKOFF_MS, backoff))
  if max_backoff < backoff then
    fail(string.format("%sretry.max_backoff (%dms) is less than retry.backoff (%dms)",
                       p, max_backoff, backoff))
  end
  return { attempts = attempts, backoff_ms = backoff, max_backoff_ms = max_backoff }
end

local function check_limits(p, limits)
  if limits == nil then limits = {} end
  if type(limits) ~= "table" then
    fail(p .. "'limits' must be a table ({ instructions =, memory =, timeout =, emits = }), " ..
         "got " .. type(limits))
  end
  check_keys(p, "limits option", limits, LIMITS_OPTIONS)
  local instructions = DEFAULT_INSTRUCTIONS
  if limits.instructions ~= nil then
    instructions = integer(limits.instructions)
    if not instructions or instructions < MIN_INSTRUCTIONS then
      fail(p .. "limits.instructions must be an integer >= " .. MIN_INSTRUCTIONS ..
           ", got " .. got(limits.instructions))
    end
  end
  local memory = DEFAULT_MEMORY
  if limits.memory ~= nil then
    memory = M._size_bytes(limits.memory)
    if not memory then
      if type(limits.memory) == "string" then
        fail(p .. "limits.memory '" .. limits.memory ..
             "' is not a size (e.g. 512KiB, 64MiB, 1GiB)")
      end
      fail(p .. "limits.memory must be a size (e.g. 64MiB) or a number of bytes, got " ..
           got(limits.memory))
    end
    if memory < MIB then
      fail(p .. "limits.memory must be at least 1MiB (1048576 bytes), got " ..
           got(limits.memory))
    end
  end
  local timeout = DEFAULT_TIMEOUT_MS
  if limits.timeout ~= nil then
    timeout = M._duration_ms(limits.timeout)
    if not timeout or timeout < MIN_TIMEOUT_MS then
      fail(p .. "limits.timeout must be a duration of at least " .. MIN_TIMEOUT_MS ..
           "ms (e.g. 500ms, 30s, 5m) or a number of milliseconds, got " .. got(limits.timeout))
    end
  end
  local emits = DEFAULT_EMITS
  if limits.emits ~= nil then
    emits = integer(limits.emits)
    if not emits or emits < 1 then
      fail(p .. "limits.emits must be an integer >= 1, got " .. got(limits.emits))
    end
  end
  return { instructions = instructions, memory = memory, timeout_ms = timeout, emits = emits }
end

-- The checked copy of a consumer definition; fails on any mistake.
local function normalize(def)
  if type(def) ~= "table" then
    fail("consumer: the definition must be a table (eddy.consumer { name = ..., " ..
         "topics = ..., handle = ... }), got " .. type(def))
  end
  local name = def.name
  local p = type(name) == "string" and "consumer '" .. name .. "': " or "consumer: "
  -- Unknown options first: a misspelt 'handle' is better reported as such
  -- than as a missing one.
  check_keys(p, "option", def, CONSUMER_OPTIONS)
  if name == nil then fail("consumer: 'name' is missing") end
  if type(name) ~= "string" then
    fail("consumer: 'name' must be a string, got " .. type(name))
  end
  if name == "" then fail("consumer: 'name' is empty") end
  if #name > MAX_CONSUMER_NAME then
    fail(string.format("consumer '%s...': name is longer than %d characters",
                       name:sub(1, 40), MAX_CONSUMER_NAME))
  end
  if not name:find(NAME_PATTERN) then
    fail(p .. "invalid name (use letters, digits, '.', '_' and '-')")
  end

  local c = { name = name }
  c.topics = check_topics(p, def.topics)

  if def.handle == nil then fail(p .. "'handle' is missing (a function(msg, ctx))") end
  if type(def.handle) ~= "function" then
    fail(p .. "'handle' must be a function, got " .. type(def.handle))
  end
  c.handle = def.handle

  if def.dedupe ~= nil and def.dedupe ~= false and type(def.dedupe) ~= "function" then
    fail(p .. "'dedupe' must be a function(msg) or false, got " ..
         (def.dedupe == true and "true" or type(def.dedupe)))
  end
  c.dedupe = def.dedupe

  c.retry = check_retry(p, def.retry)

  if def.dlq ~= nil then
    if type(def.dlq) ~= "string" then
      fail(p .. "'dlq' must be a topic name (a string), got " .. type(def.dlq))
    end
    local problem = M._topic_name_problem(def.dlq)
    if problem then fail(p .. "dlq topic name '" .. def.dlq .. "' " .. problem) end
    for _, t in ipairs(c.topics) do
      if t == def.dlq then
        fail(p .. "'dlq' cannot be a topic it consumes ('" .. t .. "')")
      end
    end
  end
  c.dlq = def.dlq

  local from = def.from
  if from == nil then from = "beginning" end
  if from ~= "beginning" and from ~= "end" then
    fail(p .. "'from' must be \"beginning\" or \"end\", got " .. got(from))
  end
  c.from = from

  c.limits = check_limits(p, def.limits)

  if def.sandbox ~= nil and def.sandbox ~= "strict" and def.sandbox ~= "default" then
    fail(p .. "'sandbox' must be \"strict\" or \"default\", got " .. got(def.sandbox))
  end
  c.sandbox = def.sandbox

  -- The event types it reads and emits, for the catalog and eddy flows;
  -- emitting a type not in emits is refused.
  for _, k in ipairs({ "consumes", "emits" }) do
    local v = def[k]
    if type(v) == "string" then v = { v } end
    if v ~= nil then
      if type(v) ~= "table" or #v == 0 then
        fail(p .. "'" .. k .. "' must be an event type or a non-empty list of them, got " ..
             (type(v) == "table" and "an empty table" or got(def[k])))
      end
      for i, t in ipairs(v) do
        if type(t) ~= "string" or t == "" then
          fail(p .. "'" .. k .. "' item " .. i .. " must be a non-empty string, got " .. got(t))
        end
      end
      c[k] = table.move(v, 1, #v, 1, {})
    end
  end
  if c.emits then
    local allowed, handle, who = M._set_of(c.emits), c.handle, "consumer '" .. name .. "'"
    c.handle = function(msg, ctx) return handle(msg, M._guarded(ctx, allowed, who)) end
  end
  return setmetatable(c, M.Consumer)
end

--- Internal: the set of the values of list (nil: an empty set).
-- @local
function M._set_of(list)
  local s = {}
  for _, v in ipairs(list or {}) do s[v] = true end
  return s
end

--- Internal: a ctx whose emit refuses event types not in `allowed` (a
-- set), and records what was emitted in `out` when given (rules, sagas,
-- consumers with `emits`).
-- @local
function M._guarded(ctx, allowed, who, out)
  local proxy = setmetatable({}, { __index = ctx })
  function proxy.emit(_, topic, m)
    local t = type(m) == "table" and m.type or nil
    if allowed and t and not allowed[t] then
      error(string.format("%s emits type '%s', which it does not declare (emits)", who, t), 2)
    end
    local id = ctx:emit(topic, m)
    if out and t then out[#out + 1] = { type = t, id = id, topic = topic } end
    return id
  end
  return proxy
end

--- Defines a consumer: a named handler of the messages of some topics.
--
-- A handler file returns one consumer or a list of them:
--
--    return eddy.consumer {
--      name = "order-counter", topics = { "orders" },
--      handle = function(msg, ctx) ... end,
--    }
--
-- The definition is checked and copied: the result is a new table with
-- every default filled in, and `eddy.Consumer` as its metatable.
-- @tparam table def
-- @tparam string def.name 1 to 200 characters of `[A-Za-z0-9._-]`; also
--   the consumer group whose offsets are stored
-- @tparam string|{string,...} def.topics the topics it consumes (at least
--   one; a single name is taken as a list of one)
-- @tparam function def.handle `function(msg, ctx)`; an error raised in it
--   is retried, `error(eddy.permanent(why))` is not
-- @tparam[opt] function|false def.dedupe `function(msg)` returning the
--   dedupe key of a message; `false` turns dedupe off; absent: by message id
-- @tparam[opt] table def.retry `{ attempts = 5, backoff = "100ms",
--   max_backoff = "30s" }`; durations are strings or integer milliseconds,
--   and max_backoff must not be below backoff
-- @tparam[opt] string def.dlq the dead-letter topic; absent: `<topic>.dlq`
--   of the topic each message came from
-- @tparam[opt="beginning"] string def.from `"beginning"` or `"end"`: where
--   the consumer starts on a partition where it has no stored offset
-- @tparam[opt] table def.limits `{ instructions = 50000000, memory =
--   "64MiB", timeout = "30s", emits = 100000 }`: the instruction budget of
--   one handler call (>= 1000), the memory cap of a Lua state (a size or
--   bytes, >= 1 MiB; the events and state writes a call holds count too),
--   the wall-clock time of one call (>= 10ms) and the events one call may
--   emit (>= 1)
-- @tparam[opt] string def.sandbox `"strict"`: the consumer's file runs in
--   the strict sandbox (docs/handlers.md); `"default"` or absent: the
--   app's
-- @tparam[opt] string|{string,...} def.consumes the event types it reads,
--   for `eddy catalog docs` and `eddy flows` (it still gets every message)
-- @tparam[opt] string|{string,...} def.emits the event types it emits;
--   `ctx:emit` of another type raises
-- @treturn table `{ name =, topics = {...}, handle =, dedupe =, retry =
--   { attempts =, backoff_ms =, max_backoff_ms = }, dlq =, from =, limits =
--   { instructions =, memory =, timeout_ms =, emits = }, consumes =, emits =,
--   sandbox = }` (dedupe, dlq, consumes, emits and sandbox may be nil)
-- @raise on any mistake in def, e.g. `"consumer 'x': 'handle' is missing
--   (a function(msg, ctx))"`, at the caller's position
function M.consumer(def)
  local ok, c = pcall(normalize, def)
  if ok then return c end
  if getmetatable(c) == Failure then error(c.msg, 2) end
  error(c, 0)  -- not a mistake in def (out of memory, say): pass it on
end

--- Internal, used by `eddy.saga`: `consumer` raising its message without
-- a position (the caller adds its own).
-- @local
function M._consumer(def)
  local ok, c = pcall(normalize, def)
  if ok then return c end
  if getmetatable(c) == Failure then error(c.msg, 0) end
  error(c, 0)
end

--- A choreography rule: a consumer of some event types
-- (`eddy.saga.on`, docs/sagas.md).
function M.on(types, opts, fn)
  local ok, r = pcall(require("eddy.saga").on, types, opts, fn)
  if ok then return r end
  error(r, 2)
end

--- A saga: ordered steps with replies, timeouts and compensation
-- (`eddy.saga.saga`, docs/sagas.md).
function M.saga(def)
  local ok, r = pcall(require("eddy.saga").saga, def)
  if ok then return r end
  error(r, 2)
end

--- Declares one version of an event type: its schema, owner, SLA
-- (`eddy.catalog.event`, docs/contracts.md).
--
--    eddy.event { type = "OrderPlaced", version = 2, owner = "orders",
--      schema = { type = "object", required = { "id" },
--                 properties = { id = { type = "integer" } } },
--      sla = { max_lag = "5s" } }
-- @function event
M.event = require("eddy.catalog").event

--- JSON null, as `msg:json()` gives it; usable in a schema's enum.
M.null = core.null

--- Whether v is a consumer made by `consumer`.
-- @param v any value
-- @treturn boolean
function M.is_consumer(v)
  return type(v) == "table" and rawequal(getmetatable(v), M.Consumer)
end

--- A non-retryable failure: `error(eddy.permanent("why"))` in a handler
-- sends the message straight to quarantine instead of retrying it.
-- @param why the reason; a value that is not a string is converted with
--   `tostring`
-- @treturn table `{ why = string }` with metatable `eddy.Permanent`, whose
--   `tostring` is why
function M.permanent(why)
  if type(why) ~= "string" then why = tostring(why) end
  return setmetatable({ why = why }, M.Permanent)
end

--- Whether v is a value made by `permanent`.
-- @param v any value
-- @treturn boolean
function M.is_permanent(v)
  return type(v) == "table" and rawequal(getmetatable(v), M.Permanent)
end

return M
