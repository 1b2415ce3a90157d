-- The payment service: charges cards and refunds them.  A card named
-- "declined" is declined.
local eddy = require "eddy"

return eddy.on({ "ChargePayment", "RefundPayment" },
  { topic = "payments", name = "payments", emits = { "PaymentCaptured", "PaymentDeclined" } },
  function(event, ctx)
    local order = event:json()
    local taken = ctx.state:get("taken:" .. order.customer) or 0
    if event.type == "RefundPayment" then
      ctx.state:set("taken:" .. order.customer, taken - order.total)
      return
    end
    if order.card == "declined" then
      ctx:emit("checkout.replies", { type = "PaymentDeclined", key = event.key, value = order })
      return
    end
    ctx.state:set("taken:" .. order.customer, taken + order.total)
    ctx:emit("checkout.replies", { type = "PaymentCaptured", key = event.key, value = order })
  end)
