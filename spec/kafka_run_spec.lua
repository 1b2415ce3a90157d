--- `eddy run` on Apache Kafka: the same handlers, consuming from a real
-- broker (the one test/run.sh starts, $EDDY_TEST_BROKER) in consumer groups,
-- with offsets kept in the local store with the effects, events relayed
-- from the outbox through the idempotent producer, and quarantine on the
-- dlq topic on Kafka.  Every test uses topics and consumer names (groups)
-- of its own, so the broker's earlier state does not matter.
local cjson = require "cjson"
local H = require "helpers"

local BROKER = H.BROKER
local SEED = tonumber(os.getenv("EDDY_CRASH_SEED")) or os.time()

local function defer(fn) H.defer(finally, fn) end

local system = require "system"

local function now_ms() return math.floor(system.monotime() * 1000) end

math.randomseed(SEED ~ tonumber(tostring({}):match("0x(%x+)"), 16))

local fresh = H.fresh_name

local json_lines = H.json_lines

--- An app in a fresh directory: eddy.lua on the test broker and the
-- handler files (name -> text, with $IN, $OUT and $NAME replaced).
local function make_app(names, handlers, workers, partitions)
  local dir = H.tmpdir()
  defer(function() H.rmdir(dir) end)
  assert(os.execute("mkdir " .. H.quote(dir .. "/handlers")))
  H.write(dir .. "/eddy.lua", string.format(
    "return { data = 'data', workers = %d, broker = %q, handlers = { 'handlers/' },\n" ..
    "  topics = { [%q] = { partitions = %d } },\n" ..
    -- A member killed with SIGKILL keeps its partitions until its session
    -- times out: the broker's shortest allowed timeout keeps restarts quick.
    "  kafka = { ['session.timeout.ms'] = 6000, ['heartbeat.interval.ms'] = 1000 } }\n",
    workers or 2, BROKER, names.IN, partitions or 4))
  for file, text in pairs(handlers) do
    H.write(dir .. "/handlers/" .. file .. ".lua",
            (text:gsub("%$(%u+)", function(k) return names[k] end)))
  end
  return { dir = dir, file = dir .. "/eddy.lua", data = dir .. "/data" }
end

local kafka = H.kafka_ok

local summary = H.summary

--- eddy run --drain on the app; asserts exit 0.  Returns the summary.
local function drain(app)
  local h = H.spawn({ "run", app.file, "--drain" })
  defer(function() H.cleanup(h) end)
  local ok, code = pcall(H.wait_exit, h, 60, "eddy run --drain to exit")
  local err = H.read(h.err) or ""
  assert(ok and code == 0, "eddy run --drain: " .. tostring(code) .. "; its log:\n" .. err)
  return summary(err), err
end

local function state(app, consumer)
  local t = {}
  local r = H.run({ "--data", app.data, "state", "list", consumer, "--json" })
  assert(r.code == 0, r.err)
  for _, o in ipairs(json_lines(r.out)) do t[o.key] = o.value end
  return t
end

--- Checks the state the per-key handlers keep (n:<key> counts, last:<key>
-- and violation:<key>:<seq> rows): no message out of order, each of keys
-- k1..k<keys> counted per_key times.  Returns the state.
local function assert_each_key_once(app, consumer, keys, per_key)
  local st = state(app, consumer)
  local violations, counts = {}, {}
  for key, v in pairs(st) do
    if key:match("^violation:") then violations[key] = v end
    local k = key:match("^n:(.*)$")
    if k then counts[k] = v end
  end
  assert.same({}, violations)
  local want = {}
  for k = 1, keys do want["k" .. k] = per_key end
  assert.same(want, counts)
  return st
end

--- A handler that checks per-key order and counts per key (n:<key>,
-- last:<key>, violation:<key>:<seq> rows; see assert_each_key_once) and
-- emits one event per message to $OUT.  work: loop turns per message, so
-- that a run is still busy when the spec acts; extra: Lua lines run last.
local function ordered_handler(work, extra)
  return string.format([[
local eddy = require "eddy"
return eddy.consumer {
  name = "$NAME",
  topics = { "$IN" },
  handle = function(msg, ctx)
    local x = 0
    for i = 1, %d do x = x + i %% 7 end
    local v = msg:json()
    v.work = x
    local last = ctx.state:get("last:" .. v.k) or 0
    if last ~= v.seq - 1 then ctx.state:set("violation:" .. v.k .. ":" .. v.seq, last) end
    ctx.state:set("last:" .. v.k, v.seq)
    ctx.state:set("n:" .. v.k, (ctx.state:get("n:" .. v.k) or 0) + 1)
%s    ctx:emit("$OUT", { key = v.k, value = msg.id })
  end,
}
]], work, extra or "")
end

--- Produces to topic, seq by seq from..to, one message per key k1..k<keys>:
-- key "k<k>", value {"k":"k<k>","seq":seq}.
local function produce_keyed(topic, keys, from, to)
  local lines = {}
  for seq = from, to do
    for k = 1, keys do
      lines[#lines + 1] = "k" .. k .. "\t" .. cjson.encode({ k = "k" .. k, seq = seq })
    end
  end
  kafka({ "produce", topic, "-K", "\t" }, { stdin = table.concat(lines, "\n") .. "\n" })
end

local COUNTER = [[
local eddy = require "eddy"
return eddy.consumer {
  name = "$NAME",
  topics = { "$IN" },
  retry = { attempts = 2, backoff = "10ms", max_backoff = "10ms" },
  handle = function(msg, ctx)
    local order = msg:json()
    local n = (ctx.state:get(order.customer) or 0) + 1
    ctx.state:set(order.customer, n)
    ctx:emit("$OUT", { key = msg.key, value = { id = order.id, n = n } })
  end,
}
]]

describe("eddy run on Kafka", function()
  it("counts per key, emits one event per message to Kafka, quarantines to the dlq topic on Kafka",
     function()
    local names = { IN = fresh("orders"), OUT = fresh("counted"), NAME = fresh("counter") }
    local app = make_app(names, { count = COUNTER })
    kafka({ "topic", "create", names.IN, "--partitions", "4" })
    local lines = {}
    local customers = { "ada", "grace", "ada", "linus", "ada", "grace" }
    for i, c in ipairs(customers) do
      lines[i] = c .. "\t" .. cjson.encode({ id = i, customer = c })
    end
    lines[#lines + 1] = "ada\tnot json"
    local produced = json_lines(kafka({ "produce", names.IN, "-K", "\t", "--json" },
                                      { stdin = table.concat(lines, "\n") .. "\n" }))
    -- The same message (same id) produced again is handled once.
    kafka({ "produce", names.IN, "--key", "ada", "--id", produced[1].id,
            cjson.encode({ id = 1, customer = "ada" }) })
    local s = drain(app)
    assert.same({ received = 8, handled = 6, deduplicated = 1, quarantined = 1, relayed = 7 },
                { received = s.received, handled = s.handled, deduplicated = s.deduplicated,
                  quarantined = s.quarantined, relayed = s.relayed })
    assert.same({ ada = 3, grace = 2, linus = 1 }, state(app, names.NAME))

    local events = json_lines(kafka({ "tail", names.OUT, "--from-beginning", "--json" }))
    assert.equal(6, #events)
    local by_cause = {}
    for _, e in ipairs(events) do by_cause[e.headers["eddy-causation-id"]] = e end
    for i = 1, 6 do
      local e = by_cause[produced[i].id]
      assert.truthy(e, "no event for message " .. i)
      assert.equal(customers[i], e.key)
      assert.equal(i, cjson.decode(e.value).id)
      -- The headers travel as on the embedded log: the id of the message
      -- that caused it as correlation (none was given), a trace of its own.
      assert.equal(produced[i].id, e.headers["eddy-correlation-id"])
      assert.matches("^00%-%x+%-%x+%-01$", e.headers.traceparent)
      assert.equal(55, #e.headers.traceparent)
    end
    local dlq = json_lines(kafka({ "tail", names.IN .. ".dlq", "--from-beginning", "--json" }))
    assert.equal(1, #dlq)
    assert.same({ id = produced[7].id, value = "not json", key = "ada",
                  consumer = names.NAME },
                { id = dlq[1].id, value = dlq[1].value, key = dlq[1].key,
                  consumer = dlq[1].headers["eddy-consumer"] })
  end)

  it("resumes from the offsets in its store, and commits them to Kafka for other tools",
     function()
    local names = { IN = fresh("orders"), OUT = fresh("counted"), NAME = fresh("counter") }
    local app = make_app(names, { count = COUNTER })
    kafka({ "topic", "create", names.IN, "--partitions", "4" })
    local function produce(from, to)
      local lines = {}
      for i = from, to do
        lines[#lines + 1] = "k" .. i % 5 .. "\t" .. cjson.encode({ id = i, customer = "c" .. i % 3 })
      end
      kafka({ "produce", names.IN, "-K", "\t" }, { stdin = table.concat(lines, "\n") .. "\n" })
    end
    produce(1, 30)
    assert.equal(30, drain(app).handled)
    produce(31, 50)
    assert.equal(20, drain(app).handled)
    assert.same({ c0 = 16, c1 = 17, c2 = 17 }, state(app, names.NAME))
    -- Kafka has the group's offsets: a run on an empty data directory (no
    -- offsets of its own) starts from them, so it reads nothing.
    local elsewhere = H.tmpdir()
    defer(function() H.rmdir(elsewhere) end)
    local r = H.run({ "run", app.file, "--drain", "--data", elsewhere .. "/data" })
    assert.equal(0, r.code, r.err)
    assert.same({ received = 0, handled = 0 },
                { received = summary(r.err).received, handled = summary(r.err).handled })
  end)

  it("applies every message's effect once over five SIGKILLs and restarts", function()
    local names = { IN = fresh("orders"), OUT = fresh("counted"), NAME = fresh("counter") }
    local app = make_app(names, { count = ordered_handler(20000) })
    kafka({ "topic", "create", names.IN, "--partitions", "4" })
    local KEYS, PER_KEY, ROUNDS = 40, 250, 5
    -- Each round produces its share, so each kill lands mid-stream.
    local function produce_round(round)
      local per = PER_KEY // ROUNDS
      produce_keyed(names.IN, KEYS, (round - 1) * per + 1, round * per)
    end
    local total = KEYS * PER_KEY
    -- Five runs killed when they have handled some, then one to the end.
    for round = 1, ROUNDS do
      produce_round(round)
      local h = H.spawn({ "run", app.file })
      defer(function() H.cleanup(h) end)
      H.wait_until(function()
        local log = H.read(h.err) or ""
        return log:find("assigned", 1, true) ~= nil
      end, 45, "eddy run to get its partitions")
      -- Let it handle for a moment drawn at random, then kill it.
      local handled = function()
        local n = 0
        for key, v in pairs(state(app, names.NAME)) do
          if key:match("^n:") then n = n + v end
        end
        return n
      end
      local delay = math.random(5, 120)
      local deadline = now_ms() + delay
      H.poll(function() return now_ms() >= deadline end, 5, 0.001)
      assert.is_true(H.kill(h.pid, "KILL"))
      H.wait_exit(h, 10)
      H.cleanup(h)
      print(string.format("# kafka crash round %d: killed %d ms after its assignment, at %d "
                          .. "of %d (seed %d)", round, delay, handled(), total, SEED))
    end
    drain(app)
    assert_each_key_once(app, names.NAME, KEYS, PER_KEY)
    -- Every event is on Kafka; a relay cut by a kill may send one twice,
    -- with the same id (consumers' dedupe drops the copy).
    local seen, distinct = {}, 0
    for _, e in ipairs(json_lines(kafka({ "tail", names.OUT, "--from-beginning", "--json" }))) do
      if not seen[e.id] then seen[e.id] = e.value; distinct = distinct + 1 end
      assert.equal(seen[e.id], e.value)
    end
    assert.equal(total, distinct)
  end)

  it("shares one data directory between two instances in one group, one stopped mid-run",
     function()
    local names = { IN = fresh("orders"), OUT = fresh("counted"), NAME = fresh("shared") }
    -- "total" is one key that messages of every partition update: the two
    -- processes write it concurrently, so a value one of them read or
    -- cached before the other's commit must not be written back.
    local app = make_app(names, { count = ordered_handler(20000,
      '    ctx.state:set("total", (ctx.state:get("total") or 0) + 1)\n') }, 2, 8)
    kafka({ "topic", "create", names.IN, "--partitions", "8" })
    local function log(h) return H.read(h.err) or "" end
    local a = H.spawn({ "run", app.file })
    defer(function() H.cleanup(a) end)
    H.wait_until(function() return log(a):find("assigned", 1, true) end, 45,
                 "the first instance to get its partitions")
    -- The second serves /metrics: the spec sees its own progress there.
    local b = H.spawn({ "run", app.file, "--admin", "127.0.0.1:0" })
    defer(function() H.cleanup(b) end)
    -- Cooperative rebalancing: the first gives up some partitions, the
    -- second gets them.
    H.wait_until(function()
      return log(b):find("assigned", 1, true) and log(a):find("revoked", 1, true)
    end, 45, "the second instance to share the partitions")

    local KEYS, PER_KEY = 40, 150
    local total = KEYS * PER_KEY
    produce_keyed(names.IN, KEYS, 1, PER_KEY)
    -- Messages handled so far: the per-key counts (each key belongs to
    -- one partition, so to one instance at a time).
    local function handled()
      local n = 0
      for key, v in pairs(state(app, names.NAME)) do
        if key:match("^n:") then n = n + v end
      end
      return n
    end
    -- Stop the second instance once some of the work is done, some of it
    -- by the second; the first takes its partitions over and finishes.
    local port = log(b):match("admin: serving http://127%.0%.0%.1:(%d+)/metrics")
    assert.truthy(port, log(b))
    local function handled_by_b()
      local r = H.exec({ "env", "-u", "LD_PRELOAD", "curl", "-s",
                         "http://127.0.0.1:" .. port .. "/metrics" })
      return tonumber((r.out or ""):match('eddy_messages_handled_total{consumer="' ..
                                          names.NAME:gsub("%-", "%%-") .. '"} (%d+)')) or 0
    end
    H.wait_until(function() return handled() >= total // 4 and handled_by_b() > 0 end, 90,
                 "a quarter of the messages, some by the second instance")
    assert.is_true(H.kill(b.pid, "TERM"))
    assert.equal(0, H.wait_exit(b, 30))
    local by_b = summary(log(b)).handled
    assert.is_true(by_b > 0 and by_b < total, "the second instance handled " .. by_b)
    H.wait_until(function() return handled() == total end, 90, "every message to be handled")
    assert.is_true(H.kill(a.pid, "TERM"))
    assert.equal(0, H.wait_exit(a, 30))
    local by_a = summary(log(a)).handled
    -- Messages finished out of order above a partition's stored offset
    -- are read again by the next owner and dropped as duplicates: handled
    -- counts each message once.
    assert.equal(total, by_a + by_b)

    local st = assert_each_key_once(app, names.NAME, KEYS, PER_KEY)
    assert.equal(total, st.total)
    -- One process relays the shared outbox at a time: every event is on
    -- Kafka exactly once.
    local events = json_lines(kafka({ "tail", names.OUT, "--from-beginning", "--json" }))
    local ids = {}
    for _, e in ipairs(events) do ids[e.id] = (ids[e.id] or 0) + 1 end
    local twice = {}
    for id, n in pairs(ids) do if n > 1 then twice[#twice + 1] = id end end
    assert.same({}, twice)
    assert.equal(total, #events)
  end)

  it("waits out a broker restart in the middle of a run: nothing lost, nothing twice", function()
    local names = { IN = fresh("orders"), OUT = fresh("counted"), NAME = fresh("counter") }
    local app = make_app(names, { count = ordered_handler(100000) })
    kafka({ "topic", "create", names.IN, "--partitions", "4" })
    local KEYS, PER_KEY = 20, 200
    local function produce(from, to) produce_keyed(names.IN, KEYS, from, to) end
    -- Messages handled so far (0 until eddy made its store).
    local function handled()
      local r = H.run({ "--data", app.data, "state", "list", names.NAME, "--json" })
      local n = 0
      for _, o in ipairs(r.code == 0 and json_lines(r.out) or {}) do
        if o.key:match("^n:") then n = n + o.value end
      end
      return n
    end
    produce(1, PER_KEY // 2)
    local h = H.spawn({ "run", app.file })
    defer(function() H.cleanup(h) end)
    H.wait_until(function() return handled() > 0 end, 45, "the first messages to be handled")
    -- The broker stops and starts again on the same log while eddy reads,
    -- handles and relays.
    local kafka_sh = (os.getenv("EDDY_ROOT") or ".") .. "/tools/kafka/kafka.sh"
    local before = handled()
    local r = H.exec({ "env", "-u", "LD_PRELOAD", "sh", kafka_sh, "restart" })
    assert.equal(0, r.code, r.out .. r.err)
    print(string.format("# broker restarted with %d of %d messages handled, %d after",
                        before, KEYS * PER_KEY // 2, handled()))
    produce(PER_KEY // 2 + 1, PER_KEY)
    local total = KEYS * PER_KEY
    H.wait_until(function() return handled() == total end, 120, "every message to be handled")
    -- Every event reaches Kafka once the relay is through.
    local events
    H.wait_until(function()
      events = json_lines(kafka({ "tail", names.OUT, "--from-beginning", "--json" }))
      return #events >= total
    end, 60, "every event on Kafka")
    assert.is_true(H.kill(h.pid, "TERM"))
    assert.equal(0, H.wait_exit(h, 30))
    local log = H.read(h.err) or ""
    assert.truthy(H.log_select(log, { level = "warn", message = "^kafka: .*brokers are down" })[1],
                  log)
    local s = summary(log)
    -- Handlers never saw the broker's trouble: no failures, no retries.
    assert.same({ handled = total, retried = 0, quarantined = 0 },
                { handled = s.handled, retried = s.retried, quarantined = s.quarantined })

    assert_each_key_once(app, names.NAME, KEYS, PER_KEY)
    local ids, twice = {}, {}
    for _, e in ipairs(events) do
      if ids[e.id] then twice[#twice + 1] = e.id end
      ids[e.id] = true
    end
    assert.same({}, twice)
    assert.equal(total, #events)
  end)

  it("replays quarantined messages onto Kafka, where the app runs", function()
    local names = { IN = fresh("orders"), OUT = fresh("counted"), NAME = fresh("picky") }
    local handler = [[
local eddy = require "eddy"
return eddy.consumer {
  name = "$NAME",
  topics = { "$IN" },
  retry = { attempts = 1 },
  handle = function(msg, ctx)
    if msg.value == "oops" and not ACCEPT then error("cannot take " .. msg.value) end
    ctx.state:set(msg.key, msg.value)
  end,
}
]]
    local app = make_app(names, { picky = handler:gsub("ACCEPT", "false") })
    kafka({ "topic", "create", names.IN, "--partitions", "4" })
    local produced = json_lines(kafka({ "produce", names.IN, "-K", "\t", "--json" },
                                      { stdin = "a\tfine\nb\toops\n" }))
    local first = drain(app)
    assert.same({ handled = 1, quarantined = 1 },
                { handled = first.handled, quarantined = first.quarantined })
    local q = json_lines(H.run({ "--data", app.data, "dlq", "list", "--json" }).out)
    assert.same({ { id = produced[2].id, topic = names.IN, value = "oops" } },
                { { id = q[1].id, topic = q[1].topic, value = q[1].value } })

    -- The handler is fixed; the replay needs no --broker: the data
    -- directory remembers where the app runs.
    H.write(app.dir .. "/handlers/picky.lua",
            (handler:gsub("ACCEPT", "true"):gsub("%$(%u+)", function(k) return names[k] end)))
    local r = H.run({ "--data", app.data, "dlq", "replay", "--all" })
    assert.equal(0, r.code, r.err)
    -- It lands after what the partition held.
    local at = 0
    for _, p in ipairs(produced) do
      if p.partition == produced[2].partition then at = at + 1 end
    end
    assert.equal(string.format("replayed %d to partition %d offset %d\n"
                               .. "replayed 1 message on Kafka at %s\n", q[1].seq,
                               produced[2].partition, at, (BROKER:gsub("^kafka://", ""))),
                 r.out)
    -- The replayed message is on Kafka with its original id.
    local on_kafka = json_lines(kafka({ "tail", names.IN, "--from-beginning", "--json" }))
    local copies = 0
    for _, m in ipairs(on_kafka) do
      if m.id == produced[2].id then copies = copies + 1; assert.equal("oops", m.value) end
    end
    assert.equal(2, copies)
    local second = drain(app)
    assert.same({ handled = 1, quarantined = 0 },
                { handled = second.handled, quarantined = second.quarantined })
    assert.same({ a = "fine", b = "oops" }, state(app, names.NAME))
    assert.same({}, json_lines(H.run({ "--data", app.data, "dlq", "list", "--json" }).out))
  end)

  it("refuses a replay to Kafka of a message whose topic Kafka lacks, and keeps it", function()
    -- A data directory of the embedded log, replayed with --broker by
    -- mistake: the topic is not on Kafka.
    local dir = H.tmpdir()
    defer(function() H.rmdir(dir) end)
    local topic = fresh("local")
    H.write(dir .. "/app.lua", string.format(
      "return { data = 'data', handlers = { 'h.lua' }, topics = { [%q] = { partitions = 1 } } }",
      topic))
    H.write(dir .. "/h.lua", string.format([[
local eddy = require "eddy"
return eddy.consumer { name = "c", topics = { %q }, retry = { attempts = 1 },
  handle = function() error("no") end }
]], topic))
    local data = dir .. "/data"
    assert.equal(0, H.run({ "--data", data, "topic", "create", topic }).code)
    assert.equal(0, H.run({ "--data", data, "produce", topic, "x" }).code)
    assert.equal(0, H.run({ "run", dir .. "/app.lua", "--drain" }, { cwd = dir }).code)
    local r = H.run({ "--data", data, "dlq", "replay", "--all", "--broker", BROKER })
    assert.same({ code = 1, out = "",
                  err = string.format("eddy dlq replay: cannot replay 1: its topic '%s' does "
                                      .. "not exist on Kafka at %s\n", topic,
                                      (BROKER:gsub("^kafka://", ""))) },
                { code = r.code, out = r.out, err = r.err })
    local q = json_lines(H.run({ "--data", data, "dlq", "list", "--json" }).out)
    assert.same({ 1, "x" }, { #q, q[1].value })
  end)

  it("two replays --all to Kafka at once replay each pending entry once", function()
    local ENTRIES, ROUNDS = 200, 3
    local dir = H.tmpdir()
    defer(function() H.rmdir(dir) end)
    local topic = fresh("replayed")
    H.write(dir .. "/app.lua", string.format(
      "return { data = 'data', handlers = { 'h.lua' }, topics = { [%q] = { partitions = 2 } } }",
      topic))
    H.write(dir .. "/h.lua", string.format([[
local eddy = require "eddy"
return eddy.consumer { name = "c", topics = { %q }, retry = { attempts = 1 },
  handle = function() error("no") end }
]], topic))
    local data = dir .. "/data"
    assert.equal(0, H.run({ "--data", data, "topic", "create", topic, "-p", "2" }).code)
    local r = H.run({ "--data", data, "produce", topic }, { stdin = H.numbered_lines("v", ENTRIES) })
    assert.same({ 0, "" }, { r.code, r.err })
    assert.equal(0, H.run({ "run", dir .. "/app.lua", "--drain" }, { cwd = dir }).code)
    kafka({ "topic", "create", topic, "--partitions", "2" })
    for round = 1, ROUNDS do
      if round > 1 then
        -- Pending again, as if never replayed: the next round replays all.
        r = H.exec({ "sqlite3", data .. "/eddy.db", "UPDATE dlq SET replayed_at = NULL" },
                   { unset = { "LD_PRELOAD" } })
        assert.same({ 0, "" }, { r.code, r.err })
      end
      local args = { "--data", data, "dlq", "replay", "--all", "--broker", BROKER }
      local rs = H.run_parallel({ args, args })
      local total = 0
      for _, x in ipairs(rs) do
        assert.same({ 0, "" }, { x.code, x.err })
        local out = H.lines(x.out)
        local n = tonumber(out[#out]:match("^replayed (%d+) messages? on Kafka at [^ ]+$") or
                           out[#out]:match("^replayed (%d+) messages? on Kafka at [^ ]+ %(%d+ " ..
                                           "others were replayed or purged meanwhile by " ..
                                           "another process%)$"))
        assert.truthy(n, out[#out])
        total = total + n
      end
      assert.equal(ENTRIES, total)
      -- Kafka holds one copy of each message per round.
      local copies = {}
      for _, m in ipairs(json_lines(kafka({ "tail", topic, "--from-beginning", "--json" }))) do
        copies[m.value] = (copies[m.value] or 0) + 1
      end
      for i = 1, ENTRIES do assert.equal(round, copies["v" .. i], "v" .. i) end
    end
  end)

  it("retries failed messages with backoff, holding back their key's later messages", function()
    local names = { IN = fresh("orders"), OUT = fresh("counted"), NAME = fresh("retrying") }
    local app = make_app(names, { retrying = [[
local eddy = require "eddy"
return eddy.consumer {
  name = "$NAME",
  topics = { "$IN" },
  retry = { attempts = 5, backoff = "5ms", max_backoff = "20ms" },
  handle = function(msg, ctx)
    local v = msg:json()
    -- Every seventh message of a key fails its first two attempts.
    if v.seq % 7 == 3 and ctx.attempt <= 2 then error("not yet: " .. msg.id) end
    local last = ctx.state:get("last:" .. v.k) or 0
    if last ~= v.seq - 1 then ctx.state:set("violation:" .. v.k .. ":" .. v.seq, last) end
    ctx.state:set("last:" .. v.k, v.seq)
    ctx.state:set("attempts:" .. v.k .. ":" .. v.seq, ctx.attempt)
  end,
}
]] })
    kafka({ "topic", "create", names.IN, "--partitions", "4" })
    local KEYS, PER_KEY = 10, 30
    produce_keyed(names.IN, KEYS, 1, PER_KEY)
    local s = drain(app)
    local failing = KEYS * (PER_KEY // 7 + (PER_KEY % 7 >= 3 and 1 or 0))
    assert.same({ handled = KEYS * PER_KEY, retried = 2 * failing, quarantined = 0 },
                { handled = s.handled, retried = s.retried, quarantined = s.quarantined })
    local st = state(app, names.NAME)
    local violations, third = {}, 0
    for key, v in pairs(st) do
      if key:match("^violation:") then violations[key] = v end
      local seq = key:match("^attempts:k%d+:(%d+)$")
      if seq then
        assert.equal(tonumber(seq) % 7 == 3 and 3 or 1, v, key)
        if v == 3 then third = third + 1 end
      end
    end
    assert.same({}, violations)
    assert.equal(failing, third)
    for k = 1, KEYS do assert.equal(PER_KEY, st["last:k" .. k]) end
  end)

  it("with static membership, an instance killed and restarted gets its partitions back "
     .. "without waiting for its session to expire", function()
    local names = { IN = fresh("orders"), OUT = fresh("counted"), NAME = fresh("static") }
    local app = make_app(names, { count = COUNTER })
    -- The session (45 s) outlasts the test's patience: only static
    -- membership brings the partitions back in time.
    local text = H.read(app.file):gsub("%['session%.timeout%.ms'%] = 6000",
                                       "['session.timeout.ms'] = 45000, "
                                       .. "['group.instance.id'] = 'instance-1'")
    assert.truthy(text:find("['group.instance.id'] = 'instance-1'", 1, true), text)
    H.write(app.file, text)
    kafka({ "topic", "create", names.IN, "--partitions", "4" })
    local first = H.spawn({ "run", app.file })
    defer(function() H.cleanup(first) end)
    local function assigned(h)
      local _, n = (H.read(h.err) or ""):gsub("assigned ", "")
      return n == 4
    end
    H.wait_until(function() return assigned(first) end, 45, "the first run's partitions")
    assert.is_true(H.kill(first.pid, "KILL"))
    H.wait_exit(first, 10)
    local t0 = now_ms()
    local second = H.spawn({ "run", app.file })
    defer(function() H.cleanup(second) end)
    H.wait_until(function() return assigned(second) end, 20,
                 "the restarted run's partitions (static membership)")
    print(string.format("# static membership: partitions back %d ms after the restart",
                        now_ms() - t0))
    assert.is_true(H.kill(second.pid, "TERM"))
    assert.equal(0, H.wait_exit(second, 30))
  end)
end)
