--- eddy trace ID: the path of one correlation id through the store, across
-- three hops, a quarantine and its replay.
local cjson = require "cjson"
local H = require "helpers"

local function defer(fn) H.defer(finally, fn) end

local HANDLERS = [[
local eddy = require "eddy"
return {
  -- Hop 1: an order becomes a payment request.
  eddy.on("OrderPlaced", { topic = "orders", name = "orders", emits = { "PaymentRequested" } },
    function(ev, ctx)
      ctx:emit("payments", { type = "PaymentRequested", key = ev.key, value = ev:json() })
    end),
  -- Hop 2: a payment request becomes a shipment.
  eddy.on("PaymentRequested", { topic = "payments", name = "payments", emits = { "ShipmentRequested" } },
    function(ev, ctx)
      ctx:emit("shipping", { type = "ShipmentRequested", key = ev.key, value = ev:json() })
    end),
  -- Hop 3: shipping fails until its "fixed" file exists (the spec makes it).
  eddy.consumer { name = "shipping", topics = { "shipping" }, retry = { attempts = 1 },
    handle = function(msg, ctx)
      if not ctx.state:get("fixed") and msg:json().sku == "bad" then error("no such sku") end
    end },
}
]]

local function eddy(app, ...)
  local r = H.run({ "--data", app.data, ... })
  assert(r.code == 0, table.concat({ ... }, " ") .. ": " .. r.err)
  return r.out
end

describe("eddy trace", function()
  it("prints each event of a correlation id, in order, with what each consumer did", function()
    local dir = H.tmpdir()
    defer(function() H.rmdir(dir) end)
    assert(os.execute("mkdir " .. H.quote(dir .. "/handlers")))
    H.write(dir .. "/eddy.lua", "return { data = 'data', handlers = { 'handlers/' }, topics = {" ..
            " orders = { partitions = 2 }, payments = { partitions = 1 }," ..
            " shipping = { partitions = 1 } } }\n")
    H.write(dir .. "/handlers/h.lua", HANDLERS)
    local app = { file = dir .. "/eddy.lua", data = dir .. "/data" }
    eddy(app, "topic", "create", "orders", "--partitions", "2")
    local good = cjson.decode(eddy(app, "produce", "orders", "--type", "OrderPlaced", "--key", "a",
                                   "--json", '{"sku":"ok"}'))
    local bad = cjson.decode(eddy(app, "produce", "orders", "--type", "OrderPlaced", "--key", "b",
                                  "--json", '{"sku":"bad"}'))
    assert.equal(0, H.run({ "run", app.file, "--drain" }).code)

    local function trace(id)
      return cjson.decode("[" .. eddy(app, "trace", id, "--json"):gsub("\n(.)", ",%1") .. "]")
    end
    local t = trace(good.id)
    assert.same({ "OrderPlaced", "PaymentRequested", "ShipmentRequested" },
                { t[1].type, t[2].type, t[3].type })
    assert.same({ "orders", "payments", "shipping" }, { t[1].topic, t[2].topic, t[3].topic })
    -- Each hop caused by the one before; one trace id all along.
    assert.equal(good.id, t[1].id)
    assert.same({ t[1].id, t[2].id }, { t[2].causation_id, t[3].causation_id })
    -- The order came without a traceparent; the first hop starts a trace
    -- and the next keeps it.
    assert.equal(cjson.null, t[1].traceparent)
    local trace_id = t[2].traceparent:sub(4, 35)
    assert.matches("^%x+$", trace_id)
    assert.equal(trace_id, t[3].traceparent:sub(4, 35))
    assert.same({ { "orders", "handled" } }, { { t[1].consumers[1].consumer, t[1].consumers[1].result } })
    assert.same({ { "shipping", "handled" } }, { { t[3].consumers[1].consumer, t[3].consumers[1].result } })

    -- The bad order stops at hop 3, quarantined with its error; the copy
    -- on the dead-letter topic keeps its id.
    local q = trace(bad.id)
    assert.same({ "orders", "payments", "shipping", "shipping.dlq" },
                { q[1].topic, q[2].topic, q[3].topic, q[4].topic })
    assert.same({ "shipping", "quarantined" }, { q[3].consumers[1].consumer, q[3].consumers[1].result })
    assert.truthy(q[3].consumers[1].error:find("no such sku", 1, true), q[3].consumers[1].error)
    assert.equal(q[3].id, q[4].id)

    -- Replayed once the handler is fixed: the replay is in the trace, back on
    -- shipping with the same id, and handled.
    H.write(dir .. "/handlers/h.lua", (HANDLERS:gsub('ctx.state:get%("fixed"%)', "true")))
    eddy(app, "dlq", "replay", "--all")
    assert.equal(0, H.run({ "run", app.file, "--drain" }).code)
    q = trace(bad.id)
    assert.same({ "orders", "payments", "shipping", "shipping.dlq", "shipping" },
                { q[1].topic, q[2].topic, q[3].topic, q[4].topic, q[5].topic })
    assert.equal(q[3].id, q[5].id)
    assert.same({ "shipping", "handled" }, { q[5].consumers[1].consumer, q[5].consumers[1].result })

    -- The text form: a header with the trace id, an event per line, a
    -- line per consumer.
    local text = H.lines(eddy(app, "trace", good.id))
    assert.equal("correlation " .. good.id .. ": 3 events, trace " .. trace_id, text[1])
    assert.matches("^%d%d%d%d%-%d%d%-%d%dT[%d:.]+Z  orders/%d@0 +OrderPlaced +" ..
                   good.id:gsub("%-", "%%-") .. "$", text[2])
    assert.matches("^    orders +handled +%d%d%d%d%-", text[3])
    assert.equal(7, #text)

    local r = H.run({ "--data", app.data, "trace", "nope" })
    assert.same({ code = 1, out = "",
                  err = "eddy trace: no event with id or correlation id 'nope' in the log\n" },
                { code = r.code, out = r.out, err = r.err })
  end)
end)
