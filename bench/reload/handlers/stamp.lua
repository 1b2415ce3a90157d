local eddy = require "eddy"
local VERSION = 0
return eddy.consumer {
  name = "bench-reload",
  topics = { "orders" },
  handle = function(msg, ctx)
    ctx:emit("handled", { key = msg.key, value = VERSION })
  end,
}
