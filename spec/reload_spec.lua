--- Hot reload of handler scripts in `eddy run`: on a file change, on
-- SIGHUP and on `eddy reload`.  A reload loads the app and its handlers
-- again and switches every worker between two batches, or, when anything
-- fails to load, switches nothing; `eddy status` shows what runs.
--
-- Every test writes an app into a temporary directory, starts `eddy run`
-- in the background (stopped with SIGTERM, which commits and exits 0),
-- produces messages with `eddy produce` and reads back what the handlers
-- emitted (`eddy tail --json`), their state and the dead-letter store.
-- Handlers tag what they emit with their text's tag and `ctx.version`, so
-- the assertions say which version handled each message and never depend
-- on timing: the tests wait for real conditions (a status, a count, a log
-- line), never for a while.
--
-- Handler files that only a signal or `eddy reload` may reload are
-- symbolic links (handlers/NAME.lua) to files in a directory of their own,
-- outside every directory eddy watches: rewriting the linked file changes
-- the handler's text without a file event in a watched directory.
local cjson = require "cjson"
local core = require "eddy.core"
local system = require "system"
local H = require "helpers"

--- Runs fn when the test ends (as many as needed; see H.defer).
local function defer(fn) H.defer(finally, fn) end

--- How long to wait for a reload, a count or an exit before failing.
local WAIT = 10

--- Integral floats (lua-cjson decodes every number as a float) made
-- integers, in place, recursively; returns v.
local function ints(v)
  if type(v) == "number" then return math.tointeger(v) or v end
  if type(v) == "table" then
    for k, x in pairs(v) do v[k] = ints(x) end
  end
  return v
end

--- Decodes every line of s as JSON, with integral numbers as integers.
local function json_lines(s)
  local t = {}
  for i, line in ipairs(H.lines(s)) do t[i] = ints(cjson.decode(line)) end
  return t
end

--- Replaces $NAME in s by params.NAME (tostring'd); every $NAME must be
-- given.
local function fill(s, params)
  return (s:gsub("%$([%a_][%w_]*)", function(k)
    assert(params[k] ~= nil, "no value for $" .. k)
    return tostring(params[k])
  end))
end

--- Milliseconds since the epoch, now (the clock eddy stamps times with).
local function now_ms()
  return math.floor(system.gettime() * 1000)
end

--- The number of times needle (plain text) occurs in s.
local function occurrences(s, needle)
  local n, from = 0, 1
  while true do
    local _, e = s:find(needle, from, true)
    if not e then return n end
    n, from = n + 1, e + 1
  end
end

--- The line number of the first line of text holding needle.
local function line_of(text, needle)
  for i, line in ipairs(H.lines(text)) do
    if line:find(needle, 1, true) then return i end
  end
  error("no line holds " .. needle)
end

--- A sorted copy of list.
local function sorted(list)
  local t = table.move(list, 1, #list, 1, {})
  table.sort(t)
  return t
end

-- Handler texts --------------------------------------------------------------

--- Consumer NAME reads topic "in" and emits, for each message, to topic
-- OUT (same key) "NAME TAG VERSION VALUE": who handled it, with which
-- text (TAG) and which version (ctx.version).
local TAGGER = [[
local eddy = require "eddy"
return eddy.consumer {
  name = "$NAME",
  topics = { "in" },
  handle = function(msg, ctx)
    ctx:emit("$OUT", { key = msg.key, value = "$NAME $TAG " .. ctx.version .. " " .. msg.value })
  end,
}
]]

--- The text of a TAGGER consumer.
local function tagger(name, tag, out)
  return fill(TAGGER, { NAME = name, TAG = tag, OUT = out or "out" })
end

--- What a TAGGER text emits for value.
local function tagged(name, tag, text, value)
  return name .. " " .. tag .. " " .. core.hash(text) .. " " .. value
end

--- Handler texts that cannot load, each with the end of the one-line
-- error eddy gives for it (after the file's path); every one of them
-- holds a handle that would emit "NAME broken VALUE" were it ever run.
local BROKEN = {
  {
    kind = "a syntax error",
    text = [[
local eddy = require "eddy"
return eddy.consumer {
  name = "$NAME" topics = { "in" },
  handle = function(msg, ctx) ctx:emit("$OUT", { key = msg.key, value = "$NAME broken " .. msg.value }) end,
}
]],
    error = ":3: '}' expected (to close '{' at line 2) near 'topics'",
  },
  {
    kind = "an error raised while the file loads",
    text = [[
local eddy = require "eddy"
local function handle(msg, ctx) ctx:emit("$OUT", { key = msg.key, value = "$NAME broken " .. msg.value }) end
error("$NAME refuses to load")
return eddy.consumer { name = "$NAME", topics = { "in" }, handle = handle }
]],
    error = ":3: $NAME refuses to load",
  },
  {
    kind = "a consumer without handle",
    text = [[
local eddy = require "eddy"
return eddy.consumer {
  name = "$NAME",
  topics = { "in" },
}
]],
    error = ":2: consumer '$NAME': 'handle' is missing (a function(msg, ctx))",
  },
  {
    kind = "a consumer of a topic nobody has",
    text = [[
local eddy = require "eddy"
return eddy.consumer {
  name = "$NAME",
  topics = { "nope" },
  handle = function(msg, ctx) ctx:emit("$OUT", { key = msg.key, value = "$NAME broken " .. msg.value }) end,
}
]],
    error = ": consumer '$NAME' reads topic 'nope', which the app does not declare and the " ..
            "store does not have",
  },
}

--- Broken text number i (of BROKEN) for consumer name: its text and the
-- error eddy gives when file holds it.
local function broken(i, name, file, out)
  local b = BROKEN[i]
  local params = { NAME = name, OUT = out or "out" }
  return fill(b.text, params), file .. fill(b.error, params)
end

-- The app ------------------------------------------------------------------

--- Makes an app in a fresh temporary directory: `eddy.lua` with data
-- "data", `workers` and `topics` (name -> partitions), handler files
-- handlers/NAME.lua from `handlers` (name -> text) and, from `linked`
-- (name -> text), handlers/NAME.lua as a symbolic link to NAME.lua in a
-- directory of its own (app.ext).  Creates the topics in the store.
-- @treturn table `{ dir =, file = the app file, data = the data dir,
--   ext = the directory of linked files }`
local function make_app(t)
  local dir = H.tmpdir()
  defer(function() H.rmdir(dir) end)
  assert(os.execute("mkdir " .. H.quote(dir .. "/handlers")))
  local app = { dir = dir, file = dir .. "/eddy.lua", data = dir .. "/data" }
  local names = {}
  for name in pairs(t.topics) do names[#names + 1] = name end
  table.sort(names)
  local topics = {}
  for i, name in ipairs(names) do
    topics[i] = string.format("[%q] = { partitions = %d }", name, t.topics[name])
  end
  H.write(app.file, string.format(
    "return { data = 'data', workers = %d, handlers = { 'handlers/' }, topics = { %s } }\n",
    t.workers or 2, table.concat(topics, ", ")))
  for name, text in pairs(t.handlers or {}) do
    H.write(dir .. "/handlers/" .. name .. ".lua", text)
  end
  if t.linked then
    app.ext = H.tmpdir()
    defer(function() H.rmdir(app.ext) end)
    for name, text in pairs(t.linked) do
      H.write(app.ext .. "/" .. name .. ".lua", text)
      assert(os.execute("ln -s " .. H.quote(app.ext .. "/" .. name .. ".lua") .. " " ..
                        H.quote(dir .. "/handlers/" .. name .. ".lua")))
    end
  end
  for _, name in ipairs(names) do
    local r = H.run({ "--data", app.data, "topic", "create", name,
                      "--partitions", tostring(t.topics[name]) })
    assert(r.code == 0, "topic create " .. name .. ": " .. r.err)
  end
  return app
end

--- The path of handler file NAME.lua of app, as eddy names it.
local function handler_file(app, name)
  return app.dir .. "/handlers/" .. name .. ".lua"
end

--- Rewrites the linked handler NAME (outside the watched directories).
local function relink(app, name, text)
  H.write(app.ext .. "/" .. name .. ".lua", text)
end

--- Saves handlers/NAME.lua as an editor does: writes NAME.lua.tmp beside
-- it, then renames it over NAME.lua.
local function save(app, name, text)
  local file = handler_file(app, name)
  H.write(file .. ".tmp", text)
  assert(os.rename(file .. ".tmp", file))
end

-- Commands -------------------------------------------------------------------

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

--- Produces lines "KEY<tab>VALUE" to topic, in order, with one `eddy
-- produce`.
local function produce_lines(app, topic, lines)
  eddy(app, "produce", topic, "-K", "\t", { stdin = table.concat(lines, "\n") .. "\n" })
end

--- The number of messages in topic (0 while it has none).
local function count(app, topic)
  local t = H.topics(app.data)[topic]
  return t and t.messages or 0
end

--- Waits until topic holds n messages.
local function wait_count(app, topic, n)
  H.wait_until(function() return count(app, topic) >= n end, WAIT,
               n .. " messages in topic " .. topic)
end

--- The values of topic's messages, in offset order per partition.
local function values(app, topic)
  local t = {}
  for i, m in ipairs(H.messages(app.data, topic)) do t[i] = m.value end
  return t
end

--- A consumer's state, `state list --json` decoded: key -> value.
local function state(app, consumer)
  local r = H.run({ "--data", app.data, "state", "list", consumer, "--json" })
  if r.code ~= 0 then return {} end
  local t = {}
  for _, o in ipairs(json_lines(r.out)) do t[o.key] = o.value end
  return t
end

--- `eddy reload --data DIR` on the app's store: `{ code, out, err }`.
local function reload(app)
  local r = H.run({ "reload", "--data", app.data })
  return { code = r.code, out = r.out, err = r.err }
end

--- `eddy status --data DIR --json` on the app's store: the instances, or
-- nil and the command's result when it fails.
local function status_list(app)
  local r = H.run({ "status", "--data", app.data, "--json" })
  if r.code ~= 0 then return nil, r end
  return json_lines(r.out)
end

--- The status of the `eddy run` h, from `eddy status --json`; fails the
-- test when the command fails or does not list it.
local function status(app, h)
  local list, r = status_list(app)
  if not list then
    error(string.format("eddy status: exit %d: %s", r.code, r.err), 2)
  end
  for _, s in ipairs(list) do
    if s.pid == h.pid then return s end
  end
  error("eddy status does not list eddy run " .. h.pid, 2)
end

--- A status's last_reload without its time: `{ source =, ok =, error = }`,
-- or "null" when the status has none.
local function last_reload(st)
  local l = st.last_reload
  if l == cjson.null then return "null" end
  return { source = l.source, ok = l.ok, error = l.error }
end

--- A status's consumer name, or nil.
local function consumer(st, name)
  for _, c in ipairs(st.consumers) do
    if c.name == name then return c end
  end
end

--- The names of a status's consumers, in its order.
local function consumer_names(st)
  local t = {}
  for i, c in ipairs(st.consumers) do t[i] = c.name end
  return t
end

--- Waits until the status of h satisfies pred(status); returns it.
local function wait_status(app, h, pred, what)
  return H.wait_until(function()
    local list = status_list(app)
    for _, s in ipairs(list or {}) do
      if s.pid == h.pid and pred(s) then return s end
    end
  end, WAIT, what)
end

--- Starts `eddy run FILE` (the app's file by default) in the background
-- and waits until `eddy status` lists it.  Returns its handle and status.
local function start(app, file)
  local h = H.spawn({ "run", file or app.file })
  defer(function() H.cleanup(h) end)
  local last
  local st = H.poll(function()
    local code = H.exit_code(h)
    if code then
      error("eddy run exited " .. code .. " at start; its log:\n" .. (H.read(h.err) or ""), 0)
    end
    local list, r = status_list(app)
    last = r
    for _, s in ipairs(list or {}) do
      if s.pid == h.pid then return s end
    end
  end, WAIT)
  if not st then
    error(string.format("timed out after %gs waiting for eddy status to list eddy run %d; " ..
                        "eddy status: %s; the run's log:\n%s", WAIT, h.pid,
                        last and ("exit " .. last.code .. ": " .. last.err) or "listed others",
                        H.read(h.err) or ""), 2)
  end
  return h, st
end

--- The log (stderr) of eddy run h so far.
local function log_of(h)
  return H.read(h.err) or ""
end

--- Stops eddy run h with SIGTERM and asserts exit 0.  Returns its log.
local function stop(h)
  assert.is_true(H.kill(h.pid, "TERM"))
  local code = H.wait_exit(h, WAIT, "eddy run to exit after SIGTERM")
  local log = log_of(h)
  assert.equal(0, code, log)
  return log
end

local summary = H.summary

--- The log lines at level ERROR saying that a reload from source failed
-- with err and that the running version stays.
local function failed_reload_lines(log, source, err)
  local t = {}
  for _, o in ipairs(H.log_select(log, { level = "error" })) do
    local _, e = o.message:find("reload (" .. source .. "): " .. err, 1, true)
    if e and o.message:find("the running version stays", e + 1, true) then t[#t + 1] = o end
  end
  return t
end

-- Specs ----------------------------------------------------------------------

describe("eddy run: reload on SIGHUP", function()
  it("switches to the handler's new text: messages before run on v1, after on v2, each once",
     function()
    local V1, V2 = tagger("tagger", "v1"), tagger("tagger", "v2")
    local app = make_app { topics = { ["in"] = 2, out = 2 }, linked = { tagger = V1 } }
    local before, after = {}, {}
    for i = 1, 20 do
      before[i] = "k" .. i % 4 .. "\ta" .. i
      after[i] = "k" .. i % 4 .. "\tb" .. i
    end
    produce_lines(app, "in", before)
    local h, st = start(app)
    assert.same({ reloads = 0, last_reload = cjson.null, versions = { core.hash(V1) } },
                { reloads = st.reloads, last_reload = st.last_reload,
                  versions = { st.consumers[1].version } })
    wait_count(app, "out", 20)

    relink(app, "tagger", V2)
    assert.is_true(H.kill(h.pid, "HUP"))
    st = wait_status(app, h, function(s) return s.consumers[1].version == core.hash(V2) end,
                     "eddy status to show version 2 after SIGHUP")
    -- A status that shows version 2 shows the reload that brought it,
    -- done: what is produced from now on is handled by version 2.
    assert.same({ reloads = 1,
                  last_reload = { source = "SIGHUP", ok = true, error = cjson.null } },
                { reloads = st.reloads, last_reload = last_reload(st) })
    produce_lines(app, "in", after)
    wait_count(app, "out", 40)
    local log = stop(h)
    assert.equal(1, occurrences(log, "reload (SIGHUP): ok"), log)

    -- Per key, in the order produced: the first twenty by v1, the rest by v2.
    local want, got = {}, {}
    for i = 1, 20 do
      local k = "k" .. i % 4
      want[k] = want[k] or {}
      table.insert(want[k], tagged("tagger", "v1", V1, "a" .. i))
    end
    for i = 1, 20 do
      table.insert(want["k" .. i % 4], tagged("tagger", "v2", V2, "b" .. i))
    end
    for _, m in ipairs(H.messages(app.data, "out")) do
      got[m.key] = got[m.key] or {}
      table.insert(got[m.key], m.value)
    end
    assert.same(want, got)
  end)
end)

describe("eddy reload", function()
  --- Consumer NAME recording, on topic "seen", "NAME TAG VERSION VALUE".
  local function recorder(name, tag) return tagger(name, tag, "seen") end

  it("prints what changed, returns once every worker runs it; eddy status shows it", function()
    local A, B1, B2 = recorder("alpha", "a1"), recorder("beta", "b1"), recorder("beta", "b2")
    local G, D = recorder("gamma", "g1"), recorder("delta", "d1")
    local app = make_app {
      topics = { ["in"] = 1, seen = 1 },
      linked = { a = A, b = B1, c = G },
    }
    local t0 = now_ms()
    local h, st0 = start(app)
    local t1 = now_ms()
    assert.same({ pid = h.pid, app = app.file, data = app.data, workers = 2, reloads = 0,
                  last_reload = cjson.null },
                { pid = st0.pid, app = st0.app, data = st0.data, workers = st0.workers,
                  reloads = st0.reloads, last_reload = st0.last_reload })
    assert.is_true(t0 <= st0.started_at and st0.started_at <= t1,
                   "started_at " .. st0.started_at .. " is not within " .. t0 .. ".." .. t1)
    local loaded = {}
    for i, c in ipairs(st0.consumers) do
      assert.is_true(t0 <= c.loaded_at and c.loaded_at <= t1,
                     c.name .. ": loaded_at " .. c.loaded_at .. " is not within " .. t0 .. ".." .. t1)
      loaded[c.name] = c.loaded_at
      st0.consumers[i] = { name = c.name, version = c.version, file = c.file }
    end
    assert.same({
      { name = "alpha", version = core.hash(A), file = handler_file(app, "a") },
      { name = "beta", version = core.hash(B1), file = handler_file(app, "b") },
      { name = "gamma", version = core.hash(G), file = handler_file(app, "c") },
    }, st0.consumers)

    produce_lines(app, "in", { "k1\tm1", "k2\tm2", "k3\tm3" })
    wait_count(app, "seen", 9)

    -- beta changes; c.lua now defines delta instead of gamma; alpha stays.
    relink(app, "b", B2)
    relink(app, "c", D)
    local t2 = now_ms()
    local r = reload(app)
    local t3 = now_ms()
    assert.same({ code = 0, err = "",
                  out = "eddy run " .. h.pid .. ": reloaded: alpha " .. core.hash(A) ..
                        " (unchanged), beta " .. core.hash(B2) .. " (changed), delta " ..
                        core.hash(D) .. " (added), gamma (removed)\n" }, r)
    -- Produced after the command returned: handled by the new versions only.
    produce_lines(app, "in", { "k1\tm4", "k2\tm5", "k3\tm6" })

    local st1 = status(app, h)
    assert.same({ pid = h.pid, started_at = st0.started_at, reloads = 1,
                  last_reload = { source = "eddy reload", ok = true, error = cjson.null },
                  names = { "alpha", "beta", "delta" },
                  versions = { core.hash(A), core.hash(B2), core.hash(D) },
                  files = { handler_file(app, "a"), handler_file(app, "b"),
                            handler_file(app, "c") },
                  alpha_loaded_at = loaded.alpha },
                { pid = st1.pid, started_at = st1.started_at, reloads = st1.reloads,
                  last_reload = last_reload(st1),
                  names = consumer_names(st1),
                  versions = { st1.consumers[1].version, st1.consumers[2].version,
                               st1.consumers[3].version },
                  files = { st1.consumers[1].file, st1.consumers[2].file,
                            st1.consumers[3].file },
                  alpha_loaded_at = consumer(st1, "alpha").loaded_at })
    for _, t in ipairs({ { "reload at", st1.last_reload.at },
                         { "beta loaded_at", consumer(st1, "beta").loaded_at },
                         { "delta loaded_at", consumer(st1, "delta").loaded_at } }) do
      assert.is_true(t2 <= t[2] and t[2] <= t3,
                     t[1] .. " " .. t[2] .. " is not within " .. t2 .. ".." .. t3)
    end
    local text = H.run({ "status", "--data", app.data })
    assert.same({ 0, "" }, { text.code, text.err })
    for _, c in ipairs(st1.consumers) do
      assert.matches(c.name, text.out, 1, true)
      assert.matches(c.version, text.out, 1, true)
    end

    -- alpha 6, beta 3 + 3, gamma 3, delta 6: delta, new, starts from the
    -- beginning of "in".
    wait_count(app, "seen", 21)
    local log = stop(h)
    assert.equal(1, occurrences(log, "reload (eddy reload): ok"), log)
    local want = {}
    for i = 1, 6 do
      want[#want + 1] = tagged("alpha", "a1", A, "m" .. i)
      want[#want + 1] = tagged("delta", "d1", D, "m" .. i)
      want[#want + 1] = i <= 3 and tagged("beta", "b1", B1, "m" .. i)
                               or tagged("beta", "b2", B2, "m" .. i)
      if i <= 3 then want[#want + 1] = tagged("gamma", "g1", G, "m" .. i) end
    end
    assert.same(sorted(want), sorted(values(app, "seen")))
  end)

  it("asks every eddy run on the store, one line each", function()
    local ONE, TWO1, TWO2 = recorder("one", "o1"), recorder("two", "t1"), recorder("two", "t2")
    local app = make_app { topics = { ["in"] = 1, seen = 1 }, linked = { one = ONE, two = TWO1 } }
    -- A second app on the same store: consumer "two", its link moved to
    -- handlers2/.
    assert(os.execute("mkdir " .. H.quote(app.dir .. "/handlers2") .. " && mv " ..
                      H.quote(handler_file(app, "two")) .. " " ..
                      H.quote(app.dir .. "/handlers2/two.lua")))
    local file2 = app.dir .. "/eddy2.lua"
    H.write(file2, "return { data = 'data', workers = 1, handlers = { 'handlers2/' } }\n")
    local h1 = start(app)
    local h2 = start(app, file2)
    local list = assert(status_list(app), "eddy status failed")
    table.sort(list, function(a, b) return a.pid < b.pid end)
    local want = { { pid = h1.pid, app = app.file, names = { "one" } },
                   { pid = h2.pid, app = file2, names = { "two" } } }
    table.sort(want, function(a, b) return a.pid < b.pid end)
    local got = {}
    for i, s in ipairs(list) do got[i] = { pid = s.pid, app = s.app, names = consumer_names(s) } end
    assert.same(want, got)

    relink(app, "two", TWO2)
    local r = reload(app)
    assert.same({ 0, "" }, { r.code, r.err })
    assert.same(sorted({
      "eddy run " .. h1.pid .. ": reloaded: one " .. core.hash(ONE) .. " (unchanged)",
      "eddy run " .. h2.pid .. ": reloaded: two " .. core.hash(TWO2) .. " (changed)",
    }), sorted(H.lines(r.out)))
    assert.equal("\n", r.out:sub(-1))
    produce_lines(app, "in", { "k\tm1" })
    wait_count(app, "seen", 2)
    stop(h1)
    stop(h2)
    assert.same(sorted({ tagged("one", "o1", ONE, "m1"), tagged("two", "t2", TWO2, "m1") }),
                sorted(values(app, "seen")))
  end)
end)

describe("eddy reload of a version that cannot load", function()
  it("fails naming the file and line, switches nothing, logs an ERROR; a good one then loads",
     function()
    local V1, V2 = tagger("tagger", "v1"), tagger("tagger", "v2")
    local app = make_app { topics = { ["in"] = 1, out = 1 }, linked = { tagger = V1 } }
    local file = handler_file(app, "tagger")
    local h, st0 = start(app)
    local loaded_at = st0.consumers[1].loaded_at
    produce_lines(app, "in", { "k\tm0" })
    wait_count(app, "out", 1)

    for i, b in ipairs(BROKEN) do
      local text, err = broken(i, "tagger", file)
      relink(app, "tagger", text)
      local r = reload(app)
      assert.same({ code = 1, out = "", err = "eddy reload: eddy run " .. h.pid .. ": " .. err .. "\n" },
                  r, b.kind)
      -- Produced after the failed reload: handled by v1 still.
      produce_lines(app, "in", { "k\tm" .. i })
      wait_count(app, "out", 1 + i)
      local st = status(app, h)
      assert.same({ reloads = 0, version = core.hash(V1), loaded_at = loaded_at,
                    last_reload = { source = "eddy reload", ok = false, error = err } },
                  { reloads = st.reloads, version = st.consumers[1].version,
                    loaded_at = st.consumers[1].loaded_at, last_reload = last_reload(st) },
                  b.kind)
      assert.equal(1, #failed_reload_lines(log_of(h), "eddy reload", err),
                   b.kind .. ": no single ERROR line for the failed reload in:\n" .. log_of(h))
    end

    relink(app, "tagger", V2)
    assert.same({ code = 0, err = "",
                  out = "eddy run " .. h.pid .. ": reloaded: tagger " .. core.hash(V2) ..
                        " (changed)\n" }, reload(app))
    produce_lines(app, "in", { "k\tm5" })
    wait_count(app, "out", 6)
    local st = status(app, h)
    assert.same({ reloads = 1, version = core.hash(V2),
                  last_reload = { source = "eddy reload", ok = true, error = cjson.null } },
                { reloads = st.reloads, version = st.consumers[1].version,
                  last_reload = last_reload(st) })
    local log = stop(h)
    assert.equal(1, occurrences(log, "reload (eddy reload): ok"), log)
    local want = {}
    for i = 0, 4 do want[#want + 1] = tagged("tagger", "v1", V1, "m" .. i) end
    want[#want + 1] = tagged("tagger", "v2", V2, "m5")
    assert.same(want, values(app, "out"))
  end)
end)

describe("eddy run: reload on a file change", function()
  it("picks up a save, a new handler file and a deleted one; ignores hidden and non-.lua files",
     function()
    local T1, T2, T3 = tagger("tagger", "t1"), tagger("tagger", "t2"), tagger("tagger", "t3")
    local E1, E2 = tagger("extra", "e1"), tagger("extra", "e2")
    local app = make_app { topics = { ["in"] = 2, out = 2 }, handlers = { tagger = T1 } }
    local h = start(app)
    local function produce(...)
      local lines = {}
      for i, v in ipairs({ ... }) do lines[i] = "k" .. tonumber(v:sub(2)) % 2 .. "\t" .. v end
      produce_lines(app, "in", lines)
    end
    local function version(name)
      return function(s)
        local c = consumer(s, name)
        return c and c.version
      end
    end
    produce("m1")
    wait_count(app, "out", 1)

    -- A hidden file and a file that is not .lua, neither of which loads,
    -- then an editor-style save: the reload ignores the first two.
    H.write(app.dir .. "/handlers/.draft.lua", BROKEN[1].text)
    H.write(app.dir .. "/handlers/notes.txt", BROKEN[1].text)
    save(app, "tagger", T2)
    local st = wait_status(app, h, function(s) return version("tagger")(s) == core.hash(T2) end,
                           "the saved tagger to be loaded")
    -- The status that shows version 2 counts the reload that brought it.
    assert.same({ reloads = 1,
                  last_reload = { source = "file change", ok = true, error = cjson.null } },
                { reloads = st.reloads, last_reload = last_reload(st) })
    produce("m2")
    wait_count(app, "out", 2)

    -- A save that does not load: v2 stays.
    local text, err = broken(1, "tagger", handler_file(app, "tagger"))
    save(app, "tagger", text)
    st = wait_status(app, h, function(s) return last_reload(s).ok == false end,
                     "the broken save to fail to load")
    assert.same({ reloads = 1, version = core.hash(T2),
                  last_reload = { source = "file change", ok = false, error = err } },
                { reloads = st.reloads, version = version("tagger")(st),
                  last_reload = last_reload(st) })
    assert.equal(1, #failed_reload_lines(log_of(h), "file change", err),
                 "no single ERROR line for the failed reload in:\n" .. log_of(h))
    produce("m3")
    wait_count(app, "out", 3)
    save(app, "tagger", T3)
    wait_status(app, h, function(s) return version("tagger")(s) == core.hash(T3) end,
                "tagger v3 to be loaded")
    produce("m4")
    wait_count(app, "out", 4)

    -- A new handler file: consumer "extra", new, handles "in" from its
    -- beginning.
    save(app, "extra", E1)
    st = wait_status(app, h, function(s) return version("extra")(s) == core.hash(E1) end,
                     "the new handler file to be loaded")
    assert.same({ reloads = 3, names = { "extra", "tagger" } },
                { reloads = st.reloads, names = consumer_names(st) })
    wait_count(app, "out", 8)

    -- Deleted: extra stops; what comes meanwhile waits for it.
    assert(os.remove(handler_file(app, "extra")))
    st = wait_status(app, h, function(s) return not consumer(s, "extra") end,
                     "the deleted handler's consumer to be removed")
    assert.same({ reloads = 4, names = { "tagger" } },
                { reloads = st.reloads, names = consumer_names(st) })
    produce("m5", "m6")
    wait_count(app, "out", 10)

    -- Back (another text): it handles what was produced while it was
    -- gone, from its stored offsets, each message once.
    save(app, "extra", E2)
    st = wait_status(app, h, function(s) return version("extra")(s) == core.hash(E2) end,
                     "the handler file added back to be loaded")
    assert.equal(5, st.reloads)
    wait_count(app, "out", 12)
    local log = stop(h)
    assert.equal(5, occurrences(log, "reload (file change): ok"), log)
    assert.same(sorted({
      tagged("tagger", "t1", T1, "m1"), tagged("tagger", "t2", T2, "m2"),
      tagged("tagger", "t2", T2, "m3"), tagged("tagger", "t3", T3, "m4"),
      tagged("tagger", "t3", T3, "m5"), tagged("tagger", "t3", T3, "m6"),
      tagged("extra", "e1", E1, "m1"), tagged("extra", "e1", E1, "m2"),
      tagged("extra", "e1", E1, "m3"), tagged("extra", "e1", E1, "m4"),
      tagged("extra", "e2", E2, "m5"), tagged("extra", "e2", E2, "m6"),
    }), sorted(values(app, "out")))
  end)
end)

describe("eddy reload while a message waits for its retry", function()
  -- v1 fails every message (10 attempts, up to 2s between them); v2
  -- handles "good" and fails "poison", with 2 attempts.
  local V1 = [[
local eddy = require "eddy"
return eddy.consumer {
  name = "retrier",
  topics = { "t" },
  retry = { attempts = 10, backoff = "2s", max_backoff = "2s" },
  handle = function(msg, ctx)
    error("v1 fails " .. msg.value)
  end,
}
]]
  local V2 = [[
local eddy = require "eddy"
return eddy.consumer {
  name = "retrier",
  topics = { "t" },
  retry = { attempts = 2, backoff = "10ms", max_backoff = "10ms" },
  handle = function(msg, ctx)
    if msg.value == "poison" then error("v2 fails " .. msg.value) end
    local runs = (ctx.state:get(msg.value) or { runs = 0 }).runs + 1
    ctx.state:set(msg.value, { version = ctx.version, attempt = ctx.attempt, runs = runs })
  end,
}
]]

  it("retries it on the new version, under the new retry policy, once", function()
    local app = make_app { topics = { t = 1 }, linked = { retrier = V1 } }
    local file = handler_file(app, "retrier")
    local ids = {}
    for _, m in ipairs({ { "a", "good" }, { "b", "poison" } }) do
      ids[m[2]] = cjson.decode(eddy(app, "produce", "t", "--key", m[1], "--json", m[2])).id
    end
    local h = start(app)
    local function failed_once(log, id)
      return #H.log_select(log, { level = "warn", message_id = id, attempt = 1,
                                  message = "^retrying: " }) > 0
    end
    H.wait_until(function()
      local log = log_of(h)
      return failed_once(log, ids.good) and failed_once(log, ids.poison)
    end, WAIT, "v1 to fail both messages")

    relink(app, "retrier", V2)
    assert.same({ code = 0, err = "",
                  out = "eddy run " .. h.pid .. ": reloaded: retrier " .. core.hash(V2) ..
                        " (changed)\n" }, reload(app))
    H.wait_until(function()
      return state(app, "retrier").good and #json_lines(eddy(app, "dlq", "list", "--json")) == 1
    end, WAIT, "v2 to handle good and quarantine poison")
    local log = stop(h)

    -- How many times v1 failed each (once, unless its first retry came
    -- before the reload).
    local v1_failures = {}
    local v1_error = file .. ":" .. line_of(V1, "v1 fails") .. ": v1 fails "
    for name, id in pairs(ids) do
      v1_failures[name] = 0
      for _, o in ipairs(H.log_select(log, { level = "warn", message_id = id })) do
        if o.message == "retrying: " .. v1_error .. name then
          v1_failures[name] = v1_failures[name] + 1
        end
      end
      assert.is_true(v1_failures[name] >= 1, name .. " never failed on v1:\n" .. log)
    end
    assert.same({ good = { version = core.hash(V2), attempt = v1_failures.good + 1, runs = 1 } },
                state(app, "retrier"))
    local q = json_lines(eddy(app, "dlq", "list", "--json"))
    assert.same({ id = ids.poison, version = core.hash(V2), attempts = v1_failures.poison + 1,
                  error = file .. ":" .. line_of(V2, "v2 fails") .. ": v2 fails poison" },
                { id = q[1].id, version = q[1].version, attempts = q[1].attempts,
                  error = q[1].error })
    local s = summary(log)
    assert.same({ handled = 1, quarantined = 1 }, { handled = s.handled, quarantined = s.quarantined })
  end)

  -- v1 waits an hour before its retry; v2's backoff is 10 ms.  Without
  -- the new policy applied to the waiting message, it would not run again
  -- before the test times out.
  it("reschedules the waiting retry by the new version's backoff", function()
    local SLOW = [[
local eddy = require "eddy"
return eddy.consumer {
  name = "slow", topics = { "t" },
  retry = { attempts = 5, backoff = "1h", max_backoff = "1h" },
  handle = function(msg, ctx) error("not yet") end,
}
]]
    local FAST = [[
local eddy = require "eddy"
return eddy.consumer {
  name = "slow", topics = { "t" },
  retry = { attempts = 5, backoff = "10ms", max_backoff = "10ms" },
  handle = function(msg, ctx) ctx.state:set(msg.value, { attempt = ctx.attempt }) end,
}
]]
    local app = make_app { topics = { t = 1 }, linked = { slow = SLOW } }
    local id = cjson.decode(eddy(app, "produce", "t", "--key", "k", "--json", "m1")).id
    local h = start(app)
    H.wait_until(function()
      return #H.log_select(log_of(h), { level = "warn", message_id = id }) > 0
    end, WAIT, "the first attempt to fail")
    relink(app, "slow", FAST)
    assert.equal(0, reload(app).code)
    H.wait_until(function() return state(app, "slow").m1 ~= nil end, WAIT,
                 "the waiting message to be retried by the new version")
    assert.same({ m1 = { attempt = 2 } }, state(app, "slow"))
    stop(h)
  end)
end)

describe("eddy reload and eddy status with no eddy run on the store", function()
  it("exit 1 naming the store as given: never run, stopped, and killed", function()
    local app = make_app {
      topics = { t = 1 },
      handlers = { noop = [[
local eddy = require "eddy"
return eddy.consumer { name = "noop", topics = { "t" }, handle = function(msg, ctx) end }
]] },
    }
    local function assert_none(what)
      for _, c in ipairs({
        { { "reload", "--data", app.data }, nil, "eddy reload", app.data },
        { { "reload", "--data", "data" }, { cwd = app.dir }, "eddy reload", "data" },
        { { "status", "--data", app.data }, nil, "eddy status", app.data },
        { { "status", "--data", app.data, "--json" }, nil, "eddy status", app.data },
        { { "status", "--data", "./data" }, { cwd = app.dir }, "eddy status", "./data" },
      }) do
        local r = H.run(c[1], c[2])
        assert.same({ code = 1, out = "",
                      err = c[3] .. ": no eddy run is running on '" .. c[4] .. "'\n" },
                    { code = r.code, out = r.out, err = r.err },
                    what .. ": eddy " .. table.concat(c[1], " "))
      end
    end
    assert_none("never run")

    local h = start(app)
    stop(h)
    assert_none("after SIGTERM")

    h = start(app)
    assert.is_true(H.kill(h.pid, "KILL"))
    H.wait_exit(h, WAIT, "eddy run to die of SIGKILL")
    assert_none("after SIGKILL")
  end)
end)

describe("eddy run: reloads under a continuous stream", function()
  -- Valid version N emits "SEQ vN" to "handled" for each message, after
  -- some arithmetic that makes the workers slower than the producer, so
  -- that reloads come while a backlog is being handled.
  local STRESS = [[
local eddy = require "eddy"
return eddy.consumer {
  name = "stress",
  topics = { "in" },
  handle = function(msg, ctx)
    local x = 0
    for i = 1, $WORK do x = x + i end
    ctx:emit("handled", { key = msg.key, value = msg.value .. " v$N" })
  end,
}
]]

  it("handles 50,000 keyed messages once each, in key order, by live versions only, over " ..
     "20 valid and broken reloads", function()
    local ROUNDS, CHUNK, KEYS, WORK = 20, 2500, 200, 3000
    local N = ROUNDS * CHUNK
    local texts = { [0] = fill(STRESS, { N = 0, WORK = WORK }) }
    local app = make_app {
      workers = 2, topics = { ["in"] = 4, handled = 4 }, linked = { stress = texts[0] },
    }
    local file = handler_file(app, "stress")
    local h = start(app)
    -- floor[r]: the version live when chunk r was produced (every reload
    -- before it returned); its messages may be handled by it or later ones.
    local floor, live, seq = {}, 0, 0
    for r = 1, ROUNDS do
      floor[r] = live
      local lines = {}
      for i = 1, CHUNK do
        seq = seq + 1
        lines[i] = "key-" .. seq % KEYS .. "\t" .. seq
      end
      produce_lines(app, "in", lines)
      if r % 2 == 0 then
        local n = r // 2
        texts[n] = fill(STRESS, { N = n, WORK = WORK })
        relink(app, "stress", texts[n])
        assert.same({ code = 0, err = "",
                      out = "eddy run " .. h.pid .. ": reloaded: stress " .. core.hash(texts[n]) ..
                            " (changed)\n" }, reload(app), "round " .. r)
        live = n
      else
        local text, err = broken((r // 2) % 3 + 1, "stress", file, "handled")
        relink(app, "stress", text)
        assert.same({ code = 1, out = "",
                      err = "eddy reload: eddy run " .. h.pid .. ": " .. err .. "\n" },
                    reload(app), "round " .. r)
      end
    end
    H.wait_until(function() return count(app, "handled") >= N end, 60,
                 N .. " messages in topic handled")
    local log = stop(h)
    local s = summary(log)
    assert.same({ handled = N, quarantined = 0 }, { handled = s.handled, quarantined = s.quarantined })
    assert.equal(ROUNDS // 2, occurrences(log, "reload (eddy reload): ok"))

    local seen, last, problems = {}, {}, {}
    local function problem(text)
      if #problems < 10 then problems[#problems + 1] = text end
    end
    local msgs = H.messages(app.data, "handled")
    assert.equal(N, #msgs)
    for _, m in ipairs(msgs) do
      local sq, v = m.value:match("^(%d+) v(%d+)$")
      sq, v = tonumber(sq), tonumber(v)
      if not sq or v > ROUNDS // 2 then
        problem("not a valid version's output: " .. m.value)
      else
        seen[sq] = (seen[sq] or 0) + 1
        if m.key ~= "key-" .. sq % KEYS then problem(m.value .. " under key " .. m.key) end
        local round = (sq - 1) // CHUNK + 1
        if v < floor[round] then
          problem(sq .. " produced after v" .. floor[round] .. " was live, handled by v" .. v)
        end
        local l = last[m.key]
        if l and (sq <= l.seq or v < l.version) then
          problem("key " .. m.key .. ": " .. l.seq .. " v" .. l.version .. " then " .. m.value)
        end
        last[m.key] = { seq = sq, version = v }
      end
    end
    for i = 1, N do
      if seen[i] ~= 1 then problem(i .. " handled " .. (seen[i] or 0) .. " times") end
    end
    assert.same({}, problems)
  end)
end)
