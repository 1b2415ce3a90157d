/*
 * outbox.c - outbox rows and the relay that publishes them to the log.
 */
#include "outbox.h"
#include "errors.h"
#include "log.h"

#include <stdlib.h>
#include <string.h>

#include <sqlite3.h>

int eddy_outbox_count(eddy_store *s, int64_t *n) {
  sqlite3_stmt *st = eddy_store_stmt(s, "SELECT count(*) FROM outbox");
  if (!st) return EDDY_ESTORE;
  int rc = sqlite3_step(st);
  *n = rc == SQLITE_ROW ? sqlite3_column_int64(st, 0) : 0;
  sqlite3_reset(st);
  if (rc != SQLITE_ROW) return eddy_store_sqlerr(s, rc, "counting the outbox");
  return 0;
}

/* A row copied out of SQLite. */
typedef struct row {
  int64_t seq;
  char *topic;
  eddy_record rec;
  void *mem;
} row;

static int publish(eddy_store *s, row *rows, size_t from, size_t to,
                   int default_partitions) {
  eddy_record *recs = malloc((to - from) * sizeof *recs);
  eddy_produced *out = malloc((to - from) * sizeof *out);
  int rc = 0;
  if (!recs || !out) { rc = eddy_store_seterr(s, EDDY_ENOMEM, "out of memory"); goto done; }
  for (size_t i = from; i < to; i++) recs[i - from] = rows[i].rec;
  eddy_topic_config c;
  eddy_topic_config_init(&c);
  c.partitions = default_partitions;
  int created = 0;
  rc = eddy_topic_ensure(s, rows[from].topic, &c, &created);
  if (rc == EDDY_EINVAL && strstr(eddy_store_errmsg(s), "fewer than")) rc = 0;
  if (rc == 0) rc = eddy_log_produce(s, rows[from].topic, recs, to - from, out);
done:
  free(recs);
  free(out);
  return rc;
}

/* Reads up to max rows, oldest first, into *out (n set, *last the
 * highest seq).  0 or a negative code. */
/* Copies up to max rows of st (seq, topic, id, key, value, headers). */
static int collect_rows(eddy_store *s, sqlite3_stmt *st, int max, row **out, size_t *count,
                        int64_t *last_seq);

static int read_rows(eddy_store *s, int max, row **out, size_t *count, int64_t *last_seq) {
  *out = NULL;
  *count = 0;
  *last_seq = -1;
  sqlite3_stmt *st = eddy_store_stmt(s,
    "SELECT seq, topic, id, key, value, headers FROM outbox ORDER BY seq"
    " LIMIT ?1");
  if (!st) return EDDY_ESTORE;
  sqlite3_bind_int(st, 1, max);
  return collect_rows(s, st, max, out, count, last_seq);
}

static int collect_rows(eddy_store *s, sqlite3_stmt *st, int max, row **out, size_t *count,
                        int64_t *last_seq) {
  row *rows = calloc((size_t)max, sizeof *rows);
  size_t n = 0;
  int64_t last = -1;
  int rc = 0;
  if (!rows) { sqlite3_reset(st); return eddy_store_seterr(s, EDDY_ENOMEM, "out of memory"); }
  int src;
  while ((src = sqlite3_step(st)) == SQLITE_ROW) {
    last = sqlite3_column_int64(st, 0);
    rows[n].seq = last;
    size_t tl = (size_t)sqlite3_column_bytes(st, 1);
    size_t il = (size_t)sqlite3_column_bytes(st, 2);
    size_t kl = (size_t)sqlite3_column_bytes(st, 3);
    size_t vl = (size_t)sqlite3_column_bytes(st, 4);
    size_t hl = (size_t)sqlite3_column_bytes(st, 5);
    char *m = malloc(tl + il + kl + vl + hl + 2);
    if (!m) { rc = eddy_store_seterr(s, EDDY_ENOMEM, "out of memory"); break; }
    row *r = &rows[n++];
    r->mem = m;
    r->topic = m;
    memcpy(m, sqlite3_column_text(st, 1), tl); m[tl] = '\0'; m += tl + 1;
    r->rec.id = m; r->rec.id_len = il;
    memcpy(m, sqlite3_column_text(st, 2), il); m[il] = '\0'; m += il + 1;
    r->rec.has_key = sqlite3_column_type(st, 3) != SQLITE_NULL;
    r->rec.key = m; r->rec.key_len = kl;
    if (kl) memcpy(m, sqlite3_column_blob(st, 3), kl);
    m += kl;
    r->rec.value = m; r->rec.value_len = vl;
    if (vl) memcpy(m, sqlite3_column_blob(st, 4), vl);
    m += vl;
    if (hl) memcpy(m, sqlite3_column_blob(st, 5), hl);
    r->rec.headers_raw = hl ? m : NULL;   /* stored encoded: kept as is */
    r->rec.headers_raw_len = hl;
    r->rec.partition = -1;
  }
  sqlite3_reset(st);
  if (rc == 0 && src != SQLITE_DONE && src != SQLITE_ROW)
    rc = eddy_store_sqlerr(s, src, "reading the outbox");
  *out = rows;
  *count = n;
  *last_seq = last;
  return rc;
}

static void free_rows(row *rows, size_t n) {
  for (size_t i = 0; i < n; i++) free(rows[i].mem);
  free(rows);
}

static int clear_upto(eddy_store *s, int64_t last) {
  sqlite3_stmt *st = eddy_store_stmt(s, "DELETE FROM outbox WHERE seq <= ?1");
  if (!st) return EDDY_ESTORE;
  sqlite3_bind_int64(st, 1, last);
  int src = sqlite3_step(st);
  sqlite3_reset(st);
  if (src != SQLITE_DONE) return eddy_store_sqlerr(s, src, "clearing the outbox");
  return 0;
}

int eddy_outbox_relay(eddy_store *s, int max, int default_partitions,
                      int64_t *relayed) {
  int rc = eddy_store_begin(s);
  if (rc) return rc;
  row *rows;
  size_t n;
  int64_t last;
  rc = read_rows(s, max, &rows, &n, &last);
  /* Publish runs of rows with the same topic as one produce each. */
  for (size_t i = 0; rc == 0 && i < n;) {
    size_t j = i + 1;
    while (j < n && strcmp(rows[j].topic, rows[i].topic) == 0) j++;
    rc = publish(s, rows, i, j, default_partitions);
    i = j;
  }
  if (rc == 0 && n) rc = clear_upto(s, last);
  free_rows(rows, n);
  if (rc) { eddy_store_rollback(s); return rc; }
  rc = eddy_store_commit(s);
  if (rc == 0 && relayed) *relayed += (int64_t)n;
  return rc;
}

int eddy_outbox_read(eddy_store *s, int max, eddy_outbox_rows *out) {
  memset(out, 0, sizeof *out);
  row *rows;
  size_t n;
  int64_t last;
  int rc = read_rows(s, max, &rows, &n, &last);
  if (rc == 0 && n == 0) {
    free_rows(rows, 0);
    return 0;
  }
  if (rc == 0) {
    out->topics = malloc(n * sizeof *out->topics);
    out->recs = malloc(n * sizeof *out->recs);
    if (!out->topics || !out->recs) rc = eddy_store_seterr(s, EDDY_ENOMEM, "out of memory");
  }
  if (rc) {
    free(out->topics);
    free(out->recs);
    free_rows(rows, n);
    memset(out, 0, sizeof *out);
    return rc;
  }
  for (size_t i = 0; i < n; i++) {
    out->topics[i] = rows[i].topic;
    out->recs[i] = rows[i].rec;
  }
  out->n = n;
  out->last = last;
  out->priv = rows;
  return 0;
}

void eddy_outbox_rows_free(eddy_outbox_rows *rows) {
  if (rows->priv) free_rows(rows->priv, rows->n);
  free(rows->topics);
  free(rows->recs);
  memset(rows, 0, sizeof *rows);
}

int eddy_outbox_clear(eddy_store *s, int64_t upto, uv_mutex_t *write_mu) {
  uv_mutex_lock(write_mu);
  int rc = eddy_store_begin(s);
  if (rc == 0) rc = clear_upto(s, upto);
  if (rc == 0) rc = eddy_store_commit(s);
  else eddy_store_rollback(s);
  uv_mutex_unlock(write_mu);
  return rc;
}

/* ---- timers -------------------------------------------------------------- */

int eddy_timer_add(eddy_store *s, const char *topic, const eddy_record *r, int64_t due,
                   int64_t now) {
  sqlite3_stmt *st = eddy_store_stmt(s,
    "INSERT INTO timers(due_at, topic, id, key, value, headers, created_at)"
    " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)");
  if (!st) return EDDY_ESTORE;
  sqlite3_bind_int64(st, 1, due);
  sqlite3_bind_text(st, 2, topic, -1, SQLITE_STATIC);
  sqlite3_bind_text(st, 3, r->id, (int)r->id_len, SQLITE_STATIC);
  if (r->has_key) sqlite3_bind_blob(st, 4, r->key ? r->key : "", (int)r->key_len, SQLITE_STATIC);
  sqlite3_bind_blob(st, 5, r->value ? r->value : "", (int)r->value_len, SQLITE_STATIC);
  if (r->headers_raw && r->headers_raw_len)
    sqlite3_bind_blob(st, 6, r->headers_raw, (int)r->headers_raw_len, SQLITE_STATIC);
  sqlite3_bind_int64(st, 7, now);
  int rc = sqlite3_step(st);
  sqlite3_reset(st);
  if (rc != SQLITE_DONE) return eddy_store_sqlerr(s, rc, "writing a timer");
  return 0;
}

int eddy_timers_next(eddy_store *s, int64_t *due, int64_t *count) {
  sqlite3_stmt *st = eddy_store_stmt(s, "SELECT min(due_at), count(*) FROM timers");
  if (!st) return EDDY_ESTORE;
  int rc = sqlite3_step(st);
  *due = rc == SQLITE_ROW && sqlite3_column_type(st, 0) != SQLITE_NULL
           ? sqlite3_column_int64(st, 0) : INT64_MAX;
  if (count) *count = rc == SQLITE_ROW ? sqlite3_column_int64(st, 1) : 0;
  sqlite3_reset(st);
  if (rc != SQLITE_ROW) return eddy_store_sqlerr(s, rc, "reading timers");
  return 0;
}

int eddy_timers_fire(eddy_store *s, int64_t now, int to_outbox, int max, int64_t *fired) {
  *fired = 0;
  sqlite3_stmt *st = eddy_store_stmt(s,
    "SELECT seq, topic, id, key, value, headers FROM timers WHERE due_at <= ?1"
    " ORDER BY due_at, seq LIMIT ?2");
  if (!st) return EDDY_ESTORE;
  sqlite3_bind_int64(st, 1, now);
  sqlite3_bind_int(st, 2, max);
  row *rows = NULL;
  size_t n = 0;
  int64_t last;
  int rc = collect_rows(s, st, max, &rows, &n, &last);
  for (size_t i = 0; rc == 0 && i < n; i++) {
    if (to_outbox) {
      rc = eddy_outbox_add(s, rows[i].topic, &rows[i].rec, now);
    } else {
      rc = publish(s, rows, i, i + 1, 1);
    }
  }
  sqlite3_stmt *del = rc == 0 && n ? eddy_store_stmt(s, "DELETE FROM timers WHERE seq = ?1") : NULL;
  if (rc == 0 && n && !del) rc = EDDY_ESTORE;
  for (size_t i = 0; rc == 0 && i < n; i++) {
    sqlite3_bind_int64(del, 1, rows[i].seq);
    int src = sqlite3_step(del);
    sqlite3_reset(del);
    if (src != SQLITE_DONE) rc = eddy_store_sqlerr(s, src, "clearing a timer");
  }
  if (rc == 0) *fired = (int64_t)n;
  free_rows(rows, n);
  return rc;
}

int eddy_outbox_add(eddy_store *s, const char *topic, const eddy_record *r, int64_t now) {
  sqlite3_stmt *st = eddy_store_stmt(s,
    "INSERT INTO outbox(topic, id, key, value, headers, created_at)"
    " VALUES (?1, ?2, ?3, ?4, ?5, ?6)");
  if (!st) return EDDY_ESTORE;
  sqlite3_bind_text(st, 1, topic, -1, SQLITE_STATIC);
  sqlite3_bind_text(st, 2, r->id, (int)r->id_len, SQLITE_STATIC);
  if (r->has_key) sqlite3_bind_blob(st, 3, r->key ? r->key : "", (int)r->key_len, SQLITE_STATIC);
  sqlite3_bind_blob(st, 4, r->value ? r->value : "", (int)r->value_len, SQLITE_STATIC);
  if (r->headers_raw && r->headers_raw_len)
    sqlite3_bind_blob(st, 5, r->headers_raw, (int)r->headers_raw_len, SQLITE_STATIC);
  sqlite3_bind_int64(st, 6, now);
  int rc = sqlite3_step(st);
  sqlite3_reset(st);
  if (rc != SQLITE_DONE) return eddy_store_sqlerr(s, rc, "writing to the outbox");
  return 0;
}
