--- eddy.app: loading an app file and its handler files.
--
-- An app file (`eddy.lua` by default, the caller's choice) is a Lua chunk
-- returning a table:
--
--    return {
--      data = "./data",                 -- the store's directory
--      workers = 2,                     -- handler threads
--      handlers = { "handlers/" },      -- handler files or directories
--      topics = { orders = { partitions = 4 } },
--    }
--
-- A handler file returns one consumer (`eddy.consumer{...}`) or a list of
-- them.  `load` checks the app and every handler and returns them
-- normalized; `load_handlers` loads handler files alone, as each worker
-- does in its own Lua state.
--
-- Every expected failure (a missing file, a syntax error, a mistake in a
-- definition) returns `nil, message`: one line that names the file and the
-- problem, e.g. `"handlers/count.lua:5: consumer 'c': 'handle' is missing
-- (a function(msg, ctx))"`.  Misuse of the functions themselves raises.
--
-- @module eddy.app

local core = require "eddy.core"
local eddy = require "eddy"
local catalog = require "eddy.catalog"

-- Kept from the stock libraries when this module loads: in a sandbox,
-- handler code has neither io (strict files) nor debug.sethook.
local io, debug, load, package = io, debug, load, package
-- In a sandbox (runtime/sandbox.c): line tracking under its count hook,
-- and strict environments.  Elsewhere (eddy's command-line tools): nil.
local has_sandbox, sandbox = pcall(require, "eddy.sandbox")
if not has_sandbox then sandbox = nil end

local M = {}

local MAX_WORKERS = 64
local DEFAULT_WORKERS = 2
local DEFAULT_DATA = "./data"
local MAX_PARTITIONS = 4096                   -- EDDY_MAX_PARTITIONS
local MAX_MESSAGE_BYTES = 256 * 1024 * 1024   -- EDDY_LIMIT_MAX_MESSAGE_BYTES

-- admin, broker and kafka are read by later parts of eddy; they are
-- accepted here and passed on untouched.
local APP_OPTIONS = { "data", "workers", "handlers", "events", "topics", "dedupe_window",
                      "admin", "admin_public", "broker", "kafka", "sandbox" }
local TOPIC_OPTIONS = { "partitions", "retention", "retention_bytes",
                        "max_message_bytes" }
local LOAD_OPTIONS = { "data", "strict_files" }

local HINT = "(return eddy.consumer{...} or a list of them)"
local APP_HINT = "(return { handlers = { ... }, ... })"

local got = eddy._got
local integer = eddy._integer

-- "a table", "a string" ...; "nothing" for nil.
local function a_type(v)
  if v == nil then return "nothing" end
  return "a " .. type(v)
end

-- Quotes s for sh(1).
local function shell_quote(s)
  return "'" .. s:gsub("'", "'\\''") .. "'"
end

--- The names in directory dir (without "." and ".."), in no particular
-- order, or `nil, message`.
--
-- `eddy.core.listdir(dir)` does it when the C module has it (same
-- contract); until then `ls -1A` through `io.popen` does.  The fallback
-- cannot see names holding a newline: such a name shows as two names,
-- which then fail to open with a clear message rather than being skipped.
-- @function listdir
-- @tparam string dir
-- @treturn {string,...} the names
-- @return or `nil, message`
local function listdir(dir)
  if core.listdir then return core.listdir(dir) end
  local ok, p = pcall(io.popen, "LC_ALL=C ls -1A -- " .. shell_quote(dir) .. " 2>/dev/null")
  if not ok or not p then return nil, "cannot run ls" end
  local names = {}
  for name in p:lines() do names[#names + 1] = name end
  local closed, _, status = p:close()
  if not closed then return nil, "ls exited with status " .. tostring(status) end
  return names
end
M.listdir = listdir

-- Byte-wise order, whatever the C locale's collation (`<` on strings uses
-- strcoll), so that every Lua state sorts file names the same way.
local function bytewise(a, b)
  for i = 1, math.min(#a, #b) do
    local x, y = a:byte(i), b:byte(i)
    if x ~= y then return x < y end
  end
  return #a < #b
end

-- "file" or "directory" for an existing path; nil, message, errno when
-- it cannot be opened.  A directory is what "p/." can be opened as.
local function kind(p)
  local f, err, code = io.open(p, "rb")
  if not f then return nil, err, code end
  f:close()
  local d = io.open(p .. "/.", "rb")
  if d then
    d:close()
    return "directory"
  end
  return "file"
end

-- The directory of a file path: "." for a bare name.
local function dirname(p)
  local dir = p:match("^(.*)/[^/]*$")
  if dir == nil then return "." end
  dir = dir:gsub("/+$", "")
  if dir == "" then return "/" end
  return dir
end

-- p resolved against dir: p itself when absolute or when dir is ".",
-- else dir/p without p's leading "./".
local function join(dir, p)
  if p:sub(1, 1) == "/" or dir == "." then return p end
  while p:sub(1, 2) == "./" do p = p:sub(3):gsub("^/+", "") end
  if p == "" or p == "." then return dir end
  if dir:sub(-1) == "/" then return dir .. p end
  return dir .. "/" .. p
end

-- The reason io.open gave for path ("No such file or directory"), without
-- the path it starts with.
local function reason(path, err)
  local prefix = path .. ": "
  if err:sub(1, #prefix) == prefix then return err:sub(#prefix + 1) end
  return err
end

-- How Lua shows a chunk named "@file" in messages: the name itself, or
-- "..." and its end when it is long.
local function short_src(file)
  return debug.getinfo(load("return", "@" .. file), "S").short_src
end

-- msg with a leading "<short_src>:" replaced by "<file>:", so that a long
-- path is shown in full.
local function full_position(msg, file)
  local short = short_src(file)
  if short ~= file and msg:sub(1, #short + 1) == short .. ":" then
    return file .. msg:sub(#short + 1)
  end
  return msg
end

-- One line: no traceback, newlines folded.
local function one_line(msg)
  local cut = msg:find("\nstack traceback:", 1, true)
  if cut then msg = msg:sub(1, cut - 1) end
  return (msg:gsub("%s*\n%s*", " "))
end

-- Reads a whole file; nil, reason when it cannot.
local function read_file(path)
  local f, err = io.open(path, "rb")
  if not f then return nil, reason(path, err) end
  local text, rerr = f:read("a")
  f:close()
  if not text then return nil, reason(path, rerr) end
  return text
end

-- Compiles the text of file as loadfile would: a UTF-8 byte order mark
-- and a first line starting with '#' are skipped (line numbers kept).
-- Text only: a precompiled chunk is refused.  env: the chunk's global
-- environment (nil: the state's).
local function compile(text, file, env)
  text = text:gsub("^\239\187\191", "")
  if text:sub(1, 1) == "#" then text = text:gsub("^[^\n]*", "", 1) end
  local fn, err
  if env then fn, err = load(text, "@" .. file, "t", env)
  else fn, err = load(text, "@" .. file, "t") end
  if not fn then
    err = full_position(one_line(err), file)
    if err:sub(1, #file + 1) ~= file .. ":" then err = file .. ": " .. err end
    return nil, err
  end
  return fn
end

local Caught = {}  -- the metatable of what run's message handler returns

-- Runs chunk fn of file.  Returns true and the packed results, or false
-- and a one-line message naming the file (and the line when known).
--
-- The line: the innermost frame of file on the stack when the error was
-- raised.  `return eddy.consumer{...}` is a tail call, which removes the
-- chunk's frame, so a line hook also notes the last line of file that
-- ran: the sandbox's own, where there is one (its count hook must stay);
-- else a Lua hook, set only when the thread has none: a host's hook is
-- never replaced; without ours, such errors name the file alone.
local function run(fn, file)
  local source = "@" .. file
  local last_line
  local hooked = not sandbox and debug.gethook() == nil
  if sandbox then
    sandbox.track(source)
  elseif hooked then
    debug.sethook(function(_, line)
      if debug.getinfo(2, "S").source == source then last_line = line end
    end, "l")
  end
  local r = table.pack(xpcall(fn, function(e)
    local line
    for level = 2, math.huge do
      local info = debug.getinfo(level, "Sl")
      if not info then break end
      if info.source == source and info.currentline > 0 then
        line = info.currentline
        break
      end
    end
    if sandbox then last_line = sandbox.line() end
    return setmetatable({ value = e, line = line or last_line }, Caught)
  end))
  if sandbox then sandbox.untrack() end
  if hooked then debug.sethook() end
  if r[1] then return true, table.pack(table.unpack(r, 2, r.n)) end

  local e = r[2]
  -- Lua calls no message handler for a memory error, and gives its own
  -- message for an error in the handler.
  if getmetatable(e) ~= Caught then e = { value = e } end
  local value = e.value
  local mt = getmetatable(value)
  if type(value) == "string" or math.type(value) then
    local msg = full_position(one_line(tostring(value)), file)
    if msg:sub(1, #file + 1) == file .. ":" then return false, msg end
    return false, file .. (e.line and ":" .. e.line or "") .. ": " .. msg
  end
  local what
  if value == nil then
    what = "(error object is nil)"
  elseif type(mt) == "table" and mt.__tostring then
    local ok, s = pcall(tostring, value)
    what = ok and type(s) == "string" and one_line(s) or "a " .. type(value) .. " value"
  else
    what = "a " .. type(value) .. " value"
  end
  return false, file .. ": error while loading: " .. what
end

-- The length of t when it is a plain table whose keys are all positive
-- integers (a list, maybe with holes: the largest key), else nil.
local function list_length(t)
  if getmetatable(t) ~= nil then return nil end
  local max = 0
  for k in pairs(t) do
    if math.type(k) ~= "integer" or k < 1 then return nil end
    if k > max then max = k end
  end
  return max
end

-- Loads one handler file: its consumers, its version; or nil, message.
-- A file may also return event declarations (eddy.event), alone or among
-- its consumers, or return nothing when it declared events.  strict: the
-- file runs in a strict environment of its own.
local function load_handler(file, strict)
  local text, why = read_file(file)
  if not text then return nil, "cannot open handler '" .. file .. "': " .. why end
  local fn, err = compile(text, file, strict and sandbox and sandbox.strict_env() or nil)
  if not fn then return nil, err end
  local before = #catalog.declared()
  catalog.loading = file
  local ok, res = run(fn, file)
  catalog.loading = nil
  if not ok then return nil, res end
  if res.n > 1 then
    return nil, string.format("%s: returns %d values, not a consumer %s", file, res.n, HINT)
  end
  local v = res[1]
  if eddy.is_consumer(v) then return { v }, core.hash(text) end
  if catalog.is_event(v) or (v == nil and #catalog.declared() > before) then
    return {}, core.hash(text)
  end
  local n = type(v) == "table" and list_length(v)
  if not n then
    return nil, string.format("%s: returns %s, not a consumer %s", file, a_type(v), HINT)
  end
  if n == 0 then
    return nil, string.format("%s: returns an empty list, not a consumer %s", file, HINT)
  end
  local list = {}
  for i = 1, n do
    if eddy.is_consumer(v[i]) then
      list[#list + 1] = v[i]
    elseif not catalog.is_event(v[i]) then
      local item = v[i] == nil and "nil" or a_type(v[i])
      return nil, string.format("%s: item %d is %s, not a consumer", file, i, item)
    end
  end
  return list, core.hash(text)
end

-- Checks the sandbox the consumers of file ask for against the one it was
-- loaded in.  Returns true when the file must run strict, or nil and a
-- message.  A file is strict when the app is, or when one of its
-- consumers asks: its other consumers share its environment, so none of
-- them may ask for the default one.
local function file_sandbox(file, list, strict, app_strict)
  local asks_strict, asks_default
  for _, c in ipairs(list) do
    if c.sandbox == "strict" then asks_strict = asks_strict or c.name end
    if c.sandbox == "default" then asks_default = asks_default or c.name end
  end
  if asks_default and app_strict then
    return nil, string.format("%s: consumer '%s': sandbox \"default\" cannot loosen the " ..
                              "app's sandbox = \"strict\"", file, asks_default)
  end
  if asks_default and asks_strict then
    return nil, string.format("%s: consumer '%s' asks for sandbox \"default\" but shares " ..
                              "its file with '%s', which asks for \"strict\": put them in " ..
                              "files of their own", file, asks_default, asks_strict)
  end
  return (strict or asks_strict) and true or false
end

--- Loads handler files: each returns one consumer or a list of them.
--
-- Each file is read, compiled and run in a protected call, in this Lua
-- state and its global environment (a strict one of its own for a file
-- in strict).  This depends on nothing but the files, so that every
-- worker can load the same list in its own state and get the same
-- consumers in the same order.
-- @tparam {string,...} files paths of handler files, in load order
-- @treturn {table,...} the consumers: the files' in order, each file's in
--   the order it lists them.  Each is a copy of what `eddy.consumer`
--   made, plus `file` (the path as given in files), `version`
--   (`eddy.core.hash` of the file's text) and `index` (its position in
--   this list).
-- @return or `nil, message`, e.g. `"handlers/x.lua: returns a number, not
--   a consumer (return eddy.consumer{...} or a list of them)"`,
--   `"handlers/b.lua: consumer 'c' is already defined in handlers/a.lua"`
-- @tparam[opt] boolean keep_events keep the events declared before
-- @tparam[opt] table|boolean strict the files to load in the strict
--   sandbox, as a set (`{ [file] = true }`), or true for all of them.
--   Each consumer gets `sandbox`, "strict" or "default": what it runs in.
--   A file loaded outside it whose consumer asks for it is listed in the
--   list's `restrict` field: load again with it in strict.
-- @raise when files is not a list of strings
function M.load_handlers(files, keep_events, strict)
  if not keep_events then catalog.reset() end
  if type(files) ~= "table" then
    error("load_handlers: 'files' must be a list of paths, got " .. type(files), 2)
  end
  for i = 1, #files do
    if type(files[i]) ~= "string" then
      error("load_handlers: files[" .. i .. "] must be a string, got " .. type(files[i]), 2)
    end
  end
  local consumers, defined_in = {}, {}
  for _, file in ipairs(files) do
    local file_strict = strict == true or (type(strict) == "table" and strict[file] == true)
    local list, version = load_handler(file, file_strict)
    if not list then return nil, version end
    local runs_strict, serr = file_sandbox(file, list, file_strict, strict == true)
    if runs_strict == nil then return nil, serr end
    if runs_strict and not file_strict then
      consumers.restrict = consumers.restrict or {}
      consumers.restrict[#consumers.restrict + 1] = file
    end
    for _, c in ipairs(list) do
      if defined_in[c.name] then
        return nil, string.format("%s: consumer '%s' is already defined in %s", file,
                                  c.name, defined_in[c.name])
      end
      defined_in[c.name] = file
      local copy = {}
      for k, v in pairs(c) do copy[k] = v end
      copy.file, copy.version, copy.index = file, version, #consumers + 1
      copy.sandbox = runs_strict and "strict" or "default"
      consumers[#consumers + 1] = setmetatable(copy, eddy.Consumer)
    end
  end
  catalog.note_consumers(consumers)
  return consumers
end

-- A mistake in the app: raised by the checks below as a table holding the
-- message, caught by `load`, which returns it.
local Failure = {}

local function fail(msg)
  error(setmetatable({ msg = msg }, Failure), 0)
end

-- msg with its control characters written as escapes (\n, \t, \x01), so
-- that a value holding a newline (a path, say) keeps the message on one
-- line and shows exactly what the app says.
local ESCAPES = { ["\n"] = "\\n", ["\r"] = "\\r", ["\t"] = "\\t" }
local function escape_controls(msg)
  return (msg:gsub("%c", function(c) return ESCAPES[c] or string.format("\\x%02x", c:byte()) end))
end

local function check_keys(prefix, what, t, known)
  local bad = eddy._unknown_key(t, known)
  if bad ~= nil then fail(prefix .. eddy._unknown_option(what, bad, known)) end
end

-- A duration in ms; "forever" is -1 (keep messages forever).
local function topic_duration(p, field, v)
  if v == nil then return nil end
  if v == "forever" then return -1 end
  local ms = eddy._duration_ms(v)
  if ms then return ms end
  if type(v) == "string" then
    fail(p .. field .. " '" .. v .. "' is not a duration (e.g. 12h, 7d or 'forever')")
  end
  fail(p .. field .. " must be a duration (e.g. 12h, 7d or 'forever') or a number of" ..
       " milliseconds, got " .. got(v))
end

-- A size in bytes; "unlimited" is -1 when allowed.
local function topic_size(p, field, v, unlimited)
  if v == nil then return nil end
  if unlimited and v == "unlimited" then return -1 end
  local n = eddy._size_bytes(v)
  if n then return n end
  local eg = unlimited and "(e.g. 512MiB, 1GiB or 'unlimited')" or "(e.g. 512KiB, 1MiB)"
  if type(v) == "string" then fail(p .. field .. " '" .. v .. "' is not a size " .. eg) end
  fail(p .. field .. " must be a size " .. eg .. " or a number of bytes, got " .. got(v))
end

local function check_topics(p, topics)
  if topics == nil then return {} end
  if type(topics) ~= "table" then
    fail(p .. "'topics' must be a table (name = { partitions = N }), got " .. type(topics))
  end
  local names = {}
  for name in pairs(topics) do
    if type(name) ~= "string" then
      fail(p .. "'topics' must map topic names to settings (orders = { partitions = 4 })," ..
           " found item [" .. tostring(name) .. "]")
    end
    names[#names + 1] = name
  end
  table.sort(names, bytewise)  -- the first mistake reported is always the same one
  local out = {}
  for _, name in ipairs(names) do
    local problem = eddy._topic_name_problem(name)
    if problem then fail(p .. "topic name '" .. name .. "' " .. problem) end
    local t = topics[name]
    if type(t) ~= "table" then
      fail(p .. "topic '" .. name .. "' must be a table ({ partitions = N }), got " .. type(t))
    end
    local tp = p .. "topic '" .. name .. "': "
    check_keys(tp, "option", t, TOPIC_OPTIONS)
    local partitions = 1
    if t.partitions ~= nil then
      partitions = integer(t.partitions)
      if not partitions or partitions < 1 or partitions > MAX_PARTITIONS then
        fail(tp .. "partitions must be an integer from 1 to " .. MAX_PARTITIONS ..
             ", got " .. got(t.partitions))
      end
    end
    local max_bytes = topic_size(tp, "max_message_bytes", t.max_message_bytes, false)
    if max_bytes and (max_bytes < 1 or max_bytes > MAX_MESSAGE_BYTES) then
      fail(tp .. "max_message_bytes must be from 1 byte to 256MiB, got " ..
           got(t.max_message_bytes))
    end
    out[name] = {
      partitions = partitions,
      retention_ms = topic_duration(tp, "retention", t.retention),
      retention_bytes = topic_size(tp, "retention_bytes", t.retention_bytes, true),
      max_message_bytes = max_bytes,
    }
  end
  return out
end

-- The files named by the 'handlers' (or 'events') list, resolved against
-- dir, and the directories among its entries.
local function handler_files(p, dir, handlers, opt)
  opt = opt or "handlers"
  local noun = opt == "handlers" and "handler" or "events"
  if handlers == nil then return {}, {} end
  if type(handlers) == "string" then handlers = { handlers } end
  if type(handlers) ~= "table" then
    fail(p .. "'" .. opt .. "' must be a list of " .. noun .. " files or directories, got " ..
         type(handlers))
  end
  for k in pairs(handlers) do
    if math.type(k) ~= "integer" or k < 1 then
      fail(p .. "'" .. opt .. "' must be a list of " .. noun .. " files or directories, found key " ..
           (type(k) == "string" and "'" .. k .. "'" or "[" .. tostring(k) .. "]"))
    end
  end
  local files, seen, dirs = {}, {}, {}
  local function add(file)
    if seen[file] then fail(p .. noun .. " file '" .. file .. "' is listed twice") end
    seen[file] = true
    files[#files + 1] = file
  end
  -- Every entry is checked before any is looked for.
  for i = 1, #handlers do
    local entry = handlers[i]
    if type(entry) ~= "string" then
      fail(p .. opt .. "[" .. i .. "] must be a path (a string), got " .. type(entry))
    end
    if entry == "" then fail(p .. opt .. "[" .. i .. "] is empty") end
  end
  for _, entry in ipairs(handlers) do
    local path = join(dir, entry)
    local k, err, code = kind(path)
    if not k then
      if code == 2 or code == 20 then  -- ENOENT, ENOTDIR
        fail(p .. noun .. " path '" .. entry .. "' does not exist")
      end
      fail(p .. "cannot open " .. noun .. " path '" .. entry .. "': " .. reason(path, err))
    end
    if k == "file" then
      add(path)
    else
      dirs[#dirs + 1] = path
      local names, lerr = listdir(path)
      if not names then
        fail(p .. "cannot list " .. noun .. " directory '" .. entry .. "': " .. lerr)
      end
      local base = path:sub(-1) == "/" and path or path .. "/"
      local found = {}
      for _, name in ipairs(names) do
        -- Hidden files are skipped: editors leave ".#x.lua" and the like.
        if name:find("%.lua$") and name:sub(1, 1) ~= "." and kind(base .. name) == "file" then
          found[#found + 1] = name
        end
      end
      if #found == 0 then
        fail(p .. noun .. " directory '" .. entry .. "' has no .lua files")
      end
      table.sort(found, bytewise)
      for _, name in ipairs(found) do add(base .. name) end
    end
  end
  return files, dirs
end

-- The checked app of the table t returned by app file path.
local function check_app(path, t, opts)
  local p = path .. ": "
  if type(t) ~= "table" then
    fail(string.format("%sreturns %s, not an app %s", p, a_type(t), APP_HINT))
  end
  check_keys(p, "option", t, APP_OPTIONS)
  local dir = dirname(path)
  local app = { file = path, dir = dir }
  -- admin = "HOST:PORT", or { listen = "HOST:PORT", public = true }.
  local admin, public = t.admin, t.admin_public
  if type(admin) == "table" then
    check_keys(p .. "admin: ", "option", admin, { "listen", "public" })
    if public == nil then public = admin.public end
    admin = admin.listen
  end
  if admin ~= nil then
    if type(admin) ~= "string" or not admin:match("^.+:%d+$") then
      fail(p .. "'admin' must be HOST:PORT (e.g. \"127.0.0.1:9464\"), got " .. got(admin))
    end
    app.admin = admin
  end
  if public ~= nil and type(public) ~= "boolean" then
    fail(p .. "'admin_public' must be true or false, got " .. got(public))
  end
  app.admin_public = public == true
  if t.sandbox ~= nil and t.sandbox ~= "strict" and t.sandbox ~= "default" then
    fail(p .. "'sandbox' must be \"strict\" or \"default\", got " .. got(t.sandbox))
  end
  app.sandbox = t.sandbox or "default"
  if t.broker ~= nil then
    if type(t.broker) ~= "string" or not t.broker:match("^kafka://.") then
      fail(p .. "'broker' must be a kafka:// URL (kafka://HOST:PORT[,HOST:PORT...]), got " ..
           got(t.broker))
    end
    app.broker = t.broker
  end
  if t.kafka ~= nil then
    if type(t.kafka) ~= "table" then
      fail(p .. "'kafka' must be a table of librdkafka properties, got " .. type(t.kafka))
    end
    -- As a list of name, value strings, in name order.
    local names = {}
    for k, v in pairs(t.kafka) do
      if type(k) ~= "string" then
        fail(p .. "'kafka' property names must be strings, got " .. got(k))
      end
      local tv = type(v)
      if tv ~= "string" and tv ~= "number" and tv ~= "boolean" then
        fail(p .. "kafka property '" .. k .. "' must be a string, number or boolean, got " .. tv)
      end
      names[#names + 1] = k
    end
    table.sort(names)
    app.kafka = {}
    for _, k in ipairs(names) do
      app.kafka[#app.kafka + 1] = k
      local v = t.kafka[k]
      app.kafka[#app.kafka + 1] = math.type(v) == "float" and string.format("%.17g", v)
                                  or tostring(v)
    end
  end

  if opts.data ~= nil then
    app.data = opts.data
  else
    local data = t.data
    if data == nil then data = DEFAULT_DATA end
    if type(data) ~= "string" then
      fail(p .. "'data' must be a directory path (a string), got " .. type(data))
    end
    if data == "" then fail(p .. "'data' is empty") end
    app.data = join(dir, data)
  end

  local workers = DEFAULT_WORKERS
  if t.workers ~= nil then
    workers = integer(t.workers)
    if not workers or workers < 1 or workers > MAX_WORKERS then
      fail(p .. "'workers' must be an integer from 1 to " .. MAX_WORKERS .. ", got " ..
           got(t.workers))
    end
  end
  app.workers = workers
  app.dedupe_window_ms = 7 * 86400000
  if t.dedupe_window ~= nil then
    local ms = eddy._duration_ms(t.dedupe_window)
    if not ms or ms < 1000 then
      fail(p .. "'dedupe_window' must be a duration of at least 1s (e.g. 7d, 12h), got " ..
           got(t.dedupe_window))
    end
    app.dedupe_window_ms = ms
  end
  app.topics = check_topics(p, t.topics)
  app.handler_files, app.handler_dirs = handler_files(p, dir, t.handlers)
  -- Events files load like handler files (in every worker too), first.
  local files, edirs = handler_files(p, dir, t.events, "events")
  for _, f in ipairs(app.handler_files) do files[#files + 1] = f end
  app.handler_files = files
  for _, d in ipairs(edirs) do app.handler_dirs[#app.handler_dirs + 1] = d end
  return app
end

local load_app   -- below: the body of load

--- Loads an app file and every handler file it names.
--
-- Relative paths in the app (data, handlers) are taken from the app
-- file's directory.  A handlers entry that is a directory stands for the
-- `*.lua` files directly in it (hidden ones excepted), sorted by name.
-- Topics are only checked here, not looked up in the store.
-- @tparam string path the app file
-- @tparam[opt] table opts `{ data = DIR, strict_files = { path, ... } }`:
--   a data directory that overrides the app's (used as given, e.g. from
--   `--data`), and handler files to load in the strict sandbox (those the
--   last load listed in `restrict`)
-- @treturn table `{ file = path, dir =, data =, workers =, topics = { name
--   = { partitions =, retention_ms =, retention_bytes =, max_message_bytes
--   = } }, handler_files = { path, ... }, handler_dirs = { the
--   directories among the handlers entries }, consumers = { consumer, ... },
--   admin =, broker =, kafka =, sandbox = "strict"|"default", strict_files
--   = { path, ... }, restrict = nil | { path, ... } }`; consumers as
--   `load_handlers` returns them, for handler_files
-- @return or `nil, message`, e.g. `"cannot open app 'x/eddy.lua': No such
--   file or directory"`, `"eddy.lua: the app defines no consumers"`
-- @raise when path is not a string or opts is not a table of known options
function M.load(path, opts)
  if type(path) ~= "string" then
    error("load: 'path' must be a string, got " .. type(path), 2)
  end
  if opts == nil then opts = {} end
  if type(opts) ~= "table" then error("load: 'opts' must be a table, got " .. type(opts), 2) end
  for k in pairs(opts) do
    if k ~= "data" and k ~= "strict_files" then
      error("load: " .. eddy._unknown_option("option", k, LOAD_OPTIONS), 2)
    end
  end
  if opts.data ~= nil and type(opts.data) ~= "string" then
    error("load: opts.data must be a string, got " .. type(opts.data), 2)
  end
  if opts.strict_files ~= nil and type(opts.strict_files) ~= "table" then
    error("load: opts.strict_files must be a list of paths, got " .. type(opts.strict_files), 2)
  end
  -- Handlers may require modules kept beside the app, as they do in the
  -- workers (runtime/lctx.c); what they load is forgotten after, so that
  -- loading another app in this state runs its own modules.
  local saved_path, before = package.path, {}
  for name in pairs(package.loaded) do before[name] = true end
  local dir = dirname(path)
  package.path = dir .. "/?.lua;" .. dir .. "/?/init.lua;" .. package.path
  local r = table.pack(pcall(load_app, path, opts))
  package.path = saved_path
  for name in pairs(package.loaded) do
    if not before[name] then package.loaded[name] = nil end
  end
  if not r[1] then error(r[2], 0) end
  return table.unpack(r, 2, r.n)
end

-- The body of `load`, its arguments checked.
function load_app(path, opts)
  catalog.reset()
  local text, why = read_file(path)
  if not text then return nil, "cannot open app '" .. path .. "': " .. why end
  local fn, err = compile(text, path)
  if not fn then return nil, err end
  local ok, res = run(fn, path)
  if not ok then return nil, res end
  if res.n > 1 then
    return nil, string.format("%s: returns %d values, not an app %s", path, res.n, APP_HINT)
  end

  local checked, app = pcall(check_app, path, res[1], opts)
  if not checked then
    if getmetatable(app) == Failure then return nil, escape_controls(app.msg) end
    error(app, 0)
  end
  local strict = app.sandbox == "strict"
  if not strict and opts.strict_files then strict = eddy._set_of(opts.strict_files) end
  local consumers, lerr = M.load_handlers(app.handler_files, true, strict)
  if not consumers then return nil, lerr end
  -- The files that run strict; `restrict` lists those loaded outside the
  -- strict sandbox here (one of their consumers asked for it): the caller
  -- loads the app again, in a new state, with them in strict_files.
  app.restrict = consumers.restrict
  app.strict_files = {}
  local listed = {}
  for _, c in ipairs(consumers) do
    if c.sandbox == "strict" and not listed[c.file] then
      listed[c.file] = true
      app.strict_files[#app.strict_files + 1] = c.file
    end
  end
  if #consumers == 0 then return nil, path .. ": the app defines no consumers" end
  app.consumers = consumers
  -- The event catalog: what the app file and the files it loads declared.
  app.events = catalog.declared()
  app.catalog = catalog.dump(app.events)
  -- Topics a consumer needs made for it (a saga's own topic), unless the
  -- app declares them itself.
  for _, c in ipairs(consumers) do
    for name, t in pairs(c.declares or {}) do
      if not app.topics[name] then
        app.topics[name] = { partitions = t.partitions or 1 }
      end
    end
  end
  return app
end

return M
