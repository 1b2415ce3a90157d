local eddy = require "eddy"
return eddy.consumer {
  name = "bench-noop",
  topics = { "orders" },
  handle = function(msg, ctx) end,
}
