--- No crash loop: a message whose handler call takes eddy run down in a
-- way no limit can catch in the process (a segfault in a C module, a C
-- call stuck past its timeout) is quarantined with reason crashed, naming
-- how many runs it took down, after at most two such runs; a supervisor
-- that restarts eddy converges, and nothing else is lost or doubled.
local H = require "helpers"

local function defer(fn) H.defer(finally, fn) end

-- The C module that crashes on purpose (test/crashmod.c).
local CPATH = (os.getenv("EDDY_BUILD") or "build") .. "/test/?.so"

local function make_app(handler)
  return H.app(finally, "return { data = 'data', workers = 2, handlers = { 'handlers/' }," ..
               " topics = { orders = { partitions = 2 } } }\n",
               { ["handlers/h.lua"] = (handler:gsub("%$CPATH", CPATH)) })
end

local eddy = H.eddy_ok

local function produce(app, lines)
  local r = H.run({ "produce", "orders", "--data", app.data, "-K", "\t" },
                  { stdin = table.concat(lines, "\n") .. "\n" })
  assert(r.code == 0, r.err)
end

-- Counts each message by key, and emits it; values name what to do.
local HANDLER = [[
package.cpath = "$CPATH;" .. package.cpath
local crash = require "crashmod"
local eddy = require "eddy"
return eddy.consumer { name = "h", topics = { "orders" },
  limits = { timeout = "300ms" },
  handle = function(msg, ctx)
    ctx.state:set(msg.key, (ctx.state:get(msg.key) or 0) + 1)
    ctx:emit("out", { key = msg.key, value = msg.value })
    if msg.value == "segv" then crash.segv() end
    if msg.value == "abort" then crash.abort() end
    if msg.value == "hang" then crash.hang() end
  end }
]]

--- Runs `eddy run --drain` as a supervisor would, until it exits 0 (at
-- most `max` runs).  Returns the exit status and the log of each run.
local function supervise(app, max)
  local runs = {}
  for _ = 1, max do
    local r = H.run({ "run", app.file, "--drain" })
    -- The shell that ran it may add a line of its own ("Segmentation
    -- fault"): the log is eddy's JSON lines.
    r.err = r.err:gsub("[^\n]*\n", function(l) return l:sub(1, 1) == "{" and l or "" end)
    runs[#runs + 1] = r
    if r.code == 0 then break end
  end
  return runs
end

local function quarantined(app)
  local out = {}
  for _, e in ipairs(H.dlq(app.data)) do
    out[#out + 1] = { value = e.value, reason = e.reason, error = e.error }
  end
  return out
end

--- Every key's count, and the values on topic out, in order per key.
local function effects(app)
  local counts = H.state(app.data, "h")
  local out = {}
  for _, m in ipairs(H.messages(app.data, "out")) do
    out[m.key] = (out[m.key] and out[m.key] .. " " or "") .. m.value
  end
  return counts, out
end

describe("eddy run under a supervisor", function()
  for _, case in ipairs({
    { "segv", "SIGSEGV" },
    { "abort", "SIGABRT" },
  }) do
    it("quarantines a message whose call crashes the process (" .. case[1] .. ") after two runs",
       function()
      local app = make_app(HANDLER)
      eddy(app, "topic", "create", "orders", "--partitions", "2")
      produce(app, { "a\tbefore", "b\tother", "a\t" .. case[1], "a\tafter", "b\tlater" })
      local runs = supervise(app, 5)
      assert.equal(3, #runs)
      for i = 1, 2 do
        assert.is_not.equal(0, runs[i].code)
        assert.equal(1, #H.log_select(runs[i].err, { level = "info",
          message = "^eddy run: app=" }), runs[i].err)
      end
      assert.equal(0, runs[3].code, runs[3].err)
      -- The second and third starts said what the last run was handling.
      local said = H.log_select(runs[2].err, { level = "warn",
        message = "^the last run ended during a handler call on orders%[%d%]@%d+ %(" ..
                  case[2] .. " in the call%): 1 run so far; it is quarantined if it" ..
                  " happens again$" })
      assert.equal(1, #said, runs[2].err)
      assert.equal("h", said[1].consumer)
      said = H.log_select(runs[3].err, { level = "warn",
        message = "%(" .. case[2] .. " in the call%): 2 runs so far, so it is" ..
                  " quarantined %(reason crashed%)$" })
      assert.equal(1, #said, runs[3].err)
      assert.same({ { value = case[1], reason = "crashed", error = "the handler took eddy run" ..
                      " down 2 times on this message (last: " .. case[2] .. ")" } },
                  quarantined(app))
      -- Every other message was handled once, in order; the crashing
      -- one's effects never committed.
      local counts, out = effects(app)
      assert.same({ a = 2, b = 2 }, counts)
      assert.same({ a = "before after", b = "other later" }, out)
      -- Nothing is left for the next run, which handles nothing.
      local again = H.run({ "run", app.file, "--drain" })
      assert.equal(0, again.code, again.err)
      assert.equal(0, H.summary(again.err).handled)
      assert.equal(0, #H.log_select(again.err, { level = "warn" }), again.err)
    end)
  end

  it("exits when a call is stuck in C past its timeout, and quarantines it after two runs",
     function()
    local app = make_app(HANDLER)
    eddy(app, "topic", "create", "orders", "--partitions", "2")
    produce(app, { "a\tbefore", "a\thang", "a\tafter", "b\tother" })
    local runs = supervise(app, 5)
    assert.equal(3, #runs)
    for i = 1, 2 do
      assert.equal(1, runs[i].code)
      assert.equal(1, #H.log_select(runs[i].err, { level = "error",
        message = "^worker %d: a handler call has run [%d.]+s, past its timeout of 0%.3s," ..
                  " inside a C function that cannot be stopped: eddy run exits so that the" ..
                  " next start quarantines the message if it happens again$" }), runs[i].err)
    end
    assert.equal(0, runs[3].code, runs[3].err)
    assert.same({ { value = "hang", reason = "crashed", error = "the handler took eddy run" ..
                    " down 2 times on this message (last: stuck past its timeout in a C" ..
                    " function)" } }, quarantined(app))
    local counts, out = effects(app)
    assert.same({ a = 2, b = 1 }, counts)
    assert.same({ a = "before after", b = "other" }, out)
  end)

  it("does not count a SIGKILL from outside against the message in flight", function()
    local app = make_app([[
local eddy = require "eddy"
return eddy.consumer { name = "h", topics = { "orders" },
  handle = function(msg, ctx)
    ctx.state:set(msg.key, (ctx.state:get(msg.key) or 0) + 1)
    ctx:emit("out", { key = msg.key, value = msg.value })
    if msg.value == "slow" and os.getenv("MARK") then
      local f = assert(io.open(os.getenv("MARK"), "w"))
      f:close()
      os.execute("sleep 30")
    end
  end }
]])
    eddy(app, "topic", "create", "orders", "--partitions", "2")
    produce(app, { "a\tbefore", "a\tslow", "a\tafter" })
    local mark = app.dir .. "/in-the-call"
    -- Killed twice while the same message is in its call: still handled.
    for _ = 1, 2 do
      os.remove(mark)
      local h = H.spawn({ "run", app.file }, { env = { MARK = mark } })
      defer(function() H.cleanup(h) end)
      H.wait_until(function() return H.exists(mark) end, 30, "the handler to be in its call")
      assert.is_true(H.kill(h.pid, "KILL"))
      H.wait_exit(h, 10)
    end
    -- Without MARK, the slow message is quick.
    local r = H.run({ "run", app.file, "--drain" })
    assert.equal(1, #H.log_select(r.err, { level = "warn",
      message = "^the last run ended during a handler call on orders%[%d%]@1 %(the process" ..
                " was killed %(SIGKILL or out of memory%): not counted against the message%)$" }),
      r.err)
    assert.same({}, quarantined(app))
    local counts, out = effects(app)
    assert.same({ a = 3 }, counts)
    assert.same({ a = "before slow after" }, out)
  end)
end)
