/*
 * quarantine.c - the dlq table and the dlq topics.
 */
#include "quarantine.h"
#include "outbox.h"
#include "errors.h"
#include "headers.h"
#include "kafka.h"
#include "log.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sqlite3.h>

void eddy_format_time(int64_t ms, char out[32]) {
  time_t t = (time_t)(ms / 1000);
  struct tm tm;
  gmtime_r(&t, &tm);
  size_t n = strftime(out, 32, "%Y-%m-%dT%H:%M:%S", &tm);
  snprintf(out + n, 32 - n, ".%03dZ", (int)(ms % 1000));
}

#define META_HEADERS 11

/* The message of entry e as a record to produce, with the encoded headers
 * given (any partition, a new timestamp). */
static eddy_record record_of(const eddy_dlq_entry *e, const void *headers, size_t len) {
  eddy_record r;
  memset(&r, 0, sizeof r);
  r.id = e->id;
  r.id_len = strlen(e->id);
  r.key = e->key;
  r.key_len = e->key_len;
  r.has_key = e->has_key;
  r.value = e->value;
  r.value_len = e->value_len;
  r.headers_raw = headers;
  r.headers_raw_len = len;
  r.partition = -1;
  return r;
}

int eddy_dlq_add(eddy_store *s, eddy_dlq_entry *e) {
  e->quarantined_at = eddy_now_ms();
  sqlite3_stmt *st = eddy_store_stmt(s,
    "INSERT INTO dlq(consumer, id, topic, partition, offset, key, value,"
    " headers, timestamp, reason, error, traceback, attempts, first_failure,"
    " last_failure, version, dlq_topic, quarantined_at)"
    " VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14,"
    " ?15, ?16, ?17, ?18)");
  if (!st) return EDDY_ESTORE;
  sqlite3_bind_text(st, 1, e->consumer, -1, SQLITE_STATIC);
  sqlite3_bind_text(st, 2, e->id, -1, SQLITE_STATIC);
  sqlite3_bind_text(st, 3, e->topic, -1, SQLITE_STATIC);
  sqlite3_bind_int(st, 4, e->partition);
  sqlite3_bind_int64(st, 5, e->offset);
  if (e->has_key) sqlite3_bind_blob64(st, 6, e->key_len ? e->key : "", e->key_len, SQLITE_STATIC);
  sqlite3_bind_blob64(st, 7, e->value_len ? e->value : "", e->value_len, SQLITE_STATIC);
  if (e->headers_len) sqlite3_bind_blob64(st, 8, e->headers, e->headers_len, SQLITE_STATIC);
  sqlite3_bind_int64(st, 9, e->timestamp);
  sqlite3_bind_text(st, 10, e->reason, -1, SQLITE_STATIC);
  sqlite3_bind_text(st, 11, e->error, -1, SQLITE_STATIC);
  sqlite3_bind_text(st, 12, e->traceback ? e->traceback : "", -1, SQLITE_STATIC);
  sqlite3_bind_int(st, 13, e->attempts);
  sqlite3_bind_int64(st, 14, e->first_failure);
  sqlite3_bind_int64(st, 15, e->last_failure);
  sqlite3_bind_text(st, 16, e->version ? e->version : "", -1, SQLITE_STATIC);
  sqlite3_bind_text(st, 17, e->dlq_topic, -1, SQLITE_STATIC);
  sqlite3_bind_int64(st, 18, e->quarantined_at);
  int rc = sqlite3_step(st);
  sqlite3_reset(st);
  if (rc != SQLITE_DONE) return eddy_store_sqlerr(s, rc, "quarantining a message");
  e->seq = sqlite3_last_insert_rowid(sqlite3_db_handle(st));

  /* The dlq topic's message: the original headers, then the failure (a
   * header blob is a sequence, so the two encodings just follow). */
  eddy_header hs[META_HEADERS];
  char attempts[24], first[32], last[32], part[24], off[24];
  snprintf(attempts, sizeof attempts, "%d", e->attempts);
  eddy_format_time(e->first_failure, first);
  eddy_format_time(e->last_failure, last);
  snprintf(part, sizeof part, "%d", e->partition);
  snprintf(off, sizeof off, "%" PRId64, e->offset);
  const char *meta[META_HEADERS][2] = {
    { "eddy-error", e->error }, { "eddy-traceback", e->traceback ? e->traceback : "" },
    { "eddy-attempts", attempts }, { "eddy-first-failure", first },
    { "eddy-last-failure", last }, { "eddy-original-topic", e->topic },
    { "eddy-original-partition", part }, { "eddy-original-offset", off },
    { "eddy-consumer", e->consumer }, { "eddy-version", e->version ? e->version : "" },
    { "eddy-reason", e->reason },
  };
  for (int i = 0; i < META_HEADERS; i++)
    hs[i] = (eddy_header){ meta[i][0], strlen(meta[i][0]), meta[i][1],
                           strlen(meta[i][1]) };
  size_t msize = eddy_headers_size(hs, META_HEADERS);
  unsigned char *blob = malloc(e->headers_len + msize);
  if (!blob) return eddy_store_seterr(s, EDDY_ENOMEM, "out of memory");
  if (e->headers_len) memcpy(blob, e->headers, e->headers_len);
  eddy_headers_encode(hs, META_HEADERS, blob + e->headers_len);
  eddy_record r = record_of(e, blob, e->headers_len + msize);
  if (e->via_outbox) {
    /* The log is Kafka: the runner relays the dlq message from the outbox. */
    rc = eddy_outbox_add(s, e->dlq_topic, &r, e->quarantined_at);
    free(blob);
    return rc;
  }
  eddy_topic_info t;
  rc = eddy_topic_get(s, e->dlq_topic, &t);
  if (rc == 0 && e->partition < t.config.partitions) r.partition = e->partition;
  eddy_produced out;
  if (rc == 0) rc = eddy_log_produce(s, e->dlq_topic, &r, 1, &out);
  free(blob);
  return rc;
}

static const char *COLS =
  "SELECT seq, consumer, id, topic, partition, offset, key, value, headers,"
  " timestamp, reason, error, traceback, attempts, first_failure,"
  " last_failure, version, dlq_topic, quarantined_at, ifnull(replayed_at, 0),"
  " replays FROM dlq ";

static void read_entry(sqlite3_stmt *st, eddy_dlq_entry *e) {
  e->seq = sqlite3_column_int64(st, 0);
  e->consumer = (const char *)sqlite3_column_text(st, 1);
  e->id = (const char *)sqlite3_column_text(st, 2);
  e->topic = (const char *)sqlite3_column_text(st, 3);
  e->partition = sqlite3_column_int(st, 4);
  e->offset = sqlite3_column_int64(st, 5);
  e->has_key = sqlite3_column_type(st, 6) != SQLITE_NULL;
  e->key = e->has_key ? sqlite3_column_blob(st, 6) : NULL;
  e->key_len = (size_t)sqlite3_column_bytes(st, 6);
  if (e->has_key && !e->key) e->key = "";
  e->value = sqlite3_column_blob(st, 7);
  e->value_len = (size_t)sqlite3_column_bytes(st, 7);
  if (!e->value) e->value = "";
  e->headers = sqlite3_column_blob(st, 8);
  e->headers_len = (size_t)sqlite3_column_bytes(st, 8);
  e->timestamp = sqlite3_column_int64(st, 9);
  e->reason = (const char *)sqlite3_column_text(st, 10);
  e->error = (const char *)sqlite3_column_text(st, 11);
  e->traceback = (const char *)sqlite3_column_text(st, 12);
  e->attempts = sqlite3_column_int(st, 13);
  e->first_failure = sqlite3_column_int64(st, 14);
  e->last_failure = sqlite3_column_int64(st, 15);
  e->version = (const char *)sqlite3_column_text(st, 16);
  e->dlq_topic = (const char *)sqlite3_column_text(st, 17);
  e->quarantined_at = sqlite3_column_int64(st, 18);
  e->replayed_at = sqlite3_column_int64(st, 19);
  e->replays = sqlite3_column_int(st, 20);
}

/* Runs a prepared entry query, calling fn per row.  Returns the number of
 * rows, fn's non-zero value, or a negative code. */
static int each(eddy_store *s, sqlite3_stmt *st,
                int (*fn)(void *ud, const eddy_dlq_entry *e), void *ud) {
  int rc, n = 0;
  eddy_dlq_entry e;
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    read_entry(st, &e);
    n++;
    int r = fn(ud, &e);
    if (r) { sqlite3_reset(st); return r; }
  }
  sqlite3_reset(st);
  if (rc != SQLITE_DONE) return eddy_store_sqlerr(s, rc, "reading the dead-letter store");
  return n;
}

int eddy_dlq_foreach(eddy_store *s, const char *consumer, int which,
                     int (*fn)(void *ud, const eddy_dlq_entry *e), void *ud) {
  static char sql[512];
  sqlite3_stmt *st;
  if (!sql[0]) snprintf(sql, sizeof sql, "%s WHERE (?1 IS NULL OR consumer = ?1)"
                        " AND (?2 = 1 OR replayed_at IS NULL) ORDER BY seq", COLS);
  st = eddy_store_stmt(s, sql);
  if (!st) return EDDY_ESTORE;
  if (consumer) sqlite3_bind_text(st, 1, consumer, -1, SQLITE_STATIC);
  sqlite3_bind_int(st, 2, which);
  int rc = each(s, st, fn, ud);
  return rc < 0 ? rc : 0;
}

int eddy_dlq_find(eddy_store *s, const char *ref, const char *consumer,
                  int (*fn)(void *ud, const eddy_dlq_entry *e), void *ud) {
  static char sql[512];
  if (!sql[0]) snprintf(sql, sizeof sql, "%s WHERE (seq = ?1 OR id = ?2)"
                        " AND (?3 IS NULL OR consumer = ?3) ORDER BY seq", COLS);
  sqlite3_stmt *st = eddy_store_stmt(s, sql);
  if (!st) return EDDY_ESTORE;
  char *end;
  long long seq = strtoll(ref, &end, 10);
  sqlite3_bind_int64(st, 1, *ref && !*end ? seq : -1);
  sqlite3_bind_text(st, 2, ref, -1, SQLITE_STATIC);
  if (consumer) sqlite3_bind_text(st, 3, consumer, -1, SQLITE_STATIC);
  int rc = each(s, st, fn, ud);
  if (rc == 0)
    return eddy_store_seterr(s, EDDY_ENOENT, "no quarantined message '%s'%s%s%s",
                             ref, consumer ? " of consumer '" : "",
                             consumer ? consumer : "", consumer ? "'" : "");
  return rc < 0 ? rc : 0;
}

struct replay_ctx {
  eddy_store *s;
  eddy_kafka *k;
  int rc;
  int partition;
  int64_t offset;
};

static int replay_one(void *ud, const eddy_dlq_entry *e) {
  struct replay_ctx *c = ud;
  eddy_record r = record_of(e, e->headers_len ? e->headers : NULL, e->headers_len);
  /* Copy what the produce needs before the statement moves on. */
  char topic[EDDY_MAX_TOPIC_NAME + 1];
  snprintf(topic, sizeof topic, "%s", e->topic);
  eddy_produced out;
  int rc = 0;
  if (c->k) {
    /* Asking for the topic first fails at once, and clearly, when the
     * cluster cannot be reached or lacks it. */
    int np;
    rc = eddy_kafka_topic_partitions(c->k, topic, &np);
    if (rc == EDDY_ENOENT)
      return c->rc = eddy_store_seterr(c->s, rc, "cannot replay %lld: its topic '%s' does "
                                       "not exist on Kafka at %s", (long long)e->seq, topic,
                                       eddy_kafka_bootstrap_servers(c->k));
    if (rc == 0) rc = eddy_kafka_produce(c->k, topic, &r, 1, &out);
    if (rc) eddy_store_seterr(c->s, rc, "%s", eddy_kafka_errmsg(c->k));
  } else {
    rc = eddy_log_produce(c->s, topic, &r, 1, &out);
  }
  if (rc) return c->rc = rc;
  c->partition = out.partition;
  c->offset = out.offset;
  return 1;
}

int eddy_dlq_replay(eddy_store *s, eddy_kafka *k, int64_t seq, int pending_only,
                    int *partition, int64_t *offset) {
  int rc = eddy_store_begin(s);
  if (rc) return rc;
  static char sql[512];
  if (!sql[0]) snprintf(sql, sizeof sql, "%s WHERE seq = ?1 AND (?2 = 0 OR replayed_at IS NULL)",
                        COLS);
  sqlite3_stmt *st = eddy_store_stmt(s, sql);
  if (!st) { eddy_store_rollback(s); return EDDY_ESTORE; }
  sqlite3_bind_int64(st, 1, seq);
  sqlite3_bind_int(st, 2, pending_only);
  struct replay_ctx c = { s, k, 0, 0, 0 };
  /* replay_one produces while this statement is on its row: the produce
   * uses other statements of the same connection, which SQLite allows. */
  rc = each(s, st, replay_one, &c);
  if (rc == 0 && pending_only) { eddy_store_rollback(s); return 1; }
  if (rc == 0) rc = eddy_store_seterr(s, EDDY_ENOENT, "no quarantined message %lld",
                                      (long long)seq);
  else if (c.rc) rc = c.rc;
  else if (rc == 1) rc = 0;
  if (rc == 0) {
    st = eddy_store_stmt(s,
      "UPDATE dlq SET replayed_at = ?2, replays = replays + 1 WHERE seq = ?1");
    if (!st) rc = EDDY_ESTORE;
    else {
      sqlite3_bind_int64(st, 1, seq);
      sqlite3_bind_int64(st, 2, eddy_now_ms());
      int src = sqlite3_step(st);
      sqlite3_reset(st);
      if (src != SQLITE_DONE) rc = eddy_store_sqlerr(s, src, "marking a replay");
    }
  }
  if (rc) { eddy_store_rollback(s); return rc; }
  rc = eddy_store_commit(s);
  if (rc == 0) { *partition = c.partition; *offset = c.offset; }
  return rc;
}

int eddy_dlq_purge(eddy_store *s, int64_t seq) {
  int rc = eddy_store_begin(s);
  if (rc) return rc;
  sqlite3_stmt *st = eddy_store_stmt(s, "DELETE FROM dlq WHERE seq = ?1");
  if (!st) { eddy_store_rollback(s); return EDDY_ESTORE; }
  sqlite3_bind_int64(st, 1, seq);
  int src = sqlite3_step(st);
  sqlite3_reset(st);
  if (src != SQLITE_DONE) {
    rc = eddy_store_sqlerr(s, src, "purging a quarantined message");
    eddy_store_rollback(s);
    return rc;
  }
  if (sqlite3_changes(sqlite3_db_handle(st)) == 0) {
    eddy_store_rollback(s);
    return eddy_store_seterr(s, EDDY_ENOENT, "no quarantined message %lld",
                             (long long)seq);
  }
  return eddy_store_commit(s);
}

int eddy_dlq_depth(eddy_store *s, const char *consumer, int64_t *depth,
                   int64_t *oldest_ms) {
  sqlite3_stmt *st = eddy_store_stmt(s,
    "SELECT count(*), ifnull(min(quarantined_at), 0) FROM dlq"
    " WHERE replayed_at IS NULL AND (?1 IS NULL OR consumer = ?1)");
  if (!st) return EDDY_ESTORE;
  if (consumer) sqlite3_bind_text(st, 1, consumer, -1, SQLITE_STATIC);
  int rc = sqlite3_step(st);
  if (rc == SQLITE_ROW) {
    *depth = sqlite3_column_int64(st, 0);
    *oldest_ms = sqlite3_column_int64(st, 1);
  }
  sqlite3_reset(st);
  if (rc != SQLITE_ROW) return eddy_store_sqlerr(s, rc, "reading the dead-letter store");
  return 0;
}
