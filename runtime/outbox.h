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

/* The relay to a broker outside the store (Kafka, krelay.c) reads rows,
 * publishes them, and deletes them once acknowledged, each delete a
 * transaction of its own under write_mu (a slow broker never holds the
 * store).  A crash between the acknowledgement and the delete publishes
 * those rows again: duplicates with the same ids. */
typedef struct eddy_outbox_rows {
  size_t n;
  const char **topics;          /* row i's topic */
  eddy_record *recs;            /* row i's record (id, key, value, headers) */
  int64_t last;                 /* the highest seq read */
  void *priv;
} eddy_outbox_rows;
/* Reads up to max rows, oldest first.  0 or a negative code. */
int eddy_outbox_read(eddy_store *s, int max, eddy_outbox_rows *out);
void eddy_outbox_rows_free(eddy_outbox_rows *rows);
/* Deletes the rows up to seq upto. */
int eddy_outbox_clear(eddy_store *s, int64_t upto, uv_mutex_t *write_mu);
/* Adds a record (its id, key, value and encoded headers) for topic, in
 * the open transaction. */
int eddy_outbox_add(eddy_store *s, const char *topic, const eddy_record *r, int64_t now);

/* Timers: events emitted for later (ctx:emit with after or at) wait in
 * table timers, written in the transaction of the message that emitted
 * them, and leave it when due: onto the embedded log, or into the outbox
 * on Kafka, in the transaction that deletes them.  They survive restarts;
 * one that fell due while nothing ran fires at the next start. */
int eddy_timer_add(eddy_store *s, const char *topic, const eddy_record *r, int64_t due,
                   int64_t now);
/* The earliest due time (INT64_MAX when none) and, if count is not NULL,
 * the number waiting. */
int eddy_timers_next(eddy_store *s, int64_t *due, int64_t *count);
/* Fires up to max timers due at now, in the open transaction.  Sets
 * *fired. */
int eddy_timers_fire(eddy_store *s, int64_t now, int to_outbox, int max, int64_t *fired);

/* The number of rows waiting. */
int eddy_outbox_count(eddy_store *s, int64_t *n);

#endif
