/*
 * log.h - the embedded event log: topics, partitions, messages, consumer
 * group offsets and retention, kept in the store.
 *
 * A topic has N partitions; each partition is a sequence of messages with
 * contiguous offsets from 0.  Retention removes messages from the front of a
 * partition only, so the offsets that remain stay contiguous from the
 * partition's log start up to its next offset (the high watermark).
 */
#ifndef EDDY_LOG_H
#define EDDY_LOG_H

#include <stddef.h>
#include <stdint.h>

#include "headers.h"
#include "store.h"

#define EDDY_MAX_PARTITIONS 4096
#define EDDY_MAX_TOPIC_NAME 249
#define EDDY_MAX_ID_LEN 255
#define EDDY_DEFAULT_MAX_MESSAGE_BYTES (1024 * 1024)
/* The largest max_message_bytes a topic may set: SQLite's default blob
 * limit is 1e9, and a message is held in memory whole. */
#define EDDY_LIMIT_MAX_MESSAGE_BYTES (256 * 1024 * 1024)

typedef struct eddy_topic_config {
  int partitions;
  int64_t retention_ms;       /* -1: keep forever */
  int64_t retention_bytes;    /* per partition; -1: no limit */
  int64_t max_message_bytes;  /* limit on key, on value and on headers */
} eddy_topic_config;

/* The defaults: 1 partition, no retention, 1 MiB messages. */
void eddy_topic_config_init(eddy_topic_config *c);

typedef struct eddy_topic_info {
  int64_t id;
  char name[EDDY_MAX_TOPIC_NAME + 1];
  eddy_topic_config config;
  int64_t created_at;
} eddy_topic_info;

typedef struct eddy_partition_info {
  int partition;
  int64_t log_start;    /* first offset still stored */
  int64_t next_offset;  /* the high watermark: offset the next message gets */
  int64_t bytes;        /* bytes of keys, values and headers stored */
} eddy_partition_info;

/* Checks a topic name without a store: 0, or -1 with the reason in why. */
int eddy_topic_name_valid(const char *name, char *why, size_t n);

/* Checks a topic name: 1 to 249 characters of [A-Za-z0-9._-].  Returns 0,
 * or EDDY_EINVAL with the reason in the store. */
int eddy_topic_name_check(eddy_store *s, const char *name);

/* Creates a topic.  Fails with EDDY_EEXIST when it exists, EDDY_EINVAL on a
 * bad name or configuration (partitions outside 1..4096, ...). */
int eddy_topic_create(eddy_store *s, const char *name,
                      const eddy_topic_config *c);

/* Creates the topic when missing.  When it exists with fewer partitions
 * than asked, fails with EDDY_EINVAL; more is fine.  Sets *created. */
int eddy_topic_ensure(eddy_store *s, const char *name,
                      const eddy_topic_config *c, int *created);

/* Changes retention and the message size limit of a topic (not its
 * partition count).  Fields set to EDDY_KEEP are left as they are. */
#define EDDY_KEEP INT64_MIN
int eddy_topic_alter(eddy_store *s, const char *name, int64_t retention_ms,
                     int64_t retention_bytes, int64_t max_message_bytes);

/* Looks a topic up.  EDDY_ENOENT ("unknown topic 'x'") when missing. */
int eddy_topic_get(eddy_store *s, const char *name, eddy_topic_info *out);

/* Calls fn for each topic in name order; stops early when fn returns
 * non-zero and returns that value.  Returns 0 or a negative code. */
int eddy_topic_foreach(eddy_store *s,
                       int (*fn)(void *ud, const eddy_topic_info *t),
                       void *ud);

/* Fills out[0..partitions) for topic t. */
int eddy_partitions_get(eddy_store *s, const eddy_topic_info *t,
                        eddy_partition_info *out);

/* A message to produce.  key may be NULL (no key; has_key 0).  id NULL
 * means "assign a new UUIDv7"; timestamp 0 means "now"; partition -1 means
 * "let the partitioner choose". */
typedef struct eddy_record {
  const char *id;
  size_t id_len;
  const void *key;
  size_t key_len;
  int has_key;
  const void *value;
  size_t value_len;
  const eddy_header *headers;
  size_t nheaders;
  const void *headers_raw;   /* already encoded (headers.h); used instead */
  size_t headers_raw_len;    /* of headers when not NULL */
  int64_t timestamp;
  int partition;
} eddy_record;

typedef struct eddy_produced {
  int partition;
  int64_t offset;
  int64_t timestamp;
  char id[EDDY_MAX_ID_LEN + 1];
} eddy_produced;

/* Appends n records to topic in one transaction: all of them or none.  Every
 * record is checked before anything is written (sizes against the topic's
 * limit, explicit partitions, ids).  When the store already has a
 * transaction open (eddy_store_begin), the records join it instead.
 * out[i] receives where record i landed.  Returns 0 or a negative code; on
 * failure nothing was written. */
int eddy_log_produce(eddy_store *s, const char *topic, const eddy_record *recs,
                     size_t n, eddy_produced *out);

/* A stored message, as handed to a fetch callback.  Pointers are valid only
 * during the callback. */
typedef struct eddy_message {
  const char *topic;
  int partition;
  int64_t offset;
  const char *id;
  size_t id_len;
  const void *key;      /* NULL when the message has no key */
  size_t key_len;
  const void *value;
  size_t value_len;
  const void *headers;  /* encoded; see headers.h */
  size_t headers_len;
  int64_t timestamp;
} eddy_message;

typedef int (*eddy_message_cb)(void *ud, const eddy_message *m);

/* Calls cb for up to max messages of topic/partition from offset on, in
 * offset order.  An offset below the log start reads from the log start.
 * Stops early when cb returns non-zero and returns that value; otherwise
 * returns the number of messages delivered (>= 0) or a negative code. */
int eddy_log_fetch(eddy_store *s, const char *topic, int partition,
                   int64_t offset, int max, eddy_message_cb cb, void *ud);

/* The log start and the next offset of one partition. */
int eddy_log_offsets(eddy_store *s, const char *topic, int partition,
                     int64_t *log_start, int64_t *next_offset);

/* Stores the offset of the next message group will read from
 * topic/partition (the Kafka convention), inside the open transaction if
 * there is one. */
int eddy_group_commit(eddy_store *s, const char *group, const char *topic,
                      int partition, int64_t offset);

/* The committed offset of group on topic/partition, or -1 in *offset when
 * the group has none there.  Returns 0 or a negative code. */
int eddy_group_committed(eddy_store *s, const char *group, const char *topic,
                         int partition, int64_t *offset);

/* Done offsets: offsets a group finished above its committed offset
 * (messages of one partition finish out of order when their keys run on
 * different workers, or wait for a retry).  A restart skips them. */
int eddy_done_offsets_add(eddy_store *s, const char *group, int64_t topic_id,
                          int partition, int64_t offset);
/* Removes those below `below` (covered by the committed offset now). */
int eddy_done_offsets_clear(eddy_store *s, const char *group, int64_t topic_id,
                            int partition, int64_t below);
/* Loads those from `from` on, sorted, into a malloc'd array. */
int eddy_done_offsets_load(eddy_store *s, const char *group, int64_t topic_id,
                           int partition, int64_t from, int64_t **out,
                           size_t *n);

/* Applies retention (age and size) to topic, or to every topic when topic is
 * NULL, as of time now_ms.  Adds the number of messages removed to
 * *removed (may be NULL).  Returns 0 or a negative code. */
int eddy_log_trim(eddy_store *s, const char *topic, int64_t now_ms,
                  int64_t *removed);

#endif
