-- The orders app: count each customer's orders, and check each order out
-- across inventory, payments and shipping (a saga), with notifications
-- by choreography.  Run it with `eddy run examples/orders/eddy.lua` (or
-- `make demo`); `eddy flows` draws it.
return {
  data = "./data",                  -- the store, beside this file
  workers = 2,                      -- handler threads, each with its own Lua state
  handlers = { "handlers/" },       -- every .lua file in handlers/
  topics = {                        -- created when missing
    orders = { partitions = 4 },
    inventory = { partitions = 2 },
    payments = { partitions = 2 },
    shipping = { partitions = 2 },
    ["checkout.replies"] = { partitions = 4 },
    notifications = { partitions = 1 },
  },
}
