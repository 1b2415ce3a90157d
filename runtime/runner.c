/*
 * runner.c - `eddy run`: loads the app, reads the log, routes messages to
 * workers, keeps offsets, relays the outbox, and stops cleanly.
 *
 * Threads: this one (the libuv default loop) and one per worker.  The
 * runner reads every partition each consumer follows and routes each
 * message by key to a worker, so one key always runs on one worker, in
 * offset order.  Workers commit their own batches; the runner's write_mu
 * keeps this process to one SQLite writer at a time.
 *
 * Offsets: a partition's messages finish out of order (different keys on
 * different workers, a key waiting for its retry).  The committed offset
 * is the watermark below which every message is done; finished messages
 * above it are recorded as done offsets, which a restart skips.  So a crash
 * at any point neither loses a message nor applies one twice.
 */
#include "runner.h"
#include "kafka.h"
#include "admin.h"
#include "krelay.h"
#include "ksource.h"
#include "app.h"
#include "control.h"
#include "reload.h"
#include "engine.h"
#include "errors.h"
#include "guard.h"
#include "log.h"
#include "outbox.h"
#include "quarantine.h"
#include "state.h"

#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>

#include <lauxlib.h>
#include <lualib.h>

#define CHUNK 1024               /* messages per read of one partition */
#define MAX_QUEUED_PER_WORKER 20000
#define POLL_MS 20
#define RELAY_BATCH 2000
#define FINAL_RELAY_MS 5000      /* Kafka: how long a stop waits for the relay */
#define HOUSEKEEPING_MS 3600000

void eddy_runner_fatal(eddy_runner *r, const char *fmt, ...) {
  uv_mutex_lock(&r->track_mu);
  if (!r->failed) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->fatal, sizeof r->fatal, fmt, ap);
    va_end(ap);
    r->failed = 1;
  }
  uv_mutex_unlock(&r->track_mu);
  uv_async_send(&r->progress);
}

/* ---- the offset tracker ---------------------------------------------------- */

static int ring_grow(eddy_cursor *c) {
  size_t cap = c->cap ? c->cap * 2 : 1024;
  uint8_t *d = calloc(cap, 1);
  if (!d) return -1;
  for (int64_t o = c->watermark; o < c->end; o++)
    d[(uint64_t)o & (cap - 1)] = c->done[(uint64_t)o & (c->cap - 1)];
  free(c->done);
  c->done = d;
  c->cap = cap;
  return 0;
}

void eddy_cursor_add(eddy_cursor *c, int64_t offset) {
  if (offset != c->end) {
    /* A gap: those offsets are gone (retention) and count as done. */
    if (c->end == c->watermark) c->watermark = offset;
    else for (int64_t o = c->end; o < offset; o++) {
      if ((size_t)(o + 1 - c->watermark) > c->cap && ring_grow(c) != 0) abort();
      c->done[(uint64_t)o & (c->cap - 1)] = 1;
    }
    c->end = offset;
  }
  if ((size_t)(c->end + 1 - c->watermark) > c->cap && ring_grow(c) != 0) {
    /* Out of memory for a few bytes per message in flight: nothing
     * sensible remains; the store is consistent, a restart resumes. */
    eddy_logf("ERROR", "out of memory tracking offsets");
    abort();
  }
  c->done[(uint64_t)c->end & (c->cap - 1)] = 0;
  c->end++;
}

void eddy_cursor_mark_done(eddy_cursor *c, int64_t offset) {
  if (offset < c->watermark || offset >= c->end) return;
  c->done[(uint64_t)offset & (c->cap - 1)] = 1;
  while (c->watermark < c->end && c->done[(uint64_t)c->watermark & (c->cap - 1)])
    c->watermark++;
}

/* ---- generations and the store ------------------------------------------------ */

void eddy_gen_release(eddy_gen *g) {
  if (!g || atomic_fetch_sub(&g->refs, 1) != 1) return;
  for (int i = 0; i < g->nconsumers; i++) eddy_consumer_def_free(&g->defs[i]);
  free(g->defs);
  for (int i = 0; i < g->nhandler_files; i++) free(g->handler_files[i]);
  free(g->handler_files);
  free(g->handler_strict);
  free(g->catalog);
  free(g);
}

void eddy_runner_set_gen(eddy_runner *r, eddy_gen *g) {
  atomic_fetch_add(&g->refs, 1);
  eddy_gen *old = r->gen;
  r->gen = g;
  r->consumers = g->defs;
  r->nconsumers = g->nconsumers;
  eddy_gen_release(old);
}

/* Takes lock file DIR/locks/NAME.lock (flock).  The kernel drops it when
 * the process dies, SIGKILL included.  Returns the descriptor, -2 when
 * another process holds it, or -1 with err. */
static int take_lock(const char *dir, const char *name, char *err, size_t errlen) {
  char path[4096];
  snprintf(path, sizeof path, "%s/locks", dir);
  if (eddy_private_mkdir(path) != 0) {
    snprintf(err, errlen, "cannot create '%s': %s", path, strerror(errno));
    return -1;
  }
  snprintf(path, sizeof path, "%s/locks/%s.lock", dir, name);
  int fd = eddy_private_open(path, O_RDWR | O_CLOEXEC);
  if (fd < 0) {
    snprintf(err, errlen, "cannot open '%s': %s", path, strerror(errno));
    return -1;
  }
  if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
    close(fd);
    return -2;
  }
  return fd;
}

/* One process runs a consumer at a time on the embedded log. */
int eddy_runner_lock(eddy_runner *r, int i, const char *name, char *err, size_t errlen) {
  if (r->lock_fds[i] >= 0) return 0;
  int fd = take_lock(r->data_dir, name, err, errlen);
  if (fd == -2)
    snprintf(err, errlen, "consumer '%s' is already running in another process on '%s'",
             name, r->data_dir);
  if (fd < 0) return -1;
  r->lock_fds[i] = fd;
  return 0;
}

void eddy_runner_unlock(eddy_runner *r, int i) {
  if (r->lock_fds[i] >= 0) close(r->lock_fds[i]);
  r->lock_fds[i] = -1;
}

static int declared(const eddy_app *a, const char *topic) {
  for (int t = 0; t < a->ntopics; t++)
    if (strcmp(a->topic_names[t], topic) == 0) return 1;
  return 0;
}

int eddy_runner_check_topics(eddy_runner *r, const eddy_app *a, char *err, size_t errlen) {
  eddy_store *s = r->store;
  for (int i = 0; i < a->nconsumers; i++) {
    const eddy_consumer_def *c = &a->consumers[i];
    for (int k = 0; k < c->ntopics; k++) {
      eddy_topic_info t;
      if (!declared(a, c->topics[k]) && eddy_topic_get(s, c->topics[k], &t) != 0) {
        snprintf(err, errlen, "%s: consumer '%s' reads topic '%s', which the app does not "
                 "declare and the store does not have", c->file, c->name, c->topics[k]);
        return -1;
      }
    }
  }
  for (int i = 0; i < a->ntopics; i++) {
    eddy_topic_info t;
    if (eddy_topic_get(s, a->topic_names[i], &t) == 0 &&
        t.config.partitions < a->topics[i].partitions) {
      snprintf(err, errlen, "%s: topic '%s' exists with %d partitions, fewer than the %d "
               "the app asks for", r->app_file, a->topic_names[i], t.config.partitions,
               a->topics[i].partitions);
      return -1;
    }
  }
  return 0;
}

int eddy_runner_create_topics(eddy_runner *r, const eddy_app *a, char *err, size_t errlen) {
  for (int i = 0; i < a->ntopics; i++) {
    int created = 0;
    if (eddy_topic_ensure(r->store, a->topic_names[i], &a->topics[i], &created) != 0) {
      snprintf(err, errlen, "%s: %s", r->app_file, eddy_store_errmsg(r->store));
      return -1;
    }
    if (created)
      eddy_logf("INFO", "created topic '%s' with %d partition%s", a->topic_names[i],
                a->topics[i].partitions, a->topics[i].partitions == 1 ? "" : "s");
  }
  return 0;
}

int eddy_runner_register(eddy_runner *r, eddy_consumer_def *c, char *err, size_t errlen) {
  eddy_store *s = r->store;
  for (int k = 0; k < c->ntopics; k++) {
    eddy_topic_info t;
    if (eddy_topic_get(s, c->topics[k], &t) != 0) {
      snprintf(err, errlen, "%s: consumer '%s' reads topic '%s', which the app does not "
               "declare and the store does not have", c->file, c->name, c->topics[k]);
      return -1;
    }
    eddy_topic_config dc;
    eddy_topic_config_init(&dc);
    dc.partitions = t.config.partitions;
    int created = 0;
    if (eddy_topic_ensure(s, c->dlq_topics[k], &dc, &created) != 0 &&
        eddy_topic_get(s, c->dlq_topics[k], &t) != 0) {
      snprintf(err, errlen, "%s: consumer '%s': dead-letter topic: %s", c->file, c->name,
               eddy_store_errmsg(s));
      return -1;
    }
  }
  if (eddy_consumer_register(s, c->name, &c->store_id) != 0) {
    snprintf(err, errlen, "%s", eddy_store_errmsg(s));
    return -1;
  }
  return 0;
}

/* Sets cursor cu (consumer c, partition p of its topic k) to the stored
 * offset: the committed one, else the consumer's starting position, and
 * loads the offsets above it a previous run finished.  On Kafka (kafka
 * set) the log is elsewhere: with no stored offset the start is not known
 * here (librdkafka finds it, ksource.c), and the cursor waits at 0 with
 * start_unknown set. */
static int cursor_init(eddy_runner *r, eddy_cursor *cu, const eddy_consumer_def *c,
                       int kafka, char *err, size_t errlen) {
  eddy_store *s = r->store;
  int64_t committed, start, end;
  if (eddy_group_committed(s, c->name, cu->topic, cu->partition, &committed) != 0 ||
      eddy_log_offsets(s, cu->topic, cu->partition, &start, &end) != 0) {
    snprintf(err, errlen, "%s", eddy_store_errmsg(s));
    return -1;
  }
  int unknown = 0;
  if (kafka) {
    start = 0;
    unknown = committed < 0;
    if (unknown) committed = 0;
  }
  if (committed < 0) committed = c->from_end ? end : start;
  if (committed < start) {
    eddy_logx("WARN",
              &(eddy_logfields){ .consumer = c->name, .topic = cu->topic,
                                 .partition = cu->partition, .set = EDDY_LOGF_PARTITION },
              "offsets %" PRId64 " to %" PRId64
              " were removed by retention before they were handled", committed, start - 1);
    committed = start;
  }
  free(cu->skip);
  cu->skip = NULL;
  cu->nskip = cu->skip_at = 0;
  if (eddy_done_offsets_load(s, c->name, cu->topic_id, cu->partition, committed, &cu->skip,
                             &cu->nskip) != 0) {
    snprintf(err, errlen, "%s", eddy_store_errmsg(s));
    return -1;
  }
  uv_mutex_lock(&r->track_mu);
  cu->next_read = cu->watermark = cu->end = cu->committed = committed;
  uv_mutex_unlock(&r->track_mu);
  cu->start_unknown = unknown;
  cu->caught_up = 0;
  return 0;
}

static eddy_cursor *find_cursor(eddy_runner *r, int i, const char *topic, int p) {
  for (int k = 0; k < r->ncursors; k++) {
    eddy_cursor *cu = r->cursors[k];
    if (cu->consumer == i && cu->partition == p && strcmp(cu->topic, topic) == 0) return cu;
  }
  return NULL;
}

eddy_cursor *eddy_runner_open_cursor(eddy_runner *r, int i, const eddy_consumer_def *c,
                                     const char *topic, int p, int live, char *err,
                                     size_t errlen) {
  eddy_topic_info t;
  if (eddy_topic_get(r->store, topic, &t) != 0) {
    snprintf(err, errlen, "%s", eddy_store_errmsg(r->store));
    return NULL;
  }
  eddy_cursor *cu = find_cursor(r, i, topic, p);
  if (cu && atomic_load(&cu->retired_gen) == 0 && !atomic_load(&cu->revoked))
    return cu;  /* still read */
  if (!cu) {
    if (r->ncursors == r->capcursors) {
      int cap = r->capcursors ? r->capcursors * 2 : 64;
      eddy_cursor **n = realloc(r->cursors, (size_t)cap * sizeof *n);
      if (!n) { snprintf(err, errlen, "out of memory"); return NULL; }
      r->cursors = n;
      r->capcursors = cap;
    }
    cu = calloc(1, sizeof *cu);
    char *name = cu ? strdup(topic) : NULL;
    if (!name) { free(cu); snprintf(err, errlen, "out of memory"); return NULL; }
    cu->consumer = i;
    cu->topic = name;
    cu->topic_id = t.id;
    cu->partition = p;
    r->cursors[r->ncursors++] = cu;
  }
  /* New, or back after a reload or a revocation: its messages were
   * dropped unhandled, so it starts again from the stored offset. */
  if (cursor_init(r, cu, c, 1, err, errlen) != 0) return NULL;
  atomic_store(&cu->retired_gen, 0);
  atomic_store(&cu->revoked, 0);
  cu->live = live;
  return cu;
}

int eddy_runner_open_cursors(eddy_runner *r, int i, const eddy_consumer_def *c, int live,
                             char *err, size_t errlen) {
  for (int k = 0; k < c->ntopics; k++) {
    eddy_topic_info t;
    if (eddy_topic_get(r->store, c->topics[k], &t) != 0) {
      snprintf(err, errlen, "%s", eddy_store_errmsg(r->store));
      return -1;
    }
    for (int p = 0; p < t.config.partitions; p++) {
      eddy_cursor *cu = find_cursor(r, i, c->topics[k], p);
      if (cu && atomic_load(&cu->retired_gen) == 0) continue;  /* still read */
      if (!cu) {
        if (r->ncursors == r->capcursors) {
          int cap = r->capcursors ? r->capcursors * 2 : 64;
          eddy_cursor **n = realloc(r->cursors, (size_t)cap * sizeof *n);
          if (!n) { snprintf(err, errlen, "out of memory"); return -1; }
          r->cursors = n;
          r->capcursors = cap;
        }
        cu = calloc(1, sizeof *cu);
        char *topic = cu ? strdup(c->topics[k]) : NULL;
        if (!topic) { free(cu); snprintf(err, errlen, "out of memory"); return -1; }
        cu->consumer = i;
        cu->topic = topic;
        cu->topic_id = t.id;
        cu->partition = p;
        r->cursors[r->ncursors++] = cu;
      }
      /* New, or back after a reload retired it: its messages were
       * dropped unhandled, so it starts again from the stored offset. */
      if (cursor_init(r, cu, c, 0, err, errlen) != 0) return -1;
      atomic_store(&cu->retired_gen, 0);
      cu->live = live;
    }
  }
  return 0;
}

/* ---- reading and routing ------------------------------------------------------ */

static uint64_t route_hash(const eddy_job *j) {
  uint64_t h = 0xcbf29ce484222325ULL ^ (uint64_t)j->cursor->consumer * 0x9e3779b97f4a7c15ULL;
  const unsigned char *p;
  size_t n;
  uint64_t part[2];
  if (j->has_key) {
    p = (const unsigned char *)j->key;
    n = j->key_len;
  } else {
    /* Unkeyed: the partition is the key, so partition order holds. */
    part[0] = (uint64_t)j->cursor->topic_id;
    part[1] = (uint64_t)j->cursor->partition;
    p = (const unsigned char *)part;
    n = sizeof part;
  }
  for (size_t i = 0; i < n; i++) { h ^= p[i]; h *= 0x100000001b3ULL; }
  return h ^ (h >> 29);
}

struct route {
  eddy_runner *r;
  eddy_cursor *c;
  eddy_job **head, **tail;
  int *count;
  int64_t last;
  int n;
  int oom;
};

static int on_message(void *ud, const eddy_message *m) {
  struct route *rt = ud;
  eddy_cursor *c = rt->c;
  rt->last = m->offset;
  rt->n++;
  while (c->skip_at < c->nskip && c->skip[c->skip_at] < m->offset) c->skip_at++;
  if (c->skip_at < c->nskip && c->skip[c->skip_at] == m->offset) {
    /* Finished before a restart: done already. */
    uv_mutex_lock(&rt->r->track_mu);
    eddy_cursor_add(c, m->offset);
    eddy_cursor_mark_done(c, m->offset);
    uv_mutex_unlock(&rt->r->track_mu);
    return 0;
  }
  eddy_job *j = eddy_job_new(c, m->offset, m->timestamp, m->id, m->id_len, m->key,
                             m->key_len, m->key != NULL, m->value, m->value_len,
                             m->headers, m->headers_len);
  if (!j) { rt->oom = 1; return 1; }
  uv_mutex_lock(&rt->r->track_mu);
  eddy_cursor_add(c, m->offset);
  uv_mutex_unlock(&rt->r->track_mu);
  atomic_fetch_add_explicit(&rt->r->cm[c->consumer].received, 1, memory_order_relaxed);
  int w = (int)(route_hash(j) % (uint64_t)rt->r->nworkers);
  if (rt->tail[w]) rt->tail[w]->next = j; else rt->head[w] = j;
  rt->tail[w] = j;
  rt->count[w]++;
  return 0;
}

static void schedule_again(eddy_runner *r);

/* A message from Kafka for cursor c (ksource.c). */
static int kafka_message(void *ud, eddy_cursor *c, const eddy_message *m) {
  struct route *rt = ud;
  if (m->offset < c->next_read) return 0;   /* read before: a fetch repeated */
  rt->c = c;
  int rc = on_message(rt, m);
  if (rc == 0) c->next_read = m->offset + 1;
  return rc;
}

/* Reads what is new in every partition, up to the queue limit, and hands
 * it to the workers. */
static void pump(eddy_runner *r) {
  if (r->stopping || r->failed) return;
  int nw = r->nworkers;
  eddy_job *head[64] = { 0 }, *tail[64] = { 0 };
  int count[64] = { 0 };
  int more = 0;
  if (r->ksource) {
    int room = MAX_QUEUED_PER_WORKER * nw - atomic_load(&r->queued);
    int max = room < 4 * CHUNK ? room : 4 * CHUNK;
    struct route rt = { r, NULL, head, tail, count, -1, 0, 0 };
    int got = max > 0 ? eddy_ksource_read(r->ksource, max, kafka_message, &rt) : 0;
    if (rt.oom) eddy_runner_fatal(r, "out of memory reading messages");
    for (int w = 0; w < nw; w++)
      eddy_worker_push(r->workers[w], head[w], tail[w], count[w]);
    if (max > 0 && got == max) schedule_again(r);
    return;
  }
  for (int i = 0; i < r->ncursors; i++) {
    /* Full: the workers' next commit (the progress async) pumps again. */
    if (atomic_load(&r->queued) >= MAX_QUEUED_PER_WORKER * nw) break;
    eddy_cursor *c = r->cursors[i];
    if (!c->live || atomic_load(&c->retired_gen)) continue;
    struct route rt = { r, c, head, tail, count, -1, 0, 0 };
    int got = eddy_log_fetch(r->store, c->topic, c->partition, c->next_read, CHUNK,
                             on_message, &rt);
    if (rt.n > 0) c->next_read = rt.last + 1;
    if (rt.oom) { eddy_runner_fatal(r, "out of memory reading messages"); break; }
    if (got < 0) {
      eddy_runner_fatal(r, "%s", eddy_store_errmsg(r->store));
      break;
    }
    c->caught_up = rt.n < CHUNK;
    if (!c->caught_up) more = 1;
  }
  for (int w = 0; w < nw; w++)
    eddy_worker_push(r->workers[w], head[w], tail[w], count[w]);
  if (more) schedule_again(r);
}

static void on_again(uv_idle_t *h) {
  eddy_runner *r = h->data;
  uv_idle_stop(h);
  r->again_on = 0;
  pump(r);
}

static void schedule_again(eddy_runner *r) {
  if (r->again_on) return;
  r->again_on = 1;
  uv_idle_start(&r->again, on_again);
}

/* ---- relay, watermarks, drain ---------------------------------------------------- */

static void count_relayed(eddy_runner *r, int64_t total) {
  if (!total) return;
  atomic_fetch_add(&r->n.relayed, total);
  int64_t p = atomic_fetch_sub(&r->outbox_pending, total) - total;
  if (p < 0) atomic_store(&r->outbox_pending, 0);
}

/* On Kafka, instances sharing a data directory share its outbox: one of
 * them relays it at a time, the holder of DIR/locks/outbox-relay.lock, so
 * a row is not published twice.  The others try again every second and
 * take over when the holder stops.  1 when this process holds it. */
static int relay_lease(eddy_runner *r) {
  if (r->relay_fd >= 0) return 1;
  int64_t now = eddy_now_ms();
  if (now - r->relay_tried < 1000) return 0;
  r->relay_tried = now;
  char err[512];
  int fd = take_lock(r->data_dir, "outbox-relay", err, sizeof err);
  if (fd == -1) eddy_logf("WARN", "outbox relay: %s (will retry)", err);
  if (fd == -2 && !r->relay_waiting) {
    r->relay_waiting = 1;
    eddy_logf("INFO", "outbox relay: another process on '%s' relays the outbox", r->data_dir);
  }
  if (fd < 0) return 0;
  if (r->relay_waiting) eddy_logf("INFO", "outbox relay: this process relays the outbox now");
  r->relay_fd = fd;
  return 1;
}

static int relay(eddy_runner *r) {
  int64_t total = 0;
  if (r->kafka) {
    /* Never waits for the broker (krelay.h): a broker that is down keeps
     * the batch in flight, and the runner goes on. */
    if (!r->krelay || !relay_lease(r)) return 0;
    int rc = eddy_krelay_step(r->krelay, &total);
    if (rc) {
      int64_t now = eddy_now_ms();
      if (now - r->relay_warned > 10000) {
        r->relay_warned = now;
        eddy_logf("WARN", "outbox relay: %s (will retry)", eddy_store_errmsg(r->store));
      }
    }
    count_relayed(r, total);
    return 0;
  }
  for (;;) {
    int64_t n = 0;
    uv_mutex_lock(&r->write_mu);
    int rc = eddy_outbox_relay(r->store, RELAY_BATCH, 1, &n);
    uv_mutex_unlock(&r->write_mu);
    if (rc) {
      if (rc == EDDY_ETIMEDOUT) {
        eddy_logf("WARN", "outbox relay: %s (will retry)", eddy_store_errmsg(r->store));
        return 0;
      }
      eddy_runner_fatal(r, "outbox relay: %s", eddy_store_errmsg(r->store));
      return -1;
    }
    total += n;
    if (n < RELAY_BATCH) break;
  }
  if (total) {
    count_relayed(r, total);
    /* Consumers may follow the topics just written. */
    for (int i = 0; i < r->ncursors; i++) r->cursors[i]->caught_up = 0;
  }
  return 0;
}

/* Writes watermarks that advanced without a worker commit (skipped
 * offsets). */
static void flush_watermarks(eddy_runner *r) {
  uv_mutex_lock(&r->write_mu);
  int began = 0, rc = 0;
  for (int i = 0; rc == 0 && i < r->ncursors; i++) {
    eddy_cursor *c = r->cursors[i];
    uv_mutex_lock(&r->track_mu);
    int64_t w = c->watermark;
    uv_mutex_unlock(&r->track_mu);
    if (w <= c->committed) continue;
    if (!began) { rc = eddy_store_begin(r->store); began = rc == 0; }
    const char *group = r->consumers[c->consumer].name;
    if (rc == 0) rc = eddy_group_commit(r->store, group, c->topic, c->partition, w);
    if (rc == 0) rc = eddy_done_offsets_clear(r->store, group, c->topic_id, c->partition, w);
    if (rc == 0) c->committed = w;
  }
  if (began) {
    if (rc == 0) rc = eddy_store_commit(r->store);
    else eddy_store_rollback(r->store);
  }
  uv_mutex_unlock(&r->write_mu);
  if (rc && rc != EDDY_ETIMEDOUT)
    eddy_runner_fatal(r, "committing offsets: %s", eddy_store_errmsg(r->store));
}

/* Fires the timers that are due (outbox.h), each batch in a transaction of
 * its own, and learns when the next one is due.  Every second it also
 * looks at the store, for timers another process wrote. */
static void fire_timers(eddy_runner *r) {
  int64_t now = eddy_now_ms();
  if (atomic_load(&r->next_due) > now && now - r->timers_checked < 1000) return;
  int64_t fired = 0, total = 0, next = INT64_MAX, waiting = 0;
  int rc = 0;
  do {
    uv_mutex_lock(&r->write_mu);
    rc = eddy_store_begin(r->store);
    if (rc == 0) rc = eddy_timers_fire(r->store, now, r->kafka != NULL, RELAY_BATCH, &fired);
    if (rc == 0) rc = eddy_store_commit(r->store);
    else eddy_store_rollback(r->store);
    if (rc == 0) rc = eddy_timers_next(r->store, &next, &waiting);
    uv_mutex_unlock(&r->write_mu);
    if (rc == 0) total += fired;
  } while (rc == 0 && fired == RELAY_BATCH);
  if (rc) {
    if (rc != EDDY_ETIMEDOUT) eddy_runner_fatal(r, "timers: %s", eddy_store_errmsg(r->store));
    return;
  }
  r->timers_checked = now;
  r->timers_waiting = waiting;
  /* A worker may have lowered next_due meanwhile: keep the lower. */
  int64_t cur = atomic_load(&r->next_due);
  while (!atomic_compare_exchange_weak(&r->next_due, &cur, next < cur || cur <= now ? next : cur)) {}
  if (!total) return;
  if (r->kafka) {
    atomic_fetch_add(&r->outbox_pending, total);
  } else {
    atomic_fetch_add(&r->n.relayed, total);
    for (int i = 0; i < r->ncursors; i++) r->cursors[i]->caught_up = 0;
  }
}

static int drained(eddy_runner *r) {
  if (atomic_load(&r->queued) || atomic_load(&r->parked)) return 0;
  /* Durable timers are work still to come: --drain waits for them. */
  if (r->timers_waiting || atomic_load(&r->next_due) != INT64_MAX) return 0;
  int64_t pending = 0;
  if (eddy_outbox_count(r->store, &pending) != 0 || pending) return 0;
  if (r->ksource) return eddy_ksource_caught_up(r->ksource);
  for (int i = 0; i < r->ncursors; i++) {
    eddy_cursor *c = r->cursors[i];
    if (!c->live || atomic_load(&c->retired_gen)) continue;
    if (!c->caught_up) return 0;
    uv_mutex_lock(&r->track_mu);
    int busy = c->watermark != c->end;
    uv_mutex_unlock(&r->track_mu);
    if (busy) return 0;
    int64_t start, end;
    if (eddy_log_offsets(r->store, c->topic, c->partition, &start, &end) != 0) return 0;
    if (end > c->next_read) { c->caught_up = 0; return 0; }
  }
  return 1;
}

static void tick(eddy_runner *r) {
  if (r->failed || r->stopping) { uv_stop(r->loop); return; }
  if (r->reloader) eddy_reloader_tick(r->reloader);
  fire_timers(r);
  if (r->ksource) eddy_ksource_tick(r->ksource);
  if ((atomic_load(&r->outbox_pending) > 0 || (r->krelay && eddy_krelay_busy(r->krelay))) &&
      relay(r) != 0) {
    uv_stop(r->loop);
    return;
  }
  pump(r);
  if (r->drain && !r->again_on && drained(r)) {
    r->stopping = 1;
    uv_stop(r->loop);
  }
}

static void on_progress(uv_async_t *a) { tick(a->data); }

static void on_poll(uv_timer_t *t) {
  eddy_runner *r = t->data;
  /* Work from other processes (producers, replays) shows up here. */
  for (int i = 0; i < r->ncursors; i++) r->cursors[i]->caught_up = 0;
  int64_t pending = 0;
  if (eddy_outbox_count(r->store, &pending) == 0 && pending)
    atomic_store(&r->outbox_pending, pending);
  tick(r);
}

static void on_housekeeping(uv_timer_t *t) {
  eddy_runner *r = t->data;
  flush_watermarks(r);
  int64_t removed = 0;
  uv_mutex_lock(&r->write_mu);
  if (eddy_store_begin(r->store) == 0) {
    if (eddy_dedupe_expire(r->store, eddy_now_ms() - r->dedupe_window_ms, &removed) == 0)
      eddy_store_commit(r->store);
    else
      eddy_store_rollback(r->store);
  }
  uv_mutex_unlock(&r->write_mu);
  if (removed) eddy_logf("INFO", "expired %" PRId64 " dedupe records", removed);
}

static void hard_exit(int sig) {
  /* The second signal: leave now.  Everything committed is safe in the
   * store; what was in flight runs again next time. */
  static const char msg[] = "eddy run: second signal, exiting at once\n";
  ssize_t w = write(STDERR_FILENO, msg, sizeof msg - 1);
  (void)w;
  _exit(128 + sig);
}

static void on_signal(uv_signal_t *h, int sig) {
  eddy_runner *r = h->data;
  eddy_logf("INFO", "%s: finishing the work in flight, then stopping",
            sig == SIGINT ? "SIGINT" : "SIGTERM");
  r->stopping = 1;
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = hard_exit;
  uv_signal_stop(&r->sigint);
  uv_signal_stop(&r->sigterm);
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGTERM, &sa, NULL);
  uv_stop(r->loop);
}

/* ---- the run ------------------------------------------------------------------- */

static void free_runner(eddy_runner *r) {
  while (r->recent) { eddy_recent *n = r->recent->next; free(r->recent); r->recent = n; }
  for (int i = 0; i < r->ncursors; i++) {
    free(r->cursors[i]->done);
    free(r->cursors[i]->skip);
    free((void *)r->cursors[i]->topic);
    free(r->cursors[i]);
  }
  free(r->cursors);
  eddy_gen_release(r->gen);
  for (int i = 0; i < EDDY_MAX_CONSUMERS; i++) {
    free((void *)r->slot_seqs[i]);
    eddy_runner_unlock(r, i);
  }
  if (r->relay_fd >= 0) close(r->relay_fd);
  free(r->admin_addr);
  free(r->workers);
  free(r->data_dir);
  free(r->app_dir);
  free(r->app_file);
  eddy_guard_stop(r->guard);
  r->guard = NULL;
  eddy_store_close(r->store);
  eddy_krelay_free(r->krelay);
  eddy_kafka_close(r->kafka);
}

static void close_cb(uv_handle_t *h) { (void)h; }

/* On Kafka: checks that every topic the consumers read is declared or
 * exists, creates the declared ones and the dead-letter topics that are
 * missing, and registers the consumers in the store (their state and
 * offsets live there).  No lock files: Kafka's group gives each partition
 * to one member, and instances that share a data directory share its
 * dedupe records. */
static int kafka_topics(eddy_runner *r, eddy_app *a, char *err, size_t errlen) {
  eddy_kafka *k = r->kafka;
  for (int i = 0; i < a->nconsumers; i++) {
    const eddy_consumer_def *c = &a->consumers[i];
    for (int t = 0; t < c->ntopics; t++) {
      int np, declared = 0;
      for (int d = 0; d < a->ntopics; d++) declared |= strcmp(a->topic_names[d], c->topics[t]) == 0;
      if (!declared && eddy_kafka_topic_partitions(k, c->topics[t], &np) != 0) {
        snprintf(err, errlen, "%s: consumer '%s' reads topic '%s', which the app does not "
                 "declare and Kafka does not have (%s)", c->file, c->name, c->topics[t],
                 eddy_kafka_errmsg(k));
        return -1;
      }
    }
  }
  /* A topic that exists is left as it is: a cluster may refuse creating
   * topics (ACLs, or no controller answering) while having them all. */
  for (int d = 0; d < a->ntopics; d++) {
    int created = 0, np;
    if (eddy_kafka_topic_partitions(k, a->topic_names[d], &np) == 0) continue;
    if (eddy_kafka_topic_create(k, a->topic_names[d], &a->topics[d], 1, &created) != 0) {
      snprintf(err, errlen, "%s: %s", r->app_file, eddy_kafka_errmsg(k));
      return -1;
    }
    if (created)
      eddy_logf("INFO", "created topic '%s' with %d partition%s on Kafka", a->topic_names[d],
                a->topics[d].partitions, a->topics[d].partitions == 1 ? "" : "s");
  }
  for (int i = 0; i < a->nconsumers; i++) {
    const eddy_consumer_def *c = &a->consumers[i];
    for (int t = 0; t < c->ntopics; t++) {
      eddy_topic_config dc;
      eddy_topic_config_init(&dc);
      int created = 0, np;
      if (eddy_kafka_topic_partitions(k, c->topics[t], &dc.partitions) != 0 ||
          (eddy_kafka_topic_partitions(k, c->dlq_topics[t], &np) != 0 &&
           eddy_kafka_topic_create(k, c->dlq_topics[t], &dc, 1, &created) != 0)) {
        snprintf(err, errlen, "%s: consumer '%s': dead-letter topic: %s", c->file, c->name,
                 eddy_kafka_errmsg(k));
        return -1;
      }
      /* The store keeps the topic's offsets in a row of its own, made now
       * with Kafka's partition count: assignments, on the loop, do not ask
       * the cluster (ksource.c). */
      eddy_topic_info ti;
      if (eddy_topic_get(r->store, c->topics[t], &ti) != 0 &&
          eddy_topic_ensure(r->store, c->topics[t], &dc, &created) != 0) {
        snprintf(err, errlen, "%s", eddy_store_errmsg(r->store));
        return -1;
      }
    }
  }
  return 0;
}

/* Generation 1: the app's consumers, numbered in load order.  Returns 0,
 * or -1 after printing why. */
static int first_gen(eddy_runner *r, eddy_app *a) {
  char err[1024];
  if (a->nconsumers > EDDY_MAX_CONSUMERS) {
    fprintf(stderr, "eddy run: %s: %d consumers, more than the %d one run can have\n",
            r->app_file, a->nconsumers, EDDY_MAX_CONSUMERS);
    return -1;
  }
  if (r->kafka) {
    if (kafka_topics(r, a, err, sizeof err) != 0) goto fail;
  } else {
    for (int i = 0; i < a->nconsumers; i++)
      if (eddy_runner_lock(r, i, a->consumers[i].name, err, sizeof err) != 0) goto fail;
    if (eddy_runner_check_topics(r, a, err, sizeof err) != 0) goto fail;
    if (eddy_runner_create_topics(r, a, err, sizeof err) != 0) goto fail;
  }
  eddy_gen *g = calloc(1, sizeof *g);
  if (!g) { snprintf(err, sizeof err, "out of memory"); goto fail; }
  g->no = 1;
  g->nconsumers = a->nconsumers;
  g->defs = a->consumers;
  a->consumers = NULL;
  a->nconsumers = 0;
  g->handler_files = a->handler_files;
  g->nhandler_files = a->nhandler_files;
  g->handler_strict = a->handler_strict;
  a->handler_files = NULL;
  a->nhandler_files = 0;
  a->handler_strict = NULL;
  g->catalog = a->catalog;
  a->catalog = NULL;
  eddy_runner_set_gen(r, g);
  int64_t now = eddy_now_ms();
  for (int i = 0; i < g->nconsumers; i++) {
    eddy_consumer_def *c = &g->defs[i];
    c->loaded_at = now;
    r->slot_seqs[i] = calloc(EDDY_EPOCH_SLOTS, sizeof *r->slot_seqs[i]);
    if (!r->slot_seqs[i]) { snprintf(err, sizeof err, "out of memory"); goto fail; }
    c->slot_seq = r->slot_seqs[i];
    if (r->kafka) {
      if (eddy_consumer_register(r->store, c->name, &c->store_id) != 0) {
        snprintf(err, sizeof err, "%s", eddy_store_errmsg(r->store));
        goto fail;
      }
    } else if (eddy_runner_register(r, c, err, sizeof err) != 0) {
      goto fail;
    }
  }
  if (eddy_store_commits(r->store, 0, &r->store_commits) != 0) {
    snprintf(err, sizeof err, "%s", eddy_store_errmsg(r->store));
    goto fail;
  }
  /* On Kafka, cursors come with the group's assignments (ksource.c). */
  for (int i = 0; !r->kafka && i < g->nconsumers; i++)
    if (eddy_runner_open_cursors(r, i, &g->defs[i], 1, err, sizeof err) != 0) goto fail;
  return 0;
fail:
  fprintf(stderr, "eddy run: %s\n", err);
  return -1;
}

/* The Kafka relay, knowing the topics that exist: those consumers read and
 * their dead-letter topics (kafka_topics made them). */
static int start_relay(eddy_runner *r, char *err, size_t errlen) {
  if (eddy_krelay_start(r, &r->krelay, err, errlen) != 0) return -1;
  for (int i = 0; i < r->nconsumers; i++) {
    const eddy_consumer_def *c = &r->consumers[i];
    for (int t = 0; t < c->ntopics; t++) {
      eddy_krelay_known(r->krelay, c->topics[t]);
      eddy_krelay_known(r->krelay, c->dlq_topics[t]);
    }
  }
  return 0;
}

int eddy_run(const eddy_run_options *o) {
  eddy_runner rr;
  eddy_runner *r = &rr;
  memset(r, 0, sizeof *r);
  for (int i = 0; i < EDDY_MAX_CONSUMERS; i++) r->lock_fds[i] = -1;
  r->relay_fd = -1;
  atomic_store(&r->next_due, INT64_MIN);   /* look at the store's timers first */
  uv_mutex_init(&r->write_mu);
  uv_mutex_init(&r->track_mu);
  r->drain = o->drain;
  for (int i = 0; i < 64; i++) atomic_store(&r->snaps[i], UINT64_MAX);
  r->started_ms = eddy_now_ms();
  r->data_override = o->data;
  int status = 1;
  eddy_app a;
  char err[1024];
  if (eddy_app_read(o->app, o->data, &a, err, sizeof err) != 0) {
    fprintf(stderr, "eddy run: %s\n", err);
    goto out;
  }
  r->data_dir = strdup(a.data_dir);
  r->app_dir = strdup(a.app_dir);
  r->app_file = strdup(o->app);
  r->app_workers = a.workers;
  r->nworkers = o->workers > 0 ? o->workers : a.workers;
  if (r->nworkers > 64) r->nworkers = 64;
  r->dedupe_window_ms = a.dedupe_window_ms;

  const char *broker = o->broker ? o->broker : a.broker;
  if (broker &&
      eddy_kafka_open(broker, (const char *const *)a.kafka, &r->kafka, err, sizeof err) != 0) {
    fprintf(stderr, "eddy run: %s\n", err);
    eddy_app_free(&a);
    goto out;
  }
  if (r->kafka) {
    eddy_kafka_log_errors(r->kafka, 1);
    /* librdkafka's default; the size limit ctx:emit checks on Kafka. */
    const char *mmb = eddy_kafka_prop(r->kafka, "message.max.bytes");
    r->kafka_max_message = mmb ? strtoll(mmb, NULL, 10) : 1000000;
    if (r->kafka_max_message <= 0) r->kafka_max_message = 1000000;
  }
  eddy_store_options so = { 1, 0 };
  if (eddy_store_open(r->data_dir, &so, &r->store, err, sizeof err) != 0) {
    fprintf(stderr, "eddy run: %s\n", err);
    eddy_app_free(&a);
    goto out;
  }
  /* What the last runs were handling when they died, before any worker
   * starts (guard.h). */
  if (eddy_guard_start(r->store, r->nworkers, &r->guard, err, sizeof err) != 0) {
    fprintf(stderr, "eddy run: %s\n", err);
    eddy_app_free(&a);
    goto out;
  }
  /* `eddy dlq replay` on this data directory goes where the app runs. */
  if (eddy_store_meta_set(r->store, "broker", r->kafka ? broker : "") != 0) {
    fprintf(stderr, "eddy run: %s\n", eddy_store_errmsg(r->store));
    eddy_app_free(&a);
    goto out;
  }
  const char *admin_addr = o->admin ? o->admin : a.admin;
  r->admin_addr = admin_addr ? strdup(admin_addr) : NULL;
  r->admin_public = a.admin_public;
  int rc = first_gen(r, &a);
  if (rc == 0 && eddy_reloader_new(r, &a, &r->reloader, err, sizeof err) != 0) {
    fprintf(stderr, "eddy run: %s\n", err);
    rc = -1;
  }
  eddy_app_free(&a);
  if (rc != 0) goto out;

  r->loop = uv_default_loop();
  uv_async_init(r->loop, &r->progress, on_progress);
  r->progress.data = r;
  /* The admin endpoint first: a port in use is a bad start, said in one
   * line before anything runs. */
  if (r->admin_addr &&
      eddy_admin_start(r, r->admin_addr, r->admin_public, &r->admin, err, sizeof err) != 0) {
    fprintf(stderr, "eddy run: %s\n", err);
    uv_close((uv_handle_t *)&r->progress, close_cb);
    uv_run(r->loop, UV_RUN_DEFAULT);
    eddy_admin_free(r->admin);
    r->admin = NULL;
    goto out;
  }
  r->workers = calloc((size_t)r->nworkers, sizeof *r->workers);
  for (int i = 0; i < r->nworkers; i++) {
    r->workers[i] = eddy_worker_start(r, i, err, sizeof err);
    if (!r->workers[i]) {
      fprintf(stderr, "eddy run: %s\n", err);
      for (int k = 0; k < i; k++) eddy_worker_stop(r->workers[k]);
      eddy_admin_stop(r->admin);
      uv_close((uv_handle_t *)&r->progress, close_cb);
      uv_run(r->loop, UV_RUN_DEFAULT);
      eddy_admin_free(r->admin);
      r->admin = NULL;
      goto out;
    }
  }
  eddy_logf("INFO", "eddy run: app=%s data=%s workers=%d consumers=%d partitions=%d%s",
            r->app_file, r->data_dir, r->nworkers, r->nconsumers, r->ncursors,
            r->drain ? " (drain)" : "");
  for (int i = 0; i < r->nconsumers; i++)
    eddy_logx("INFO",
              &(eddy_logfields){ .consumer = r->consumers[i].name,
                                 .version = r->consumers[i].version,
                                 .text_hide = EDDY_LOGF_VERSION },
              "file=%s version=%s", r->consumers[i].file, r->consumers[i].version);

  uv_timer_init(r->loop, &r->poll);
  r->poll.data = r;
  uv_timer_init(r->loop, &r->housekeeping);
  r->housekeeping.data = r;
  uv_idle_init(r->loop, &r->again);
  r->again.data = r;
  uv_signal_init(r->loop, &r->sigint);
  uv_signal_init(r->loop, &r->sigterm);
  r->sigint.data = r->sigterm.data = r;
  uv_signal_start(&r->sigint, on_signal, SIGINT);
  uv_signal_start(&r->sigterm, on_signal, SIGTERM);
  uv_timer_start(&r->poll, on_poll, POLL_MS, POLL_MS);
  uv_timer_start(&r->housekeeping, on_housekeeping, 1000, HOUSEKEEPING_MS);
  if (eddy_reloader_start(r->reloader) != 0) r->stopping = 1;

  if (r->kafka && !r->stopping && eddy_ksource_start(r, &r->ksource, err, sizeof err) != 0) {
    eddy_logf("ERROR", "eddy run: %s", err);
    r->stopping = 1;
    r->failed = 1;
    snprintf(r->fatal, sizeof r->fatal, "%.500s", err);
  }

  if (r->kafka && !r->stopping && start_relay(r, err, sizeof err) != 0) {
    eddy_logf("ERROR", "eddy run: %s", err);
    r->stopping = 1;
    r->failed = 1;
    snprintf(r->fatal, sizeof r->fatal, "%.500s", err);
  }
  /* Outbox rows left by an earlier run go first. */
  atomic_store(&r->outbox_pending, 1);
  tick(r);
  if (!r->stopping && !r->failed) uv_run(r->loop, UV_RUN_DEFAULT);

  eddy_reloader_stop(r->reloader);
  for (int i = 0; i < r->nworkers; i++) eddy_worker_stop(r->workers[i]);
  r->workers_gone = 1;
  if (!r->failed) flush_watermarks(r);
  /* Kafka: the groups are left (their last offsets committed) in
   * librdkafka's background while the outbox is relayed; the two wait for
   * the broker side by side, 5 s each at most. */
  eddy_ksource_leave(r->ksource);
  if (!r->failed) {
    if (!r->kafka) {
      relay(r);
    } else if (r->krelay && relay_lease(r)) {
      int64_t n = 0;
      if (eddy_krelay_finish(r->krelay, FINAL_RELAY_MS, &n) != 0)
        eddy_logf("WARN", "outbox relay: %s", eddy_store_errmsg(r->store));
      count_relayed(r, n);
    }
  }
  eddy_ksource_stop(r->ksource);
  eddy_krelay_stop(r->krelay);
  eddy_admin_stop(r->admin);
  uv_close((uv_handle_t *)&r->poll, close_cb);
  uv_close((uv_handle_t *)&r->housekeeping, close_cb);
  uv_close((uv_handle_t *)&r->again, close_cb);
  if (!uv_is_closing((uv_handle_t *)&r->sigint)) uv_close((uv_handle_t *)&r->sigint, close_cb);
  if (!uv_is_closing((uv_handle_t *)&r->sigterm)) uv_close((uv_handle_t *)&r->sigterm, close_cb);
  uv_close((uv_handle_t *)&r->progress, close_cb);
  uv_run(r->loop, UV_RUN_DEFAULT);
  uv_loop_close(r->loop);
  eddy_reloader_free(r->reloader);
  r->reloader = NULL;
  eddy_ksource_free(r->ksource);
  r->ksource = NULL;
  eddy_admin_free(r->admin);
  r->admin = NULL;

  double secs = (double)(eddy_now_ms() - r->started_ms) / 1000.0;
  eddy_logf(r->failed ? "ERROR" : "INFO",
            "eddy run: %s after %.1fs: received=%" PRId64 " handled=%" PRId64
            " deduplicated=%" PRId64 " retried=%" PRId64 " quarantined=%" PRId64
            " emitted=%" PRId64 " relayed=%" PRId64 " conflicts=%" PRId64,
            r->failed ? "failed" : "stopped", secs, atomic_load(&r->n.received),
            atomic_load(&r->n.handled), atomic_load(&r->n.deduplicated),
            atomic_load(&r->n.retried), atomic_load(&r->n.quarantined),
            atomic_load(&r->n.emitted), atomic_load(&r->n.relayed),
            atomic_load(&r->n.conflicts));
  if (r->failed) fprintf(stderr, "eddy run: %s\n", r->fatal);
  else status = 0;
out:
  eddy_reloader_free(r->reloader);
  free_runner(r);
  uv_mutex_destroy(&r->write_mu);
  uv_mutex_destroy(&r->track_mu);
  return status;
}
