/*
 * kafka.h - the log on Apache Kafka, through librdkafka.
 *
 * The same operations the embedded log (log.h) offers the command line,
 * against a Kafka cluster: topics, produce, and reading a partition from
 * an offset.  Messages carry eddy's id in the header `eddy-id` (a UUIDv7
 * made at produce when the record has none); readers see it as the
 * message id, and a message from another client gets
 * "TOPIC/PARTITION/OFFSET" instead.  Keyed messages go where Kafka's Java
 * producer would put them (the murmur2 partitioner).
 *
 * Functions return 0 (or a count) or a negative EDDY_E* code with a
 * one-line message in eddy_kafka_errmsg.  One eddy_kafka is used by one
 * thread at a time.
 */
#ifndef EDDY_KAFKA_H
#define EDDY_KAFKA_H

#include <stddef.h>
#include <stdint.h>

#include "log.h"

typedef struct eddy_kafka eddy_kafka;

/* The opaque of every librdkafka client made from eddy_kafka_conf must
 * start with one of these (eddy_kafka_conf sets k's own), so that the
 * shared log and error callbacks find k whatever the client's opaque. */
typedef struct eddy_kafka_owner { eddy_kafka *kafka; } eddy_kafka_owner;

/* Connects to broker, "kafka://HOST:PORT[,HOST:PORT...]".  props: NULL or
 * a NULL-terminated list of librdkafka property names and values, set on
 * every client made (security.protocol, sasl.*, ssl.* ...).  A bad URL or
 * property is -1 with err. */
int eddy_kafka_open(const char *broker, const char *const *props, eddy_kafka **out,
                    char *err, size_t errlen);
/* Another eddy_kafka for k's cluster and properties, for another thread
 * (one eddy_kafka is used by one thread at a time).  As eddy_kafka_open. */
int eddy_kafka_open_like(const eddy_kafka *k, eddy_kafka **out, char *err, size_t errlen);
void eddy_kafka_close(eddy_kafka *k);
const char *eddy_kafka_errmsg(const eddy_kafka *k);

struct rd_kafka_conf_s;
/* A new librdkafka configuration for k's cluster: bootstrap servers, the
 * properties given to eddy_kafka_open, errors kept for
 * eddy_kafka_last_error, librdkafka's log lines dropped unless its `debug`
 * property is set.  A caller setting its own opaque starts it with an
 * eddy_kafka_owner.  NULL with err. */
struct rd_kafka_conf_s *eddy_kafka_conf(eddy_kafka *k, char *err, size_t errlen);
/* With on, errors the clients report (a broker down, a connection
 * refused) are logged as warnings, a repeated one at most every 10 s;
 * `eddy run` turns this on, the command line keeps them for its own
 * one-line failures. */
void eddy_kafka_log_errors(eddy_kafka *k, int on);
/* k's HOST:PORT[,HOST:PORT...]. */
const char *eddy_kafka_bootstrap_servers(const eddy_kafka *k);
/* 1 when the user set librdkafka property name (eddy_kafka_open's props). */
int eddy_kafka_has_prop(const eddy_kafka *k, const char *name);
/* The app's value of librdkafka property name, or NULL when it sets none. */
const char *eddy_kafka_prop(const eddy_kafka *k, const char *name);
/* The last error a client of k reported (connection refused ...), or "". */
const char *eddy_kafka_last_error(const eddy_kafka *k);

struct rd_kafka_message_s;
/* Calls cb with Kafka message m as an eddy_message (id from header
 * eddy-id, the other headers encoded).  Returns cb's value, or
 * EDDY_ENOMEM. */
int eddy_kafka_message(const struct rd_kafka_message_s *m, eddy_message_cb cb, void *ud);

/* "HOST:PORT,..." of a kafka:// URL; -1 with err when it is not one. */
int eddy_kafka_bootstrap(const char *broker, char *out, size_t n, char *err, size_t errlen);

/* Creates topic name as c says: its partitions, and its limits as the
 * topic configs retention.ms, retention.bytes and max.message.bytes
 * (replication: the cluster's default).  *created 0 when it existed
 * (if_not_exists), else an EDDY_EEXIST error. */
int eddy_kafka_topic_create(eddy_kafka *k, const char *name, const eddy_topic_config *c,
                            int if_not_exists, int *created);
/* The partition count of topic name; EDDY_ENOENT "unknown topic 'x'". */
int eddy_kafka_topic_partitions(eddy_kafka *k, const char *name, int *partitions);
/* Calls fn for each topic (internal ones left out) in name order, with its
 * partitions and each partition's first stored offset and high watermark. */
int eddy_kafka_topic_foreach(eddy_kafka *k,
                             int (*fn)(void *ud, const char *name, int partitions,
                                       const int64_t *starts, const int64_t *highs),
                             void *ud);
/* The first stored offset and the high watermark of a partition. */
int eddy_kafka_offsets(eddy_kafka *k, const char *topic, int partition, int64_t *start,
                       int64_t *end);
/* Calls cb for up to max messages of topic/partition from offset on (up
 * to the high watermark when called), in offset order; as eddy_log_fetch. */
int eddy_kafka_fetch(eddy_kafka *k, const char *topic, int partition, int64_t from,
                     int max, eddy_message_cb cb, void *ud);
/* Produces n records (idempotent producer) and waits until every one is
 * acknowledged; out[i] gets each one's partition, offset, timestamp and
 * id.  A record that fails to deliver fails the call; the others may be
 * written, before it or after it (partitions are written independently):
 * out[i].offset is -1 for each record not written. */
int eddy_kafka_produce(eddy_kafka *k, const char *topic, const eddy_record *recs, size_t n,
                       eddy_produced *out);

/* Sending without waiting (the outbox relay of `eddy run`).  A ticket
 * counts the records sent and not yet reported, and the failures; it must
 * live until outstanding is 0. */
typedef struct eddy_kafka_ticket {
  int tag;                      /* set by eddy_kafka_send */
  int64_t outstanding;          /* sent, no delivery report yet */
  int64_t failed;               /* reports with an error */
  char error[256];              /* the first one's */
} eddy_kafka_ticket;
/* Queues records for topic with the idempotent producer, as
 * eddy_kafka_produce does, without waiting.  Returns how many were queued
 * (fewer than n when librdkafka's queue is full: send the rest later), or
 * a negative code with the message in eddy_kafka_errmsg. */
int eddy_kafka_send(eddy_kafka *k, const char *topic, const eddy_record *recs, size_t n,
                    eddy_kafka_ticket *t);
/* Serves delivery reports (updating tickets), waiting up to timeout_ms
 * for one. */
void eddy_kafka_serve(eddy_kafka *k, int timeout_ms);
/* Drops what is queued or in flight; their reports come with an error. */
void eddy_kafka_purge(eddy_kafka *k);
/* Makes librdkafka write to fd when delivery reports wait to be served
 * (for an event loop).  0 or a negative code. */
int eddy_kafka_wake_on_reports(eddy_kafka *k, int fd);

#endif
