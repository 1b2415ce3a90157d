-- The orders app: count each customer's orders, and check each order out
-- across inventory, payments and shipping (a saga), with notifications
-- by choreography; events.lua declares its event types.  Run it with
-- `eddy run examples/orders/eddy.lua` (or `make demo`); `eddy flows` draws
-- it and `eddy catalog docs` writes up its events.
return {
  data = "./data",                  -- the store, beside this file
  workers = 2,                      -- handler threads, each with its own Lua state
  handlers = { "handlers/" },       -- every .lua file in handlers/
  events = { "events.lua" },        -- the event types, their schemas and owners
  topics = {                        -- created when missing
    orders = { partitions = 4 },
    inventory = { partitions = 2 },
    payments = { partitions = 2 },
    shipping = { partitions = 2 },
    ["checkout.replies"] = { partitions = 4 },
    notifications = { partitions = 1 },
  },
}
