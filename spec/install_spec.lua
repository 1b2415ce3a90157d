-- `make install` and the rockspec each install the binary, the C module and
-- the Lua library, and `require "eddy"` works from what they installed alone.
local h = require "helpers"

local root = os.getenv("EDDY_ROOT") or "."

-- These builds and tools are not sanitized: under `make test-asan` they
-- must not inherit the sanitizer preload meant for the spec runner.
local plain = { LD_PRELOAD = "" }

-- Copies the tracked sources (no build tree) into a fresh directory, so the
-- install is built from scratch as on a fresh clone.
local function fresh_copy()
  local dir = h.tmpdir()
  local r = h.exec({ "sh", "-c",
    "git -C \"$1\" ls-files -z --cached --others --exclude-standard | " ..
    "(cd \"$1\" && xargs -0 cp --parents -t \"$2\")", "sh", root, dir }, { env = plain })
  assert(r.code == 0, r.err)
  return dir
end

-- Runs lua5.4 with only the given tree on its paths.
local function lua_in_tree(tree, code)
  return h.exec({ "lua5.4", "-e", code }, { env = {
    LUA_PATH_5_4 = tree .. "/share/lua/5.4/?.lua;" .. tree .. "/share/lua/5.4/?/init.lua",
    LUA_CPATH_5_4 = tree .. "/lib/lua/5.4/?.so",
    LUA_PATH = "", LUA_CPATH = "", LD_PRELOAD = "",
  } })
end

local probe = [[
  local eddy = require "eddy"
  assert(package.searchpath("eddy.core", package.cpath))
  local dir = os.tmpname(); os.remove(dir)
  local log = assert(eddy.open { data = dir })
  assert(log:topic_create("t", 2))
  local p, o = assert(log:produce("t", { key = "foobar", value = "v" }))
  io.write(eddy._VERSION, " ", p, " ", o, " ", package.searchpath("eddy", package.path))
  log:close()
  os.execute("rm -rf '" .. dir .. "'")
]]

describe("install", function()
  it("make install puts the binary, the module and the library under DESTDIR/PREFIX", function()
    local src = fresh_copy()
    local dest = h.tmpdir()
    finally(function() h.rmdir(src); h.rmdir(dest) end)
    local r = h.exec({ "make", "-s", "install", "PREFIX=/opt/eddy", "DESTDIR=" .. dest },
                     { cwd = src, env = plain })
    assert.are.equal(0, r.code, r.err)
    local tree = dest .. "/opt/eddy"
    assert.is_true(h.exists(tree .. "/bin/eddy"))
    assert.is_true(h.exists(tree .. "/lib/lua/5.4/eddy/core.so"))
    assert.is_true(h.exists(tree .. "/share/lua/5.4/eddy/init.lua"))
    local v = h.exec({ tree .. "/bin/eddy", "version" }, { env = plain })
    assert.are.equal(0, v.code)
    assert.truthy(v.out:find("^eddy %S+\nLua 5%.4"))
    local l = lua_in_tree(tree, probe)
    assert.are.equal(0, l.code, l.err)
    -- "foobar" is on partition 0 of 2 by Kafka's murmur2: 1357151166 % 2.
    assert.are.equal("0.1.0-dev 0 0 " .. tree .. "/share/lua/5.4/eddy/init.lua", l.out)
  end)

  it("the rockspec builds offline into a tree that require \"eddy\" uses", function()
    local src = fresh_copy()
    local tree = h.tmpdir()
    finally(function() h.rmdir(src); h.rmdir(tree) end)
    local r = h.exec({ "luarocks", "--lua-version=5.4", "make", "--tree", tree,
                       "--deps-mode=none", "eddy-dev-1.rockspec" }, { cwd = src, env = plain })
    assert.are.equal(0, r.code, r.err .. r.out)
    local l = lua_in_tree(tree, probe)
    assert.are.equal(0, l.code, l.err)
    assert.are.equal("0.1.0-dev 0 0 " .. tree .. "/share/lua/5.4/eddy/init.lua", l.out)
    local v = h.exec({ tree .. "/bin/eddy", "version" }, { env = plain })
    assert.are.equal(0, v.code, v.err)
    assert.truthy(v.out:find("^eddy 0%.1%.0%-dev\n"))
  end)
end)
