/*
 * metrics.h - what `eddy run` serves at /metrics, in Prometheus's text
 * format (version 0.0.4).
 *
 * Counters and the handler latency histogram are counted where things
 * happen (the runner's reads, the workers' handler calls and commits:
 * eddy_cmetrics in engine.h); gauges are read at each scrape from the
 * store and the cursors: lag per partition, quarantine depth and age,
 * parked messages, the outbox, reloads, saga instances by status.  See
 * docs/metrics.md for every name.
 */
#ifndef EDDY_METRICS_H
#define EDDY_METRICS_H

#include "buf.h"
#include "engine.h"

/* Writes every metric of r into b.  Runs on the runner's loop thread. */
void eddy_metrics_render(eddy_runner *r, eddy_buf *b);

/* One consumer's figures for eddy status: the lag summed over its
 * partitions, parked messages, quarantined messages not replayed. */
typedef struct eddy_consumer_stats { int64_t lag, parked, quarantined; } eddy_consumer_stats;
void eddy_metrics_consumer(eddy_runner *r, int consumer, eddy_consumer_stats *s);
/* A message of event type `type` handled by consumer later than its
 * type's SLA allows (max_lag).  Any thread. */
void eddy_metrics_sla_breach(eddy_runner *r, int consumer, const char *type, size_t len);

/* Outbox rows waiting for the relay. */
int64_t eddy_metrics_outbox(eddy_runner *r);

#endif
