/*
 * state.h - consumers' key/value state, and the registry of consumers.
 *
 * State values are JSON text, scoped per consumer.  Handlers write state
 * through ctx.state; the writes commit in the transaction of the message
 * that made them.
 */
#ifndef EDDY_STATE_H
#define EDDY_STATE_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "store.h"

/* The id of consumer name, registering it when new.  Returns 0 or a code. */
int eddy_consumer_register(eddy_store *s, const char *name, int64_t *id);
/* The id of a registered consumer: EDDY_ENOENT "unknown consumer 'x'". */
int eddy_consumer_lookup(eddy_store *s, const char *name, int64_t *id);

/* Reads key's value into value (replacing what it held).  Returns 1 when
 * found, 0 when not, or a negative code. */
int eddy_state_get(eddy_store *s, int64_t consumer_id, const char *key,
                   size_t key_len, eddy_buf *value);

/* Writes key's value (JSON text), or deletes it when value is NULL, in the
 * open transaction. */
int eddy_state_put(eddy_store *s, int64_t consumer_id, const char *key,
                   size_t key_len, const char *value, size_t value_len,
                   int64_t now_ms);

/* Calls fn for each key of the consumer in key order; stops when fn
 * returns non-zero. */
int eddy_state_foreach(eddy_store *s, int64_t consumer_id,
                       int (*fn)(void *ud, const char *key, size_t key_len,
                                 const char *value, size_t value_len,
                                 int64_t updated_at),
                       void *ud);

/* Dedupe records: 1 when consumer has recorded dkey (and, with at, when
 * its batch committed), 0 when not. */
int eddy_dedupe_when(eddy_store *s, int64_t consumer_id, const char *dkey, size_t len,
                     int64_t *at);
/* Dedupe records: 1 when consumer has recorded dkey, 0 when not. */
int eddy_dedupe_seen(eddy_store *s, int64_t consumer_id, const char *dkey,
                     size_t len);
/* Records the n dedupe keys of one committed batch (any order, repeats
 * allowed) in the open transaction, as one row. */
int eddy_dedupe_add(eddy_store *s, int64_t consumer_id, const char **keys,
                    const size_t *lens, int n, int64_t now_ms);
/* Calls fn for the consumer's dedupe keys in [lo, hi] (text order), at
 * most max of them; *rows is how many. */
int eddy_dedupe_range(eddy_store *s, int64_t consumer_id, const char *lo,
                      const char *hi, int max,
                      void (*fn)(void *ud, const char *dkey, size_t len),
                      void *ud, int64_t *rows);

/* Removes dedupe records made before cutoff_ms.  Adds the count to
 * *removed. */
int eddy_dedupe_expire(eddy_store *s, int64_t cutoff_ms, int64_t *removed);

#endif
