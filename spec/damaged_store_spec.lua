--- A store damaged by something outside eddy says what is wrong with it,
-- naming the file: damaged pages, a truncated file, a file that is not
-- SQLite, an empty file, another program's database.  Every command fails
-- with exit status 1 and one line on stderr, prints nothing on stdout
-- before it, and leaves the file as it was.
local H = require "helpers"

local function defer(fn) H.defer(finally, fn) end

local PAGE = 4096
local MESSAGES = 20000
local RESTORE = "restore it from a backup, or save what is readable with sqlite3's .recover"

--- Runs the sqlite3 CLI (not eddy: without the sanitizers' LD_PRELOAD).
local function sqlite3(db, sql)
  local r = H.exec({ "sqlite3", db, sql }, { unset = { "LD_PRELOAD" } })
  assert(r.code == 0, r.err)
  return r.out
end

--- Writes an app in dir: consumer c on topic q sets its state per message
-- and quarantines "bad"; consumer d on t (in d.lua, only in dir/all.lua)
-- reads the big topic.
local function apps(dir)
  H.write(dir .. "/c.lua", [[
local eddy = require "eddy"
return eddy.consumer { name = "c", topics = "q", retry = { attempts = 1 },
  handle = function(msg, ctx)
    if msg.value == "bad" then error(eddy.permanent("bad value")) end
    ctx.state:set(msg.value, 1)
  end }
]])
  H.write(dir .. "/d.lua", [[
local eddy = require "eddy"
return eddy.consumer { name = "d", topics = "t", handle = function() end }
]])
  H.write(dir .. "/q.lua", "return { data = 'data', handlers = { 'c.lua' }, topics = { q = {} } }\n")
  H.write(dir .. "/all.lua", "return { data = 'data', handlers = { 'c.lua', 'd.lua' },\n" ..
                             "  topics = { q = {}, t = {} } }\n")
end

local seed

--- A data directory holding a store of topic t (MESSAGES messages in one
-- partition, "m00001"...), topic q with "good" (handled: state of
-- consumer c) and "bad" (quarantined: dlq entry 1).  Made once, copied for
-- each test.  Returns { dir, data, db }.
local function store()
  if not seed then
    local dir = H.tmpdir()
    apps(dir)
    local data = dir .. "/data"
    for _, args in ipairs({ { "topic", "create", "t" }, { "topic", "create", "q" },
                            { "produce", "q", "good" }, { "produce", "q", "bad" } }) do
      local r = H.run({ "--data", data, table.unpack(args) })
      assert(r.code == 0, r.err)
    end
    local r = H.run({ "--data", data, "produce", "t" },
                    { stdin = H.numbered_lines("m", MESSAGES):gsub("m(%d+)", function(n)
                      return string.format("m%05d %s", tonumber(n), string.rep("x", 80)) end) })
    assert(r.code == 0, r.err)
    r = H.run({ "run", dir .. "/q.lua", "--drain" })
    assert(r.code == 0, r.err)
    seed = dir
  end
  local dir = H.tmpdir()
  defer(function() H.rmdir(dir) end)
  assert(os.execute("cp -a " .. H.quote(seed) .. "/. " .. H.quote(dir)))
  return { dir = dir, data = dir .. "/data", db = dir .. "/data/eddy.db" }
end

--- Garbage for one page, different for each page number.
local function garbage(pageno)
  local t = {}
  for i = 1, PAGE do t[i] = string.char((i * 7919 + pageno * 104729 + 13) % 256) end
  return table.concat(t)
end

--- Overwrites pages (a list of page numbers, from 1) of file with garbage.
local function overwrite(file, pages)
  local f = assert(io.open(file, "r+b"))
  for _, p in ipairs(pages) do
    assert(f:seek("set", (p - 1) * PAGE))
    assert(f:write(garbage(p)))
  end
  assert(f:close())
end

--- Every command a user may run on the store, each a list of arguments
-- (with stdin where it reads it).
local function commands(s)
  return {
    { "topic", "list" }, { "topic", "list", "--json" }, { "tail", "t" },
    { "tail", "t", "--from-beginning" }, { "tail", "t", "--from-beginning", "--json" },
    { "produce", "t", "x" }, { "produce", "t", stdin = "a\nb\n" },
    { "state", "list", "c" }, { "state", "get", "c", "good" }, { "dlq", "list" },
    { "dlq", "show", "1" }, { "dlq", "replay", "--all" }, { "topic", "trim" },
    { "topic", "alter", "t", "--retention", "7d" }, { "topic", "create", "u" },
    { "saga", "list" }, { "saga", "show", "x" }, { "trace", "x" },
    { "run", s.dir .. "/all.lua", "--drain" },
  }
end

--- Runs args on s; returns { code, out, err }.
local function eddy(s, args)
  local argv = { "--data", s.data }
  for _, a in ipairs(args) do argv[#argv + 1] = a end
  return H.run(argv, { stdin = args.stdin, cwd = s.dir })
end

--- The command's name as its messages start ("eddy topic list").
local function name(args)
  if args[1] == "topic" or args[1] == "state" or args[1] == "dlq" or args[1] == "saga" then
    return "eddy " .. args[1] .. " " .. args[2]
  end
  return "eddy " .. args[1]
end

--- Asserts args fails on s with exit status 1, nothing on stdout, and
-- message as the last line of stderr (eddy run logs before it) or all of
-- it (every other command).
local function fails(s, args, message)
  local r = eddy(s, args)
  local what = table.concat(args, " ")
  assert.equal(1, r.code, what .. ": " .. r.err)
  assert.equal("", r.out, what .. " printed before failing")
  if args[1] == "run" then
    local lines = H.lines(r.err)
    assert.equal(name(args) .. ": " .. message, lines[#lines], what)
  else
    assert.equal(name(args) .. ": " .. message .. "\n", r.err, what)
  end
end

--- Asserts every command fails on s with message and leaves the file as
-- it was, with no WAL left beside it.
local function all_fail(s, message)
  local before = H.read(s.db)
  for _, args in ipairs(commands(s)) do fails(s, args, message) end
  assert.is_true(H.read(s.db) == before, s.db .. " was changed")
  assert.is_false(H.exists(s.db .. "-wal"))
end

describe("a damaged store", function()
  teardown(function() if seed then H.rmdir(seed) end end)

  it("with garbage over pages in the middle of the log: what reads them fails, " ..
     "naming the file, before printing; the rest works", function()
    local s = store()
    -- The leaves of the messages table in key order: the middle third
    -- holds messages from the middle of the partition.
    local leaves = H.lines(sqlite3(s.db, "SELECT pageno FROM dbstat WHERE name = 'messages'" ..
                                         " AND pagetype = 'leaf' ORDER BY path"))
    assert.is_true(#leaves > 300, "only " .. #leaves .. " leaf pages")
    local pages = {}
    for i = #leaves // 3, 2 * #leaves // 3 do pages[#pages + 1] = tonumber(leaves[i]) end
    overwrite(s.db, pages)
    local msg = "'" .. s.db .. "' is damaged (database disk image is malformed): " .. RESTORE
    local before = H.read(s.db)
    -- A listing from the start meets the damage: it prints nothing at all.
    fails(s, { "tail", "t", "--from-beginning" }, msg)
    fails(s, { "tail", "t", "--from-beginning", "--json" }, msg)
    fails(s, { "tail", "t", "--from-beginning", "--follow" }, msg)
    -- What does not read those pages works.
    local r = eddy(s, { "tail", "t", "--limit", "2" })
    assert.same({ 0, "", string.format("[t/0@%d] m%05d %s\n[t/0@%d] m%05d %s\n", MESSAGES - 2,
                                       MESSAGES - 1, string.rep("x", 80), MESSAGES - 1, MESSAGES,
                                       string.rep("x", 80)) },
                { r.code, r.err, r.out })
    assert.equal(MESSAGES, H.topics(s.data).t.messages)
    assert.same({ 0, "good\t1\n" }, { eddy(s, { "state", "list", "c" }).code,
                                       eddy(s, { "state", "list", "c" }).out })
    assert.equal(2, #H.lines(eddy(s, { "dlq", "list" }).out))
    assert.is_true(H.read(s.db) == before, "a reader changed " .. s.db)
    -- A consumer that reads the log from the start stops there, saying so.
    fails(s, { "run", s.dir .. "/all.lua", "--drain" }, msg)
  end)

  it("with every page but the first overwritten: every command fails before printing", function()
    local s = store()
    local size = #H.read(s.db)
    local pages = {}
    for p = 2, size // PAGE do pages[#pages + 1] = p end
    overwrite(s.db, pages)
    all_fail(s, "'" .. s.db .. "' is damaged (database disk image is malformed): " .. RESTORE)
  end)

  it("that is truncated says how short it is", function()
    local s = store()
    local size = #H.read(s.db)
    local half = size // 2 // PAGE * PAGE
    H.write(s.db, H.read(s.db):sub(1, half))
    all_fail(s, string.format("'%s' is damaged (truncated: %d bytes, its header says %d): %s",
                              s.db, half, size, RESTORE))
  end)

  it("that is not SQLite at all says so", function()
    local s = store()
    H.write(s.db, garbage(1):rep(8))
    all_fail(s, "'" .. s.db .. "' is not a database (it lacks SQLite's header): " ..
                "restore the store from a backup, or move the file away")
  end)

  it("that is another program's SQLite database is not an eddy store", function()
    local s = store()
    os.remove(s.db)
    sqlite3(s.db, "CREATE TABLE x(a); INSERT INTO x VALUES(42);")
    all_fail(s, "'" .. s.db .. "' is not an eddy store (it is a database of another program)")
    assert.equal("42\n", sqlite3(s.db, "SELECT a FROM x"))
  end)

  it("that is an empty file is no store for a command that reads or writes one; " ..
     "topic create makes it one", function()
    local s = store()
    H.write(s.db, "")
    local msg = "no eddy store in '" .. s.data .. "' ('" .. s.db .. "' is empty)"
    for _, args in ipairs(commands(s)) do
      if args[2] ~= "create" and args[1] ~= "run" then fails(s, args, msg) end
    end
    assert.equal("", H.read(s.db))
    local r = eddy(s, { "topic", "create", "u" })
    assert.same({ 0, "created topic 'u' with 1 partition\n" }, { r.code, r.out })
    assert.same({ "u" }, (function()
      local names = {}
      for n in pairs(H.topics(s.data)) do names[#names + 1] = n end
      return names
    end)())
  end)
end)
