-- make demo runs examples/orders exactly as the README tells a newcomer;
-- this keeps the example and the script honest.
local H = require "helpers"

local root = os.getenv("EDDY_ROOT") or "."
local build = os.getenv("EDDY_BUILD") or (root .. "/build")

describe("examples/demo.sh", function()
  it("runs the orders app: counts, one event per order, the bad value quarantined, each "
     .. "checkout's end and why, the flow", function()
    local rel = build:sub(#root + 2)
    local module = os.getenv("EDDY_MODULE_BUILD") or build
    local r = H.exec({ "sh", root .. "/examples/demo.sh" },
                     { env = { BUILD = rel, MODULE_BUILD = module:sub(#root + 2) } })
    assert.are.equal(0, r.code, r.err .. r.out)
    -- 12 orders over 4 customers: 3 each.
    assert.truthy(r.out:find("ada\t3\nbarbara\t3\ngrace\t3\nlinus\t3\n", 1, true), r.out)
    assert.truthy(r.out:find("quarantined=1 ", 1, true), r.out)
    assert.truthy(r.out:find("[orders.counted/0@0] key=", 1, true), r.out)
    assert.truthy(r.out:find("msg:json(): the value of message ", 1, true), r.out)
    local counted = H.messages(root .. "/examples/orders/data", "orders.counted")
    assert.are.equal(12, #counted)
    -- The checkout saga: how each order ended, and why.
    for _, line in ipairs({
      "  order 1  ada      book       visa      completed    reserved, paid, shipped\n",
      "  order 3  linus    gpu        visa      compensated  OutOfStock in step 'reserve-stock'\n",
      "  order 4  barbara  book       declined  compensated  PaymentDeclined in step "
        .. "'take-payment'\n",
      "  order 5  ada      backorder  visa      compensated  timeout in step 'reserve-stock'\n",
      "  order 12 barbara  book       visa      completed    reserved, paid, shipped\n",
    }) do
      assert.truthy(r.out:find(line, 1, true), line .. " not in:\n" .. r.out)
    end
    -- Notifications followed: nine shipped, one declined card.
    local notes = H.messages(root .. "/examples/orders/data", "notifications")
    assert.are.equal(10, #notes)
    -- The flow, drawn from the scripts, and its warnings.
    assert.truthy(r.out:find("\nflowchart LR\n", 1, true), r.out)
    assert.truthy(r.out:find("  type_OrderPlaced -->|\"orders, checkout.replies (starts)\"| "
                             .. "saga_checkout\n", 1, true), r.out)
    assert.truthy(r.err:find("warning: event type 'OrderPlaced' is consumed (by checkout) but "
                             .. "nothing in the app produces it\n", 1, true), r.err)
  end)
end)
