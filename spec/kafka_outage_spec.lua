--- `eddy run` on Kafka while the broker is out: a broker that is down
-- (refused connections) or frozen (SIGSTOP: connections that take requests
-- and never answer) never blocks the runner's loop.  `eddy status` answers
-- within a second at every moment, including while partitions are
-- assigned or revoked; messages read before keep being handled; a SIGTERM
-- exits 0 within 15 s; and the next run, with the broker back, loses
-- nothing and applies nothing twice.  Against the real broker that
-- test/run.sh starts ($EDDY_TEST_BROKER); every spec gives it back running.
local H = require "helpers"
local system = require "system"

local BROKER = H.BROKER
local ROOT = os.getenv("EDDY_ROOT") or "."
local KAFKA_SH = ROOT .. "/tools/kafka/kafka.sh"
local BROKER_PID = (os.getenv("EDDY_KAFKA_CACHE") or ROOT .. "/.cache/kafka") .. "/run/broker.pid"
local STATUS_MS = 1000          -- the longest `eddy status` may take, ever
local STOP_S = 15               -- the longest a SIGTERM may take, broker out

local function defer(fn) H.defer(finally, fn) end
local function now_ms() return math.floor(system.monotime() * 1000) end

math.randomseed(os.time() ~ tonumber(tostring({}):match("0x(%x+)"), 16))

local fresh = H.fresh_name

local kafka = H.kafka_ok

--- The broker as tools/kafka/kafka.sh runs it: "down", "restart", "status".
local function broker(cmd)
  return H.exec({ "env", "-u", "LD_PRELOAD", "sh", KAFKA_SH, cmd })
end

--- The broker's pid, or nil when it is down.
local function broker_pid()
  return tonumber((H.read(BROKER_PID) or ""):match("%d+"))
end

--- Freezes the broker (SIGSTOP): it keeps its connections and answers
-- nothing.  thaw() (SIGCONT) undoes it.
local function freeze()
  local pid = broker_pid()
  assert(pid, "no broker pid in " .. BROKER_PID)
  assert.is_true(H.kill(pid, "STOP"))
end
local function thaw()
  local pid = broker_pid()
  if pid then H.kill(pid, "CONT") end
end

--- Whatever a spec does to the broker, the next one gets it back running.
local function broker_back()
  defer(function()
    thaw()
    if broker("status").code ~= 0 then
      local r = broker("restart")
      assert(r.code == 0, r.out .. r.err)
    end
  end)
end

--- An app in a fresh directory on the test broker: handler file count.lua
-- counts messages per key (state n:<key>) and emits one event per message
-- to $OUT (its value the message's id).  work: loop turns per message;
-- session: the group's session.timeout.ms.
local function make_app(names, work, session)
  local dir = H.tmpdir()
  defer(function() H.rmdir(dir) end)
  assert(os.execute("mkdir " .. H.quote(dir .. "/handlers")))
  H.write(dir .. "/eddy.lua", string.format(
    "return { data = 'data', workers = 2, broker = %q, handlers = { 'handlers/' },\n" ..
    "  topics = { [%q] = { partitions = 4 } },\n" ..
    "  kafka = { ['session.timeout.ms'] = %d, ['heartbeat.interval.ms'] = 1000 } }\n",
    BROKER, names.IN, session or 6000))
  H.write(dir .. "/handlers/count.lua", (string.format([[
local eddy = require "eddy"
return eddy.consumer {
  name = "$NAME",
  topics = { "$IN" },
  limits = { instructions = 2000000000 },
  handle = function(msg, ctx)
    local x = 0
    for i = 1, %d do x = x + i %% 7 end
    ctx.state:set("n:" .. msg.key, (ctx.state:get("n:" .. msg.key) or 0) + 1)
    ctx:emit("$OUT", { key = msg.key, value = msg.id })
  end,
}
]], work):gsub("%$(%u+)", function(k) return names[k] end)))
  kafka({ "topic", "create", names.IN, "--partitions", "4" })
  return { dir = dir, file = dir .. "/eddy.lua", data = dir .. "/data" }
end

--- Produces total messages to topic, keys k0..k<keys-1> in turn; their
-- values are their numbers.
local function produce(topic, keys, total)
  local lines = {}
  for n = 1, total do lines[n] = "k" .. n % keys .. "\t" .. n end
  kafka({ "produce", topic, "-K", "\t" }, { stdin = table.concat(lines, "\n") .. "\n" })
end

--- The per-key counts in the app's store ({} before eddy made it).
local function counts(app, name)
  local r = H.run({ "--data", app.data, "state", "list", name, "--json" })
  local t = {}
  for _, o in ipairs(r.code == 0 and H.json_lines(r.out) or {}) do
    t[o.key:match("^n:(.*)$") or o.key] = o.value
  end
  return t
end

local function handled(app, name)
  local n = 0
  for _, v in pairs(counts(app, name)) do n = n + v end
  return n
end

--- Asks `eddy status` of the app's data directory, and fails unless it
-- answered, listing consumer name, within STATUS_MS.  Returns how long it
-- took (ms).
local function status(app, name)
  local t0 = now_ms()
  local r = H.run({ "status", "--data", app.data })
  local took = now_ms() - t0
  assert(r.code == 0, "eddy status: exit " .. r.code .. ": " .. r.err)
  assert(r.out:find(name, 1, true), r.out)
  assert(took < STATUS_MS, "eddy status took " .. took .. " ms")
  return took
end

--- Asks `eddy status` again and again (status above) until pred holds and
-- at least min_s seconds passed, failing after timeout_s.  Prints how many
-- answers came and the slowest.
-- runs: the spawned runs whose logs a failure shows.
local function keep_asking(app, name, pred, min_s, timeout_s, what, runs)
  local t0, n, slowest = now_ms(), 0, 0
  local ok, err = pcall(H.wait_until, function()
    slowest = math.max(slowest, status(app, name))
    n = n + 1
    return now_ms() - t0 >= min_s * 1000 and pred()
  end, timeout_s, what)
  if not ok then
    local logs = {}
    for i, h in ipairs(runs or {}) do logs[i] = "run " .. i .. ":\n" .. (H.read(h.err) or "") end
    error(tostring(err) .. "\n" .. table.concat(logs, "\n"), 2)
  end
  print(string.format("# %s: %d status answers, the slowest in %d ms", what, n, slowest))
end

--- SIGTERM to a run: it exits 0 within STOP_S.  Returns its log.
local function stop(h)
  local t0 = now_ms()
  assert.is_true(H.kill(h.pid, "TERM"))
  local ok, code = pcall(H.wait_exit, h, STOP_S, "eddy run to stop")
  local log = H.read(h.err) or ""
  assert(ok and code == 0, "eddy run did not exit 0 within " .. STOP_S .. " s of SIGTERM ("
         .. tostring(code) .. "); its log:\n" .. log)
  print(string.format("# stopped %d ms after SIGTERM", now_ms() - t0))
  return log
end

--- With the broker back: a --drain run handles what is left; then every
-- message was handled once (per-key counts) and every event is on Kafka,
-- each once by id (the relay may send one twice, with the same id).
-- Returns the drain's summary.
local function everything_once(app, names, keys, total)
  local h = H.spawn({ "run", app.file, "--drain" })
  defer(function() H.cleanup(h) end)
  local ok, code = pcall(H.wait_exit, h, 90, "eddy run --drain to exit")
  local log = H.read(h.err) or ""
  assert(ok and code == 0, "eddy run --drain: " .. tostring(code) .. "; its log:\n" .. log)
  local want = {}
  for k = 0, keys - 1 do want["k" .. k] = total // keys end
  assert.same(want, counts(app, names.NAME))
  local seen, distinct = {}, 0
  for _, e in ipairs(H.json_lines(kafka({ "tail", names.OUT, "--from-beginning", "--json" }))) do
    if not seen[e.id] then seen[e.id] = e.value; distinct = distinct + 1 end
    assert.equal(seen[e.id], e.value)
  end
  assert.equal(total, distinct)
  return H.summary(log)
end

local function log_of(h) return H.read(h.err) or "" end

describe("eddy run on Kafka while the broker is out", function()
  it("goes on while the broker is down: status answers within 1 s, handling continues, a "
     .. "stop within 15 s keeps unsent events for the next run", function()
    broker_back()
    local names = { IN = fresh("orders"), OUT = fresh("counted"), NAME = fresh("counter") }
    -- A session longer than the outage: the partitions stay this run's,
    -- and every message read before the outage is handled during it.
    local app = make_app(names, 100000, 30000)
    local h = H.spawn({ "run", app.file })
    defer(function() H.cleanup(h) end)
    H.wait_until(function() return log_of(h):find("assigned", 1, true) end, 45,
                 "eddy run to get its partitions")
    local KEYS, TOTAL = 10, 1000
    produce(names.IN, KEYS, TOTAL)
    H.wait_until(function() return handled(app, names.NAME) > 0 end, 45,
                 "the first messages to be handled")
    assert.equal(0, broker("down").code)
    -- The runner's loop does not wait on the broker: the control socket
    -- answers at once all along, and the messages read before keep being
    -- handled.
    keep_asking(app, names.NAME, function() return handled(app, names.NAME) == TOTAL end, 3,
                90, "every message handled, the broker down", { h })
    local log = stop(h)
    assert.truthy(log:find("stays in the outbox for the next run", 1, true), log)
    local first = H.summary(log)
    assert.same({ handled = TOTAL, retried = 0 }, { handled = first.handled, retried = first.retried })
    assert.is_true(first.relayed < TOTAL, "relayed " .. first.relayed .. " with the broker down")

    -- Back up: the next run relays the rest and handles nothing again.
    assert.equal(0, broker("restart").code)
    local second = everything_once(app, names, KEYS, TOTAL)
    assert.same({ handled = 0, relayed = TOTAL - first.relayed },
                { handled = second.handled, relayed = second.relayed })
  end)

  it("answers status within 1 s while a frozen broker hangs every request, through the loss "
     .. "of its session and a stop within 15 s; the next run handles the rest once", function()
    broker_back()
    local names = { IN = fresh("orders"), OUT = fresh("counted"), NAME = fresh("counter") }
    local app = make_app(names, 100000)
    local h = H.spawn({ "run", app.file })
    defer(function() H.cleanup(h) end)
    H.wait_until(function() return log_of(h):find("assigned", 1, true) end, 45,
                 "eddy run to get its partitions")
    local KEYS, TOTAL = 10, 2000
    produce(names.IN, KEYS, TOTAL)
    H.wait_until(function() return handled(app, names.NAME) > 0 end, 45,
                 "the first messages to be handled")
    freeze()
    -- The group's session (6 s) runs out with no answer from the broker:
    -- librdkafka takes the partitions away (lost), and the workers drop
    -- what they had not started.
    keep_asking(app, names.NAME, function() return log_of(h):find("revoked", 1, true) end, 8,
                90, "the partitions lost with the session, the broker frozen", { h })
    local log = stop(h)
    assert.equal(0, H.summary(log).retried)
    thaw()
    everything_once(app, names, KEYS, TOTAL)
  end)

  it("answers status within 1 s through a rebalance with work in hand and a frozen broker "
     .. "right after it; two stops within 15 s; the next run handles the rest once", function()
    broker_back()
    local names = { IN = fresh("orders"), OUT = fresh("counted"), NAME = fresh("shared") }
    -- Slow messages (most of a second each): a revocation finds a batch
    -- in hand, and waits for it.
    local app = make_app(names, 16000000, 20000)
    local a = H.spawn({ "run", app.file })
    defer(function() H.cleanup(a) end)
    H.wait_until(function() return log_of(a):find("assigned", 1, true) end, 45,
                 "the first instance to get its partitions")
    local KEYS, TOTAL = 32, 64
    produce(names.IN, KEYS, TOTAL)
    H.wait_until(function() return handled(app, names.NAME) > 0 end, 45,
                 "the first messages to be handled")
    -- A second instance on the same data directory joins: the first gives
    -- up partitions whose batch is in hand, the second takes them.
    local b = H.spawn({ "run", app.file })
    defer(function() H.cleanup(b) end)
    keep_asking(app, names.NAME, function()
      return log_of(a):find("revoked", 1, true) and log_of(b):find("assigned", 1, true)
    end, 0, 90, "the rebalance, work in hand", { a, b })
    -- Frozen now: the partitions just assigned wait for their fetches (and
    -- their group offsets) with no answer, and both instances' commits
    -- with them, through the heartbeats' timeouts.
    freeze()
    keep_asking(app, names.NAME, function() return true end, 8, 60,
                "the broker frozen after the rebalance", { a, b })
    stop(b)
    stop(a)
    thaw()
    everything_once(app, names, KEYS, TOTAL)
  end)

  it("answers status within 1 s when the broker freezes as eddy run starts, and handles "
     .. "everything once it thaws", function()
    broker_back()
    local names = { IN = fresh("orders"), OUT = fresh("counted"), NAME = fresh("counter") }
    local app = make_app(names, 1000)
    local KEYS, TOTAL = 10, 500
    produce(names.IN, KEYS, TOTAL)
    local h = H.spawn({ "run", app.file })
    defer(function() H.cleanup(h) end)
    -- The loop runs (its control socket answers): the broker freezes as
    -- the group is joined and the partitions assigned.
    H.wait_until(function()
      return H.run({ "status", "--data", app.data }).code == 0
    end, 45, "eddy run's control socket")
    freeze()
    keep_asking(app, names.NAME, function() return true end, 8, 60,
                "the group's join, the broker frozen", { h })
    thaw()
    keep_asking(app, names.NAME, function() return handled(app, names.NAME) == TOTAL end, 0,
                90, "every message handled, the broker back", { h })
    stop(h)
    local want = {}
    for k = 0, KEYS - 1 do want["k" .. k] = TOTAL // KEYS end
    assert.same(want, counts(app, names.NAME))
  end)
end)
