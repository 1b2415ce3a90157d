--- The command line on Apache Kafka (--broker): topics, produce and tail
-- against a real broker, the one test/run.sh starts (tools/kafka/kafka.sh)
-- and names in $EDDY_TEST_BROKER.  Every test works on topics of its own
-- (a random suffix), so the broker's earlier state does not matter.
local cjson = require "cjson"
local H = require "helpers"

local BROKER = H.BROKER
local UUID7 = "^%x%x%x%x%x%x%x%x%-%x%x%x%x%-7%x%x%x%-[89ab]%x%x%x%-%x%x%x%x%x%x%x%x%x%x%x%x$"

math.randomseed(os.time() ~ tonumber(tostring({}):match("0x(%x+)"), 16))

local fresh = H.fresh_name

--- Runs eddy with --broker; returns code, stdout, stderr.
local function kafka(args, opts)
  local r = H.kafka_run(args, opts)
  return r.code, r.out, r.err
end

--- Runs eddy with --broker and fails the test unless it exits 0 quietly.
local function ok(args, opts)
  local code, out, err = kafka(args, opts)
  assert(code == 0 and err == "", table.concat(args, " ") .. ": exit " .. code .. ": " .. err)
  return out
end

local json_lines = H.json_lines

local function topic_of(list, name)
  for _, t in ipairs(list) do if t.name == name then return t end end
end

describe("eddy on Kafka (--broker)", function()
  it("reaches the broker the tests run against", function()
    local code, _, err = kafka({ "topic", "list" })
    assert.same({ 0, "" }, { code, err })
  end)

  it("topic create makes the topic with its partitions; again is an error unless --if-not-exists",
     function()
    local name = fresh("created")
    assert.equal("created topic '" .. name .. "' with 3 partitions\n",
                 ok({ "topic", "create", name, "--partitions", "3" }))
    local t = topic_of(json_lines(ok({ "topic", "list", "--json" })), name)
    assert.same({ name = name, partitions = 3, messages = 0 },
                { name = t.name, partitions = t.partitions, messages = t.messages })
    local code, out, err = kafka({ "topic", "create", name, "--partitions", "3" })
    assert.same({ 1, "", "eddy topic create: topic '" .. name .. "' already exists\n" },
                { code, out, err })
    assert.equal("topic '" .. name .. "' exists already\n",
                 ok({ "topic", "create", name, "--partitions", "3", "--if-not-exists" }))
  end)

  it("produce puts keyed messages on Kafka's default partition for the key, with eddy ids",
     function()
    local name = fresh("keyed")
    ok({ "topic", "create", name, "--partitions", "4" })
    local keys = { "ada", "bob", "zed", "ada", "linus", "grace", "bob" }
    local lines = {}
    for i, k in ipairs(keys) do lines[i] = k .. ":v" .. i end
    local out = ok({ "produce", name, "--key-separator", ":", "--json" },
                   { stdin = table.concat(lines, "\n") .. "\n" })
    local produced = json_lines(out)
    assert.equal(#keys, #produced)
    local eddy = require "eddy"
    local next_offset = {}
    for i, p in ipairs(produced) do
      assert.equal(name, p.topic)
      assert.equal(eddy.partition_for(keys[i], 4), p.partition)
      -- Offsets count up per partition, in the order produced.
      assert.equal(next_offset[p.partition] or 0, p.offset)
      next_offset[p.partition] = p.offset + 1
      assert.truthy(p.id:match(UUID7), p.id)
    end

    -- tail reads them back with their ids, keys and values.
    local got = json_lines(ok({ "tail", name, "--from-beginning", "--json" }))
    assert.equal(#keys, #got)
    local by_id = {}
    for _, m in ipairs(got) do by_id[m.id] = m end
    for i, p in ipairs(produced) do
      local m = by_id[p.id]
      assert.same({ key = keys[i], value = "v" .. i, partition = p.partition, offset = p.offset,
                    headers = {} },
                  { key = m.key, value = m.value, partition = m.partition, offset = m.offset,
                    headers = m.headers })
    end
  end)

  it("keeps headers in order, sends the id as header eddy-id that any Kafka client reads",
     function()
    local name = fresh("headers")
    ok({ "topic", "create", name })
    local p = cjson.decode(ok({ "produce", name, "--key", "k", "--header", "source=cli",
                                "--header", "trace=t1", "--json", "hello" }))
    local m = json_lines(ok({ "tail", name, "--json" }))[1]
    assert.same({ id = p.id, key = "k", value = "hello", headers = { source = "cli", trace = "t1" } },
                { id = m.id, key = m.key, value = m.value, headers = m.headers })
    -- kcat, a plain Kafka client, sees the id as the first header.
    local r = H.exec({ "kcat", "-b", (BROKER:gsub("^kafka://", "")), "-C", "-t", name, "-e", "-q",
                       "-f", "%k %s %h\n" })
    assert.equal("k hello eddy-id=" .. p.id .. ",source=cli,trace=t1\n", r.out)
  end)

  it("tail prints the last messages by default, and a message from another client gets an id from its position",
     function()
    local name = fresh("tail")
    ok({ "topic", "create", name })
    ok({ "produce", name }, { stdin = "one\ntwo\nthree\n" })
    assert.equal("[" .. name .. "/0@1] two\n[" .. name .. "/0@2] three\n",
                 ok({ "tail", name, "--limit", "2" }))
    local r = H.exec({ "kcat", "-b", (BROKER:gsub("^kafka://", "")), "-P", "-t", name },
                     { stdin = "from kcat\n" })
    assert.equal(0, r.code, r.err)
    local m = json_lines(ok({ "tail", name, "--limit", "1", "--json" }))[1]
    assert.same({ id = name .. "/0/3", value = "from kcat", key = cjson.null },
                { id = m.id, value = m.value, key = m.key })
  end)

  it("refuses an unknown topic, a bad broker URL and a bad librdkafka property in one line", function()
    local name = fresh("missing")
    local code, out, err = kafka({ "produce", name, "x" })
    assert.same({ 1, "", "eddy produce: unknown topic '" .. name .. "'\n" }, { code, out, err })
    code, out, err = kafka({ "tail", name })
    assert.same({ 1, "", "eddy tail: unknown topic '" .. name .. "'\n" }, { code, out, err })
    local r = H.run({ "topic", "list", "--broker", "127.0.0.1:9092" })
    assert.same({ 2, "", "eddy topic list: broker '127.0.0.1:9092' is not a kafka:// URL " ..
                  "(kafka://HOST:PORT[,HOST:PORT...]) (see 'eddy topic list --help')\n" },
                { r.code, r.out, r.err })
    code, out, err = kafka({ "topic", "list", "--kafka", "no.such.property=1" })
    assert.equal(2, code)
    assert.equal("", out)
    assert.truthy(err:find("^eddy topic list: kafka property 'no.such.property': "), err)
    r = H.run({ "topic", "list", "--kafka", "a=b" })
    assert.same({ 2, "eddy topic list: --kafka needs --broker (see 'eddy topic list --help')\n" },
                { r.code, r.err })
  end)

  it("says in one line when no broker answers", function()
    local r = H.run({ "topic", "list", "--broker", "kafka://127.0.0.1:1" })
    assert.equal(1, r.code)
    assert.equal("", r.out)
    assert.truthy(r.err:find("^eddy topic list: cannot reach Kafka at 127.0.0.1:1: [^\n]+\n$"),
                  r.err)
  end)
end)
