--- Rules, sagas, durable timers and flows on the embedded log (docs/sagas.md).
--
-- Most tests run one app: the saga "checkout" (reserve stock, take the
-- payment, ship; undo what was done when a step fails) sends its commands
-- to topic "commands" (one partition, so its offsets are the order the
-- commands went out in) and awaits replies on "replies".  The replies come
-- either from the services, rules of the same app (handlers/services.lua)
-- that answer from the order's fields, or from the test itself (`eddy
-- produce --type T` with the instance's correlation id), one step at a
-- time with `eddy run --drain` in between, so that no assertion depends on
-- timing.  What a saga did is read back from `eddy saga list|show --json`,
-- from the topics (`eddy tail --json`) and from the services' state.
local cjson = require "cjson"
local system = require "system"
local H = require "helpers"

--- Runs fn when the test ends (as many as needed; see H.defer).
local function defer(fn) H.defer(finally, fn) end

--- How long a `run --drain` may take before the test fails (it is killed).
local DRAIN_TIMEOUT = 30

--- How long the sagas of the crash test may show no progress before it
-- fails.
local STALL = 30

local SEED = tonumber(os.getenv("EDDY_CRASH_SEED")) or os.time()

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

--- The fields of t named in ..., in a new table.
local function pick(t, ...)
  local out = {}
  for _, k in ipairs({ ... }) do out[k] = t[k] end
  return out
end

--- The wall clock in milliseconds since the epoch (what eddy's times use).
local function wall_ms() return math.floor(system.gettime() * 1000) end

--- A time in milliseconds as eddy prints it: "2026-01-02T03:04:05.678Z".
local function rfc3339(ms)
  return os.date("!%Y-%m-%dT%H:%M:%S", ms // 1000) .. string.format(".%03dZ", ms % 1000)
end

--- Replaces $NAME in s by params.NAME; every $NAME must be given.
local function fill(s, params)
  return (s:gsub("%$([%u_]+)", function(k)
    assert(params[k] ~= nil, "no value for $" .. k)
    return tostring(params[k])
  end))
end

--- Makes an app in a fresh temporary directory: eddy.lua with data "data",
-- `workers` (default 2), `topics` (name -> partitions), and the handler
-- files handlers/NAME.lua of `handlers` (name -> text).  Creates the
-- topics in the store, so that events can be produced before the first
-- run.
-- @treturn table `{ dir =, file = the app file, data = the data dir }`
local function make_app(t)
  local dir = H.tmpdir()
  defer(function() H.rmdir(dir) end)
  assert(os.execute("mkdir " .. H.quote(dir .. "/handlers")))
  local names = {}
  for name in pairs(t.topics) do names[#names + 1] = name end
  table.sort(names)
  local topics = {}
  for i, name in ipairs(names) do
    topics[i] = string.format("[%q] = { partitions = %d }", name, t.topics[name])
  end
  H.write(dir .. "/eddy.lua", string.format(
    "return { data = 'data', workers = %d, handlers = { 'handlers/' }, topics = { %s } }\n",
    t.workers or 2, table.concat(topics, ", ")))
  for name, src in pairs(t.handlers) do H.write(dir .. "/handlers/" .. name .. ".lua", src) end
  local app = { dir = dir, file = dir .. "/eddy.lua", data = dir .. "/data" }
  for _, name in ipairs(names) do
    local r = H.run({ "--data", app.data, "topic", "create", name,
                      "--partitions", tostring(t.topics[name]) })
    assert(r.code == 0, "topic create " .. name .. ": " .. r.err)
  end
  return app
end

--- Runs eddy on the app's data directory; fails the test unless it exits 0
-- with nothing on stderr.  Returns stdout.
local function eddy(app, ...)
  local args = { "--data", app.data, ... }
  local r = H.run(args)
  if r.code ~= 0 or r.err ~= "" then
    error(string.format("eddy %s: exit %d: %s", table.concat(args, " "), r.code, r.err), 2)
  end
  return r.out
end

--- Runs eddy on the app's data directory and returns `{ code, out, err }`.
local function try(app, ...)
  local r = H.run({ "--data", app.data, ... })
  return { code = r.code, out = r.out, err = r.err }
end

--- Runs `eddy run APP --drain` and asserts exit 0.  Returns the summary
-- numbers and the log (stderr).
local function drain(app)
  local h = H.spawn({ "run", app.file, "--drain" })
  defer(function() H.cleanup(h) end)
  local ok, code = pcall(H.wait_exit, h, DRAIN_TIMEOUT, "eddy run --drain to exit")
  local err = H.read(h.err) or ""
  if not ok then error(tostring(code) .. "; its log:\n" .. err, 2) end
  if code ~= 0 then error("eddy run --drain exited " .. code .. "; its log:\n" .. err, 2) end
  return H.summary(err), err
end

--- Produces one event: `opts` has `type`, `key`, `value` (a string, or a
-- table sent as JSON), `corr` (its correlation id) and `id`.  Returns
-- what `eddy produce --json` says: `{ id, topic, partition, offset, ... }`.
local function produce(app, topic, opts)
  local args = { "produce", topic, "--json" }
  if opts.type then args[#args + 1] = "--type"; args[#args + 1] = opts.type end
  if opts.key then args[#args + 1] = "--key"; args[#args + 1] = opts.key end
  if opts.corr then
    args[#args + 1] = "-H"
    args[#args + 1] = "eddy-correlation-id=" .. opts.corr
  end
  if opts.id then args[#args + 1] = "--id"; args[#args + 1] = opts.id end
  local v = opts.value or "{}"
  args[#args + 1] = type(v) == "table" and cjson.encode(v) or v
  return decode(eddy(app, table.unpack(args)))
end

--- Places an order (an OrderPlaced event on "orders", keyed by customer);
-- returns its id, which is the id of the saga instance it starts.
local function place(app, order)
  return produce(app, "orders", { type = "OrderPlaced", key = order.customer, value = order }).id
end

--- Replies to instance id as a service would: an event of type t on
-- "replies", keyed and correlated by the instance id.  Returns its id.
local function reply(app, id, t)
  return produce(app, "replies", { type = t, key = id, corr = id }).id
end

--- Every instance, `saga list --json`, by id; and the list, oldest first.
local function instances(app, status)
  local args = { "saga", "list", "--json" }
  if status then args[#args + 1] = "--status"; args[#args + 1] = status end
  local list = json_lines(eddy(app, table.unpack(args)))
  local by_id = {}
  for _, i in ipairs(list) do by_id[i.id] = i end
  return by_id, list
end

--- One instance, `saga show ID --json`.
local function instance(app, id)
  return decode(eddy(app, "saga", "show", id, "--json"))
end

--- An instance's history without its times and ids: one string per entry,
-- "what step type" (a dash for a field the entry has not).
local function story(inst)
  local t = {}
  for i, e in ipairs(inst.history) do
    t[i] = table.concat({ e.what, e.step or "-", e.type or "-" }, " ")
  end
  return t
end

--- The messages of topic, `tail --from-beginning --json`, decoded.
local function messages(app, topic)
  return json_lines(eddy(app, "tail", topic, "--from-beginning", "--json"))
end

--- The commands on topic "commands" (one partition: in the order they
-- went out), as "KEY TYPE" strings; only those of key `key` when given,
-- then as their types alone.
local function commands(app, key)
  local t = {}
  for _, m in ipairs(messages(app, "commands")) do
    if not key then t[#t + 1] = m.key .. " " .. m.headers["eddy-type"]
    elseif m.key == key then t[#t + 1] = m.headers["eddy-type"] end
  end
  return t
end

--- A consumer's state, `state list --json` decoded: key -> value.
local function state(app, consumer)
  local t = {}
  for _, o in ipairs(json_lines(eddy(app, "state", "list", consumer, "--json"))) do
    t[o.key] = o.value
  end
  return t
end

--- The value of the first header called name in a list of { name, value }
-- pairs (`dlq list --json`).
local function header(list, name)
  for _, h in ipairs(list) do
    if h[1] == name then return h[2] end
  end
end

--- `dlq list --json`, decoded, oldest first.
local function dlq(app)
  return json_lines(eddy(app, "dlq", "list", "--json"))
end

--- s padded with spaces to n characters.
local function pad(s, n) return s .. string.rep(" ", n - #s) end

--- The header line of `eddy saga list`.
local LIST_HEADER = "ID                                    SAGA              STATUS        " ..
                    "STEP                STARTED                   WHY\n"

--- The line of `eddy saga list` for instance inst (`saga list --json`).
local function list_line(inst, step, why)
  return (inst.id .. "  " .. pad(inst.saga, 16) .. "  " .. pad(inst.status, 12) .. "  " ..
          pad(step, 18) .. "  " .. rfc3339(inst.started_at) .. "  " .. why):gsub(" +$", "") ..
         "\n"
end

---------------------------------------------------------------------------
-- The checkout app
---------------------------------------------------------------------------

--- The checkout saga; $TIMEOUT is the pay step's timeout (Lua: nil or a
-- string).
local CHECKOUT = [[
local eddy = require "eddy"
return eddy.saga {
  name = "checkout",
  start = "OrderPlaced",
  abort = { "OrderCancelled" },
  topics = { "orders", "replies" },
  retry = { attempts = 3, backoff = "5ms", max_backoff = "20ms" },
  steps = {
    { name = "reserve",
      command = { topic = "commands", type = "ReserveStock" },
      on = { StockReserved = "next", OutOfStock = "compensate" },
      compensation = { topic = "commands", type = "ReleaseStock" } },
    { name = "pay",
      command = { topic = "commands", type = "ChargePayment" },
      on = { PaymentCaptured = "next", PaymentDeclined = "compensate" },
      timeout = $TIMEOUT,
      compensation = { topic = "commands", type = "RefundPayment" } },
    { name = "ship",
      command = { topic = "commands", type = "ShipOrder" },
      on = { Shipped = "next", ShipmentFailed = "compensate" } },
  },
}
]]

--- The services, three rules on "commands" that reply on "replies": a
-- "gpu" is out of stock, a "declined" card is declined, an address
-- "nowhere" cannot be shipped to, and a parcel for "pickup" waits for
-- its customer: its Shipped comes from outside (the test), not from
-- shipping.  Each counts in its state the commands it handled, by
-- "TYPE:INSTANCE", and burns $WORK loop turns first.
local SERVICES = [[
local eddy = require "eddy"

local function handled(event, ctx)
  local x = 0
  for i = 1, $WORK do x = x + i % 3 end
  local k = event.type .. ":" .. event.key
  ctx.state:set(k, (ctx.state:get(k) or 0) + 1)
  return event:json(), x
end

local function answer(ctx, event, t)
  ctx:emit("replies", { type = t, key = event.key, value = { order = event:json().id } })
end

return {
  eddy.on({ "ReserveStock", "ReleaseStock" },
    { topic = "commands", name = "inventory", emits = { "StockReserved", "OutOfStock" } },
    function(event, ctx)
      local order = handled(event, ctx)
      if event.type == "ReserveStock" then
        answer(ctx, event, order.sku == "gpu" and "OutOfStock" or "StockReserved")
      end
    end),
  eddy.on({ "ChargePayment", "RefundPayment" },
    { topic = "commands", name = "payments", emits = { "PaymentCaptured", "PaymentDeclined" } },
    function(event, ctx)
      local order = handled(event, ctx)
      if event.type == "ChargePayment" then
        answer(ctx, event, order.card == "declined" and "PaymentDeclined" or "PaymentCaptured")
      end
    end),
  eddy.on("ShipOrder",
    { topic = "commands", name = "shipping", emits = { "Shipped", "ShipmentFailed" } },
    function(event, ctx)
      local order = handled(event, ctx)
      if order.address == "pickup" then return end
      answer(ctx, event, order.address == "nowhere" and "ShipmentFailed" or "Shipped")
    end),
}
]]

--- The checkout app: the saga with the pay step's timeout `timeout` (a
-- string, or nil for none) and, when `services`, the services.
local function checkout_app(opts)
  opts = opts or {}
  local handlers = {
    checkout = fill(CHECKOUT, { TIMEOUT = opts.timeout and string.format("%q", opts.timeout)
                                          or "nil" }),
  }
  if opts.services then handlers.services = fill(SERVICES, { WORK = opts.work or 0 }) end
  return make_app {
    workers = opts.workers or 2,
    topics = { orders = 2, commands = 1, replies = 2 },
    handlers = handlers,
  }
end

--- An order of customer c (its id is n) with the given fields.
local function order(n, c, fields)
  local o = { id = n, customer = c, sku = "book", card = "visa", address = "home", total = 10 * n }
  for k, v in pairs(fields or {}) do o[k] = v end
  return o
end

---------------------------------------------------------------------------

describe("eddy produce --type", function()
  it("sets the event type header eddy-type, which an empty --type cannot", function()
    local app = make_app { topics = { t = 1 }, handlers = {} }
    local p = produce(app, "t", { type = "OrderPlaced", key = "k", value = "v" })
    local m = messages(app, "t")
    assert.same({ { id = p.id, key = "k", value = "v",
                    headers = { ["eddy-type"] = "OrderPlaced" } } },
                { pick(m[1], "id", "key", "value", "headers") })
    local r = try(app, "produce", "t", "--type", "", "v")
    assert.same({ code = 2, out = "",
                  err = "eddy produce: --type is empty (see 'eddy produce --help')\n" }, r)
    assert.equal(1, #messages(app, "t"))
  end)
end)

describe("eddy.on (rules)", function()
  it("hands only events of its types to fn, as a consumer: per-key order, dedupe, retries, outbox",
     function()
    local app = make_app {
      topics = { accounts = 2 },
      handlers = { tally = [[
local eddy = require "eddy"
return eddy.on({ "Deposit", "Withdraw" }, {
  topic = "accounts", name = "tally", emits = { "Balance" },
  retry = { attempts = 3, backoff = "5ms", max_backoff = "10ms" },
}, function(event, ctx)
  if event.value == "flaky" and ctx.attempt == 1 then error("flaky fails once") end
  local seen = ctx.state:get(event.key) or {}
  seen[#seen + 1] = event.type .. ":" .. event.value .. "@" .. ctx.attempt
  ctx.state:set(event.key, seen)
  ctx:emit("balances", { type = "Balance", key = event.key, value = { n = #seen } })
end)
]] },
    }
    local sent = {}
    for i, e in ipairs({ { "a", "Deposit", "1" }, { "a", "Audit", "2" },
                         { "b", "Deposit", "flaky" }, { "a", "Withdraw", "3" }, { "a", nil, "4" },
                         { "b", "Withdraw", "5" }, { "a", "Deposit", "6" } }) do
      sent[i] = produce(app, "accounts", { key = e[1], type = e[2], value = e[3] })
    end
    -- The first event again, with its id: a duplicate.
    produce(app, "accounts", { key = "a", type = "Deposit", value = "1", id = sent[1].id })
    local s = drain(app)
    assert.same({ received = 8, handled = 7, deduplicated = 1, retried = 1, quarantined = 0,
                  emitted = 5 },
                pick(s, "received", "handled", "deduplicated", "retried", "quarantined",
                     "emitted"))
    -- The Audit and the untyped event passed over.
    assert.same({ a = { "Deposit:1@1", "Withdraw:3@1", "Deposit:6@1" },
                  b = { "Deposit:flaky@2", "Withdraw:5@1" } }, state(app, "tally"))
    local out = {}
    for _, m in ipairs(messages(app, "balances")) do
      out[m.headers["eddy-causation-id"]] = { m.key, m.headers["eddy-type"], decode(m.value).n }
    end
    assert.same({ [sent[1].id] = { "a", "Balance", 1 }, [sent[4].id] = { "a", "Balance", 2 },
                  [sent[7].id] = { "a", "Balance", 3 }, [sent[3].id] = { "b", "Balance", 1 },
                  [sent[6].id] = { "b", "Balance", 2 } }, out)
    assert.same({}, dlq(app))
  end)

  it("fails a handler that emits a type it does not declare, and quarantines it after its retries",
     function()
    local app = make_app {
      topics = { t = 1 },
      handlers = { strict = [[
local eddy = require "eddy"
return eddy.on("Ping", {
  topic = "t", name = "strict", emits = { "Pong" }, retry = { attempts = 2, backoff = "5ms" },
}, function(event, ctx)
  ctx:emit("out", { type = "Pong", key = event.key, value = event.value })
  if event.value == "loud" then
    ctx:emit("out", { type = "Shout", key = event.key, value = event.value })
  end
end)
]] },
    }
    local ok = produce(app, "t", { type = "Ping", key = "k", value = "quiet" })
    local bad = produce(app, "t", { type = "Ping", key = "k", value = "loud" })
    local s = drain(app)
    assert.same({ handled = 1, retried = 1, quarantined = 1, emitted = 1 },
                pick(s, "handled", "retried", "quarantined", "emitted"))
    -- The Pong emitted before the bad emit went with the failed attempt.
    local out = messages(app, "out")
    assert.same({ { "quiet", "Pong", ok.id } },
                { { out[1].value, out[1].headers["eddy-type"],
                    out[1].headers["eddy-causation-id"] } })
    assert.equal(1, #out)
    local q = dlq(app)
    assert.same({ { id = bad.id, consumer = "strict", attempts = 2,
                    error = app.dir .. "/handlers/strict.lua:7: rule 'strict' emits type " ..
                            "'Shout', which it does not declare (emits)" } },
                { pick(q[1], "id", "consumer", "attempts", "error") })
    assert.equal(1, #q)
  end)

  it("runs a rule without a name, one type or several, under a consumer name of its own",
     function()
    local app = make_app {
      topics = { t = 1 },
      handlers = { one = [[
local eddy = require "eddy"
return eddy.on("Ping", { topic = "t" }, function(event, ctx) ctx.state:set(event.value, 1) end)
]], two = [[
local eddy = require "eddy"
return eddy.on({ "Ping", "Pong" }, { topic = "t" }, function(event, ctx)
  ctx.state:set(event.value, 2)
end)
]] },
    }
    produce(app, "t", { type = "Ping", value = "a" })
    produce(app, "t", { type = "Pong", value = "b" })
    local r = H.run({ "run", app.file, "--drain" })
    assert.equal(0, r.code, r.err)
    local names = {}
    for _, o in ipairs(H.log_select(r.err, { message = "^file=%S+/handlers/two%.lua " })) do
      names[#names + 1] = o.consumer
    end
    assert.equal(1, #names, r.err)
    assert.same({ a = 1 }, state(app, "on.Ping"))
    assert.same({ a = 2, b = 2 }, state(app, names[1]))
  end)
end)

describe("durable timers", function()
  it("hold an event emitted with after or at in the store until it is due; --drain waits for them",
     function()
    local app = make_app {
      topics = { t = 1 },
      handlers = { later = [[
local eddy = require "eddy"
return eddy.consumer {
  name = "later",
  topics = { "t" },
  retry = { attempts = 1 },
  handle = function(msg, ctx)
    local now = eddy.now_ms()
    if msg.value == "soon" then
      ctx:emit("due", { key = "x", value = "x", after = "soon" })
    elseif msg.value == "both" then
      ctx:emit("due", { key = "x", value = "x", after = "1s", at = now })
    elseif msg.value == "negative" then
      ctx:emit("due", { key = "x", value = "x", after = -5 })
    end
    local a = ctx:emit("due", { type = "Reminder", key = "k", value = "after", after = "700ms" })
    local b = ctx:emit("due", { type = "Reminder", key = "k", value = "at", at = now + 300 })
    local c = ctx:emit("due", { key = "k", value = "now" })
    ctx.state:set(msg.value, { now = now, ids = { a, b, c } })
  end,
}
]] },
    }
    for _, v in ipairs({ "go", "soon", "both", "negative" }) do produce(app, "t", { value = v }) end
    local s = drain(app)
    assert.same({ handled = 1, quarantined = 3 }, pick(s, "handled", "quarantined"))
    local go = state(app, "later").go
    local due = messages(app, "due")
    -- In the order they fell due: the event without a timer at once.
    assert.same({ { go.ids[3], "now" }, { go.ids[2], "at" }, { go.ids[1], "after" } },
                { { due[1].id, due[1].value }, { due[2].id, due[2].value },
                  { due[3].id, due[3].value } })
    assert.equal(3, #due)
    assert.same({ "Reminder", "Reminder" },
                { due[2].headers["eddy-type"], due[3].headers["eddy-type"] })
    assert.is_true(due[2].timestamp >= go.now + 300,
                   "'at' fired " .. due[2].timestamp - go.now .. " ms after its emit")
    assert.is_true(due[3].timestamp >= go.now + 700,
                   "'after' fired " .. due[3].timestamp - go.now .. " ms after its emit")
    local errors = {}
    for _, q in ipairs(dlq(app)) do errors[q.value] = q.error end
    local file = app.dir .. "/handlers/later.lua:"
    assert.same({
      soon = file .. "9: ctx:emit: after 'soon' is not a duration (500ms, 30s, 15m, 12h, 7d)",
      both = file .. "11: ctx:emit: give after or at, not both",
      negative = file .. "13: ctx:emit: after must be a duration or milliseconds (>= 0)",
    }, errors)
  end)
end)

describe("eddy.saga", function()
  it("runs the happy path: one command per step, each on its reply, then completed", function()
    local app = checkout_app { services = true, timeout = "1s" }
    local o = order(1, "ada")
    local id = place(app, o)
    drain(app)

    local inst = instance(app, id)
    assert.same({ saga = "checkout", status = "completed", step = 3, data = o,
                  steps = { "reserve", "pay", "ship" } },
                { saga = inst.saga, status = inst.status, step = inst.step, data = inst.data,
                  steps = inst.steps })
    assert.same({ "start - OrderPlaced",
                  "command reserve ReserveStock", "reply reserve StockReserved",
                  "command pay ChargePayment", "reply pay PaymentCaptured",
                  "command ship ShipOrder", "reply ship Shipped",
                  "completed - -" }, story(inst))

    -- Each command once, keyed and correlated by the instance, the order as
    -- its value, caused by the event that completed the step before.
    local cmds, replies = messages(app, "commands"), messages(app, "replies")
    assert.equal(3, #cmds)
    assert.equal(3, #replies)
    local h = inst.history
    local function cmd(m)
      return { id = m.id, key = m.key, type = m.headers["eddy-type"], value = decode(m.value),
               corr = m.headers["eddy-correlation-id"], cause = m.headers["eddy-causation-id"] }
    end
    assert.same({
      { id = h[2].id, key = id, type = "ReserveStock", value = o, corr = id, cause = id },
      { id = h[4].id, key = id, type = "ChargePayment", value = o, corr = id, cause = h[3].id },
      { id = h[6].id, key = id, type = "ShipOrder", value = o, corr = id, cause = h[5].id },
    }, { cmd(cmds[1]), cmd(cmds[2]), cmd(cmds[3]) })
    local reply_ids = {}
    for _, m in ipairs(replies) do reply_ids[m.headers["eddy-type"]] = m.id end
    assert.same({ StockReserved = h[3].id, PaymentCaptured = h[5].id, Shipped = h[7].id },
                reply_ids)
    assert.same({ ["ReserveStock:" .. id] = 1 }, state(app, "inventory"))
    assert.same({ ["ChargePayment:" .. id] = 1 }, state(app, "payments"))
    assert.same({ ["ShipOrder:" .. id] = 1 }, state(app, "shipping"))

    -- The pay step's timeout fell due after the step moved on (--drain
    -- waited for it): dropped.
    local timers = messages(app, "checkout.saga")
    assert.same({ { "eddy.SagaTimeout", id, { saga = id, step = 2, epoch = 2 } } },
                { { timers[1].headers["eddy-type"], timers[1].key, decode(timers[1].value) } })
    assert.equal(1, #timers)
    assert.same({}, dlq(app))

    assert.equal(LIST_HEADER .. list_line(inst, "3/3 ship", ""), eddy(app, "saga", "list"))
    assert.equal(LIST_HEADER .. list_line(inst, "3/3 ship", ""),
                 eddy(app, "saga", "list", "--status", "completed", "--saga", "checkout"))
    assert.equal(LIST_HEADER, eddy(app, "saga", "list", "--status", "running"))
    assert.equal(LIST_HEADER, eddy(app, "saga", "list", "--saga", "other"))
    local function event(e, what)
      return ("  " .. rfc3339(e.at) .. "  " .. pad(what, 12) .. " " .. pad(e.step or "", 12) ..
              " " .. pad(e.type or "", 22) .. " " .. (e.id or "")):gsub(" +$", "") .. "\n"
    end
    assert.equal(table.concat({
      "saga:     checkout\n",
      "instance: " .. id .. "\n",
      "status:   completed\n",
      "step:     3/3 ship\n",
      "started:  " .. rfc3339(inst.started_at) .. "\n",
      "updated:  " .. rfc3339(inst.updated_at) .. "\n",
      'data:     {"address":"home","card":"visa","customer":"ada","id":1,"sku":"book",' ..
      '"total":10}\n',
      "history:\n",
      event(h[1], "received"), event(h[2], "sent"), event(h[3], "received"),
      event(h[4], "sent"), event(h[5], "received"), event(h[6], "sent"), event(h[7], "received"),
      event(h[8], "completed"),
    }), eddy(app, "saga", "show", id))
  end)

  it("compensates the completed steps, last first, after a failure reply", function()
    local app = checkout_app { services = true }
    local a = place(app, order(1, "ada", { address = "nowhere" }))
    local b = place(app, order(2, "bob", { card = "declined" }))
    local c = place(app, order(3, "cy", { sku = "gpu" }))
    drain(app)

    local all = instances(app)
    assert.same({
      [a] = { "compensated", "ShipmentFailed in step 'ship'", 3 },
      [b] = { "compensated", "PaymentDeclined in step 'pay'", 2 },
      [c] = { "compensated", "OutOfStock in step 'reserve'", 1 },
    }, { [a] = { all[a].status, all[a].reason, all[a].step },
         [b] = { all[b].status, all[b].reason, all[b].step },
         [c] = { all[c].status, all[c].reason, all[c].step } })
    assert.same({ "start - OrderPlaced",
                  "command reserve ReserveStock", "reply reserve StockReserved",
                  "command pay ChargePayment", "reply pay PaymentCaptured",
                  "command ship ShipOrder", "reply ship ShipmentFailed",
                  "compensation pay -", "command pay RefundPayment",
                  "compensation reserve -", "command reserve ReleaseStock",
                  "compensated - -" }, story(all[a]))
    assert.same({ "start - OrderPlaced",
                  "command reserve ReserveStock", "reply reserve StockReserved",
                  "command pay ChargePayment", "reply pay PaymentDeclined",
                  "compensation reserve -", "command reserve ReleaseStock",
                  "compensated - -" }, story(all[b]))
    assert.same({ "start - OrderPlaced", "command reserve ReserveStock",
                  "reply reserve OutOfStock", "compensated - -" }, story(all[c]))

    -- The commands of each instance, in the order they went out.
    assert.same({ "ReserveStock", "ChargePayment", "ShipOrder", "RefundPayment", "ReleaseStock" },
                commands(app, a))
    assert.same({ "ReserveStock", "ChargePayment", "ReleaseStock" }, commands(app, b))
    assert.same({ "ReserveStock" }, commands(app, c))
    assert.equal(9, #commands(app))
    -- One message per compensation on the saga's topic.
    local comp = {}
    for _, m in ipairs(messages(app, "checkout.saga")) do
      comp[m.key] = comp[m.key] or {}
      table.insert(comp[m.key], m.headers["eddy-type"] .. " " .. m.value)
    end
    assert.same({ [a] = { 'eddy.SagaCompensate {"saga":"' .. a .. '","step":2}',
                          'eddy.SagaCompensate {"saga":"' .. a .. '","step":1}' },
                  [b] = { 'eddy.SagaCompensate {"saga":"' .. b .. '","step":1}' } }, comp)
    assert.same({ ["ReserveStock:" .. a] = 1, ["ReserveStock:" .. b] = 1,
                  ["ReserveStock:" .. c] = 1, ["ReleaseStock:" .. a] = 1,
                  ["ReleaseStock:" .. b] = 1 }, state(app, "inventory"))
    assert.same({ ["ChargePayment:" .. a] = 1, ["ChargePayment:" .. b] = 1,
                  ["RefundPayment:" .. a] = 1 }, state(app, "payments"))
    assert.same({ ["ShipOrder:" .. a] = 1 }, state(app, "shipping"))

    local list = { all[a], all[b], all[c] }
    table.sort(list, function(x, y)
      if x.started_at ~= y.started_at then return x.started_at < y.started_at end
      return x.id < y.id
    end)
    local steps = { [a] = "3/3 ship", [b] = "2/3 pay", [c] = "1/3 reserve" }
    local want = LIST_HEADER
    for _, i in ipairs(list) do want = want .. list_line(i, steps[i.id], i.reason) end
    assert.equal(want, eddy(app, "saga", "list", "--status", "compensated"))
    assert.equal(LIST_HEADER, eddy(app, "saga", "list", "--status", "completed"))
    assert.same({}, dlq(app))
  end)

  it("compensates on an abort event while running, and ignores one after the end", function()
    local app = checkout_app()
    local x = place(app, order(1, "ada"))
    local y = place(app, order(2, "bob"))
    local w = place(app, order(3, "cy"))
    drain(app)
    reply(app, x, "StockReserved")
    reply(app, y, "StockReserved")
    drain(app)
    -- x is at pay, w still at reserve: both cancelled; y goes on to the end.
    produce(app, "orders", { type = "OrderCancelled", key = "ada", corr = x })
    produce(app, "orders", { type = "OrderCancelled", key = "cy", corr = w })
    reply(app, y, "PaymentCaptured")
    drain(app)
    reply(app, y, "Shipped")
    drain(app)
    produce(app, "orders", { type = "OrderCancelled", key = "bob", corr = y })
    produce(app, "orders", { type = "OrderCancelled", key = "ada", corr = x })
    -- A cancellation of no instance: passed over.
    produce(app, "orders", { type = "OrderCancelled", key = "dan", corr = "no-such-order" })
    drain(app)

    local all = instances(app)
    assert.same({ x, y, w }, { all[x].id, all[y].id, all[w].id })
    assert.same({ "compensated", "OrderCancelled in step 'pay'" }, { all[x].status, all[x].reason })
    assert.same({ "start - OrderPlaced", "command reserve ReserveStock",
                  "reply reserve StockReserved", "command pay ChargePayment",
                  "abort pay OrderCancelled", "compensation reserve -",
                  "command reserve ReleaseStock", "compensated - -",
                  "ignored - OrderCancelled" }, story(all[x]))
    assert.same({ "compensated", "OrderCancelled in step 'reserve'" },
                { all[w].status, all[w].reason })
    assert.same({ "start - OrderPlaced", "command reserve ReserveStock",
                  "abort reserve OrderCancelled", "compensated - -" }, story(all[w]))
    assert.same({ "completed", "start - OrderPlaced", "command reserve ReserveStock",
                  "reply reserve StockReserved", "command pay ChargePayment",
                  "reply pay PaymentCaptured", "command ship ShipOrder", "reply ship Shipped",
                  "completed - -", "ignored - OrderCancelled" },
                { all[y].status, table.unpack(story(all[y])) })
    assert.same({ "ReserveStock", "ChargePayment", "ReleaseStock" }, commands(app, x))
    assert.same({ "ReserveStock" }, commands(app, w))
    assert.same({ "ReserveStock", "ChargePayment", "ShipOrder" }, commands(app, y))
    assert.equal(7, #commands(app))
  end)

  it("lets a step send what it declares and decide with a function; refuses an undeclared type",
     function()
    local app = make_app {
      topics = { orders = 1, commands = 1, replies = 1 },
      handlers = { quick = [[
local eddy = require "eddy"
return eddy.saga {
  name = "quick",
  start = "OrderPlaced",
  topics = { "orders", "replies" },
  retry = { attempts = 2, backoff = "5ms" },
  steps = {
    { name = "charge",
      emits = { "Charge" },
      send = function(saga, ctx)
        local t = saga.data.sku == "odd" and "Bogus" or "Charge"
        ctx:emit("commands", { type = t, key = saga.id, value = { amount = saga.data.total } })
      end,
      on = { Charged = function(reply, saga)
        saga.data.receipt = reply:json().receipt
        if reply:json().final then return "finish" end
      end } },
    { name = "ship", command = { topic = "commands", type = "ShipOrder" },
      on = { Shipped = "next" } },
  },
}
]] },
    }
    local a = place(app, order(1, "ada"))
    local b = place(app, order(2, "bob"))
    local odd = place(app, order(3, "cy", { sku = "odd" }))
    local s = drain(app)
    assert.same({ handled = 2, quarantined = 1 }, pick(s, "handled", "quarantined"))
    produce(app, "replies", { type = "Charged", key = a, corr = a,
                              value = { receipt = "r-1", final = true } })
    produce(app, "replies", { type = "Charged", key = b, corr = b, value = { receipt = "r-2" } })
    drain(app)

    local all, list = instances(app)
    assert.equal(2, #list)
    assert.same({ "completed", "r-1", 1, "start - OrderPlaced", "command charge Charge",
                  "reply charge Charged", "completed - -" },
                { all[a].status, all[a].data.receipt, all[a].step, table.unpack(story(all[a])) })
    assert.same({ "running", "r-2", 2, "start - OrderPlaced", "command charge Charge",
                  "reply charge Charged", "command ship ShipOrder" },
                { all[b].status, all[b].data.receipt, all[b].step, table.unpack(story(all[b])) })
    local sent = {}
    for _, m in ipairs(messages(app, "commands")) do
      sent[m.key] = sent[m.key] or {}
      table.insert(sent[m.key], m.headers["eddy-type"] .. " " .. m.value)
    end
    -- What the reply function kept in the instance's data goes with the
    -- next command.
    assert.same({ [a] = { 'Charge {"amount":10}' },
                  [b] = { 'Charge {"amount":20}',
                          'ShipOrder {"address":"home","card":"visa","customer":"bob","id":2,' ..
                          '"receipt":"r-2","sku":"book","total":20}' } }, sent)
    -- The order whose step sent an undeclared type started nothing.
    local q = dlq(app)
    assert.same({ { id = odd, attempts = 2,
                    error = app.dir .. "/handlers/quick.lua:12: saga 'quick' step 'charge' " ..
                            "emits type 'Bogus', which it does not declare (emits)" } },
                { pick(q[1], "id", "attempts", "error") })
    assert.equal(1, #q)
  end)

  it("runs two instances at once, even of one customer, each on its own replies", function()
    local app = checkout_app()
    local o1, o2 = order(1, "ada"), order(2, "ada", { sku = "pen" })
    local a, b = place(app, o1), place(app, o2)
    drain(app)
    reply(app, b, "StockReserved")
    reply(app, a, "StockReserved")
    -- A reply that belongs to no instance changes nothing.
    reply(app, "no-such-order", "StockReserved")
    drain(app)
    reply(app, b, "PaymentDeclined")
    reply(app, a, "PaymentCaptured")
    drain(app)
    reply(app, a, "Shipped")
    drain(app)

    local all, list = instances(app)
    assert.equal(2, #list)
    assert.same({ "completed", o1, "start - OrderPlaced", "command reserve ReserveStock",
                  "reply reserve StockReserved", "command pay ChargePayment",
                  "reply pay PaymentCaptured", "command ship ShipOrder", "reply ship Shipped",
                  "completed - -" }, { all[a].status, all[a].data, table.unpack(story(all[a])) })
    assert.same({ "compensated", o2, "start - OrderPlaced", "command reserve ReserveStock",
                  "reply reserve StockReserved", "command pay ChargePayment",
                  "reply pay PaymentDeclined", "compensation reserve -",
                  "command reserve ReleaseStock", "compensated - -" },
                { all[b].status, all[b].data, table.unpack(story(all[b])) })
    -- Each instance's commands carry its own order.
    local sent = {}
    for _, m in ipairs(messages(app, "commands")) do
      sent[#sent + 1] = { m.key, m.headers["eddy-type"], decode(m.value).id }
    end
    table.sort(sent, function(x, y) return x[1] .. x[2] < y[1] .. y[2] end)
    local want = { { a, "ChargePayment", 1 }, { a, "ReserveStock", 1 }, { a, "ShipOrder", 1 },
                   { b, "ChargePayment", 2 }, { b, "ReleaseStock", 2 }, { b, "ReserveStock", 2 } }
    table.sort(want, function(x, y) return x[1] .. x[2] < y[1] .. y[2] end)
    assert.same(want, sent)
    assert.same({ "ReserveStock", "ChargePayment", "ShipOrder" }, commands(app, a))
    assert.same({ "ReserveStock", "ChargePayment", "ReleaseStock" }, commands(app, b))
  end)

  it("ignores duplicate replies and records a reply after a timeout as late", function()
    local app = checkout_app { timeout = "1s" }
    local o = order(1, "ada")
    local p = produce(app, "orders", { type = "OrderPlaced", key = "ada", value = o })
    local a = p.id
    -- The start delivered twice (same id), then a second start for the
    -- same order (same correlation id, an id of its own).
    produce(app, "orders", { type = "OrderPlaced", key = "ada", value = o, id = a })
    produce(app, "orders", { type = "OrderPlaced", key = "ada", value = o, corr = a })
    local s = drain(app)
    assert.same({ handled = 2, deduplicated = 1 }, pick(s, "handled", "deduplicated"))
    assert.same({ "start - OrderPlaced", "command reserve ReserveStock",
                  "duplicate - OrderPlaced" }, story(instance(app, a)))

    -- The reply delivered twice, then a second reply to a step that moved
    -- on; then the pay step times out (--drain waits for it).
    local r1 = reply(app, a, "StockReserved")
    produce(app, "replies", { type = "StockReserved", key = a, corr = a, id = r1 })
    local r2 = reply(app, a, "StockReserved")
    s = drain(app)
    assert.same({ deduplicated = 1, quarantined = 0 },
                pick(s, "deduplicated", "quarantined"))
    local inst = instance(app, a)
    assert.same({ "compensated", "timeout in step 'pay'" }, { inst.status, inst.reason })
    assert.same({ "start - OrderPlaced", "command reserve ReserveStock",
                  "duplicate - OrderPlaced", "reply reserve StockReserved",
                  "command pay ChargePayment", "ignored - StockReserved", "timeout pay -",
                  "compensation reserve -", "command reserve ReleaseStock",
                  "compensated - -" }, story(inst))
    assert.same({ r1, r2 }, { inst.history[4].id, inst.history[6].id })
    -- The timeout fell due 1 s after the step began.
    assert.is_true(inst.history[7].at - inst.history[5].at >= 1000,
                   "timed out after " .. inst.history[7].at - inst.history[5].at .. " ms")

    -- The payment answers after all: recorded, not acted on.
    local late = reply(app, a, "PaymentCaptured")
    drain(app)
    inst = instance(app, a)
    assert.same({ "compensated", "late pay PaymentCaptured" }, { inst.status, story(inst)[11] })
    assert.equal(11, #inst.history)
    assert.same({ "ReserveStock", "ChargePayment", "ReleaseStock" }, commands(app, a))
    local show = H.lines(eddy(app, "saga", "show", a))
    assert.same({ "status:   compensated (timeout in step 'pay')",
                  "  " .. rfc3339(inst.history[11].at) .. "  late         pay          " ..
                  "PaymentCaptured        " .. late },
                { show[3], show[#show] })
  end)

  it("fires a timeout that fell due while eddy was down when it starts again", function()
    local app = checkout_app { timeout = "2s" }
    local a = place(app, order(1, "ada"))
    drain(app)
    reply(app, a, "StockReserved")
    local h = H.spawn({ "run", app.file })
    defer(function() H.cleanup(h) end)
    H.wait_until(function() return instance(app, a).step == 2 end, 10, "the pay step to begin")
    assert.is_true(H.kill(h.pid, "KILL"))
    H.wait_exit(h, 10)

    local inst = instance(app, a)
    assert.same({ "running", 2 }, { inst.status, inst.step })
    local began = inst.history[#inst.history]
    assert.equal("command pay ChargePayment", story(inst)[#inst.history])
    -- Wait, with eddy down, until the timeout is due.
    H.wait_until(function() return wall_ms() > began.at + 2100 end, 5,
                 "the timeout to fall due")
    assert.same({}, messages(app, "checkout.saga"))

    local started = wall_ms()
    drain(app)
    inst = instance(app, a)
    assert.same({ "compensated", "timeout in step 'pay'" }, { inst.status, inst.reason })
    assert.same({ "start - OrderPlaced", "command reserve ReserveStock",
                  "reply reserve StockReserved", "command pay ChargePayment", "timeout pay -",
                  "compensation reserve -", "command reserve ReleaseStock",
                  "compensated - -" }, story(inst))
    -- At the start, not a whole timeout after it.
    local fired = inst.history[5].at
    assert.is_true(fired >= began.at + 2000 and fired < started + 1500,
                   string.format("the timeout fired %d ms after the step began, %d ms after " ..
                                 "the restart", fired - began.at, fired - started))
    assert.same({ "ReserveStock", "ChargePayment", "ReleaseStock" }, commands(app, a))
  end)

  it("shows an instance whose compensation keeps failing as failed, until a replay goes through",
     function()
    local saga = [[
local eddy = require "eddy"
return eddy.saga {
  name = "checkout",
  start = "OrderPlaced",
  topics = { "orders", "replies" },
  retry = { attempts = 3, backoff = "5ms", max_backoff = "10ms" },
  steps = {
    { name = "reserve",
      command = { topic = "commands", type = "ReserveStock" },
      on = { StockReserved = "next" },
      compensation_emits = { "ReleaseStock" },
      compensate = function(saga, ctx)
        if not FIXED then error("warehouse offline") end
        ctx:emit("commands", { type = "ReleaseStock", key = saga.id, value = saga.data })
      end },
    { name = "pay",
      command = { topic = "commands", type = "ChargePayment" },
      on = { PaymentCaptured = "next", PaymentDeclined = "compensate" } },
  },
}
]]
    local app = make_app {
      topics = { orders = 2, commands = 1, replies = 2 },
      handlers = { checkout = saga:gsub("FIXED", "false") },
    }
    local a = place(app, order(1, "ada"))
    drain(app)
    reply(app, a, "StockReserved")
    drain(app)
    reply(app, a, "PaymentDeclined")
    local s = drain(app)
    assert.same({ retried = 2, quarantined = 1 }, pick(s, "retried", "quarantined"))

    local q = dlq(app)
    local err = app.dir .. "/handlers/checkout.lua:13: warehouse offline"
    assert.same({ { consumer = "checkout", topic = "checkout.saga", key = a, attempts = 3,
                    error = err, type = "eddy.SagaCompensate" } },
                { { consumer = q[1].consumer, topic = q[1].topic, key = q[1].key,
                    attempts = q[1].attempts, error = q[1].error,
                    type = header(q[1].headers, "eddy-type") } })
    assert.equal(1, #q)
    local why = string.format("message %s quarantined (eddy dlq show %d): %s", q[1].id, q[1].seq,
                              err)
    local inst = instance(app, a)
    assert.same({ "failed", why, "start - OrderPlaced", "command reserve ReserveStock",
                  "reply reserve StockReserved", "command pay ChargePayment",
                  "reply pay PaymentDeclined" },
                { inst.status, inst.failure, table.unpack(story(inst)) })
    assert.equal(LIST_HEADER .. list_line(inst, "2/2 pay", why),
                 eddy(app, "saga", "list", "--status", "failed"))
    local _, failed = instances(app, "failed")
    assert.same({ { a, "failed", why } }, { { failed[1].id, failed[1].status, failed[1].failure } })
    assert.equal(1, #failed)
    assert.equal(LIST_HEADER, eddy(app, "saga", "list", "--status", "compensated"))
    assert.equal(LIST_HEADER, eddy(app, "saga", "list", "--status", "compensating"))
    assert.equal("status:   failed (" .. why .. ")", H.lines(eddy(app, "saga", "show", a))[3])
    assert.same({ "ReserveStock", "ChargePayment" }, commands(app, a))

    -- Fixed, and replayed: the compensation goes through.
    H.write(app.dir .. "/handlers/checkout.lua", (saga:gsub("FIXED", "true")))
    eddy(app, "dlq", "replay", "--all")
    s = drain(app)
    assert.same({ handled = 1, quarantined = 0 }, pick(s, "handled", "quarantined"))
    inst = instance(app, a)
    assert.same({ "compensated", "PaymentDeclined in step 'pay'", "compensation reserve -",
                  "command reserve ReleaseStock", "compensated - -" },
                { inst.status, inst.reason, table.unpack(story(inst), 6) })
    assert.equal(8, #inst.history)
    assert.equal(LIST_HEADER, eddy(app, "saga", "list", "--status", "failed"))
    assert.same({ "ReserveStock", "ChargePayment", "ReleaseStock" }, commands(app, a))
  end)

  it("sends each command once per step across SIGKILLs in the middle of sagas", function()
    math.randomseed(SEED)
    local app = checkout_app { services = true, work = 200000 }
    -- 90 orders: some out of stock, some declined, some not shippable, and
    -- some picked up, whose sagas cannot end before the test says they
    -- were: every kill finds those in the middle of their sagas, however
    -- fast the others run.
    local N, lines, kinds = 90, {}, {}
    for i = 1, N do
      local kind = i % 13 == 0 and "pickup" or i % 11 == 0 and "gpu" or
                   i % 5 == 0 and "declined" or i % 7 == 0 and "nowhere" or "ok"
      local fields = ({ gpu = { sku = "gpu" }, declined = { card = "declined" },
                        nowhere = { address = "nowhere" }, pickup = { address = "pickup" },
                        ok = {} })[kind]
      lines[i] = "c" .. i .. "\t" .. cjson.encode(order(i, "c" .. i, fields))
      kinds[i] = kind
    end
    local r = H.run({ "--data", app.data, "produce", "orders", "--type", "OrderPlaced", "-K", "\t",
                      "--json" }, { stdin = table.concat(lines, "\n") .. "\n" })
    assert.same({ code = 0, err = "" }, { code = r.code, err = r.err })
    local placed, kind_of, orders, pickups = json_lines(r.out), {}, {}, {}
    assert.equal(N, #placed)
    for i, p in ipairs(placed) do
      kind_of[p.id], orders[p.id] = kinds[i], true
      if kinds[i] == "pickup" then pickups[#pickups + 1] = p.id end
    end
    assert.equal(6, #pickups)

    -- How many instances ended, how many history entries they have in all
    -- (one more for every saga message handled), and the count of each
    -- status.
    local function progress()
      local n, entries = {}, 0
      for _, i in pairs(instances(app)) do
        n[i.status] = (n[i.status] or 0) + 1
        entries = entries + #i.history
      end
      return (n.completed or 0) + (n.compensated or 0), entries, n
    end
    -- Three runs, each killed with SIGKILL once a few more instances
    -- (drawn at random) ended, or all that can end before the pickups: a
    -- round may then find nothing more to end and be killed as it starts.
    -- The ended count moves in bursts (the instances go through their
    -- steps together) and each look at it takes a while, more so under
    -- the sanitizers, so how far past its goal a kill lands, and how long
    -- the wait takes, depend on the machine: the wait fails only when the
    -- sagas stop moving.
    for round = 1, 3 do
      local goal = math.min(progress() + math.random(3, 12), N - #pickups)
      local h = H.spawn({ "run", app.file })
      defer(function() H.cleanup(h) end)
      H.wait_progress(function()
        local ended, entries = progress()
        return ended >= goal or H.exit_code(h) ~= nil, entries
      end, STALL, goal .. " instances to end")
      assert.is_true(H.kill(h.pid, "KILL"))
      local code = H.wait_exit(h, 10, "eddy run to die of SIGKILL")
      if code ~= 128 + 9 then
        error("eddy run exited " .. code .. " before it was killed; its log:\n" .. H.read(h.err))
      end
      local ended, _, n = progress()
      print(string.format("# saga crash round %d: goal %d, killed at %d ended (%d completed, " ..
                          "%d compensated), %d running, %d compensating (seed %d)", round, goal,
                          ended, n.completed or 0, n.compensated or 0, n.running or 0,
                          n.compensating or 0, SEED))
    end
    drain(app)

    local happy = { "start - OrderPlaced", "command reserve ReserveStock",
                    "reply reserve StockReserved", "command pay ChargePayment",
                    "reply pay PaymentCaptured", "command ship ShipOrder", "reply ship Shipped",
                    "completed - -" }
    -- The pickups wait in step ship, their ShipOrder sent once, until
    -- their customers' Shipped come: they were in the middle at each kill.
    local all = instances(app)
    local waiting, got_waiting = {}, {}
    for _, id in ipairs(pickups) do
      waiting[id] = { "running", 3, { table.unpack(happy, 1, 6) } }
      local i = all[id] or { history = {} }
      got_waiting[id] = { i.status, i.step, story(i) }
    end
    assert.same(waiting, got_waiting)
    for _, id in ipairs(pickups) do reply(app, id, "Shipped") end
    drain(app)

    local want = {
      ok = { "completed", nil, { "ReserveStock", "ChargePayment", "ShipOrder" }, happy },
      pickup = { "completed", nil, { "ReserveStock", "ChargePayment", "ShipOrder" }, happy },
      gpu = { "compensated", "OutOfStock in step 'reserve'", { "ReserveStock" },
              { "start - OrderPlaced", "command reserve ReserveStock", "reply reserve OutOfStock",
                "compensated - -" } },
      declined = { "compensated", "PaymentDeclined in step 'pay'",
                   { "ReserveStock", "ChargePayment", "ReleaseStock" },
                   { "start - OrderPlaced", "command reserve ReserveStock",
                     "reply reserve StockReserved", "command pay ChargePayment",
                     "reply pay PaymentDeclined", "compensation reserve -",
                     "command reserve ReleaseStock", "compensated - -" } },
      nowhere = { "compensated", "ShipmentFailed in step 'ship'",
                  { "ReserveStock", "ChargePayment", "ShipOrder", "RefundPayment", "ReleaseStock" },
                  { "start - OrderPlaced", "command reserve ReserveStock",
                    "reply reserve StockReserved", "command pay ChargePayment",
                    "reply pay PaymentCaptured", "command ship ShipOrder",
                    "reply ship ShipmentFailed", "compensation pay -",
                    "command pay RefundPayment", "compensation reserve -",
                    "command reserve ReleaseStock", "compensated - -" } },
    }
    -- One instance per order, and commands for those alone.
    local sent, keys = {}, {}
    for _, m in ipairs(messages(app, "commands")) do
      sent[m.key] = sent[m.key] or {}
      table.insert(sent[m.key], m.headers["eddy-type"])
      keys[m.key] = true
    end
    all = instances(app)
    local ids = {}
    for id in pairs(all) do ids[id] = true end
    assert.same(orders, ids)
    assert.same(orders, keys)
    local got, expected = {}, {}
    local handled = { inventory = {}, payments = {}, shipping = {} }
    local service = { ReserveStock = "inventory", ReleaseStock = "inventory",
                      ChargePayment = "payments", RefundPayment = "payments",
                      ShipOrder = "shipping" }
    for id, kind in pairs(kind_of) do
      local w, i = want[kind], all[id]
      expected[id] = { w[1], w[2], w[3], w[4] }
      got[id] = { i.status, i.reason, sent[id], story(i) }
      for _, t in ipairs(w[3]) do handled[service[t]][t .. ":" .. id] = 1 end
    end
    assert.same(expected, got)
    for name, h in pairs(handled) do assert.same(h, state(app, name), name) end
    assert.same({}, dlq(app))
  end)
end)

describe("eddy saga list | show", function()
  it("fail with one line on an unknown instance, an unknown status or a missing id", function()
    local app = checkout_app()
    local a = place(app, order(1, "ada"))
    drain(app)
    assert.same({ code = 1, out = "", err = "eddy saga show: no saga instance 'nope'\n" },
                try(app, "saga", "show", "nope"))
    assert.same({ code = 1, out = "",
                  err = "eddy saga list: unknown status 'bogus' (one of: running, completed, " ..
                        "compensating, compensated, failed)\n" },
                try(app, "saga", "list", "--status", "bogus"))
    assert.same({ code = 2, out = "",
                  err = "eddy saga show: missing argument (usage: eddy saga show ID [--json]) " ..
                        "(see 'eddy saga show --help')\n" },
                try(app, "saga", "show"))
    -- The instance is there all the same.
    assert.same({ a }, { instance(app, a).id })
  end)
end)

describe("eddy run on bad saga and rule definitions", function()
  --- Writes an app whose one handler file is `local eddy = require
  -- "eddy"` then `text` on line 2, runs it, and returns what `eddy run`
  -- said; the store must not have been made.
  local function run_bad(text)
    local dir = H.tmpdir()
    defer(function() H.rmdir(dir) end)
    assert(os.execute("mkdir " .. H.quote(dir .. "/handlers")))
    H.write(dir .. "/eddy.lua", "return { data = 'data', handlers = { 'handlers/' }, " ..
                                "topics = { t = { partitions = 1 } } }\n")
    H.write(dir .. "/handlers/x.lua", 'local eddy = require "eddy"\n' .. text .. "\n")
    local r = H.run({ "run", dir .. "/eddy.lua", "--drain" })
    assert.is_false(H.exists(dir .. "/data"), "the failed run made its store")
    return { code = r.code, out = r.out, err = r.err:gsub(dir:gsub("%p", "%%%0"), "APP") }
  end

  local function fails(message)
    return { code = 1, out = "", err = "eddy run: " .. message .. "\n" }
  end

  it("exit 1 with one line naming the handler file and what is wrong with a saga", function()
    local STEP = '{ name = "a", command = { topic = "t", type = "A" }, on = { Ok = "next" } }'
    local function saga(fields, step)
      return "return eddy.saga { " .. fields .. ", steps = { " .. (step or STEP) .. " } }"
    end
    local cases = {
      { 'return eddy.saga { start = "Go", topics = { "t" }, steps = { ' .. STEP .. ' } }',
        "saga: 'name' is missing" },
      { saga('name = "s", topics = { "t" }'),
        "saga 's': 'start' must be the event type that starts an instance" },
      { saga('name = "s", start = "Go"'),
        "saga 's': 'topics' must list the topics its events come on" },
      { 'return eddy.saga { name = "s", start = "Go", topics = { "t" }, setps = {} }',
        "saga 's': unknown option 'setps' (did you mean 'steps'?)" },
      { 'return eddy.saga { name = "s", start = "Go", topics = { "t" }, steps = {} }',
        "saga 's': 'steps' must be a list of at least one step" },
      { saga('name = "s", start = "Go", topics = { "t" }, abort = { "" }'),
        "saga 's': 'abort' item 1 must be a non-empty string" },
      { saga('name = "s", start = "Go", topics = { "t" }', '{ name = "a", on = { Ok = "next" } }'),
        "saga 's': step 'a': give 'command' ({ topic =, type = }) or 'send' " ..
        "(a function(saga, ctx))" },
      { saga('name = "s", start = "Go", topics = { "t" }',
             '{ name = "a", command = { topic = "t", type = "A" }, on = { Ok = "nxt" } }'),
        "saga 's': step 'a': 'on.Ok' must be \"next\", \"compensate\", \"abort\", \"finish\" " ..
        "or a function, got \"nxt\"" },
      { saga('name = "s", start = "Go", topics = { "t" }',
             '{ name = "a", command = { topic = "t", type = "A" }, on = {} }'),
        "saga 's': step 'a': 'on' must map the reply types it awaits to \"next\", " ..
        "\"compensate\", \"finish\" or a function(reply, saga, ctx)" },
      { saga('name = "s", start = "Go", topics = { "t" }',
             '{ name = "a", command = { topic = "t", type = "A" }, on = { Ok = "next" }, ' ..
             'timeout = "soon" }'),
        "saga 's': step 'a': 'timeout' must be a duration (e.g. 30s)" },
      { saga('name = "s", start = "Go", topics = { "t" }',
             '{ name = "a", command = { topic = "t", type = "A" }, on = { Ok = "next" }, ' ..
             'timout = "1s" }'),
        "saga 's': step 'a': unknown step option 'timout' (did you mean 'timeout'?)" },
      { saga('name = "s", start = "Go", topics = { "t" }',
             '{ name = "a", command = { topic = "t", type = "A" }, on = { Ok = "next" }, ' ..
             'compensation = { topic = "t" } }'),
        "saga 's': step 'a': 'compensation' must be { topic = ..., type = ... }" },
    }
    for _, c in ipairs(cases) do
      assert.same(fails("APP/handlers/x.lua:2: " .. c[2]), run_bad(c[1]))
    end
  end)

  it("exit 1 with one line naming the handler file and what is wrong with a rule, or a name",
     function()
    local cases = {
      { 'return eddy.on("A", { emits = { "B" } }, function() end)',
        "rule on A: 'topic' is missing (the topic the events come on)" },
      { 'return eddy.on("A", { topic = "t", emit = { "B" } }, function() end)',
        "rule on A: unknown option 'emit' (did you mean 'emits'?)" },
      { 'return eddy.on({}, { topic = "t" }, function() end)',
        "rule: 'types' must be a type name or a list of them" },
      { 'return eddy.on("A", { topic = "t" })',
        "rule on A: the handler must be a function(event, ctx)" },
      { 'return eddy.on("A", { topic = "t", emits = { "B", 3 } }, function() end)',
        "rule on A: 'emits' item 2 must be a non-empty string" },
      { 'return eddy.on("A", { topic = "t", name = "bad name" }, function() end)',
        "consumer 'bad name': invalid name (use letters, digits, '.', '_' and '-')" },
      { 'return eddy.saga { name = "bad name", start = "Go", topics = { "t" }, steps = { ' ..
        '{ name = "a", command = { topic = "t", type = "A" }, on = { Ok = "next" } } } }',
        "consumer 'bad name': invalid name (use letters, digits, '.', '_' and '-')" },
    }
    local got, want = {}, {}
    for i, c in ipairs(cases) do
      want[i] = fails("APP/handlers/x.lua:2: " .. c[2])
      got[i] = run_bad(c[1])
    end
    assert.same(want, got)
  end)
end)

describe("eddy flows", function()
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
    { name = "pay",
      command = { topic = "payments", type = "ChargePayment" },
      on = { PaymentCaptured = "next" } },
  },
}
]]
  -- Inventory answers the saga; nothing answers the payments; ping and
  -- pong answer each other and echo itself, for ever; audit is a plain
  -- consumer.
  local OTHERS = [[
local eddy = require "eddy"
return {
  eddy.on({ "ReserveStock", "ReleaseStock" },
    { topic = "commands", name = "inventory", emits = { "StockReserved", "OutOfStock" } },
    function() end),
  eddy.on("Ping", { topic = "games", name = "ping", emits = "Pong" }, function() end),
  eddy.on("Pong", { topic = "games", name = "pong", emits = { "Ping" } }, function() end),
  eddy.on("Echo", { topics = { "games", "echoes" }, name = "echo", emits = "Echo" },
    function() end),
  eddy.consumer { name = "audit", topics = { "orders", "replies" }, handle = function() end },
}
]]

  local NODES = {
    { "consumer_audit", "consumer audit", "box", '["%s"]' },
    { "rule_echo", "rule echo", "box", '["%s"]' },
    { "rule_inventory", "rule inventory", "box", '["%s"]' },
    { "rule_ping", "rule ping", "box", '["%s"]' },
    { "rule_pong", "rule pong", "box", '["%s"]' },
    { "saga_checkout", "saga checkout", "hexagon", '{{"%s"}}' },
    { "topic_orders", "orders", "cylinder", '[("%s")]' },
    { "topic_replies", "replies", "cylinder", '[("%s")]' },
  }
  for _, t in ipairs({ "ChargePayment", "Echo", "OrderCancelled", "OrderPlaced", "OutOfStock",
                       "PaymentCaptured", "Ping", "Pong", "ReleaseStock", "ReserveStock",
                       "StockReserved" }) do
    NODES[#NODES + 1] = { "type_" .. t, t, "ellipse", '(["%s"])' }
  end

  local EDGES = {
    { "type_OrderPlaced", "saga_checkout", "orders, replies (starts)" },
    { "type_OrderCancelled", "saga_checkout", "orders, replies (aborts)" },
    { "saga_checkout", "type_ReserveStock", "commands" },
    { "type_OutOfStock", "saga_checkout", "orders, replies" },
    { "type_StockReserved", "saga_checkout", "orders, replies" },
    { "saga_checkout", "type_ReleaseStock", "commands (compensation)" },
    { "saga_checkout", "type_ChargePayment", "payments" },
    { "type_PaymentCaptured", "saga_checkout", "orders, replies" },
    { "type_ReserveStock", "rule_inventory", "commands" },
    { "type_ReleaseStock", "rule_inventory", "commands" },
    { "rule_inventory", "type_StockReserved" },
    { "rule_inventory", "type_OutOfStock" },
    { "type_Ping", "rule_ping", "games" },
    { "rule_ping", "type_Pong" },
    { "type_Pong", "rule_pong", "games" },
    { "rule_pong", "type_Ping" },
    { "type_Echo", "rule_echo", "games, echoes" },
    { "rule_echo", "type_Echo" },
    { "topic_orders", "consumer_audit" },
    { "topic_replies", "consumer_audit" },
  }

  local WARNINGS =
    "warning: event type 'OrderCancelled' is consumed (by checkout) but nothing in the app " ..
    "produces it\n" ..
    "warning: event type 'OrderPlaced' is consumed (by checkout) but nothing in the app " ..
    "produces it\n" ..
    "warning: event type 'PaymentCaptured' is consumed (by checkout) but nothing in the app " ..
    "produces it\n" ..
    "warning: event type 'ChargePayment' is produced (by checkout) but nothing in the app " ..
    "consumes it\n" ..
    "warning: cycle: Echo -> echo -> Echo\n" ..
    "warning: cycle: Ping -> ping -> Pong -> pong -> Ping\n"

  --- The app in a fresh directory (no store).
  local function flow_app()
    local dir = H.tmpdir()
    defer(function() H.rmdir(dir) end)
    assert(os.execute("mkdir " .. H.quote(dir .. "/handlers")))
    H.write(dir .. "/eddy.lua", "return { data = 'data', handlers = { 'handlers/' } }\n")
    H.write(dir .. "/handlers/checkout.lua", SAGA)
    H.write(dir .. "/handlers/others.lua", OTHERS)
    return dir
  end

  it("draws an app's types, rules, sagas and topics as mermaid, and warns on stderr", function()
    local dir = flow_app()
    local want = { "flowchart LR" }
    for _, n in ipairs(NODES) do want[#want + 1] = "  " .. n[1] .. n[4]:format(n[2]) end
    for _, e in ipairs(EDGES) do
      want[#want + 1] = "  " .. e[1] .. " -->" .. (e[3] and '|"' .. e[3] .. '"| ' or " ") .. e[2]
    end
    local expected = { code = 0, out = table.concat(want, "\n") .. "\n", err = WARNINGS }
    local r = H.run({ "flows", dir .. "/eddy.lua" })
    assert.same(expected, { code = r.code, out = r.out, err = r.err })
    -- ./eddy.lua by default, and mermaid is the default format.
    r = H.run({ "flows", "--format", "mermaid" }, { cwd = dir })
    assert.same(expected, { code = r.code, out = r.out, err = r.err })
    assert.is_false(H.exists(dir .. "/data"), "eddy flows made a store")
  end)

  it("draws the same graph as dot", function()
    local dir = flow_app()
    local want = { "digraph eddy {", "  rankdir=LR;" }
    for _, n in ipairs(NODES) do
      want[#want + 1] = string.format('  %s [label="%s", shape=%s];', n[1], n[2], n[3])
    end
    for _, e in ipairs(EDGES) do
      want[#want + 1] = "  " .. e[1] .. " -> " .. e[2] ..
                        (e[3] and ' [label="' .. e[3] .. '"]' or "") .. ";"
    end
    want[#want + 1] = "}"
    local r = H.run({ "flows", dir .. "/eddy.lua", "--format", "dot" })
    assert.same({ code = 0, out = table.concat(want, "\n") .. "\n", err = WARNINGS },
                { code = r.code, out = r.out, err = r.err })
  end)

  it("warns about a cycle of two rules, and about a type only a plain consumer emits", function()
    local dir = H.tmpdir()
    defer(function() H.rmdir(dir) end)
    H.write(dir .. "/app.lua", "return { handlers = { 'rules.lua' } }\n")
    H.write(dir .. "/rules.lua", [[
local eddy = require "eddy"
return {
  eddy.on("A", { topic = "t", name = "first", emits = "B" }, function() end),
  eddy.on("B", { topic = "t", name = "second", emits = "A" }, function() end),
}
]])
    local r = H.run({ "flows", dir .. "/app.lua" })
    assert.same({ 0, "warning: cycle: A -> first -> B -> second -> A\n" }, { r.code, r.err })
    H.write(dir .. "/rules.lua", [[
local eddy = require "eddy"
return {
  eddy.on("A", { topic = "t", name = "first", emits = "B" }, function() end),
  eddy.on("B", { topic = "t", name = "second" }, function() end),
  eddy.consumer { name = "source", topics = "u", handle = function(_, ctx)
    ctx:emit("t", { type = "A", value = "x" })
  end },
}
]])
    r = H.run({ "flows", dir .. "/app.lua" })
    assert.same({ code = 0, err = "warning: event type 'A' is consumed (by first) but nothing " ..
                                  "in the app produces it\n",
                  out = "flowchart LR\n  consumer_source[\"consumer source\"]\n" ..
                        "  rule_first[\"rule first\"]\n  rule_second[\"rule second\"]\n" ..
                        "  topic_u[(\"u\")]\n  type_A([\"A\"])\n  type_B([\"B\"])\n" ..
                        "  type_A -->|\"t\"| rule_first\n  rule_first --> type_B\n" ..
                        "  type_B -->|\"t\"| rule_second\n  topic_u --> consumer_source\n" },
                r)
  end)

  it("fails with one line on an unknown format or an app that does not load", function()
    local dir = flow_app()
    local r = H.run({ "flows", dir .. "/eddy.lua", "--format", "png" })
    assert.same({ code = 1, out = "", err = "eddy flows: unknown format 'png' (mermaid or dot)\n" },
                { code = r.code, out = r.out, err = r.err })
    H.write(dir .. "/handlers/others.lua", "return {\n")
    r = H.run({ "flows", dir .. "/eddy.lua" })
    assert.same({ code = 1, out = "",
                  err = "eddy flows: " .. dir .. "/handlers/others.lua:2: unexpected symbol " ..
                        "near <eof>\n" },
                { code = r.code, out = r.out, err = r.err })
  end)
end)
