/*
 * metrics.c - what `eddy run` serves at /metrics (see metrics.h).
 */
#include "metrics.h"
#include "errors.h"
#include "kafka.h"
#include "ksource.h"
#include "outbox.h"
#include "quarantine.h"
#include "reload.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <sqlite3.h>

/* A label value, escaped as the text format asks (\\, \", \n). */
static void label(eddy_buf *b, const char *s) {
  for (; *s; s++) {
    if (*s == '\\' || *s == '"') { eddy_buf_printf(b, "\\%c", *s); continue; }
    if (*s == '\n') { eddy_buf_puts(b, "\\n"); continue; }
    eddy_buf_add(b, s, 1);
  }
}

static void head(eddy_buf *b, const char *name, const char *type, const char *help) {
  eddy_buf_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* name{consumer="c"} v */
static void per_consumer(eddy_buf *b, const char *name, const char *consumer, int64_t v) {
  eddy_buf_printf(b, "%s{consumer=\"", name);
  label(b, consumer);
  eddy_buf_printf(b, "\"} %" PRId64 "\n", v);
}

/* SLA breaches by consumer and event type.  Types come from headers, so
 * the table is bounded: past EDDY_SLA_SLOTS pairs, breaches are counted
 * under type "other". */
#define EDDY_SLA_SLOTS 512
static struct { int consumer; char *type; int64_t n; } sla[EDDY_SLA_SLOTS];
static int nsla;
static pthread_mutex_t sla_mu = PTHREAD_MUTEX_INITIALIZER;

void eddy_metrics_sla_breach(eddy_runner *r, int consumer, const char *type, size_t len) {
  (void)r;
  pthread_mutex_lock(&sla_mu);
  int i = 0;
  while (i < nsla && !(sla[i].consumer == consumer && strlen(sla[i].type) == len &&
                       memcmp(sla[i].type, type, len) == 0) &&
         !(nsla == EDDY_SLA_SLOTS && sla[i].consumer == consumer &&
           strcmp(sla[i].type, "other") == 0))
    i++;
  if (i == nsla && nsla < EDDY_SLA_SLOTS) {
    char *t = nsla == EDDY_SLA_SLOTS - 1 ? strdup("other") : strndup(type, len);
    if (t) {
      sla[nsla].consumer = consumer;
      sla[nsla].type = t;
      nsla++;
    }
  }
  if (i < nsla) sla[i].n++;
  pthread_mutex_unlock(&sla_mu);
}

static void sla_breaches(eddy_runner *r, eddy_buf *b) {
  head(b, "eddy_sla_breaches_total", "counter",
       "Events handled later after they were made than their type's sla.max_lag.");
  pthread_mutex_lock(&sla_mu);
  for (int i = 0; i < nsla; i++) {
    if (sla[i].consumer >= r->nconsumers) continue;
    eddy_buf_puts(b, "eddy_sla_breaches_total{consumer=\"");
    label(b, r->consumers[sla[i].consumer].name);
    eddy_buf_puts(b, "\",type=\"");
    label(b, sla[i].type);
    eddy_buf_printf(b, "\"} %" PRId64 "\n", sla[i].n);
  }
  pthread_mutex_unlock(&sla_mu);
}

/* The consumers to show: the current generation's active ones. */
#define EACH_CONSUMER(r, i) \
  for (int i = 0; i < (r)->nconsumers; i++) if ((r)->consumers[i].active)

static void counters(eddy_runner *r, eddy_buf *b) {
  static const struct { const char *name, *help; size_t off; } c[] = {
    { "eddy_messages_received_total", "Messages read for the consumer.",
      offsetof(eddy_cmetrics, received) },
    { "eddy_messages_handled_total", "Messages whose handler succeeded, committed.",
      offsetof(eddy_cmetrics, handled) },
    { "eddy_handler_failures_total", "Handler calls that raised an error.",
      offsetof(eddy_cmetrics, failed) },
    { "eddy_messages_retried_total", "Failed messages parked for a retry.",
      offsetof(eddy_cmetrics, retried) },
    { "eddy_messages_deduplicated_total", "Messages skipped as duplicates.",
      offsetof(eddy_cmetrics, deduplicated) },
    { "eddy_messages_quarantined_total", "Messages quarantined (dead-lettered).",
      offsetof(eddy_cmetrics, quarantined) },
  };
  for (size_t k = 0; k < sizeof c / sizeof c[0]; k++) {
    head(b, c[k].name, "counter", c[k].help);
    EACH_CONSUMER(r, i) {
      _Atomic int64_t *v = (_Atomic int64_t *)((char *)&r->cm[i] + c[k].off);
      per_consumer(b, c[k].name, r->consumers[i].name, atomic_load(v));
    }
  }
  head(b, "eddy_parked_messages", "gauge",
       "Messages waiting for a retry (each holds back its key's later messages).");
  EACH_CONSUMER(r, i) per_consumer(b, "eddy_parked_messages", r->consumers[i].name,
                                   atomic_load(&r->cm[i].parked));
}

static void latency(eddy_runner *r, eddy_buf *b) {
  const char *name = "eddy_handler_duration_seconds";
  head(b, name, "histogram", "Time in the handler per call.");
  EACH_CONSUMER(r, i) {
    eddy_cmetrics *m = &r->cm[i];
    uint64_t cum = 0;
    for (int k = 0; k <= EDDY_LAT_BUCKETS; k++) {
      cum += atomic_load(&m->lat[k]);
      eddy_buf_printf(b, "%s_bucket{consumer=\"", name);
      label(b, r->consumers[i].name);
      if (k < EDDY_LAT_BUCKETS) eddy_buf_printf(b, "\",le=\"%g\"} %" PRIu64 "\n",
                                                eddy_lat_bounds[k], cum);
      else eddy_buf_printf(b, "\",le=\"+Inf\"} %" PRIu64 "\n", cum);
    }
    eddy_buf_printf(b, "%s_sum{consumer=\"", name);
    label(b, r->consumers[i].name);
    eddy_buf_printf(b, "\"} %.6f\n", (double)atomic_load(&m->lat_sum_us) / 1e6);
    eddy_buf_printf(b, "%s_count{consumer=\"", name);
    label(b, r->consumers[i].name);
    eddy_buf_printf(b, "\"} %" PRIu64 "\n", atomic_load(&m->lat_count));
  }
}

/* The lag of cursor c, or -1 when its partition's end (or, on Kafka, its
 * start) is not known. */
static int64_t cursor_lag(eddy_runner *r, eddy_cursor *c) {
  if (!c->live || atomic_load(&c->retired_gen) || atomic_load(&c->revoked) ||
      c->start_unknown)
    return -1;
  int64_t start = 0, end = 0;
  int rc = r->kafka ? eddy_ksource_high(r->ksource, c, &end)
                    : eddy_log_offsets(r->store, c->topic, c->partition, &start, &end);
  if (rc != 0) return -1;
  uv_mutex_lock(&r->write_mu);
  int64_t committed = c->committed;
  uv_mutex_unlock(&r->write_mu);
  return end > committed ? end - committed : 0;
}

void eddy_metrics_consumer(eddy_runner *r, int consumer, eddy_consumer_stats *s) {
  memset(s, 0, sizeof *s);
  for (int k = 0; k < r->ncursors; k++) {
    if (r->cursors[k]->consumer != consumer) continue;
    int64_t v = cursor_lag(r, r->cursors[k]);
    if (v > 0) s->lag += v;
  }
  s->parked = atomic_load(&r->cm[consumer].parked);
  int64_t oldest = 0;
  if (consumer < r->nconsumers)
    eddy_dlq_depth(r->store, r->consumers[consumer].name, &s->quarantined, &oldest);
}

/* Lag: messages in the partition past the consumer's committed offset. */
static void lag(eddy_runner *r, eddy_buf *b) {
  head(b, "eddy_consumer_lag", "gauge",
       "Messages in the partition not yet committed by the consumer.");
  for (int k = 0; k < r->ncursors; k++) {
    eddy_cursor *c = r->cursors[k];
    if (c->consumer >= r->nconsumers || !r->consumers[c->consumer].active) continue;
    int64_t v = cursor_lag(r, c);
    if (v < 0) continue;
    eddy_buf_puts(b, "eddy_consumer_lag{consumer=\"");
    label(b, r->consumers[c->consumer].name);
    eddy_buf_puts(b, "\",topic=\"");
    label(b, c->topic);
    eddy_buf_printf(b, "\",partition=\"%d\"} %" PRId64 "\n", c->partition, v < 0 ? 0 : v);
  }
}

static void quarantine(eddy_runner *r, eddy_buf *b, int64_t now) {
  head(b, "eddy_quarantine_depth", "gauge", "Quarantined messages not replayed.");
  int64_t oldest[EDDY_MAX_CONSUMERS] = { 0 };
  EACH_CONSUMER(r, i) {
    int64_t depth = 0;
    if (eddy_dlq_depth(r->store, r->consumers[i].name, &depth, &oldest[i]) != 0) continue;
    per_consumer(b, "eddy_quarantine_depth", r->consumers[i].name, depth);
  }
  head(b, "eddy_quarantine_oldest_age_seconds", "gauge",
       "Age of the oldest quarantined message not replayed (0: none).");
  EACH_CONSUMER(r, i) {
    eddy_buf_puts(b, "eddy_quarantine_oldest_age_seconds{consumer=\"");
    label(b, r->consumers[i].name);
    eddy_buf_printf(b, "\"} %.3f\n", oldest[i] ? (double)(now - oldest[i]) / 1000.0 : 0.0);
  }
}

int64_t eddy_metrics_outbox(eddy_runner *r) {
  int64_t n = 0;
  eddy_outbox_count(r->store, &n);
  return n;
}

static void outbox(eddy_runner *r, eddy_buf *b, int64_t now) {
  int64_t pending = 0, oldest = 0;
  sqlite3_stmt *st = eddy_store_stmt(r->store,
    "SELECT count(*), ifnull(min(created_at), 0) FROM outbox");
  if (st && sqlite3_step(st) == SQLITE_ROW) {
    pending = sqlite3_column_int64(st, 0);
    oldest = sqlite3_column_int64(st, 1);
  }
  if (st) sqlite3_reset(st);
  head(b, "eddy_outbox_pending", "gauge", "Outbox rows waiting for the relay (Kafka).");
  eddy_buf_printf(b, "eddy_outbox_pending %" PRId64 "\n", pending);
  head(b, "eddy_outbox_oldest_age_seconds", "gauge",
       "Age of the oldest outbox row, the relay's delay (0: none).");
  eddy_buf_printf(b, "eddy_outbox_oldest_age_seconds %.3f\n",
                  oldest ? (double)(now - oldest) / 1000.0 : 0.0);
  head(b, "eddy_events_emitted_total", "counter", "Events handlers emitted, committed.");
  eddy_buf_printf(b, "eddy_events_emitted_total %" PRId64 "\n", atomic_load(&r->n.emitted));
  head(b, "eddy_events_relayed_total", "counter", "Events published to the log or Kafka.");
  eddy_buf_printf(b, "eddy_events_relayed_total %" PRId64 "\n", atomic_load(&r->n.relayed));
  int64_t next = 0, waiting = 0;
  eddy_timers_next(r->store, &next, &waiting);
  head(b, "eddy_timers_pending", "gauge", "Durable timers waiting to fire.");
  eddy_buf_printf(b, "eddy_timers_pending %" PRId64 "\n", waiting);
}

static void reloads(eddy_runner *r, eddy_buf *b) {
  int ok = 0, failed = 0;
  eddy_reloader_counts(r->reloader, &ok, &failed);
  head(b, "eddy_reloads_total", "counter", "Reloads that switched to a new version.");
  eddy_buf_printf(b, "eddy_reloads_total %d\n", ok);
  head(b, "eddy_reloads_failed_total", "counter", "Reloads refused (the version ran on).");
  eddy_buf_printf(b, "eddy_reloads_failed_total %d\n", failed);
}

/* Saga instances by status, from the state of each consumer (a saga's
 * instances are its state keys saga:<id>). */
static void sagas(eddy_runner *r, eddy_buf *b) {
  static const char *statuses[] = { "running", "completed", "compensating", "compensated" };
  head(b, "eddy_saga_instances", "gauge",
       "Saga instances by status (failed ones show in eddy saga list).");
  sqlite3_stmt *st = eddy_store_stmt(r->store,
    "SELECT json_extract(value, '$.status'), count(*) FROM state"
    " WHERE consumer_id = ?1 AND key >= 'saga:' AND key < 'saga;'"
    " GROUP BY 1");
  if (!st) return;
  EACH_CONSUMER(r, i) {
    if (!r->consumers[i].store_id) continue;
    int64_t n[4] = { 0 };
    int any = 0;
    sqlite3_bind_int64(st, 1, r->consumers[i].store_id);
    while (sqlite3_step(st) == SQLITE_ROW) {
      const char *s = (const char *)sqlite3_column_text(st, 0);
      for (int k = 0; s && k < 4; k++)
        if (strcmp(s, statuses[k]) == 0) { n[k] = sqlite3_column_int64(st, 1); any = 1; }
    }
    sqlite3_reset(st);
    if (!any) continue;
    for (int k = 0; k < 4; k++) {
      eddy_buf_puts(b, "eddy_saga_instances{saga=\"");
      label(b, r->consumers[i].name);
      eddy_buf_printf(b, "\",status=\"%s\"} %" PRId64 "\n", statuses[k], n[k]);
    }
  }
}

void eddy_metrics_render(eddy_runner *r, eddy_buf *b) {
  int64_t now = eddy_now_ms();
  head(b, "eddy_up_seconds", "gauge", "Seconds since eddy run started.");
  eddy_buf_printf(b, "eddy_up_seconds %.3f\n", (double)(now - r->started_ms) / 1000.0);
  counters(r, b);
  latency(r, b);
  sla_breaches(r, b);
  lag(r, b);
  quarantine(r, b, now);
  outbox(r, b, now);
  reloads(r, b);
  sagas(r, b);
}
