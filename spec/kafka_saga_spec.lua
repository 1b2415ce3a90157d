--- Sagas and rules on Apache Kafka: the checkout saga of spec/saga_spec.lua
-- and its services (rules), on the broker of $EDDY_TEST_BROKER.  Commands,
-- replies, timeouts and compensations all travel through Kafka; instances
-- live in the local store.  Every test uses topics and consumer names
-- (groups) of its own, so the broker's earlier state does not matter.
local cjson = require "cjson"
local H = require "helpers"

local BROKER = H.BROKER

local function defer(fn) H.defer(finally, fn) end

math.randomseed(os.time() ~ tonumber(tostring({}):match("0x(%x+)"), 16))

local fresh = H.fresh_name

--- Integral floats (lua-cjson decodes every number as a float) made
-- integers, in place, recursively; returns v.
local function ints(v)
  if type(v) == "number" then return math.tointeger(v) or v end
  if type(v) == "table" then
    for k, x in pairs(v) do v[k] = ints(x) end
  end
  return v
end

local function decode(s) return ints(cjson.decode(s)) end

local function json_lines(s)
  local t = {}
  for i, line in ipairs(H.lines(s)) do t[i] = decode(line) end
  return t
end

--- The checkout saga: reserve stock, take the payment (with the timeout
-- $TIMEOUT, Lua: nil or a string), ship.
local CHECKOUT = [[
local eddy = require "eddy"
return eddy.saga {
  name = "$SAGA",
  start = "OrderPlaced",
  topics = { "$ORDERS", "$REPLIES" },
  retry = { attempts = 3, backoff = "5ms", max_backoff = "20ms" },
  steps = {
    { name = "reserve",
      command = { topic = "$COMMANDS", type = "ReserveStock" },
      on = { StockReserved = "next", OutOfStock = "compensate" },
      compensation = { topic = "$COMMANDS", type = "ReleaseStock" } },
    { name = "pay",
      command = { topic = "$COMMANDS", type = "ChargePayment" },
      on = { PaymentCaptured = "next", PaymentDeclined = "compensate" },
      timeout = $TIMEOUT,
      compensation = { topic = "$COMMANDS", type = "RefundPayment" } },
    { name = "ship",
      command = { topic = "$COMMANDS", type = "ShipOrder" },
      on = { Shipped = "next", ShipmentFailed = "compensate" } },
  },
}
]]

--- The services, rules on the commands topic that reply on the replies
-- topic: a "gpu" is out of stock, a "declined" card is declined, a "slow"
-- card is never answered, an address "nowhere" cannot be shipped to.
-- Each counts the commands it handled by "TYPE:INSTANCE" in its state,
-- after $WORK loop turns of work.
local SERVICES = [[
local eddy = require "eddy"

local function handled(event, ctx)
  local x = 0
  for i = 1, $WORK do x = x + i % 3 end
  local k = event.type .. ":" .. event.key
  ctx.state:set(k, (ctx.state:get(k) or 0) + 1)
  return event:json()
end

local function answer(ctx, event, t)
  ctx:emit("$REPLIES", { type = t, key = event.key, value = { order = event:json().id } })
end

return {
  eddy.on({ "ReserveStock", "ReleaseStock" },
    { topic = "$COMMANDS", name = "$INVENTORY", emits = { "StockReserved", "OutOfStock" } },
    function(event, ctx)
      local order = handled(event, ctx)
      if event.type == "ReserveStock" then
        answer(ctx, event, order.sku == "gpu" and "OutOfStock" or "StockReserved")
      end
    end),
  eddy.on({ "ChargePayment", "RefundPayment" },
    { topic = "$COMMANDS", name = "$PAYMENTS", emits = { "PaymentCaptured", "PaymentDeclined" } },
    function(event, ctx)
      local order = handled(event, ctx)
      if event.type == "ChargePayment" and order.card ~= "slow" then
        answer(ctx, event, order.card == "declined" and "PaymentDeclined" or "PaymentCaptured")
      end
    end),
  eddy.on("ShipOrder",
    { topic = "$COMMANDS", name = "$SHIPPING", emits = { "Shipped", "ShipmentFailed" } },
    function(event, ctx)
      local order = handled(event, ctx)
      answer(ctx, event, order.address == "nowhere" and "ShipmentFailed" or "Shipped")
    end),
}
]]

local kafka = H.kafka_ok

--- The checkout app on the test broker, in a fresh directory, with fresh
-- topic and consumer names (returned as app.names), the pay step's
-- timeout `timeout` (nil for none) and the services' `work`; its orders
-- topic is made on Kafka, the others are made by `eddy run`.
local function checkout_app(timeout, work)
  local names = {
    ORDERS = fresh("orders"), COMMANDS = fresh("commands"), REPLIES = fresh("replies"),
    SAGA = fresh("checkout"), INVENTORY = fresh("inventory"), PAYMENTS = fresh("payments"),
    SHIPPING = fresh("shipping"), TIMEOUT = timeout and string.format("%q", timeout) or "nil",
    WORK = tostring(work or 0),
  }
  local dir = H.tmpdir()
  defer(function() H.rmdir(dir) end)
  assert(os.execute("mkdir " .. H.quote(dir .. "/handlers")))
  H.write(dir .. "/eddy.lua", string.format(
    "return { data = 'data', workers = 2, broker = %q, handlers = { 'handlers/' },\n" ..
    "  topics = { [%q] = { partitions = 2 }, [%q] = { partitions = 1 },\n" ..
    "             [%q] = { partitions = 2 } },\n" ..
    -- A member that stops keeps its partitions until its session times
    -- out: the broker's shortest allowed timeout keeps runs quick.
    "  kafka = { ['session.timeout.ms'] = 6000, ['heartbeat.interval.ms'] = 1000 } }\n",
    BROKER, names.ORDERS, names.COMMANDS, names.REPLIES))
  local function fill(text)
    return (text:gsub("%$(%u+)", function(k) return assert(names[k], k) end))
  end
  H.write(dir .. "/handlers/checkout.lua", fill(CHECKOUT))
  H.write(dir .. "/handlers/services.lua", fill(SERVICES))
  -- The orders come from outside the app: their topic is there first.
  kafka({ "topic", "create", names.ORDERS, "--partitions", "2" })
  return { dir = dir, file = dir .. "/eddy.lua", data = dir .. "/data", names = names }
end

--- eddy on the app's data directory; fails unless it exits 0 quietly.
local function eddy(app, ...)
  local r = H.run({ "--data", app.data, ... })
  assert(r.code == 0 and r.err == "", table.concat({ ... }, " ") .. ": exit " .. r.code .. ": " ..
         r.err)
  return r.out
end

--- eddy run --drain on the app; asserts exit 0.  Returns the summary.
local function drain(app)
  local h = H.spawn({ "run", app.file, "--drain" })
  defer(function() H.cleanup(h) end)
  local ok, code = pcall(H.wait_exit, h, 60, "eddy run --drain to exit")
  local err = H.read(h.err) or ""
  assert(ok and code == 0, "eddy run --drain: " .. tostring(code) .. "; its log:\n" .. err)
  return H.summary(err), err
end

--- Places orders on Kafka (OrderPlaced events keyed by customer); returns
-- their ids, the ids of the instances they start.
local function place(app, orders)
  local lines = {}
  for i, o in ipairs(orders) do lines[i] = o.customer .. "\t" .. cjson.encode(o) end
  local ids = {}
  for i, p in ipairs(json_lines(kafka({ "produce", app.names.ORDERS, "--type", "OrderPlaced",
                                        "-K", "\t", "--json" },
                                      { stdin = table.concat(lines, "\n") .. "\n" }))) do
    ids[i] = p.id
  end
  return ids
end

local function order(n, c, fields)
  local o = { id = n, customer = c, sku = "book", card = "visa", address = "home", total = 10 * n }
  for k, v in pairs(fields or {}) do o[k] = v end
  return o
end

--- Every instance, `saga list --json` on the local store, by id, and
-- their number; none before `eddy run` made the store.
local function instances(app)
  local by_id, n = {}, 0
  if not H.exists(app.data .. "/eddy.db") then return by_id, n end
  for _, i in ipairs(json_lines(eddy(app, "saga", "list", "--json"))) do
    by_id[i.id] = i
    n = n + 1
  end
  return by_id, n
end

--- An instance's history without times and ids: "what step type" each.
local function story(inst)
  local t = {}
  for i, e in ipairs(inst.history) do
    t[i] = table.concat({ e.what, e.step or "-", e.type or "-" }, " ")
  end
  return t
end

--- The messages of a topic on Kafka, decoded.
local function messages(topic)
  return json_lines(kafka({ "tail", topic, "--from-beginning", "--json" }))
end

--- The commands on Kafka, per instance, in the order they went out (the
-- commands topic has one partition); and their number.
local function commands(app)
  local by_key, n = {}, 0
  for _, m in ipairs(messages(app.names.COMMANDS)) do
    by_key[m.key] = by_key[m.key] or {}
    table.insert(by_key[m.key], m.headers["eddy-type"])
    n = n + 1
  end
  return by_key, n
end

--- A consumer's state: key -> value.
local function state(app, consumer)
  local t = {}
  for _, o in ipairs(json_lines(eddy(app, "state", "list", consumer, "--json"))) do
    t[o.key] = o.value
  end
  return t
end

local HAPPY = { "start - OrderPlaced", "command reserve ReserveStock",
                "reply reserve StockReserved", "command pay ChargePayment",
                "reply pay PaymentCaptured", "command ship ShipOrder", "reply ship Shipped",
                "completed - -" }

describe("sagas on Kafka", function()
  it("run the happy path: one command per step, each on its reply, then completed", function()
    local app = checkout_app()
    local o = order(1, "ada")
    local id = place(app, { o })[1]
    local s = drain(app)
    assert.same({ quarantined = 0 }, { quarantined = s.quarantined })

    local all, n = instances(app)
    assert.equal(1, n)
    local inst = all[id]
    assert.same({ saga = app.names.SAGA, status = "completed", step = 3, data = o },
                { saga = inst.saga, status = inst.status, step = inst.step, data = inst.data })
    assert.same(HAPPY, story(inst))
    -- The commands went through Kafka, once each, keyed and correlated by
    -- the instance.
    local cmds = messages(app.names.COMMANDS)
    local got = {}
    for i, m in ipairs(cmds) do
      got[i] = { m.id, m.key, m.headers["eddy-type"], m.headers["eddy-correlation-id"],
                 decode(m.value) }
    end
    local hist = inst.history
    assert.same({ { hist[2].id, id, "ReserveStock", id, o },
                  { hist[4].id, id, "ChargePayment", id, o },
                  { hist[6].id, id, "ShipOrder", id, o } }, got)
    local replies = {}
    for _, m in ipairs(messages(app.names.REPLIES)) do
      replies[#replies + 1] = m.headers["eddy-type"] .. " " .. m.id
    end
    table.sort(replies)
    assert.same({ "PaymentCaptured " .. hist[5].id, "Shipped " .. hist[7].id,
                  "StockReserved " .. hist[3].id }, replies)
    assert.same({ ["ReserveStock:" .. id] = 1 }, state(app, app.names.INVENTORY))
    assert.same({ ["ChargePayment:" .. id] = 1 }, state(app, app.names.PAYMENTS))
    assert.same({ ["ShipOrder:" .. id] = 1 }, state(app, app.names.SHIPPING))
  end)

  it("check declared event types on Kafka: a bad order is quarantined with reason schema, " ..
     "commands carry their version", function()
    local app = checkout_app()
    -- A handler file may declare events, alone.
    H.write(app.dir .. "/handlers/events.lua", [[
local eddy = require "eddy"
local order = { type = "object", required = { "id", "sku" },
                properties = { id = { type = "integer" }, sku = { type = "string" } } }
return {
  eddy.event { type = "OrderPlaced", version = 3, schema = order },
  eddy.event { type = "ReserveStock", version = 2, schema = order },
}
]])
    local ids = place(app, { order(1, "ada"), order(2, "bob", { sku = 42 }) })
    local s = drain(app)
    assert.same({ quarantined = 1 }, { quarantined = s.quarantined })
    local all, n = instances(app)
    assert.same({ 1, "completed" }, { n, all[ids[1]].status })
    local q = json_lines(eddy(app, "dlq", "list", "--json"))
    assert.same({ { app.names.SAGA, ids[2], "schema",
                    "OrderPlaced v3 does not match its schema: field 'sku' must be a string " ..
                    "(type), got number" } },
                { { q[1].consumer, q[1].id, q[1].reason, q[1].error } })
    local versions = {}
    for i, m in ipairs(messages(app.names.COMMANDS)) do
      versions[i] = { m.headers["eddy-type"], m.headers["eddy-version"] or cjson.null }
    end
    assert.same({ { "ReserveStock", "2" }, { "ChargePayment", cjson.null },
                  { "ShipOrder", cjson.null } }, versions)
  end)

  it("compensate the completed steps, last first, after a failure reply", function()
    local app = checkout_app()
    local ids = place(app, { order(1, "ada", { address = "nowhere" }),
                             order(2, "bob", { card = "declined" }) })
    local a, b = ids[1], ids[2]
    local s = drain(app)
    assert.same({ quarantined = 0 }, { quarantined = s.quarantined })

    local all, n = instances(app)
    assert.equal(2, n)
    assert.same({ "ShipmentFailed in step 'ship'", "start - OrderPlaced",
                  "command reserve ReserveStock", "reply reserve StockReserved",
                  "command pay ChargePayment", "reply pay PaymentCaptured",
                  "command ship ShipOrder", "reply ship ShipmentFailed",
                  "compensation pay -", "command pay RefundPayment",
                  "compensation reserve -", "command reserve ReleaseStock",
                  "compensated - -" }, { all[a].reason, table.unpack(story(all[a])) })
    assert.same({ "PaymentDeclined in step 'pay'", "start - OrderPlaced",
                  "command reserve ReserveStock", "reply reserve StockReserved",
                  "command pay ChargePayment", "reply pay PaymentDeclined",
                  "compensation reserve -", "command reserve ReleaseStock",
                  "compensated - -" }, { all[b].reason, table.unpack(story(all[b])) })
    local cmds, total = commands(app)
    assert.same({ [a] = { "ReserveStock", "ChargePayment", "ShipOrder", "RefundPayment",
                          "ReleaseStock" },
                  [b] = { "ReserveStock", "ChargePayment", "ReleaseStock" } }, cmds)
    assert.equal(8, total)
    assert.same({ ["ReserveStock:" .. a] = 1, ["ReserveStock:" .. b] = 1,
                  ["ReleaseStock:" .. a] = 1, ["ReleaseStock:" .. b] = 1 },
                state(app, app.names.INVENTORY))
    assert.same({ ["ChargePayment:" .. a] = 1, ["ChargePayment:" .. b] = 1,
                  ["RefundPayment:" .. a] = 1 }, state(app, app.names.PAYMENTS))
  end)

  it("time out a step with a durable timer, compensate, and wait for it with --drain", function()
    local app = checkout_app("1s")
    local ids = place(app, { order(1, "ada", { card = "slow" }), order(2, "bob") })
    local a, b = ids[1], ids[2]
    local s = drain(app)
    assert.same({ quarantined = 0 }, { quarantined = s.quarantined })

    local all, n = instances(app)
    assert.equal(2, n)
    assert.same({ "compensated", "timeout in step 'pay'", "start - OrderPlaced",
                  "command reserve ReserveStock", "reply reserve StockReserved",
                  "command pay ChargePayment", "timeout pay -", "compensation reserve -",
                  "command reserve ReleaseStock", "compensated - -" },
                { all[a].status, all[a].reason, table.unpack(story(all[a])) })
    local began, fired = all[a].history[4].at, all[a].history[5].at
    assert.is_true(fired - began >= 1000, "timed out after " .. fired - began .. " ms")
    -- The other order completed; its pay step's timeout fell due after the
    -- step moved on, and was dropped.
    assert.same({ "completed", table.unpack(HAPPY) },
                { all[b].status, table.unpack(story(all[b])) })
    local cmds, total = commands(app)
    assert.same({ [a] = { "ReserveStock", "ChargePayment", "ReleaseStock" },
                  [b] = { "ReserveStock", "ChargePayment", "ShipOrder" } }, cmds)
    assert.equal(6, total)
    -- The timers and the compensation went through the saga's topic on
    -- Kafka.
    local own = {}
    for _, m in ipairs(messages(app.names.SAGA .. ".saga")) do
      own[#own + 1] = m.headers["eddy-type"] .. " " .. m.value
    end
    table.sort(own)
    assert.same({ 'eddy.SagaCompensate {"saga":"' .. a .. '","step":1}',
                  'eddy.SagaTimeout {"epoch":2,"saga":"' .. a .. '","step":2}',
                  'eddy.SagaTimeout {"epoch":2,"saga":"' .. b .. '","step":2}' }, own)
  end)

  it("send each command once per step across a SIGKILL in the middle of sagas", function()
    local app = checkout_app(nil, 200000)
    local orders, kinds = {}, {}
    for i = 1, 40 do
      local kind = i % 5 == 0 and "declined" or i % 7 == 0 and "nowhere" or "ok"
      orders[i] = order(i, "c" .. i, ({ declined = { card = "declined" },
                                         nowhere = { address = "nowhere" }, ok = {} })[kind])
      kinds[i] = kind
    end
    local ids = place(app, orders)
    local function statuses()
      local n = {}
      for _, i in pairs(instances(app)) do n[i.status] = (n[i.status] or 0) + 1 end
      return n
    end
    local h = H.spawn({ "run", app.file })
    defer(function() H.cleanup(h) end)
    -- The kill comes once a saga has ended while others are still in the
    -- middle: the moment this test is about.
    H.wait_until(function()
      local n = statuses()
      return (n.completed or 0) + (n.compensated or 0) > 0 and
             (n.running or 0) + (n.compensating or 0) > 0
    end, 60, "a saga to end while others are in the middle")
    assert.is_true(H.kill(h.pid, "KILL"))
    H.wait_exit(h, 10)
    local n = statuses()
    print(string.format("# kafka saga crash: killed at %d completed, %d compensated, " ..
                        "%d running, %d compensating", n.completed or 0, n.compensated or 0,
                        n.running or 0, n.compensating or 0))
    assert.is_true((n.running or 0) + (n.compensating or 0) > 0,
                   "no saga was in the middle when eddy was killed")
    -- The run after it gets the killed member's partitions back (when its
    -- session expires at the latest).
    local s = drain(app)
    assert.equal(0, s.quarantined)

    local want = {
      ok = { "completed", { "ReserveStock", "ChargePayment", "ShipOrder" }, HAPPY },
      declined = { "compensated", { "ReserveStock", "ChargePayment", "ReleaseStock" },
                   { "start - OrderPlaced", "command reserve ReserveStock",
                     "reply reserve StockReserved", "command pay ChargePayment",
                     "reply pay PaymentDeclined", "compensation reserve -",
                     "command reserve ReleaseStock", "compensated - -" } },
      nowhere = { "compensated",
                  { "ReserveStock", "ChargePayment", "ShipOrder", "RefundPayment", "ReleaseStock" },
                  { "start - OrderPlaced", "command reserve ReserveStock",
                    "reply reserve StockReserved", "command pay ChargePayment",
                    "reply pay PaymentCaptured", "command ship ShipOrder",
                    "reply ship ShipmentFailed", "compensation pay -",
                    "command pay RefundPayment", "compensation reserve -",
                    "command reserve ReleaseStock", "compensated - -" } },
    }
    -- A relay cut by the kill may send an event twice, with the same id:
    -- each step's command counts once per id.
    local sent, types = {}, {}
    for _, m in ipairs(messages(app.names.COMMANDS)) do
      if types[m.id] then
        assert.equal(types[m.id], m.headers["eddy-type"])
      else
        types[m.id] = m.headers["eddy-type"]
        sent[m.key] = sent[m.key] or {}
        table.insert(sent[m.key], m.headers["eddy-type"])
      end
    end
    local all = instances(app)
    local got, expected = {}, {}
    local handled = { [app.names.INVENTORY] = {}, [app.names.PAYMENTS] = {},
                      [app.names.SHIPPING] = {} }
    local service = { ReserveStock = app.names.INVENTORY, ReleaseStock = app.names.INVENTORY,
                      ChargePayment = app.names.PAYMENTS, RefundPayment = app.names.PAYMENTS,
                      ShipOrder = app.names.SHIPPING }
    for i, id in ipairs(ids) do
      local w, inst = want[kinds[i]], all[id] or { history = {} }
      expected[id] = w
      got[id] = { inst.status, sent[id], story(inst) }
      for _, t in ipairs(w[2]) do handled[service[t]][t .. ":" .. id] = 1 end
    end
    assert.same(expected, got)
    for name, want_state in pairs(handled) do assert.same(want_state, state(app, name), name) end
  end)
end)
