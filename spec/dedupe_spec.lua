-- Dedupe across workers: copies of one message id that arrive under
-- different keys run on different workers at the same time, and still only
-- one of them applies its effects.
local H = require "helpers"

local function app_dir(workers)
  local dir = H.tmpdir()
  os.execute("mkdir -p " .. H.quote(dir .. "/handlers"))
  H.write(dir .. "/eddy.lua", string.format(
    'return { data = "data", workers = %d, handlers = { "handlers/" },\n' ..
    '  topics = { t = { partitions = 4 } } }\n', workers))
  H.write(dir .. "/handlers/count.lua", [[
local eddy = require "eddy"
return eddy.consumer {
  name = "count",
  topics = { "t" },
  handle = function(msg, ctx)
    -- A little work, so copies on two workers overlap in time.
    local x = 0
    for i = 1, 20000 do x = x + i end
    ctx.state:set("n:" .. msg.id, (ctx.state:get("n:" .. msg.id) or 0) + 1)
    ctx.state:set("total", (ctx.state:get("total") or 0) + 1)
  end,
}
]])
  return dir
end

describe("dedupe across workers", function()
  it("applies one copy of an id produced under many keys, whatever worker each copy runs on", function()
    local dir = app_dir(2)
    finally(function() H.rmdir(dir) end)
    local data = dir .. "/data"
    assert.are.equal(0, H.run({ "--data", data, "topic", "create", "t", "-p", "4" }).code)
    -- 20 ids, each produced under 30 keys (spread over partitions and
    -- workers), interleaved so that copies of an id arrive together.
    local ids = {}
    for i = 1, 20 do ids[i] = string.format("dup-%02d", i) end
    for copy = 1, 30 do
      for _, id in ipairs(ids) do
        local r = H.run({ "--data", data, "produce", "t", "--id", id, "--key",
                          "k" .. copy, id })
        assert.are.equal(0, r.code, r.err)
      end
    end
    local r = H.run({ "run", dir .. "/eddy.lua", "--drain" })
    assert.are.equal(0, r.code, r.err)
    assert.truthy(r.err:find("received=600 handled=20 deduplicated=580 ", 1, true), r.err)
    local st = {}
    for _, row in ipairs(H.json_lines(H.run({ "--data", data, "state", "list", "count",
                                              "--json" }).out)) do
      st[row.key] = row.value
    end
    for _, id in ipairs(ids) do assert.are.equal(1, st["n:" .. id], id) end
    assert.are.equal(20, st.total)
  end)
end)
