--- eddy on Kafka under faults a real broker cannot easily give, on
-- librdkafka's mock cluster (test/kmock.c, built as $EDDY_BUILD/kmock):
-- requests that fail with the errors a cluster gives while leaders move or
-- groups rebalance, an acknowledgement that comes too late, a broker that
-- goes down and comes back.  These add to the specs against the real
-- broker (kafka_cli_spec.lua, kafka_run_spec.lua), never replace them.
--
-- Every fault is injected on one broker with a count, and each test waits
-- until the mock has given all of them ("pending" answers 0), so a fault
-- that never happened fails the test instead of passing it quietly.
local cjson = require "cjson"
local system = require "system"
local H = require "helpers"

-- From the build whose module the specs load: make test-tsan's eddy is
-- instrumented, the programs that drive it need not be.
local KMOCK = (os.getenv("EDDY_MODULE_BUILD") or os.getenv("EDDY_BUILD") or "build") .. "/kmock"
-- How long the broker-down spec keeps its broker down.
local DOWN_S = 8

-- Kafka's ApiKeys and error codes, as the mock takes them.
local API = { Produce = 0, Fetch = 1, ListOffsets = 2, OffsetCommit = 8, OffsetFetch = 9,
              Heartbeat = 12 }
local ERR = {
  OFFSET_OUT_OF_RANGE = 1,
  UNKNOWN_TOPIC_OR_PARTITION = 3,
  LEADER_NOT_AVAILABLE = 5,
  NOT_LEADER_OR_FOLLOWER = 6,
  REQUEST_TIMED_OUT = 7,
  MESSAGE_TOO_LARGE = 10,
  NOT_COORDINATOR = 16,
  ILLEGAL_GENERATION = 22,
  REBALANCE_IN_PROGRESS = 27,
}

local function defer(fn) H.defer(finally, fn) end

math.randomseed(os.time() ~ tonumber(tostring({}):match("0x(%x+)"), 16))

local fresh = H.fresh_name

--- The complete lines of file (a line still being written is left out).
local function done_lines(file)
  local s = H.read(file) or ""
  return H.lines(s:match("^(.*\n)") or "")
end

local Mock = {}
Mock.__index = Mock

--- Starts kmock with the given number of brokers, stopped when the test
-- ends.  Returns a mock: `broker` is its kafka:// URL, `:cmd(line)` sends
-- one command.
local function mock_cluster(brokers)
  local dir = H.tmpdir()
  defer(function() H.rmdir(dir) end)
  local fifo = dir .. "/commands"
  assert(os.execute("mkfifo " .. H.quote(fifo)))
  local h = H.spawn_cmd({ KMOCK, tostring(brokers or 1) }, { stdin_file = fifo })
  -- Opening the FIFO waits for kmock's shell to open its end.
  local m = setmetatable({ h = h, w = assert(io.open(fifo, "w")), sent = 0 }, Mock)
  defer(function()
    m:close()
    H.cleanup(h)
  end)
  local first = H.wait_until(function()
    assert(not H.exit_code(h), "kmock exited: " .. (H.read(h.err) or ""))
    return done_lines(h.out)[1]
  end, 10, "kmock to print its bootstrap servers")
  assert(first:match("^127%.0%.0%.1:%d+"), "kmock: " .. first .. (H.read(h.err) or ""))
  m.broker = "kafka://" .. first
  return m
end

--- Sends one command line and waits for its answer; fails the test unless
-- it is "ok".  Returns the value after "ok " (or "").
function Mock:cmd(line)
  assert(not H.exit_code(self.h), "kmock exited: " .. (H.read(self.h.err) or ""))
  assert(self.w:write(line, "\n"))
  assert(self.w:flush())
  self.sent = self.sent + 1
  local n = self.sent + 1      -- the first line is the bootstrap servers
  local answer = H.wait_until(function() return done_lines(self.h.out)[n] end, 10,
                              "kmock to answer '" .. line .. "'")
  assert(answer == "ok" or answer:sub(1, 3) == "ok ", "kmock: " .. line .. ": " .. answer)
  return answer:sub(4)
end

--- Queues errs (a list of codes, or "CODE:MS") for the next requests of
-- api on broker id.
function Mock:errors(id, api, errs)
  self:cmd(string.format("broker-errors %d %d %d %s", id, api, #errs, table.concat(errs, " ")))
end

--- How many of the errors queued for api on broker id are still to come.
function Mock:pending(id, api)
  return tonumber(self:cmd(string.format("pending %d %d", id, api)))
end

--- Waits until the mock has given every error queued on broker id.
function Mock:wait_given(id, apis, timeout_s)
  for _, api in ipairs(apis) do
    H.wait_until(function() return self:pending(id, api) == 0 end, timeout_s or 30,
                 "the mock to give every injected error of ApiKey " .. api)
  end
end

--- Ends kmock's input: it destroys the cluster and exits 0.
function Mock:close()
  if self.w then
    self.w:close()
    self.w = nil
    assert.equal(0, H.wait_exit(self.h, 10, "kmock to exit"))
  end
end

--- eddy with --broker on the mock; fails unless it exits 0 quietly.
-- Returns stdout.
local function kafka(mock, args, opts)
  local argv = {}
  for i, a in ipairs(args) do argv[i] = a end
  argv[#argv + 1] = "--broker"
  argv[#argv + 1] = mock.broker
  local r = H.run(argv, opts)
  assert(r.code == 0 and r.err == "", table.concat(args, " ") .. ": exit " .. r.code .. ": " .. r.err)
  return r.out
end

--- Every message of topic, decoded.
local function messages(mock, topic)
  return H.json_lines(kafka(mock, { "tail", topic, "--from-beginning", "--json" }))
end

--- Lines "k<k>\t{"k":"k<k>","seq":<seq>}" for seq from..to of each of keys
-- keys, seq by seq.
local function keyed_lines(keys, from, to)
  local t = {}
  for seq = from, to do
    for k = 1, keys do
      t[#t + 1] = "k" .. k .. "\t" .. cjson.encode({ k = "k" .. k, seq = seq })
    end
  end
  return table.concat(t, "\n") .. "\n"
end

local function produce(mock, topic, keys, from, to)
  kafka(mock, { "produce", topic, "-K", "\t" }, { stdin = keyed_lines(keys, from, to) })
end

--- Counts an event stream per key and checks its order: every key's seq
-- values are 1, 2, ... in the order given.  Returns { key = count } and
-- the first step out of order ("k3: 7 after 5") or nil.
local function per_key(list)
  local counts, bad = {}, nil
  for _, v in ipairs(list) do
    local n = (counts[v.k] or 0) + 1
    if v.seq ~= n and not bad then bad = string.format("%s: %d after %d", v.k, v.seq, n - 1) end
    counts[v.k] = n
  end
  return counts, bad
end

local function each_key(keys, n)
  local t = {}
  for k = 1, keys do t["k" .. k] = n end
  return t
end

--- Asserts that topic holds exactly one event per message of keys keys
-- with seq 1..per each (no id twice), in order per key.
local function events_once(mock, topic, keys, per)
  local events, ids, values = messages(mock, topic), {}, {}
  assert.equal(keys * per, #events)
  for i, e in ipairs(events) do
    assert.is_nil(ids[e.id], "event " .. e.id .. " twice")
    ids[e.id] = true
    values[i] = cjson.decode(e.value)
  end
  local c, bad = per_key(values)
  assert.is_nil(bad)
  assert.same(each_key(keys, per), c)
end

-- The consumer under test: checks per-key order (a step out of order is
-- recorded, never raised), counts per key, emits one event per message.
local COUNTER = [[
local eddy = require "eddy"
return eddy.consumer {
  name = "$NAME",
  topics = { "$IN" },
  handle = function(msg, ctx)
    local v = msg:json()
    local last = ctx.state:get("last:" .. v.k) or 0
    if last ~= v.seq - 1 then ctx.state:set("violation:" .. v.k .. ":" .. v.seq, last) end
    ctx.state:set("last:" .. v.k, v.seq)
    ctx.state:set("n:" .. v.k, (ctx.state:get("n:" .. v.k) or 0) + 1)
    ctx:emit("$OUT", { key = v.k, value = { k = v.k, seq = v.seq } })
  end,
}
]]

--- An app on the mock in a fresh directory: the handler files (name ->
-- text with $IN, $OUT, $NAME... replaced) and librdkafka properties
-- (kafka) besides a short session.timeout.ms, so a group recovers in
-- seconds.
-- Topics are not declared: the tests make them on the mock.
local function make_app(mock, names, handlers, kafka_props)
  local dir = H.tmpdir()
  defer(function() H.rmdir(dir) end)
  assert(os.execute("mkdir " .. H.quote(dir .. "/handlers")))
  local props = { ["session.timeout.ms"] = "6000", ["heartbeat.interval.ms"] = "300" }
  for k, v in pairs(kafka_props or {}) do props[k] = v end
  local list = {}
  for k, v in pairs(props) do list[#list + 1] = string.format("[%q] = %q", k, v) end
  table.sort(list)
  H.write(dir .. "/eddy.lua", string.format(
    "return { data = 'data', workers = 2, broker = %q, handlers = { 'handlers/' },\n" ..
    "  kafka = { %s } }\n", mock.broker, table.concat(list, ", ")))
  for file, text in pairs(handlers) do
    H.write(dir .. "/handlers/" .. file .. ".lua",
            (text:gsub("%$(%u+%d*)", function(k) return names[k] end)))
  end
  return { dir = dir, file = dir .. "/eddy.lua", data = dir .. "/data" }
end

--- Makes a consumer's input topic with partitions and its dead-letter
-- topic, on broker leader (1 unless told).
local function input_topic(mock, name, partitions, leader)
  for _, t in ipairs({ name, name .. ".dlq" }) do
    mock:cmd(string.format("topic %s %d", t, partitions))
    for p = 0, partitions - 1 do
      mock:cmd(string.format("leader %s %d %d", t, p, leader or 1))
    end
  end
end

--- A consumer's state by key.  Fails the test when there is none, unless
-- maybe: then nil (a run that has not made its store yet).
local function state(app, consumer, maybe)
  local t = {}
  local r = H.run({ "--data", app.data, "state", "list", consumer, "--json" })
  if r.code ~= 0 and maybe then return nil end
  assert(r.code == 0, r.err)
  for _, o in ipairs(H.json_lines(r.out)) do t[o.key] = o.value end
  return t
end

--- The consumer's counts per key, its order violations and the total
-- count, from its state (all empty while a run has not made its store).
local function counts(app, consumer, maybe)
  local n, violations, total = {}, {}, 0
  for key, v in pairs(state(app, consumer, maybe) or {}) do
    local k = key:match("^n:(.*)$")
    if k then n[k] = v; total = total + v end
    if key:match("^violation:") then violations[key] = v end
  end
  return n, violations, total
end

--- eddy run --drain on app; asserts exit 0.  Returns the summary and the
-- log.
local function drain(app)
  local h = H.spawn({ "run", app.file, "--drain" })
  defer(function() H.cleanup(h) end)
  local ok, code = pcall(H.wait_exit, h, 60, "eddy run --drain to exit")
  local log = H.read(h.err) or ""
  assert(ok and code == 0, "eddy run --drain: " .. tostring(code) .. "; its log:\n" .. log)
  return H.summary(log), log
end

--- `eddy run` in the background; returns its handle.
local function start(app)
  local h = H.spawn({ "run", app.file })
  defer(function() H.cleanup(h) end)
  return h
end

--- The total count of a run's consumer so far; fails the test at once
-- when the run has exited (nothing more will come).
local function handled_by(h, app, consumer)
  local code = H.exit_code(h)
  assert(not code, "eddy run exited " .. tostring(code) .. "; its log:\n" .. (H.read(h.err) or ""))
  local _, _, total = counts(app, consumer, true)
  return total
end

--- Stops a run with SIGTERM; asserts exit 0.  Returns the summary and the
-- log.
local function stop(h)
  assert.is_true(H.kill(h.pid, "TERM"))
  local ok, code = pcall(H.wait_exit, h, 30, "eddy run to stop")
  local log = H.read(h.err) or ""
  assert(ok and code == 0, "eddy run: " .. tostring(code) .. "; its log:\n" .. log)
  return H.summary(log), log
end

local function pick(s, names)
  local t = {}
  for _, k in ipairs(names) do t[k] = s[k] end
  return t
end

describe("eddy on Kafka under faults (librdkafka's mock cluster)", function()
  describe("the command line", function()
    it("produce writes every line once, in order per key, through failing Produce requests",
       function()
      local mock = mock_cluster(1)
      local topic = fresh("orders")
      mock:cmd("topic " .. topic .. " 3")
      mock:errors(1, API.Produce, { ERR.NOT_LEADER_OR_FOLLOWER, ERR.REQUEST_TIMED_OUT,
                                    ERR.LEADER_NOT_AVAILABLE, ERR.NOT_LEADER_OR_FOLLOWER })
      local out = kafka(mock, { "produce", topic, "-K", "\t", "--json" },
                        { stdin = keyed_lines(5, 1, 60) })
      assert.equal(0, mock:pending(1, API.Produce))
      local acks = H.json_lines(out)
      assert.equal(300, #acks)
      local got = messages(mock, topic)
      assert.equal(300, #got)
      -- One partition per key, each in the order written.
      local by_part, ids = {}, {}
      for _, m in ipairs(got) do
        ids[m.id] = (ids[m.id] or 0) + 1
        local p = by_part[m.partition] or {}
        p[#p + 1] = cjson.decode(m.value)
        by_part[m.partition] = p
      end
      for _, a in ipairs(acks) do assert.equal(1, ids[a.id], "message " .. a.id) end
      local all = {}
      for _, list in pairs(by_part) do
        local c, bad = per_key(list)
        assert.is_nil(bad)
        for k, n in pairs(c) do
          assert.is_nil(all[k], k .. " in two partitions")
          all[k] = n
        end
      end
      assert.same(each_key(5, 60), all)
    end)

    it("produce names the line a refused batch stopped at and lists every line written",
       function()
      local mock = mock_cluster(1)
      local topic = fresh("orders")
      mock:cmd("topic " .. topic .. " 3")
      -- The third Produce request is refused for good; requests to the
      -- other partitions go through, lines after the refused one included.
      mock:errors(1, API.Produce, { 0, 0, ERR.MESSAGE_TOO_LARGE })
      local r = H.run({ "produce", topic, "-K", "\t", "--json", "--broker", mock.broker },
                      { stdin = keyed_lines(5, 1, 60) })
      assert.equal(0, mock:pending(1, API.Produce))
      assert.equal(1, r.code)
      local acks = H.json_lines(r.out)
      assert.is_true(#acks > 0 and #acks < 300, #acks .. " acknowledged")
      local line, written = r.err:match("^eddy produce: line (%d+): producing to topic '[^']+': "
                                        .. "Broker: Message size too large %((%d+) messages "
                                        .. "written, some of them from later lines: Kafka "
                                        .. "writes partitions independently; %-%-json lists "
                                        .. "each one written%)\n$")
      assert.truthy(line, r.err)
      assert.equal(#acks, tonumber(written))
      -- What Kafka holds is exactly what was listed.
      local listed, held = {}, {}
      for _, a in ipairs(acks) do listed[#listed + 1] = a.id end
      for _, m in ipairs(messages(mock, topic)) do held[#held + 1] = m.id end
      table.sort(listed)
      table.sort(held)
      assert.same(listed, held)
    end)

    it("tail reads every message once, in order, through failing Fetch and ListOffsets "
       .. "requests", function()
      local mock = mock_cluster(1)
      local topic = fresh("orders")
      -- One partition: a read that stops early has no other partition to
      -- come back from.
      mock:cmd("topic " .. topic .. " 1")
      local acks = H.json_lines(kafka(mock, { "produce", topic, "-K", "\t", "--json" },
                                      { stdin = keyed_lines(4, 1, 25) }))
      -- OFFSET_OUT_OF_RANGE for an offset the partition has: what a leader
      -- that has not caught up yet answers.
      mock:errors(1, API.Fetch, { ERR.NOT_LEADER_OR_FOLLOWER, ERR.UNKNOWN_TOPIC_OR_PARTITION,
                                  ERR.OFFSET_OUT_OF_RANGE })
      mock:errors(1, API.ListOffsets, { ERR.NOT_LEADER_OR_FOLLOWER, ERR.REQUEST_TIMED_OUT })
      local got = messages(mock, topic)
      assert.same({ 0, 0 }, { mock:pending(1, API.Fetch), mock:pending(1, API.ListOffsets) })
      assert.equal(#acks, #got, "tail printed " .. #got .. " of the " .. #acks .. " messages")
      local want, seen = {}, {}
      for i, a in ipairs(acks) do want[i] = a.id end
      for i, m in ipairs(got) do seen[i] = m.id end
      assert.same(want, seen)
    end)
  end)

  describe("eddy run", function()
    it("finds where its partitions start though the coordinator answers the group's offsets "
       .. "with NOT_COORDINATOR", function()
      local mock = mock_cluster(1)
      local names = { IN = fresh("orders"), OUT = fresh("counted"), NAME = fresh("counter") }
      input_topic(mock, names.IN, 4)
      mock:cmd("topic " .. names.OUT .. " 1")
      local app = make_app(mock, names, { count = COUNTER })
      produce(mock, names.IN, 8, 1, 10)
      -- A new data directory: librdkafka asks the group's offsets of the
      -- assigned partitions, and the first answer is a coordinator's that
      -- is no longer one.  librdkafka 2.0 never asks again by itself.
      mock:errors(1, API.OffsetFetch, { ERR.NOT_COORDINATOR })
      local s = drain(app)
      assert.equal(0, mock:pending(1, API.OffsetFetch))
      assert.same({ handled = 80, retried = 0 }, pick(s, { "handled", "retried" }))
      local n, violations = counts(app, names.NAME)
      assert.same({}, violations)
      assert.same(each_key(8, 10), n)
    end)

    it("relays every event once, in order, while Produce requests fail, and logs the batch "
       .. "the broker refused", function()
      local mock = mock_cluster(1)
      local names = { IN = fresh("orders"), OUT = fresh("counted"), NAME = fresh("counter") }
      input_topic(mock, names.IN, 4)
      mock:cmd("topic " .. names.OUT .. " 1")
      local app = make_app(mock, names, { count = COUNTER })
      produce(mock, names.IN, 8, 1, 40)
      -- From here on only the run's relay produces.  Retriable errors the
      -- client retries itself; MESSAGE_TOO_LARGE fails the relay's batch,
      -- which stays in the outbox and goes again.
      mock:errors(1, API.Produce, { ERR.NOT_LEADER_OR_FOLLOWER, ERR.REQUEST_TIMED_OUT,
                                    ERR.MESSAGE_TOO_LARGE, ERR.NOT_LEADER_OR_FOLLOWER,
                                    ERR.REQUEST_TIMED_OUT })
      local s, log = drain(app)
      assert.equal(0, mock:pending(1, API.Produce))
      assert.same({ handled = 320, retried = 0, quarantined = 0, relayed = 320 },
                  pick(s, { "handled", "retried", "quarantined", "relayed" }))
      -- The refusal is logged, with the broker's reason.
      assert.truthy(H.log_select(log, { level = "warn",
                                        message = "^outbox relay: .*Broker: Message size too " ..
                                                  "large %(will retry%)$" })[1], log)
      local n, violations = counts(app, names.NAME)
      assert.same({}, violations)
      assert.same(each_key(8, 40), n)
      events_once(mock, names.OUT, 8, 40)
    end)

    it("keeps every event when an acknowledgement comes too late: the copies Kafka holds "
       .. "carry the same id, and a consumer of them applies each once", function()
      local mock = mock_cluster(1)
      local names = { IN = fresh("orders"), OUT = fresh("counted"), NAME = fresh("counter"),
                      NAME2 = fresh("downstream") }
      input_topic(mock, names.IN, 4)
      input_topic(mock, names.OUT, 1)
      local app = make_app(mock, names, { count = COUNTER, downstream = [[
local eddy = require "eddy"
return eddy.consumer {
  name = "$NAME2",
  topics = { "$OUT" },
  handle = function(msg, ctx)
    local v = msg:json()
    local last = ctx.state:get("last:" .. v.k) or 0
    if last ~= v.seq - 1 then ctx.state:set("violation:" .. v.k .. ":" .. v.seq, last) end
    ctx.state:set("last:" .. v.k, v.seq)
    ctx.state:set("n:" .. v.k, (ctx.state:get("n:" .. v.k) or 0) + 1)
  end,
}
]] }, { ["socket.timeout.ms"] = "1500" })
      produce(mock, names.IN, 6, 1, 50)
      -- The broker writes the relay's first batch but answers after the
      -- client gave up on it: the client sends the batch again.
      mock:errors(1, API.Produce, { "0:4000" })
      local s, log = drain(app)
      assert.equal(0, mock:pending(1, API.Produce))
      local events, distinct = messages(mock, names.OUT), {}
      local ndistinct, copies = 0, 0
      for _, e in ipairs(events) do
        if distinct[e.id] then
          copies = copies + 1
          assert.equal(distinct[e.id], e.value)
        else
          distinct[e.id] = e.value
          ndistinct = ndistinct + 1
        end
      end
      assert.equal(300, ndistinct)
      assert.is_true(copies > 0, "the mock wrote no batch twice: the fault did not happen")
      -- Both consumers' numbers: 300 handled each; the copies deduplicated.
      assert.same({ received = 300 + #events, handled = 600, deduplicated = copies,
                    retried = 0, quarantined = 0, relayed = 300 },
                  pick(s, { "received", "handled", "deduplicated", "retried", "quarantined",
                            "relayed" }), log)
      for _, consumer in ipairs({ names.NAME, names.NAME2 }) do
        local n, violations = counts(app, consumer)
        assert.same({}, violations)
        assert.same(each_key(6, 50), n)
      end
    end)

    it("handles every message once, in order per key, while Fetch, Heartbeat and OffsetCommit "
       .. "requests fail mid-run", function()
      local mock = mock_cluster(1)
      local names = { IN = fresh("orders"), OUT = fresh("counted"), NAME = fresh("counter") }
      input_topic(mock, names.IN, 4)
      mock:cmd("topic " .. names.OUT .. " 1")
      local app = make_app(mock, names, { count = COUNTER })
      local KEYS = 10
      produce(mock, names.IN, KEYS, 1, 20)
      local h = start(app)
      local function handled() return handled_by(h, app, names.NAME) end
      H.wait_until(function() return handled() >= KEYS * 20 end, 30, "the first messages handled")
      -- ILLEGAL_GENERATION on a heartbeat: the group takes every partition
      -- away and gives them back; OFFSET_OUT_OF_RANGE on a fetch resets the
      -- position to the start of the partition.
      mock:errors(1, API.Heartbeat, { ERR.ILLEGAL_GENERATION })
      mock:errors(1, API.Fetch, { ERR.NOT_LEADER_OR_FOLLOWER, ERR.UNKNOWN_TOPIC_OR_PARTITION,
                                  ERR.OFFSET_OUT_OF_RANGE })
      mock:errors(1, API.OffsetCommit, { ERR.REBALANCE_IN_PROGRESS, ERR.NOT_COORDINATOR })
      produce(mock, names.IN, KEYS, 21, 40)
      mock:wait_given(1, { API.Heartbeat, API.Fetch, API.OffsetCommit })
      produce(mock, names.IN, KEYS, 41, 60)
      H.wait_until(function() return handled() >= KEYS * 60 end, 30, "every message handled")
      H.wait_until(function() return #messages(mock, names.OUT) >= KEYS * 60 end, 30,
                   "every event on Kafka")
      local s, log = stop(h)
      assert.same({ handled = KEYS * 60, retried = 0, quarantined = 0, relayed = KEYS * 60 },
                  pick(s, { "handled", "retried", "quarantined", "relayed" }))
      -- Four partitions assigned at the start and four again after the
      -- group took them away (more if the commit errors made it rebalance
      -- once more: allowed, nothing depends on it).
      local assigned = #H.log_select(log, { level = "info", consumer = names.NAME,
                                            message = "^assigned " })
      assert(assigned >= 8, "the group never took the partitions away; the log:\n" .. log)
      local n, violations = counts(app, names.NAME)
      assert.same({}, violations)
      assert.same(each_key(KEYS, 60), n)
      events_once(mock, names.OUT, KEYS, 60)
    end)

    it("waits out a broker that is down, logs it, and loses or repeats nothing", function()
      -- Broker 1 leads the input; broker 2 leads the output topic and
      -- coordinates the group, and goes down while messages keep coming.
      local mock = mock_cluster(2)
      local names = { IN = fresh("orders"), OUT = fresh("counted"), NAME = fresh("counter") }
      input_topic(mock, names.IN, 4, 1)
      mock:cmd("topic " .. names.OUT .. " 1")
      mock:cmd("leader " .. names.OUT .. " 0 2")
      mock:cmd("coordinator group " .. names.NAME .. " 2")
      -- The clients try again at most a second apart, so the run notices
      -- soon that the broker is back.
      local app = make_app(mock, names, { count = COUNTER },
                           { ["reconnect.backoff.max.ms"] = "1000" })
      local KEYS = 8
      produce(mock, names.IN, KEYS, 1, 20)
      local h = start(app)
      local function handled() return handled_by(h, app, names.NAME) end
      H.wait_until(function() return handled() >= KEYS * 20 end, 30, "the first messages handled")
      H.wait_until(function() return #messages(mock, names.OUT) == KEYS * 20 end, 30,
                   "the first events on Kafka")
      -- Down for longer than session.timeout.ms (6 s): the coordinator
      -- drops the member, which gets its partitions again once it is back.
      local before, down_at = #H.log_select(H.read(h.err), { level = "warn" }), system.monotime()
      mock:cmd("down 2")
      produce(mock, names.IN, KEYS, 21, 40)
      local warned
      H.poll(function()
        warned = warned or H.log_select(H.read(h.err), { level = "warn" })[before + 1]
        return system.monotime() - down_at >= DOWN_S
      end, DOWN_S + 5, 0.1)
      mock:cmd("up 2")
      produce(mock, names.IN, KEYS, 41, 60)
      H.wait_until(function() return handled() >= KEYS * 60 end, 30, "every message handled")
      H.wait_until(function() return #messages(mock, names.OUT) >= KEYS * 60 end, 30,
                   "every event on Kafka")
      local s, log = stop(h)
      assert.same({ handled = KEYS * 60, retried = 0, quarantined = 0, relayed = KEYS * 60 },
                  pick(s, { "handled", "retried", "quarantined", "relayed" }))
      local n, violations = counts(app, names.NAME)
      assert.same({}, violations)
      assert.same(each_key(KEYS, 60), n)
      events_once(mock, names.OUT, KEYS, 60)
      assert(warned, "eddy run logged no warning in the " .. DOWN_S ..
             " s broker 2 was down; its log:\n" .. log)
    end)
  end)
end)
