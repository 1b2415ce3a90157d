--- The event catalog (docs/contracts.md): eddy.event declarations and the
-- message every mistake in one gives, and the commands `eddy catalog
-- check | export | docs`.
--
-- Each test writes small apps into a fresh temporary directory: an app
-- file whose eddy.event declarations come first (so the first one is on
-- line 2) and a handler file with one plain consumer, since an app needs
-- one to load.  The commands run in that directory on relative paths, so
-- that what they print does not depend on where the directory is.
local cjson = require "cjson"
local path = require "pl.path"
local H = require "helpers"
local eddy = require "eddy"
local app = require "eddy.app"
local catalog = require "eddy.catalog"

--- Runs fn when the test ends (as many as needed; see H.defer).
local function defer(fn) H.defer(finally, fn) end

--- Writes files (a map path -> text, paths relative to a fresh temporary
-- directory, their directories made as needed) and returns the directory,
-- removed when the test ends.
local function tree(files)
  local dir = H.tmpdir()
  defer(function() H.rmdir(dir) end)
  for name, text in pairs(files) do
    local file = dir .. "/" .. name
    assert(os.execute("mkdir -p " .. H.quote(path.dirname(file))))
    H.write(file, text)
  end
  return dir
end

--- s with every "DIR/" removed, for messages that name files in dir.
local function rel(s, dir)
  return (s:gsub(dir:gsub("%p", "%%%0") .. "/", ""))
end

--- A handler file with one plain consumer.
local AUDIT = [[
local eddy = require "eddy"
return eddy.consumer { name = "audit", topics = "orders", handle = function() end }
]]

--- An app file: `decls` (Lua statements, from line 2 on), then an app
-- whose only handler file is audit.lua.
local function app_file(decls)
  return 'local eddy = require "eddy"\n' .. decls .. '\nreturn { handlers = { "audit.lua" } }\n'
end

--- A Lua value as Lua source (table keys sorted; every key a name).
local function lua(v)
  if type(v) ~= "table" then
    return type(v) == "string" and string.format("%q", v) or tostring(v)
  end
  local parts, n = {}, #v
  for i = 1, n do parts[i] = lua(v[i]) end
  local keys = {}
  for k in pairs(v) do
    if not (math.type(k) == "integer" and k >= 1 and k <= n) then keys[#keys + 1] = k end
  end
  table.sort(keys)
  for _, k in ipairs(keys) do parts[#parts + 1] = k .. " = " .. lua(v[k]) end
  return "{ " .. table.concat(parts, ", ") .. " }"
end

--- The eddy.event statements declaring each of list (declaration tables).
local function decls(list)
  local t = {}
  for i, d in ipairs(list) do t[i] = "eddy.event " .. lua(d) end
  return table.concat(t, "\n")
end

--- A deep copy of a plain table.
local copy = catalog._copy

--- OrderPlaced v1, the declaration the changes below start from.
local function order_v1()
  return {
    type = "OrderPlaced", version = 1, owner = "checkout",
    schema = {
      type = "object", required = { "id" },
      properties = {
        id = { type = "integer" },
        total = { type = "number", minimum = 0, maximum = 1000 },
        status = { enum = { "new", "paid", "shipped" } },
        note = { type = "string", maxLength = 200 },
        customer = { type = "object", properties = {
          email = { type = "string" }, name = { type = "string", minLength = 1 } } },
        items = { type = "array", maxItems = 50, items = {
          type = "object", properties = { sku = { type = "string" } } } },
      },
    },
  }
end

--- OrderPlaced v2: v1's declaration with version 2, after change(schema)
-- when given.
local function order_v2(change)
  local d = order_v1()
  d.version = 2
  if change then change(d.schema) end
  return d
end

--- Runs `eddy catalog check old.lua new.lua ...` in a fresh directory
-- where old.lua declares the list `old` and new.lua the list `new`.
-- @treturn table `{ code =, out =, err = }`
-- @treturn string the directory
local function check(old, new, ...)
  local dir = tree { ["old.lua"] = app_file(decls(old)), ["new.lua"] = app_file(decls(new)),
                     ["audit.lua"] = AUDIT }
  local r = H.run({ "catalog", "check", "old.lua", "new.lua", ... }, { cwd = dir })
  return { code = r.code, out = r.out, err = r.err }, dir
end

--- What `catalog check old.lua new.lua` prints and exits with when it
-- finds the changes in lines (each "incompatible: ..." or "compatible:
-- ..."), followed by summary.
local function report(code, lines, summary)
  local out = {}
  for i, l in ipairs(lines) do out[i] = l .. "\n" end
  return { code = code, out = table.concat(out) .. summary .. "\n", err = "" }
end

--- The result of one incompatible change: exit 1 and its line.
local function one_incompatible(line)
  return report(1, { "incompatible: " .. line },
                "1 incompatible change, 0 compatible (old.lua -> new.lua)")
end

--- The result of compatible changes only: exit 0 and their lines.
local function compatible(...)
  local lines = {}
  for i, l in ipairs({ ... }) do lines[i] = "compatible:   " .. l end
  return report(0, lines, string.format("0 incompatible changes, %d compatible " ..
                                        "(old.lua -> new.lua)", #lines))
end

---------------------------------------------------------------------------

describe("eddy.event", function()
  before_each(function() catalog.reset() end)
  after_each(function() catalog.reset() end)

  it("returns the declaration normalized: version 1 by default, the schema copied, the SLA in ms",
     function()
    local schema = { type = "object", required = { "id" },
                     properties = { id = { type = "integer" } } }
    local e = eddy.event { type = "OrderPlaced", owner = "checkout", description = "An order.",
                           schema = schema, sla = { max_lag = "2m" }, deprecated = "use v2" }
    assert.is_true(catalog.is_event(e))
    assert.equal("eddy.Event (OrderPlaced v1)", tostring(e))
    assert.matches("catalog_spec%.lua:%d+$", e.declared_at)
    local plain = setmetatable(copy(e), nil)
    plain.declared_at = nil
    assert.same({ type = "OrderPlaced", version = 1, owner = "checkout", description = "An order.",
                  schema = schema, sla = { max_lag_ms = 120000 }, deprecated = "use v2" }, plain)
    assert.are_not.equal(schema, e.schema)
    -- deprecated = false is as good as absent; a number is milliseconds.
    local e2 = eddy.event { type = "OrderPlaced", version = 2, deprecated = false,
                            sla = { max_lag = 500 } }
    assert.is_nil(e2.deprecated)
    assert.same({ max_lag_ms = 500 }, e2.sla)
    assert.same({ { "OrderPlaced", 1 }, { "OrderPlaced", 2 } },
                { { catalog.declared()[1].type, catalog.declared()[1].version },
                  { catalog.declared()[2].type, catalog.declared()[2].version } })
  end)

  describe("in an app", function()
    --- The message of app.load for an app file whose declarations are
    -- decls (from line 2 on), with the directory taken out.
    local function load_error(text)
      local dir = tree { ["eddy.lua"] = app_file(text), ["audit.lua"] = AUDIT }
      local a, err = app.load(dir .. "/eddy.lua")
      assert(a == nil, "the app loaded")
      return rel(err, dir)
    end

    local CASES = {
      { "a missing type",
        'eddy.event { version = 1 }',
        "eddy.lua:2: event: 'type' is missing" },
      { "a type that is not a name",
        'eddy.event { type = "Order Placed" }',
        "eddy.lua:2: event: 'type' must be a name of letters, digits, '_', '.' and '-' " ..
        "(at most 200), got \"Order Placed\"" },
      { "a type that is not a string",
        'eddy.event { type = 5 }',
        "eddy.lua:2: event: 'type' must be a name of letters, digits, '_', '.' and '-' " ..
        "(at most 200), got 5" },
      { "a declaration that is not a table",
        'eddy.event "OrderPlaced"',
        "eddy.lua:2: event: the declaration must be a table (eddy.event { type = ..., " ..
        "version = ..., schema = ... }), got string" },
      { "version 0",
        'eddy.event { type = "OrderPlaced", version = 0 }',
        "eddy.lua:2: event 'OrderPlaced': 'version' must be an integer >= 1, got 0" },
      { "version \"2\" (a string)",
        'eddy.event { type = "OrderPlaced", version = "2" }',
        "eddy.lua:2: event 'OrderPlaced': 'version' must be an integer >= 1, got \"2\"" },
      { "version 1.5",
        'eddy.event { type = "OrderPlaced", version = 1.5 }',
        "eddy.lua:2: event 'OrderPlaced': 'version' must be an integer >= 1, got 1.5" },
      { "an unknown option, with a suggestion",
        'eddy.event { type = "OrderPlaced", ownr = "checkout" }',
        "eddy.lua:2: event 'OrderPlaced': unknown option 'ownr' (did you mean 'owner'?)" },
      { "an owner that is not a string",
        'eddy.event { type = "OrderPlaced", owner = 3 }',
        "eddy.lua:2: event 'OrderPlaced' v1: 'owner' must be a string, got a number" },
      { "an unknown schema keyword, with a suggestion",
        'eddy.event { type = "OrderPlaced", schema = { type = "object", propertes = {} } }',
        "eddy.lua:2: event 'OrderPlaced' v1: schema: unknown keyword 'propertes' " ..
        "(did you mean 'properties'?)" },
      { "a JSON Schema keyword eddy does not check, in a nested field",
        'eddy.event { type = "OrderPlaced", schema = { type = "object", properties = {\n' ..
        '  customer = { type = "object", properties = { email = { pattern = "@" } } } } } }',
        "eddy.lua:2: event 'OrderPlaced' v1: schema of 'customer.email': unknown keyword " ..
        "'pattern' (known: additionalProperties, const, default, description, enum, " ..
        "examples, format, items, maxItems, maxLength, maximum, minItems, minLength, " ..
        "minimum, properties, required, title, type)" },
      { "a bad type name in a field's schema",
        'eddy.event { type = "OrderPlaced", schema = { type = "object",\n' ..
        '  properties = { id = { type = "int" } } } }',
        "eddy.lua:2: event 'OrderPlaced' v1: schema of 'id': 'type' must be one of string, " ..
        "number, integer, boolean, object, array, null, got \"int\"" },
      { "a bad type name in a list of types of an array's items",
        'eddy.event { type = "OrderPlaced", schema = { type = "object", properties = {\n' ..
        '  items = { type = "array", items = { type = { "string", "txt" } } } } } }',
        "eddy.lua:2: event 'OrderPlaced' v1: schema of 'items[]': 'type' must be one of " ..
        "string, number, integer, boolean, object, array, null, got \"txt\"" },
      { "a list of types with a hole",
        'eddy.event { type = "OrderPlaced", schema = { type = { nil, "bogus" } } }',
        "eddy.lua:2: event 'OrderPlaced' v1: schema: 'type' must be a type name or a list of " ..
        "them" },
      { "required that is not a list",
        'eddy.event { type = "OrderPlaced", schema = { type = "object", required = "id" } }',
        "eddy.lua:2: event 'OrderPlaced' v1: schema: 'required' must be a list of field names" },
      { "required holding something else than names",
        'eddy.event { type = "OrderPlaced", schema = { type = "object", required = { "id", 3 } } }',
        "eddy.lua:2: event 'OrderPlaced' v1: schema: 'required' must be a list of field names, " ..
        "got 3" },
      { "an empty enum",
        'eddy.event { type = "OrderPlaced", schema = { enum = {} } }',
        "eddy.lua:2: event 'OrderPlaced' v1: schema: 'enum' must be a non-empty list of values" },
      { "a schema value a catalog cannot keep (a function as a default)",
        'eddy.event { type = "OrderPlaced", schema = { type = "object", default = function() end } }',
        "eddy.lua:2: event 'OrderPlaced' v1: schema: 'default' must be JSON data, got a function" },
      { "an enum holding an infinite number, in a field",
        'eddy.event { type = "OrderPlaced", schema = { type = "object",\n' ..
        '  properties = { n = { enum = { 1, { x = -math.huge } } } } } }',
        "eddy.lua:2: event 'OrderPlaced' v1: schema of 'n': 'enum' must be JSON data, got an " ..
        "infinite number" },
      { "a const that contains itself",
        'local c = {}\nc.c = c\neddy.event { type = "OrderPlaced", schema = { const = c } }',
        "eddy.lua:4: event 'OrderPlaced' v1: schema: 'const' must be JSON data, got a table " ..
        "that contains itself" },
      { "a minimum that is NaN",
        'eddy.event { type = "OrderPlaced", schema = { type = "number", minimum = 0/0 } }',
        "eddy.lua:2: event 'OrderPlaced' v1: schema: 'minimum' must be a finite number, got NaN" },
      { "a negative maxLength",
        'eddy.event { type = "OrderPlaced", schema = { type = "string", maxLength = -1 } }',
        "eddy.lua:2: event 'OrderPlaced' v1: schema: 'maxLength' must be an integer >= 0, got -1" },
      { "an sla.max_lag that is not a duration",
        'eddy.event { type = "OrderPlaced", sla = { max_lag = "soon" } }',
        "eddy.lua:2: event 'OrderPlaced' v1: sla.max_lag must be a duration (e.g. \"5s\", 500), " ..
        "got \"soon\"" },
      { "an sla.max_lag of 0",
        'eddy.event { type = "OrderPlaced", sla = { max_lag = 0 } }',
        "eddy.lua:2: event 'OrderPlaced' v1: sla.max_lag must be a duration (e.g. \"5s\", 500), " ..
        "got 0" },
      { "an unknown sla option",
        'eddy.event { type = "OrderPlaced", sla = { lag = "5s" } }',
        "eddy.lua:2: event 'OrderPlaced' v1: sla: unknown option 'lag' (known: max_lag)" },
      { "an sla that is not a table",
        'eddy.event { type = "OrderPlaced", sla = "5s" }',
        "eddy.lua:2: event 'OrderPlaced' v1: 'sla' must be a table ({ max_lag = \"5s\" }), " ..
        "got a string" },
      { "deprecated that is not true, false or a reason",
        'eddy.event { type = "OrderPlaced", deprecated = 1 }',
        "eddy.lua:2: event 'OrderPlaced' v1: 'deprecated' must be true, false or a reason " ..
        "(a string), got a number" },
      { "the same type and version twice, at the second",
        'eddy.event { type = "OrderPlaced" }\n' ..
        'eddy.event { type = "OrderPlaced", version = 2 }\n' ..
        'eddy.event { type = "OrderPlaced", version = 1, owner = "checkout" }',
        "eddy.lua:4: event 'OrderPlaced' v1 is already declared at eddy.lua:2" },
      { "a mistake in a declaration over several lines, at its first",
        'eddy.event {\n  type = "OrderPlaced",\n  version = 2,\n' ..
        '  schema = { type = "object", required = { "id", 3 } },\n}',
        "eddy.lua:2: event 'OrderPlaced' v2: schema: 'required' must be a list of field names, " ..
        "got 3" },
    }
    for _, case in ipairs(CASES) do
      it("fails to load on " .. case[1], function()
        assert.equal(case[3], load_error(case[2]))
      end)
    end

    it("collects the declarations of the app file, its events files and directories, and its " ..
       "handler files", function()
      local dir = tree {
        ["eddy.lua"] = 'local eddy = require "eddy"\n' ..
                       'eddy.event { type = "Shipped", owner = "shipping" }\n' ..
                       'return { events = { "events.lua", "more/" },\n' ..
                       '         handlers = { "handlers/" } }\n',
        ["events.lua"] = 'local eddy = require "eddy"\n' ..
                         'eddy.event { type = "OrderPlaced", version = 2 }\n' ..
                         'eddy.event { type = "OrderPlaced", version = 1 }\n',
        ["more/cancelled.lua"] = 'local eddy = require "eddy"\n' ..
                                 'return eddy.event { type = "OrderCancelled" }\n',
        ["handlers/audit.lua"] = 'local eddy = require "eddy"\n' ..
                                 'return { eddy.event { type = "Audited" },\n' ..
                                 '  eddy.consumer { name = "audit", topics = "orders", ' ..
                                 'handle = function() end } }\n',
      }
      local a, err = app.load(dir .. "/eddy.lua")
      assert.is_nil(err)
      local got = {}
      for i, d in ipairs(a.events) do got[i] = d.type .. " v" .. d.version end
      assert.same({ "Audited v1", "OrderCancelled v1", "OrderPlaced v1", "OrderPlaced v2",
                    "Shipped v1" }, got)
      assert.same({ "audit" }, { a.consumers[1].name })
      assert.equal(1, #a.consumers)
      assert.same({ "eddy.lua:2", "events.lua:3", "events.lua:2" },
                  { rel(a.events[5].declared_at, dir), rel(a.events[3].declared_at, dir),
                    rel(a.events[4].declared_at, dir) })
      -- A type and version declared in two files: the error is at the second.
      H.write(dir .. "/handlers/audit.lua",
              'local eddy = require "eddy"\n' ..
              'local placed = eddy.event { type = "OrderPlaced", version = 2 }\n' ..
              'return { placed, eddy.consumer { name = "audit", topics = "orders", ' ..
              'handle = function() end } }\n')
      local a2, err2 = app.load(dir .. "/eddy.lua")
      assert.is_nil(a2)
      assert.equal("handlers/audit.lua:2: event 'OrderPlaced' v2 is already declared at " ..
                   "events.lua:2", rel(err2, dir))
    end)

    it("names the file of a declaration returned in a tail call, which leaves no line", function()
      local dir = tree {
        ["eddy.lua"] = 'return { events = { "a.lua", "b.lua" }, handlers = { "audit.lua" } }\n',
        ["a.lua"] = 'local eddy = require "eddy"\nreturn eddy.event { type = "Shipped" }\n',
        ["b.lua"] = 'local eddy = require "eddy"\nreturn { eddy.event { type = "Shipped" } }\n',
        ["audit.lua"] = AUDIT,
      }
      local a, err = app.load(dir .. "/eddy.lua")
      assert.is_nil(a)
      assert.equal("b.lua:2: event 'Shipped' v1 is already declared at a.lua", rel(err, dir))
    end)

    it("makes eddy catalog export fail with the declaration's message and exit 1", function()
      local dir = tree { ["eddy.lua"] = app_file('eddy.event { version = 1 }'),
                         ["audit.lua"] = AUDIT }
      local r = H.run({ "catalog", "export" }, { cwd = dir })
      assert.same({ code = 1, out = "",
                    err = "eddy catalog export: eddy.lua:2: event: 'type' is missing\n" }, r)
      H.write(dir .. "/eddy.lua",
              app_file('eddy.event { type = "OrderPlaced", version = 1, ownr = "checkout" }'))
      r = H.run({ "catalog", "export", "eddy.lua" }, { cwd = dir })
      assert.same({ code = 1, out = "",
                    err = "eddy catalog export: eddy.lua:2: event 'OrderPlaced': unknown option " ..
                          "'ownr' (did you mean 'owner'?)\n" }, r)
    end)
  end)
end)

---------------------------------------------------------------------------

describe("eddy catalog check", function()
  describe("an incompatible change", function()
    it("a field removed", function()
      local r = check({ order_v1() },
                      { order_v1(), order_v2(function(s) s.properties.note = nil end) })
      assert.same(one_incompatible("OrderPlaced v2 (against v1): field 'note' removed"), r)
      r = check({ order_v1() }, { order_v1(), order_v2(function(s)
        s.properties.id = nil
        s.required = nil
      end) })
      assert.same(one_incompatible("OrderPlaced v2 (against v1): field 'id' removed " ..
                                   "(it was required)"), r)
    end)

    it("a nested field removed, in an object or in an array's items", function()
      local r = check({ order_v1() }, { order_v1(), order_v2(function(s)
        s.properties.customer.properties.email = nil
      end) })
      assert.same(one_incompatible("OrderPlaced v2 (against v1): field 'customer.email' removed"),
                  r)
      r = check({ order_v1() }, { order_v1(), order_v2(function(s)
        s.properties.items.items.properties.sku = nil
      end) })
      assert.same(one_incompatible("OrderPlaced v2 (against v1): field 'items[].sku' removed"), r)
    end)

    it("a type changed, or widened to a list of types", function()
      local r = check({ order_v1() },
                      { order_v1(), order_v2(function(s) s.properties.id.type = "string" end) })
      assert.same(one_incompatible("OrderPlaced v2 (against v1): field 'id' changed type from " ..
                                   "integer to string"), r)
      r = check({ order_v1() }, { order_v1(), order_v2(function(s)
        s.properties.id.type = { "integer", "null" }
      end) })
      assert.same(one_incompatible("OrderPlaced v2 (against v1): field 'id' changed type from " ..
                                   "integer to integer or null"), r)
    end)

    it("a new required field", function()
      local r = check({ order_v1() }, { order_v1(), order_v2(function(s)
        s.properties.currency = { type = "string" }
        s.required = { "id", "currency" }
      end) })
      assert.same(one_incompatible("OrderPlaced v2 (against v1): field 'currency' is new and " ..
                                   "required"), r)
    end)

    it("an optional field made required", function()
      local r = check({ order_v1() },
                      { order_v1(), order_v2(function(s) s.required = { "id", "note" } end) })
      assert.same(one_incompatible("OrderPlaced v2 (against v1): field 'note' is now required"), r)
    end)

    it("an enum narrowed", function()
      local r = check({ order_v1() }, { order_v1(), order_v2(function(s)
        s.properties.status.enum = { "new", "paid" }
      end) })
      assert.same(one_incompatible("OrderPlaced v2 (against v1): field 'status' enum narrowed: " ..
                                   "\"shipped\" removed"), r)
    end)

    it("a version reused with a different schema, even one only adding an optional field",
       function()
      local changed = order_v1()
      changed.schema.properties.total.type = "string"
      local r = check({ order_v1() }, { changed })
      assert.same(one_incompatible("OrderPlaced v1: version 1 reused with a different schema: " ..
                                   "field 'total' changed type from number to string"), r)
      changed = order_v1()
      changed.schema.properties.coupon = { type = "string" }
      r = check({ order_v1() }, { changed })
      assert.same(one_incompatible("OrderPlaced v1: version 1 reused with a different schema: " ..
                                   "field 'coupon' added (optional)"), r)
    end)

    it("an event type removed", function()
      local r = check({ order_v1(), { type = "OrderCancelled" } }, { { type = "OrderCancelled" } })
      assert.same(one_incompatible("event OrderPlaced removed (consumers may still receive it)"),
                  r)
    end)

    it("a maximum lowered", function()
      local r = check({ order_v1() },
                      { order_v1(), order_v2(function(s) s.properties.total.maximum = 500 end) })
      assert.same(one_incompatible("OrderPlaced v2 (against v1): field 'total' maximum lowered " ..
                                   "from 1000 to 500"), r)
    end)

    it("additionalProperties made false, on the event or on a nested object", function()
      local r = check({ order_v1() },
                      { order_v1(), order_v2(function(s) s.additionalProperties = false end) })
      assert.same(one_incompatible("OrderPlaced v2 (against v1): the value no longer allows " ..
                                   "fields it does not list (additionalProperties)"), r)
      r = check({ order_v1() }, { order_v1(), order_v2(function(s)
        s.properties.customer.additionalProperties = false
      end) })
      assert.same(one_incompatible("OrderPlaced v2 (against v1): field 'customer' no longer " ..
                                   "allows fields it does not list (additionalProperties)"), r)
    end)

    local TIGHTER = {
      { "a minimum raised", function(s) s.properties.total.minimum = 1 end,
        "field 'total' minimum raised from 0 to 1" },
      { "a minLength raised", function(s) s.properties.customer.properties.name.minLength = 3 end,
        "field 'customer.name' minLength raised from 1 to 3" },
      { "a maxLength lowered", function(s) s.properties.note.maxLength = 100 end,
        "field 'note' maxLength lowered from 200 to 100" },
      { "a minItems added", function(s) s.properties.items.minItems = 1 end,
        "field 'items' minItems raised from none to 1" },
      { "a maxItems lowered", function(s) s.properties.items.maxItems = 10 end,
        "field 'items' maxItems lowered from 50 to 10" },
      { "an enum where there was none", function(s) s.properties.note.enum = { "a", "b" } end,
        "field 'note' now has an enum (2 values): other values were valid" },
      { "a const added", function(s) s.properties.status.const = "new" end,
        "field 'status' must now be \"new\" (const)" },
      { "an array item's field type changed",
        function(s) s.properties.items.items.properties.sku.type = "integer" end,
        "field 'items[].sku' changed type from string to integer" },
    }
    for _, case in ipairs(TIGHTER) do
      it(case[1], function()
        local r = check({ order_v1() }, { order_v1(), order_v2(case[2]) })
        assert.same(one_incompatible("OrderPlaced v2 (against v1): " .. case[3]), r)
      end)
    end
  end)

  describe("a compatible change", function()
    it("an optional field added in a new version: that line only", function()
      local r = check({ order_v1() }, { order_v1(), order_v2(function(s)
        s.properties.coupon = { type = "string" }
      end) })
      assert.same(compatible("OrderPlaced v2 (against v1): field 'coupon' added (optional)"), r)
    end)

    it("an enum widened", function()
      local r = check({ order_v1() }, { order_v1(), order_v2(function(s)
        s.properties.status.enum = { "new", "paid", "shipped", "cancelled" }
      end) })
      assert.same(compatible("OrderPlaced v2 (against v1): field 'status' enum widened: " ..
                             "\"cancelled\" added"), r)
    end)

    it("a new event type", function()
      local r = check({ order_v1() }, { order_v1(), { type = "OrderCancelled", owner = "x" } })
      assert.same(compatible("event OrderCancelled added"), r)
    end)

    it("a new version with the same schema, or only looser limits", function()
      local r = check({ order_v1() }, { order_v1(), order_v2() })
      assert.same(compatible("OrderPlaced v2 added"), r)
      r = check({ order_v1() }, { order_v1(), order_v2(function(s)
        s.properties.total.maximum = 5000
        s.properties.total.minimum = nil
        s.properties.note.maxLength = nil
      end) })
      assert.same(compatible("OrderPlaced v2 added"), r)
    end)

    it("a field no longer required, an enum dropped", function()
      local r = check({ order_v1() }, { order_v1(), order_v2(function(s)
        s.required = {}
        s.properties.status.enum = nil
      end) })
      assert.same(compatible("OrderPlaced v2 (against v1): field 'status' no longer limited to " ..
                             "an enum",
                             "OrderPlaced v2 (against v1): field 'id' no longer required"), r)
    end)

    it("a new version compared with the newest older one", function()
      local v3 = order_v2(function(s)
        s.properties.note = nil
        s.properties.coupon = { type = "string" }
      end)
      v3.version = 3
      local r = check({ order_v1(), order_v2(function(s) s.properties.note = nil end) },
                      { order_v1(), order_v2(function(s) s.properties.note = nil end), v3 })
      assert.same(compatible("OrderPlaced v3 (against v2): field 'coupon' added (optional)"), r)
    end)

    it("none for a new description, owner or annotations of the same version", function()
      local changed = order_v1()
      changed.owner = "orders-team"
      changed.description = "A customer placed an order."
      changed.schema.title = "Order"
      changed.schema.properties.id.description = "The order number"
      changed.schema.properties.customer.properties.email.format = "email"
      changed.schema.properties.note.examples = { "leave at the door" }
      changed.schema.properties.status.default = "new"
      local r = check({ order_v1() }, { changed })
      assert.same(compatible(), r)
    end)

    it("none for the same lists in another order, or additionalProperties = true", function()
      local old = order_v1()
      old.schema.required = { "id", "note" }
      old.schema.properties.id.type = { "integer", "string" }
      local new = order_v1()
      new.schema.required = { "note", "id" }
      new.schema.properties.id.type = { "string", "integer" }
      new.schema.properties.status.enum = { "shipped", "new", "paid" }
      new.schema.additionalProperties = true
      local r = check({ old }, { new })
      assert.same(compatible(), r)
    end)

    it("a version deprecated, with the new version", function()
      local deprecated = order_v1()
      deprecated.deprecated = "use v2"
      local r = check({ order_v1() }, { deprecated, order_v2() })
      assert.same(compatible("OrderPlaced v1 deprecated", "OrderPlaced v2 added"), r)
      deprecated.deprecated = true
      r = check({ order_v1() }, { deprecated })
      assert.same(compatible("OrderPlaced v1 deprecated"), r)
    end)

    it("an old version removed", function()
      local r = check({ order_v1(), order_v2() }, { order_v2() })
      assert.same(compatible("OrderPlaced v1 removed"), r)
    end)
  end)

  it("lists incompatible changes first, each group in type and version order", function()
    local new = order_v2(function(s)
      s.properties.id.type = "string"
      s.properties.customer.properties.email = nil
      s.properties.status.enum = { "new", "shipped", "lost" }
      s.properties.currency = { type = "string" }
      s.properties.coupon = { type = "string" }
      s.required = { "id", "currency" }
    end)
    local r = check({ order_v1(), { type = "Audited" } },
                    { { type = "Shipped" }, order_v1(), new })
    assert.same(report(1, {
      "incompatible: event Audited removed (consumers may still receive it)",
      "incompatible: OrderPlaced v2 (against v1): field 'customer.email' removed",
      "incompatible: OrderPlaced v2 (against v1): field 'id' changed type from integer to string",
      "incompatible: OrderPlaced v2 (against v1): field 'status' enum narrowed: \"paid\" removed",
      "incompatible: OrderPlaced v2 (against v1): field 'currency' is new and required",
      "compatible:   OrderPlaced v2 (against v1): field 'status' enum widened: \"lost\" added",
      "compatible:   OrderPlaced v2 (against v1): field 'coupon' added (optional)",
      "compatible:   event Shipped added",
    }, "5 incompatible changes, 3 compatible (old.lua -> new.lua)"), r)
  end)

  it("prints one JSON object per change with --json, and no summary", function()
    local r = check({ order_v1() }, { order_v1(), order_v2(function(s)
      s.properties.note = nil
      s.properties.coupon = { type = "string" }
    end), { type = "Shipped" } }, "--json")
    assert.same({ 1, "" }, { r.code, r.err })
    local got = {}
    for i, line in ipairs(H.lines(r.out)) do
      got[i] = cjson.decode(line)
      got[i].version = math.tointeger(got[i].version)
    end
    assert.same({
      { incompatible = true, type = "OrderPlaced", version = 2,
        change = "OrderPlaced v2 (against v1): field 'note' removed" },
      { incompatible = false, type = "OrderPlaced", version = 2,
        change = "OrderPlaced v2 (against v1): field 'coupon' added (optional)" },
      { incompatible = false, type = "Shipped", version = 1, change = "event Shipped added" },
    }, got)
    r = check({ order_v1() }, { order_v1() }, "-j")
    assert.same({ code = 0, out = "", err = "" }, r)
  end)

  it("reads OLD from a catalog saved by eddy catalog export, and NEW too", function()
    local r, dir = check({ order_v1() }, { order_v1(), order_v2(function(s)
      s.properties.note = nil
    end) })
    assert.equal(1, r.code)
    local e = H.run({ "catalog", "export", "old.lua", "-o", "old.json" }, { cwd = dir })
    assert.same({ code = 0, out = "", err = "" }, e)
    r = H.run({ "catalog", "check", "old.json", "new.lua" }, { cwd = dir })
    assert.same({ code = 1, out = "incompatible: OrderPlaced v2 (against v1): field 'note' " ..
                                 "removed\n1 incompatible change, 0 compatible " ..
                                 "(old.json -> new.lua)\n", err = "" }, r)
    e = H.run({ "catalog", "export", "new.lua", "--output", "new.json" }, { cwd = dir })
    assert.same({ code = 0, out = "", err = "" }, e)
    r = H.run({ "catalog", "check", "old.json", "new.json" }, { cwd = dir })
    assert.same({ code = 1, out = "incompatible: OrderPlaced v2 (against v1): field 'note' " ..
                                 "removed\n1 incompatible change, 0 compatible " ..
                                 "(old.json -> new.json)\n", err = "" }, r)
  end)

  it("fails with one line on a file that is not a catalog, or a broken app", function()
    local dir = tree {
      ["new.lua"] = app_file(decls({ order_v1() })), ["audit.lua"] = AUDIT,
      ["orders.json"] = '{"orders": []}\n',
      ["list.json"] = '[1, 2]\n',
      ["broken.json"] = '{ not json\n',
      ["empty.json"] = '',
      ["future.json"] = '{"eddy_catalog": 2, "events": []}\n',
      ["noversion.json"] = '{"eddy_catalog": 1, "events": [{"type": "OrderPlaced"}]}\n',
      ["badschema.json"] = '{"eddy_catalog": 1, "events": [{"type": "OrderPlaced", ' ..
                           '"version": 1, "schema": {"properties": {"id": 5}}}]}\n',
      ["twice.json"] = '{"eddy_catalog": 1, "events": [{"type": "OrderPlaced", "version": 1},' ..
                       ' {"type": "OrderPlaced", "version": 1}]}\n',
      ["notes.txt"] = 'hello\n',
      ["broken.lua"] = app_file('eddy.event { type = "OrderPlaced", version = 0 }'),
    }
    local cases = {
      { "orders.json", "'orders.json' is not an eddy catalog (no 'eddy_catalog' field; write " ..
                       "one with eddy catalog export)" },
      { "list.json", "'list.json' is not an eddy catalog (no 'eddy_catalog' field; write one " ..
                     "with eddy catalog export)" },
      { "broken.json", "'broken.json' is not an eddy catalog (expected a string key at byte 3)" },
      { "empty.json", "'empty.json' is not an eddy catalog (unexpected end at byte 1)" },
      { "future.json", "'future.json': catalog format 2 is not known (this eddy reads 1)" },
      { "noversion.json", "'noversion.json': events[1] needs a type and an integer version" },
      { "badschema.json", "'badschema.json': events[1]: event 'OrderPlaced' v1: schema of 'id' " ..
                          "must be a table, got a number" },
      { "twice.json", "'twice.json': events[2]: OrderPlaced v1 is there twice" },
      { "notes.txt", "notes.txt:2: syntax error near <eof>" },
      { "broken.lua", "broken.lua:2: event 'OrderPlaced': 'version' must be an integer >= 1, " ..
                      "got 0" },
    }
    for _, case in ipairs(cases) do
      local r = H.run({ "catalog", "check", case[1], "new.lua" }, { cwd = dir })
      assert.same({ code = 1, out = "", err = "eddy catalog check: " .. case[2] .. "\n" }, r)
    end
    -- NEW is read as OLD is.
    local r = H.run({ "catalog", "check", "new.lua", "future.json" }, { cwd = dir })
    assert.same({ code = 1, out = "",
                  err = "eddy catalog check: 'future.json': catalog format 2 is not known " ..
                        "(this eddy reads 1)\n" }, r)
  end)

  it("loads each app's own modules: events declared in a module the handlers require", function()
    local function app_dir(total_type)
      return {
        ["eddy.lua"] = 'return { handlers = { "handlers/" } }\n',
        ["shared_events.lua"] = 'local eddy = require "eddy"\n' ..
          'return { placed = eddy.event { type = "OrderPlaced", schema = { type = "object", ' ..
          'properties = { total = { type = "' .. total_type .. '" } } } } }\n',
        ["handlers/h.lua"] = 'local eddy = require "eddy"\nlocal ev = require "shared_events"\n' ..
          'return eddy.consumer { name = "h", topics = "orders", handle = function() end }\n',
      }
    end
    local files = {}
    for k, v in pairs(app_dir("number")) do files["old/" .. k] = v end
    for k, v in pairs(app_dir("string")) do files["new/" .. k] = v end
    local dir = tree(files)
    -- Run from elsewhere: the modules are found beside each app.
    local r = H.run({ "catalog", "check", dir .. "/old/eddy.lua", dir .. "/new/eddy.lua" },
                    { cwd = "/" })
    assert.same({ 1, "incompatible: OrderPlaced v1: version 1 reused with a different schema: " ..
                     "field 'total' changed type from number to string" },
                { r.code, H.lines(r.out)[1] })
  end)

  it("fails with one line on a missing file or a directory", function()
    local dir = tree { ["new.lua"] = app_file(decls({ order_v1() })), ["audit.lua"] = AUDIT }
    local r = H.run({ "catalog", "check", "missing.lua", "new.lua" }, { cwd = dir })
    assert.same({ code = 1, out = "",
                  err = "eddy catalog check: cannot open 'missing.lua': No such file or " ..
                        "directory\n" }, r)
    r = H.run({ "catalog", "check", "new.lua", "gone/new.json" }, { cwd = dir })
    assert.same({ code = 1, out = "",
                  err = "eddy catalog check: cannot open 'gone/new.json': No such file or " ..
                        "directory\n" }, r)
    r = H.run({ "catalog", "check", ".", "new.lua" }, { cwd = dir })
    assert.same({ code = 1, out = "", err = "eddy catalog check: cannot open '.': Is a directory\n" },
                r)
  end)

  it("exits 2 with the usage on a wrong number of arguments or an unknown option", function()
    local dir = tree { ["new.lua"] = app_file(decls({ order_v1() })), ["audit.lua"] = AUDIT }
    local cases = {
      { {}, "missing argument (usage: eddy catalog check OLD NEW [--json])" },
      { { "new.lua" }, "missing argument (usage: eddy catalog check OLD NEW [--json])" },
      { { "new.lua", "new.lua", "new.lua" }, "unexpected argument 'new.lua'" },
      { { "new.lua", "new.lua", "--jsn" }, "unknown option '--jsn' (did you mean '--json'?)" },
    }
    for _, case in ipairs(cases) do
      local r = H.run({ "catalog", "check", table.unpack(case[1]) }, { cwd = dir })
      assert.same({ code = 2, out = "",
                    err = "eddy catalog check: " .. case[2] ..
                          " (see 'eddy catalog check --help')\n" }, r)
    end
  end)
end)

---------------------------------------------------------------------------

describe("eddy catalog export", function()
  local SHOP = [[
local eddy = require "eddy"
eddy.event { type = "OrderPlaced", owner = "checkout", deprecated = "use v2",
  sla = { max_lag = "1500ms" },
  schema = { type = "object", required = { "id" },
    properties = { id = { type = "integer", description = "The order number" },
                   tags = { type = "array", items = { type = "string" } } } } }
eddy.event { type = "OrderPlaced", version = 2, description = "An order.",
  schema = { type = "object", properties = {} } }
eddy.event { type = "Reserved" }
return { handlers = { "rules.lua" } }
]]
  local RULES = [[
local eddy = require "eddy"
return eddy.on("OrderPlaced", { topic = "orders", name = "stock", emits = "Reserved" },
  function() end)
]]

  local EXPORTED = [[
{
  "eddy_catalog": 1,
  "events": [
    {
      "consumers": [
        "rule stock"
      ],
      "deprecated": "use v2",
      "owner": "checkout",
      "producers": [],
      "schema": {
        "properties": {
          "id": {
            "description": "The order number",
            "type": "integer"
          },
          "tags": {
            "items": {
              "type": "string"
            },
            "type": "array"
          }
        },
        "required": [
          "id"
        ],
        "type": "object"
      },
      "sla": {
        "max_lag_ms": 1500
      },
      "type": "OrderPlaced",
      "version": 1
    },
    {
      "consumers": [
        "rule stock"
      ],
      "description": "An order.",
      "producers": [],
      "schema": {
        "properties": {},
        "type": "object"
      },
      "type": "OrderPlaced",
      "version": 2
    },
    {
      "consumers": [],
      "producers": [
        "rule stock"
      ],
      "type": "Reserved",
      "version": 1
    }
  ]
}
]]

  it("writes the catalog as JSON with sorted keys, to stdout or to -o FILE", function()
    local dir = tree { ["eddy.lua"] = SHOP, ["rules.lua"] = RULES }
    local r = H.run({ "catalog", "export" }, { cwd = dir })
    assert.same({ code = 0, out = EXPORTED, err = "" }, r)
    r = H.run({ "catalog", "export", dir .. "/eddy.lua", "-o", dir .. "/saved.json" })
    assert.same({ code = 0, out = "", err = "" }, r)
    assert.equal(EXPORTED, H.read(dir .. "/saved.json"))
    assert.is_false(H.exists(dir .. "/data"), "eddy catalog export made a store")
  end)

  it("writes an empty list for an app that declares nothing", function()
    local dir = tree { ["eddy.lua"] = app_file(""), ["audit.lua"] = AUDIT }
    local r = H.run({ "catalog", "export" }, { cwd = dir })
    assert.same({ code = 0, out = '{\n  "eddy_catalog": 1,\n  "events": []\n}\n', err = "" }, r)
  end)

  it("round-trips: check SAVED APP finds no change, whichever way round", function()
    local rich = decls({
      { type = "OrderPlaced", owner = "checkout", sla = { max_lag = "5s" }, deprecated = true,
        schema = { type = "object", required = { "id" },
          additionalProperties = { type = "number", minimum = 0.25 },
          properties = {
            id = { type = { "string", "null" }, minLength = 2, examples = {}, default = "ab" },
            total = { type = "number", minimum = -1.5, maximum = 1e9 },
            kind = { enum = { 1, 2.5, "s", true } },
            matrix = { type = "array", minItems = 1,
                       items = { type = "array", items = { type = "integer", maximum = 99 } } },
            empty = { type = "object", properties = {} },
            fixed = { const = { a = 1, b = { "x" } } },
          } } },
      { type = "OrderPlaced", version = 2, schema = { type = "object", additionalProperties = false,
        properties = { id = { type = "string" }, flag = { enum = { false, "x" } } } } },
      { type = "Shipped" },
    }) .. '\neddy.event { type = "Nullable", schema = { enum = { "a", eddy.null } } }'
    local dir = tree { ["eddy.lua"] = app_file(rich), ["audit.lua"] = AUDIT }
    local r = H.run({ "catalog", "export", "-o", "saved.json" }, { cwd = dir })
    assert.same({ code = 0, out = "", err = "" }, r)
    r = H.run({ "catalog", "check", "saved.json", "eddy.lua" }, { cwd = dir })
    assert.same({ code = 0, out = "0 incompatible changes, 0 compatible (saved.json -> eddy.lua)\n",
                  err = "" }, r)
    r = H.run({ "catalog", "check", "eddy.lua", "saved.json" }, { cwd = dir })
    assert.same({ code = 0, out = "0 incompatible changes, 0 compatible (eddy.lua -> saved.json)\n",
                  err = "" }, r)
    -- Exporting the saved catalog gives it back as it was.
    local saved = H.read(dir .. "/saved.json")
    r = H.run({ "catalog", "export", "saved.json" }, { cwd = dir })
    assert.same({ code = 0, out = saved, err = "" }, r)
  end)

  it("fails with one line on a file it cannot write or an app it cannot open", function()
    local dir = tree { ["eddy.lua"] = app_file(""), ["audit.lua"] = AUDIT }
    local r = H.run({ "catalog", "export", "-o", "no/such/dir/saved.json" }, { cwd = dir })
    assert.same({ code = 1, out = "",
                  err = "eddy catalog export: cannot write 'no/such/dir/saved.json': No such " ..
                        "file or directory\n" }, r)
    r = H.run({ "catalog", "export", "other.lua" }, { cwd = dir })
    assert.same({ code = 1, out = "",
                  err = "eddy catalog export: cannot open 'other.lua': No such file or " ..
                        "directory\n" }, r)
    r = H.run({ "catalog", "export", "a.lua", "b.lua" }, { cwd = dir })
    assert.same({ code = 2, out = "",
                  err = "eddy catalog export: unexpected argument 'b.lua' (see 'eddy catalog " ..
                        "export --help')\n" }, r)
  end)
end)

---------------------------------------------------------------------------

describe("eddy catalog docs", function()
  -- A checkout saga (after spec/saga_spec.lua) started by OrderPlaced, and
  -- an inventory rule that answers its command.
  local SAGA = [[
local eddy = require "eddy"
return eddy.saga {
  name = "checkout",
  start = "OrderPlaced",
  abort = "OrderCancelled",
  topics = { "orders", "replies" },
  steps = {
    { name = "reserve",
      command = { topic = "commands", type = "ReserveStock" },
      on = { StockReserved = "next", OutOfStock = "compensate" },
      compensation = { topic = "commands", type = "ReleaseStock" } },
  },
}
]]
  local INVENTORY = [[
local eddy = require "eddy"
return eddy.on({ "ReserveStock", "ReleaseStock" },
  { topic = "commands", name = "inventory", emits = { "StockReserved", "OutOfStock" } },
  function() end)
]]
  local EVENTS = [[
local eddy = require "eddy"
eddy.event { type = "OrderPlaced", version = 1, owner = "shop", deprecated = "use v2",
  schema = { type = "object", required = { "id" }, properties = { id = { type = "integer" } } } }
eddy.event { type = "OrderPlaced", version = 2, owner = "checkout-team",
  description = "A customer placed an order.", sla = { max_lag = "5s" },
  schema = { type = "object", required = { "id", "items" }, additionalProperties = false,
    properties = {
      id = { type = "integer", minimum = 1, description = "Order number" },
      status = { enum = { "new", "paid" } },
      customer = { type = "object", required = { "email" }, properties = {
        email = { type = "string", format = "email" },
        name = { type = "string", maxLength = 80 } } },
      items = { type = "array", minItems = 1, items = { type = "object", required = { "sku" },
        properties = { sku = { type = "string" }, qty = { type = "integer", minimum = 1 } } } },
    } } }
eddy.event { type = "StockReserved", owner = "inventory", sla = { max_lag = 90000 } }
eddy.event { type = "OutOfStock", owner = "inventory", deprecated = true,
  schema = { type = "string" } }
]]

  local TYPES = {
    "| Type | Versions | Owner | Producers | Consumers | SLA |",
    "|---|---|---|---|---|---|",
    "| [OrderPlaced](#orderplaced) | 1 (deprecated), 2 | checkout-team |  | saga checkout " ..
    "| max lag 5s |",
    "| [OutOfStock](#outofstock) | 1 (deprecated) | inventory | rule inventory | saga checkout " ..
    "|  |",
    "| [StockReserved](#stockreserved) | 1 | inventory | rule inventory | saga checkout " ..
    "| max lag 90s |",
  }

  local SECTIONS = {
    "## OrderPlaced",
    "",
    "A customer placed an order.",
    "",
    "- Owner: checkout-team",
    "- Producers: none declared",
    "- Consumers: saga checkout",
    "- SLA: handled within 5s of being produced (max_lag)",
    "",
    "### OrderPlaced v1 (deprecated: use v2)",
    "",
    "| Field | Type | Required | Rules | Description |",
    "|---|---|---|---|---|",
    "| `id` | integer | yes |  |  |",
    "",
    "### OrderPlaced v2 (current)",
    "",
    "| Field | Type | Required | Rules | Description |",
    "|---|---|---|---|---|",
    "| `customer` | object | no |  |  |",
    "| `customer.email` | string | yes | format email |  |",
    "| `customer.name` | string | no | maxLength 80 |  |",
    "| `id` | integer | yes | minimum 1 | Order number |",
    "| `items` | array of object | yes | minItems 1 |  |",
    "| `items[].qty` | integer | no | minimum 1 |  |",
    "| `items[].sku` | string | yes |  |  |",
    "| `status` | enum | no | one of \"new\", \"paid\" |  |",
    "",
    "Fields not listed are refused.",
    "",
    "## OutOfStock",
    "",
    "- Owner: inventory",
    "- Producers: rule inventory",
    "- Consumers: saga checkout",
    "- SLA: none",
    "",
    "### OutOfStock v1 (deprecated)",
    "",
    "Schema: string.",
    "",
    "## StockReserved",
    "",
    "- Owner: inventory",
    "- Producers: rule inventory",
    "- Consumers: saga checkout",
    "- SLA: handled within 90s of being produced (max_lag)",
    "",
    "### StockReserved v1 (current)",
    "",
    "No schema: any value.",
  }

  --- The app in a fresh directory: events.lua, the saga and the rule.
  local function shop()
    return tree {
      ["eddy.lua"] = 'return { data = "data", events = { "events.lua" }, ' ..
                     'handlers = { "handlers/" } }\n',
      ["events.lua"] = EVENTS,
      ["handlers/checkout.lua"] = SAGA,
      ["handlers/inventory.lua"] = INVENTORY,
    }
  end

  --- The whole document: its source line, then lines.
  local function document(source, lines)
    return table.concat({ "# Event catalog", "",
                          "Written by `eddy catalog docs` from `" .. source .. "`.", "",
                          table.concat(lines, "\n") }, "\n") .. "\n"
  end

  --- The lines of the types table, the sections, and the Flow section
  -- with the graph `eddy flows` draws of the app in dir.
  local function app_lines(dir)
    local flows = H.run({ "flows" }, { cwd = dir })
    assert.equal(0, flows.code)
    local lines = {}
    for _, l in ipairs(TYPES) do lines[#lines + 1] = l end
    lines[#lines + 1] = ""
    for _, l in ipairs(SECTIONS) do lines[#lines + 1] = l end
    for _, l in ipairs({ "", "## Flow", "", "```mermaid" }) do lines[#lines + 1] = l end
    for _, l in ipairs(H.lines(flows.out)) do lines[#lines + 1] = l end
    lines[#lines + 1] = "```"
    return lines
  end

  it("writes the types table, each version's fields, deprecations, SLAs and the flow", function()
    local dir = shop()
    local r = H.run({ "catalog", "docs" }, { cwd = dir })
    assert.same({ code = 0, out = document("eddy.lua", app_lines(dir)), err = "" }, r)
    -- The flow block is the mermaid graph eddy flows draws.
    assert.matches("\n## Flow\n\n```mermaid\nflowchart LR\n", r.out, 1, true)
    assert.matches("\n  type_OrderPlaced -->|\"orders, replies (starts)\"| saga_checkout\n",
                   r.out, 1, true)
    assert.is_false(H.exists(dir .. "/data"), "eddy catalog docs made a store")
  end)

  it("writes the same text to -o FILE", function()
    local dir = shop()
    local r = H.run({ "catalog", "docs", "eddy.lua", "-o", "CATALOG.md" }, { cwd = dir })
    assert.same({ code = 0, out = "", err = "" }, r)
    assert.equal(document("eddy.lua", app_lines(dir)), H.read(dir .. "/CATALOG.md"))
  end)

  it("writes up a saved catalog the same, without the flow", function()
    local dir = shop()
    local r = H.run({ "catalog", "export", "-o", "saved.json" }, { cwd = dir })
    assert.same({ code = 0, out = "", err = "" }, r)
    r = H.run({ "catalog", "docs", "saved.json" }, { cwd = dir })
    local lines = {}
    for _, l in ipairs(TYPES) do lines[#lines + 1] = l end
    lines[#lines + 1] = ""
    for _, l in ipairs(SECTIONS) do lines[#lines + 1] = l end
    assert.same({ code = 0, out = document("saved.json", lines), err = "" }, r)
  end)

  it("says so for an app that declares no event types", function()
    local dir = tree { ["eddy.lua"] = app_file(""), ["audit.lua"] = AUDIT }
    local r = H.run({ "catalog", "docs" }, { cwd = dir })
    assert.same({ code = 0, err = "",
                  out = "# Event catalog\n\nWritten by `eddy catalog docs` from `eddy.lua`.\n\n" ..
                        "The app declares no event types (see `eddy.event`).\n\n## Flow\n\n" ..
                        "```mermaid\nflowchart LR\n  consumer_audit[\"consumer audit\"]\n" ..
                        "  topic_orders[(\"orders\")]\n  topic_orders --> consumer_audit\n```\n" },
                r)
  end)
end)
