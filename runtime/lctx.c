/*
 * lctx.c - the ctx object of a handler: ctx.state, ctx:emit, ctx.log,
 * ctx.attempt, ctx.consumer; and loading the handler files into a worker.
 *
 * One ctx table per consumer per worker, made once and reused: a call only
 * sets ctx.attempt.  Its functions reach the worker through an upvalue.
 */
#include "lctx.h"
#include "errors.h"
#include "log.h"
#include "ljson.h"
#include "quarantine.h"
#include "units.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The registry keys of eddy.catalog.emit and .consume while a catalog is
 * in force. */
#define CATALOG_EMIT "eddy.catalog.emit"
#define CATALOG_CONSUME "eddy.catalog.consume"

#include <lauxlib.h>

#define STATE_MT "eddy.state"

typedef struct lstate {
  int consumer;
} lstate;

static eddy_worker *worker_of(lua_State *L) {
  return lua_touserdata(L, lua_upvalueindex(1));
}

/* A state key: a string, or a number turned into one. */
/* Raises the worker's refusal of a write or an emit (a limit), at the
 * handler's line.  The worker knows the refusal by this exact text: a call
 * that fails with it (not caught) is quarantined at once, reason "limit". */
static int raise_refusal(lua_State *L, eddy_worker *w) {
  luaL_where(L, 1);
  lua_pushstring(L, eddy_worker_refusal(w));
  lua_concat(L, 2);
  eddy_worker_refuse(w, lua_tostring(L, -1), "limit");
  return lua_error(L);
}

static const char *state_key(lua_State *L, int idx, size_t *n) {
  int t = lua_type(L, idx);
  if (t != LUA_TSTRING && t != LUA_TNUMBER)
    luaL_error(L, "ctx.state: key must be a string, got %s", luaL_typename(L, idx));
  if (t == LUA_TNUMBER && !lua_isinteger(L, idx)) {
    /* 1.0 and 1 are one key, as they are one table key in Lua. */
    lua_Number d = lua_tonumber(L, idx);
    if (d == (lua_Number)(lua_Integer)d) {
      lua_pushinteger(L, (lua_Integer)d);
      lua_replace(L, idx);
    }
  }
  const char *k = lua_tolstring(L, idx, n);
  if (*n == 0) luaL_error(L, "ctx.state: key is empty");
  return k;
}

static int state_get(lua_State *L) {
  eddy_worker *w = worker_of(L);
  lstate *s = luaL_checkudata(L, 1, STATE_MT);
  size_t n;
  const char *k = state_key(L, 2, &n);
  const char *v;
  size_t vl;
  int rc = eddy_worker_state_get(w, s->consumer, k, n, &v, &vl);
  if (rc < 0) return luaL_error(L, "ctx.state:get('%s'): the store failed", k);
  if (rc == 0) { lua_pushnil(L); return 1; }
  char why[96];
  if (eddy_json_decode(L, v, vl, why, sizeof why) != 0)
    return luaL_error(L, "ctx.state:get('%s'): the stored value is not JSON (%s)", k, why);
  return 1;
}

static int put(lua_State *L, int del) {
  eddy_worker *w = worker_of(L);
  lstate *s = luaL_checkudata(L, 1, STATE_MT);
  size_t n;
  const char *k = state_key(L, 2, &n);
  if (!eddy_worker_job(w))
    return luaL_error(L, "ctx.state can only be written while a handler runs");
  int rc;
  if (del || lua_isnoneornil(L, 3)) {
    rc = eddy_worker_state_put(w, s->consumer, k, n, NULL, 0);
  } else {
    eddy_buf *b = eddy_worker_json_buf(w);
    char why[160];
    eddy_buf_reset(b);
    if (eddy_json_encode(L, 3, b, why, sizeof why) != 0)
      return luaL_error(L, "ctx.state:set('%s'): value is not JSON-able: %s", k, why);
    if (b->oom) return luaL_error(L, "ctx.state:set('%s'): not enough memory", k);
    rc = eddy_worker_state_put(w, s->consumer, k, n, b->data, b->len);
  }
  if (rc == -3) return raise_refusal(L, w);
  if (rc == -2)
    return luaL_error(L, "ctx.state:set('%s'): the call's memory limit is exceeded", k);
  if (rc != 0) return luaL_error(L, "ctx.state:set('%s'): not enough memory", k);
  return 0;
}

static int state_set(lua_State *L) { return put(L, 0); }
static int state_delete(lua_State *L) { return put(L, 1); }

/* Reads headers given as {{name, value}, ...} and/or {name = value} (the
 * map part sorted by name) into h[0..max).  Returns the count. */
static size_t read_headers(lua_State *L, int idx, eddy_header *h, size_t max) {
  size_t n = 0;
  lua_Integer len = (lua_Integer)lua_rawlen(L, idx);
  for (lua_Integer i = 1; i <= len && n < max; i++) {
    lua_rawgeti(L, idx, i);
    if (!lua_istable(L, -1)) luaL_error(L, "ctx:emit: header %d must be a {name, value} pair", (int)i);
    lua_rawgeti(L, -1, 1);
    lua_rawgeti(L, -2, 2);
    if (lua_type(L, -2) != LUA_TSTRING || lua_type(L, -1) != LUA_TSTRING)
      luaL_error(L, "ctx:emit: header %d must be a {name, value} pair of strings", (int)i);
    h[n].name = lua_tolstring(L, -2, &h[n].name_len);
    h[n].value = lua_tolstring(L, -1, &h[n].value_len);
    n++;
    /* The strings stay reachable from the table at idx. */
    lua_pop(L, 3);
  }
  size_t first_map = n;
  lua_pushnil(L);
  while (lua_next(L, idx) && n < max) {
    if (lua_type(L, -2) == LUA_TSTRING) {
      if (lua_type(L, -1) != LUA_TSTRING)
        luaL_error(L, "ctx:emit: value of header '%s' must be a string", lua_tostring(L, -2));
      h[n].name = lua_tolstring(L, -2, &h[n].name_len);
      h[n].value = lua_tolstring(L, -1, &h[n].value_len);
      n++;
    } else if (!lua_isinteger(L, -2)) {
      luaL_error(L, "ctx:emit: header names must be strings");
    }
    lua_pop(L, 1);
  }
  /* Sort the map part by name: a table's order is not defined. */
  for (size_t i = first_map + 1; i < n; i++) {
    eddy_header x = h[i];
    size_t j = i;
    while (j > first_map) {
      size_t a = h[j - 1].name_len < x.name_len ? h[j - 1].name_len : x.name_len;
      int c = memcmp(h[j - 1].name, x.name, a);
      if (c < 0 || (c == 0 && h[j - 1].name_len <= x.name_len)) break;
      h[j] = h[j - 1];
      j--;
    }
    h[j] = x;
  }
  return n;
}

/* ctx:emit(topic, { key =, value =, headers =, type =, after =, at = })
 * -> the event id.  The event goes out with the message's transaction; with
 * after (a duration) or at (ms since the epoch) it waits in the store's
 * timers until then. */
static int ctx_emit(lua_State *L) {
  eddy_worker *w = worker_of(L);
  luaL_checktype(L, 1, LUA_TTABLE);
  const char *topic = luaL_checkstring(L, 2);
  char why[300];
  if (eddy_topic_name_valid(topic, why, sizeof why) != 0)
    return luaL_error(L, "ctx:emit: %s", why);
  luaL_checktype(L, 3, LUA_TTABLE);
  if (!eddy_worker_job(w))
    return luaL_error(L, "ctx:emit can only be called while a handler runs");
  int spec = 3;
  /* A declared type: the value must match its schema, and the event
   * carries its version (eddy.catalog.emit raises the refusal). */
  char version[24] = "";
  int type_idx = lua_gettop(L) + 1;   /* spec.type, kept for the header */
  int tt = lua_getfield(L, spec, "type");
  if (tt != LUA_TSTRING && tt != LUA_TNIL) return luaL_error(L, "ctx:emit: type must be a string");
  if (tt == LUA_TSTRING &&
      lua_getfield(L, LUA_REGISTRYINDEX, CATALOG_EMIT) == LUA_TFUNCTION) {
    lua_pushvalue(L, type_idx);
    lua_getfield(L, spec, "version");
    lua_getfield(L, spec, "value");
    if (lua_pcall(L, 3, 2, 0) != LUA_OK) {
      /* A refusal is a string: the handler may catch it like any error. */
      const char *e = lua_tostring(L, -1);
      if (e) eddy_worker_refuse(w, e, "schema");
      return lua_error(L);
    }
    if (lua_isinteger(L, -2))
      snprintf(version, sizeof version, "%lld", (long long)lua_tointeger(L, -2));
    if (lua_isstring(L, -1)) {
      const eddy_consumer_def *def = eddy_worker_def(w, (int)lua_tointeger(L, lua_upvalueindex(2)));
      eddy_job *j = eddy_worker_job(w);
      eddy_logfields f;
      char trace_id[33];
      eddy_job_logfields(j, def->name, &f, trace_id);
      eddy_logx("WARN", &f, "%s", lua_tostring(L, -1));
    }
  }
  lua_settop(L, type_idx);
  size_t kl = 0, vl = 0;
  const char *key = NULL, *value = NULL;
  int t = lua_getfield(L, spec, "key");
  if (t == LUA_TSTRING || t == LUA_TNUMBER) key = lua_tolstring(L, -1, &kl);
  else if (t != LUA_TNIL) return luaL_error(L, "ctx:emit: key must be a string, got %s", lua_typename(L, t));
  t = lua_getfield(L, spec, "value");
  if (t == LUA_TTABLE) {
    eddy_buf *b = eddy_worker_json_buf(w);
    char why[160];
    eddy_buf_reset(b);
    if (eddy_json_encode(L, -1, b, why, sizeof why) != 0)
      return luaL_error(L, "ctx:emit: value is not JSON-able: %s", why);
    lua_pop(L, 1);
    lua_pushlstring(L, b->data, b->len);
  } else if (t == LUA_TNIL) {
    return luaL_error(L, "ctx:emit: value is missing");
  } else if (t != LUA_TSTRING && t != LUA_TNUMBER) {
    return luaL_error(L, "ctx:emit: value must be a string or a table, got %s",
                      lua_typename(L, t));
  }
  value = lua_tolstring(L, -1, &vl);
  eddy_header h[66];
  size_t nh = 0;
  t = lua_getfield(L, spec, "headers");
  if (t == LUA_TTABLE) nh = read_headers(L, lua_gettop(L), h, 64);
  else if (t != LUA_TNIL) return luaL_error(L, "ctx:emit: headers must be a table");
  if (tt == LUA_TSTRING) {
    h[nh].name = "eddy-type";
    h[nh].name_len = 9;
    h[nh].value = lua_tolstring(L, type_idx, &h[nh].value_len);
    nh++;
  }
  if (version[0]) {
    h[nh].name = "eddy-version";
    h[nh].name_len = 12;
    h[nh].value = version;
    h[nh].value_len = strlen(version);
    nh++;
  }
  /* A durable timer: the event waits in the store until it is due. */
  int64_t due = 0;
  t = lua_getfield(L, spec, "after");
  if (t == LUA_TSTRING) {
    int64_t ms;
    if (eddy_parse_duration_ms(lua_tostring(L, -1), &ms) != 0)
      return luaL_error(L, "ctx:emit: after '%s' is not a duration (500ms, 30s, 15m, 12h, 7d)",
                        lua_tostring(L, -1));
    due = eddy_now_ms() + ms;
  } else if (t == LUA_TNUMBER) {
    if (!lua_isinteger(L, -1) || lua_tointeger(L, -1) < 0)
      return luaL_error(L, "ctx:emit: after must be a duration or milliseconds (>= 0)");
    due = eddy_now_ms() + lua_tointeger(L, -1);
  } else if (t != LUA_TNIL) {
    return luaL_error(L, "ctx:emit: after must be a duration, got %s", lua_typename(L, t));
  }
  t = lua_getfield(L, spec, "at");
  if (t == LUA_TNUMBER && lua_isinteger(L, -1) && lua_tointeger(L, -1) >= 0) {
    if (due) return luaL_error(L, "ctx:emit: give after or at, not both");
    due = lua_tointeger(L, -1);
  } else if (t != LUA_TNIL) {
    return luaL_error(L, "ctx:emit: at must be a time in milliseconds since the epoch");
  }
  char id[EDDY_UUID_STRLEN + 1];
  int rc = eddy_worker_emit(w, topic, key, kl, key != NULL, value, vl, h, nh, due, id);
  if (rc == -3) return raise_refusal(L, w);
  if (rc == -2) return luaL_error(L, "ctx:emit: the call's memory limit is exceeded");
  if (rc != 0) return luaL_error(L, "ctx:emit: not enough memory");
  lua_pushstring(L, id);
  return 1;
}

/* ctx.log.info(message [, fields]) and friends: one line on stderr tagged
 * with the consumer, the message id, its correlation and trace ids and the
 * handler's version, with the fields that have string keys (at most
 * LOG_FIELDS of them).  Numbers and booleans stay numbers and booleans in
 * JSON lines, except inf and nan, which JSON has not: they are strings. */
#define LOG_FIELDS 64
static int ctx_log(lua_State *L) {
  eddy_worker *w = worker_of(L);
  const char *level = lua_tostring(L, lua_upvalueindex(2));
  int consumer = (int)lua_tointeger(L, lua_upvalueindex(3));
  int a = 1;
  if (lua_istable(L, 1) && lua_gettop(L) >= 2 && !lua_istable(L, 2)) a = 2; /* log:info */
  const char *text = luaL_tolstring(L, a, NULL);
  const eddy_consumer_def *def = eddy_worker_def(w, consumer);
  eddy_job *j = eddy_worker_job(w);
  eddy_logfield extra[LOG_FIELDS];
  size_t nextra = 0;
  if (lua_istable(L, a + 1)) {
    luaL_checkstack(L, LOG_FIELDS + 4, "ctx.log");
    lua_pushnil(L);
    while (lua_next(L, a + 1)) {
      if (lua_type(L, -2) == LUA_TSTRING && nextra < LOG_FIELDS) {
        eddy_logfield *e = &extra[nextra++];
        int t = lua_type(L, -1);
        e->key = lua_tostring(L, -2);
        e->literal = t == LUA_TBOOLEAN ||
                     (t == LUA_TNUMBER && (lua_isinteger(L, -1) || isfinite(lua_tonumber(L, -1))));
        e->value = luaL_tolstring(L, -1, &e->value_len);
        /* The text stays on the stack, below the key, until the line is
         * written: that keeps it alive. */
        lua_insert(L, -3);
      }
      lua_pop(L, 1);
    }
  }
  eddy_logfields f;
  char trace_id[33];
  if (j) {
    eddy_job_logfields(j, def->name, &f, trace_id);
  } else {
    memset(&f, 0, sizeof f);
    f.consumer = def->name;
    f.text_hide = EDDY_LOGF_VERSION;   /* the text line names it with a message only */
  }
  f.version = def->version;
  f.text = EDDY_LOGT_QUOTED;
  f.extra = extra;
  f.nextra = nextra;
  eddy_logx(level, &f, "%s", text);
  return 0;
}

/* Puts g's event catalog in force in this state, and its checks in the
 * registry (none when no type is declared: no cost per message). */
static int install_catalog(lua_State *L, eddy_sandbox *sb, const eddy_gen *g, char *err,
                           size_t errlen) {
  lua_pushnil(L);
  lua_setfield(L, LUA_REGISTRYINDEX, CATALOG_EMIT);
  lua_pushnil(L);
  lua_setfield(L, LUA_REGISTRYINDEX, CATALOG_CONSUME);
  if (!g->catalog || strcmp(g->catalog, "return {}") == 0) return 0;
  eddy_failure f;
  lua_getglobal(L, "require");
  lua_pushliteral(L, "eddy.catalog");
  if (eddy_sandbox_call(sb, 1, 1, &f) != 0) {
    snprintf(err, errlen, "cannot load eddy.catalog: %s", f.error);
    return -1;
  }
  lua_getfield(L, -1, "install");
  lua_pushstring(L, g->catalog);
  if (eddy_sandbox_call(sb, 1, 0, &f) != 0) {
    snprintf(err, errlen, "cannot install the event catalog: %s", f.error);
    lua_pop(L, 1);
    return -1;
  }
  lua_getfield(L, -1, "emit");
  lua_setfield(L, LUA_REGISTRYINDEX, CATALOG_EMIT);
  lua_getfield(L, -1, "consume");
  lua_setfield(L, LUA_REGISTRYINDEX, CATALOG_CONSUME);
  lua_pop(L, 1);
  return 0;
}

int lctx_push_consume_check(lua_State *L) {
  return lua_getfield(L, LUA_REGISTRYINDEX, CATALOG_CONSUME) == LUA_TFUNCTION;
}

static void make_ctx(lua_State *L, eddy_worker *w, const eddy_consumer_def *def,
                     int consumer) {
  lua_createtable(L, 0, 6);
  lua_pushstring(L, def->name);
  lua_setfield(L, -2, "consumer");
  lua_pushstring(L, def->version);
  lua_setfield(L, -2, "version");
  lua_pushinteger(L, 1);
  lua_setfield(L, -2, "attempt");
  lstate *s = lua_newuserdatauv(L, sizeof *s, 0);
  s->consumer = consumer;
  luaL_setmetatable(L, STATE_MT);
  lua_setfield(L, -2, "state");
  lua_pushlightuserdata(L, w);
  lua_pushinteger(L, consumer);
  lua_pushcclosure(L, ctx_emit, 2);
  lua_setfield(L, -2, "emit");
  lua_createtable(L, 0, 4);
  static const char *levels[] = { "debug", "info", "warn", "error" };
  static const char *upper[] = { "DEBUG", "INFO", "WARN", "ERROR" };
  for (int i = 0; i < 4; i++) {
    lua_pushlightuserdata(L, w);
    lua_pushstring(L, upper[i]);
    lua_pushinteger(L, consumer);
    lua_pushcclosure(L, ctx_log, 3);
    lua_setfield(L, -2, levels[i]);
  }
  lua_setfield(L, -2, "log");
}

void lctx_push_handle(lua_State *L, const lctx_consumer *c) {
  lua_rawgeti(L, LUA_REGISTRYINDEX, c->handle_ref);
}

void lctx_push_dedupe(lua_State *L, const lctx_consumer *c) {
  lua_rawgeti(L, LUA_REGISTRYINDEX, c->dedupe_ref);
}

void lctx_push_ctx(lua_State *L, const lctx_consumer *c, int attempt) {
  lua_rawgeti(L, LUA_REGISTRYINDEX, c->ctx_ref);
  /* Raw: this runs outside any protected call, and a handler may have
   * given ctx a metatable. */
  lua_pushliteral(L, "attempt");
  lua_pushinteger(L, attempt);
  lua_rawset(L, -3);
}

/* Adds dir/?.lua and dir/?/init.lua in front of package.path, so that
 * handlers can require modules kept beside the app. */
static void add_path(lua_State *L, const char *dir) {
  lua_getglobal(L, "package");
  lua_pushfstring(L, "%s/?.lua;%s/?/init.lua;", dir, dir);
  lua_getfield(L, -2, "path");
  lua_concat(L, 2);
  lua_setfield(L, -2, "path");
  lua_pop(L, 1);
}

lctx_consumer *lctx_load(eddy_worker *w, eddy_sandbox *sb, const eddy_gen *g,
                         const char *app_dir, char *err, size_t errlen) {
  lua_State *L = eddy_sandbox_state(sb);
  eddy_failure f;
  lmsg_setup(L);
  if (luaL_newmetatable(L, STATE_MT)) {
    static const luaL_Reg methods[] = {
      { "get", state_get }, { "set", state_set }, { "delete", state_delete },
      { NULL, NULL }
    };
    lua_createtable(L, 0, 3);
    lua_pushlightuserdata(L, w);
    luaL_setfuncs(L, methods, 1);
    lua_setfield(L, -2, "__index");
    lua_pushliteral(L, "eddy.state");
    lua_setfield(L, -2, "__metatable");
  }
  lua_pop(L, 1);
  add_path(L, app_dir);
  /* eddy.permanent, for msg:json() of a value that is not JSON. */
  lua_getglobal(L, "require");
  lua_pushliteral(L, "eddy");
  if (eddy_sandbox_call(sb, 1, 1, &f) != 0) {
    snprintf(err, errlen, "cannot load the eddy library: %s", f.error);
    return NULL;
  }
  lua_getfield(L, -1, "permanent");
  lua_setfield(L, LUA_REGISTRYINDEX, "eddy.permanent");
  lua_pop(L, 1);

  lua_getglobal(L, "require");
  lua_pushliteral(L, "eddy.app");
  if (eddy_sandbox_call(sb, 1, 1, &f) != 0) {
    snprintf(err, errlen, "cannot load eddy.app: %s", f.error);
    return NULL;
  }
  lua_getfield(L, -1, "load_handlers");
  lua_remove(L, -2);
  lua_createtable(L, g->nhandler_files, 0);
  for (int i = 0; i < g->nhandler_files; i++) {
    lua_pushstring(L, g->handler_files[i]);
    lua_rawseti(L, -2, i + 1);
  }
  lua_pushboolean(L, 0);
  lua_newtable(L);   /* the files that run strict */
  for (int i = 0; g->handler_strict && i < g->nhandler_files; i++) {
    if (!g->handler_strict[i]) continue;
    lua_pushboolean(L, 1);
    lua_setfield(L, -2, g->handler_files[i]);
  }
  if (eddy_sandbox_call(sb, 3, 2, &f) != 0) {
    snprintf(err, errlen, "%s", f.error);
    return NULL;
  }
  if (lua_isnil(L, -2)) {
    snprintf(err, errlen, "%s", lua_tostring(L, -1));
    lua_pop(L, 2);
    return NULL;
  }
  lua_pop(L, 1);
  int list = lua_gettop(L);
  /* The files define the generation's active consumers, each under its
   * number; anything else means they changed since the generation was
   * read from them. */
  int n = (int)lua_rawlen(L, list), active = 0;
  for (int i = 0; i < g->nconsumers; i++) active += g->defs[i].active;
  lctx_consumer *lc = n == active ? calloc((size_t)g->nconsumers + 1, sizeof *lc) : NULL;
  if (!lc) {
    snprintf(err, errlen, n == active ? "out of memory"
             : "the handler files changed while eddy was loading them");
    lua_pop(L, 1);
    return NULL;
  }
  for (int i = 0; i < g->nconsumers; i++)
    lc[i].handle_ref = lc[i].dedupe_ref = lc[i].ctx_ref = LUA_NOREF;
  for (int k = 1; k <= n; k++) {
    lua_rawgeti(L, list, k);
    lua_getfield(L, -1, "name");
    const char *name = lua_tostring(L, -1);
    int i = 0;
    while (i < g->nconsumers && !(g->defs[i].active && name &&
                                 strcmp(name, g->defs[i].name) == 0)) i++;
    lua_getfield(L, -2, "version");
    const char *version = lua_tostring(L, -1);
    if (i == g->nconsumers || lc[i].handle_ref != LUA_NOREF || !version ||
        strcmp(version, g->defs[i].version) != 0) {
      snprintf(err, errlen, "the handler files changed while eddy was loading them");
      lua_pop(L, 4);
      free(lc);
      return NULL;
    }
    lua_pop(L, 2);
    lua_getfield(L, -1, "handle");
    lc[i].handle_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    lua_getfield(L, -1, "dedupe");
    if (lua_isfunction(L, -1)) lc[i].dedupe_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    else { lua_pop(L, 1); lc[i].dedupe_ref = LUA_NOREF; }
    lua_pop(L, 1);
    make_ctx(L, w, &g->defs[i], i);
    lc[i].ctx_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  }
  lua_pop(L, 1);
  if (install_catalog(L, sb, g, err, errlen) != 0) { free(lc); return NULL; }
  lua_getfield(L, LUA_REGISTRYINDEX, CATALOG_CONSUME);
  int on = lua_isfunction(L, -1);
  lua_pop(L, 1);
  for (int i = 0; i < g->nconsumers; i++) lc[i].catalog = on;
  return lc;
}

void lctx_free(lctx_consumer *lc) {
  /* The references die with the Lua state. */
  free(lc);
}
