--- eddy dlq list | show | replay | purge: the dead-letter store as the
-- command line shows and changes it, after `eddy run --drain` quarantined
-- some messages.  The key guarantee: a replay keeps the message id, so
-- replaying a message twice handles it once.
local cjson = require "cjson"
local core = require "eddy.core"
local H = require "helpers"
local path = require "pl.path"

--- Runs fn when the test ends (as many as needed; see H.defer).
local function defer(fn) H.defer(finally, fn) end

--- Writes files (a map path -> text, relative to dir, their directories
-- made as needed).
local function write_tree(dir, files)
  for name, text in pairs(files) do
    local file = dir .. "/" .. name
    os.execute("mkdir -p " .. H.quote(path.dirname(file)))
    H.write(file, text)
  end
end

local APP = 'return { data = "data", workers = 2, handlers = { "handlers/" },\n' ..
            '         topics = { orders = { partitions = 2 } } }\n'

--- v with every integral float (cjson decodes every number as a float)
-- made an integer, recursively, so that numbers print as they were sent.
local function ints(v)
  if type(v) == "table" then
    for k, x in pairs(v) do v[k] = ints(x) end
    return v
  end
  return math.type(v) == "float" and math.tointeger(v) or v
end

--- Every line of s decoded as JSON, numbers made integers.
local function json_lines(s)
  return ints(H.json_lines(s))
end

--- The text of handlers/<name>.lua: consumer `name` counts in its state,
-- under each message's value, how many times it handled that value; a
-- value starting with "bad" fails permanently (line 7) unless accept_bad.
local function handler(name, accept_bad)
  return string.format([[
local eddy = require "eddy"
return eddy.consumer {
  name = %q,
  topics = "orders",
  handle = function(msg, ctx)
    if msg.value:find("^bad") and not %s then
      error(eddy.permanent("bad value: " .. msg.value))
    end
    ctx.state:set(msg.value, (ctx.state:get(msg.value) or 0) + 1)
  end,
}
]], name, tostring(accept_bad))
end

--- The messages produced, in order: two of them quarantined, one with
-- headers.
local MIX = {
  { value = "good1", key = "k1" },
  { value = "bad1", key = "k1", headers = { "a=b", "trace=t1" } },
  { value = "good2" },
  { value = "bad2", key = "k2" },
  { value = "good3", key = "k2" },
}

--- An app in a fresh directory (removed when the test ends) with one
-- quarantining consumer per name in `consumers` (default { "c" }), and
-- one that accepts every message per name in `accepting`; the MIX
-- produced, then `eddy run --drain`.  Returns a table: `dir`, `data` (the
-- store), `msgs` (by value: `{ partition =, offset =, id = }` as
-- produced, plus key and headers), `run_drain` (runs the app again).
local function quarantined(consumers, accepting)
  local dir = H.tmpdir()
  defer(function() H.rmdir(dir) end)
  local files = { ["eddy.lua"] = APP }
  for _, name in ipairs(consumers or { "c" }) do
    files["handlers/" .. name .. ".lua"] = handler(name, false)
  end
  for _, name in ipairs(accepting or {}) do
    files["handlers/" .. name .. ".lua"] = handler(name, true)
  end
  write_tree(dir, files)
  local t = { dir = dir, data = dir .. "/data", msgs = {} }
  local r = H.run({ "--data", t.data, "topic", "create", "orders", "--partitions", "2" })
  assert(r.code == 0, r.err)
  for _, m in ipairs(MIX) do
    local args = { "--data", t.data, "produce", "orders", "--json" }
    if m.key then args[#args + 1] = "--key"; args[#args + 1] = m.key end
    for _, h in ipairs(m.headers or {}) do args[#args + 1] = "-H"; args[#args + 1] = h end
    args[#args + 1] = m.value
    r = H.run(args)
    assert(r.code == 0, r.err)
    local p = ints(cjson.decode(r.out))
    p.key, p.headers = m.key, m.headers
    t.msgs[m.value] = p
  end
  t.run_drain = function()
    local rr = H.run({ "run", dir .. "/eddy.lua", "--drain" })
    assert(rr.code == 0, "eddy run failed: " .. rr.err)
    return rr
  end
  t.run_drain()
  return t
end

--- eddy with --data t.data and args; returns { code, out, err }.
local function eddy(t, args)
  local argv = { "--data", t.data }
  for _, a in ipairs(args) do argv[#argv + 1] = a end
  return H.run(argv)
end

--- The stdout of a command that must succeed with nothing on stderr.
local function ok(t, args)
  local r = eddy(t, args)
  assert(r.code == 0 and r.err == "", "eddy " .. table.concat(args, " ") .. " failed: " ..
         tostring(r.code) .. " " .. tostring(r.err))
  return r.out
end

--- `dlq list --json` (plus extra args), decoded.
local function entries(t, extra)
  local args = { "dlq", "list", "--json" }
  for _, a in ipairs(extra or {}) do args[#args + 1] = a end
  return json_lines(ok(t, args))
end

--- The entries (of `dlq list --json`, plus extra args) by message value.
local function by_value(t, extra)
  local out = {}
  for _, e in ipairs(entries(t, extra)) do
    assert(out[e.value] == nil, "two entries for " .. e.value)
    out[e.value] = e
  end
  return out
end

--- A sorted list of "consumer:value" of entries.
local function who(list)
  local out = {}
  for _, e in ipairs(list) do out[#out + 1] = e.consumer .. ":" .. e.value end
  table.sort(out)
  return out
end

--- Asserts a command's exit status, whole stderr and empty stdout.
local function fails(t, code, message, args)
  local r = eddy(t, args)
  assert.same({ code = code, out = "", err = message .. "\n" },
              { code = r.code, out = r.out, err = r.err })
end

--- The state value (decoded) of consumer c under key, nil when it has none.
local function state(t, c, key)
  local r = eddy(t, { "state", "get", c, key })
  if r.code ~= 0 then
    assert.equal("eddy state get: consumer '" .. c .. "' has no state '" .. key .. "'\n", r.err)
    return nil
  end
  return ints(cjson.decode(r.out))
end

local ISO_TIME = "^%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%d%.%d%d%dZ$"
local TRACEBACK = "stack traceback:\n\t[C]: in function 'error'\n\t%s:7: in function <%s:5>"

describe("eddy dlq", function()
  describe("list", function()
    it("prints a header and one line per quarantined message", function()
      local t = quarantined()
      local lines = H.lines(ok(t, { "dlq", "list" }))
      assert.equal(3, #lines)
      assert.matches("^SEQ +CONSUMER +ID +FROM +ATTEMPTS +QUARANTINED +ERROR$", lines[1])
      local seen = {}
      for i = 2, 3 do
        local seq, consumer, id = lines[i]:match("^(%d+) +(%S+) +(%S+) ")
        assert.equal("c", consumer)
        seen[#seen + 1] = id
        assert.matches("bad value: bad%d$", lines[i])
        assert.is_nil(lines[i]:find("(replayed)", 1, true))
        assert.truthy(tonumber(seq))
      end
      table.sort(seen)
      local want = { t.msgs.bad1.id, t.msgs.bad2.id }
      table.sort(want)
      assert.same(want, seen)
    end)

    it("prints every field of each entry with --json", function()
      local t = quarantined()
      local list = entries(t)
      assert.equal(2, #list)
      assert.is_true(list[1].seq < list[2].seq, "oldest first")
      local version = core.hash(H.read(t.dir .. "/handlers/c.lua"))
      local file = t.dir .. "/handlers/c.lua"
      for _, e in ipairs(list) do
        local m = t.msgs[e.value]
        assert.truthy(m, "an entry for an unexpected message " .. tostring(e.value))
        for _, f in ipairs({ "first_failure", "last_failure", "quarantined_at" }) do
          assert.matches(ISO_TIME, e[f])
          e[f] = nil
        end
        assert.is_true(math.type(e.seq) == "integer" and e.seq > 0)
        assert.is_true(math.type(e.timestamp) == "integer" and e.timestamp > 0)
        e.seq, e.timestamp = nil, nil
        local headers = {}
        for i, h in ipairs(m.headers or {}) do headers[i] = { h:match("^(.-)=(.*)$") } end
        assert.same({
          consumer = "c", id = m.id, topic = "orders", partition = m.partition,
          offset = m.offset, key = m.key, value = e.value, headers = headers,
          reason = "permanent", error = "bad value: " .. e.value,
          traceback = string.format(TRACEBACK, file, file), attempts = 1,
          version = version, dlq_topic = "orders.dlq", replayed_at = cjson.null, replays = 0,
        }, e)
      end
      assert.same({ "c:bad1", "c:bad2" }, who(list))
    end)

    it("gives header names and values that are not UTF-8 byte for byte with --json", function()
      local t = quarantined()
      local r = eddy(t, { "produce", "orders", "-H", "\xc3=x", "-H", "ok=fine", "-H",
                          "bin=\xff\xfe", "-H", "ok=again", "bad-bytes" })
      assert.same({ 0, "" }, { r.code, r.err })
      t.run_drain()
      local out = ok(t, { "dlq", "list", "--json" })
      assert.truthy(utf8.len(out), ("dlq list --json printed bytes that are not UTF-8: %q"):format(out))
      local e = by_value(t)["bad-bytes"]
      local got = {}
      for i, h in ipairs(e.headers) do
        got[i] = h[3] == "base64" and { H.base64_decode(h[1]), H.base64_decode(h[2]), #h }
                 or { h[1], h[2], #h }
      end
      assert.same({ { "\xc3", "x", 3 }, { "ok", "fine", 2 }, { "bin", "\xff\xfe", 3 },
                    { "ok", "again", 2 } }, got)
    end)

    it("filters by consumer with --consumer", function()
      local t = quarantined({ "c", "d" })
      assert.same({ "c:bad1", "c:bad2", "d:bad1", "d:bad2" }, who(entries(t)))
      assert.same({ "c:bad1", "c:bad2" }, who(entries(t, { "--consumer", "c" })))
      assert.same({ "d:bad1", "d:bad2" }, who(entries(t, { "--consumer", "d" })))
      assert.same({}, entries(t, { "--consumer", "nobody" }))
      local lines = H.lines(ok(t, { "dlq", "list", "--consumer", "d" }))
      assert.equal(3, #lines)
      assert.equal("d", lines[2]:match("^%d+ +(%S+) "))
      assert.equal("d", lines[3]:match("^%d+ +(%S+) "))
    end)

    it("prints the header alone when nothing is quarantined", function()
      local t = quarantined()
      ok(t, { "dlq", "purge", "--all" })
      local lines = H.lines(ok(t, { "dlq", "list" }))
      assert.equal(1, #lines)
      assert.matches("^SEQ ", lines[1])
      assert.equal("", ok(t, { "dlq", "list", "--json" }))
    end)
  end)

  describe("topic", function()
    it("holds each quarantined message: its id, key, value, headers and the failure",
       function()
      local t = quarantined()
      local e = by_value(t).bad1
      local copies = {}
      for _, m in ipairs(ints(H.messages(t.data, "orders.dlq"))) do
        copies[m.value] = m
      end
      assert.same({ "bad1", "bad2" }, (function()
        local v = {}
        for k in pairs(copies) do v[#v + 1] = k end
        table.sort(v)
        return v
      end)())
      local m = copies.bad1
      assert.same({
        id = e.id, partition = e.partition, key = "k1", value = "bad1",
        headers = {
          a = "b", trace = "t1",
          ["eddy-error"] = "bad value: bad1", ["eddy-traceback"] = e.traceback,
          ["eddy-attempts"] = "1", ["eddy-first-failure"] = e.first_failure,
          ["eddy-last-failure"] = e.last_failure, ["eddy-original-topic"] = "orders",
          ["eddy-original-partition"] = tostring(e.partition),
          ["eddy-original-offset"] = tostring(e.offset), ["eddy-consumer"] = "c",
          ["eddy-version"] = e.version, ["eddy-reason"] = "permanent",
        },
      }, { id = m.id, partition = m.partition, key = m.key, value = m.value,
           headers = m.headers })
    end)
  end)

  describe("show", function()
    --- The exact text `dlq show` gives for entry e (a `list --json` entry).
    local function show_text(e)
      local lines = {
        "seq:            " .. e.seq,
        "id:             " .. e.id,
        "consumer:       " .. e.consumer .. " (version " .. e.version .. ")",
        "from:           " .. e.topic .. " partition " .. e.partition .. " offset " .. e.offset,
        "key:            " .. (e.key == cjson.null and "(none)" or e.key),
        "value:          " .. e.value,
      }
      for _, h in ipairs(e.headers) do lines[#lines + 1] = "header:         " .. h[1] .. "=" .. h[2] end
      for _, l in ipairs({
        "reason:         " .. e.reason,
        "error:          " .. e.error,
        "attempts:       " .. e.attempts,
        "first failure:  " .. e.first_failure,
        "last failure:   " .. e.last_failure,
        "quarantined:    " .. e.quarantined_at .. " (to topic " .. e.dlq_topic .. ")",
        "traceback:",
        e.traceback,
      }) do lines[#lines + 1] = l end
      return table.concat(lines, "\n") .. "\n"
    end

    it("shows an entry by SEQ and by message id: bytes, error and traceback", function()
      local t = quarantined()
      local e = by_value(t).bad1
      local text = ok(t, { "dlq", "show", tostring(e.seq) })
      assert.equal(show_text(e), text)
      assert.truthy(text:find("\nheader:         a=b\nheader:         trace=t1\n", 1, true))
      assert.truthy(text:find("\nerror:          bad value: bad1\n", 1, true))
      assert.truthy(text:find("\ntraceback:\nstack traceback:\n", 1, true))
      assert.equal(text, ok(t, { "dlq", "show", e.id }))
      assert.same({ e }, json_lines(ok(t, { "dlq", "show", e.id, "--json" })))
    end)

    it("shows every consumer's entry of a message id, or one with --consumer", function()
      local t = quarantined({ "c", "d" })
      local c, d = by_value(t, { "--consumer", "c" }).bad2, by_value(t, { "--consumer", "d" }).bad2
      local first, second = c, d
      if d.seq < c.seq then first, second = d, c end
      assert.equal(show_text(first) .. "\n" .. show_text(second),
                   ok(t, { "dlq", "show", c.id }))
      assert.equal(show_text(d), ok(t, { "dlq", "show", c.id, "--consumer", "d" }))
      fails(t, 1, "eddy dlq show: no quarantined message '" .. tostring(c.seq) ..
                  "' of consumer 'd'", { "dlq", "show", tostring(c.seq), "--consumer", "d" })
    end)

    it("fails on an unknown entry", function()
      local t = quarantined()
      fails(t, 1, "eddy dlq show: no quarantined message 'nope'", { "dlq", "show", "nope" })
      fails(t, 1, "eddy dlq show: no quarantined message '99'", { "dlq", "show", "99" })
      fails(t, 1, "eddy dlq show: no quarantined message '" .. t.msgs.good1.id .. "'",
            { "dlq", "show", t.msgs.good1.id })
    end)
  end)

  describe("replay", function()
    it("puts the message back: handled once after the fix, the entry marked replayed",
       function()
      local t = quarantined()
      local e = by_value(t).bad1
      write_tree(t.dir, { ["handlers/c.lua"] = handler("c", true) })
      local out = ok(t, { "dlq", "replay", e.id })
      local p, o = out:match("^replayed " .. e.seq .. " to partition (%d+) offset (%d+)\n" ..
                             "replayed 1 message\n$")
      assert.truthy(p, out)
      assert.equal(t.msgs.bad1.partition, tonumber(p))
      -- The copy is the one new message of orders, where the output says.
      local copies = {}
      for _, m in ipairs(ints(H.messages(t.data, "orders"))) do
        if m.id == e.id and m.offset ~= t.msgs.bad1.offset then
          copies[#copies + 1] = m.partition .. "@" .. m.offset
        end
      end
      assert.same({ p .. "@" .. o }, copies)
      assert.equal(#MIX + 1, H.topics(t.data).orders.messages)
      local r = t.run_drain()
      assert.matches("received=1 handled=1 deduplicated=0", r.err, 1, true)
      assert.equal(1, state(t, "c", "bad1"))
      assert.is_nil(state(t, "c", "bad2"))
      -- The replayed entry is hidden from list, shown by --all.
      assert.same({ "c:bad2" }, who(entries(t)))
      local all = by_value(t, { "--all" })
      assert.same({ "c:bad1", "c:bad2" }, who(entries(t, { "--all" })))
      assert.equal(1, all.bad1.replays)
      assert.matches(ISO_TIME, all.bad1.replayed_at)
      assert.equal(0, all.bad2.replays)
      assert.equal(cjson.null, all.bad2.replayed_at)
      local text = ok(t, { "dlq", "list", "--all" })
      assert.truthy(text:find(e.id, 1, true))
      assert.matches("bad value: bad1 %(replayed%)\n", text)
      assert.matches("\nreplayed:       %S+ %(1 time%)\n", ok(t, { "dlq", "show", e.id }))
    end)

    it("replaying twice handles it once: a second replay after the run is dropped", function()
      local t = quarantined()
      local e = by_value(t).bad1
      write_tree(t.dir, { ["handlers/c.lua"] = handler("c", true) })
      ok(t, { "dlq", "replay", e.id })
      t.run_drain()
      assert.equal(1, state(t, "c", "bad1"))
      local out = ok(t, { "dlq", "replay", tostring(e.seq) })
      assert.matches("^replayed " .. e.seq .. " to partition %d+ offset %d+\nreplayed 1 message\n$",
                     out)
      local r = t.run_drain()
      assert.matches("received=1 handled=0 deduplicated=1", r.err, 1, true)
      assert.equal(1, state(t, "c", "bad1"))
      assert.equal(2, by_value(t, { "--all" }).bad1.replays)
      assert.same({ "c:bad2" }, who(entries(t)))
    end)

    it("replaying twice handles it once: two copies waiting in the log", function()
      local t = quarantined()
      local e = by_value(t).bad1
      write_tree(t.dir, { ["handlers/c.lua"] = handler("c", true) })
      ok(t, { "dlq", "replay", e.id })
      ok(t, { "dlq", "replay", e.id })
      local r = t.run_drain()
      assert.matches("received=2 handled=1 deduplicated=1", r.err, 1, true)
      assert.equal(1, state(t, "c", "bad1"))
      -- And once more, with a fresh run on the same store.
      r = t.run_drain()
      assert.matches("received=0 handled=0", r.err, 1, true)
      assert.equal(1, state(t, "c", "bad1"))
    end)

    it("is dropped by consumers that handled the original", function()
      local t = quarantined({ "c" }, { "d" })
      assert.equal(1, state(t, "d", "bad1"))
      assert.same({ "c:bad1", "c:bad2" }, who(entries(t)))
      write_tree(t.dir, { ["handlers/c.lua"] = handler("c", true) })
      ok(t, { "dlq", "replay", t.msgs.bad1.id })
      local r = t.run_drain()
      -- The copy reaches both: c handles it, d drops it.
      assert.matches("received=2 handled=1 deduplicated=1", r.err, 1, true)
      assert.equal(1, state(t, "c", "bad1"))
      assert.equal(1, state(t, "d", "bad1"))
    end)

    it("keeps the message id, key, value and headers", function()
      local t = quarantined()
      local bad1 = t.msgs.bad1
      local e = by_value(t).bad1
      ok(t, { "dlq", "replay", tostring(e.seq) })
      local copies = {}
      for _, m in ipairs(ints(H.messages(t.data, "orders"))) do
        if m.id == bad1.id then copies[#copies + 1] = m end
      end
      assert.equal(2, #copies)
      table.sort(copies, function(a, b) return a.offset < b.offset end)
      local original, copy = copies[1], copies[2]
      assert.equal(bad1.offset, original.offset)
      assert.is_true(copy.offset > original.offset)
      for _, m in ipairs(copies) do
        assert.same({ partition = bad1.partition, key = "k1", value = "bad1",
                      headers = { a = "b", trace = "t1" } },
                    { partition = m.partition, key = m.key, value = m.value,
                      headers = m.headers })
      end
    end)

    it("quarantines again, as a new entry, a replayed message that fails again", function()
      local t = quarantined()
      local e = by_value(t).bad1
      ok(t, { "dlq", "replay", e.id })
      local r = t.run_drain()
      assert.matches("received=1 handled=0 deduplicated=0 retried=0 quarantined=1", r.err, 1,
                     true)
      local pending = by_value(t)
      assert.same({ "c:bad1", "c:bad2" }, who(entries(t)))
      assert.equal(e.id, pending.bad1.id)
      assert.is_true(pending.bad1.seq > e.seq)
      assert.equal(0, pending.bad1.replays)
      -- Fixed and replayed from the new entry: handled once.
      write_tree(t.dir, { ["handlers/c.lua"] = handler("c", true) })
      ok(t, { "dlq", "replay", tostring(pending.bad1.seq) })
      t.run_drain()
      assert.equal(1, state(t, "c", "bad1"))
    end)

    it("replays every pending entry with --all, of one consumer with --consumer", function()
      local t = quarantined({ "c", "d" })
      write_tree(t.dir, { ["handlers/c.lua"] = handler("c", true),
                          ["handlers/d.lua"] = handler("d", true) })
      local out = ok(t, { "dlq", "replay", "--all", "--consumer", "d" })
      assert.matches("\nreplayed 2 messages\n$", out)
      assert.equal(3, #H.lines(out))
      assert.same({ "c:bad1", "c:bad2" }, who(entries(t)))
      t.run_drain()
      -- The copies reach both consumers: d handles them; c, which never
      -- handled them, does too (the copies are new messages to c).
      for _, c in ipairs({ "c", "d" }) do
        assert.equal(1, state(t, c, "bad1"))
        assert.equal(1, state(t, c, "bad2"))
      end
      -- c's own entries, replayed now: the copies are dropped, by id.
      out = ok(t, { "dlq", "replay", "--all" })
      assert.matches("\nreplayed 2 messages\n$", out)
      local r = t.run_drain()
      assert.matches("received=4 handled=0 deduplicated=4", r.err, 1, true)
      for _, c in ipairs({ "c", "d" }) do
        assert.equal(1, state(t, c, "bad1"))
        assert.equal(1, state(t, c, "bad2"))
      end
      assert.same({}, entries(t))
    end)

    it("lists what it would replay with --dry-run, and changes nothing", function()
      local t = quarantined()
      local before = ok(t, { "dlq", "list", "--all", "--json" })
      local messages = H.topics(t.data).orders.messages
      local list = entries(t)
      local want = {}
      for _, e in ipairs(list) do want[#want + 1] = "would replay " .. e.seq end
      want[#want + 1] = "would replay 2 messages"
      assert.equal(table.concat(want, "\n") .. "\n",
                   ok(t, { "dlq", "replay", "--all", "--dry-run" }))
      assert.equal("would replay " .. list[2].seq .. "\nwould replay 1 message\n",
                   ok(t, { "dlq", "replay", list[2].id, "--dry-run" }))
      assert.equal(before, ok(t, { "dlq", "list", "--all", "--json" }))
      assert.equal(messages, H.topics(t.data).orders.messages)
      local r = t.run_drain()
      assert.matches("received=0 handled=0", r.err, 1, true)
    end)

    it("is a usage error without IDs or --all, or with both", function()
      local t = quarantined()
      local before = ok(t, { "dlq", "list", "--all", "--json" })
      fails(t, 2, "eddy dlq replay: name the messages to replay (ID...) or give --all" ..
                  " (see 'eddy dlq replay --help')", { "dlq", "replay" })
      fails(t, 2, "eddy dlq replay: name the messages to replay (ID...) or give --all" ..
                  " (see 'eddy dlq replay --help')", { "dlq", "replay", "--dry-run" })
      fails(t, 2, "eddy dlq replay: give either IDs or --all, not both" ..
                  " (see 'eddy dlq replay --help')", { "dlq", "replay", "1", "--all" })
      assert.equal(before, ok(t, { "dlq", "list", "--all", "--json" }))
    end)

    it("fails on an unknown entry, replaying nothing", function()
      local t = quarantined()
      local before = ok(t, { "dlq", "list", "--all", "--json" })
      local messages = H.topics(t.data).orders.messages
      fails(t, 1, "eddy dlq replay: no quarantined message 'nope'", { "dlq", "replay", "nope" })
      -- One unknown name among good ones: nothing is replayed.
      fails(t, 1, "eddy dlq replay: no quarantined message 'nope'",
            { "dlq", "replay", t.msgs.bad1.id, "nope" })
      assert.equal(before, ok(t, { "dlq", "list", "--all", "--json" }))
      assert.equal(messages, H.topics(t.data).orders.messages)
    end)

    it("two replays --all at once replay each pending entry once, round after round", function()
      local ENTRIES, ROUNDS = 300, 6
      local dir = H.tmpdir()
      defer(function() H.rmdir(dir) end)
      write_tree(dir, { ["eddy.lua"] = APP, ["handlers/c.lua"] = handler("c", false) })
      local t = { data = dir .. "/data" }
      ok(t, { "topic", "create", "orders", "--partitions", "2" })
      local lines = {}
      for i = 1, ENTRIES do lines[i] = string.format("bad%03d", i) end
      local r = H.run({ "--data", t.data, "produce", "orders" },
                      { stdin = table.concat(lines, "\n") .. "\n" })
      assert.same({ 0, "" }, { r.code, r.err })
      for round = 1, ROUNDS do
        -- Each round quarantines the copies the last one replayed: as many
        -- pending entries again.
        r = H.run({ "run", dir .. "/eddy.lua", "--drain" })
        assert.equal(0, r.code, r.err)
        local pending = {}
        for _, e in ipairs(entries(t)) do pending[#pending + 1] = e.seq end
        assert.equal(ENTRIES, #pending)
        local rs = H.run_parallel({ { "--data", t.data, "dlq", "replay", "--all" },
                                    { "--data", t.data, "dlq", "replay", "--all" } })
        local replayed, total = {}, 0
        for _, x in ipairs(rs) do
          assert.same({ 0, "" }, { x.code, x.err })
          local out = H.lines(x.out)
          for i = 1, #out - 1 do
            local seq = tonumber(out[i]:match("^replayed (%d+) to partition %d+ offset %d+$"))
            assert.truthy(seq, out[i])
            assert.is_nil(replayed[seq], "entry " .. seq .. " replayed twice")
            replayed[seq] = true
          end
          local n = tonumber(out[#out]:match("^replayed (%d+) messages?$") or
                             out[#out]:match("^replayed (%d+) messages? %(%d+ others were " ..
                                             "replayed or purged meanwhile by another process%)$"))
          assert.truthy(n, out[#out])
          assert.equal(#out - 1, n)
          total = total + n
        end
        assert.equal(ENTRIES, total)
        for _, seq in ipairs(pending) do assert.is_true(replayed[seq], "entry " .. seq .. " left") end
        assert.same({}, entries(t))
        -- On the topic: each message and one copy per round.
        local copies = {}
        for _, m in ipairs(H.messages(t.data, "orders")) do
          copies[m.value] = (copies[m.value] or 0) + 1
        end
        for _, v in ipairs(lines) do assert.equal(round + 1, copies[v], v) end
      end
    end)
  end)

  describe("purge", function()
    it("removes an entry: list no longer shows it, even with --all", function()
      local t = quarantined()
      local list = entries(t)
      local dlq_messages = H.topics(t.data)["orders.dlq"].messages
      assert.equal(2, dlq_messages)
      assert.equal("purged 1 message\n", ok(t, { "dlq", "purge", tostring(list[1].seq) }))
      assert.same({ list[2] }, entries(t))
      assert.same({ list[2] }, entries(t, { "--all" }))
      fails(t, 1, "eddy dlq show: no quarantined message '" .. list[1].seq .. "'",
            { "dlq", "show", tostring(list[1].seq) })
      -- The dlq topic keeps its copy.
      assert.equal(dlq_messages, H.topics(t.data)["orders.dlq"].messages)
      -- By message id too.
      assert.equal("purged 1 message\n", ok(t, { "dlq", "purge", list[2].id }))
      assert.same({}, entries(t, { "--all" }))
    end)

    it("removes a replayed entry too", function()
      local t = quarantined()
      local e = by_value(t).bad1
      ok(t, { "dlq", "replay", e.id })
      assert.equal("purged 1 message\n", ok(t, { "dlq", "purge", e.id }))
      assert.same({ "c:bad2" }, who(entries(t, { "--all" })))
    end)

    it("removes every entry of one consumer with --all --consumer", function()
      local t = quarantined({ "c", "d" })
      local e = by_value(t, { "--consumer", "c" }).bad1
      ok(t, { "dlq", "replay", tostring(e.seq) })
      assert.equal("purged 2 messages\n",
                   ok(t, { "dlq", "purge", "--all", "--consumer", "c" }))
      assert.same({ "d:bad1", "d:bad2" }, who(entries(t, { "--all" })))
      assert.equal("purged 2 messages\n", ok(t, { "dlq", "purge", "--all" }))
      assert.same({}, entries(t, { "--all" }))
    end)

    it("is a usage error without IDs or --all, and fails on an unknown entry", function()
      local t = quarantined()
      local before = ok(t, { "dlq", "list", "--all", "--json" })
      fails(t, 2, "eddy dlq purge: name the messages to purge (ID...) or give --all" ..
                  " (see 'eddy dlq purge --help')", { "dlq", "purge" })
      fails(t, 2, "eddy dlq purge: give either IDs or --all, not both" ..
                  " (see 'eddy dlq purge --help')", { "dlq", "purge", "1", "--all" })
      fails(t, 1, "eddy dlq purge: no quarantined message 'nope'", { "dlq", "purge", "nope" })
      fails(t, 1, "eddy dlq purge: no quarantined message 'nope'",
            { "dlq", "purge", t.msgs.bad1.id, "nope" })
      assert.equal(before, ok(t, { "dlq", "list", "--all", "--json" }))
    end)
  end)

  describe("entries of handler errors whose value is not a string", function()
    it("give the error readably", function()
      local dir = H.tmpdir()
      defer(function() H.rmdir(dir) end)
      write_tree(dir, {
        ["eddy.lua"] = 'return { data = "data", workers = 1, handlers = { "h.lua" },\n' ..
                       '         topics = { orders = {} } }\n',
        ["h.lua"] = 'local eddy = require "eddy"\n' ..
                    'return eddy.consumer { name = "c", topics = "orders",\n' ..
                    '  retry = { attempts = 1 },\n' ..
                    '  handle = function(msg)\n' ..
                    '    if msg.value == "table" then error({ code = 42 }) end\n' ..
                    '    error()\n' ..
                    '  end }\n',
      })
      local t = { data = dir .. "/data" }
      ok(t, { "topic", "create", "orders" })
      ok(t, { "produce", "orders", "table" })
      ok(t, { "produce", "orders", "nil" })
      local r = H.run({ "run", dir .. "/eddy.lua", "--drain" })
      assert.equal(0, r.code, r.err)
      local list = by_value(t)
      assert.same({ reason = "error", error = "a table value {code=42}" },
                  { reason = list.table.reason, error = list.table.error })
      assert.same({ reason = "error", error = "error called with nil (no message)" },
                  { reason = list["nil"].reason, error = list["nil"].error })
    end)
  end)
end)
