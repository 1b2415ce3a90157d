/*
 * inflight.c - the messages in handler calls, in a file that outlives a
 * crash (see inflight.h).
 */
#include "inflight.h"
#include "store.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define MAGIC "eddy-inflight-1"

enum { IDLE = 0, IN_CALL = 1, STUCK = 2, SIGNALLED = 3 };

struct eddy_inflight_slot {
  _Atomic uint32_t state;
  int32_t signal;
  int64_t consumer_id;
  int64_t offset;
  int64_t started_ms;
  int32_t partition;
  char consumer[EDDY_INFLIGHT_CONSUMER];
  char topic[EDDY_INFLIGHT_TOPIC];
  char id[EDDY_INFLIGHT_ID];
  /* This process's own: what consumer and topic hold (a worker's next
   * message is mostly of the same), so that enter copies them only when
   * they change.  Meaningless to a later reader. */
  const char *seen_consumer, *seen_topic;
};

typedef struct header {
  char magic[16];
  int32_t nslots;
} header;

struct eddy_inflight {
  int fd;
  char *path;
  size_t size;
  void *map;
  int n;
  eddy_inflight_slot *slots;
};

static size_t file_size(int n) {
  return sizeof(header) + 64 + (size_t)n * sizeof(eddy_inflight_slot);
}

static eddy_inflight_slot *slots_of(void *map) {
  /* The slots start on a cache line of their own. */
  return (eddy_inflight_slot *)((char *)map + sizeof(header) + 64 -
                                (sizeof(header) + 64) % 64);
}

/* Coarse (a few ms): it is for the log, and read on every call. */
static int64_t wall_ms(void) {
  struct timespec t;
  clock_gettime(CLOCK_REALTIME_COARSE, &t);
  return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

static int make_dir(const char *data_dir, char *path, size_t n) {
  snprintf(path, n, "%s/inflight", data_dir);
  return eddy_private_mkdir(path);
}

/* Reports the slots of one file a dead process left. */
static void read_file(int fd, void (*fn)(void *, const eddy_crash *), void *ud) {
  struct stat st;
  if (fstat(fd, &st) != 0 || st.st_size < (off_t)sizeof(header)) return;
  void *map = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_SHARED, fd, 0);
  if (map == MAP_FAILED) return;
  const header *h = map;
  if (memcmp(h->magic, MAGIC, sizeof MAGIC) == 0 && h->nslots > 0 &&
      (off_t)file_size(h->nslots) <= st.st_size) {
    eddy_inflight_slot *s = slots_of(map);
    for (int i = 0; i < h->nslots; i++) {
      uint32_t state = atomic_load(&s[i].state);
      if (state == IDLE) continue;
      eddy_crash c;
      memset(&c, 0, sizeof c);
      c.consumer_id = s[i].consumer_id;
      memcpy(c.consumer, s[i].consumer, sizeof c.consumer - 1);
      memcpy(c.topic, s[i].topic, sizeof c.topic - 1);
      memcpy(c.id, s[i].id, sizeof c.id - 1);
      c.partition = s[i].partition;
      c.offset = s[i].offset;
      c.started_ms = s[i].started_ms;
      c.signal = state == SIGNALLED ? s[i].signal : 0;
      c.stuck = state == STUCK;
      fn(ud, &c);
    }
  }
  munmap(map, (size_t)st.st_size);
}

int eddy_inflight_collect(const char *data_dir,
                          void (*fn)(void *ud, const eddy_crash *c), void *ud,
                          char *err, size_t errlen) {
  char dir[4096];
  if (make_dir(data_dir, dir, sizeof dir) != 0) {
    snprintf(err, errlen, "cannot make %s: %s", dir, strerror(errno));
    return -1;
  }
  DIR *d = opendir(dir);
  if (!d) {
    snprintf(err, errlen, "cannot read %s: %s", dir, strerror(errno));
    return -1;
  }
  struct dirent *e;
  while ((e = readdir(d)) != NULL) {
    if (e->d_name[0] == '.') continue;
    char path[4400];
    snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) continue;
    /* A live process holds its file: leave it. */
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) { close(fd); continue; }
    read_file(fd, fn, ud);
    unlink(path);
    close(fd);
  }
  closedir(d);
  return 0;
}

int eddy_inflight_open(const char *data_dir, int n, eddy_inflight **out, char *err,
                       size_t errlen) {
  char dir[4096];
  if (make_dir(data_dir, dir, sizeof dir) != 0) {
    snprintf(err, errlen, "cannot make %s: %s", dir, strerror(errno));
    return -1;
  }
  eddy_inflight *in = calloc(1, sizeof *in);
  char path[4400];
  snprintf(path, sizeof path, "%s/%d", dir, (int)getpid());
  if (!in || !(in->path = strdup(path))) {
    free(in);
    snprintf(err, errlen, "out of memory");
    return -1;
  }
  in->n = n;
  in->size = file_size(n);
  in->fd = eddy_private_open(path, O_RDWR | O_TRUNC | O_CLOEXEC);
  if (in->fd < 0 || flock(in->fd, LOCK_EX | LOCK_NB) != 0 ||
      ftruncate(in->fd, (off_t)in->size) != 0) {
    snprintf(err, errlen, "cannot make %s: %s", path, strerror(errno));
    if (in->fd >= 0) { close(in->fd); unlink(path); }
    free(in->path);
    free(in);
    return -1;
  }
  in->map = mmap(NULL, in->size, PROT_READ | PROT_WRITE, MAP_SHARED, in->fd, 0);
  if (in->map == MAP_FAILED) {
    snprintf(err, errlen, "cannot map %s: %s", path, strerror(errno));
    close(in->fd);
    unlink(path);
    free(in->path);
    free(in);
    return -1;
  }
  header *h = in->map;
  memcpy(h->magic, MAGIC, sizeof MAGIC);
  h->nslots = n;
  in->slots = slots_of(in->map);
  *out = in;
  return 0;
}

void eddy_inflight_close(eddy_inflight *in) {
  if (!in) return;
  munmap(in->map, in->size);
  unlink(in->path);
  close(in->fd);
  free(in->path);
  free(in);
}

eddy_inflight_slot *eddy_inflight_slot_at(eddy_inflight *in, int i) {
  if (!in || i < 0 || i >= in->n) return NULL;
  return &in->slots[i];
}

static void put(char *dst, size_t cap, const char *src, size_t n) {
  if (n > cap - 1) n = cap - 1;
  memcpy(dst, src, n);
  dst[n] = 0;
}

void eddy_inflight_enter(eddy_inflight_slot *s, int64_t consumer_id, const char *consumer,
                         const char *topic, int partition, int64_t offset,
                         const char *id, size_t id_len) {
  if (!s) return;
  /* A consumer's id goes with its name: a name at an address a freed one
   * had is the same name when the id is. */
  if (consumer != s->seen_consumer || consumer_id != s->consumer_id) {
    put(s->consumer, sizeof s->consumer, consumer, strlen(consumer));
    s->seen_consumer = consumer;
  }
  s->consumer_id = consumer_id;
  if (topic != s->seen_topic) {
    put(s->topic, sizeof s->topic, topic, strlen(topic));
    s->seen_topic = topic;
  }
  put(s->id, sizeof s->id, id, id_len);
  s->partition = partition;
  s->offset = offset;
  s->started_ms = wall_ms();
  s->signal = 0;
  atomic_store_explicit(&s->state, IN_CALL, memory_order_release);
}

void eddy_inflight_leave(eddy_inflight_slot *s) {
  if (s) atomic_store_explicit(&s->state, IDLE, memory_order_release);
}

void eddy_inflight_stuck(eddy_inflight_slot *s) {
  if (s) atomic_store(&s->state, STUCK);
}

/* ---- fatal signals ------------------------------------------------------ */

/* Signals are the process's: what was installed before is kept here, once,
 * to be put back when a signal comes. */
static const int FATAL[] = { SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGABRT };
#define NFATAL (sizeof FATAL / sizeof FATAL[0])
static struct sigaction before[NFATAL];
static _Thread_local eddy_inflight_slot *bound;

static void on_fatal(int sig) {
  eddy_inflight_slot *s = bound;
  if (s && atomic_load(&s->state) == IN_CALL) {
    s->signal = sig;
    atomic_store(&s->state, SIGNALLED);
  }
  /* Put back what was there (a sanitizer's handler, or the default) and
   * let it have the signal: it ends the process. */
  for (size_t i = 0; i < NFATAL; i++)
    if (FATAL[i] == sig) sigaction(sig, &before[i], NULL);
  raise(sig);
}

static void install(void) {
  static atomic_flag done = ATOMIC_FLAG_INIT;
  if (atomic_flag_test_and_set(&done)) return;
  for (size_t i = 0; i < NFATAL; i++) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_fatal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_NODEFER;
    sigaction(FATAL[i], &sa, &before[i]);
  }
}

void eddy_inflight_bind_thread(eddy_inflight_slot *s) {
  install();
  bound = s;
}
