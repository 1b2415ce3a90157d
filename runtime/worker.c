/*
 * worker.c - a handler thread: its own Lua state, store connection and
 * libuv loop.
 *
 * The runner routes every message of one key (of one consumer) to the same
 * worker, which handles them one at a time in offset order.  A failing
 * message parks its key: later messages of that key wait in the park while
 * other keys go on, and a libuv timer brings the failed one back after its
 * backoff.
 *
 * Effects are held back: a handler's state writes and emits are recorded
 * in memory and applied when the batch commits, in one transaction with
 * the dedupe records and the offsets.  A failed handler's effects are
 * simply dropped.  Reads see the batch's own writes first (the overlay).
 *
 * State keys are not tied to message keys, so two workers may touch the
 * same state key.  Commits are numbered; each records, per slot of state
 * keys it wrote, its number.  A batch reads from a snapshot taken after
 * commit snap_seq; at its commit, a read whose slot was written by a
 * later commit is checked against the stored value.  A batch whose read
 * changed is committed up to that message and the rest is handled again,
 * so state updates are serializable, not just per key.
 */
#include "engine.h"
#include "errors.h"
#include "crashes.h"
#include "guard.h"
#include "headers.h"
#include "lctx.h"
#include "log.h"
#include "metrics.h"
#include "outbox.h"
#include "quarantine.h"
#include "retry.h"
#include "state.h"
#include "uuid.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include <lauxlib.h>

/* A batch ends at BATCH messages, after BATCH_MS, or when the worker's
 * queue is empty, whichever comes first: big batches for fast handlers
 * (one commit for many messages), short ones in time for slow handlers
 * (latency, and prompt stops). */
#define BATCH 2048
#define BATCH_MS 50
#define OVERLAY_SLOTS 16384       /* power of two: writes, dedupe keys, prefetch */
#define PARK_BUCKETS 1024
#define PREFETCH_ROWS (16 * BATCH) /* a range holding more is not prefetched */
#define PREFETCH_SLOTS 65536       /* power of two, > 2 * PREFETCH_ROWS */
#define PREFETCH_RANGES 32         /* partitions prefetched per batch, at most */
#define CACHE_SLOTS 16384          /* power of two: state values kept across batches */
#define CACHE_MAX_VALUE 1024       /* bigger values are always read from the store */
/* A batch also ends once its held effects pass this many bytes: each
 * call's effects are bounded by its memory limit, a batch's by this. */
#define BATCH_BYTES ((size_t)64 << 20)
/* State keys one handler call may write (a key written again counts once). */
#define CALL_KEYS 4096
#define TOPIC_LIMITS 16            /* topics whose size limit a worker keeps */
#define TOPIC_LIMIT_MS 10000       /* ... for this long */
/* What an emitted event or state write costs beyond its bytes, as the
 * memory limit counts it (its record and its share of the batch). */
#define EFFECT_OVERHEAD 96

typedef struct outcome {
  eddy_job *job;
  int kind;
  int crashed;                 /* the message has a crash record: forget it at commit */
  int prev_attempt;            /* the job's failure record before this try, */
  int64_t prev_first, prev_last; /* restored when it is handled again */
  const char *dkey;
  size_t dkey_len;
  int first_write, nwrites;
  int first_emit, nemits;
  int first_read, nreads;
} outcome;

enum { O_DONE, O_DUP, O_QUARANTINE };

typedef struct write_rec {
  int consumer;
  const char *key;
  size_t key_len;
  const char *value;   /* NULL: delete */
  size_t value_len;
} write_rec;

typedef struct emit_rec {
  const char *topic;
  char id[EDDY_UUID_STRLEN + 1];
  const char *key;
  size_t key_len;
  int has_key;
  const char *value;
  size_t value_len;
  const unsigned char *headers;
  size_t headers_len;
  int64_t due;            /* 0, or when it leaves the store's timers */
} emit_rec;

typedef struct read_rec {
  int consumer;
  uint32_t slot;
  const char *key;        /* in the arena */
  size_t key_len;
  uint64_t value_hash;    /* of the value read; 0 when absent */
  uint64_t as_of;         /* the value is the store's as of this commit */
} read_rec;

/* A state value this worker knows the store held as of commit seq: read in
 * a batch whose snapshot holds every commit up to seq, or written by this
 * worker's commit seq.  It is still the store's value while no commit
 * after seq wrote its epoch slot. */
typedef struct cache_ent {
  uint64_t hash;          /* 0: empty */
  uint64_t seq;
  int consumer;
  int present;            /* 0: the key has no value */
  size_t key_len, value_len, cap;
  char *data;             /* the key, then the value */
} cache_ent;

typedef struct overlay_slot {
  uint32_t gen;
  uint32_t stored;     /* commit_gen of the commit that wrote it to the store */
  int consumer;
  uint64_t hash;
  const char *key;
  size_t key_len;
  const char *value;   /* NULL: deleted in this batch */
  size_t value_len;
} overlay_slot;

typedef struct park {
  struct park *next;          /* bucket chain */
  eddy_job *job;              /* the failed message */
  eddy_job *wait_head, *wait_tail;
  int consumer;
  eddy_cursor *cursor;
  uint64_t hash;
  uv_timer_t timer;
  eddy_worker *w;
  int queued;                 /* job is back in the queue for its retry */
  int prev_attempt;           /* the job's failure record before the */
  int64_t prev_first, prev_last; /* failure that made this park */
} park;

typedef struct arena_chunk {
  struct arena_chunk *next;
  size_t used, cap;
  char data[];
} arena_chunk;

struct eddy_worker {
  eddy_runner *r;
  int index;
  char *refusal;                /* the last ctx:emit refusal of this call */
  char refusal_reason[16];      /* "schema" or "limit" */
  int call_emits;               /* events the running handler call emitted */
  int call_keys;                /* state keys it wrote */
  size_t held;                  /* bytes in the arena: the batch's effects */
  eddy_inflight_slot *slot;     /* the guard's record of the call in flight */
  struct { char *topic; int64_t limit, at; } limits[TOPIC_LIMITS];
  int next_limit;
  uv_thread_t thread;
  uv_loop_t loop;
  uv_async_t wake;
  uv_idle_t work;
  int working;
  uv_mutex_t mu;
  eddy_job *in_head, *in_tail;  /* under mu */
  int stop;                     /* under mu */
  eddy_job *q_head, *q_tail;    /* this thread only */
  eddy_sandbox *sb;
  eddy_store *store;
  lctx_consumer *lc;            /* per consumer: Lua refs (lctx.c) */
  eddy_gen *appgen;             /* the generation sb and lc run */
  eddy_consumer_def *defs;      /* appgen->defs */
  _Atomic uint64_t gen_no;      /* appgen->no, for the runner */
  /* What the runner prepared for the next generation (under mu). */
  eddy_gen *next_gen;
  eddy_sandbox *next_sb;
  lctx_consumer *next_lc;
  int switch_now;               /* under mu: switch before the next batch */
  int drop_now;                 /* under mu: drop the jobs of revoked cursors */
  park *parks[PARK_BUCKETS];
  int nparked;
  /* The batch being handled. */
  outcome out[BATCH];
  int nout;
  write_rec *writes;
  int nwrites, capwrites;
  emit_rec *emits;
  int nemits, capemits;
  read_rec *reads;
  int nreads, capreads;
  overlay_slot overlay[OVERLAY_SLOTS];
  uint32_t gen;
  /* The dedupe keys found by the batch's prefetch, apart from the overlay:
   * a failed handler rebuilds the overlay, never this. */
  overlay_slot pre_slots[PREFETCH_SLOTS];
  uint32_t pre_gen;
  uint32_t commit_gen;          /* marks overlay slots a commit has written */
  cache_ent cache[CACHE_SLOTS]; /* direct-mapped by key hash */
  arena_chunk *arena;
  /* Dedupe prefetch of this batch, per consumer: every dedupe key the
   * store holds between lo and hi is in pre_slots, so a lookup in that
   * range is a probe. */
  int npre;
  struct { int consumer; const eddy_cursor *cursor;
           char lo[EDDY_MAX_ID_LEN + 1], hi[EDDY_MAX_ID_LEN + 1];
           int complete; } pre[PREFETCH_RANGES];
  uint64_t snap_seq;            /* commit_seq before this batch's snapshot */
  /* Parks made during this batch, and how many outcomes preceded each. */
  park *new_parks[BATCH];
  int new_park_at[BATCH];
  int nnew;
  eddy_job *current;            /* the job whose handler runs */
  outcome *cur_out;
  eddy_buf scratch;
  eddy_buf json;                /* ctx's JSON encoding (lctx.c) */
  uint64_t rnd_state;
  char err[512];
  int ready;                    /* 1 started, -1 failed (under mu) */
  uv_cond_t ready_cv;
};

/* ---- small helpers ---------------------------------------------------- */

static int64_t mono_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static uint64_t fnv(const void *p, size_t n, uint64_t h) {
  const unsigned char *s = p;
  for (size_t i = 0; i < n; i++) { h ^= s[i]; h *= 0x100000001b3ULL; }
  return h;
}

static uint64_t next_rand(eddy_worker *w) {
  /* splitmix64: plenty for jitter. */
  uint64_t z = (w->rnd_state += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

static void *arena_alloc(eddy_worker *w, size_t n) {
  n = (n + 7) & ~(size_t)7;
  arena_chunk *c = w->arena;
  if (!c || c->cap - c->used < n) {
    size_t cap = n > 65536 ? n : 65536;
    arena_chunk *nc = malloc(sizeof *nc + cap);
    if (!nc) return NULL;
    nc->next = c;
    nc->used = 0;
    nc->cap = cap;
    w->arena = c = nc;
  }
  void *p = c->data + c->used;
  c->used += n;
  w->held += n;
  return p;
}

static const char *arena_dup(eddy_worker *w, const void *p, size_t n) {
  char *d = arena_alloc(w, n + 1);
  if (!d) return NULL;
  if (n) memcpy(d, p, n);
  d[n] = '\0';
  return d;
}

/* Frees all chunks but the newest, and empties that one. */
static void arena_reset(eddy_worker *w) {
  arena_chunk *c = w->arena;
  if (!c) return;
  arena_chunk *rest = c->next;
  c->next = NULL;
  c->used = 0;
  w->held = 0;
  while (rest) { arena_chunk *n = rest->next; free(rest); rest = n; }
}

#define GROW(arr, n, cap)                                                  \
  do {                                                                     \
    if ((n) == (cap)) {                                                    \
      int nc_ = (cap) ? (cap) * 2 : 256;                                   \
      void *p_ = realloc((arr), (size_t)nc_ * sizeof *(arr));              \
      if (!p_) return -1;                                                  \
      (arr) = p_;                                                          \
      (cap) = nc_;                                                         \
    }                                                                      \
  } while (0)

eddy_job *eddy_job_new(eddy_cursor *c, int64_t offset, int64_t timestamp,
                       const char *id, size_t id_len, const void *key,
                       size_t key_len, int has_key, const void *value,
                       size_t value_len, const void *headers,
                       size_t headers_len) {
  eddy_job *j = malloc(sizeof *j + id_len + key_len + value_len +
                       headers_len + 4);
  if (!j) return NULL;
  memset(j, 0, sizeof *j);
  char *at = (char *)(j + 1);
  j->cursor = c;
  j->offset = offset;
  j->timestamp = timestamp;
  j->id = at; memcpy(at, id, id_len); at[id_len] = '\0'; at += id_len + 1;
  j->id_len = id_len;
  j->has_key = has_key;
  j->key = at; if (key_len) memcpy(at, key, key_len); at[key_len] = '\0';
  at += key_len + 1;
  j->key_len = key_len;
  j->value = at; if (value_len) memcpy(at, value, value_len); at[value_len] = '\0';
  at += value_len + 1;
  j->value_len = value_len;
  j->headers = at; if (headers_len) memcpy(at, headers, headers_len);
  j->headers_len = headers_len;
  atomic_fetch_add(&c->inflight, 1);
  return j;
}

void eddy_job_free(eddy_job *j) {
  if (!j) return;
  atomic_fetch_sub(&j->cursor->inflight, 1);
  free(j->error);
  free(j->traceback);
  free(j->reason);
  free(j);
}

void eddy_job_logfields(const eddy_job *j, const char *consumer, eddy_logfields *f,
                        char trace_id[33]) {
  memset(f, 0, sizeof *f);
  f->consumer = consumer;
  f->message_id = j->id;
  size_t cl = 0;
  const char *corr = eddy_headers_get(j->headers, j->headers_len, "eddy-correlation-id", &cl);
  f->correlation_id = corr ? corr : j->id;
  f->correlation_id_len = corr ? cl : j->id_len;
  f->trace_id = eddy_headers_trace_id(j->headers, j->headers_len, trace_id);
}

static void set_str(char **dst, const char *s) {
  free(*dst);
  *dst = s ? strdup(s) : NULL;
}

/* ---- parks -------------------------------------------------------------- */

static uint64_t park_hash(const eddy_job *j) {
  uint64_t h = fnv(&j->cursor, sizeof j->cursor, 0xcbf29ce484222325ULL);
  if (j->has_key) h = fnv(j->key, j->key_len, h ^ 1);
  return h;
}

/* Unkeyed messages park their whole partition (for that consumer), which
 * keeps partition order; keyed ones park their key. */
static int same_park(const park *p, const eddy_job *j, uint64_t h) {
  if (p->hash != h || p->cursor != j->cursor) return 0;
  const eddy_job *f = p->job;
  if (f->has_key != j->has_key) return 0;
  if (!j->has_key) return 1;
  return f->key_len == j->key_len && memcmp(f->key, j->key, j->key_len) == 0;
}

static park *park_find(eddy_worker *w, const eddy_job *j) {
  uint64_t h = park_hash(j);
  for (park *p = w->parks[h % PARK_BUCKETS]; p; p = p->next)
    if (same_park(p, j, h)) return p;
  return NULL;
}

static void queue_front(eddy_worker *w, eddy_job *head, eddy_job *tail) {
  if (!head) return;
  tail->next = w->q_head;
  w->q_head = head;
  if (!w->q_tail) w->q_tail = tail;
}

static void start_work(eddy_worker *w);

static void on_retry_due(uv_timer_t *t) {
  park *p = t->data;
  eddy_worker *w = p->w;
  p->queued = 1;
  p->job->next = NULL;
  queue_front(w, p->job, p->job);
  start_work(w);
}

static void free_park(uv_handle_t *h) { free(h->data); }

/* Removes park p; its waiting jobs go to the front of the queue, in order,
 * so they come next. */
static void park_release(eddy_worker *w, park *p) {
  park **pp = &w->parks[p->hash % PARK_BUCKETS];
  while (*pp != p) pp = &(*pp)->next;
  *pp = p->next;
  w->nparked--;
  atomic_fetch_sub(&w->r->parked, 1);
  atomic_fetch_sub_explicit(&w->r->cm[p->consumer].parked, 1, memory_order_relaxed);
  queue_front(w, p->wait_head, p->wait_tail);
  uv_timer_stop(&p->timer);
  uv_close((uv_handle_t *)&p->timer, free_park);
}

/* ---- handler effects, called from lctx.c ---------------------------------- */

eddy_job *eddy_worker_job(eddy_worker *w) { return w->current; }
eddy_buf *eddy_worker_json_buf(eddy_worker *w) { return &w->json; }

void eddy_worker_refuse(eddy_worker *w, const char *msg, const char *reason) {
  free(w->refusal);
  w->refusal = strdup(msg);
  snprintf(w->refusal_reason, sizeof w->refusal_reason, "%s", reason);
}

const char *eddy_worker_refusal(eddy_worker *w) { return w->refusal ? w->refusal : ""; }

/* The size limit of what goes to topic: on Kafka the producer's
 * message.max.bytes (key, value and headers together, as the broker
 * counts a record); on the embedded log the topic's max_message_bytes
 * (each of key, value and headers, as the log checks them), the default
 * for a topic the commit will create.  Kept a while per topic. */
static int64_t topic_limit(eddy_worker *w, const char *topic) {
  if (w->r->kafka) return w->r->kafka_max_message;
  int64_t now = mono_ms();
  for (int i = 0; i < TOPIC_LIMITS; i++)
    if (w->limits[i].topic && strcmp(w->limits[i].topic, topic) == 0 &&
        now - w->limits[i].at < TOPIC_LIMIT_MS)
      return w->limits[i].limit;
  eddy_topic_info t;
  int64_t limit = eddy_topic_get(w->store, topic, &t) == 0 ? t.config.max_message_bytes
                                                            : EDDY_DEFAULT_MAX_MESSAGE_BYTES;
  int i = w->next_limit++ % TOPIC_LIMITS;
  free(w->limits[i].topic);
  w->limits[i].topic = strdup(topic);
  w->limits[i].limit = limit;
  w->limits[i].at = now;
  return limit;
}
lua_State *eddy_worker_lua(eddy_worker *w) { return eddy_sandbox_state(w->sb); }
eddy_runner *eddy_worker_runner(eddy_worker *w) { return w->r; }
const eddy_consumer_def *eddy_worker_def(eddy_worker *w, int i) { return &w->defs[i]; }

/* Finds (or, with insert, adds) (consumer, key) in an open-addressing
 * table of `size` slots (a power of two) where slots of another generation
 * are empty. */
static overlay_slot *slot_find(overlay_slot *tab, uint32_t size, uint32_t gen,
                               int consumer, const char *key, size_t len,
                               uint64_t h, int insert) {
  uint32_t i = (uint32_t)h & (size - 1);
  for (uint32_t n = 0; n < size; n++, i = (i + 1) & (size - 1)) {
    overlay_slot *s = &tab[i];
    if (s->gen != gen) {
      if (!insert) return NULL;
      s->gen = gen;
      s->stored = 0;
      s->consumer = consumer;
      s->hash = h;
      s->key = key;
      s->key_len = len;
      s->value = NULL;
      return s;
    }
    if (s->hash == h && s->consumer == consumer && s->key_len == len &&
        memcmp(s->key, key, len) == 0)
      return s;
  }
  return NULL;
}

static overlay_slot *overlay_find(eddy_worker *w, int consumer, const char *key,
                                  size_t len, uint64_t h, int insert) {
  return slot_find(w->overlay, OVERLAY_SLOTS, w->gen, consumer, key, len, h, insert);
}

/* FNV-1a's upper bits hardly change with the last bytes of short keys:
 * mix (murmur3's finalizer) before taking a slot. */
static uint32_t epoch_slot(uint64_t h) {
  h ^= h >> 33;
  h *= 0xff51afd7ed558ccdULL;
  h ^= h >> 33;
  h *= 0xc4ceb9fe1a85ec53ULL;
  h ^= h >> 33;
  return (uint32_t)(h % EDDY_EPOCH_SLOTS);
}

/* Remembers that the store held value (NULL: none) for key as of commit
 * seq.  A value too big to keep empties the slot instead. */
static void cache_put(eddy_worker *w, int consumer, uint64_t h, const char *key,
                      size_t len, const char *value, size_t value_len,
                      uint64_t seq) {
  cache_ent *e = &w->cache[h & (CACHE_SLOTS - 1)];
  size_t need = len + (value ? value_len : 0);
  e->hash = 0;
  if (value && value_len > CACHE_MAX_VALUE) return;
  if (need > e->cap) {
    size_t cap = need < 64 ? 64 : need;
    char *d = realloc(e->data, cap);
    if (!d) return;
    e->data = d;
    e->cap = cap;
  }
  memcpy(e->data, key, len);
  if (value) memcpy(e->data + len, value, value_len);
  e->hash = h | 1;
  e->seq = seq;
  e->consumer = consumer;
  e->present = value != NULL;
  e->key_len = len;
  e->value_len = value ? value_len : 0;
}

static void cache_free(eddy_worker *w) {
  for (int i = 0; i < CACHE_SLOTS; i++) {
    free(w->cache[i].data);
    w->cache[i].data = NULL;
    w->cache[i].hash = 0;
    w->cache[i].cap = 0;
  }
}

int eddy_worker_state_get(eddy_worker *w, int consumer, const char *key,
                          size_t len, const char **value, size_t *value_len) {
  uint64_t h = fnv(key, len, 0xcbf29ce484222325ULL);
  overlay_slot *s = overlay_find(w, consumer, key, len, h, 0);
  if (s) {
    *value = s->value;
    *value_len = s->value_len;
    return s->value ? 1 : 0;
  }
  eddy_consumer_def *c = &w->defs[consumer];
  uint32_t slot = epoch_slot(h);
  read_rec *rr = NULL;
  if (!w->cur_out) {
    int rc = eddy_state_get(w->store, c->store_id, key, len, &w->scratch);
    if (rc <= 0) return rc;
    *value = w->scratch.data;
    *value_len = w->scratch.len;
    return 1;
  }
  const char *k = arena_dup(w, key, len);
  if (!k) return -1;
  GROW(w->reads, w->nreads, w->capreads);
  rr = &w->reads[w->nreads++];
  *rr = (read_rec){ consumer, slot, k, len, 0, w->snap_seq };
  w->cur_out->nreads++;
  /* The cache, while no commit after it wrote the slot.  A commit that
   * wrote it and has not yet marked the slot is caught at this batch's
   * commit: the read is checked against the cache's seq, not the
   * batch's snapshot. */
  cache_ent *e = &w->cache[h & (CACHE_SLOTS - 1)];
  if (e->hash == (h | 1) && e->consumer == consumer && e->key_len == len &&
      memcmp(e->data, key, len) == 0 &&
      atomic_load_explicit(&c->slot_seq[slot], memory_order_acquire) <= e->seq &&
      atomic_load_explicit(&w->r->foreign_seq, memory_order_relaxed) <= e->seq) {
    rr->as_of = e->seq;
    if (!e->present) return 0;
    rr->value_hash = fnv(e->data + len, e->value_len, 0xcbf29ce484222325ULL) | 1;
    *value = e->data + len;
    *value_len = e->value_len;
    return 1;
  }
  int rc = eddy_state_get(w->store, c->store_id, key, len, &w->scratch);
  if (rc < 0) return rc;
  cache_put(w, consumer, h, key, len, rc ? w->scratch.data : NULL, w->scratch.len,
            w->snap_seq);
  if (rc == 0) return 0;
  rr->value_hash = fnv(w->scratch.data, w->scratch.len, 0xcbf29ce484222325ULL) | 1;
  *value = w->scratch.data;
  *value_len = w->scratch.len;
  return 1;
}

int eddy_worker_state_put(eddy_worker *w, int consumer, const char *key,
                          size_t len, const char *value, size_t value_len) {
  uint64_t h = fnv(key, len, 0xcbf29ce484222325ULL);
  /* A new key takes an overlay slot: a batch ends before its writes fill
   * a quarter of the overlay, and one call may add CALL_KEYS keys, so
   * the overlay never fills. */
  if (!overlay_find(w, consumer, key, len, h, 0) && w->call_keys++ >= CALL_KEYS) {
    char why[400];
    snprintf(why, sizeof why, "ctx.state:set('%.200s'): more than %d state keys written in "
             "one handler call", key, CALL_KEYS);
    eddy_worker_refuse(w, why, "limit");
    return -3;
  }
  if (eddy_sandbox_charge(w->sb, len + value_len + EFFECT_OVERHEAD) != 0) return -2;
  const char *k = arena_dup(w, key, len);
  const char *v = value ? arena_dup(w, value, value_len) : NULL;
  if (!k || (value && !v)) return -1;
  overlay_slot *s = overlay_find(w, consumer, k, len, h, 1);
  if (!s) return -1;  /* cannot happen: see CALL_KEYS */
  s->value = v;
  s->value_len = value_len;
  GROW(w->writes, w->nwrites, w->capwrites);
  w->writes[w->nwrites++] = (write_rec){ consumer, k, len, v, value_len };
  w->cur_out->nwrites++;
  return 0;
}

int eddy_worker_emit(eddy_worker *w, const char *topic, const char *key,
                     size_t key_len, int has_key, const char *value,
                     size_t value_len, const eddy_header *user, size_t nuser,
                     int64_t due, char id_out[EDDY_UUID_STRLEN + 1]) {
  eddy_job *j = w->current;
  /* Correlation: inherited, else the consumed message's id.  Causation:
   * the consumed message.  traceparent: same trace, a new span. */
  size_t clen = 0;
  const char *corr = eddy_headers_get(j->headers, j->headers_len,
                                      "eddy-correlation-id", &clen);
  if (!corr) { corr = j->id; clen = j->id_len; }
  /* traceparent: 00-<32 hex trace id>-<16 hex span id>-01 */
  char trace[56];
  size_t tlen = 0;
  const char *tp = eddy_headers_get(j->headers, j->headers_len, "traceparent", &tlen);
  static const char hex[] = "0123456789abcdef";
  memcpy(trace, "00-", 3);
  if (tp && tlen == 55 && tp[2] == '-' && tp[35] == '-') {
    memcpy(trace + 3, tp + 3, 32);
  } else {
    uint64_t a = next_rand(w), b = next_rand(w);
    for (int i = 0; i < 16; i++) {
      trace[3 + i] = hex[(a >> (60 - 4 * i)) & 15];
      trace[19 + i] = hex[(b >> (60 - 4 * i)) & 15];
    }
  }
  trace[35] = '-';
  uint64_t span = next_rand(w) | 1;
  for (int i = 0; i < 16; i++) trace[36 + i] = hex[(span >> (60 - 4 * i)) & 15];
  memcpy(trace + 52, "-01", 4);
  eddy_header hs[64 + 3];
  size_t n = 0;
  for (size_t i = 0; i < nuser && n < 64; i++) {
    if ((user[i].name_len == 19 && memcmp(user[i].name, "eddy-correlation-id", 19) == 0) ||
        (user[i].name_len == 17 && memcmp(user[i].name, "eddy-causation-id", 17) == 0) ||
        (user[i].name_len == 11 && memcmp(user[i].name, "traceparent", 11) == 0))
      continue;
    hs[n++] = user[i];
  }
  hs[n++] = (eddy_header){ "eddy-correlation-id", 19, corr, clen };
  hs[n++] = (eddy_header){ "eddy-causation-id", 17, j->id, j->id_len };
  hs[n++] = (eddy_header){ "traceparent", 11, trace, strlen(trace) };
  size_t hsize = eddy_headers_size(hs, n);
  /* Refused here, where the handler can hear it, not at commit (which
   * would fail the whole batch, and again on every restart). */
  const eddy_consumer_def *c = &w->defs[j->cursor->consumer];
  char why[400];
  if (w->call_emits >= c->max_emits) {
    snprintf(why, sizeof why, "ctx:emit: more than %lld events from one handler call "
             "(limits.emits)", (long long)c->max_emits);
    eddy_worker_refuse(w, why, "limit");
    return -3;
  }
  int64_t limit = topic_limit(w, topic);
  const char *what = NULL;
  size_t size = 0;
  if (w->r->kafka) {
    size = key_len + value_len + hsize;
    if ((int64_t)size > limit) what = "event (key, value and headers)";
  } else if ((int64_t)value_len > limit) {
    what = "value";
    size = value_len;
  } else if (has_key && (int64_t)key_len > limit) {
    what = "key";
    size = key_len;
  } else if ((int64_t)hsize > limit) {
    what = "headers";
    size = hsize;
  }
  if (what) {
    snprintf(why, sizeof why, "ctx:emit: %s of %zu bytes is over the limit of %lld bytes "
             "of topic '%.250s'", what, size, (long long)limit, topic);
    eddy_worker_refuse(w, why, "limit");
    return -3;
  }
  if (eddy_sandbox_charge(w->sb, key_len + value_len + hsize + EFFECT_OVERHEAD) != 0)
    return -2;
  w->call_emits++;
  unsigned char *hb = arena_alloc(w, hsize ? hsize : 1);
  const char *t = arena_dup(w, topic, strlen(topic));
  const char *k = has_key ? arena_dup(w, key, key_len) : NULL;
  const char *v = arena_dup(w, value, value_len);
  if (!hb || !t || (has_key && !k) || !v) return -1;
  eddy_headers_encode(hs, n, hb);
  GROW(w->emits, w->nemits, w->capemits);
  emit_rec *e = &w->emits[w->nemits++];
  e->topic = t;
  eddy_uuid_v7(e->id);
  e->key = k;
  e->key_len = key_len;
  e->has_key = has_key;
  e->value = v;
  e->value_len = value_len;
  e->headers = hb;
  e->headers_len = hsize;
  e->due = due;
  w->cur_out->nemits++;
  if (id_out) memcpy(id_out, e->id, sizeof e->id);
  return 0;
}

/* ---- handling one message ------------------------------------------------- */

/* 1 when an earlier message of this batch had the same dedupe key: the
 * overlay keeps dedupe keys too, in a namespace of their own (negative
 * consumer numbers), so the check is one hash probe. */
static int in_batch_dup(eddy_worker *w, int consumer, const char *dkey, size_t n) {
  uint64_t h = fnv(dkey, n, 0xcbf29ce484222325ULL);
  return overlay_find(w, -1 - consumer, dkey, n, h, 0) != NULL;
}

static void batch_dedupe_add(eddy_worker *w, int consumer, const char *dkey, size_t n) {
  uint64_t h = fnv(dkey, n, 0xcbf29ce484222325ULL);
  overlay_slot *s = overlay_find(w, -1 - consumer, dkey, n, h, 1);
  if (s) s->value = dkey;
}

/* Drops the effects recorded for the running handler. */
static void drop_effects(eddy_worker *w, outcome *o) {
  w->nwrites = o->first_write;
  w->nemits = o->first_emit;
  w->nreads = o->first_read;
  o->nwrites = o->nemits = o->nreads = 0;
  /* The overlay may hold this handler's writes: rebuild it from the
   * writes that stay (rare: only after a failure). */
  w->gen++;
  for (int i = 0; i < w->nwrites; i++) {
    write_rec *wr = &w->writes[i];
    uint64_t h = fnv(wr->key, wr->key_len, 0xcbf29ce484222325ULL);
    overlay_slot *s = overlay_find(w, wr->consumer, wr->key, wr->key_len, h, 1);
    if (s) { s->value = wr->value; s->value_len = wr->value_len; }
  }
  for (int i = 0; i < w->nout; i++)
    if (w->out[i].kind == O_DONE && w->out[i].dkey)
      batch_dedupe_add(w, w->out[i].job->cursor->consumer, w->out[i].dkey,
                       w->out[i].dkey_len);
}

enum { H_DONE, H_DUP, H_QUARANTINE, H_PARKED, H_FATAL };

/* Records a failure on the job and decides: park for a retry, or
 * quarantine. */
static int failed(eddy_worker *w, eddy_job *j, const eddy_failure *f) {
  eddy_runner *r = w->r;
  eddy_consumer_def *c = &w->defs[j->cursor->consumer];
  int64_t now = eddy_now_ms();
  j->attempt++;
  if (!j->first_failure) j->first_failure = now;
  j->last_failure = now;
  set_str(&j->error, f->error);
  set_str(&j->traceback, f->traceback);
  set_str(&j->reason, f->reason);
  atomic_fetch_add(&r->n.failed, 1);
  eddy_cmetrics *m = &r->cm[j->cursor->consumer];
  atomic_fetch_add_explicit(&m->failed, 1, memory_order_relaxed);
  if (f->permanent || j->attempt >= c->attempts) return H_QUARANTINE;
  atomic_fetch_add(&r->n.retried, 1);
  atomic_fetch_add_explicit(&m->retried, 1, memory_order_relaxed);
  eddy_logfields lf;
  char trace_id[33];
  eddy_job_logfields(j, c->name, &lf, trace_id);
  lf.topic = j->cursor->topic;
  lf.partition = j->cursor->partition;
  lf.offset = j->offset;
  lf.attempt = j->attempt;
  lf.set = EDDY_LOGF_PARTITION | EDDY_LOGF_OFFSET | EDDY_LOGF_ATTEMPT;
  lf.text_hide = EDDY_LOGF_CORRELATION_ID;   /* not in the text line, ever */
  eddy_logx("WARN", &lf, "retrying: %s", f->error);
  return H_PARKED;
}

static void schedule_retry(eddy_worker *w, eddy_job *j, park *p,
                           const outcome *o) {
  eddy_consumer_def *c = &w->defs[j->cursor->consumer];
  if (!p) {
    p = calloc(1, sizeof *p);
    if (!p) { eddy_runner_fatal(w->r, "out of memory parking a message"); return; }
    p->prev_attempt = o->prev_attempt;
    p->prev_first = o->prev_first;
    p->prev_last = o->prev_last;
    if (w->nnew < BATCH) {
      w->new_parks[w->nnew] = p;
      w->new_park_at[w->nnew++] = w->nout;
    }
    p->job = j;
    p->cursor = j->cursor;
    p->consumer = j->cursor->consumer;
    p->hash = park_hash(j);
    p->w = w;
    uv_timer_init(&w->loop, &p->timer);
    p->timer.data = p;
    park **b = &w->parks[p->hash % PARK_BUCKETS];
    p->next = *b;
    *b = p;
    w->nparked++;
    atomic_fetch_add(&w->r->parked, 1);
    atomic_fetch_add_explicit(&w->r->cm[p->consumer].parked, 1, memory_order_relaxed);
  }
  p->queued = 0;
  int64_t delay = eddy_retry_delay(c->backoff_ms, c->max_backoff_ms, j->attempt,
                                   next_rand(w));
  uv_timer_start(&p->timer, on_retry_due, (uint64_t)delay, 0);
}

struct pre_ctx { eddy_worker *w; int consumer; };

static void prefetch_add(void *ud, const char *dkey, size_t n) {
  struct pre_ctx *p = ud;
  const char *k = arena_dup(p->w, dkey, n);
  if (!k) return;
  uint64_t h = fnv(k, n, 0xcbf29ce484222325ULL);
  overlay_slot *s = slot_find(p->w->pre_slots, PREFETCH_SLOTS, p->w->pre_gen,
                              p->consumer, k, n, h, 1);
  if (s) s->value = k;
}

/* What the prefetch knows of dkey: 1 recorded in the store, 0 not, -1
 * outside the prefetched range (ask the store). */
static int prefetched(eddy_worker *w, const eddy_cursor *cu, const char *dkey, size_t n) {
  int consumer = cu->consumer;
  for (int i = 0; i < w->npre; i++) {
    if (w->pre[i].cursor != cu || !w->pre[i].complete) continue;
    size_t lo = strlen(w->pre[i].lo), hi = strlen(w->pre[i].hi);
    int a = memcmp(dkey, w->pre[i].lo, n < lo ? n : lo);
    int b = memcmp(dkey, w->pre[i].hi, n < hi ? n : hi);
    if (a < 0 || (a == 0 && n < lo) || b > 0 || (b == 0 && n > hi)) return -1;
    uint64_t h = fnv(dkey, n, 0xcbf29ce484222325ULL);
    return slot_find(w->pre_slots, PREFETCH_SLOTS, w->pre_gen, consumer, dkey, n,
                     h, 0) != NULL;
  }
  return -1;
}

static int textcmp(const char *a, size_t an, const char *b, size_t bn) {
  int c = memcmp(a, b, an < bn ? an : bn);
  return c ? c : (an > bn) - (an < bn);
}

/* Before a batch: for each partition (cursor) of a consumer that dedupes
 * by message id, reads in one range scan the dedupe keys the store holds
 * between the lowest and highest id of its next messages.  Ids are
 * UUIDv7s and a partition's follow produce time, so each range is narrow
 * even when partitions are read far apart in time (Kafka), and one scan
 * replaces a lookup per message.  A range with too many keys is left to
 * the lookups. */
static void prefetch(eddy_worker *w) {
  w->npre = 0;
  w->pre_gen++;
  int n = 0;
  for (eddy_job *j = w->q_head; j && n < BATCH; j = j->next, n++) {
    int ci = j->cursor->consumer;
    if (w->defs[ci].dedupe != 1 || j->id_len > EDDY_MAX_ID_LEN) continue;
    int k = 0;
    while (k < w->npre && w->pre[k].cursor != j->cursor) k++;
    if (k == w->npre) {
      if (w->npre == PREFETCH_RANGES) continue;
      w->npre++;
      w->pre[k].consumer = ci;
      w->pre[k].cursor = j->cursor;
      memcpy(w->pre[k].lo, j->id, j->id_len + 1);
      memcpy(w->pre[k].hi, j->id, j->id_len + 1);
      w->pre[k].complete = 0;
      continue;
    }
    if (textcmp(j->id, j->id_len, w->pre[k].lo, strlen(w->pre[k].lo)) < 0)
      memcpy(w->pre[k].lo, j->id, j->id_len + 1);
    if (textcmp(j->id, j->id_len, w->pre[k].hi, strlen(w->pre[k].hi)) > 0)
      memcpy(w->pre[k].hi, j->id, j->id_len + 1);
  }
  for (int k = 0; k < w->npre; k++) {
    eddy_consumer_def *c = &w->defs[w->pre[k].consumer];
    int64_t rows = 0;
    int rc = eddy_dedupe_range(w->store, c->store_id, w->pre[k].lo, w->pre[k].hi,
                               PREFETCH_ROWS, prefetch_add, &(struct pre_ctx){ w, w->pre[k].consumer },
                               &rows);
    w->pre[k].complete = rc == 0 && rows < PREFETCH_ROWS;
  }
}

static int64_t mono_us(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (int64_t)t.tv_sec * 1000000 + t.tv_nsec / 1000;
}

const double eddy_lat_bounds[EDDY_LAT_BUCKETS] = {
  0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 2.5,
};

/* One handler call's duration into its consumer's histogram. */
static void observe_latency(eddy_cmetrics *m, int64_t us) {
  int b = 0;
  while (b < EDDY_LAT_BUCKETS && (double)us > eddy_lat_bounds[b] * 1e6) b++;
  atomic_fetch_add_explicit(&m->lat[b], 1, memory_order_relaxed);
  atomic_fetch_add_explicit(&m->lat_count, 1, memory_order_relaxed);
  atomic_fetch_add_explicit(&m->lat_sum_us, (uint64_t)us, memory_order_relaxed);
}

/* A sandbox call of the running message, watched by the guard: a call
 * still running after its timeout and the grace ends the process. */
static int watched_call(eddy_worker *w, const eddy_consumer_def *c, int nargs, int nresults,
                        eddy_failure *f) {
  eddy_guard_call_begin(w->r->guard, w->index, c->timeout_ms);
  int rc = eddy_sandbox_call(w->sb, nargs, nresults, f);
  eddy_guard_call_end(w->r->guard, w->index);
  return rc;
}

/* Handles job j: dedupe, the handler, the outcome.  Returns H_*. */
static int handle(eddy_worker *w, eddy_job *j, outcome *o) {
  eddy_runner *r = w->r;
  int ci = j->cursor->consumer;
  eddy_consumer_def *c = &w->defs[ci];
  lua_State *L = eddy_sandbox_state(w->sb);
  memset(o, 0, sizeof *o);
  o->job = j;
  o->prev_attempt = j->attempt;
  o->prev_first = j->first_failure;
  o->prev_last = j->last_failure;
  o->first_write = w->nwrites;
  o->first_emit = w->nemits;
  o->first_read = w->nreads;
  w->current = j;
  w->cur_out = o;
  eddy_sandbox_limits(w->sb, c->instructions, c->memory, c->timeout_ms);
  eddy_failure f;
  int top = lua_gettop(L);
  /* Which message is in a call, for the next start if this one dies. */
  eddy_inflight_enter(w->slot, c->store_id, c->name, j->cursor->topic, j->cursor->partition,
                      j->offset, j->id, j->id_len);

  lctx_push_msg(L, j);
  int msg = lua_gettop(L);
  /* The dedupe key. */
  if (c->dedupe == 1) {
    o->dkey = j->id;
    o->dkey_len = j->id_len;
  } else if (c->dedupe == 2) {
    lctx_push_dedupe(L, &w->lc[ci]);
    lua_pushvalue(L, msg);
    if (watched_call(w, c, 1, 1, &f) != 0) {
      lctx_invalidate_msg(L, msg);
      lua_settop(L, top);
      w->current = NULL;
      w->cur_out = NULL;
      drop_effects(w, o);
      eddy_inflight_leave(w->slot);
      return failed(w, j, &f);
    }
    size_t n = 0;
    const char *k = lua_type(L, -1) == LUA_TSTRING || lua_type(L, -1) == LUA_TNUMBER
                      ? lua_tolstring(L, -1, &n) : NULL;
    if (k) {
      o->dkey = arena_dup(w, k, n);
      o->dkey_len = n;
    }
    lua_pop(L, 1);
  }
  if (o->dkey) {
    int seen = in_batch_dup(w, ci, o->dkey, o->dkey_len);
    if (!seen) seen = prefetched(w, j->cursor, o->dkey, o->dkey_len);
    if (seen == -1) seen = eddy_dedupe_seen(w->store, c->store_id, o->dkey, o->dkey_len);
    if (seen < 0) {
      lctx_invalidate_msg(L, msg);
      lua_settop(L, top);
      eddy_inflight_leave(w->slot);
      eddy_runner_fatal(r, "%s", eddy_store_errmsg(w->store));
      return H_FATAL;
    }
    if (seen) {
      lctx_invalidate_msg(L, msg);
      lua_settop(L, top);
      w->current = NULL;
      w->cur_out = NULL;
      o->kind = O_DUP;  /* counted when its batch commits */
      eddy_inflight_leave(w->slot);
      return H_DUP;
    }
  }
  /* A message that took eddy down before: forgotten once it is done; and
   * after EDDY_CRASH_RUNS such runs, quarantined without a call. */
  const eddy_crash_row *crash = eddy_guard_any(r->guard)
    ? eddy_guard_crashed(r->guard, c->store_id, j->cursor->topic, j->cursor->partition,
                         j->offset)
    : NULL;
  if (crash) {
    o->crashed = 1;
    if (crash->runs >= EDDY_CRASH_RUNS) {
      char why[256];
      eddy_guard_reason(crash, why, sizeof why);
      lctx_invalidate_msg(L, msg);
      lua_settop(L, top);
      w->current = NULL;
      w->cur_out = NULL;
      eddy_inflight_leave(w->slot);
      f = (eddy_failure){ .permanent = 1, .reason = "crashed", .error = why, .traceback = "" };
      return failed(w, j, &f);
    }
  }
  /* A consumed event of a declared type must match its schema; one that
   * does not goes to quarantine at once, with reason schema. */
  int64_t max_lag = 0;
  size_t tl = 0;
  const char *ty = w->lc[ci].catalog
    ? eddy_headers_get(j->headers, j->headers_len, "eddy-type", &tl) : NULL;
  if (ty) {
    lctx_push_consume_check(L);
    lua_pushstring(L, c->name);
    lua_pushlstring(L, ty, tl);
    size_t vl = 0;
    const char *ver = eddy_headers_get(j->headers, j->headers_len, "eddy-version", &vl);
    if (ver) lua_pushlstring(L, ver, vl);
    else lua_pushnil(L);
    lua_pushvalue(L, msg);
    int crc = watched_call(w, c, 4, 2, &f);
    char why[1024];
    int bad = crc == 0 && lua_type(L, -2) == LUA_TSTRING;
    if (bad) snprintf(why, sizeof why, "%s", lua_tostring(L, -2));
    if (crc == 0 && lua_isinteger(L, -1)) max_lag = lua_tointeger(L, -1);
    if (crc != 0 || bad) {
      lctx_invalidate_msg(L, msg);
      lua_settop(L, top);
      w->current = NULL;
      w->cur_out = NULL;
      drop_effects(w, o);
      eddy_inflight_leave(w->slot);
      if (bad) {
        f = (eddy_failure){ .permanent = 1, .schema = 1, .reason = "schema", .error = why,
                            .traceback = "" };
      }
      return failed(w, j, &f);
    }
    lua_pop(L, 2);
  }
  lctx_push_handle(L, &w->lc[ci]);
  lua_pushvalue(L, msg);
  lctx_push_ctx(L, &w->lc[ci], j->attempt + 1);
  int64_t t0 = mono_us();
  free(w->refusal);
  w->refusal = NULL;
  w->call_emits = w->call_keys = 0;
  int rc = watched_call(w, c, 2, 0, &f);
  observe_latency(&r->cm[ci], mono_us() - t0);
  /* The handler failed with one of ctx:emit's refusals (not caught, or
   * raised again): retrying the same code cannot help. */
  if (rc != 0 && w->refusal && strcmp(f.reason, "error") == 0 &&
      strcmp(f.error, w->refusal) == 0) {
    f.permanent = 1;
    f.schema = strcmp(w->refusal_reason, "schema") == 0;
    f.reason = w->refusal_reason;
  }
  lctx_invalidate_msg(L, msg);
  lua_settop(L, top);
  w->current = NULL;
  w->cur_out = NULL;
  eddy_inflight_leave(w->slot);
  if (rc != 0) {
    drop_effects(w, o);
    return failed(w, j, &f);
  }
  /* The type's SLA: handled later than max_lag after the event was made. */
  if (max_lag > 0 && eddy_now_ms() - j->timestamp > max_lag)
    eddy_metrics_sla_breach(r, ci, ty, tl);
  if (o->dkey) batch_dedupe_add(w, ci, o->dkey, o->dkey_len);
  o->kind = O_DONE;
  return H_DONE;
}

/* ---- committing a batch --------------------------------------------------- */

static int by_topic(const void *a, const void *b) {
  const emit_rec *x = *(emit_rec *const *)a, *y = *(emit_rec *const *)b;
  int c = strcmp(x->topic, y->topic);
  if (c) return c;
  return x < y ? -1 : x > y;   /* emits sit in emission order in memory */
}

/* Publishes the batch's emitted events, in the open transaction.  On the
 * embedded log the outbox and the log are one database, so the relay's
 * work is done here: the events join their topics in the commit that
 * emitted them, exactly once, with the ids they got at emit.  Topics
 * missing are created with one partition. */
/* Emits go in the commit: onto their topics on the embedded log; into the
 * outbox when the log is Kafka (the runner relays them). */
static int publish(eddy_store *s, emit_rec **e, int n, int to_outbox, int64_t now) {
  if (!to_outbox) qsort(e, (size_t)n, sizeof *e, by_topic);
  eddy_record *recs = calloc((size_t)n, sizeof *recs);
  eddy_produced *out = malloc((size_t)n * sizeof *out);
  int rc = 0;
  if (!recs || !out) { rc = eddy_store_seterr(s, EDDY_ENOMEM, "out of memory"); goto done; }
  for (int i = 0; i < n; i++) {
    eddy_record *r = &recs[i];
    r->id = e[i]->id;
    r->id_len = strlen(e[i]->id);
    r->key = e[i]->key;
    r->key_len = e[i]->key_len;
    r->has_key = e[i]->has_key;
    r->value = e[i]->value;
    r->value_len = e[i]->value_len;
    r->headers_raw = e[i]->headers_len ? (const void *)e[i]->headers : NULL;
    r->headers_raw_len = e[i]->headers_len;
    r->partition = -1;
  }
  for (int i = 0; to_outbox && rc == 0 && i < n; i++)
    rc = e[i]->due ? eddy_timer_add(s, e[i]->topic, &recs[i], e[i]->due, now)
                   : eddy_outbox_add(s, e[i]->topic, &recs[i], now);
  for (int i = 0; !to_outbox && rc == 0 && i < n;) {
    if (e[i]->due) {
      rc = eddy_timer_add(s, e[i]->topic, &recs[i], e[i]->due, now);
      i++;
      continue;
    }
    int j = i + 1;
    while (j < n && strcmp(e[j]->topic, e[i]->topic) == 0 && !e[j]->due) j++;
    eddy_topic_config c;
    eddy_topic_config_init(&c);
    int created = 0;
    rc = eddy_topic_ensure(s, e[i]->topic, &c, &created);
    if (rc == 0) rc = eddy_log_produce(s, e[i]->topic, &recs[i], (size_t)(j - i), &out[i]);
    i = j;
  }
done:
  free(recs);
  free(out);
  return rc;
}

typedef struct touched {
  eddy_cursor *c;
  int64_t watermark;
} touched;

static int recent_cmp(int ca, const char *a, size_t an, int cb, const char *b, size_t bn) {
  if (ca != cb) return ca < cb ? -1 : 1;
  int c = memcmp(a, b, an < bn ? an : bn);
  return c ? c : (an > bn) - (an < bn);
}

/* 1 when a commit after this batch's snapshot recorded dkey for the
 * consumer (write_mu held). */
static int recently_committed(eddy_worker *w, int consumer, const char *dkey,
                              size_t n) {
  for (eddy_recent *e = w->r->recent; e && e->seq > w->snap_seq; e = e->next) {
    int lo = 0, hi = e->n;
    while (lo < hi) {
      int mid = lo + (hi - lo) / 2;
      int c = recent_cmp(e->consumer[mid], e->key[mid], e->len[mid], consumer, dkey, n);
      if (c == 0) return 1;
      if (c < 0) lo = mid + 1; else hi = mid;
    }
  }
  return 0;
}

/* Drops the recent entries every worker's snapshot includes. */
static void prune_recent(eddy_runner *r) {
  uint64_t min = UINT64_MAX;
  for (int i = 0; i < r->nworkers && i < 64; i++) {
    uint64_t v = atomic_load(&r->snaps[i]);
    if (v < min) min = v;
  }
  eddy_recent **pe = &r->recent;
  while (*pe && (*pe)->seq > min) pe = &(*pe)->next;
  eddy_recent *e = *pe;
  *pe = NULL;
  while (e) { eddy_recent *n = e->next; free(e); e = n; }
}

struct rkey { int consumer; const eddy_cursor *cursor; const char *k; size_t n; };

static int by_rkey(const void *a, const void *b) {
  const struct rkey *x = a, *y = b;
  return recent_cmp(x->consumer, x->k, x->n, y->consumer, y->k, y->n);
}

/* By consumer, then partition (cursor), then key. */
static int by_row(const void *a, const void *b) {
  const struct rkey *x = a, *y = b;
  if (x->consumer != y->consumer) return x->consumer < y->consumer ? -1 : 1;
  if (x->cursor != y->cursor) return (uintptr_t)x->cursor < (uintptr_t)y->cursor ? -1 : 1;
  return recent_cmp(0, x->k, x->n, 0, y->k, y->n);
}

/* Keys per dedupe row at most: a lookup outside the prefetch reads one
 * row's whole blob. */
#define DEDUPE_ROW_KEYS 256

/* Writes the dedupe records of the batch's handled messages, and makes the
 * recent-commit entry for them (*fresh, one allocation).  A row holds the
 * keys of one consumer and one partition, at most DEDUPE_ROW_KEYS of them:
 * a partition's ids follow produce time, so its rows cover narrow ranges
 * even when partitions are read far apart in time (Kafka fetches a
 * partition ahead of the others), and a lookup meets few rows.  write_mu
 * held, transaction open. */
static int record_dedupe(eddy_worker *w, eddy_store *s, int limit, int64_t now,
                         eddy_recent **fresh) {
  int n = 0;
  size_t bytes = 0;
  for (int i = 0; i < limit; i++)
    if (w->out[i].kind == O_DONE && w->out[i].dkey) { n++; bytes += w->out[i].dkey_len; }
  if (n == 0) return 0;
  size_t size = sizeof(eddy_recent) + (size_t)n * sizeof(struct rkey) +
                (size_t)n * sizeof(int) + (size_t)n * sizeof(size_t) +
                (size_t)n * sizeof(char *) + bytes + 16;
  eddy_recent *e = malloc(size);
  if (!e) return eddy_store_seterr(s, EDDY_ENOMEM, "out of memory");
  /* Layout: the entry, rkeys, lens, key pointers, consumers, bytes. */
  struct rkey *rk = (struct rkey *)(e + 1);
  e->len = (size_t *)(rk + n);
  e->key = (const char **)(e->len + n);
  e->consumer = (int *)(e->key + n);
  char *at = (char *)(e->consumer + n);
  int k = 0;
  for (int i = 0; i < limit; i++) {
    outcome *o = &w->out[i];
    if (o->kind != O_DONE || !o->dkey) continue;
    memcpy(at, o->dkey, o->dkey_len);
    rk[k++] = (struct rkey){ o->job->cursor->consumer, o->job->cursor, at, o->dkey_len };
    at += o->dkey_len;
  }
  /* The rows: runs of one consumer and partition, cut every
   * DEDUPE_ROW_KEYS keys; e's arrays serve as scratch for their keys. */
  qsort(rk, (size_t)n, sizeof *rk, by_row);
  int rc = 0;
  for (int from = 0, i = 1; rc == 0 && from < n; i++) {
    if (i < n && i - from < DEDUPE_ROW_KEYS && rk[i].consumer == rk[from].consumer &&
        rk[i].cursor == rk[from].cursor)
      continue;
    for (int j = from; j < i; j++) { e->key[j] = rk[j].k; e->len[j] = rk[j].n; }
    rc = eddy_dedupe_add(s, w->defs[rk[from].consumer].store_id, e->key + from,
                         e->len + from, i - from, now);
    from = i;
  }
  if (rc) { free(e); return rc; }
  qsort(rk, (size_t)n, sizeof *rk, by_rkey);
  for (int i = 0; i < n; i++) {
    e->consumer[i] = rk[i].consumer;
    e->key[i] = rk[i].k;
    e->len[i] = rk[i].n;
  }
  e->n = n;
  e->next = NULL;
  *fresh = e;
  return 0;
}

/* Where consumer c quarantines the messages of cursor cu: by topic name,
 * since a reload may change the order of c's topics. */
static const char *dlq_topic(const eddy_consumer_def *c, const eddy_cursor *cu) {
  for (int k = 0; k < c->ntopics; k++)
    if (strcmp(c->topics[k], cu->topic) == 0) return c->dlq_topics[k];
  return c->ntopics ? c->dlq_topics[0] : "dlq";
}

/* Counts this commit in the store (write_mu held, in the transaction).
 * When another process committed since this one's last commit, values
 * read or cached as of earlier commits may be stale in ways slot_seq
 * cannot show: foreign_seq makes the checks read the store. */
static int count_commit(eddy_worker *w) {
  eddy_runner *r = w->r;
  int64_t n = 0;
  int rc = eddy_store_commits(w->store, 1, &n);
  if (rc) return rc;
  if (n - 1 != r->store_commits)
    atomic_store(&r->foreign_seq, atomic_load(&r->commit_seq) + 1);
  r->store_commits = n;
  return 0;
}

static int commit_batch(eddy_worker *w, int *conflict_at) {
  eddy_runner *r = w->r;
  eddy_store *s = w->store;
  int n = w->nout, limit = n;
  *conflict_at = -1;
  if (n == 0) return 0;
  int64_t now = eddy_now_ms();
  int64_t emitted = 0, quarantined = 0, handled = 0, delayed = 0;
  int64_t first_due = INT64_MAX;
  emit_rec **pub = NULL;
  int npub = 0, cappub = 0;
  uv_mutex_lock(&r->write_mu);
  int rc = eddy_store_begin(s);
  if (rc == 0) rc = count_commit(w);
  uint64_t foreign = atomic_load(&r->foreign_seq);
  for (int i = 0; rc == 0 && i < n; i++) {
    outcome *o = &w->out[i];
    eddy_job *j = o->job;
    eddy_consumer_def *c = &w->defs[j->cursor->consumer];
    if (o->kind == O_DONE) {
      for (int k = 0; k < o->nreads && rc == 0; k++) {
        read_rec *rr = &w->reads[o->first_read + k];
        if (atomic_load_explicit(&w->defs[rr->consumer].slot_seq[rr->slot],
                                 memory_order_acquire) <= rr->as_of && foreign <= rr->as_of)
          continue;
        /* The slot was written since (by this key, or by another key that
         * shares the slot), or another process committed: compare the
         * value itself. */
        int got = eddy_state_get(s, w->defs[rr->consumer].store_id, rr->key,
                                 rr->key_len, &w->scratch);
        if (got < 0) { rc = got; break; }
        uint64_t now_hash = got ? fnv(w->scratch.data, w->scratch.len,
                                      0xcbf29ce484222325ULL) | 1 : 0;
        if (now_hash != rr->value_hash) {
          *conflict_at = i;
          break;
        }
      }
      if (rc) break;
      if (*conflict_at >= 0) { limit = i; break; }
      if (o->dkey) {
        int rec = !recently_committed(w, j->cursor->consumer, o->dkey, o->dkey_len);
        if (rec == 0) {
          /* A duplicate found only now (another worker committed the key
           * first).  Later messages of this batch may have read its
           * writes from the overlay: handle them again. */
          o->kind = O_DUP;
          if (o->nwrites && i + 1 < n) { *conflict_at = i + 1; limit = i + 1; break; }
          continue;
        }
      }
      for (int k = 0; k < o->nemits; k++) {
        if (npub == cappub) {
          int nc = cappub ? cappub * 2 : 256;
          emit_rec **b = realloc(pub, (size_t)nc * sizeof *b);
          if (!b) { rc = eddy_store_seterr(s, EDDY_ENOMEM, "out of memory"); break; }
          pub = b;
          cappub = nc;
        }
        emit_rec *e = &w->emits[o->first_emit + k];
        pub[npub++] = e;
        if (e->due) {
          delayed++;
          if (e->due < first_due) first_due = e->due;
        } else {
          emitted++;
        }
      }
      handled++;
    } else if (o->kind == O_QUARANTINE) {
      eddy_dlq_entry e;
      memset(&e, 0, sizeof e);
      e.consumer = c->name;
      e.id = j->id;
      e.topic = j->cursor->topic;
      e.partition = j->cursor->partition;
      e.offset = j->offset;
      e.key = j->has_key ? j->key : NULL;
      e.key_len = j->key_len;
      e.has_key = j->has_key;
      e.value = j->value;
      e.value_len = j->value_len;
      e.headers = j->headers;
      e.headers_len = j->headers_len;
      e.timestamp = j->timestamp;
      e.reason = j->reason ? j->reason : "error";
      e.error = j->error ? j->error : "";
      e.traceback = j->traceback;
      e.attempts = j->attempt;
      e.first_failure = j->first_failure;
      e.last_failure = j->last_failure;
      e.version = c->version;
      e.dlq_topic = dlq_topic(c, j->cursor);
      e.via_outbox = r->kafka != NULL;
      rc = eddy_dlq_add(s, &e);
      quarantined++;
    }
    /* Done: a crash record of the message has served its purpose. */
    if (rc == 0 && o->crashed && o->kind != O_DUP)
      rc = eddy_crash_forget(s, c->store_id, j->cursor->topic, j->cursor->partition,
                             j->offset);
  }
  /* State: only each key's last write among the committed messages. */
  w->commit_gen++;
  for (int i = limit - 1; rc == 0 && i >= 0; i--) {
    outcome *o = &w->out[i];
    if (o->kind != O_DONE) continue;
    for (int k = o->nwrites - 1; rc == 0 && k >= 0; k--) {
      write_rec *wr = &w->writes[o->first_write + k];
      overlay_slot *os = overlay_find(w, wr->consumer, wr->key, wr->key_len,
                                      fnv(wr->key, wr->key_len, 0xcbf29ce484222325ULL), 0);
      if (os) {
        if (os->stored == w->commit_gen) continue;
        os->stored = w->commit_gen;
      }
      rc = eddy_state_put(s, w->defs[wr->consumer].store_id, wr->key,
                          wr->key_len, wr->value, wr->value_len, now);
    }
  }
  if (rc == 0 && npub) rc = publish(s, pub, npub, r->kafka != NULL, now);
  free(pub);
  eddy_recent *fresh = NULL;
  if (rc == 0) rc = record_dedupe(w, s, limit, now, &fresh);
  /* Offsets: mark done, find each touched partition's new watermark. */
  touched t[BATCH];
  int nt = 0;
  if (rc == 0) {
    uv_mutex_lock(&r->track_mu);
    for (int i = 0; i < limit; i++) {
      eddy_cursor *c = w->out[i].job->cursor;
      eddy_cursor_mark_done(c, w->out[i].job->offset);
      int k = 0;
      while (k < nt && t[k].c != c) k++;
      if (k == nt) t[nt++].c = c;
    }
    for (int k = 0; k < nt; k++) t[k].watermark = t[k].c->watermark;
    uv_mutex_unlock(&r->track_mu);
  }
  for (int k = 0; rc == 0 && k < nt; k++) {
    eddy_cursor *c = t[k].c;
    const char *group = w->defs[c->consumer].name;
    if (t[k].watermark > c->committed) {
      rc = eddy_group_commit(s, group, c->topic, c->partition, t[k].watermark);
      if (rc == 0) rc = eddy_done_offsets_clear(s, group, c->topic_id, c->partition,
                                                 t[k].watermark);
    }
    for (int i = 0; rc == 0 && i < limit; i++) {
      /* Above the watermark a finished message needs a done offset only
       * when nothing else would stop a second run after a crash: its
       * dedupe record does that (a duplicate is skipped), so only messages
       * without one (dedupe off, quarantined) get a row.  This keeps the
       * common case to one write per message. */
      outcome *o = &w->out[i];
      eddy_job *j = o->job;
      if (j->cursor == c && j->offset >= t[k].watermark &&
          (o->kind == O_QUARANTINE || (o->kind == O_DONE && !o->dkey)))
        rc = eddy_done_offsets_add(s, group, c->topic_id, c->partition, j->offset);
    }
  }
  if (rc == 0) rc = eddy_store_commit(s);
  else eddy_store_rollback(s);
  if (rc == 0) {
    for (int k = 0; k < nt; k++)
      if (t[k].watermark > t[k].c->committed) t[k].c->committed = t[k].watermark;
    uint64_t seq = atomic_fetch_add(&r->commit_seq, 1) + 1;
    if (r->kafka && (emitted || quarantined))
      atomic_fetch_add(&r->outbox_pending, emitted + quarantined);
    if (fresh) {
      fresh->seq = seq;
      fresh->next = r->recent;
      r->recent = fresh;
      fresh = NULL;
    }
    prune_recent(r);
    for (int i = 0; i < limit; i++) {
      outcome *o = &w->out[i];
      if (o->kind != O_DONE) continue;
      for (int k = 0; k < o->nwrites; k++) {
        write_rec *wr = &w->writes[o->first_write + k];
        uint64_t h = fnv(wr->key, wr->key_len, 0xcbf29ce484222325ULL);
        atomic_store_explicit(&w->defs[wr->consumer].slot_seq[epoch_slot(h)],
                              seq, memory_order_release);
        cache_put(w, wr->consumer, h, wr->key, wr->key_len, wr->value,
                  wr->value_len, seq);
      }
    }
  }
  uv_mutex_unlock(&r->write_mu);
  free(fresh);   /* not NULL only when the commit failed */
  if (rc) {
    eddy_runner_fatal(r, "%s", eddy_store_errmsg(s));
    return rc;
  }
  atomic_fetch_add(&r->n.handled, handled);
  atomic_fetch_add(&r->n.quarantined, quarantined);
  for (int i = 0; i < limit; i++) {
    outcome *o = &w->out[i];
    eddy_cmetrics *m = &r->cm[o->job->cursor->consumer];
    if (o->kind == O_DONE) atomic_fetch_add_explicit(&m->handled, 1, memory_order_relaxed);
    else if (o->kind == O_QUARANTINE)
      atomic_fetch_add_explicit(&m->quarantined, 1, memory_order_relaxed);
    else if (o->kind == O_DUP)
      atomic_fetch_add_explicit(&m->deduplicated, 1, memory_order_relaxed);
  }
  /* Duplicates count once, when committed: a batch handled again after a
   * conflict meets its duplicates again. */
  int64_t dups = 0;
  for (int i = 0; i < limit; i++) dups += w->out[i].kind == O_DUP;
  atomic_fetch_add(&r->n.deduplicated, dups);
  atomic_fetch_add(&r->n.emitted, emitted + delayed);
  if (delayed) {
    /* The runner fires timers from its poll: tell it the earliest. */
    int64_t cur = atomic_load(&r->next_due);
    while (first_due < cur && !atomic_compare_exchange_weak(&r->next_due, &cur, first_due)) {}
  }
  if (!r->kafka) atomic_fetch_add(&r->n.relayed, emitted);  /* Kafka: the relay counts */
  for (int i = 0; i < limit; i++) {
    outcome *o = &w->out[i];
    if (o->kind == O_QUARANTINE) {
      eddy_consumer_def *c = &w->defs[o->job->cursor->consumer];
      eddy_logfields lf;
      char trace_id[33];
      eddy_job_logfields(o->job, c->name, &lf, trace_id);
      lf.topic = o->job->cursor->topic;
      lf.partition = o->job->cursor->partition;
      lf.offset = o->job->offset;
      lf.attempt = o->job->attempt;
      lf.set = EDDY_LOGF_PARTITION | EDDY_LOGF_OFFSET | EDDY_LOGF_ATTEMPT;
      lf.text_hide = EDDY_LOGF_CORRELATION_ID;
      lf.text = EDDY_LOGT_ATTEMPTS;
      eddy_logx("ERROR", &lf, "quarantined to %s: %s", dlq_topic(c, o->job->cursor),
                o->job->error ? o->job->error : "");
    }
  }
  return 0;
}

/* ---- the batch loop -------------------------------------------------------- */

static int by_position(const void *a, const void *b) {
  const eddy_job *x = *(eddy_job *const *)a, *y = *(eddy_job *const *)b;
  if (x->cursor != y->cursor) return (uintptr_t)x->cursor < (uintptr_t)y->cursor ? -1 : 1;
  return x->offset < y->offset ? -1 : x->offset > y->offset;
}

/* After a conflict at outcome `from`: the jobs from there on are handled
 * again, and so are those that parked after that point (their failure may
 * come from the state that changed) with the jobs waiting behind them.
 * All go back to the front of the queue in offset order per partition,
 * which is the order they came in for every key. */
static void redo_from(eddy_worker *w, int from) {
  size_t n = (size_t)(w->nout - from), cap = n + 16;
  eddy_job **jobs = malloc(cap * sizeof *jobs);
  if (!jobs) { eddy_runner_fatal(w->r, "out of memory"); return; }
  for (int i = from; i < w->nout; i++) {
    eddy_job *j = w->out[i].job;
    j->attempt = w->out[i].prev_attempt;
    j->first_failure = w->out[i].prev_first;
    j->last_failure = w->out[i].prev_last;
    jobs[i - from] = j;
  }
  for (int k = 0; k < w->nnew; k++) {
    if (w->new_park_at[k] < from) continue;
    park *p = w->new_parks[k];
    park **pp = &w->parks[p->hash % PARK_BUCKETS];
    while (*pp && *pp != p) pp = &(*pp)->next;
    if (!*pp) continue;  /* released already: its jobs are outcomes */
    *pp = p->next;
    w->nparked--;
    atomic_fetch_sub(&w->r->parked, 1);
    atomic_fetch_sub_explicit(&w->r->cm[p->consumer].parked, 1, memory_order_relaxed);
    p->job->attempt = p->prev_attempt;
    p->job->first_failure = p->prev_first;
    p->job->last_failure = p->prev_last;
    p->job->next = p->wait_head;
    for (eddy_job *j = p->job; j; j = j->next) {
      if (n == cap) {
        cap *= 2;
        eddy_job **b = realloc(jobs, cap * sizeof *jobs);
        if (!b) { free(jobs); eddy_runner_fatal(w->r, "out of memory"); return; }
        jobs = b;
      }
      jobs[n++] = j;
    }
    uv_timer_stop(&p->timer);
    uv_close((uv_handle_t *)&p->timer, free_park);
  }
  qsort(jobs, n, sizeof *jobs, by_position);
  for (size_t i = 0; i < n; i++) jobs[i]->next = i + 1 < n ? jobs[i + 1] : NULL;
  if (n) queue_front(w, jobs[0], jobs[n - 1]);
  free(jobs);
}

static void end_batch(eddy_worker *w) {
  int conflict_at;
  int rc = commit_batch(w, &conflict_at);
  int limit = conflict_at >= 0 ? conflict_at : w->nout;
  if (rc == 0) {
    if (conflict_at >= 0) {
      atomic_fetch_add(&w->r->n.conflicts, 1);
      redo_from(w, conflict_at);
    }
    for (int i = 0; i < limit; i++) eddy_job_free(w->out[i].job);
    atomic_fetch_sub(&w->r->queued, limit);
    uv_async_send(&w->r->progress);
  }
  atomic_store(&w->r->snaps[w->index], UINT64_MAX);
  w->nout = w->nwrites = w->nemits = w->nreads = 0;
  w->nnew = 0;
  w->gen++;
  arena_reset(w);
}

/* Handles queued messages into the batch until it holds `until`
 * outcomes (or BATCH), the queue is empty, or the deadline passed. */
/* ---- generations ---------------------------------------------------------- */

/* 1 when job j's consumer or cursor is not in the generation w runs: a
 * reload removed it.  Its message stays unhandled and uncommitted; the
 * runner reads it again if a later reload brings the consumer back. */
static int retired(eddy_worker *w, const eddy_job *j) {
  int ci = j->cursor->consumer;
  uint64_t rg = atomic_load(&j->cursor->retired_gen);
  return ci >= w->appgen->nconsumers || !w->defs[ci].active ||
         (rg != 0 && rg <= w->appgen->no) || atomic_load(&j->cursor->revoked);
}

static void drop_job(eddy_worker *w, eddy_job *j) {
  eddy_job_free(j);
  atomic_fetch_sub(&w->r->queued, 1);
}

static void handle_some(eddy_worker *w, int64_t deadline) {
  int handled_now = 0;
  while (w->q_head && w->nout < BATCH &&
         w->nwrites < OVERLAY_SLOTS / 4 && w->held < BATCH_BYTES) {
    if ((++handled_now & 15) == 0 && mono_ms() >= deadline) break;
    eddy_job *j = w->q_head;
    w->q_head = j->next;
    if (!w->q_head) w->q_tail = NULL;
    j->next = NULL;
    if (retired(w, j)) { drop_job(w, j); continue; }
    park *p = park_find(w, j);
    if (p && p->job != j) {
      if (p->wait_tail) p->wait_tail->next = j; else p->wait_head = j;
      p->wait_tail = j;
      continue;
    }
    int hr = handle(w, j, &w->out[w->nout]);
    if (hr == H_FATAL) break;
    if (hr == H_PARKED) {
      schedule_retry(w, j, p, &w->out[w->nout]);
      continue;
    }
    if (hr == H_QUARANTINE) w->out[w->nout].kind = O_QUARANTINE;
    w->nout++;
    if (p) park_release(w, p);  /* the retried message is through */
  }
}

/* Drops the queued and parked messages of retired consumers and cursors. */
static void drop_retired(eddy_worker *w) {
  eddy_job *keep = NULL, *tail = NULL;
  for (eddy_job *j = w->q_head, *n; j; j = n) {
    n = j->next;
    j->next = NULL;
    if (retired(w, j)) { drop_job(w, j); continue; }
    if (tail) tail->next = j; else keep = j;
    tail = j;
  }
  w->q_head = keep;
  w->q_tail = tail;
  for (int b = 0; b < PARK_BUCKETS; b++) {
    for (park **pp = &w->parks[b]; *pp;) {
      park *p = *pp;
      if (!retired(w, p->job)) { pp = &p->next; continue; }
      *pp = p->next;
      w->nparked--;
      atomic_fetch_sub(&w->r->parked, 1);
      atomic_fetch_sub_explicit(&w->r->cm[p->consumer].parked, 1, memory_order_relaxed);
      for (eddy_job *j = p->wait_head, *n; j; j = n) { n = j->next; drop_job(w, j); }
      p->wait_head = p->wait_tail = NULL;
      /* A retry that is due sits in the queue (dropped above). */
      if (!p->queued) drop_job(w, p->job);
      p->queued = 1;
      uv_timer_stop(&p->timer);
      uv_close((uv_handle_t *)&p->timer, free_park);
    }
  }
}

/* After a switch: a parked message whose consumer's backoff changed waits
 * as the new policy says, counted from its last failure (at once if that
 * time has passed). */
static void reschedule_parks(eddy_worker *w, const eddy_gen *old) {
  int64_t now = eddy_now_ms();
  for (int b = 0; b < PARK_BUCKETS; b++) {
    for (park *p = w->parks[b]; p; p = p->next) {
      if (p->queued) continue;
      int ci = p->job->cursor->consumer;
      const eddy_consumer_def *c = &w->defs[ci];
      if (ci < old->nconsumers && old->defs[ci].backoff_ms == c->backoff_ms &&
          old->defs[ci].max_backoff_ms == c->max_backoff_ms)
        continue;
      int64_t due = p->job->last_failure +
                    eddy_retry_delay(c->backoff_ms, c->max_backoff_ms, p->job->attempt,
                                     next_rand(w));
      uv_timer_stop(&p->timer);
      uv_timer_start(&p->timer, on_retry_due, (uint64_t)(due > now ? due - now : 0), 0);
    }
  }
}

/* Between batches: moves to the generation the runner prepared, if told
 * to. */
static void maybe_switch(eddy_worker *w) {
  uv_mutex_lock(&w->mu);
  if (w->drop_now) {
    w->drop_now = 0;
    uv_mutex_unlock(&w->mu);
    drop_retired(w);
    uv_async_send(&w->r->progress);
    uv_mutex_lock(&w->mu);
  }
  if (!w->switch_now) { uv_mutex_unlock(&w->mu); return; }
  eddy_gen *g = w->next_gen;
  eddy_sandbox *sb = w->next_sb;
  lctx_consumer *lc = w->next_lc;
  w->next_gen = NULL;
  w->next_sb = NULL;
  w->next_lc = NULL;
  w->switch_now = 0;
  uv_mutex_unlock(&w->mu);
  lctx_free(w->lc);
  eddy_sandbox_free(w->sb);
  eddy_gen *old = w->appgen;
  w->sb = sb;
  w->lc = lc;
  w->appgen = g;
  w->defs = g->defs;
  /* Only a generation that stops something has messages to drop: the
   * queue can hold tens of thousands, not worth a walk otherwise. */
  if (g->retires) drop_retired(w);
  reschedule_parks(w, old);
  eddy_gen_release(old);
  atomic_store(&w->gen_no, g->no);
  uv_async_send(&w->r->progress);
}

/* Puts g, sb and lc aside as w's next generation (all NULL: nothing),
 * freeing what was there. */
static void set_next(eddy_worker *w, eddy_gen *g, eddy_sandbox *sb, lctx_consumer *lc) {
  uv_mutex_lock(&w->mu);
  eddy_gen *old_g = w->next_gen;
  eddy_sandbox *old_sb = w->next_sb;
  lctx_consumer *old_lc = w->next_lc;
  w->next_gen = g;
  w->next_sb = sb;
  w->next_lc = lc;
  w->switch_now = 0;
  uv_mutex_unlock(&w->mu);
  lctx_free(old_lc);
  eddy_sandbox_free(old_sb);
  eddy_gen_release(old_g);
}

int eddy_worker_prepare(eddy_worker *w, eddy_gen *g, char *err, size_t errlen) {
  eddy_sandbox *sb = eddy_sandbox_new(err, errlen);
  if (!sb) return -1;
  lctx_consumer *lc = lctx_load(w, sb, g, w->r->app_dir, err, errlen);
  if (!lc) { eddy_sandbox_free(sb); return -1; }
  atomic_fetch_add(&g->refs, 1);
  set_next(w, g, sb, lc);
  return 0;
}

void eddy_worker_unprepare(eddy_worker *w) { set_next(w, NULL, NULL, NULL); }

void eddy_worker_switch(eddy_worker *w) {
  uv_mutex_lock(&w->mu);
  w->switch_now = w->next_gen != NULL;
  uv_mutex_unlock(&w->mu);
  uv_async_send(&w->wake);
}

uint64_t eddy_worker_gen(eddy_worker *w) { return atomic_load(&w->gen_no); }

void eddy_worker_drop_revoked(eddy_worker *w) {
  uv_mutex_lock(&w->mu);
  w->drop_now = 1;
  uv_mutex_unlock(&w->mu);
  uv_async_send(&w->wake);
}

static void process(uv_idle_t *h) {
  eddy_worker *w = h->data;
  if (w->r->failed) { uv_idle_stop(h); w->working = 0; return; }
  maybe_switch(w);
  if (!w->q_head) { uv_idle_stop(h); w->working = 0; return; }
  /* One read transaction for the batch's reads (dedupe checks, state):
   * a statement outside a transaction opens and closes one of its own,
   * which costs more than the lookup.  Reads see the batch's starting
   * snapshot; the commit validates what it read. */
  /* Every commit numbered up to snap_seq is in the snapshot the batch
   * reads (the snapshot starts with the first read, after this load); a
   * state slot written by a later commit is checked by value at commit. */
  /* Pin the recent commits (0) before reading snap_seq, so none this batch
   * may need is dropped in between. */
  atomic_store(&w->r->snaps[w->index], 0);
  w->snap_seq = atomic_load(&w->r->commit_seq);
  atomic_store(&w->r->snaps[w->index], w->snap_seq);
  int reading = eddy_store_exec(w->store, "BEGIN") == 0;
  prefetch(w);
  handle_some(w, mono_ms() + BATCH_MS);
  if (reading) eddy_store_exec(w->store, "COMMIT");
  end_batch(w);
  if (!w->q_head) {
    uv_idle_stop(h);
    w->working = 0;
  }
}

static void start_work(eddy_worker *w) {
  if (w->working) return;
  w->working = 1;
  uv_idle_start(&w->work, process);
}

static void close_park(uv_handle_t *h) {
  park *p = h->data;
  eddy_job *j = p->wait_head;
  while (j) { eddy_job *n = j->next; eddy_job_free(j); j = n; }
  if (!p->queued) eddy_job_free(p->job);
  free(p);
}

static void close_all(eddy_worker *w) {
  /* Queued and parked jobs are not committed: the next run reads them
   * again from the stored offsets. */
  for (int b = 0; b < PARK_BUCKETS; b++) {
    park *p = w->parks[b];
    while (p) {
      park *n = p->next;
      uv_timer_stop(&p->timer);
      uv_close((uv_handle_t *)&p->timer, close_park);
      p = n;
    }
    w->parks[b] = NULL;
  }
  eddy_job *j = w->q_head;
  while (j) { eddy_job *n = j->next; eddy_job_free(j); j = n; }
  w->q_head = w->q_tail = NULL;
  uv_mutex_lock(&w->mu);
  j = w->in_head;
  w->in_head = w->in_tail = NULL;
  uv_mutex_unlock(&w->mu);
  while (j) { eddy_job *n = j->next; eddy_job_free(j); j = n; }
  uv_idle_stop(&w->work);
  uv_close((uv_handle_t *)&w->work, NULL);
  uv_close((uv_handle_t *)&w->wake, NULL);
}

static void on_wake(uv_async_t *a) {
  eddy_worker *w = a->data;
  uv_mutex_lock(&w->mu);
  eddy_job *head = w->in_head, *tail = w->in_tail;
  w->in_head = w->in_tail = NULL;
  int stop = w->stop;
  uv_mutex_unlock(&w->mu);
  if (head) {
    if (w->q_tail) w->q_tail->next = head; else w->q_head = head;
    w->q_tail = tail;
  }
  if (stop) {
    /* Finish nothing new: the batch in hand was committed when process()
     * returned, as every batch is. */
    close_all(w);
    return;
  }
  /* No batch is open here (batches run inside process). */
  maybe_switch(w);
  if (w->q_head) start_work(w);
}

void eddy_worker_push(eddy_worker *w, eddy_job *head, eddy_job *tail, int n) {
  if (!head) return;
  atomic_fetch_add(&w->r->queued, n);
  atomic_fetch_add(&w->r->n.received, n);
  uv_mutex_lock(&w->mu);
  if (w->in_tail) w->in_tail->next = head; else w->in_head = head;
  w->in_tail = tail;
  uv_mutex_unlock(&w->mu);
  uv_async_send(&w->wake);
}

static void set_ready(eddy_worker *w, int v) {
  uv_mutex_lock(&w->mu);
  w->ready = v;
  uv_cond_signal(&w->ready_cv);
  uv_mutex_unlock(&w->mu);
}

static void run(void *arg) {
  eddy_worker *w = arg;
  eddy_store_options o = { 0, 0 };
  if (eddy_store_open(w->r->data_dir, &o, &w->store, w->err, sizeof w->err) != 0) {
    set_ready(w, -1);
    return;
  }
  w->slot = eddy_guard_slot(w->r->guard, w->index);
  eddy_inflight_bind_thread(w->slot);
  w->sb = eddy_sandbox_new(w->err, sizeof w->err);
  if (!w->sb) { set_ready(w, -1); return; }
  w->lc = lctx_load(w, w->sb, w->appgen, w->r->app_dir, w->err, sizeof w->err);
  if (!w->lc) { set_ready(w, -1); return; }
  if (uv_loop_init(&w->loop) != 0) {
    snprintf(w->err, sizeof w->err, "cannot start an event loop");
    set_ready(w, -1);
    return;
  }
  uv_async_init(&w->loop, &w->wake, on_wake);
  w->wake.data = w;
  uv_idle_init(&w->loop, &w->work);
  w->work.data = w;
  set_ready(w, 1);
  uv_run(&w->loop, UV_RUN_DEFAULT);
  uv_loop_close(&w->loop);
}

eddy_worker *eddy_worker_start(eddy_runner *r, int index, char *err,
                               size_t errlen) {
  eddy_worker *w = calloc(1, sizeof *w);
  if (!w) { snprintf(err, errlen, "out of memory"); return NULL; }
  w->r = r;
  w->index = index;
  w->appgen = r->gen;
  w->defs = r->gen->defs;
  atomic_fetch_add(&w->appgen->refs, 1);
  atomic_store(&w->gen_no, w->appgen->no);
  w->gen = 1;
  w->pre_gen = 1;
  if (getrandom(&w->rnd_state, sizeof w->rnd_state, 0) != sizeof w->rnd_state)
    w->rnd_state = (uint64_t)eddy_now_ms() ^ (uint64_t)index;
  uv_mutex_init(&w->mu);
  uv_cond_init(&w->ready_cv);
  if (uv_thread_create(&w->thread, run, w) != 0) {
    eddy_gen_release(w->appgen);
    snprintf(err, errlen, "cannot start worker thread %d", index);
    uv_cond_destroy(&w->ready_cv);
    uv_mutex_destroy(&w->mu);
    free(w);
    return NULL;
  }
  uv_mutex_lock(&w->mu);
  while (w->ready == 0) uv_cond_wait(&w->ready_cv, &w->mu);
  int ok = w->ready == 1;
  uv_mutex_unlock(&w->mu);
  if (!ok) {
    snprintf(err, errlen, "%s", w->err);
    uv_thread_join(&w->thread);
    lctx_free(w->lc);
    eddy_sandbox_free(w->sb);
    eddy_gen_release(w->appgen);
    eddy_store_close(w->store);
    eddy_buf_free(&w->scratch);
    cache_free(w);
    uv_cond_destroy(&w->ready_cv);
    uv_mutex_destroy(&w->mu);
    free(w);
    return NULL;
  }
  return w;
}

void eddy_worker_stop(eddy_worker *w) {
  if (!w) return;
  uv_mutex_lock(&w->mu);
  w->stop = 1;
  uv_mutex_unlock(&w->mu);
  uv_async_send(&w->wake);
  uv_thread_join(&w->thread);
  lctx_free(w->lc);
  eddy_sandbox_free(w->sb);
  eddy_worker_unprepare(w);
  eddy_gen_release(w->appgen);
  eddy_store_close(w->store);
  eddy_buf_free(&w->scratch);
  eddy_buf_free(&w->json);
  free(w->refusal);
  for (int i = 0; i < TOPIC_LIMITS; i++) free(w->limits[i].topic);
  cache_free(w);
  arena_reset(w);
  free(w->arena);
  free(w->writes);
  free(w->emits);
  free(w->reads);
  uv_cond_destroy(&w->ready_cv);
  uv_mutex_destroy(&w->mu);
  free(w);
}
