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
 * None of these functions waits on the network: they run on the runner's
 * loop, which must answer `eddy status` and go on handling while a broker
 * is down or hung (ksource.c says which call does what instead).  Only
 * eddy_ksource_stop waits, and for LEAVE_MS (5 s) at most.
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
/* Starts leaving the groups, after the workers stopped and the runner
 * wrote the last offsets to the store: commits them to Kafka, gives every
 * partition up and closes the consumers in librdkafka's background,
 * without waiting (the runner relays the outbox meanwhile).  Stops the
 * loop's wake-ups.  Again, or NULL: a no-op. */
void eddy_ksource_leave(eddy_ksource *ks);
/* Leaves (eddy_ksource_leave, if not done yet) and waits until the
 * consumers closed, up to 5 s after the leave began; a closed consumer is
 * destroyed.  One still waiting for a broker that does not answer is
 * left to the process's exit, with a warning: librdkafka's destroy would
 * wait for its requests up to the session timeout, and the store has
 * every offset.  Closes the loop handles.  NULL is a no-op. */
void eddy_ksource_stop(eddy_ksource *ks);
/* Frees the source once the loop closed its handles; NULL is a no-op. */
void eddy_ksource_free(eddy_ksource *ks);

/* Reads up to max messages that arrived, calling fn with the cursor of
 * each (rebalances run here too).  Returns the number read. */
int eddy_ksource_read(eddy_ksource *ks, int max,
                      int (*fn)(void *ud, eddy_cursor *c, const eddy_message *m), void *ud);
/* The source's work between reads, on every tick of the runner: serves
 * the results of commits, finishes revocations whose messages the workers
 * are done with (committing their offsets and giving them up), and
 * commits the stored offsets of the partitions read to Kafka, at most once
 * a second and one commit at a time.  Nothing waits for an answer. */
void eddy_ksource_tick(eddy_ksource *ks);
/* The high watermark librdkafka last saw for cursor c's partition (no
 * request: for /metrics and --drain).  0, or -1 when none is known. */
int eddy_ksource_high(eddy_ksource *ks, const eddy_cursor *c, int64_t *high);
/* 1 once every consumer got its first assignment. */
int eddy_ksource_ready(const eddy_ksource *ks);
/* 1 when every consumer has its partitions and has read each to its end:
 * the high watermark of librdkafka's last fetch, so everything produced
 * before the run started, and what came while fetches went on. */
int eddy_ksource_caught_up(eddy_ksource *ks);

#endif
