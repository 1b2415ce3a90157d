/*
 * ksource.h - where `eddy run` reads from when the log is Kafka.
 *
 * One Kafka consumer (librdkafka) per eddy consumer, in the consumer group
 * named after it, with cooperative-sticky assignment.  Offsets are the
 * local store's (written by the workers in the transaction of the effects);
 * on assignment a partition resumes from there, else from the group's
 * offset on Kafka, else from the start (or the end, with from = "end").
 * They are also committed to Kafka, so Kafka's tools see the group's
 * progress.  On revocation the runner stops reading the partition, the
 * workers drop its messages they have not started, and the batch in hand
 * commits before the partition is given up.
 *
 * librdkafka's queues wake the runner's libuv loop through a pipe
 * (rd_kafka_queue_io_event_enable); the runner reads whenever woken or its
 * poll timer fires, since the pipe is written only when a queue turns from
 * empty to non-empty.
 */
#ifndef EDDY_KSOURCE_H
#define EDDY_KSOURCE_H

#include "engine.h"
#include "log.h"

typedef struct eddy_ksource eddy_ksource;

/* Subscribes every active consumer of r's generation.  0, or -1 with err. */
int eddy_ksource_start(eddy_runner *r, eddy_ksource **out, char *err, size_t errlen);
/* Leaves the groups (after the workers stopped: what they held is
 * dropped, so revocation does not wait) and closes the loop handles. */
void eddy_ksource_stop(eddy_ksource *ks);
/* Frees the source once the loop closed its handles; NULL is a no-op. */
void eddy_ksource_free(eddy_ksource *ks);

/* Reads up to max messages that arrived, calling fn with the cursor of
 * each (rebalances run here too).  Returns the number read. */
int eddy_ksource_read(eddy_ksource *ks, int max,
                      int (*fn)(void *ud, eddy_cursor *c, const eddy_message *m), void *ud);
/* Commits the stored offsets of assigned partitions to Kafka (async), at
 * most once a second. */
void eddy_ksource_commit(eddy_ksource *ks);
/* The high watermark librdkafka last saw for cursor c's partition (no
 * request: for /metrics).  0, or -1 when none is known. */
int eddy_ksource_high(eddy_ksource *ks, const eddy_cursor *c, int64_t *high);
/* 1 once every consumer got its first assignment. */
int eddy_ksource_ready(const eddy_ksource *ks);
/* 1 when every consumer has its partitions and has read each to its end. */
int eddy_ksource_caught_up(eddy_ksource *ks);

#endif
