-- order-counter: counts each customer's orders in state and emits one
-- "orders.counted" event per order.  An order that is not JSON, or whose
-- total is negative, is quarantined (see `eddy dlq list`).
local eddy = require "eddy"

return eddy.consumer {
  name = "order-counter",           -- also its consumer group
  topics = { "orders" },
  retry = { attempts = 5, backoff = "100ms", max_backoff = "30s" },
  handle = function(msg, ctx)
    local order = msg:json()        -- an invalid JSON value is quarantined at once
    if order.total and order.total < 0 then
      error(eddy.permanent("negative total " .. order.total))
    end
    local seen = ctx.state:get(order.customer) or 0
    ctx.state:set(order.customer, seen + 1)
    ctx:emit("orders.counted", { key = msg.key, value = { id = order.id, n = seen + 1 } })
  end,
}
