--- The eddy command line on good input: every command's output, asserted by
-- value.  Bad input is in cli_bad_input_spec.lua, several processes at once
-- in concurrency_spec.lua.
local cjson = require "cjson"
local core = require "eddy.core"
local H = require "helpers"

--- Runs fn when the test ends (as many as needed; see H.defer).
local function defer(fn) H.defer(finally, fn) end

--- A fresh data directory, removed when the test ends.
local function datadir()
  local dir = H.tmpdir()
  defer(function() H.rmdir(dir) end)
  return dir
end

--- Runs eddy on dir and asserts it succeeded with nothing on stderr.
local function ok(dir, ...)
  local args = { "--data", dir, ... }
  local opts
  if type(args[#args]) == "table" then opts = table.remove(args) end
  local r = H.run(args, opts)
  assert.are.same({ code = 0, err = "" }, { code = r.code, err = r.err },
                  "eddy " .. table.concat(args, " "))
  return r.out
end

--- Kafka's default partition for a key whose murmur2 (as Java's signed
-- 32-bit int) is hash.
local function kafka_partition(hash, n)
  return (hash & 0x7fffffff) % n
end

--- Values of a list of decoded messages.
local function values(msgs)
  local t = {}
  for i, m in ipairs(msgs) do t[i] = m.value end
  return t
end

describe("eddy topic create", function()
  it("creates a topic with N partitions, each empty", function()
    local dir = datadir()
    assert.equal("created topic 'orders' with 4 partitions\n",
                 ok(dir, "topic", "create", "orders", "--partitions", "4"))
    assert.equal("created topic 'one' with 1 partition\n",
                 ok(dir, "topic", "create", "one"))
    local t = H.topics(dir)
    assert.equal(4, t.orders.partitions)
    assert.equal(0, t.orders.messages)
    assert.equal(1, t.one.partitions)
    for p = 0, 3 do
      assert.same({ partition = p, log_start = 0, high_watermark = 0, messages = 0 },
                  t.orders.offsets[p + 1])
    end
  end)

  it("with --if-not-exists succeeds on an existing topic and changes nothing", function()
    local dir = datadir()
    ok(dir, "topic", "create", "t", "-p", "3")
    ok(dir, "produce", "t", "kept")
    assert.equal("topic 't' exists with 2 or more partitions\n",
                 ok(dir, "topic", "create", "t", "-p", "2", "--if-not-exists"))
    assert.equal("created topic 'u' with 2 partitions\n",
                 ok(dir, "topic", "create", "u", "-p", "2", "--if-not-exists"))
    local t = H.topics(dir)
    assert.equal(3, t.t.partitions)
    assert.equal(1, t.t.messages)
    assert.equal(2, t.u.partitions)
  end)
end)

describe("eddy topic list", function()
  it("prints a header and one aligned row per topic, sorted by name", function()
    local dir = datadir()
    ok(dir, "topic", "create", "zeta", "-p", "2")
    ok(dir, "topic", "create", "alpha", "-p", "3", "--retention", "7d")
    ok(dir, "produce", "alpha", "-p", "1", "x")
    ok(dir, "produce", "alpha", "-p", "1", "y")
    ok(dir, "produce", "alpha", "-p", "2", "z")
    assert.equal(
      "TOPIC                    PARTITIONS   MESSAGES  RETENTION HIGH-WATERMARKS\n" ..
      "alpha                             3          3  7d        0,2,1\n" ..
      "zeta                              2          0  forever   0,0\n",
      ok(dir, "topic", "list"))
  end)

  it("with --json gives name, partitions, messages and per-partition offsets", function()
    local dir = datadir()
    ok(dir, "topic", "create", "t", "-p", "2", "--retention-bytes", "1MiB",
       "--max-message-bytes", "2KiB")
    ok(dir, "produce", "t", "-p", "0", "a")
    ok(dir, "produce", "t", "-p", "1", "b")
    ok(dir, "produce", "t", "-p", "1", "c")
    local lines = H.json_lines(ok(dir, "topic", "list", "--json"))
    assert.same({ {
      name = "t", partitions = 2, messages = 3, retention_ms = -1,
      retention_bytes = 1048576, max_message_bytes = 2048,
      offsets = {
        { partition = 0, log_start = 0, high_watermark = 1, messages = 1 },
        { partition = 1, log_start = 0, high_watermark = 2, messages = 2 },
      },
    } }, lines)
  end)

  it("prints only the header (and no JSON line) for a store without topics", function()
    local dir = datadir()
    assert(core.open { data = dir }):close()
    assert.equal("TOPIC                    PARTITIONS   MESSAGES  RETENTION HIGH-WATERMARKS\n",
                 ok(dir, "topic", "list"))
    assert.equal("", ok(dir, "topic", "list", "--json"))
  end)
end)

describe("eddy produce", function()
  it("writes one VALUE and with --json prints topic, partition, offset, id and timestamp", function()
    local dir = datadir()
    ok(dir, "topic", "create", "t")
    local out = H.json_lines(ok(dir, "produce", "t", "hello", "--json"))
    assert.equal(1, #out)
    local m = out[1]
    assert.equal("t", m.topic)
    assert.equal(0, m.partition)
    assert.equal(0, m.offset)
    -- Milliseconds since the epoch (lua-cjson decodes every number as a float).
    assert.equal(math.floor(m.timestamp), m.timestamp)
    assert.is_true(math.abs(m.timestamp - os.time() * 1000) < 10000,
                   "not the time now in milliseconds: " .. m.timestamp)
    -- A UUIDv7: 36 characters, version nibble 7, variant 10.
    assert.equal(36, #m.id)
    assert.truthy(m.id:match("^%x%x%x%x%x%x%x%x%-%x%x%x%x%-7%x%x%x%-[89ab]%x%x%x%-%x%x%x%x%x%x%x%x%x%x%x%x$"),
                  "not a UUIDv7: " .. m.id)
    -- The id's 48-bit time is the message timestamp (same millisecond, or
    -- the id generator ran ahead of the clock by a little).
    local id_ms = tonumber(m.id:sub(1, 8) .. m.id:sub(10, 13), 16)
    assert.is_true(id_ms >= m.timestamp - 1000 and id_ms <= m.timestamp + 1000)
    local stored = H.messages(dir, "t")
    assert.equal(1, #stored)
    assert.equal(m.id, stored[1].id)
    assert.equal(m.timestamp, stored[1].timestamp)
    assert.equal("hello", stored[1].value)
  end)

  it("without --json prints nothing", function()
    local dir = datadir()
    ok(dir, "topic", "create", "t")
    assert.equal("", ok(dir, "produce", "t", "quiet"))
    assert.equal(1, H.topics(dir).t.messages)
  end)

  it("gives each partition offsets contiguous from 0", function()
    local dir = datadir()
    ok(dir, "topic", "create", "t", "-p", "3")
    local seen = { [0] = {}, {}, {} }
    for i = 1, 4 do
      for p = 0, 2 do
        local m = cjson.decode(ok(dir, "produce", "t", "-p", tostring(p), "--json",
                                  "v" .. i))
        assert.equal(p, m.partition)
        seen[p][#seen[p] + 1] = m.offset
      end
    end
    local more = H.json_lines(ok(dir, "produce", "t", "-p", "1", "--json",
                                 { stdin = "a\nb\nc\n" }))
    for _, m in ipairs(more) do seen[1][#seen[1] + 1] = m.offset end
    assert.same({ [0] = { 0, 1, 2, 3 }, { 0, 1, 2, 3, 4, 5, 6 }, { 0, 1, 2, 3 } }, seen)
  end)

  it("sends a keyed message to Kafka's default partition for the key", function()
    local dir = datadir()
    ok(dir, "topic", "create", "t", "-p", "4")
    -- murmur2 of each key as Kafka's Java client computes it (signed 32-bit).
    local murmur2 = {
      ["21"] = -973932308, foobar = -790332482,
      ["a-little-bit-long-string"] = -985981536, abc = 479470107,
    }
    assert.equal(2, kafka_partition(murmur2.foobar, 4))
    local first = {}
    for round = 1, 3 do
      for key, hash in pairs(murmur2) do
        local m = cjson.decode(ok(dir, "produce", "t", "--key", key, "--json", "r" .. round))
        assert.equal(kafka_partition(hash, 4), m.partition, "key " .. key)
        first[key] = first[key] or m.partition
        assert.equal(first[key], m.partition, "key " .. key .. " moved")
      end
    end
    -- The same keys read from standard input land in the same partitions.
    local input = {}
    for key in pairs(murmur2) do input[#input + 1] = key .. "=v" end
    local out = H.json_lines(ok(dir, "produce", "t", "-K", "=", "--json",
                                { stdin = table.concat(input, "\n") .. "\n" }))
    for i, line in ipairs(input) do
      local key = line:sub(1, -3)
      assert.equal(kafka_partition(murmur2[key], 4), out[i].partition, "key " .. key)
    end
    for _, m in ipairs(H.messages(dir, "t")) do
      assert.equal(kafka_partition(murmur2[m.key], 4), m.partition)
    end
  end)

  it("spreads unkeyed messages of one run exactly evenly over the partitions", function()
    local dir = datadir()
    ok(dir, "topic", "create", "t", "-p", "4")
    local out = H.json_lines(ok(dir, "produce", "t", "--json",
                                { stdin = H.numbered_lines("m", 400) }))
    assert.equal(400, #out)
    local offsets = { [0] = {}, {}, {}, {} }
    for _, m in ipairs(out) do
      local o = offsets[m.partition]
      o[#o + 1] = m.offset
    end
    for p = 0, 3 do
      assert.equal(100, #offsets[p], "partition " .. p)
      for i = 1, 100 do assert.equal(i - 1, offsets[p][i]) end
    end
    local t = H.topics(dir).t
    for p = 1, 4 do assert.equal(100, t.offsets[p].messages) end
  end)

  it("writes one message per line of standard input, 100,000 lines", function()
    local dir = datadir()
    ok(dir, "topic", "create", "t", "-p", "4")
    assert.equal("", ok(dir, "produce", "t", { stdin = H.numbered_lines("line-", 100000) }))
    local t = H.topics(dir).t
    assert.equal(100000, t.messages)
    for p = 1, 4 do assert.equal(25000, t.offsets[p].high_watermark) end
    -- The last line is the last message, its newline removed.
    local last = H.json_lines(ok(dir, "tail", "t", "--limit", "1", "--json"))
    assert.equal(1, #last)
    assert.equal("line-100000", last[1].value)
  end)

  it("keeps empty lines and a last line without a newline", function()
    local dir = datadir()
    ok(dir, "topic", "create", "t")
    ok(dir, "produce", "t", { stdin = "a\n\nb" })
    assert.same({ "a", "", "b" }, values(H.messages(dir, "t")))
  end)

  it("with --key-separator splits each line at the first separator", function()
    local dir = datadir()
    ok(dir, "topic", "create", "t", "-p", "4")
    ok(dir, "produce", "t", "--key-separator", ":",
       { stdin = "k1:v1\nk2:v:2\n:empty key\nk3:\n" })
    ok(dir, "produce", "t", "-K", "::", { stdin = "long::a:b\n" })
    local got = {}
    for _, m in ipairs(H.messages(dir, "t")) do got[m.key] = m.value end
    assert.same({ k1 = "v1", k2 = "v:2", [""] = "empty key", k3 = "", long = "a:b" }, got)
    -- A key from a line lands where --key puts it.
    local by_line = cjson.decode(ok(dir, "produce", "t", "-K", ":", "--json",
                                    { stdin = "foobar:x\n" }))
    local by_opt = cjson.decode(ok(dir, "produce", "t", "-k", "foobar", "--json", "x"))
    assert.equal(2, by_line.partition)
    assert.equal(by_line.partition, by_opt.partition)
  end)

  it("keeps --header order and repeats", function()
    local dir = datadir()
    ok(dir, "topic", "create", "t")
    ok(dir, "produce", "t", "--header", "b=2", "-H", "a=1", "-H", "b=3",
       "-H", "empty=", "-H", "eq=x=y", "-H", "b=4", "v")
    local r = ok(dir, "tail", "t", "--json")
    assert.truthy(r:find('"headers":{"b":["2","3","4"],"a":"1","empty":"","eq":"x=y"}', 1, true),
                  "headers not in order: " .. r)
    local m = H.json_lines(r)[1]
    assert.same({ b = { "2", "3", "4" }, a = "1", empty = "", eq = "x=y" }, m.headers)
  end)

  it("with --partition writes to that partition, whatever the key", function()
    local dir = datadir()
    ok(dir, "topic", "create", "t", "-p", "4")
    local m = cjson.decode(ok(dir, "produce", "t", "--partition", "3", "--json", "v"))
    assert.equal(3, m.partition)
    -- foobar alone would go to partition 2.
    m = cjson.decode(ok(dir, "produce", "t", "-k", "foobar", "-p", "0", "--json", "v"))
    assert.equal(0, m.partition)
    local out = H.json_lines(ok(dir, "produce", "t", "-p", "1", "--json",
                                { stdin = "a\nb\nc\nd\n" }))
    for _, o in ipairs(out) do assert.equal(1, o.partition) end
    local t = H.topics(dir).t
    assert.same({ 1, 4, 0, 1 }, { t.offsets[1].messages, t.offsets[2].messages,
                                  t.offsets[3].messages, t.offsets[4].messages })
  end)

  it("with --id keeps the given id", function()
    local dir = datadir()
    ok(dir, "topic", "create", "t")
    local m = cjson.decode(ok(dir, "produce", "t", "--id", "order-42/v1", "--json", "v"))
    assert.equal("order-42/v1", m.id)
    local stored = H.messages(dir, "t")
    assert.equal("order-42/v1", stored[1].id)
  end)

  it("round-trips UTF-8, tabs, quotes and backslashes unchanged", function()
    local dir = datadir()
    ok(dir, "topic", "create", "t")
    local value = "h\xc3\xa9llo\tw\xc3\xb6rld \"quoted\" 'single' back\\slash \xe2\x82\xac \xf0\x9f\x98\x80 \x01\x7f"
    local key = "cl\xc3\xa9 \"k\""
    ok(dir, "produce", "t", "--key", key, "-H", "n=v\xc3\xa4l\t\"", value)
    ok(dir, "produce", "t", "--key", "", "")
    local m = H.messages(dir, "t")
    assert.equal(value, m[1].value)
    assert.equal(key, m[1].key)
    assert.equal("v\xc3\xa4l\t\"", m[1].headers.n)
    assert.is_nil(m[1].value_encoding)
    assert.is_nil(m[1].key_encoding)
    -- An empty key is a key, an empty value a value.
    assert.equal("", m[2].key)
    assert.equal("", m[2].value)
  end)

  it("gives a value or key that is not UTF-8 back as base64", function()
    local dir = datadir()
    ok(dir, "topic", "create", "t")
    ok(dir, "produce", "t", { stdin = "\xff\xfeabc\n" })
    ok(dir, "produce", "t", "-K", "|", { stdin = "k\xc0\x80|ok\xed\xa0\x80\n" })
    local m = H.messages(dir, "t")
    assert.equal("//5hYmM=", m[1].value)
    assert.equal("base64", m[1].value_encoding)
    assert.equal("\xff\xfeabc", H.base64_decode(m[1].value))
    assert.equal(cjson.null, m[1].key)
    -- An overlong encoding and a UTF-16 surrogate are not UTF-8 either.
    assert.equal("base64", m[2].key_encoding)
    assert.equal("k\xc0\x80", H.base64_decode(m[2].key))
    assert.equal("base64", m[2].value_encoding)
    assert.equal("ok\xed\xa0\x80", H.base64_decode(m[2].value))
  end)

  it("accepts a value of exactly the topic's limit", function()
    local dir = datadir()
    ok(dir, "topic", "create", "t", "--max-message-bytes", "10")
    ok(dir, "produce", "t", "0123456789")
    ok(dir, "produce", "t", "-k", "0123456789", { stdin = "9876543210\n" })
    assert.equal(2, H.topics(dir).t.messages)
  end)
end)

describe("eddy tail", function()
  --- A one-partition topic "t" holding m1 .. m25 at offsets 0 .. 24.
  local function topic_of_25()
    local dir = datadir()
    ok(dir, "topic", "create", "t")
    ok(dir, "produce", "t", { stdin = H.numbered_lines("m", 25) })
    return dir
  end

  --- The text lines tail prints for values m<from> .. m<to> of partition 0.
  local function text_lines(from, to)
    local t = {}
    for i = from, to do t[#t + 1] = string.format("[t/0@%d] m%d\n", i - 1, i) end
    return table.concat(t)
  end

  it("prints the last 10 messages by default", function()
    local dir = topic_of_25()
    assert.equal(text_lines(16, 25), ok(dir, "tail", "t"))
  end)

  it("with --limit N prints the last N", function()
    local dir = topic_of_25()
    assert.equal(text_lines(23, 25), ok(dir, "tail", "t", "--limit", "3"))
    assert.equal(text_lines(1, 25), ok(dir, "tail", "t", "-n", "1000"))
    assert.equal("", ok(dir, "tail", "t", "--limit", "0"))
  end)

  it("with --limit N prints the last N also when N is more than one fetch (512)", function()
    local dir = datadir()
    ok(dir, "topic", "create", "t")
    ok(dir, "produce", "t", { stdin = H.numbered_lines("m", 2000) })
    local lines = H.lines(ok(dir, "tail", "t", "--limit", "1000"))
    assert.equal(1000, #lines)
    assert.equal("[t/0@1000] m1001", lines[1])
    assert.equal("[t/0@1999] m2000", lines[1000])
  end)

  it("with --from-beginning prints every message", function()
    local dir = topic_of_25()
    assert.equal(text_lines(1, 25), ok(dir, "tail", "t", "--from-beginning"))
  end)

  it("with --from-beginning --limit N prints the first N", function()
    local dir = topic_of_25()
    assert.equal(text_lines(1, 4), ok(dir, "tail", "t", "--from-beginning", "--limit", "4"))
  end)

  it("prints a key before the value", function()
    local dir = datadir()
    ok(dir, "topic", "create", "t")
    ok(dir, "produce", "t", "-k", "user-7", "logged in")
    assert.equal("[t/0@0] key=user-7 logged in\n", ok(dir, "tail", "t"))
  end)

  it("with --partition P prints partition P only", function()
    local dir = datadir()
    ok(dir, "topic", "create", "t", "-p", "3")
    for p = 0, 2 do
      ok(dir, "produce", "t", "-p", tostring(p), { stdin = H.numbered_lines("p" .. p .. "-", 12) })
    end
    local all = {}
    for i = 1, 12 do all[i] = string.format("[t/1@%d] p1-%d\n", i - 1, i) end
    assert.equal(table.concat(all), ok(dir, "tail", "t", "--partition", "1", "-b"))
    assert.equal(table.concat(all, "", 3, 12), ok(dir, "tail", "t", "-p", "1"))
    assert.equal("[t/2@11] p2-12\n", ok(dir, "tail", "t", "-p", "2", "-n", "1"))
  end)

  it("merges partitions in the order messages were produced", function()
    local dir = datadir()
    ok(dir, "topic", "create", "t", "-p", "2")
    local ids = {}
    for i = 1, 4 do
      local m = cjson.decode(ok(dir, "produce", "t", "-p", tostring(i % 2), "--json", "v" .. i))
      ids[i] = m
    end
    local msgs = H.messages(dir, "t")
    -- By timestamp; messages of one millisecond by partition then offset.
    table.sort(ids, function(a, b)
      if a.timestamp ~= b.timestamp then return a.timestamp < b.timestamp end
      if a.partition ~= b.partition then return a.partition < b.partition end
      return a.offset < b.offset
    end)
    for i = 1, 4 do assert.equal(ids[i].id, msgs[i].id) end
  end)

  it("with --json prints topic, partition, offset, id, key, value, headers and timestamp", function()
    local dir = datadir()
    ok(dir, "topic", "create", "t", "-p", "2")
    local p1 = cjson.decode(ok(dir, "produce", "t", "-p", "1", "--json", "plain"))
    local p2 = cjson.decode(ok(dir, "produce", "t", "-p", "0", "-k", "k", "-H", "h=1", "--json", "keyed"))
    local lines = H.lines(ok(dir, "tail", "t", "--json"))
    assert.equal(2, #lines)
    local a, b = cjson.decode(lines[1]), cjson.decode(lines[2])
    assert.same({ topic = "t", partition = 1, offset = 0, id = p1.id, key = cjson.null,
                  value = "plain", headers = {}, timestamp = p1.timestamp }, a)
    assert.same({ topic = "t", partition = 0, offset = 0, id = p2.id, key = "k",
                  value = "keyed", headers = { h = "1" }, timestamp = p2.timestamp }, b)
    -- An absent key is null, not left out.
    assert.truthy(lines[1]:find('"key":null', 1, true))
  end)

  it("with --json prints valid UTF-8 even when a header is not UTF-8", function()
    local dir = datadir()
    ok(dir, "topic", "create", "t")
    ok(dir, "produce", "t", "-H", "bin=\xff\xfe", "-H", "ok=fine", "v")
    local out = ok(dir, "tail", "t", "--json")
    -- JSON text is UTF-8 (RFC 8259): raw bytes 0xff 0xfe make the line
    -- unreadable for any strict JSON reader.
    assert.truthy(utf8.len(out), ("tail --json printed bytes that are not UTF-8: %q"):format(out))
    local m = cjson.decode(out)
    assert.equal("v", m.value)
    assert.same({ bin = "//4=", ok = "fine" }, m.headers)
    assert.same({ "bin" }, m.headers_base64)
    assert.is_nil(m.header_names_encoding)
  end)

  it("with --json gives header names that are not UTF-8 byte for byte, in base64", function()
    local dir = datadir()
    ok(dir, "topic", "create", "t")
    -- "\xc3" alone is half a character; "//79" is the base64 of
    -- "\xff\xfe\xfd": the two names must stay two.
    local r = H.run({ "--data", dir, "produce", "t", "-H", "\xc3=x", "-H", "ok=fine",
                      "-H", "//79=plain", "-H", "\xff\xfe\xfd=bin", "-H", "\xc3=again", "v" })
    assert.same({ 0, "" }, { r.code, r.err })
    -- A zero byte cannot come from the command line: the embedded log's
    -- own API writes the second message.
    local log = assert(core.open { data = dir })
    assert(log:produce("t", { value = "w", headers = { { "\xff", "\xfe\x00" } } }))
    log:close()
    local out = ok(dir, "tail", "t", "--json", "--from-beginning")
    assert.truthy(utf8.len(out), ("tail --json printed bytes that are not UTF-8: %q"):format(out))
    local ms = H.json_lines(out)
    assert.equal(2, #ms)
    -- Every name of a message with a name that is not UTF-8 is base64.
    assert.equal("base64", ms[1].header_names_encoding)
    local got = {}
    for name64, v in pairs(ms[1].headers) do
      for _, x in ipairs(type(v) == "table" and v or { v }) do
        got[#got + 1] = H.base64_decode(name64) .. "=" .. x
      end
    end
    table.sort(got)
    assert.same({ "//79=plain", "ok=fine", "\xc3=again", "\xc3=x", "\xff\xfe\xfd=bin" }, got)
    -- Repeated names keep their values' order.
    assert.same({ "x", "again" }, ms[1].headers["ww=="])
    assert.is_nil(ms[1].headers_base64)
    -- A value that is not UTF-8 is base64 too, its (base64) name listed.
    assert.equal("base64", ms[2].header_names_encoding)
    assert.same({ ["/w=="] = "/gA=" }, ms[2].headers)
    assert.same({ "/w==" }, ms[2].headers_base64)
    assert.equal("\xfe\x00", H.base64_decode(ms[2].headers["/w=="]))
  end)

  it("with --follow --limit N prints messages produced after it started, then exits", function()
    local dir = datadir()
    ok(dir, "topic", "create", "t", "-p", "2")
    ok(dir, "produce", "t", "-p", "0", "old-1")
    ok(dir, "produce", "t", "-p", "1", "old-2")
    local h = H.spawn({ "--data", dir, "tail", "t", "--from-beginning", "--follow",
                        "--limit", "5", "--json" })
    defer(function() H.cleanup(h) end)
    -- The stored messages are printed (and flushed) before it starts
    -- following: whatever is produced from now on, it reads by following.
    H.wait_until(function() return #H.lines(H.read(h.out)) == 2 end, 10,
                 "tail --follow to print the stored messages")
    assert.is_nil(H.exit_code(h))
    ok(dir, "produce", "t", "-p", "1", "new-1")
    ok(dir, "produce", "t", "-p", "0", "new-2")
    ok(dir, "produce", "t", "-p", "1", "new-3")
    assert.equal(0, H.wait_exit(h, 10, "tail --follow --limit 5 to exit"))
    assert.equal("", H.read(h.err))
    local got = H.json_lines(H.read(h.out))
    assert.same({ "old-1", "old-2", "new-1", "new-2", "new-3" }, values(got))
    assert.same({ 0, 0, 1, 1, 2 }, { got[1].offset, got[2].offset, got[3].offset,
                                     got[4].offset, got[5].offset })
  end)

  it("with --follow (no --from-beginning) starts at the end", function()
    local dir = datadir()
    ok(dir, "topic", "create", "t")
    ok(dir, "produce", "t", { stdin = H.numbered_lines("old-", 5) })
    local h = H.spawn({ "--data", dir, "tail", "t", "--follow", "--limit", "3" })
    defer(function() H.cleanup(h) end)
    -- Nothing shows when it is ready: produce one message at a time until
    -- it has printed three and exited.
    local n = 0
    H.wait_until(function()
      if H.exit_code(h) then return true end
      n = n + 1
      ok(dir, "produce", "t", "new-" .. n)
      return false
    end, 20, "tail --follow --limit 3 to exit")
    assert.equal(0, H.exit_code(h))
    assert.equal("", H.read(h.err))
    local lines = H.lines(H.read(h.out))
    assert.equal(3, #lines)
    local first = tonumber(lines[1]:match("^%[t/0@(%d+)%]"))
    assert.is_true(first >= 5, "printed a message stored before it started: " .. lines[1])
    for i = 0, 2 do
      assert.equal(string.format("[t/0@%d] new-%d", first + i, first + i - 4), lines[i + 1])
    end
  end)

  it("with --follow stops on SIGTERM with exit status 0", function()
    local dir = datadir()
    ok(dir, "topic", "create", "t")
    ok(dir, "produce", "t", "first")
    local h = H.spawn({ "--data", dir, "tail", "t", "-b", "-f" })
    defer(function() H.cleanup(h) end)
    H.wait_until(function() return H.read(h.out) == "[t/0@0] first\n" end, 10,
                 "tail --follow to print the stored message")
    -- A message printed by the follow loop proves the loop (and its signal
    -- handler) is running.
    ok(dir, "produce", "t", "second")
    H.wait_until(function() return #H.lines(H.read(h.out)) == 2 end, 10,
                 "tail --follow to print a new message")
    assert.is_true(H.kill(h.pid, "TERM"))
    assert.equal(0, H.wait_exit(h, 10, "tail --follow to stop on SIGTERM"))
    assert.equal("[t/0@0] first\n[t/0@1] second\n", H.read(h.out))
    assert.equal("", H.read(h.err))
  end)
end)

describe("eddy version", function()
  it("prints the versions of eddy, Lua, SQLite, librdkafka and libuv", function()
    for _, args in ipairs({ { "version" }, { "--version" } }) do
      local r = H.run(args)
      assert.equal(0, r.code)
      assert.equal("", r.err)
      local lines = H.lines(r.out)
      assert.equal(5, #lines)
      local prefixes = { "eddy ", "Lua 5.4", "SQLite ", "librdkafka ", "libuv " }
      for i, p in ipairs(prefixes) do
        assert.equal(p, lines[i]:sub(1, #p), "line " .. i .. ": " .. lines[i])
        assert.is_true(#lines[i] > #p, "no version on line " .. i)
      end
    end
  end)
end)

describe("eddy --help", function()
  it("prints the usage and the commands, exit status 0", function()
    for _, args in ipairs({ { "--help" }, { "-h" }, { "help" } }) do
      local r = H.run(args)
      assert.equal(0, r.code)
      assert.equal("", r.err)
      assert.truthy(r.out:find("\nUsage: eddy [--data DIR] COMMAND [ARGS]\n", 1, true))
      for _, c in ipairs({ "topic create", "topic list", "topic alter", "topic trim",
                           "produce", "tail", "version", "help" }) do
        assert.truthy(r.out:find("\n  " .. c .. " ", 1, true), "no " .. c .. " in help")
      end
    end
  end)

  it("prints each command's usage with COMMAND --help and help COMMAND", function()
    local commands = {
      { { "topic", "create" }, "Usage: eddy topic create NAME [--partitions N]" },
      { { "topic", "list" }, "Usage: eddy topic list [--json]" },
      { { "topic", "alter" }, "Usage: eddy topic alter NAME [--retention AGE] " ..
                              "[--retention-bytes SIZE] [--max-message-bytes SIZE]" },
      { { "topic", "trim" }, "Usage: eddy topic trim [NAME]" },
      { { "produce" }, "Usage: eddy produce TOPIC [--key K] [--type T] [--header NAME=VALUE]... [VALUE]" },
      { { "tail" }, "Usage: eddy tail TOPIC [--from-beginning] [--limit N] [--follow] [--json]" },
      { { "version" }, "Usage: eddy version" },
    }
    for _, c in ipairs(commands) do
      local with_flag = { table.unpack(c[1]) }
      with_flag[#with_flag + 1] = "--help"
      local via_help = { "help", table.unpack(c[1]) }
      for _, args in ipairs({ with_flag, via_help }) do
        local r = H.run(args)
        assert.equal(0, r.code, table.concat(args, " "))
        assert.equal("", r.err)
        assert.equal(c[2], H.lines(r.out)[1])
        assert.truthy(r.out:find("\nCommon options:\n", 1, true))
      end
    end
  end)

  it("does not open the store", function()
    local dir = datadir()
    local r = H.run({ "--data", dir .. "/none", "produce", "--help" })
    assert.equal(0, r.code)
    assert.is_false(H.exists(dir .. "/none"))
  end)
end)

describe("eddy --data", function()
  it("works before and after the command, long, short and with '='", function()
    local dir = datadir()
    local r = H.run({ "--data", dir, "topic", "create", "t" })
    assert.equal(0, r.code)
    r = H.run({ "produce", "t", "a", "--data", dir })
    assert.equal(0, r.code)
    r = H.run({ "-d", dir, "produce", "t", "b" })
    assert.equal(0, r.code)
    r = H.run({ "produce", "--data=" .. dir, "t", "c" })
    assert.equal(0, r.code)
    r = H.run({ "--data=" .. dir, "tail", "t" })
    assert.equal("[t/0@0] a\n[t/0@1] b\n[t/0@2] c\n", r.out)
    r = H.run({ "tail", "t", "-d", dir })
    assert.equal("[t/0@0] a\n[t/0@1] b\n[t/0@2] c\n", r.out)
    assert.equal(3, H.topics(dir).t.messages)
  end)

  it("defaults to $EDDY_DATA, which --data overrides", function()
    local env_dir, opt_dir = datadir(), datadir()
    local r = H.run({ "topic", "create", "t" }, { env = { EDDY_DATA = env_dir } })
    assert.equal(0, r.code)
    assert.truthy(H.exists(env_dir .. "/eddy.db"))
    r = H.run({ "produce", "t", "from-env" }, { env = { EDDY_DATA = env_dir } })
    assert.equal(0, r.code)
    r = H.run({ "--data", opt_dir, "topic", "create", "u" }, { env = { EDDY_DATA = env_dir } })
    assert.equal(0, r.code)
    assert.same({ "t" }, (function()
      local names = {}
      for name in pairs(H.topics(env_dir)) do names[#names + 1] = name end
      return names
    end)())
    assert.truthy(H.topics(opt_dir).u)
    assert.is_nil(H.topics(opt_dir).t)
    r = H.run({ "tail", "t" }, { env = { EDDY_DATA = env_dir } })
    assert.equal("[t/0@0] from-env\n", r.out)
  end)

  it("defaults to ./data without --data and $EDDY_DATA", function()
    local cwd = datadir()
    local r = H.run({ "topic", "create", "t" }, { cwd = cwd })
    assert.equal(0, r.code)
    assert.truthy(H.exists(cwd .. "/data/eddy.db"))
    assert.truthy(H.topics(cwd .. "/data").t)
  end)
end)

describe("eddy topic trim", function()
  it("applies --retention-bytes set by topic alter: log start advances, offsets stay", function()
    local dir = datadir()
    ok(dir, "topic", "create", "t")
    -- Ten messages of 3 bytes each: 30 bytes.
    ok(dir, "produce", "t", { stdin = "m-0\nm-1\nm-2\nm-3\nm-4\nm-5\nm-6\nm-7\nm-8\nm-9\n" })
    assert.equal("altered topic 't'\n", ok(dir, "topic", "alter", "t", "--retention-bytes", "12"))
    -- 12 bytes leave room for the last four.
    assert.equal("removed 6 messages\n", ok(dir, "topic", "trim", "t"))
    local t = H.topics(dir).t
    assert.equal(4, t.messages)
    assert.equal(12, t.retention_bytes)
    assert.same({ partition = 0, log_start = 6, high_watermark = 10, messages = 4 }, t.offsets[1])
    local m = H.messages(dir, "t")
    assert.same({ "m-6", "m-7", "m-8", "m-9" }, values(m))
    assert.same({ 6, 7, 8, 9 }, { m[1].offset, m[2].offset, m[3].offset, m[4].offset })
    -- Nothing left to remove; new messages continue the offsets.
    assert.equal("removed 0 messages\n", ok(dir, "topic", "trim", "t"))
    local n = cjson.decode(ok(dir, "produce", "t", "--json", "m-10"))
    assert.equal(10, n.offset)
  end)

  it("trims each partition of a topic created with --retention-bytes on its own", function()
    local dir = datadir()
    ok(dir, "topic", "create", "t", "-p", "2", "--retention-bytes", "12")
    ok(dir, "produce", "t", "-p", "0", { stdin = "a-0\na-1\na-2\na-3\na-4\na-5\na-6\na-7\na-8\na-9\n" })
    ok(dir, "produce", "t", "-p", "1", { stdin = "b-0\nb-1\n" })
    ok(dir, "topic", "trim", "t")
    local t = H.topics(dir).t
    assert.equal(6, t.messages)
    assert.same({ partition = 0, log_start = 6, high_watermark = 10, messages = 4 }, t.offsets[1])
    assert.same({ partition = 1, log_start = 0, high_watermark = 2, messages = 2 }, t.offsets[2])
    local m = H.messages(dir, "t", { "-p", "0" })
    assert.same({ "a-6", "a-7", "a-8", "a-9" }, values(m))
    for i, msg in ipairs(m) do assert.equal(5 + i, msg.offset) end
    -- Producing past the limit again moves the start on, offsets intact.
    ok(dir, "produce", "t", "-p", "0", { stdin = "a-10\na-11\n" })
    ok(dir, "topic", "trim")
    m = H.messages(dir, "t", { "-p", "0" })
    assert.same({ "a-9", "a-10", "a-11" }, values(m))
    assert.same({ 9, 10, 11 }, { m[1].offset, m[2].offset, m[3].offset })
    assert.equal(5, H.topics(dir).t.messages)
  end)
end)
