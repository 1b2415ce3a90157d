-- The orders app's event catalog: every event type it produces or
-- consumes, with its schema, owner and SLA.  eddy checks events of these
-- types when a handler emits them and when a consumer receives them;
-- `eddy catalog docs examples/orders/eddy.lua` writes it up, and
-- `eddy catalog check OLD NEW` tells whether a change breaks consumers.
local eddy = require "eddy"

-- An order, as the checkout saga passes it from step to step.
local order = {
  type = "object",
  required = { "id", "customer", "total", "sku" },
  properties = {
    id = { type = "integer", minimum = 1, description = "the order number" },
    customer = { type = "string", minLength = 1 },
    total = { type = "number", minimum = 0, description = "in euros" },
    sku = { type = "string", minLength = 1, description = "the one item ordered" },
    card = { type = "string", description = "\"declined\" is refused by payments" },
  },
}

local function command(type, owner, description)
  return eddy.event { type = type, owner = owner, description = description, schema = order }
end

return {
  eddy.event { type = "OrderPlaced", version = 1, owner = "orders",
    description = "A customer placed an order; starts the checkout saga.",
    schema = order, sla = { max_lag = "30s" } },

  command("ReserveStock", "inventory", "Hold the order's item."),
  command("ReleaseStock", "inventory", "Give back a held item (compensation)."),
  command("StockReserved", "inventory", "The item is held for the order."),
  command("OutOfStock", "inventory", "The item cannot be held."),

  command("ChargePayment", "payments", "Take the order's total from the card."),
  command("RefundPayment", "payments", "Give the total back (compensation)."),
  command("PaymentCaptured", "payments", "The total was taken."),
  command("PaymentDeclined", "payments", "The card was refused."),

  command("ShipOrder", "shipping", "Send the order out."),
  command("Shipped", "shipping", "The order is on its way."),

  eddy.event { type = "CustomerNotified", owner = "notify",
    description = "A message was sent to the customer.",
    schema = { type = "object", required = { "order", "text" },
               properties = { order = { type = "integer" }, text = { type = "string" } } } },
}
