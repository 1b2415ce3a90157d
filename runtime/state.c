/*
 * state.c - the consumers, state and dedupe tables.
 */
#include "state.h"
#include "errors.h"

#include <sqlite3.h>

int eddy_consumer_lookup(eddy_store *s, const char *name, int64_t *id) {
  sqlite3_stmt *st = eddy_store_stmt(s, "SELECT id FROM consumers WHERE name = ?1");
  if (!st) return EDDY_ESTORE;
  sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
  int rc = sqlite3_step(st);
  if (rc == SQLITE_ROW) *id = sqlite3_column_int64(st, 0);
  sqlite3_reset(st);
  if (rc == SQLITE_ROW) return 0;
  if (rc == SQLITE_DONE)
    return eddy_store_seterr(s, EDDY_ENOENT, "unknown consumer '%s'", name);
  return eddy_store_sqlerr(s, rc, "looking up a consumer");
}

int eddy_consumer_register(eddy_store *s, const char *name, int64_t *id) {
  if (eddy_consumer_lookup(s, name, id) == 0) return 0;
  int own = !eddy_store_in_tx(s);
  int rc = own ? eddy_store_begin(s) : 0;
  if (rc) return rc;
  sqlite3_stmt *st = eddy_store_stmt(s,
    "INSERT OR IGNORE INTO consumers(name, created_at) VALUES(?1, ?2)");
  if (!st) { if (own) eddy_store_rollback(s); return EDDY_ESTORE; }
  sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
  sqlite3_bind_int64(st, 2, eddy_now_ms());
  int src = sqlite3_step(st);
  sqlite3_reset(st);
  if (src != SQLITE_DONE) {
    rc = eddy_store_sqlerr(s, src, "registering a consumer");
    if (own) eddy_store_rollback(s);
    return rc;
  }
  rc = eddy_consumer_lookup(s, name, id);
  if (own) {
    if (rc == 0) rc = eddy_store_commit(s);
    else eddy_store_rollback(s);
  }
  return rc;
}

int eddy_state_get(eddy_store *s, int64_t consumer_id, const char *key,
                   size_t key_len, eddy_buf *value) {
  sqlite3_stmt *st = eddy_store_stmt(s,
    "SELECT value FROM state WHERE consumer_id = ?1 AND key = ?2");
  if (!st) return EDDY_ESTORE;
  sqlite3_bind_int64(st, 1, consumer_id);
  sqlite3_bind_text(st, 2, key, (int)key_len, SQLITE_STATIC);
  int rc = sqlite3_step(st);
  if (rc == SQLITE_ROW) {
    eddy_buf_reset(value);
    eddy_buf_add(value, sqlite3_column_text(st, 0),
                 (size_t)sqlite3_column_bytes(st, 0));
    sqlite3_reset(st);
    if (value->oom) return eddy_store_seterr(s, EDDY_ENOMEM, "out of memory");
    return 1;
  }
  sqlite3_reset(st);
  if (rc == SQLITE_DONE) return 0;
  return eddy_store_sqlerr(s, rc, "reading state");
}

int eddy_state_put(eddy_store *s, int64_t consumer_id, const char *key,
                   size_t key_len, const char *value, size_t value_len,
                   int64_t now_ms) {
  sqlite3_stmt *st = value
    ? eddy_store_stmt(s,
        "INSERT INTO state(consumer_id, key, value, updated_at)"
        " VALUES(?1, ?2, ?3, ?4) ON CONFLICT(consumer_id, key)"
        " DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at")
    : eddy_store_stmt(s, "DELETE FROM state WHERE consumer_id = ?1 AND key = ?2");
  if (!st) return EDDY_ESTORE;
  sqlite3_bind_int64(st, 1, consumer_id);
  sqlite3_bind_text(st, 2, key, (int)key_len, SQLITE_STATIC);
  if (value) {
    sqlite3_bind_text(st, 3, value, (int)value_len, SQLITE_STATIC);
    sqlite3_bind_int64(st, 4, now_ms);
  }
  int rc = sqlite3_step(st);
  sqlite3_reset(st);
  if (rc != SQLITE_DONE) return eddy_store_sqlerr(s, rc, "writing state");
  return 0;
}

int eddy_state_foreach(eddy_store *s, int64_t consumer_id,
                       int (*fn)(void *ud, const char *key, size_t key_len,
                                 const char *value, size_t value_len,
                                 int64_t updated_at),
                       void *ud) {
  sqlite3_stmt *st = eddy_store_stmt(s,
    "SELECT key, value, updated_at FROM state WHERE consumer_id = ?1"
    " ORDER BY key");
  if (!st) return EDDY_ESTORE;
  sqlite3_bind_int64(st, 1, consumer_id);
  int rc;
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    int r = fn(ud, (const char *)sqlite3_column_text(st, 0),
               (size_t)sqlite3_column_bytes(st, 0),
               (const char *)sqlite3_column_text(st, 1),
               (size_t)sqlite3_column_bytes(st, 1), sqlite3_column_int64(st, 2));
    if (r) { sqlite3_reset(st); return r; }
  }
  sqlite3_reset(st);
  if (rc != SQLITE_DONE) return eddy_store_sqlerr(s, rc, "listing state");
  return 0;
}

int eddy_dedupe_seen(eddy_store *s, int64_t consumer_id, const char *dkey,
                     size_t len) {
  sqlite3_stmt *st = eddy_store_stmt(s,
    "SELECT 1 FROM dedupe WHERE consumer_id = ?1 AND dkey = ?2");
  if (!st) return EDDY_ESTORE;
  sqlite3_bind_int64(st, 1, consumer_id);
  sqlite3_bind_text(st, 2, dkey, (int)len, SQLITE_STATIC);
  int rc = sqlite3_step(st);
  sqlite3_reset(st);
  if (rc == SQLITE_ROW) return 1;
  if (rc == SQLITE_DONE) return 0;
  return eddy_store_sqlerr(s, rc, "reading dedupe records");
}

int eddy_dedupe_record(eddy_store *s, int64_t consumer_id, const char *dkey,
                       size_t len, int64_t now_ms) {
  sqlite3_stmt *st = eddy_store_stmt(s,
    "INSERT OR IGNORE INTO dedupe(consumer_id, dkey, created_at)"
    " VALUES(?1, ?2, ?3)");
  if (!st) return EDDY_ESTORE;
  sqlite3_bind_int64(st, 1, consumer_id);
  sqlite3_bind_text(st, 2, dkey, (int)len, SQLITE_STATIC);
  sqlite3_bind_int64(st, 3, now_ms);
  int rc = sqlite3_step(st);
  sqlite3_reset(st);
  if (rc != SQLITE_DONE) return eddy_store_sqlerr(s, rc, "writing a dedupe record");
  return sqlite3_changes(sqlite3_db_handle(st)) > 0;
}

int eddy_dedupe_expire(eddy_store *s, int64_t cutoff_ms, int64_t *removed) {
  /* A full scan: run rarely (the runner does it hourly).  Fine up to
   * millions of records; past that, windowed tables would drop whole. */
  sqlite3_stmt *st = eddy_store_stmt(s, "DELETE FROM dedupe WHERE created_at < ?1");
  if (!st) return EDDY_ESTORE;
  sqlite3_bind_int64(st, 1, cutoff_ms);
  int rc = sqlite3_step(st);
  sqlite3_reset(st);
  if (rc != SQLITE_DONE) return eddy_store_sqlerr(s, rc, "expiring dedupe records");
  if (removed) *removed += sqlite3_changes(sqlite3_db_handle(st));
  return 0;
}

int eddy_dedupe_range(eddy_store *s, int64_t consumer_id, const char *lo,
                      const char *hi, int max,
                      void (*fn)(void *ud, const char *dkey, size_t len),
                      void *ud, int64_t *rows) {
  sqlite3_stmt *st = eddy_store_stmt(s,
    "SELECT dkey FROM dedupe WHERE consumer_id = ?1 AND dkey >= ?2 AND dkey <= ?3"
    " LIMIT ?4");
  if (!st) return EDDY_ESTORE;
  sqlite3_bind_int64(st, 1, consumer_id);
  sqlite3_bind_text(st, 2, lo, -1, SQLITE_STATIC);
  sqlite3_bind_text(st, 3, hi, -1, SQLITE_STATIC);
  sqlite3_bind_int(st, 4, max);
  int rc;
  *rows = 0;
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    fn(ud, (const char *)sqlite3_column_text(st, 0), (size_t)sqlite3_column_bytes(st, 0));
    (*rows)++;
  }
  sqlite3_reset(st);
  if (rc != SQLITE_DONE) return eddy_store_sqlerr(s, rc, "reading dedupe records");
  return 0;
}
