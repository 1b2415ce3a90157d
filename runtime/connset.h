/*
 * connset.h - the open connections of a small server on the runner's loop
 * (the admin endpoint, the control socket), bounded in number and in time.
 *
 * A server that accepts every connection and waits as long as each client
 * likes can be starved: hundreds of clients that connect and send nothing,
 * or half a request, hold a file descriptor each until the process has none
 * left, and nobody else is served.  So each server keeps its connections in
 * a set with
 *
 *   - a cap: when it is full, the oldest connection that may be evicted
 *     (one still reading its request, or done and lingering) is closed to
 *     make room, so a newcomer is served rather than refused; only when
 *     every connection is busy answering is the newcomer refused;
 *   - a deadline per connection (to send its request, to take its
 *     answer), kept by one libuv timer: a connection past it is expired.
 *
 * A connection embeds an eddy_conn; the set never frees one, it calls the
 * server's expire or evict function, which closes the connection and
 * removes it with eddy_connset_remove.  Single-threaded: the loop's
 * thread only.
 */
#ifndef EDDY_CONNSET_H
#define EDDY_CONNSET_H

#include <stdint.h>

#include <uv.h>

typedef struct eddy_conn eddy_conn;
struct eddy_conn {
  eddy_conn *prev, *next;   /* in the set, oldest first */
  uint64_t deadline;        /* in uv_now() ms; 0: none */
  int evictable;
  int in_set;
};

/* Closes c (for a deadline passed, or to make room); must remove c from
 * the set, and nothing else. */
typedef void (*eddy_conn_fn)(eddy_conn *c, void *ud);

typedef struct eddy_connset {
  uv_timer_t timer;
  eddy_conn *oldest, *newest;
  int count, max;
  const char *name;         /* for the log: "admin", "control socket" */
  eddy_conn_fn expire, evict;
  void *ud;
  int64_t evicted, refused; /* since the last warning */
  uint64_t warned_at;       /* uv_now() of the last warning, 0: none yet */
} eddy_connset;

/* Initializes s for at most max connections, with its timer on loop.
 * expire is called for a connection past its deadline, evict for one
 * closed to make room; both get ud.  Close the timer with
 * eddy_connset_close. */
void eddy_connset_init(eddy_connset *s, uv_loop_t *loop, const char *name, int max,
                       eddy_conn_fn expire, eddy_conn_fn evict, void *ud);

/* Makes room for one more connection: returns 0 when there is room, if
 * need be after evicting the oldest evictable connection; -1 when every
 * one of the max connections is busy (the caller refuses the newcomer).
 * Either case is logged as a warning, at most once a minute. */
int eddy_connset_room(eddy_connset *s);

/* Adds c as the newest connection: evictable or not, with a deadline
 * timeout_ms from now (0: none).  Call eddy_connset_room first. */
void eddy_connset_add(eddy_connset *s, eddy_conn *c, uint64_t timeout_ms, int evictable);

/* Gives c, in the set, a new deadline timeout_ms from now (0: none) and
 * says whether it may be evicted. */
void eddy_connset_set(eddy_connset *s, eddy_conn *c, uint64_t timeout_ms, int evictable);

/* Removes c from the set; a no-op when c is not in it. */
void eddy_connset_remove(eddy_connset *s, eddy_conn *c);

/* 1 when c is in the set. */
int eddy_connset_has(const eddy_connset *s, const eddy_conn *c);

/* Stops and closes the timer (cb, may be NULL, once the loop closed it).
 * The connections are the caller's to close first. */
void eddy_connset_close(eddy_connset *s, uv_close_cb cb);

#endif
