/*
 * crashes.c - the crashes table (see crashes.h).
 */
#include "crashes.h"
#include "errors.h"

#include <sqlite3.h>

int eddy_crash_add(eddy_store *s, int64_t consumer_id, const char *topic, int partition,
                   int64_t offset, int signal, int stuck, int64_t at, int *runs) {
  int rc = eddy_store_begin(s);
  if (rc) return rc;
  sqlite3_stmt *st = eddy_store_stmt(s,
    "INSERT INTO crashes(consumer, topic, partition, offset, runs, signal, stuck, last_at)"
    " VALUES (?1, ?2, ?3, ?4, 1, ?5, ?6, ?7)"
    " ON CONFLICT(consumer, topic, partition, offset) DO UPDATE SET runs = runs + 1,"
    " signal = excluded.signal, stuck = excluded.stuck, last_at = excluded.last_at"
    " RETURNING runs");
  if (!st) { eddy_store_rollback(s); return EDDY_ESTORE; }
  sqlite3_bind_int64(st, 1, consumer_id);
  sqlite3_bind_text(st, 2, topic, -1, SQLITE_STATIC);
  sqlite3_bind_int(st, 3, partition);
  sqlite3_bind_int64(st, 4, offset);
  sqlite3_bind_int(st, 5, signal);
  sqlite3_bind_int(st, 6, stuck);
  sqlite3_bind_int64(st, 7, at);
  int step = sqlite3_step(st);
  if (step == SQLITE_ROW) *runs = sqlite3_column_int(st, 0);
  while (step == SQLITE_ROW) step = sqlite3_step(st);
  sqlite3_reset(st);
  if (step != SQLITE_DONE) {
    rc = eddy_store_sqlerr(s, step, "counting a crash");
    eddy_store_rollback(s);
    return rc;
  }
  return eddy_store_commit(s);
}

int eddy_crash_foreach(eddy_store *s, void (*fn)(void *ud, const eddy_crash_row *c),
                       void *ud) {
  sqlite3_stmt *st = eddy_store_stmt(s,
    "SELECT consumer, topic, partition, offset, runs, signal, stuck, last_at FROM crashes");
  if (!st) return EDDY_ESTORE;
  int step;
  while ((step = sqlite3_step(st)) == SQLITE_ROW) {
    eddy_crash_row c = {
      sqlite3_column_int64(st, 0), (const char *)sqlite3_column_text(st, 1),
      sqlite3_column_int(st, 2), sqlite3_column_int64(st, 3), sqlite3_column_int(st, 4),
      sqlite3_column_int(st, 5), sqlite3_column_int(st, 6), sqlite3_column_int64(st, 7)
    };
    fn(ud, &c);
  }
  sqlite3_reset(st);
  if (step != SQLITE_DONE) return eddy_store_sqlerr(s, step, "reading crashes");
  return 0;
}

int eddy_crash_forget(eddy_store *s, int64_t consumer_id, const char *topic, int partition,
                      int64_t offset) {
  sqlite3_stmt *st = eddy_store_stmt(s,
    "DELETE FROM crashes WHERE consumer = ?1 AND topic = ?2 AND partition = ?3"
    " AND offset = ?4");
  if (!st) return EDDY_ESTORE;
  sqlite3_bind_int64(st, 1, consumer_id);
  sqlite3_bind_text(st, 2, topic, -1, SQLITE_STATIC);
  sqlite3_bind_int(st, 3, partition);
  sqlite3_bind_int64(st, 4, offset);
  int step = sqlite3_step(st);
  sqlite3_reset(st);
  if (step != SQLITE_DONE) return eddy_store_sqlerr(s, step, "forgetting a crash");
  return 0;
}
