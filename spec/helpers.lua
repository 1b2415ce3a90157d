--- Helpers for the eddy specs: run the eddy binary, temporary data
-- directories, background processes and waiting on real events.
--
-- Every command runs through `sh -c` with each argument single-quoted, with
-- `EDDY_DATA` removed from its environment unless `opts.env` sets it, so a
-- spec never depends on the environment it was started from.
local cjson = require "cjson"
local path = require "pl.path"

local ok_system, system = pcall(require, "system")

local M = {}

--- The eddy binary under test: `$EDDY_BIN`, else `build/eddy`, made absolute
-- so that commands run from another directory (`opts.cwd`) find it.
M.bin = path.abspath(os.getenv("EDDY_BIN") or "build/eddy")

--- Quotes one argument for `sh`.
-- @tparam string s any string without NUL bytes
-- @treturn string the string in single quotes
function M.quote(s)
  s = tostring(s)
  assert(not s:find("\0", 1, true), "a shell argument cannot hold a NUL byte")
  return "'" .. s:gsub("'", "'\\''") .. "'"
end

local function command_line(argv)
  local out = {}
  for i, a in ipairs(argv) do out[i] = M.quote(a) end
  return table.concat(out, " ")
end

--- Reads a whole file; nil when it does not exist.
function M.read(file)
  local f = io.open(file, "rb")
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return s
end

--- Writes s to file (created or truncated).
function M.write(file, s)
  local f = assert(io.open(file, "wb"))
  assert(f:write(s))
  assert(f:close())
end

--- True when file (or directory) exists.
function M.exists(file)
  return path.exists(file) ~= false
end

local function tmpfile(contents)
  local name = os.tmpname()
  if contents then M.write(name, contents) end
  return name
end

-- "cd DIR && " for opts.cwd, else "".
local function cd(opts)
  return opts.cwd and "cd " .. M.quote(opts.cwd) .. " && " or ""
end

-- The env(1) prefix that sets the environment of a command.  env execs the
-- command, so a background command's pid is the command's own.
local function envp(opts)
  local p = {}
  p[#p + 1] = "env -u EDDY_DATA"
  for _, k in ipairs(opts.unset or {}) do
    assert(k:match("^[%a_][%w_]*$"), "bad environment variable name " .. k)
    p[#p + 1] = "-u " .. k
  end
  local names = {}
  for k in pairs(opts.env or {}) do names[#names + 1] = k end
  table.sort(names)
  for _, k in ipairs(names) do
    assert(k:match("^[%a_][%w_]*$"), "bad environment variable name " .. k)
    p[#p + 1] = k .. "=" .. M.quote(opts.env[k])
  end
  return table.concat(p, " ")
end

--- Runs a command (a list: program and its arguments) and waits for it.
-- @tparam table argv the program and its arguments, each quoted for sh
-- @tparam[opt] table opts `stdin` (a string fed to standard input),
--   `stdin_file` (a path redirected to standard input), `env` (a table of
--   variables to set), `unset` (a list of variables to remove), `cwd` (the
--   directory to run in)
-- @treturn table `{ code = exit status, out = stdout, err = stderr }`
function M.exec(argv, opts)
  opts = opts or {}
  local inp = opts.stdin_file or "/dev/null"
  local inp_tmp
  if opts.stdin then inp_tmp = tmpfile(opts.stdin); inp = inp_tmp end
  local out, err = tmpfile(), tmpfile()
  local cmd = cd(opts) .. envp(opts) .. " " .. command_line(argv) .. " <" ..
              M.quote(inp) .. " >" .. M.quote(out) .. " 2>" .. M.quote(err)
  local _, how, code = os.execute(cmd)
  local r = { out = M.read(out), err = M.read(err) }
  if how == "exit" then r.code = code else r.code, r.signal = 128 + code, code end
  os.remove(out)
  os.remove(err)
  if inp_tmp then os.remove(inp_tmp) end
  return r
end

--- Runs the eddy binary with args (a list), see `M.exec` for opts.
-- @treturn table `{ code =, out =, err = }`
function M.run(args, opts)
  local argv = { M.bin }
  for _, a in ipairs(args) do argv[#argv + 1] = a end
  return M.exec(argv, opts)
end

--- The Kafka broker the specs use: the one test/run.sh starts.
M.BROKER = os.getenv("EDDY_TEST_BROKER") or "kafka://127.0.0.1:9092"

--- A name no other test uses (topics and groups on the shared broker).
function M.fresh_name(prefix)
  return string.format("%s-%08x", prefix, math.random(0, 0x7fffffff))
end

--- Runs eddy with args and `--broker M.BROKER`, see `M.run`.
function M.kafka_run(args, opts)
  local argv = {}
  for i, a in ipairs(args) do argv[i] = a end
  argv[#argv + 1] = "--broker"
  argv[#argv + 1] = M.BROKER
  return M.run(argv, opts)
end

--- M.kafka_run that fails unless eddy exits 0 quietly.  Returns stdout.
function M.kafka_ok(args, opts)
  local r = M.kafka_run(args, opts)
  assert(r.code == 0 and r.err == "",
         table.concat(args, " ") .. ": exit " .. r.code .. ": " .. r.err)
  return r.out
end

--- Runs eddy several times at once: every command is started by one shell
-- before any is waited for.  Returns one `{ code, out, err }` per command.
-- @tparam table arglists a list of argument lists
function M.run_parallel(arglists, opts)
  opts = opts or {}
  local dir = M.tmpdir()
  local parts = {}
  for i, args in ipairs(arglists) do
    local argv = { M.bin }
    for _, a in ipairs(args) do argv[#argv + 1] = a end
    local f = dir .. "/" .. i
    parts[#parts + 1] = "(" .. command_line(argv) .. " </dev/null >" ..
      M.quote(f .. ".out") .. " 2>" .. M.quote(f .. ".err") .. "; echo $? >" ..
      M.quote(f .. ".rc") .. ") &"
  end
  os.execute(cd(opts) .. envp(opts) .. " sh -c " ..
             M.quote(table.concat(parts, " ") .. " wait"))
  local results = {}
  for i = 1, #arglists do
    local f = dir .. "/" .. i
    results[i] = { code = tonumber(M.read(f .. ".rc")), out = M.read(f .. ".out"),
                   err = M.read(f .. ".err") }
  end
  M.rmdir(dir)
  return results
end

--- The argv that runs argv in a mount namespace of its own (unshare -m:
-- the specs run as root), after mounting what `mount` says there, so that
-- the mount exists for that command alone and goes with it:
-- `{ read_only = DIR }` binds DIR over itself read-only (a read-only data
-- directory); `{ tmpfs = DIR, size = "1m" }` mounts a fresh tmpfs of that
-- size on DIR (a small disk to fill).  Exits 99 when the mount fails.
function M.mounted(mount, argv)
  local setup
  if mount.read_only then
    local d = M.quote(mount.read_only)
    setup = "mount --bind " .. d .. " " .. d .. " && mount -o remount,bind,ro " .. d
  else
    assert(mount.tmpfs and mount.size, "mount: { read_only = DIR } or { tmpfs = DIR, size = S }")
    setup = "mount -t tmpfs -o size=" .. M.quote(mount.size) .. " tmpfs " .. M.quote(mount.tmpfs)
  end
  return { "unshare", "-m", "--propagation", "private", "sh", "-c",
           "(" .. setup .. ") >&2 || exit 99; exec \"$@\"", "sh", table.unpack(argv) }
end

--- Runs eddy commands one after another in one mount namespace of their
-- own, set up as `M.mounted` says, and returns one `{ code, out, err }` per
-- command.  Each command is a list of arguments; its `stdin` field, if any,
-- is fed to its standard input.  Fails the test when the mount fails.
function M.run_mounted(mount, arglists, opts)
  local dir = M.tmpdir()
  local script = {}
  for i, args in ipairs(arglists) do
    local f = dir .. "/" .. i
    local inp = "/dev/null"
    if args.stdin then inp = f .. ".in"; M.write(inp, args.stdin) end
    local argv = { M.bin }
    for _, a in ipairs(args) do argv[#argv + 1] = a end
    script[#script + 1] = command_line(argv) .. " <" .. M.quote(inp) .. " >" ..
      M.quote(f .. ".out") .. " 2>" .. M.quote(f .. ".err") .. "; echo $? >" .. M.quote(f .. ".rc")
  end
  local r = M.exec(M.mounted(mount, { "sh", "-c", table.concat(script, "\n") }), opts)
  assert(r.code ~= 99, "could not mount: " .. r.err)
  local results = {}
  for i = 1, #arglists do
    local f = dir .. "/" .. i
    results[i] = { code = tonumber(M.read(f .. ".rc")), out = M.read(f .. ".out"),
                   err = M.read(f .. ".err") }
  end
  M.rmdir(dir)
  return results
end

--- Mode bits (as octal text, "700") and type ("directory", "regular file",
-- "socket", ...) of path, as stat(1) gives them; nil when it is missing.
function M.mode(file)
  local r = M.exec({ "stat", "-c", "%a %F", file }, { unset = { "LD_PRELOAD" } })
  if r.code ~= 0 then return nil end
  local mode, kind = r.out:match("^(%d+) (.-)\n$")
  return mode, kind == "regular empty file" and "regular file" or kind
end

local pending = {}

--- Registers fn to run when the current test ends, pass or fail; cleanups
-- run last registered first.  busted's `finally` keeps only the last
-- function given in a test, so specs call this (with their `finally`)
-- instead, as often as they need.  An error in a cleanup is raised after
-- every cleanup ran.
-- @tparam function fin busted's `finally`
-- @tparam function fn the cleanup
function M.defer(fin, fn)
  if #pending == 0 then
    fin(function()
      local list = pending
      pending = {}
      local first_err
      for i = #list, 1, -1 do
        local ok, err = pcall(list[i])
        if not ok and not first_err then first_err = err end
      end
      if first_err then error(first_err, 0) end
    end)
  end
  pending[#pending + 1] = fn
end

--- Makes a fresh temporary directory and returns its path.
function M.tmpdir()
  local p = io.popen("mktemp -d /tmp/eddy-spec.XXXXXXXX")
  local dir = p:read("l")
  p:close()
  assert(dir and dir:match("^/tmp/eddy%-spec%."), "mktemp -d failed")
  return dir
end

--- Removes a directory made by `M.tmpdir` and everything in it.  Refuses
-- any other path, so a bug in a spec cannot remove something else.
function M.rmdir(dir)
  assert(type(dir) == "string" and dir:match("^/tmp/eddy%-spec%.[%w]+$"),
         "M.rmdir removes only directories made by M.tmpdir, not " .. tostring(dir))
  os.execute("rm -rf -- " .. M.quote(dir))
end

--- Splits s into its lines (without the newlines; a last newline ends the
-- last line, it does not start an empty one).
function M.lines(s)
  local t = {}
  if not s or s == "" then return t end
  if s:sub(-1) ~= "\n" then s = s .. "\n" end
  for line in s:gmatch("(.-)\n") do t[#t + 1] = line end
  return t
end

--- The log lines of `eddy run` (its stderr, JSON: docs/metrics.md, "Logs"),
-- each decoded.  Fails on a line that is not a JSON object with a time, a
-- level and a message.  A last line with no newline yet is being written
-- by a running eddy: it is left out.
-- @tparam string s the log
-- @treturn table a list of the lines' objects
function M.log_lines(s)
  local t = {}
  s = (s or ""):match("^(.*\n)") or ""
  for i, line in ipairs(M.lines(s)) do
    local ok, o = pcall(cjson.decode, line)
    if not (ok and type(o) == "table" and type(o.time) == "string" and
            type(o.level) == "string" and type(o.message) == "string") then
      error(string.format("log line %d is not a JSON log line: %s", i, line), 2)
    end
    t[i] = o
  end
  return t
end

--- The log lines (decoded, see `M.log_lines`) whose fields equal every
-- field of want, in order; want.message, if given, is a Lua pattern the
-- message must match rather than equal.
-- @tparam string s the log
-- @tparam table want fields and their values
-- @treturn table a list of the lines' objects
function M.log_select(s, want)
  local found = {}
  for _, o in ipairs(M.log_lines(s)) do
    local ok = true
    for k, v in pairs(want) do
      if k == "message" then ok = ok and o.message:find(v) ~= nil
      else ok = ok and o[k] == v end
    end
    if ok then found[#found + 1] = o end
  end
  return found
end

--- The numbers of the summary line `eddy run` logs when it stops
-- ("... received=N handled=N deduplicated=N ..."), by name, from a log in
-- either format; fails when log has no such line.
function M.summary(log)
  local line
  for _, l in ipairs(M.lines(log)) do
    if l:sub(1, 1) == "{" then
      local ok, o = pcall(cjson.decode, l)
      l = ok and type(o) == "table" and type(o.message) == "string" and o.message or ""
    end
    line = l:match("eddy run: stopped after .*")
    if line then break end
  end
  assert(line, "no summary line in the log:\n" .. log)
  local s = {}
  for k, v in line:gmatch("(%a+)=(%d+)") do s[k] = tonumber(v) end
  return s
end

--- Decodes every line of s as JSON.
function M.json_lines(s)
  local t = {}
  for i, line in ipairs(M.lines(s)) do t[i] = cjson.decode(line) end
  return t
end

--- Seconds since some fixed point, for timeouts.
local function now()
  if ok_system then return system.monotime() end
  return os.time()
end

-- The pause between two looks at a condition being waited for.
local function pause(s)
  if ok_system then system.sleep(s) else os.execute("sleep " .. s) end
end

--- Looks at pred until it returns a true value or seconds have passed;
-- returns pred's value, or nil when the time ran out.  For waiting on real
-- events (a background process printing, committing or exiting), never in
-- place of a deterministic check.
-- @tparam function pred called with no arguments
-- @tparam number seconds how long to keep looking
-- @tparam[opt] number every seconds between looks (default 0.01)
function M.poll(pred, seconds, every)
  local deadline = now() + seconds
  while true do
    local v = pred()
    if v then return v end
    if now() > deadline then return nil end
    pause(every or 0.01)
  end
end

--- Polls pred until it returns a true value, and returns that value; fails
-- the test when timeout_s pass first.
-- @tparam function pred called with no arguments
-- @tparam number timeout_s give up after this many seconds
-- @tparam string what what is being waited for, for the failure message
function M.wait_until(pred, timeout_s, what)
  local v = M.poll(pred, timeout_s)
  if v then return v end
  error(string.format("timed out after %gs waiting for %s", timeout_s, what), 2)
end

--- Polls look until it says done, for as long as the work it waits on
-- moves: look returns done (a true value, returned, ends the wait) and a
-- progress mark (any value that changes while the work goes on, a count
-- of things done for instance).  Fails the test when the mark stays the
-- same for stall_s seconds, naming it.  For a wait whose length depends on
-- how fast the machine is (sanitizers, load) but that must fail when the
-- work is stuck.
-- @tparam function look called with no arguments
-- @tparam number stall_s how long the mark may stay the same
-- @tparam string what what is being waited for, for the failure message
function M.wait_progress(look, stall_s, what)
  local mark, since = nil, now()
  while true do
    local done, m = look()
    if done then return done end
    if m ~= mark then
      mark, since = m, now()
    elseif now() - since > stall_s then
      error(string.format("no progress for %gs (stuck at %s) waiting for %s", stall_s,
                          tostring(m), what), 2)
    end
    pause(0.01)
  end
end

--- Starts a command (a list: program and its arguments) in the background.
-- Standard input is `opts.stdin` (a string), `opts.stdin_file` (a path, a
-- FIFO for instance) or /dev/null.
-- @treturn table a handle: `pid` (of the command itself, so `M.kill` reaches
--   it), `out` and `err` (paths of its output files), `dir` (a temporary
--   directory to remove with `M.rmdir`); see `M.exit_code`
function M.spawn_cmd(argv, opts)
  opts = opts or {}
  local dir = M.tmpdir()
  local h = { dir = dir, out = dir .. "/out", err = dir .. "/err",
              rc = dir .. "/rc" }
  local inp = opts.stdin_file or "/dev/null"
  if opts.stdin then inp = dir .. "/in"; M.write(inp, opts.stdin) end
  -- The subshell prints the command's pid, lets go of the pipe, then waits
  -- for the command and records its exit status atomically (rename).
  -- Output is redirected before input: opening a FIFO for reading blocks
  -- until someone opens it for writing, and the command must not hold the
  -- pipe to this process meanwhile.
  local inner = envp(opts) .. " " .. command_line(argv) .. " >" .. M.quote(h.out) ..
    " 2>" .. M.quote(h.err) .. " <" .. M.quote(inp)
  local script = cd(opts) .. "(" .. inner .. " & echo $!; exec >/dev/null; wait $!; echo $? >" ..
    M.quote(h.rc .. ".tmp") .. "; mv " .. M.quote(h.rc .. ".tmp") .. " " ..
    M.quote(h.rc) .. ") &"
  -- Read the pid line only, never up to the end of the pipe.
  local p = io.popen(script)
  local line = p:read("l")
  p:close()
  h.pid = tonumber(line and line:match("^(%d+)"))
  assert(h.pid, "could not start " .. command_line(argv))
  return h
end

--- Starts the eddy binary in the background, see `M.spawn_cmd`.
function M.spawn(args, opts)
  local argv = { M.bin }
  for _, a in ipairs(args) do argv[#argv + 1] = a end
  return M.spawn_cmd(argv, opts)
end

--- The exit status of a spawned command, or nil while it runs.
function M.exit_code(h)
  local s = M.read(h.rc)
  return s and tonumber(s:match("%d+"))
end

--- Waits (at most timeout_s) for a spawned command to exit; returns its
-- exit status.
function M.wait_exit(h, timeout_s, what)
  return M.wait_until(function() return M.exit_code(h) end, timeout_s,
                      what or "a background process to exit")
end

--- Sends signal sig (a name such as "TERM", default "TERM") to pid.
-- @treturn boolean true when the signal was delivered
function M.kill(pid, sig)
  assert(math.type(pid) == "integer" and pid > 1, "bad pid")
  local ok = os.execute("kill -s " .. (sig or "TERM") .. " " .. pid .. " 2>/dev/null")
  return ok == true
end

--- Stops a spawned command if it still runs and removes its files: for
-- `finally()`.
function M.cleanup(h)
  if not h then return end
  if not M.exit_code(h) then
    M.kill(h.pid, "KILL")
    pcall(M.wait_exit, h, 5)
  end
  M.rmdir(h.dir)
end

--- Decodes standard base64 (with padding).
function M.base64_decode(s)
  local tab = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
  local val = {}
  for i = 1, 64 do val[tab:sub(i, i)] = i - 1 end
  local out = {}
  for quad in s:gmatch("....") do
    local a, b, c, d = quad:byte(1, 4)
    a, b = val[string.char(a)], val[string.char(b)]
    c = c ~= 61 and val[string.char(c)] or nil
    d = d ~= 61 and val[string.char(d)] or nil
    local v = a << 18 | b << 12 | (c or 0) << 6 | (d or 0)
    out[#out + 1] = string.char(v >> 16 & 255)
    if c then out[#out + 1] = string.char(v >> 8 & 255) end
    if d then out[#out + 1] = string.char(v & 255) end
  end
  return table.concat(out)
end

--- `topic list --json` of data directory dir, decoded, by topic name.
-- Fails the test when the command fails.
function M.topics(dir)
  local r = M.run({ "--data", dir, "topic", "list", "--json" })
  assert(r.code == 0 and r.err == "",
         "topic list failed: " .. tostring(r.code) .. " " .. tostring(r.err))
  local t = {}
  for _, o in ipairs(M.json_lines(r.out)) do t[o.name] = o end
  return t
end

--- An app in a fresh temporary directory, removed when the test ends:
-- eddy.lua holds app_text, and files maps paths (relative to the app's
-- directory, theirs made as needed) to texts.
-- @tparam function fin busted's `finally`
-- @treturn table `{ dir =, file = DIR/eddy.lua, data = DIR/data }`
function M.app(fin, app_text, files)
  local dir = M.tmpdir()
  M.defer(fin, function() M.rmdir(dir) end)
  M.write(dir .. "/eddy.lua", app_text)
  for name, text in pairs(files or {}) do
    local file = dir .. "/" .. name
    os.execute("mkdir -p " .. M.quote(path.dirname(file)))
    M.write(file, text)
  end
  return { dir = dir, file = dir .. "/eddy.lua", data = dir .. "/data" }
end

--- Runs eddy on app's data directory (`--data app.data` and the
-- arguments); fails the test unless it exits 0.  Returns its stdout.
function M.eddy_ok(app, ...)
  local r = M.run({ "--data", app.data, ... })
  assert(r.code == 0, table.concat({ ... }, " ") .. ": " .. r.err)
  return r.out
end

--- Consumer c's state in data directory dir: key -> value.
function M.state(dir, c)
  local r = M.run({ "--data", dir, "state", "list", c, "--json" })
  assert(r.code == 0, "state list failed: " .. r.err)
  local out = {}
  for _, o in ipairs(M.json_lines(r.out)) do out[o.key] = o.value end
  return out
end

--- The entries of `dlq list --json` in data directory dir, decoded.
function M.dlq(dir)
  local r = M.run({ "--data", dir, "dlq", "list", "--json" })
  assert(r.code == 0, "dlq list failed: " .. r.err)
  return M.json_lines(r.out)
end

--- Every message of topic in dir, `tail --from-beginning --json`, decoded.
function M.messages(dir, topic, extra)
  local args = { "--data", dir, "tail", topic, "--from-beginning", "--json" }
  for _, a in ipairs(extra or {}) do args[#args + 1] = a end
  local r = M.run(args)
  assert(r.code == 0 and r.err == "",
         "tail failed: " .. tostring(r.code) .. " " .. tostring(r.err))
  return M.json_lines(r.out)
end

--- n lines "<prefix>1" ... "<prefix>n", each ending in a newline.
function M.numbered_lines(prefix_, n)
  local t = {}
  for i = 1, n do t[i] = prefix_ .. i end
  return table.concat(t, "\n") .. "\n"
end

--- The bytes of s as hex digits, two per byte.
function M.hex(s)
  return (s:gsub(".", function(c) return string.format("%02x", c:byte()) end))
end

--- The bytes that hex digits h spell (the inverse of `M.hex`).
function M.unhex(h)
  return (h:gsub("%x%x", function(x) return string.char(tonumber(x, 16)) end))
end

--- The number of file descriptors process pid holds open (/proc/PID/fd).
function M.open_fds(pid)
  local lfs = require "lfs"
  local n = 0
  for name in lfs.dir("/proc/" .. pid .. "/fd") do
    if name ~= "." and name ~= ".." then n = n + 1 end
  end
  return n
end

-- The socket client the specs drive (test/holdconn.c).
local HOLDCONN = (os.getenv("EDDY_MODULE_BUILD") or os.getenv("EDDY_BUILD") or "build") ..
                 "/holdconn"

--- Opens count connections to address (`tcp:HOST:PORT` or `unix:PATH`),
-- writes data (bytes, default none) on each and holds them until the
-- server closes them, for at most seconds; in the background.  Returns a
-- handle for `M.held` (and `M.cleanup`).
function M.hold(address, count, seconds, data)
  local argv = { HOLDCONN, address, tostring(count), tostring(seconds) }
  if data and data ~= "" then argv[5] = M.hex(data) end
  return M.spawn_cmd(argv)
end

-- The report of holdconn's output text (see `M.held`).
local function holdconn_report(text)
  local r = { closed = {} }
  for _, line in ipairs(M.lines(text)) do
    local how, i, ms, got = line:match("^(%a+) (%d+) (%d+) (%S+)$")
    if how == "closed" or how == "reset" then
      r.closed[#r.closed + 1] = { i = tonumber(i), ms = tonumber(ms), reset = how == "reset",
                                  got = got == "-" and "" or M.unhex(got) }
    elseif line:match("^open %d+$") then
      r.open = tonumber(line:match("%d+"))
    elseif line:match("^timeout %d+$") then
      r.timeout = tonumber(line:match("%d+"))
    else
      r.error = (r.error and r.error .. "\n" or "") .. line
    end
  end
  return r
end

--- What the connections of a `M.hold` handle saw so far: `{ open = N once
-- all were made, closed = { { i =, ms =, reset = boolean, got = bytes },
-- ... } in the order the server closed them, timeout = N still open when
-- its time ran out, error = text }`.
function M.held(h)
  return holdconn_report(M.read(h.out))
end

--- Sends the bytes request on one connection to address and returns what
-- the server answered before it closed the connection, and how many
-- milliseconds that took; fails the test when it did not close it within
-- seconds (default 20).
function M.ask(address, request, seconds)
  local r = M.exec({ HOLDCONN, address, "1", tostring(seconds or 20), M.hex(request) })
  local c = holdconn_report(r.out).closed[1]
  assert(r.code == 0 and c, "no answer to " .. string.format("%q", request:sub(1, 80)) ..
         ": " .. tostring(r.out) .. tostring(r.err))
  return c.got, c.ms
end

return M
