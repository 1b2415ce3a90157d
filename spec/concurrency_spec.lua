--- Several eddy processes on one store at once: writers serialize on the
-- store's write lock, readers never wait for them, and a writer that cannot
-- get the lock in time says so.
local cjson = require "cjson"
local H = require "helpers"

--- Runs fn when the test ends (as many as needed; see H.defer).
local function defer(fn) H.defer(finally, fn) end

--- A fresh data directory, removed when the test ends.
local function datadir()
  local dir = H.tmpdir()
  defer(function() H.rmdir(dir) end)
  return dir
end

--- Checks one snapshot read by `tail --from-beginning --json`: in each
-- partition the offsets are 0, 1, 2 ... without a gap or a repeat.
-- Returns the messages by partition.
local function check_contiguous(msgs, partitions)
  local by = {}
  for p = 0, partitions - 1 do by[p] = {} end
  for _, m in ipairs(msgs) do
    local list = by[m.partition]
    assert(list, "message in unknown partition " .. tostring(m.partition))
    if m.offset ~= #list then
      error(string.format("partition %d: offset %d where %d was due", m.partition,
                          m.offset, #list), 2)
    end
    list[#list + 1] = m
  end
  return by
end

describe("eddy with several processes", function()
  it("two producers and readers at once: all succeed, nothing lost or repeated", function()
    local dir = datadir()
    local r = H.run({ "--data", dir, "topic", "create", "t", "--partitions", "4" })
    assert.equal(0, r.code, r.err)
    -- The reader: follows the topic from the start until it has seen all
    -- 40,000 messages, so it reads while both producers write.
    local reader = H.spawn({ "--data", dir, "tail", "t", "--from-beginning", "--follow",
                             "--limit", "40000", "--json" })
    defer(function() H.cleanup(reader) end)
    local a = H.spawn({ "--data", dir, "produce", "t" },
                      { stdin = H.numbered_lines("a-", 20000) })
    defer(function() H.cleanup(a) end)
    local b = H.spawn({ "--data", dir, "produce", "t" },
                      { stdin = H.numbered_lines("b-", 20000) })
    defer(function() H.cleanup(b) end)

    -- Meanwhile list the topic and read it all, again and again: every read
    -- succeeds at once, sees offsets without gaps, and counts never go down.
    local last_hw, rounds = { 0, 0, 0, 0 }, 0
    H.wait_until(function()
      local done = H.exit_code(a) and H.exit_code(b) and H.exit_code(reader)
      local list = H.run({ "--data", dir, "topic", "list", "--json" })
      assert.same({ code = 0, err = "" }, { code = list.code, err = list.err })
      local t = cjson.decode(list.out)
      local count = 0
      for p = 1, 4 do
        local o = t.offsets[p]
        assert.is_true(o.high_watermark >= last_hw[p], "a high watermark went down")
        assert.equal(o.high_watermark - o.log_start, o.messages)
        last_hw[p] = o.high_watermark
        count = count + o.messages
      end
      assert.equal(count, t.messages)
      local tail = H.run({ "--data", dir, "tail", "t", "--from-beginning", "--json" })
      assert.same({ code = 0, err = "" }, { code = tail.code, err = tail.err })
      local next_offset = { [0] = 0, 0, 0, 0 }
      -- Only partition and offset matter here: a pattern is quicker than
      -- decoding 40,000 JSON lines on every round.
      for p, o in ("\n" .. tail.out):gmatch('\n{"topic":"t","partition":(%d+),"offset":(%d+),') do
        p, o = tonumber(p), tonumber(o)
        if o ~= next_offset[p] then
          error(string.format("partition %d: offset %d where %d was due", p, o, next_offset[p]))
        end
        next_offset[p] = o + 1
      end
      local seen = next_offset[0] + next_offset[1] + next_offset[2] + next_offset[3]
      assert.equal(select(2, tail.out:gsub("\n", "")), seen)
      assert.is_true(seen >= count, "tail saw fewer messages than topic list before it")
      rounds = rounds + 1
      return done
    end, 120, "both producers and the reader to exit")

    assert.is_true(rounds >= 1)
    for name, h in pairs({ producer_a = a, producer_b = b, reader = reader }) do
      local err = H.read(h.err)
      assert.is_nil(err:find("locked", 1, true), name .. " saw a lock: " .. err)
      assert.equal("", err, name)
      assert.equal(0, H.exit_code(h), name)
    end

    local t = H.topics(dir).t
    assert.equal(40000, t.messages)
    for _, msgs in ipairs({ H.messages(dir, "t"), H.json_lines(H.read(reader.out)) }) do
      assert.equal(40000, #msgs)
      local by = check_contiguous(msgs, 4)
      for p = 0, 3 do
        assert.equal(#by[p], t.offsets[p + 1].high_watermark)
        assert.equal(0, t.offsets[p + 1].log_start)
      end
      -- Every line appears exactly once, and within a partition each
      -- producer's lines keep the order they were read in.
      local seen = {}
      for p = 0, 3 do
        local last = { a = 0, b = 0 }
        -- Plain checks: a luassert call per message would cost seconds.
        for _, m in ipairs(by[p]) do
          local who, n = m.value:match("^([ab])%-(%d+)$")
          if not who then error("unexpected value " .. m.value) end
          n = tonumber(n)
          if seen[m.value] then error(m.value .. " appears twice") end
          seen[m.value] = true
          if n <= last[who] then
            error("partition " .. p .. ": " .. m.value .. " after " .. who .. "-" .. last[who])
          end
          last[who] = n
        end
      end
      for _, who in ipairs({ "a", "b" }) do
        for i = 1, 20000 do
          if not seen[who .. "-" .. i] then error(who .. "-" .. i .. " is missing") end
        end
      end
    end
  end)

  it("several processes opening a new data directory at once all succeed", function()
    -- The first process to get the write lock writes the schema; the others
    -- must find it there, not take the half-made file for a foreign one.
    -- A race, so try it many times.
    for round = 1, 30 do
      local dir = datadir() .. "/data"
      local cmds = {}
      for i = 1, 6 do
        cmds[i] = { "--data", dir, "topic", "create", "t" .. i, "-p", "2" }
      end
      for i, res in ipairs(H.run_parallel(cmds)) do
        assert.equal("", res.err, "round " .. round .. ", process " .. i)
        assert.equal(0, res.code, "round " .. round .. ", process " .. i)
      end
      local t = H.topics(dir)
      for i = 1, 6 do assert.truthy(t["t" .. i], "round " .. round .. ": no topic t" .. i) end
    end
  end)

  it("a writer that cannot get the lock within --lock-timeout says so", function()
    local dir = datadir()
    local r = H.run({ "--data", dir, "topic", "create", "t" })
    assert.equal(0, r.code, r.err)
    r = H.run({ "--data", dir, "produce", "t", "before" })
    assert.equal(0, r.code, r.err)

    -- The sqlite3 CLI holds the write lock, fed through a FIFO so that the
    -- test decides when it commits.  Opening the FIFO read-write does not
    -- wait for the reader.  (Processes started later inherit this end of
    -- the FIFO, so closing it here is no end of input: ".exit" is.)
    local fifo = dir .. "/ctl"
    assert.equal(0, H.exec({ "mkfifo", fifo }).code)
    local ctl = assert(io.open(fifo, "r+"))
    local function close_ctl()
      if ctl then ctl:close(); ctl = nil end
    end
    defer(close_ctl)
    -- (Without the sanitizers of an EDDY_ASAN run: this is not eddy.)
    local holder = H.spawn_cmd({ "sqlite3", dir .. "/eddy.db" },
                               { stdin_file = fifo, unset = { "LD_PRELOAD" } })
    defer(function() H.cleanup(holder) end)
    local held = dir .. "/held"
    ctl:write("BEGIN IMMEDIATE;\n.shell touch " .. H.quote(held) .. "\n")
    ctl:flush()
    H.wait_until(function() return H.exists(held) end, 10, "sqlite3 to take the write lock")
    assert.equal("", H.read(holder.err))

    r = H.run({ "--data", dir, "--lock-timeout", "200", "produce", "t", "x" })
    assert.equal(1, r.code, r.err)
    local prefix = "eddy produce: store '" .. dir .. "' is busy: gave up"
    assert.equal(prefix, r.err:sub(1, #prefix))
    assert.truthy(r.err:find("200 ms", 1, true), r.err)
    assert.equal(1, #H.lines(r.err))
    assert.equal("\n", r.err:sub(-1))
    -- The option works after the command too.
    r = H.run({ "--data", dir, "produce", "t", "y", "--lock-timeout", "100" })
    assert.equal(1, r.code, r.err)
    assert.truthy(r.err:find("100 ms", 1, true), r.err)
    -- Readers do not wait for the writer.
    r = H.run({ "--data", dir, "--lock-timeout", "100", "tail", "t" })
    assert.same({ code = 0, out = "[t/0@0] before\n", err = "" }, r)
    assert.equal(1, H.topics(dir).t.messages)

    ctl:write("COMMIT;\n.exit\n")
    close_ctl()
    assert.equal(0, H.wait_exit(holder, 10, "sqlite3 to commit and exit"))
    assert.equal("", H.read(holder.err))

    r = H.run({ "--data", dir, "--lock-timeout", "200", "produce", "t", "after" })
    assert.same({ code = 0, out = "", err = "" }, r)
    local v = {}
    for _, m in ipairs(H.messages(dir, "t")) do v[#v + 1] = m.value end
    assert.same({ "before", "after" }, v)
  end)
end)
