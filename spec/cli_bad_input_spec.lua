--- The eddy command line on bad input: each gives its exit status (1
-- failure, 2 usage error) and one exact line on stderr, and leaves the store
-- as it was.
local H = require "helpers"

--- Runs fn when the test ends (as many as needed; see H.defer).
local function defer(fn) H.defer(finally, fn) end

--- A fresh data directory, removed when the test ends.
local function datadir()
  local dir = H.tmpdir()
  defer(function() H.rmdir(dir) end)
  return dir
end

--- A store in a fresh directory with topic "t" (2 partitions) holding
-- "one" and "two" in partition 0 and "three" in partition 1.
local function seeded()
  local dir = datadir()
  for _, args in ipairs({
    { "topic", "create", "t", "--partitions", "2" },
    { "produce", "t", "-p", "0", "one" },
    { "produce", "t", "-p", "0", "two" },
    { "produce", "t", "-p", "1", "three" },
  }) do
    local r = H.run({ "--data", dir, table.unpack(args) })
    assert(r.code == 0, r.err)
  end
  return dir
end

--- Asserts the store made by seeded() is unchanged.
local function assert_seeded(dir)
  local topics = H.topics(dir)
  local names = {}
  for name in pairs(topics) do names[#names + 1] = name end
  assert.same({ "t" }, names)
  assert.equal(3, topics.t.messages)
  local v = {}
  for _, m in ipairs(H.messages(dir, "t")) do
    v[#v + 1] = string.format("%d@%d=%s", m.partition, m.offset, m.value)
  end
  table.sort(v)
  assert.same({ "0@0=one", "0@1=two", "1@0=three" }, v)
end

--- Runs the sqlite3 CLI on db (without the sanitizers of an EDDY_ASAN run:
-- it is not eddy).
local function sqlite3(db, sql)
  return H.exec({ "sqlite3", db, sql }, { unset = { "LD_PRELOAD" } })
end

--- Runs eddy and asserts its exit status and its whole stderr (one line),
-- with nothing on stdout.
local function fails(code, message, args, opts)
  local r = H.run(args, opts)
  local cmd = "eddy " .. table.concat(args, " ")
  assert.equal(code, r.code, "exit status of " .. cmd .. " (stderr: " .. r.err .. ")")
  assert.equal(message .. "\n", r.err, cmd)
  assert.equal("", r.out)
  return r
end

describe("eddy on an unknown topic", function()
  it("produce fails with exit status 1 and creates nothing", function()
    local dir = seeded()
    fails(1, "eddy produce: unknown topic 'nope'", { "--data", dir, "produce", "nope", "x" })
    fails(1, "eddy produce: unknown topic 'nope'", { "--data", dir, "produce", "nope" },
          { stdin = "a\nb\n" })
    assert_seeded(dir)
  end)

  it("tail fails with exit status 1", function()
    local dir = seeded()
    fails(1, "eddy tail: unknown topic 'nope'", { "--data", dir, "tail", "nope" })
    fails(1, "eddy tail: unknown topic 'nope'", { "--data", dir, "tail", "nope", "-b", "-f" })
    assert_seeded(dir)
  end)

  it("names a partition the topic does not have", function()
    local dir = seeded()
    fails(1, "eddy produce: topic 't' has no partition 2 (it has 2)",
          { "--data", dir, "produce", "t", "-p", "2", "x" })
    fails(1, "eddy tail: topic 't' has no partition 7 (it has 2)",
          { "--data", dir, "tail", "t", "-p", "7" })
    fails(2, "eddy produce: --partition must be between 0 and 4095, got -1 (see 'eddy produce --help')",
          { "--data", dir, "produce", "t", "-p", "-1", "x" })
    assert_seeded(dir)
  end)
end)

describe("eddy topic create --partitions", function()
  it("rejects a count that is not a number as a usage error", function()
    local dir = seeded()
    fails(2, "eddy topic create: --partitions expects a whole number, got 'abc' (see 'eddy topic create --help')",
          { "--data", dir, "topic", "create", "u", "--partitions", "abc" })
    assert_seeded(dir)
  end)

  -- A count out of 1..4096 is a malformed argument like 'abc': a usage
  -- error (exit status 2), found before the store is touched, that gives
  -- the range, also for a number too big for any integer type.
  for _, n in ipairs({ "0", "-1", "100000", "99999999999999999999999" }) do
    it("rejects " .. n .. " as a usage error (exit status 2)", function()
      local dir = seeded()
      fails(2, "eddy topic create: --partitions must be between 1 and 4096, got " ..
               n .. " (see 'eddy topic create --help')",
            { "--data", dir, "topic", "create", "u", "--partitions", n })
      assert_seeded(dir)
    end)
  end

  it("rejects a bad count without creating the data directory", function()
    local parent = datadir()
    local dir = parent .. "/data"
    local r = H.run({ "--data", dir, "topic", "create", "u", "--partitions", "0" })
    assert.are_not.equal(0, r.code)
    assert.is_false(H.exists(dir), "a rejected topic create made " .. dir)
  end)
end)

describe("eddy produce over the size limit", function()
  it("stops at a value over 1 MiB: earlier lines are kept, the rest is not written", function()
    local dir = seeded()
    local big = string.rep("x", 1048577)
    fails(1, "eddy produce: line 3: value of 1048577 bytes is over the limit of 1048576 bytes " ..
             "of topic 't' (2 messages before it produced)",
          { "--data", dir, "produce", "t", "-p", "1" },
          { stdin = "four\nfive\n" .. big .. "\nsix\n" })
    local t = H.topics(dir).t
    assert.equal(5, t.messages)
    local v = {}
    for _, m in ipairs(H.messages(dir, "t", { "-p", "1" })) do v[#v + 1] = m.value end
    assert.same({ "three", "four", "five" }, v)
  end)

  it("honours --max-message-bytes of the topic, for VALUE and for lines", function()
    local dir = seeded()
    local r = H.run({ "--data", dir, "topic", "create", "s", "--max-message-bytes", "10" })
    assert.equal(0, r.code)
    fails(1, "eddy produce: value of 11 bytes is over the limit of 10 bytes of topic 's'",
          { "--data", dir, "produce", "s", "12345678901" })
    fails(1, "eddy produce: key of 11 bytes is over the limit of 10 bytes of topic 's'",
          { "--data", dir, "produce", "s", "-k", "12345678901", "v" })
    fails(1, "eddy produce: line 2: value of 11 bytes is over the limit of 10 bytes of topic 's' " ..
             "(1 message before it produced)",
          { "--data", dir, "produce", "s" }, { stdin = "one\n12345678901\nthree\n" })
    local v = {}
    for _, m in ipairs(H.messages(dir, "s")) do v[#v + 1] = m.value end
    assert.same({ "one" }, v)
    assert.equal(3, H.topics(dir).t.messages)
  end)

  it("keeps every line before the bad one across batches of 1000", function()
    local dir = seeded()
    local r = H.run({ "--data", dir, "topic", "create", "s", "--max-message-bytes", "8" })
    assert.equal(0, r.code)
    local lines = {}
    for i = 1, 2499 do lines[i] = string.format("l%05d", i) end
    lines[2500] = "too long!"
    lines[2501] = "after"
    fails(1, "eddy produce: line 2500: value of 9 bytes is over the limit of 8 bytes of topic 's' " ..
             "(2499 messages before it produced)",
          { "--data", dir, "produce", "s" }, { stdin = table.concat(lines, "\n") .. "\n" })
    local msgs = H.messages(dir, "s")
    assert.equal(2499, #msgs)
    assert.equal("l02499", msgs[#msgs].value)
    assert.equal(2499, H.topics(dir).s.messages)
  end)

  it("stops at a line without the key separator", function()
    local dir = seeded()
    fails(1, "eddy produce: line 2: no key separator ':' (1 message before it produced)",
          { "--data", dir, "produce", "t", "-K", ":" }, { stdin = "k:v\nno separator\nk:w\n" })
    assert.equal(4, H.topics(dir).t.messages)
  end)
end)

describe("eddy produce --header", function()
  it("rejects a header without '=' as a usage error and writes nothing", function()
    local dir = seeded()
    fails(2, "eddy produce: header 'abc' has no '=' (use --header NAME=VALUE) (see 'eddy produce --help')",
          { "--data", dir, "produce", "t", "--header", "abc", "x" })
    fails(2, "eddy produce: header '=v' has an empty name (see 'eddy produce --help')",
          { "--data", dir, "produce", "t", "-H", "=v", "x" })
    assert_seeded(dir)
  end)
end)

describe("eddy on a bad command line", function()
  it("names an unknown option and suggests the nearest", function()
    local dir = seeded()
    fails(2, "eddy produce: unknown option '--kye' (did you mean '--key'?) (see 'eddy produce --help')",
          { "--data", dir, "produce", "t", "--kye", "k", "x" })
    fails(2, "eddy tail: unknown option '--form-beginning' (did you mean '--from-beginning'?) (see 'eddy tail --help')",
          { "--data", dir, "tail", "t", "--form-beginning" })
    fails(2, "eddy tail: unknown option '--zzzzzzzz' (see 'eddy tail --help')",
          { "--data", dir, "tail", "t", "--zzzzzzzz" })
    fails(2, "eddy: unknown option '--bogus' (see 'eddy --help')", { "--bogus", "topic", "list" })
    assert_seeded(dir)
  end)

  it("names an unknown command and suggests the nearest", function()
    fails(2, "eddy: unknown command 'prodce' (did you mean 'produce'?) (see 'eddy --help')",
          { "prodce", "t", "x" })
    fails(2, "eddy: unknown command 'tial' (did you mean 'tail'?) (see 'eddy --help')",
          { "tial", "t" })
    fails(2, "eddy: unknown command 'frobnicate' (see 'eddy --help')", { "frobnicate" })
    fails(2, "eddy: 'topic' needs a subcommand: create, list, alter or trim (see 'eddy --help')",
          { "topic" })
    fails(2, "eddy: unknown command 'nope' (see 'eddy --help')", { "help", "nope" })
  end)

  it("names a missing argument", function()
    local dir = seeded()
    fails(2, "eddy produce: missing argument (usage: eddy produce TOPIC [--key K] " ..
             "[--type T] [--header NAME=VALUE]... [VALUE]) (see 'eddy produce --help')",
          { "--data", dir, "produce" })
    fails(2, "eddy tail: missing argument (usage: eddy tail TOPIC [--from-beginning] [--limit N] " ..
             "[--follow] [--json]) (see 'eddy tail --help')",
          { "--data", dir, "tail" })
    fails(2, "eddy topic create: missing argument (usage: eddy topic create NAME [--partitions N]) " ..
             "(see 'eddy topic create --help')",
          { "--data", dir, "topic", "create" })
    fails(2, "eddy produce: option '--key' needs a value (K) (see 'eddy produce --help')",
          { "--data", dir, "produce", "t", "--key" })
    fails(2, "eddy: option '--data' needs a value (see 'eddy --help')", { "--data" })
    fails(2, "eddy produce: unexpected argument 'extra' (see 'eddy produce --help')",
          { "--data", dir, "produce", "t", "v", "extra" })
    assert_seeded(dir)
  end)

  it("prints the help on stderr with exit status 2 when no command is given", function()
    local r = H.run({})
    assert.equal(2, r.code)
    assert.equal("", r.out)
    assert.truthy(r.err:find("\nUsage: eddy [--data DIR] COMMAND [ARGS]\n", 1, true))
  end)

  it("rejects a malformed --lock-timeout as a usage error (exit status 2)", function()
    local dir = seeded()
    fails(2, "eddy topic list: --lock-timeout expects a whole number, got 'abc' (see 'eddy topic list --help')",
          { "--data", dir, "--lock-timeout", "abc", "topic", "list" })
    fails(2, "eddy produce: --lock-timeout must be between 1 and 3600000, got 0 (see 'eddy produce --help')",
          { "--data", dir, "produce", "t", "x", "--lock-timeout", "0" })
    assert_seeded(dir)
  end)
end)

describe("eddy on a bad data directory", function()
  it("refuses a data directory that is a regular file, and leaves it alone", function()
    local parent = datadir()
    local file = parent .. "/plain"
    H.write(file, "not a directory\n")
    fails(1, "eddy topic list: data directory '" .. file .. "' is not a directory",
          { "--data", file, "topic", "list" })
    fails(1, "eddy topic create: data directory '" .. file .. "' is not a directory",
          { "--data", file, "topic", "create", "t" })
    assert.equal("not a directory\n", H.read(file))
  end)

  it("reports a data directory that cannot be created", function()
    fails(1, "eddy topic create: cannot create data directory '/proc/eddy-spec-no-such-dir': No such file or directory",
          { "--data", "/proc/eddy-spec-no-such-dir", "topic", "create", "t" })
    assert.is_false(H.exists("/proc/eddy-spec-no-such-dir"))
  end)

  it("refuses an eddy.db that is not an SQLite file, and does not change it", function()
    local dir = datadir()
    local garbage = {}
    for i = 1, 4096 do garbage[i] = string.char((i * 7919 + 13) % 256) end
    garbage = "garbage, not SQLite\0" .. table.concat(garbage)
    H.write(dir .. "/eddy.db", garbage)
    local msg = "'" .. dir .. "/eddy.db' is not a database (it lacks SQLite's header): " ..
                "restore the store from a backup, or move the file away"
    fails(1, "eddy topic list: " .. msg, { "--data", dir, "topic", "list" })
    fails(1, "eddy topic create: " .. msg, { "--data", dir, "topic", "create", "t" })
    fails(1, "eddy produce: " .. msg, { "--data", dir, "produce", "t", "x" })
    fails(1, "eddy tail: " .. msg, { "--data", dir, "tail", "t" })
    assert.is_true(H.read(dir .. "/eddy.db") == garbage, "eddy.db was changed")
    assert.is_false(H.exists(dir .. "/eddy.db-wal"))
  end)

  it("refuses the SQLite database of another program, and does not change it", function()
    local dir = datadir()
    local db = dir .. "/eddy.db"
    local r = sqlite3(db, "CREATE TABLE x(a); INSERT INTO x VALUES(42);")
    assert.equal(0, r.code, r.err)
    local before = H.read(db)
    local msg = "'" .. db .. "' is not an eddy store (it is a database of another program)"
    fails(1, "eddy topic list: " .. msg, { "--data", dir, "topic", "list" })
    fails(1, "eddy topic create: " .. msg, { "--data", dir, "topic", "create", "t" })
    fails(1, "eddy produce: " .. msg, { "--data", dir, "produce", "t", "x" })
    assert.is_true(H.read(db) == before, "the other program's database was changed")
    assert.equal("42\n", sqlite3(db, "SELECT a FROM x").out)
  end)

  it("refuses a store made by a newer eddy", function()
    local dir = seeded()
    local db = dir .. "/eddy.db"
    local r = sqlite3(db, "PRAGMA user_version=99")
    assert.equal(0, r.code, r.err)
    local before = H.read(db)
    local msg = "store '" .. dir .. "' was made by a newer eddy (schema version 99; " ..
                "this eddy reads up to 1): upgrade eddy"
    fails(1, "eddy topic list: " .. msg, { "--data", dir, "topic", "list" })
    fails(1, "eddy produce: " .. msg, { "--data", dir, "produce", "t", "x" })
    fails(1, "eddy tail: " .. msg, { "--data", dir, "tail", "t" })
    fails(1, "eddy topic create: " .. msg, { "--data", dir, "topic", "create", "u" })
    assert.is_true(H.read(db) == before, "the newer store was changed")
  end)

  it("read commands on a missing data directory do not create it", function()
    local parent = datadir()
    local dir = parent .. "/missing"
    local msg = "no eddy store in '" .. dir .. "' (the directory does not exist)"
    fails(1, "eddy topic list: " .. msg, { "--data", dir, "topic", "list" })
    fails(1, "eddy tail: " .. msg, { "--data", dir, "tail", "t" })
    fails(1, "eddy produce: " .. msg, { "--data", dir, "produce", "t", "x" })
    fails(1, "eddy topic trim: " .. msg, { "--data", dir, "topic", "trim" })
    fails(1, "eddy topic alter: " .. msg, { "--data", dir, "topic", "alter", "t", "--retention", "1d" })
    fails(1, "eddy tail: " .. msg, { "tail", "t" }, { env = { EDDY_DATA = dir } })
    assert.is_false(H.exists(dir), dir .. " was created")
  end)

  it("read commands on an empty data directory do not create a store", function()
    local dir = datadir()
    local msg = "no eddy store in '" .. dir .. "'"
    fails(1, "eddy topic list: " .. msg, { "--data", dir, "topic", "list" })
    fails(1, "eddy produce: " .. msg, { "--data", dir, "produce", "t", "x" })
    fails(1, "eddy tail: " .. msg, { "--data", dir, "tail", "t" })
    assert.is_false(H.exists(dir .. "/eddy.db"))
  end)
end)

--- Every command's name, from `eddy --help`.
local function command_names()
  local r = H.run({ "--help" })
  assert(r.code == 0, r.err)
  local names, listing = {}, false
  for _, line in ipairs(H.lines(r.out)) do
    if line == "Commands:" then listing = true
    elseif listing and line == "" then break
    elseif listing then names[#names + 1] = (line:sub(3, 16):gsub("%s+$", "")) end
  end
  return names
end

--- The options of command name, from its --help: a list of
-- { name =, arg = (nil for a flag), repeatable = bool }.
local function options_of(name)
  local argv = {}
  for w in name:gmatch("%S+") do argv[#argv + 1] = w end
  argv[#argv + 1] = "--help"
  local r = H.run(argv)
  assert(r.code == 0, r.err)
  local opts = {}
  for _, line in ipairs(H.lines(r.out)) do
    -- "  -k, --key K     help" or "      --drain     help"; arguments are
    -- in capitals, help text is not.
    local opt, rest = line:match("^  %-?%w?,? *%-%-([%w%-]+)(.*)$")
    if opt then
      opts[#opts + 1] = { name = opt, arg = rest:match("^ ([A-Z][%w=_]*)"),
                          repeatable = rest:find("(repeatable", 1, true) ~= nil }
    end
  end
  return opts
end

describe("eddy options given twice", function()
  it("are a usage error for every option of every command, except those whose help says " ..
     "they repeat", function()
    local names = command_names()
    assert.is_true(#names >= 24, "found only " .. #names .. " commands")
    -- Run where a command that went ahead by mistake harms nothing.
    local cwd = datadir()
    local repeatable, checked = {}, 0
    for _, name in ipairs(names) do
      local opts = options_of(name)
      assert.is_true(#opts >= 3, name .. " has only " .. #opts .. " options")
      for _, o in ipairs(opts) do
        local args = {}
        for w in name:gmatch("%S+") do args[#args + 1] = w end
        for _ = 1, 2 do
          args[#args + 1] = "--" .. o.name
          if o.arg then args[#args + 1] = "1" end
        end
        local r = H.run(args, { cwd = cwd })
        local twice = string.format("eddy %s: option '--%s' given twice (see 'eddy %s --help')\n",
                                    name, o.name, name)
        if o.repeatable then
          repeatable[#repeatable + 1] = name .. " --" .. o.name
          assert.are_not.equal(twice, r.err, "eddy " .. table.concat(args, " "))
        else
          assert.same({ code = 2, out = "", err = twice }, r, "eddy " .. table.concat(args, " "))
          checked = checked + 1
        end
      end
    end
    assert.is_true(checked > 80, "checked " .. checked)
    -- The options that repeat, as their help says.
    table.sort(repeatable)
    assert.same({ "dlq replay --kafka", "produce --header", "produce --kafka", "tail --kafka",
                  "topic create --kafka", "topic list --kafka" }, repeatable)
  end)

  it("counts the long and the short form as one option, and --data before and after the " ..
     "command", function()
    local dir = seeded()
    fails(2, "eddy produce: option '--key' given twice (see 'eddy produce --help')",
          { "--data", dir, "produce", "t", "-k", "a", "--key", "b", "x" })
    fails(2, "eddy produce: option '--key' given twice (see 'eddy produce --help')",
          { "--data", dir, "produce", "t", "--key=a", "-kb", "x" })
    fails(2, "eddy tail: option '--json' given twice (see 'eddy tail --help')",
          { "--data", dir, "tail", "t", "-j", "--json" })
    fails(2, "eddy: option '--data' given twice (see 'eddy --help')",
          { "--data", dir, "-d", dir, "topic", "list" })
    fails(2, "eddy topic list: option '--data' given twice (see 'eddy topic list --help')",
          { "--data", dir, "topic", "list", "--data", dir })
    fails(2, "eddy produce: option '--lock-timeout' given twice (see 'eddy produce --help')",
          { "--lock-timeout", "5", "--data", dir, "produce", "t", "x", "--lock-timeout", "5" })
    assert_seeded(dir)
  end)

  it("--header repeats, in order", function()
    local dir = seeded()
    local r = H.run({ "--data", dir, "produce", "t", "-p", "1", "-H", "a=1", "--header", "b=2",
                      "-H", "a=3", "four" })
    assert.same({ 0, "" }, { r.code, r.err })
    local m = H.messages(dir, "t", { "-p", "1" })[2]
    assert.same({ a = { "1", "3" }, b = "2" }, m.headers)
  end)
end)

describe("eddy limits and ranges in errors", function()
  it("name the limit and its value", function()
    local dir = seeded()
    local args = { "--data", dir, "produce", "t" }
    for i = 1, 65 do args[#args + 1] = "-H"; args[#args + 1] = "h" .. i .. "=v" end
    args[#args + 1] = "x"
    fails(2, "eddy produce: too many headers (max 64) (see 'eddy produce --help')", args)
    args = { "--data", dir, "produce", "t", "--type", "T" }
    for i = 1, 64 do args[#args + 1] = "-H"; args[#args + 1] = "h" .. i .. "=v" end
    args[#args + 1] = "x"
    fails(2, "eddy produce: too many headers (max 64) (see 'eddy produce --help')", args)
    args = { "--data", dir, "dlq", "purge" }
    for i = 1, 65 do args[#args + 1] = tostring(i) end
    fails(2, "eddy dlq purge: too many arguments (max 64) (see 'eddy dlq purge --help')", args)
    args = { "topic", "list", "--broker", "kafka://127.0.0.1:1" }
    for i = 1, 65 do args[#args + 1] = "-X"; args[#args + 1] = "p" .. i .. "=v" end
    fails(2, "eddy topic list: too many --kafka properties (max 64) (see 'eddy topic list --help')",
          args)
    args = { "--data", dir, "produce", "t" }
    for i = 1, 257 do args[#args + 1] = "-H"; args[#args + 1] = "h" .. i .. "=v" end
    fails(2, "eddy produce: too many options (max 256) (see 'eddy produce --help')", args)
    assert_seeded(dir)
  end)

  it("give the real range of a number out of it, however large", function()
    local dir = seeded()
    local huge = "99999999999999999999"
    fails(2, "eddy produce: --partition must be between 0 and 4095, got " .. huge ..
             " (see 'eddy produce --help')", { "--data", dir, "produce", "t", "-p", huge, "x" })
    fails(2, "eddy tail: --partition must be between 0 and 4095, got -" .. huge ..
             " (see 'eddy tail --help')", { "--data", dir, "tail", "t", "-p", "-" .. huge })
    fails(2, "eddy tail: --limit must be between 0 and 9223372036854775807, got -1 " ..
             "(see 'eddy tail --help')", { "--data", dir, "tail", "t", "--limit", "-1" })
    fails(2, "eddy run: --workers must be between 1 and 64, got 65 (see 'eddy run --help')",
          { "--data", dir, "run", "--workers", "65" })
    fails(2, "eddy produce: --version must be between 1 and 2147483647, got 0 " ..
             "(see 'eddy produce --help')",
          { "--data", dir, "produce", "t", "--type", "T", "--version", "0", "x" })
    fails(2, "eddy topic list: --lock-timeout must be between 1 and 3600000, got " .. huge ..
             " (see 'eddy topic list --help')",
          { "--data", dir, "--lock-timeout", huge, "topic", "list" })
    fails(2, "eddy tail: --limit expects a whole number, got '1e3' (see 'eddy tail --help')",
          { "--data", dir, "tail", "t", "--limit", "1e3" })
    assert_seeded(dir)
  end)
end)
