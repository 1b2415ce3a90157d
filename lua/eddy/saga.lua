--- Choreography rules and sagas, built on consumers (`eddy.on`,
-- `eddy.saga`; see docs/sagas.md).
--
-- A rule is a consumer of one or more event types on some topics; a saga is
-- a consumer that keeps one instance per correlation id in its state, runs
-- ordered steps (each sends a command and awaits one of the replies it
-- names), and compensates the completed steps in reverse order after a
-- failure reply, a timeout or an abort.  Both declare the event types they
-- emit, so that `eddy flows` can draw the app before it runs.
local eddy = require "eddy"

local M = {}

-- Types of the saga's own messages, on its topic `<name>.saga`.
M.TIMEOUT = "eddy.SagaTimeout"
M.COMPENSATE = "eddy.SagaCompensate"

local OUTCOMES = { next = true, compensate = true, abort = true, finish = true }

local Failure = {}
local function fail(msg) error(setmetatable({ msg = msg }, Failure), 0) end

-- Runs check(def) and turns a Failure into its message, without a
-- position: `eddy.on` and `eddy.saga` (init.lua) add their caller's.
local function checked(check, def)
  local ok, v = pcall(check, def)
  if ok then return v end
  if getmetatable(v) == Failure then error(v.msg, 0) end
  error(v, 0)
end

local function list_of_strings(p, what, v)
  if type(v) == "string" then v = { v } end
  if type(v) ~= "table" or #v == 0 then
    fail(p .. "'" .. what .. "' must be a type name or a list of them")
  end
  local out = {}
  for i, s in ipairs(v) do
    if type(s) ~= "string" or s == "" then
      fail(p .. "'" .. what .. "' item " .. i .. " must be a non-empty string")
    end
    out[i] = s
  end
  return out
end

-- Fails on a key of t not in known, naming the closest known one.
local function check_keys(p, what, t, known)
  local problem = eddy._key_problem(p, what, t, known)
  if problem then fail(problem) end
end

local set_of = eddy._set_of

local guarded = eddy._guarded

-- Options passed through to the consumer underneath.
local PASS = { "retry", "dedupe", "dlq", "from", "limits", "sandbox" }

local function consumer_opts(def, t)
  for _, k in ipairs(PASS) do t[k] = def[k] end
  return t
end

---------------------------------------------------------------------------
-- Rules
---------------------------------------------------------------------------

local RULE_OPTIONS = { "name", "topic", "topics", "emits", "retry", "dedupe", "dlq", "from",
                       "limits", "sandbox" }

local function check_rule(args)
  local types, opts, fn = args[1], args[2], args[3]
  if type(opts) == "function" and fn == nil then opts, fn = {}, opts end
  types = list_of_strings("rule: ", "types", types)
  local p = "rule on " .. table.concat(types, ", ") .. ": "
  if type(opts) ~= "table" then fail(p .. "options must be a table") end
  check_keys(p, "option", opts, RULE_OPTIONS)
  if type(fn) ~= "function" then fail(p .. "the handler must be a function(event, ctx)") end
  local topics = opts.topics or opts.topic
  if topics == nil then fail(p .. "'topic' is missing (the topic the events come on)") end
  local emits = opts.emits and list_of_strings(p, "emits", opts.emits) or {}
  -- The default name (the consumer group) from the types, made valid.
  local name = opts.name or ("on." .. table.concat(types, "-"):gsub("[^%w._-]", "_"))
  local wanted, allowed = set_of(types), set_of(emits)
  local who = "rule '" .. name .. "'"
  local c = eddy._consumer(consumer_opts(opts, {
    name = name,
    topics = topics,
    handle = function(msg, ctx)
      if not wanted[msg.type] then return end
      return fn(msg, guarded(ctx, allowed, who))
    end,
  }))
  c.kind = "rule"
  c.on = types
  c.emits = emits
  return c
end

--- A choreography rule: handles the events of some types that come on a
-- topic, and declares the types it emits.
--
--    return eddy.on("OrderPlaced", { topic = "orders", emits = { "StockRequested" } },
--      function(event, ctx) ctx:emit("inventory", { type = "StockRequested", ... }) end)
--
-- A rule is a consumer (named `on.<Type>` unless `name` is given) with its
-- guarantees: per-key order, dedupe, retries, quarantine, the outbox.
-- Events of other types on the topic are passed over.  Emitting a type it
-- does not declare fails the handler.
-- @param types a type name or a list of them
-- @tparam table opts `{ topic = ... | topics = {...}, emits = {...}, name
--   =, retry =, dedupe =, dlq =, from =, limits = }`
-- @tparam function fn `function(event, ctx)`
-- @treturn table a consumer, with `kind = "rule"`, `on` and `emits`
function M.on(types, opts, fn)
  return checked(check_rule, { types, opts, fn })
end

---------------------------------------------------------------------------
-- Sagas
---------------------------------------------------------------------------

local SAGA_OPTIONS = { "name", "topics", "start", "abort", "correlate", "init", "steps",
                       "retry", "dedupe", "dlq", "from", "limits", "sandbox" }
local STEP_OPTIONS = { "name", "command", "send", "emits", "on", "timeout", "compensation",
                       "compensate", "compensation_emits" }

-- { topic =, type = } for a step's command or compensation.
local function check_message(p, what, v)
  if v == nil then return nil end
  if type(v) ~= "table" or type(v.topic) ~= "string" or type(v.type) ~= "string" then
    fail(p .. "'" .. what .. "' must be { topic = ..., type = ... }")
  end
  return { topic = v.topic, type = v.type }
end

local function check_step(sp, i, s)
  if type(s) ~= "table" then fail(sp .. "step " .. i .. " must be a table") end
  local name = s.name or ("step" .. i)
  local p = sp .. "step '" .. name .. "': "
  check_keys(p, "step option", s, STEP_OPTIONS)
  local step = { name = name, index = i }
  step.command = check_message(p, "command", s.command)
  if s.send ~= nil and type(s.send) ~= "function" then
    fail(p .. "'send' must be a function(saga, ctx)")
  end
  step.send = s.send
  if not step.command and not step.send then
    fail(p .. "give 'command' ({ topic =, type = }) or 'send' (a function(saga, ctx))")
  end
  step.emits = s.emits and list_of_strings(p, "emits", s.emits) or {}
  if step.command then table.insert(step.emits, 1, step.command.type) end
  if type(s.on) ~= "table" or next(s.on) == nil then
    fail(p .. "'on' must map the reply types it awaits to \"next\", \"compensate\", " ..
         "\"finish\" or a function(reply, saga, ctx)")
  end
  step.on = {}
  step.replies = {}
  for t, v in pairs(s.on) do
    if type(t) ~= "string" then fail(p .. "'on' keys must be reply types") end
    if type(v) == "string" and not OUTCOMES[v] then
      fail(p .. "'on." .. t .. "' must be \"next\", \"compensate\", \"abort\", \"finish\" " ..
           "or a function, got \"" .. v .. "\"")
    elseif type(v) ~= "string" and type(v) ~= "function" then
      fail(p .. "'on." .. t .. "' must be an outcome or a function(reply, saga, ctx)")
    end
    step.on[t] = v
    step.replies[#step.replies + 1] = t
  end
  table.sort(step.replies)
  if s.timeout ~= nil then
    local ms = eddy._duration_ms(s.timeout)
    if not ms or ms < 1 then fail(p .. "'timeout' must be a duration (e.g. 30s)") end
    step.timeout_ms = ms
  end
  step.compensation = check_message(p, "compensation", s.compensation)
  if s.compensate ~= nil and type(s.compensate) ~= "function" then
    fail(p .. "'compensate' must be a function(saga, ctx)")
  end
  step.compensate = s.compensate
  step.compensation_emits = s.compensation_emits and
    list_of_strings(p, "compensation_emits", s.compensation_emits) or {}
  if step.compensation then
    table.insert(step.compensation_emits, 1, step.compensation.type)
  end
  return step
end

local function check_saga(def)
  if type(def) ~= "table" then fail("saga: the definition must be a table") end
  local name = def.name
  if type(name) ~= "string" or name == "" then fail("saga: 'name' is missing") end
  local p = "saga '" .. name .. "': "
  check_keys(p, "option", def, SAGA_OPTIONS)
  if type(def.start) ~= "string" or def.start == "" then
    fail(p .. "'start' must be the event type that starts an instance")
  end
  if def.correlate ~= nil and type(def.correlate) ~= "function" then
    fail(p .. "'correlate' must be a function(event) returning the instance id")
  end
  if def.init ~= nil and type(def.init) ~= "function" then
    fail(p .. "'init' must be a function(event, saga)")
  end
  if type(def.steps) ~= "table" or #def.steps == 0 then
    fail(p .. "'steps' must be a list of at least one step")
  end
  local steps, by_reply = {}, {}
  for i, s in ipairs(def.steps) do
    steps[i] = check_step(p, i, s)
    for _, t in ipairs(steps[i].replies) do by_reply[t] = by_reply[t] or i end
  end
  local abort = def.abort and list_of_strings(p, "abort", def.abort) or {}
  return {
    name = name, start = def.start, correlate = def.correlate, init = def.init,
    steps = steps, by_reply = by_reply, topic = name .. ".saga",
    abort = abort, aborts = set_of(abort),
  }
end

-- The instance of saga s for id, or nil.
local function load(ctx, id) return ctx.state:get("saga:" .. id) end
local function save(ctx, inst)
  inst.updated_at = eddy.now_ms()
  ctx.state:set("saga:" .. inst.id, inst)
end

local function note(inst, what, fields)
  local e = { what = what, at = eddy.now_ms() }
  for k, v in pairs(fields or {}) do e[k] = v end
  inst.history[#inst.history + 1] = e
end

-- Sends step i's command (and its timeout), recording what went out.
local function start_step(s, inst, i, ctx)
  local step = s.steps[i]
  inst.step = i
  inst.epoch = (inst.epoch or 0) + 1
  local out = {}
  local g = guarded(ctx, set_of(step.emits), "saga '" .. s.name .. "' step '" .. step.name .. "'",
                    out)
  if step.send then
    step.send(inst, g)
  else
    g:emit(step.command.topic, { type = step.command.type, key = inst.id, value = inst.data })
  end
  for _, e in ipairs(out) do note(inst, "command", { step = step.name, type = e.type, id = e.id }) end
  if step.timeout_ms then
    ctx:emit(s.topic, { type = M.TIMEOUT, key = inst.id, after = step.timeout_ms,
                        value = { saga = inst.id, step = i, epoch = inst.epoch } })
  end
end

-- Compensation: the completed steps, last first, one message each (so
-- that each is retried, and quarantined, on its own).
local function begin_compensation(s, inst, ctx, why)
  inst.status = "compensating"
  inst.reason = why
  inst.pending = {}
  for i = inst.step - 1, 1, -1 do
    local st = s.steps[i]
    if st.compensation or st.compensate then inst.pending[#inst.pending + 1] = i end
  end
  if #inst.pending == 0 then
    inst.status = "compensated"
    note(inst, "compensated")
    return
  end
  ctx:emit(s.topic, { type = M.COMPENSATE, key = inst.id,
                      value = { saga = inst.id, step = inst.pending[1] } })
end

local function finish(inst, status)
  inst.status = status
  note(inst, status)
end

-- The outcome of a reply for the current step.
local function outcome(step, reply, inst, ctx)
  local v = step.on[reply.type]
  if type(v) == "function" then
    v = v(reply, inst, ctx)
    if v == nil then v = "next" end
    if not OUTCOMES[v] then
      error(string.format("step '%s': on.%s returned %s, not \"next\", \"compensate\", " ..
                          "\"abort\" or \"finish\"", step.name, reply.type, tostring(v)), 0)
    end
  end
  return v
end

local function handle(s, msg, ctx)
  local t = msg.type
  local id
  if t == M.TIMEOUT or t == M.COMPENSATE then
    id = msg:json().saga
  else
    id = s.correlate and s.correlate(msg) or msg.correlation_id or msg.id
  end
  if id == nil then return end
  id = tostring(id)
  local inst = load(ctx, id)
  if not inst then
    if t ~= s.start then return end   -- not ours, or for an instance long gone
    local steps = {}
    for i, st in ipairs(s.steps) do steps[i] = st.name end
    inst = { id = id, saga = s.name, status = "running", step = 0, data = {}, steps = steps,
             started_at = eddy.now_ms(), history = {} }
    if s.init then
      local d = s.init(msg, inst)
      if d ~= nil then inst.data = d end
    else
      local ok, v = pcall(msg.json, msg)
      if ok and type(v) == "table" then inst.data = v end
    end
    note(inst, "start", { type = t, id = msg.id })
    start_step(s, inst, 1, ctx)
    save(ctx, inst)
    return
  end

  if t == s.start then
    note(inst, "duplicate", { type = t, id = msg.id })
  elseif s.aborts[t] then
    -- An explicit abort: compensate what was done, if still running.
    if inst.status == "running" then
      note(inst, "abort", { type = t, id = msg.id, step = s.steps[inst.step].name })
      begin_compensation(s, inst, ctx, t .. " in step '" .. s.steps[inst.step].name .. "'")
    else
      note(inst, "ignored", { type = t, id = msg.id })
    end
  elseif t == M.TIMEOUT then
    local v = msg:json()
    if inst.status ~= "running" or v.step ~= inst.step or v.epoch ~= inst.epoch then return end
    local step = s.steps[inst.step]
    note(inst, "timeout", { step = step.name })
    inst.timed_out = inst.step
    begin_compensation(s, inst, ctx, "timeout in step '" .. step.name .. "'")
  elseif t == M.COMPENSATE then
    local k = msg:json().step
    if inst.status ~= "compensating" or inst.pending[1] ~= k then return end
    local step = s.steps[k]
    local out = {}
    local g = guarded(ctx, set_of(step.compensation_emits),
                      "saga '" .. s.name .. "' compensation of '" .. step.name .. "'", out)
    if step.compensate then
      step.compensate(inst, g)
    else
      g:emit(step.compensation.topic, { type = step.compensation.type, key = inst.id,
                                        value = inst.data })
    end
    note(inst, "compensation", { step = step.name })
    for _, e in ipairs(out) do
      note(inst, "command", { step = step.name, type = e.type, id = e.id })
    end
    table.remove(inst.pending, 1)
    if #inst.pending == 0 then
      finish(inst, "compensated")
    else
      ctx:emit(s.topic, { type = M.COMPENSATE, key = inst.id,
                          value = { saga = inst.id, step = inst.pending[1] } })
    end
  else
    local i = s.by_reply[t]
    if not i then return end          -- an event of no step: not a reply
    local step = s.steps[inst.step]
    if inst.status == "running" and step and step.on[t] then
      note(inst, "reply", { step = step.name, type = t, id = msg.id })
      local o = outcome(step, msg, inst, ctx)
      if o == "next" then
        if inst.step == #s.steps then finish(inst, "completed")
        else start_step(s, inst, inst.step + 1, ctx) end
      elseif o == "finish" then
        finish(inst, "completed")
      else
        begin_compensation(s, inst, ctx, t .. " in step '" .. step.name .. "'")
      end
    elseif inst.timed_out and s.steps[inst.timed_out].on[t] then
      -- After its step timed out: recorded, not acted on.
      note(inst, "late", { step = s.steps[inst.timed_out].name, type = t, id = msg.id })
    else
      note(inst, "ignored", { type = t, id = msg.id })
    end
  end
  save(ctx, inst)
end

--- A saga: an orchestrated sequence of steps with compensation and
-- durable timeouts (docs/sagas.md).
--
--    return eddy.saga {
--      name = "checkout", start = "OrderPlaced",
--      topics = { "orders", "checkout.replies" },
--      steps = {
--        { name = "reserve", command = { topic = "inventory", type = "ReserveStock" },
--          on = { StockReserved = "next", OutOfStock = "compensate" },
--          timeout = "10s",
--          compensation = { topic = "inventory", type = "ReleaseStock" } },
--        ...
--      },
--    }
--
-- @treturn table a consumer, with `kind = "saga"` and `saga` (the checked
--   definition); it also reads its own topic `<name>.saga` (timeouts and
--   compensations), which the app declares for it
function M.saga(def)
  local s = checked(check_saga, def)
  local topics = def.topics
  if type(topics) == "string" then topics = { topics } end
  if type(topics) ~= "table" or #topics == 0 then
    error("saga '" .. s.name .. "': 'topics' must list the topics its events come on", 0)
  end
  local all = { s.topic }
  for _, t in ipairs(topics) do all[#all + 1] = t end
  local c = eddy._consumer(consumer_opts(def, {
    name = s.name,
    topics = all,
    handle = function(msg, ctx) return handle(s, msg, ctx) end,
  }))
  c.kind = "saga"
  c.saga = s
  c.declares = { [s.topic] = { partitions = 1 } }
  return c
end

return M
