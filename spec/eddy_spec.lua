--- Specs of the Lua module `require "eddy"`: eddy.open, the methods of an
-- eddy.log and the module helpers (ids, the partitioner, versions), against
-- real stores in temporary directories.
local eddy = require "eddy"
local helpers = require "helpers"
local system = require "system"

-- Every test calls scope() once and registers its cleanups with the
-- function it returns (helpers.defer: last first, each even when an earlier
-- one fails).
local function scope()
  return function(fn) helpers.defer(finally, fn) end
end

-- A temporary directory, removed at the end of the test.
local function tmpdir(defer)
  local dir = helpers.tmpdir()
  defer(function() helpers.rmdir(dir) end)
  return dir
end

-- eddy.open with opts (data defaults to dir), failing the test on an error;
-- the log is closed at the end of the test.
local function open(defer, dir, opts)
  local o = { data = dir }
  for k, v in pairs(opts or {}) do o[k] = v end
  local log, err = eddy.open(o)
  assert(log, err)
  defer(function() log:close() end)
  return log
end

-- A new store in a new directory: the log and the directory.
local function fresh(defer, opts)
  local dir = tmpdir(defer)
  return open(defer, dir, opts), dir
end

-- Calls fn, which must raise; checks the message contains fragment (Lua
-- prefixes "bad argument ..." and may prefix chunk:line).
local function raises(fragment, fn, ...)
  local ok, err = pcall(fn, ...)
  assert.is_false(ok, "expected an error containing: " .. fragment)
  assert.is_string(err)
  assert.is_truthy(err:find(fragment, 1, true),
                   "error '" .. tostring(err) .. "' lacks '" .. fragment .. "'")
end

-- The first two of its arguments, as an array.
local function pair(a, b) return { a, b } end

-- The (log_start, next_offset) of every partition of topic, as a table.
local function all_offsets(log, topic)
  local t = assert(log:topic(topic))
  local out = {}
  for i, o in ipairs(t.offsets) do out[i] = { o.log_start, o.next_offset } end
  return out
end

-- The values of the messages read from topic partition p from offset 0.
local function values(log, topic, p)
  local out = {}
  for i, m in ipairs(assert(log:read(topic, p, 0, 1000))) do out[i] = m.value end
  return out
end

local UUID_PATTERN =
  "^%x%x%x%x%x%x%x%x%-%x%x%x%x%-7%x%x%x%-[89ab]%x%x%x%-%x%x%x%x%x%x%x%x%x%x%x%x$"

-- The millisecond timestamp in the first 48 bits of a UUIDv7.
local function uuid_ms(id)
  return tonumber(id:gsub("-", ""):sub(1, 12), 16)
end

describe("eddy", function()
  describe(".versions()", function()
    it("reports the versions of eddy and its libraries as strings", function()
      local v = eddy.versions()
      assert.equal("0.1.0-dev", v.eddy)
      assert.equal(eddy._VERSION, v.eddy)
      assert.equal(_VERSION, v.lua:match("^(Lua %d+%.%d+)"))
      assert.is_truthy(v.sqlite:match("^3%.%d+%.%d+"), v.sqlite)
      assert.is_truthy(v.librdkafka:match("^%d+%.%d+%.%d+"), v.librdkafka)
      assert.is_truthy(v.libuv:match("^%d+%.%d+%.%d+"), v.libuv)
      local n = 0
      for _ in pairs(v) do n = n + 1 end
      assert.equal(5, n)
    end)

    it("returns a new table each time", function()
      local a, b = eddy.versions(), eddy.versions()
      assert.are_not.equal(a, b)
      a.eddy = "changed"
      assert.equal("0.1.0-dev", eddy.versions().eddy)
    end)
  end)

  describe(".uuid()", function()
    it("returns a lower-case canonical UUIDv7 with the current time", function()
      local id = eddy.uuid()
      assert.equal(36, #id)
      assert.is_truthy(id:match(UUID_PATTERN), id)
      assert.equal(id:lower(), id)
      assert.is_true(math.abs(uuid_ms(id) - os.time() * 1000) < 5000)
    end)

    it("returns strictly increasing ids", function()
      local prev = eddy.uuid()
      for _ = 1, 5000 do
        local id = eddy.uuid()
        assert.is_true(id > prev, id .. " is not after " .. prev)
        prev = id
      end
    end)
  end)

  describe(".partition_for()", function()
    it("matches Kafka's default partitioner", function()
      -- murmur2("foobar") = -790332482 in Kafka's Java client
      assert.equal(((-790332482) & 0x7fffffff) % 4, eddy.partition_for("foobar", 4))
      assert.equal(2, eddy.partition_for("foobar", 4))
      assert.equal(((-973932308) & 0x7fffffff) % 4, eddy.partition_for("21", 4))
      assert.equal(479470107 % 7, eddy.partition_for("abc", 7))
    end)

    it("gives every key partition 0 of a one-partition topic", function()
      for _, k in ipairs { "", "a", "foobar", "\0\255" } do
        assert.equal(0, eddy.partition_for(k, 1))
      end
    end)

    it("raises on a key that is not a string", function()
      raises("string expected, got number", eddy.partition_for, 1, 4)
    end)

    it("raises on a partition count below 1", function()
      raises("partition count must be positive", eddy.partition_for, "a", 0)
      raises("partition count must be positive", eddy.partition_for, "a", -1)
    end)
  end)
end)

describe("eddy.open", function()
  it("creates the directory and the store", function()
    local defer = scope()
    local dir = tmpdir(defer)
    local data = dir .. "/a/b"
    local log = open(defer, data)
    assert.is_true(helpers.exists(data .. "/eddy.db"))
    assert.equal("eddy.log (" .. data .. ")", tostring(log))
    -- marked as an eddy store: application_id 0x65646479 ("eddy")
    local r = helpers.exec({ "sqlite3", data .. "/eddy.db", "PRAGMA application_id; PRAGMA user_version;" })
    assert.equal(0, r.code)
    assert.equal(tostring(0x65646479) .. "\n1\n", r.out)
  end)

  it("opens an existing store with what it holds", function()
    local defer = scope()
    local log, dir = fresh(defer)
    assert.is_true(log:topic_create("t", 2))
    assert.equal(0, select(2, log:produce("t", { value = "v", partition = 1 })))
    log:close()
    local again = open(defer, dir, { create = false })
    assert.equal(2, assert(again:topic("t")).partitions)
    assert.same({ "v" }, values(again, "t", 1))
  end)

  it("with create = false fails on a missing directory and creates nothing", function()
    local defer = scope()
    local dir = tmpdir(defer) .. "/missing"
    local log, err = eddy.open { data = dir, create = false }
    assert.is_nil(log)
    assert.equal("no eddy store in '" .. dir .. "' (the directory does not exist)", err)
    assert.is_false(helpers.exists(dir))
  end)

  it("with create = false fails on a directory without a store and creates nothing", function()
    local defer = scope()
    local dir = tmpdir(defer)
    local log, err = eddy.open { data = dir, create = false }
    assert.is_nil(log)
    assert.equal("no eddy store in '" .. dir .. "'", err)
    assert.is_false(helpers.exists(dir .. "/eddy.db"))
  end)

  it("refuses a file that is not a store and leaves it unchanged", function()
    local defer = scope()
    local dir = tmpdir(defer)
    local bytes = string.rep("\0garbage\255", 500)
    helpers.write(dir .. "/eddy.db", bytes)
    local log, err = eddy.open { data = dir }
    assert.is_nil(log)
    assert.equal("'" .. dir .. "/eddy.db' is not a database (it lacks SQLite's header): " ..
                 "restore the store from a backup, or move the file away", err)
    assert.equal(bytes, helpers.read(dir .. "/eddy.db"))
  end)

  it("refuses a one-byte file that is not a store and leaves it unchanged", function()
    -- SQLite's unix VFS reports a 1-byte file as empty, and an empty file
    -- is one eddy makes into a store: the byte must not be lost.
    local defer = scope()
    local dir = tmpdir(defer)
    helpers.write(dir .. "/eddy.db", "\n")
    local log, err = eddy.open { data = dir }
    if log then log:close() end
    assert.is_nil(log)
    assert.equal("'" .. dir .. "/eddy.db' is not a database (it lacks SQLite's header): " ..
                 "restore the store from a backup, or move the file away", err)
    assert.equal("\n", helpers.read(dir .. "/eddy.db"))
  end)

  it("refuses a database of another program and leaves it unchanged", function()
    local defer = scope()
    local dir = tmpdir(defer)
    local db = dir .. "/eddy.db"
    assert.equal(0, helpers.exec({ "sqlite3", db, "CREATE TABLE x(a); INSERT INTO x VALUES(1);" }).code)
    local before = helpers.read(db)
    local log, err = eddy.open { data = dir }
    assert.is_nil(log)
    assert.equal("'" .. db .. "' is not an eddy store (it is a database of another program)", err)
    assert.equal(before, helpers.read(db))
  end)

  it("refuses a store of a newer schema and leaves it unchanged", function()
    local defer = scope()
    local dir = tmpdir(defer)
    local db = dir .. "/eddy.db"
    open(defer, dir):close()
    local r = helpers.exec({ "sqlite3", db, "PRAGMA user_version=99" })
    assert.equal(0, r.code, r.err)
    local before = helpers.read(db)
    local log, err = eddy.open { data = dir }
    assert.is_nil(log)
    assert.equal("store '" .. dir .. "' was made by a newer eddy (schema version 99; "
                 .. "this eddy reads up to 1): upgrade eddy", err)
    assert.equal(before, helpers.read(db))
  end)

  it("makes an empty file a store", function()
    local defer = scope()
    local dir = tmpdir(defer)
    helpers.write(dir .. "/eddy.db", "")
    local log = open(defer, dir)
    assert.is_true(log:topic_create("t", 1))
    assert.same({}, assert(log:read("t", 0, 0)))
  end)

  it("raises when opts is not a table", function()
    raises("bad argument #1 to", eddy.open, "x")
    raises("table expected, got string", eddy.open, "x")
    raises("table expected, got no value", eddy.open)
  end)

  it("raises on fields of the wrong type", function()
    raises("(data must be a string)", eddy.open, { data = 1 })
    raises("(create must be a boolean)", eddy.open, { data = "/nonexistent-eddy", create = "no" })
    raises("(lock_timeout must be a positive integer (milliseconds))", eddy.open,
           { data = "/nonexistent-eddy", lock_timeout = 0 })
    raises("(lock_timeout must be a positive integer (milliseconds))", eddy.open,
           { data = "/nonexistent-eddy", lock_timeout = 1.5 })
    raises("(lock_timeout must be a positive integer (milliseconds))", eddy.open,
           { data = "/nonexistent-eddy", lock_timeout = "100" })
    assert.is_false(helpers.exists("/nonexistent-eddy"))
  end)

  it("refuses a data directory that is a file", function()
    local defer = scope()
    local dir = tmpdir(defer)
    helpers.write(dir .. "/file", "x")
    local log, err = eddy.open { data = dir .. "/file" }
    assert.is_nil(log)
    assert.equal("data directory '" .. dir .. "/file' is not a directory", err)
    assert.equal("x", helpers.read(dir .. "/file"))
  end)

  it("returns nil and a message for an empty data directory name", function()
    local log, err = eddy.open { data = "" }
    assert.is_nil(log)
    assert.equal("data directory is empty", err)
  end)
end)

describe("eddy.log", function()
  describe(":topic_create()", function()
    it("creates a topic with the defaults", function()
      local defer = scope()
      local log = fresh(defer)
      local before = os.time() * 1000
      assert.same({ true }, { log:topic_create("orders", 3) })
      local t = assert(log:topic("orders"))
      assert.equal("orders", t.name)
      assert.equal(3, t.partitions)
      assert.equal(-1, t.retention_ms)
      assert.equal(-1, t.retention_bytes)
      assert.equal(1024 * 1024, t.max_message_bytes)
      assert.equal(0, t.messages)
      assert.is_true(t.created_at >= before and t.created_at < before + 60000)
      assert.same({ { partition = 0, log_start = 0, next_offset = 0 },
                    { partition = 1, log_start = 0, next_offset = 0 },
                    { partition = 2, log_start = 0, next_offset = 0 } }, t.offsets)
    end)

    it("keeps the options given", function()
      local defer = scope()
      local log = fresh(defer)
      assert.is_true(log:topic_create("t", 1, { retention_ms = 60000,
        retention_bytes = 5000, max_message_bytes = 300 }))
      local t = assert(log:topic("t"))
      assert.equal(60000, t.retention_ms)
      assert.equal(5000, t.retention_bytes)
      assert.equal(300, t.max_message_bytes)
    end)

    it("accepts names of 249 characters of letters, digits, '.', '_' and '-'", function()
      local defer = scope()
      local log = fresh(defer)
      local long = string.rep("a", 249)
      assert.is_true(log:topic_create(long, 1))
      assert.is_true(log:topic_create("A.z_0-9", 1))
      assert.equal(long, assert(log:topic(long)).name)
    end)

    it("refuses a topic that exists", function()
      local defer = scope()
      local log = fresh(defer)
      assert.is_true(log:topic_create("x", 2))
      assert.same({ nil, "topic 'x' already exists" }, { log:topic_create("x", 2) })
      assert.same({ nil, "topic 'x' already exists" }, { log:topic_create("x", 5) })
      assert.equal(2, assert(log:topic("x")).partitions)
    end)

    it("refuses partition counts outside 1 to 4096", function()
      local defer = scope()
      local log = fresh(defer)
      for _, n in ipairs { 0, -1, 4097 } do
        assert.same({ nil, "topic 'x': partition count must be between 1 and 4096, got " .. n },
                    { log:topic_create("x", n) })
      end
      assert.same({ nil, "topic 'x': partition count must be between 1 and 4096, got 1099511627776" },
                  { log:topic_create("x", 1 << 40) })
      assert.is_true(log:topic_create("x", 4096))
      assert.equal(4096, #assert(log:topic("x")).offsets)
      assert.same({ nil, "unknown topic 'y'" }, { log:topic("y") })
    end)

    it("refuses invalid names", function()
      local defer = scope()
      local log = fresh(defer)
      assert.same({ nil, "topic name is empty" }, { log:topic_create("", 1) })
      assert.same({ nil, "invalid topic name 'a b': use only letters, digits, '.', '_' and '-'" },
                  { log:topic_create("a b", 1) })
      assert.same({ nil, "invalid topic name '" .. string.rep("n", 40) ..
                    "...': longer than 249 characters" },
                  { log:topic_create(string.rep("n", 250), 1) })
      assert.same({ nil, "invalid topic name '..': '.' and '..' are reserved" },
                  { log:topic_create("..", 1) })
      assert.same({ nil, "invalid topic name '.': '.' and '..' are reserved" },
                  { log:topic_create(".", 1) })
      assert.same({ nil, "invalid topic name 'a/b': use only letters, digits, '.', '_' and '-'" },
                  { log:topic_create("a/b", 1) })
      assert.same({}, assert(log:topics()))
    end)

    it("refuses bad retention and size options", function()
      local defer = scope()
      local log = fresh(defer)
      assert.same({ nil, "topic 'x': retention time must be positive, got -5 ms" },
                  { log:topic_create("x", 1, { retention_ms = -5 }) })
      assert.same({ nil, "topic 'x': retention size must be positive, got -2 bytes" },
                  { log:topic_create("x", 1, { retention_bytes = -2 }) })
      assert.same({ nil, "topic 'x': message size limit must be between 1 and 268435456 bytes, got 0" },
                  { log:topic_create("x", 1, { max_message_bytes = 0 }) })
      assert.same({}, assert(log:topics()))
    end)

    it("raises on arguments of the wrong type", function()
      local defer = scope()
      local log = fresh(defer)
      raises("number expected, got string", log.topic_create, log, "x", "a")
      raises("(retention_ms must be an integer)", log.topic_create, log, "x", 1, { retention_ms = "1" })
      raises("(max_message_bytes must be an integer)", log.topic_create, log, "x", 1,
             { max_message_bytes = 1.5 })
      raises("table expected, got number", log.topic_create, log, "x", 1, 5)
      raises("(name contains a zero byte)", log.topic_create, log, "x\0y", 1)
      assert.same({}, assert(log:topics()))
    end)
  end)

  describe(":topic_ensure()", function()
    it("creates a missing topic and says so", function()
      local defer = scope()
      local log = fresh(defer)
      assert.same({ true, true }, { log:topic_ensure("t", 3, { max_message_bytes = 10 }) })
      local t = assert(log:topic("t"))
      assert.equal(3, t.partitions)
      assert.equal(10, t.max_message_bytes)
    end)

    it("leaves an existing topic with as many partitions or more as it is", function()
      local defer = scope()
      local log = fresh(defer)
      assert.is_true(log:topic_create("t", 4, { retention_ms = 1000 }))
      assert.same({ true, false }, { log:topic_ensure("t", 4) })
      assert.same({ true, false }, { log:topic_ensure("t", 2, { retention_ms = 5 }) })
      local t = assert(log:topic("t"))
      assert.equal(4, t.partitions)
      assert.equal(1000, t.retention_ms)
    end)

    it("fails when the topic has fewer partitions than asked", function()
      local defer = scope()
      local log = fresh(defer)
      assert.is_true(log:topic_create("t", 2))
      assert.same({ nil, "topic 't' exists with 2 partitions, fewer than the 4 asked for" },
                  { log:topic_ensure("t", 4) })
      assert.equal(2, assert(log:topic("t")).partitions)
    end)

    it("refuses invalid names and partition counts", function()
      local defer = scope()
      local log = fresh(defer)
      assert.same({ nil, "topic name is empty" }, { log:topic_ensure("", 1) })
      assert.same({ nil, "invalid topic name '..': '.' and '..' are reserved" },
                  { log:topic_ensure("..", 1) })
      assert.same({ nil, "topic 'x': partition count must be between 1 and 4096, got 0" },
                  { log:topic_ensure("x", 0) })
      assert.same({ nil, "topic 'x': partition count must be between 1 and 4096, got 4097" },
                  { log:topic_ensure("x", 4097) })
      assert.same({}, assert(log:topics()))
    end)
  end)

  describe(":topics()", function()
    it("lists the topics in name order with their message counts", function()
      local defer = scope()
      local log = fresh(defer)
      assert.same({}, assert(log:topics()))
      assert.is_true(log:topic_create("b", 2, { retention_bytes = 7 }))
      assert.is_true(log:topic_create("a", 1))
      assert.is_true(log:topic_create("C", 1))
      for p = 0, 1 do
        for _ = 1, 3 do assert(log:produce("b", { value = "v", partition = p })) end
      end
      local ts = assert(log:topics())
      assert.equal(3, #ts)
      assert.same({ "C", "a", "b" }, { ts[1].name, ts[2].name, ts[3].name })
      local b = ts[3]
      assert.equal(2, b.partitions)
      assert.equal(-1, b.retention_ms)
      assert.equal(7, b.retention_bytes)
      assert.equal(1024 * 1024, b.max_message_bytes)
      assert.is_number(b.created_at)
      assert.is_nil(b.offsets)
      assert.equal(6, b.messages)
      assert.equal(0, ts[1].messages)
      assert.equal(6, assert(log:topic("b")).messages)
    end)
  end)

  describe(":produce()", function()
    it("returns partition, offset and id, offsets contiguous from 0 per partition", function()
      local defer = scope()
      local log = fresh(defer)
      assert.is_true(log:topic_create("t", 2))
      for i = 0, 4 do
        local p, o, id = log:produce("t", { value = "a" .. i, partition = 0 })
        assert.same({ 0, i }, { p, o })
        assert.is_truthy(id:match(UUID_PATTERN), id)
      end
      for i = 0, 2 do
        assert.same({ 1, i }, pair(log:produce("t", { value = "b" .. i, partition = 1 })))
      end
      assert.same({ { 0, 5 }, { 0, 3 } }, all_offsets(log, "t"))
      assert.same({ "a0", "a1", "a2", "a3", "a4" }, values(log, "t", 0))
      assert.same({ "b0", "b1", "b2" }, values(log, "t", 1))
      local ms = assert(log:read("t", 0, 0))
      for i, m in ipairs(ms) do assert.equal(i - 1, m.offset) end
    end)

    it("gives each message a new UUIDv7, strictly increasing", function()
      local defer = scope()
      local log = fresh(defer)
      assert.is_true(log:topic_create("t", 3))
      local prev = eddy.uuid()
      local seen = {}
      for i = 1, 200 do
        local p, o, id = log:produce("t", { value = tostring(i) })
        assert.is_truthy(id:match(UUID_PATTERN), id)
        assert.equal("7", id:sub(15, 15))
        assert.is_true(id > prev, id .. " is not after " .. prev)
        prev = id
        seen[#seen + 1] = { p, o, id }
      end
      assert.is_true(eddy.uuid() > prev)
      for _, s in ipairs(seen) do
        local m = assert(log:read("t", s[1], s[2], 1))[1]
        assert.equal(s[3], m.id)
      end
    end)

    it("keeps an id given", function()
      local defer = scope()
      local log = fresh(defer)
      assert.is_true(log:topic_create("t", 1))
      assert.same({ 0, 0, "order-42" }, { log:produce("t", { value = "v", id = "order-42" }) })
      local long = string.rep("i", 255)
      assert.same({ 0, 1, long }, { log:produce("t", { value = "v", id = long }) })
      local ms = assert(log:read("t", 0, 0))
      assert.equal("order-42", ms[1].id)
      assert.equal(long, ms[2].id)
    end)

    it("refuses an empty, too long or control-character id", function()
      local defer = scope()
      local log = fresh(defer)
      assert.is_true(log:topic_create("t", 1))
      assert.same({ nil, "message id must be 1 to 255 bytes, got 0" },
                  { log:produce("t", { value = "v", id = "" }) })
      assert.same({ nil, "message id must be 1 to 255 bytes, got 256" },
                  { log:produce("t", { value = "v", id = string.rep("i", 256) }) })
      assert.same({ nil, "message id contains a control character" },
                  { log:produce("t", { value = "v", id = "a\nb" }) })
      assert.same({ { 0, 0 } }, all_offsets(log, "t"))
    end)

    it("puts a keyed message where partition_for says, as Kafka does", function()
      local defer = scope()
      local log = fresh(defer)
      assert.is_true(log:topic_create("four", 4))
      assert.is_true(log:topic_create("seven", 7))
      assert.equal(2, (log:produce("four", { key = "foobar", value = "v" })))
      assert.equal(((-973932308) & 0x7fffffff) % 4, (log:produce("four", { key = "21", value = "v" })))
      assert.equal(479470107 % 7, (log:produce("seven", { key = "abc", value = "v" })))
      for i = 1, 100 do
        local key = "customer-" .. i
        assert.equal(eddy.partition_for(key, 4), (log:produce("four", { key = key, value = "v" })))
        assert.equal(eddy.partition_for(key, 7), (log:produce("seven", { key = key, value = "v" })))
      end
      local m = assert(log:read("four", 2, 0, 1))[1]
      assert.equal("foobar", m.key)
    end)

    it("treats the empty key as a key, not as no key", function()
      local defer = scope()
      local log = fresh(defer)
      assert.is_true(log:topic_create("t", 4))
      local home = eddy.partition_for("", 4)
      for _ = 1, 8 do
        assert.equal(home, (log:produce("t", { key = "", value = "k" })))
      end
      -- unkeyed messages go round robin: two in each partition
      local count = { [0] = 0, 0, 0, 0 }
      for _ = 1, 8 do
        local p = log:produce("t", { value = "u" })
        count[p] = count[p] + 1
      end
      assert.same({ [0] = 2, 2, 2, 2 }, count)
      local ms = assert(log:read("t", home, 0))
      local keyed = 0
      for _, m in ipairs(ms) do
        if m.value == "k" then
          keyed = keyed + 1
          assert.equal("", m.key)
        else
          assert.is_nil(m.key)
        end
      end
      assert.equal(8, keyed)
    end)

    it("puts a message in the partition given, over its key", function()
      local defer = scope()
      local log = fresh(defer)
      assert.is_true(log:topic_create("t", 4))
      local other = (eddy.partition_for("foobar", 4) + 1) % 4
      assert.same({ other, 0 }, pair(log:produce("t", { key = "foobar", value = "v", partition = other })))
      assert.equal("foobar", assert(log:read("t", other, 0))[1].key)
    end)

    it("refuses a partition the topic does not have", function()
      local defer = scope()
      local log = fresh(defer)
      assert.is_true(log:topic_create("x", 2))
      assert.same({ nil, "topic 'x' has no partition 2 (it has 2)" },
                  { log:produce("x", { value = "v", partition = 2 }) })
      assert.same({ nil, "topic 'x' has no partition -1 (it has 2)" },
                  { log:produce("x", { value = "v", partition = -1 }) })
      assert.same({ nil, "topic 'x' has no partition 4294967296 (it has 2)" },
                  { log:produce("x", { value = "v", partition = 1 << 32 }) })
      assert.same({ { 0, 0 }, { 0, 0 } }, all_offsets(log, "x"))
    end)

    it("refuses an unknown topic", function()
      local defer = scope()
      local log = fresh(defer)
      assert.same({ nil, "unknown topic 'x'" }, { log:produce("x", { value = "v" }) })
      assert.same({ nil, "topic name is empty" }, { log:produce("", { value = "v" }) })
    end)

    it("keeps the timestamp given, and stamps now when none or 0 is given", function()
      local defer = scope()
      local log = fresh(defer)
      assert.is_true(log:topic_create("t", 1))
      local before = os.time() * 1000
      assert(log:produce("t", { value = "a", timestamp = 1234567890123 }))
      assert(log:produce("t", { value = "b" }))
      assert(log:produce("t", { value = "c", timestamp = 0 }))
      local after = (os.time() + 1) * 1000
      local ms = assert(log:read("t", 0, 0))
      assert.equal(1234567890123, ms[1].timestamp)
      for i = 2, 3 do
        assert.is_true(ms[i].timestamp >= before and ms[i].timestamp <= after,
                       tostring(ms[i].timestamp))
      end
    end)

    it("round-trips values with zero bytes and 0xff exactly", function()
      local defer = scope()
      local log = fresh(defer)
      assert.is_true(log:topic_create("t", 1))
      local all = {}
      for b = 0, 255 do all[#all + 1] = string.char(b) end
      local cases = { "\0", "a\0b\0", "\255\255\0\255", table.concat(all), "" }
      for _, v in ipairs(cases) do assert(log:produce("t", { value = v, key = v .. "\0k" })) end
      local ms = assert(log:read("t", 0, 0))
      assert.equal(#cases, #ms)
      for i, v in ipairs(cases) do
        assert.equal(v, ms[i].value)
        assert.equal(#v, #ms[i].value)
        assert.equal(v .. "\0k", ms[i].key)
      end
    end)

    it("keeps the order and repeats of headers given as pairs", function()
      local defer = scope()
      local log = fresh(defer)
      assert.is_true(log:topic_create("t", 1))
      assert(log:produce("t", { value = "v", headers = {
        { "b", "1" }, { "a", "2" }, { "b", "3" }, { "z\0", "\0\255" }, { "e", "" } } }))
      local h = assert(log:read("t", 0, 0))[1].headers
      assert.equal(5, #h)
      assert.same({ "b", "1" }, h[1])
      assert.same({ "a", "2" }, h[2])
      assert.same({ "b", "3" }, h[3])
      assert.same({ "z\0", "\0\255" }, h[4])
      assert.same({ "e", "" }, h[5])
      -- by name too, the last value of a repeated name winning
      assert.equal("3", h.b)
      assert.equal("2", h.a)
      assert.equal("\0\255", h["z\0"])
      assert.equal("", h.e)
    end)

    it("stores headers given as a map sorted by name, after the pairs", function()
      local defer = scope()
      local log = fresh(defer)
      assert.is_true(log:topic_create("t", 1))
      assert(log:produce("t", { value = "v", headers = { zeta = "1", alpha = "2", mid = "3", Beta = "4" } }))
      assert(log:produce("t", { value = "w", headers = { { "z", "p1" }, { "a", "p2" }, c = "m1", a = "m2" } }))
      local ms = assert(log:read("t", 0, 0))
      assert.same({ { "Beta", "4" }, { "alpha", "2" }, { "mid", "3" }, { "zeta", "1" } },
                  { ms[1].headers[1], ms[1].headers[2], ms[1].headers[3], ms[1].headers[4] })
      assert.equal(4, #ms[1].headers)
      assert.equal("2", ms[1].headers.alpha)
      local h = ms[2].headers
      assert.equal(4, #h)
      assert.same({ { "z", "p1" }, { "a", "p2" }, { "a", "m2" }, { "c", "m1" } }, { h[1], h[2], h[3], h[4] })
      assert.equal("m2", h.a)
    end)

    it("reads no key as nil and no headers as an empty table", function()
      local defer = scope()
      local log = fresh(defer)
      assert.is_true(log:topic_create("t", 1))
      local _, _, id = assert(log:produce("t", { value = "v", timestamp = 5 }))
      local m = assert(log:read("t", 0, 0))[1]
      assert.is_nil(m.key)
      assert.same({ topic = "t", partition = 0, offset = 0, id = id, value = "v",
                    timestamp = 5, headers = {} }, m)
    end)

    it("refuses a header with an empty name", function()
      local defer = scope()
      local log = fresh(defer)
      assert.is_true(log:topic_create("t", 1))
      assert.same({ nil, "header 2 has an empty name" },
                  { log:produce("t", { value = "v", headers = { { "a", "1" }, { "", "2" } } }) })
      assert.same({ { 0, 0 } }, all_offsets(log, "t"))
    end)

    it("raises on a malformed message", function()
      local defer = scope()
      local log = fresh(defer)
      assert.is_true(log:topic_create("t", 1))
      raises("table expected, got string", log.produce, log, "t", "v")
      raises("(value must be a string)", log.produce, log, "t", {})
      raises("(value must be a string)", log.produce, log, "t", { value = 1 })
      raises("(key must be a string)", log.produce, log, "t", { value = "v", key = 1 })
      raises("(id must be a string)", log.produce, log, "t", { value = "v", id = 1 })
      raises("(partition must be an integer)", log.produce, log, "t", { value = "v", partition = 0.5 })
      raises("(timestamp must be an integer)", log.produce, log, "t", { value = "v", timestamp = "1" })
      raises("(headers must be a table)", log.produce, log, "t", { value = "v", headers = "h" })
      raises("(header 1 must be a {name, value} pair of strings)", log.produce, log, "t",
             { value = "v", headers = { { "a" } } })
      raises("(header names must be strings, got boolean)", log.produce, log, "t",
             { value = "v", headers = { [true] = "x" } })
      raises("(value of header 'a' must be a string)", log.produce, log, "t",
             { value = "v", headers = { a = 1 } })
      assert.same({ { 0, 0 } }, all_offsets(log, "t"))
    end)
  end)

  describe(":produce() limits", function()
    -- max_message_bytes = 100 limits the key, the value and the encoded
    -- headers each.
    local function limited(defer)
      local log = fresh(defer)
      assert.is_true(log:topic_create("x", 1, { max_message_bytes = 100 }))
      return log
    end

    it("accepts a value of exactly max_message_bytes and refuses one more byte", function()
      local defer = scope()
      local log = limited(defer)
      assert.same({ 0, 0 }, pair(log:produce("x", { value = string.rep("v", 100) })))
      assert.same({ nil, "value of 101 bytes is over the limit of 100 bytes of topic 'x'" },
                  { log:produce("x", { value = string.rep("v", 101) }) })
      assert.same({ { 0, 1 } }, all_offsets(log, "x"))
      assert.same({ string.rep("v", 100) }, values(log, "x", 0))
      assert.equal(1, select(2, log:produce("x", { value = "next" })))
    end)

    it("accepts a key of exactly max_message_bytes and refuses one more byte", function()
      local defer = scope()
      local log = limited(defer)
      assert(log:produce("x", { key = string.rep("k", 100), value = "v" }))
      assert.same({ nil, "key of 101 bytes is over the limit of 100 bytes of topic 'x'" },
                  { log:produce("x", { key = string.rep("k", 101), value = "v" }) })
      assert.same({ { 0, 1 } }, all_offsets(log, "x"))
      assert.equal(string.rep("k", 100), assert(log:read("x", 0, 0))[1].key)
    end)

    it("accepts encoded headers of exactly max_message_bytes and refuses one more byte", function()
      local defer = scope()
      local log = limited(defer)
      -- one header encodes as: name length (1 byte), name, value length
      -- (1 byte), value: 1 + 1 + 1 + 97 = 100
      assert(log:produce("x", { value = "v", headers = { { "h", string.rep("h", 97) } } }))
      assert.same({ nil, "headers of 101 bytes is over the limit of 100 bytes of topic 'x'" },
                  { log:produce("x", { value = "v", headers = { { "h", string.rep("h", 98) } } }) })
      assert.same({ nil, "headers of 101 bytes is over the limit of 100 bytes of topic 'x'" },
                  { log:produce("x", { value = "v", headers = { h = string.rep("h", 98) } }) })
      assert.same({ { 0, 1 } }, all_offsets(log, "x"))
      assert.same({ "v" }, values(log, "x", 0))
    end)

    it("limits the key, the value and the headers each, not their sum", function()
      local defer = scope()
      local log = limited(defer)
      assert(log:produce("x", { key = string.rep("k", 100), value = string.rep("v", 100),
                                headers = { { "h", string.rep("h", 97) } } }))
      assert.same({ { 0, 1 } }, all_offsets(log, "x"))
    end)
  end)

  describe(":produce_batch()", function()
    it("returns the results in order", function()
      local defer = scope()
      local log = fresh(defer)
      assert.is_true(log:topic_create("t", 2))
      assert(log:produce("t", { value = "first", partition = 1 }))
      local rs = assert(log:produce_batch("t", {
        { value = "a", partition = 0 },
        { value = "b", partition = 1 },
        { value = "c", partition = 0, id = "given" },
        { value = "d", key = "foobar" },
      }))
      assert.equal(4, #rs)
      assert.same({ partition = 0, offset = 0 }, { partition = rs[1].partition, offset = rs[1].offset })
      assert.same({ partition = 1, offset = 1 }, { partition = rs[2].partition, offset = rs[2].offset })
      assert.same({ partition = 0, offset = 1, id = "given" }, rs[3])
      local fp = eddy.partition_for("foobar", 2)
      assert.equal(fp, rs[4].partition)
      assert.equal(2, rs[4].offset)
      assert.is_truthy(rs[1].id:match(UUID_PATTERN))
      assert.is_true(rs[2].id > rs[1].id)
      assert.same(fp == 0 and { "a", "c", "d" } or { "a", "c" }, values(log, "t", 0))
      assert.same(fp == 1 and { "first", "b", "d" } or { "first", "b" }, values(log, "t", 1))
      for _, r in ipairs(rs) do
        assert.equal(r.id, assert(log:read("t", r.partition, r.offset, 1))[1].id)
      end
    end)

    it("writes nothing when one message is refused", function()
      local defer = scope()
      local log = fresh(defer)
      assert.is_true(log:topic_create("x", 2, { max_message_bytes = 100 }))
      assert(log:produce("x", { value = "before", partition = 0 }))
      local before = all_offsets(log, "x")
      local rs, err = log:produce_batch("x", {
        { value = "a", partition = 0 },
        { value = "b", partition = 1 },
        { value = string.rep("v", 101), partition = 0 },
        { value = "d", partition = 1 },
      })
      assert.is_nil(rs)
      assert.equal("value of 101 bytes is over the limit of 100 bytes of topic 'x' (message 3)", err)
      assert.same(before, all_offsets(log, "x"))
      assert.same({ "before" }, values(log, "x", 0))
      assert.same({}, values(log, "x", 1))
      assert.same({ 0, 1 }, pair(log:produce("x", { value = "after", partition = 0 })))
    end)

    it("names the message with a partition the topic does not have", function()
      local defer = scope()
      local log = fresh(defer)
      assert.is_true(log:topic_create("x", 2))
      assert.same({ nil, "topic 'x' has no partition 5 (it has 2) (message 2)" },
                  { log:produce_batch("x", { { value = "a" }, { value = "b", partition = 5 } }) })
      assert.same({ nil, "topic 'x' has no partition -3 (it has 2) (message 2)" },
                  { log:produce_batch("x", { { value = "a" }, { value = "b", partition = -3 } }) })
      assert.same({ { 0, 0 }, { 0, 0 } }, all_offsets(log, "x"))
    end)

    it("names the refused message in a batch of one message too", function()
      -- The documented contract: "a failure caused by one message ends in
      -- ' (message I)'", as the raised errors of a batch of one say
      -- "message 1: ...".
      local defer = scope()
      local log = fresh(defer)
      assert.is_true(log:topic_create("x", 2, { max_message_bytes = 10 }))
      raises("(message 1: value must be a string)", log.produce_batch, log, "x", { { value = 1 } })
      assert.same({ nil, "value of 11 bytes is over the limit of 10 bytes of topic 'x' (message 1)" },
                  { log:produce_batch("x", { { value = string.rep("v", 11) } }) })
      assert.same({ nil, "topic 'x' has no partition 7 (it has 2) (message 1)" },
                  { log:produce_batch("x", { { value = "v", partition = 7 } }) })
      assert.same({ { 0, 0 }, { 0, 0 } }, all_offsets(log, "x"))
    end)

    it("returns an empty array for no messages", function()
      local defer = scope()
      local log = fresh(defer)
      assert.is_true(log:topic_create("t", 1))
      assert.same({}, assert(log:produce_batch("t", {})))
      assert.same({ nil, "unknown topic 'y'" }, { log:produce_batch("y", { { value = "v" } }) })
    end)

    it("raises on a malformed message, naming it", function()
      local defer = scope()
      local log = fresh(defer)
      assert.is_true(log:topic_create("t", 1))
      raises("(message 2: value must be a string)", log.produce_batch, log, "t",
             { { value = "a" }, { value = 1 } })
      raises("(message 1 must be a table)", log.produce_batch, log, "t", { "a" })
      assert.same({ { 0, 0 } }, all_offsets(log, "t"))
    end)
  end)

  describe(":read()", function()
    local function ten(defer)
      local log = fresh(defer)
      assert.is_true(log:topic_create("x", 2))
      for i = 0, 9 do assert(log:produce("x", { value = "m" .. i, partition = 0 })) end
      return log
    end

    it("reads from an offset in offset order", function()
      local defer = scope()
      local log = ten(defer)
      local ms = assert(log:read("x", 0, 7))
      assert.equal(3, #ms)
      for i, m in ipairs(ms) do
        assert.equal(6 + i, m.offset)
        assert.equal("m" .. (6 + i), m.value)
        assert.equal("x", m.topic)
        assert.equal(0, m.partition)
      end
    end)

    it("reads at most limit messages, 100 by default", function()
      local defer = scope()
      local log = ten(defer)
      local ms = assert(log:read("x", 0, 2, 3))
      assert.same({ 2, 3, 4 }, { ms[1].offset, ms[2].offset, ms[3].offset })
      assert.equal(3, #ms)
      assert(log:produce_batch("x", (function()
        local t = {}
        for i = 1, 150 do t[i] = { value = "b", partition = 1 } end
        return t
      end)()))
      assert.equal(100, #assert(log:read("x", 1, 0)))
      assert.equal(150, #assert(log:read("x", 1, 0, 100000)))
      raises("(limit must be between 1 and 100000)", log.read, log, "x", 0, 0, 0)
      raises("(limit must be between 1 and 100000)", log.read, log, "x", 0, 0, 100001)
    end)

    it("returns an empty array past the end and for an empty partition", function()
      local defer = scope()
      local log = ten(defer)
      assert.same({}, assert(log:read("x", 0, 10)))
      assert.same({}, assert(log:read("x", 0, 1000)))
      assert.same({}, assert(log:read("x", 1, 0)))
    end)

    it("reads from the log start when the offset is below it", function()
      local defer = scope()
      local log = ten(defer)
      local ms = assert(log:read("x", 0, -5, 2))
      assert.same({ 0, 1 }, { ms[1].offset, ms[2].offset })
    end)

    it("fails on an unknown topic and on a partition the topic does not have", function()
      local defer = scope()
      local log = ten(defer)
      assert.same({ nil, "unknown topic 'y'" }, { log:read("y", 0, 0) })
      assert.same({ nil, "topic 'x' has no partition 9 (it has 2)" }, { log:read("x", 9, 0) })
      assert.same({ nil, "topic 'x' has no partition -1 (it has 2)" }, { log:read("x", -1, 0) })
    end)
  end)

  describe(":offsets()", function()
    it("returns the log start and the next offset", function()
      local defer = scope()
      local log = fresh(defer)
      assert.is_true(log:topic_create("x", 2))
      assert.same({ 0, 0 }, { log:offsets("x", 1) })
      for _ = 1, 3 do assert(log:produce("x", { value = "v", partition = 1 })) end
      assert.same({ 0, 3 }, { log:offsets("x", 1) })
      assert.same({ 0, 0 }, { log:offsets("x", 0) })
      assert.same({ nil, "topic 'x' has no partition 9 (it has 2)" }, { log:offsets("x", 9) })
      assert.same({ nil, "unknown topic 'y'" }, { log:offsets("y", 0) })
    end)
  end)

  describe(":commit() and :committed()", function()
    it("has no offset before a commit and the committed one after", function()
      local defer = scope()
      local log = fresh(defer)
      assert.is_true(log:topic_create("x", 2))
      assert.equal(1, select("#", log:committed("g", "x", 0)))
      assert.is_nil(log:committed("g", "x", 0))
      assert.same({ true }, { log:commit("g", "x", 0, 5) })
      assert.same({ 5 }, { log:committed("g", "x", 0) })
      assert.same({ true }, { log:commit("g", "x", 0, 2) })
      assert.equal(2, log:committed("g", "x", 0))
      assert.is_nil(log:committed("g", "x", 1))
    end)

    it("keeps the offsets of each group apart", function()
      local defer = scope()
      local log = fresh(defer)
      assert.is_true(log:topic_create("x", 2))
      assert.is_true(log:topic_create("y", 1))
      assert(log:commit("g1", "x", 0, 1))
      assert(log:commit("g2", "x", 0, 7))
      assert(log:commit("g2", "x", 1, 3))
      assert(log:commit("g1", "y", 0, 9))
      assert.equal(1, log:committed("g1", "x", 0))
      assert.equal(7, log:committed("g2", "x", 0))
      assert.equal(3, log:committed("g2", "x", 1))
      assert.is_nil(log:committed("g1", "x", 1))
      assert.equal(9, log:committed("g1", "y", 0))
      assert.is_nil(log:committed("g2", "y", 0))
    end)

    it("keeps offsets across close and reopen", function()
      local defer = scope()
      local log, dir = fresh(defer)
      assert.is_true(log:topic_create("x", 1))
      assert(log:commit("g", "x", 0, 42))
      log:close()
      local again = open(defer, dir)
      assert.equal(42, again:committed("g", "x", 0))
      assert.is_nil(again:committed("h", "x", 0))
    end)

    it("fails on a bad group, topic, partition or offset", function()
      local defer = scope()
      local log = fresh(defer)
      assert.is_true(log:topic_create("x", 2))
      assert.same({ nil, "consumer group name is empty" }, { log:commit("", "x", 0, 1) })
      assert.same({ nil, "consumer group name is longer than 255 bytes" },
                  { log:commit(string.rep("g", 256), "x", 0, 1) })
      assert.same({ nil, "unknown topic 'y'" }, { log:commit("g", "y", 0, 1) })
      assert.same({ nil, "topic 'x' has no partition 9 (it has 2)" }, { log:commit("g", "x", 9, 1) })
      assert.same({ nil, "offset must not be negative, got -1" }, { log:commit("g", "x", 0, -1) })
      assert.same({ nil, "unknown topic 'y'" }, { log:committed("g", "y", 0) })
      assert.same({ nil, "topic 'x' has no partition 9 (it has 2)" }, { log:committed("g", "x", 9) })
      assert.same({ nil, "consumer group name is empty" }, { log:committed("", "x", 0) })
      assert.is_nil(log:committed("g", "x", 0))
    end)
  end)

  describe("two logs on one store", function()
    it("see each other's writes", function()
      local defer = scope()
      local a, dir = fresh(defer)
      local b = open(defer, dir)
      assert.is_true(a:topic_create("t", 1))
      assert.equal(1, assert(b:topic("t")).partitions)
      assert.same({ 0, 0 }, pair(a:produce("t", { value = "from a" })))
      assert.same({ "from a" }, values(b, "t", 0))
      assert.same({ 0, 1 }, pair(b:produce("t", { value = "from b" })))
      assert.same({ "from a", "from b" }, values(a, "t", 0))
      assert.same({ 0, 2 }, { a:offsets("t", 0) })
      assert(b:commit("g", "t", 0, 2))
      assert.equal(2, a:committed("g", "t", 0))
      assert.same({ nil, "topic 't' already exists" }, { b:topic_create("t", 1) })
      b:close()
      assert.same({ "from a", "from b" }, values(a, "t", 0))
    end)
  end)

  describe(":close()", function()
    it("is idempotent", function()
      local defer = scope()
      local log = fresh(defer)
      assert.same({ true }, { log:close() })
      assert.same({ true }, { log:close() })
    end)

    it("closes the store's connection", function()
      -- SQLite removes the WAL file when the last connection to a store
      -- closes: its absence shows the connection is gone.
      local defer = scope()
      local log, dir = fresh(defer)
      assert.is_true(log:topic_create("t", 1))
      assert.is_true(helpers.exists(dir .. "/eddy.db-wal"))
      log:close()
      assert.is_false(helpers.exists(dir .. "/eddy.db-wal"))
    end)

    it("happens when the log is collected", function()
      local defer = scope()
      local dir = tmpdir(defer)
      local log = assert(eddy.open { data = dir })
      assert.is_true(log:topic_create("t", 1))
      assert.is_true(helpers.exists(dir .. "/eddy.db-wal"))
      log = nil  -- luacheck: ignore 311
      collectgarbage()
      collectgarbage()
      assert.is_false(helpers.exists(dir .. "/eddy.db-wal"))
    end)

    it("makes every other method raise", function()
      local defer = scope()
      local log = fresh(defer)
      assert.is_true(log:topic_create("t", 1))
      log:close()
      local calls = {
        topic_create = { "u", 1 }, topic_ensure = { "u", 1 }, topics = {},
        topic = { "t" }, produce = { "t", { value = "v" } },
        produce_batch = { "t", { { value = "v" } } }, read = { "t", 0, 0 },
        offsets = { "t", 0 }, commit = { "g", "t", 0, 1 },
        committed = { "g", "t", 0 }, trim = { "t" },
      }
      local n = 0
      for name, args in pairs(calls) do
        n = n + 1
        assert.has_error(function() return log[name](log, table.unpack(args)) end,
                         "attempt to use a closed eddy log")
      end
      assert.equal(11, n)
    end)

    it("shows in tostring", function()
      local defer = scope()
      local log, dir = fresh(defer)
      assert.equal("eddy.log (" .. dir .. ")", tostring(log))
      log:close()
      assert.equal("eddy.log (closed)", tostring(log))
    end)

    it("happens when a <close> variable goes out of scope", function()
      local defer = scope()
      local dir = tmpdir(defer)
      local kept
      do
        local log <close> = assert(eddy.open { data = dir })
        kept = log
        assert.is_true(log:topic_create("t", 1))
        assert.equal("eddy.log (" .. dir .. ")", tostring(kept))
      end
      assert.equal("eddy.log (closed)", tostring(kept))
      assert.is_false(helpers.exists(dir .. "/eddy.db-wal"))
      assert.has_error(function() kept:topics() end, "attempt to use a closed eddy log")
      local again = open(defer, dir)
      assert.equal("t", assert(again:topic("t")).name)
    end)

    it("happens when a <close> variable's scope ends with an error", function()
      local defer = scope()
      local dir = tmpdir(defer)
      local kept
      local ok, err = pcall(function()
        local log <close> = assert(eddy.open { data = dir })
        kept = log
        error("boom", 0)
      end)
      assert.same({ false, "boom" }, { ok, err })
      assert.equal("eddy.log (closed)", tostring(kept))
    end)
  end)

  describe("on a busy store", function()
    -- A sqlite3 process holds the write lock from "BEGIN IMMEDIATE;" until
    -- it reads "COMMIT;" from a FIFO the test writes: the lock is held for
    -- exactly as long as the test needs, with no sleep deciding it.
    local function hold_lock(defer, dir)
      local fifo = dir .. "/lock.fifo"
      assert.equal(0, helpers.exec({ "mkfifo", fifo }).code)
      local holder = helpers.spawn_cmd({ "sqlite3", dir .. "/eddy.db" }, { stdin_file = fifo })
      -- Opened after the spawn, so that sqlite3 does not inherit it and sees
      -- the end of its input when it is closed; r+ opens a FIFO without
      -- waiting for the reader (Linux).
      local w = assert(io.open(fifo, "r+"))
      local h = { holder = holder }
      function h.release()
        if w then
          w:write("COMMIT;\n")
          w:close()
          w = nil
        end
        return helpers.wait_exit(holder, 10, "sqlite3 to commit and exit")
      end
      defer(function()
        if w then w:close(); w = nil end
        helpers.cleanup(holder)
      end)
      -- .timeout: the holder itself waits for the probe's writes below
      w:write(".timeout 10000\nBEGIN IMMEDIATE;\n")
      w:flush()
      local probe = open(defer, dir, { lock_timeout = 50 })
      helpers.wait_until(function()
        return probe:produce("t", { value = "probe" }) == nil
      end, 10, "sqlite3 to take the write lock")
      return h
    end

    it("gives up writing after the lock timeout with a message naming the store", function()
      local defer = scope()
      local log, dir = fresh(defer, { lock_timeout = 200 })
      assert.is_true(log:topic_create("t", 1))
      local lock = hold_lock(defer, dir)
      local start, next = log:offsets("t", 0)
      local busy = "store '" .. dir .. "' is busy: gave up writing after waiting 200 ms"
        .. " for another process to release its lock"
      local t0 = system.monotime()
      local p, err = log:produce("t", { value = "x" })
      local waited = system.monotime() - t0
      assert.is_true(waited >= 0.19, "gave up after " .. waited .. " s")
      assert.is_nil(p)
      assert.equal(busy, err)
      assert.equal(1, err:find("store '" .. dir .. "' is busy: gave up writing after waiting 200 ms", 1, true))
      assert.is_nil(err:find("database is locked", 1, true))
      assert.same({ nil, busy }, { log:produce_batch("t", { { value = "y" } }) })
      assert.same({ nil, busy }, { log:topic_create("u", 1) })
      assert.same({ nil, busy }, { log:topic_ensure("u", 1) })
      assert.same({ nil, busy }, { log:commit("g", "t", 0, 1) })
      -- reading goes on beside the writer
      assert.same({ start, next }, { log:offsets("t", 0) })
      assert.equal(next - start, #assert(log:read("t", 0, 0, 1000)))
      assert.same({ nil, "unknown topic 'u'" }, { log:topic("u") })

      assert.equal(0, lock.release())
      assert.equal("", helpers.read(lock.holder.err))
      assert.same({ 0, next }, pair(log:produce("t", { value = "x" })))
      assert.same({ true }, { log:commit("g", "t", 0, 1) })
      assert.equal("x", assert(log:read("t", 0, next))[1].value)
    end)

    it("gives up trimming after the lock timeout", function()
      local defer = scope()
      local log, dir = fresh(defer, { lock_timeout = 200 })
      assert.is_true(log:topic_create("t", 1))
      assert.is_true(log:topic_create("r", 1, { retention_ms = 1000 }))
      local lock = hold_lock(defer, dir)
      assert.same({ nil, "store '" .. dir .. "' is busy: gave up writing after waiting 200 ms"
                    .. " for another process to release its lock" }, { log:trim("r") })
      assert.equal(0, lock.release())
      assert.same({ 0 }, { log:trim("r") })
    end)

    it("opens beside a process that holds the write lock", function()
      local defer = scope()
      local log, dir = fresh(defer)
      assert.is_true(log:topic_create("t", 1))
      local lock = hold_lock(defer, dir)
      local other = open(defer, dir, { lock_timeout = 100 })
      assert.equal("t", assert(other:topic("t")).name)
      assert.equal(0, lock.release())
    end)
  end)
end)
