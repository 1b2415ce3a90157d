-- make bench-kafka: no-op handlers on Kafka, one with dedupe (by message
-- id, the default) and one without.  The consumer names (the groups) and
-- the topic come from the environment, so each run starts fresh.
return {
  workers = 2,
  broker = os.getenv("EDDY_BENCH_BROKER"),
  handlers = { os.getenv("EDDY_BENCH_HANDLER") },
}
