--- A full disk stops `eddy produce` the way a line the topic refuses does:
-- the lines before the batch that did not fit are committed, it and the
-- lines after it are not, and the one-line error says which line that
-- was and how many were written.  The disk is a small tmpfs mounted for
-- the commands alone (H.run_mounted).
local H = require "helpers"

local function defer(fn) H.defer(finally, fn) end

--- Lua pattern matching s literally.
local function literal(s) return (s:gsub("%p", "%%%0")) end

describe("eddy produce on a full disk", function()
  it("says how many lines it committed and from which line on it did not; " ..
     "those committed are all there, in order", function()
    local parent = H.tmpdir()
    defer(function() H.rmdir(parent) end)
    local disk = parent .. "/disk"
    assert(os.execute("mkdir " .. H.quote(disk)))
    local data = disk .. "/data"
    local lines = {}
    for i = 1, 60000 do lines[i] = string.format("l%05d %s", i, string.rep("y", 40)) end
    local r = H.run_mounted({ tmpfs = disk, size = "1m" }, {
      { "--data", data, "topic", "create", "t" },
      { "--data", data, "produce", "t", stdin = table.concat(lines, "\n") .. "\n" },
      { "--data", data, "tail", "t", "--from-beginning" },
      { "--data", data, "topic", "list", "--json" },
    })
    assert.same({ 0, "" }, { r[1].code, r[1].err })
    -- It stops at a batch (1000 lines, one transaction) that did not fit.
    local line, before = r[2].err:match("^eddy produce: line (%d+): store '" .. literal(data) ..
                                         "': disk full while committing %((%d+) messages " ..
                                         "before it produced%)\n$")
    assert.truthy(line, "produce said: " .. r[2].err)
    line, before = tonumber(line), tonumber(before)
    assert.same({ 1, "" }, { r[2].code, r[2].out })
    assert.equal(line - 1, before)
    assert.equal(0, before % 1000)
    assert.is_true(before > 0 and before < #lines, "committed " .. before)
    -- Exactly those are there, and nothing after them.
    local want = {}
    for i = 1, before do want[i] = "[t/0@" .. (i - 1) .. "] " .. lines[i] end
    assert.same({ 0, "" }, { r[3].code, r[3].err })
    local got = H.lines(r[3].out)
    assert.equal(before, #got)
    assert.is_true(table.concat(want, "\n") == table.concat(got, "\n"), "tail differs from the lines")
    assert.same({ 0, "" }, { r[4].code, r[4].err })
    assert.equal(before, H.json_lines(r[4].out)[1].messages)
  end)
end)
