/*
 * quarantine.h - the dead-letter store: messages a consumer could not
 * handle, with why, kept for inspection and replay.
 *
 * A quarantined message is written to the dlq table and produced to the
 * consumer's dlq topic (default "<topic>.dlq"), in the transaction that
 * marks its offset done.  Its original id, key, value and headers are kept;
 * the failure travels as text headers on the dlq topic (eddy-error,
 * eddy-traceback, eddy-attempts, eddy-first-failure, eddy-last-failure,
 * eddy-original-topic, eddy-original-partition, eddy-original-offset,
 * eddy-consumer, eddy-version, eddy-reason).
 */
#ifndef EDDY_QUARANTINE_H
#define EDDY_QUARANTINE_H

#include <stddef.h>
#include <stdint.h>

#include "store.h"

typedef struct eddy_dlq_entry {
  int64_t seq;
  const char *consumer, *id, *topic;
  int partition;
  int64_t offset;
  const void *key;
  size_t key_len;
  int has_key;
  const void *value;
  size_t value_len;
  const void *headers;
  size_t headers_len;
  int64_t timestamp;
  const char *reason;       /* "error", "permanent", "instructions", ... */
  const char *error;
  const char *traceback;
  int attempts;
  int64_t first_failure, last_failure;
  const char *version;
  const char *dlq_topic;
  int64_t quarantined_at;
  int64_t replayed_at;      /* 0: never */
  int replays;
  int via_outbox;           /* add: the dlq message goes to the outbox (Kafka) */
} eddy_dlq_entry;

/* Quarantines e (seq, quarantined_at and replay fields are set here), in
 * the open transaction: a dlq row and a message on e->dlq_topic. */
int eddy_dlq_add(eddy_store *s, eddy_dlq_entry *e);

#define EDDY_DLQ_PENDING 0  /* not replayed yet */
#define EDDY_DLQ_ALL 1

/* Calls fn for each entry (of consumer, or all when NULL) in seq order;
 * stops when fn returns non-zero.  Pointers are valid during the call. */
int eddy_dlq_foreach(eddy_store *s, const char *consumer, int which,
                     int (*fn)(void *ud, const eddy_dlq_entry *e), void *ud);

/* Calls fn for the entries named by ref: a seq number, or a message id
 * (every consumer's entry of that id).  EDDY_ENOENT when none. */
int eddy_dlq_find(eddy_store *s, const char *ref, const char *consumer,
                  int (*fn)(void *ud, const eddy_dlq_entry *e), void *ud);

struct eddy_kafka;
/* Replays entry seq: produces its original message (id, key, value,
 * headers) to its original topic, on Kafka cluster k when not NULL (the
 * data directory of an app on Kafka) or else on the embedded log, and
 * marks the entry replayed, in one transaction of its own.  Sets
 * *partition and *offset and returns 0.  A Kafka failure's message is k's
 * errmsg, and the store's is set to it too.
 *
 * With pending_only, an entry that is no longer pending (another replay
 * got to it first, or it was purged) is left alone and 1 returned.  The
 * check, the produce and the mark happen under the store's write lock
 * (Kafka's produce is acknowledged before the mark commits), so replays
 * running at once replay each pending entry once; a crash between
 * Kafka's acknowledgement and the commit leaves the entry pending, to be
 * replayed again: a copy with the same id, which consumers drop. */
int eddy_dlq_replay(eddy_store *s, struct eddy_kafka *k, int64_t seq, int pending_only,
                    int *partition, int64_t *offset);

/* Deletes entry seq.  EDDY_ENOENT when there is none. */
int eddy_dlq_purge(eddy_store *s, int64_t seq);

/* The number of entries not replayed, and the oldest's quarantine time
 * (0 when none), for consumer or all. */
int eddy_dlq_depth(eddy_store *s, const char *consumer, int64_t *depth,
                   int64_t *oldest_ms);

/* Formats ms since the epoch as RFC 3339 UTC with milliseconds. */
void eddy_format_time(int64_t ms, char out[32]);

#endif
