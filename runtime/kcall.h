/*
 * kcall.h - a blocking Kafka request made off the runner's loop.
 *
 * The loop of `eddy run` never waits on the network (docs/runtime.md).  A
 * request that has no asynchronous form in librdkafka (topic metadata,
 * topic creation that waits for leaders, watermark queries) runs here, on
 * a detached thread of its own with a client of its own, and the loop
 * learns the answer on a later tick: the thread wakes it through an async
 * handle when done.  The caller and the thread each hold a reference; the
 * last to let go frees the call, its data and its client, so a caller that
 * stops while a broker keeps the request waiting leaves it to end alone
 * (or with the process).
 */
#ifndef EDDY_KCALL_H
#define EDDY_KCALL_H

#include <uv.h>

#include "kafka.h"

typedef struct eddy_kcall eddy_kcall;

/* Runs fn(k, ud) on a new thread.  The call owns client k (from
 * eddy_kafka_open_like) and ud (freed with free_ud, which may be NULL)
 * from here on, failure included.  When fn returns, wake is sent unless
 * the caller let go.  NULL with err when no thread could be made. */
eddy_kcall *eddy_kcall_start(eddy_kafka *k, int (*fn)(eddy_kafka *k, void *ud), void *ud,
                             void (*free_ud)(void *ud), uv_async_t *wake, char *err,
                             size_t errlen);
/* 1 once fn returned (then *rc is what it returned, and ud may be read), 0
 * while it runs. */
int eddy_kcall_done(eddy_kcall *c, int *rc);
/* The call's ud. */
void *eddy_kcall_data(eddy_kcall *c);
/* After done: hands the client back to the caller, who owns it again (for
 * the next call).  NULL before. */
eddy_kafka *eddy_kcall_take_client(eddy_kcall *c);
/* The caller lets go (done or not).  NULL is a no-op. */
void eddy_kcall_release(eddy_kcall *c);

#endif
