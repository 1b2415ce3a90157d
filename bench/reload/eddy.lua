-- Benchmark (c): reloads under load.  The handler emits one event per
-- message; the event's id is a UUIDv7, whose first 48 bits are the
-- millisecond it was made: when the message was handled.
return { workers = 2, handlers = { "handlers/" }, topics = { orders = { partitions = 4 } } }
