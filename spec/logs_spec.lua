--- eddy run's log lines: one JSON object per line when stderr is not a
-- terminal (these specs' stderr is a file), readable text on a terminal or
-- on request; the fields a handler's ctx.log and a failing handler's
-- retry carry (docs/metrics.md, "Logs").
local cjson = require "cjson"
local H = require "helpers"

--- Runs fn when the test ends (as many as needed; see H.defer).
local function defer(fn) H.defer(finally, fn) end

local TP = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
local TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
local TIME = "^%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%d%.%d%d%dZ$"

-- "good" logs with fields (one named like a standard key), "bad" fails
-- twice and is quarantined, "odd" logs bytes that are not JSON as they are,
-- "long" more than a line holds.
local HANDLER = [[
local eddy = require "eddy"
return eddy.consumer {
  name = "counter",
  topics = { "orders" },
  retry = { attempts = 2, backoff = "10ms", max_backoff = "10ms" },
  handle = function(msg, ctx)
    if msg.value == "bad" then error("no good", 0) end
    if msg.value == "odd" then
      ctx.log.warn('say "hi"\n\1\255\\', { bytes = "a\0b\200" })
      return
    end
    if msg.value == "long" then
      ctx.log.error(string.rep('\u{e9}"', 3000),
                    { big = string.rep("x", 5000), small = "y", [string.rep("k", 3000)] = "z" })
      return
    end
    ctx.log.info("counted", { customer = "ada", n = 7, ratio = 0.5, vip = true,
                              message = "mine" })
  end,
}
]]

--- An app with the counter handler, its topic made, and four messages on
-- it: good (with a traceparent and a correlation id), bad, odd and long,
-- each of its own key.  Returns the app and the produced messages' ids by value.
local function make_app()
  local dir = H.tmpdir()
  defer(function() H.rmdir(dir) end)
  assert(os.execute("mkdir " .. H.quote(dir .. "/handlers")))
  H.write(dir .. "/eddy.lua", "return { data = 'data', workers = 1, handlers = { 'handlers/' }," ..
          " topics = { orders = { partitions = 1 } } }\n")
  H.write(dir .. "/handlers/count.lua", HANDLER)
  local app = { dir = dir, file = dir .. "/eddy.lua", data = dir .. "/data" }
  local ids = {}
  local function produce(...)
    local r = H.run({ "--data", app.data, "produce", "orders", "--json", ... })
    assert(r.code == 0, r.err)
    return cjson.decode(r.out).id
  end
  assert.equal(0, H.run({ "--data", app.data, "topic", "create", "orders" }).code)
  ids.good = produce("--key", "a", "-H", "traceparent=" .. TP, "-H", "eddy-correlation-id=corr-1",
                     "good")
  ids.bad = produce("--key", "b", "bad")
  ids.odd = produce("--key", "c", "odd")
  ids.long = produce("--key", "d", "long")
  return app, ids
end

--- Runs `eddy run APP --drain` with more args and opts (H.run's), which
-- must exit 0; returns its stderr.
local function drain(app, args, opts)
  local argv = { "run", app.file, "--drain" }
  for _, a in ipairs(args or {}) do argv[#argv + 1] = a end
  local r = H.run(argv, opts)
  assert(r.code == 0, "eddy run exited " .. r.code .. ":\n" .. r.err)
  return r.err
end

--- o without its time (checked apart: it changes).
local function timeless(o)
  assert.matches(TIME, o.time)
  local t = {}
  for k, v in pairs(o) do if k ~= "time" then t[k] = v end end
  return t
end

--- The one log line whose fields are those of want (see H.log_select).
local function one(log, want)
  local found = H.log_select(log, want)
  assert(#found == 1, #found .. " log lines like that, not 1, in:\n" .. log)
  return found[1]
end

describe("eddy run's log", function()
  describe("by default, when stderr is not a terminal", function()
    it("is one JSON object per line, each with a time, a level and a message", function()
      local app = make_app()
      local log = drain(app)
      local lines = H.log_lines(log)
      assert.equal(#H.lines(log), #lines)
      local levels = {}
      for _, o in ipairs(lines) do
        assert.matches(TIME, o.time)
        assert.is_string(o.message)
        levels[o.level] = true
      end
      assert.same({ info = true, warn = true, error = true }, levels)
      assert.equal("eddy run: app=" .. app.file .. " data=" .. app.data ..
                   " workers=1 consumers=1 partitions=1 (drain)", lines[1].message)
      local start = timeless(lines[2])
      assert.matches("^%x+$", start.version)
      assert.same({ level = "info",
                    message = "file=" .. app.dir .. "/handlers/count.lua version=" .. start.version,
                    consumer = "counter", version = start.version }, start)
      assert.same({ received = 4, handled = 3, retried = 1, quarantined = 1 },
                  { received = H.summary(log).received, handled = H.summary(log).handled,
                    retried = H.summary(log).retried, quarantined = H.summary(log).quarantined })
      assert.equal("info", lines[#lines].level)
      assert.matches("^eddy run: stopped after ", lines[#lines].message)
    end)

    it("gives a handler's ctx.log line its consumer, message id, correlation and trace ids, " ..
       "and the handler's fields", function()
      local app, ids = make_app()
      local log = drain(app)
      local version = one(log, { consumer = "counter", message = "^file=" }).version
      -- A field named like a standard key is renamed, never repeated.
      assert.same({ level = "info", message = "counted", consumer = "counter",
                    message_id = ids.good, correlation_id = "corr-1", trace_id = TRACE_ID,
                    version = version, customer = "ada", n = 7, ratio = 0.5, vip = true,
                    ["field.message"] = "mine" },
                  timeless(one(log, { message = "^counted$" })))
      -- A message with no correlation id is its own; one with no
      -- traceparent has no trace id.  Bytes JSON cannot hold are escaped
      -- or, not being UTF-8, replaced.
      assert.same({ level = "warn", message = 'say "hi"\n\1\u{FFFD}\\', consumer = "counter",
                    message_id = ids.odd, correlation_id = ids.odd, version = version,
                    bytes = "a\0b\u{FFFD}" },
                  timeless(one(log, { message_id = ids.odd })))
      -- The raw line: one line, the escapes JSON has.
      local raw = log:match('[^\n]*"message_id":"' .. ids.odd:gsub("%-", "%%-") .. '"[^\n]*')
      assert.truthy(raw:find('"message":"say \\"hi\\"\\n\\u0001\\ufffd\\\\"', 1, true), raw)
      -- Too much for a line: the message cut at 4 KiB, a long value cut, a
      -- long key left out (cut keys could repeat), the rest kept.
      assert.same({ level = "error", message = string.rep('\u{e9}"', 1365), consumer = "counter",
                    message_id = ids.long, correlation_id = ids.long, version = version,
                    big = string.rep("x", 2047), small = "y" },
                  timeless(one(log, { message_id = ids.long })))
    end)

    it("gives a failing handler's retry and quarantine lines the consumer, the message and " ..
       "where it is, and the attempt", function()
      local app, ids = make_app()
      local log = drain(app)
      assert.same({ level = "warn", message = "retrying: no good", consumer = "counter",
                    message_id = ids.bad, correlation_id = ids.bad, topic = "orders",
                    partition = 0, offset = 1, attempt = 1 },
                  timeless(one(log, { level = "warn", message_id = ids.bad })))
      assert.same({ level = "error", message = "quarantined to orders.dlq: no good",
                    consumer = "counter", message_id = ids.bad, correlation_id = ids.bad,
                    topic = "orders", partition = 0, offset = 1, attempt = 2 },
                  timeless(one(log, { level = "error", message_id = ids.bad })))
    end)
  end)

  describe("as text", function()
    --- Checks that log is the text log of the app's run: the lines they
    -- always were.
    local function check_text(app, ids, log)
      local lines = H.lines(log)
      local t0 = "%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%d%.%d%d%dZ "
      local function plain(s) return (s:gsub("%p", "%%%0")) end
      assert.matches("^" .. t0 .. plain("INFO  eddy run: app=" .. app.file .. " data=" ..
                                        app.data .. " workers=1 consumers=1 partitions=1 " ..
                                        "(drain)") .. "$", lines[1])
      local version = lines[2]:match("^" .. t0 .. "INFO  consumer=counter file=" ..
                                     plain(app.dir) .. "/handlers/count%.lua version=(%x+)$")
      assert(version, lines[2])
      local function find(pattern)
        for _, l in ipairs(lines) do
          if l:find("^" .. t0 .. pattern) then return l end
        end
        error("no line like " .. pattern .. " in:\n" .. log, 2)
      end
      -- ctx.log: the message quoted, then the fields, in the table's order.
      local counted = find("INFO  " .. plain("consumer=counter id=" .. ids.good ..
                                             " correlation_id=corr-1 version=" .. version ..
                                             ' msg="counted"'))
      local fields = {}
      for k, v in counted:match('msg="counted"(.*)$'):gmatch(" ([%w_]+)=(%S+)") do fields[k] = v end
      assert.same({ customer = "ada", n = "7", ratio = "0.5", vip = "true", message = "mine" },
                  fields)
      find(plain("WARN  consumer=counter id=" .. ids.bad .. " topic=orders partition=0 " ..
                 "offset=1 attempt=1 retrying: no good") .. "$")
      find(plain("ERROR consumer=counter id=" .. ids.bad .. " topic=orders partition=0 " ..
                 "offset=1 attempts=2 quarantined to orders.dlq: no good") .. "$")
      assert.matches("^" .. t0 .. "INFO  eddy run: stopped after [%d.]+s: received=4 " ..
                     "handled=3 deduplicated=0 retried=1 quarantined=1 emitted=0 relayed=0 " ..
                     "conflicts=0$", lines[#lines])
    end

    it("with --log-format text: the lines as they always were", function()
      local app, ids = make_app()
      check_text(app, ids, drain(app, { "--log-format", "text" }))
    end)

    it("with EDDY_LOG_FORMAT=text, which --log-format overrides", function()
      local app, ids = make_app()
      check_text(app, ids, drain(app, {}, { env = { EDDY_LOG_FORMAT = "text" } }))
      app = make_app()
      local log = drain(app, { "--log-format", "json" }, { env = { EDDY_LOG_FORMAT = "text" } })
      assert.equal(#H.lines(log), #H.log_lines(log))
    end)

    it("on a terminal, by default", function()
      local app, ids = make_app()
      -- script(1) runs eddy on a pseudo-terminal and copies what it
      -- writes there (with CR LF line ends) to its standard output.  Not
      -- under the sanitizers' LD_PRELOAD (make test-asan): script is not
      -- eddy, and their leak check at its exit fails it.
      local r = H.exec({ "env", "-u", "LD_PRELOAD", "script", "-q", "-e", "-c",
                         H.quote(H.bin) .. " run " .. H.quote(app.file) .. " --drain",
                         "/dev/null" })
      assert.equal(0, r.code, r.out)
      check_text(app, ids, (r.out:gsub("\r\n", "\n")))
    end)
  end)

  describe("refuses", function()
    it("a --log-format that is not json or text, in one line, before anything", function()
      local app = make_app()
      local r = H.run({ "run", app.file, "--drain", "--log-format", "yaml" })
      assert.same({ code = 2, out = "",
                    err = "eddy run: --log-format must be json or text, got 'yaml' " ..
                          "(see 'eddy run --help')\n" }, r)
      -- The consumer never started.
      assert.same({ code = 1, out = "", err = "eddy state list: unknown consumer 'counter'\n" },
                  H.run({ "--data", app.data, "state", "list", "counter" }))
    end)

    it("an EDDY_LOG_FORMAT that is not json or text, in one line", function()
      local app = make_app()
      local r = H.run({ "run", app.file, "--drain" }, { env = { EDDY_LOG_FORMAT = "JSON" } })
      assert.same({ code = 2, out = "",
                    err = "eddy run: EDDY_LOG_FORMAT must be json or text, got 'JSON' " ..
                          "(see 'eddy run --help')\n" }, r)
    end)
  end)
end)
