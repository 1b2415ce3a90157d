/*
 * outbox.h - the transactional outbox.
 *
 * ctx:emit writes a row here in the transaction of the message that emitted
 * it; the relay moves rows into the log after that commit.  On the embedded
 * log the relay's produce and its delete of the rows are one transaction,
 * so an event is published exactly once; every event keeps the id it was
 * given at emit, so a relay repeated on another broker yields only
 * duplicates that consumers' dedupe drops.
 */
#ifndef EDDY_OUTBOX_H
#define EDDY_OUTBOX_H

#include <stddef.h>
#include <stdint.h>

#include "store.h"

/* Adds an event to the outbox, in the open transaction. */
int eddy_outbox_add(eddy_store *s, const char *topic, const char *id,
                    const void *key, size_t key_len, int has_key,
                    const void *value, size_t value_len, const void *headers,
                    size_t headers_len, int64_t now_ms);

/* Publishes up to max rows, oldest first, in one transaction of its own,
 * creating a missing topic with default_partitions.  Adds the number
 * published to *relayed.  Returns 0 or a negative code (nothing published
 * then). */
int eddy_outbox_relay(eddy_store *s, int max, int default_partitions,
                      int64_t *relayed);

/* The number of rows waiting. */
int eddy_outbox_count(eddy_store *s, int64_t *n);

#endif
