--- The commands `eddy catalog check`, `eddy catalog docs` and `eddy catalog
-- export` (runtime/cli_catalog.c runs them through eddy.tools): reading
-- an app's or a saved catalog, comparing two for backward-incompatible
-- changes, and writing one up as Markdown or JSON.  docs/contracts.md has
-- the rules.
local catalog = require "eddy.catalog"
local core = require "eddy.core"

local M = {}

local sorted_keys, quote, deep_equal = catalog._sorted_keys, catalog._quote, catalog._deep_equal

local FORMAT = 1   -- the saved catalog's format number

---------------------------------------------------------------------------
-- Reading a catalog: an app file, or a file `eddy catalog export` wrote

local function read_all(path)
  local f, err = io.open(path, "rb")
  if not f then return nil, (err:gsub("^[^:]*: ", "")) end
  -- A directory opens but does not read.
  local text, rerr = f:read("a")
  f:close()
  if not text then return nil, (tostring(rerr):gsub("^[^:]*: ", "")) end
  return text
end

local function list_of(v)
  if type(v) ~= "table" then return {} end
  return v
end

-- Producers and consumers of each type, as `eddy flows` finds them.
local function flow_roles(app)
  local g = require("eddy.tools")._graph(app)
  local roles = {}
  local function names(hs)
    local t = {}
    for i, h in ipairs(hs or {}) do t[i] = (h:gsub("^(%w+):", "%1 ")) end
    table.sort(t)
    return t
  end
  for t, hs in pairs(g.produces) do roles[t] = roles[t] or {}; roles[t].producers = names(hs) end
  for t, hs in pairs(g.consumes) do roles[t] = roles[t] or {}; roles[t].consumers = names(hs) end
  return roles, g
end

--- Loads the catalog at path: `{ source =, events = { decl, ... }, app = }`
-- where each decl also has producers and consumers (lists of names).
function M.read(path)
  local text, why = read_all(path)
  if not text then error("cannot open '" .. path .. "': " .. why, 0) end
  -- A saved catalog is JSON: an object, though any JSON text (or a .json
  -- file) is read as one, so that the message says it is not a catalog
  -- rather than reporting a Lua syntax error.
  if text:match("^%s*[{%[]") or path:match("%.json$") then
    local doc, jerr = core.json_decode(text)
    if type(doc) ~= "table" or doc.eddy_catalog == nil then
      error(string.format("'%s' is not an eddy catalog (%s)", path,
                          jerr or "no 'eddy_catalog' field; write one with eddy catalog export"),
            0)
    end
    if doc.eddy_catalog ~= FORMAT then
      error(string.format("'%s': catalog format %s is not known (this eddy reads %d)", path,
                          tostring(doc.eddy_catalog), FORMAT), 0)
    end
    local events, seen = {}, {}
    for i, e in ipairs(list_of(doc.events)) do
      if type(e) ~= "table" or type(e.type) ~= "string" or math.type(e.version) ~= "integer" then
        error(string.format("'%s': events[%d] needs a type and an integer version", path, i), 0)
      end
      local problem = catalog.check_saved(e)
      if problem then error(string.format("'%s': events[%d]: %s", path, i, problem), 0) end
      local k = e.type .. "/" .. e.version
      if seen[k] then
        error(string.format("'%s': events[%d]: %s v%d is there twice", path, i, e.type,
                            e.version), 0)
      end
      seen[k] = true
      e.producers, e.consumers = list_of(e.producers), list_of(e.consumers)
      events[#events + 1] = e
    end
    return { source = path, events = events }
  end
  local app, err = require("eddy.app").load(path)
  if not app then error(err, 0) end
  local roles, g = flow_roles(app)
  local events = {}
  for i, d in ipairs(app.events) do
    local e = catalog._copy(d)
    e.declared_at = nil
    local r = roles[e.type] or {}
    e.producers, e.consumers = r.producers or {}, r.consumers or {}
    events[i] = e
  end
  return { source = path, events = events, app = app, graph = g }
end

local by_type = catalog.build

---------------------------------------------------------------------------
-- Comparing schemas

local ANNOTATIONS = { title = true, description = true, default = true, examples = true,
                      format = true }

-- A text that is the same for equal values (integral floats written as
-- integers, table keys sorted), to put lists of values in one order.
local function canonical(v)
  if type(v) == "table" and not catalog._is_null(v) then
    local parts = {}
    for _, k in ipairs(sorted_keys(v)) do
      parts[#parts + 1] = canonical(k) .. "=" .. canonical(v[k])
    end
    return "{" .. table.concat(parts, ",") .. "}"
  end
  if type(v) == "number" then v = math.tointeger(v) or v end
  return type(v) .. ":" .. quote(v)
end

local function sorted_copy(list)
  local t = {}
  for i, v in ipairs(list) do t[i] = v end
  table.sort(t, function(a, b) return canonical(a) < canonical(b) end)
  return t
end

-- The schema without its annotations: what validation looks at, with the
-- lists whose order means nothing (type, required, enum) sorted and
-- additionalProperties = true (the default) left out.
local function checked_part(s)
  if type(s) ~= "table" then return s end
  local t = {}
  for k, v in pairs(s) do
    if not ANNOTATIONS[k] then
      if k == "properties" then
        t[k] = {}
        for name, sub in pairs(v) do t[k][name] = checked_part(sub) end
      elseif k == "items" or (k == "additionalProperties" and type(v) == "table") then
        t[k] = checked_part(v)
      elseif k == "additionalProperties" and v == true then
        t[k] = nil
      elseif k == "type" and type(v) == "table" then
        t[k] = #v == 1 and v[1] or sorted_copy(v)
      elseif (k == "required" or k == "enum") and type(v) == "table" then
        t[k] = sorted_copy(v)
      else
        t[k] = v
      end
    end
  end
  return t
end

local function type_set(s)
  if s == nil or s.type == nil then return nil end
  local list = type(s.type) == "table" and s.type or { s.type }
  local set = {}
  for _, t in ipairs(list) do set[t] = true end
  return set
end

local function set_text(set)
  if not set then return "any" end
  local k = sorted_keys(set)
  return table.concat(k, " or ")
end

local function same_set(a, b)
  if a == nil or b == nil then return a == b end
  for k in pairs(a) do if not b[k] then return false end end
  for k in pairs(b) do if not a[k] then return false end end
  return true
end

local set_of = require("eddy")._set_of

local function fname(path, name)
  if path == "" then return name end
  return path .. "." .. name
end

local function subject(path)
  if path == "" then return "the value" end
  return "field '" .. path .. "'"
end

-- The changes from schema a (old) to b (new) at path, into out: each
-- { incompatible = bool, text = }.
local function compare(a, b, path, out)
  a, b = a or {}, b or {}
  local function bad(text) out[#out + 1] = { incompatible = true, text = text } end
  local function ok(text) out[#out + 1] = { incompatible = false, text = text } end

  local ta, tb = type_set(a), type_set(b)
  if not same_set(ta, tb) then
    bad(string.format("%s changed type from %s to %s", subject(path), set_text(ta), set_text(tb)))
  end

  if b.enum ~= nil then
    if a.enum == nil then
      bad(string.format("%s now has an enum (%d values): other values were valid", subject(path),
                        #b.enum))
    else
      local removed, added = {}, {}
      for _, v in ipairs(a.enum) do
        local found = false
        for _, w in ipairs(b.enum) do found = found or deep_equal(v, w) end
        if not found then removed[#removed + 1] = quote(v) end
      end
      for _, w in ipairs(b.enum) do
        local found = false
        for _, v in ipairs(a.enum) do found = found or deep_equal(v, w) end
        if not found then added[#added + 1] = quote(w) end
      end
      if #removed > 0 then
        bad(string.format("%s enum narrowed: %s removed", subject(path),
                          table.concat(removed, ", ")))
      end
      if #added > 0 then
        ok(string.format("%s enum widened: %s added", subject(path), table.concat(added, ", ")))
      end
    end
  elseif a.enum ~= nil then
    ok(string.format("%s no longer limited to an enum", subject(path)))
  end

  if b.const ~= nil and not deep_equal(a.const, b.const) then
    bad(string.format("%s must now be %s (const)", subject(path), quote(b.const)))
  end

  local limits = {
    { "minimum", 1, "minimum raised" }, { "maximum", -1, "maximum lowered" },
    { "minLength", 1, "minLength raised" }, { "maxLength", -1, "maxLength lowered" },
    { "minItems", 1, "minItems raised" }, { "maxItems", -1, "maxItems lowered" },
  }
  for _, l in ipairs(limits) do
    local k, dir, what = l[1], l[2], l[3]
    local x, y = a[k], b[k]
    if y ~= nil and (x == nil or (y - x) * dir > 0) then
      bad(string.format("%s %s from %s to %s", subject(path), what,
                        x == nil and "none" or quote(x), quote(y)))
    end
  end

  local pa, pb = a.properties or {}, b.properties or {}
  local ra, rb = set_of(a.required), set_of(b.required)
  for _, name in ipairs(sorted_keys(pa)) do
    if pb[name] == nil then
      bad(string.format("field '%s' removed%s", fname(path, name),
                        ra[name] and " (it was required)" or ""))
    else
      compare(pa[name], pb[name], fname(path, name), out)
    end
  end
  for _, name in ipairs(sorted_keys(rb)) do
    if not ra[name] then
      if pa[name] == nil then
        bad(string.format("field '%s' is new and required", fname(path, name)))
      else
        bad(string.format("field '%s' is now required", fname(path, name)))
      end
    end
  end
  for _, name in ipairs(sorted_keys(pb)) do
    if pa[name] == nil and not rb[name] then
      ok(string.format("field '%s' added (optional)", fname(path, name)))
    end
  end
  for _, name in ipairs(sorted_keys(ra)) do
    if not rb[name] and pb[name] ~= nil then
      ok(string.format("field '%s' no longer required", fname(path, name)))
    end
  end
  if b.additionalProperties == false and a.additionalProperties ~= false then
    bad(string.format("%s no longer allows fields it does not list (additionalProperties)",
                      subject(path)))
  elseif type(b.additionalProperties) == "table" then
    compare(type(a.additionalProperties) == "table" and a.additionalProperties or {},
            b.additionalProperties, fname(path, "*"), out)
  end
  if a.items ~= nil or b.items ~= nil then compare(a.items, b.items, path .. "[]", out) end
end

M._compare = compare

--- The changes from catalog old to catalog new (each as `read` gives it):
-- a list of `{ incompatible =, type =, version =, text = }`, incompatible
-- ones first, each group in type and version order.
function M.diff(old, new)
  local changes = {}
  local function add(incompatible, ty, v, text)
    changes[#changes + 1] = { incompatible = incompatible, type = ty, version = v, text = text }
  end
  local a, b = by_type(old.events), by_type(new.events)
  local types = {}
  for t in pairs(a) do types[t] = true end
  for t in pairs(b) do types[t] = true end
  for _, ty in ipairs(sorted_keys(types)) do
    local ta, tb = a[ty], b[ty]
    if not tb then
      add(true, ty, ta.latest, string.format("event %s removed (consumers may still receive it)", ty))
    elseif not ta then
      add(false, ty, tb.latest, string.format("event %s added", ty))
    else
      for _, v in ipairs(sorted_keys(ta.versions)) do
        if not tb.versions[v] then
          add(false, ty, v, string.format("%s v%d removed", ty, v))
        end
      end
      for _, v in ipairs(sorted_keys(tb.versions)) do
        local ea, eb = ta.versions[v], tb.versions[v]
        if ea then
          if not deep_equal(checked_part(ea.schema or {}), checked_part(eb.schema or {})) then
            local details = {}
            compare(ea.schema, eb.schema, "", details)
            local first = details[1] and ": " .. details[1].text or ""
            add(true, ty, v, string.format("%s v%d: version %d reused with a different schema%s",
                                           ty, v, v, first))
          end
          if eb.deprecated and not ea.deprecated then
            add(false, ty, v, string.format("%s v%d deprecated", ty, v))
          end
        else
          -- A new version: events of the old one are still in the log,
          -- and consumers written for it still run.
          local base = v > ta.latest and ta.versions[ta.latest] or nil
          if not base then
            for u = v - 1, 1, -1 do base = base or ta.versions[u] end
          end
          local details = {}
          if base then compare(base.schema, eb.schema, "", details) end
          if #details == 0 then
            add(false, ty, v, string.format("%s v%d added", ty, v))
          end
          for _, d in ipairs(details) do
            add(d.incompatible, ty, v, string.format("%s v%d (against v%d): %s", ty, v,
                                                     base.version, d.text))
          end
        end
      end
    end
  end
  local sorted = {}
  for _, c in ipairs(changes) do if c.incompatible then sorted[#sorted + 1] = c end end
  for _, c in ipairs(changes) do if not c.incompatible then sorted[#sorted + 1] = c end end
  return sorted
end

function M.check(opts)
  if not opts[1] or not opts[2] then error("give OLD and NEW (apps or saved catalogs)", 0) end
  local old, new = M.read(opts[1]), M.read(opts[2])
  local changes = M.diff(old, new)
  local nbad = 0
  for _, c in ipairs(changes) do
    if c.incompatible then nbad = nbad + 1 end
    if opts.json then
      io.stdout:write(core.json_encode({ incompatible = c.incompatible, type = c.type,
                                         version = c.version, change = c.text }), "\n")
    else
      io.stdout:write(c.incompatible and "incompatible: " or "compatible:   ", c.text, "\n")
    end
  end
  if not opts.json then
    io.stdout:write(string.format("%d incompatible change%s, %d compatible (%s -> %s)\n", nbad,
                                  nbad == 1 and "" or "s", #changes - nbad, opts[1], opts[2]))
  end
  return nbad > 0 and 1 or 0
end

---------------------------------------------------------------------------
-- Writing a catalog out

-- JSON with sorted keys and two-space indentation, so that a saved
-- catalog diffs well.  Empty tables are objects, except the lists below.
local LISTS = { required = true, enum = true, examples = true, producers = true,
                consumers = true, events = true, type = true }

local function encode(v, indent, key, out)
  local t = type(v)
  if t == "table" then
    local pad = string.rep("  ", indent + 1)
    local n = 0
    for _ in pairs(v) do n = n + 1 end
    if n == 0 then
      out[#out + 1] = LISTS[key] and "[]" or "{}"
    elseif n == #v then
      out[#out + 1] = "[\n"
      for i, x in ipairs(v) do
        out[#out + 1] = pad
        encode(x, indent + 1, nil, out)
        out[#out + 1] = i < n and ",\n" or "\n"
      end
      out[#out + 1] = string.rep("  ", indent) .. "]"
    else
      out[#out + 1] = "{\n"
      local keys = sorted_keys(v)
      for i, k in ipairs(keys) do
        out[#out + 1] = pad .. core.json_encode(tostring(k)) .. ": "
        encode(v[k], indent + 1, k, out)
        out[#out + 1] = i < #keys and ",\n" or "\n"
      end
      out[#out + 1] = string.rep("  ", indent) .. "}"
    end
  else
    out[#out + 1] = assert(core.json_encode(v))
  end
end

-- Writes text to opts.output, or to stdout.  A file made here is its
-- owner's only (tool.write_file), like everything else eddy makes.
local function write_out(opts, text, tool)
  if opts.output then
    local ok, err = tool.write_file(opts.output, text)
    if not ok then error("cannot write '" .. opts.output .. "': " .. err, 0) end
  else
    io.stdout:write(text)
  end
end

function M.export(opts, tool)
  local c = M.read(opts[1] or "eddy.lua")
  local out = {}
  encode({ eddy_catalog = FORMAT, events = c.events }, 0, nil, out)
  out[#out + 1] = "\n"
  write_out(opts, table.concat(out), tool)
  return 0
end

local function duration(ms)
  for _, u in ipairs({ { 86400000, "d" }, { 3600000, "h" }, { 60000, "m" }, { 1000, "s" } }) do
    if ms % u[1] == 0 then return (ms // u[1]) .. u[2] end
  end
  return ms .. "ms"
end

local function md(s) return (tostring(s):gsub("|", "\\|"):gsub("\n", " ")) end

local function type_text(s)
  if s.type == nil then return s.enum and "enum" or "any" end
  if type(s.type) == "table" then return table.concat(s.type, " or ") end
  if s.type == "array" and s.items and s.items.type then
    return "array of " .. type_text(s.items)
  end
  return s.type
end

local function rules_text(s)
  local r = {}
  if s.enum then
    local vals = {}
    for i, v in ipairs(s.enum) do vals[i] = quote(v) end
    r[#r + 1] = "one of " .. table.concat(vals, ", ")
  end
  if s.const ~= nil then r[#r + 1] = "always " .. quote(s.const) end
  for _, k in ipairs({ "minimum", "maximum", "minLength", "maxLength", "minItems", "maxItems" }) do
    if s[k] ~= nil then r[#r + 1] = k .. " " .. quote(s[k]) end
  end
  if s.additionalProperties == false then r[#r + 1] = "no other fields" end
  if s.format then r[#r + 1] = "format " .. s.format end
  return table.concat(r, "; ")
end

-- The rows of a schema's field table, depth first.
local function field_rows(s, path, required, rows)
  if type(s) ~= "table" then return end
  if path ~= "" then
    rows[#rows + 1] = string.format("| `%s` | %s | %s | %s | %s |", path, md(type_text(s)),
                                    required and "yes" or "no", md(rules_text(s)),
                                    md(s.description or ""))
  end
  local req = set_of(s.required)
  for _, name in ipairs(sorted_keys(s.properties or {})) do
    field_rows(s.properties[name], fname(path, name), req[name], rows)
  end
  if type(s.items) == "table" and s.items.properties then
    local ireq = set_of(s.items.required)
    for _, name in ipairs(sorted_keys(s.items.properties)) do
      field_rows(s.items.properties[name], path .. "[]." .. name, ireq[name], rows)
    end
  end
end

local function list_text(l)
  if #l == 0 then return "none declared" end
  return table.concat(l, ", ")
end

function M.docs(opts, tool)
  local c = M.read(opts[1] or "eddy.lua")
  local types = by_type(c.events)
  local o = {}
  local function line(s) o[#o + 1] = s or "" end
  line("# Event catalog")
  line()
  line(string.format("Written by `eddy catalog docs` from `%s`.", c.source))
  line()
  if #c.events == 0 then
    line("The app declares no event types (see `eddy.event`).")
  else
    line("| Type | Versions | Owner | Producers | Consumers | SLA |")
    line("|---|---|---|---|---|---|")
    for _, ty in ipairs(sorted_keys(types)) do
      local t = types[ty]
      local latest = t.versions[t.latest]
      local vs = {}
      for _, v in ipairs(sorted_keys(t.versions)) do
        vs[#vs + 1] = tostring(v) .. (t.versions[v].deprecated and " (deprecated)" or "")
      end
      line(string.format("| [%s](#%s) | %s | %s | %s | %s | %s |", ty, ty:lower():gsub("[^%w_-]", ""),
                         table.concat(vs, ", "), md(latest.owner or ""),
                         md(table.concat(latest.producers or {}, ", ")),
                         md(table.concat(latest.consumers or {}, ", ")),
                         t.sla and "max lag " .. duration(t.sla.max_lag_ms) or ""))
    end
  end
  for _, ty in ipairs(sorted_keys(types)) do
    local t = types[ty]
    local latest = t.versions[t.latest]
    line()
    line("## " .. ty)
    line()
    if latest.description then line(latest.description); line() end
    line("- Owner: " .. (latest.owner or "not declared"))
    line("- Producers: " .. list_text(latest.producers or {}))
    line("- Consumers: " .. list_text(latest.consumers or {}))
    local sla = t.sla
    line("- SLA: " .. (sla and "handled within " .. duration(sla.max_lag_ms) ..
                       " of being produced (max_lag)" or "none"))
    for _, v in ipairs(sorted_keys(t.versions)) do
      local e = t.versions[v]
      line()
      local status = v == t.latest and " (current)" or ""
      if e.deprecated then
        status = " (deprecated" .. (type(e.deprecated) == "string" and ": " .. e.deprecated or "")
                 .. ")"
      end
      line(string.format("### %s v%d%s", ty, v, status))
      line()
      if e.description and e.description ~= latest.description then
        line(e.description)
        line()
      end
      if not e.schema then
        line("No schema: any value.")
      else
        local rows = {}
        field_rows(e.schema, "", false, rows)
        if #rows == 0 then
          line("Schema: " .. md(type_text(e.schema)) .. ".")
        else
          line("| Field | Type | Required | Rules | Description |")
          line("|---|---|---|---|---|")
          for _, r in ipairs(rows) do line(r) end
        end
        if e.schema.additionalProperties == false then
          line()
          line("Fields not listed are refused.")
        end
      end
    end
  end
  if c.graph then
    line()
    line("## Flow")
    line()
    line("```mermaid")
    o[#o + 1] = (require("eddy.tools")._mermaid(c.graph):gsub("\n$", ""))
    line("```")
  end
  line()
  write_out(opts, table.concat(o, "\n"), tool)
  return 0
end

return M
