-- The shipping service: ships what was paid for.
local eddy = require "eddy"

return eddy.on("ShipOrder", { topic = "shipping", name = "shipping", emits = { "Shipped" } },
  function(event, ctx)
    ctx:emit("checkout.replies", { type = "Shipped", key = event.key, value = event:json() })
  end)
