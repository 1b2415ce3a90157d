/*
 * krelay.h - the outbox relay of `eddy run` when the log is Kafka.
 *
 * Rows wait in the outbox (outbox.h), written in the transaction of the
 * message that emitted or quarantined them.  The relay sends a batch of
 * them with the idempotent producer without waiting, and deletes the batch
 * once every delivery report came back without error.  It never blocks the
 * runner's loop on the broker: a broker that is down leaves the batch in
 * librdkafka's queue (librdkafka reconnects and sends it when it can, up
 * to message.timeout.ms), and the runner goes on reading, committing and
 * answering `eddy status` meanwhile.  A batch with a failed report stays
 * in the outbox and is sent again a second later, whole: the records that
 * had gone through go twice, with the same ids, which consumers' dedupe
 * drops.  One batch is in flight at a time, so rows reach Kafka in outbox
 * order.  Delivery reports wake the loop through a pipe.  A topic not
 * known to exist is looked up (and made) on a thread of its own, which
 * wakes the loop when the cluster answered; the batch waits for it.
 */
#ifndef EDDY_KRELAY_H
#define EDDY_KRELAY_H

#include <stdint.h>

#include "engine.h"

typedef struct eddy_krelay eddy_krelay;

/* A relay for r's store and Kafka cluster, its wake-up pipe on r's loop.
 * 0, or -1 with err. */
int eddy_krelay_start(eddy_runner *r, eddy_krelay **out, char *err, size_t errlen);
/* Marks topic as existing on Kafka (declared ones, made at startup): the
 * relay looks up other topics before their first send, and makes them,
 * off the loop. */
void eddy_krelay_known(eddy_krelay *kr, const char *topic);
/* Serves delivery reports, finishes the batch in flight if every report
 * came, and sends the next one.  Adds the rows relayed (deleted) to
 * *relayed.  Returns 0, or a negative code when the store failed. */
int eddy_krelay_step(eddy_krelay *kr, int64_t *relayed);
/* 1 while a batch is in flight. */
int eddy_krelay_busy(const eddy_krelay *kr);
/* At the end of a run: relays what it can within timeout_ms, then drops
 * what is still in flight (its rows stay for the next run). */
int eddy_krelay_finish(eddy_krelay *kr, int timeout_ms, int64_t *relayed);
/* Closes the loop handle and lets go of a lookup under way (its thread
 * ends alone); free after the loop ran. */
void eddy_krelay_stop(eddy_krelay *kr);
void eddy_krelay_free(eddy_krelay *kr);

#endif
