-- The orders app: count each customer's orders, announce every count.
-- Run it with `eddy run examples/orders/eddy.lua` (or `make demo`).
return {
  data = "./data",                  -- the store, beside this file
  workers = 2,                      -- handler threads, each with its own Lua state
  handlers = { "handlers/" },       -- every .lua file in handlers/
  topics = { orders = { partitions = 4 } },   -- created when missing
}
