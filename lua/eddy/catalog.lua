--- eddy.catalog: declared event types, their schemas, and the checks made
-- with them (docs/contracts.md).
--
-- `eddy.event { type =, version =, ... }` declares one version of an event
-- type.  Declarations made while an app loads (in the app file, in files
-- named by its `events` option, in handler files) form the app's catalog.
-- The runtime validates emitted and consumed events of declared types
-- against it; `eddy catalog check` compares two catalogs; `eddy catalog
-- docs` writes them up.
--
-- The schema language is a subset of JSON Schema, written as Lua tables:
-- type, properties, required, additionalProperties (true when absent),
-- items, enum, const, minimum, maximum, minLength, maxLength, minItems,
-- maxItems; title, description, default, examples and format are kept as
-- documentation and not checked.
-- @module eddy.catalog

local M = {}

M.Event = { __name = "eddy.Event" }
function M.Event.__tostring(e) return string.format("eddy.Event (%s v%d)", e.type, e.version) end

local EVENT_OPTIONS = { "type", "version", "owner", "description", "schema", "sla",
                        "deprecated" }
local SLA_OPTIONS = { "max_lag" }
local TYPES = { string = true, number = true, integer = true, boolean = true,
                object = true, array = true, null = true }
local KEYWORDS = { "type", "properties", "required", "additionalProperties", "items", "enum",
                   "const", "minimum", "maximum", "minLength", "maxLength", "minItems",
                   "maxItems", "title", "description", "default", "examples", "format" }
local KEYWORD = {}
for _, k in ipairs(KEYWORDS) do KEYWORD[k] = true end

local TYPE_PATTERN = "^[A-Za-z_][A-Za-z0-9_.-]*$"

-- A mistake in a declaration: raised as a table, turned into a message at
-- the caller's position by `event`.
local Failure = {}
local function fail(msg) error(setmetatable({ msg = msg }, Failure), 0) end

local core = require "eddy.core"

-- JSON null, as eddy's decoder gives it (`eddy.null` in schemas).
local null = core.null
local function is_null(v) return v == null end

local function eddy_lib() return require "eddy" end

-- "a string", "an array" ... for messages about Lua values.
local function lua_kind(v)
  local t = type(v)
  if t == "table" then
    local n = 0
    for _ in pairs(v) do n = n + 1 end
    if n > 0 and #v == n then return "an array" end
    return "a table"
  end
  return (t:match("^[aeiou]") and "an " or "a ") .. t
end

-- Whether t holds exactly the keys 1..n (n >= 0): no hole, no other key.
-- (`#t` alone cannot tell: with a hole it may be any border.)
local function is_list(t)
  if type(t) ~= "table" then return false end
  local n, max = 0, 0
  for k in pairs(t) do
    if math.type(k) ~= "integer" or k < 1 then return false end
    n = n + 1
    if k > max then max = k end
  end
  return n == max
end

-- Numbers (versions) in numeric order, before names in byte order.
local function key_before(a, b)
  local na, nb = type(a) == "number", type(b) == "number"
  if na and nb then return a < b end
  if na ~= nb then return na end
  return tostring(a) < tostring(b)
end

local function sorted_keys(t)
  local keys = {}
  for k in pairs(t) do keys[#keys + 1] = k end
  table.sort(keys, key_before)
  return keys
end

local function quote(v)
  if type(v) == "string" then return string.format("%q", v):gsub("\\\n", "\\n") end
  if is_null(v) then return "null" end
  if type(v) == "table" then return core.json_encode(v) or "a table" end
  return tostring(v)
end

---------------------------------------------------------------------------
-- Checking a schema

-- Why v is not data a catalog can keep and read back (strings, finite
-- numbers, booleans, null, and tables of them keyed by strings and
-- numbers, holding no table twice on one path), or nil.
local function not_data(v, open)
  local t = type(v)
  if t == "string" or t == "boolean" or is_null(v) then return nil end
  if t == "number" then
    if v ~= v then return "NaN" end
    if v == math.huge or v == -math.huge then return "an infinite number" end
    return nil
  end
  if t ~= "table" then return lua_kind(v) end
  open = open or {}
  if open[v] then return "a table that contains itself" end
  open[v] = true
  for k, x in pairs(v) do
    local why
    if type(k) ~= "string" and type(k) ~= "number" then
      why = lua_kind(k) .. " as a key"
    else
      why = not_data(k, open) or not_data(x, open)
    end
    if why then return why end
  end
  open[v] = nil
  return nil
end

-- The keywords whose values are data (kept as they are in the catalog).
local DATA_KEYWORDS = { "enum", "const", "title", "description", "default", "examples",
                        "format" }

local function field_name(path, key)
  if path == "" then return key end
  return path .. "." .. key
end

local function check_schema(p, s, path, open)
  local where = path == "" and "schema" or "schema of '" .. path .. "'"
  if type(s) ~= "table" then fail(p .. where .. " must be a table, got " .. lua_kind(s)) end
  -- The schemas being checked, from the top down to s: one met again is a
  -- cycle, which no value could ever finish matching.
  open = open or {}
  if open[s] then fail(p .. where .. " contains itself") end
  open[s] = true
  for k in pairs(s) do
    if type(k) ~= "string" or not KEYWORD[k] then
      fail(p .. where .. ": " .. eddy_lib()._unknown_option("keyword", k, KEYWORDS))
    end
  end
  local ty = s.type
  if ty ~= nil then
    local list = type(ty) == "table" and ty or { ty }
    if not is_list(list) then
      fail(p .. where .. ": 'type' must be a type name or a list of them")
    end
    if #list == 0 then fail(p .. where .. ": 'type' is an empty list") end
    for _, t in ipairs(list) do
      if not TYPES[t] then
        fail(p .. where .. ": 'type' must be one of string, number, integer, boolean, " ..
             "object, array, null, got " .. quote(t))
      end
    end
  end
  if s.properties ~= nil then
    if type(s.properties) ~= "table" or (next(s.properties) and is_list(s.properties)) then
      fail(p .. where .. ": 'properties' must be a table of field = schema")
    end
    for name, sub in pairs(s.properties) do
      if type(name) ~= "string" then fail(p .. where .. ": 'properties' keys must be names") end
      check_schema(p, sub, field_name(path, name), open)
    end
  end
  if s.required ~= nil then
    if not is_list(s.required) then
      fail(p .. where .. ": 'required' must be a list of field names")
    end
    for _, name in ipairs(s.required) do
      if type(name) ~= "string" then
        fail(p .. where .. ": 'required' must be a list of field names, got " .. quote(name))
      end
    end
  end
  local ap = s.additionalProperties
  if ap ~= nil and type(ap) ~= "boolean" then
    check_schema(p, ap, field_name(path, "*"), open)
  end
  if s.items ~= nil then check_schema(p, s.items, path .. "[]", open) end
  open[s] = nil
  if s.enum ~= nil and (not is_list(s.enum) or #s.enum == 0) then
    fail(p .. where .. ": 'enum' must be a non-empty list of values")
  end
  for _, k in ipairs({ "minimum", "maximum" }) do
    if s[k] ~= nil and type(s[k]) ~= "number" then
      fail(p .. where .. ": '" .. k .. "' must be a number, got " .. lua_kind(s[k]))
    end
    if s[k] ~= nil and not_data(s[k]) then
      fail(p .. where .. ": '" .. k .. "' must be a finite number, got " .. not_data(s[k]))
    end
  end
  for _, k in ipairs(DATA_KEYWORDS) do
    local why = s[k] ~= nil and not_data(s[k])
    if why then fail(p .. where .. ": '" .. k .. "' must be JSON data, got " .. why) end
  end
  for _, k in ipairs({ "minLength", "maxLength", "minItems", "maxItems" }) do
    if s[k] ~= nil and (math.type(s[k]) ~= "integer" or s[k] < 0) then
      fail(p .. where .. ": '" .. k .. "' must be an integer >= 0, got " .. quote(s[k]))
    end
  end
end

-- A deep copy of a plain table (schemas are data).
local function copy(v)
  if type(v) ~= "table" then return v end
  local t = {}
  for k, x in pairs(v) do t[k] = copy(x) end
  return t
end

---------------------------------------------------------------------------
-- Declaring

local declared = {}   -- the declarations made in this state since the last reset

-- "file:line" of the caller at level (the full path, not Lua's shortened
-- one).  `return eddy.event {...}` is a tail call that leaves no frame of
-- the file: then the file being loaded, as eddy.app says, without a line.
local function where_declared(level)
  local me = debug.getinfo(level - 1, "t")
  local info = debug.getinfo(level, "Sl")
  if (me and me.istailcall) or not info or info.what == "C" then
    return M.loading or "?"
  end
  local src = info.source:gsub("^[@=]", "")
  return src .. ":" .. (info.currentline or 0)
end

local function normalize(def)
  if type(def) ~= "table" then
    fail("event: the declaration must be a table (eddy.event { type = ..., version = ..., " ..
         "schema = ... }), got " .. type(def))
  end
  local ty = def.type
  local p = type(ty) == "string" and "event '" .. ty .. "': " or "event: "
  local eddy = eddy_lib()
  local bad = eddy._unknown_key(def, EVENT_OPTIONS)
  if bad ~= nil then fail(p .. eddy._unknown_option("option", bad, EVENT_OPTIONS)) end
  if ty == nil then fail("event: 'type' is missing") end
  if type(ty) ~= "string" or not ty:find(TYPE_PATTERN) or #ty > 200 then
    fail("event: 'type' must be a name of letters, digits, '_', '.' and '-' (at most 200), got " ..
         quote(ty))
  end
  local e = { type = ty }
  local v = def.version
  if v == nil then v = 1 end
  if math.type(v) ~= "integer" or v < 1 then
    fail(p .. "'version' must be an integer >= 1, got " .. quote(v))
  end
  e.version = v
  p = string.format("event '%s' v%d: ", ty, v)
  for _, k in ipairs({ "owner", "description" }) do
    if def[k] ~= nil and type(def[k]) ~= "string" then
      fail(p .. "'" .. k .. "' must be a string, got " .. lua_kind(def[k]))
    end
    e[k] = def[k]
  end
  if def.schema ~= nil then
    check_schema(p, def.schema, "")
    e.schema = copy(def.schema)
  end
  if def.sla ~= nil then
    if type(def.sla) ~= "table" then
      fail(p .. "'sla' must be a table ({ max_lag = \"5s\" }), got " .. lua_kind(def.sla))
    end
    local sbad = eddy._unknown_key(def.sla, SLA_OPTIONS)
    if sbad ~= nil then fail(p .. "sla: " .. eddy._unknown_option("option", sbad, SLA_OPTIONS)) end
    local ms = def.sla.max_lag ~= nil and eddy._duration_ms(def.sla.max_lag)
    if not ms or ms < 1 then
      fail(p .. "sla.max_lag must be a duration (e.g. \"5s\", 500), got " .. quote(def.sla.max_lag))
    end
    e.sla = { max_lag_ms = ms }
  end
  local d = def.deprecated
  if d ~= nil and d ~= false then
    if d ~= true and type(d) ~= "string" then
      fail(p .. "'deprecated' must be true, false or a reason (a string), got " .. lua_kind(d))
    end
    e.deprecated = d
  end
  return e
end

--- Declares one version of an event type (`eddy.event`).
-- @tparam table def `{ type =, version = 1, owner =, description =, schema =,
--   sla = { max_lag = "5s" }, deprecated = false | true | "reason" }`
-- @treturn table the declaration (metatable `eddy.Event`)
-- @raise on a mistake, at the caller's position
function M.event(def, level)
  local ok, e = pcall(normalize, def)
  if not ok then
    if getmetatable(e) == Failure then error(e.msg, (level or 1) + 1) end
    error(e, 0)
  end
  e.declared_at = where_declared((level or 1) + 2)
  for _, d in ipairs(declared) do
    if d.type == e.type and d.version == e.version then
      error(string.format("event '%s' v%d is already declared at %s", e.type, e.version,
                          d.declared_at), (level or 1) + 1)
    end
  end
  declared[#declared + 1] = e
  return setmetatable(e, M.Event)
end

function M.is_event(v) return type(v) == "table" and rawequal(getmetatable(v), M.Event) end

--- Forgets the declarations made so far (an app is about to load).
function M.reset() declared = {} end

--- The file eddy.app is loading, for declarations that cannot say where
-- they are (set and cleared by eddy.app).
M.loading = nil

--- Checks a declaration read back from a saved catalog (normalized
-- already: sla as max_lag_ms): nil, or the problem.
function M.check_saved(e)
  local p = string.format("event '%s' v%s: ", tostring(e.type), tostring(e.version))
  if type(e.type) ~= "string" or not e.type:find(TYPE_PATTERN) then
    return "event: 'type' must be a name of letters, digits, '_', '.' and '-', got " ..
           quote(e.type)
  end
  if math.type(e.version) ~= "integer" or e.version < 1 then
    return p .. "'version' must be an integer >= 1"
  end
  if e.schema ~= nil then
    local ok, err = pcall(check_schema, p, e.schema, "")
    if not ok then return getmetatable(err) == Failure and err.msg or tostring(err) end
  end
  if e.sla ~= nil and (type(e.sla) ~= "table" or math.type(e.sla.max_lag_ms) ~= "integer") then
    return p .. "'sla' must be { max_lag_ms = integer }"
  end
  return nil
end

--- The declarations made since the last reset, sorted by type and version.
function M.declared()
  local list = {}
  for i, d in ipairs(declared) do list[i] = d end
  table.sort(list, function(a, b)
    if a.type ~= b.type then return a.type < b.type end
    return a.version < b.version
  end)
  return list
end

---------------------------------------------------------------------------
-- A catalog: { [type] = { versions = { [n] = decl }, latest = n } }

--- The catalog of a list of declarations: type -> `{ versions = { [n] =
-- decl }, latest = n, sla = }`, where sla is the newest version's that
-- has one (a version without one takes it).
function M.build(list)
  local cat = {}
  for _, d in ipairs(list) do
    local t = cat[d.type]
    if not t then t = { versions = {}, latest = 0 }; cat[d.type] = t end
    t.versions[d.version] = d
    if d.version > t.latest then t.latest = d.version end
  end
  for _, t in pairs(cat) do
    for v = t.latest, 1, -1 do
      if t.sla == nil and t.versions[v] then t.sla = t.versions[v].sla end
    end
  end
  return cat
end

-- Serializing declarations as a Lua table constructor, to hand the
-- catalog to the workers' Lua states (and to compare two of them).
local function serialize(v, out)
  local t = type(v)
  if t == "table" then
    out[#out + 1] = "{"
    for _, k in ipairs(sorted_keys(v)) do
      out[#out + 1] = "["
      serialize(k, out)
      out[#out + 1] = "]="
      serialize(v[k], out)
      out[#out + 1] = ","
    end
    out[#out + 1] = "}"
  elseif t == "string" then
    out[#out + 1] = string.format("%q", v)
  elseif math.type(v) == "integer" then
    out[#out + 1] = string.format("%d", v)
  elseif t == "number" then
    out[#out + 1] = string.format("%.17g", v)
  elseif t == "boolean" then
    out[#out + 1] = tostring(v)
  elseif is_null(v) then
    out[#out + 1] = "null"
  else
    error("cannot serialize " .. t, 0)
  end
end

--- The declarations as text that `load_text` reads back.
function M.dump(list)
  local out = { "return " }
  local plain = {}
  for i, d in ipairs(list) do plain[i] = setmetatable(copy(d), nil) end
  serialize(plain, out)
  return table.concat(out)
end

function M.load_text(text)
  local fn, err = load(text, "=catalog", "t", { null = null })
  if not fn then error("catalog: " .. err, 0) end
  return fn()
end

---------------------------------------------------------------------------
-- Validation

local function json_type(v)
  local t = type(v)
  if t == "string" or t == "boolean" then return t end
  if t == "number" then
    if math.type(v) == "integer" or (v == math.floor(v) and v == v and v ~= math.huge
                                     and v ~= -math.huge) then
      return "integer"
    end
    return "number"
  end
  if v == nil then return "nothing" end
  if is_null(v) then return "null" end
  if t == "table" then
    -- Decoded JSON has string keys in objects, 1..n in arrays; a table
    -- from a handler is taken by its first key, as the encoder does.
    local k = next(v)
    if k == nil then return "empty" end   -- {} or []: either
    if math.type(k) == "integer" and v[1] ~= nil then return "array" end
    return "object"
  end
  return t
end

local function shown(got)
  if got == "integer" then return "number" end
  if got == "empty" then return "an empty table" end
  return got
end

local function display_value(v)
  local t = json_type(v)
  if t == "string" then return quote(v) end
  if t == "integer" or t == "number" or t == "boolean" or t == "null" then return quote(v) end
  return shown(t)
end

local function subject(path)
  if path == "" then return "the value" end
  return "field '" .. path .. "'"
end

local function deep_equal(a, b)
  if a == b then return true end
  if is_null(a) and is_null(b) then return true end
  if type(a) ~= "table" or type(b) ~= "table" then return false end
  for k, v in pairs(a) do if not deep_equal(v, b[k]) then return false end end
  for k in pairs(b) do if a[k] == nil then return false end end
  return true
end

-- The message of a failure eddy.core's compiled schema found: the rule
-- (kind), the field's path, the schema holding the rule, and the value.
local function message(kind, path, s, v)
  if kind == "required" then
    return string.format("field '%s' is missing (required)", path)
  elseif kind == "additionalProperties" then
    return string.format("field '%s' is not allowed (additionalProperties)", path)
  end
  local subj = subject(path)
  if kind == "type" then
    local want = type(s.type) == "string" and s.type or table.concat(s.type, " or ")
    return string.format("%s must be %s %s (type), got %s", subj,
                         want:match("^[aeiou]") and "an" or "a", want, shown(json_type(v)))
  elseif kind == "enum" then
    local vals = {}
    for i, x in ipairs(s.enum) do vals[i] = quote(x) end
    return string.format("%s must be one of %s (enum), got %s", subj, table.concat(vals, ", "),
                         display_value(v))
  elseif kind == "const" then
    return string.format("%s must be %s (const), got %s", subj, quote(s.const), display_value(v))
  elseif kind == "minimum" then
    return string.format("%s must be >= %s (minimum), got %s", subj, quote(s.minimum), quote(v))
  elseif kind == "maximum" then
    return string.format("%s must be <= %s (maximum), got %s", subj, quote(s.maximum), quote(v))
  elseif kind == "minLength" or kind == "maxLength" then
    return string.format("%s must be at %s %d characters long (%s), got %d", subj,
                         kind == "minLength" and "least" or "most", s[kind], kind,
                         utf8.len(v) or #v)
  elseif kind == "minItems" or kind == "maxItems" then
    return string.format("%s must have at %s %d items (%s), got %d", subj,
                         kind == "minItems" and "least" or "most", s[kind], kind, #v)
  end
  return string.format("%s breaks rule %s", subj, tostring(kind))
end

-- Schemas compiled (by eddy.core, in C) once per schema table: each
-- function(v) returns nil, or the message naming the field and rule.
local compiled = setmetatable({}, { __mode = "k" })

local function compile(s)
  local fn = compiled[s]
  if not fn then
    local c = core.schema_compile(s)
    fn = function(v)
      local kind, path, rule, value = c:check(v)
      if kind then return message(kind, path, rule, value) end
      return nil
    end
    compiled[s] = fn
  end
  return fn
end

--- Checks v (a decoded JSON value) against the schema of declaration d.
-- @treturn nil|string nil, or `"OrderPlaced v2 does not match its schema:
--   field 'total' must be a number (type), got string"`
function M.validate(d, v)
  if not d.schema then return nil end
  local err = compile(d.schema)(v)
  if err then
    return string.format("%s v%d does not match its schema: %s", d.type, d.version, err)
  end
  return nil
end

---------------------------------------------------------------------------
-- The running app's catalog, in a worker's Lua state

local active = {}          -- the catalog in force: type -> { versions, latest }
local handles = {}         -- consumer name -> set of the types it handles (rules, sagas)
local warned = {}          -- "type/version" -> when a deprecation warning was last given

local function decode(value)
  if type(value) ~= "string" then return value end
  local v = core.json_decode(value)
  if v ~= nil then return v end
  return nil, "the value is not JSON"
end

--- Puts a catalog (the text `dump` made) in force in this state.
function M.install(text)
  active = M.build(M.load_text(text))
end

--- Notes which types each consumer handles (rules and sagas pass over
-- the others, so only these are checked when they consume).
function M.note_consumers(consumers)
  handles = {}
  for _, c in ipairs(consumers) do
    if c.kind == "rule" then
      local set = {}
      for _, t in ipairs(c.on) do set[t] = true end
      handles[c.name] = set
    elseif c.kind == "saga" then
      local set = { [c.saga.start] = true }
      for _, t in ipairs(c.saga.abort or {}) do set[t] = true end
      for _, st in ipairs(c.saga.steps) do
        for _, t in ipairs(st.replies or {}) do set[t] = true end
      end
      handles[c.name] = set
    end
  end
end

local function newer_than(t, v)
  for n = v + 1, t.latest do
    local d = t.versions[n]
    if d and not d.deprecated then return n end
  end
  return nil
end

-- The declaration a consumed event is checked against: its version when
-- declared, else the newest.
local function declaration(t, version)
  local n = math.tointeger(tonumber(version or ""))
  return (n and t.versions[n]) or t.versions[t.latest]
end

--- ctx:emit of an event of type ty: checks its value.  Returns the version
-- to send (nil for an undeclared type) and, when the version is
-- deprecated, a warning to log (at most once a minute per version).
-- Raises the message (a string) when the value does not match; the
-- runtime quarantines a handler that fails with it (reason schema).
function M.emit(ty, version, value)
  local t = active[ty]
  if not t then return nil end
  local d
  if version ~= nil then
    d = t.versions[version]
    if not d then
      local known = {}
      for _, n in ipairs(sorted_keys(t.versions)) do known[#known + 1] = tostring(n) end
      error(string.format("ctx:emit: event %s has no version %s (declared: %s)", ty,
                          tostring(version), table.concat(known, ", ")), 0)
    end
  else
    d = t.versions[t.latest]
  end
  if d.schema then
    local v, why = decode(value)
    local err = why and string.format("%s v%d does not match its schema: %s", ty, d.version, why)
                or M.validate(d, v)
    if err then error("ctx:emit: " .. err, 0) end
  end
  local warning
  if d.deprecated then
    local k = ty .. "/" .. d.version
    local now = os.time()
    if not warned[k] or now - warned[k] >= 60 then
      warned[k] = now
      local newer = newer_than(t, d.version)
      warning = string.format("event %s v%d is deprecated%s%s", ty, d.version,
                              type(d.deprecated) == "string" and " (" .. d.deprecated .. ")" or "",
                              newer and string.format("; emit v%d instead", newer) or "")
    end
  end
  return d.version, warning
end

-- msg:json(), or nil when the value is not JSON.  The handler's own
-- msg:json() then finds the value decoded.
local function json_of(msg)
  local ok, v = pcall(msg.json, msg)
  if ok then return v end
  return nil, "the value is not JSON"
end

--- A consumed event (msg, the handler's message object): nil when it may
-- go to the handler, else the message for quarantine (reason schema).
-- The second result is the SLA's max_lag in ms when the type has one.
function M.consume(consumer, ty, version, msg)
  local t = active[ty]
  if not t then return nil end
  local set = handles[consumer]
  if set and not set[ty] then return nil end
  local d = declaration(t, version)
  local sla = d.sla or t.sla
  if not d.schema then return nil, sla and sla.max_lag_ms end
  local v, why = json_of(msg)
  if why then return string.format("%s v%d does not match its schema: %s", ty, d.version, why) end
  return M.validate(d, v), sla and sla.max_lag_ms
end

--- Whether any type is declared in this state's catalog.
function M.any() return next(active) ~= nil end

M._json_type = json_type
M._deep_equal = deep_equal
M._sorted_keys = sorted_keys
M._quote = quote
M._copy = copy
M._is_null = is_null
return M
