/*
 * lpattern.c - string.find, match, gmatch and gsub with counted steps (see
 * lpattern.h).
 *
 * The matcher is the classic recursive backtracking one that Lua's pattern
 * language implies: single-character classes with the quantifiers * + - ?,
 * captures (position captures too), back references %1-%9, %b and %f, and
 * the anchors ^ and $.  Recursion is bounded (MAX_DEPTH, "pattern too
 * complex") as in Lua; what Lua leaves unbounded is time, which is counted
 * here.
 */
#include "lpattern.h"

#include <ctype.h>
#include <string.h>

#include <lauxlib.h>

#define MAX_CAPTURES 32   /* LUA_MAXCAPTURES */
#define MAX_DEPTH 200     /* Lua's MAXCCALLS for patterns */
#define CAP_UNFINISHED (-1)
#define CAP_POSITION (-2)
#define SPECIALS "^$*+?.([%-"

typedef struct matcher {
  lua_State *L;
  const char *src, *src_end;    /* the subject */
  const char *pat_end;
  eddy_pattern_tick tick;
  int left;                     /* steps before the next tick */
  int depth;                    /* recursion left */
  int level;                    /* captures open or closed */
  struct { const char *at; ptrdiff_t len; } cap[MAX_CAPTURES];
} matcher;

static void step(matcher *m) {
  if (--m->left > 0) return;
  m->left = EDDY_PATTERN_TICK;
  m->tick(m->L, EDDY_PATTERN_TICK);
}

static void begin(matcher *m) {
  m->level = 0;
  m->depth = MAX_DEPTH;
}

static int class_has(int c, int cl) {
  int in;
  switch (tolower(cl)) {
  case 'a': in = isalpha(c); break;
  case 'c': in = iscntrl(c); break;
  case 'd': in = isdigit(c); break;
  case 'g': in = isgraph(c); break;
  case 'l': in = islower(c); break;
  case 'p': in = ispunct(c); break;
  case 's': in = isspace(c); break;
  case 'u': in = isupper(c); break;
  case 'w': in = isalnum(c); break;
  case 'x': in = isxdigit(c); break;
  case 'z': in = c == 0; break;   /* deprecated in Lua 5.4, still there */
  default: return cl == c;
  }
  in = in != 0;
  return isupper(cl) ? !in : in;
}

/* The end of the single-character class that starts at p. */
static const char *class_end(matcher *m, const char *p) {
  if (*p == '%') {
    if (p + 1 >= m->pat_end) luaL_error(m->L, "malformed pattern (ends with '%%')");
    return p + 2;
  }
  if (*p != '[') return p + 1;
  p++;
  if (p < m->pat_end && *p == '^') p++;
  /* The first character of a set may be ']' itself. */
  do {
    if (p >= m->pat_end) luaL_error(m->L, "malformed pattern (missing ']')");
    if (*p++ == '%' && p < m->pat_end) p++;
  } while (p >= m->pat_end || *p != ']');
  return p + 1;
}

/* c against the set [...] from p (its '[') to close (its ']'). */
static int set_has(int c, const char *p, const char *close) {
  int yes = 1;
  p++;
  if (*p == '^') { yes = 0; p++; }
  while (p < close) {
    if (*p == '%') {
      p++;
      if (class_has(c, (unsigned char)*p)) return yes;
      p++;
    } else if (p + 2 < close && p[1] == '-') {
      if ((unsigned char)p[0] <= c && c <= (unsigned char)p[2]) return yes;
      p += 3;
    } else {
      if ((unsigned char)*p == c) return yes;
      p++;
    }
  }
  return !yes;
}

static int single(matcher *m, const char *s, const char *p, const char *ep) {
  if (s >= m->src_end) return 0;
  int c = (unsigned char)*s;
  switch (*p) {
  case '.': return 1;
  case '%': return class_has(c, (unsigned char)p[1]);
  case '[': return set_has(c, p, ep - 1);
  default: return (unsigned char)*p == c;
  }
}

static const char *match(matcher *m, const char *s, const char *p);

static const char *balance(matcher *m, const char *s, const char *p) {
  if (p + 1 >= m->pat_end)
    luaL_error(m->L, "malformed pattern (missing arguments to '%%b')");
  if (s >= m->src_end || *s != p[0]) return NULL;
  int open = 1;
  while (++s < m->src_end) {
    step(m);
    if (*s == p[1]) {
      if (--open == 0) return s + 1;
    } else if (*s == p[0]) {
      open++;
    }
  }
  return NULL;
}

static int capture_index(matcher *m, int l) {
  l -= '1';
  if (l < 0 || l >= m->level || m->cap[l].len == CAP_UNFINISHED)
    luaL_error(m->L, "invalid capture index %%%d", l + 1);
  return l;
}

static const char *back_reference(matcher *m, const char *s, int l) {
  l = capture_index(m, l);
  size_t len = (size_t)m->cap[l].len;
  if ((size_t)(m->src_end - s) >= len && memcmp(m->cap[l].at, s, len) == 0) return s + len;
  return NULL;
}

static const char *open_capture(matcher *m, const char *s, const char *p, ptrdiff_t what) {
  if (m->level >= MAX_CAPTURES) luaL_error(m->L, "too many captures");
  m->cap[m->level].at = s;
  m->cap[m->level].len = what;
  m->level++;
  const char *r = match(m, s, p);
  if (!r) m->level--;
  return r;
}

static const char *close_capture(matcher *m, const char *s, const char *p) {
  int l = m->level - 1;
  while (l >= 0 && m->cap[l].len != CAP_UNFINISHED) l--;
  if (l < 0) luaL_error(m->L, "invalid pattern capture");
  m->cap[l].len = s - m->cap[l].at;
  const char *r = match(m, s, p);
  if (!r) m->cap[l].len = CAP_UNFINISHED;
  return r;
}

/* Greedy: as many repetitions as match, then back off one at a time. */
static const char *most(matcher *m, const char *s, const char *p, const char *ep) {
  ptrdiff_t n = 0;
  while (single(m, s + n, p, ep)) { n++; step(m); }
  for (; n >= 0; n--) {
    const char *r = match(m, s + n, ep + 1);
    if (r) return r;
  }
  return NULL;
}

/* Lazy: the rest of the pattern first, one more repetition each time. */
static const char *fewest(matcher *m, const char *s, const char *p, const char *ep) {
  for (;;) {
    const char *r = match(m, s, ep + 1);
    if (r) return r;
    if (!single(m, s, p, ep)) return NULL;
    s++;
  }
}

/* Matches pattern p against the subject at s: the end of the match, or
 * NULL.  Tail positions loop instead of recursing, as Lua's own does. */
static const char *match(matcher *m, const char *s, const char *p) {
  if (m->depth-- == 0) luaL_error(m->L, "pattern too complex");
  step(m);
  while (s && p < m->pat_end) {
    const char *ep;
    if (*p == '(') {
      if (p + 1 < m->pat_end && p[1] == ')') s = open_capture(m, s, p + 2, CAP_POSITION);
      else s = open_capture(m, s, p + 1, CAP_UNFINISHED);
      break;
    }
    if (*p == ')') { s = close_capture(m, s, p + 1); break; }
    if (*p == '$' && p + 1 == m->pat_end) {
      if (s != m->src_end) s = NULL;
      break;
    }
    if (*p == '%' && p + 1 < m->pat_end) {
      char c = p[1];
      if (c == 'b') {
        s = balance(m, s, p + 2);
        p += 4;
        continue;
      }
      if (c == 'f') {
        p += 2;
        if (p >= m->pat_end || *p != '[')
          luaL_error(m->L, "missing '[' after '%%f' in pattern");
        ep = class_end(m, p);
        int before = s == m->src ? 0 : (unsigned char)s[-1];
        int here = s < m->src_end ? (unsigned char)*s : 0;
        if (set_has(before, p, ep - 1) || !set_has(here, p, ep - 1)) s = NULL;
        p = ep;
        continue;
      }
      if (c >= '0' && c <= '9') {
        s = back_reference(m, s, c);
        p += 2;
        continue;
      }
    }
    ep = class_end(m, p);
    char q = ep < m->pat_end ? *ep : 0;
    if (!single(m, s, p, ep)) {
      if (q == '*' || q == '?' || q == '-') { p = ep + 1; continue; }
      s = NULL;
      break;
    }
    if (q == '?') {
      const char *r = match(m, s + 1, ep + 1);
      if (r) { s = r; break; }
      p = ep + 1;
      continue;
    }
    if (q == '+') { s = most(m, s + 1, p, ep); break; }
    if (q == '*') { s = most(m, s, p, ep); break; }
    if (q == '-') { s = fewest(m, s, p, ep); break; }
    s++;
    p = ep;
  }
  m->depth++;
  return s;
}

/* Pushes capture i of a match from s to e (the whole match for i == 0
 * when the pattern has no captures).  Returns its length, or
 * CAP_POSITION after pushing a position. */
static ptrdiff_t capture(matcher *m, int i, const char *s, const char *e,
                         const char **at) {
  if (i >= m->level) {
    if (i != 0) luaL_error(m->L, "invalid capture index %%%d", i + 1);
    *at = s;
    return e - s;
  }
  ptrdiff_t len = m->cap[i].len;
  *at = m->cap[i].at;
  if (len == CAP_UNFINISHED) luaL_error(m->L, "unfinished capture");
  if (len == CAP_POSITION) lua_pushinteger(m->L, (m->cap[i].at - m->src) + 1);
  return len;
}

static void push_capture(matcher *m, int i, const char *s, const char *e) {
  const char *at;
  ptrdiff_t len = capture(m, i, s, e, &at);
  if (len != CAP_POSITION) lua_pushlstring(m->L, at, (size_t)len);
}

/* Pushes every capture (or the whole match when there is none and s is
 * given).  Returns how many. */
static int push_captures(matcher *m, const char *s, const char *e) {
  int n = (m->level == 0 && s) ? 1 : m->level;
  luaL_checkstack(m->L, n, "too many captures");
  for (int i = 0; i < n; i++) push_capture(m, i, s, e);
  return n;
}

static void prepare(matcher *m, lua_State *L, const char *s, size_t ls, const char *p,
                    size_t lp) {
  m->L = L;
  m->src = s;
  m->src_end = s + ls;
  m->pat_end = p + lp;
  m->tick = *(eddy_pattern_tick *)lua_touserdata(L, lua_upvalueindex(1));
  m->left = EDDY_PATTERN_TICK;
}

/* string.find's and string.match's start: 1-based, negative from the end. */
static size_t start_at(lua_Integer pos, size_t len) {
  if (pos > 0) return (size_t)pos;
  if (pos == 0) return 1;
  if (pos < -(lua_Integer)len) return 1;
  return len + (size_t)pos + 1;
}

static int plain(const char *p, size_t lp) {
  for (size_t i = 0; i < lp; i++)
    if (p[i] && strchr(SPECIALS, p[i])) return 0;
  return 1;
}

static int find_or_match(lua_State *L, int find) {
  size_t ls, lp;
  const char *s = luaL_checklstring(L, 1, &ls);
  const char *p = luaL_checklstring(L, 2, &lp);
  size_t init = start_at(luaL_optinteger(L, 3, 1), ls) - 1;
  if (init > ls) { luaL_pushfail(L); return 1; }
  if (find && (lua_toboolean(L, 4) || plain(p, lp))) {
    const char *at = lp == 0 ? s + init : memmem(s + init, ls - init, p, lp);
    if (at) {
      lua_pushinteger(L, (at - s) + 1);
      lua_pushinteger(L, (at - s) + (lua_Integer)lp);
      return 2;
    }
    luaL_pushfail(L);
    return 1;
  }
  matcher m;
  int anchor = lp > 0 && *p == '^';
  if (anchor) { p++; lp--; }
  prepare(&m, L, s, ls, p, lp);
  const char *from = s + init;
  do {
    begin(&m);
    const char *e = match(&m, from, p);
    if (e) {
      if (!find) return push_captures(&m, from, e);
      lua_pushinteger(L, (from - s) + 1);
      lua_pushinteger(L, e - s);
      return push_captures(&m, NULL, NULL) + 2;
    }
  } while (from++ < m.src_end && !anchor);
  luaL_pushfail(L);
  return 1;
}

static int str_find(lua_State *L) { return find_or_match(L, 1); }
static int str_match(lua_State *L) { return find_or_match(L, 0); }

typedef struct gmatch_state {
  const char *from, *pattern, *last;
  matcher m;
} gmatch_state;

static int gmatch_next(lua_State *L) {
  gmatch_state *g = lua_touserdata(L, lua_upvalueindex(3));
  g->m.L = L;   /* the iterator may run in another coroutine */
  for (const char *from = g->from; from <= g->m.src_end; from++) {
    begin(&g->m);
    const char *e = match(&g->m, from, g->pattern);
    if (e && e != g->last) {
      g->from = g->last = e;
      return push_captures(&g->m, from, e);
    }
  }
  return 0;
}

static int str_gmatch(lua_State *L) {
  size_t ls, lp;
  const char *s = luaL_checklstring(L, 1, &ls);
  const char *p = luaL_checklstring(L, 2, &lp);
  size_t init = start_at(luaL_optinteger(L, 3, 1), ls) - 1;
  if (init > ls) init = ls + 1;
  eddy_pattern_tick tick = *(eddy_pattern_tick *)lua_touserdata(L, lua_upvalueindex(1));
  lua_settop(L, 2);   /* the iterator keeps the subject and the pattern alive */
  gmatch_state *g = lua_newuserdatauv(L, sizeof *g, 0);
  g->m.L = L;
  g->m.src = s;
  g->m.src_end = s + ls;
  g->m.pat_end = p + lp;
  g->m.tick = tick;
  g->m.left = EDDY_PATTERN_TICK;
  g->from = s + init;
  g->pattern = p;
  g->last = NULL;
  lua_pushcclosure(L, gmatch_next, 3);
  return 1;
}

/* Appends replacement string repl for the match from s to e. */
static void add_string(matcher *m, luaL_Buffer *b, const char *s, const char *e) {
  size_t l;
  const char *r = lua_tolstring(m->L, 3, &l);
  const char *end = r + l, *pct;
  while ((pct = memchr(r, '%', (size_t)(end - r))) != NULL) {
    luaL_addlstring(b, r, (size_t)(pct - r));
    pct++;
    if (pct < end && *pct == '%') {
      luaL_addchar(b, '%');
    } else if (pct < end && *pct == '0') {
      luaL_addlstring(b, s, (size_t)(e - s));
    } else if (pct < end && isdigit((unsigned char)*pct)) {
      const char *at;
      ptrdiff_t len = capture(m, *pct - '1', s, e, &at);
      if (len == CAP_POSITION) luaL_addvalue(b);
      else luaL_addlstring(b, at, (size_t)len);
    } else {
      luaL_error(m->L, "invalid use of '%c' in replacement string", '%');
    }
    r = pct + 1;
  }
  luaL_addlstring(b, r, (size_t)(end - r));
}

/* Appends the replacement of the match from s to e.  Returns 1 when it
 * changed the text. */
static int add_replacement(matcher *m, luaL_Buffer *b, const char *s, const char *e,
                           int type) {
  lua_State *L = m->L;
  if (type == LUA_TFUNCTION) {
    lua_pushvalue(L, 3);
    int n = push_captures(m, s, e);
    lua_call(L, n, 1);
  } else if (type == LUA_TTABLE) {
    push_capture(m, 0, s, e);
    lua_gettable(L, 3);
  } else {
    add_string(m, b, s, e);
    return 1;
  }
  if (!lua_toboolean(L, -1)) {
    lua_pop(L, 1);
    luaL_addlstring(b, s, (size_t)(e - s));
    return 0;
  }
  if (!lua_isstring(L, -1))
    return luaL_error(L, "invalid replacement value (a %s)", luaL_typename(L, -1));
  luaL_addvalue(b);
  return 1;
}

static int str_gsub(lua_State *L) {
  size_t ls, lp;
  const char *src = luaL_checklstring(L, 1, &ls);
  const char *p = luaL_checklstring(L, 2, &lp);
  int type = lua_type(L, 3);
  lua_Integer max = luaL_optinteger(L, 4, (lua_Integer)ls + 1);
  luaL_argexpected(L, type == LUA_TNUMBER || type == LUA_TSTRING ||
                      type == LUA_TFUNCTION || type == LUA_TTABLE, 3,
                   "string/function/table");
  int anchor = lp > 0 && *p == '^';
  if (anchor) { p++; lp--; }
  matcher m;
  prepare(&m, L, src, ls, p, lp);
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  const char *last = NULL;
  lua_Integer n = 0;
  int changed = 0;
  while (n < max) {
    begin(&m);
    const char *e = match(&m, src, p);
    if (e && e != last) {
      n++;
      changed |= add_replacement(&m, &b, src, e, type);
      src = last = e;
    } else if (src < m.src_end) {
      luaL_addchar(&b, *src++);
      step(&m);
    } else {
      break;
    }
    if (anchor) break;
  }
  if (!changed) {
    lua_pushvalue(L, 1);
  } else {
    luaL_addlstring(&b, src, (size_t)(m.src_end - src));
    luaL_pushresult(&b);
  }
  lua_pushinteger(L, n);
  return 2;
}

void eddy_pattern_install(lua_State *L, eddy_pattern_tick tick) {
  static const luaL_Reg fns[] = {
    { "find", str_find }, { "match", str_match }, { "gmatch", str_gmatch },
    { "gsub", str_gsub }, { NULL, NULL }
  };
  int t = lua_absindex(L, -1);
  for (const luaL_Reg *f = fns; f->name; f++) {
    eddy_pattern_tick *u = lua_newuserdatauv(L, sizeof *u, 0);
    *u = tick;
    lua_pushcclosure(L, f->func, 1);
    lua_setfield(L, t, f->name);
  }
}
