-- Benchmark (c): the pause a reload causes.  Run by bench/run.sh:
--   lua5.4 bench/reload.lua EDDY APP_DIR DATA_DIR INPUT RELOADS
-- (APP_DIR: a copy of bench/reload, whose handler file it rewrites)
-- Starts `eddy run` on a backlog, reloads RELOADS times while it handles
-- it (each reload a new version of the handler), and reads when each
-- message was handled from the ids of the events the handler emitted.
-- Around each reload (from the request to the answer, plus 20 ms either
-- side) it takes the largest gap between two handled messages; the same
-- for windows of the same length halfway between reloads, where nothing
-- reloads.  Prints p50 and p99 of both, in ms.
local eddy, dir, data, input = arg[1], arg[2], arg[3], arg[4]
local reloads = tonumber(arg[5] or "20")
local app = dir .. "/eddy.lua"
local handler = dir .. "/handlers/stamp.lua"

local function sh(cmd)
  local ok = os.execute(cmd)
  if not ok then error("bench: failed: " .. cmd) end
end

local function now_ms()
  local p = io.popen("date +%s%3N")
  local t = tonumber(p:read("l"))
  p:close()
  return t
end

-- The handler file is a link to a file outside the directories eddy
-- watches, so each new version is loaded by the `eddy reload` the bench
-- times, not also by a file-change reload of its own.
local original = io.open(handler):read("a")
local src = dir .. "-src/stamp.lua"
sh(string.format("mkdir -p %s-src && ln -sf %s %s", dir, src, handler))
local function write_version(v)
  local f = io.open(src, "w")
  f:write((original:gsub("local VERSION = %d+", "local VERSION = " .. v)))
  f:close()
end
write_version(0)

local function count(topic)
  local p = io.popen(string.format(
    "sqlite3 %s/eddy.db \"SELECT count(*) FROM messages m JOIN topics t ON t.id = m.topic_id WHERE t.name = '%s'\"",
    data, topic))
  local n = tonumber(p:read("l")) or 0
  p:close()
  return n
end

sh(string.format("%s --data %s topic create orders --partitions 4 >/dev/null", eddy, data))
sh(string.format("%s --data %s produce orders --key-separator : < %s", eddy, data, input))
local total = count("orders")
sh(string.format("%s run %s --data %s 2> %s/run.log & echo $! > %s/pid", eddy, app, data, data, data))
local pid = io.open(data .. "/pid"):read("l")

-- Under load: wait until handling has started.
while count("handled") < total // 20 do sh("sleep 0.02") end
local windows = {}
for i = 1, reloads do
  write_version(i)
  local t0 = now_ms()
  sh(string.format("%s --data %s reload > /dev/null", eddy, data))
  local t1 = now_ms()
  windows[#windows + 1] = { t0, t1 }
  sh("sleep 0.05")
end
write_version(0)
local handled_at_end = count("handled")
while count("handled") < total do sh("sleep 0.1") end
sh("kill -TERM " .. pid)
while os.execute("kill -0 " .. pid .. " 2>/dev/null") do sh("sleep 0.05") end
if handled_at_end >= total then
  io.stderr:write("bench: the backlog ran out before the reloads ended; make it bigger\n")
end

-- When each message was handled: the ms in its event's UUIDv7 id.
local stamps = {}
local p = io.popen(string.format(
  "sqlite3 %s/eddy.db \"SELECT substr(m.id, 1, 8) || substr(m.id, 10, 4) FROM messages m JOIN topics t ON t.id = m.topic_id WHERE t.name = 'handled'\"",
  data))
for line in p:lines() do stamps[#stamps + 1] = tonumber(line, 16) end
p:close()
table.sort(stamps)

-- The largest gap between consecutive handled messages in [a, b].
local function largest_gap(a, b)
  local lo, hi = 1, #stamps
  while lo < hi do
    local mid = (lo + hi) // 2
    if stamps[mid] < a then lo = mid + 1 else hi = mid end
  end
  local gap, prev = 0, nil
  for i = lo, #stamps do
    local t = stamps[i]
    if t > b then break end
    if prev and t - prev > gap then gap = t - prev end
    prev = t
  end
  return gap
end

local around, between = {}, {}
for i, w in ipairs(windows) do
  around[#around + 1] = largest_gap(w[1] - 20, w[2] + 20)
  local nxt = windows[i + 1]
  if nxt then
    local len = w[2] - w[1] + 40
    local mid = (w[2] + nxt[1]) // 2
    between[#between + 1] = largest_gap(mid - len // 2, mid + len // 2)
  end
end
local function pct(t, q)
  local s = {}
  for i, v in ipairs(t) do s[i] = v end
  table.sort(s)
  return s[math.max(1, math.ceil(#s * q))]
end
print(string.format("%d %d %d %d %d", #windows, pct(around, 0.5), pct(around, 0.99),
                    pct(between, 0.5), pct(between, 0.99)))
