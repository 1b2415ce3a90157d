/*
 * state.c - the consumers, state and dedupe tables.
 */
#include "state.h"
#include "errors.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

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

/* Dedupe records are kept per committed batch: one row holds a batch's
 * keys, sorted, in a blob (u32 n, u32 offsets[n + 1], the bytes), with its
 * lowest and highest key.  A message costs a few bytes of a blob instead of
 * a B-tree insert, and expiry drops whole rows.  Lookups find the rows whose
 * [lo, hi] holds the key and search their blobs. */

static uint32_t get32(const unsigned char *p) {
  return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
         (uint32_t)p[3] << 24;
}

static void put32(unsigned char *p, uint32_t v) {
  p[0] = (unsigned char)v; p[1] = (unsigned char)(v >> 8);
  p[2] = (unsigned char)(v >> 16); p[3] = (unsigned char)(v >> 24);
}

static int keycmp(const char *a, size_t an, const char *b, size_t bn) {
  int c = memcmp(a, b, an < bn ? an : bn);
  return c ? c : (an > bn) - (an < bn);
}

/* The blob's key i; 0 when the blob is malformed. */
static int blob_key(const unsigned char *b, size_t len, uint32_t n, uint32_t i,
                    const char **k, size_t *kl) {
  size_t head = 4 + 4 * ((size_t)n + 1);
  if (head > len) return 0;
  uint32_t from = get32(b + 4 + 4 * i), to = get32(b + 8 + 4 * i);
  if (from > to || head + to > len) return 0;
  *k = (const char *)b + head + from;
  *kl = to - from;
  return 1;
}

/* Index of the first key >= key in the blob (n when none). */
static uint32_t lower_bound(const unsigned char *b, size_t len, uint32_t n,
                            const char *key, size_t kl) {
  uint32_t lo = 0, hi = n;
  while (lo < hi) {
    uint32_t mid = lo + (hi - lo) / 2;
    const char *k;
    size_t l;
    if (!blob_key(b, len, n, mid, &k, &l)) return n;
    if (keycmp(k, l, key, kl) < 0) lo = mid + 1; else hi = mid;
  }
  return lo;
}

int eddy_dedupe_seen(eddy_store *s, int64_t consumer_id, const char *dkey,
                     size_t len) {
  return eddy_dedupe_when(s, consumer_id, dkey, len, NULL);
}

int eddy_dedupe_when(eddy_store *s, int64_t consumer_id, const char *dkey, size_t len,
                     int64_t *at) {
  sqlite3_stmt *st = eddy_store_stmt(s,
    "SELECT keys, created_at FROM dedupe WHERE consumer_id = ?1 AND hi >= ?2 AND lo <= ?2");
  if (!st) return EDDY_ESTORE;
  sqlite3_bind_int64(st, 1, consumer_id);
  sqlite3_bind_text(st, 2, dkey, (int)len, SQLITE_STATIC);
  int rc = SQLITE_DONE, found = 0;
  while (!found && (rc = sqlite3_step(st)) == SQLITE_ROW) {
    const unsigned char *b = sqlite3_column_blob(st, 0);
    size_t bl = (size_t)sqlite3_column_bytes(st, 0);
    if (!b || bl < 4) continue;
    uint32_t n = get32(b), i = lower_bound(b, bl, n, dkey, len);
    const char *k;
    size_t kl;
    if (i < n && blob_key(b, bl, n, i, &k, &kl) && keycmp(k, kl, dkey, len) == 0) {
      found = 1;
      if (at) *at = sqlite3_column_int64(st, 1);
    }
  }
  sqlite3_reset(st);
  if (found) return 1;
  if (rc != SQLITE_DONE) return eddy_store_sqlerr(s, rc, "reading dedupe records");
  return 0;
}

struct sorted { const char *k; size_t n; };

static int by_sorted(const void *a, const void *b) {
  const struct sorted *x = a, *y = b;
  return keycmp(x->k, x->n, y->k, y->n);
}

int eddy_dedupe_add(eddy_store *s, int64_t consumer_id, const char **keys,
                    const size_t *lens, int n, int64_t now_ms) {
  if (n <= 0) return 0;
  struct sorted *v = malloc((size_t)n * sizeof *v);
  if (!v) return eddy_store_seterr(s, EDDY_ENOMEM, "out of memory");
  size_t bytes = 0;
  for (int i = 0; i < n; i++) { v[i].k = keys[i]; v[i].n = lens[i]; bytes += lens[i]; }
  qsort(v, (size_t)n, sizeof *v, by_sorted);
  int m = 0;
  for (int i = 0; i < n; i++)
    if (m == 0 || by_sorted(&v[m - 1], &v[i]) != 0) v[m++] = v[i];
  size_t head = 4 + 4 * ((size_t)m + 1);
  unsigned char *b = malloc(head + bytes);
  if (!b) { free(v); return eddy_store_seterr(s, EDDY_ENOMEM, "out of memory"); }
  put32(b, (uint32_t)m);
  size_t at = 0;
  for (int i = 0; i < m; i++) {
    put32(b + 4 + 4 * (size_t)i, (uint32_t)at);
    memcpy(b + head + at, v[i].k, v[i].n);
    at += v[i].n;
  }
  put32(b + 4 + 4 * (size_t)m, (uint32_t)at);
  sqlite3_stmt *st = eddy_store_stmt(s,
    "INSERT INTO dedupe(consumer_id, lo, hi, n, keys, created_at)"
    " VALUES(?1, ?2, ?3, ?4, ?5, ?6)");
  int rc = 0;
  if (!st) rc = EDDY_ESTORE;
  else {
    sqlite3_bind_int64(st, 1, consumer_id);
    sqlite3_bind_text(st, 2, v[0].k, (int)v[0].n, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, v[m - 1].k, (int)v[m - 1].n, SQLITE_STATIC);
    sqlite3_bind_int(st, 4, m);
    sqlite3_bind_blob64(st, 5, b, head + at, SQLITE_STATIC);
    sqlite3_bind_int64(st, 6, now_ms);
    int src = sqlite3_step(st);
    sqlite3_reset(st);
    if (src != SQLITE_DONE) rc = eddy_store_sqlerr(s, src, "writing dedupe records");
  }
  free(b);
  free(v);
  return rc;
}

int eddy_dedupe_expire(eddy_store *s, int64_t cutoff_ms, int64_t *removed) {
  /* Whole batches expire: a scan of one row per committed batch. */
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
    "SELECT keys FROM dedupe WHERE consumer_id = ?1 AND hi >= ?2 AND lo <= ?3");
  if (!st) return EDDY_ESTORE;
  sqlite3_bind_int64(st, 1, consumer_id);
  sqlite3_bind_text(st, 2, lo, -1, SQLITE_STATIC);
  sqlite3_bind_text(st, 3, hi, -1, SQLITE_STATIC);
  size_t lol = strlen(lo), hil = strlen(hi);
  int rc = SQLITE_DONE;
  *rows = 0;
  while (*rows < max && (rc = sqlite3_step(st)) == SQLITE_ROW) {
    const unsigned char *b = sqlite3_column_blob(st, 0);
    size_t bl = (size_t)sqlite3_column_bytes(st, 0);
    if (!b || bl < 4) continue;
    uint32_t n = get32(b);
    for (uint32_t i = lower_bound(b, bl, n, lo, lol); i < n && *rows < max; i++) {
      const char *k;
      size_t kl;
      if (!blob_key(b, bl, n, i, &k, &kl) || keycmp(k, kl, hi, hil) > 0) break;
      fn(ud, k, kl);
      (*rows)++;
    }
  }
  sqlite3_reset(st);
  if (*rows >= max) return 0;
  if (rc != SQLITE_DONE) return eddy_store_sqlerr(s, rc, "reading dedupe records");
  return 0;
}
