/*
 * cli_trace.c - eddy trace ID: the path of one correlation id through the
 * store.
 *
 * The events are the log's messages whose id or eddy-correlation-id is ID
 * (a scan of the log: for inspection, not for a hot path), in time order.
 * For each, the consumers that read its topic (they have offsets there)
 * say what became of it: handled (its dedupe record, with the time its
 * batch committed), quarantined (the dlq entry and its error), or not yet.
 */
#include "cli.h"
#include "buf.h"
#include "errors.h"
#include "headers.h"
#include "quarantine.h"
#include "state.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sqlite3.h>

typedef struct event {
  char *topic, *id, *type, *cause, *trace;
  int partition;
  int64_t offset, ts, topic_id;
} event;

static char *header(const void *h, size_t n, const char *name) {
  size_t len = 0;
  const char *v = eddy_headers_get(h, n, name, &len);
  return v ? strndup(v, len) : NULL;
}

static int by_time(const void *a, const void *b) {
  const event *x = a, *y = b;
  if (x->ts != y->ts) return x->ts < y->ts ? -1 : 1;
  return strcmp(x->id, y->id);
}

/* What consumer `group` did with event e: a line, or nothing when it has
 * not read that far. */
static void fate(eddy_store *s, const event *e, const char *group, int json, eddy_buf *b,
                 int *first) {
  int64_t cid = 0, at = 0, committed = -1;
  if (eddy_consumer_lookup(s, group, &cid) != 0) return;
  const char *what = NULL, *error = NULL;
  char why[512] = "";
  /* Quarantined, this very message (a replay of it has another offset)? */
  sqlite3_stmt *st = eddy_store_stmt(s,
    "SELECT quarantined_at, error FROM dlq WHERE consumer = ?1 AND id = ?2"
    " AND topic = ?3 AND partition = ?4 AND offset = ?5 ORDER BY seq DESC LIMIT 1");
  if (st) {
    sqlite3_bind_text(st, 1, group, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, e->id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, e->topic, -1, SQLITE_STATIC);
    sqlite3_bind_int(st, 4, e->partition);
    sqlite3_bind_int64(st, 5, e->offset);
    if (sqlite3_step(st) == SQLITE_ROW) {
      what = "quarantined";
      at = sqlite3_column_int64(st, 0);
      snprintf(why, sizeof why, "%s", (const char *)sqlite3_column_text(st, 1));
      error = why;
    }
    sqlite3_reset(st);
  }
  if (!what && eddy_dedupe_when(s, cid, e->id, strlen(e->id), &at) == 1) what = "handled";
  if (!what) {
    st = eddy_store_stmt(s, "SELECT offset FROM group_offsets WHERE group_name = ?1"
                            " AND topic_id = ?2 AND partition = ?3");
    if (st) {
      sqlite3_bind_text(st, 1, group, -1, SQLITE_STATIC);
      sqlite3_bind_int64(st, 2, e->topic_id);
      sqlite3_bind_int(st, 3, e->partition);
      if (sqlite3_step(st) == SQLITE_ROW) committed = sqlite3_column_int64(st, 0);
      sqlite3_reset(st);
    }
    /* Past its offset with no dedupe record: handled with dedupe off (or a
     * key of its own), or a message of another type a rule passed over. */
    what = committed > e->offset ? "passed" : "waiting";
    at = 0;
  }
  char t[32] = "";
  if (at) eddy_format_time(at, t);
  if (json) {
    eddy_buf_puts(b, *first ? "{\"consumer\":" : ",{\"consumer\":");
    eddy_buf_json_str(b, group, strlen(group));
    eddy_buf_printf(b, ",\"result\":\"%s\",\"at\":", what);
    if (at) eddy_buf_json_str(b, t, strlen(t)); else eddy_buf_puts(b, "null");
    eddy_buf_puts(b, ",\"error\":");
    if (error) eddy_buf_json_str(b, error, strlen(error)); else eddy_buf_puts(b, "null");
    eddy_buf_puts(b, "}");
  } else {
    size_t n = strcspn(why, "\n");
    size_t start = b->len;
    eddy_buf_printf(b, "    %-20s %-12s %-24s %.*s", group, what, t, (int)n, why);
    while (b->len > start && b->data[b->len - 1] == ' ') b->len--;
    eddy_buf_puts(b, "\n");
  }
  *first = 0;
}

static int run_trace(const eddy_cli_args *a) {
  const char *want = a->pos[0];
  int json = eddy_cli_flag(a, "json");
  eddy_store *s = eddy_cli_open(a, EDDY_CLI_READ);
  if (!s) return EDDY_EXIT_FAIL;
  event *ev = NULL;
  size_t n = 0, cap = 0;
  int rc = 0;
  sqlite3_stmt *st = eddy_store_stmt(s,
    "SELECT t.name, m.partition, m.offset, m.id, m.headers, m.ts, t.id"
    " FROM messages m JOIN topics t ON t.id = m.topic_id");
  if (!st) rc = eddy_cli_fail(a, "%s", eddy_store_errmsg(s));
  int src = SQLITE_DONE;
  while (!rc && (src = sqlite3_step(st)) == SQLITE_ROW) {
    const char *id = (const char *)sqlite3_column_text(st, 3);
    const void *h = sqlite3_column_blob(st, 4);
    size_t hl = (size_t)sqlite3_column_bytes(st, 4);
    size_t cl = 0;
    const char *corr = h ? eddy_headers_get(h, hl, "eddy-correlation-id", &cl) : NULL;
    int match = strcmp(id, want) == 0 ||
                (corr && cl == strlen(want) && memcmp(corr, want, cl) == 0);
    if (!match) continue;
    if (n == cap) {
      cap = cap ? cap * 2 : 16;
      event *x = realloc(ev, cap * sizeof *x);
      if (!x) { rc = eddy_cli_fail(a, "out of memory"); break; }
      ev = x;
    }
    event *e = &ev[n++];
    memset(e, 0, sizeof *e);
    e->topic = strdup((const char *)sqlite3_column_text(st, 0));
    e->partition = sqlite3_column_int(st, 1);
    e->offset = sqlite3_column_int64(st, 2);
    e->id = strdup(id);
    e->ts = sqlite3_column_int64(st, 5);
    e->topic_id = sqlite3_column_int64(st, 6);
    if (h) {
      e->type = header(h, hl, "eddy-type");
      e->cause = header(h, hl, "eddy-causation-id");
      e->trace = header(h, hl, "traceparent");
    }
  }
  if (st) sqlite3_reset(st);
  if (!rc && src != SQLITE_DONE && src != SQLITE_ROW) {
    eddy_store_sqlerr(s, src, "reading the log");
    rc = eddy_cli_fail(a, "%s", eddy_store_errmsg(s));
  }
  if (!rc && n == 0)
    rc = eddy_cli_fail(a, "no event with id or correlation id '%s' in the log", want);
  if (!rc) {
    qsort(ev, n, sizeof *ev, by_time);
    eddy_buf b = EDDY_BUF_INIT;
    if (!json) {
      char tr[40] = "";
      for (size_t i = 0; i < n && !tr[0]; i++)
        if (ev[i].trace && strlen(ev[i].trace) == 55) snprintf(tr, sizeof tr, "%.32s", ev[i].trace + 3);
      eddy_buf_printf(&b, "correlation %s: %zu event%s%s%s\n", want, n, n == 1 ? "" : "s",
                      tr[0] ? ", trace " : "", tr);
    }
    for (size_t i = 0; i < n; i++) {
      event *e = &ev[i];
      char t[32];
      eddy_format_time(e->ts, t);
      if (json) {
        eddy_buf_puts(&b, "{\"id\":");
        eddy_buf_json_str(&b, e->id, strlen(e->id));
        eddy_buf_puts(&b, ",\"topic\":");
        eddy_buf_json_str(&b, e->topic, strlen(e->topic));
        eddy_buf_printf(&b, ",\"partition\":%d,\"offset\":%" PRId64 ",\"time\":\"%s\"",
                        e->partition, e->offset, t);
        const char *f[3] = { e->type, e->cause, e->trace };
        const char *names[3] = { "type", "causation_id", "traceparent" };
        for (int k = 0; k < 3; k++) {
          eddy_buf_printf(&b, ",\"%s\":", names[k]);
          if (f[k]) eddy_buf_json_str(&b, f[k], strlen(f[k])); else eddy_buf_puts(&b, "null");
        }
        eddy_buf_puts(&b, ",\"consumers\":[");
      } else {
        char where[300];
        snprintf(where, sizeof where, "%s/%d@%" PRId64, e->topic, e->partition, e->offset);
        eddy_buf_printf(&b, "%s  %-28s %-20s %s", t, where, e->type ? e->type : "-", e->id);
        if (e->cause && strcmp(e->cause, e->id) != 0)
          eddy_buf_printf(&b, " <- %s", e->cause);
        eddy_buf_puts(&b, "\n");
      }
      /* The consumers that read this topic, by name. */
      sqlite3_stmt *g = eddy_store_stmt(s, "SELECT DISTINCT group_name FROM group_offsets"
                                           " WHERE topic_id = ?1 ORDER BY group_name");
      int first = 1;
      if (g) {
        sqlite3_bind_int64(g, 1, e->topic_id);
        char *groups[256];
        int ng = 0;
        while (ng < 256 && sqlite3_step(g) == SQLITE_ROW)
          groups[ng++] = strdup((const char *)sqlite3_column_text(g, 0));
        sqlite3_reset(g);
        for (int k = 0; k < ng; k++) {
          if (groups[k]) fate(s, e, groups[k], json, &b, &first);
          free(groups[k]);
        }
      }
      if (json) eddy_buf_puts(&b, "]}\n");
    }
    if (b.oom) rc = eddy_cli_fail(a, "out of memory");
    else fwrite(b.data, 1, b.len, stdout);
    eddy_buf_free(&b);
  }
  for (size_t i = 0; i < n; i++) {
    free(ev[i].topic); free(ev[i].id); free(ev[i].type); free(ev[i].cause); free(ev[i].trace);
  }
  free(ev);
  eddy_store_close(s);
  return rc;
}

const eddy_cli_cmd eddy_cmd_trace = {
  "trace", "ID [--json]", "the path of one correlation id: each event, who handled it, when",
  "ID is a correlation id (that of the first event of a request, or any\n"
  "event's id).  Prints every event of the log that carries it, oldest\n"
  "first, with its type and the event that caused it, and under each the\n"
  "consumers that read its topic: handled (when its batch committed),\n"
  "quarantined (with the error), passed (read past, no dedupe record: dedupe\n"
  "off, or another type), or waiting.  It scans the log; on Kafka the\n"
  "events are not in the data directory.\n",
  (const eddy_cli_opt[]){ { "json", 'j', NULL, "one JSON object per event" }, { 0 } },
  1, 1, run_trace
};
