-- The inventory service: reserves stock for orders and releases it again.
-- A "gpu" is out of stock; a "backorder" item sits in a warehouse that
-- never answers (the saga times out).
local eddy = require "eddy"

return eddy.on({ "ReserveStock", "ReleaseStock" },
  { topic = "inventory", name = "inventory", emits = { "StockReserved", "OutOfStock" } },
  function(event, ctx)
    local order = event:json()
    local held = ctx.state:get("held:" .. order.sku) or 0
    if event.type == "ReleaseStock" then
      ctx.state:set("held:" .. order.sku, held - 1)
      return
    end
    if order.sku == "backorder" then return end
    if order.sku == "gpu" then
      ctx:emit("checkout.replies", { type = "OutOfStock", key = event.key, value = order })
      return
    end
    ctx.state:set("held:" .. order.sku, held + 1)
    ctx:emit("checkout.replies", { type = "StockReserved", key = event.key, value = order })
  end)
