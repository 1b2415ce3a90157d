/*
 * guard.c - crash records, in-flight slots and the watchdog of a run (see
 * guard.h).
 */
#include "guard.h"
#include "errors.h"

#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <uv.h>

#define WATCH_EVERY_MS 100

typedef struct watched {
  _Atomic int64_t started;     /* monotonic ms of the call, 0: none */
  _Atomic int64_t timeout;     /* its timeout, ms (0: none) */
} watched;

struct eddy_guard {
  eddy_inflight *inflight;
  int nworkers;
  watched *w;
  eddy_crash_row *crashes;     /* topics owned */
  int ncrashes;
  uv_thread_t thread;
  int running;
  uv_mutex_t mu;
  uv_cond_t cv;
  int stop;                    /* under mu */
};

/* Coarse (a few ms, a few ns a read): read at every call, and the
 * watchdog looks every 100 ms. */
static int64_t mono_ms(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC_COARSE, &t);
  return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

static const char *signame(int sig, char *buf, size_t n) {
  const char *abbrev = sigabbrev_np(sig);
  if (abbrev) snprintf(buf, n, "SIG%s", abbrev);
  else snprintf(buf, n, "signal %d", sig);
  return buf;
}

struct collect_ctx {
  eddy_store *s;
  int failed;
};

/* One message a dead run was handling: said; counted when the message
 * ended the run itself (a fatal signal in its call, or a call stuck past
 * its timeout).  A run killed from outside (SIGKILL, the OOM killer) says
 * nothing of the message it was handling: not counted, or an operator's
 * kills would quarantine good messages. */
static void collected(void *ud, const eddy_crash *c) {
  struct collect_ctx *x = ud;
  int counted = c->signal || c->stuck;
  int runs = 0;
  if (counted && eddy_crash_add(x->s, c->consumer_id, c->topic, c->partition, c->offset,
                                c->signal, c->stuck, c->started_ms, &runs) != 0) {
    x->failed = 1;
    return;
  }
  char sig[32], how[160];
  if (c->stuck)
    snprintf(how, sizeof how, "its call was stuck past its timeout");
  else if (c->signal)
    snprintf(how, sizeof how, "%s in the call", signame(c->signal, sig, sizeof sig));
  else
    snprintf(how, sizeof how, "the process was killed (SIGKILL or out of memory): not "
             "counted against the message");
  char tail[128] = "";
  if (counted)
    snprintf(tail, sizeof tail, ": %d run%s so far%s", runs, runs == 1 ? "" : "s",
             runs >= EDDY_CRASH_RUNS ? ", so it is quarantined (reason crashed)"
                                     : "; it is quarantined if it happens again");
  eddy_logx("WARN",
            &(eddy_logfields){ .consumer = c->consumer, .message_id = c->id,
                               .topic = c->topic, .partition = c->partition,
                               .offset = c->offset,
                               .set = EDDY_LOGF_PARTITION | EDDY_LOGF_OFFSET,
                               .text_hide = EDDY_LOGF_TOPIC | EDDY_LOGF_PARTITION |
                                            EDDY_LOGF_OFFSET },
            "the last run ended during a handler call on %s[%d]@%lld (%s)%s", c->topic,
            c->partition, (long long)c->offset, how, tail);
}

static void keep_row(void *ud, const eddy_crash_row *c) {
  eddy_guard *g = ud;
  eddy_crash_row *n = realloc(g->crashes, (size_t)(g->ncrashes + 1) * sizeof *n);
  if (!n) return;
  g->crashes = n;
  n[g->ncrashes] = *c;
  n[g->ncrashes].topic = strdup(c->topic);
  if (n[g->ncrashes].topic) g->ncrashes++;
}

/* The watchdog: a call past its timeout and the grace cannot be stopped
 * here, so the process ends, as if the call had crashed it. */
static void watch(void *arg) {
  eddy_guard *g = arg;
  uv_mutex_lock(&g->mu);
  while (!g->stop) {
    uv_cond_timedwait(&g->cv, &g->mu, (uint64_t)WATCH_EVERY_MS * 1000000);
    int64_t now = mono_ms();
    for (int i = 0; i < g->nworkers && !g->stop; i++) {
      int64_t started = atomic_load_explicit(&g->w[i].started, memory_order_acquire);
      int64_t timeout = atomic_load_explicit(&g->w[i].timeout, memory_order_relaxed);
      if (!started || !timeout || now - started < timeout + EDDY_GUARD_GRACE_MS) continue;
      eddy_inflight_slot *s = eddy_inflight_slot_at(g->inflight, i);
      eddy_inflight_stuck(s);
      eddy_logf("ERROR", "worker %d: a handler call has run %.1fs, past its timeout of "
                "%.1fs, inside a C function that cannot be stopped: eddy run exits so "
                "that the next start quarantines the message if it happens again",
                i, (double)(now - started) / 1000.0, (double)timeout / 1000.0);
      _exit(1);
    }
  }
  uv_mutex_unlock(&g->mu);
}

int eddy_guard_start(eddy_store *s, int nworkers, eddy_guard **out, char *err,
                     size_t errlen) {
  eddy_guard *g = calloc(1, sizeof *g);
  if (!g || !(g->w = calloc((size_t)nworkers + 1, sizeof *g->w))) {
    free(g);
    snprintf(err, errlen, "out of memory");
    return -1;
  }
  g->nworkers = nworkers;
  uv_mutex_init(&g->mu);
  uv_cond_init(&g->cv);
  *out = g;
  struct collect_ctx x = { s, 0 };
  if (eddy_inflight_collect(eddy_store_dir(s), collected, &x, err, errlen) != 0) return -1;
  if (x.failed || eddy_crash_foreach(s, keep_row, g) != 0) {
    snprintf(err, errlen, "%s", eddy_store_errmsg(s));
    return -1;
  }
  if (eddy_inflight_open(eddy_store_dir(s), nworkers, &g->inflight, err, errlen) != 0)
    return -1;
  if (uv_thread_create(&g->thread, watch, g) != 0) {
    snprintf(err, errlen, "cannot start the watchdog thread");
    return -1;
  }
  g->running = 1;
  return 0;
}

void eddy_guard_stop(eddy_guard *g) {
  if (!g) return;
  if (g->running) {
    uv_mutex_lock(&g->mu);
    g->stop = 1;
    uv_cond_signal(&g->cv);
    uv_mutex_unlock(&g->mu);
    uv_thread_join(&g->thread);
  }
  eddy_inflight_close(g->inflight);
  for (int i = 0; i < g->ncrashes; i++) free((void *)g->crashes[i].topic);
  free(g->crashes);
  free(g->w);
  uv_cond_destroy(&g->cv);
  uv_mutex_destroy(&g->mu);
  free(g);
}

eddy_inflight_slot *eddy_guard_slot(eddy_guard *g, int i) {
  return g ? eddy_inflight_slot_at(g->inflight, i) : NULL;
}

int eddy_guard_any(const eddy_guard *g) { return g && g->ncrashes > 0; }

const eddy_crash_row *eddy_guard_crashed(const eddy_guard *g, int64_t consumer_id,
                                         const char *topic, int partition, int64_t offset) {
  /* A handful of rows at most (each is a message that crashed eddy): a
   * scan is fine. */
  for (int i = 0; g && i < g->ncrashes; i++) {
    const eddy_crash_row *c = &g->crashes[i];
    if (c->consumer_id == consumer_id && c->partition == partition && c->offset == offset &&
        strcmp(c->topic, topic) == 0)
      return c;
  }
  return NULL;
}

void eddy_guard_reason(const eddy_crash_row *c, char *out, size_t n) {
  char sig[32];
  if (c->stuck && c->runs == 1)
    snprintf(out, n, "the handler was stuck past its timeout in a C function on this message"
             " (eddy run exited)");
  else if (c->stuck)
    snprintf(out, n, "the handler took eddy run down %d times on this message (last: stuck "
             "past its timeout in a C function)", c->runs);
  else
    snprintf(out, n, "the handler took eddy run down %d times on this message (last: %s)",
             c->runs, signame(c->signal, sig, sizeof sig));
}

void eddy_guard_call_begin(eddy_guard *g, int i, int64_t timeout_ms) {
  if (!g || i < 0 || i >= g->nworkers) return;
  /* Release: the watchdog that reads started (acquire) sees its timeout.
   * No full barrier on every call. */
  atomic_store_explicit(&g->w[i].timeout, timeout_ms, memory_order_relaxed);
  atomic_store_explicit(&g->w[i].started, mono_ms(), memory_order_release);
}

void eddy_guard_call_end(eddy_guard *g, int i) {
  if (!g || i < 0 || i >= g->nworkers) return;
  atomic_store_explicit(&g->w[i].started, 0, memory_order_release);
}
