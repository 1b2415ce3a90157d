/*
 * krelay.c - the outbox relay of `eddy run` when the log is Kafka (see
 * krelay.h).
 */
#include "krelay.h"
#include "errors.h"
#include "kafka.h"
#include "kcall.h"
#include "outbox.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define BATCH 2000              /* rows per batch */
#define RETRY_MS 1000           /* after a failed batch */
#define WARN_EVERY_MS 10000

/* A topic looked up, and made when missing, off the loop (kcall.h): the
 * cluster may take its timeouts to answer (10 s and more). */
typedef struct lookup {
  char *topic;
  int created;
  char err[512];
} lookup;

struct eddy_krelay {
  eddy_runner *r;
  eddy_kcall *lookup;           /* the topic lookup under way, or NULL */
  eddy_kafka *lk;               /* the lookups' client, between two */
  eddy_kafka_ticket t;
  eddy_outbox_rows rows;        /* the batch in flight (n == 0: none) */
  size_t queued;                /* rows of it handed to librdkafka so far */
  int64_t retry_at;             /* no new batch before (after a failure) */
  int64_t warned;               /* when a failure was last logged */
  char **known;                 /* topics that exist on Kafka */
  int nknown;
  int pipe[2];
  uv_poll_t poll;
  int polling;
};

static void warn(eddy_krelay *kr, const char *what) {
  int64_t now = eddy_now_ms();
  if (now - kr->warned < WARN_EVERY_MS) return;
  kr->warned = now;
  eddy_logf("WARN", "outbox relay: %s (will retry)", what);
}

void eddy_krelay_known(eddy_krelay *kr, const char *topic) {
  for (int i = 0; i < kr->nknown; i++)
    if (strcmp(kr->known[i], topic) == 0) return;
  char **k = realloc(kr->known, (size_t)(kr->nknown + 1) * sizeof *k);
  if (!k) return;
  kr->known = k;
  if ((k[kr->nknown] = strdup(topic))) kr->nknown++;
}

static void lookup_free(void *ud) {
  lookup *l = ud;
  free(l->topic);
  free(l);
}

/* On the lookup's thread. */
static int lookup_run(eddy_kafka *k, void *ud) {
  lookup *l = ud;
  eddy_topic_config c;
  eddy_topic_config_init(&c);
  int np;
  int rc = eddy_kafka_topic_partitions(k, l->topic, &np);
  if (rc == EDDY_ENOENT) rc = eddy_kafka_topic_create(k, l->topic, &c, 1, &l->created);
  if (rc) snprintf(l->err, sizeof l->err, "%s", eddy_kafka_errmsg(k));
  return rc;
}

/* Starts looking topic up off the loop.  0, or -1 with err. */
static int lookup_start(eddy_krelay *kr, const char *topic, char *err, size_t errlen) {
  eddy_kafka *k = kr->lk;
  kr->lk = NULL;
  if (!k && eddy_kafka_open_like(kr->r->kafka, &k, err, errlen) != 0) return -1;
  lookup *l = calloc(1, sizeof *l);
  if (!l || !(l->topic = strdup(topic))) {
    free(l);
    eddy_kafka_close(k);
    snprintf(err, errlen, "out of memory");
    return -1;
  }
  kr->lookup = eddy_kcall_start(k, lookup_run, l, lookup_free, &kr->r->progress, err, errlen);
  return kr->lookup ? 0 : -1;
}

/* The relay lets go of the lookup under way: its answer goes nowhere. */
static void lookup_drop(eddy_krelay *kr) {
  eddy_kcall_release(kr->lookup);
  kr->lookup = NULL;
}

/* A topic emitted to for the first time is made with one partition, as on
 * the embedded log: looked up, and made when missing, off the loop
 * (lookup), once per topic and run, and never for the declared ones.
 * Returns 0 when topic exists on Kafka, 1 while the answer is awaited, or
 * a negative code with the error in err. */
static int ensure_topic(eddy_krelay *kr, const char *topic, char *err, size_t errlen) {
  int rc = 0;
  if (kr->lookup) {
    if (!eddy_kcall_done(kr->lookup, &rc)) return 1;
    lookup *l = eddy_kcall_data(kr->lookup);
    if (rc == 0) {
      if (l->created) eddy_logf("INFO", "created topic '%s' with 1 partition on Kafka", l->topic);
      eddy_krelay_known(kr, l->topic);
    } else if (strcmp(l->topic, topic) == 0) {
      snprintf(err, errlen, "%s", l->err);
    } else {
      rc = 0;           /* another topic's: the batch moved on */
    }
    kr->lk = eddy_kcall_take_client(kr->lookup);
    lookup_drop(kr);
    if (rc) return rc;
  }
  for (int i = 0; i < kr->nknown; i++)
    if (strcmp(kr->known[i], topic) == 0) return 0;
  if (lookup_start(kr, topic, err, errlen) != 0) return EDDY_EIO;
  return 1;
}

/* Hands the batch's rows not yet queued to librdkafka, in runs of one
 * topic, until its queue is full or a topic's lookup is awaited. */
static void send_more(eddy_krelay *kr) {
  eddy_outbox_rows *b = &kr->rows;
  while (kr->queued < b->n) {
    size_t i = kr->queued, j = i + 1;
    while (j < b->n && strcmp(b->topics[j], b->topics[i]) == 0) j++;
    char err[512] = "";
    int rc = ensure_topic(kr, b->topics[i], err, sizeof err);
    if (rc == 1) return;              /* its lookup wakes the runner */
    if (rc == 0) {
      rc = eddy_kafka_send(kr->r->kafka, b->topics[i], &b->recs[i], j - i, &kr->t);
      if (rc < 0) snprintf(err, sizeof err, "%s", eddy_kafka_errmsg(kr->r->kafka));
    }
    if (rc < 0) {
      /* Not sent: the batch ends with what is in flight, as failed. */
      if (kr->t.failed++ == 0) snprintf(kr->t.error, sizeof kr->t.error, "%.255s", err);
      kr->queued = b->n;
      return;
    }
    kr->queued += (size_t)rc;
    if ((size_t)rc < j - i) return;   /* librdkafka's queue is full */
  }
}

int eddy_krelay_step(eddy_krelay *kr, int64_t *relayed) {
  eddy_runner *r = kr->r;
  eddy_kafka_serve(r->kafka, 0);
  if (kr->rows.n) {
    send_more(kr);
    if (kr->queued < kr->rows.n || kr->t.outstanding > 0) return 0;
    int rc = 0;
    if (kr->t.failed) {
      warn(kr, kr->t.error);
      kr->retry_at = eddy_now_ms() + RETRY_MS;
    } else {
      rc = eddy_outbox_clear(r->store, kr->rows.last, &r->write_mu);
      if (rc == 0) *relayed += (int64_t)kr->rows.n;
    }
    eddy_outbox_rows_free(&kr->rows);
    memset(&kr->t, 0, sizeof kr->t);
    if (rc) return rc;
  }
  if (eddy_now_ms() < kr->retry_at) return 0;
  int rc = eddy_outbox_read(r->store, BATCH, &kr->rows);
  if (rc) return rc;
  kr->queued = 0;
  if (kr->rows.n) send_more(kr);
  return 0;
}

int eddy_krelay_busy(const eddy_krelay *kr) { return kr->rows.n > 0; }

static int64_t mono_ms(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

int eddy_krelay_finish(eddy_krelay *kr, int timeout_ms, int64_t *relayed) {
  int64_t deadline = mono_ms() + timeout_ms;
  kr->retry_at = 0;
  for (;;) {
    int rc = eddy_krelay_step(kr, relayed);
    if (rc) return rc;
    if (!kr->rows.n) {
      int64_t pending = 0;
      if (kr->retry_at) return 0;   /* a batch failed: the next run sends it */
      if (eddy_outbox_count(kr->r->store, &pending) != 0 || pending == 0) return 0;
    }
    if (mono_ms() >= deadline) break;
    eddy_kafka_serve(kr->r->kafka, 100);
  }
  /* Out of time: what is in flight is dropped, its rows stay. */
  eddy_kafka_purge(kr->r->kafka);
  while (kr->t.outstanding > 0 && mono_ms() < deadline + 1000)
    eddy_kafka_serve(kr->r->kafka, 100);
  if (kr->t.outstanding == 0) {
    eddy_outbox_rows_free(&kr->rows);
    memset(&kr->t, 0, sizeof kr->t);
  }
  eddy_logf("WARN", "outbox relay: Kafka did not take every event within %d s: the rest "
            "stays in the outbox for the next run", timeout_ms / 1000);
  return 0;
}

static void on_readable(uv_poll_t *h, int status, int events) {
  (void)status;
  (void)events;
  eddy_krelay *kr = h->data;
  char buf[64];
  while (read(kr->pipe[0], buf, sizeof buf) > 0) {}
  uv_async_send(&kr->r->progress);   /* the runner's tick steps the relay */
}

int eddy_krelay_start(eddy_runner *r, eddy_krelay **out, char *err, size_t errlen) {
  eddy_krelay *kr = calloc(1, sizeof *kr);
  if (!kr) { snprintf(err, errlen, "out of memory"); return -1; }
  kr->r = r;
  kr->pipe[0] = kr->pipe[1] = -1;
  *out = kr;
  if (pipe2(kr->pipe, O_NONBLOCK | O_CLOEXEC) != 0) {
    snprintf(err, errlen, "cannot make a pipe");
    return -1;
  }
  if (eddy_kafka_wake_on_reports(r->kafka, kr->pipe[1]) != 0) {
    snprintf(err, errlen, "%s", eddy_kafka_errmsg(r->kafka));
    return -1;
  }
  uv_poll_init(r->loop, &kr->poll, kr->pipe[0]);
  kr->poll.data = kr;
  uv_poll_start(&kr->poll, UV_READABLE, on_readable);
  kr->polling = 1;
  return 0;
}

void eddy_krelay_stop(eddy_krelay *kr) {
  if (!kr) return;
  lookup_drop(kr);   /* before the runner closes the handle it would wake */
  if (!kr->polling) return;
  uv_poll_stop(&kr->poll);
  uv_close((uv_handle_t *)&kr->poll, NULL);
  kr->polling = 0;
}

void eddy_krelay_free(eddy_krelay *kr) {
  if (!kr) return;
  lookup_drop(kr);
  /* Reports still to come point into the ticket: purged, they come at
   * once.  Should one not, the relay is left allocated rather than freed
   * under librdkafka. */
  if (kr->t.outstanding > 0) {
    eddy_kafka_purge(kr->r->kafka);
    for (int i = 0; i < 50 && kr->t.outstanding > 0; i++) eddy_kafka_serve(kr->r->kafka, 100);
    if (kr->t.outstanding > 0) return;
  }
  eddy_outbox_rows_free(&kr->rows);
  eddy_kafka_close(kr->lk);
  for (int i = 0; i < kr->nknown; i++) free(kr->known[i]);
  free(kr->known);
  if (kr->pipe[0] >= 0) close(kr->pipe[0]);
  if (kr->pipe[1] >= 0) close(kr->pipe[1]);
  free(kr);
}
