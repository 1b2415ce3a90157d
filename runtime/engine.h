/*
 * engine.h - the structures `eddy run` shares between its runner (the main
 * thread: reading, dispatching, offsets, the outbox relay) and its workers
 * (handler threads).  Internal to runner.c, worker.c, lmsg.c and lctx.c;
 * docs/runtime.md explains the design.
 */
#ifndef EDDY_ENGINE_H
#define EDDY_ENGINE_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "errors.h"
#include "sandbox.h"
#include "store.h"

typedef struct eddy_runner eddy_runner;
typedef struct eddy_worker eddy_worker;

/* The slots of a consumer's state-key epoch table (see worker.c). */
#define EDDY_EPOCH_SLOTS 65536
/* Consumers one run can know, over all its reloads (a removed consumer
 * keeps its number, and gets it back if a reload adds it again). */
#define EDDY_MAX_CONSUMERS 256

/* What the runtime needs to know of a consumer; its Lua functions live in
 * each worker's own state.  A generation (below) holds one per consumer
 * number; store_id and slot_seq belong to the consumer, not to the
 * definition, and are shared by every generation. */
typedef struct eddy_consumer_def {
  int active;               /* 0: not in this generation (removed) */
  int64_t loaded_at;        /* when this version of it was loaded (ms) */
  char *name;
  char *file;
  char *version;
  int64_t store_id;         /* consumers.id */
  int ntopics;
  char **topics;
  char **dlq_topics;        /* per topic */
  int dedupe;               /* 0: off, 1: by message id, 2: by function */
  int attempts;
  int64_t backoff_ms, max_backoff_ms;
  int from_end;
  int64_t instructions;
  size_t memory;
  int64_t timeout_ms;       /* wall-clock time of one handler call */
  int strict;               /* it runs in the strict sandbox */
  int64_t max_emits;        /* events one handler call may emit */
  /* Per slot of state keys: the commit sequence number (runner's
   * commit_seq) of the last commit that wrote a key of that slot. */
  _Atomic uint64_t *slot_seq; /* EDDY_EPOCH_SLOTS */
} eddy_consumer_def;

/* One version of the app's consumers: the one eddy run started with, or
 * one a reload made.  Immutable once made; the runner and each worker hold
 * a reference to the one they run (see eddy_gen_release). */
typedef struct eddy_gen {
  uint64_t no;                  /* 1 at startup, then +1 per reload */
  int nconsumers;               /* consumer numbers known: defs[0..n) */
  eddy_consumer_def *defs;
  int nhandler_files;
  char **handler_files;
  int *handler_strict;          /* per handler file: loaded in the strict sandbox */
  char *catalog;                /* the event catalog (eddy.catalog.dump), or NULL */
  int retires;                  /* it stops a consumer or cursor the last one ran */
  _Atomic int refs;
} eddy_gen;

/* Drops a reference; the last one frees the generation. */
void eddy_gen_release(eddy_gen *g);

/* One partition of one topic as one consumer reads it. */
typedef struct eddy_cursor {
  /* Runner only: 0 until every worker runs a generation that has its
   * consumer (a reload added it); the runner reads only live cursors. */
  int live;
  /* The generation that stopped reading it (its consumer or topic was
   * removed), 0 while read.  A worker switching to that generation drops
   * the cursor's messages it still holds, unhandled. */
  _Atomic uint64_t retired_gen;
  /* Kafka: jobs of this cursor in the workers (made, not yet freed), and
   * set while its partition is revoked: workers drop its jobs. */
  _Atomic int inflight;
  _Atomic int revoked;
  int consumer;
  const char *topic;
  int64_t topic_id;
  int partition;
  int64_t next_read;        /* runner only: the next offset to read */
  int64_t high;             /* runner only: next_offset seen at last read */
  int caught_up;            /* runner only: the last read found no more */
  /* Runner only, Kafka: assigned with no offset in the store, so librdkafka
   * finds where the partition starts (the group's offset, else the start
   * or the end); its first message or end-of-partition event tells
   * (ksource.c).  Until then the offsets here are 0, placeholders. */
  int start_unknown;
  int64_t start_asked;      /* runner only, Kafka: when librdkafka was asked it */
  /* Under runner->track_mu: */
  int64_t watermark;        /* every offset below it is done */
  int64_t end;              /* offsets [watermark, end) are in flight */
  uint8_t *done;            /* ring: 1 when offset (watermark + i) is done */
  size_t cap;               /* ring size, a power of two */
  /* Under runner->write_mu: */
  int64_t committed;        /* the watermark last written to the store */
  /* Runner only: offsets found done in the store (sorted), from startup. */
  int64_t *skip;
  size_t nskip, skip_at;
} eddy_cursor;

/* The dedupe keys one commit wrote, sorted by (consumer, key). */
typedef struct eddy_recent {
  struct eddy_recent *next;
  uint64_t seq;
  int n;
  int *consumer;
  const char **key;
  size_t *len;
} eddy_recent;

/* One message for one consumer, owned by the runtime until it is done. */
typedef struct eddy_job {
  struct eddy_job *next;
  eddy_cursor *cursor;
  int64_t offset, timestamp;
  char *id, *key, *value, *headers;
  size_t id_len, key_len, value_len, headers_len;
  int has_key;
  int attempt;               /* attempts made so far */
  int64_t first_failure, last_failure;
  char *error, *traceback;   /* of the last failure */
  char *reason;
  /* the data of the fields above follows */
} eddy_job;

/* Makes a job owning a copy of the message's bytes. */
eddy_job *eddy_job_new(eddy_cursor *c, int64_t offset, int64_t timestamp,
                       const char *id, size_t id_len, const void *key,
                       size_t key_len, int has_key, const void *value,
                       size_t value_len, const void *headers,
                       size_t headers_len);
void eddy_job_free(eddy_job *j);

/* Fills *f for a log line about job j of consumer: the consumer, the
 * message id, its correlation id (the eddy-correlation-id header, else
 * the message's own id) and the trace id of its traceparent, written into
 * trace_id; everything else of *f cleared.  The strings point into j and
 * consumer: *f is good while they are. */
void eddy_job_logfields(const eddy_job *j, const char *consumer, eddy_logfields *f,
                        char trace_id[33]);

/* Counters of one run (atomics: workers add, the runner reads). */
/* Handler latency buckets, seconds (upper bounds; a last one is +Inf). */
#define EDDY_LAT_BUCKETS 12
extern const double eddy_lat_bounds[EDDY_LAT_BUCKETS];

/* Per consumer number, for /metrics (metrics.h): counted where they
 * happen, read by the scrape. */
typedef struct eddy_cmetrics {
  _Atomic int64_t received, handled, failed, retried, deduplicated, quarantined;
  _Atomic int64_t parked;       /* messages waiting for a retry now */
  _Atomic uint64_t lat[EDDY_LAT_BUCKETS + 1];  /* handler calls per bucket */
  _Atomic uint64_t lat_count, lat_sum_us;
} eddy_cmetrics;

typedef struct eddy_counters {
  _Atomic int64_t received, handled, failed, retried, deduplicated,
    quarantined, emitted, relayed, conflicts;
} eddy_counters;

struct eddy_runner {
  uv_loop_t *loop;
  char *data_dir;
  char *app_file;
  char **handler_files;
  int nhandler_files;
  char *app_dir;
  eddy_gen *gen;                /* the generation the runner reads for */
  int nconsumers;               /* gen->nconsumers, gen->defs */
  eddy_consumer_def *consumers;
  _Atomic uint64_t *slot_seqs[EDDY_MAX_CONSUMERS]; /* per consumer number */
  int lock_fds[EDDY_MAX_CONSUMERS]; /* per consumer number, -1: not held */
  int ncursors, capcursors;
  eddy_cursor **cursors;
  const char *data_override;    /* --data, for reloads */
  struct eddy_kafka *kafka;     /* the log is Kafka (ksource.c), else NULL */
  int64_t kafka_max_message;    /* Kafka: the producer's message.max.bytes */
  struct eddy_guard *guard;     /* crash records, in-flight slots, the watchdog (guard.h) */
  struct eddy_ksource *ksource;
  int workers_gone;             /* eddy_worker_stop ran for every worker */
  int64_t relay_warned;         /* when the relay last logged a failure */
  struct eddy_krelay *krelay;   /* Kafka: the outbox relay (krelay.h) */
  int relay_fd;                 /* Kafka: the outbox relay's lock, -1: not held */
  int64_t relay_tried;          /* when this process last tried to take it */
  int relay_waiting;            /* another process held it */
  int app_workers;              /* the app's worker count as started */
  struct eddy_reloader *reloader; /* reload.c */
  int nworkers;
  eddy_worker **workers;
  eddy_store *store;            /* the runner's own connection */
  uv_mutex_t write_mu;          /* one writer at a time in this process */
  uv_mutex_t track_mu;          /* cursors' done rings and watermarks */
  uv_async_t progress;          /* workers: "I committed something" */
  uv_timer_t poll;
  uv_signal_t sigint, sigterm;
  int drain;
  int stopping;                 /* a stop signal came */
  int signals;
  _Atomic int failed;           /* a fatal error stopped the run (workers read it) */
  char fatal[512];
  _Atomic int64_t outbox_pending; /* rows written, not yet relayed */
  _Atomic int64_t next_due;     /* the earliest timer (INT64_MAX: none known) */
  int64_t timers_checked;       /* when the store's timers were last counted */
  int64_t timers_waiting;       /* how many there were */
  _Atomic int queued;           /* jobs in workers (queued, running, parked) */
  _Atomic int parked;           /* jobs waiting for a retry timer */
  _Atomic uint64_t commit_seq;  /* workers' commits so far (write_mu) */
  /* Another process sharing the store (two instances on Kafka) commits
   * state this one's slot_seq knows nothing of.  The store counts worker
   * commits: store_commits is the count after this process's last one
   * (write_mu), and foreign_seq the commit_seq of the first own commit
   * that found the count moved by someone else.  A read or cached value
   * as of an earlier commit_seq is checked against the store itself. */
  int64_t store_commits;
  _Atomic uint64_t foreign_seq;
  eddy_counters n;
  eddy_cmetrics cm[EDDY_MAX_CONSUMERS];
  struct eddy_admin *admin;     /* the admin HTTP endpoint, or NULL */
  char *admin_addr;             /* its address (--admin, else the app's), or NULL */
  int admin_public;
  int64_t started_ms;
  int64_t dedupe_window_ms;
  /* Dedupe keys of recent commits (under write_mu), newest first: a
   * worker's batch reads a snapshot that may predate them, so its commit
   * checks them for duplicates that arrived meanwhile.  An entry goes when
   * every worker's snapshot includes it. */
  struct eddy_recent *recent;
  _Atomic uint64_t snaps[64];   /* per worker: its batch's snap_seq, or ~0 */
  uv_timer_t housekeeping;
  uv_idle_t again;              /* pump again at once: reads were full */
  int again_on;
};

/* Store preparation shared by startup and reload (runner.c).  Each
 * returns 0, or -1 with a one-line error in err. */
struct eddy_app;
/* Checks, changing nothing, that every topic the app's consumers read is
 * declared or exists, and that no declared topic has fewer partitions than
 * the store's. */
int eddy_runner_check_topics(eddy_runner *r, const struct eddy_app *a, char *err,
                             size_t errlen);
/* Creates the app's topics that are missing. */
int eddy_runner_create_topics(eddy_runner *r, const struct eddy_app *a, char *err,
                              size_t errlen);
/* Takes consumer number i's lock file, named after name. */
int eddy_runner_lock(eddy_runner *r, int i, const char *name, char *err, size_t errlen);
void eddy_runner_unlock(eddy_runner *r, int i);
/* Creates c's dead-letter topics and registers it (c->store_id). */
int eddy_runner_register(eddy_runner *r, eddy_consumer_def *c, char *err, size_t errlen);
/* Makes (or brings back) the cursors of consumer number i as def c reads
 * them, each at its stored offset; live says whether the runner reads
 * them at once. */
int eddy_runner_open_cursors(eddy_runner *r, int i, const eddy_consumer_def *c, int live,
                             char *err, size_t errlen);
/* Kafka: makes (or brings back) the cursor of consumer number i on
 * topic's partition p, at its stored offset; with none stored, with
 * start_unknown set (librdkafka finds the start).  Reads the store only.
 * NULL with err on failure. */
eddy_cursor *eddy_runner_open_cursor(eddy_runner *r, int i, const eddy_consumer_def *c,
                                     const char *topic, int p, int live, char *err,
                                     size_t errlen);
/* Makes generation g the runner's (taking a reference). */
void eddy_runner_set_gen(eddy_runner *r, eddy_gen *g);

/* Worker API (worker.c). */
eddy_worker *eddy_worker_start(eddy_runner *r, int index, char *err,
                               size_t errlen);
/* Hands jobs (a list linked by next, in order) to the worker. */
void eddy_worker_push(eddy_worker *w, eddy_job *head, eddy_job *tail, int n);
/* Asks the worker to finish its batch, commit, drop the rest and exit;
 * then joins the thread and frees the worker. */
void eddy_worker_stop(eddy_worker *w);
/* Builds, in the calling thread, the Lua state in which worker w will run
 * generation g (taking a reference to g), and keeps it aside.  Returns 0,
 * or -1 with the error in err. */
int eddy_worker_prepare(eddy_worker *w, eddy_gen *g, char *err, size_t errlen);
/* Drops what eddy_worker_prepare kept aside (a reload that failed). */
void eddy_worker_unprepare(eddy_worker *w);
/* Tells the worker to switch to what it was prepared for, between two
 * batches; it then drops the messages of retired cursors and consumers it
 * no longer runs, and wakes the runner (progress). */
void eddy_worker_switch(eddy_worker *w);
/* The number of the generation the worker runs. */
uint64_t eddy_worker_gen(eddy_worker *w);
/* Tells the worker to drop, between batches, the jobs it holds of cursors
 * marked revoked (queued and parked): they stay unhandled. */
void eddy_worker_drop_revoked(eddy_worker *w);

/* Marks offsets done and advances watermarks (track_mu held by caller). */
void eddy_cursor_mark_done(eddy_cursor *c, int64_t offset);
/* Registers offset as in flight (track_mu held). */
void eddy_cursor_add(eddy_cursor *c, int64_t offset);


/* Records a fatal error (the first wins) and wakes the runner to stop. */
void eddy_runner_fatal(eddy_runner *r, const char *fmt, ...)
  __attribute__((format(printf, 2, 3)));

#endif
