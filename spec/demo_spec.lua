-- make demo runs examples/orders exactly as the README tells a newcomer;
-- this keeps the example and the script honest.
local H = require "helpers"

local root = os.getenv("EDDY_ROOT") or "."
local build = os.getenv("EDDY_BUILD") or (root .. "/build")

describe("examples/demo.sh", function()
  it("runs the orders app: counts per customer, one event per order, the bad value quarantined", function()
    local rel = build:sub(#root + 2)
    local r = H.exec({ "sh", root .. "/examples/demo.sh" }, { env = { BUILD = rel } })
    assert.are.equal(0, r.code, r.err .. r.out)
    -- 12 orders over 4 customers: 3 each.
    assert.truthy(r.out:find("ada\t3\nbarbara\t3\ngrace\t3\nlinus\t3\n", 1, true), r.out)
    assert.truthy(r.out:find("received=13 handled=12 deduplicated=0 retried=0 quarantined=1"
                             .. " emitted=12 relayed=12", 1, true), r.out)
    assert.truthy(r.out:find("[orders.counted/0@0] key=", 1, true), r.out)
    assert.truthy(r.out:find("msg:json(): the value of message ", 1, true), r.out)
    local counted = H.messages(root .. "/examples/orders/data", "orders.counted")
    assert.are.equal(12, #counted)
  end)
end)
