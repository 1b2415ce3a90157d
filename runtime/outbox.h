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

#include "store.h"

/* Publishes up to max rows, oldest first, in one transaction of its own,
 * creating a missing topic with default_partitions.  Adds the number
 * published to *relayed.  Returns 0 or a negative code (nothing published
 * then). */
int eddy_outbox_relay(eddy_store *s, int max, int default_partitions,
                      int64_t *relayed);

/* The number of rows waiting. */
int eddy_outbox_count(eddy_store *s, int64_t *n);

#endif
