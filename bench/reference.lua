-- The reference: the same handler called from a bare Lua loop over the same
-- messages in memory, with in-memory msg and ctx (cjson for msg:json(),
-- a table for state, an array for emits).  Prints msgs/s.
--   lua5.4 bench/reference.lua HANDLER_FILE INPUT_FILE
local cjson = require "cjson"
local handler_file, input = arg[1], arg[2]
local def = dofile(handler_file)

local msgs = {}
for line in io.lines(input) do
  local sep = line:find(":", 1, true)
  msgs[#msgs + 1] = { key = line:sub(1, sep - 1), value = line:sub(sep + 1) }
end

local Msg = {}
Msg.__index = Msg
function Msg:json()
  local v = rawget(self, "_json")
  if not v then v = cjson.decode(self.value); self._json = v end
  return v
end

local store = {}
local state = {
  get = function(_, k) local v = store[k]; return v and cjson.decode(v) end,
  set = function(_, k, v) store[k] = cjson.encode(v) end,
  delete = function(_, k) store[k] = nil end,
}
local emitted = {}
local ctx = { state = state, attempt = 1, consumer = def.name }
function ctx.emit(_, topic, ev)
  local v = ev.value
  if type(v) == "table" then v = cjson.encode(v) end
  emitted[#emitted + 1] = { topic, ev.key, v }
end

local handle = def.handle
local t0 = os.clock()
for i = 1, #msgs do
  local m = msgs[i]
  handle(setmetatable({ key = m.key, value = m.value, id = tostring(i) }, Msg), ctx)
end
local secs = os.clock() - t0
io.write(string.format("%.0f\n", #msgs / secs))
