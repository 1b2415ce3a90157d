/*
 * inflight.h - which message each worker is handling, kept where a crash
 * leaves it behind.
 *
 * A message that kills the process in a way the runtime cannot catch (a
 * segfault in a C module, a C call stuck past its timeout) would be read
 * again by the next run and kill it again, forever.  So `eddy run` keeps,
 * per worker, a slot in a small file DIR/inflight/PID mapped into memory
 * (MAP_SHARED): before each handler call the worker writes the message's
 * identity there, after it marks the slot idle.  Memory writes to a shared
 * file mapping survive the death of the process (the kernel keeps the
 * pages), so they cost a few stores, no system call.  The process holds an
 * flock on its file; the next start reads the files nobody holds, reports
 * every message that was in a call, and removes them.
 *
 * A fatal signal on a worker thread (SIGSEGV, SIGBUS, SIGILL, SIGFPE,
 * SIGABRT) also notes the signal in the slot, then lets the signal take
 * its course (the handler that was there before runs: a sanitizer's, or
 * the default).  Without it (SIGKILL, the OOM killer) the slot still says
 * which message was in a call.
 */
#ifndef EDDY_INFLIGHT_H
#define EDDY_INFLIGHT_H

#include <stddef.h>
#include <stdint.h>

typedef struct eddy_inflight eddy_inflight;
typedef struct eddy_inflight_slot eddy_inflight_slot;

#define EDDY_INFLIGHT_CONSUMER 208
#define EDDY_INFLIGHT_TOPIC 256
#define EDDY_INFLIGHT_ID 72

/* A message a dead process was handling. */
typedef struct eddy_crash {
  int64_t consumer_id;                 /* consumers.id in the store */
  char consumer[EDDY_INFLIGHT_CONSUMER];
  char topic[EDDY_INFLIGHT_TOPIC];
  int partition;
  int64_t offset;
  char id[EDDY_INFLIGHT_ID];
  int64_t started_ms;                  /* when its call started (wall clock) */
  int signal;                          /* the fatal signal, 0: not known */
  int stuck;                           /* eddy exited: the call was stuck past its timeout */
} eddy_crash;

/* Reads the files of DIR/inflight that no live process holds, calls fn
 * for each message one of them was handling, then removes them.  Returns
 * 0, or -1 with err (the directory cannot be read). */
int eddy_inflight_collect(const char *data_dir,
                          void (*fn)(void *ud, const eddy_crash *c), void *ud,
                          char *err, size_t errlen);

/* Makes this process's file with n slots, all idle, and holds it.
 * Returns 0 and *out (closed with eddy_inflight_close), or -1 with err. */
int eddy_inflight_open(const char *data_dir, int n, eddy_inflight **out, char *err,
                       size_t errlen);

/* Removes the file: nothing was in flight when the process ended. */
void eddy_inflight_close(eddy_inflight *in);

/* Slot i (0 <= i < n), or NULL when in is NULL or i is out of range. */
eddy_inflight_slot *eddy_inflight_slot_at(eddy_inflight *in, int i);

/* Marks slot s in a call on a message (s may be NULL: does nothing).
 * Strings are cut to the slot's sizes.  consumer and topic are copied only
 * when they are other pointers than the last call's: they must not change
 * while the slot's owner keeps them. */
void eddy_inflight_enter(eddy_inflight_slot *s, int64_t consumer_id, const char *consumer,
                         const char *topic, int partition, int64_t offset,
                         const char *id, size_t id_len);

/* Marks slot s idle. */
void eddy_inflight_leave(eddy_inflight_slot *s);

/* Marks slot s as stuck: the process is about to exit because of it. */
void eddy_inflight_stuck(eddy_inflight_slot *s);

/* Makes fatal signals raised on the calling thread mark slot s (NULL:
 * none), installing the process's signal handlers the first time. */
void eddy_inflight_bind_thread(eddy_inflight_slot *s);

#endif
