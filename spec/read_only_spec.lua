--- A data directory eddy cannot write can still be read: tail, topic
-- list, state and dlq listings print what they print with write access,
-- and create nothing there; commands that write fail with one line naming
-- the directory.  The specs run as root, which permission bits do not
-- stop: the directory is made read-only by a read-only bind mount in a
-- mount namespace of the command's own (H.mounted), or the command runs
-- as nobody (setpriv).
local H = require "helpers"

local function defer(fn) H.defer(finally, fn) end

--- A data directory with topic t (2 partitions: "one" and "bad" in 0,
-- "two" in 1) that consumer c read: its state holds one and two, "bad" is
-- quarantined (dlq entry 1).  Returns { dir, app, data }.
local function seeded()
  local dir = H.tmpdir()
  defer(function() H.rmdir(dir) end)
  H.write(dir .. "/c.lua", [[
local eddy = require "eddy"
return eddy.consumer { name = "c", topics = "t", retry = { attempts = 1 },
  handle = function(msg, ctx)
    if msg.value == "bad" then error(eddy.permanent("bad value")) end
    ctx.state:set(msg.value, 1)
  end }
]])
  H.write(dir .. "/eddy.lua",
          "return { data = 'data', handlers = { 'c.lua' }, topics = { t = { partitions = 2 } } }\n")
  local s = { dir = dir, app = dir .. "/eddy.lua", data = dir .. "/data" }
  for _, args in ipairs({ { "topic", "create", "t", "-p", "2" }, { "produce", "t", "-p", "0", "one" },
                          { "produce", "t", "-p", "1", "two" }, { "produce", "t", "-p", "0", "bad" } }) do
    local r = H.run({ "--data", s.data, table.unpack(args) })
    assert(r.code == 0, r.err)
  end
  local r = H.run({ "run", s.app, "--drain" })
  assert(r.code == 0, r.err)
  return s
end

--- The commands that only read, each a list of arguments.
local READS = {
  { "tail", "t" }, { "tail", "t", "--from-beginning", "--json" }, { "topic", "list" },
  { "topic", "list", "--json" }, { "state", "list", "c" }, { "state", "list", "c", "--json" },
  { "state", "get", "c", "one" }, { "dlq", "list" }, { "dlq", "list", "--json" },
  { "dlq", "show", "1" }, { "saga", "list" },
}

--- The commands that write, each with the name its message starts with.
local function writes(s)
  return {
    { "eddy produce", { "produce", "t", "x" } },
    { "eddy produce", { "produce", "t", stdin = "a\nb\n" } },
    { "eddy topic create", { "topic", "create", "u" } },
    { "eddy topic alter", { "topic", "alter", "t", "--retention", "7d" } },
    { "eddy topic trim", { "topic", "trim" } },
    { "eddy dlq replay", { "dlq", "replay", "--all" } },
    { "eddy dlq purge", { "dlq", "purge", "1" } },
    { "eddy run", { "run", s.app, "--drain" } },
  }
end

--- args with "--data DATA" in front.
local function on(data, args)
  local t = { "--data", data, stdin = args.stdin }
  for _, a in ipairs(args) do t[#t + 1] = a end
  return t
end

--- What each command of list gives with write access: { code, out, err }.
local function with_write_access(s, list)
  local t = {}
  for i, args in ipairs(list) do t[i] = H.run(on(s.data, args), { stdin = args.stdin }) end
  return t
end

--- The names in dir (sorted), as ls -A lists them.
local function listing(dir)
  local r = H.exec({ "ls", "-A", dir }, { unset = { "LD_PRELOAD" } })
  assert(r.code == 0, r.err)
  return r.out
end

--- Makes the data directory 0555 and its store 0444, as an operator would
-- hand it out for reading.
local function chmod_read_only(s)
  assert(os.execute("chmod 0444 " .. H.quote(s.data .. "/eddy.db") .. " && chmod 0555 " ..
                    H.quote(s.data)))
  defer(function() os.execute("chmod 0755 " .. H.quote(s.data)) end)
end

describe("a read-only data directory", function()
  it("on a read-only mount: every reading command prints what it prints with write " ..
     "access, and creates nothing", function()
    local s = seeded()
    local want = with_write_access(s, READS)
    for i, r in ipairs(want) do assert(r.code == 0, table.concat(READS[i], " ") .. ": " .. r.err) end
    chmod_read_only(s)
    local names = listing(s.data)
    assert.is_falsy(names:find("eddy.db-wal", 1, true))
    local lists = {}
    for i, args in ipairs(READS) do lists[i] = on(s.data, args) end
    local got = H.run_mounted({ read_only = s.data }, lists)
    for i, args in ipairs(READS) do
      assert.same(want[i], got[i], table.concat(args, " "))
    end
    assert.equal(names, listing(s.data))
  end)

  it("on a read-only mount: every writing command fails with one line naming the " ..
     "directory, and changes nothing", function()
    local s = seeded()
    chmod_read_only(s)
    local names = listing(s.data)
    local before = H.read(s.data .. "/eddy.db")
    local lists = {}
    for i, w in ipairs(writes(s)) do lists[i] = on(s.data, w[2]) end
    local got = H.run_mounted({ read_only = s.data }, lists)
    for i, w in ipairs(writes(s)) do
      assert.same({ code = 1, out = "",
                    err = w[1] .. ": data directory '" .. s.data .. "' is not writable: " ..
                          "Read-only file system\n" }, got[i], table.concat(w[2], " "))
    end
    assert.is_true(H.read(s.data .. "/eddy.db") == before, "the store was changed")
    assert.equal(names, listing(s.data))
  end)

  it("as a user who may not write it: reads work, writes fail naming the directory", function()
    local s = seeded()
    local want = with_write_access(s, READS)
    chmod_read_only(s)
    local names = listing(s.data)
    -- nobody runs a copy of the binary, in a directory it may enter.
    local bin = s.dir .. "/eddy"
    assert(os.execute("cp " .. H.quote(H.bin) .. " " .. H.quote(bin) .. " && chmod 0755 " ..
                      H.quote(s.dir) .. " " .. H.quote(bin)))
    local function as_nobody(args)
      local argv = { "setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", bin,
                     "--data", s.data }
      for _, a in ipairs(args) do argv[#argv + 1] = a end
      return H.exec(argv, { stdin = args.stdin, cwd = s.dir })
    end
    for i, args in ipairs(READS) do
      assert.same(want[i], as_nobody(args), table.concat(args, " "))
    end
    for _, w in ipairs(writes(s)) do
      assert.same({ code = 1, out = "",
                    err = w[1] .. ": data directory '" .. s.data .. "' is not writable: " ..
                          "Permission denied\n" }, as_nobody(w[2]), table.concat(w[2], " "))
    end
    assert.equal(names, listing(s.data))
  end)

  it("is read while a process with write access writes it: through its write-ahead log", function()
    local s = seeded()
    -- A follower with write access keeps the store open: the write-ahead
    -- log stays (nothing checkpoints it away) and holds what comes next.
    local writer = H.spawn({ "--data", s.data, "tail", "t", "--follow" })
    defer(function() H.cleanup(writer) end)
    H.wait_until(function() return H.exists(s.data .. "/eddy.db-wal") end, 30,
                 "the follower to open the store")
    assert.equal(0, H.run({ "--data", s.data, "produce", "t", "-p", "1", "three" }).code)
    assert.is_true(H.exists(s.data .. "/eddy.db-shm"))
    local r = H.run_mounted({ read_only = s.data }, {
      { "--data", s.data, "tail", "t", "--from-beginning" },
      { "--data", s.data, "topic", "list", "--json" },
    })
    assert.same({ 0, "" }, { r[1].code, r[1].err })
    assert.same({ "[t/0@0] one", "[t/1@0] two", "[t/0@1] bad", "[t/1@1] three" }, H.lines(r[1].out))
    assert.equal(4, H.json_lines(r[2].out)[1].messages)
    -- A reader that follows sees what the writer's side adds.
    local reader = H.spawn_cmd(H.mounted({ read_only = s.data },
      { H.bin, "--data", s.data, "tail", "t", "--from-beginning", "--follow", "--limit", "5" }))
    defer(function() H.cleanup(reader) end)
    H.wait_until(function() return #H.lines(H.read(reader.out)) == 4 end, 30,
                 "the read-only follower to print what is stored")
    assert.equal(0, H.run({ "--data", s.data, "produce", "t", "-p", "0", "four" }).code)
    assert.equal(0, H.wait_exit(reader, 30, "the read-only follower to print the new message"))
    assert.equal("[t/0@2] four", H.lines(H.read(reader.out))[5])
    assert.equal("", H.read(reader.err))
  end)

  it("that no process has open is read as it is, and a follower sees a writer that " ..
     "comes later", function()
    local s = seeded()
    assert.is_false(H.exists(s.data .. "/eddy.db-wal"))
    local reader = H.spawn_cmd(H.mounted({ read_only = s.data },
      { H.bin, "--data", s.data, "tail", "t", "--from-beginning", "--follow", "--limit", "5" }))
    defer(function() H.cleanup(reader) end)
    H.wait_until(function() return #H.lines(H.read(reader.out)) == 3 end, 30,
                 "the read-only follower to print what is stored")
    assert.equal("[t/0@0] one\n[t/1@0] two\n[t/0@1] bad\n", H.read(reader.out))
    -- A writer that comes and goes (its WAL checkpointed into the file and
    -- removed when it closes), then one that stays.
    assert.equal(0, H.run({ "--data", s.data, "produce", "t", "-p", "1", "three" }).code)
    H.wait_until(function() return #H.lines(H.read(reader.out)) == 4 end, 30,
                 "the read-only follower to print the first new message")
    local writer = H.spawn({ "--data", s.data, "tail", "t", "--follow" })
    defer(function() H.cleanup(writer) end)
    H.wait_until(function() return H.exists(s.data .. "/eddy.db-wal") end, 30,
                 "the follower to open the store")
    assert.equal(0, H.run({ "--data", s.data, "produce", "t", "-p", "0", "four" }).code)
    assert.equal(0, H.wait_exit(reader, 30, "the read-only follower to print the new messages"))
    assert.equal("[t/0@0] one\n[t/1@0] two\n[t/0@1] bad\n[t/1@1] three\n[t/0@2] four\n",
                 H.read(reader.out))
    assert.equal("", H.read(reader.err))
  end)
end)
