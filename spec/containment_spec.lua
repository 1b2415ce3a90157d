--- Whatever a handler does, eddy run goes on: its message ends in
-- quarantine with a readable reason, other keys and other consumers are
-- handled, and the run ends as it should (docs/handlers.md, "Failures"
-- and "What handlers can do").
local H = require "helpers"
local system = require "system"

local function now_ms() return math.floor(system.monotime() * 1000) end

--- An app in a fresh directory: eddy.lua (app options in `app`, a Lua
-- table's text without its braces) and the handler files given.
local function make_app(handlers, app)
  local files = {}
  for name, text in pairs(handlers) do files["handlers/" .. name] = text end
  return H.app(finally, "return { data = 'data', workers = 2, handlers = { 'handlers/' },\n" ..
               "  topics = { orders = { partitions = 2 } }, " .. (app or "") .. " }\n", files)
end

local eddy = H.eddy_ok

--- Produces each value with itself as its key (or with key, in order).
local function produce(app, values, key)
  local lines = {}
  for i, v in ipairs(values) do lines[i] = (key or v) .. "\t" .. v end
  local r = H.run({ "produce", "orders", "--data", app.data, "-K", "\t" },
                  { stdin = table.concat(lines, "\n") .. "\n" })
  assert(r.code == 0, r.err)
end

--- The quarantined messages of consumer c: value -> { reason, error, attempts }.
local function quarantined(app, c)
  local out = {}
  for _, e in ipairs(H.dlq(app.data)) do
    if e.consumer == c then
      out[e.value] = { reason = e.reason, error = e.error, attempts = e.attempts }
    end
  end
  return out
end

local function state(app, c) return H.state(app.data, c) end

-- Counts every message by key: the consumer next to the misbehaving one.
local COUNTER = [[
local eddy = require "eddy"
return eddy.consumer { name = "counter", topics = { "orders" },
  handle = function(msg, ctx) ctx.state:set(msg.key, (ctx.state:get(msg.key) or 0) + 1) end }
]]

-- The misbehaving consumer: what it does depends on the message's value;
-- "ok-..." values are handled (recorded in its state).
local BAD = [[
local eddy = require "eddy"
local cases = {}
cases["tostring-raises"] = function()
  error(setmetatable({}, { __tostring = function() error("not today") end }))
end
cases["tostring-loops"] = function()
  error(setmetatable({ code = 7 }, { __tostring = function() while true do end end }))
end
cases["tostring-works"] = function()
  error(setmetatable({}, { __tostring = function() return "a readable error" end }))
end
cases["sethook"] = function() debug.sethook(); while true do end end
cases["sethook-caught"] = function() pcall(debug.sethook); while true do end end
cases["os-exit"] = function() os.exit(3) end
cases["os-exit-caught"] = function()
  local ok, err = pcall(os.exit, true)
  error("still here after os.exit: " .. tostring(ok) .. " " .. err, 0)
end
cases["binary-load"] = function()
  local chunk = string.dump(function() return 1 end)
  assert(load(chunk:sub(1, 12) .. string.rep("\255", 64)))
end
cases["binary-mode"] = function() load(string.dump(function() end), "x", "b") end
cases["setlocale"] = function() os.setlocale("C") end
cases["backtrack"] = function()
  string.find(string.rep("a", 40), ".-.-.-.-.-.-.-.-.-b")
end
cases["gsub-backtrack"] = function()
  (string.rep("a", 40)):gsub(".-.-.-.-.-.-.-.-.-b", "")
end
cases["emit-too-big"] = function(msg, ctx)
  ctx:emit("out", { key = msg.key, value = string.rep("x", 2 * 1024 * 1024) })
end
cases["emit-too-big-caught"] = function(msg, ctx)
  local ok, err = pcall(ctx.emit, ctx, "out", { value = string.rep("x", 2 * 1024 * 1024) })
  assert(not ok and err:find("over the limit", 1, true), err)
  ctx:emit("out", { key = msg.key, value = "small" })
end
cases["many-emits"] = function(msg, ctx)
  for i = 1, 1000000 do ctx:emit("out", { key = msg.key, value = "x" .. i }) end
end
cases["gc-stop"] = function(msg, ctx)
  collectgarbage("stop")
  assert(collectgarbage("isrunning"), "the collector stopped")
  local t
  for i = 1, 500000 do t = { i } end
  ctx.state:set(msg.key, t[1])
end
cases["many-keys"] = function(_, ctx)
  for i = 1, 5000 do ctx.state:set("k" .. i, i) end
end
return eddy.consumer { name = "bad", topics = { "orders" },
  retry = { attempts = 2, backoff = 1 },
  limits = { instructions = 5000000, memory = "16MiB", emits = 1000 },
  handle = function(msg, ctx)
    local f = cases[msg.value]
    if f then return f(msg, ctx) end
    ctx.state:set(msg.key, msg.value)
  end }
]]

describe("eddy run with a misbehaving handler", function()
  it("quarantines each bad message with a readable reason, and handles the rest", function()
    local app = make_app({ ["bad.lua"] = BAD, ["counter.lua"] = COUNTER })
    eddy(app, "topic", "create", "orders", "--partitions", "2")
    local cases = { "tostring-raises", "tostring-loops", "tostring-works", "sethook",
                    "sethook-caught", "os-exit", "os-exit-caught", "binary-load",
                    "binary-mode", "setlocale", "backtrack", "gsub-backtrack", "emit-too-big",
                    "emit-too-big-caught", "many-emits", "gc-stop", "many-keys" }
    local values = {}
    for i, c in ipairs(cases) do
      values[#values + 1] = c
      values[#values + 1] = "ok-" .. i
    end
    produce(app, values)
    local r = H.run({ "run", app.file, "--drain" })
    assert.equal(0, r.code, r.err)
    local f = app.dir .. "/handlers/bad.lua:"
    local limit = "instruction limit of 5000000 exceeded"
    local want = {
      ["tostring-raises"] = { "error", "an error value whose __tostring failed {}", 2 },
      ["tostring-loops"] = { "error", "an error value whose __tostring failed {code=7}", 2 },
      ["tostring-works"] = { "error", "a readable error", 2 },
      ["sethook"] = { "error", f .. "12: debug.sethook is not available in eddy handlers", 2 },
      ["sethook-caught"] = { "instructions", limit, 2 },
      ["os-exit"] = { "error", f .. "14: os.exit is not available in eddy handlers: return," ..
                      " or raise an error, and eddy goes on", 2 },
      ["os-exit-caught"] = { "error", "still here after os.exit: false os.exit is not" ..
                             " available in eddy handlers: return, or raise an error, and" ..
                             " eddy goes on", 2 },
      ["binary-load"] = { "error", f .. "21: attempt to load a binary chunk (mode is 't')", 2 },
      ["binary-mode"] = { "error", f .. "23: load: binary chunks are not available in eddy" ..
                          " handlers", 2 },
      ["setlocale"] = { "error", f .. "24: os.setlocale can only read the locale in eddy" ..
                        " handlers (it belongs to the whole process)", 2 },
      ["backtrack"] = { "instructions", limit, 2 },
      ["gsub-backtrack"] = { "instructions", limit, 2 },
      ["emit-too-big"] = { "limit", f .. "32: ctx:emit: value of 2097152 bytes is over the" ..
                           " limit of 1048576 bytes of topic 'out'", 1 },
      ["many-emits"] = { "limit", f .. "40: ctx:emit: more than 1000 events from one" ..
                         " handler call (limits.emits)", 1 },
      ["many-keys"] = { "limit", f .. "50: ctx.state:set('k4097'): more than 4096 state" ..
                        " keys written in one handler call", 1 },
    }
    local got = quarantined(app, "bad")
    for value, w in pairs(want) do
      assert.same({ reason = w[1], error = w[2], attempts = w[3] }, got[value], value)
    end
    local n = 0
    for _ in pairs(got) do n = n + 1 end
    assert.equal(15, n, "quarantined: " .. table.concat((function()
      local t = {} for k in pairs(got) do t[#t + 1] = k end return t end)(), ", "))
    -- Everything else was handled, by both consumers, once.
    local bad, counter = state(app, "bad"), state(app, "counter")
    for i, c in ipairs(cases) do
      assert.equal("ok-" .. i, bad["ok-" .. i])
      assert.equal(1, counter["ok-" .. i])
      assert.equal(1, counter[c], c)
    end
    assert.equal(500000, bad["gc-stop"])
    -- The caught refusal let the handler emit its small event instead.
    local out = {}
    for _, m in ipairs(H.messages(app.data, "out")) do out[#out + 1] = m.key .. "=" .. m.value end
    assert.same({ "emit-too-big-caught=small" }, out)
  end)

  it("keeps the events one call emits within its memory limit", function()
    local app = make_app({ ["h.lua"] = [[
local eddy = require "eddy"
return eddy.consumer { name = "h", topics = { "orders" }, retry = { attempts = 1 },
  limits = { memory = "8MiB", emits = 10000000 },
  handle = function(msg, ctx)
    if msg.value == "flood" then
      for i = 1, 10000000 do ctx:emit("out", { value = "event " .. i }) end
    end
    if msg.value == "state-flood" then
      for i = 1, 1000 do ctx.state:set("k" .. i, string.rep("x", 100000)) end
    end
    ctx:emit("out", { value = msg.value })
  end }
]] })
    eddy(app, "topic", "create", "orders", "--partitions", "2")
    produce(app, { "flood", "state-flood", "after" })
    local r = H.run({ "run", app.file, "--drain" })
    assert.equal(0, r.code, r.err)
    assert.same({
      flood = { reason = "memory", error = "memory limit of 8388608 bytes exceeded", attempts = 1 },
      ["state-flood"] = { reason = "memory", error = "memory limit of 8388608 bytes exceeded",
                          attempts = 1 },
    }, quarantined(app, "h"))
    local out = {}
    for _, m in ipairs(H.messages(app.data, "out")) do out[#out + 1] = m.value end
    assert.same({ "after" }, out)
  end)

  it("stops a call at its timeout, even in a C function, and retries it", function()
    local app = make_app({ ["h.lua"] = [[
local eddy = require "eddy"
return eddy.consumer { name = "h", topics = { "orders" }, retry = { attempts = 2, backoff = 1 },
  limits = { timeout = "300ms", instructions = 1000000000000 },
  handle = function(msg, ctx)
    if msg.value == "sleep" then os.execute("sleep 1") end
    if msg.value == "pattern" then
      string.find(string.rep("a", 60), ".-.-.-.-.-.-.-.-.-.-b")
    end
    if msg.value == "loop" then
      local ok = pcall(function() while true do end end)
      ctx.state:set("caught", ok)
      while true do end
    end
    ctx.state:set(msg.key, "done")
  end }
]] })
    eddy(app, "topic", "create", "orders", "--partitions", "2")
    produce(app, { "sleep", "pattern", "loop", "fine" })
    local r = H.run({ "run", app.file, "--drain" })
    assert.equal(0, r.code, r.err)
    local t = { reason = "timeout", error = "timeout of 300ms exceeded", attempts = 2 }
    assert.same({ sleep = t, pattern = t, loop = t }, quarantined(app, "h"))
    assert.same({ fine = "done" }, state(app, "h"))
  end)

  it("reads back every state value it accepts, and refuses the rest at write", function()
    local app = make_app({ ["h.lua"] = [[
local eddy = require "eddy"
local function nest(n) local v = "leaf" for _ = 1, n do v = { v } end return v end
local function depth(v) local n = 0 while type(v) == "table" do v, n = v[1], n + 1 end return n end
return eddy.consumer { name = "h", topics = { "orders" }, retry = { attempts = 1 },
  limits = { memory = "256MiB" },
  handle = function(msg, ctx)
    if msg.value == "set-big" then
      local t = {}
      for i = 1, 1100000 do t[i] = i end
      ctx.state:set("big", t)
      local o = {}
      for i = 1, 200000 do o["k" .. i] = i end
      ctx.state:set("wide", o)
      ctx.state:set("deep", nest(99))
    elseif msg.value == "get-big" then
      local t, o = ctx.state:get("big"), ctx.state:get("wide")
      local n = 0
      for _ in pairs(o) do n = n + 1 end
      ctx.state:set("result", { #t, t[1100000], n, o.k200000, depth(ctx.state:get("deep")) })
    elseif msg.value == "too-deep" then
      ctx.state:set("deeper", nest(101))
    elseif msg.value == "same-text" then
      ctx.state:set("mixed", { [1] = "number", ["1"] = "string" })
    end
  end }
]] })
    eddy(app, "topic", "create", "orders", "--partitions", "2")
    produce(app, { "set-big", "get-big", "too-deep", "same-text" }, "one")
    local r = H.run({ "run", app.file, "--drain" })
    assert.equal(0, r.code, r.err)
    assert.same({ 1100000, 1100000, 200000, 200000, 99 }, state(app, "h").result)
    local q = quarantined(app, "h")
    assert.same({ ["too-deep"] = { reason = "error", attempts = 1, error = app.dir ..
      "/handlers/h.lua:21: ctx.state:set('deeper'): value is not JSON-able: nested too" ..
      " deeply (or a cycle)" },
      ["same-text"] = { reason = "error", attempts = 1, error = app.dir ..
      "/handlers/h.lua:23: ctx.state:set('mixed'): value is not JSON-able: two table keys" ..
      " written \"1\" (a number and a string)" } }, q)
  end)

  -- Lua runs finalizers with hooks off: one that loops could never be
  -- stopped, so handler code cannot make one.
  it("refuses a metatable with __gc, and goes on", function()
    local app = make_app({ ["h.lua"] = [[
local eddy = require "eddy"
return eddy.consumer { name = "h", topics = { "orders" }, retry = { attempts = 1 },
  handle = function(msg, ctx)
    if msg.value == "leave-a-finalizer" then
      setmetatable({}, { __gc = function() while true do end end })
    end
    local mt = {}
    setmetatable({}, mt).x = 1
    mt.__gc = function() while true do end end   -- too late: no finalizer
    ctx:emit("out", { value = msg.value })
  end }
]] }, "workers = 1")
    eddy(app, "topic", "create", "orders", "--partitions", "2")
    produce(app, { "leave-a-finalizer", "next", "and-next" }, "one")
    local r = H.run({ "run", app.file, "--drain" })
    assert.equal(0, r.code, r.err)
    assert.same({ ["leave-a-finalizer"] = { reason = "error", attempts = 1, error = app.dir ..
      "/handlers/h.lua:5: setmetatable: __gc metamethods are not available in eddy handlers" ..
      " (a finalizer runs where no limit can stop it)" } }, quarantined(app, "h"))
    local out = {}
    for _, m in ipairs(H.messages(app.data, "out")) do out[#out + 1] = m.value end
    assert.same({ "next", "and-next" }, out)
  end)

  it("answers eddy status while a reload runs a handler file's slow top level", function()
    local handler = [[
local eddy = require "eddy"
$SLOW
return eddy.consumer { name = "h", topics = { "orders" },
  handle = function(msg, ctx) ctx.state:set(msg.key, "$VERSION") end }
]]
    local function text(version, slow)
      return (handler:gsub("%$SLOW", slow):gsub("%$VERSION", version))
    end
    local app = make_app({ ["h.lua"] = text("v1", "") })
    eddy(app, "topic", "create", "orders", "--partitions", "2")
    local h = H.spawn({ "run", app.file })
    H.defer(finally, function() H.cleanup(h) end)
    produce(app, { "before" })
    -- (state list fails until eddy run has registered the consumer)
    H.wait_until(function() return pcall(state, app, "h") and state(app, "h").before == "v1" end,
                 20, "v1 to handle 'before'")
    -- Three seconds of work when the file loads: in each state that loads it.
    H.write(app.dir .. "/handlers/h.lua",
            text("v2", "local t0 = os.clock() while os.clock() - t0 < 3 do end"))
    local reload = H.spawn({ "reload", "--data", app.data })
    H.defer(finally, function() H.cleanup(reload) end)
    local slowest, looks = 0, 0
    while not H.exit_code(reload) do
      local t0 = now_ms()
      local st = H.run({ "status", "--data", app.data })
      assert.equal(0, st.code, st.err)
      slowest, looks = math.max(slowest, now_ms() - t0), looks + 1
    end
    assert.equal(0, H.exit_code(reload), H.read(reload.err))
    assert.truthy(H.read(reload.out):find("h ", 1, true), H.read(reload.out))
    assert.is_true(looks >= 3, "eddy status answered " .. looks .. " times during the reload")
    assert.is_true(slowest < 1000, "eddy status took " .. slowest .. " ms during the reload")
    produce(app, { "after" })
    H.wait_until(function() return state(app, "h").after == "v2" end, 20, "v2 to handle 'after'")
    assert.equal("v1", state(app, "h").before)
  end)
end)

