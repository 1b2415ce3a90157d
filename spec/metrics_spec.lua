--- The admin endpoint of `eddy run`: /metrics in Prometheus's text format,
-- scraped by a real Prometheus server (Debian's `prometheus`, on loopback,
-- scraping every second), whose query API must read the lag and the
-- quarantine depth eddy has; /healthz and /readyz; and the errors of a bad
-- admin configuration.
local cjson = require "cjson"
local H = require "helpers"

local function defer(fn) H.defer(finally, fn) end

math.randomseed(os.time() ~ tonumber(tostring({}):match("0x(%x+)"), 16))

--- An app in a fresh directory: eddy.lua (extra is Lua text added to its
-- table) and handlers/h.lua.
local function make_app(handlers, extra)
  local dir = H.tmpdir()
  defer(function() H.rmdir(dir) end)
  assert(os.execute("mkdir " .. H.quote(dir .. "/handlers")))
  H.write(dir .. "/eddy.lua", "return { data = 'data', workers = 2, handlers = { 'handlers/' },\n" ..
          "  topics = { work = { partitions = 1 }, orders = { partitions = 2 } },\n" ..
          (extra or "") .. " }\n")
  H.write(dir .. "/handlers/h.lua", handlers)
  return { dir = dir, file = dir .. "/eddy.lua", data = dir .. "/data" }
end

-- "stuck" fails on the message with value "first" and retries it an hour
-- later: it holds its partition's committed offset at 0, so the lag is the
-- partition's message count.  "picky" quarantines the values "bad".
local HANDLERS = [[
local eddy = require "eddy"
return {
  eddy.consumer { name = "stuck", topics = { "work" },
    retry = { attempts = 50, backoff = "1h", max_backoff = "1h" },
    handle = function(msg) if msg.value == "first" then error("not now") end end },
  eddy.consumer { name = "picky", topics = { "orders" }, retry = { attempts = 1 },
    handle = function(msg) if msg.value == "bad" then error("bad order") end end },
}
]]

--- HTTP GET with curl: status code and body.
local function get(url)
  -- Not under the sanitizers' LD_PRELOAD (make test-asan): curl and
  -- prometheus are not eddy, and curl deadlocks in setlocale under it.
  local r = H.exec({ "env", "-u", "LD_PRELOAD", "curl", "-s", "-w", "\n%{http_code}", url })
  local body, code = (r.out or ""):match("^(.*)\n(%d+)$")
  return tonumber(code), body
end

--- Starts eddy run on app with --admin on a free port; returns the handle
-- and the base URL from its log.
local function run_with_admin(app)
  local h = H.spawn({ "run", app.file, "--admin", "127.0.0.1:0" })
  defer(function() H.cleanup(h) end)
  local port = H.wait_until(function()
    return (H.read(h.err) or ""):match("admin: serving http://127%.0%.0%.1:(%d+)/metrics")
  end, 20, "eddy run to serve its admin endpoint")
  return h, "http://127.0.0.1:" .. port
end

--- Starts Prometheus scraping target (HOST:PORT) every second; returns its
-- base URL.  A port taken by something else makes it exit: try another.
local function prometheus(target)
  local dir = H.tmpdir()
  defer(function() H.rmdir(dir) end)
  H.write(dir .. "/prometheus.yml", table.concat({
    "global:",
    "  scrape_interval: 1s",
    "  evaluation_interval: 1s",
    "scrape_configs:",
    "  - job_name: eddy",
    "    static_configs:",
    "      - targets: ['" .. target .. "']",
  }, "\n") .. "\n")
  for _ = 1, 5 do
    local port = math.random(20000, 60000)
    local h = H.spawn_cmd({ "env", "-u", "LD_PRELOAD", "prometheus",
                            "--config.file=" .. dir .. "/prometheus.yml",
                            "--storage.tsdb.path=" .. dir .. "/tsdb",
                            "--web.listen-address=127.0.0.1:" .. port })
    defer(function() H.cleanup(h) end)
    local up = H.poll(function()
      if H.exit_code(h) then return "exited" end
      local log = H.read(h.err) or ""
      if log:find("Server is ready to receive web requests", 1, true) then return "ready" end
    end, 30)
    if up == "ready" then return "http://127.0.0.1:" .. port end
    H.cleanup(h)
  end
  error("prometheus did not start")
end

--- The value of an instant query through Prometheus's API, as a number, or
-- nil while the series has no sample.
local function query(prom, expr)
  local code, body = get(prom .. "/api/v1/query?query=" ..
                         expr:gsub("[^%w_]", function(c) return string.format("%%%02X", c:byte()) end))
  if code ~= 200 then return nil end
  local r = cjson.decode(body)
  local v = r.data and r.data.result and r.data.result[1]
  return v and tonumber(v.value[2])
end

describe("eddy run --admin", function()
  it("serves /metrics that a real Prometheus scrapes: lag and quarantine depth read as in eddy",
     function()
    local app = make_app(HANDLERS)
    assert.equal(0, H.run({ "--data", app.data, "topic", "create", "work", "--partitions", "1" }).code)
    assert.equal(0, H.run({ "--data", app.data, "topic", "create", "orders", "--partitions", "2" }).code)
    assert.equal(0, H.run({ "--data", app.data, "produce", "work" },
                          { stdin = "first\nsecond\nthird\nfourth\nfifth\n" }).code)
    assert.equal(0, H.run({ "--data", app.data, "produce", "orders", "-K", ":" },
                          { stdin = "a:ok\nb:bad\nc:ok\nd:bad\ne:bad\nf:ok\n" }).code)
    local h, base = run_with_admin(app)
    -- eddy's own view first: the parked message holds the lag at 5.
    local text = H.wait_until(function()
      local c, t = get(base .. "/metrics")
      -- Two workers commit on their own: the quarantines may land before
      -- the handled messages, so wait for both.
      if c == 200 and t:find('eddy_quarantine_depth{consumer="picky"} 3', 1, true) and
         t:find('eddy_messages_handled_total{consumer="picky"} 3\n', 1, true) and
         t:find('eddy_consumer_lag{consumer="stuck",topic="work",partition="0"} 5', 1, true) and
         t:find('eddy_parked_messages{consumer="stuck"} 1', 1, true) then
        return t
      end
    end, 30, "eddy's metrics to show the lag and the quarantine")
    assert.truthy(text:find("# TYPE eddy_consumer_lag gauge\n", 1, true))
    assert.truthy(text:find('eddy_messages_handled_total{consumer="picky"} 3\n', 1, true))
    assert.truthy(text:find('eddy_messages_quarantined_total{consumer="picky"} 3\n', 1, true))
    assert.truthy(text:find('eddy_handler_duration_seconds_count{consumer="picky"} 6\n', 1, true))
    assert.truthy(text:find('eddy_handler_duration_seconds_bucket{consumer="picky",le="+Inf"} 6\n',
                            1, true))
    -- eddy status tells the same, per consumer.
    local st = cjson.decode(H.run({ "status", "--data", app.data, "--json" }).out)
    local by = {}
    for _, c in ipairs(st.consumers) do by[c.name] = { c.lag, c.parked, c.quarantined } end
    assert.same({ stuck = { 5, 1, 0 }, picky = { 0, 0, 3 } }, by)
    assert.equal(0, st.outbox_pending)
    local status = H.run({ "status", "--data", app.data }).out
    assert.truthy(status:find("\n  stuck     [%x]+  [%d:.TZ-]+         5       1            0  "), status)
    assert.truthy(status:find("\n  outbox: 0 events waiting for the relay\n", 1, true), status)
    assert.equal(200, (get(base .. "/healthz")))
    assert.same({ 200, "ready\n" }, { get(base .. "/readyz") })
    assert.same({ 404, "not found (try /metrics, /healthz, /readyz)\n" }, { get(base .. "/x") })

    -- Then Prometheus's, through its query API.
    local prom = prometheus(base:gsub("^http://", ""))
    local lag = H.wait_until(function()
      return query(prom, 'eddy_consumer_lag{consumer="stuck",topic="work",partition="0"}')
    end, 60, "Prometheus to have scraped the lag")
    assert.equal(5, lag)
    assert.equal(3, query(prom, 'eddy_quarantine_depth{consumer="picky"}'))
    assert.equal(0, query(prom, 'sum(eddy_consumer_lag{consumer="picky"})'))
    assert.equal(1, query(prom, 'up{job="eddy"}'))

    assert.is_true(H.kill(h.pid, "TERM"))
    assert.equal(0, H.wait_exit(h, 30))
  end)

  it("counts SLA breaches per consumer and event type: events handled later than the type's " ..
     "sla.max_lag after they were made", function()
    local app = make_app([[
local eddy = require "eddy"
eddy.event { type = "Slow", sla = { max_lag = "1ms" } }
eddy.event { type = "Fast", version = 1, sla = { max_lag = "1h" } }
eddy.event { type = "Fast", version = 2 }
return eddy.consumer { name = "late", topics = { "orders" }, handle = function() end }
]])
    assert.equal(0, H.run({ "--data", app.data, "topic", "create", "orders", "--partitions", "2" }).code)
    -- Made now, handled once eddy starts: well over 1ms later.
    assert.equal(0, H.run({ "--data", app.data, "produce", "orders", "--type", "Slow" },
                          { stdin = "1\n2\n3\n" }).code)
    assert.equal(0, H.run({ "--data", app.data, "produce", "orders", "--type", "Fast" },
                          { stdin = "4\n5\n" }).code)
    assert.equal(0, H.run({ "--data", app.data, "produce", "orders", "--type", "Other" },
                          { stdin = "6\n" }).code)
    local h, base = run_with_admin(app)
    local text = H.wait_until(function()
      local c, t = get(base .. "/metrics")
      if c == 200 and t:find('eddy_messages_handled_total{consumer="late"} 6\n', 1, true) then
        return t
      end
    end, 30, "the six messages to be handled")
    local breaches = {}
    for line in text:gmatch("eddy_sla_breaches_total{[^\n]*") do breaches[#breaches + 1] = line end
    assert.same({ 'eddy_sla_breaches_total{consumer="late",type="Slow"} 3' }, breaches)
    assert.truthy(text:find("# TYPE eddy_sla_breaches_total counter\n", 1, true))
    assert.is_true(H.kill(h.pid, "TERM"))
    assert.equal(0, H.wait_exit(h, 30))
  end)

  it("refuses a port in use, an address that is not loopback, and a malformed admin, "
     .. "in one line", function()
    local app = make_app(HANDLERS)
    local _, base = run_with_admin(app)
    local port = base:match(":(%d+)$")
    local other = make_app(HANDLERS)
    local r = H.run({ "run", other.file, "--drain", "--admin", "127.0.0.1:" .. port })
    assert.same({ 1, "eddy run: admin '127.0.0.1:" .. port .. "': address already in use" },
                { r.code, H.lines(r.err)[#H.lines(r.err)] })
    assert.is_nil(r.err:find("eddy run: app=", 1, true), "it ran: " .. r.err)

    r = H.run({ "run", other.file, "--drain", "--admin", "0.0.0.0:0" })
    assert.same({ 1, "eddy run: admin '0.0.0.0:0': not a loopback address (metrics name "
                     .. "consumers and topics; set admin_public = true in the app to serve "
                     .. "other hosts)" },
                { r.code, H.lines(r.err)[#H.lines(r.err)] })
    local public = make_app(HANDLERS, "  admin = '0.0.0.0:0', admin_public = true,\n")
    r = H.run({ "run", public.file, "--drain" })
    assert.equal(0, r.code, r.err)
    assert.truthy(r.err:find("admin: serving http://0%.0%.0%.0:%d+/metrics"), r.err)

    for _, case in ipairs({
      { "  admin = 9464,\n", "'admin' must be HOST:PORT (e.g. \"127.0.0.1:9464\"), got 9464" },
      { "  admin = '127.0.0.1:9464', admin_public = 'yes',\n",
        "'admin_public' must be true or false, got 'yes'" },
    }) do
      local bad = make_app(HANDLERS, case[1])
      r = H.run({ "run", bad.file, "--drain" })
      assert.same({ code = 1, err = "eddy run: " .. bad.file .. ": " .. case[2] .. "\n" },
                  { code = r.code, err = r.err })
    end
    r = H.run({ "run", other.file, "--drain", "--admin", "nowhere" })
    assert.same({ 1, "eddy run: admin 'nowhere': not HOST:PORT (e.g. 127.0.0.1:9464)" },
                { r.code, H.lines(r.err)[#H.lines(r.err)] })
  end)
end)
