--- Specs of retention through the Lua module: log:trim() by age and by
-- size, and retention applied by produce.
--
-- No test waits on the clock: "old" messages carry a timestamp two minutes
-- in the past and topics keep one minute.  Produce applies retention itself
-- at most once a second per log (runtime/log.c, eddy_log_produce), so
-- wherever that may have run the specs assert the resulting state (log
-- start, next offset, the messages left), which is the same whichever trim
-- removed the messages, and trim's count only relative to the state it
-- found.
local eddy = require "eddy"
local helpers = require "helpers"

local MINUTE = 60000

-- Every test calls scope() once and registers its cleanups with the
-- function it returns (helpers.defer: last first).
local function scope()
  return function(fn) helpers.defer(finally, fn) end
end

-- A log on a new store in a new directory, both removed at the end.
local function fresh(defer)
  local dir = helpers.tmpdir()
  defer(function() helpers.rmdir(dir) end)
  local log, err = eddy.open { data = dir }
  assert(log, err)
  defer(function() log:close() end)
  return log, dir
end

-- Now, in milliseconds, as the store's clock sees it (to the second).
local function now_ms() return os.time() * 1000 end

-- The first two of its arguments, as an array.
local function pair(a, b) return { a, b } end

-- The messages of topic partition p from offset 0 as { offset, value }.
local function contents(log, topic, p)
  local out = {}
  for i, m in ipairs(assert(log:read(topic, p, 0, 100000))) do
    out[i] = { m.offset, m.value }
  end
  return out
end

-- { offset, value } for offsets first..last with value prefix .. offset.
local function expected(first, last, prefix)
  local out = {}
  for o = first, last do out[#out + 1] = { o, prefix .. o } end
  return out
end

-- How many messages topic partition p holds now.
local function stored(log, topic, p)
  local start, next = assert(log:offsets(topic, p))
  return next - start
end

describe("eddy.log", function()
  describe(":trim() by age", function()
    it("removes the messages older than retention_ms from the front", function()
      local defer = scope()
      local log = fresh(defer)
      assert.is_true(log:topic_create("t", 1, { retention_ms = MINUTE }))
      local old, young = now_ms() - 2 * MINUTE, now_ms()
      for o = 0, 4 do
        assert.same({ 0, o }, pair(log:produce("t", { value = "m" .. o, timestamp = old })))
      end
      for o = 5, 7 do
        assert.same({ 0, o }, pair(log:produce("t", { value = "m" .. o, timestamp = young })))
      end
      -- produce may have removed some already: trim removes the rest
      local before = stored(log, "t", 0)
      assert.same({ before - 3 }, { log:trim("t") })
      assert.same({ 5, 8 }, pair(log:offsets("t", 0)))
      assert.same(expected(5, 7, "m"), contents(log, "t", 0))
      local t = assert(log:topic("t"))
      assert.equal(3, t.messages)
      assert.same({ { partition = 0, log_start = 5, next_offset = 8 } }, t.offsets)
    end)

    it("returns the number of messages it removed", function()
      -- Produce applies retention only to topics that have it: the old
      -- messages are written while the topic keeps everything, and the
      -- retention is set afterwards with `eddy topic alter`.
      local defer = scope()
      local log, dir = fresh(defer)
      assert.is_true(log:topic_create("t", 2))
      local old, young = now_ms() - 2 * MINUTE, now_ms()
      for p = 0, 1 do
        for o = 0, 4 do assert(log:produce("t", { value = "m" .. o, partition = p, timestamp = old })) end
      end
      for o = 5, 6 do assert(log:produce("t", { value = "m" .. o, partition = 0, timestamp = young })) end
      assert.same({ 0 }, { log:trim("t") })
      assert.same({ 0, 7 }, pair(log:offsets("t", 0)))
      local r = helpers.run({ "--data", dir, "topic", "alter", "t", "--retention", "60s" })
      assert.equal(0, r.code, r.err)
      assert.equal(MINUTE, assert(log:topic("t")).retention_ms)
      assert.same({ 10 }, { log:trim("t") })
      assert.same({ 5, 7 }, pair(log:offsets("t", 0)))
      assert.same({ 5, 5 }, pair(log:offsets("t", 1)))
      assert.same({ 0 }, { log:trim("t") })
      assert.same({ 0 }, { log:trim() })
    end)

    it("reads the remaining messages with their original offsets", function()
      local defer = scope()
      local log = fresh(defer)
      assert.is_true(log:topic_create("t", 1, { retention_ms = MINUTE }))
      local old, young = now_ms() - 2 * MINUTE, now_ms()
      for o = 0, 3 do assert(log:produce("t", { value = "m" .. o, timestamp = old })) end
      for o = 4, 5 do assert(log:produce("t", { value = "m" .. o, timestamp = young })) end
      assert(log:trim("t"))
      -- from 0, below the log start: from the log start
      local ms = assert(log:read("t", 0, 0))
      assert.same({ 4, 5 }, { ms[1].offset, ms[2].offset })
      assert.same({ "m4", "m5" }, { ms[1].value, ms[2].value })
      assert.equal(young, ms[1].timestamp)
      assert.equal(2, #ms)
      assert.same({ { 5, "m5" } }, (function()
        local out = {}
        for i, m in ipairs(assert(log:read("t", 0, 5))) do out[i] = { m.offset, m.value } end
        return out
      end)())
      assert.same({}, assert(log:read("t", 0, 6)))
    end)

    it("lets the next produce continue the offsets", function()
      local defer = scope()
      local log = fresh(defer)
      assert.is_true(log:topic_create("t", 1, { retention_ms = MINUTE }))
      local old = now_ms() - 2 * MINUTE
      for _ = 0, 5 do assert(log:produce("t", { value = "old", timestamp = old })) end
      assert(log:trim("t"))
      -- every message was old: the partition is empty, its offsets go on
      assert.same({ 6, 6 }, pair(log:offsets("t", 0)))
      assert.same({}, assert(log:read("t", 0, 0)))
      assert.same({ 0, 6 }, pair(log:produce("t", { value = "new" })))
      assert.same({ { 6, "new" } }, contents(log, "t", 0))
      assert.same({ 6, 7 }, pair(log:offsets("t", 0)))
    end)

    it("stops at the first young message, keeping an old one behind it", function()
      local defer = scope()
      local log = fresh(defer)
      assert.is_true(log:topic_create("t", 1, { retention_ms = MINUTE }))
      local old, young = now_ms() - 2 * MINUTE, now_ms()
      assert(log:produce("t", { value = "m0", timestamp = old }))
      assert(log:produce("t", { value = "m1", timestamp = old }))
      assert(log:produce("t", { value = "m2", timestamp = young }))
      assert(log:produce("t", { value = "m3", timestamp = old }))
      assert(log:trim("t"))
      assert.same({ 2, 4 }, pair(log:offsets("t", 0)))
      assert.same(expected(2, 3, "m"), contents(log, "t", 0))
      assert.same({ 0 }, { log:trim("t") })
    end)

    it("trims every partition", function()
      local defer = scope()
      local log = fresh(defer)
      assert.is_true(log:topic_create("t", 3, { retention_ms = MINUTE }))
      local old, young = now_ms() - 2 * MINUTE, now_ms()
      for p = 0, 2 do
        for o = 0, p do assert(log:produce("t", { value = "m" .. o, partition = p, timestamp = old })) end
        assert(log:produce("t", { value = "m" .. (p + 1), partition = p, timestamp = young }))
      end
      assert(log:trim("t"))
      for p = 0, 2 do
        assert.same({ p + 1, p + 2 }, pair(log:offsets("t", p)))
        assert.same({ { p + 1, "m" .. (p + 1) } }, contents(log, "t", p))
      end
    end)

    it("is applied by the first produce of a new producer", function()
      -- A new process has never applied retention, so its first produce
      -- does (whether the once-a-second limit is per log or per process).
      local defer = scope()
      local log, dir = fresh(defer)
      assert.is_true(log:topic_create("t", 1, { retention_ms = MINUTE }))
      local old = now_ms() - 2 * MINUTE
      for _ = 0, 4 do assert(log:produce("t", { value = "old", timestamp = old })) end
      local r = helpers.run({ "--data", dir, "produce", "t", "young" })
      assert.equal(0, r.code, r.err)
      assert.same({ 5, 6 }, pair(log:offsets("t", 0)))
      assert.same({ { 5, "young" } }, contents(log, "t", 0))
    end)

    it("is applied by the first produce of a new log", function()
      -- runtime/log.c keeps the once-a-second limit per log (store handle)
      local defer = scope()
      local log, dir = fresh(defer)
      assert.is_true(log:topic_create("t", 1, { retention_ms = MINUTE }))
      local old = now_ms() - 2 * MINUTE
      for _ = 0, 4 do assert(log:produce("t", { value = "old", timestamp = old })) end
      local other = assert(eddy.open { data = dir })
      defer(function() other:close() end)
      assert.same({ 0, 5 }, pair(other:produce("t", { value = "young" })))
      assert.same({ 5, 6 }, pair(log:offsets("t", 0)))
      assert.same({ { 5, "young" } }, contents(log, "t", 0))
    end)
  end)

  describe(":trim() by size", function()
    it("keeps the newest messages whose total is at most retention_bytes", function()
      local defer = scope()
      local log = fresh(defer)
      assert.is_true(log:topic_create("t", 1, { retention_bytes = 1000 }))
      for o = 0, 19 do
        local v = string.format("%02d", o) .. string.rep("v", 98)
        assert.same({ 0, o }, pair(log:produce("t", { value = v })))
      end
      local before = stored(log, "t", 0)
      assert.same({ before - 10 }, { log:trim("t") })
      assert.same({ 10, 20 }, pair(log:offsets("t", 0)))
      local ms = assert(log:read("t", 0, 0))
      assert.equal(10, #ms)
      for i, m in ipairs(ms) do
        assert.equal(9 + i, m.offset)
        assert.equal(string.format("%02d", 9 + i) .. string.rep("v", 98), m.value)
      end
      assert.equal(10, assert(log:topic("t")).messages)
      assert.same({ 0 }, { log:trim("t") })
    end)

    it("counts keys and headers as well as values", function()
      local defer = scope()
      local log = fresh(defer)
      assert.is_true(log:topic_create("t", 1, { retention_bytes = 1000 }))
      -- 16 bytes of key + 80 of value + 4 of headers (1 + "h" + 1 + "x")
      for o = 0, 19 do
        assert(log:produce("t", { key = string.format("key-%012d", o), value = string.rep("v", 80),
                                  headers = { { "h", "x" } } }))
      end
      assert(log:trim("t"))
      assert.same({ 10, 20 }, pair(log:offsets("t", 0)))
      assert.equal(string.format("key-%012d", 10), assert(log:read("t", 0, 0))[1].key)
    end)

    it("removes whole messages until the rest fits", function()
      local defer = scope()
      local log = fresh(defer)
      assert.is_true(log:topic_create("t", 1, { retention_bytes = 1000 }))
      -- 20 messages of 150 bytes: the newest 6 (900 bytes) fit, 7 would not
      for o = 0, 19 do assert(log:produce("t", { value = string.rep("v", 145) .. string.format("%05d", o) })) end
      assert(log:trim("t"))
      assert.same({ 14, 20 }, pair(log:offsets("t", 0)))
      assert.equal(string.rep("v", 145) .. "00014", assert(log:read("t", 0, 0))[1].value)
      assert.equal(6, #assert(log:read("t", 0, 0)))
    end)

    it("applies the limit to each partition", function()
      local defer = scope()
      local log = fresh(defer)
      assert.is_true(log:topic_create("t", 2, { retention_bytes = 1000 }))
      for p = 0, 1 do
        for o = 0, 14 + p do
          assert(log:produce("t", { value = string.rep("v", 98) .. string.format("%02d", o), partition = p }))
        end
      end
      assert(log:trim("t"))
      assert.same({ 5, 15 }, pair(log:offsets("t", 0)))
      assert.same({ 6, 16 }, pair(log:offsets("t", 1)))
      assert.equal(20, assert(log:topic("t")).messages)
    end)

    it("keeps a partition within the limit as it is", function()
      local defer = scope()
      local log = fresh(defer)
      assert.is_true(log:topic_create("t", 1, { retention_bytes = 1000 }))
      for _ = 1, 10 do assert(log:produce("t", { value = string.rep("v", 100) })) end
      assert.same({ 0 }, { log:trim("t") })
      assert.same({ 0, 10 }, pair(log:offsets("t", 0)))
    end)

    it("applies age and size together", function()
      local defer = scope()
      local log = fresh(defer)
      assert.is_true(log:topic_create("t", 1, { retention_ms = MINUTE, retention_bytes = 500 }))
      local old, young = now_ms() - 2 * MINUTE, now_ms()
      for _ = 0, 2 do assert(log:produce("t", { value = string.rep("o", 100), timestamp = old })) end
      for _ = 3, 10 do assert(log:produce("t", { value = string.rep("y", 100), timestamp = young })) end
      assert(log:trim("t"))
      -- the 3 old ones by age, then 3 young ones leave 5 x 100 bytes
      assert.same({ 6, 11 }, pair(log:offsets("t", 0)))
      assert.equal(5, #assert(log:read("t", 0, 0)))
      assert.same({ 0 }, { log:trim("t") })
    end)
  end)

  describe(":trim()", function()
    it("removes nothing from a topic without retention", function()
      local defer = scope()
      local log = fresh(defer)
      assert.is_true(log:topic_create("t", 1))
      for o = 0, 4 do
        assert(log:produce("t", { value = "m" .. o, timestamp = 1 }))
      end
      assert.same({ 0 }, { log:trim("t") })
      assert.same({ 0 }, { log:trim() })
      assert.same({ 0, 5 }, pair(log:offsets("t", 0)))
      assert.same(expected(0, 4, "m"), contents(log, "t", 0))
      local t = assert(log:topic("t"))
      assert.equal(-1, t.retention_ms)
      assert.equal(-1, t.retention_bytes)
      assert.equal(5, t.messages)
    end)

    it("trims every topic when no topic is named", function()
      local defer = scope()
      local log = fresh(defer)
      assert.is_true(log:topic_create("a", 1, { retention_ms = MINUTE }))
      assert.is_true(log:topic_create("b", 1, { retention_bytes = 100 }))
      assert.is_true(log:topic_create("c", 1))
      local old = now_ms() - 2 * MINUTE
      for _ = 1, 3 do
        assert(log:produce("a", { value = "x", timestamp = old }))
        assert(log:produce("b", { value = string.rep("x", 100), timestamp = old }))
        assert(log:produce("c", { value = "x", timestamp = old }))
      end
      local before = stored(log, "a", 0) + stored(log, "b", 0)
      assert.same({ before - 1 }, { log:trim() })
      assert.same({ 3, 3 }, pair(log:offsets("a", 0)))
      assert.same({ 2, 3 }, pair(log:offsets("b", 0)))
      assert.same({ 0, 3 }, pair(log:offsets("c", 0)))
    end)

    it("fails on an unknown topic or a bad name", function()
      local defer = scope()
      local log = fresh(defer)
      assert.same({ nil, "unknown topic 'x'" }, { log:trim("x") })
      assert.same({ nil, "invalid topic name 'a b': use only letters, digits, '.', '_' and '-'" },
                  { log:trim("a b") })
    end)

    it("raises on a closed log", function()
      local defer = scope()
      local log = fresh(defer)
      log:close()
      assert.has_error(function() log:trim() end, "attempt to use a closed eddy log")
      assert.has_error(function() log:trim("t") end, "attempt to use a closed eddy log")
    end)
  end)
end)
