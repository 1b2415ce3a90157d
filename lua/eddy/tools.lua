--- The commands `eddy saga list`, `eddy saga show`, `eddy flows` and
-- `eddy catalog ...`, run by the binary (runtime/cli_saga.c) with `tool`:
-- functions reading the store (consumers, state, quarantined, time).
-- Each prints and returns the exit status; a failure raises its one-line
-- message.
local core = require "eddy.core"

local M = {}

-- JSON text of v; raises when v cannot be JSON.
local function encode(v) return assert(core.json_encode(v)) end

local STATUSES = { "running", "completed", "compensating", "compensated", "failed" }

local function out(...) io.stdout:write(...) end

-- A table row, without the spaces padding its last column.
local function row(fmt, ...) out((string.format(fmt, ...):gsub(" +$", "")), "\n") end

-- Every saga instance in the store, oldest first, with its status: failed
-- when a message of the instance is quarantined and not replayed.
local function instances(tool, only)
  local list = {}
  for _, consumer in ipairs(tool.consumers()) do
    if not only or only == consumer then
      local rows = tool.state(consumer, "saga:")
      if #rows > 0 then
        local bad = {}
        for _, q in ipairs(tool.quarantined(consumer)) do
          -- (Any of the three may be absent: not a list to ipairs.)
          for _, f in ipairs({ "correlation_id", "key", "id" }) do
            if q[f] then bad[q[f]] = bad[q[f]] or q end
          end
        end
        for _, r in ipairs(rows) do
          local inst = core.json_decode(r.value)
          if type(inst) == "table" and inst.id then
            inst.saga = inst.saga or consumer
            local q = bad[inst.id]
            if q and inst.status ~= "completed" and inst.status ~= "compensated" then
              inst.status = "failed"
              inst.failure = string.format("message %s quarantined (eddy dlq show %d): %s",
                                           q.id, q.seq, q.error)
            end
            list[#list + 1] = inst
          end
        end
      end
    end
  end
  table.sort(list, function(a, b)
    if a.started_at ~= b.started_at then return (a.started_at or 0) < (b.started_at or 0) end
    return a.id < b.id
  end)
  return list
end

local function step_name(inst)
  local names = inst.steps or {}
  local i = inst.step or 0
  return string.format("%d/%d %s", i, #names, names[i] or "")
end

function M.saga_list(tool, opts)
  if opts.status then
    local ok = false
    for _, s in ipairs(STATUSES) do ok = ok or s == opts.status end
    if not ok then
      error(string.format("unknown status '%s' (one of: %s)", opts.status,
                          table.concat(STATUSES, ", ")), 0)
    end
  end
  local list = instances(tool, opts.saga)
  if not opts.json then
    row("%-36s  %-16s  %-12s  %-18s  %-24s  %s", "ID", "SAGA", "STATUS", "STEP", "STARTED",
        "WHY")
  end
  for _, inst in ipairs(list) do
    if not opts.status or inst.status == opts.status then
      if opts.json then
        out(encode(inst), "\n")
      else
        row("%-36s  %-16s  %-12s  %-18s  %-24s  %s", inst.id, inst.saga, inst.status,
            step_name(inst), tool.time(inst.started_at or 0), inst.failure or inst.reason or "")
      end
    end
  end
  return 0
end

function M.saga_show(tool, opts)
  local id = opts[1]
  local found
  for _, inst in ipairs(instances(tool)) do
    if inst.id == id then found = inst end
  end
  if not found then error("no saga instance '" .. id .. "'", 0) end
  if opts.json then
    out(encode(found), "\n")
    return 0
  end
  local i = found
  out(string.format("saga:     %s\ninstance: %s\nstatus:   %s%s\nstep:     %s\n", i.saga, i.id,
                    i.status, (i.failure or i.reason) and " (" .. (i.failure or i.reason) .. ")"
                    or "", step_name(i)))
  out(string.format("started:  %s\nupdated:  %s\ndata:     %s\nhistory:\n",
                    tool.time(i.started_at or 0), tool.time(i.updated_at or 0),
                    encode(i.data or {})))
  -- The step column fits the longest step name.
  local width = 12
  for _, e in ipairs(i.history or {}) do
    if e.step and #e.step > width then width = #e.step end
  end
  for _, e in ipairs(i.history or {}) do
    local what = e.what
    if what == "command" then what = "sent"
    elseif what == "reply" or what == "start" then what = "received" end
    row("  %s  %-12s %-" .. width .. "s %-22s %s", tool.time(e.at or 0), what, e.step or "",
        e.type or "", e.id or "")
  end
  return 0
end

---------------------------------------------------------------------------
-- flows
---------------------------------------------------------------------------

-- The graph of an app: handlers (consumers, rules, sagas), the event types
-- they consume and emit, the topics.
local function graph(app)
  local g = { handlers = {}, consumes = {}, produces = {}, edges = {} }
  local function edge(from, to, label)
    g.edges[#g.edges + 1] = { from = from, to = to, label = label }
  end
  local function consume(t, h, label)
    g.consumes[t] = g.consumes[t] or {}
    g.consumes[t][#g.consumes[t] + 1] = h
    edge("type:" .. t, h, label)
  end
  local function produce(h, t, label)
    g.produces[t] = g.produces[t] or {}
    g.produces[t][#g.produces[t] + 1] = h
    edge(h, "type:" .. t, label)
  end
  for _, c in ipairs(app.consumers) do
    local kind = c.kind or "consumer"
    local h = kind .. ":" .. c.name
    g.handlers[#g.handlers + 1] = { id = h, kind = kind, name = c.name }
    local topics = {}
    for _, t in ipairs(c.topics) do
      if not (kind == "saga" and t == c.saga.topic) then topics[#topics + 1] = t end
    end
    local via = table.concat(topics, ", ")
    if kind == "rule" then
      for _, t in ipairs(c.on) do consume(t, h, via) end
      for _, t in ipairs(c.emits) do produce(h, t) end
    elseif kind == "saga" then
      local s = c.saga
      consume(s.start, h, via .. " (starts)")
      for _, t in ipairs(s.abort) do consume(t, h, via .. " (aborts)") end
      for _, st in ipairs(s.steps) do
        for _, t in ipairs(st.emits) do
          produce(h, t, st.command and t == st.command.type and st.command.topic or nil)
        end
        for _, t in ipairs(st.replies) do consume(t, h, via) end
        for _, t in ipairs(st.compensation_emits) do
          produce(h, t, (st.compensation and t == st.compensation.type and
                         st.compensation.topic or "") .. " (compensation)")
        end
      end
    else
      for _, t in ipairs(topics) do edge("topic:" .. t, h) end
      for _, t in ipairs(c.consumes or {}) do consume(t, h, via) end
      for _, t in ipairs(c.emits or {}) do produce(h, t) end
    end
  end
  return g
end

local function sorted_keys(t)
  local k = {}
  for name in pairs(t) do k[#k + 1] = name end
  table.sort(k)
  return k
end

-- Cycles among types through rules: a type a rule consumes, leading to a
-- type it produces, and on back to the first (choreography that never
-- ends).  A saga awaiting the replies to its own commands is not one.
-- Each cycle once, from its smallest type.
local function cycles(g)
  local next_types = {}
  for t, hs in pairs(g.consumes) do
    next_types[t] = {}
    for _, h in ipairs(hs) do
      if h:match("^saga:") then goto continue end
      for t2, ps in pairs(g.produces) do
        for _, p in ipairs(ps) do
          if p == h then next_types[t][#next_types[t] + 1] = { type = t2, via = h } end
        end
      end
      ::continue::
    end
    table.sort(next_types[t], function(a, b) return a.type < b.type end)
  end
  local found, seen = {}, {}
  for _, start in ipairs(sorted_keys(next_types)) do
    local path = {}
    local function walk(t)
      for _, n in ipairs(next_types[t] or {}) do
        if n.type == start then
          local parts = { start }
          for _, p in ipairs(path) do parts[#parts + 1] = p end
          parts[#parts + 1] = n.via:gsub("^%w+:", "") .. " -> " .. start
          local text = table.concat(parts, " -> ")
          if not seen[text] then seen[text] = true; found[#found + 1] = text end
        elseif n.type > start and #path < 16 then
          local on_path = false
          for _, p in ipairs(path) do on_path = on_path or p:match("(%S+)$") == n.type end
          if not on_path then
            path[#path + 1] = n.via:gsub("^%w+:", "") .. " -> " .. n.type
            walk(n.type)
            path[#path] = nil
          end
        end
      end
    end
    walk(start)
  end
  return found
end

local function names(hs)
  local t = {}
  for i, h in ipairs(hs) do t[i] = h:gsub("^%w+:", "") end
  table.sort(t)
  return table.concat(t, ", ")
end

local function warnings(g)
  local w = {}
  for _, t in ipairs(sorted_keys(g.consumes)) do
    if not g.produces[t] then
      w[#w + 1] = string.format("event type '%s' is consumed (by %s) but nothing in the app " ..
                                "produces it", t, names(g.consumes[t]))
    end
  end
  for _, t in ipairs(sorted_keys(g.produces)) do
    if not g.consumes[t] then
      w[#w + 1] = string.format("event type '%s' is produced (by %s) but nothing in the app " ..
                                "consumes it", t, names(g.produces[t]))
    end
  end
  for _, c in ipairs(cycles(g)) do w[#w + 1] = "cycle: " .. c end
  return w
end

-- Node ids safe in both formats.
local function node_id(id) return (id:gsub("[^%w]", "_")) end

local function node_label(id)
  local kind, name = id:match("^(%w+):(.*)$")
  if kind == "type" or kind == "topic" then return name end
  return kind .. " " .. name
end

local function nodes(g)
  local ids, seen = {}, {}
  local function add(id) if not seen[id] then seen[id] = true; ids[#ids + 1] = id end end
  for _, h in ipairs(g.handlers) do add(h.id) end
  for _, e in ipairs(g.edges) do add(e.from); add(e.to) end
  table.sort(ids)
  return ids
end

local function mermaid(g)
  local lines = { "flowchart LR" }
  for _, id in ipairs(nodes(g)) do
    local kind = id:match("^(%w+):")
    local label = node_label(id):gsub('"', "'")
    local shape = ({ type = '(["%s"])', topic = '[("%s")]', saga = '{{"%s"}}',
                     rule = '["%s"]', consumer = '["%s"]' })[kind] or '["%s"]'
    lines[#lines + 1] = "  " .. node_id(id) .. string.format(shape, label)
  end
  for _, e in ipairs(g.edges) do
    local label = e.label and e.label ~= "" and '|"' .. e.label:gsub('"', "'") .. '"|' or ""
    lines[#lines + 1] = string.format("  %s -->%s %s", node_id(e.from), label, node_id(e.to))
  end
  return table.concat(lines, "\n") .. "\n"
end

local function dot(g)
  local lines = { "digraph eddy {", "  rankdir=LR;" }
  for _, id in ipairs(nodes(g)) do
    local kind = id:match("^(%w+):")
    local shape = ({ type = "ellipse", topic = "cylinder", saga = "hexagon" })[kind] or "box"
    lines[#lines + 1] = string.format('  %s [label="%s", shape=%s];', node_id(id),
                                      node_label(id):gsub('"', '\\"'), shape)
  end
  for _, e in ipairs(g.edges) do
    local label = e.label and e.label ~= "" and
      string.format(' [label="%s"]', e.label:gsub('"', '\\"')) or ""
    lines[#lines + 1] = string.format("  %s -> %s%s;", node_id(e.from), node_id(e.to), label)
  end
  lines[#lines + 1] = "}"
  return table.concat(lines, "\n") .. "\n"
end

function M.flows(_, opts)
  local format = opts.format or "mermaid"
  if format ~= "mermaid" and format ~= "dot" then
    error("unknown format '" .. format .. "' (mermaid or dot)", 0)
  end
  local app, err = require("eddy.app").load(opts[1] or "eddy.lua")
  if not app then error(err, 0) end
  local g = graph(app)
  out(format == "dot" and dot(g) or mermaid(g))
  io.stdout:flush()
  for _, w in ipairs(warnings(g)) do io.stderr:write("warning: ", w, "\n") end
  return 0
end

---------------------------------------------------------------------------
-- catalog (lua/eddy/catalog_tools.lua)

function M.catalog_check(_, opts) return require("eddy.catalog_tools").check(opts) end
function M.catalog_docs(tool, opts) return require("eddy.catalog_tools").docs(opts, tool) end
function M.catalog_export(tool, opts) return require("eddy.catalog_tools").export(opts, tool) end

M._graph, M._warnings, M._mermaid = graph, warnings, mermaid
return M
