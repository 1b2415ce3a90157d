/*
 * log.c - topics, produce, fetch, group offsets and retention on the store.
 */
#include "log.h"
#include "errors.h"
#include "partitioner.h"
#include "uuid.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sqlite3.h>

/* Retention runs at most this often from the produce path of one handle. */
#define TRIM_INTERVAL_MS 1000

void eddy_topic_config_init(eddy_topic_config *c) {
  c->partitions = 1;
  c->retention_ms = -1;
  c->retention_bytes = -1;
  c->max_message_bytes = EDDY_DEFAULT_MAX_MESSAGE_BYTES;
}

int eddy_topic_name_valid(const char *name, char *why, size_t n) {
  size_t len = name ? strlen(name) : 0;
  if (len == 0) {
    snprintf(why, n, "topic name is empty");
    return -1;
  }
  if (len > EDDY_MAX_TOPIC_NAME) {
    snprintf(why, n, "invalid topic name '%.40s...': longer than %d characters",
             name, EDDY_MAX_TOPIC_NAME);
    return -1;
  }
  if (strcmp(name, ".") == 0 || strcmp(name, "..") == 0) {
    snprintf(why, n, "invalid topic name '%s': '.' and '..' are reserved", name);
    return -1;
  }
  for (size_t i = 0; i < len; i++) {
    char c = name[i];
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
          (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-')) {
      snprintf(why, n,
               "invalid topic name '%.*s': use only letters, digits, '.', '_' and '-'",
               (int)(len > 200 ? 200 : len), name);
      return -1;
    }
  }
  return 0;
}

int eddy_topic_name_check(eddy_store *s, const char *name) {
  char why[300];
  if (eddy_topic_name_valid(name, why, sizeof why) != 0)
    return eddy_store_seterr(s, EDDY_EINVAL, "%s", why);
  return 0;
}

static int check_config(eddy_store *s, const char *name,
                        const eddy_topic_config *c) {
  if (c->partitions < 1 || c->partitions > EDDY_MAX_PARTITIONS)
    return eddy_store_seterr(s, EDDY_EINVAL,
      "topic '%s': partition count must be between 1 and %d, got %d", name,
      EDDY_MAX_PARTITIONS, c->partitions);
  if (c->retention_ms < -1)
    return eddy_store_seterr(s, EDDY_EINVAL,
      "topic '%s': retention time must be positive, got %" PRId64 " ms", name,
      c->retention_ms);
  if (c->retention_bytes < -1)
    return eddy_store_seterr(s, EDDY_EINVAL,
      "topic '%s': retention size must be positive, got %" PRId64 " bytes",
      name, c->retention_bytes);
  if (c->max_message_bytes < 1 ||
      c->max_message_bytes > EDDY_LIMIT_MAX_MESSAGE_BYTES)
    return eddy_store_seterr(s, EDDY_EINVAL,
      "topic '%s': message size limit must be between 1 and %d bytes, got %"
      PRId64, name, EDDY_LIMIT_MAX_MESSAGE_BYTES, c->max_message_bytes);
  return 0;
}

/* Runs fn inside a transaction of its own unless one is open already. */
static int begin_own(eddy_store *s, int *own) {
  *own = !eddy_store_in_tx(s);
  return *own ? eddy_store_begin(s) : 0;
}

static int end_own(eddy_store *s, int own, int rc) {
  if (!own) return rc;
  if (rc == 0) return eddy_store_commit(s);
  eddy_store_rollback(s);
  return rc;
}

static const char *SQL_TOPIC_GET =
  "SELECT id, name, partitions, retention_ms, retention_bytes,"
  " max_message_bytes, created_at FROM topics WHERE name = ?1";

static void read_topic_row(sqlite3_stmt *st, eddy_topic_info *t) {
  t->id = sqlite3_column_int64(st, 0);
  snprintf(t->name, sizeof t->name, "%s",
           (const char *)sqlite3_column_text(st, 1));
  t->config.partitions = sqlite3_column_int(st, 2);
  t->config.retention_ms = sqlite3_column_int64(st, 3);
  t->config.retention_bytes = sqlite3_column_int64(st, 4);
  t->config.max_message_bytes = sqlite3_column_int64(st, 5);
  t->created_at = sqlite3_column_int64(st, 6);
}

int eddy_topic_get(eddy_store *s, const char *name, eddy_topic_info *out) {
  int rc = eddy_topic_name_check(s, name);
  if (rc) return rc;
  sqlite3_stmt *st = eddy_store_stmt(s, SQL_TOPIC_GET);
  if (!st) return EDDY_ESTORE;
  sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
  rc = sqlite3_step(st);
  if (rc == SQLITE_ROW) {
    read_topic_row(st, out);
    sqlite3_reset(st);
    return 0;
  }
  sqlite3_reset(st);
  if (rc == SQLITE_DONE)
    return eddy_store_seterr(s, EDDY_ENOENT, "unknown topic '%s'", name);
  return eddy_store_sqlerr(s, rc, "looking up a topic");
}

static int create_locked(eddy_store *s, const char *name,
                         const eddy_topic_config *c) {
  sqlite3_stmt *st = eddy_store_stmt(s,
    "INSERT INTO topics(name, partitions, retention_ms, retention_bytes,"
    " max_message_bytes, created_at) VALUES(?1, ?2, ?3, ?4, ?5, ?6)");
  if (!st) return EDDY_ESTORE;
  sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
  sqlite3_bind_int(st, 2, c->partitions);
  sqlite3_bind_int64(st, 3, c->retention_ms);
  sqlite3_bind_int64(st, 4, c->retention_bytes);
  sqlite3_bind_int64(st, 5, c->max_message_bytes);
  sqlite3_bind_int64(st, 6, eddy_now_ms());
  int rc = sqlite3_step(st);
  sqlite3_reset(st);
  if (rc != SQLITE_DONE) return eddy_store_sqlerr(s, rc, "creating a topic");
  return 0;
}

static int add_partitions(eddy_store *s, int64_t topic_id, int from, int to) {
  for (int p = from; p < to; p++) {
    sqlite3_stmt *st = eddy_store_stmt(s,
      "INSERT INTO partitions(topic_id, partition) VALUES(?1, ?2)");
    if (!st) return EDDY_ESTORE;
    sqlite3_bind_int64(st, 1, topic_id);
    sqlite3_bind_int(st, 2, p);
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    if (rc != SQLITE_DONE) return eddy_store_sqlerr(s, rc, "adding partitions");
  }
  return 0;
}

/* Creates (or checks) the topic inside the caller's transaction. */
static int ensure_in_tx(eddy_store *s, const char *name,
                        const eddy_topic_config *c, int must_be_new,
                        int *created) {
  eddy_topic_info t;
  int rc = eddy_topic_get(s, name, &t);
  if (rc == 0) {
    if (must_be_new)
      return eddy_store_seterr(s, EDDY_EEXIST, "topic '%s' already exists",
                               name);
    if (t.config.partitions < c->partitions)
      return eddy_store_seterr(s, EDDY_EINVAL,
        "topic '%s' exists with %d partitions, fewer than the %d asked for",
        name, t.config.partitions, c->partitions);
    if (created) *created = 0;
    return 0;
  }
  if (rc != EDDY_ENOENT) return rc;
  rc = create_locked(s, name, c);
  if (rc == 0) rc = eddy_topic_get(s, name, &t);
  if (rc == 0) rc = add_partitions(s, t.id, 0, c->partitions);
  if (rc == 0 && created) *created = 1;
  return rc;
}

int eddy_topic_create(eddy_store *s, const char *name,
                      const eddy_topic_config *c) {
  int rc = eddy_topic_name_check(s, name);
  if (rc == 0) rc = check_config(s, name, c);
  if (rc) return rc;
  int own;
  rc = begin_own(s, &own);
  if (rc) return rc;
  return end_own(s, own, ensure_in_tx(s, name, c, 1, NULL));
}

int eddy_topic_ensure(eddy_store *s, const char *name,
                      const eddy_topic_config *c, int *created) {
  int rc = eddy_topic_name_check(s, name);
  if (rc == 0) rc = check_config(s, name, c);
  if (rc) return rc;
  int own;
  rc = begin_own(s, &own);
  if (rc) return rc;
  return end_own(s, own, ensure_in_tx(s, name, c, 0, created));
}

int eddy_topic_alter(eddy_store *s, const char *name, int64_t retention_ms,
                     int64_t retention_bytes, int64_t max_message_bytes) {
  int own;
  int rc = begin_own(s, &own);
  if (rc) return rc;
  eddy_topic_info t;
  rc = eddy_topic_get(s, name, &t);
  if (rc) return end_own(s, own, rc);
  if (retention_ms != EDDY_KEEP) t.config.retention_ms = retention_ms;
  if (retention_bytes != EDDY_KEEP) t.config.retention_bytes = retention_bytes;
  if (max_message_bytes != EDDY_KEEP)
    t.config.max_message_bytes = max_message_bytes;
  rc = check_config(s, name, &t.config);
  if (rc) return end_own(s, own, rc);
  sqlite3_stmt *st = eddy_store_stmt(s,
    "UPDATE topics SET retention_ms = ?2, retention_bytes = ?3,"
    " max_message_bytes = ?4 WHERE id = ?1");
  if (!st) return end_own(s, own, EDDY_ESTORE);
  sqlite3_bind_int64(st, 1, t.id);
  sqlite3_bind_int64(st, 2, t.config.retention_ms);
  sqlite3_bind_int64(st, 3, t.config.retention_bytes);
  sqlite3_bind_int64(st, 4, t.config.max_message_bytes);
  rc = sqlite3_step(st);
  sqlite3_reset(st);
  if (rc != SQLITE_DONE) return end_own(s, own, eddy_store_sqlerr(s, rc, "altering a topic"));
  return end_own(s, own, 0);
}

int eddy_topic_foreach(eddy_store *s,
                       int (*fn)(void *ud, const eddy_topic_info *t),
                       void *ud) {
  /* Collect first: fn may use the store (and this statement) itself. */
  sqlite3_stmt *st = eddy_store_stmt(s,
    "SELECT id, name, partitions, retention_ms, retention_bytes,"
    " max_message_bytes, created_at FROM topics ORDER BY name");
  if (!st) return EDDY_ESTORE;
  size_t n = 0, cap = 0;
  eddy_topic_info *all = NULL;
  int rc;
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    if (n == cap) {
      cap = cap ? cap * 2 : 16;
      eddy_topic_info *bigger = realloc(all, cap * sizeof *all);
      if (!bigger) { free(all); sqlite3_reset(st);
        return eddy_store_seterr(s, EDDY_ENOMEM, "out of memory"); }
      all = bigger;
    }
    read_topic_row(st, &all[n++]);
  }
  sqlite3_reset(st);
  if (rc != SQLITE_DONE) { free(all); return eddy_store_sqlerr(s, rc, "listing topics"); }
  int r = 0;
  for (size_t i = 0; i < n && r == 0; i++) r = fn(ud, &all[i]);
  free(all);
  return r;
}

int eddy_partitions_get(eddy_store *s, const eddy_topic_info *t,
                        eddy_partition_info *out) {
  sqlite3_stmt *st = eddy_store_stmt(s,
    "SELECT partition, log_start, next_offset, bytes FROM partitions"
    " WHERE topic_id = ?1 ORDER BY partition");
  if (!st) return EDDY_ESTORE;
  sqlite3_bind_int64(st, 1, t->id);
  int rc, n = 0;
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    int p = sqlite3_column_int(st, 0);
    if (p < 0 || p >= t->config.partitions) continue;
    out[p].partition = p;
    out[p].log_start = sqlite3_column_int64(st, 1);
    out[p].next_offset = sqlite3_column_int64(st, 2);
    out[p].bytes = sqlite3_column_int64(st, 3);
    n++;
  }
  sqlite3_reset(st);
  if (rc != SQLITE_DONE) return eddy_store_sqlerr(s, rc, "reading partitions");
  if (n != t->config.partitions)
    return eddy_store_seterr(s, EDDY_ENOTSTORE,
      "store '%s' is damaged: topic '%s' has %d of its %d partitions",
      eddy_store_dir(s), t->name, n, t->config.partitions);
  return 0;
}

static const char *what_part[] = { "key", "value", "headers" };

/* " (message N)" for a record of a batch of several, "" otherwise: made
 * only when a check fails, since the checks run for every record. */
static const char *where_of(char *buf, size_t len, size_t i, size_t n) {
  if (n <= 1) return "";
  snprintf(buf, len, " (message %zu)", i + 1);
  return buf;
}

/* Checks one record against the topic before anything is written. */
static int check_record(eddy_store *s, const eddy_topic_info *t,
                        const eddy_record *r, size_t i, size_t n) {
  char where[48];
  int64_t limit = t->config.max_message_bytes;
  size_t sizes[3] = { r->has_key ? r->key_len : 0, r->value_len,
                      r->headers_raw ? r->headers_raw_len
                                     : eddy_headers_size(r->headers, r->nheaders) };
  for (int k = 0; k < 3; k++)
    if ((int64_t)sizes[k] > limit)
      return eddy_store_seterr(s, EDDY_ETOOBIG,
        "%s of %zu bytes is over the limit of %" PRId64 " bytes of topic '%s'%s",
        what_part[k], sizes[k], limit, t->name, where_of(where, sizeof where, i, n));
  if (r->partition != -1 &&
      (r->partition < 0 || r->partition >= t->config.partitions))
    return eddy_store_seterr(s, EDDY_EINVAL,
      "topic '%s' has no partition %d (it has %d)%s", t->name, r->partition,
      t->config.partitions, where_of(where, sizeof where, i, n));
  if (r->id) {
    if (r->id_len == 0 || r->id_len > EDDY_MAX_ID_LEN)
      return eddy_store_seterr(s, EDDY_EINVAL,
        "message id must be 1 to %d bytes, got %zu%s", EDDY_MAX_ID_LEN,
        r->id_len, where_of(where, sizeof where, i, n));
    for (size_t j = 0; j < r->id_len; j++)
      if ((unsigned char)r->id[j] < 0x20 || r->id[j] == 0x7f)
        return eddy_store_seterr(s, EDDY_EINVAL,
          "message id contains a control character%s", where_of(where, sizeof where, i, n));
  }
  for (size_t h = 0; h < r->nheaders; h++)
    if (r->headers[h].name_len == 0)
      return eddy_store_seterr(s, EDDY_EINVAL,
        "header %zu has an empty name%s", h + 1, where_of(where, sizeof where, i, n));
  return 0;
}

static int write_records(eddy_store *s, const eddy_topic_info *t,
                         const eddy_record *recs, size_t n,
                         eddy_produced *out) {
  int np = t->config.partitions;
  eddy_partition_info *parts = calloc((size_t)np, sizeof *parts);
  int64_t *added = calloc((size_t)np, sizeof *added);
  unsigned char *hbuf = NULL;
  size_t hcap = 0;
  int rc = 0;
  if (!parts || !added) { rc = eddy_store_seterr(s, EDDY_ENOMEM, "out of memory"); goto done; }
  rc = eddy_partitions_get(s, t, parts);
  if (rc) goto done;
  int64_t now = eddy_now_ms();
  for (size_t i = 0; i < n; i++) {
    const eddy_record *r = &recs[i];
    int p = r->partition;
    if (p < 0)
      p = r->has_key ? eddy_partition_for_key(r->key, r->key_len, np)
                     : (int)(eddy_store_round_robin(s) % (unsigned)np);
    eddy_produced *o = &out[i];
    o->partition = p;
    o->offset = parts[p].next_offset++;
    o->timestamp = r->timestamp ? r->timestamp : now;
    if (r->id) {
      memcpy(o->id, r->id, r->id_len);
      o->id[r->id_len] = '\0';
    } else {
      eddy_uuid_v7(o->id);
    }
    size_t hsize = r->headers_raw ? r->headers_raw_len
                                  : eddy_headers_size(r->headers, r->nheaders);
    if (!r->headers_raw && hsize > hcap) {
      unsigned char *b = realloc(hbuf, hsize);
      if (!b) { rc = eddy_store_seterr(s, EDDY_ENOMEM, "out of memory"); goto done; }
      hbuf = b;
      hcap = hsize;
    }
    const void *hblob = r->headers_raw;
    if (!hblob && hsize) {
      eddy_headers_encode(r->headers, r->nheaders, hbuf);
      hblob = hbuf;
    }
    sqlite3_stmt *st = eddy_store_stmt(s,
      "INSERT INTO messages(topic_id, partition, offset, id, key, value,"
      " headers, ts) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)");
    if (!st) { rc = EDDY_ESTORE; goto done; }
    sqlite3_bind_int64(st, 1, t->id);
    sqlite3_bind_int(st, 2, p);
    sqlite3_bind_int64(st, 3, o->offset);
    sqlite3_bind_text(st, 4, o->id, -1, SQLITE_STATIC);
    if (r->has_key)
      sqlite3_bind_blob64(st, 5, r->key ? r->key : "", r->key_len, SQLITE_STATIC);
    sqlite3_bind_blob64(st, 6, r->value ? r->value : "", r->value_len,
                        SQLITE_STATIC);
    if (hsize) sqlite3_bind_blob64(st, 7, hblob, hsize, SQLITE_STATIC);
    sqlite3_bind_int64(st, 8, o->timestamp);
    int src = sqlite3_step(st);
    sqlite3_reset(st);
    if (src != SQLITE_DONE) { rc = eddy_store_sqlerr(s, src, "writing a message"); goto done; }
    added[p] += (int64_t)((r->has_key ? r->key_len : 0) + r->value_len + hsize);
  }
  for (int p = 0; p < np; p++) {
    if (!added[p] && parts[p].next_offset == 0) continue;
    sqlite3_stmt *st = eddy_store_stmt(s,
      "UPDATE partitions SET next_offset = ?3, bytes = bytes + ?4"
      " WHERE topic_id = ?1 AND partition = ?2 AND next_offset < ?3");
    if (!st) { rc = EDDY_ESTORE; goto done; }
    sqlite3_bind_int64(st, 1, t->id);
    sqlite3_bind_int(st, 2, p);
    sqlite3_bind_int64(st, 3, parts[p].next_offset);
    sqlite3_bind_int64(st, 4, added[p]);
    int src = sqlite3_step(st);
    sqlite3_reset(st);
    if (src != SQLITE_DONE) { rc = eddy_store_sqlerr(s, src, "updating a partition"); goto done; }
  }
done:
  free(parts);
  free(added);
  free(hbuf);
  return rc;
}

int eddy_log_produce(eddy_store *s, const char *topic, const eddy_record *recs,
                     size_t n, eddy_produced *out) {
  eddy_topic_info t;
  int rc = eddy_topic_get(s, topic, &t);
  if (rc) return rc;
  for (size_t i = 0; i < n; i++) {
    rc = check_record(s, &t, &recs[i], i, n);
    if (rc) return rc;
  }
  if (n == 0) return 0;
  int own;
  rc = begin_own(s, &own);
  if (rc) return rc;
  rc = end_own(s, own, write_records(s, &t, recs, n, out));
  if (rc == 0 && own &&
      (t.config.retention_ms >= 0 || t.config.retention_bytes >= 0)) {
    int64_t now = eddy_now_ms();
    if (now - eddy_store_last_trim(s) >= TRIM_INTERVAL_MS) {
      eddy_store_set_last_trim(s, now);
      /* Retention is housekeeping: the messages are committed, so a failure
       * here (a busy store) is left for the next run, not reported. */
      eddy_log_trim(s, topic, now, NULL);
    }
  }
  return rc;
}

int eddy_log_fetch(eddy_store *s, const char *topic, int partition,
                   int64_t offset, int max, eddy_message_cb cb, void *ud) {
  eddy_topic_info t;
  int rc = eddy_topic_get(s, topic, &t);
  if (rc) return rc;
  if (partition < 0 || partition >= t.config.partitions)
    return eddy_store_seterr(s, EDDY_EINVAL,
      "topic '%s' has no partition %d (it has %d)", topic, partition,
      t.config.partitions);
  if (max <= 0) return 0;
  sqlite3_stmt *st = eddy_store_stmt(s,
    "SELECT offset, id, key, value, headers, ts FROM messages"
    " WHERE topic_id = ?1 AND partition = ?2 AND offset >= ?3"
    " ORDER BY offset LIMIT ?4");
  if (!st) return EDDY_ESTORE;
  sqlite3_bind_int64(st, 1, t.id);
  sqlite3_bind_int(st, 2, partition);
  sqlite3_bind_int64(st, 3, offset < 0 ? 0 : offset);
  sqlite3_bind_int(st, 4, max);
  int n = 0;
  eddy_message m;
  m.topic = t.name;
  m.partition = partition;
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    m.offset = sqlite3_column_int64(st, 0);
    m.id = (const char *)sqlite3_column_text(st, 1);
    m.id_len = (size_t)sqlite3_column_bytes(st, 1);
    if (sqlite3_column_type(st, 2) == SQLITE_NULL) {
      m.key = NULL;
      m.key_len = 0;
    } else {
      m.key = sqlite3_column_blob(st, 2);
      m.key_len = (size_t)sqlite3_column_bytes(st, 2);
      if (!m.key) m.key = "";
    }
    m.value = sqlite3_column_blob(st, 3);
    m.value_len = (size_t)sqlite3_column_bytes(st, 3);
    if (!m.value) m.value = "";
    m.headers = sqlite3_column_blob(st, 4);
    m.headers_len = (size_t)sqlite3_column_bytes(st, 4);
    m.timestamp = sqlite3_column_int64(st, 5);
    n++;
    int r = cb(ud, &m);
    if (r) { sqlite3_reset(st); return r; }
  }
  sqlite3_reset(st);
  if (rc != SQLITE_DONE) return eddy_store_sqlerr(s, rc, "reading messages");
  return n;
}

int eddy_log_offsets(eddy_store *s, const char *topic, int partition,
                     int64_t *log_start, int64_t *next_offset) {
  eddy_topic_info t;
  int rc = eddy_topic_get(s, topic, &t);
  if (rc) return rc;
  if (partition < 0 || partition >= t.config.partitions)
    return eddy_store_seterr(s, EDDY_EINVAL,
      "topic '%s' has no partition %d (it has %d)", topic, partition,
      t.config.partitions);
  sqlite3_stmt *st = eddy_store_stmt(s,
    "SELECT log_start, next_offset FROM partitions"
    " WHERE topic_id = ?1 AND partition = ?2");
  if (!st) return EDDY_ESTORE;
  sqlite3_bind_int64(st, 1, t.id);
  sqlite3_bind_int(st, 2, partition);
  rc = sqlite3_step(st);
  if (rc == SQLITE_ROW) {
    *log_start = sqlite3_column_int64(st, 0);
    *next_offset = sqlite3_column_int64(st, 1);
    sqlite3_reset(st);
    return 0;
  }
  sqlite3_reset(st);
  if (rc == SQLITE_DONE)
    return eddy_store_seterr(s, EDDY_ENOTSTORE,
      "store '%s' is damaged: topic '%s' has no partition %d row",
      eddy_store_dir(s), topic, partition);
  return eddy_store_sqlerr(s, rc, "reading offsets");
}

static int check_group(eddy_store *s, const char *group) {
  if (!group || !*group)
    return eddy_store_seterr(s, EDDY_EINVAL, "consumer group name is empty");
  if (strlen(group) > 255)
    return eddy_store_seterr(s, EDDY_EINVAL,
                             "consumer group name is longer than 255 bytes");
  return 0;
}

int eddy_group_commit(eddy_store *s, const char *group, const char *topic,
                      int partition, int64_t offset) {
  int rc = check_group(s, group);
  if (rc) return rc;
  eddy_topic_info t;
  rc = eddy_topic_get(s, topic, &t);
  if (rc) return rc;
  if (partition < 0 || partition >= t.config.partitions)
    return eddy_store_seterr(s, EDDY_EINVAL,
      "topic '%s' has no partition %d (it has %d)", topic, partition,
      t.config.partitions);
  if (offset < 0)
    return eddy_store_seterr(s, EDDY_EINVAL,
      "offset must not be negative, got %" PRId64, offset);
  int own;
  rc = begin_own(s, &own);
  if (rc) return rc;
  sqlite3_stmt *st = eddy_store_stmt(s,
    "INSERT INTO group_offsets(group_name, topic_id, partition, offset,"
    " updated_at) VALUES(?1, ?2, ?3, ?4, ?5)"
    " ON CONFLICT(group_name, topic_id, partition)"
    " DO UPDATE SET offset = excluded.offset, updated_at = excluded.updated_at");
  if (!st) return end_own(s, own, EDDY_ESTORE);
  sqlite3_bind_text(st, 1, group, -1, SQLITE_STATIC);
  sqlite3_bind_int64(st, 2, t.id);
  sqlite3_bind_int(st, 3, partition);
  sqlite3_bind_int64(st, 4, offset);
  sqlite3_bind_int64(st, 5, eddy_now_ms());
  rc = sqlite3_step(st);
  sqlite3_reset(st);
  if (rc != SQLITE_DONE)
    return end_own(s, own, eddy_store_sqlerr(s, rc, "committing an offset"));
  return end_own(s, own, 0);
}

int eddy_group_committed(eddy_store *s, const char *group, const char *topic,
                         int partition, int64_t *offset) {
  int rc = check_group(s, group);
  if (rc) return rc;
  eddy_topic_info t;
  rc = eddy_topic_get(s, topic, &t);
  if (rc) return rc;
  if (partition < 0 || partition >= t.config.partitions)
    return eddy_store_seterr(s, EDDY_EINVAL,
      "topic '%s' has no partition %d (it has %d)", topic, partition,
      t.config.partitions);
  sqlite3_stmt *st = eddy_store_stmt(s,
    "SELECT offset FROM group_offsets"
    " WHERE group_name = ?1 AND topic_id = ?2 AND partition = ?3");
  if (!st) return EDDY_ESTORE;
  sqlite3_bind_text(st, 1, group, -1, SQLITE_STATIC);
  sqlite3_bind_int64(st, 2, t.id);
  sqlite3_bind_int(st, 3, partition);
  rc = sqlite3_step(st);
  *offset = rc == SQLITE_ROW ? sqlite3_column_int64(st, 0) : -1;
  sqlite3_reset(st);
  if (rc != SQLITE_ROW && rc != SQLITE_DONE)
    return eddy_store_sqlerr(s, rc, "reading a committed offset");
  return 0;
}

/* Where the retained part of one partition must start, by age and size. */
static int trim_start(eddy_store *s, const eddy_topic_info *t,
                      const eddy_partition_info *p, int64_t now_ms,
                      int64_t *start, int64_t *freed) {
  *start = p->log_start;
  *freed = 0;
  if (t->config.retention_ms >= 0) {
    /* Scans only the expired prefix, which is about to be deleted anyway. */
    sqlite3_stmt *st = eddy_store_stmt(s,
      "SELECT offset, ifnull(length(key), 0) + length(value) + ifnull(length(headers), 0),"
      " ts FROM messages WHERE topic_id = ?1 AND partition = ?2"
      " AND offset >= ?3 ORDER BY offset");
    if (!st) return EDDY_ESTORE;
    sqlite3_bind_int64(st, 1, t->id);
    sqlite3_bind_int(st, 2, p->partition);
    sqlite3_bind_int64(st, 3, *start);
    int rc;
    int64_t cutoff = now_ms - t->config.retention_ms;
    *start = p->next_offset;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
      if (sqlite3_column_int64(st, 2) >= cutoff) {
        *start = sqlite3_column_int64(st, 0);
        break;
      }
      *freed += sqlite3_column_int64(st, 1);
    }
    sqlite3_reset(st);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
      return eddy_store_sqlerr(s, rc, "applying retention");
  }
  if (t->config.retention_bytes >= 0 &&
      p->bytes - *freed > t->config.retention_bytes) {
    int64_t excess = p->bytes - *freed - t->config.retention_bytes;
    sqlite3_stmt *st = eddy_store_stmt(s,
      "SELECT offset, ifnull(length(key), 0) + length(value) +"
      " ifnull(length(headers), 0) FROM messages WHERE topic_id = ?1"
      " AND partition = ?2 AND offset >= ?3 ORDER BY offset");
    if (!st) return EDDY_ESTORE;
    sqlite3_bind_int64(st, 1, t->id);
    sqlite3_bind_int(st, 2, p->partition);
    sqlite3_bind_int64(st, 3, *start);
    int rc;
    int64_t dropped = 0;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
      if (dropped >= excess) { *start = sqlite3_column_int64(st, 0); break; }
      dropped += sqlite3_column_int64(st, 1);
      *start = sqlite3_column_int64(st, 0) + 1;
    }
    sqlite3_reset(st);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
      return eddy_store_sqlerr(s, rc, "applying retention");
    *freed += dropped;
  }
  return 0;
}

struct trim_ctx {
  int64_t now;
  int64_t removed;
  int rc;
  eddy_store *s;
};

static int trim_topic(void *ud, const eddy_topic_info *t) {
  struct trim_ctx *c = ud;
  eddy_store *s = c->s;
  if (t->config.retention_ms < 0 && t->config.retention_bytes < 0) return 0;
  eddy_partition_info *parts = calloc((size_t)t->config.partitions, sizeof *parts);
  if (!parts) return c->rc = eddy_store_seterr(s, EDDY_ENOMEM, "out of memory");
  int rc = eddy_store_begin(s);
  if (rc == 0) rc = eddy_partitions_get(s, t, parts);
  for (int p = 0; rc == 0 && p < t->config.partitions; p++) {
    int64_t start, freed;
    rc = trim_start(s, t, &parts[p], c->now, &start, &freed);
    if (rc || start <= parts[p].log_start) continue;
    sqlite3_stmt *st = eddy_store_stmt(s,
      "DELETE FROM messages WHERE topic_id = ?1 AND partition = ?2"
      " AND offset < ?3");
    if (!st) { rc = EDDY_ESTORE; break; }
    sqlite3_bind_int64(st, 1, t->id);
    sqlite3_bind_int(st, 2, p);
    sqlite3_bind_int64(st, 3, start);
    int src = sqlite3_step(st);
    sqlite3_reset(st);
    if (src != SQLITE_DONE) { rc = eddy_store_sqlerr(s, src, "applying retention"); break; }
    c->removed += start - parts[p].log_start;
    st = eddy_store_stmt(s,
      "UPDATE partitions SET log_start = ?3, bytes = max(0, bytes - ?4)"
      " WHERE topic_id = ?1 AND partition = ?2");
    if (!st) { rc = EDDY_ESTORE; break; }
    sqlite3_bind_int64(st, 1, t->id);
    sqlite3_bind_int(st, 2, p);
    sqlite3_bind_int64(st, 3, start);
    sqlite3_bind_int64(st, 4, freed);
    src = sqlite3_step(st);
    sqlite3_reset(st);
    if (src != SQLITE_DONE) { rc = eddy_store_sqlerr(s, src, "applying retention"); break; }
  }
  if (rc == 0) rc = eddy_store_commit(s);
  else eddy_store_rollback(s);
  free(parts);
  if (rc) c->rc = rc;
  return rc;
}

int eddy_log_trim(eddy_store *s, const char *topic, int64_t now_ms,
                  int64_t *removed) {
  if (eddy_store_in_tx(s))
    return eddy_store_seterr(s, EDDY_EINVAL,
                             "retention cannot run inside a transaction");
  struct trim_ctx c = { now_ms, 0, 0, s };
  int rc;
  if (topic) {
    eddy_topic_info t;
    rc = eddy_topic_get(s, topic, &t);
    if (rc == 0) rc = trim_topic(&c, &t);
  } else {
    rc = eddy_topic_foreach(s, trim_topic, &c);
  }
  if (removed) *removed += c.removed;
  return rc < 0 ? rc : c.rc;
}

/* Runs a statement on done_offsets bound to (group, topic_id, partition,
 * offset); `what` names it in an error. */
static int done_offsets_exec(eddy_store *s, const char *sql, const char *what,
                             const char *group, int64_t topic_id, int partition,
                             int64_t offset) {
  sqlite3_stmt *st = eddy_store_stmt(s, sql);
  if (!st) return EDDY_ESTORE;
  sqlite3_bind_text(st, 1, group, -1, SQLITE_STATIC);
  sqlite3_bind_int64(st, 2, topic_id);
  sqlite3_bind_int(st, 3, partition);
  sqlite3_bind_int64(st, 4, offset);
  int rc = sqlite3_step(st);
  sqlite3_reset(st);
  if (rc != SQLITE_DONE) return eddy_store_sqlerr(s, rc, what);
  return 0;
}

int eddy_done_offsets_add(eddy_store *s, const char *group, int64_t topic_id,
                          int partition, int64_t offset) {
  return done_offsets_exec(s,
    "INSERT OR IGNORE INTO done_offsets(group_name, topic_id, partition, offset)"
    " VALUES(?1, ?2, ?3, ?4)", "recording a done offset", group, topic_id,
    partition, offset);
}

int eddy_done_offsets_clear(eddy_store *s, const char *group, int64_t topic_id,
                            int partition, int64_t below) {
  return done_offsets_exec(s,
    "DELETE FROM done_offsets WHERE group_name = ?1 AND topic_id = ?2"
    " AND partition = ?3 AND offset < ?4", "clearing done offsets", group,
    topic_id, partition, below);
}

int eddy_done_offsets_load(eddy_store *s, const char *group, int64_t topic_id,
                           int partition, int64_t from, int64_t **out,
                           size_t *n) {
  *out = NULL;
  *n = 0;
  sqlite3_stmt *st = eddy_store_stmt(s,
    "SELECT offset FROM done_offsets WHERE group_name = ?1 AND topic_id = ?2"
    " AND partition = ?3 AND offset >= ?4 ORDER BY offset");
  if (!st) return EDDY_ESTORE;
  sqlite3_bind_text(st, 1, group, -1, SQLITE_STATIC);
  sqlite3_bind_int64(st, 2, topic_id);
  sqlite3_bind_int(st, 3, partition);
  sqlite3_bind_int64(st, 4, from);
  size_t cap = 0;
  int rc;
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    if (*n == cap) {
      cap = cap ? cap * 2 : 64;
      int64_t *b = realloc(*out, cap * sizeof *b);
      if (!b) { sqlite3_reset(st); return eddy_store_seterr(s, EDDY_ENOMEM, "out of memory"); }
      *out = b;
    }
    (*out)[(*n)++] = sqlite3_column_int64(st, 0);
  }
  sqlite3_reset(st);
  if (rc != SQLITE_DONE) return eddy_store_sqlerr(s, rc, "reading done offsets");
  return 0;
}
