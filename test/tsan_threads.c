/*
 * tsan_threads.c - C11 threads over pthreads, linked into the
 * ThreadSanitizer build of eddy only (make test-tsan).
 *
 * librdkafka starts its threads and takes its locks with C11 thrd_create,
 * mtx_lock and cnd_wait.  glibc implements those on its internal pthread
 * functions, which ThreadSanitizer (GCC 12) does not intercept: the threads
 * would be unknown to it (its allocator crashes in them) and their locks
 * unseen (every message librdkafka hands over would look like a race).
 * Defined in the executable, these take the place of glibc's for every
 * library, and go through the pthread functions ThreadSanitizer sees.
 */
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <threads.h>

static int result(int rc) {
  return rc == 0 ? thrd_success : rc == ENOMEM ? thrd_nomem : rc == ETIMEDOUT ? thrd_timedout
         : rc == EBUSY ? thrd_busy : thrd_error;
}

typedef struct start { thrd_start_t fn; void *arg; } start;

static void *trampoline(void *p) {
  start s = *(start *)p;
  free(p);
  return (void *)(intptr_t)s.fn(s.arg);
}

int thrd_create(thrd_t *t, thrd_start_t fn, void *arg) {
  start *s = malloc(sizeof *s);
  if (!s) return thrd_nomem;
  s->fn = fn;
  s->arg = arg;
  int rc = pthread_create((pthread_t *)t, NULL, trampoline, s);
  if (rc) free(s);
  return result(rc);
}

int thrd_join(thrd_t t, int *res) {
  void *v;
  int rc = pthread_join((pthread_t)t, &v);
  if (rc == 0 && res) *res = (int)(intptr_t)v;
  return result(rc);
}

int mtx_init(mtx_t *m, int type) {
  pthread_mutexattr_t a;
  pthread_mutexattr_init(&a);
  if (type & mtx_recursive) pthread_mutexattr_settype(&a, PTHREAD_MUTEX_RECURSIVE);
  int rc = pthread_mutex_init((pthread_mutex_t *)m, &a);
  pthread_mutexattr_destroy(&a);
  return result(rc);
}

int mtx_lock(mtx_t *m) { return result(pthread_mutex_lock((pthread_mutex_t *)m)); }
int mtx_unlock(mtx_t *m) { return result(pthread_mutex_unlock((pthread_mutex_t *)m)); }
void mtx_destroy(mtx_t *m) { pthread_mutex_destroy((pthread_mutex_t *)m); }

int cnd_init(cnd_t *c) { return result(pthread_cond_init((pthread_cond_t *)c, NULL)); }
int cnd_signal(cnd_t *c) { return result(pthread_cond_signal((pthread_cond_t *)c)); }
int cnd_broadcast(cnd_t *c) { return result(pthread_cond_broadcast((pthread_cond_t *)c)); }
void cnd_destroy(cnd_t *c) { pthread_cond_destroy((pthread_cond_t *)c); }

int cnd_wait(cnd_t *c, mtx_t *m) {
  return result(pthread_cond_wait((pthread_cond_t *)c, (pthread_mutex_t *)m));
}

int cnd_timedwait(cnd_t *restrict c, mtx_t *restrict m, const struct timespec *restrict ts) {
  return result(pthread_cond_timedwait((pthread_cond_t *)c, (pthread_mutex_t *)m, ts));
}

void call_once(once_flag *f, void (*fn)(void)) { pthread_once((pthread_once_t *)f, fn); }
