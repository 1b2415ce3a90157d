-- Benchmark (d): (b) with its input and output types declared, so that
-- every message is checked against a schema as it is consumed and as its
-- event is emitted.
return { workers = 2, handlers = { "handlers/" }, events = { "events.lua" },
         topics = { orders = { partitions = 4 } } }
