--- eddy state get | list, and ctx.state as a handler sees it: values of
-- every JSON type written by handlers under `eddy run --drain`, read back
-- by the command line (as JSON) and by later handler calls (integral
-- numbers as integers), scoped per consumer.
local cjson = require "cjson"
local H = require "helpers"
local path = require "pl.path"

--- Runs fn when the test ends (as many as needed; see H.defer).
local function defer(fn) H.defer(finally, fn) end

--- v with every integral float (cjson decodes every number as a float)
-- made an integer, recursively.
local function ints(v)
  if type(v) == "table" then
    for k, x in pairs(v) do v[k] = ints(x) end
    return v
  end
  return math.type(v) == "float" and math.tointeger(v) or v
end

--- An app in a fresh directory (removed when the test ends): eddy.lua
-- (store in "data", `workers` workers, topic "events" of `partitions`
-- partitions) and handlers/<name>.lua for each name -> text of handlers.
-- Returns a table: `dir`, `data`, `produce(values, key)`, `run()`.
local function app(handlers, workers, partitions)
  local dir = H.tmpdir()
  defer(function() H.rmdir(dir) end)
  local files = {
    ["eddy.lua"] = string.format('return { data = "data", workers = %d,\n' ..
                                 '  handlers = { "handlers/" },\n' ..
                                 '  topics = { events = { partitions = %d } } }\n',
                                 workers or 2, partitions or 1),
  }
  for name, text in pairs(handlers) do files["handlers/" .. name .. ".lua"] = text end
  for name, text in pairs(files) do
    local file = dir .. "/" .. name
    os.execute("mkdir -p " .. H.quote(path.dirname(file)))
    H.write(file, text)
  end
  local t = { dir = dir, data = dir .. "/data" }
  function t.produce(values, key)
    local args = { "--data", t.data, "produce", "events" }
    if key then args[#args + 1] = "--key"; args[#args + 1] = key end
    local r = H.run(args, { stdin = table.concat(values, "\n") .. "\n" })
    assert(r.code == 0, r.err)
  end
  function t.run()
    local r = H.run({ "run", dir .. "/eddy.lua", "--drain" })
    assert(r.code == 0, "eddy run failed: " .. r.err)
    return r
  end
  local r = H.run({ "--data", t.data, "topic", "create", "events", "--partitions",
                    tostring(partitions or 1) })
  assert(r.code == 0, r.err)
  return t
end

--- eddy with --data t.data and args; returns { code, out, err }.
local function eddy(t, args)
  local argv = { "--data", t.data }
  for _, a in ipairs(args) do argv[#argv + 1] = a end
  return H.run(argv)
end

--- The stdout of `eddy state get C KEY`, which must succeed.
local function get_raw(t, c, key)
  local r = eddy(t, { "state", "get", c, key })
  assert(r.code == 0 and r.err == "", "state get " .. c .. " " .. key .. " failed: " ..
         tostring(r.code) .. " " .. tostring(r.err))
  return r.out
end

--- `eddy state get C KEY`, decoded.
local function get(t, c, key)
  local out = get_raw(t, c, key)
  assert(out:sub(-1) == "\n", "no newline at the end of " .. out)
  return ints(cjson.decode(out))
end

--- Asserts a command's exit status, whole stderr and empty stdout.
local function fails(t, code, message, args)
  local r = eddy(t, args)
  assert.same({ code = code, out = "", err = message .. "\n" },
              { code = r.code, out = r.out, err = r.err })
end

--- The handler of consumer "s": on "fill" it writes values of every JSON
-- type, and a key it deletes at once; on "delete" it deletes "later".
local FILL = [[
local eddy = require "eddy"
return eddy.consumer {
  name = "s",
  topics = "events",
  handle = function(msg, ctx)
    if msg.value == "fill" then
      ctx.state:set("number", 42)
      ctx.state:set("negative", -7)
      ctx.state:set("float", 2.5)
      ctx.state:set("string", 'say "hi"\n')
      ctx.state:set("table", { a = 1 })
      ctx.state:set("list", { 1, 2, 3 })
      ctx.state:set("nested", { a = { b = { 1, "two", { c = true } } }, d = false })
      ctx.state:set("yes", true)
      ctx.state:set("no", false)
      ctx.state:set("gone", "soon")
      ctx.state:delete("gone")
      ctx.state:set("later", "deleted by the next message")
    elseif msg.value == "delete" then
      ctx.state:delete("later")
    end
  end,
}
]]

--- What FILL leaves, by key.
local FILLED = {
  float = 2.5, list = { 1, 2, 3 }, negative = -7,
  nested = { a = { b = { 1, "two", { c = true } } }, d = false },
  no = false, number = 42, string = 'say "hi"\n', table = { a = 1 }, yes = true,
}

--- An app with FILL, "fill" and "delete" produced and run; also returns
-- the time span of the run in ms.
local function filled()
  local t = app({ s = FILL })
  t.produce({ "fill", "delete" })
  local before = os.time() * 1000
  t.run()
  local after = (os.time() + 1) * 1000
  return t, before, after
end

describe("eddy state", function()
  describe("get", function()
    it("prints each value as JSON, on one line", function()
      local t = filled()
      assert.equal("42\n", get_raw(t, "s", "number"))
      assert.equal("-7\n", get_raw(t, "s", "negative"))
      assert.equal("2.5\n", get_raw(t, "s", "float"))
      assert.equal('{"a":1}\n', get_raw(t, "s", "table"))
      assert.equal("[1,2,3]\n", get_raw(t, "s", "list"))
      assert.equal("true\n", get_raw(t, "s", "yes"))
      assert.equal("false\n", get_raw(t, "s", "no"))
      assert.equal('"say \\"hi\\"\\n"\n', get_raw(t, "s", "string"))
      for key, value in pairs(FILLED) do
        assert.same(value, get(t, "s", key), key)
        assert.equal(1, #H.lines(get_raw(t, "s", key)), key)
      end
    end)

    it("fails on an unknown consumer", function()
      local t = filled()
      fails(t, 1, "eddy state get: unknown consumer 'x'", { "state", "get", "x", "number" })
    end)

    it("fails on a key the consumer has no state for", function()
      local t = filled()
      fails(t, 1, "eddy state get: consumer 's' has no state 'k'", { "state", "get", "s", "k" })
    end)

    it("does not find a deleted key", function()
      local t = filled()
      -- Deleted in the call that set it, and by a later message.
      fails(t, 1, "eddy state get: consumer 's' has no state 'gone'",
            { "state", "get", "s", "gone" })
      fails(t, 1, "eddy state get: consumer 's' has no state 'later'",
            { "state", "get", "s", "later" })
    end)

    it("is a usage error without a key, or with one argument too many", function()
      local t = filled()
      fails(t, 2, "eddy state get: missing argument (usage: eddy state get CONSUMER KEY)" ..
                  " (see 'eddy state get --help')", { "state", "get", "s" })
      fails(t, 2, "eddy state get: unexpected argument 'x' (see 'eddy state get --help')",
            { "state", "get", "s", "number", "x" })
    end)
  end)

  describe("list", function()
    it("prints KEY<tab>VALUE lines sorted by key, without deleted keys", function()
      local t = filled()
      local r = eddy(t, { "state", "list", "s" })
      assert.same({ code = 0, err = "" }, { code = r.code, err = r.err })
      assert.equal(table.concat({
        "float\t2.5",
        "list\t[1,2,3]",
        "negative\t-7",
        "nested\t" .. get_raw(t, "s", "nested"):sub(1, -2),
        "no\tfalse",
        "number\t42",
        'string\t"say \\"hi\\"\\n"',
        'table\t{"a":1}',
        "yes\ttrue",
      }, "\n") .. "\n", r.out)
    end)

    it("prints key, value and updated_at per line with --json", function()
      local t, before, after = filled()
      local r = eddy(t, { "state", "list", "s", "--json" })
      assert.same({ code = 0, err = "" }, { code = r.code, err = r.err })
      local keys, values = {}, {}
      for _, o in ipairs(ints(H.json_lines(r.out))) do
        keys[#keys + 1] = o.key
        values[o.key] = o.value
        assert.is_true(math.type(o.updated_at) == "integer", "updated_at of " .. o.key)
        assert.is_true(o.updated_at >= before and o.updated_at <= after,
                       "updated_at " .. o.updated_at .. " of " .. o.key .. " is not in " ..
                       before .. ".." .. after)
        local n = 0
        for _ in pairs(o) do n = n + 1 end
        assert.equal(3, n, "fields of " .. o.key)
      end
      assert.same({ "float", "list", "negative", "nested", "no", "number", "string",
                    "table", "yes" }, keys)
      assert.same(FILLED, values)
    end)

    it("prints nothing for a consumer that wrote no state", function()
      local t = app({ q = 'return require("eddy").consumer { name = "q", topics = "events",' ..
                          ' handle = function() end }\n' })
      t.produce({ "a" })
      t.run()
      local r = eddy(t, { "state", "list", "q" })
      assert.same({ code = 0, out = "", err = "" }, { code = r.code, out = r.out, err = r.err })
      r = eddy(t, { "state", "list", "q", "--json" })
      assert.same({ code = 0, out = "", err = "" }, { code = r.code, out = r.out, err = r.err })
    end)

    it("fails on an unknown consumer", function()
      local t = filled()
      fails(t, 1, "eddy state list: unknown consumer 'x'", { "state", "list", "x" })
      fails(t, 1, "eddy state list: unknown consumer 'x'", { "state", "list", "x", "--json" })
    end)
  end)

  it("is per consumer: two consumers with the same keys keep their own values", function()
    local function writer(name)
      return string.format([[
local eddy = require "eddy"
return eddy.consumer {
  name = %q,
  topics = "events",
  handle = function(msg, ctx)
    ctx.state:set("k", %q)
    ctx.state:set("seen", (ctx.state:get("seen") or 0) + 1)
    if %q == "a" then ctx.state:set("only_a", true) end
    if %q == "b" then ctx.state:delete("k") ctx.state:set("k", { by = "b" }) end
  end,
}
]], name, name, name, name)
    end
    local t = app({ a = writer("a"), b = writer("b") })
    t.produce({ "1", "2", "3" })
    t.run()
    assert.equal("a", get(t, "a", "k"))
    assert.same({ by = "b" }, get(t, "b", "k"))
    assert.equal(3, get(t, "a", "seen"))
    assert.equal(3, get(t, "b", "seen"))
    assert.is_true(get(t, "a", "only_a"))
    fails(t, 1, "eddy state get: consumer 'b' has no state 'only_a'",
          { "state", "get", "b", "only_a" })
  end)

  describe("read back in a handler", function()
    it("gives integral numbers as integers, others as floats", function()
      local t = app({ n = [[
local eddy = require "eddy"
return eddy.consumer {
  name = "n",
  topics = "events",
  handle = function(msg, ctx)
    local n = ctx.state:get("n")
    local types = ctx.state:get("types") or {}
    types[#types + 1] = n == nil and "nil" or math.type(n)
    ctx.state:set("types", types)
    ctx.state:set("n", (n or 0) + 1)
    local t = ctx.state:get("t")
    if t then
      ctx.state:set("t_types", { math.type(t.count), math.type(t.list[2]),
                                 math.type(t.half), math.type(t.deep.x[1]) })
    end
    ctx.state:set("t", { count = #types, list = { 1, 2 }, half = 0.5, deep = { x = { 3 } } })
    local w = ctx.state:get("whole")
    ctx.state:set("whole_type", w == nil and "nil" or math.type(w))
    ctx.state:set("whole", 2.0)
  end,
}
]] })
      -- One key: the calls run one after the other, in this order.
      t.produce({ "1", "2", "3" }, "k")
      t.run()
      assert.equal(3, get(t, "n", "n"))
      assert.same({ "nil", "integer", "integer" }, get(t, "n", "types"))
      assert.same({ "integer", "integer", "float", "integer" }, get(t, "n", "t_types"))
      assert.equal("integer", get(t, "n", "whole_type"))
      -- And in a later run, from the store rather than the batch.
      t.produce({ "4" }, "k")
      t.run()
      assert.equal(4, get(t, "n", "n"))
      assert.same({ "nil", "integer", "integer", "integer" }, get(t, "n", "types"))
    end)

    it("gives back numbers exactly: integers of 15 and 16 digits, and floats", function()
      local t = app({ big = [[
local eddy = require "eddy"
return eddy.consumer {
  name = "big",
  topics = "events",
  handle = function(msg, ctx)
    if msg.value == "set" then
      ctx.state:set("micros", 1795696262804123)
      ctx.state:set("max_safe", 9007199254740991)
      ctx.state:set("fifteen", 123456789012345)
      ctx.state:set("third", 1 / 3)
    else
      local out = {}
      for _, k in ipairs({ "micros", "max_safe", "fifteen" }) do
        local v = ctx.state:get(k)
        out[k] = math.type(v) .. " " .. string.format("%.0f", v)
      end
      out.third_exact = ctx.state:get("third") == 1 / 3
      ctx.state:set("read", out)
    end
  end,
}
]] })
      t.produce({ "set", "read" }, "k")
      t.run()
      assert.same({
        stored = { micros = "1795696262804123\n", max_safe = "9007199254740991\n",
                   fifteen = "123456789012345\n" },
        read = { micros = "integer 1795696262804123", max_safe = "integer 9007199254740991",
                 fifteen = "integer 123456789012345", third_exact = true },
      }, {
        stored = { micros = get_raw(t, "big", "micros"), max_safe = get_raw(t, "big", "max_safe"),
                   fifteen = get_raw(t, "big", "fifteen") },
        read = get(t, "big", "read"),
      })
    end)

    it("does not keep the writes of a failed call, nor show them to later calls", function()
      local t = app({ f = [[
local eddy = require "eddy"
return eddy.consumer {
  name = "f",
  topics = "events",
  handle = function(msg, ctx)
    if msg.value == "fail" then
      ctx.state:set("x", "from the failed call")
      ctx.state:delete("kept")
      error(eddy.permanent("no"))
    elseif msg.value == "first" then
      ctx.state:set("kept", 1)
    else
      ctx.state:set("seen_x", ctx.state:get("x") or "nothing")
      ctx.state:set("seen_kept", ctx.state:get("kept") or "nothing")
    end
  end,
}
]] })
      t.produce({ "first", "fail", "after" }, "k")
      local r = t.run()
      assert.matches("handled=2 deduplicated=0 retried=0 quarantined=1", r.err, 1, true)
      fails(t, 1, "eddy state get: consumer 'f' has no state 'x'", { "state", "get", "f", "x" })
      assert.equal(1, get(t, "f", "kept"))
      assert.equal("nothing", get(t, "f", "seen_x"))
      assert.equal(1, get(t, "f", "seen_kept"))
    end)

    it("counts exactly when many keys update one state key on several workers", function()
      -- Different keys run in parallel on two workers, all adding to
      -- "total": no update may be lost.
      local t = app({ sum = [[
local eddy = require "eddy"
return eddy.consumer {
  name = "sum",
  topics = "events",
  handle = function(msg, ctx)
    ctx.state:set("total", (ctx.state:get("total") or 0) + 1)
    ctx.state:set(msg.key, (ctx.state:get(msg.key) or 0) + 1)
  end,
}
]] }, 2, 4)
      local lines = {}
      for i = 1, 2000 do lines[i] = "key" .. (i % 50) .. ":" .. i end
      local r = H.run({ "--data", t.data, "produce", "events", "--key-separator", ":" },
                { stdin = table.concat(lines, "\n") .. "\n" })
      assert(r.code == 0, r.err)
      t.run()
      assert.equal(2000, get(t, "sum", "total"))
      for i = 0, 49 do assert.equal(40, get(t, "sum", "key" .. i)) end
    end)
  end)
end)

describe("eddy state list --json with keys that are not UTF-8", function()
  it("writes such a key as base64 with key_encoding, keeping every line valid JSON", function()
    local t = app({ bin = [[
local eddy = require "eddy"
return eddy.consumer {
  name = "bin",
  topics = { "events" },
  handle = function(msg, ctx)
    ctx.state:set("\255\254" .. msg.value, 1)
    ctx.state:set("plain", 2)
  end,
}
]] }, 1, 1)
    t.produce({ "x" })
    t.run()
    local r = eddy(t, { "state", "list", "bin", "--json" })
    assert.are.equal(0, r.code, r.err)
    local rows = H.json_lines(r.out)
    assert.are.equal(2, #rows)
    assert.are.same({ "plain", 2 }, { rows[1].key, ints(rows[1].value) })
    assert.are.same({ "//54", "base64", 1 },
                    { rows[2].key, rows[2].key_encoding, ints(rows[2].value) })
    assert.are.equal("\255\254x", H.base64_decode(rows[2].key))
  end)
end)
