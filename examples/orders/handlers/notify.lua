-- Notifications, by choreography: no one asks for them; they follow the
-- events.
local eddy = require "eddy"

return eddy.on({ "Shipped", "PaymentDeclined" },
  { topic = "checkout.replies", name = "notify", emits = { "CustomerNotified" } },
  function(event, ctx)
    local order = event:json()
    local text = event.type == "Shipped" and "your order is on its way"
      or "your card was declined"
    ctx:emit("notifications", { type = "CustomerNotified", key = order.customer,
                                value = { order = order.id, text = text } })
  end)
