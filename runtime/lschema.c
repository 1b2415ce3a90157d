/*
 * lschema.c - event schemas compiled to C (see lschema.h).
 *
 * A schema table becomes a tree of nodes holding only the rules it has, so
 * that checking a value costs a few table lookups per declared field and
 * allocates nothing while the value matches.  Enum and const values, and
 * each node's own schema table (for the message), stay Lua values, kept in
 * the compiled schema's user value.
 */
#include "lschema.h"
#include "buf.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>

#define SCHEMA_MT "eddy.schema"
#define MAX_DEPTH 64       /* deeper values are not looked into further */

enum {
  T_STRING = 1, T_NUMBER = 2, T_INTEGER = 4, T_BOOLEAN = 8, T_OBJECT = 16,
  T_ARRAY = 32, T_NULL = 64,
  /* json types only: */ T_EMPTY = 128, T_OTHER = 256
};

typedef struct node node;
struct node {
  int self;                 /* the schema table: index in the user value */
  unsigned types;           /* T_* allowed; 0: no type rule */
  int enum_list;            /* the enum list's index, or 0 */
  int const_value;          /* the const value's index, or 0 */
  int has_min, has_max;
  lua_Number min, max;
  lua_Integer min_len, max_len, min_items, max_items;   /* -1: none */
  int nrequired;
  char **required;
  int nprops;               /* properties, sorted by name */
  char **prop_names;
  node **props;
  int ap;                   /* additionalProperties: 1 true, 0 false, 2 a schema */
  node *ap_schema;
  node *items;
};

typedef struct schema {
  node *root;
  int nvalues;              /* values kept in the user value table */
} schema;

/* ---- compiling ---------------------------------------------------------- */

static void node_free(node *n) {
  if (!n) return;
  for (int i = 0; i < n->nrequired; i++) free(n->required[i]);
  free(n->required);
  for (int i = 0; i < n->nprops; i++) {
    free(n->prop_names[i]);
    node_free(n->props[i]);
  }
  free(n->prop_names);
  free(n->props);
  node_free(n->ap_schema);
  node_free(n->items);
  free(n);
}

/* Keeps the value at idx in the user value table (at vt); its index. */
static int keep(lua_State *L, schema *s, int vt, int idx) {
  lua_pushvalue(L, idx);
  lua_rawseti(L, vt, ++s->nvalues);
  return s->nvalues;
}

static unsigned type_bit(const char *t) {
  static const struct { const char *name; unsigned bit; } names[] = {
    { "string", T_STRING }, { "number", T_NUMBER }, { "integer", T_INTEGER },
    { "boolean", T_BOOLEAN }, { "object", T_OBJECT }, { "array", T_ARRAY },
    { "null", T_NULL },
  };
  for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
    if (strcmp(t, names[i].name) == 0) return names[i].bit;
  return 0;
}

static lua_Integer opt_int(lua_State *L, int t, const char *k) {
  lua_getfield(L, t, k);
  lua_Integer v = lua_isinteger(L, -1) ? lua_tointeger(L, -1) : -1;
  lua_pop(L, 1);
  return v;
}

static int by_name(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

static char *dup(const char *s, size_t n) {
  char *d = malloc(n + 1);
  if (d) { memcpy(d, s, n); d[n] = 0; }
  return d;
}

/* Compiles the schema table at index t; NULL when out of memory (or too
 * deep: a schema table that contains itself). */
static node *compile(lua_State *L, schema *s, int vt, int t, int depth) {
  if (depth > MAX_DEPTH) return NULL;
  luaL_checkstack(L, 8, "schema too deep");
  t = lua_absindex(L, t);
  node *n = calloc(1, sizeof *n);
  if (!n) return NULL;
  n->self = keep(L, s, vt, t);
  n->ap = 1;

  int ty = lua_getfield(L, t, "type");
  if (ty == LUA_TSTRING) {
    n->types = type_bit(lua_tostring(L, -1));
  } else if (ty == LUA_TTABLE) {
    for (lua_Integer i = 1; lua_rawgeti(L, -1, i) == LUA_TSTRING; i++) {
      n->types |= type_bit(lua_tostring(L, -1));
      lua_pop(L, 1);
    }
    lua_pop(L, 1);
  }
  lua_pop(L, 1);

  if (lua_getfield(L, t, "enum") == LUA_TTABLE) n->enum_list = keep(L, s, vt, -1);
  lua_pop(L, 1);
  if (lua_getfield(L, t, "const") != LUA_TNIL) n->const_value = keep(L, s, vt, -1);
  lua_pop(L, 1);
  if (lua_getfield(L, t, "minimum") == LUA_TNUMBER) { n->has_min = 1; n->min = lua_tonumber(L, -1); }
  lua_pop(L, 1);
  if (lua_getfield(L, t, "maximum") == LUA_TNUMBER) { n->has_max = 1; n->max = lua_tonumber(L, -1); }
  lua_pop(L, 1);
  n->min_len = opt_int(L, t, "minLength");
  n->max_len = opt_int(L, t, "maxLength");
  n->min_items = opt_int(L, t, "minItems");
  n->max_items = opt_int(L, t, "maxItems");

  if (lua_getfield(L, t, "required") == LUA_TTABLE) {
    int len = (int)lua_rawlen(L, -1);
    n->required = calloc((size_t)len + 1, sizeof *n->required);
    if (!n->required) goto oom;
    for (int i = 1; i <= len; i++) {
      size_t kl;
      lua_rawgeti(L, -1, i);
      const char *k = lua_tolstring(L, -1, &kl);
      if (k && !(n->required[n->nrequired++] = dup(k, kl))) { lua_pop(L, 2); goto oom; }
      lua_pop(L, 1);
    }
  }
  lua_pop(L, 1);

  if (lua_getfield(L, t, "properties") == LUA_TTABLE) {
    int pt = lua_gettop(L);
    int count = 0;
    lua_pushnil(L);
    while (lua_next(L, pt)) { count++; lua_pop(L, 1); }
    n->prop_names = calloc((size_t)count + 1, sizeof *n->prop_names);
    n->props = calloc((size_t)count + 1, sizeof *n->props);
    if (!n->prop_names || !n->props) { lua_pop(L, 1); goto oom; }
    lua_pushnil(L);
    while (lua_next(L, pt)) {
      if (lua_type(L, -2) == LUA_TSTRING && lua_istable(L, -1)) {
        size_t kl;
        const char *k = lua_tolstring(L, -2, &kl);
        if (!(n->prop_names[n->nprops++] = dup(k, kl))) { lua_pop(L, 3); goto oom; }
      }
      lua_pop(L, 1);
    }
    qsort(n->prop_names, (size_t)n->nprops, sizeof *n->prop_names, by_name);
    for (int i = 0; i < n->nprops; i++) {
      lua_getfield(L, pt, n->prop_names[i]);
      n->props[i] = compile(L, s, vt, -1, depth + 1);
      lua_pop(L, 1);
      if (!n->props[i]) { lua_pop(L, 1); goto oom; }
    }
  }
  lua_pop(L, 1);

  int at = lua_getfield(L, t, "additionalProperties");
  if (at == LUA_TBOOLEAN) {
    n->ap = lua_toboolean(L, -1);
  } else if (at == LUA_TTABLE) {
    n->ap = 2;
    if (!(n->ap_schema = compile(L, s, vt, -1, depth + 1))) { lua_pop(L, 1); goto oom; }
  }
  lua_pop(L, 1);
  if (lua_getfield(L, t, "items") == LUA_TTABLE &&
      !(n->items = compile(L, s, vt, -1, depth + 1))) {
    lua_pop(L, 1);
    goto oom;
  }
  lua_pop(L, 1);
  return n;
oom:
  node_free(n);
  return NULL;
}

static int schema_gc(lua_State *L) {
  schema *s = luaL_checkudata(L, 1, SCHEMA_MT);
  node_free(s->root);
  s->root = NULL;
  return 0;
}

/* ---- checking ----------------------------------------------------------- */

/* Where the walk is: field names and array indices, made into text only
 * for a failure. */
typedef struct walk {
  lua_State *L;
  int vt;                   /* the user value table */
  int depth;
  struct { const char *name; lua_Integer index; } at[MAX_DEPTH];
  /* The failure: */
  const char *kind;
  const node *node;
  int value;                /* stack index of the value that failed */
  const char *child;        /* required / additionalProperties: the field */
  eddy_buf path;
} walk;

static unsigned json_type(lua_State *L, int idx) {
  switch (lua_type(L, idx)) {
  case LUA_TSTRING: return T_STRING;
  case LUA_TBOOLEAN: return T_BOOLEAN;
  case LUA_TNUMBER: {
    if (lua_isinteger(L, idx)) return T_INTEGER;
    lua_Number x = lua_tonumber(L, idx);
    return isfinite(x) && x == floor(x) ? T_INTEGER : T_NUMBER;
  }
  case LUA_TLIGHTUSERDATA: return lua_touserdata(L, idx) == NULL ? T_NULL : T_OTHER;
  case LUA_TTABLE: {
    /* Decoded JSON has string keys in objects and 1..n in arrays; a
     * handler's table goes by its first key, as the encoder does. */
    lua_pushnil(L);
    if (!lua_next(L, idx)) return T_EMPTY;
    int array = lua_isinteger(L, -2);
    lua_pop(L, 2);
    if (array) {
      array = lua_rawgeti(L, idx, 1) != LUA_TNIL;
      lua_pop(L, 1);
    }
    return array ? T_ARRAY : T_OBJECT;
  }
  default: return T_OTHER;
  }
}

static int type_ok(unsigned want, unsigned got) {
  if (want & got) return 1;
  if ((want & T_NUMBER) && got == T_INTEGER) return 1;
  if (got == T_EMPTY && (want & (T_OBJECT | T_ARRAY))) return 1;
  return 0;
}

static int fail(walk *w, const char *kind, const node *n, int value, const char *child) {
  w->kind = kind;
  w->node = n;
  w->value = value;
  w->child = child;
  /* The path, as catalog.lua writes it: a.b[0].c */
  for (int i = 0; i < w->depth; i++) {
    if (w->at[i].name) {
      if (w->path.len) eddy_buf_puts(&w->path, ".");
      eddy_buf_puts(&w->path, w->at[i].name);
    } else {
      eddy_buf_printf(&w->path, "[%lld]", (long long)w->at[i].index);
    }
  }
  if (child) {
    if (w->path.len) eddy_buf_puts(&w->path, ".");
    eddy_buf_puts(&w->path, child);
  }
  return 1;
}

static int deep_equal(lua_State *L, int a, int b, int depth) {
  a = lua_absindex(L, a);
  b = lua_absindex(L, b);
  if (lua_rawequal(L, a, b)) return 1;
  if (!lua_istable(L, a) || !lua_istable(L, b) || depth > MAX_DEPTH) return 0;
  luaL_checkstack(L, 4, "value too deep");
  lua_pushnil(L);
  while (lua_next(L, a)) {
    lua_pushvalue(L, -2);
    lua_rawget(L, b);
    int same = deep_equal(L, -2, -1, depth + 1);
    lua_pop(L, 2);
    if (!same) { lua_pop(L, 1); return 0; }
  }
  lua_pushnil(L);
  while (lua_next(L, b)) {
    lua_pop(L, 1);
    lua_pushvalue(L, -1);
    int missing = lua_rawget(L, a) == LUA_TNIL;
    lua_pop(L, 1);
    if (missing) { lua_pop(L, 1); return 0; }
  }
  return 1;
}

/* A string's length in characters when it is UTF-8, else in bytes (as
 * utf8.len(v) or #v). */
static lua_Integer str_len(const char *s, size_t n) {
  if (!eddy_utf8_valid(s, n)) return (lua_Integer)n;
  lua_Integer c = 0;
  for (size_t i = 0; i < n; i++) c += ((unsigned char)s[i] & 0xC0) != 0x80;
  return c;
}

static int check(walk *w, const node *n, int v);

/* Checks the value on top against n as field or element `name`/`index`,
 * then pops it. */
static int check_child(walk *w, const node *n, const char *name, lua_Integer index) {
  if (w->depth == MAX_DEPTH) { lua_pop(w->L, 1); return 0; }
  w->at[w->depth].name = name;
  w->at[w->depth].index = index;
  w->depth++;
  int r = check(w, n, lua_gettop(w->L));
  w->depth--;
  if (!r) lua_pop(w->L, 1);   /* a failure keeps its value on the stack */
  return r;
}

static int cmp_str(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

static int find_prop(const node *n, const char *k) {
  int lo = 0, hi = n->nprops - 1;
  while (lo <= hi) {
    int mid = (lo + hi) / 2, c = strcmp(k, n->prop_names[mid]);
    if (c == 0) return mid;
    if (c < 0) hi = mid - 1; else lo = mid + 1;
  }
  return -1;
}

/* The fields of the object at v that n does not list, sorted; NULL when
 * none (or out of memory).  The strings are the keys' own (v keeps them);
 * keys that are not strings (a handler's table) are not fields. */
static const char **others(lua_State *L, const node *n, int v, int *count) {
  const char **list = NULL;
  int len = 0, cap = 0;
  lua_pushnil(L);
  while (lua_next(L, v)) {
    lua_pop(L, 1);
    if (lua_type(L, -1) != LUA_TSTRING) continue;
    const char *k = lua_tostring(L, -1);
    if (find_prop(n, k) >= 0) continue;
    if (len == cap) {
      cap = cap ? 2 * cap : 8;
      const char **l = realloc(list, (size_t)cap * sizeof *l);
      if (!l) { free(list); lua_pop(L, 1); *count = 0; return NULL; }
      list = l;
    }
    list[len++] = k;
  }
  if (len) qsort(list, (size_t)len, sizeof *list, cmp_str);
  *count = len;
  return list;
}

static int check(walk *w, const node *n, int v) {
  lua_State *L = w->L;
  unsigned got = 0;
  if (n->types) {
    got = json_type(L, v);
    if (!type_ok(n->types, got)) return fail(w, "type", n, v, NULL);
  }
  if (n->enum_list) {
    lua_rawgeti(L, w->vt, n->enum_list);
    int ok = 0;
    for (lua_Integer i = 1; !ok && lua_rawgeti(L, -1, i) != LUA_TNIL; i++) {
      ok = deep_equal(L, -1, v, 0);
      lua_pop(L, 1);
    }
    lua_pop(L, ok ? 1 : 2);   /* the nil that ended the loop, when it did */
    if (!ok) return fail(w, "enum", n, v, NULL);
  }
  if (n->const_value) {
    lua_rawgeti(L, w->vt, n->const_value);
    int ok = deep_equal(L, -1, v, 0);
    lua_pop(L, 1);
    if (!ok) return fail(w, "const", n, v, NULL);
  }
  int t = lua_type(L, v);
  if (t == LUA_TNUMBER && (n->has_min || n->has_max)) {
    lua_Number x = lua_tonumber(L, v);
    if (n->has_min && x < n->min) return fail(w, "minimum", n, v, NULL);
    if (n->has_max && x > n->max) return fail(w, "maximum", n, v, NULL);
  } else if (t == LUA_TSTRING && (n->min_len >= 0 || n->max_len >= 0)) {
    size_t bytes;
    const char *s = lua_tolstring(L, v, &bytes);
    lua_Integer len = str_len(s, bytes);
    if (n->min_len >= 0 && len < n->min_len) return fail(w, "minLength", n, v, NULL);
    if (n->max_len >= 0 && len > n->max_len) return fail(w, "maxLength", n, v, NULL);
  }
  if (t != LUA_TTABLE) return 0;
  if (!got) got = json_type(L, v);
  int object = got == T_OBJECT || (got == T_EMPTY && !n->items);
  int array = got == T_ARRAY || (got == T_EMPTY && n->items);
  luaL_checkstack(L, 6, "value too deep");
  if (object) {
    for (int i = 0; i < n->nrequired; i++) {
      int missing = lua_getfield(L, v, n->required[i]) == LUA_TNIL;
      lua_pop(L, 1);
      if (missing) return fail(w, "required", n, v, n->required[i]);
    }
    for (int i = 0; i < n->nprops; i++) {
      if (lua_getfield(L, v, n->prop_names[i]) == LUA_TNIL) { lua_pop(L, 1); continue; }
      if (check_child(w, n->props[i], n->prop_names[i], 0)) return 1;
    }
    if (n->ap != 1) {
      int count;
      const char **list = others(L, n, v, &count);
      for (int i = 0; i < count; i++) {
        if (n->ap == 0) {
          int r = fail(w, "additionalProperties", n, v, list[i]);
          free(list);
          return r;
        }
        lua_getfield(L, v, list[i]);
        if (check_child(w, n->ap_schema, list[i], 0)) { free(list); return 1; }
      }
      free(list);
    }
  }
  if (array) {
    lua_Integer len = (lua_Integer)lua_rawlen(L, v);
    if (n->min_items >= 0 && len < n->min_items) return fail(w, "minItems", n, v, NULL);
    if (n->max_items >= 0 && len > n->max_items) return fail(w, "maxItems", n, v, NULL);
    if (n->items)
      for (lua_Integer i = 1; i <= len; i++) {
        lua_rawgeti(L, v, i);
        if (check_child(w, n->items, NULL, i - 1)) return 1;
      }
  }
  return 0;
}

/* s:check(value) -> nothing, or kind, path, schema table, value. */
static int schema_check(lua_State *L) {
  schema *s = luaL_checkudata(L, 1, SCHEMA_MT);
  luaL_checkany(L, 2);
  if (!s->root) return 0;
  lua_settop(L, 2);
  lua_getiuservalue(L, 1, 1);
  walk w = { .L = L, .vt = 3, .path = EDDY_BUF_INIT };
  if (!check(&w, s->root, 2)) return 0;
  lua_pushstring(L, w.kind);
  lua_pushlstring(L, w.path.data ? w.path.data : "", w.path.len);
  eddy_buf_free(&w.path);
  lua_rawgeti(L, w.vt, w.node->self);
  lua_pushvalue(L, w.value);
  return 4;
}

int eddy_lschema_compile(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  schema *s = lua_newuserdatauv(L, sizeof *s, 1);
  memset(s, 0, sizeof *s);
  if (luaL_newmetatable(L, SCHEMA_MT)) {
    lua_pushcfunction(L, schema_gc);
    lua_setfield(L, -2, "__gc");
    lua_createtable(L, 0, 1);
    lua_pushcfunction(L, schema_check);
    lua_setfield(L, -2, "check");
    lua_setfield(L, -2, "__index");
  }
  lua_setmetatable(L, -2);
  lua_newtable(L);
  int vt = lua_gettop(L);
  s->root = compile(L, s, vt, 1, 0);
  if (!s->root) return luaL_error(L, "schema_compile: out of memory or a schema nested too deep");
  lua_setiuservalue(L, -2, 1);
  return 1;
}
