--- eddy run: the consumer runtime and its guarantees (issue 3): per-key
-- order, effectively-once effects, the transactional outbox, retries that
-- do not block other keys, quarantine, limits, and stopping on SIGTERM.
--
-- Every test writes an app (eddy.lua and handler files) into a temporary
-- directory, produces messages with `eddy produce`, runs `eddy run --drain`
-- and reads back what the handlers recorded: their state (`eddy state
-- list --json`), the topics they emitted to (`eddy tail --json`) and the
-- dead-letter store (`eddy dlq list --json`).  Handlers record what they
-- see (order, attempts, counts) in ctx.state, so the assertions never
-- depend on timing.
local cjson = require "cjson"
local H = require "helpers"

--- Runs fn when the test ends (as many as needed; see H.defer).
local function defer(fn) H.defer(finally, fn) end

--- How long a `run --drain` may take before the test fails (it is killed).
local DRAIN_TIMEOUT = 30

local UUID7 = "^%x%x%x%x%x%x%x%x%-%x%x%x%x%-7%x%x%x%-[89ab]%x%x%x%-%x%x%x%x%x%x%x%x%x%x%x%x$"

--- Integral floats (lua-cjson decodes every number as a float) made
-- integers, in place, recursively; returns v.
local function ints(v)
  if type(v) == "number" then return math.tointeger(v) or v end
  if type(v) == "table" then
    for k, x in pairs(v) do v[k] = ints(x) end
  end
  return v
end

--- Decodes JSON text, with integral numbers as integers.
local function decode(s)
  return ints(cjson.decode(s))
end

--- Decodes every line of s as JSON (see decode).
local function json_lines(s)
  local t = {}
  for i, line in ipairs(H.lines(s)) do t[i] = decode(line) end
  return t
end

--- The fields of t named in the list names (a copy).
local function pick(t, names)
  local out = {}
  for _, k in ipairs(names) do out[k] = t[k] end
  return out
end

--- Replaces $NAME in s by params.NAME (tostring'd); every $NAME must be
-- given.
local function fill(s, params)
  return (s:gsub("%$([%a_][%w_]*)", function(k)
    assert(params[k] ~= nil, "no value for $" .. k)
    return tostring(params[k])
  end))
end

--- Makes an app in a fresh temporary directory: `eddy.lua` with data
-- "data", `workers` and `topics` (name -> partitions), handler files
-- handlers/NAME.lua from `handlers` (name -> source, where "$APPDIR" stands
-- for the app's directory), and `options` (more app options, Lua source
-- such as "dedupe_window = '1s'").  Creates the topics in the store, so
-- messages can be produced before the first run.
-- @treturn table `{ dir =, file = the app file, data = the data dir }`
local function make_app(t)
  local dir = H.tmpdir()
  defer(function() H.rmdir(dir) end)
  assert(os.execute("mkdir " .. H.quote(dir .. "/handlers")))
  local names = {}
  for name in pairs(t.topics) do names[#names + 1] = name end
  table.sort(names)
  local topics = {}
  for i, name in ipairs(names) do
    topics[i] = string.format("[%q] = { partitions = %d }", name, t.topics[name])
  end
  H.write(dir .. "/eddy.lua", string.format(
    "return { data = 'data', workers = %d, handlers = { 'handlers/' }, topics = { %s }, %s }\n",
    t.workers or 2, table.concat(topics, ", "), t.options or ""))
  for name, src in pairs(t.handlers) do
    H.write(dir .. "/handlers/" .. name .. ".lua", (src:gsub("%$APPDIR", dir)))
  end
  local app = { dir = dir, file = dir .. "/eddy.lua", data = dir .. "/data" }
  for _, name in ipairs(names) do
    local r = H.run({ "--data", app.data, "topic", "create", name,
                      "--partitions", tostring(t.topics[name]) })
    assert(r.code == 0, "topic create " .. name .. ": " .. r.err)
  end
  return app
end

--- Runs eddy on the app's data directory; fails the test unless it exits 0
-- with nothing on stderr.  Returns stdout.
local function eddy(app, ...)
  local args = { "--data", app.data, ... }
  local opts
  if type(args[#args]) == "table" then opts = table.remove(args) end
  local r = H.run(args, opts)
  if r.code ~= 0 or r.err ~= "" then
    error(string.format("eddy %s: exit %d: %s", table.concat(args, " "), r.code, r.err), 2)
  end
  return r.out
end

--- Produces lines "KEY<tab>VALUE" (keyed) or "VALUE" (unkeyed, when
-- keyed is false) to topic, in order, with one `eddy produce`.
local function produce_lines(app, topic, lines, keyed)
  if #lines == 0 then return end
  local input = table.concat(lines, "\n") .. "\n"
  if keyed == false then
    eddy(app, "produce", topic, { stdin = input })
  else
    eddy(app, "produce", topic, "-K", "\t", { stdin = input })
  end
end

local summary = H.summary

--- Runs `eddy run APP --drain` with more args (killed after timeout
-- seconds, default DRAIN_TIMEOUT) and asserts exit 0.  Returns the
-- summary numbers and the log (stderr).
local function drain(app, args, timeout)
  local argv = { "run", app.file, "--drain" }
  for _, a in ipairs(args or {}) do argv[#argv + 1] = a end
  local h = H.spawn(argv)
  defer(function() H.cleanup(h) end)
  local ok, code = pcall(H.wait_exit, h, timeout or DRAIN_TIMEOUT, "eddy run --drain to exit")
  local err = H.read(h.err) or ""
  if not ok then error(tostring(code) .. "; its log:\n" .. err, 2) end
  if code ~= 0 then error("eddy run --drain exited " .. code .. "; its log:\n" .. err, 2) end
  return summary(err), err
end

--- A consumer's state, `state list --json` decoded: key -> value.
local function state(app, consumer)
  local t = {}
  for _, o in ipairs(json_lines(eddy(app, "state", "list", consumer, "--json"))) do
    t[o.key] = o.value
  end
  return t
end

--- The number of state entries of a consumer (without decoding them); 0
-- before the consumer is registered.
local function state_count(app, consumer)
  local r = H.run({ "--data", app.data, "state", "list", consumer })
  if r.code ~= 0 and r.err:find("unknown consumer", 1, true) then return 0 end
  assert(r.code == 0 and r.err == "", "state list: " .. r.err)
  local _, n = r.out:gsub("\n", "")
  return n
end

--- `dlq list --json`, decoded, oldest first.
local function dlq(app, consumer)
  local args = { "dlq", "list", "--json" }
  if consumer then args[#args + 1] = "--consumer"; args[#args + 1] = consumer end
  return json_lines(eddy(app, table.unpack(args)))
end

--- The version a run logged for consumer name, at the start (message
-- "file=F version=V").
local function logged_version(err, name)
  local l = H.log_select(err, { consumer = name, message = "^file=%S+ version=%S+$" })[1]
  assert(l, "no version logged for consumer " .. name .. " in:\n" .. err)
  assert.equal(l.message:match("version=(%S+)$"), l.version)
  return l.version
end

--- Milliseconds since the epoch of an RFC 3339 UTC time with
-- milliseconds ("2026-01-02T03:04:05.678Z"), for differences.
local function time_ms(s)
  local y, mo, d, h, mi, sec, ms = s:match("^(%d+)%-(%d+)%-(%d+)T(%d+):(%d+):(%d+)%.(%d+)Z$")
  assert(y, "not an RFC 3339 time: " .. tostring(s))
  return os.time({ year = tonumber(y), month = tonumber(mo), day = tonumber(d),
                   hour = tonumber(h), min = tonumber(mi), sec = tonumber(sec) }) * 1000 +
         tonumber(ms)
end

--- The messages of topic, decoded, in offset order per partition (tail
-- merges partitions by timestamp).
local function messages(app, topic)
  return json_lines(eddy(app, "tail", topic, "--from-beginning", "--json"))
end

-- 1 -------------------------------------------------------------------------

describe("eddy run: the issue's order-counter app", function()
  local COUNTER = [[
local eddy = require "eddy"
return eddy.consumer {
  name = "order-counter",
  topics = { "orders" },
  dedupe = function(msg) return msg.id end,
  retry = { attempts = 5, backoff = "100ms", max_backoff = "30s" },
  dlq = "orders.dlq",
  handle = function(msg, ctx)
    local order = msg:json()
    local seen = ctx.state:get(order.customer) or 0
    ctx.state:set(order.customer, seen + 1)
    ctx:emit("orders.counted", { key = msg.key, value = { id = order.id, n = seen + 1 } })
  end,
}
]]

  it("counts orders per customer and emits one event per order, per key in order", function()
    local app = make_app { topics = { orders = 4 }, handlers = { count = COUNTER } }
    -- 60 orders of 5 customers: customer cK places K * 4 orders.
    local lines, ids_by_customer = {}, {}
    local id = 0
    for round = 1, 20 do
      for k = 1, 5 do
        if round <= k * 4 then
          id = id + 1
          local c = "c" .. k
          lines[#lines + 1] = c .. "\t" .. cjson.encode({ id = id, customer = c })
          ids_by_customer[c] = ids_by_customer[c] or {}
          table.insert(ids_by_customer[c], id)
        end
      end
    end
    produce_lines(app, "orders", lines)
    local s = drain(app)
    assert.same({ received = 60, handled = 60, deduplicated = 0, retried = 0,
                  quarantined = 0, emitted = 60, relayed = 60 },
                pick(s, { "received", "handled", "deduplicated", "retried", "quarantined",
                          "emitted", "relayed" }))

    assert.same({ c1 = 4, c2 = 8, c3 = 12, c4 = 16, c5 = 20 }, state(app, "order-counter"))
    assert.equal("12", eddy(app, "state", "get", "order-counter", "c3"):match("^(.-)\n$"))

    local counted = messages(app, "orders.counted")
    assert.equal(60, #counted)
    -- Per key: one event per order, in the order the orders were placed,
    -- n counting up from 1.
    local by_key = {}
    for _, m in ipairs(counted) do
      by_key[m.key] = by_key[m.key] or {}
      table.insert(by_key[m.key], decode(m.value))
    end
    for c, ids in pairs(ids_by_customer) do
      local expect = {}
      for n, oid in ipairs(ids) do expect[n] = { id = oid, n = n } end
      assert.same(expect, by_key[c], "orders.counted for key " .. c)
    end
    assert.same({}, dlq(app))
  end)
end)

describe("eddy run: msg and ctx", function()
  it("give a handler the message's fields and headers, the consumer's name and version",
     function()
    local app = make_app {
      topics = { t = 1 },
      handlers = { fields = [[
local eddy = require "eddy"
local kept
return eddy.consumer {
  name = "fields",
  topics = { "t" },
  handle = function(msg, ctx)
    if msg.value == "later" then
      local ok, err = pcall(function() return kept.id end)
      local _, rerr = pcall(function() msg.value = "x" end)
      ctx.state:set("later", { ok = ok, err = err, readonly = rerr, attempt = ctx.attempt })
      return
    end
    kept = msg
    local h = msg.headers
    ctx.state:set("first", {
      id = msg.id, key = msg.key, value = msg.value, topic = msg.topic,
      partition = msg.partition, offset = msg.offset, timestamp = msg.timestamp,
      correlation_id = msg.correlation_id, causation_id = msg.causation_id,
      traceparent = msg.traceparent, type = msg.type,
      headers = { n = #h, first = h[1], last = h[#h], x = h["x-a"] },
      n = msg:json().n, cached = msg:json() == msg:json(),
      consumer = ctx.consumer, version = ctx.version, attempt = ctx.attempt,
      text = tostring(msg),
    })
    ctx.log.info("hello from the handler", { n = 7 })
  end,
}
]] },
    }
    local TP = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    local p = decode(eddy(app, "produce", "t", "--key", "k", "--json",
                          "-H", "x-a=1", "-H", "eddy-correlation-id=corr",
                          "-H", "eddy-causation-id=cause", "-H", "traceparent=" .. TP,
                          "-H", "eddy-type=Thing", '{"n":5}'))
    eddy(app, "produce", "t", "--key", "k", "later")
    local _, log = drain(app)
    local version = logged_version(log, "fields")
    local st = state(app, "fields")
    assert.same({
      id = p.id, key = "k", value = '{"n":5}', topic = "t", partition = 0, offset = 0,
      timestamp = p.timestamp, correlation_id = "corr", causation_id = "cause",
      traceparent = TP, type = "Thing",
      headers = { n = 5, first = { "x-a", "1" }, last = { "eddy-type", "Thing" }, x = "1" },
      n = 5, cached = true, consumer = "fields", version = version, attempt = 1,
      text = "eddy.msg " .. p.id .. " (t/0@0)",
    }, st.first)
    local file = app.dir .. "/handlers/fields.lua"
    assert.same({ ok = false, err = file .. ":8: msg used after its handler returned",
                  readonly = file .. ":9: msg is read-only (field 'value')", attempt = 1 },
                st.later)
    local said = H.log_select(log, { message = "^hello from the handler$" })
    assert.equal(1, #said, log)
    said[1].time = nil
    assert.same({ level = "info", message = "hello from the handler", consumer = "fields",
                  message_id = p.id, correlation_id = "corr",
                  trace_id = "0af7651916cd43dd8448eb211c80319c", version = version, n = 7 },
                said[1])
  end)
end)

-- 2 -------------------------------------------------------------------------

describe("eddy run: per-key order", function()
  -- Each message's value is its sequence number within its key.  The
  -- handler checks it against the last one it saw for the key, and writes
  -- what was wrong under "violation:<key>".  Some messages fail once
  -- (retryable), to put parks and retries in the way.  Every message also
  -- bumps "total", a state key all workers share, which makes batches of
  -- different workers conflict and be handled again.
  local KEYED = [[
local eddy = require "eddy"
return eddy.consumer {
  name = "keyed",
  topics = { "keyed" },
  retry = { attempts = 5, backoff = "5ms", max_backoff = "20ms" },
  handle = function(msg, ctx)
    local seq = tonumber(msg.value)
    local k = msg.key
    if seq % 7 == 3 and #k % 2 == 0 and ctx.attempt == 1 then
      error("fails once")
    end
    local last = ctx.state:get("last:" .. k) or 0
    if seq ~= last + 1 then
      local v = ctx.state:get("violation:" .. k) or {}
      v[#v + 1] = last .. "->" .. seq
      ctx.state:set("violation:" .. k, v)
    end
    ctx.state:set("last:" .. k, seq)
    if $SHARED then ctx.state:set("total", (ctx.state:get("total") or 0) + 1) end
  end,
}
]]

  local function keyed_order(shared)
    local app = make_app {
      workers = 2, topics = { keyed = 4 },
      handlers = { keyed = fill(KEYED, { SHARED = shared }) },
    }
    local KEYS, PER_KEY = 50, 40
    local lines = {}
    for seq = 1, PER_KEY do
      for k = 1, KEYS do lines[#lines + 1] = "key-" .. k .. "\t" .. seq end
    end
    produce_lines(app, "keyed", lines)
    local s = drain(app)
    assert.equal(KEYS * PER_KEY, s.handled)
    assert.equal(0, s.quarantined)
    assert.is_true(s.retried > 0, "no message failed: the spec lost its retries")

    local st = state(app, "keyed")
    local violations, last = {}, {}
    for k, v in pairs(st) do
      if k:match("^violation:") then violations[k] = v end
      local key = k:match("^last:(.*)$")
      if key then last[key] = v end
    end
    assert.same({}, violations)
    local want = {}
    for k = 1, KEYS do want["key-" .. k] = PER_KEY end
    assert.same(want, last)
    if shared then assert.equal(KEYS * PER_KEY, st.total) end
  end

  it("handles the messages of each key one at a time, in offset order (4 partitions, 2 workers)",
     function() keyed_order(false) end)

  it("keeps per-key order and counts every message once when all keys share a state key",
     function() keyed_order(true) end)

  -- Workers keep the state values they read and wrote from one batch to
  -- the next.  Here every message of 1,000 keys (spread over both workers)
  -- adds to one shared counter and to one of 37 others, over enough
  -- batches that each worker's kept copies go stale again and again.
  it("counts exactly when both workers update the same state keys batch after batch",
     function()
    local app = make_app {
      workers = 2, topics = { t = 4 },
      handlers = { shared = [[
local eddy = require "eddy"
return eddy.consumer {
  name = "shared", topics = { "t" },
  handle = function(msg, ctx)
    ctx.state:set("total", (ctx.state:get("total") or 0) + 1)
    local k = "k" .. (tonumber(msg.value) % 37)
    ctx.state:set(k, (ctx.state:get(k) or 0) + 1)
  end,
}
]] },
    }
    local N, lines = 30000, {}
    for i = 1, N do lines[i] = "key" .. (i % 1000) .. "\t" .. i end
    produce_lines(app, "t", lines)
    local s = drain(app)
    assert.equal(N, s.handled)
    local st = state(app, "shared")
    assert.equal(N, st.total)
    local want = {}
    for i = 1, N do local k = "k" .. (i % 37); want[k] = (want[k] or 0) + 1 end
    want.total = N
    assert.same(want, st)
  end)

  it("runs different keys in parallel on different workers", function()
    -- Each message's handler says it started (a file), then waits until
    -- the handler of a message of another key started too.  With one
    -- message per key and 16 keys over 2 workers, the first handler of
    -- each worker can only get past the wait when the other worker runs a
    -- handler at the same time.
    local app = make_app {
      workers = 2, topics = { t = 1 },
      handlers = { together = [[
local eddy = require "eddy"
local function started(dir)
  local n = 0
  for i = 1, 16 do
    local f = io.open(dir .. "/started-k" .. i, "r")
    if f then f:close(); n = n + 1 end
  end
  return n
end
return eddy.consumer {
  name = "together",
  topics = { "t" },
  retry = { attempts = 1 },
  limits = { instructions = 1000000000 },
  handle = function(msg, ctx)
    local dir = "$APPDIR"
    assert(io.open(dir .. "/started-" .. msg.key, "w")):close()
    local deadline = os.time() + 10
    while started(dir) < 2 do
      if os.time() > deadline then error("no other key ran meanwhile") end
    end
    ctx.state:set(msg.key, true)
  end,
}
]] },
    }
    local lines = {}
    for i = 1, 16 do lines[i] = "k" .. i .. "\tx" end
    produce_lines(app, "t", lines)
    local s = drain(app)
    assert.same({ handled = 16, quarantined = 0 }, pick(s, { "handled", "quarantined" }))
  end)

  it("keeps partition order for unkeyed messages", function()
    -- Unkeyed messages go round robin over the partitions; value i is the
    -- i-th produced.  Per partition the handler checks that offsets come
    -- one after the other and values grow.  Message 7 fails once.
    local app = make_app {
      workers = 2, topics = { events = 4 },
      handlers = { unkeyed = [[
local eddy = require "eddy"
return eddy.consumer {
  name = "unkeyed",
  topics = { "events" },
  retry = { attempts = 5, backoff = "5ms" },
  handle = function(msg, ctx)
    local i = tonumber(msg.value)
    if i % 50 == 7 and ctx.attempt == 1 then error("fails once") end
    local p = "p" .. msg.partition
    local last = ctx.state:get(p) or { offset = -1, value = 0, n = 0 }
    if msg.offset ~= last.offset + 1 or i <= last.value then
      local v = ctx.state:get("violation:" .. p) or {}
      v[#v + 1] = last.offset .. "/" .. last.value .. "->" .. msg.offset .. "/" .. i
      ctx.state:set("violation:" .. p, v)
    end
    ctx.state:set(p, { offset = msg.offset, value = i, n = last.n + 1 })
  end,
}
]] },
    }
    local N = 800
    local lines = {}
    for i = 1, N do lines[i] = tostring(i) end
    produce_lines(app, "events", lines, false)
    local s = drain(app)
    assert.equal(N, s.handled)
    assert.is_true(s.retried >= 16, "expected the failing messages to be retried")

    local st = state(app, "unkeyed")
    local topic = H.topics(app.data).events
    for p = 0, 3 do
      local hw = topic.offsets[p + 1].high_watermark
      assert.same({ offset = hw - 1, n = hw }, { offset = st["p" .. p].offset, n = st["p" .. p].n },
                  "partition " .. p)
      assert.is_nil(st["violation:p" .. p], "partition " .. p .. " out of order")
    end
  end)
end)

-- 3 -------------------------------------------------------------------------

describe("eddy run: retries", function()
  -- One partition, one worker: the failing key's message and every other
  -- key's messages are in the same queue.  Key "bad" message 1 fails until
  -- all 200 messages of the other keys are handled, so it can succeed only
  -- if they are not blocked behind it (otherwise it is quarantined after
  -- its attempts).  Key "bad" messages 2 and 3 come later in the partition
  -- and must wait for message 1.
  local RETRY = [[
local eddy = require "eddy"
return eddy.consumer {
  name = "retrying",
  topics = { "t" },
  retry = { attempts = 40, backoff = "10ms", max_backoff = "50ms" },
  handle = function(msg, ctx)
    if msg.key == "bad" then
      local seq = tonumber(msg.value)
      local good = ctx.state:get("good") or 0
      if seq == 1 and good < $GOOD then error("the other keys are not done yet") end
      local seen = ctx.state:get("bad") or {}
      seen[#seen + 1] = { seq = seq, attempt = ctx.attempt, good = good }
      ctx.state:set("bad", seen)
    else
      ctx.state:set("good", (ctx.state:get("good") or 0) + 1)
      ctx.state:set("seen:" .. msg.key, (ctx.state:get("seen:" .. msg.key) or 0) + 1)
    end
  end,
}
]]

  it("a failing key does not block other keys; its later messages wait behind it", function()
    local GOOD = 200
    local app = make_app {
      workers = 1, topics = { t = 1 },
      handlers = { retrying = fill(RETRY, { GOOD = GOOD }) },
    }
    local lines = { "bad\t1" }
    for i = 1, GOOD // 2 do lines[#lines + 1] = "good-" .. i .. "\tx" end
    lines[#lines + 1] = "bad\t2"
    for i = GOOD // 2 + 1, GOOD do lines[#lines + 1] = "good-" .. i .. "\tx" end
    lines[#lines + 1] = "bad\t3"
    produce_lines(app, "t", lines)

    local s = drain(app)
    assert.same({}, dlq(app))
    assert.equal(GOOD + 3, s.handled)
    assert.is_true(s.retried >= 1)
    local st = state(app, "retrying")
    assert.equal(GOOD, st.good)
    local bad = st.bad
    assert.equal(3, #bad)
    -- Message 1 succeeded on a later attempt, after every other key.
    assert.is_true(bad[1].attempt > 1, "bad 1 succeeded on its first attempt")
    assert.same({ seq = 1, good = GOOD }, { seq = bad[1].seq, good = bad[1].good })
    -- Messages 2 and 3 of the key came after it, in order, each on its
    -- first attempt.
    assert.same({ { seq = 2, attempt = 1, good = GOOD }, { seq = 3, attempt = 1, good = GOOD } },
                { bad[2], bad[3] })
    for i = 1, GOOD do assert.equal(1, st["seen:good-" .. i], "good-" .. i) end
  end)

  it("a failing key does not block other keys on the same worker when there are several", function()
    local GOOD = 200
    local app = make_app {
      workers = 2, topics = { t = 1 },
      handlers = { retrying = fill(RETRY, { GOOD = GOOD }) },
    }
    local lines = { "bad\t1" }
    for i = 1, GOOD // 2 do lines[#lines + 1] = "good-" .. i .. "\tx" end
    lines[#lines + 1] = "bad\t2"
    for i = GOOD // 2 + 1, GOOD do lines[#lines + 1] = "good-" .. i .. "\tx" end
    lines[#lines + 1] = "bad\t3"
    produce_lines(app, "t", lines)

    local s = drain(app)
    assert.same({}, dlq(app))
    assert.equal(GOOD + 3, s.handled)
    local st = state(app, "retrying")
    assert.equal(GOOD, st.good)
    local seqs = {}
    for i, b in ipairs(st.bad) do seqs[i] = b.seq .. "@" .. b.good end
    assert.same({ "1@" .. GOOD, "2@" .. GOOD, "3@" .. GOOD }, seqs)
  end)

  it("tries a message `attempts` times, counting ctx.attempt from 1", function()
    local app = make_app {
      workers = 2, topics = { t = 2 },
      handlers = { tries = [[
local eddy = require "eddy"
return eddy.consumer {
  name = "tries",
  topics = { "t" },
  retry = { attempts = 3, backoff = "200ms" },
  handle = function(msg, ctx)
    if ctx.attempt < 3 then error("attempt " .. ctx.attempt .. " fails") end
    ctx.state:set(msg.value, { attempt = ctx.attempt, consumer = ctx.consumer })
  end,
}
]] },
    }
    produce_lines(app, "t", { "a\tm1", "b\tm2" })
    local s, log = drain(app)
    assert.same({ received = 2, handled = 2, retried = 4, quarantined = 0 },
                { received = s.received, handled = s.handled, retried = s.retried,
                  quarantined = s.quarantined })
    assert.same({ m1 = { attempt = 3, consumer = "tries" },
                  m2 = { attempt = 3, consumer = "tries" } },
                state(app, "tries"))
    local warned = H.log_select(log, { level = "warn", consumer = "tries",
                                       message = "^retrying: .*handlers/tries%.lua:%d+: " ..
                                                 "attempt %d fails" })
    assert.equal(4, #warned)
  end)

  it("never waits longer than max_backoff between attempts", function()
    -- Eight attempts with backoff = max_backoff = 50ms: seven waits of at
    -- most 50ms each.  (Doubling from 50ms instead, the waits could reach
    -- 6.4s, and would most likely add up to well over a second.)
    local app = make_app {
      topics = { t = 1 },
      handlers = { capped = [[
local eddy = require "eddy"
return eddy.consumer {
  name = "capped",
  topics = { "t" },
  retry = { attempts = 8, backoff = "50ms", max_backoff = "50ms" },
  handle = function(msg, ctx) error("always") end,
}
]] },
    }
    eddy(app, "produce", "t", "--key", "k", "x")
    local s = drain(app)
    assert.same({ retried = 7, quarantined = 1 }, pick(s, { "retried", "quarantined" }))
    local e = dlq(app)[1]
    assert.equal(8, e.attempts)
    local spent = time_ms(e.last_failure) - time_ms(e.first_failure)
    assert.is_true(spent >= 0 and spent < 1000,
                   "the retries took " .. spent .. "ms, over 7 waits of at most 50ms")
  end)
end)

-- 4 -------------------------------------------------------------------------

describe("eddy run: effectively once", function()
  -- Counts each message by its value, and the runs of the handler for it
  -- (ctx.attempt of the run that succeeded).
  local function counter(name, dedupe)
    return fill([[
local eddy = require "eddy"
return eddy.consumer {
  name = "$NAME",
  topics = { "t" },
  dedupe = $DEDUPE,
  handle = function(msg, ctx)
    local k = msg:json().n
    ctx.state:set(k, (ctx.state:get(k) or 0) + 1)
  end,
}
]], { NAME = name, DEDUPE = dedupe })
  end

  it("handles a message produced twice with the same id once", function()
    local app = make_app { topics = { t = 2 }, handlers = { c = counter("c", "nil") } }
    local id = "0190a0b0-0000-7000-8000-000000000001"
    eddy(app, "produce", "t", "--key", "k", "--id", id, '{"n":"a"}')
    eddy(app, "produce", "t", "--key", "k", "--id", id, '{"n":"a"}')
    eddy(app, "produce", "t", "--key", "k", '{"n":"b"}')
    local s = drain(app)
    assert.same({ received = 3, handled = 2, deduplicated = 1 },
                { received = s.received, handled = s.handled, deduplicated = s.deduplicated })
    assert.same({ a = 1, b = 1 }, state(app, "c"))

    -- Again in a later run: the dedupe record was committed.
    eddy(app, "produce", "t", "--key", "other", "--id", id, '{"n":"a"}')
    s = drain(app)
    assert.same({ received = 1, handled = 0, deduplicated = 1 },
                { received = s.received, handled = s.handled, deduplicated = s.deduplicated })
    assert.same({ a = 1, b = 1 }, state(app, "c"))
  end)

  it("dedupes by what a custom dedupe function returns", function()
    local app = make_app {
      topics = { t = 2 },
      handlers = { c = counter("c", "function(msg) return msg:json().order end") },
    }
    produce_lines(app, "t", { 'k1\t{"order":"o-1","n":"a"}', 'k2\t{"order":"o-1","n":"b"}',
                              'k3\t{"order":"o-2","n":"c"}' })
    local s = drain(app)
    assert.same({ handled = 2, deduplicated = 1 }, pick(s, { "handled", "deduplicated" }))
    local st = state(app, "c")
    -- Exactly one of the two messages of order o-1 was handled.
    assert.equal(1, (st.a or 0) + (st.b or 0))
    assert.equal(1, st.c)
  end)

  it("with dedupe = false handles every copy", function()
    local app = make_app { topics = { t = 1 }, handlers = { c = counter("c", "false") } }
    local id = "0190a0b0-0000-7000-8000-000000000002"
    eddy(app, "produce", "t", "--key", "k", "--id", id, '{"n":"a"}')
    eddy(app, "produce", "t", "--key", "k", "--id", id, '{"n":"a"}')
    local s = drain(app)
    assert.same({ handled = 2, deduplicated = 0 }, pick(s, { "handled", "deduplicated" }))
    assert.same({ a = 2 }, state(app, "c"))
  end)

  it("applies the effects of a handler that failed twice then succeeded once", function()
    local app = make_app {
      topics = { t = 1 },
      handlers = { c = [[
local eddy = require "eddy"
return eddy.consumer {
  name = "c",
  topics = { "t" },
  retry = { attempts = 5, backoff = "1ms" },
  handle = function(msg, ctx)
    ctx.state:set("count", (ctx.state:get("count") or 0) + 1)
    local runs = ctx.state:get("runs") or {}
    runs[#runs + 1] = ctx.attempt
    ctx.state:set("runs", runs)
    if ctx.attempt < 3 then error("not yet") end
  end,
}
]] },
    }
    eddy(app, "produce", "t", "--key", "k", "v")
    local s = drain(app)
    assert.same({ handled = 1, retried = 2 }, pick(s, { "handled", "retried" }))
    -- The handler ran three times; only the third run's writes stayed.
    assert.same({ count = 1, runs = { 3 } }, state(app, "c"))
  end)

  it("writes no dedupe record for a quarantined message: its replay is handled, once", function()
    local app = make_app {
      topics = { t = 1 },
      handlers = { c = [[
local eddy = require "eddy"
return eddy.consumer {
  name = "c",
  topics = { "t" },
  handle = function(msg, ctx)
    local f = io.open("$APPDIR/ready", "r")
    if not f then error(eddy.permanent("not ready")) end
    f:close()
    ctx.state:set(msg.value, (ctx.state:get(msg.value) or 0) + 1)
  end,
}
]] },
    }
    local mark = app.dir .. "/ready"
    eddy(app, "produce", "t", "--key", "k", "v1")
    local s = drain(app)
    assert.same({ handled = 0, quarantined = 1 }, pick(s, { "handled", "quarantined" }))
    assert.same({}, state(app, "c"))
    local q = dlq(app)
    assert.equal(1, #q)

    H.write(mark, "")
    eddy(app, "dlq", "replay", tostring(q[1].seq))
    s = drain(app)
    assert.same({ handled = 1, deduplicated = 0 }, pick(s, { "handled", "deduplicated" }))
    assert.same({ v1 = 1 }, state(app, "c"))
  end)

  it("forgets dedupe records older than the app's dedupe_window", function()
    local app = make_app {
      topics = { t = 1 }, options = "dedupe_window = '1s'",
      handlers = { c = counter("c", "nil") },
    }
    local id = "0190a0b0-0000-7000-8000-000000000003"
    eddy(app, "produce", "t", "--key", "k", "--id", id, '{"n":"a"}')
    assert.equal(1, drain(app).handled)
    -- A run's housekeeping expires records a second after it starts; the
    -- record above is older than 1s by then.
    local h = H.spawn({ "run", app.file })
    defer(function() H.cleanup(h) end)
    H.wait_until(function()
      return (H.read(h.err) or ""):find("expired 1 dedupe records", 1, true)
    end, 10, "the dedupe record to expire")
    eddy(app, "produce", "t", "--key", "k", "--id", id, '{"n":"a"}')
    H.wait_until(function() return state(app, "c").a == 2 end, 10,
                 "the copy to be handled again")
    assert.is_true(H.kill(h.pid, "TERM"))
    assert.equal(0, H.wait_exit(h, 5))
    local s = summary(H.read(h.err))
    assert.same({ handled = 1, deduplicated = 0 }, pick(s, { "handled", "deduplicated" }))
  end)
end)

-- 5 -------------------------------------------------------------------------

describe("eddy run: a failed attempt's effects", function()
  it("rolls back the state writes and emits of failed attempts", function()
    local app = make_app {
      topics = { t = 1 },
      handlers = { c = [[
local eddy = require "eddy"
return eddy.consumer {
  name = "c",
  topics = { "t" },
  retry = { attempts = 3, backoff = "1ms" },
  handle = function(msg, ctx)
    local n = ctx.state:get("n") or 0
    ctx.state:set("n", n + 1)
    ctx.state:set("seen-by-attempt-" .. ctx.attempt, n)
    ctx:emit("out", { key = msg.key, value = { attempt = ctx.attempt, n = n + 1 } })
    if ctx.attempt < 3 then error("attempt " .. ctx.attempt) end
  end,
}
]] },
    }
    eddy(app, "produce", "t", "--key", "k", "v")
    local s = drain(app)
    assert.same({ handled = 1, emitted = 1, relayed = 1 },
                { handled = s.handled, emitted = s.emitted, relayed = s.relayed })
    -- Each attempt saw n = 0: the failed attempts' writes never showed.
    assert.same({ n = 1, ["seen-by-attempt-3"] = 0 }, state(app, "c"))
    local out = messages(app, "out")
    assert.equal(1, #out)
    assert.same({ attempt = 3, n = 1 }, decode(out[1].value))
  end)

  it("rolls back only the failed message's effects, not those of its batch", function()
    -- One partition, one worker: a, b, c, d are handled in that order in
    -- one batch.  b writes x and emits, then fails for good; c must see a's
    -- x, not b's.
    local app = make_app {
      workers = 1, topics = { t = 1 },
      handlers = { c = [[
local eddy = require "eddy"
return eddy.consumer {
  name = "c",
  topics = { "t" },
  handle = function(msg, ctx)
    local v = msg.value
    if v == "a" then
      ctx.state:set("x", "from a")
      ctx:emit("out", { value = "a" })
    elseif v == "b" then
      ctx.state:set("x", "from b")
      ctx.state:set("b-was-here", true)
      ctx:emit("out", { value = "b" })
      error(eddy.permanent("b fails"))
    elseif v == "c" then
      ctx.state:set("c-saw", ctx.state:get("x") or "nothing")
      ctx:emit("out", { value = "c" })
    else
      ctx.state:set("d-saw", ctx.state:get("b-was-here") or "nothing")
    end
  end,
}
]] },
    }
    produce_lines(app, "t", { "a", "b", "c", "d" }, false)
    local s = drain(app)
    assert.same({ handled = 3, quarantined = 1, emitted = 2 },
                { handled = s.handled, quarantined = s.quarantined, emitted = s.emitted })
    assert.same({ x = "from a", ["c-saw"] = "from a", ["d-saw"] = "nothing" }, state(app, "c"))
    local vals = {}
    for i, m in ipairs(messages(app, "out")) do vals[i] = m.value end
    assert.same({ "a", "c" }, vals)
  end)
end)

-- 6 -------------------------------------------------------------------------

describe("eddy run: the outbox", function()
  -- Emits two events per message, with a user header, and records the ids
  -- ctx:emit returned.
  local EMITTER = [[
local eddy = require "eddy"
return eddy.consumer {
  name = "emitter",
  topics = { "in" },
  handle = function(msg, ctx)
    local a = ctx:emit("out", { key = msg.key, value = msg.value .. "-1",
                                headers = { { "x-user", "u" } }, type = "Thing" })
    local b = ctx:emit("out", { key = msg.key, value = msg.value .. "-2" })
    ctx.state:set(msg.id, { a, b })
  end,
}
]]

  it("gives emitted events correlation, causation and traceparent headers", function()
    local app = make_app { topics = { ["in"] = 1 }, handlers = { emitter = EMITTER } }
    local TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
    local SPAN = "00f067aa0ba902b7"
    local ids = {}
    for i, args in ipairs({
      { "plain" },
      { "--header", "eddy-correlation-id=abc", "correlated" },
      { "--header", "traceparent=00-" .. TRACE .. "-" .. SPAN .. "-01", "traced" },
    }) do
      local out = eddy(app, "produce", "in", "--key", "k", "--json", table.unpack(args))
      ids[i] = decode(out).id
    end
    local s = drain(app)
    assert.same({ handled = 3, emitted = 6, relayed = 6 },
                { handled = s.handled, emitted = s.emitted, relayed = s.relayed })

    local st = state(app, "emitter")
    local out = messages(app, "out")
    assert.equal(6, #out)
    local by_value = {}
    for _, m in ipairs(out) do by_value[m.value] = m end
    local seen_ids, traces = {}, {}
    for i, name in ipairs({ "plain", "correlated", "traced" }) do
      for n = 1, 2 do
        local m = by_value[name .. "-" .. n]
        assert.is_table(m, name .. "-" .. n .. " was not emitted")
        -- The id: a new UUIDv7, the one ctx:emit returned.
        assert.matches(UUID7, m.id)
        assert.are_not.equal(ids[i], m.id)
        assert.is_nil(seen_ids[m.id], "two events share an id")
        seen_ids[m.id] = true
        assert.equal(st[ids[i]][n], m.id)
        assert.equal("k", m.key)
        local h = m.headers
        assert.equal(ids[i], h["eddy-causation-id"])
        assert.equal(name == "correlated" and "abc" or ids[i], h["eddy-correlation-id"])
        local trace, span = h.traceparent:match("^00%-(%x+)%-(%x+)%-01$")
        assert.is_truthy(trace, "bad traceparent " .. h.traceparent)
        assert.equal(32, #trace)
        assert.equal(16, #span)
        assert.are_not.equal(("0"):rep(32), trace)
        assert.are_not.equal(("0"):rep(16), span)
        if name == "traced" then
          assert.equal(TRACE, trace)
          assert.are_not.equal(SPAN, span)
        else
          assert.are_not.equal(TRACE, trace)
        end
        traces[#traces + 1] = trace .. "-" .. span
        if n == 1 then
          assert.equal("u", h["x-user"])
          assert.equal("Thing", h["eddy-type"])
        else
          assert.is_nil(h["x-user"])
        end
      end
    end
    -- Without a traceparent, each message starts a trace of its own; every
    -- event has a span of its own.
    local plain_trace = by_value["plain-1"].headers.traceparent:sub(4, 35)
    local corr_trace = by_value["correlated-1"].headers.traceparent:sub(4, 35)
    assert.are_not.equal(plain_trace, corr_trace)
    local spans = {}
    for _, t in ipairs(traces) do
      assert.is_nil(spans[t], "two events share a traceparent")
      spans[t] = true
    end
  end)

  it("carries the correlation id down a chain of consumers", function()
    local app = make_app {
      topics = { a = 1 },
      handlers = { chain = [[
local eddy = require "eddy"
return {
  eddy.consumer {
    name = "first", topics = { "a" },
    handle = function(msg, ctx) ctx:emit("b", { key = msg.key, value = "from first" }) end,
  },
  eddy.consumer {
    name = "second", topics = { "b" },
    handle = function(msg, ctx)
      ctx.state:set("seen", { id = msg.id, correlation_id = msg.correlation_id,
                              causation_id = msg.causation_id, traceparent = msg.traceparent })
      ctx:emit("c", { key = msg.key, value = "from second" })
    end,
  },
}
]] },
    }
    -- b and c are created by the relay (b must exist for "second" to
    -- start): make b now.
    eddy(app, "topic", "create", "b")
    local TP = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    local id = decode(eddy(app, "produce", "a", "--key", "k", "--json",
                                 "--header", "traceparent=" .. TP, "start")).id
    drain(app)
    local b = messages(app, "b")
    local c = messages(app, "c")
    assert.equal(1, #b)
    assert.equal(1, #c)
    local seen = state(app, "second").seen
    assert.same({ id = b[1].id, correlation_id = id, causation_id = id,
                  traceparent = b[1].headers.traceparent }, seen)
    assert.equal(id, c[1].headers["eddy-correlation-id"])
    assert.equal(b[1].id, c[1].headers["eddy-causation-id"])
    assert.equal("0af7651916cd43dd8448eb211c80319c", c[1].headers.traceparent:sub(4, 35))
    assert.are_not.equal(b[1].headers.traceparent, c[1].headers.traceparent)
    assert.equal(1, H.topics(app.data).c.partitions)
  end)
end)

-- 7, 8 ------------------------------------------------------------------------

describe("eddy run: quarantine", function()
  local QUARANTINE = [[
local eddy = require "eddy"
return eddy.consumer {
  name = "q",
  topics = { "t" },
  retry = { attempts = 2, backoff = "1ms" },
  handle = function(msg, ctx)
    local v = msg.value
    if v == "boom" then
      error("boom: " .. msg.key)
    elseif v == "permanent" then
      error(eddy.permanent("cannot be handled"))
    elseif v == "table" then
      error({ code = 42 })
    elseif v == "nil" then
      error()
    elseif v == "json" then
      msg:json()
    end
    local seen = ctx.state:get(msg.key) or {}
    seen[#seen + 1] = v
    ctx.state:set(msg.key, seen)
  end,
}
]]
  -- The line of each error in QUARANTINE.
  local LINE = { boom = 9, permanent = 11, table = 13, ["nil"] = 15, json = 17 }

  local function quarantine_app()
    local app = make_app { topics = { t = 2 }, handlers = { q = QUARANTINE } }
    local file = app.dir .. "/handlers/q.lua"
    -- Key kb: boom then two good ones; the others one failing message each
    -- and a good one after it.
    local ids = {}
    for _, m in ipairs({
      { "kb", "boom", { "--header", "h1=v1", "--header", "h2=v2" } },
      { "kb", "after-1" }, { "kb", "after-2" },
      { "kp", "permanent" }, { "kp", "after" },
      { "kt", "table" }, { "kn", "nil" },
      { "kj", "json" }, { "kj", "after" },
    }) do
      local args = { "produce", "t", "--key", m[1], "--json" }
      for _, a in ipairs(m[3] or {}) do args[#args + 1] = a end
      args[#args + 1] = m[2]
      ids[m[2] .. "@" .. m[1]] = decode(eddy(app, table.unpack(args)))
    end
    return app, file, ids
  end

  it("quarantines after the last attempt, with error, traceback, attempts and version", function()
    local app, file, ids = quarantine_app()
    local s, log = drain(app)
    local version = logged_version(log, "q")
    assert.same({ handled = 4, quarantined = 5, retried = 3 },
                { handled = s.handled, quarantined = s.quarantined, retried = s.retried })
    local by_value = {}
    for _, e in ipairs(dlq(app)) do by_value[e.value] = e end

    local e = by_value.boom
    local p = ids["boom@kb"]
    assert.same({ consumer = "q", id = p.id, topic = "t", partition = p.partition,
                  offset = p.offset, key = "kb", value = "boom",
                  headers = { { "h1", "v1" }, { "h2", "v2" } },
                  reason = "error", error = file .. ":" .. LINE.boom .. ": boom: kb",
                  attempts = 2, version = version, dlq_topic = "t.dlq" },
                { consumer = e.consumer, id = e.id, topic = e.topic, partition = e.partition,
                  offset = e.offset, key = e.key, value = e.value, headers = e.headers,
                  reason = e.reason, error = e.error, attempts = e.attempts,
                  version = e.version, dlq_topic = e.dlq_topic })
    assert.matches(file:gsub("%p", "%%%0") .. ":" .. LINE.boom .. ":", e.traceback)
    assert.matches("^stack traceback:", e.traceback)
    assert.matches("^%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%d%.%d%d%dZ$", e.first_failure)
    assert.is_true(e.first_failure <= e.last_failure)
    assert.matches("^%x+$", version)
  end)

  it("quarantines a permanent error at once, and invalid JSON from msg:json()", function()
    local app, file, ids = quarantine_app()
    drain(app)
    local by_value = {}
    for _, e in ipairs(dlq(app)) do by_value[e.value] = e end
    assert.same({ attempts = 1, reason = "permanent", error = "cannot be handled" },
                { attempts = by_value.permanent.attempts, reason = by_value.permanent.reason,
                  error = by_value.permanent.error })
    assert.matches(file:gsub("%p", "%%%0") .. ":" .. LINE.permanent .. ":",
                   by_value.permanent.traceback)
    local j = by_value.json
    assert.equal(1, j.attempts)
    local prefix = "msg:json(): the value of message " .. ids["json@kj"].id .. " is not JSON"
    assert.equal(prefix, j.error:sub(1, #prefix))
    assert.matches(file:gsub("%p", "%%%0") .. ":" .. LINE.json .. ":", j.traceback)
  end)

  it("reports error values that are not strings readably (8)", function()
    local app = quarantine_app()
    drain(app)
    local by_value = {}
    for _, e in ipairs(dlq(app)) do by_value[e.value] = e end
    assert.same({ "a table value {code=42}", 2 }, { by_value.table.error, by_value.table.attempts })
    assert.same({ "error called with nil (no message)", 2 },
                { by_value["nil"].error, by_value["nil"].attempts })
  end)

  it("puts the original message and the failure as text headers on the dlq topic", function()
    local app, file, ids = quarantine_app()
    local _, log = drain(app)
    local version = logged_version(log, "q")
    local entries = {}
    for _, e in ipairs(dlq(app)) do entries[e.id] = e end
    local msgs = messages(app, "t.dlq")
    assert.equal(5, #msgs)
    local by_value = {}
    for _, m in ipairs(msgs) do by_value[m.value] = m end
    local m = by_value.boom
    local p = ids["boom@kb"]
    local e = entries[p.id]
    assert.same({
      id = p.id, key = "kb", value = "boom",
      headers = {
        h1 = "v1", h2 = "v2",
        ["eddy-error"] = file .. ":" .. LINE.boom .. ": boom: kb",
        ["eddy-traceback"] = e.traceback,
        ["eddy-attempts"] = "2",
        ["eddy-first-failure"] = e.first_failure,
        ["eddy-last-failure"] = e.last_failure,
        ["eddy-original-topic"] = "t",
        ["eddy-original-partition"] = tostring(p.partition),
        ["eddy-original-offset"] = tostring(p.offset),
        ["eddy-consumer"] = "q",
        ["eddy-version"] = version,
        ["eddy-reason"] = "error",
      },
    }, { id = m.id, key = m.key, value = m.value, headers = m.headers })
    local perm = by_value.permanent
    assert.same({ "1", "permanent", ids["permanent@kp"].id, tostring(ids["permanent@kp"].offset) },
                { perm.headers["eddy-attempts"], perm.headers["eddy-reason"], perm.id,
                  perm.headers["eddy-original-offset"] })
  end)

  it("releases the key: later messages of a quarantined one's key are handled, in order", function()
    local app = quarantine_app()
    drain(app)
    assert.same({ kb = { "after-1", "after-2" }, kp = { "after" }, kj = { "after" } },
                state(app, "q"))
  end)

  it("sends quarantined messages to the consumer's dlq topic when it names one", function()
    local app = make_app {
      topics = { t = 1 },
      handlers = { q = [[
local eddy = require "eddy"
return eddy.consumer {
  name = "q", topics = { "t" }, dlq = "poison",
  handle = function(msg, ctx) error(eddy.permanent("no")) end,
}
]] },
    }
    eddy(app, "produce", "t", "--key", "k", "x")
    drain(app)
    local q = dlq(app)
    assert.same({ 1, "poison" }, { #q, q[1].dlq_topic })
    local msgs = messages(app, "poison")
    assert.same({ 1, "x", "no" }, { #msgs, msgs[1].value, msgs[1].headers["eddy-error"] })
    assert.is_nil(H.topics(app.data)["t.dlq"])
  end)
end)

-- 9 -------------------------------------------------------------------------

describe("eddy run: limits", function()
  it("ends a handler that runs past its instruction budget, even one that catches the error",
     function()
    local app = make_app {
      topics = { t = 1 },
      handlers = { spin = [[
local eddy = require "eddy"
return eddy.consumer {
  name = "spin",
  topics = { "t" },
  retry = { attempts = 2, backoff = "1ms" },
  limits = { instructions = 100000 },
  handle = function(msg, ctx)
    local v = msg.value
    if v == "loop" then
      while true do end
    elseif v == "pcall" then
      while true do pcall(function() while true do end end) end
    elseif v == "catch" then
      pcall(function() while true do end end)
      ctx.state:set("escaped", true)
      return
    end
    ctx.state:set(v, true)
  end,
}
]] },
    }
    produce_lines(app, "t", { "k1\tloop", "k2\tok-1", "k3\tpcall", "k4\tcatch", "k5\tok-2" })
    local s = drain(app)
    assert.same({ handled = 2, quarantined = 3 }, pick(s, { "handled", "quarantined" }))
    local reasons = {}
    for _, e in ipairs(dlq(app)) do
      reasons[e.value] = { e.error, e.attempts, e.reason }
    end
    local want = { "instruction limit of 100000 exceeded", 2, "instructions" }
    assert.same({ loop = want, pcall = want, catch = want }, reasons)
    assert.same({ ["ok-1"] = true, ["ok-2"] = true }, state(app, "spin"))
  end)

  it("ends an endless loop in a coroutine the handler file made when it loaded", function()
    local app = make_app {
      workers = 1, topics = { t = 1 },
      handlers = { co = [[
local eddy = require "eddy"
local spin = coroutine.wrap(function() while true do end end)
return eddy.consumer {
  name = "co",
  topics = { "t" },
  retry = { attempts = 1 },
  limits = { instructions = 100000 },
  handle = function(msg, ctx)
    if msg.value == "spin" then spin() end
    ctx.state:set(msg.value, true)
  end,
}
]] },
    }
    produce_lines(app, "t", { "a\tspin", "b\tok" })
    local s = drain(app, nil, 5)
    assert.same({ handled = 1, quarantined = 1 }, pick(s, { "handled", "quarantined" }))
    assert.equal("instruction limit of 100000 exceeded", dlq(app)[1].error)
    assert.same({ ok = true }, state(app, "co"))
  end)

  it("ends a handler that allocates past its memory cap", function()
    local app = make_app {
      topics = { t = 1 },
      handlers = { hog = [[
local eddy = require "eddy"
return eddy.consumer {
  name = "hog",
  topics = { "t" },
  retry = { attempts = 2, backoff = "1ms" },
  limits = { memory = "8MiB", instructions = 1000000000 },
  handle = function(msg, ctx)
    local v = msg.value
    if v == "grow" then
      local t = {}
      while true do t[#t + 1] = ("x"):rep(1000) .. #t end
    elseif v == "big" then
      local s = ("x"):rep(64 * 1024 * 1024)
    end
    -- Well within the cap: works after the others failed.
    local t = {}
    for i = 1, 1000 do t[i] = ("y"):rep(1000) .. i end
    ctx.state:set(v, #t)
  end,
}
]] },
    }
    produce_lines(app, "t", { "k1\tgrow", "k2\tok-1", "k3\tbig", "k4\tok-2" })
    local s = drain(app)
    assert.same({ handled = 2, quarantined = 2 }, pick(s, { "handled", "quarantined" }))
    local reasons = {}
    for _, e in ipairs(dlq(app)) do reasons[e.value] = { e.error, e.attempts, e.reason } end
    local want = { "memory limit of 8388608 bytes exceeded", 2, "memory" }
    assert.same({ grow = want, big = want }, reasons)
    assert.same({ ["ok-1"] = 1000, ["ok-2"] = 1000 }, state(app, "hog"))
  end)

  it("caps the memory of the Lua state, not only what one call allocates", function()
    -- Each message keeps 1 MiB more in a table that outlives the call; one
    -- key, so one worker's state holds it all.  With an 8 MiB cap the
    -- state cannot keep more than 8 of them: later calls fail.
    local app = make_app {
      topics = { t = 1 },
      handlers = { hoarder = [[
local eddy = require "eddy"
local hoard = {}
return eddy.consumer {
  name = "hoarder",
  topics = { "t" },
  retry = { attempts = 1 },
  limits = { memory = "8MiB" },
  handle = function(msg, ctx)
    hoard[#hoard + 1] = ("x"):rep(1024 * 1024 - 64) .. msg.value
    ctx.state:set(msg.value, #hoard)
  end,
}
]] },
    }
    local lines = {}
    for i = 1, 20 do lines[i] = "k\t" .. i end
    produce_lines(app, "t", lines)
    local s = drain(app)
    local most = 0
    for _, n in pairs(state(app, "hoarder")) do most = math.max(most, n) end
    assert.is_true(most <= 8, "the state kept " .. most .. " MiB under an 8 MiB cap")
    assert.equal(20, s.handled + s.quarantined)
    local q = dlq(app)
    assert.is_true(#q >= 12)
    assert.equal("memory limit of 8388608 bytes exceeded", q[1].error)
  end)

  it("fails a handler that catches its memory error and returns", function()
    local app = make_app {
      topics = { t = 1 },
      handlers = { hog = [[
local eddy = require "eddy"
return eddy.consumer {
  name = "hog",
  topics = { "t" },
  retry = { attempts = 1 },
  limits = { memory = "8MiB", instructions = 1000000000 },
  handle = function(msg, ctx)
    local ok = pcall(function()
      local t = {}
      while true do t[#t + 1] = ("x"):rep(1000) .. #t end
    end)
    ctx.state:set("escaped", not ok)
  end,
}
]] },
    }
    eddy(app, "produce", "t", "--key", "k", "grow")
    local s = drain(app)
    assert.same({}, state(app, "hog"))
    assert.same({ handled = 0, quarantined = 1 }, pick(s, { "handled", "quarantined" }))
    local q = dlq(app)
    assert.equal("memory limit of 8388608 bytes exceeded", q[1] and q[1].error)
  end)
end)

-- 10 ------------------------------------------------------------------------

describe("eddy run: stopping", function()
  -- Each message costs about a millisecond of CPU, so a backlog takes a
  -- while; state "m:<value>" counts the times a message was handled.
  local SLOW = [[
local eddy = require "eddy"
return eddy.consumer {
  name = "slow",
  topics = { "t" },
  handle = function(msg, ctx)
    local t0 = os.clock()
    while os.clock() - t0 < 0.001 do end
    local k = "m:" .. msg.value
    ctx.state:set(k, (ctx.state:get(k) or 0) + 1)
  end,
}
]]

  local function backlog(app, n)
    local lines = {}
    for i = 1, n do lines[i] = "k" .. (i % 97) .. "\t" .. i end
    produce_lines(app, "t", lines)
  end

  local function assert_each_once(app, n)
    local st = state(app, "slow")
    local missing, twice, count = {}, {}, 0
    for i = 1, n do
      local v = st["m:" .. i]
      if v == nil then missing[#missing + 1] = i
      elseif v ~= 1 then twice[#twice + 1] = i .. "=" .. v end
    end
    for _ in pairs(st) do count = count + 1 end
    assert.same({ missing = {}, more_than_once = {}, entries = n },
                { missing = missing, more_than_once = twice, entries = count })
  end

  it("on SIGTERM finishes the work in flight and exits 0; a later run does the rest", function()
    local N = 4000
    local app = make_app { workers = 2, topics = { t = 4 }, handlers = { slow = SLOW } }
    backlog(app, N)
    local h = H.spawn({ "run", app.file })
    defer(function() H.cleanup(h) end)
    H.wait_until(function() return state_count(app, "slow") > 0 end, 20,
                 "the handler to commit some messages")
    assert.is_true(H.kill(h.pid, "TERM"))
    local code = H.wait_exit(h, 5, "eddy run to exit after SIGTERM")
    local log = H.read(h.err)
    assert.equal(0, code, log)
    assert.matches("SIGTERM: finishing the work in flight, then stopping", log, 1, true)
    local first = summary(log)
    local done = state_count(app, "slow")
    assert.equal(first.handled, done)
    assert.is_true(done < N, "the run finished the backlog before SIGTERM: make it bigger")

    local second = drain(app)
    assert.equal(N, first.handled + second.handled)
    assert_each_once(app, N)
  end)

  it("on a second signal exits at once, losing nothing committed", function()
    local N = 4000
    local app = make_app { workers = 2, topics = { t = 4 }, handlers = { slow = SLOW } }
    backlog(app, N)
    local h = H.spawn({ "run", app.file })
    defer(function() H.cleanup(h) end)
    H.wait_until(function() return state_count(app, "slow") > 0 end, 20,
                 "the handler to commit some messages")
    H.kill(h.pid, "TERM")
    H.wait_until(function() return (H.read(h.err) or ""):find("SIGTERM", 1, true) end, 5,
                 "the first SIGTERM to be seen")
    H.kill(h.pid, "TERM")
    local code = H.wait_exit(h, 5, "eddy run to exit after two SIGTERMs")
    -- 143 when the second signal came while the first one's batch ran, 0
    -- when the run had stopped already.
    assert.is_true(code == 143 or code == 0, "exit status " .. code)
    drain(app)
    assert_each_once(app, N)
  end)
end)

describe("eddy run: stopping while a message waits for its retry", function()
  it("exits 0 at once on SIGTERM; the next run handles the message", function()
    local app = make_app {
      topics = { t = 1 },
      handlers = { later = [[
local eddy = require "eddy"
return eddy.consumer {
  name = "later",
  topics = { "t" },
  retry = { attempts = 3, backoff = "60s", max_backoff = "60s" },
  handle = function(msg, ctx)
    local f = io.open("$APPDIR/ready", "r")
    if not f then error("not ready") end
    f:close()
    ctx.state:set(msg.value, ctx.attempt)
  end,
}
]] },
    }
    eddy(app, "produce", "t", "--key", "k", "m1")
    eddy(app, "produce", "t", "--key", "k", "m2")
    local h = H.spawn({ "run", app.file })
    defer(function() H.cleanup(h) end)
    H.wait_until(function()
      return #H.log_select(H.read(h.err), { level = "warn", attempt = 1 }) > 0
    end, 10, "the first failure")
    assert.is_true(H.kill(h.pid, "TERM"))
    assert.equal(0, H.wait_exit(h, 5, "eddy run to exit while a retry waits"))
    assert.same({ handled = 0, quarantined = 0 },
                pick(summary(H.read(h.err)), { "handled", "quarantined" }))
    H.write(app.dir .. "/ready", "")
    local s = drain(app)
    assert.same({ handled = 2, quarantined = 0 }, pick(s, { "handled", "quarantined" }))
    assert.same({ m1 = 1, m2 = 1 }, state(app, "later"))
    assert.same({}, dlq(app))
  end)
end)

describe("eddy run: one process per consumer", function()
  it("refuses a second process running the same consumer, before consuming anything", function()
    local app = make_app {
      topics = { t = 1 },
      handlers = { once = [[
local eddy = require "eddy"
return eddy.consumer {
  name = "once",
  topics = { "t" },
  handle = function(msg, ctx) ctx.state:set(msg.value, (ctx.state:get(msg.value) or 0) + 1) end,
}
]] },
    }
    local h = H.spawn({ "run", app.file })
    defer(function() H.cleanup(h) end)
    H.wait_until(function()
      return #H.log_select(H.read(h.err), { consumer = "once", message = "^file=" }) > 0
    end, 10, "the first run to start")
    local r = H.run({ "run", app.file, "--drain" })
    assert.same({ code = 1, err = "eddy run: consumer 'once' is already running in another " ..
                                  "process on '" .. app.data .. "'\n" },
                { code = r.code, err = r.err })
    -- The first run goes on and handles what comes.
    eddy(app, "produce", "t", "--key", "k", "m")
    H.wait_until(function() return state(app, "once").m == 1 end, 10, "the first run to handle m")
    assert.is_true(H.kill(h.pid, "TERM"))
    assert.equal(0, H.wait_exit(h, 5))
    -- Once it stopped, a new run may start.
    local s = drain(app)
    assert.equal(0, s.received)
    assert.same({ m = 1 }, state(app, "once"))
  end)
end)

-- 11 ------------------------------------------------------------------------

describe("eddy run --drain", function()
  local NOOP = [[
local eddy = require "eddy"
return eddy.consumer { name = "noop", topics = { "t" }, handle = function(msg, ctx) end }
]]

  it("exits 0 at once when there is nothing to consume", function()
    local app = make_app { topics = { t = 3 }, handlers = { noop = NOOP } }
    local h = H.spawn({ "run", app.file, "--drain" })
    defer(function() H.cleanup(h) end)
    local code = H.wait_exit(h, 3, "eddy run --drain to exit on an empty topic")
    local log = H.read(h.err)
    assert.equal(0, code, log)
    assert.same({ received = 0, handled = 0, deduplicated = 0, retried = 0, quarantined = 0,
                  emitted = 0, relayed = 0 },
                pick(summary(log), { "received", "handled", "deduplicated", "retried",
                                     "quarantined", "emitted", "relayed" }))
  end)

  it("exits 0 at once when everything was consumed by an earlier run", function()
    local app = make_app { topics = { t = 3 }, handlers = { noop = NOOP } }
    produce_lines(app, "t", { "a\t1", "b\t2", "c\t3" })
    assert.equal(3, drain(app).handled)
    local h = H.spawn({ "run", app.file, "--drain" })
    defer(function() H.cleanup(h) end)
    local code = H.wait_exit(h, 3, "eddy run --drain to exit with nothing new")
    local log = H.read(h.err)
    assert.equal(0, code, log)
    assert.equal(0, summary(log).received)
  end)
end)
