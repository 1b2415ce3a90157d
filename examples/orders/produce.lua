-- Produces a few orders (type OrderPlaced) with the eddy Lua module, keyed
-- by customer so that each customer's orders stay in one partition, in
-- order.  Orders 3, 4 and 5 go wrong on purpose: a gpu is out of stock,
-- a declined card, and an item whose warehouse never answers.
--
--   lua5.4 examples/orders/produce.lua [DATA_DIR] [COUNT]
local eddy = require "eddy"

local data = arg[1] or "examples/orders/data"
local count = tonumber(arg[2] or "12")

local log = assert(eddy.open { data = data })
assert(log:topic_ensure("orders", 4))

local customers = { "ada", "grace", "linus", "barbara" }
local trouble = { [3] = { sku = "gpu" }, [4] = { card = "declined" },
                  [5] = { sku = "backorder" } }
for i = 1, count do
  local customer = customers[(i - 1) % #customers + 1]
  local t = trouble[i] or {}
  local value = string.format(
    '{"id":%d,"customer":"%s","total":%d.%02d,"sku":"%s","card":"%s"}',
    i, customer, 10 + i, i * 7 % 100, t.sku or "book", t.card or "visa")
  local partition, offset, id = assert(log:produce("orders", {
    key = customer,
    value = value,
    headers = { { "source", "examples/orders" }, { "eddy-type", "OrderPlaced" },
                { "eddy-version", "1" } },
  }))
  print(string.format("order %2d  customer %-8s -> partition %d offset %d  id %s",
                      i, customer, partition, offset, id))
end
log:close()
