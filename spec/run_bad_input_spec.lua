--- `eddy run` on a bad app: a bad app file, a bad handler file, a consumer
-- reading a topic nobody has, a bad --workers.  Each is one line on stderr
-- naming the file and the problem, exit status 1 (2 for a usage error),
-- and nothing consumed: a correct app run afterwards on the same store
-- handles every message.
local H = require "helpers"
local path = require "pl.path"

--- Runs fn when the test ends (as many as needed; see H.defer).
local function defer(fn) H.defer(finally, fn) end

--- Writes files (a map path -> text, paths relative to a fresh temporary
-- directory, their directories made as needed) into dir, or into a fresh
-- temporary directory removed when the test ends.  Returns the directory.
local function tree(files, dir)
  if not dir then
    dir = H.tmpdir()
    defer(function() H.rmdir(dir) end)
  end
  for name, text in pairs(files) do
    local file = dir .. "/" .. name
    os.execute("mkdir -p " .. H.quote(path.dirname(file)))
    H.write(file, text)
  end
  return dir
end

--- The app of every test: its store in "data" beside it, one worker.
local APP = 'return { data = "data", workers = 1, handlers = { "handlers/" } }\n'

--- The correct handler: consumer "c" records each message's value as a
-- state key, so `state list c` shows what it handled.
local GOOD = [[
local eddy = require "eddy"
return eddy.consumer {
  name = "c",
  topics = "orders",
  handle = function(msg, ctx) ctx.state:set(msg.value, msg.offset) end,
}
]]

local VALUES = { "m1", "m2", "m3", "m4", "m5", "m6" }

--- eddy with --data DIR/data.
local function eddy(dir, args, opts)
  local argv = { "--data", dir .. "/data" }
  for _, a in ipairs(args) do argv[#argv + 1] = a end
  return H.run(argv, opts)
end

--- A temporary app (eddy.lua is APP unless files has one) whose store
-- holds topic "orders" (2 partitions) with the messages VALUES.
local function seeded_app(files)
  if not files["eddy.lua"] then files["eddy.lua"] = APP end
  local dir = tree(files)
  local r = eddy(dir, { "topic", "create", "orders", "--partitions", "2" })
  assert(r.code == 0, r.err)
  r = eddy(dir, { "produce", "orders" }, { stdin = table.concat(VALUES, "\n") .. "\n" })
  assert(r.code == 0, r.err)
  return dir
end

--- Runs `eddy run DIR/eddy.lua` (plus args) and asserts exit status 1 and
-- exactly message on stderr (one line: no log line, so no consuming
-- started) and nothing on stdout.
local function run_fails(dir, message, args)
  local argv = { "run", dir .. "/eddy.lua" }
  for _, a in ipairs(args or {}) do argv[#argv + 1] = a end
  local r = H.run(argv)
  assert.equal("eddy run: " .. message .. "\n", r.err)
  assert.equal(1, r.code)
  assert.equal("", r.out)
end

--- The names of the topics of dir's store, sorted.
local function topic_names(dir)
  local t = {}
  for name in pairs(H.topics(dir .. "/data")) do t[#t + 1] = name end
  table.sort(t)
  return t
end

--- Asserts that the failed run left the store of app dir as it was and
-- consumed nothing: its topics are `topics` (default: "orders" alone) and
-- consumer "c" is unknown to it; then a correct app (handlers/x.lua
-- replaced by GOOD, eddy.lua by APP) handles every message, once.
local function assert_nothing_consumed(dir, topics)
  local r = eddy(dir, { "state", "list", "c" })
  assert.same({ topics = topics or { "orders" },
                state_list = { code = 1, out = "",
                               err = "eddy state list: unknown consumer 'c'\n" } },
              { topics = topic_names(dir),
                state_list = { code = r.code, out = r.out, err = r.err } })
  os.execute("rm -rf -- " .. H.quote(dir .. "/handlers"))
  tree({ ["eddy.lua"] = APP, ["handlers/x.lua"] = GOOD }, dir)
  r = H.run({ "run", dir .. "/eddy.lua", "--drain" })
  assert.equal(0, r.code, r.err)
  assert.matches("received=6 handled=6 deduplicated=0", r.err, 1, true)
  r = eddy(dir, { "state", "list", "c" })
  assert.equal(0, r.code, r.err)
  local handled = {}
  for _, line in ipairs(H.lines(r.out)) do handled[#handled + 1] = line:match("^([^\t]*)\t") end
  assert.same(VALUES, handled)
end

local NOT_CONSUMER = " (return eddy.consumer{...} or a list of them)"

describe("eddy run", function()
  describe("fails with one line naming the file and the problem, consuming nothing,", function()
    it("when the app file is missing", function()
      local dir = seeded_app({ ["handlers/x.lua"] = GOOD })
      local r = H.run({ "run", dir .. "/nope.lua", "--data", dir .. "/data" })
      assert.same({ code = 1, out = "",
                    err = "eddy run: cannot open app '" .. dir ..
                          "/nope.lua': No such file or directory\n" },
                  { code = r.code, out = r.out, err = r.err })
      assert_nothing_consumed(dir)
    end)

    it("when the default app file ./eddy.lua is missing", function()
      local dir = seeded_app({ ["handlers/x.lua"] = GOOD })
      local sub = dir .. "/empty"
      os.execute("mkdir " .. H.quote(sub))
      local r = H.run({ "run", "--data", dir .. "/data" }, { cwd = sub })
      assert.same({ code = 1, out = "",
                    err = "eddy run: cannot open app './eddy.lua': No such file or directory\n" },
                  { code = r.code, out = r.out, err = r.err })
      assert_nothing_consumed(dir)
    end)

    it("when the app file has a syntax error", function()
      local dir = seeded_app({
        ["eddy.lua"] = 'return {\n  data = "data",\n  handlers = { "handlers/" }\n' ..
                       '  workers = 1,\n}\n',
        ["handlers/x.lua"] = GOOD,
      })
      run_fails(dir, dir .. "/eddy.lua:4: '}' expected (to close '{' at line 1) near 'workers'")
      assert_nothing_consumed(dir)
    end)

    it("when the app file has an unknown option, with a did-you-mean", function()
      local dir = seeded_app({
        ["eddy.lua"] = 'return { data = "data", hanlders = { "handlers/" } }\n',
        ["handlers/x.lua"] = GOOD,
      })
      run_fails(dir, dir .. "/eddy.lua: unknown option 'hanlders' (did you mean 'handlers'?)")
      assert_nothing_consumed(dir)
    end)

    it("when a handler file has a syntax error", function()
      local dir = seeded_app({
        ["handlers/x.lua"] = 'local eddy = require "eddy"\n\nreturn eddy.consumer {\n' ..
                             '  name = "c"\n  topics = "orders",\n}\n',
      })
      run_fails(dir, dir .. "/handlers/x.lua:5: '}' expected (to close '{' at line 3)" ..
                     " near 'topics'")
      assert_nothing_consumed(dir)
    end)

    it("when a handler file has a syntax error beside a good one", function()
      -- The good consumer loads first (files in name order) and must not
      -- start consuming either.
      local dir = seeded_app({
        ["handlers/a.lua"] = GOOD,
        ["handlers/x.lua"] = "return {\n",
      })
      run_fails(dir, dir .. "/handlers/x.lua:2: unexpected symbol near <eof>")
      assert_nothing_consumed(dir)
    end)

    it("when a handler file returns something that is not a consumer", function()
      local dir = seeded_app({ ["handlers/x.lua"] = "return 42\n" })
      run_fails(dir, dir .. "/handlers/x.lua: returns a number, not a consumer" .. NOT_CONSUMER)
      assert_nothing_consumed(dir)
    end)

    it("when a handler file returns a plain table instead of a consumer", function()
      local dir = seeded_app({
        ["handlers/x.lua"] = 'return { name = "c", topics = "orders",' ..
                             ' handle = function() end }\n',
      })
      run_fails(dir, dir .. "/handlers/x.lua: returns a table, not a consumer" .. NOT_CONSUMER)
      assert_nothing_consumed(dir)
    end)

    it("when a consumer has no handle", function()
      local dir = seeded_app({
        ["handlers/x.lua"] = 'local eddy = require "eddy"\n\n' ..
                             '-- The handle function is missing.\n' ..
                             'return eddy.consumer {\n  name = "c",\n  topics = { "orders" },\n}\n',
      })
      run_fails(dir, dir .. "/handlers/x.lua:4: consumer 'c': 'handle' is missing" ..
                     " (a function(msg, ctx))")
      assert_nothing_consumed(dir)
    end)

    it("on an unknown consumer option, with a did-you-mean", function()
      local dir = seeded_app({
        ["handlers/x.lua"] = 'local eddy = require "eddy"\n\nreturn eddy.consumer {\n' ..
                             '  name = "c",\n  topics = "orders",\n' ..
                             '  retyr = { attempts = 3 },\n  handle = function() end,\n}\n',
      })
      run_fails(dir, dir .. "/handlers/x.lua:3: consumer 'c': unknown option 'retyr'" ..
                     " (did you mean 'retry'?)")
      assert_nothing_consumed(dir)
    end)

    it("on an unknown retry option, with a did-you-mean", function()
      local dir = seeded_app({
        ["handlers/x.lua"] = 'local eddy = require "eddy"\nreturn eddy.consumer {\n' ..
                             '  name = "c", topics = "orders", retry = { atempts = 3 },\n' ..
                             '  handle = function() end,\n}\n',
      })
      run_fails(dir, dir .. "/handlers/x.lua:2: consumer 'c': unknown retry option" ..
                     " 'atempts' (did you mean 'attempts'?)")
      assert_nothing_consumed(dir)
    end)

    it("when a consumer reads a topic neither the app nor the store has", function()
      -- Its other topic exists: the failed run must not create that
      -- topic's dead-letter topic either.
      local dir = seeded_app({
        ["handlers/x.lua"] = 'local eddy = require "eddy"\nreturn eddy.consumer {\n' ..
                             '  name = "c", topics = { "orders", "nope" },\n' ..
                             '  handle = function() end,\n}\n',
      })
      run_fails(dir, dir .. "/handlers/x.lua: consumer 'c' reads topic 'nope', which the" ..
                     " app does not declare and the store does not have")
      assert_nothing_consumed(dir)
    end)

    it("when a consumer reads a missing topic and the app creates another one", function()
      -- A failed run prints no log line before its error, and creates
      -- nothing (not even the app's topics).
      local dir = seeded_app({
        ["eddy.lua"] = 'return { data = "data", workers = 1, handlers = { "handlers/" },\n' ..
                       '         topics = { audit = { partitions = 1 } } }\n',
        ["handlers/x.lua"] = 'local eddy = require "eddy"\nreturn eddy.consumer {\n' ..
                             '  name = "c", topics = "nope", handle = function() end,\n}\n',
      })
      run_fails(dir, dir .. "/handlers/x.lua: consumer 'c' reads topic 'nope', which the" ..
                     " app does not declare and the store does not have")
      assert_nothing_consumed(dir)
    end)

    it("when the second of two consumers reads a missing topic", function()
      -- The first consumer is fine: it must not be registered, nor its
      -- dead-letter topic created, nor anything consumed.
      local dir = seeded_app({
        ["handlers/a.lua"] = GOOD,
        ["handlers/x.lua"] = 'local eddy = require "eddy"\nreturn eddy.consumer {\n' ..
                             '  name = "d", topics = "nope", handle = function() end,\n}\n',
      })
      run_fails(dir, dir .. "/handlers/x.lua: consumer 'd' reads topic 'nope', which the" ..
                     " app does not declare and the store does not have")
      assert_nothing_consumed(dir)
    end)

    it("when loading a handler file raises a table", function()
      local dir = seeded_app({ ["handlers/x.lua"] = "error({ code = 42 })\n" })
      run_fails(dir, dir .. "/handlers/x.lua: error while loading: a table value")
      assert_nothing_consumed(dir)
    end)

    it("when loading a handler file raises nothing (error())", function()
      local dir = seeded_app({ ["handlers/x.lua"] = "error()\n" })
      run_fails(dir, dir .. "/handlers/x.lua: error while loading: (error object is nil)")
      assert_nothing_consumed(dir)
    end)

    it("when loading a handler file raises a string", function()
      local dir = seeded_app({
        ["handlers/x.lua"] = 'local eddy = require "eddy"\n\n' ..
                             'local config = assert(nil, "no config for c")\n',
      })
      run_fails(dir, dir .. "/handlers/x.lua:3: no config for c")
      assert_nothing_consumed(dir)
    end)
  end)

  describe("--workers", function()
    for _, case in ipairs({
      { "0", "--workers must be between 1 and 64, got 0" },
      { "65", "--workers must be between 1 and 64, got 65" },
      { "abc", "--workers expects a whole number, got 'abc'" },
    }) do
      it("rejects " .. case[1] .. " as a usage error (exit status 2), consuming nothing",
         function()
        local dir = seeded_app({ ["handlers/x.lua"] = GOOD })
        local r = H.run({ "run", dir .. "/eddy.lua", "--drain", "--workers", case[1] })
        assert.same({ code = 2, out = "",
                      err = "eddy run: " .. case[2] .. " (see 'eddy run --help')\n" },
                    { code = r.code, out = r.out, err = r.err })
        assert_nothing_consumed(dir)
      end)
    end
  end)
end)
