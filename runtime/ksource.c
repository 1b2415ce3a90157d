/*
 * ksource.c - where `eddy run` reads from when the log is Kafka (see
 * ksource.h).
 *
 * Nothing here waits on the network: every librdkafka call made on the
 * runner's loop either answers from the client's memory (poll, assign,
 * unassign, cached watermarks) or only queues a request whose answer
 * comes later (commits, the close).  What used to be asked of the cluster
 * on the loop is now left to librdkafka or taken from what it already
 * knows:
 *
 *   - where a partition without a stored offset starts: assigned with
 *     RD_KAFKA_OFFSET_INVALID, librdkafka finds the group's offset on
 *     Kafka, else applies auto.offset.reset; the first message or the
 *     end-of-partition event tells the cursor where it started (place),
 *     and a start not found within 10 s is asked again (reask);
 *   - the partition count of a topic the store lacks: the runner made the
 *     store's rows at startup, from the counts it asked for then;
 *   - the ends of partitions, for --drain: asked of the cluster off the
 *     loop (kcall.h), once the fetched ones (librdkafka keeps the high
 *     watermarks of its fetches) say every partition is read;
 *   - a revocation's commit: queued with the results on a queue of ours,
 *     and the revocation itself finished on a later tick, once the workers
 *     are done with the partitions' messages (librdkafka's cooperative
 *     protocol waits for our incremental_unassign);
 *   - leaving the group at stop: rd_kafka_consumer_close_queue, bounded;
 *     a broker that does not answer gets the consumer left to the
 *     process's exit rather than a wait on it.
 */
#include "ksource.h"
#include "errors.h"
#include "kafka.h"
#include "kcall.h"
#include "log.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <librdkafka/rdkafka.h>

#define REVOKE_WAIT_MS 30000     /* longest a revocation waits for the workers */
#define COMMIT_EVERY_MS 1000
#define LEAVE_MS 5000            /* longest a stop waits for Kafka to see us leave */
#define ENDS_RETRY_MS 1000       /* after a failed query of the ends (--drain) */
#define REASK_MS 10000           /* a partition's start not found: ask again */
#define QUEUED_MIN_MESSAGES "1000000"

struct kgroup;

/* A commit's opaque: whose it is, and whether a failure is worth a line
 * (the periodic ones fail quietly: the next one a second later says the
 * same, and the client's own errors are logged). */
typedef struct kcommit {
  struct kgroup *g;
  int warn;
} kcommit;

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
  rd_kafka_queue_t *results;    /* our commits' results */
  int committing;               /* commits whose result has not come back */
  kcommit quiet, loud;
  /* Partitions the group took away, kept until the workers are done with
   * their messages (then they are committed and given up), or NULL. */
  rd_kafka_topic_partition_list_t *revoking;
  int revoking_lost;            /* taken away without a rebalance (session lost) */
  int64_t revoke_deadline;
  rd_kafka_queue_t *closing;    /* the close's events, once leaving */
  int left;                     /* closed and destroyed, or left to the exit */
} kgroup;

/* The high watermarks of the partitions read, asked of the cluster off
 * the loop for --drain. */
typedef struct ends {
  int n;
  eddy_cursor **cursors;        /* the loop's, never read by the thread */
  char **topics;                /* the thread's copies */
  int *partitions;
  int64_t *highs;
  int64_t started;
} ends;

struct eddy_ksource {
  eddy_runner *r;
  int n;
  kgroup *g;
  int64_t last_commit;
  int64_t leave_deadline;
  int abandoned;                /* a consumer was left to the exit */
  eddy_kcall *ends;             /* a query of the ends under way, or NULL */
  eddy_kafka *ek;               /* its client, between two */
  int64_t idle_since;           /* every partition looked read since, or 0 */
  int64_t idle_relayed;         /* the events relayed then */
  int64_t ends_failed;          /* when the last query failed */
};

static int64_t now_ms(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

static eddy_cursor *find(eddy_runner *r, int consumer, const char *topic, int p) {
  for (int k = 0; k < r->ncursors; k++) {
    eddy_cursor *cu = r->cursors[k];
    if (cu->consumer == consumer && cu->partition == p && strcmp(cu->topic, topic) == 0)
      return cu;
  }
  return NULL;
}

/* The store keeps offsets per topic row.  The runner makes the rows of
 * the topics consumers read at startup (with Kafka's partition counts);
 * one still missing is made here with what the assignment shows, without
 * asking the cluster. */
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
    eddy_cursor *cu = NULL;
    if (local_topic(r, tp->topic, tp->partition + 1, err, sizeof err) == 0)
      cu = eddy_runner_open_cursor(r, g->consumer, c, tp->topic, tp->partition, 1, err,
                                   sizeof err);
    if (!cu) {
      eddy_runner_fatal(r, "consumer '%s': taking %s[%d]: %s", c->name, tp->topic,
                        tp->partition, err);
      return;
    }
    /* The sentence names the partition and the offset: text lines keep
     * them there only. */
    if (cu->start_unknown) {
      /* librdkafka asks the group's offset on Kafka, asynchronously. */
      tp->offset = RD_KAFKA_OFFSET_INVALID;
      cu->start_asked = now_ms();
      eddy_logx("INFO",
                &(eddy_logfields){ .consumer = c->name, .topic = tp->topic,
                                   .partition = tp->partition, .set = EDDY_LOGF_PARTITION,
                                   .text_hide = EDDY_LOGF_TOPIC | EDDY_LOGF_PARTITION },
                "assigned %s[%d] from the group's offset on Kafka, else the %s", tp->topic,
                tp->partition, c->from_end ? "end" : "start");
      continue;
    }
    tp->offset = cu->next_read;
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

/* Where librdkafka started cursor cu's partition, learnt from its first
 * message or end-of-partition event at offset: the cursor starts there, as
 * if it had been assigned at that offset. */
static void place(eddy_runner *r, eddy_cursor *cu, int64_t offset) {
  uv_mutex_lock(&r->write_mu);
  uv_mutex_lock(&r->track_mu);
  cu->next_read = cu->watermark = cu->end = cu->committed = offset;
  uv_mutex_unlock(&r->track_mu);
  cu->start_unknown = 0;
  uv_mutex_unlock(&r->write_mu);
}

static void on_committed(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                         rd_kafka_topic_partition_list_t *offsets, void *opaque) {
  (void)rk;
  (void)offsets;
  kcommit *k = opaque;
  k->g->committing--;
  if (err && err != RD_KAFKA_RESP_ERR__NO_OFFSET && k->warn)
    eddy_logx("WARN",
              &(eddy_logfields){ .consumer = k->g->ks->r->consumers[k->g->consumer].name,
                                 .text = EDDY_LOGT_COLON },
              "committing offsets to Kafka: %s", rd_kafka_err2str(err));
}

/* Serves the results of our commits that came (the loop never waits for
 * one). */
static void serve_results(kgroup *g) {
  if (g->results)
    while (rd_kafka_queue_poll_callback(g->results, 0) > 0) {}
}

/* The stored offsets of g's cursors that want one (want(cu)) as a commit
 * for Kafka, sent without waiting; its result comes to g->results. */
static void commit(kgroup *g, kcommit *kind, int (*want)(kgroup *, eddy_cursor *, void *),
                   void *ud) {
  eddy_runner *r = g->ks->r;
  rd_kafka_topic_partition_list_t *l = NULL;
  uv_mutex_lock(&r->write_mu);
  for (int k = 0; k < r->ncursors; k++) {
    eddy_cursor *cu = r->cursors[k];
    if (cu->consumer != g->consumer || cu->start_unknown || cu->committed <= 0 ||
        !want(g, cu, ud))
      continue;
    if (!l) l = rd_kafka_topic_partition_list_new(8);
    rd_kafka_topic_partition_list_add(l, cu->topic, cu->partition)->offset = cu->committed;
  }
  uv_mutex_unlock(&r->write_mu);
  if (!l) return;
  if (rd_kafka_commit_queue(g->rk, l, g->results, on_committed, kind) ==
      RD_KAFKA_RESP_ERR_NO_ERROR)
    g->committing++;
  rd_kafka_topic_partition_list_destroy(l);
}

static int in_list(kgroup *g, eddy_cursor *cu, void *ud) {
  (void)g;
  return rd_kafka_topic_partition_list_find(ud, cu->topic, cu->partition) != NULL;
}

static int is_read(kgroup *g, eddy_cursor *cu, void *ud) {
  (void)g;
  (void)ud;
  return cu->live && !atomic_load(&cu->revoked);
}

/* Finishes the revocation in hand once the workers hold none of its
 * partitions' messages (or waited long enough, or are gone): commits the
 * stored offsets of the partitions to Kafka and gives them up.  1 when
 * none is left in hand. */
static int finish_revoke(kgroup *g, int force) {
  eddy_runner *r = g->ks->r;
  rd_kafka_topic_partition_list_t *parts = g->revoking;
  if (!parts) return 1;
  int busy = 0;
  for (int i = 0; !force && !busy && i < parts->cnt; i++) {
    eddy_cursor *c = find(r, g->consumer, parts->elems[i].topic, parts->elems[i].partition);
    busy = c && atomic_load(&c->inflight) > 0;
  }
  if (busy && !r->workers_gone && now_ms() < g->revoke_deadline) return 0;
  const char *name = r->consumers[g->consumer].name;
  /* Partitions lost with the session may be another member's already:
   * Kafka refuses their commit. */
  if (!g->revoking_lost) commit(g, &g->loud, in_list, parts);
  for (int i = 0; i < parts->cnt; i++)
    eddy_logx("INFO",
              &(eddy_logfields){ .consumer = name, .topic = parts->elems[i].topic,
                                 .partition = parts->elems[i].partition,
                                 .set = EDDY_LOGF_PARTITION,
                                 .text_hide = EDDY_LOGF_TOPIC | EDDY_LOGF_PARTITION },
              "revoked %s[%d]", parts->elems[i].topic, parts->elems[i].partition);
  rd_kafka_error_t *e = rd_kafka_incremental_unassign(g->rk, parts);
  if (e) rd_kafka_error_destroy(e);
  g->assigned -= parts->cnt;
  if (g->assigned < 0) g->assigned = 0;
  rd_kafka_topic_partition_list_destroy(parts);
  g->revoking = NULL;
  return 1;
}

/* The group takes partitions away: the runner stops reading them and the
 * workers drop what they have not started, at once; the batch in hand
 * commits, and then finish_revoke gives them up, on this tick or a later
 * one.  librdkafka's cooperative protocol waits for that unassign before
 * the group goes on, so the loop never waits for the workers here. */
static void give_up(kgroup *g, rd_kafka_topic_partition_list_t *parts) {
  eddy_runner *r = g->ks->r;
  for (int i = 0; i < parts->cnt; i++) {
    eddy_cursor *c = find(r, g->consumer, parts->elems[i].topic, parts->elems[i].partition);
    if (!c) continue;
    atomic_store(&c->revoked, 1);
    c->live = 0;
  }
  for (int w = 0; !r->workers_gone && w < r->nworkers; w++)
    eddy_worker_drop_revoked(r->workers[w]);
  if (g->revoking) {
    /* librdkafka asks for one revocation at a time; should a second come
     * anyway, the two are finished together. */
    for (int i = 0; i < parts->cnt; i++)
      if (!rd_kafka_topic_partition_list_find(g->revoking, parts->elems[i].topic,
                                              parts->elems[i].partition))
        rd_kafka_topic_partition_list_add(g->revoking, parts->elems[i].topic,
                                          parts->elems[i].partition);
  } else {
    g->revoking = rd_kafka_topic_partition_list_copy(parts);
    g->revoke_deadline = now_ms() + REVOKE_WAIT_MS;
    g->revoking_lost = 0;
  }
  g->revoking_lost |= rd_kafka_assignment_lost(g->rk);
  finish_revoke(g, 0);
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
  g->quiet = (kcommit){ g, 0 };
  g->loud = (kcommit){ g, 1 };
  rd_kafka_conf_t *conf = eddy_kafka_conf(r->kafka, err, errlen);
  if (!conf) return -1;
  const char *settings[][2] = {
    { "group.id", c->name },
    { "partition.assignment.strategy", "cooperative-sticky" },
    { "enable.auto.commit", "false" },
    { "enable.auto.offset.store", "false" },
    { "auto.offset.reset", c->from_end ? "latest" : "earliest" },
    /* Where a partition assigned without an offset starts (place), and
     * when --drain has read it all. */
    { "enable.partition.eof", "true" },
    /* Log lines come through our polls, never from librdkafka's threads:
     * a consumer left to the exit (eddy_ksource_stop) calls nothing of
     * ours after the source is freed. */
    { "log.queue", "true" },
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
  rd_kafka_set_log_queue(g->rk, NULL);   /* the main queue, served by our polls */
  rd_kafka_poll_set_consumer(g->rk);
  g->results = rd_kafka_queue_new(g->rk);
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

/* Stops the loop's wake-ups from g's queue. */
static void unwatch(kgroup *g) {
  if (g->rk) {
    rd_kafka_queue_t *q = rd_kafka_queue_get_consumer(g->rk);
    rd_kafka_queue_io_event_enable(q, -1, NULL, 0);
    rd_kafka_queue_destroy(q);
  }
  if (g->polling) {
    uv_poll_stop(&g->poll);
    uv_close((uv_handle_t *)&g->poll, poll_closed);
    g->polling = 0;
  }
}

void eddy_ksource_leave(eddy_ksource *ks) {
  if (!ks || ks->leave_deadline) return;
  ks->leave_deadline = now_ms() + LEAVE_MS;
  for (int i = 0; i < ks->n; i++) {
    kgroup *g = &ks->g[i];
    unwatch(g);
    if (!g->rk) continue;
    finish_revoke(g, 1);
    serve_results(g);
    commit(g, &g->loud, is_read, NULL);
    /* Give the partitions up here, so that the close has nothing left to
     * revoke and goes on alone while the runner relays the outbox. */
    rd_kafka_topic_partition_list_t *all = NULL;
    if (rd_kafka_assignment(g->rk, &all) == RD_KAFKA_RESP_ERR_NO_ERROR && all) {
      const char *name = ks->r->consumers[g->consumer].name;
      for (int k = 0; k < all->cnt; k++) {
        eddy_cursor *c = find(ks->r, g->consumer, all->elems[k].topic, all->elems[k].partition);
        if (c) {
          atomic_store(&c->revoked, 1);
          c->live = 0;
        }
        eddy_logx("INFO",
                  &(eddy_logfields){ .consumer = name, .topic = all->elems[k].topic,
                                     .partition = all->elems[k].partition,
                                     .set = EDDY_LOGF_PARTITION,
                                     .text_hide = EDDY_LOGF_TOPIC | EDDY_LOGF_PARTITION },
                  "revoked %s[%d]", all->elems[k].topic, all->elems[k].partition);
      }
      if (all->cnt) {
        rd_kafka_error_t *e = rd_kafka_incremental_unassign(g->rk, all);
        if (e) rd_kafka_error_destroy(e);
      }
      rd_kafka_topic_partition_list_destroy(all);
    }
    g->assigned = 0;
    g->closing = rd_kafka_queue_new(g->rk);
    rd_kafka_error_t *e = rd_kafka_consumer_close_queue(g->rk, g->closing);
    if (e) rd_kafka_error_destroy(e);
  }
}

/* Serves the close's events until the consumer is closed or the leave's
 * deadline passed.  1 when it closed. */
static int closed(eddy_ksource *ks, kgroup *g) {
  for (;;) {
    serve_results(g);
    /* Closed means every commit was answered, and the group left. */
    if (rd_kafka_consumer_closed(g->rk)) return 1;
    int64_t left = ks->leave_deadline - now_ms();
    if (left <= 0) return 0;
    rd_kafka_event_t *ev = rd_kafka_queue_poll(g->closing, left < 50 ? (int)left : 50);
    if (!ev) continue;
    if (rd_kafka_event_type(ev) == RD_KAFKA_EVENT_REBALANCE) {
      /* The assignment leave() gave up already; anything else the close
       * asks to revoke goes too. */
      rd_kafka_error_t *e =
        rd_kafka_incremental_unassign(g->rk, rd_kafka_event_topic_partition_list(ev));
      if (e) rd_kafka_error_destroy(e);
    }
    rd_kafka_event_destroy(ev);
  }
}

void eddy_ksource_stop(eddy_ksource *ks) {
  if (!ks) return;
  eddy_ksource_leave(ks);
  /* Before the runner closes the handle the query would wake. */
  eddy_kcall_release(ks->ends);
  ks->ends = NULL;
  for (int i = 0; i < ks->n; i++) {
    kgroup *g = &ks->g[i];
    if (!g->rk || g->left) continue;
    g->left = 1;
    if (closed(ks, g)) {
      rd_kafka_queue_destroy(g->closing);
      rd_kafka_queue_destroy(g->results);
      rd_kafka_destroy(g->rk);
      g->rk = NULL;
      continue;
    }
    /* A commit or the leave is still waiting for a broker that does not
     * answer, and librdkafka's destroy would wait with it (up to the
     * session timeout, or longer for a hung broker).  The store has every
     * offset, so the consumer is left as it is to the process's exit: the
     * group sees the member go when its session times out, as after a
     * kill, and Kafka's copy of the offsets may lag the store's. */
    ks->abandoned = 1;
    eddy_logx("WARN",
              &(eddy_logfields){ .consumer = ks->r->consumers[g->consumer].name,
                                 .text = EDDY_LOGT_COLON },
              "Kafka did not see the consumer leave within %d s (%s): its session ends "
              "on the broker, the store keeps every offset", LEAVE_MS / 1000,
              eddy_kafka_last_error(ks->r->kafka)[0] ? eddy_kafka_last_error(ks->r->kafka)
                                                     : "no answer");
  }
}

void eddy_ksource_free(eddy_ksource *ks) {
  if (!ks) return;
  eddy_kcall_release(ks->ends);
  eddy_kafka_close(ks->ek);
  for (int i = 0; i < ks->n; i++) {
    if (ks->g[i].pipe[0] >= 0) close(ks->g[i].pipe[0]);
    if (ks->g[i].pipe[1] >= 0) close(ks->g[i].pipe[1]);
    if (ks->g[i].revoking) rd_kafka_topic_partition_list_destroy(ks->g[i].revoking);
  }
  /* A consumer left to the exit keeps its opaque, g, valid to the end. */
  if (!ks->abandoned) free(ks->g);
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
  if (cu->start_unknown) place(r, cu, m->offset);
  return x->fn(x->ud, cu, m);
}

/* An end-of-partition event: a cursor still waiting to learn where its
 * partition started learns it here (nothing came before the end). */
static void at_end(kgroup *g, const rd_kafka_message_t *m) {
  eddy_runner *r = g->ks->r;
  eddy_cursor *cu = find(r, g->consumer, rd_kafka_topic_name(m->rkt), m->partition);
  if (cu && cu->live && !atomic_load(&cu->revoked) && cu->start_unknown && m->offset >= 0)
    place(r, cu, m->offset);
}

int eddy_ksource_read(eddy_ksource *ks, int max,
                      int (*fn)(void *ud, eddy_cursor *c, const eddy_message *m), void *ud) {
  int got = 0;
  for (int i = 0; i < ks->n && got < max; i++) {
    kgroup *g = &ks->g[i];
    if (!g->rk || g->closing) continue;
    struct read_ctx x = { g, fn, ud, NULL };
    while (got < max) {
      rd_kafka_message_t *m = rd_kafka_consumer_poll(g->rk, 0);
      if (!m) break;
      if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
        if (m->rkt) at_end(g, m);
      } else if (m->err) {
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

/* librdkafka 2.0 never asks again for the group's offset of a partition
 * assigned without one when the coordinator answered the first time with
 * a request-level NOT_COORDINATOR (a coordinator just back): the partition
 * is never fetched.  A partition whose start is still not known after
 * REASK_MS is given up and assigned again, which asks again; nothing of
 * it was read, so nothing is lost or repeated.  During an outage this asks
 * every REASK_MS, each time without waiting. */
static void reask(kgroup *g) {
  eddy_runner *r = g->ks->r;
  if (g->revoking) return;
  int64_t now = now_ms();
  for (int k = 0; k < r->ncursors; k++) {
    eddy_cursor *cu = r->cursors[k];
    if (cu->consumer != g->consumer || !cu->start_unknown || !cu->live ||
        atomic_load(&cu->revoked) || now - cu->start_asked < REASK_MS)
      continue;
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(l, cu->topic, cu->partition)->offset =
      RD_KAFKA_OFFSET_INVALID;
    rd_kafka_error_t *e = rd_kafka_incremental_unassign(g->rk, l);
    if (e) rd_kafka_error_destroy(e);
    e = rd_kafka_incremental_assign(g->rk, l);
    /* Refused (the group in a rebalance): again in a second. */
    cu->start_asked = e ? now - REASK_MS + 1000 : now;
    if (e) rd_kafka_error_destroy(e);
    rd_kafka_topic_partition_list_destroy(l);
  }
}

void eddy_ksource_tick(eddy_ksource *ks) {
  for (int i = 0; i < ks->n; i++) {
    kgroup *g = &ks->g[i];
    if (!g->rk || g->closing) continue;
    serve_results(g);
    finish_revoke(g, 0);
    reask(g);
  }
  if (now_ms() - ks->last_commit < COMMIT_EVERY_MS) return;
  ks->last_commit = now_ms();
  for (int i = 0; i < ks->n; i++) {
    kgroup *g = &ks->g[i];
    /* One at a time: a broker that does not answer gets no pile of them
     * (each would keep the consumer's close waiting). */
    if (g->rk && !g->closing && g->committing == 0) commit(g, &g->quiet, is_read, NULL);
  }
}

int eddy_ksource_high(eddy_ksource *ks, const eddy_cursor *c, int64_t *high) {
  for (int i = 0; ks && i < ks->n; i++) {
    if (ks->g[i].consumer != c->consumer || !ks->g[i].rk || ks->g[i].left) continue;
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

/* 1 when, as far as this process knows, every consumer has its
 * partitions and has read each to the end of librdkafka's last fetch,
 * with nothing in flight. */
static int looks_read(eddy_ksource *ks) {
  eddy_runner *r = ks->r;
  for (int i = 0; i < ks->n; i++)
    if (!ks->g[i].ever || ks->g[i].assigned == 0 || ks->g[i].revoking) return 0;
  for (int k = 0; k < r->ncursors; k++) {
    eddy_cursor *c = r->cursors[k];
    if (!c->live || atomic_load(&c->revoked)) continue;
    int64_t hi;
    if (c->start_unknown || (eddy_ksource_high(ks, c, &hi) == 0 && hi > c->next_read)) return 0;
    uv_mutex_lock(&r->track_mu);
    int busy = c->watermark != c->end;
    uv_mutex_unlock(&r->track_mu);
    if (busy) return 0;
  }
  return 1;
}

static void ends_free(void *ud) {
  ends *e = ud;
  for (int i = 0; i < e->n; i++) free(e->topics[i]);
  free(e->topics);
  free(e->cursors);
  free(e->partitions);
  free(e->highs);
  free(e);
}

/* On the query's thread. */
static int ends_run(eddy_kafka *k, void *ud) {
  ends *e = ud;
  for (int i = 0; i < e->n; i++) {
    int64_t lo;
    int rc = eddy_kafka_offsets(k, e->topics[i], e->partitions[i], &lo, &e->highs[i]);
    if (rc) return rc;
  }
  return 0;
}

/* Asks the ends of the partitions read, off the loop. */
static void ends_start(eddy_ksource *ks) {
  eddy_runner *r = ks->r;
  ends *e = calloc(1, sizeof *e);
  size_t cap = (size_t)r->ncursors + 1;
  if (!e || !(e->cursors = calloc(cap, sizeof *e->cursors)) ||
      !(e->topics = calloc(cap, sizeof *e->topics)) ||
      !(e->partitions = calloc(cap, sizeof *e->partitions)) ||
      !(e->highs = calloc(cap, sizeof *e->highs))) {
    if (e) ends_free(e);
    return;
  }
  for (int k = 0; k < r->ncursors; k++) {
    eddy_cursor *c = r->cursors[k];
    if (!c->live || atomic_load(&c->revoked)) continue;
    if (!(e->topics[e->n] = strdup(c->topic))) { ends_free(e); return; }
    e->cursors[e->n] = c;
    e->partitions[e->n++] = c->partition;
  }
  e->started = now_ms();
  char err[512];
  eddy_kafka *k = ks->ek;
  ks->ek = NULL;
  if (!k && eddy_kafka_open_like(r->kafka, &k, err, sizeof err) != 0) {
    ends_free(e);
    ks->ends_failed = now_ms();
    return;
  }
  ks->ends = eddy_kcall_start(k, ends_run, e, ends_free, &r->progress, err, sizeof err);
  if (!ks->ends) ks->ends_failed = now_ms();
}

/* The query in hand, if answered: 1 when it started after every partition
 * looked read and found nothing more on any.  It is let go either way. */
static int ends_reached(eddy_ksource *ks) {
  int rc;
  if (!ks->ends || !eddy_kcall_done(ks->ends, &rc)) return 0;
  ends *e = eddy_kcall_data(ks->ends);
  int ok = rc == 0 && e->started >= ks->idle_since;
  int live = 0;
  for (int k = 0; k < ks->r->ncursors; k++)
    live += ks->r->cursors[k]->live && !atomic_load(&ks->r->cursors[k]->revoked);
  ok = ok && live == e->n;
  for (int i = 0; ok && i < e->n; i++)
    ok = e->cursors[i]->live && !atomic_load(&e->cursors[i]->revoked) &&
         e->highs[i] <= e->cursors[i]->next_read;
  if (rc) ks->ends_failed = now_ms();
  ks->ek = eddy_kcall_take_client(ks->ends);
  eddy_kcall_release(ks->ends);
  ks->ends = NULL;
  return ok;
}

int eddy_ksource_caught_up(eddy_ksource *ks) {
  if (!looks_read(ks)) {
    ks->idle_since = 0;
    return 0;
  }
  /* Events the relay delivered since may be on topics read here. */
  int64_t relayed = atomic_load(&ks->r->n.relayed);
  if (!ks->idle_since || relayed != ks->idle_relayed) {
    ks->idle_since = now_ms();
    ks->idle_relayed = relayed;
  }
  /* What librdkafka fetched may be older than what was produced since
   * (the relay's own events, for a consumer of them): the cluster's
   * answer, to a question asked after everything looked read, decides. */
  if (ends_reached(ks)) return 1;
  if (!ks->ends && now_ms() - ks->ends_failed >= ENDS_RETRY_MS) ends_start(ks);
  return 0;
}
