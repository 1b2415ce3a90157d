/*
 * kcall.c - a blocking Kafka request made off the runner's loop (see
 * kcall.h).
 */
#include "kcall.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

struct eddy_kcall {
  pthread_mutex_t mu;
  int refs;                     /* the caller's and the thread's */
  eddy_kafka *k;
  int (*fn)(eddy_kafka *k, void *ud);
  void *ud;
  void (*free_ud)(void *ud);
  uv_async_t *wake;             /* NULL once the caller let go */
  int done, rc;                 /* under mu */
};

static void unref(eddy_kcall *c) {
  pthread_mutex_lock(&c->mu);
  int last = --c->refs == 0;
  pthread_mutex_unlock(&c->mu);
  if (!last) return;
  eddy_kafka_close(c->k);
  if (c->free_ud) c->free_ud(c->ud);
  pthread_mutex_destroy(&c->mu);
  free(c);
}

static void *run(void *ud) {
  eddy_kcall *c = ud;
  int rc = c->fn(c->k, c->ud);
  pthread_mutex_lock(&c->mu);
  c->rc = rc;
  c->done = 1;
  /* Under mu: the caller clears wake under mu before it closes the
   * handle, so this never touches a closed one. */
  if (c->wake) uv_async_send(c->wake);
  pthread_mutex_unlock(&c->mu);
  unref(c);
  return NULL;
}

eddy_kcall *eddy_kcall_start(eddy_kafka *k, int (*fn)(eddy_kafka *k, void *ud), void *ud,
                             void (*free_ud)(void *ud), uv_async_t *wake, char *err,
                             size_t errlen) {
  eddy_kcall *c = calloc(1, sizeof *c);
  if (!c) {
    eddy_kafka_close(k);
    if (free_ud) free_ud(ud);
    snprintf(err, errlen, "out of memory");
    return NULL;
  }
  pthread_mutex_init(&c->mu, NULL);
  c->refs = 2;
  c->k = k;
  c->fn = fn;
  c->ud = ud;
  c->free_ud = free_ud;
  c->wake = wake;
  pthread_attr_t a;
  pthread_t t;
  pthread_attr_init(&a);
  pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
  int rc = pthread_create(&t, &a, run, c);
  pthread_attr_destroy(&a);
  if (rc != 0) {
    c->refs = 1;
    unref(c);
    snprintf(err, errlen, "cannot start a thread for a Kafka request");
    return NULL;
  }
  return c;
}

int eddy_kcall_done(eddy_kcall *c, int *rc) {
  pthread_mutex_lock(&c->mu);
  int done = c->done;
  if (done && rc) *rc = c->rc;
  pthread_mutex_unlock(&c->mu);
  return done;
}

void *eddy_kcall_data(eddy_kcall *c) { return c->ud; }

eddy_kafka *eddy_kcall_take_client(eddy_kcall *c) {
  if (!eddy_kcall_done(c, NULL)) return NULL;
  eddy_kafka *k = c->k;
  c->k = NULL;
  return k;
}

void eddy_kcall_release(eddy_kcall *c) {
  if (!c) return;
  pthread_mutex_lock(&c->mu);
  c->wake = NULL;
  pthread_mutex_unlock(&c->mu);
  unref(c);
}
