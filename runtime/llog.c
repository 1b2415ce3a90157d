/*
 * llog.c - the Lua face of the event log: eddy.open() and the methods of an
 * eddy.log object.
 *
 * Conventions (those of liolib.c): misuse (a wrong type, a missing field)
 * raises through luaL_argerror/luaL_error; a failure the caller must expect
 * (unknown topic, no such partition, a message over the size limit, a busy
 * store) returns nil and the store's message.
 *
 * Every method runs in three phases, and the phases are what make the
 * binding safe against longjmp and re-entry:
 *
 *   1. Lua work: check and collect the arguments.  This may raise, so it
 *      allocates C memory only inside a scratch box (a userdata the GC
 *      frees), never with a bare malloc.
 *   2. C work: call the store.  Nothing that can raise or run Lua code
 *      happens while a C-layer call is in progress, so no error can longjmp
 *      out of it while it holds a statement, a transaction or malloc'd
 *      memory: callbacks of the C layer copy into the scratch box instead
 *      of building Lua values, and the store's message is pushed before
 *      any Lua code can run again.
 *   3. Lua work again: build the results from the scratch box.
 *
 * The store pointer is re-read from the log at the start of phase 2: a
 * finalizer run by a garbage collection step during phase 1 may have closed
 * the log.
 *
 * A log keeps one scratch box as its user value, so a produce_batch or a
 * read of many messages reuses the arrays of the previous one.  A method
 * takes the box off the log for the duration of the call and puts it back at
 * the end: a call made meanwhile on the same log (from a finalizer) finds no
 * box and makes its own, and a call that raises drops its box to the GC.
 */
#include "llog.h"

#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>

#include "errors.h"
#include "log.h"
#include "store.h"

#define SCRATCH_MT "eddy.scratch"

/* Buffers of a scratch box; what they hold depends on the method. */
enum { SLOT_ROWS, SLOT_HEADERS, SLOT_OUT, SLOT_BYTES, SCRATCH_SLOTS };

/* A buffer bigger than this is freed at the end of the call instead of
 * being kept for the next one: one read of huge messages must not pin
 * hundreds of megabytes for the life of the log. */
#define SCRATCH_KEEP (1024 * 1024)

#define READ_DEFAULT_LIMIT 100
#define READ_MAX_LIMIT 100000

typedef struct scratch {
  void *p[SCRATCH_SLOTS];
  size_t cap[SCRATCH_SLOTS];
} scratch;

typedef struct llog {
  eddy_store *s;  /* NULL once closed, and before the store is open */
} llog;

/* ------------------------------------------------------------------ */
/* Scratch boxes                                                       */

static int scratch_gc(lua_State *L) {
  scratch *b = luaL_checkudata(L, 1, SCRATCH_MT);
  for (int i = 0; i < SCRATCH_SLOTS; i++) {
    free(b->p[i]);
    b->p[i] = NULL;
    b->cap[i] = 0;
  }
  return 0;
}

/* Makes slot i of b at least bytes long, keeping its contents, and returns
 * it; NULL when memory runs out (the slot is then left as it was).  Never
 * raises, so C-layer callbacks may call it. */
static void *scratch_reserve(scratch *b, int i, size_t bytes) {
  if (b->p[i] && bytes <= b->cap[i]) return b->p[i];
  size_t cap = b->cap[i] > SIZE_MAX / 2 ? SIZE_MAX : b->cap[i] * 2;
  if (cap < bytes) cap = bytes;
  if (cap < 64) cap = 64;
  void *p = realloc(b->p[i], cap);
  if (!p) return NULL;
  b->p[i] = p;
  b->cap[i] = cap;
  return p;
}

/* scratch_reserve for n elements of size bytes each, raising on memory
 * exhaustion: for phase 1, where raising is safe. */
static void *scratch_need(lua_State *L, scratch *b, int i, size_t n,
                          size_t size) {
  void *p = n <= SIZE_MAX / size ? scratch_reserve(b, i, n * size) : NULL;
  if (!p) luaL_error(L, "not enough memory");
  return p;
}

/* Takes the scratch box of the log at index 1 off it (or makes a new one)
 * and leaves the box on the top of the stack. */
static scratch *scratch_take(lua_State *L) {
  if (lua_getiuservalue(L, 1, 1) == LUA_TUSERDATA) {
    lua_pushnil(L);
    lua_setiuservalue(L, 1, 1);
    return lua_touserdata(L, -1);
  }
  lua_pop(L, 1);
  scratch *b = lua_newuserdatauv(L, sizeof *b, 0);
  memset(b, 0, sizeof *b);  /* valid (empty) before it has a __gc */
  luaL_setmetatable(L, SCRATCH_MT);
  return b;
}

/* Puts the box at index box back on the log at index 1 for the next call,
 * freeing the buffers that grew too big to keep. */
static void scratch_give(lua_State *L, int box) {
  scratch *b = lua_touserdata(L, box);
  for (int i = 0; i < SCRATCH_SLOTS; i++) {
    if (b->cap[i] > SCRATCH_KEEP) {
      free(b->p[i]);
      b->p[i] = NULL;
      b->cap[i] = 0;
    }
  }
  lua_pushvalue(L, box);
  lua_setiuservalue(L, 1, 1);
}

/* ------------------------------------------------------------------ */
/* Helpers                                                             */

static llog *check_log(lua_State *L) {
  return luaL_checkudata(L, 1, EDDY_LLOG_MT);
}

/* The store of lg; raises when the log is closed. */
static eddy_store *live(lua_State *L, llog *lg) {
  if (!lg->s) luaL_error(L, "attempt to use a closed eddy log");
  return lg->s;
}

eddy_store *eddy_llog_check(lua_State *L, int arg) {
  return live(L, luaL_checkudata(L, arg, EDDY_LLOG_MT));
}

/* nil and the store's last message: the expected-failure return. */
static int fail(lua_State *L, eddy_store *s) {
  luaL_pushfail(L);
  lua_pushstring(L, eddy_store_errmsg(s));
  return 2;
}

/* The name (topic, group) at arg.  C sees a name up to its first zero
 * byte, so a name holding one would silently become another name. */
static const char *check_name(lua_State *L, int arg) {
  size_t len;
  const char *name = luaL_checklstring(L, arg, &len);
  luaL_argcheck(L, strlen(name) == len, arg, "name contains a zero byte");
  return name;
}

static int fits_int(lua_Integer v) { return v >= INT_MIN && v <= INT_MAX; }

/* Reads the integer at idx when it is not nil: returns 0 for nil, 1 with
 * *v set for an integer (or a float with an exact integer value), -1 for
 * anything else. */
static int opt_integer(lua_State *L, int idx, lua_Integer *v) {
  if (lua_isnil(L, idx)) return 0;
  int ok = 0;
  if (lua_type(L, idx) == LUA_TNUMBER) *v = lua_tointegerx(L, idx, &ok);
  return ok ? 1 : -1;
}

/* Pushes t[k] without calling metamethods.  Message tables are read raw so
 * that every string handed to C is anchored in a table that stays on the
 * stack for the whole call: a string made by an __index function could be
 * collected while C still points at it. */
static int get_raw(lua_State *L, int t, const char *k) {
  lua_pushstring(L, k);
  return lua_rawget(L, t);
}

/* Records the error for a partition number the C API cannot take or would
 * misread (outside int; -1, which means "any" to eddy_log_produce): the
 * topic lookup's own error, or "topic 'x' has no partition p (it has n)"
 * followed by where.  Returns the code. */
static int no_partition(eddy_store *s, const char *topic, lua_Integer p,
                        const char *where) {
  eddy_topic_info t;
  int rc = eddy_topic_get(s, topic, &t);
  if (rc) return rc;
  return eddy_store_seterr(s, EDDY_EINVAL,
                           "topic '%s' has no partition %lld (it has %d)%s",
                           topic, (long long)p, t.config.partitions, where);
}

static void set_int(lua_State *L, const char *k, int64_t v) {
  lua_pushinteger(L, (lua_Integer)v);
  lua_setfield(L, -2, k);
}

/* ------------------------------------------------------------------ */
/* Opening and closing                                                 */

int eddy_llog_open(lua_State *L) {
  eddy_store_options o = { 1, 0 };
  const char *dir = "./data";
  size_t len;
  lua_Integer ms;

  luaL_checktype(L, 1, LUA_TTABLE);
  lua_settop(L, 1);
  /* The fields stay on the stack (2, 3, 4) until the store has copied
   * what it keeps. */
  if (lua_getfield(L, 1, "data") != LUA_TNIL) {
    if (lua_type(L, 2) != LUA_TSTRING)
      return luaL_argerror(L, 1, "data must be a string");
    dir = lua_tolstring(L, 2, &len);
    luaL_argcheck(L, strlen(dir) == len, 1, "data contains a zero byte");
  }
  if (lua_getfield(L, 1, "create") != LUA_TNIL) {
    if (!lua_isboolean(L, 3))
      return luaL_argerror(L, 1, "create must be a boolean");
    o.create = lua_toboolean(L, 3);
  }
  lua_getfield(L, 1, "lock_timeout");
  switch (opt_integer(L, 4, &ms)) {
  case 1:
    if (ms >= 1 && ms <= INT_MAX) {
      o.busy_timeout_ms = (int)ms;
      break;
    }
    /* fall through */
  case -1:
    return luaL_argerror(L, 1,
      "lock_timeout must be a positive integer (milliseconds)");
  }

  llog *lg = lua_newuserdatauv(L, sizeof *lg, 1);
  lg->s = NULL;  /* closed until the store is open: __gc is safe already */
  luaL_setmetatable(L, EDDY_LLOG_MT);
  char err[1024];
  eddy_store *s;
  if (eddy_store_open(dir, &o, &s, err, sizeof err) < 0) {
    luaL_pushfail(L);
    lua_pushstring(L, err);
    return 2;
  }
  lg->s = s;
  return 1;
}

/* log:close() -> true.  Closes the store (rolling back a transaction left
 * open) and drops the scratch buffers.  Idempotent; also __gc and
 * __close. */
static int l_close(lua_State *L) {
  llog *lg = check_log(L);
  if (lg->s) {
    eddy_store_close(lg->s);
    lg->s = NULL;
  }
  lua_pushnil(L);
  lua_setiuservalue(L, 1, 1);
  lua_pushboolean(L, 1);
  return 1;
}

/* tostring(log) -> "eddy.log (DIR)" or "eddy.log (closed)". */
static int l_tostring(lua_State *L) {
  llog *lg = check_log(L);
  if (lg->s)
    lua_pushfstring(L, "eddy.log (%s)", eddy_store_dir(lg->s));
  else
    lua_pushliteral(L, "eddy.log (closed)");
  return 1;
}

/* ------------------------------------------------------------------ */
/* Topics                                                              */

/* Reads the partition count at arg and the options table at arg + 1 into
 * c.  *np gets the count as given; c->partitions gets it only when it
 * fits an int (the caller reports it otherwise). */
static void check_config(lua_State *L, int arg, eddy_topic_config *c,
                         lua_Integer *np) {
  static const char *const fields[] = {
    "retention_ms", "retention_bytes", "max_message_bytes"
  };
  int64_t *dst[] = {
    &c->retention_ms, &c->retention_bytes, &c->max_message_bytes
  };
  eddy_topic_config_init(c);
  *np = luaL_checkinteger(L, arg);
  c->partitions = fits_int(*np) ? (int)*np : 0;
  if (lua_isnoneornil(L, arg + 1)) return;
  luaL_checktype(L, arg + 1, LUA_TTABLE);
  for (int i = 0; i < 3; i++) {
    lua_Integer v;
    lua_getfield(L, arg + 1, fields[i]);
    switch (opt_integer(L, -1, &v)) {
    case 1: *dst[i] = (int64_t)v; break;
    case -1:
      luaL_argerror(L, arg + 1,
                    lua_pushfstring(L, "%s must be an integer", fields[i]));
    }
    lua_pop(L, 1);
  }
}

/* The C API takes the partition count as an int: a count outside int gets
 * the message the C layer gives any count out of range. */
static int bad_count(eddy_store *s, const char *name, lua_Integer np) {
  int rc = eddy_topic_name_check(s, name);
  if (rc) return rc;
  return eddy_store_seterr(s, EDDY_EINVAL,
    "topic '%s': partition count must be between 1 and %d, got %lld", name,
    EDDY_MAX_PARTITIONS, (long long)np);
}

/* log:topic_create(name, partitions [, opts]) -> true, or nil, message
 * ("topic 'x' already exists", a bad name or configuration). */
static int l_topic_create(lua_State *L) {
  llog *lg = check_log(L);
  live(L, lg);
  const char *name = check_name(L, 2);
  eddy_topic_config c;
  lua_Integer np;
  check_config(L, 3, &c, &np);
  eddy_store *s = live(L, lg);
  int rc = fits_int(np) ? eddy_topic_create(s, name, &c)
                        : bad_count(s, name, np);
  if (rc < 0) return fail(L, s);
  lua_pushboolean(L, 1);
  return 1;
}

/* log:topic_ensure(name, partitions [, opts]) -> true, created; or nil,
 * message (a bad name or configuration, or the topic exists with fewer
 * partitions).  An existing topic keeps its own configuration. */
static int l_topic_ensure(lua_State *L) {
  llog *lg = check_log(L);
  live(L, lg);
  const char *name = check_name(L, 2);
  eddy_topic_config c;
  lua_Integer np;
  check_config(L, 3, &c, &np);
  eddy_store *s = live(L, lg);
  int created = 0;
  int rc = fits_int(np) ? eddy_topic_ensure(s, name, &c, &created)
                        : bad_count(s, name, np);
  if (rc < 0) return fail(L, s);
  lua_pushboolean(L, 1);
  lua_pushboolean(L, created);
  return 2;
}

/* A topic as log:topics() reports it. */
typedef struct topic_row {
  eddy_topic_info t;
  int64_t messages;
} topic_row;

/* Pushes the table of one topic (without offsets). */
static void push_topic(lua_State *L, const topic_row *r) {
  lua_createtable(L, 0, 8);
  lua_pushstring(L, r->t.name);
  lua_setfield(L, -2, "name");
  set_int(L, "partitions", r->t.config.partitions);
  set_int(L, "retention_ms", r->t.config.retention_ms);
  set_int(L, "retention_bytes", r->t.config.retention_bytes);
  set_int(L, "max_message_bytes", r->t.config.max_message_bytes);
  set_int(L, "messages", r->messages);
  set_int(L, "created_at", r->t.created_at);
}

/* Adds the messages of one topic to the rows in the box.  Runs inside
 * eddy_topic_foreach, so it makes no Lua call. */
struct list_ctx {
  eddy_store *s;
  scratch *b;
  size_t n;
  int oom;
};

static int list_one(void *ud, const eddy_topic_info *t) {
  struct list_ctx *c = ud;
  topic_row *rows = scratch_reserve(c->b, SLOT_ROWS, (c->n + 1) * sizeof *rows);
  eddy_partition_info *parts = scratch_reserve(c->b, SLOT_OUT,
    (size_t)t->config.partitions * sizeof *parts);
  if (!rows || !parts) {
    c->oom = 1;
    return 1;
  }
  int rc = eddy_partitions_get(c->s, t, parts);
  if (rc) return rc;
  int64_t sum = 0;
  for (int p = 0; p < t->config.partitions; p++)
    sum += parts[p].next_offset - parts[p].log_start;
  rows[c->n].t = *t;
  rows[c->n].messages = sum;
  c->n++;
  return 0;
}

/* log:topics() -> an array of topic tables in name order: name,
 * partitions, retention_ms, retention_bytes, max_message_bytes, messages
 * (stored now, over all partitions), created_at (ms).  Or nil, message. */
static int l_topics(lua_State *L) {
  llog *lg = check_log(L);
  live(L, lg);
  lua_settop(L, 1);
  scratch *b = scratch_take(L);
  int box = lua_gettop(L);
  eddy_store *s = live(L, lg);
  struct list_ctx c = { s, b, 0, 0 };
  int rc = eddy_topic_foreach(s, list_one, &c);
  if (c.oom) return luaL_error(L, "not enough memory");
  if (rc < 0) {
    scratch_give(L, box);
    return fail(L, s);
  }
  const topic_row *rows = b->p[SLOT_ROWS];
  lua_createtable(L, c.n <= INT_MAX ? (int)c.n : 0, 0);
  for (size_t i = 0; i < c.n; i++) {
    push_topic(L, &rows[i]);
    lua_rawseti(L, -2, (lua_Integer)i + 1);
  }
  scratch_give(L, box);
  return 1;
}

/* log:topic(name) -> the table log:topics() has for it, plus offsets, an
 * array of { partition =, log_start =, next_offset = } by partition; or
 * nil, message ("unknown topic 'x'"). */
static int l_topic(lua_State *L) {
  llog *lg = check_log(L);
  live(L, lg);
  const char *name = check_name(L, 2);
  lua_settop(L, 2);
  scratch *b = scratch_take(L);
  int box = lua_gettop(L);
  eddy_store *s = live(L, lg);
  topic_row r;
  int rc = eddy_topic_get(s, name, &r.t);
  if (rc < 0) {
    scratch_give(L, box);
    return fail(L, s);
  }
  eddy_partition_info *parts = scratch_need(L, b, SLOT_OUT,
    (size_t)r.t.config.partitions, sizeof *parts);
  rc = eddy_partitions_get(s, &r.t, parts);
  if (rc < 0) {
    scratch_give(L, box);
    return fail(L, s);
  }
  r.messages = 0;
  for (int p = 0; p < r.t.config.partitions; p++)
    r.messages += parts[p].next_offset - parts[p].log_start;
  push_topic(L, &r);
  lua_createtable(L, r.t.config.partitions, 0);
  for (int p = 0; p < r.t.config.partitions; p++) {
    lua_createtable(L, 0, 3);
    set_int(L, "partition", parts[p].partition);
    set_int(L, "log_start", parts[p].log_start);
    set_int(L, "next_offset", parts[p].next_offset);
    lua_rawseti(L, -2, p + 1);
  }
  lua_setfield(L, -2, "offsets");
  scratch_give(L, box);
  return 1;
}

/* ------------------------------------------------------------------ */
/* Produce                                                             */

/* Raises a misuse error at argument arg about message i (counted from 1;
 * 0 for log:produce, which has one): "message I: " and the formatted
 * text. */
static int msg_error(lua_State *L, int arg, lua_Integer i, const char *fmt,
                     ...) {
  va_list ap;
  if (i > 0)
    lua_pushfstring(L, "message %I: ", (LUAI_UACINT)i);
  else
    lua_pushliteral(L, "");
  va_start(ap, fmt);
  lua_pushvfstring(L, fmt, ap);
  va_end(ap);
  lua_concat(L, 2);
  return luaL_argerror(L, arg, lua_tostring(L, -1));
}

static int header_name_cmp(const void *a, const void *b) {
  const eddy_header *x = a, *y = b;
  size_t n = x->name_len < y->name_len ? x->name_len : y->name_len;
  int c = n ? memcmp(x->name, y->name, n) : 0;
  if (c) return c;
  return (x->name_len > y->name_len) - (x->name_len < y->name_len);
}

/* Appends the headers of the table at index h (of message i) to the box,
 * where *nh are in use: first the array part, { name, value } pairs in
 * order, then the string keys, name = value, sorted by name so that the
 * stored order does not depend on the table's hash order.  Returns how many
 * it appended.  Raises on anything else in the table. */
static size_t collect_headers(lua_State *L, int arg, lua_Integer i, int h,
                              scratch *b, size_t *nh) {
  size_t start = *nh;
  lua_Unsigned n = lua_rawlen(L, h);
  for (lua_Unsigned k = 1; k <= n; k++) {
    eddy_header *hs = scratch_need(L, b, SLOT_HEADERS, *nh + 1, sizeof *hs);
    int pair = lua_gettop(L) + 1;
    if (lua_rawgeti(L, h, (lua_Integer)k) != LUA_TTABLE ||
        lua_rawgeti(L, pair, 1) != LUA_TSTRING ||
        lua_rawgeti(L, pair, 2) != LUA_TSTRING)
      msg_error(L, arg, i, "header %I must be a {name, value} pair of strings",
                (LUAI_UACINT)k);
    hs[*nh].name = lua_tolstring(L, pair + 1, &hs[*nh].name_len);
    hs[*nh].value = lua_tolstring(L, pair + 2, &hs[*nh].value_len);
    (*nh)++;
    lua_settop(L, pair - 1);
  }
  size_t map = *nh;
  lua_pushnil(L);
  while (lua_next(L, h)) {
    if (lua_isinteger(L, -2)) {
      lua_Integer k = lua_tointeger(L, -2);
      if (k >= 1 && (lua_Unsigned)k <= n) {  /* done above */
        lua_pop(L, 1);
        continue;
      }
    }
    if (lua_type(L, -2) != LUA_TSTRING)
      msg_error(L, arg, i, "header names must be strings, got %s",
                luaL_typename(L, -2));
    if (lua_type(L, -1) != LUA_TSTRING)
      msg_error(L, arg, i, "value of header '%s' must be a string",
                lua_tostring(L, -2));
    eddy_header *hs = scratch_need(L, b, SLOT_HEADERS, *nh + 1, sizeof *hs);
    hs[*nh].name = lua_tolstring(L, -2, &hs[*nh].name_len);
    hs[*nh].value = lua_tolstring(L, -1, &hs[*nh].value_len);
    (*nh)++;
    lua_pop(L, 1);
  }
  if (*nh - map > 1)
    qsort((eddy_header *)b->p[SLOT_HEADERS] + map, *nh - map,
          sizeof(eddy_header), header_name_cmp);
  return *nh - start;
}

/* Reads the message table at index t (message i of the call; 0 for
 * log:produce) into r, appending its headers to the box (r->headers is
 * left NULL: the box may still move; the caller points it).  Raises on
 * misuse.  Returns 1, with r->partition 0 and the number in *badp, when
 * the message names a partition eddy_log_produce cannot take as given
 * (negative, where -1 means "any" there, or outside int); else 0. */
static int collect_message(lua_State *L, int arg, lua_Integer i, int t,
                           scratch *b, eddy_record *r, size_t *nh,
                           lua_Integer *badp) {
  int top = lua_gettop(L), bad = 0;
  lua_Integer v;
  memset(r, 0, sizeof *r);
  r->partition = -1;
  if (get_raw(L, t, "value") != LUA_TSTRING)
    msg_error(L, arg, i, "value must be a string");
  r->value = lua_tolstring(L, -1, &r->value_len);
  switch (get_raw(L, t, "key")) {
  case LUA_TNIL: break;
  case LUA_TSTRING:
    r->key = lua_tolstring(L, -1, &r->key_len);
    r->has_key = 1;
    break;
  default: msg_error(L, arg, i, "key must be a string");
  }
  switch (get_raw(L, t, "id")) {
  case LUA_TNIL: break;
  case LUA_TSTRING: r->id = lua_tolstring(L, -1, &r->id_len); break;
  default: msg_error(L, arg, i, "id must be a string");
  }
  get_raw(L, t, "partition");
  switch (opt_integer(L, -1, &v)) {
  case 1:
    if (v >= 0 && v <= INT_MAX) {
      r->partition = (int)v;
    } else {
      r->partition = 0;
      *badp = v;
      bad = 1;
    }
    break;
  case -1: msg_error(L, arg, i, "partition must be an integer");
  }
  get_raw(L, t, "timestamp");
  switch (opt_integer(L, -1, &v)) {
  case 1: r->timestamp = (int64_t)v; break;
  case -1: msg_error(L, arg, i, "timestamp must be an integer");
  }
  switch (get_raw(L, t, "headers")) {
  case LUA_TNIL: break;
  case LUA_TTABLE:
    r->nheaders = collect_headers(L, arg, i, lua_gettop(L), b, nh);
    break;
  default: msg_error(L, arg, i, "headers must be a table");
  }
  /* The strings stay anchored in the message table, which the caller
   * keeps reachable for the whole call. */
  lua_settop(L, top);
  return bad;
}

/* log:produce(topic, msg) -> partition, offset, id; or nil, message
 * (unknown topic, no such partition, over the size limit, a bad id, a busy
 * store).  msg = { value = string, key =, headers =, id =, partition =,
 * timestamp = } (see lua/eddy/init.lua).  Raises on a malformed msg. */
static int l_produce(lua_State *L) {
  llog *lg = check_log(L);
  live(L, lg);
  const char *topic = check_name(L, 2);
  luaL_checktype(L, 3, LUA_TTABLE);
  lua_settop(L, 3);
  scratch *b = scratch_take(L);
  int box = lua_gettop(L);
  eddy_record r;
  size_t nh = 0;
  lua_Integer badp = 0;
  int bad = collect_message(L, 3, 0, 3, b, &r, &nh, &badp);
  r.headers = nh ? b->p[SLOT_HEADERS] : NULL;
  eddy_produced out;
  eddy_store *s = live(L, lg);
  int rc = bad ? no_partition(s, topic, badp, "")
               : eddy_log_produce(s, topic, &r, 1, &out);
  scratch_give(L, box);
  if (rc < 0) return fail(L, s);
  lua_pushinteger(L, out.partition);
  lua_pushinteger(L, (lua_Integer)out.offset);
  lua_pushstring(L, out.id);
  return 3;
}

/* log:produce_batch(topic, msgs) -> an array of { partition =, offset =,
 * id = }, one per message of the array msgs, in its order; or nil,
 * message, and then none of them was written (one transaction).  The
 * message of a failure caused by one message ends in " (message I)". */
static int l_produce_batch(lua_State *L) {
  llog *lg = check_log(L);
  live(L, lg);
  const char *topic = check_name(L, 2);
  luaL_checktype(L, 3, LUA_TTABLE);
  lua_settop(L, 3);
  size_t n = (size_t)lua_rawlen(L, 3);
  scratch *b = scratch_take(L);
  int box = lua_gettop(L);
  eddy_record *recs = scratch_need(L, b, SLOT_ROWS, n, sizeof *recs);
  eddy_produced *out = scratch_need(L, b, SLOT_OUT, n, sizeof *out);
  size_t nh = 0, badi = 0;
  lua_Integer badp = 0;
  for (size_t i = 0; i < n; i++) {
    lua_Integer p;
    if (lua_rawgeti(L, 3, (lua_Integer)i + 1) != LUA_TTABLE)
      luaL_argerror(L, 3, lua_pushfstring(L, "message %I must be a table",
                                          (LUAI_UACINT)(i + 1)));
    if (collect_message(L, 3, (lua_Integer)i + 1, lua_gettop(L), b, &recs[i],
                        &nh, &p) && !badi) {
      badi = i + 1;
      badp = p;
    }
    lua_pop(L, 1);
  }
  const eddy_header *hs = b->p[SLOT_HEADERS];
  for (size_t i = 0, at = 0; i < n; at += recs[i].nheaders, i++)
    recs[i].headers = recs[i].nheaders ? hs + at : NULL;

  eddy_store *s = live(L, lg);
  int rc;
  if (badi) {
    char where[48] = "";
    snprintf(where, sizeof where, " (message %zu)", badi);
    rc = no_partition(s, topic, badp, where);
  } else {
    rc = eddy_log_produce(s, topic, recs, n, out);
  }
  if (rc < 0) {
    scratch_give(L, box);
    /* The C layer names the message only in batches of several; a batch
     * call names it always. */
    if (n == 1 && (rc == EDDY_ETOOBIG || rc == EDDY_EINVAL) &&
        !strstr(eddy_store_errmsg(s), "(message ")) {
      lua_pushnil(L);
      lua_pushfstring(L, "%s (message 1)", eddy_store_errmsg(s));
      return 2;
    }
    return fail(L, s);
  }
  lua_createtable(L, n <= INT_MAX ? (int)n : 0, 0);
  for (size_t i = 0; i < n; i++) {
    lua_createtable(L, 0, 3);
    set_int(L, "partition", out[i].partition);
    set_int(L, "offset", out[i].offset);
    lua_pushstring(L, out[i].id);
    lua_setfield(L, -2, "id");
    lua_rawseti(L, -2, (lua_Integer)i + 1);
  }
  scratch_give(L, box);
  return 1;
}

/* ------------------------------------------------------------------ */
/* Read                                                                */

/* One fetched message, its bytes at these offsets in the SLOT_BYTES
 * buffer (offsets, not pointers: the buffer moves as it grows). */
typedef struct fetched {
  int64_t offset;
  int64_t timestamp;
  size_t id, id_len;
  size_t key, key_len;
  size_t value, value_len;
  size_t headers, headers_len, nheaders;
  int has_key;
} fetched;

struct read_ctx {
  eddy_store *s;
  scratch *b;
  size_t n;     /* messages copied */
  size_t used;  /* bytes of SLOT_BYTES in use */
  int oom;
};

static int copy_bytes(struct read_ctx *c, const void *p, size_t len,
                      size_t *at) {
  if (len > SIZE_MAX - c->used) return -1;
  char *to = scratch_reserve(c->b, SLOT_BYTES, c->used + len);
  if (!to) return -1;
  if (len) memcpy(to + c->used, p, len);
  *at = c->used;
  c->used += len;
  return 0;
}

/* Copies one message into the box.  Runs inside eddy_log_fetch, so it
 * makes no Lua call.  Malformed headers are reported here, while the store
 * can still say which store is damaged. */
static int read_one(void *ud, const eddy_message *m) {
  struct read_ctx *c = ud;
  size_t pos = 0, nh = 0;
  eddy_header h;
  int more;
  while ((more = eddy_headers_next(m->headers, m->headers_len, &pos, &h)) == 1)
    nh++;
  if (more < 0)
    return eddy_store_seterr(c->s, EDDY_ENOTSTORE,
      "store '%s' is damaged: message %lld of topic '%s' partition %d has "
      "malformed headers", eddy_store_dir(c->s), (long long)m->offset,
      m->topic, m->partition);
  fetched *f = c->n < SIZE_MAX / sizeof *f - 1
    ? scratch_reserve(c->b, SLOT_ROWS, (c->n + 1) * sizeof *f) : NULL;
  if (!f) {
    c->oom = 1;
    return 1;
  }
  f += c->n;
  f->offset = m->offset;
  f->timestamp = m->timestamp;
  f->has_key = m->key != NULL;
  f->nheaders = nh;
  f->key = f->key_len = 0;
  if (copy_bytes(c, m->id, m->id_len, &f->id) ||
      (m->key && copy_bytes(c, m->key, m->key_len, &f->key)) ||
      copy_bytes(c, m->value, m->value_len, &f->value) ||
      copy_bytes(c, m->headers, m->headers_len, &f->headers)) {
    c->oom = 1;
    return 1;
  }
  f->id_len = m->id_len;
  f->key_len = m->key ? m->key_len : 0;
  f->value_len = m->value_len;
  f->headers_len = m->headers_len;
  c->n++;
  return 0;
}

void eddy_llog_push_headers(lua_State *L, const char *blob, size_t len,
                            size_t n) {
  size_t pos = 0;
  eddy_header h;
  lua_Integer i = 0;
  int size = n <= INT_MAX ? (int)n : 0;
  lua_createtable(L, size, size);
  while (eddy_headers_next(blob, len, &pos, &h) == 1) {
    lua_createtable(L, 2, 0);
    lua_pushlstring(L, h.name, h.name_len);
    lua_rawseti(L, -2, 1);
    lua_pushlstring(L, h.value, h.value_len);
    lua_rawseti(L, -2, 2);
    lua_rawseti(L, -2, ++i);
    lua_pushlstring(L, h.name, h.name_len);
    lua_pushlstring(L, h.value, h.value_len);
    lua_rawset(L, -3);
  }
}

/* log:read(topic, partition, offset [, limit]) -> an array of up to limit
 * (default 100, at most 100000) message tables in offset order from offset
 * on (from the log start when offset is below it): { topic =, partition =,
 * offset =, id =, key = (nil when the message has none), value =,
 * timestamp =, headers = }.  Or nil, message (unknown topic, no such
 * partition).  Every message is copied out of the store before the first
 * Lua value is made: a read holds at most limit messages in memory twice. */
static int l_read(lua_State *L) {
  llog *lg = check_log(L);
  live(L, lg);
  const char *topic = check_name(L, 2);
  lua_Integer p = luaL_checkinteger(L, 3);
  lua_Integer offset = luaL_checkinteger(L, 4);
  lua_Integer limit = luaL_optinteger(L, 5, READ_DEFAULT_LIMIT);
  luaL_argcheck(L, limit >= 1 && limit <= READ_MAX_LIMIT, 5,
                "limit must be between 1 and 100000");
  lua_settop(L, 2);  /* the topic stays at 2: every message table uses it */
  scratch *b = scratch_take(L);
  int box = lua_gettop(L);
  eddy_store *s = live(L, lg);
  struct read_ctx c = { s, b, 0, 0, 0 };
  int rc = fits_int(p) ? eddy_log_fetch(s, topic, (int)p, (int64_t)offset,
                                        (int)limit, read_one, &c)
                       : no_partition(s, topic, p, "");
  if (c.oom) return luaL_error(L, "not enough memory");
  if (rc < 0) {
    scratch_give(L, box);
    return fail(L, s);
  }
  const fetched *rows = b->p[SLOT_ROWS];
  const char *bytes = b->p[SLOT_BYTES];
  lua_createtable(L, (int)c.n, 0);
  for (size_t i = 0; i < c.n; i++) {
    const fetched *f = &rows[i];
    lua_createtable(L, 0, 8);
    lua_pushvalue(L, 2);
    lua_setfield(L, -2, "topic");
    set_int(L, "partition", p);
    set_int(L, "offset", f->offset);
    lua_pushlstring(L, bytes + f->id, f->id_len);
    lua_setfield(L, -2, "id");
    if (f->has_key) {
      lua_pushlstring(L, bytes + f->key, f->key_len);
      lua_setfield(L, -2, "key");
    }
    lua_pushlstring(L, bytes + f->value, f->value_len);
    lua_setfield(L, -2, "value");
    set_int(L, "timestamp", f->timestamp);
    eddy_llog_push_headers(L, bytes + f->headers, f->headers_len, f->nheaders);
    lua_setfield(L, -2, "headers");
    lua_rawseti(L, -2, (lua_Integer)i + 1);
  }
  scratch_give(L, box);
  return 1;
}

/* log:offsets(topic, partition) -> log_start, next_offset; or nil,
 * message. */
static int l_offsets(lua_State *L) {
  llog *lg = check_log(L);
  live(L, lg);
  const char *topic = check_name(L, 2);
  lua_Integer p = luaL_checkinteger(L, 3);
  eddy_store *s = live(L, lg);
  int64_t start, next;
  int rc = fits_int(p) ? eddy_log_offsets(s, topic, (int)p, &start, &next)
                       : no_partition(s, topic, p, "");
  if (rc < 0) return fail(L, s);
  lua_pushinteger(L, (lua_Integer)start);
  lua_pushinteger(L, (lua_Integer)next);
  return 2;
}

/* ------------------------------------------------------------------ */
/* Consumer group offsets and retention                                */

/* log:commit(group, topic, partition, offset) -> true; or nil, message.
 * offset is the next one the group will read (the Kafka convention). */
static int l_commit(lua_State *L) {
  llog *lg = check_log(L);
  live(L, lg);
  const char *group = check_name(L, 2);
  const char *topic = check_name(L, 3);
  lua_Integer p = luaL_checkinteger(L, 4);
  lua_Integer offset = luaL_checkinteger(L, 5);
  eddy_store *s = live(L, lg);
  int rc = fits_int(p)
    ? eddy_group_commit(s, group, topic, (int)p, (int64_t)offset)
    : no_partition(s, topic, p, "");
  if (rc < 0) return fail(L, s);
  lua_pushboolean(L, 1);
  return 1;
}

/* log:committed(group, topic, partition) -> the committed offset; nil
 * alone when the group has committed none there; nil, message on failure
 * (including a partition the topic does not have, which the C layer does
 * not check here). */
static int l_committed(lua_State *L) {
  llog *lg = check_log(L);
  live(L, lg);
  const char *group = check_name(L, 2);
  const char *topic = check_name(L, 3);
  lua_Integer p = luaL_checkinteger(L, 4);
  eddy_store *s = live(L, lg);
  int64_t offset = -1;
  int rc;
  if (!fits_int(p)) {
    rc = no_partition(s, topic, p, "");
  } else {
    rc = eddy_group_committed(s, group, topic, (int)p, &offset);
    if (rc == 0) {
      eddy_topic_info t;
      rc = eddy_topic_get(s, topic, &t);
      if (rc == 0 && (p < 0 || p >= t.config.partitions))
        rc = no_partition(s, topic, p, "");
    }
  }
  if (rc < 0) return fail(L, s);
  if (offset < 0)
    lua_pushnil(L);
  else
    lua_pushinteger(L, (lua_Integer)offset);
  return 1;
}

/* log:trim([topic]) -> the number of messages retention removed now from
 * topic (every topic when nil); or nil, message. */
static int l_trim(lua_State *L) {
  llog *lg = check_log(L);
  live(L, lg);
  const char *topic = lua_isnoneornil(L, 2) ? NULL : check_name(L, 2);
  eddy_store *s = live(L, lg);
  int64_t removed = 0;
  if (eddy_log_trim(s, topic, eddy_now_ms(), &removed) < 0)
    return fail(L, s);
  lua_pushinteger(L, (lua_Integer)removed);
  return 1;
}

/* ------------------------------------------------------------------ */
/* Metatables                                                          */

static const luaL_Reg log_methods[] = {
  {"close", l_close},
  {"topic_create", l_topic_create},
  {"topic_ensure", l_topic_ensure},
  {"topics", l_topics},
  {"topic", l_topic},
  {"produce", l_produce},
  {"produce_batch", l_produce_batch},
  {"read", l_read},
  {"offsets", l_offsets},
  {"commit", l_commit},
  {"committed", l_committed},
  {"trim", l_trim},
  {NULL, NULL}
};

static const luaL_Reg log_meta[] = {
  {"__index", NULL},  /* the methods, set below */
  {"__gc", l_close},
  {"__close", l_close},
  {"__tostring", l_tostring},
  {NULL, NULL}
};

void eddy_llog_setup(lua_State *L) {
  if (luaL_newmetatable(L, EDDY_LLOG_MT)) {
    luaL_setfuncs(L, log_meta, 0);
    luaL_newlibtable(L, log_methods);
    luaL_setfuncs(L, log_methods, 0);
    lua_setfield(L, -2, "__index");
  }
  lua_pop(L, 1);
  if (luaL_newmetatable(L, SCRATCH_MT)) {
    lua_pushcfunction(L, scratch_gc);
    lua_setfield(L, -2, "__gc");
  }
  lua_pop(L, 1);
}
