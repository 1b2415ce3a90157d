/*
 * connset.c - bounded sets of connections with deadlines (see connset.h).
 *
 * Every operation is O(connections): the sets are small (64 admin
 * connections, 32 control ones), and a linear scan keeps the code plain.
 */
#include "connset.h"
#include "errors.h"

#include <inttypes.h>
#include <string.h>

#define WARN_EVERY_MS 60000

static void on_timer(uv_timer_t *t);

/* Starts the timer for c's deadline when it would fire later (or not). */
static void arm(eddy_connset *s, const eddy_conn *c) {
  if (!c->deadline) return;
  uint64_t now = uv_now(s->timer.loop);
  uint64_t in = c->deadline > now ? c->deadline - now : 0;
  if (uv_is_active((uv_handle_t *)&s->timer) && uv_timer_get_due_in(&s->timer) <= in) return;
  uv_timer_start(&s->timer, on_timer, in, 0);
}

static void on_timer(uv_timer_t *t) {
  eddy_connset *s = t->data;
  uint64_t now = uv_now(t->loop);
  /* expire removes its connection and no other: next stays valid. */
  for (eddy_conn *c = s->oldest, *next; c; c = next) {
    next = c->next;
    if (c->deadline && c->deadline <= now) s->expire(c, s->ud);
  }
  for (eddy_conn *c = s->oldest; c; c = c->next) arm(s, c);
}

void eddy_connset_init(eddy_connset *s, uv_loop_t *loop, const char *name, int max,
                       eddy_conn_fn expire, eddy_conn_fn evict, void *ud) {
  memset(s, 0, sizeof *s);
  uv_timer_init(loop, &s->timer);
  s->timer.data = s;
  s->name = name;
  s->max = max;
  s->expire = expire;
  s->evict = evict;
  s->ud = ud;
}

/* One warning a minute at most, with the counts since the last one. */
static void warn(eddy_connset *s) {
  uint64_t now = uv_now(s->timer.loop);
  if (s->warned_at && now - s->warned_at < WARN_EVERY_MS) return;
  eddy_logf("WARN", "%s: at its limit of %d open connections; since the last warning: %" PRId64
            " idle closed to make room, %" PRId64 " refused (all busy)", s->name, s->max,
            s->evicted, s->refused);
  s->warned_at = now;
  s->evicted = s->refused = 0;
}

int eddy_connset_room(eddy_connset *s) {
  if (s->count < s->max) return 0;
  for (eddy_conn *c = s->oldest; c; c = c->next) {
    if (!c->evictable) continue;
    s->evict(c, s->ud);
    s->evicted++;
    warn(s);
    return 0;
  }
  s->refused++;
  warn(s);
  return -1;
}

void eddy_connset_add(eddy_connset *s, eddy_conn *c, uint64_t timeout_ms, int evictable) {
  c->prev = s->newest;
  c->next = NULL;
  if (s->newest) s->newest->next = c;
  else s->oldest = c;
  s->newest = c;
  c->in_set = 1;
  s->count++;
  eddy_connset_set(s, c, timeout_ms, evictable);
}

void eddy_connset_set(eddy_connset *s, eddy_conn *c, uint64_t timeout_ms, int evictable) {
  c->evictable = evictable;
  c->deadline = timeout_ms ? uv_now(s->timer.loop) + timeout_ms : 0;
  arm(s, c);
}

void eddy_connset_remove(eddy_connset *s, eddy_conn *c) {
  if (!c->in_set) return;
  if (c->prev) c->prev->next = c->next;
  else s->oldest = c->next;
  if (c->next) c->next->prev = c->prev;
  else s->newest = c->prev;
  c->prev = c->next = NULL;
  c->in_set = 0;
  s->count--;
  if (!s->oldest) uv_timer_stop(&s->timer);
}

int eddy_connset_has(const eddy_connset *s, const eddy_conn *c) {
  (void)s;
  return c->in_set;
}

void eddy_connset_close(eddy_connset *s, uv_close_cb cb) {
  uv_timer_stop(&s->timer);
  uv_close((uv_handle_t *)&s->timer, cb);
}
