/*
 * ljson.c - exact JSON encoding of Lua values.
 */
#include "ljson.h"

#include <errno.h>
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

/* The text of a finite float d: the shortest of 15, 16, 17 digits that
 * reads back exactly.  -0.0 is "-0.0": "-0" would read back as the
 * integer 0. */
static void float_text(double d, char s[40]) {
  if (d == 0 && signbit(d)) { strcpy(s, "-0.0"); return; }
  for (int p = 15; p <= 17; p++) {
    snprintf(s, 40, "%.*g", p, d);
    if (strtod(s, NULL) == d) break;
  }
}

/* 1 and *i set when d is an integer within lua_Integer's range (casting
 * any other double to an integer is undefined). */
static int integral(lua_Number d, lua_Integer *i) {
  return lua_numbertointeger(d, i) && (lua_Number)*i == d;
}

static void number(eddy_buf *b, lua_State *L, int idx) {
  if (lua_isinteger(L, idx)) {
    eddy_buf_int(b, (int64_t)lua_tointeger(L, idx));
    return;
  }
  char s[40];
  float_text((double)lua_tonumber(L, idx), s);
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
  case LUA_TLIGHTUSERDATA:
    if (lua_touserdata(L, idx) == NULL) { eddy_buf_puts(b, "null"); return 0; }
    /* fall through */
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
    /* Keep a string form of the key on the stack, below the iteration key:
     * a float's exact one, so that the value is found again by it. */
    if (t == LUA_TNUMBER && !lua_isinteger(L, -1)) {
      lua_Number d = lua_tonumber(L, -1);
      lua_Integer i;
      if (isinf(d)) {
        free(keys);
        lua_settop(L, base);
        return fail(err, n, "a table key that is an infinite number");
      }
      if (integral(d, &i)) {
        lua_pushinteger(L, i);
      } else {
        char s[40];
        float_text((double)d, s);
        lua_pushstring(L, s);
      }
    } else {
      lua_pushvalue(L, -1);
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
  /* A number key and a string key with the same text (1 and "1") would be
   * written twice, and read back as one: refused, so that what is written
   * reads back as it was. */
  for (size_t i = 1; i < count; i++) {
    if (keys[i].n == keys[i - 1].n && memcmp(keys[i].s, keys[i - 1].s, keys[i].n) == 0) {
      char why[96];
      snprintf(why, sizeof why, "two table keys written \"%.*s\" (a number and a string)",
               keys[i].n > 40 ? 40 : (int)keys[i].n, keys[i].s);
      free(keys);
      lua_settop(L, base);
      return fail(err, n, why);
    }
  }
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
        lua_Integer k;
        if (integral(d, &k)) lua_pushinteger(L, k);
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

/* ---- decoding ------------------------------------------------------------ */

typedef struct parser {
  lua_State *L;
  const char *s, *p, *end;
  char *err;
  size_t errlen;
  eddy_buf tmp;       /* unescaped strings */
} parser;

static int perr(parser *ps, const char *why) {
  snprintf(ps->err, ps->errlen, "%s at byte %zu", why, (size_t)(ps->p - ps->s) + 1);
  return -1;
}

static void skip_ws(parser *ps) {
  while (ps->p < ps->end && (*ps->p == ' ' || *ps->p == '\t' || *ps->p == '\n' ||
                             *ps->p == '\r'))
    ps->p++;
}

static int hex4(const char *p, unsigned *out) {
  unsigned v = 0;
  for (int i = 0; i < 4; i++) {
    char c = p[i];
    v <<= 4;
    if (c >= '0' && c <= '9') v |= (unsigned)(c - '0');
    else if (c >= 'a' && c <= 'f') v |= (unsigned)(c - 'a' + 10);
    else if (c >= 'A' && c <= 'F') v |= (unsigned)(c - 'A' + 10);
    else return -1;
  }
  *out = v;
  return 0;
}

static void utf8_put(eddy_buf *b, unsigned c) {
  char u[4];
  size_t n;
  if (c < 0x80) { u[0] = (char)c; n = 1; }
  else if (c < 0x800) { u[0] = (char)(0xc0 | c >> 6); u[1] = (char)(0x80 | (c & 0x3f)); n = 2; }
  else if (c < 0x10000) {
    u[0] = (char)(0xe0 | c >> 12); u[1] = (char)(0x80 | ((c >> 6) & 0x3f));
    u[2] = (char)(0x80 | (c & 0x3f)); n = 3;
  } else {
    u[0] = (char)(0xf0 | c >> 18); u[1] = (char)(0x80 | ((c >> 12) & 0x3f));
    u[2] = (char)(0x80 | ((c >> 6) & 0x3f)); u[3] = (char)(0x80 | (c & 0x3f)); n = 4;
  }
  eddy_buf_add(b, u, n);
}

/* Pushes the string starting at ps->p (the opening quote). */
static int parse_string(parser *ps) {
  const char *p = ++ps->p, *start = p;
  /* Fast path: no escapes. */
  while (p < ps->end && *p != '"' && *p != '\\' && (unsigned char)*p >= 0x20) p++;
  if (p < ps->end && *p == '"') {
    lua_pushlstring(ps->L, start, (size_t)(p - start));
    ps->p = p + 1;
    return 0;
  }
  eddy_buf_reset(&ps->tmp);
  eddy_buf_add(&ps->tmp, start, (size_t)(p - start));
  while (p < ps->end && *p != '"') {
    unsigned char c = (unsigned char)*p;
    if (c < 0x20) { ps->p = p; return perr(ps, "control character in a string"); }
    if (c != '\\') { eddy_buf_add(&ps->tmp, p, 1); p++; continue; }
    if (p + 1 >= ps->end) break;
    char e = p[1];
    p += 2;
    switch (e) {
    case '"': eddy_buf_add(&ps->tmp, "\"", 1); break;
    case '\\': eddy_buf_add(&ps->tmp, "\\", 1); break;
    case '/': eddy_buf_add(&ps->tmp, "/", 1); break;
    case 'b': eddy_buf_add(&ps->tmp, "\b", 1); break;
    case 'f': eddy_buf_add(&ps->tmp, "\f", 1); break;
    case 'n': eddy_buf_add(&ps->tmp, "\n", 1); break;
    case 'r': eddy_buf_add(&ps->tmp, "\r", 1); break;
    case 't': eddy_buf_add(&ps->tmp, "\t", 1); break;
    case 'u': {
      unsigned c1, c2;
      if (ps->end - p < 4 || hex4(p, &c1)) { ps->p = p; return perr(ps, "bad \\u escape"); }
      p += 4;
      if (c1 >= 0xd800 && c1 <= 0xdbff) {
        if (ps->end - p < 6 || p[0] != '\\' || p[1] != 'u' || hex4(p + 2, &c2) ||
            c2 < 0xdc00 || c2 > 0xdfff) { ps->p = p; return perr(ps, "lone surrogate in \\u escape"); }
        p += 6;
        c1 = 0x10000 + ((c1 - 0xd800) << 10) + (c2 - 0xdc00);
      } else if (c1 >= 0xdc00 && c1 <= 0xdfff) {
        ps->p = p;
        return perr(ps, "lone surrogate in \\u escape");
      }
      utf8_put(&ps->tmp, c1);
      break;
    }
    default: ps->p = p - 1; return perr(ps, "bad escape in a string");
    }
  }
  if (p >= ps->end) { ps->p = p; return perr(ps, "unterminated string"); }
  if (ps->tmp.oom) return perr(ps, "out of memory");
  lua_pushlstring(ps->L, ps->tmp.data ? ps->tmp.data : "", ps->tmp.len);
  ps->p = p + 1;
  return 0;
}

static int parse_number(parser *ps) {
  const char *p = ps->p, *start = p;
  int is_float = 0;
  if (p < ps->end && *p == '-') p++;
  if (p >= ps->end || !(*p >= '0' && *p <= '9')) return perr(ps, "bad number");
  if (*p == '0' && p + 1 < ps->end && p[1] >= '0' && p[1] <= '9')
    return perr(ps, "bad number (leading zero)");
  while (p < ps->end && *p >= '0' && *p <= '9') p++;
  if (p < ps->end && *p == '.') {
    is_float = 1;
    p++;
    if (p >= ps->end || !(*p >= '0' && *p <= '9')) { ps->p = p; return perr(ps, "bad number"); }
    while (p < ps->end && *p >= '0' && *p <= '9') p++;
  }
  if (p < ps->end && (*p == 'e' || *p == 'E')) {
    is_float = 1;
    p++;
    if (p < ps->end && (*p == '+' || *p == '-')) p++;
    if (p >= ps->end || !(*p >= '0' && *p <= '9')) { ps->p = p; return perr(ps, "bad number"); }
    while (p < ps->end && *p >= '0' && *p <= '9') p++;
  }
  char buf[64];
  size_t n = (size_t)(p - start);
  if (!is_float && n < 19) {
    /* Fits in an int64 for sure. */
    int64_t v = 0;
    const char *q = start + (*start == '-');
    for (; q < p; q++) v = v * 10 + (*q - '0');
    lua_pushinteger(ps->L, (lua_Integer)(*start == '-' ? -v : v));
  } else if (n < sizeof buf) {
    memcpy(buf, start, n);
    buf[n] = '\0';
    if (!is_float) {
      char *e;
      errno = 0;
      long long v = strtoll(buf, &e, 10);
      if (errno == 0) { lua_pushinteger(ps->L, (lua_Integer)v); ps->p = p; return 0; }
    }
    lua_pushnumber(ps->L, (lua_Number)strtod(buf, NULL));
  } else {
    return perr(ps, "number too long");
  }
  ps->p = p;
  return 0;
}

static int parse_value(parser *ps, int depth);

/* The first PENDING values of a container wait on the Lua stack, so that
 * a small one is made at its size; past that the table is made and each
 * value goes in as it is read.  A container of a million values must not
 * need a million stack slots (Lua's stack stops at LUAI_MAXSTACK). */
#define PENDING 32

/* Makes the table of the count values (pairs, for an object) waiting on
 * the stack above base, and leaves it alone there. */
static void make_table(lua_State *L, int base, int count, int object, int hint) {
  lua_createtable(L, object ? 0 : hint, object ? hint : 0);
  int t = lua_gettop(L);
  for (int i = 0; i < count; i++) {
    if (object) {
      lua_pushvalue(L, base + 1 + 2 * i);
      lua_pushvalue(L, base + 2 + 2 * i);
      lua_rawset(L, t);
    } else {
      lua_pushvalue(L, base + 1 + i);
      lua_rawseti(L, t, i + 1);
    }
  }
  lua_replace(L, base + 1);
  lua_settop(L, base + 1);
}

static int parse_container(parser *ps, int depth, int object) {
  lua_State *L = ps->L;
  if (depth > 1000) return perr(ps, "nested too deeply");
  ps->p++;  /* [ or { */
  int base = lua_gettop(L), count = 0, made = 0;
  skip_ws(ps);
  char close = object ? '}' : ']';
  if (ps->p < ps->end && *ps->p == close) {
    ps->p++;
    lua_createtable(L, 0, 0);
    return 0;
  }
  if (!lua_checkstack(L, 2 * PENDING + 8)) return perr(ps, "nested too deeply");
  for (;;) {
    skip_ws(ps);
    if (object) {
      if (ps->p >= ps->end || *ps->p != '"') return perr(ps, "expected a string key");
      if (parse_string(ps)) return -1;
      skip_ws(ps);
      if (ps->p >= ps->end || *ps->p != ':') return perr(ps, "expected ':'");
      ps->p++;
      skip_ws(ps);
    }
    if (parse_value(ps, depth + 1)) return -1;
    count++;
    if (made) {
      if (object) lua_rawset(L, base + 1);
      else lua_rawseti(L, base + 1, count);
    } else if (count == PENDING) {
      make_table(L, base, count, object, 4 * PENDING);
      made = 1;
    }
    skip_ws(ps);
    if (ps->p < ps->end && *ps->p == ',') { ps->p++; continue; }
    if (ps->p < ps->end && *ps->p == close) { ps->p++; break; }
    return perr(ps, object ? "expected ',' or '}'" : "expected ',' or ']'");
  }
  if (!made) make_table(L, base, count, object, count);
  return 0;
}

static int literal(parser *ps, const char *word, size_t n) {
  if ((size_t)(ps->end - ps->p) < n || memcmp(ps->p, word, n) != 0)
    return perr(ps, "invalid token");
  ps->p += n;
  return 0;
}

static int parse_value(parser *ps, int depth) {
  if (ps->p >= ps->end) return perr(ps, "unexpected end");
  switch (*ps->p) {
  case '{': return parse_container(ps, depth, 1);
  case '[': return parse_container(ps, depth, 0);
  case '"': return parse_string(ps);
  case 't': if (literal(ps, "true", 4)) return -1; lua_pushboolean(ps->L, 1); return 0;
  case 'f': if (literal(ps, "false", 5)) return -1; lua_pushboolean(ps->L, 0); return 0;
  case 'n':
    if (literal(ps, "null", 4)) return -1;
    lua_pushlightuserdata(ps->L, NULL);  /* cjson.null */
    return 0;
  default:
    if (*ps->p == '-' || (*ps->p >= '0' && *ps->p <= '9')) return parse_number(ps);
    return perr(ps, "invalid token");
  }
}

int eddy_json_decode(lua_State *L, const char *s, size_t n, char *err, size_t errlen) {
  parser ps = { L, s, s, s + n, err, errlen, EDDY_BUF_INIT };
  int top = lua_gettop(L);
  skip_ws(&ps);
  int rc = parse_value(&ps, 0);
  if (rc == 0) {
    skip_ws(&ps);
    if (ps.p != ps.end) rc = perr(&ps, "trailing characters");
  }
  eddy_buf_free(&ps.tmp);
  if (rc) { lua_settop(L, top); return -1; }
  return 0;
}
