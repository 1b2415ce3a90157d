--- What handler code can do: in the default sandbox everything but ending
-- or escaping the runtime; in the strict one (sandbox = "strict", for an
-- app or a consumer) no files, no processes, no C modules either
-- (docs/handlers.md, "What handlers can do").
local H = require "helpers"

--- An app with files, whose store holds topic orders with one message.
local function make_app(app_opts, files)
  local app = H.app(finally, "return { data = 'data', workers = 1, handlers = { 'handlers/' }," ..
                    " topics = { orders = { partitions = 1 } }, " .. app_opts .. " }\n", files)
  H.eddy_ok(app, "topic", "create", "orders")
  local r = H.run({ "--data", app.data, "produce", "orders" }, { stdin = "probe\n" })
  assert(r.code == 0, r.err)
  return app
end

local function state(app, c) return H.state(app.data, c) end

-- What the code of a handler file can reach, at its top level (`at_load`)
-- and in its handler, recorded in its consumer's state.
local PROBE = [[
local function probe()
  local function try(f, ...)
    local ok, err = pcall(f, ...)
    if ok then return "ok" end
    return (tostring(err):gsub("^[^:]*:%d+: ", ""))
  end
  local eddy = require "eddy"
  return {
    io = type(io), execute = type(os.execute), getenv = type(os.getenv), time = type(os.time),
    exit = os.exit and try(os.exit) or "nil",
    sethook = debug.sethook and try(debug.sethook) or "nil",
    getinfo = type(debug.getinfo), traceback = type(debug.traceback),
    cjson = try(require, "cjson"), helper = try(require, "helper"),
    app = try(require, "eddy.app"), open = type(eddy.open), now_ms = type(eddy.now_ms),
    load_env = load("return type(io)")(), binary = try(load, string.dump(probe), "x", "b"),
    loadfile = type(loadfile), package = type(package), print = type(print),
    string_mt = type(getmetatable("")), gsub = (("a-b"):gsub("%-", "+")),
  }
end
local at_load = probe()
local eddy = require "eddy"
return eddy.consumer { name = "$NAME", topics = { "orders" }, $OPTS
  handle = function(_, ctx)
    ctx.state:set("at_load", at_load)
    ctx.state:set("in_call", probe())
  end }
]]

local function probe_file(name, opts)
  return (PROBE:gsub("%$NAME", name):gsub("%$OPTS", opts or ""))
end

-- A module beside the app: reached by require, in the sandbox of the file
-- that requires it.
local HELPER = 'return { io = type(io) }\n'

local DEFAULT = {
  io = "table", execute = "function", getenv = "function", time = "function",
  exit = "os.exit is not available in eddy handlers: return, or raise an error, and eddy goes on",
  sethook = "debug.sethook is not available in eddy handlers",
  getinfo = "function", traceback = "function", cjson = "ok", helper = "ok", app = "ok",
  open = "function", now_ms = "function", load_env = "table",
  binary = "load: binary chunks are not available in eddy handlers",
  loadfile = "function", package = "table", print = "function", string_mt = "table",
  gsub = "a+b",
}

local STRICT = {
  io = "nil", execute = "nil", getenv = "nil", time = "function", exit = "nil", sethook = "nil",
  getinfo = "nil", traceback = "function",
  cjson = "module 'cjson' not found in the strict sandbox (it has the eddy library and Lua" ..
          " modules on package.path)",
  helper = "ok", app = "require: module 'eddy.app' is not available in the strict sandbox",
  open = "nil", now_ms = "function", load_env = "nil",
  binary = "load: binary chunks are not available in eddy handlers",
  loadfile = "nil", package = "nil", print = "function", string_mt = "string", gsub = "a+b",
}

local function drain(app)
  local r = H.run({ "run", app.file, "--drain" })
  assert.equal(0, r.code, r.err)
  assert.equal(0, H.summary(r.err).quarantined, r.err)
end

describe("a handler's sandbox", function()
  it("by default, has everything but what would end or escape eddy", function()
    local app = make_app("", { ["handlers/h.lua"] = probe_file("h"), ["helper.lua"] = HELPER })
    drain(app)
    local st = state(app, "h")
    assert.same(DEFAULT, st.at_load)
    assert.same(DEFAULT, st.in_call)
  end)

  it("in a strict app, has no files, processes or C modules, at load and in calls", function()
    local app = make_app("sandbox = 'strict'",
                         { ["handlers/h.lua"] = probe_file("h"), ["helper.lua"] = HELPER })
    drain(app)
    local st = state(app, "h")
    assert.same(STRICT, st.at_load)
    assert.same(STRICT, st.in_call)
  end)

  it("is strict for a consumer that asks, and default for the others of the app", function()
    local app = make_app("", {
      ["handlers/a.lua"] = probe_file("strict-one", 'sandbox = "strict",'),
      ["handlers/b.lua"] = probe_file("open-one"),
      ["helper.lua"] = 'return { io = type(io) }\n',
    })
    drain(app)
    assert.same(STRICT, state(app, "strict-one").in_call)
    assert.same(STRICT, state(app, "strict-one").at_load)
    -- Strings share one metatable: once a strict file is loaded, it is
    -- locked for every file of the state.
    local locked = {}
    for k, v in pairs(DEFAULT) do locked[k] = v end
    locked.string_mt = "string"
    assert.same(locked, state(app, "open-one").in_call)
  end)

  it("runs a module a strict file requires in the strict sandbox too", function()
    local app = make_app("sandbox = 'strict'", {
      ["handlers/h.lua"] = [[
local helper = require "helper"
local eddy = require "eddy"
return eddy.consumer { name = "h", topics = { "orders" },
  handle = function(_, ctx) ctx.state:set("helper", helper) end }
]],
      ["helper.lua"] = 'return { io = type(io), os = type(os.execute), again = require("again").x }\n',
      ["again.lua"] = 'return { x = type(io) }\n',
    })
    drain(app)
    assert.same({ io = "nil", os = "nil", again = "nil" }, state(app, "h").helper)
  end)

  for _, case in ipairs({
    { "a strict file that touches files at load", "sandbox = 'strict'",
      { ["handlers/h.lua"] = 'local f = io.open("/etc/hostname")\n' ..
                             'return require("eddy").consumer { name = "h", topics = "orders",' ..
                             ' handle = function() end }\n' },
      "handlers/h.lua:1: attempt to index a nil value (global 'io')" },
    { "a consumer that loosens the app's strict sandbox", "sandbox = 'strict'",
      { ["handlers/h.lua"] = 'return require("eddy").consumer { name = "h", topics = "orders",' ..
                             ' sandbox = "default", handle = function() end }\n' },
      "handlers/h.lua: consumer 'h': sandbox \"default\" cannot loosen the app's sandbox =" ..
      " \"strict\"" },
    { "strict and default consumers in one file", "",
      { ["handlers/h.lua"] = 'local eddy = require "eddy"\nreturn {\n' ..
          '  eddy.consumer { name = "a", topics = "orders", sandbox = "strict",' ..
          ' handle = function() end },\n' ..
          '  eddy.consumer { name = "b", topics = "orders", sandbox = "default",' ..
          ' handle = function() end } }\n' },
      "handlers/h.lua: consumer 'b' asks for sandbox \"default\" but shares its file with" ..
      " 'a', which asks for \"strict\": put them in files of their own" },
    { "a consumer that asks for strict and touches files at load", "",
      { ["handlers/h.lua"] = 'local home = os.getenv("HOME")\n' ..
                             'return require("eddy").consumer { name = "h", topics = "orders",' ..
                             ' sandbox = "strict", handle = function() end }\n' },
      "handlers/h.lua:1: attempt to call a nil value (field 'getenv')" },
    { "an app sandbox that is not strict or default", "sandbox = 'tight'",
      { ["handlers/h.lua"] = probe_file("h") },
      "eddy.lua: 'sandbox' must be \"strict\" or \"default\", got 'tight'" },
  }) do
    it("refuses " .. case[1] .. ", in one line, before it runs", function()
      local app = make_app(case[2], case[3])
      local r = H.run({ "run", app.file, "--drain" })
      assert.same({ 1, "", "eddy run: " .. app.dir .. "/" .. case[4] .. "\n" },
                  { r.code, r.out, r.err })
    end)
  end
end)
