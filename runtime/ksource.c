/*
 * ksource.c - where `eddy run` reads from when the log is Kafka (see
 * ksource.h).
 */
#include "ksource.h"
#include "errors.h"
#include "kafka.h"
#include "log.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <librdkafka/rdkafka.h>

#define TIMEOUT_MS 10000
#define REVOKE_WAIT_MS 30000
#define COMMIT_EVERY_MS 1000
#define QUEUED_MIN_MESSAGES "1000000"

/* One eddy consumer's Kafka consumer. */
typedef struct kgroup {
  eddy_kafka_owner owner;       /* first: the client's opaque (kafka.h) */
  struct eddy_ksource *ks;
  int consumer;                 /* its number */
  rd_kafka_t *rk;
  int assigned;                 /* partitions assigned now */
  int ever;                     /* an assignment came */
  int pipe[2];                  /* librdkafka writes to [1] when its queue fills */
  uv_poll_t poll;
  int polling;
} kgroup;

struct eddy_ksource {
  eddy_runner *r;
  int n;
  kgroup *g;
  int64_t last_commit;
};

static int64_t now_ms(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

static void nap_ms(int ms) {
  struct timespec t = { ms / 1000, (long)(ms % 1000) * 1000000L };
  nanosleep(&t, NULL);
}

static eddy_cursor *find(eddy_runner *r, int consumer, const char *topic, int p) {
  for (int k = 0; k < r->ncursors; k++) {
    eddy_cursor *cu = r->cursors[k];
    if (cu->consumer == consumer && cu->partition == p && strcmp(cu->topic, topic) == 0)
      return cu;
  }
  return NULL;
}

/* Where a partition starts when the store has no offset for it: the
 * group's offset on Kafka, else the start (or end) of the partition. */
static int64_t kafka_start(kgroup *g, const eddy_consumer_def *c, const char *topic, int p) {
  int64_t at = -1;
  rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
  rd_kafka_topic_partition_list_add(l, topic, p);
  if (rd_kafka_committed(g->rk, l, TIMEOUT_MS) == RD_KAFKA_RESP_ERR_NO_ERROR &&
      l->elems[0].offset >= 0)
    at = l->elems[0].offset;
  rd_kafka_topic_partition_list_destroy(l);
  if (at >= 0) return at;
  int64_t lo = 0, hi = 0;
  rd_kafka_query_watermark_offsets(g->rk, topic, p, &lo, &hi, TIMEOUT_MS);
  return c->from_end ? hi : lo;
}

/* The store keeps offsets per topic row: a Kafka topic gets one (no
 * messages), made here when first assigned. */
static int local_topic(eddy_runner *r, const char *topic, int partitions, char *err,
                       size_t errlen) {
  eddy_topic_info t;
  if (eddy_topic_get(r->store, topic, &t) == 0) return 0;
  eddy_topic_config c;
  eddy_topic_config_init(&c);
  c.partitions = partitions;
  int created = 0;
  uv_mutex_lock(&r->write_mu);
  int rc = eddy_topic_ensure(r->store, topic, &c, &created);
  uv_mutex_unlock(&r->write_mu);
  if (rc) snprintf(err, errlen, "%s", eddy_store_errmsg(r->store));
  return rc ? -1 : 0;
}

static void take(kgroup *g, rd_kafka_topic_partition_list_t *parts) {
  eddy_runner *r = g->ks->r;
  const eddy_consumer_def *c = &r->consumers[g->consumer];
  char err[512];
  for (int i = 0; i < parts->cnt; i++) {
    rd_kafka_topic_partition_t *tp = &parts->elems[i];
    int np = tp->partition + 1;
    if (eddy_kafka_topic_partitions(r->kafka, tp->topic, &np) != 0) np = tp->partition + 1;
    eddy_cursor *cu = NULL;
    if (local_topic(r, tp->topic, np, err, sizeof err) == 0)
      cu = eddy_runner_open_cursor(r, g->consumer, c, tp->topic, tp->partition,
                                   kafka_start(g, c, tp->topic, tp->partition), 1, err,
                                   sizeof err);
    if (!cu) {
      eddy_runner_fatal(r, "consumer '%s': taking %s[%d]: %s", c->name, tp->topic,
                        tp->partition, err);
      return;
    }
    tp->offset = cu->next_read;
    /* The sentence names the partition and the offset: text lines keep
     * them there only. */
    eddy_logx("INFO",
              &(eddy_logfields){ .consumer = c->name, .topic = tp->topic,
                                 .partition = tp->partition, .offset = cu->next_read,
                                 .set = EDDY_LOGF_PARTITION | EDDY_LOGF_OFFSET,
                                 .text_hide = EDDY_LOGF_TOPIC | EDDY_LOGF_PARTITION |
                                              EDDY_LOGF_OFFSET },
              "assigned %s[%d] from offset %lld", tp->topic, tp->partition,
              (long long)cu->next_read);
  }
  rd_kafka_error_t *e = rd_kafka_incremental_assign(g->rk, parts);
  if (e) {
    eddy_runner_fatal(r, "consumer '%s': assign: %s", c->name, rd_kafka_error_string(e));
    rd_kafka_error_destroy(e);
    return;
  }
  g->assigned += parts->cnt;
  g->ever = 1;
}

/* The stored offsets of cursors, as a commit for Kafka.  NULL when none. */
static rd_kafka_topic_partition_list_t *stored(eddy_runner *r, eddy_cursor **cu, int n) {
  rd_kafka_topic_partition_list_t *l = NULL;
  uv_mutex_lock(&r->write_mu);
  for (int i = 0; i < n; i++) {
    if (cu[i]->committed <= 0) continue;
    if (!l) l = rd_kafka_topic_partition_list_new(n);
    rd_kafka_topic_partition_list_add(l, cu[i]->topic, cu[i]->partition)->offset =
      cu[i]->committed;
  }
  uv_mutex_unlock(&r->write_mu);
  return l;
}

static void give_up(kgroup *g, rd_kafka_topic_partition_list_t *parts) {
  eddy_runner *r = g->ks->r;
  const char *name = r->consumers[g->consumer].name;
  eddy_cursor **cu = calloc((size_t)parts->cnt + 1, sizeof *cu);
  int n = 0;
  for (int i = 0; cu && i < parts->cnt; i++) {
    eddy_cursor *c = find(r, g->consumer, parts->elems[i].topic, parts->elems[i].partition);
    if (!c) continue;
    atomic_store(&c->revoked, 1);
    c->live = 0;
    cu[n++] = c;
  }
  /* The workers drop what they have not started; the batch in hand
   * commits.  Then the partitions may go. */
  for (int w = 0; !r->workers_gone && w < r->nworkers; w++)
    eddy_worker_drop_revoked(r->workers[w]);
  int64_t deadline = now_ms() + REVOKE_WAIT_MS;
  for (int i = 0; i < n; i++)
    while (atomic_load(&cu[i]->inflight) > 0 && now_ms() < deadline) nap_ms(1);
  rd_kafka_topic_partition_list_t *l = n ? stored(r, cu, n) : NULL;
  if (l) {
    rd_kafka_resp_err_t ce = rd_kafka_commit(g->rk, l, 0);
    if (ce)
      eddy_logx("WARN", &(eddy_logfields){ .consumer = name, .text = EDDY_LOGT_COLON },
                "committing offsets to Kafka: %s", rd_kafka_err2str(ce));
    rd_kafka_topic_partition_list_destroy(l);
  }
  for (int i = 0; i < parts->cnt; i++)
    eddy_logx("INFO",
              &(eddy_logfields){ .consumer = name, .topic = parts->elems[i].topic,
                                 .partition = parts->elems[i].partition,
                                 .set = EDDY_LOGF_PARTITION,
                                 .text_hide = EDDY_LOGF_TOPIC | EDDY_LOGF_PARTITION },
              "revoked %s[%d]", parts->elems[i].topic, parts->elems[i].partition);
  free(cu);
  rd_kafka_error_t *e = rd_kafka_incremental_unassign(g->rk, parts);
  if (e) rd_kafka_error_destroy(e);
  g->assigned -= parts->cnt;
  if (g->assigned < 0) g->assigned = 0;
}

static void on_rebalance(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                         rd_kafka_topic_partition_list_t *parts, void *opaque) {
  (void)rk;
  kgroup *g = opaque;
  if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) take(g, parts);
  else if (err == RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS) give_up(g, parts);
}

static void on_readable(uv_poll_t *h, int status, int events) {
  (void)status;
  (void)events;
  kgroup *g = h->data;
  char buf[64];
  while (read(g->pipe[0], buf, sizeof buf) > 0) {}
  uv_async_send(&g->ks->r->progress);   /* the runner reads */
}

static int start_group(eddy_ksource *ks, kgroup *g, int consumer, char *err, size_t errlen) {
  eddy_runner *r = ks->r;
  const eddy_consumer_def *c = &r->consumers[consumer];
  g->owner.kafka = r->kafka;
  g->ks = ks;
  g->consumer = consumer;
  g->pipe[0] = g->pipe[1] = -1;
  rd_kafka_conf_t *conf = eddy_kafka_conf(r->kafka, err, errlen);
  if (!conf) return -1;
  const char *settings[][2] = {
    { "group.id", c->name },
    { "partition.assignment.strategy", "cooperative-sticky" },
    { "enable.auto.commit", "false" },
    { "enable.auto.offset.store", "false" },
    { "auto.offset.reset", c->from_end ? "latest" : "earliest" },
  };
  for (size_t i = 0; i < sizeof settings / sizeof settings[0]; i++) {
    if (rd_kafka_conf_set(conf, settings[i][0], settings[i][1], err, errlen) !=
        RD_KAFKA_CONF_OK) {
      rd_kafka_conf_destroy(conf);
      return -1;
    }
  }
  /* librdkafka before 2.1 stops fetching a partition whose queue holds
   * queued.min.messages (100,000) and looks again only a second later:
   * a consumer slower than the fetcher idled most of that second.  A
   * larger threshold keeps more than a second of work queued; the memory
   * bound stays queued.max.messages.kbytes.  Later versions take a
   * shorter backoff instead (unknown before 2.1: the error is ignored). */
  if (!eddy_kafka_has_prop(r->kafka, "queued.min.messages") &&
      rd_kafka_conf_set(conf, "queued.min.messages", QUEUED_MIN_MESSAGES, err, errlen) !=
        RD_KAFKA_CONF_OK) {
    rd_kafka_conf_destroy(conf);
    return -1;
  }
  if (!eddy_kafka_has_prop(r->kafka, "fetch.queue.backoff.ms"))
    rd_kafka_conf_set(conf, "fetch.queue.backoff.ms", "10", err, errlen);
  err[0] = 0;
  rd_kafka_conf_set_rebalance_cb(conf, on_rebalance);
  rd_kafka_conf_set_opaque(conf, g);
  g->rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, errlen);
  if (!g->rk) return -1;
  rd_kafka_poll_set_consumer(g->rk);
  rd_kafka_topic_partition_list_t *topics = rd_kafka_topic_partition_list_new(c->ntopics);
  for (int k = 0; k < c->ntopics; k++)
    rd_kafka_topic_partition_list_add(topics, c->topics[k], RD_KAFKA_PARTITION_UA);
  rd_kafka_resp_err_t e = rd_kafka_subscribe(g->rk, topics);
  rd_kafka_topic_partition_list_destroy(topics);
  if (e) {
    snprintf(err, errlen, "consumer '%s': subscribing: %s", c->name, rd_kafka_err2str(e));
    return -1;
  }
  if (pipe2(g->pipe, O_NONBLOCK | O_CLOEXEC) != 0) {
    snprintf(err, errlen, "cannot make a pipe");
    return -1;
  }
  rd_kafka_queue_t *q = rd_kafka_queue_get_consumer(g->rk);
  rd_kafka_queue_io_event_enable(q, g->pipe[1], "1", 1);
  rd_kafka_queue_destroy(q);
  uv_poll_init(r->loop, &g->poll, g->pipe[0]);
  g->poll.data = g;
  uv_poll_start(&g->poll, UV_READABLE, on_readable);
  g->polling = 1;
  return 0;
}

int eddy_ksource_start(eddy_runner *r, eddy_ksource **out, char *err, size_t errlen) {
  eddy_ksource *ks = calloc(1, sizeof *ks);
  if (!ks || !(ks->g = calloc((size_t)r->nconsumers + 1, sizeof *ks->g))) {
    free(ks);
    snprintf(err, errlen, "out of memory");
    return -1;
  }
  ks->r = r;
  *out = ks;
  for (int i = 0; i < r->nconsumers; i++) {
    if (!r->consumers[i].active) continue;
    if (start_group(ks, &ks->g[ks->n], i, err, errlen) != 0) {
      ks->n++;
      return -1;
    }
    ks->n++;
  }
  return 0;
}

static void poll_closed(uv_handle_t *h) { (void)h; }

void eddy_ksource_stop(eddy_ksource *ks) {
  if (!ks) return;
  for (int i = 0; i < ks->n; i++) {
    kgroup *g = &ks->g[i];
    if (g->rk) {
      rd_kafka_consumer_close(g->rk);   /* leaves the group (revokes first) */
      rd_kafka_destroy(g->rk);
      g->rk = NULL;
    }
    if (g->polling) {
      uv_poll_stop(&g->poll);
      uv_close((uv_handle_t *)&g->poll, poll_closed);
    }
  }
}

void eddy_ksource_free(eddy_ksource *ks) {
  if (!ks) return;
  for (int i = 0; i < ks->n; i++) {
    if (ks->g[i].pipe[0] >= 0) close(ks->g[i].pipe[0]);
    if (ks->g[i].pipe[1] >= 0) close(ks->g[i].pipe[1]);
  }
  free(ks->g);
  free(ks);
}

struct read_ctx {
  kgroup *g;
  int (*fn)(void *ud, eddy_cursor *c, const eddy_message *m);
  void *ud;
  eddy_cursor *last;            /* messages come in runs of one partition */
};

static int one(void *ud, const eddy_message *m) {
  struct read_ctx *x = ud;
  eddy_runner *r = x->g->ks->r;
  eddy_cursor *cu = x->last;
  if (!cu || cu->partition != m->partition || strcmp(cu->topic, m->topic) != 0)
    cu = x->last = find(r, x->g->consumer, m->topic, m->partition);
  if (!cu || !cu->live || atomic_load(&cu->revoked)) return 0;
  return x->fn(x->ud, cu, m);
}

int eddy_ksource_read(eddy_ksource *ks, int max,
                      int (*fn)(void *ud, eddy_cursor *c, const eddy_message *m), void *ud) {
  int got = 0;
  for (int i = 0; i < ks->n && got < max; i++) {
    kgroup *g = &ks->g[i];
    struct read_ctx x = { g, fn, ud, NULL };
    while (got < max) {
      rd_kafka_message_t *m = rd_kafka_consumer_poll(g->rk, 0);
      if (!m) break;
      if (m->err) {
        if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF)
          eddy_logx("WARN",
                    &(eddy_logfields){ .consumer = ks->r->consumers[g->consumer].name,
                                       .text = EDDY_LOGT_COLON },
                    "%s (will retry)", rd_kafka_message_errstr(m));
      } else {
        int rc = eddy_kafka_message(m, one, &x);
        if (rc) {
          rd_kafka_message_destroy(m);
          eddy_runner_fatal(ks->r, "out of memory reading messages");
          return got;
        }
        got++;
      }
      rd_kafka_message_destroy(m);
    }
  }
  return got;
}

void eddy_ksource_commit(eddy_ksource *ks) {
  if (now_ms() - ks->last_commit < COMMIT_EVERY_MS) return;
  ks->last_commit = now_ms();
  eddy_runner *r = ks->r;
  for (int i = 0; i < ks->n; i++) {
    kgroup *g = &ks->g[i];
    eddy_cursor **cu = calloc((size_t)r->ncursors + 1, sizeof *cu);
    int n = 0;
    for (int k = 0; cu && k < r->ncursors; k++) {
      eddy_cursor *c = r->cursors[k];
      if (c->consumer == g->consumer && c->live && !atomic_load(&c->revoked)) cu[n++] = c;
    }
    rd_kafka_topic_partition_list_t *l = n ? stored(r, cu, n) : NULL;
    if (l) {
      rd_kafka_commit(g->rk, l, 1);
      rd_kafka_topic_partition_list_destroy(l);
    }
    free(cu);
  }
}

int eddy_ksource_high(eddy_ksource *ks, const eddy_cursor *c, int64_t *high) {
  for (int i = 0; ks && i < ks->n; i++) {
    if (ks->g[i].consumer != c->consumer || !ks->g[i].rk) continue;
    int64_t lo = -1, hi = -1;
    if (rd_kafka_get_watermark_offsets(ks->g[i].rk, c->topic, c->partition, &lo, &hi) ==
          RD_KAFKA_RESP_ERR_NO_ERROR && hi >= 0) {
      *high = hi;
      return 0;
    }
  }
  return -1;
}

int eddy_ksource_ready(const eddy_ksource *ks) {
  for (int i = 0; ks && i < ks->n; i++)
    if (!ks->g[i].ever) return 0;
  return ks != NULL;
}

int eddy_ksource_caught_up(eddy_ksource *ks) {
  eddy_runner *r = ks->r;
  for (int i = 0; i < ks->n; i++)
    if (!ks->g[i].ever || ks->g[i].assigned == 0) return 0;
  for (int k = 0; k < r->ncursors; k++) {
    eddy_cursor *c = r->cursors[k];
    if (!c->live || atomic_load(&c->revoked)) continue;
    int64_t lo, hi;
    if (eddy_kafka_offsets(r->kafka, c->topic, c->partition, &lo, &hi) != 0) return 0;
    if (hi > c->next_read) return 0;
    uv_mutex_lock(&r->track_mu);
    int busy = c->watermark != c->end;
    uv_mutex_unlock(&r->track_mu);
    if (busy) return 0;
  }
  return 1;
}
