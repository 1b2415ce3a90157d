--- The admin endpoint and the control socket of `eddy run` cannot be
-- starved: each keeps a bounded number of connections (64 and 32; when
-- full, the oldest one that has not sent its request is closed to make
-- room) and closes a connection that has not sent its request in time (10 s
-- and 5 s).  So hundreds of clients that connect and send nothing, or half
-- a request, neither use up the process's file descriptors nor stop
-- /metrics, `eddy status`, `eddy reload` or a reload on a file change.
-- And the endpoint's HTTP: HEAD, and the exact answers to bad requests.
--
-- The connections are real sockets, held by test/holdconn.c (Lua has
-- none); `eddy run` runs with a limit of 256 open files, which the held
-- connections would pass many times over without the bounds.
local cjson = require "cjson"
local core = require "eddy.core"
local H = require "helpers"

local function defer(fn) H.defer(finally, fn) end

-- The limits, as docs/metrics.md gives them.
local ADMIN_MAX, CONTROL_MAX = 64, 32
local ADMIN_TIMEOUT_MS, CONTROL_TIMEOUT_MS = 10000, 5000

local HANDLER = [[
local eddy = require "eddy"
return eddy.consumer { name = "c", topics = { "work" }, handle = function() end } -- $TAG
]]

--- An app in a fresh directory with one consumer, its topic made.
local function make_app()
  local dir = H.tmpdir()
  defer(function() H.rmdir(dir) end)
  assert(os.execute("mkdir " .. H.quote(dir .. "/handlers")))
  H.write(dir .. "/eddy.lua", "return { data = 'data', workers = 1, handlers = { 'handlers/' },\n" ..
          "  topics = { work = { partitions = 1 } } }\n")
  H.write(dir .. "/handlers/h.lua", (HANDLER:gsub("%$TAG", "1")))
  local app = { dir = dir, file = dir .. "/eddy.lua", data = dir .. "/data",
                handler = dir .. "/handlers/h.lua" }
  assert.equal(0, H.run({ "--data", app.data, "topic", "create", "work" }).code)
  return app
end

--- Starts eddy run on app with the admin endpoint on a free port, allowed
-- at most 256 open files; returns the handle, the admin's tcp: address and
-- the control socket's unix: address.
local function start(app)
  local h = H.spawn_cmd({ "sh", "-c", 'ulimit -n 256 && exec "$@"', "sh", H.bin, "run", app.file,
                          "--admin", "127.0.0.1:0" })
  defer(function() H.cleanup(h) end)
  local port = H.wait_until(function()
    return (H.read(h.err) or ""):match("admin: serving http://127%.0%.0%.1:(%d+)/metrics")
  end, 30, "eddy run to serve its admin endpoint")
  local control = app.data .. "/control/" .. h.pid .. ".sock"
  H.wait_until(function() return H.exists(control) end, 30, "the control socket")
  return h, "tcp:127.0.0.1:" .. port, "unix:" .. control, "http://127.0.0.1:" .. port
end

--- Holds count connections to address, each having sent data; returns
-- the handle once all are open.
local function hold(address, count, data)
  local h = H.hold(address, count, 60, data)
  defer(function() H.cleanup(h) end)
  H.wait_until(function()
    local r = H.held(h)
    assert(not r.error, r.error)
    return r.open == count
  end, 60, count .. " connections to " .. address)
  return h
end

--- curl (without the sanitizers' LD_PRELOAD, see metrics_spec.lua):
-- status, body and seconds taken, giving up after 5 s.
local function get(url)
  local r = H.exec({ "env", "-u", "LD_PRELOAD", "curl", "-s", "--max-time", "5", "-w",
                     "\n%{http_code} %{time_total}", url })
  local body, code, secs = (r.out or ""):match("^(.*)\n(%d+) ([%d.]+)$")
  return tonumber(code), body, tonumber(secs)
end

local function status(app)
  local r = H.run({ "status", "--data", app.data, "--json" })
  assert.equal(0, r.code, r.err)
  return cjson.decode(r.out)
end

describe("eddy run's admin endpoint and control socket", function()
  it("answer /metrics, eddy status, eddy reload and a file change while hundreds of " ..
     "connections send nothing or half a request, hold a bounded number of files, and " ..
     "close the connections left after their timeout", function()
    local app = make_app()
    local h, admin, control, base = start(app)
    assert.equal(200, (get(base .. "/healthz")))
    local baseline = H.open_fds(h.pid)

    -- The idle ones first, then the half requests: the newest stay.
    local admin_idle = hold(admin, 300)
    local admin_half = hold(admin, 100, "GET /metr")
    local control_idle = hold(control, 300)
    local control_half = hold(control, 100, "stat")
    -- The bounds, and nothing else held: the store's files and the
    -- loop's were open already.
    assert.is_true(H.open_fds(h.pid) <= baseline + ADMIN_MAX + CONTROL_MAX,
                   "open files: " .. H.open_fds(h.pid) .. ", baseline " .. baseline)

    local code, body, secs = get(base .. "/metrics")
    assert.equal(200, code)
    assert.truthy(body:find('\neddy_messages_handled_total{consumer="c"} 0\n', 1, true), body)
    assert.is_true(secs < 5)
    local st = status(app)
    assert.same({ "c" }, { st.consumers[1].name })
    local r = H.run({ "reload", "--data", app.data })
    assert.same({ 0, "eddy run " .. h.pid .. ": reloaded: c " .. st.consumers[1].version ..
                     " (unchanged)\n" }, { r.code, r.out })
    local text = HANDLER:gsub("%$TAG", "2")
    H.write(app.handler, text)
    H.wait_until(function()
      local s = status(app)
      return s.consumers[1].version == core.hash(text) and s.last_reload.source == "file change"
    end, 30, "the file change to be reloaded")
    assert.is_true(H.open_fds(h.pid) <= baseline + ADMIN_MAX + CONTROL_MAX)

    -- Every connection is closed by eddy: the oldest to make room, at
    -- once and with no answer (with a reset when eddy had not read what
    -- it sent yet); the newest once their time is up, an HTTP client that
    -- sent part of a request with a 408.  How many of the half requests
    -- stay to time out depends on how many connections the polls above
    -- made (each new one closes the oldest); the fresh ones below do not.
    local held = { [admin_idle] = 300, [admin_half] = 100, [control_idle] = 300,
                   [control_half] = 100 }
    local function all_closed()
      H.wait_until(function()
        for x, count in pairs(held) do
          if #H.held(x).closed < count then return false end
        end
        return true
      end, 60, "eddy to close every held connection")
    end
    all_closed()
    local timeout_408 = "HTTP/1.1 408 Request Timeout\r\nContent-Type: text/plain; charset=utf-8" ..
                        "\r\nContent-Length: 16\r\nConnection: close\r\n\r\nrequest timeout\n"
    local function outcome(x, timeout_ms, answer)
      local evicted, timed_out = 0, 0
      for _, c in ipairs(H.held(x).closed) do
        if c.got == "" and c.ms < timeout_ms then
          evicted = evicted + 1
        else
          assert.same({ true, answer, false }, { c.ms >= timeout_ms - 500, c.got, c.reset })
          timed_out = timed_out + 1
        end
      end
      return evicted, timed_out
    end
    local evicted, timed_out = outcome(admin_idle, ADMIN_TIMEOUT_MS, "")
    assert.same({ 300, 0 }, { evicted, timed_out })
    evicted, timed_out = outcome(admin_half, ADMIN_TIMEOUT_MS, timeout_408)
    assert.same({ true, 100 }, { evicted >= 100 - ADMIN_MAX, evicted + timed_out })
    evicted, timed_out = outcome(control_idle, CONTROL_TIMEOUT_MS, "")
    assert.same({ 300, 0 }, { evicted, timed_out })
    evicted, timed_out = outcome(control_half, CONTROL_TIMEOUT_MS, "")
    assert.same({ true, 100 }, { evicted >= 100 - CONTROL_MAX, evicted + timed_out })
    -- Half requests within the bounds, with nothing else connecting: each
    -- is closed at its timeout, the HTTP ones with a 408.
    local admin_late = hold(admin, 20, "GET /metr")
    local control_late = hold(control, 10, "stat")
    held = { [admin_late] = 20, [control_late] = 10 }
    all_closed()
    assert.same({ 0, 20 }, { outcome(admin_late, ADMIN_TIMEOUT_MS, timeout_408) })
    assert.same({ 0, 10 }, { outcome(control_late, CONTROL_TIMEOUT_MS, "") })
    H.wait_until(function() return H.open_fds(h.pid) <= baseline end, 10,
                 "the open files to be back to " .. baseline)
    -- One warning a minute at most, per server, for all of this.
    local log = H.read(h.err)
    local first, last = {}, {}
    for _, o in ipairs(H.log_select(log, { level = "warn" })) do
      local server = o.message:match("^(.-): at its limit")
      assert(server, o.message)
      local y, mo, d, hh, mi, ss = o.time:match("^(%d+)-(%d+)-(%d+)T(%d+):(%d+):([%d.]+)")
      local t = os.time({ year = y, month = mo, day = d, hour = hh, min = mi, sec = 0 }) + tonumber(ss)
      if last[server] then
        assert.is_true(t - last[server] >= 59.9, "two warnings of " .. server .. " within a minute")
      end
      first[server] = first[server] or o.message
      last[server] = t
    end
    assert.same({ admin = "admin: at its limit of 64 open connections; since the last warning: " ..
                    "1 idle closed to make room, 0 refused (all busy)",
                  ["control socket"] = "control socket: at its limit of 32 open connections; " ..
                    "since the last warning: 1 idle closed to make room, 0 refused (all busy)" },
                first)

    assert.is_true(H.kill(h.pid, "TERM"))
    assert.equal(0, H.wait_exit(h, 30))
  end)

  it("answers HEAD with the head GET has, Content-Length included, and no body", function()
    local app = make_app()
    local _, admin = start(app)
    local head = "HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\n" ..
                 "Content-Length: 3\r\nConnection: close\r\n\r\n"
    assert.equal(head, (H.ask(admin, "HEAD /healthz HTTP/1.1\r\nHost: x\r\n\r\n")))
    assert.equal(head .. "ok\n", (H.ask(admin, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")))
    local ready = "HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\n" ..
                  "Content-Length: 6\r\nConnection: close\r\n\r\n"
    assert.equal(ready, (H.ask(admin, "HEAD /readyz HTTP/1.0\r\n\r\n")))
    assert.equal(ready .. "ready\n", (H.ask(admin, "GET /readyz HTTP/1.0\r\n\r\n")))
    local metrics = H.ask(admin, "HEAD /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
    local length = metrics:match("^HTTP/1%.1 200 OK\r\nContent%-Type: text/plain; " ..
                                 "version=0%.0%.4; charset=utf%-8\r\nContent%-Length: (%d+)\r\n" ..
                                 "Connection: close\r\n\r\n$")
    assert.truthy(length, metrics)
    local got = H.ask(admin, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
    local glength, gbody = got:match("\r\nContent%-Length: (%d+)\r\n.-\r\n\r\n(.*)$")
    assert.same({ tonumber(glength), true }, { #gbody, tonumber(length) > 1000 })
    assert.equal("HTTP/1.1 404 Not Found\r\nContent-Type: text/plain; charset=utf-8\r\n" ..
                 "Content-Length: 44\r\nConnection: close\r\n\r\n",
                 (H.ask(admin, "HEAD /nothing HTTP/1.1\r\nHost: x\r\n\r\n")))
  end)

  it("answers requests it does not serve with exact status lines, at once", function()
    local app = make_app()
    local _, admin, control = start(app)
    local function answer(code, body, extra)
      return "HTTP/1.1 " .. code .. "\r\nContent-Type: text/plain; charset=utf-8\r\n" ..
             "Content-Length: " .. #body .. "\r\n" .. (extra or "") ..
             "Connection: close\r\n\r\n" .. body
    end
    local long_line = "GET /" .. ("a"):rep(9000) .. " HTTP/1.1\r\nHost: x\r\n\r\n"
    local big_head = "GET /metrics HTTP/1.1\r\nHost: x\r\n" ..
                     ("X-Padding: " .. ("p"):rep(100) .. "\r\n"):rep(80) .. "\r\n"
    for _, case in ipairs({
      { "POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello",
        answer("405 Method Not Allowed", "GET and HEAD only\n", "Allow: GET, HEAD\r\n") },
      { "DELETE /healthz HTTP/1.1\r\nHost: x\r\n\r\n",
        answer("405 Method Not Allowed", "GET and HEAD only\n", "Allow: GET, HEAD\r\n") },
      { "GET /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello",
        answer("413 Content Too Large", "a request body is not accepted\n") },
      { "GET /metrics HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        answer("413 Content Too Large", "a request body is not accepted\n") },
      { long_line, answer("414 URI Too Long", "request line too long\n") },
      { big_head, answer("431 Request Header Fields Too Large", "request head too large\n") },
      { "GET /metrics HTTP/2.0\r\nHost: x\r\n\r\n",
        answer("505 HTTP Version Not Supported", "only HTTP/1.x is served\n") },
      { "GET /metrics HTTP/1.1\r\n\r\n", answer("400 Bad Request", "no Host header\n") },
      { "GET /metrics HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n",
        answer("400 Bad Request", "more than one Host header\n") },
      { "GET  /metrics HTTP/1.1\r\n\r\n", answer("400 Bad Request", "bad request line\n") },
      { "hello\r\n", answer("400 Bad Request", "bad request line\n") },
      { "GET metrics HTTP/1.1\r\n", answer("400 Bad Request", "bad request target\n") },
      { "GET /metrics HTTP/1.1\r\nHost: x\r\nno colon\r\n\r\n",
        answer("400 Bad Request", "bad header line\n") },
      { "GET /metrics HTTP/1.1\r\nHost: x\r\nName : v\r\n\r\n",
        answer("400 Bad Request", "bad header line\n") },
      { "GET /metrics HTTP/1.1\r\nHost: x\r\n folded\r\n\r\n",
        answer("400 Bad Request", "a folded header line\n") },
      { "GET /metrics HTTP/1.1\r\nHost: x\r\nA: b\0c\r\n\r\n",
        answer("400 Bad Request", "bad header value\n") },
      { "GET /metrics HTTP/1.1\rHost: x\r\n\r\n",
        answer("400 Bad Request", "a CR that does not end a line\n") },
      { "GET /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
        answer("400 Bad Request", "bad Content-Length\n") },
      { "GET /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nContent-Length: 1\r\n\r\n",
        answer("400 Bad Request", "conflicting Content-Length headers\n") },
      -- Served: no Host in HTTP/1.0, LF alone, an absolute target, a query.
      { "GET /healthz HTTP/1.0\r\n\r\n", answer("200 OK", "ok\n") },
      { "GET /healthz HTTP/1.1\nHost: x\n\n", answer("200 OK", "ok\n") },
      { "GET http://127.0.0.1/healthz?x=1 HTTP/1.1\r\nHost: x\r\n\r\n", answer("200 OK", "ok\n") },
      { "GET /x?/metrics HTTP/1.1\r\nHost: x\r\n\r\n",
        answer("404 Not Found", "not found (try /metrics, /healthz, /readyz)\n") },
    }) do
      -- Requests that end early (no blank line) are answered without
      -- waiting for the rest or for the timeout.
      local got, ms = H.ask(admin, case[1])
      assert.same({ case[2], true }, { got, ms < ADMIN_TIMEOUT_MS / 2 })
    end
    -- The control socket: a line too long, and an unknown one.
    assert.equal("error request line too long\n", (H.ask(control, ("x"):rep(100))))
    assert.equal("error unknown request\n", (H.ask(control, "hello\n")))
  end)
end)
