local eddy = require "eddy"
return eddy.consumer {
  name = "bench-contracts",
  topics = { "orders" },
  handle = function(msg, ctx)
    local order = msg:json()
    local seen = ctx.state:get(order.customer) or 0
    ctx.state:set(order.customer, seen + 1)
    ctx:emit("orders.counted", { key = msg.key, type = "OrderCounted",
                                 value = { id = order.id, n = seen + 1 } })
  end,
}
