local eddy = require "eddy"
return eddy.consumer {
  name = os.getenv("EDDY_BENCH_GROUP"),
  topics = { os.getenv("EDDY_BENCH_TOPIC") },
  handle = function(msg, ctx) end,
}
