/*
 * lmsg.c - the msg object handlers receive.
 *
 * A full userdata pointing at the runtime's copy of the message: fields
 * are made on access, so a handler that reads only msg.value costs no
 * table.  msg.headers builds its table once; msg:json() decodes once.
 * Both are cached in the userdata's user values.
 */
#include "lctx.h"
#include "llog.h"
#include "ljson.h"

#include <string.h>

#include <lauxlib.h>

#define MSG_MT "eddy.msg"

typedef struct lmsg {
  eddy_job *job;   /* NULL once its handler returned */
} lmsg;

static eddy_job *check_job(lua_State *L, int idx) {
  lmsg *m = luaL_checkudata(L, idx, MSG_MT);
  if (!m->job) luaL_error(L, "msg used after its handler returned");
  return m->job;
}

void lctx_push_msg(lua_State *L, eddy_job *j) {
  lmsg *m = lua_newuserdatauv(L, sizeof *m, 2);
  m->job = j;
  luaL_setmetatable(L, MSG_MT);
}

void lctx_invalidate_msg(lua_State *L, int idx) {
  lmsg *m = luaL_testudata(L, idx, MSG_MT);
  if (m) m->job = NULL;
}

static void push_header(lua_State *L, eddy_job *j, const char *name) {
  size_t n;
  const char *v = eddy_headers_get(j->headers, j->headers_len, name, &n);
  if (v) lua_pushlstring(L, v, n);
  else lua_pushnil(L);
}

/* msg.headers: an array of {name, value} pairs in order, which also maps
 * each name to its (last) value. */
static void push_headers(lua_State *L, int self, eddy_job *j) {
  if (lua_getiuservalue(L, self, 1) == LUA_TTABLE) return;
  lua_pop(L, 1);
  eddy_llog_push_headers(L, j->headers, j->headers_len, 0);
  lua_pushvalue(L, -1);
  lua_setiuservalue(L, self, 1);
}

/* msg:json() -> the value decoded as JSON, decoded once.  A value that is
 * not JSON cannot be handled at all: a permanent failure. */
static int msg_json(lua_State *L) {
  eddy_job *j = check_job(L, 1);
  if (lua_getiuservalue(L, 1, 2) != LUA_TNIL) return 1;
  lua_pop(L, 1);
  char why[96];
  if (eddy_json_decode(L, j->value, j->value_len, why, sizeof why) != 0) {
    lua_getfield(L, LUA_REGISTRYINDEX, "eddy.permanent");
    lua_pushfstring(L, "msg:json(): the value of message %s is not JSON (%s)", j->id, why);
    lua_call(L, 1, 1);
    return lua_error(L);
  }
  lua_pushvalue(L, -1);
  lua_setiuservalue(L, 1, 2);
  return 1;
}

static int msg_index(lua_State *L) {
  eddy_job *j = check_job(L, 1);
  size_t n;
  const char *k = luaL_checklstring(L, 2, &n);
  switch (k[0]) {
  case 'c':
    if (strcmp(k, "correlation_id") == 0) {
      push_header(L, j, "eddy-correlation-id");
      if (lua_isnil(L, -1)) lua_pushlstring(L, j->id, j->id_len);
      return 1;
    }
    if (strcmp(k, "causation_id") == 0) { push_header(L, j, "eddy-causation-id"); return 1; }
    break;
  case 'h':
    if (strcmp(k, "headers") == 0) { push_headers(L, 1, j); return 1; }
    break;
  case 'i':
    if (strcmp(k, "id") == 0) { lua_pushlstring(L, j->id, j->id_len); return 1; }
    break;
  case 'j':
    if (strcmp(k, "json") == 0) { lua_pushcfunction(L, msg_json); return 1; }
    break;
  case 'k':
    if (strcmp(k, "key") == 0) {
      if (j->has_key) lua_pushlstring(L, j->key, j->key_len);
      else lua_pushnil(L);
      return 1;
    }
    break;
  case 'o':
    if (strcmp(k, "offset") == 0) { lua_pushinteger(L, j->offset); return 1; }
    break;
  case 'p':
    if (strcmp(k, "partition") == 0) { lua_pushinteger(L, j->cursor->partition); return 1; }
    break;
  case 't':
    if (strcmp(k, "topic") == 0) { lua_pushstring(L, j->cursor->topic); return 1; }
    if (strcmp(k, "timestamp") == 0) { lua_pushinteger(L, j->timestamp); return 1; }
    if (strcmp(k, "traceparent") == 0) { push_header(L, j, "traceparent"); return 1; }
    if (strcmp(k, "type") == 0) { push_header(L, j, "eddy-type"); return 1; }
    break;
  case 'v':
    if (strcmp(k, "value") == 0) { lua_pushlstring(L, j->value, j->value_len); return 1; }
    break;
  }
  lua_pushnil(L);
  return 1;
}

static int msg_tostring(lua_State *L) {
  lmsg *m = luaL_checkudata(L, 1, MSG_MT);
  if (!m->job) lua_pushliteral(L, "eddy.msg (done)");
  else lua_pushfstring(L, "eddy.msg %s (%s/%d@%I)", m->job->id, m->job->cursor->topic,
                       m->job->cursor->partition, (lua_Integer)m->job->offset);
  return 1;
}

static int msg_newindex(lua_State *L) {
  return luaL_error(L, "msg is read-only (field '%s')", luaL_checkstring(L, 2));
}

void lmsg_setup(lua_State *L) {
  if (luaL_newmetatable(L, MSG_MT)) {
    lua_pushcfunction(L, msg_index);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, msg_newindex);
    lua_setfield(L, -2, "__newindex");
    lua_pushcfunction(L, msg_tostring);
    lua_setfield(L, -2, "__tostring");
    /* getmetatable(msg) gives this, not the table: handler code cannot
     * give every message a finalizer or new fields. */
    lua_pushliteral(L, "eddy.msg");
    lua_setfield(L, -2, "__metatable");
  }
  lua_pop(L, 1);
}
