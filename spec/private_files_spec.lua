--- Files and sockets are private by default: everything eddy creates (the
-- data directory and the parents it makes, the store and SQLite's WAL and
-- shared-memory files, the lock files and their directory, the control
-- socket and its directory, a file written with -o) is its owner's alone,
-- 0700 for directories and 0600 for the rest, whatever the umask.
local H = require "helpers"

local BROKER = H.BROKER

local function defer(fn) H.defer(finally, fn) end

--- A fresh directory, removed when the test ends.
local function tmpdir()
  local dir = H.tmpdir()
  defer(function() H.rmdir(dir) end)
  return dir
end

--- Writes an app in dir: consumer "c" on topic `topic`, on broker when
-- given.  Returns the app file.
local function app(dir, topic, broker)
  H.write(dir .. "/eddy.lua", string.format(
    "return { handlers = { 'c.lua' }, %s topics = { [%q] = { partitions = 2 } } }\n",
    broker and string.format("broker = %q,", broker) or "", topic))
  H.write(dir .. "/c.lua", string.format([[
local eddy = require "eddy"
return eddy.consumer { name = "c", topics = %q,
  handle = function(msg, ctx) ctx.state:set(msg.value, 1) end }
]], topic))
  return dir .. "/eddy.lua"
end

--- Every file and directory under dir (dir itself first), by find(1).
local function tree(dir)
  local r = H.exec({ "find", dir }, { unset = { "LD_PRELOAD" } })
  assert(r.code == 0, r.err)
  return H.lines(r.out)
end

--- Starts `eddy run APP --data DATA` under umask (a string such as "077"),
-- and waits until it runs: its control socket and WAL are there, and its
-- lock file unless kafka (consumers on Kafka take no lock files).  Returns
-- the handle; the process is stopped when the test ends.
local function run_under(umask, file, data, kafka)
  local cmd = "umask " .. umask .. " && exec " .. H.quote(H.bin) .. " run " .. H.quote(file) ..
              " --data " .. H.quote(data)
  local h = H.spawn_cmd({ "sh", "-c", cmd })
  defer(function() H.cleanup(h) end)
  H.wait_until(function()
    return H.exists(data .. "/control/" .. h.pid .. ".sock") and
           (kafka or H.exists(data .. "/locks/c.lock")) and H.exists(data .. "/eddy.db-wal") and
           H.exists(data .. "/eddy.db-shm")
  end, 60, "eddy run to start")
  return h
end

--- Asserts every entry under data is private, and that the files a
-- running eddy makes are all there with the mode and type they must have.
local function assert_private(data, pid)
  local want = {
    [""] = "700 directory",
    ["/eddy.db"] = "600 regular file",
    ["/eddy.db-wal"] = "600 regular file",
    ["/eddy.db-shm"] = "600 regular file",
    ["/locks"] = "700 directory",
    ["/locks/c.lock"] = "600 regular file",
    ["/control"] = "700 directory",
    ["/control/" .. pid .. ".sock"] = "600 socket",
  }
  local got = {}
  for _, f in ipairs(tree(data)) do
    local mode, kind = H.mode(f)
    -- Anything eddy makes is private: a file or socket 600, a directory 700.
    if mode then
      got[f:sub(#data + 1)] = mode .. " " .. kind
      assert.equal(kind == "directory" and "700" or "600", mode, f .. " is " .. kind .. " " .. mode)
    end
  end
  for name, m in pairs(want) do
    assert.equal(m, got[name], data .. name)
  end
end

describe("files eddy makes", function()
  for _, umask in ipairs({ "000", "077", "022" }) do
    it("are its owner's alone under umask " .. umask .. ": the data directory and its " ..
       "parents, eddy.db, -wal, -shm, locks, the control socket", function()
      local dir = tmpdir()
      local file = app(dir, "t")
      local data = dir .. "/a/b/data"
      local h = run_under(umask, file, data)
      assert_private(data, h.pid)
      assert.equal("700", (H.mode(dir .. "/a")))
      assert.equal("700", (H.mode(dir .. "/a/b")))
      assert.is_true(H.kill(h.pid, "TERM"))
      assert.equal(0, H.wait_exit(h, 30))
      -- A command that creates the store makes the same, and a reader
      -- reads it with the umask it has.
      local other = dir .. "/other"
      local r = H.exec({ "sh", "-c", "umask " .. umask .. " && " .. H.quote(H.bin) ..
                         " --data " .. H.quote(other) .. " topic create t && " ..
                         H.quote(H.bin) .. " --data " .. H.quote(other) .. " produce t x" })
      assert.same({ 0, "" }, { r.code, r.err })
      assert.same({ "700 directory", "600 regular file" },
                  { table.concat({ H.mode(other) }, " "),
                    table.concat({ H.mode(other .. "/eddy.db") }, " ") })
      assert.equal(1, H.topics(other).t.messages)
    end)
  end

  it("are private on Kafka too: the store of an app on Kafka and its control socket", function()
    local dir = tmpdir()
    local topic = string.format("private-%08x", math.random(0, 0x7fffffff))
    local file = app(dir, topic, BROKER)
    local data = dir .. "/data"
    local h = run_under("000", file, data, true)
    local want = {
      [""] = "700 directory",
      ["/eddy.db"] = "600 regular file",
      ["/eddy.db-wal"] = "600 regular file",
      ["/eddy.db-shm"] = "600 regular file",
      ["/control"] = "700 directory",
      ["/control/" .. h.pid .. ".sock"] = "600 socket",
    }
    for _, f in ipairs(tree(data)) do
      local mode, kind = H.mode(f)
      if mode then
        assert.equal(kind == "directory" and "700" or "600", mode, f .. " is " .. kind .. " " .. mode)
      end
    end
    for name, m in pairs(want) do
      assert.equal(m, table.concat({ H.mode(data .. name) }, " "), data .. name)
    end
    assert.is_true(H.kill(h.pid, "TERM"))
    assert.equal(0, H.wait_exit(h, 30))
  end)

  it("written with catalog export -o and catalog docs -o are 0600 under umask 000", function()
    local dir = tmpdir()
    local file = app(dir, "t")
    for cmd, text in pairs({ export = '"eddy_catalog"', docs = "# Event catalog" }) do
      local out = dir .. "/" .. cmd .. ".out"
      local r = H.exec({ "sh", "-c", "umask 000 && exec " .. H.quote(H.bin) .. " catalog " .. cmd ..
                         " " .. H.quote(file) .. " -o " .. H.quote(out) })
      assert.same({ 0, "", "" }, { r.code, r.out, r.err })
      assert.equal("600", (H.mode(out)))
      assert.truthy(H.read(out):find(text, 1, true))
    end
  end)

  it("that exist already keep their mode: an operator may open them up", function()
    local dir = tmpdir()
    local data = dir .. "/data"
    assert.equal(0, H.run({ "--data", data, "topic", "create", "t" }).code)
    assert(os.execute("chmod 0750 " .. H.quote(data) .. " && chmod 0640 " .. H.quote(data .. "/eddy.db")))
    local r = H.run({ "--data", data, "produce", "t", "x" })
    assert.same({ 0, "" }, { r.code, r.err })
    assert.equal("750", (H.mode(data)))
    assert.equal("640", (H.mode(data .. "/eddy.db")))
    -- A file written with -o over an existing one keeps its mode too.
    H.write(dir .. "/saved.json", "old")
    assert(os.execute("chmod 0644 " .. H.quote(dir .. "/saved.json")))
    r = H.run({ "catalog", "export", app(dir, "t"), "-o", dir .. "/saved.json" })
    assert.same({ 0, "" }, { r.code, r.err })
    assert.equal("644", (H.mode(dir .. "/saved.json")))
    assert.are_not.equal("old", H.read(dir .. "/saved.json"))
  end)
end)
