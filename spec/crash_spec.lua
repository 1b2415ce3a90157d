--- Crash recovery of `eddy run`: a run over a keyed backlog with poison
-- messages is killed with SIGKILL at random moments and restarted, then
-- drained.  At the end every good message's effect is applied exactly once,
-- per-key order held, every poison message is quarantined exactly once, the
-- outbox relayed each event exactly once and a downstream consumer counted
-- each event once.
--
-- The kill moments are random: the seed is printed, and EDDY_CRASH_SEED=N
-- replays the same data and the same delays.
local H = require "helpers"
local cjson = require "cjson"
local system = require "system"

--- Runs fn when the test ends (as many as needed; see H.defer).
local function defer(fn) H.defer(finally, fn) end

local SEED = tonumber(os.getenv("EDDY_CRASH_SEED")) or os.time()

--- Writes the app (eddy.lua and its handler files) into a fresh directory,
-- removed when the test ends.  files maps a path under the directory to
-- its text.  Returns the directory, the app file and the data directory.
local function app_tree(app_text, files)
  local dir = H.tmpdir()
  defer(function() H.rmdir(dir) end)
  local data = dir .. "/data"
  os.execute("mkdir -p " .. H.quote(dir .. "/handlers"))
  H.write(dir .. "/eddy.lua", (app_text:gsub("@DATA@", data)))
  for name, text in pairs(files) do H.write(dir .. "/" .. name, text) end
  return dir, dir .. "/eddy.lua", data
end

--- Consumer A, the one under test.  Each message carries its key, its
-- sequence number, whether it is poison, and prev: the sequence number of
-- the key's previous good message (0 for none).  A good message checks that
-- the last good sequence number A applied for its key is prev (any other
-- value is a reordering, a loss or a repeat: recorded, never raised, so the
-- run goes on), counts per key and in total, and emits one event.  The
-- total is one state key that both workers update: their batches conflict
-- all the time, so the run also goes through the runtime's conflict path
-- (a batch committed up to the conflict, the rest handled again).
local CONSUMER_A = [[
local eddy = require "eddy"
return eddy.consumer {
  name = "A",
  topics = { "orders" },
  retry = @RETRY@,
  handle = function(msg, ctx)
    local v = msg:json()
    if v.poison then error("poison " .. v.k .. "#" .. v.seq) end
    local last = ctx.state:get("last:" .. v.k) or 0
    if last ~= v.prev then
      ctx.state:set("violation:" .. v.k .. ":" .. v.seq,
                    { seq = v.seq, expected_last = v.prev, last = last })
    end
    ctx.state:set("last:" .. v.k, v.seq)
    ctx.state:set("n:" .. v.k, (ctx.state:get("n:" .. v.k) or 0) + 1)
    ctx.state:set("total", (ctx.state:get("total") or 0) + 1)
    ctx:emit("counted", { key = v.k, value = { k = v.k, seq = v.seq, id = msg.id } })
  end,
}
]]

--- Consumer B, downstream: counts the events of "counted" per (k, seq),
-- with the default dedupe (by event id).
local CONSUMER_B = [[
local eddy = require "eddy"
return eddy.consumer {
  name = "B",
  topics = { "counted" },
  handle = function(msg, ctx)
    local v = msg:json()
    local k = v.k .. "#" .. v.seq
    ctx.state:set(k, (ctx.state:get(k) or 0) + 1)
  end,
}
]]

local APP = [[
return {
  data = "@DATA@",
  workers = 2,
  handlers = { "handlers/" },
  topics = { orders = { partitions = 4 }, counted = { partitions = 2 } },
}
]]

--- Creates topic orders (4 partitions) in data and produces the lines
-- "KEY:VALUE" of a backlog through `eddy produce --key-separator :`.
-- backlog: a list of { k =, seq =, poison =, prev = }.
local function produce(data, backlog)
  local r = H.run({ "--data", data, "topic", "create", "orders", "--partitions", "4" })
  assert.same({ code = 0, err = "" }, { code = r.code, err = r.err })
  local lines = {}
  for i, m in ipairs(backlog) do
    lines[i] = m.k .. ":" .. cjson.encode({ k = m.k, seq = m.seq, poison = m.poison,
                                            prev = m.prev })
  end
  r = H.run({ "--data", data, "produce", "orders", "--key-separator", ":" },
            { stdin = table.concat(lines, "\n") .. "\n" })
  assert.same({ code = 0, err = "" }, { code = r.code, err = r.err })
end

--- The messages of topic orders: a map id -> { k =, seq =, poison = }, and
-- their count.
local function orders_by_id(data)
  local by_id, n = {}, 0
  for _, m in ipairs(H.messages(data, "orders")) do
    local v = cjson.decode(m.value)
    assert(m.key == v.k, "message " .. m.id .. " has key " .. tostring(m.key))
    by_id[m.id] = { k = v.k, seq = math.tointeger(v.seq), poison = v.poison }
    n = n + 1
  end
  return by_id, n
end

--- v with every float of integral value made an integer (cjson decodes
-- every number as a float): 3, not 3.0, in failure messages.
local function ints(v)
  if type(v) == "table" then
    for k, x in pairs(v) do v[k] = ints(x) end
  elseif math.type(v) == "float" then
    return math.tointeger(v) or v
  end
  return v
end

--- The state of consumer c: a map key -> decoded value.
local function state(data, c)
  local r = H.run({ "--data", data, "state", "list", c, "--json" })
  assert.same({ code = 0, err = "" }, { code = r.code, err = r.err })
  local t = {}
  for _, e in ipairs(H.json_lines(r.out)) do
    assert(t[e.key] == nil, "state key listed twice: " .. e.key)
    t[e.key] = ints(e.value)
  end
  return t
end

--- The pending dead-letter entries, decoded.
local function dlq(data)
  local r = H.run({ "--data", data, "dlq", "list", "--json" })
  assert.same({ code = 0, err = "" }, { code = r.code, err = r.err })
  return H.json_lines(r.out)
end

--- The number of messages in topic t (0 while it does not exist).
local function count(data, t)
  local r = H.run({ "--data", data, "topic", "list", "--json" })
  assert.same({ code = 0, err = "" }, { code = r.code, err = r.err })
  for _, o in ipairs(H.json_lines(r.out)) do
    if o.name == t then return o.messages end
  end
  return 0
end

--- Up to 10 items of a list of problems, for a failure message.
local function first(list)
  local t = table.move(list, 1, math.min(#list, 10), 1, {})
  if #list > 10 then t[#t + 1] = "... " .. (#list - 10) .. " more" end
  return table.concat(t, "\n  ")
end

--- Checks the end state of an app run over backlog (a list of
-- { k =, seq =, poison =, prev = }), whose messages by id are by_id, by
-- consumer A with retry.attempts = attempts.  State keys "order:..." of A
-- are left to the caller.
-- Every check collects its problems first and asserts once, so a failure
-- says how many messages went wrong and shows the first ones.
local function check_end_state(data, by_id, backlog, attempts)
  local id_of, good, poison = {}, {}, {}
  for id, m in pairs(by_id) do
    id_of[m.k .. "#" .. m.seq] = id
    if m.poison then poison[#poison + 1] = id else good[#good + 1] = id end
  end
  local n_good, last_good = {}, {}
  for _, m in ipairs(backlog) do
    if not m.poison then
      n_good[m.k] = (n_good[m.k] or 0) + 1
      last_good[m.k] = m.seq
    end
    n_good[m.k] = n_good[m.k] or 0
  end

  -- A: one count per good message of each key, in order, nothing else.
  local a = state(data, "A")
  local problems = {}
  for k, n in pairs(n_good) do
    if (a["n:" .. k] or 0) ~= n then
      problems[#problems + 1] = string.format("key %s: counter %s, %d good messages",
                                              k, tostring(a["n:" .. k]), n)
    end
    if a["last:" .. k] ~= last_good[k] then
      problems[#problems + 1] = string.format("key %s: last seq %s, last good seq %s",
                                              k, tostring(a["last:" .. k]),
                                              tostring(last_good[k]))
    end
  end
  local ngood = 0
  for _, n in pairs(n_good) do ngood = ngood + n end
  if a.total ~= ngood then
    problems[#problems + 1] = string.format("total %s, %d good messages",
                                            tostring(a.total), ngood)
  end
  local violations = {}
  for k, v in pairs(a) do
    -- total: checked above; order lists: the caller's.
    if k:find("^violation:") then
      violations[#violations + 1] = k .. " " .. cjson.encode(v)
    elseif k ~= "total" and not k:find("^order:") and
           (not (k:find("^n:") or k:find("^last:")) or n_good[k:match(":(.*)")] == nil) then
      problems[#problems + 1] = "unexpected state key " .. k
    end
  end
  table.sort(problems)
  table.sort(violations)
  assert(#violations == 0, #violations .. " per-key order violations recorded by A " ..
         "(seq, the last good seq expected before it, the last seq A had " ..
         "applied):\n  " .. first(violations))
  assert(#problems == 0, #problems .. " problems with A's counters:\n  " .. first(problems))

  -- Every poison message in the dead-letter store exactly once, nothing else.
  local entries = dlq(data)
  local seen = {}
  problems = {}
  for _, e in ipairs(entries) do
    local m = by_id[e.id]
    if e.consumer ~= "A" or not m or not m.poison then
      problems[#problems + 1] = "unexpected dlq entry " .. e.consumer .. " " .. e.id ..
                                " " .. tostring(e.value)
    elseif seen[e.id] then
      problems[#problems + 1] = string.format("%s (%s#%d) quarantined twice", e.id, m.k,
                                              m.seq)
    else
      seen[e.id] = true
      if e.topic ~= "orders" or e.attempts ~= attempts or
         not tostring(e.error):find("poison", 1, true) then
        problems[#problems + 1] = string.format("%s: topic %s attempts %s error %s",
                                                e.id, e.topic, e.attempts, e.error)
      end
    end
  end
  for _, id in ipairs(poison) do
    if not seen[id] then
      problems[#problems + 1] = string.format("%s (%s#%d) is not in the dlq", id,
                                              by_id[id].k, by_id[id].seq)
    end
  end
  table.sort(problems)
  assert(#problems == 0, #problems .. " problems with the dead-letter store (" ..
         #entries .. " entries, " .. #poison .. " poison messages):\n  " .. first(problems))
  -- ... and on the dlq topic, with its original id.
  seen, problems = {}, {}
  for _, m in ipairs(H.messages(data, "orders.dlq")) do
    if not (by_id[m.id] and by_id[m.id].poison) then
      problems[#problems + 1] = "unexpected message on orders.dlq " .. m.id
    elseif seen[m.id] then
      problems[#problems + 1] = m.id .. " is on orders.dlq twice"
    end
    seen[m.id] = true
  end
  for _, id in ipairs(poison) do
    if not seen[id] then problems[#problems + 1] = id .. " is not on orders.dlq" end
  end
  table.sort(problems)
  assert(#problems == 0, #problems .. " problems with topic orders.dlq:\n  " ..
         first(problems))

  -- The outbox relay is atomic: exactly one event per good message.
  local events = {}
  problems = {}
  local event_ids = {}
  for _, m in ipairs(H.messages(data, "counted")) do
    local v = cjson.decode(m.value)
    local kseq = v.k .. "#" .. math.tointeger(v.seq)
    if event_ids[m.id] then problems[#problems + 1] = "event id " .. m.id .. " twice" end
    event_ids[m.id] = true
    if v.id ~= id_of[kseq] or by_id[v.id].poison then
      problems[#problems + 1] = "unexpected event " .. m.value
    elseif events[kseq] then
      problems[#problems + 1] = "two events for " .. kseq .. ": " .. events[kseq] ..
                                " and " .. m.id
    elseif m.headers["eddy-causation-id"] ~= v.id then
      problems[#problems + 1] = "event " .. m.id .. " has causation id " ..
                                tostring(m.headers["eddy-causation-id"])
    end
    events[kseq] = events[kseq] or m.id
  end
  for _, id in ipairs(good) do
    local kseq = by_id[id].k .. "#" .. by_id[id].seq
    if not events[kseq] then problems[#problems + 1] = "no event for " .. kseq end
  end
  table.sort(problems)
  assert(#problems == 0, #problems .. " problems with topic counted (" .. #good ..
         " good messages):\n  " .. first(problems))

  -- B counted each event once.
  local b = state(data, "B")
  problems = {}
  for _, id in ipairs(good) do
    local kseq = by_id[id].k .. "#" .. by_id[id].seq
    if b[kseq] ~= 1 then
      problems[#problems + 1] = kseq .. " counted " .. tostring(b[kseq]) .. " times"
    end
  end
  for kseq in pairs(b) do
    if not id_of[kseq] or by_id[id_of[kseq]].poison then
      problems[#problems + 1] = "B counted " .. kseq
    end
  end
  table.sort(problems)
  assert(#problems == 0, #problems .. " problems with B's counts:\n  " .. first(problems))
end

--- Starts `eddy run app` (extra arguments appended) in the background,
-- stopped and cleaned up when the test ends.
local function start(app, extra)
  local args = { "run", app }
  for _, a in ipairs(extra or {}) do args[#args + 1] = a end
  local h = H.spawn(args)
  defer(function() H.cleanup(h) end)
  return h
end

--- Kills a run with SIGKILL and waits for it to be gone.  A run that had
-- already exited is a failure: it was not killed mid-stream.
local function kill(h)
  assert(H.exit_code(h) == nil, "eddy run exited by itself:\n" .. H.read(h.err))
  assert.is_true(H.kill(h.pid, "KILL"))
  assert.equal(128 + 9, H.wait_exit(h, 10, "eddy run to die of SIGKILL"))
end

--- Drains an app with `eddy run --drain`, which must exit 0 in time.
-- Returns its standard error.
local function drain(app, timeout_s)
  local h = start(app, { "--drain" })
  local code = H.wait_exit(h, timeout_s, "eddy run --drain to finish")
  local err = H.read(h.err)
  assert(code == 0, "eddy run --drain exited " .. code .. ":\n" .. err)
  assert.is_nil(err:find("eddy run: failed", 1, true), err)
  return err
end

describe("eddy run, killed with SIGKILL", function()
  it("20,000 keyed messages with 1% poison, killed at random moments 6 times, then " ..
     "drained: every effect once, in order, every poison quarantined once, nothing lost",
     function()
    local started = system.monotime()
    math.randomseed(SEED)
    print(string.format("# crash spec seed %d (EDDY_CRASH_SEED=%d replays it)", SEED, SEED))
    local retry = '{ attempts = 3, backoff = "5ms", max_backoff = "20ms" }'
    local _, app, data = app_tree(APP, {
      ["handlers/a.lua"] = CONSUMER_A:gsub("@RETRY@", retry),
      ["handlers/b.lua"] = CONSUMER_B,
    })

    -- 500 keys x 40 sequence numbers, interleaved; about 1% poison.
    local KEYS, SEQS = 500, 40
    local backlog, prev, npoison = {}, {}, 0
    for seq = 1, SEQS do
      for i = 1, KEYS do
        local k = "key-" .. i
        local poison = math.random() < 0.01
        backlog[#backlog + 1] = { k = k, seq = seq, poison = poison, prev = prev[k] or 0 }
        if poison then npoison = npoison + 1 else prev[k] = seq end
      end
    end
    produce(data, backlog)
    local by_id, n = orders_by_id(data)
    assert.equal(KEYS * SEQS, n)
    local ngood = n - npoison
    assert.is_true(npoison >= 100 and npoison <= 320, "poison count " .. npoison)

    -- Kill rounds.  Each waits until this run visibly made progress (new
    -- events on "counted"), lets it run a random 50-400 ms more, and kills
    -- it: earlier when the events reach round/(ROUNDS+1) of all, so that
    -- every kill lands mid-stream however fast the machine is.
    local ROUNDS = 6
    for round = 1, ROUNDS do
      local before = count(data, "counted")
      local h = start(app)
      H.wait_until(function() return count(data, "counted") > before or H.exit_code(h) end,
                   60, "eddy run to relay new events")
      local delay = math.random(50, 400)
      local cap = ngood * round // (ROUNDS + 1)
      local progress_at = system.monotime()
      -- The kill moment: the drawn delay, or earlier once the events reach
      -- the cap (or the run ended by itself, which the asserts below catch).
      H.poll(function() return count(data, "counted") >= cap or H.exit_code(h) end,
             delay / 1000, 0.005)
      local ran_ms = (system.monotime() - progress_at) * 1000
      kill(h)
      local after = count(data, "counted")
      print(string.format("# round %d: from %d events, killed %.0f ms after progress " ..
                          "(drawn %d ms, cap %d events) at %d of %d events", round, before,
                          ran_ms, delay, cap, after, ngood))
      assert(after < ngood, "round " .. round .. ": the run had relayed every event " ..
             "before it was killed")
      local err = H.read(h.err)
      assert(not err:find("eddy run: failed", 1, true), err)
    end

    drain(app, 90)
    check_end_state(data, by_id, backlog, 3)
    print(string.format("# crash spec: %d messages, %d poison, %.1fs", n, npoison,
                        system.monotime() - started))
  end)

  it("while poison messages are parked for their retries: after restarts each is " ..
     "quarantined once, and its key's other messages handled once, in order", function()
    -- A long backoff with full jitter: the 4 retries of a message all due
    -- within the ~300 ms between its first failure and the kill has a
    -- chance below 1e-6.
    local retry = '{ attempts = 5, backoff = "500ms", max_backoff = "2s" }'
    -- A records each key's handling order too, and every call takes a
    -- little time (an empty loop of 10,000 turns), so that the two
    -- workers' first batches overlap: one of them then meets the other's
    -- update of "total" at its commit, as happens all the time in a long
    -- run, and goes through the conflict path with parked keys in hand.
    local handler = CONSUMER_A:gsub("@RETRY@", retry):gsub(
      'ctx.state:set%("last:"',
      'local o = ctx.state:get("order:" .. v.k) or {}\n' ..
      '    o[#o + 1] = v.seq\n    ctx.state:set("order:" .. v.k, o)\n' ..
      '    for _ = 1, 10000 do end\n' ..
      '    ctx.state:set("last:"')
    assert(handler:find("order:", 1, true))
    local _, app, data = app_tree(APP, {
      ["handlers/a.lua"] = handler,
      ["handlers/b.lua"] = CONSUMER_B,
    })
    -- Keys p1 ... p10 have a poison message at seq 3 of 10 (spread over
    -- both workers); o1 ... o20 have 10 good messages each.
    local P, O = 10, 20
    local backlog, prev = {}, {}
    for seq = 1, 10 do
      for i = 1, P + O do
        local k = i <= P and "p" .. i or "o" .. (i - P)
        local poison = i <= P and seq == 3
        backlog[#backlog + 1] = { k = k, seq = seq, poison = poison, prev = prev[k] or 0 }
        if not poison then prev[k] = seq end
      end
    end
    produce(data, backlog)
    local by_id = orders_by_id(data)
    local poison_ids = {}
    for id, m in pairs(by_id) do if m.poison then poison_ids[#poison_ids + 1] = id end end
    assert.equal(P, #poison_ids)

    -- Twice: run until every poison message failed once and waits for its
    -- retry, every other key is through (a park blocks nothing else) and
    -- each poison key has its two earlier messages done; then kill the run
    -- while the retries wait.  A run that gets there only after
    -- quarantining a poison message (its key's earlier messages stuck
    -- behind it) fails below.
    for round = 1, 2 do
      local h = start(app)
      local t0 = system.monotime()
      H.wait_until(function()
        if H.exit_code(h) then return true end
        local failed_once = {}
        for _, o in ipairs(H.log_select(H.read(h.err), { level = "warn", attempt = 1,
                                                         message = "^retrying: " })) do
          failed_once[o.message_id] = true
        end
        for _, id in ipairs(poison_ids) do
          if not failed_once[id] then return false end
        end
        local s = state(data, "A")
        for i = 1, O do if s["n:o" .. i] ~= 10 then return false end end
        if #dlq(data) > 0 then return true end
        for i = 1, P do if s["n:p" .. i] ~= 2 then return false end end
        return true
      end, 30, "the poison messages to be parked and the other keys done")
      local ran_ms = (system.monotime() - t0) * 1000
      kill(h)
      local s, entries = state(data, "A"), dlq(data)
      local orders = {}
      for i = 1, P do
        orders[i] = "p" .. i .. ": " .. cjson.encode(s["order:p" .. i] or {})
      end
      assert(#entries == 0,
             string.format("round %d: %d poison message(s) quarantined before the kill, " ..
                           "%.0f ms after the start, while their keys' earlier messages " ..
                           "waited; handling orders of the poison keys:\n  %s", round,
                           #entries, ran_ms, table.concat(orders, "\n  ")))
      for i = 1, P do
        assert.same({ 1, 2 }, s["order:p" .. i], "order of p" .. i)
      end
    end

    drain(app, 60)
    local s = state(data, "A")
    for i = 1, P do
      assert.same({ 1, 2, 4, 5, 6, 7, 8, 9, 10 }, s["order:p" .. i], "order of p" .. i)
    end
    for i = 1, O do
      assert.same({ 1, 2, 3, 4, 5, 6, 7, 8, 9, 10 }, s["order:o" .. i], "order of o" .. i)
    end
    check_end_state(data, by_id, backlog, 5)
  end)
end)
