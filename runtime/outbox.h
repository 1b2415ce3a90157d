/*
 * outbox.h - the transactional outbox.
 *
 * For brokers outside the store, emitted events wait here, written in the
 * transaction of the message that emitted them, until the relay publishes
 * them; each keeps the id it got at emit, so a relay repeated after a crash
 * yields only duplicates that consumers' dedupe drops.  On the embedded log
 * the commit publishes events itself (worker.c) and the table stays empty;
 * the relay's produce and its delete of rows are one transaction there.
 */
#ifndef EDDY_OUTBOX_H
#define EDDY_OUTBOX_H

#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "log.h"
#include "store.h"

/* Publishes up to max rows, oldest first, in one transaction of its own,
 * creating a missing topic with default_partitions.  Adds the number
 * published to *relayed.  Returns 0 or a negative code (nothing published
 * then). */
int eddy_outbox_relay(eddy_store *s, int max, int default_partitions,
                      int64_t *relayed);

/* Publishes a run of records of one topic elsewhere (Kafka), waiting
 * until they are acknowledged.  0 or a negative code. */
typedef int (*eddy_outbox_publish)(void *ud, const char *topic, const eddy_record *recs,
                                   size_t n);
/* Relays to a broker outside the store: reads up to max rows, oldest
 * first, hands runs of one topic to fn, then deletes what fn published in
 * a transaction of its own, under write_mu (only the delete holds it: a
 * slow broker never blocks the store).  A crash between fn and the delete
 * publishes those rows again: duplicates with the same ids.  Adds the rows
 * relayed to *relayed. */
int eddy_outbox_relay_to(eddy_store *s, int max, eddy_outbox_publish fn, void *ud,
                         uv_mutex_t *write_mu, int64_t *relayed);
/* Adds a record (its id, key, value and encoded headers) for topic, in
 * the open transaction. */
int eddy_outbox_add(eddy_store *s, const char *topic, const eddy_record *r, int64_t now);

/* The number of rows waiting. */
int eddy_outbox_count(eddy_store *s, int64_t *n);

#endif
