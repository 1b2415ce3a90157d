--- eddy.consumer, eddy.permanent and eddy.app: consumer definitions, app
-- files and handler files, their normal forms and every message a mistake
-- in them gives.  Runs from the repository root (as test/run.sh does):
-- fixture paths in messages are relative to it.
local H = require "helpers"
local path = require "pl.path"
local core = require "eddy.core"
local eddy = require "eddy"
local app = require "eddy.app"

local FIX = "spec/fixtures/apps/"

--- Runs fn when the test ends (as many as needed; see H.defer).
local function defer(fn) H.defer(finally, fn) end

--- The message eddy.consumer raises for def (without a position: pcall
-- calls it directly, so there is no Lua caller to point at).
local function consumer_error(def)
  local ok, err = pcall(eddy.consumer, def)
  assert(not ok, "eddy.consumer accepted the definition")
  return err
end

--- A valid definition with the fields of t added (or replaced).
local function def(t)
  local d = { name = "x", topics = { "orders" }, handle = function() end }
  for k, v in pairs(t or {}) do d[k] = v end
  return d
end

--- Writes files (a map path -> text, paths relative to a fresh temporary
-- directory, their directories made as needed) and returns the directory,
-- removed when the test ends.
local function tree(files)
  local dir = H.tmpdir()
  defer(function() H.rmdir(dir) end)
  for name, text in pairs(files) do
    local file = dir .. "/" .. name
    os.execute("mkdir -p " .. H.quote(path.dirname(file)))
    H.write(file, text)
  end
  return dir
end

local COUNT = [[
local eddy = require "eddy"
return eddy.consumer { name = "count", topics = "orders", handle = function() end }
]]

--- A consumer file defining one consumer called name.
local function consumer_file(name)
  return 'local eddy = require "eddy"\n' ..
         'return eddy.consumer { name = "' .. name .. '", topics = "orders", ' ..
         'handle = function() end }\n'
end

--- app.load of a temporary app: eddy.lua is app_text, plus files.
-- Returns the result of app.load and the directory.
local function load_tree(app_text, files)
  files = files or {}
  files["eddy.lua"] = app_text
  local dir = tree(files)
  local a, err = app.load(dir .. "/eddy.lua")
  return a, err, dir
end

--- The error of app.load on a temporary app (fails the test if it loads).
local function tree_error(app_text, files)
  local a, err, dir = load_tree(app_text, files)
  assert(a == nil, "the app loaded")
  return err, dir
end

--- The error of app.load on fixture app `case`.
local function fixture_error(case)
  local a, err = app.load(FIX .. case .. "/eddy.lua")
  assert(a == nil, "fixture " .. case .. " loaded")
  return err
end

--- The names of a list of consumers, in order.
local function names(consumers)
  local t = {}
  for i, c in ipairs(consumers) do t[i] = c.name end
  return t
end

describe("eddy", function()
  describe(".consumer()", function()
    it("returns a new, normalized consumer with every default", function()
      local handle = function() end
      local d = { name = "order-counter", topics = { "orders" }, handle = handle }
      local c = eddy.consumer(d)
      assert.are_not.equal(d, c)
      assert.is_true(eddy.is_consumer(c))
      assert.equal(eddy.Consumer, getmetatable(c))
      assert.equal("eddy.consumer 'order-counter'", tostring(c))
      assert.same({
        name = "order-counter", topics = { "orders" }, handle = handle,
        retry = { attempts = 5, backoff_ms = 100, max_backoff_ms = 30000 },
        from = "beginning",
        limits = { instructions = 50000000, memory = 64 * 1024 * 1024, timeout_ms = 30000,
                   emits = 100000 },
      }, setmetatable(c, nil))
      assert.is_nil(c.dedupe)
      assert.is_nil(c.dlq)
      -- The topics are copied: changing the definition changes nothing.
      d.topics[1] = "payments"
      assert.same({ "orders" }, c.topics)
    end)

    it("normalizes every option given", function()
      local dedupe = function(msg) return msg.key end
      local c = eddy.consumer {
        name = "A.b_c-9", topics = "orders", handle = function() end, dedupe = dedupe,
        retry = { attempts = 3, backoff = "250ms", max_backoff = "1m" },
        dlq = "dead.letters", from = "end",
        limits = { instructions = 1e6, memory = "2MiB", timeout = "1500ms", emits = 20 },
        sandbox = "strict",
      }
      assert.same({ "orders" }, c.topics)
      assert.equal(dedupe, c.dedupe)
      assert.same({ attempts = 3, backoff_ms = 250, max_backoff_ms = 60000 }, c.retry)
      assert.equal("dead.letters", c.dlq)
      assert.equal("end", c.from)
      assert.same({ instructions = 1000000, memory = 2097152, timeout_ms = 1500, emits = 20 },
                  c.limits)
      assert.equal("integer", math.type(c.limits.instructions))
      assert.equal("strict", c.sandbox)
    end)

    it("takes durations and sizes as integers, and whole floats", function()
      local c = eddy.consumer(def {
        retry = { attempts = 2.0, backoff = 0, max_backoff = 5000 },
        limits = { instructions = 1000, memory = 1048576, timeout = 10, emits = 1.0 },
      })
      assert.same({ attempts = 2, backoff_ms = 0, max_backoff_ms = 5000 }, c.retry)
      assert.equal("integer", math.type(c.retry.attempts))
      assert.same({ instructions = 1000, memory = 1048576, timeout_ms = 10, emits = 1 }, c.limits)
    end)

    it("raises max_backoff's default to backoff when only backoff is given", function()
      assert.same({ attempts = 5, backoff_ms = 60000, max_backoff_ms = 60000 },
                  eddy.consumer(def { retry = { backoff = "1m" } }).retry)
    end)

    it("takes dedupe = false as dedupe turned off", function()
      assert.is_false(eddy.consumer(def { dedupe = false }).dedupe)
    end)

    it("accepts names of 1 and 200 characters", function()
      assert.equal("a", eddy.consumer(def { name = "a" }).name)
      local long = string.rep("n", 200)
      assert.equal(long, eddy.consumer(def { name = long }).name)
    end)

    it("raises at the caller's position", function()
      local line = debug.getinfo(1, "l").currentline + 1
      local ok, err = pcall(function() eddy.consumer { name = "x" } end)
      assert.is_false(ok)
      local src = debug.getinfo(1, "S").short_src
      assert.equal(src .. ":" .. line .. ": consumer 'x': 'topics' is missing" ..
                   " (a topic name or a list of them)", err)
    end)

    describe("rejects", function()
      local cases = {
        { "a definition that is not a table", "orders",
          "consumer: the definition must be a table (eddy.consumer { name = ...," ..
          " topics = ..., handle = ... }), got string" },
        { "a missing name", { topics = "orders", handle = print },
          "consumer: 'name' is missing" },
        { "a name that is not a string", def { name = 42 },
          "consumer: 'name' must be a string, got number" },
        { "an empty name", def { name = "" }, "consumer: 'name' is empty" },
        { "a name over 200 characters", def { name = string.rep("n", 201) },
          "consumer '" .. string.rep("n", 40) .. "...': name is longer than 200 characters" },
        { "a name with a space", def { name = "a b" },
          "consumer 'a b': invalid name (use letters, digits, '.', '_' and '-')" },
        { "a name with a slash", def { name = "a/b" },
          "consumer 'a/b': invalid name (use letters, digits, '.', '_' and '-')" },
        { "an unknown option, with a did-you-mean", def { retyr = {} },
          "consumer 'x': unknown option 'retyr' (did you mean 'retry'?)" },
        { "a misspelt handle before saying handle is missing",
          { name = "x", topics = "t", handel = print },
          "consumer 'x': unknown option 'handel' (did you mean 'handle'?)" },
        { "a misspelt name", { nmae = "x" },
          "consumer: unknown option 'nmae' (did you mean 'name'?)" },
        { "a differently cased option", def { Topics = "t" },
          "consumer 'x': unknown option 'Topics' (did you mean 'topics'?)" },
        { "an unknown option far from any", def { colour = "red" },
          "consumer 'x': unknown option 'colour' (known: consumes, dedupe, dlq, emits, from," ..
          " handle, limits, name, retry, sandbox, topics)" },
        { "emits that is not a list of types", def { topics = "t", emits = { "A", 3 } },
          "consumer 'x': 'emits' item 2 must be a non-empty string, got 3" },
        { "an empty consumes", def { topics = "t", consumes = {} },
          "consumer 'x': 'consumes' must be an event type or a non-empty list of them, got an " ..
          "empty table" },
        { "a positional item", def { "orders" },
          "consumer 'x': unexpected item [1] (options are given as name = value)" },
        { "missing topics", { name = "x", handle = print },
          "consumer 'x': 'topics' is missing (a topic name or a list of them)" },
        { "topics of the wrong type", def { topics = 3 },
          "consumer 'x': 'topics' must be a topic name or a list of them, got number" },
        { "an empty topic list", def { topics = {} },
          "consumer 'x': 'topics' must list at least one topic" },
        { "topics with a named key", def { topics = { "a", main = "b" } },
          "consumer 'x': 'topics' must be a list of topic names, found key 'main'" },
        { "a topic that is not a string", def { topics = { "a", true } },
          "consumer 'x': topics[2] must be a topic name (a string), got boolean" },
        { "an invalid topic name", def { topics = { "or ders" } },
          "consumer 'x': topic name 'or ders' is invalid" ..
          " (use letters, digits, '.', '_' and '-')" },
        { "an empty topic name", def { topics = "" },
          "consumer 'x': topic name '' is empty" },
        { "a reserved topic name", def { topics = ".." },
          "consumer 'x': topic name '..' is reserved" },
        { "a topic name over 249 characters", def { topics = string.rep("t", 250) },
          "consumer 'x': topic name '" .. string.rep("t", 250) ..
          "' is longer than 249 characters" },
        { "a topic listed twice", def { topics = { "a", "b", "a" } },
          "consumer 'x': topic 'a' is listed twice" },
        { "a missing handle", { name = "x", topics = "orders" },
          "consumer 'x': 'handle' is missing (a function(msg, ctx))" },
        { "a handle that is not a function", def { handle = "count" },
          "consumer 'x': 'handle' must be a function, got string" },
        { "dedupe = true", def { dedupe = true },
          "consumer 'x': 'dedupe' must be a function(msg) or false, got true" },
        { "a dedupe string", def { dedupe = "id" },
          "consumer 'x': 'dedupe' must be a function(msg) or false, got string" },
        { "retry that is not a table", def { retry = 3 },
          "consumer 'x': 'retry' must be a table ({ attempts =, backoff =," ..
          " max_backoff = }), got number" },
        { "an unknown retry option", def { retry = { attemps = 1 } },
          "consumer 'x': unknown retry option 'attemps' (did you mean 'attempts'?)" },
        { "an unknown retry option far from any", def { retry = { jitter = true } },
          "consumer 'x': unknown retry option 'jitter' (known: attempts, backoff," ..
          " max_backoff)" },
        { "zero attempts", def { retry = { attempts = 0 } },
          "consumer 'x': retry.attempts must be an integer >= 1, got 0" },
        { "fractional attempts", def { retry = { attempts = 1.5 } },
          "consumer 'x': retry.attempts must be an integer >= 1, got 1.5" },
        { "attempts as a string", def { retry = { attempts = "3" } },
          "consumer 'x': retry.attempts must be an integer >= 1, got '3'" },
        { "a backoff that is not a duration", def { retry = { backoff = "10 parsecs" } },
          "consumer 'x': retry.backoff '10 parsecs' is not a duration (e.g. 250ms, 30s, 5m)" },
        { "a negative backoff", def { retry = { backoff = -5 } },
          "consumer 'x': retry.backoff must be a duration (e.g. 250ms, 30s, 5m) or a" ..
          " number of milliseconds >= 0, got -5" },
        { "a max_backoff of the wrong type", def { retry = { max_backoff = {} } },
          "consumer 'x': retry.max_backoff must be a duration (e.g. 250ms, 30s, 5m) or a" ..
          " number of milliseconds >= 0, got table" },
        { "max_backoff below backoff", def { retry = { backoff = "1m", max_backoff = "5s" } },
          "consumer 'x': retry.max_backoff (5000ms) is less than retry.backoff (60000ms)" },
        { "a dlq that is not a string", def { dlq = true },
          "consumer 'x': 'dlq' must be a topic name (a string), got boolean" },
        { "an invalid dlq topic name", def { dlq = "dead letters" },
          "consumer 'x': dlq topic name 'dead letters' is invalid" ..
          " (use letters, digits, '.', '_' and '-')" },
        { "a dlq it consumes", def { topics = { "a", "b" }, dlq = "b" },
          "consumer 'x': 'dlq' cannot be a topic it consumes ('b')" },
        { "an unknown 'from'", def { from = "start" },
          "consumer 'x': 'from' must be \"beginning\" or \"end\", got 'start'" },
        { "a 'from' that is not a string", def { from = 0 },
          "consumer 'x': 'from' must be \"beginning\" or \"end\", got 0" },
        { "limits that are not a table", def { limits = "64MiB" },
          "consumer 'x': 'limits' must be a table ({ instructions =, memory =, timeout =," ..
          " emits = }), got string" },
        { "an unknown limits option", def { limits = { memroy = "8MiB" } },
          "consumer 'x': unknown limits option 'memroy' (did you mean 'memory'?)" },
        { "too few instructions", def { limits = { instructions = 999 } },
          "consumer 'x': limits.instructions must be an integer >= 1000, got 999" },
        { "instructions as a string", def { limits = { instructions = "1e6" } },
          "consumer 'x': limits.instructions must be an integer >= 1000, got '1e6'" },
        { "a memory limit that is not a size", def { limits = { memory = "64 megs" } },
          "consumer 'x': limits.memory '64 megs' is not a size (e.g. 512KiB, 64MiB, 1GiB)" },
        { "a memory limit of the wrong type", def { limits = { memory = true } },
          "consumer 'x': limits.memory must be a size (e.g. 64MiB) or a number of bytes," ..
          " got boolean" },
        { "a memory limit under 1 MiB", def { limits = { memory = "512KiB" } },
          "consumer 'x': limits.memory must be at least 1MiB (1048576 bytes), got '512KiB'" },
        { "a memory limit under 1 MiB in bytes", def { limits = { memory = 1000 } },
          "consumer 'x': limits.memory must be at least 1MiB (1048576 bytes), got 1000" },
        { "a timeout that is not a duration", def { limits = { timeout = "soon" } },
          "consumer 'x': limits.timeout must be a duration of at least 10ms (e.g. 500ms, 30s," ..
          " 5m) or a number of milliseconds, got 'soon'" },
        { "a timeout under 10ms", def { limits = { timeout = 5 } },
          "consumer 'x': limits.timeout must be a duration of at least 10ms (e.g. 500ms, 30s," ..
          " 5m) or a number of milliseconds, got 5" },
        { "an emits limit under 1", def { limits = { emits = 0 } },
          "consumer 'x': limits.emits must be an integer >= 1, got 0" },
        { "an emits limit that is not an integer", def { limits = { emits = 2.5 } },
          "consumer 'x': limits.emits must be an integer >= 1, got 2.5" },
        { "a sandbox that is not strict or default", def { sandbox = "tight" },
          "consumer 'x': 'sandbox' must be \"strict\" or \"default\", got 'tight'" },
      }
      for _, case in ipairs(cases) do
        it(case[1], function()
          assert.equal(case[3], consumer_error(case[2]))
        end)
      end
    end)
  end)

  describe(".is_consumer()", function()
    it("is true only for what eddy.consumer made", function()
      assert.is_true(eddy.is_consumer(eddy.consumer(def())))
      assert.is_false(eddy.is_consumer(def()))
      assert.is_false(eddy.is_consumer("x"))
      assert.is_false(eddy.is_consumer(nil))
      assert.is_false(eddy.is_consumer(eddy.permanent("x")))
    end)
  end)

  describe(".permanent()", function()
    it("makes a value whose tostring is the reason", function()
      local p = eddy.permanent("order 7 has no customer")
      assert.is_true(eddy.is_permanent(p))
      assert.equal(eddy.Permanent, getmetatable(p))
      assert.equal("order 7 has no customer", tostring(p))
      assert.equal("order 7 has no customer", p.why)
    end)

    it("converts a reason that is not a string with tostring", function()
      assert.equal("42", tostring(eddy.permanent(42)))
      assert.equal("nil", tostring(eddy.permanent()))
      assert.equal("false", tostring(eddy.permanent(false)))
      assert.equal("string", type(eddy.permanent(1.5).why))
    end)

    it("is raised and caught as itself", function()
      local p = eddy.permanent("bad input")
      local ok, err = pcall(error, p)
      assert.is_false(ok)
      assert.equal(p, err)
      assert.is_true(eddy.is_permanent(err))
    end)

    it("is told apart from other values", function()
      assert.is_false(eddy.is_permanent("bad input"))
      assert.is_false(eddy.is_permanent({ why = "bad input" }))
      assert.is_false(eddy.is_permanent(nil))
      assert.is_false(eddy.is_permanent(eddy.consumer(def())))
    end)
  end)
end)

describe("eddy.app", function()
  describe(".load()", function()
    describe("a good app", function()
      it("is normalized, with paths resolved against the app's directory", function()
        local a = assert(app.load(FIX .. "good/eddy.lua"))
        local dir = FIX .. "good"
        assert.equal(FIX .. "good/eddy.lua", a.file)
        assert.equal(dir, a.dir)
        assert.equal(dir .. "/state", a.data)
        assert.equal(3, a.workers)
        assert.same({
          orders = { partitions = 4, retention_ms = 7 * 86400000,
                     retention_bytes = 1024 * 1024 * 1024 },
          ["orders.counted"] = { partitions = 1 },
        }, a.topics)
        assert.same({ dir .. "/handlers/a_count.lua", dir .. "/handlers/b_multi.lua",
                      dir .. "/extra/audit.lua" }, a.handler_files)
        assert.equal("127.0.0.1:8080", a.admin)
        assert.is_false(a.admin_public)
        assert.is_nil(a.broker)
        assert.is_nil(a.kafka)
      end)

      it("lists consumers by file, then in each file's order", function()
        local a = assert(app.load(FIX .. "good/eddy.lua"))
        local dir = FIX .. "good"
        assert.same({ "order-counter", "multi-two", "multi-one", "audit" }, names(a.consumers))
        local files = {}
        for i, c in ipairs(a.consumers) do
          assert.is_true(eddy.is_consumer(c))
          assert.equal(i, c.index)
          files[i] = c.file
        end
        assert.same({ dir .. "/handlers/a_count.lua", dir .. "/handlers/b_multi.lua",
                      dir .. "/handlers/b_multi.lua", dir .. "/extra/audit.lua" }, files)
        local two, one = a.consumers[2], a.consumers[3]
        assert.is_false(two.dedupe)
        assert.equal("end", two.from)
        assert.same({ "orders", "orders.counted" }, one.topics)
        assert.equal("dead", one.dlq)
        assert.same({ attempts = 2, backoff_ms = 250, max_backoff_ms = 1000 }, one.retry)
        assert.same({ instructions = 1000000, memory = 2097152, timeout_ms = 30000,
                      emits = 100000 }, one.limits)
      end)

      it("gives each consumer the hash of its file's text as its version", function()
        local a = assert(app.load(FIX .. "good/eddy.lua"))
        for _, c in ipairs(a.consumers) do
          assert.equal(core.hash(H.read(c.file)), c.version)
          assert.matches("^%x+$", c.version)
          assert.equal(16, #c.version)
        end
        assert.equal(a.consumers[2].version, a.consumers[3].version)
        assert.are_not.equal(a.consumers[1].version, a.consumers[2].version)
      end)

      it("fills in the defaults", function()
        local a = assert(app.load(FIX .. "minimal/eddy.lua"))
        assert.equal(FIX .. "minimal/data", a.data)
        assert.equal(2, a.workers)
        assert.same({}, a.topics)
        assert.same({ FIX .. "minimal/count.lua" }, a.handler_files)
        assert.same({ "count" }, names(a.consumers))
      end)

      it("keeps paths relative to the current directory when the app is here", function()
        local root = path.abspath(".")
        local code = [[
          local app = require "eddy.app"
          local a = assert(app.load("eddy.lua"))
          io.write(a.dir, "|", a.data, "|", table.concat(a.handler_files, ","), "|",
                   a.consumers[1].file)
          local b, err = app.load("nope.lua")
          io.write("|", tostring(b), "|", err)
        ]]
        local r = H.exec({ "lua5.4", "-e", code }, {
          cwd = FIX .. "minimal",
          env = { LUA_PATH_5_4 = root .. "/lua/?.lua;" .. root .. "/lua/?/init.lua;;",
                  LUA_CPATH_5_4 = os.getenv("LUA_CPATH_5_4") or root .. "/build/lib/?.so;;" },
        })
        assert.equal("", r.err)
        assert.equal(".|./data|count.lua|count.lua|nil|" ..
                     "cannot open app 'nope.lua': No such file or directory", r.out)
        assert.equal(0, r.code)
      end)

      it("keeps absolute paths, and absolute entries as they are", function()
        local count = path.abspath(FIX .. "minimal/count.lua")
        local a, err, dir = load_tree(
          'return { data = "/tmp/eddy-data", handlers = { "' .. count .. '" } }')
        assert.is_nil(err)
        assert.equal(dir, a.dir)
        assert.equal("/tmp/eddy-data", a.data)
        assert.same({ count }, a.handler_files)
        assert.equal(count, a.consumers[1].file)
      end)

      it("drops a leading './' from entries joined to the app's directory", function()
        local a, err, dir = load_tree(
          'return { data = "./d", handlers = { "./h/c.lua" } }', { ["h/c.lua"] = COUNT })
        assert.is_nil(err)
        assert.equal(dir .. "/d", a.data)
        assert.same({ dir .. "/h/c.lua" }, a.handler_files)
      end)

      it("takes opts.data over the app's data, as given", function()
        local a = assert(app.load(FIX .. "good/eddy.lua", { data = "elsewhere" }))
        assert.equal("elsewhere", a.data)
      end)

      it("takes a single handlers string, and whole-float workers", function()
        local a, err = load_tree('return { handlers = "c.lua", workers = 4.0 }',
                                 { ["c.lua"] = COUNT })
        assert.is_nil(err)
        assert.equal(4, a.workers)
        assert.equal("integer", math.type(a.workers))
        assert.same({ "count" }, names(a.consumers))
      end)

      it("loads a directory's *.lua files in byte order, skipping the rest", function()
        local a, err, dir = load_tree('return { handlers = { "h" } }', {
          ["h/b.lua"] = consumer_file("b"),
          ["h/a_b.lua"] = consumer_file("a_b"),
          ["h/a.lua"] = consumer_file("a"),
          ["h/B.lua"] = consumer_file("B"),
          ["h/10.lua"] = consumer_file("ten"),
          ["h/9.lua"] = consumer_file("nine"),
          ["h/.hidden.lua"] = "error('hidden files are skipped')",
          ["h/readme.md"] = "not lua",
          ["h/x.lua.bak"] = "error('not a .lua file')",
          ["h/sub.lua/inner.lua"] = "error('subdirectories are not loaded')",
        })
        assert.is_nil(err)
        assert.same({ "ten", "nine", "B", "a", "a_b", "b" }, names(a.consumers))
        assert.equal(dir .. "/h/10.lua", a.handler_files[1])
      end)

      it("lists a directory whose name holds a quote", function()
        local a, err = load_tree([[return { handlers = { "it's here/" } }]],
                                 { ["it's here/c.lua"] = COUNT })
        assert.is_nil(err)
        assert.same({ "count" }, names(a.consumers))
        assert.matches("/it's here/c%.lua$", a.handler_files[1])
      end)

      it("gives equal versions to identical texts and new ones to changed texts", function()
        local a, err, dir = load_tree('return { handlers = { "one.lua", "two.lua" } }', {
          ["one.lua"] = consumer_file("one"),
          ["two.lua"] = consumer_file("two"),
          ["copy/one.lua"] = consumer_file("one"),
        })
        assert.is_nil(err)
        local v1, v2 = a.consumers[1].version, a.consumers[2].version
        assert.are_not.equal(v1, v2)
        assert.equal(core.hash(consumer_file("one")), v1)
        -- The same text, in another file or loaded again: the same version.
        assert.equal(v1, assert(app.load_handlers({ dir .. "/copy/one.lua" }))[1].version)
        assert.equal(v1, assert(app.load(dir .. "/eddy.lua")).consumers[1].version)
        -- One byte more (a comment): a new version; the other file keeps its own.
        H.write(dir .. "/one.lua", consumer_file("one") .. "-- v2\n")
        local b = assert(app.load(dir .. "/eddy.lua"))
        assert.are_not.equal(v1, b.consumers[1].version)
        assert.equal(v2, b.consumers[2].version)
        -- Back to the first text: back to the first version.
        H.write(dir .. "/one.lua", consumer_file("one"))
        assert.equal(v1, assert(app.load(dir .. "/eddy.lua")).consumers[1].version)
      end)

      it("loads handler files with a '#!' line or a byte order mark", function()
        local a, err = load_tree('return { handlers = { "a.lua", "b.lua" } }', {
          ["a.lua"] = "#!/usr/bin/env lua\n" .. consumer_file("a"),
          ["b.lua"] = "\239\187\191" .. consumer_file("b"),
        })
        assert.is_nil(err)
        assert.same({ "a", "b" }, names(a.consumers))
      end)

      it("takes admin as HOST:PORT, and broker and kafka properties as strings", function()
        local a, err = load_tree(
          'return { handlers = "c.lua", admin = "127.0.0.1:9464", broker = "kafka://h:9092",' ..
          ' kafka = { ["socket.timeout.ms"] = 5000, ["enable.ssl.certificate.verification"] = false,' ..
          ' ["security.protocol"] = "SSL" } }',
          { ["c.lua"] = COUNT })
        assert.is_nil(err)
        assert.equal("127.0.0.1:9464", a.admin)
        assert.equal("kafka://h:9092", a.broker)
        assert.same({ "enable.ssl.certificate.verification", "false", "security.protocol", "SSL",
                      "socket.timeout.ms", "5000" }, a.kafka)
      end)

      it("refuses a broker that is not a kafka:// URL and kafka properties that are not values",
         function()
        local _, err = load_tree('return { handlers = "c.lua", broker = "h:9092" }',
                                 { ["c.lua"] = COUNT })
        assert.equal(": 'broker' must be a kafka:// URL (kafka://HOST:PORT[,HOST:PORT...]), " ..
                     "got 'h:9092'", err:sub((err:find(": 'broker'", 1, true))), err)
        _, err = load_tree('return { handlers = "c.lua", kafka = { ["a.b"] = {} } }',
                           { ["c.lua"] = COUNT })
        assert.equal(": kafka property 'a.b' must be a string, number or boolean, got table",
                     err:sub((err:find(": kafka property", 1, true))), err)
      end)

      it("normalizes topic settings", function()
        local a, err = load_tree([[return { handlers = "c.lua", topics = {
          a = { retention = "forever", retention_bytes = "unlimited" },
          b = { partitions = 4096.0, retention = 1000, retention_bytes = 2048,
                max_message_bytes = "2MiB" },
        } }]], { ["c.lua"] = COUNT })
        assert.is_nil(err)
        assert.same({
          a = { partitions = 1, retention_ms = -1, retention_bytes = -1 },
          b = { partitions = 4096, retention_ms = 1000, retention_bytes = 2048,
                max_message_bytes = 2097152 },
        }, a.topics)
      end)

      it("leaves the thread's debug hook as it was", function()
        assert.is_nil(debug.gethook())
        assert(app.load(FIX .. "good/eddy.lua"))
        assert.is_nil(debug.gethook())
        local hook = function() end
        debug.sethook(hook, "c")
        local ok, a = pcall(app.load, FIX .. "good/eddy.lua")
        local h = debug.gethook()
        debug.sethook()
        assert.is_true(ok)
        assert.is_truthy(a)
        assert.equal(hook, h)
      end)
    end)

    describe("fails with one line naming the file and the problem", function()
      it("when the app file is missing", function()
        assert.same({ nil, "cannot open app 'x/eddy.lua': No such file or directory" },
                    { app.load("x/eddy.lua") })
      end)

      it("when the app file is a directory", function()
        local dir = tree({})
        assert.same({ nil, "cannot open app '" .. dir .. "': Is a directory" },
                    { app.load(dir) })
      end)

      it("when the app file has a syntax error", function()
        local err, dir = tree_error('return {\n  handlers = { "h/" }\n  workers = 2,\n}\n')
        assert.equal(dir .. "/eddy.lua:3: '}' expected (to close '{' at line 1) near 'workers'",
                     err)
      end)

      it("when the app file raises an error", function()
        assert.equal(FIX .. "app_load_error/eddy.lua:3: no app today",
                     fixture_error("app_load_error"))
      end)

      it("when the app file returns something else than a table", function()
        assert.equal(FIX .. "app_not_table/eddy.lua: returns a string, not an app" ..
                     " (return { handlers = { ... }, ... })", fixture_error("app_not_table"))
        local err, dir = tree_error("local x = 1\n")
        assert.equal(dir .. "/eddy.lua: returns nothing, not an app" ..
                     " (return { handlers = { ... }, ... })", err)
        err, dir = tree_error("return {}, {}\n")
        assert.equal(dir .. "/eddy.lua: returns 2 values, not an app" ..
                     " (return { handlers = { ... }, ... })", err)
      end)

      it("on an unknown option, with a did-you-mean", function()
        assert.equal(FIX .. "unknown_app_option/eddy.lua: unknown option 'hanlders'" ..
                     " (did you mean 'handlers'?)", fixture_error("unknown_app_option"))
        local err, dir = tree_error('return { consumers = {} }')
        assert.equal(dir .. "/eddy.lua: unknown option 'consumers' (known: admin, admin_public," ..
                     " broker, data, dedupe_window, events, handlers, kafka, sandbox, topics, workers)", err)
      end)

      it("when workers is out of range", function()
        assert.equal(FIX .. "bad_workers/eddy.lua: 'workers' must be an integer from 1 to" ..
                     " 64, got 0", fixture_error("bad_workers"))
        local prefix = "/eddy.lua: 'workers' must be an integer from 1 to 64, got "
        for v, shown in pairs { ["65"] = "65", ["2.5"] = "2.5", ['"4"'] = "'4'" } do
          local err, dir = tree_error("return { workers = " .. v .. " }")
          assert.equal(dir .. prefix .. shown, err)
        end
      end)

      it("when data is not a path", function()
        local err, dir = tree_error("return { data = 1 }")
        assert.equal(dir .. "/eddy.lua: 'data' must be a directory path (a string), got number", err)
        err, dir = tree_error('return { data = "" }')
        assert.equal(dir .. "/eddy.lua: 'data' is empty", err)
      end)

      it("on a bad topics entry", function()
        assert.equal(FIX .. "bad_topic/eddy.lua: topic 'orders': partitions must be an" ..
                     " integer from 1 to 4096, got 0", fixture_error("bad_topic"))
        local cases = {
          { 'topics = "orders"',
            "'topics' must be a table (name = { partitions = N }), got string" },
          { 'topics = { "orders" }',
            "'topics' must map topic names to settings (orders = { partitions = 4 })," ..
            " found item [1]" },
          { 'topics = { ["or ders"] = {} }',
            "topic name 'or ders' is invalid (use letters, digits, '.', '_' and '-')" },
          { "topics = { orders = 4 }",
            "topic 'orders' must be a table ({ partitions = N }), got number" },
          { "topics = { orders = { partitons = 4 } }",
            "topic 'orders': unknown option 'partitons' (did you mean 'partitions'?)" },
          { "topics = { orders = { partitions = 4097 } }",
            "topic 'orders': partitions must be an integer from 1 to 4096, got 4097" },
          { 'topics = { orders = { partitions = "4" } }',
            "topic 'orders': partitions must be an integer from 1 to 4096, got '4'" },
          { 'topics = { orders = { retention = "7 days" } }',
            "topic 'orders': retention '7 days' is not a duration (e.g. 12h, 7d or 'forever')" },
          { "topics = { orders = { retention = -1 } }",
            "topic 'orders': retention must be a duration (e.g. 12h, 7d or 'forever') or a" ..
            " number of milliseconds, got -1" },
          { 'topics = { orders = { retention_bytes = "1 gig" } }',
            "topic 'orders': retention_bytes '1 gig' is not a size" ..
            " (e.g. 512MiB, 1GiB or 'unlimited')" },
          { "topics = { orders = { retention_bytes = {} } }",
            "topic 'orders': retention_bytes must be a size (e.g. 512MiB, 1GiB or" ..
            " 'unlimited') or a number of bytes, got table" },
          { 'topics = { orders = { max_message_bytes = "unlimited" } }',
            "topic 'orders': max_message_bytes 'unlimited' is not a size (e.g. 512KiB, 1MiB)" },
          { "topics = { orders = { max_message_bytes = 0 } }",
            "topic 'orders': max_message_bytes must be from 1 byte to 256MiB, got 0" },
          { 'topics = { orders = { max_message_bytes = "257MiB" } }',
            "topic 'orders': max_message_bytes must be from 1 byte to 256MiB, got '257MiB'" },
        }
        for _, case in ipairs(cases) do
          local err, dir = tree_error("return { " .. case[1] .. " }")
          assert.equal(dir .. "/eddy.lua: " .. case[2], err)
        end
      end)

      it("on a bad handlers list", function()
        local cases = {
          { "handlers = 1",
            "'handlers' must be a list of handler files or directories, got number" },
          { 'handlers = { main = "h/" }',
            "'handlers' must be a list of handler files or directories, found key 'main'" },
          { 'handlers = { "h/", {} }', "handlers[2] must be a path (a string), got table" },
          { 'handlers = { "" }', "handlers[1] is empty" },
        }
        for _, case in ipairs(cases) do
          local err, dir = tree_error("return { " .. case[1] .. " }")
          assert.equal(dir .. "/eddy.lua: " .. case[2], err)
        end
      end)

      it("when a handler path does not exist", function()
        assert.equal(FIX .. "missing_handler_path/eddy.lua: handler path 'handlers/nope'" ..
                     " does not exist", fixture_error("missing_handler_path"))
        local err, dir = tree_error('return { handlers = { "c.lua/x" } }',
                                    { ["c.lua"] = COUNT })
        assert.equal(dir .. "/eddy.lua: handler path 'c.lua/x' does not exist", err)
      end)

      it("with the control characters of a value written as escapes", function()
        local err, dir = tree_error([[return { handlers = { "a\nb\tc\1" } }]])
        assert.equal(dir .. "/eddy.lua: handler path 'a\\nb\\tc\\x01' does not exist", err)
      end)

      it("when a handler directory has no .lua files", function()
        assert.equal(FIX .. "empty_handler_dir/eddy.lua: handler directory 'handlers/'" ..
                     " has no .lua files", fixture_error("empty_handler_dir"))
        local err, dir = tree_error('return { handlers = { "h" } }',
                                    { ["h/.x.lua"] = COUNT, ["h/sub.lua/c.lua"] = COUNT })
        assert.equal(dir .. "/eddy.lua: handler directory 'h' has no .lua files", err)
      end)

      it("when a handler file is listed twice", function()
        local err, dir = tree_error('return { handlers = { "h/", "h/c.lua" } }',
                                    { ["h/c.lua"] = COUNT })
        assert.equal(dir .. "/eddy.lua: handler file '" .. dir .. "/h/c.lua' is listed twice",
                     err)
      end)

      it("when the app defines no consumers", function()
        assert.equal(FIX .. "no_consumers/eddy.lua: the app defines no consumers",
                     fixture_error("no_consumers"))
        local err, dir = tree_error("return { workers = 1 }")
        assert.equal(dir .. "/eddy.lua: the app defines no consumers", err)
      end)

      it("when a handler file has a syntax error", function()
        local err, dir = tree_error('return { handlers = "h/" }', {
          ["h/x.lua"] = 'local eddy = require "eddy"\n\nreturn eddy.consumer {\n' ..
                        '  name = "c"\n  topics = "orders",\n}\n',
        })
        assert.equal(dir .. "/h/x.lua:5: '}' expected (to close '{' at line 3) near 'topics'",
                     err)
      end)

      it("when a handler file raises an error", function()
        assert.equal(FIX .. "handler_load_error/handlers/x.lua:3: no config for c",
                     fixture_error("handler_load_error"))
      end)

      it("with the handler file's line of an error raised elsewhere", function()
        local err, dir = tree_error('return { handlers = "x.lua" }', {
          ["x.lua"] = "local s = 'a'\n\nlocal t = s:rep()\nreturn t\n",
        })
        assert.equal(dir .. "/x.lua:3: bad argument #1 to 'rep' (number expected, got" ..
                     " no value)", err)
      end)

      it("without a traceback, on one line", function()
        local err, dir = tree_error('return { handlers = "x.lua" }', {
          ["x.lua"] = "error(debug.traceback('boom'))\n",
        })
        assert.equal(dir .. "/x.lua:1: boom", err)
        err, dir = tree_error('return { handlers = "x.lua" }', {
          ["x.lua"] = "\nerror('first line\\n\\tsecond line', 0)\n",
        })
        assert.equal(dir .. "/x.lua:2: first line second line", err)
      end)

      it("readably when the error value is not a string", function()
        assert.equal(FIX .. "error_table/handlers/x.lua: error while loading: a table value",
                     fixture_error("error_table"))
        assert.equal(FIX .. "error_nil/handlers/x.lua: error while loading:" ..
                     " (error object is nil)", fixture_error("error_nil"))
        local err, dir = tree_error('return { handlers = "x.lua" }', {
          ["x.lua"] = 'error(require("eddy").permanent("not today"))\n',
        })
        assert.equal(dir .. "/x.lua: error while loading: not today", err)
        err, dir = tree_error('return { handlers = "x.lua" }', { ["x.lua"] = "error(true)\n" })
        assert.equal(dir .. "/x.lua: error while loading: a boolean value", err)
        err, dir = tree_error('return { handlers = "x.lua" }', { ["x.lua"] = "error(42)\n" })
        assert.equal(dir .. "/x.lua:1: 42", err)
      end)

      it("when a handler file returns something else than a consumer", function()
        local hint = " (return eddy.consumer{...} or a list of them)"
        assert.equal(FIX .. "not_consumer/handlers/x.lua: returns a number, not a consumer" ..
                     hint, fixture_error("not_consumer"))
        local cases = {
          { "", "returns nothing, not a consumer" .. hint },
          { 'return { name = "c", topics = "t", handle = print }',
            "returns a table, not a consumer" .. hint },
          { "return {}", "returns an empty list, not a consumer" .. hint },
          { "return print", "returns a function, not a consumer" .. hint },
          { 'local eddy = require "eddy"\n' ..
            'local c = eddy.consumer { name = "c", topics = "t", handle = print }\n' ..
            "return c, c", "returns 2 values, not a consumer" .. hint },
        }
        for _, case in ipairs(cases) do
          local err, dir = tree_error('return { handlers = "x.lua" }', { ["x.lua"] = case[1] })
          assert.equal(dir .. "/x.lua: " .. case[2], err)
        end
      end)

      it("when an item of a returned list is not a consumer", function()
        assert.equal(FIX .. "bad_item/handlers/x.lua: item 2 is a string, not a consumer",
                     fixture_error("bad_item"))
        local err, dir = tree_error('return { handlers = "x.lua" }', {
          ["x.lua"] = 'local eddy = require "eddy"\n' ..
                      'local c = eddy.consumer { name = "c", topics = "t", handle = print }\n' ..
                      "return { c, nil, c }\n",
        })
        assert.equal(dir .. "/x.lua: item 2 is nil, not a consumer", err)
      end)

      it("on a mistake in a consumer, at its line", function()
        assert.equal(FIX .. "missing_handle/handlers/x.lua:4: consumer 'c': 'handle' is" ..
                     " missing (a function(msg, ctx))", fixture_error("missing_handle"))
        assert.equal(FIX .. "unknown_consumer_option/handlers/x.lua:3: consumer" ..
                     " 'order-counter': unknown option 'retyr' (did you mean 'retry'?)",
                     fixture_error("unknown_consumer_option"))
        -- Not a tail call: the position comes from eddy.consumer's error.
        local err, dir = tree_error('return { handlers = "x.lua" }', {
          ["x.lua"] = 'local eddy = require "eddy"\n' ..
                      'local c = eddy.consumer { name = "c", topics = "t", handle = 1 }\n' ..
                      "return c\n",
        })
        assert.equal(dir .. "/x.lua:2: consumer 'c': 'handle' must be a function, got number",
                     err)
      end)

      it("naming the file alone when a host hook hides the line", function()
        debug.sethook(function() end, "c")
        local ok, a, err = pcall(app.load, FIX .. "missing_handle/eddy.lua")
        debug.sethook()
        assert.is_true(ok)
        assert.is_nil(a)
        assert.equal(FIX .. "missing_handle/handlers/x.lua: consumer 'c': 'handle' is" ..
                     " missing (a function(msg, ctx))", err)
      end)

      it("naming a long path in full", function()
        local long = string.rep("d", 70)
        local err, dir = tree_error('return { handlers = "' .. long .. '/" }', {
          [long .. "/x.lua"] = 'local eddy = require "eddy"\n' ..
                               'return eddy.consumer { name = "c", topics = "t" }\n',
          [long .. "/y.lua"] = "return {\n",
        })
        assert.equal(dir .. "/" .. long .. "/x.lua:2: consumer 'c': 'handle' is missing" ..
                     " (a function(msg, ctx))", err)
        H.write(dir .. "/" .. long .. "/x.lua", COUNT)
        local _, err2 = app.load(dir .. "/eddy.lua")
        assert.equal(dir .. "/" .. long .. "/y.lua:2: unexpected symbol near <eof>", err2)
      end)

      it("when two handlers define the same consumer", function()
        local dir = FIX .. "duplicate_consumer/handlers/"
        assert.equal(dir .. "b.lua: consumer 'c' is already defined in " .. dir .. "a.lua",
                     fixture_error("duplicate_consumer"))
      end)
    end)

    it("raises on misuse", function()
      assert.has_error(function() app.load() end, "load: 'path' must be a string, got nil")
      assert.has_error(function() app.load("eddy.lua", "x") end,
                       "load: 'opts' must be a table, got string")
      assert.has_error(function() app.load("eddy.lua", { dat = "x" }) end,
                       "load: unknown option 'dat' (did you mean 'data'?)")
      assert.has_error(function() app.load("eddy.lua", { data = 1 }) end,
                       "load: opts.data must be a string, got number")
    end)
  end)

  describe(".load_handlers()", function()
    it("loads files alone, in order, with file, version and index", function()
      local dir = tree({
        ["one.lua"] = consumer_file("one"),
        ["two.lua"] = 'local eddy = require "eddy"\nreturn {\n' ..
                      '  eddy.consumer { name = "two-b", topics = "t", handle = print },\n' ..
                      '  eddy.consumer { name = "two-a", topics = "t", handle = print },\n}\n',
      })
      local files = { dir .. "/two.lua", dir .. "/one.lua" }
      local cs = assert(app.load_handlers(files))
      assert.same({ "two-b", "two-a", "one" }, names(cs))
      for i, c in ipairs(cs) do
        assert.equal(i, c.index)
        assert.is_true(eddy.is_consumer(c))
        assert.equal(core.hash(H.read(c.file)), c.version)
      end
      assert.same({ files[1], files[1], files[2] }, { cs[1].file, cs[2].file, cs[3].file })
      -- Loading again gives the same consumers in the same order.
      assert.same(names(cs), names(assert(app.load_handlers(files))))
    end)

    it("returns an empty list for no files", function()
      assert.same({}, app.load_handlers({}))
    end)

    it("fails on a missing file", function()
      assert.same({ nil, "cannot open handler 'nope.lua': No such file or directory" },
                  { app.load_handlers({ "nope.lua" }) })
    end)

    it("fails on a consumer defined twice", function()
      local dir = tree({ ["a.lua"] = consumer_file("c") })
      local f = dir .. "/a.lua"
      assert.same({ nil, f .. ": consumer 'c' is already defined in " .. f },
                  { app.load_handlers({ f, f }) })
    end)

    it("raises on misuse", function()
      assert.has_error(function() app.load_handlers("a.lua") end,
                       "load_handlers: 'files' must be a list of paths, got string")
      assert.has_error(function() app.load_handlers({ "a.lua", 2 }) end,
                       "load_handlers: files[2] must be a string, got number")
    end)
  end)

  describe(".listdir()", function()
    it("lists a directory with ls when eddy.core has no listdir", function()
      local saved = core.listdir
      core.listdir = nil
      defer(function() core.listdir = saved end)
      local dir = tree({ ["a.lua"] = "", [".b"] = "", ["c d/e"] = "" })
      local got = assert(app.listdir(dir))
      table.sort(got)
      assert.same({ ".b", "a.lua", "c d" }, got)
      local none, err = app.listdir(dir .. "/nope")
      assert.is_nil(none)
      assert.equal("ls exited with status 2", err)
    end)

    it("uses eddy.core.listdir when there is one", function()
      local saved = core.listdir
      local asked = {}
      core.listdir = function(d)
        asked[#asked + 1] = d
        return { "z.lua", "a.lua", "b.txt" }
      end
      defer(function() core.listdir = saved end)
      local dir = tree({
        ["eddy.lua"] = 'return { handlers = "h" }',
        ["h/a.lua"] = consumer_file("a"),
        ["h/z.lua"] = consumer_file("z"),
        ["h/hidden.lua"] = consumer_file("hidden"),
      })
      assert.same({ "z.lua", "a.lua", "b.txt" }, app.listdir(dir))
      local a = assert(app.load(dir .. "/eddy.lua"))
      assert.same({ dir, dir .. "/h" }, asked)
      assert.same({ "a", "z" }, names(a.consumers))
    end)
  end)
end)
