/*
 * crashes.h - messages whose handler calls took the process down.
 *
 * `eddy run` reads at startup what the runs before it were handling when
 * they died (inflight.h) and counts it here, one row per (consumer,
 * topic, partition, offset).  A message counted twice is quarantined with
 * reason "crashed" the next time it comes, instead of being handled: a
 * supervisor that restarts eddy converges.  The row goes when the message
 * is done.
 */
#ifndef EDDY_CRASHES_H
#define EDDY_CRASHES_H

#include <stdint.h>

#include "store.h"

/* Runs that died in a call on a message before it is quarantined. */
#define EDDY_CRASH_RUNS 2

typedef struct eddy_crash_row {
  int64_t consumer_id;
  const char *topic;
  int partition;
  int64_t offset;
  int runs;                /* runs that died in a call on it */
  int signal;              /* the last one's fatal signal, 0: not known */
  int stuck;               /* the last one exited: the call was stuck past its timeout */
  int64_t last_at;         /* when the last one's call started (ms) */
} eddy_crash_row;

/* Counts one more run that died on the message (in a transaction of its
 * own).  Sets *runs to the count.  Returns 0 or a negative code. */
int eddy_crash_add(eddy_store *s, int64_t consumer_id, const char *topic, int partition,
                   int64_t offset, int signal, int stuck, int64_t at, int *runs);

/* Calls fn for every row; pointers are valid during the call. */
int eddy_crash_foreach(eddy_store *s, void (*fn)(void *ud, const eddy_crash_row *c),
                       void *ud);

/* Forgets the message, in the open transaction (nothing when unknown). */
int eddy_crash_forget(eddy_store *s, int64_t consumer_id, const char *topic, int partition,
                      int64_t offset);

#endif
