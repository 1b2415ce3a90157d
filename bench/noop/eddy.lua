-- Benchmark (a): a handler that does nothing, dedupe on (by message id).
return { workers = 2, handlers = { "handlers/" }, topics = { orders = { partitions = 4 } } }
