/*
 * ljson.c - exact JSON encoding of Lua values.
 */
#include "ljson.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>

#define MAX_DEPTH 100

static int fail(char *err, size_t n, const char *why) {
  snprintf(err, n, "%s", why);
  return -1;
}

static void number(eddy_buf *b, lua_State *L, int idx) {
  if (lua_isinteger(L, idx)) {
    eddy_buf_printf(b, "%lld", (long long)lua_tointeger(L, idx));
    return;
  }
  double d = (double)lua_tonumber(L, idx);
  char s[40];
  /* The shortest of 15, 16, 17 digits that reads back exactly. */
  for (int p = 15; p <= 17; p++) {
    snprintf(s, sizeof s, "%.*g", p, d);
    if (strtod(s, NULL) == d) break;
  }
  eddy_buf_puts(b, s);
}

/* A table is an array when its keys are exactly 1..n, or 1..max with
 * holes making up at most half (holes become null). */
static int array_length(lua_State *L, int idx, int *is_array) {
  lua_Integer max = 0, count = 0;
  int other = 0;
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    lua_pop(L, 1);
    if (lua_isinteger(L, -1) && lua_tointeger(L, -1) >= 1) {
      lua_Integer k = lua_tointeger(L, -1);
      if (k > max) max = k;
      count++;
    } else {
      other = 1;
    }
  }
  *is_array = !other && (count == 0 ? 0 : max <= 2 * count);
  return (int)max;
}

struct key { const char *s; size_t n; int ref; };

static int by_key(const void *a, const void *b) {
  const struct key *x = a, *y = b;
  int c = memcmp(x->s, y->s, x->n < y->n ? x->n : y->n);
  return c ? c : (x->n > y->n) - (x->n < y->n);
}

static int encode(lua_State *L, int idx, eddy_buf *b, char *err, size_t n, int depth) {
  switch (lua_type(L, idx)) {
  case LUA_TNIL: eddy_buf_puts(b, "null"); return 0;
  case LUA_TBOOLEAN: eddy_buf_puts(b, lua_toboolean(L, idx) ? "true" : "false"); return 0;
  case LUA_TNUMBER: {
    if (!lua_isinteger(L, idx)) {
      double d = (double)lua_tonumber(L, idx);
      if (isnan(d) || isinf(d)) return fail(err, n, "a NaN or infinite number");
    }
    number(b, L, idx);
    return 0;
  }
  case LUA_TSTRING: {
    size_t len;
    const char *s = lua_tolstring(L, idx, &len);
    if (!eddy_utf8_valid(s, len))
      return fail(err, n, "a string that is not UTF-8 (encode binary data, e.g. as hex)");
    eddy_buf_json_str(b, s, len);
    return 0;
  }
  case LUA_TTABLE: break;
  default: {
    char why[64];
    snprintf(why, sizeof why, "cannot encode a %s", luaL_typename(L, idx));
    return fail(err, n, why);
  }
  }
  if (depth >= MAX_DEPTH) return fail(err, n, "nested too deeply (or a cycle)");
  if (!lua_checkstack(L, 4)) return fail(err, n, "nested too deeply");
  idx = lua_absindex(L, idx);
  int is_array;
  int len = array_length(L, idx, &is_array);
  if (is_array) {
    eddy_buf_puts(b, "[");
    for (int i = 1; i <= len; i++) {
      if (i > 1) eddy_buf_puts(b, ",");
      lua_rawgeti(L, idx, i);
      int rc = encode(L, lua_gettop(L), b, err, n, depth + 1);
      lua_pop(L, 1);
      if (rc) return rc;
    }
    eddy_buf_puts(b, "]");
    return 0;
  }
  /* An object: keys as text (numbers too), sorted. */
  size_t count = 0, cap = 16;
  struct key *keys = malloc(cap * sizeof *keys);
  if (!keys) return fail(err, n, "out of memory");
  int base = lua_gettop(L);
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    lua_pop(L, 1);
    int t = lua_type(L, -1);
    if (t != LUA_TSTRING && t != LUA_TNUMBER) {
      free(keys);
      lua_settop(L, base);
      char why[64];
      snprintf(why, sizeof why, "a table key that is a %s", luaL_typename(L, -1));
      return fail(err, n, why);
    }
    if (count == cap) {
      cap *= 2;
      struct key *k2 = realloc(keys, cap * sizeof *keys);
      if (!k2) { free(keys); lua_settop(L, base); return fail(err, n, "out of memory"); }
      keys = k2;
    }
    /* Keep a string form of the key on the stack, below the iteration key. */
    lua_pushvalue(L, -1);
    if (t == LUA_TNUMBER && !lua_isinteger(L, -1)) {
      lua_Number d = lua_tonumber(L, -1);
      if (d == (lua_Number)(lua_Integer)d) { lua_pop(L, 1); lua_pushinteger(L, (lua_Integer)d); }
    }
    lua_tolstring(L, -1, NULL);
    lua_insert(L, -2);
    if (!lua_checkstack(L, 2)) { free(keys); lua_settop(L, base); return fail(err, n, "too many keys"); }
    count++;
  }
  /* Stack: base+1 .. base+count hold the key strings in iteration order;
   * the original keys are gone, so look values up by string or number. */
  for (size_t i = 0; i < count; i++) {
    int at = base + 1 + (int)i;
    keys[i].s = lua_tolstring(L, at, &keys[i].n);
    keys[i].ref = at;
  }
  qsort(keys, count, sizeof *keys, by_key);
  eddy_buf_puts(b, "{");
  int rc = 0;
  for (size_t i = 0; i < count && rc == 0; i++) {
    if (!eddy_utf8_valid(keys[i].s, keys[i].n)) { rc = fail(err, n, "a key that is not UTF-8"); break; }
    if (i) eddy_buf_puts(b, ",");
    eddy_buf_json_str(b, keys[i].s, keys[i].n);
    eddy_buf_puts(b, ":");
    /* The value: by the string key, else by the number it came from. */
    lua_pushvalue(L, keys[i].ref);
    lua_rawget(L, idx);
    if (lua_isnil(L, -1)) {
      lua_pop(L, 1);
      lua_pushvalue(L, keys[i].ref);
      int isnum = 0;
      lua_Number d = lua_tonumberx(L, -1, &isnum);
      lua_pop(L, 1);
      if (isnum) {
        if (d == (lua_Number)(lua_Integer)d) lua_pushinteger(L, (lua_Integer)d);
        else lua_pushnumber(L, d);
        lua_rawget(L, idx);
        if (lua_isnil(L, -1)) {
          lua_pop(L, 1);
          lua_pushnumber(L, d);
          lua_rawget(L, idx);
        }
      } else {
        lua_pushnil(L);
      }
    }
    rc = encode(L, lua_gettop(L), b, err, n, depth + 1);
    lua_pop(L, 1);
  }
  free(keys);
  lua_settop(L, base);
  if (rc) return rc;
  eddy_buf_puts(b, "}");
  return 0;
}

int eddy_json_encode(lua_State *L, int idx, eddy_buf *out, char *err, size_t errlen) {
  int rc = encode(L, lua_absindex(L, idx), out, err, errlen, 0);
  if (rc == 0 && out->oom) return fail(err, errlen, "out of memory");
  return rc;
}
