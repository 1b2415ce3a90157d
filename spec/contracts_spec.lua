--- Event contracts at run time: a declared event type's schema checked at
-- ctx:emit (the handler fails, its message is quarantined with reason
-- schema) and at consume (quarantined with reason schema before the
-- handler runs); the eddy-version header; deprecated versions; a reload
-- that changes the catalog.
local cjson = require "cjson"
local H = require "helpers"

local function defer(fn) H.defer(finally, fn) end

-- The declarations of the specs below.
local EVENTS = [[
local eddy = require "eddy"
return {
  eddy.event { type = "OrderPlaced", version = 1, owner = "orders", deprecated = true,
    schema = { type = "object", required = { "id", "sku" },
               properties = { id = { type = "integer" }, sku = { type = "string" } } } },
  eddy.event { type = "OrderPlaced", version = 2, owner = "orders",
    schema = { type = "object", required = { "id", "total" }, additionalProperties = false,
               properties = {
                 id = { type = "integer" }, total = { type = "number", minimum = 0 },
                 status = { enum = { "new", "paid" } },
                 items = { type = "array", items = { type = "object", required = { "sku" },
                           properties = { sku = { type = "string", minLength = 1 } } } } } } },
  eddy.event { type = "OrderCounted", version = 1,
    schema = { type = "object", required = { "id", "n" },
               properties = { id = { type = "integer" }, n = { type = "integer" } } } },
}
]]

--- An app in a fresh directory: eddy.lua with `events = { "events.lua" }`,
-- events.lua (EVENTS unless given; false: none) and handlers/h.lua.
local function make_app(handlers, events)
  local dir = H.tmpdir()
  defer(function() H.rmdir(dir) end)
  assert(os.execute("mkdir " .. H.quote(dir .. "/handlers")))
  H.write(dir .. "/eddy.lua", "return { data = 'data', handlers = { 'handlers/' },\n" ..
          (events == false and "" or "  events = { 'events.lua' },\n") ..
          "  topics = { orders = { partitions = 1 }, counted = { partitions = 1 } } }\n")
  if events ~= false then H.write(dir .. "/events.lua", events or EVENTS) end
  H.write(dir .. "/handlers/h.lua", handlers)
  return { dir = dir, file = dir .. "/eddy.lua", data = dir .. "/data" }
end

local function eddy(app, ...)
  local r = H.run({ "--data", app.data, ... })
  assert(r.code == 0, table.concat({ ... }, " ") .. ": " .. r.err)
  return r.out
end

local function produce(app, values, ...)
  if not app.created then
    eddy(app, "topic", "create", "orders", "--partitions", "1")
    app.created = true
  end
  local r = H.run({ "produce", "orders", "--data", app.data, ... },
                  { stdin = table.concat(values, "\n") .. "\n" })
  assert(r.code == 0, r.err)
end

local function drain(app)
  local r = H.run({ "run", app.file, "--drain" })
  assert(r.code == 0, r.err)
  return r
end

-- The quarantined messages: { value, reason, error, attempts } each, by seq.
local function quarantined(app)
  local out = {}
  for _, e in ipairs(H.json_lines(eddy(app, "dlq", "list", "--json"))) do
    out[#out + 1] = { value = e.value, reason = e.reason, error = e.error, attempts = e.attempts }
  end
  return out
end

-- The messages of a topic: { value, version header } each.
local function messages(app, topic)
  local out = {}
  for _, m in ipairs(H.json_lines(eddy(app, "tail", topic, "--from-beginning", "--json"))) do
    out[#out + 1] = { m.value, m.headers["eddy-version"] or cjson.null }
  end
  return out
end

-- Counts the orders it handles in state and emits OrderCounted for each;
-- an order with id 99 emits a count that breaks its schema.
local COUNTER = [[
local eddy = require "eddy"
return eddy.consumer { name = "counter", topics = { "orders" }, retry = { attempts = 3, backoff = 1 },
  handle = function(msg, ctx)
    local o = msg:json()
    ctx.state:set("handled", (ctx.state:get("handled") or 0) + 1)
    ctx:emit("counted", { key = msg.key, type = "OrderCounted",
                          value = { id = o.id, n = o.id == 99 and "many" or 1 } })
  end }
]]

describe("a declared event type", function()
  it("is checked when consumed: a value that breaks its schema is quarantined at once, " ..
     "with reason schema and the field and rule named", function()
    local app = make_app(COUNTER)
    produce(app, {
      '{"id":1,"total":10}',
      '{"id":2,"total":"10"}',
      '{"id":3}',
      '{"id":4,"total":1,"status":"lost"}',
      '{"id":5,"total":1,"items":[{"sku":"a"},{"qty":1}]}',
      '{"id":6,"total":1,"items":[{"sku":""}]}',
      '{"id":7,"total":-1}',
      '{"id":8,"total":1,"extra":true}',
      'not json',
      '{"id":10,"total":1,"status":"paid","items":[{"sku":"b"}]}',
    }, "--type", "OrderPlaced", "--version", "2")
    local r = drain(app)
    assert.same({ received = 10, handled = 2, quarantined = 8, retried = 0 },
                { received = H.summary(r.err).received, handled = H.summary(r.err).handled,
                  quarantined = H.summary(r.err).quarantined, retried = H.summary(r.err).retried })
    local p = "OrderPlaced v2 does not match its schema: "
    local function q(value, err) return { value = value, reason = "schema", error = p .. err, attempts = 1 } end
    assert.same({
      q('{"id":2,"total":"10"}', "field 'total' must be a number (type), got string"),
      q('{"id":3}', "field 'total' is missing (required)"),
      q('{"id":4,"total":1,"status":"lost"}',
        "field 'status' must be one of \"new\", \"paid\" (enum), got \"lost\""),
      q('{"id":5,"total":1,"items":[{"sku":"a"},{"qty":1}]}',
        "field 'items[1].sku' is missing (required)"),
      q('{"id":6,"total":1,"items":[{"sku":""}]}',
        "field 'items[0].sku' must be at least 1 characters long (minLength), got 0"),
      q('{"id":7,"total":-1}', "field 'total' must be >= 0 (minimum), got -1"),
      q('{"id":8,"total":1,"extra":true}', "field 'extra' is not allowed (additionalProperties)"),
      q("not json", "the value is not JSON"),
    }, quarantined(app))
    -- The handler never saw them.
    assert.equal("2\n", eddy(app, "state", "get", "counter", "handled"))
  end)

  it("is checked against the version in its eddy-version header, else the newest", function()
    local app = make_app(COUNTER)
    -- Valid as v1 (id, sku), not as v2 (total required, no other fields).
    produce(app, { '{"id":1,"sku":"a"}' }, "--type", "OrderPlaced", "--version", "1")
    produce(app, { '{"id":2,"sku":"a"}' }, "--type", "OrderPlaced")
    produce(app, { '{"id":3,"total":1}' }, "--type", "OrderPlaced", "--version", "7")
    produce(app, { '{"id":4,"total":1}' }, "--type", "OrderPlaced", "--version", "1")
    -- Another type, or none: not checked.
    produce(app, { '{"id":5,"anything":true}' }, "--type", "SomethingElse")
    produce(app, { '{"id":6}' })
    drain(app)
    assert.same({
      { value = '{"id":2,"sku":"a"}', reason = "schema", attempts = 1,
        error = "OrderPlaced v2 does not match its schema: field 'total' is missing (required)" },
      { value = '{"id":4,"total":1}', reason = "schema", attempts = 1,
        error = "OrderPlaced v1 does not match its schema: field 'sku' is missing (required)" },
    }, quarantined(app))
    assert.equal("4\n", eddy(app, "state", "get", "counter", "handled"))
  end)

  it("is checked at ctx:emit: the handler fails, nothing it did is kept, and the message is " ..
     "quarantined at once with reason schema", function()
    local app = make_app(COUNTER)
    produce(app, { '{"id":1,"total":1}', '{"id":99,"total":1}', '{"id":3,"total":1}' },
            "--type", "OrderPlaced", "--version", "2")
    drain(app)
    assert.same({ { value = '{"id":99,"total":1}', reason = "schema", attempts = 1,
                    error = "ctx:emit: OrderCounted v1 does not match its schema: " ..
                            "field 'n' must be an integer (type), got string" } },
                quarantined(app))
    -- The emitted events carry their type's version; the failed one's
    -- emit and state change are gone.
    assert.same({ { '{"id":1,"n":1}', "1" }, { '{"id":3,"n":1}', "1" } }, messages(app, "counted"))
    assert.equal("2\n", eddy(app, "state", "get", "counter", "handled"))
  end)

  it("refuses at ctx:emit with a string error a handler may catch and go on from", function()
    local app = make_app([[
local eddy = require "eddy"
return eddy.consumer { name = "careful", topics = { "orders" },
  handle = function(msg, ctx)
    local ok, err = pcall(ctx.emit, ctx, "counted",
                          { type = "OrderCounted", value = { id = 1, n = "x" } })
    ctx.state:set("caught", { ok = ok, kind = type(err), err = err })
    ctx:emit("counted", { type = "OrderCounted", value = { id = 1, n = 1 } })
  end }
]])
    produce(app, { "{}" })
    drain(app)
    assert.same({}, quarantined(app))
    assert.same({ ok = false, kind = "string",
                  err = "ctx:emit: OrderCounted v1 does not match its schema: field 'n' must " ..
                        "be an integer (type), got string" },
                cjson.decode(eddy(app, "state", "get", "careful", "caught")))
    assert.same({ { '{"id":1,"n":1}', "1" } }, messages(app, "counted"))
  end)

  it("emits the version asked for, refuses one not declared, and warns once about a " ..
     "deprecated one, naming the newer", function()
    local app = make_app([[
local eddy = require "eddy"
return eddy.consumer { name = "old-producer", topics = { "orders" },
  handle = function(msg, ctx)
    local v = msg:json()
    if v.version == 3 then
      ctx:emit("counted", { type = "OrderPlaced", version = 3, value = { id = v.id } })
    elseif v.version == 1 then
      ctx:emit("counted", { type = "OrderPlaced", version = 1, value = { id = v.id, sku = "s" } })
    else
      ctx:emit("counted", { type = "OrderPlaced", value = { id = v.id, total = 2 } })
    end
  end }
]])
    produce(app, { '{"id":1,"version":1}', '{"id":2,"version":1}', '{"id":3}',
                   '{"id":4,"version":3}' })
    local r = drain(app)
    assert.same({ { '{"id":1,"sku":"s"}', "1" }, { '{"id":2,"sku":"s"}', "1" },
                  { '{"id":3,"total":2}', "2" } }, messages(app, "counted"))
    assert.same({ { value = '{"id":4,"version":3}', reason = "schema", attempts = 1,
                    error = "ctx:emit: event OrderPlaced has no version 3 (declared: 1, 2)" } },
                quarantined(app))
    local warnings = {}
    for _, line in ipairs(H.lines(r.err)) do
      local w = line:match("(event OrderPlaced v1 is deprecated[^\"]*)")
      if w then warnings[#warnings + 1] = w end
    end
    assert.same({ "event OrderPlaced v1 is deprecated; emit v2 instead" }, warnings)
  end)

  it("is left alone by a rule that passes over it", function()
    local app = make_app([[
local eddy = require "eddy"
return eddy.on("OrderCounted", { topic = "orders", name = "only-counts" }, function(ev, ctx)
  ctx.state:set("seen", (ctx.state:get("seen") or 0) + 1)
end)
]])
    -- A broken OrderPlaced: the rule does not handle OrderPlaced, so it
    -- passes over it instead of quarantining it.  A broken OrderCounted is
    -- its own business.
    produce(app, { '{"id":1}' }, "--type", "OrderPlaced")
    produce(app, { '{"id":1,"n":1}', '{"id":2}' }, "--type", "OrderCounted")
    drain(app)
    assert.same({ { value = '{"id":2}', reason = "schema", attempts = 1,
                    error = "OrderCounted v1 does not match its schema: " ..
                            "field 'n' is missing (required)" } }, quarantined(app))
    assert.equal("1\n", eddy(app, "state", "get", "only-counts", "seen"))
  end)

  it("takes a changed catalog on reload", function()
    local app = make_app(COUNTER)
    -- The topic first: eddy run, once started, would make it too.
    eddy(app, "topic", "create", "orders", "--partitions", "1")
    app.created = true
    local h = H.spawn({ "run", app.file })
    defer(function() H.cleanup(h) end)
    produce(app, { '{"id":1,"total":1,"note":"x"}' }, "--type", "OrderPlaced", "--version", "2")
    H.wait_until(function() return #quarantined(app) == 1 end, 20, "the first quarantine")
    -- v2 now allows other fields.
    H.write(app.dir .. "/events.lua", (EVENTS:gsub("additionalProperties = false,", "")))
    local r = H.run({ "reload", "--data", app.data })
    assert.equal(0, r.code, r.err)
    produce(app, { '{"id":2,"total":1,"note":"x"}' }, "--type", "OrderPlaced", "--version", "2")
    H.wait_until(function()
      local c = H.run({ "state", "get", "counter", "handled", "--data", app.data })
      return c.out == "1\n"
    end, 20, "the second order to be handled")
    assert.equal(1, #quarantined(app))
  end)
end)

describe("an app without declared events", function()
  it("sends no eddy-version header and checks nothing", function()
    local app = make_app(COUNTER, false)
    produce(app, { '{"id":99}' }, "--type", "OrderPlaced")
    drain(app)
    assert.same({}, quarantined(app))
    assert.same({ { '{"id":99,"n":"many"}', cjson.null } }, messages(app, "counted"))
  end)
end)

describe("eddy.catalog.validate", function()
  local catalog = require "eddy.catalog"
  local core = require "eddy.core"
  local function check(schema, json)
    return catalog.validate({ type = "T", version = 4, schema = schema },
                            assert(core.json_decode(json)))
  end
  local P = "T v4 does not match its schema: "

  it("checks every keyword of the subset, naming the field and the rule", function()
    local cases = {
      { { type = { "string", "null" } }, 'null', nil },
      { { type = { "string", "null" } }, '1', "the value must be a string or null (type), got number" },
      { { type = "integer" }, '3.0', nil },
      { { type = "integer" }, '3.5', "the value must be an integer (type), got number" },
      { { type = "number" }, '3', nil },
      { { type = "object" }, '[1]', "the value must be an object (type), got array" },
      { { type = "object" }, '{}', nil },
      { { type = "array" }, '{}', nil },
      { { type = "boolean" }, '"true"', "the value must be a boolean (type), got string" },
      { { const = "v1" }, '"v2"', "the value must be \"v1\" (const), got \"v2\"" },
      { { enum = { 1, 2, core.null } }, 'null', nil },
      { { enum = { 1, 2 } }, '3', "the value must be one of 1, 2 (enum), got 3" },
      { { maximum = 10 }, '11', "the value must be <= 10 (maximum), got 11" },
      { { maxLength = 2 }, '"été"', "the value must be at most 2 characters long (maxLength), got 3" },
      { { minItems = 2 }, '[1]', "the value must have at least 2 items (minItems), got 1" },
      { { maxItems = 1 }, '[1,2]', "the value must have at most 1 items (maxItems), got 2" },
      { { additionalProperties = { type = "integer" } }, '{"a":1,"b":"x"}',
        "field 'b' must be an integer (type), got string" },
      { { properties = { a = { properties = { b = { items = { required = { "c" } } } } } } },
        '{"a":{"b":[{"c":1},{"d":2}]}}', "field 'a.b[1].c' is missing (required)" },
      { { type = "array", items = { type = "array", items = { type = "integer" } } },
        '[[1],[2,"x"]]', "field '[1][1]' must be an integer (type), got string" },
      { { description = "annotations only", title = "t", examples = { 1 }, format = "date" },
        '"anything"', nil },
      { { enum = { { 1, 2 }, { a = true } } }, '[1,2]', nil },
      { { enum = { { 1, 2 }, { a = true } } }, '{"a":true}', nil },
      { { enum = { { 1, 2 } } }, '[2,1]', "the value must be one of [1,2] (enum), got array" },
      { { const = { kind = "x" } }, '{"kind":"x"}', nil },
      { { type = "object", additionalProperties = { type = "object", required = { "id" } } },
        '{"a":{"id":1},"b":{"x":1}}', "field 'b.id' is missing (required)" },
      { { type = "object", properties = { a = { type = "integer" } } }, '{"a":1,"b":"x"}', nil },
      { { type = "array", items = { type = "integer" } }, '[]', nil },
    }
    for i, c in ipairs(cases) do
      assert.same({ i, c[3] and P .. c[3] or nil }, { i, check(c[1], c[2]) })
    end
  end)
end)

describe("eddy.catalog.emit", function()
  it("names the declared versions in numeric order when asked for one that is not", function()
    local catalog = require "eddy.catalog"
    catalog.install(catalog.dump({ { type = "V", version = 10 }, { type = "V", version = 2 },
                                   { type = "V", version = 1 } }))
    assert.same({ false, "ctx:emit: event V has no version 3 (declared: 1, 2, 10)" },
                { pcall(catalog.emit, "V", 3, {}) })
    assert.same({ 10 }, { catalog.emit("V", nil, {}) })
    catalog.install("return {}")
  end)
end)

describe("a consumer's consumes and emits", function()
  it("name it in the catalog's docs and the flow, and refuse an emit of another type", function()
    local app = make_app([[
local eddy = require "eddy"
return eddy.consumer { name = "counter", topics = { "orders" }, retry = { attempts = 1 },
  consumes = "OrderPlaced", emits = { "OrderCounted" },
  handle = function(msg, ctx)
    local o = msg:json()
    ctx:emit("counted", { type = o.id == 2 and "Surprise" or "OrderCounted",
                          value = { id = o.id, n = 1 } })
  end }
]])
    local r = H.run({ "catalog", "docs", app.file })
    assert.equal(0, r.code, r.err)
    local rows = {}
    for line in r.out:gmatch("| %[Order[^\n]*") do rows[#rows + 1] = line end
    assert.same({ "| [OrderCounted](#ordercounted) | 1 |  | consumer counter |  |  |",
                  "| [OrderPlaced](#orderplaced) | 1 (deprecated), 2 | orders |  | " ..
                  "consumer counter |  |" }, rows)
    assert.truthy(r.out:find("consumer_counter -->  type_OrderCounted", 1, true) or
                  r.out:find("consumer_counter --> type_OrderCounted", 1, true), r.out)
    produce(app, { '{"id":1,"total":1}', '{"id":2,"total":1}' }, "--type", "OrderPlaced")
    drain(app)
    local q = quarantined(app)
    assert.same({ { value = '{"id":2,"total":1}', reason = "error", attempts = 1,
                    error = app.dir .. "/handlers/h.lua:6: consumer 'counter' emits type " ..
                            "'Surprise', which it does not declare (emits)" } }, q)
    assert.same({ { '{"id":1,"n":1}', "1" } }, messages(app, "counted"))
  end)
end)
