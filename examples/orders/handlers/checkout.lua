-- The checkout saga: reserve stock, take the payment, ship.  A declined
-- payment, missing stock, or an inventory that does not answer within
-- 2 s undoes the steps already done, last first.
local eddy = require "eddy"

return eddy.saga {
  name = "checkout",
  start = "OrderPlaced",                       -- an order starts an instance
  topics = { "orders", "checkout.replies" },   -- where its events come from
  steps = {
    { name = "reserve-stock",
      command = { topic = "inventory", type = "ReserveStock" },
      on = { StockReserved = "next", OutOfStock = "compensate" },
      timeout = "2s",
      compensation = { topic = "inventory", type = "ReleaseStock" } },
    { name = "take-payment",
      command = { topic = "payments", type = "ChargePayment" },
      on = { PaymentCaptured = "next", PaymentDeclined = "compensate" },
      compensation = { topic = "payments", type = "RefundPayment" } },
    { name = "ship",
      command = { topic = "shipping", type = "ShipOrder" },
      on = { Shipped = "next" } },
  },
}
