/*
 * reload.c - hot reload (see reload.h and docs/reload.md).
 *
 * A reload, in the runner's thread but for the steps marked (pool), which
 * run handler code and so may take a while (up to the load limits,
 * sandbox.h): those run on libuv's thread pool while the loop goes on
 * (eddy status, reading, committing), one reload at a time:
 *   1. (pool) read the app again (app.c): every script compiled and run,
 *      every definition checked, in a Lua state of its own;
 *   2. check the store (topics), take the lock files of added consumers;
 *   3. (pool) build every worker's next Lua state (eddy_worker_prepare);
 *   4. write to the store: new topics, added consumers, their cursors
 *      (not read yet);
 *   5. retire the cursors of removed consumers and topics, make the new
 *      generation the runner's, tell each worker to switch.
 * A failure in 1-4 undoes what it took and leaves everything running as
 * it was.  Then, on the runner's ticks: once every worker runs the new
 * generation, the new cursors are read, the locks of removed consumers
 * are released and the reload is over.
 */
#include "reload.h"
#include "metrics.h"
#include "app.h"
#include "buf.h"
#include "control.h"
#include "quarantine.h"

#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define DEBOUNCE_MS 100

typedef struct waiter {
  struct waiter *next;
  eddy_reload_done done;
  void *ud;
} waiter;

/* One watched directory and what in it matters. */
typedef struct watch {
  uv_fs_event_t h;
  struct eddy_reloader *rl;
  char *dir;
  int any_lua;           /* a handler directory: every visible *.lua */
  int nnames;
  char **names;          /* files named in the app (the app file included) */
} watch;

struct eddy_reloader {
  eddy_runner *r;
  uv_signal_t sighup;
  uv_timer_t debounce;
  int started;
  int nwatches;
  watch **watches;
  eddy_control *ctl;
  /* The generation every worker runs (what status shows). */
  eddy_gen *shown;
  /* The reload in progress: switching to target. */
  eddy_gen *target;
  char source[32];
  char summary[2048];
  int added_locks[EDDY_MAX_CONSUMERS]; /* locks this reload took */
  int nadded_locks;
  waiter *waiting;       /* told when the reload in progress is over */
  waiter *next_waiting;  /* asked meanwhile: served by the next reload */
  int next_wanted;
  char next_source[32];
  /* The reload in its pool steps (busy): what they read and made. */
  int busy;
  int stopping;
  uv_work_t work;
  eddy_app app;
  eddy_gen *g;
  int rc;
  char err[1024];
  /* The last reload. */
  int reloads;           /* successful ones */
  int failed_reloads;
  int64_t last_at;
  int last_ok;
  char last_source[32];
  char last_error[1024];
};

/* ---- watching ------------------------------------------------------------ */

static char *dir_of(const char *path) {
  const char *slash = strrchr(path, '/');
  if (!slash) return strdup(".");
  if (slash == path) return strdup("/");
  return strndup(path, (size_t)(slash - path));
}

static const char *base_of(const char *path) {
  const char *slash = strrchr(path, '/');
  return slash ? slash + 1 : path;
}

static void watch_closed(uv_handle_t *h) {
  watch *w = h->data;
  for (int i = 0; i < w->nnames; i++) free(w->names[i]);
  free(w->names);
  free(w->dir);
  free(w);
}

static void unwatch_all(eddy_reloader *rl) {
  for (int i = 0; i < rl->nwatches; i++) {
    watch *w = rl->watches[i];
    if (rl->started) {
      uv_fs_event_stop(&w->h);
      uv_close((uv_handle_t *)&w->h, watch_closed);
    } else {
      w->h.data = w;
      watch_closed((uv_handle_t *)&w->h);
    }
  }
  free(rl->watches);
  rl->watches = NULL;
  rl->nwatches = 0;
}

static watch *watch_for(eddy_reloader *rl, const char *dir) {
  for (int i = 0; i < rl->nwatches; i++)
    if (strcmp(rl->watches[i]->dir, dir) == 0) return rl->watches[i];
  watch **n = realloc(rl->watches, (size_t)(rl->nwatches + 1) * sizeof *n);
  if (!n) return NULL;
  rl->watches = n;
  watch *w = calloc(1, sizeof *w);
  if (!w || !(w->dir = strdup(dir))) { free(w); return NULL; }
  w->rl = rl;
  rl->watches[rl->nwatches++] = w;
  return w;
}

static void watch_name(eddy_reloader *rl, const char *file) {
  char *dir = dir_of(file);
  watch *w = dir ? watch_for(rl, dir) : NULL;
  free(dir);
  if (!w) return;
  char **n = realloc(w->names, (size_t)(w->nnames + 1) * sizeof *n);
  if (!n) return;
  w->names = n;
  if ((w->names[w->nnames] = strdup(base_of(file)))) w->nnames++;
}

/* 1 when a change to name in w's directory may change the app. */
static int matters(const watch *w, const char *name) {
  if (!name) return 1;
  for (int i = 0; i < w->nnames; i++)
    if (strcmp(w->names[i], name) == 0) return 1;
  size_t n = strlen(name);
  return w->any_lua && name[0] != '.' && n > 4 && strcmp(name + n - 4, ".lua") == 0;
}

static void on_debounced(uv_timer_t *t) {
  eddy_reloader_request(t->data, "file change", NULL, NULL);
}

static void on_fs_event(uv_fs_event_t *h, const char *name, int events, int status) {
  (void)events;
  watch *w = h->data;
  if (status < 0 || !matters(w, name)) return;
  /* Editors write in several steps: reload once they are done. */
  uv_timer_start(&w->rl->debounce, on_debounced, DEBOUNCE_MS, 0);
}

static void start_watches(eddy_reloader *rl) {
  for (int i = 0; i < rl->nwatches; i++) {
    watch *w = rl->watches[i];
    w->h.data = w;
    int rc = uv_fs_event_init(rl->r->loop, &w->h);
    if (rc == 0) rc = uv_fs_event_start(&w->h, on_fs_event, w->dir, 0);
    if (rc != 0)
      eddy_logf("WARN", "cannot watch '%s' for changes: %s (SIGHUP and eddy reload "
                "still reload)", w->dir, uv_strerror(rc));
  }
}

/* The directories to watch for app a: the app file's, every handler
 * directory, and the directory of every handler file named alone. */
static void plan_watches(eddy_reloader *rl, const eddy_app *a) {
  watch_name(rl, rl->r->app_file);
  for (int i = 0; i < a->nhandler_dirs; i++) {
    const char *d = a->handler_dirs[i];
    size_t n = strlen(d);
    char *dir = n > 1 && d[n - 1] == '/' ? strndup(d, n - 1) : strdup(d);
    watch *w = dir ? watch_for(rl, dir) : NULL;
    free(dir);
    if (w) w->any_lua = 1;
  }
  for (int i = 0; i < a->nhandler_files; i++) watch_name(rl, a->handler_files[i]);
}

/* ---- the reload ------------------------------------------------------------ */

static void log_and_tell(eddy_reloader *rl, waiter *list, int ok, const char *text) {
  rl->last_at = eddy_now_ms();
  rl->last_ok = ok;
  snprintf(rl->last_source, sizeof rl->last_source, "%s", rl->source);
  snprintf(rl->last_error, sizeof rl->last_error, "%s", ok ? "" : text);
  if (ok) {
    rl->reloads++;
    eddy_logf("INFO", "reload (%s): ok: %s", rl->source, text);
  } else {
    rl->failed_reloads++;
    eddy_logf("ERROR", "reload (%s): %s; the running version stays", rl->source, text);
  }
  while (list) {
    waiter *n = list->next;
    if (list->done) list->done(list->ud, ok, text);
    free(list);
    list = n;
  }
}

static int by_name(const void *a, const void *b) {
  const eddy_consumer_def *x = *(const eddy_consumer_def *const *)a;
  const eddy_consumer_def *y = *(const eddy_consumer_def *const *)b;
  return strcmp(x->name, y->name);
}

/* "a 0123456789abcdef (changed), b (removed), ..." in name order. */
static void summarize(eddy_reloader *rl, const eddy_gen *old, const eddy_gen *g) {
  const eddy_consumer_def *list[EDDY_MAX_CONSUMERS];
  int n = 0;
  for (int i = 0; i < g->nconsumers; i++) {
    int was = i < old->nconsumers && old->defs[i].active;
    if (g->defs[i].active || was) list[n++] = &g->defs[i];
  }
  qsort(list, (size_t)n, sizeof *list, by_name);
  size_t at = 0;
  rl->summary[0] = 0;
  for (int k = 0; k < n; k++) {
    int i = (int)(list[k] - g->defs);
    const eddy_consumer_def *c = list[k];
    int was = i < old->nconsumers && old->defs[i].active;
    const char *what = !c->active ? "removed" : !was ? "added"
                       : eddy_consumer_def_same(&old->defs[i], c) ? "unchanged" : "changed";
    int m = c->active
      ? snprintf(rl->summary + at, sizeof rl->summary - at, "%s%s %s (%s)", k ? ", " : "",
                 c->name, c->version, what)
      : snprintf(rl->summary + at, sizeof rl->summary - at, "%s%s (%s)", k ? ", " : "",
                 c->name, what);
    if (m < 0 || (size_t)m >= sizeof rl->summary - at) break;
    at += (size_t)m;
  }
}

static void release_added_locks(eddy_reloader *rl) {
  for (int k = 0; k < rl->nadded_locks; k++) eddy_runner_unlock(rl->r, rl->added_locks[k]);
  rl->nadded_locks = 0;
}

/* The next generation from app a: every consumer number the run knows,
 * a's consumers active under their numbers (new names get new numbers),
 * the others inactive.  NULL with err when a has too many. */
static eddy_gen *next_gen(eddy_reloader *rl, eddy_app *a, char *err, size_t errlen) {
  eddy_runner *r = rl->r;
  const eddy_gen *old = r->gen;
  int number[EDDY_MAX_CONSUMERS];
  int n = old->nconsumers;
  for (int k = 0; k < a->nconsumers; k++) {
    int i = 0;
    while (i < old->nconsumers && strcmp(old->defs[i].name, a->consumers[k].name) != 0) i++;
    if (i == old->nconsumers) {
      if (n == EDDY_MAX_CONSUMERS) {
        snprintf(err, errlen, "one run can know at most %d consumers, over all its reloads",
                 EDDY_MAX_CONSUMERS);
        return NULL;
      }
      i = n++;
    }
    number[k] = i;
  }
  eddy_gen *g = calloc(1, sizeof *g);
  if (!g || !(g->defs = calloc((size_t)n, sizeof *g->defs))) {
    free(g);
    snprintf(err, errlen, "out of memory");
    return NULL;
  }
  g->no = old->no + 1;
  g->nconsumers = n;
  int64_t now = eddy_now_ms();
  for (int k = 0; k < a->nconsumers; k++) {
    int i = number[k];
    eddy_consumer_def *c = &g->defs[i];
    *c = a->consumers[k];               /* takes the strings */
    memset(&a->consumers[k], 0, sizeof a->consumers[k]);
    c->active = 1;
    c->loaded_at = now;
    if (i < old->nconsumers) {
      c->store_id = old->defs[i].store_id;
      if (old->defs[i].active && strcmp(old->defs[i].version, c->version) == 0)
        c->loaded_at = old->defs[i].loaded_at;
    }
    c->slot_seq = r->slot_seqs[i];
  }
  for (int i = 0; i < n; i++) {
    if (g->defs[i].name) continue;
    /* Not in the app now: kept, inactive, for its name and numbers. */
    if (eddy_consumer_def_copy(&g->defs[i], &old->defs[i]) != 0) {
      g->refs = 1;
      eddy_gen_release(g);
      snprintf(err, errlen, "out of memory");
      return NULL;
    }
    g->defs[i].active = 0;
  }
  g->handler_files = a->handler_files;
  g->nhandler_files = a->nhandler_files;
  g->handler_strict = a->handler_strict;
  a->handler_files = NULL;
  a->nhandler_files = 0;
  a->handler_strict = NULL;
  g->catalog = a->catalog;
  a->catalog = NULL;
  g->refs = 1;
  return g;
}

static int reads_topic(const eddy_consumer_def *c, const char *topic) {
  for (int k = 0; k < c->ntopics; k++)
    if (strcmp(c->topics[k], topic) == 0) return 1;
  return 0;
}

static int same_topics(const eddy_consumer_def *a, const eddy_consumer_def *b) {
  if (a->ntopics != b->ntopics) return 0;
  for (int k = 0; k < a->ntopics; k++)
    if (strcmp(a->topics[k], b->topics[k]) || strcmp(a->dlq_topics[k], b->dlq_topics[k]))
      return 0;
  return 1;
}

/* 1 when g runs the same consumers as old, each the same way, with the
 * same event catalog. */
static int same_consumers(const eddy_gen *old, const eddy_gen *g) {
  if (g->nconsumers != old->nconsumers) return 0;
  if (strcmp(old->catalog ? old->catalog : "", g->catalog ? g->catalog : "") != 0) return 0;
  for (int i = 0; i < g->nconsumers; i++) {
    if (g->defs[i].active != old->defs[i].active) return 0;
    if (g->defs[i].active && !eddy_consumer_def_same(&old->defs[i], &g->defs[i])) return 0;
  }
  return 1;
}

static void finish(eddy_reloader *rl, int rc, const char *err);
static void start_next(eddy_reloader *rl);

/* Step 1, on the pool: only the app file and the handler files. */
static void read_work(uv_work_t *req) {
  eddy_reloader *rl = req->data;
  eddy_runner *r = rl->r;
  rl->rc = eddy_app_read(r->app_file, r->data_override, &rl->app, rl->err, sizeof rl->err);
}

/* Step 3, on the pool: each worker's next state (set aside under the
 * worker's lock; the worker switches only when told, after step 5). */
static void prepare_work(uv_work_t *req) {
  eddy_reloader *rl = req->data;
  eddy_runner *r = rl->r;
  rl->rc = 0;
  for (int w = 0; rl->rc == 0 && w < r->nworkers; w++)
    rl->rc = eddy_worker_prepare(r->workers[w], rl->g, rl->err, sizeof rl->err);
}

static void after_prepare(uv_work_t *req, int status);

/* Step 2, after the read: 0 (step 3 queued), 1 (nothing to do) or -1
 * with err. */
static int check_next(eddy_reloader *rl, char *err, size_t errlen) {
  eddy_runner *r = rl->r;
  eddy_app *a = &rl->app;
  if (a->workers != r->app_workers)
    eddy_logf("WARN", "reload: 'workers' changed from %d to %d: it applies at the next start",
              r->app_workers, a->workers);
  if (strcmp(a->data_dir, r->data_dir) != 0)
    eddy_logf("WARN", "reload: 'data' changed to '%s': it applies at the next start",
              a->data_dir);
  if (!r->kafka && eddy_runner_check_topics(r, a, err, errlen) != 0) return -1;
  eddy_gen *g = next_gen(rl, a, err, errlen);
  if (!g) return -1;
  eddy_gen *old = r->gen;
  if (r->kafka) {
    /* On Kafka a consumer's group membership is made at start: a reload
     * may change handlers, not which consumers run or what they read. */
    for (int i = 0; i < g->nconsumers; i++) {
      int was = i < old->nconsumers && old->defs[i].active;
      if (g->defs[i].active != was ||
          (was && !same_topics(&old->defs[i], &g->defs[i]))) {
        snprintf(err, errlen, "consumer '%s': adding or removing a consumer, or changing its "
                 "topics, takes a restart on Kafka", g->defs[i].name);
        eddy_gen_release(g);
        return -1;
      }
    }
  }
  if (strcmp(rl->source, "file change") == 0 && same_consumers(old, g)) {
    /* A save that changed nothing eddy runs (or a change an earlier
     * reload already took). */
    eddy_gen_release(g);
    return 1;
  }
  rl->nadded_locks = 0;
  for (int i = 0; i < g->nconsumers; i++) {
    int was = i < old->nconsumers && old->defs[i].active;
    if (!g->defs[i].active || was) continue;
    if (eddy_runner_lock(r, i, g->defs[i].name, err, errlen) != 0) {
      release_added_locks(rl);
      eddy_gen_release(g);
      return -1;
    }
    rl->added_locks[rl->nadded_locks++] = i;
  }
  rl->g = g;
  uv_queue_work(r->loop, &rl->work, prepare_work, after_prepare);
  return 0;
}

static void after_read(uv_work_t *req, int status) {
  eddy_reloader *rl = req->data;
  if (status != 0 || rl->rc != 0 || rl->stopping) {
    if (status == 0 && rl->rc == 0) eddy_app_free(&rl->app);
    finish(rl, -1, status != 0 ? "the reload was cancelled"
                   : rl->stopping ? "eddy run stopped before the reload was over" : rl->err);
    return;
  }
  char err[1024];
  int rc = check_next(rl, err, sizeof err);
  if (rc != 0) {
    eddy_app_free(&rl->app);
    finish(rl, rc, err);
  }
}

/* Steps 4 and 5, after the prepare. */
static void after_prepare(uv_work_t *req, int status) {
  eddy_reloader *rl = req->data;
  eddy_runner *r = rl->r;
  eddy_app *a = &rl->app;
  eddy_gen *g = rl->g, *old = r->gen;
  char err[1024];
  int rc = status != 0 ? -1 : rl->stopping ? -1 : rl->rc;
  snprintf(err, sizeof err, "%s", status != 0 ? "the reload was cancelled"
           : rl->stopping ? "eddy run stopped before the reload was over" : rl->err);
  rl->g = NULL;
  /* The store: nothing above changed it.  Under the write lock, so the
   * workers' commits wait on it instead of on SQLite's busy handler,
   * which sleeps. */
  uv_mutex_lock(&r->write_mu);
  if (rc == 0 && eddy_store_begin(r->store) != 0) {
    snprintf(err, sizeof err, "%s", eddy_store_errmsg(r->store));
    rc = -1;
  }
  int in_tx = rc == 0;
  if (rc == 0 && !r->kafka) rc = eddy_runner_create_topics(r, a, err, sizeof err);
  for (int i = 0; !r->kafka && rc == 0 && i < g->nconsumers; i++) {
    eddy_consumer_def *c = &g->defs[i];
    if (!c->active) continue;
    if (!r->slot_seqs[i]) {
      r->slot_seqs[i] = calloc(EDDY_EPOCH_SLOTS, sizeof *r->slot_seqs[i]);
      if (!r->slot_seqs[i]) { snprintf(err, sizeof err, "out of memory"); rc = -1; break; }
      c->slot_seq = r->slot_seqs[i];
    }
    /* A consumer that runs and keeps its topics is registered already. */
    int was = i < old->nconsumers && old->defs[i].active;
    if (!was || !same_topics(&old->defs[i], c))
      rc = eddy_runner_register(r, c, err, sizeof err);
    if (rc == 0) rc = eddy_runner_open_cursors(r, i, c, 0, err, sizeof err);
  }
  if (in_tx) {
    if (rc == 0 && eddy_store_commit(r->store) != 0) {
      snprintf(err, sizeof err, "%s", eddy_store_errmsg(r->store));
      rc = -1;
    } else if (rc != 0) {
      eddy_store_rollback(r->store);
    }
  }
  uv_mutex_unlock(&r->write_mu);
  if (rc != 0) {
    for (int w = 0; w < r->nworkers; w++) eddy_worker_unprepare(r->workers[w]);
    release_added_locks(rl);
    /* Cursors opened above stay unread and are reused by the next try. */
    eddy_gen_release(g);
    eddy_app_free(a);
    finish(rl, -1, err);
    return;
  }
  /* Stop reading what the new generation does not read. */
  for (int k = 0; k < r->ncursors; k++) {
    eddy_cursor *cu = r->cursors[k];
    if (atomic_load(&cu->retired_gen)) continue;
    const eddy_consumer_def *c = &g->defs[cu->consumer];
    if (!c->active || !reads_topic(c, cu->topic)) {
      atomic_store(&cu->retired_gen, g->no);
      cu->live = 0;
      g->retires = 1;
    }
  }
  summarize(rl, old, g);
  r->dedupe_window_ms = a->dedupe_window_ms;
  unwatch_all(rl);
  plan_watches(rl, a);
  start_watches(rl);
  eddy_app_free(a);
  eddy_runner_set_gen(r, g);
  eddy_gen_release(g);          /* the runner holds it now */
  rl->target = g;
  for (int w = 0; w < r->nworkers; w++) eddy_worker_switch(r->workers[w]);
  finish(rl, 0, NULL);
}

/* The pool steps are over: 0, switching (eddy_reloader_tick ends the
 * reload); 1, nothing to do; -1, failed with err, nothing changed. */
static void finish(eddy_reloader *rl, int rc, const char *err) {
  rl->busy = 0;
  if (rc == 0) return;
  waiter *list = rl->waiting;
  rl->waiting = NULL;
  if (rc < 0) {
    log_and_tell(rl, list, 0, err);
  } else {
    while (list) { waiter *n = list->next; free(list); list = n; }
  }
  if (rl->next_wanted && !rl->stopping) start_next(rl);
}

static void start_next(eddy_reloader *rl);

void eddy_reloader_tick(eddy_reloader *rl) {
  if (rl->busy) return;
  if (!rl->target) {
    if (rl->next_wanted) start_next(rl);
    return;
  }
  eddy_runner *r = rl->r;
  for (int w = 0; w < r->nworkers; w++)
    if (eddy_worker_gen(r->workers[w]) < rl->target->no) return;
  /* Every worker runs it: read the new cursors, free removed consumers. */
  for (int k = 0; k < r->ncursors; k++) {
    eddy_cursor *cu = r->cursors[k];
    if (!atomic_load(&cu->retired_gen) && !cu->live) cu->live = 1;
  }
  for (int i = 0; i < rl->target->nconsumers; i++)
    if (!rl->target->defs[i].active) eddy_runner_unlock(r, i);
  rl->nadded_locks = 0;
  atomic_fetch_add(&rl->target->refs, 1);
  eddy_gen_release(rl->shown);
  rl->shown = rl->target;
  rl->target = NULL;
  waiter *list = rl->waiting;
  rl->waiting = NULL;
  log_and_tell(rl, list, 1, rl->summary);
  if (rl->next_wanted) start_next(rl);
  uv_async_send(&r->progress);   /* read the new cursors now */
}

static void start_next(eddy_reloader *rl) {
  rl->next_wanted = 0;
  snprintf(rl->source, sizeof rl->source, "%s", rl->next_source);
  rl->waiting = rl->next_waiting;
  rl->next_waiting = NULL;
  rl->busy = 1;
  rl->work.data = rl;
  uv_queue_work(rl->r->loop, &rl->work, read_work, after_read);
}

void eddy_reloader_request(eddy_reloader *rl, const char *source, eddy_reload_done done,
                           void *ud) {
  waiter *w = calloc(1, sizeof *w);
  if (w) {
    w->done = done;
    w->ud = ud;
    w->next = rl->next_waiting;
    rl->next_waiting = w;
  } else if (done) {
    done(ud, 0, "out of memory");
  }
  /* Requests that wait are served together; one asked for by a person
   * (SIGHUP, eddy reload) names the reload and is never skipped. */
  if (!rl->next_wanted || strcmp(rl->next_source, "file change") == 0)
    snprintf(rl->next_source, sizeof rl->next_source, "%s", source);
  rl->next_wanted = 1;
  if (!rl->target && !rl->busy) start_next(rl);
}

/* ---- status ------------------------------------------------------------------ */

void eddy_reloader_counts(const eddy_reloader *rl, int *ok, int *failed) {
  *ok = rl ? rl->reloads : 0;
  *failed = rl ? rl->failed_reloads : 0;
}

void eddy_reloader_status(eddy_reloader *rl, eddy_buf *b) {
  eddy_runner *r = rl->r;
  eddy_buf_printf(b, "{\"pid\":%ld,\"app\":", (long)getpid());
  eddy_buf_json_str(b, r->app_file, strlen(r->app_file));
  eddy_buf_puts(b, ",\"data\":");
  eddy_buf_json_str(b, r->data_dir, strlen(r->data_dir));
  eddy_buf_printf(b, ",\"started_at\":%" PRId64 ",\"workers\":%d,\"reloads\":%d,"
                  "\"consumers\":[", r->started_ms, r->nworkers, rl->reloads);
  const eddy_consumer_def *list[EDDY_MAX_CONSUMERS];
  int n = 0;
  for (int i = 0; i < rl->shown->nconsumers; i++)
    if (rl->shown->defs[i].active) list[n++] = &rl->shown->defs[i];
  qsort(list, (size_t)n, sizeof *list, by_name);
  for (int k = 0; k < n; k++) {
    const eddy_consumer_def *c = list[k];
    eddy_buf_puts(b, k ? ",{\"name\":" : "{\"name\":");
    eddy_buf_json_str(b, c->name, strlen(c->name));
    eddy_buf_puts(b, ",\"version\":");
    eddy_buf_json_str(b, c->version, strlen(c->version));
    eddy_buf_puts(b, ",\"file\":");
    eddy_buf_json_str(b, c->file, strlen(c->file));
    eddy_consumer_stats st;
    eddy_metrics_consumer(r, (int)(c - rl->shown->defs), &st);
    eddy_buf_printf(b, ",\"loaded_at\":%" PRId64 ",\"lag\":%" PRId64 ",\"parked\":%" PRId64
                    ",\"quarantined\":%" PRId64 "}", c->loaded_at, st.lag, st.parked,
                    st.quarantined);
  }
  eddy_buf_printf(b, "],\"outbox_pending\":%" PRId64 ",\"last_reload\":",
                  eddy_metrics_outbox(r));
  if (!rl->last_at) {
    eddy_buf_puts(b, "null}");
    return;
  }
  eddy_buf_printf(b, "{\"at\":%" PRId64 ",\"source\":", rl->last_at);
  eddy_buf_json_str(b, rl->last_source, strlen(rl->last_source));
  eddy_buf_printf(b, ",\"ok\":%s,\"error\":", rl->last_ok ? "true" : "false");
  if (rl->last_ok) eddy_buf_puts(b, "null");
  else eddy_buf_json_str(b, rl->last_error, strlen(rl->last_error));
  eddy_buf_puts(b, "}}");
}

/* The status for people: a header line, a line per consumer, the last
 * reload. */
static void status_text(eddy_reloader *rl, eddy_buf *b) {
  eddy_runner *r = rl->r;
  eddy_buf_printf(b, "eddy run %ld: app %s, data %s, %d worker%s, up %" PRId64 "s\n",
                  (long)getpid(), r->app_file, r->data_dir, r->nworkers,
                  r->nworkers == 1 ? "" : "s", (eddy_now_ms() - r->started_ms) / 1000);
  const eddy_consumer_def *list[EDDY_MAX_CONSUMERS];
  int n = 0;
  size_t width = 8;
  for (int i = 0; i < rl->shown->nconsumers; i++) {
    const eddy_consumer_def *c = &rl->shown->defs[i];
    if (!c->active) continue;
    list[n++] = c;
    if (strlen(c->name) > width) width = strlen(c->name);
  }
  qsort(list, (size_t)n, sizeof *list, by_name);
  eddy_buf_printf(b, "  %-*s  %-16s  %-24s  %8s  %6s  %11s  %s\n", (int)width, "consumer",
                  "version", "loaded", "lag", "parked", "quarantined", "file");
  for (int k = 0; k < n; k++) {
    char t[32];
    eddy_format_time(list[k]->loaded_at, t);
    eddy_consumer_stats st;
    eddy_metrics_consumer(r, (int)(list[k] - rl->shown->defs), &st);
    eddy_buf_printf(b, "  %-*s  %-16s  %-24s  %8" PRId64 "  %6" PRId64 "  %11" PRId64 "  %s\n",
                    (int)width, list[k]->name, list[k]->version, t, st.lag, st.parked,
                    st.quarantined, list[k]->file);
  }
  eddy_buf_printf(b, "  outbox: %" PRId64 " event%s waiting for the relay\n",
                  eddy_metrics_outbox(r), eddy_metrics_outbox(r) == 1 ? "" : "s");
  if (!rl->last_at) {
    eddy_buf_printf(b, "  last reload: none (%d so far)\n", rl->reloads);
    return;
  }
  char t[32];
  eddy_format_time(rl->last_at, t);
  if (rl->last_ok)
    eddy_buf_printf(b, "  last reload: %s (%s): ok; %d so far\n", t, rl->last_source,
                    rl->reloads);
  else
    eddy_buf_printf(b, "  last reload: %s (%s): failed: %s\n", t, rl->last_source,
                    rl->last_error);
}

/* ---- triggers ------------------------------------------------------------------ */

static void on_sighup(uv_signal_t *h, int sig) {
  (void)sig;
  eddy_reloader_request(h->data, "SIGHUP", NULL, NULL);
}

static void reply_reload(void *client, int ok, const char *text) {
  eddy_buf b = EDDY_BUF_INIT;
  eddy_buf_printf(&b, "%s %s\n", ok ? "ok" : "error", text);
  eddy_control_reply(client, b.data, b.len);
  eddy_buf_free(&b);
}

static void on_request(void *ud, const char *request, void *client) {
  eddy_reloader *rl = ud;
  if (strcmp(request, "reload") == 0) {
    eddy_reloader_request(rl, "eddy reload", reply_reload, client);
  } else if (strcmp(request, "status") == 0 || strcmp(request, "status text") == 0) {
    eddy_buf b = EDDY_BUF_INIT;
    if (request[6]) status_text(rl, &b);
    else eddy_reloader_status(rl, &b);
    eddy_buf_puts(&b, "\n");
    eddy_control_reply(client, b.data, b.len);
    eddy_buf_free(&b);
  } else {
    const char msg[] = "error unknown request\n";
    eddy_control_reply(client, msg, sizeof msg - 1);
  }
}

/* ---- life ------------------------------------------------------------------------ */

int eddy_reloader_new(eddy_runner *r, const eddy_app *a, eddy_reloader **out, char *err,
                      size_t errlen) {
  eddy_reloader *rl = calloc(1, sizeof *rl);
  if (!rl) { snprintf(err, errlen, "out of memory"); return -1; }
  rl->r = r;
  rl->shown = r->gen;
  atomic_fetch_add(&rl->shown->refs, 1);
  plan_watches(rl, a);
  *out = rl;
  return 0;
}

int eddy_reloader_start(eddy_reloader *rl) {
  eddy_runner *r = rl->r;
  uv_timer_init(r->loop, &rl->debounce);
  rl->debounce.data = rl;
  uv_signal_init(r->loop, &rl->sighup);
  rl->sighup.data = rl;
  uv_signal_start(&rl->sighup, on_sighup, SIGHUP);
  rl->started = 1;
  start_watches(rl);
  char err[512];
  if (eddy_control_start(r->loop, r->data_dir, on_request, rl, &rl->ctl, err,
                         sizeof err) != 0) {
    eddy_logf("ERROR", "eddy run: control socket: %s", err);
    return -1;
  }
  return 0;
}

static void tell_all(waiter *list, const char *why) {
  while (list) {
    waiter *n = list->next;
    if (list->done) list->done(list->ud, 0, why);
    free(list);
    list = n;
  }
}

void eddy_reloader_stop(eddy_reloader *rl) {
  if (!rl || !rl->started) return;
  /* A reload in its pool steps uses the workers: let it end (within the
   * load limits) and undo itself before anything stops.  The loop has
   * stopped; the runner's other callbacks do nothing once it stops. */
  rl->stopping = 1;
  while (rl->busy) uv_run(rl->r->loop, UV_RUN_ONCE);
  tell_all(rl->waiting, "eddy run stopped before the reload was over");
  tell_all(rl->next_waiting, "eddy run stopped before the reload was over");
  rl->waiting = rl->next_waiting = NULL;
  rl->next_wanted = 0;
  eddy_control_stop(rl->ctl);
  rl->ctl = NULL;
  unwatch_all(rl);
  uv_timer_stop(&rl->debounce);
  uv_close((uv_handle_t *)&rl->debounce, NULL);
  uv_signal_stop(&rl->sighup);
  uv_close((uv_handle_t *)&rl->sighup, NULL);
  rl->started = 0;
}

void eddy_reloader_free(eddy_reloader *rl) {
  if (!rl) return;
  unwatch_all(rl);
  tell_all(rl->waiting, "eddy run stopped");
  tell_all(rl->next_waiting, "eddy run stopped");
  eddy_gen_release(rl->shown);
  free(rl);
}
