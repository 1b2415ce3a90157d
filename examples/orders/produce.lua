-- Produces a few orders with the eddy Lua module, keyed by customer so that
-- each customer's orders stay in one partition, in order.
--
--   lua5.4 examples/orders/produce.lua [DATA_DIR] [COUNT]
local eddy = require "eddy"

local data = arg[1] or "examples/orders/data"
local count = tonumber(arg[2] or "12")

local log = assert(eddy.open { data = data })
assert(log:topic_ensure("orders", 4))

local customers = { "ada", "grace", "linus", "barbara" }
for i = 1, count do
  local customer = customers[(i - 1) % #customers + 1]
  local value = string.format('{"id":%d,"customer":"%s","total":%d.%02d}',
                              i, customer, 10 + i, i * 7 % 100)
  local partition, offset, id = assert(log:produce("orders", {
    key = customer,
    value = value,
    headers = { { "source", "examples/orders" } },
  }))
  print(string.format("order %2d  customer %-8s -> partition %d offset %d  id %s",
                      i, customer, partition, offset, id))
end
log:close()
