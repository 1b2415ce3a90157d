-- Benchmark (b): decode JSON, update state, emit one event.
return { workers = 2, handlers = { "handlers/" }, topics = { orders = { partitions = 4 } } }
