/*
 * sandbox.c - handler Lua states with an instruction budget and a memory
 * cap per call.
 */
#include "sandbox.h"
#include "embedded.h"
#include "leddy.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <lualib.h>

/* The count hook runs every HOOK_EVERY VM instructions: the budget is
 * checked to that granularity, and the hook costs about nothing. */
#define HOOK_EVERY 1000

struct eddy_sandbox {
  lua_State *L;
  size_t used;          /* bytes held by the state */
  size_t cap;           /* allocations that would pass this fail */
  size_t call_memory;   /* the per-call allowance */
  int64_t budget;       /* instructions per call */
  int64_t counted;      /* instructions in the running call */
  int over_instructions;
  int over_memory;
  char *traceback;
  char *error;
  char reason[16];
};

static void *alloc(void *ud, void *ptr, size_t osize, size_t nsize) {
  eddy_sandbox *sb = ud;
  size_t old = ptr ? osize : 0;
  if (nsize == 0) {
    free(ptr);
    sb->used -= old;
    return NULL;
  }
  if (nsize > old && sb->used - old + nsize > sb->cap) {
    sb->over_memory = 1;
    return NULL;
  }
  void *p = realloc(ptr, nsize);
  if (!p) return NULL;
  sb->used = sb->used - old + nsize;
  return p;
}

static eddy_sandbox *of(lua_State *L) {
  return *(eddy_sandbox **)lua_getextraspace(L);
}

static void count_hook(lua_State *L, lua_Debug *ar) {
  (void)ar;
  eddy_sandbox *sb = of(L);
  sb->counted += lua_gethookcount(L);
  if (sb->counted > sb->budget) {
    /* From now on the hook runs at every instruction, so the error is
     * raised again right after any pcall that caught it: a handler cannot
     * catch its way past the budget. */
    if (!sb->over_instructions) lua_sethook(L, count_hook, LUA_MASKCOUNT, 1);
    sb->over_instructions = 1;
    luaL_error(L, "instruction limit of %lld exceeded", (long long)sb->budget);
  }
}

/* coroutine.create, with the count hook set on the new thread: hooks are
 * per thread in Lua, and a coroutine made when a handler file loads (no
 * call running, no hook) would otherwise run outside every budget. */
static int co_create(lua_State *L) {
  luaL_checktype(L, 1, LUA_TFUNCTION);
  lua_State *co = lua_newthread(L);
  lua_pushvalue(L, 1);
  lua_xmove(L, co, 1);
  lua_sethook(co, count_hook, LUA_MASKCOUNT, HOOK_EVERY);
  return 1;
}

/* The function coroutine.wrap returns: resumes its coroutine (upvalue 1),
 * raising its errors, as Lua's own wrap does. */
static int co_wrapped(lua_State *L) {
  lua_State *co = lua_tothread(L, lua_upvalueindex(1));
  int narg = lua_gettop(L), nres;
  if (!lua_checkstack(co, narg)) return luaL_error(L, "too many arguments to resume");
  lua_xmove(L, co, narg);
  int status = lua_resume(co, L, narg, &nres);
  if (status == LUA_OK || status == LUA_YIELD) {
    if (!lua_checkstack(L, nres + 1)) return luaL_error(L, "too many results to resume");
    lua_xmove(co, L, nres);
    return nres;
  }
  lua_xmove(co, L, 1);  /* the error */
  if (status != LUA_ERRMEM && lua_type(L, -1) == LUA_TSTRING) {
    luaL_where(L, 1);
    lua_insert(L, -2);
    lua_concat(L, 2);
  }
  return lua_error(L);
}

static int co_wrap(lua_State *L) {
  co_create(L);
  lua_pushcclosure(L, co_wrapped, 1);
  return 1;
}

/* package.preload loader of an embedded module: upvalue 1 is its index. */
static int load_embedded(lua_State *L) {
  const eddy_embedded_module *m =
    &eddy_embedded_modules[lua_tointeger(L, lua_upvalueindex(1))];
  if (luaL_loadbuffer(L, m->source, m->len, m->chunk) != LUA_OK)
    return lua_error(L);
  lua_pushstring(L, m->name);
  lua_call(L, 1, 1);
  return 1;
}

void eddy_sandbox_preload(lua_State *L) {
  luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE);
  lua_pushcfunction(L, luaopen_eddy_core);
  lua_setfield(L, -2, "eddy.core");
  for (int i = 0; eddy_embedded_modules[i].name; i++) {
    lua_pushinteger(L, i);
    lua_pushcclosure(L, load_embedded, 1);
    lua_setfield(L, -2, eddy_embedded_modules[i].name);
  }
  lua_pop(L, 1);
}

eddy_sandbox *eddy_sandbox_new(char *err, size_t errlen) {
  eddy_sandbox *sb = calloc(1, sizeof *sb);
  if (!sb) { snprintf(err, errlen, "out of memory"); return NULL; }
  sb->cap = SIZE_MAX;
  sb->budget = INT64_MAX;
  sb->L = lua_newstate(alloc, sb);
  if (!sb->L) { free(sb); snprintf(err, errlen, "cannot make a Lua state"); return NULL; }
  *(eddy_sandbox **)lua_getextraspace(sb->L) = sb;
  luaL_openlibs(sb->L);
  eddy_sandbox_preload(sb->L);
  lua_getglobal(sb->L, "coroutine");
  lua_pushcfunction(sb->L, co_create);
  lua_setfield(sb->L, -2, "create");
  lua_pushcfunction(sb->L, co_wrap);
  lua_setfield(sb->L, -2, "wrap");
  lua_pop(sb->L, 1);
  return sb;
}

void eddy_sandbox_free(eddy_sandbox *sb) {
  if (!sb) return;
  if (sb->L) lua_close(sb->L);
  free(sb->traceback);
  free(sb->error);
  free(sb);
}

lua_State *eddy_sandbox_state(eddy_sandbox *sb) { return sb->L; }
size_t eddy_sandbox_memory(const eddy_sandbox *sb) { return sb->used; }

void eddy_sandbox_limits(eddy_sandbox *sb, int64_t instructions, size_t memory) {
  sb->budget = instructions > 0 ? instructions : INT64_MAX;
  sb->call_memory = memory;
}

/* The message handler: keeps a traceback beside the error value. */
static int msgh(lua_State *L) {
  eddy_sandbox *sb = of(L);
  free(sb->traceback);
  luaL_traceback(L, L, NULL, 1);
  const char *tb = lua_tostring(L, -1);
  sb->traceback = strdup(tb ? tb : "");
  lua_pop(L, 1);
  return 1;  /* the error value, unchanged */
}

/* Appends a short rendering of the value at idx to out (for error values
 * that are tables).  No allocation through Lua. */
static void render(lua_State *L, int idx, char *out, size_t n) {
  size_t at = strlen(out);
  if (at >= n - 1) return;
  switch (lua_type(L, idx)) {
  case LUA_TSTRING:
    snprintf(out + at, n - at, "\"%.60s\"", lua_tostring(L, idx));
    break;
  case LUA_TNUMBER:
    if (lua_isinteger(L, idx))
      snprintf(out + at, n - at, "%lld", (long long)lua_tointeger(L, idx));
    else
      snprintf(out + at, n - at, "%.14g", (double)lua_tonumber(L, idx));
    break;
  case LUA_TBOOLEAN:
    snprintf(out + at, n - at, "%s", lua_toboolean(L, idx) ? "true" : "false");
    break;
  default:
    snprintf(out + at, n - at, "%s", lua_typename(L, lua_type(L, idx)));
  }
}

static void add(char *out, size_t n, const char *s) {
  size_t at = strlen(out);
  if (at < n - 1) snprintf(out + at, n - at, "%s", s);
}

/* Turns the error value on top into a one-line message (left on top). */
static void describe(lua_State *L, eddy_failure *f) {
  int t = lua_type(L, -1);
  if (t == LUA_TSTRING) return;
  if (t == LUA_TNUMBER) { lua_tostring(L, -1); return; }
  if (t == LUA_TNIL) {
    lua_pop(L, 1);
    lua_pushliteral(L, "error called with nil (no message)");
    return;
  }
  if (t == LUA_TTABLE || t == LUA_TUSERDATA) {
    if (luaL_getmetafield(L, -1, "__name") != LUA_TNIL) {
      if (lua_type(L, -1) == LUA_TSTRING &&
          strcmp(lua_tostring(L, -1), "eddy.Permanent") == 0)
        f->permanent = 1;
      lua_pop(L, 1);
    }
    if (luaL_getmetafield(L, -1, "__tostring") != LUA_TNIL) {
      lua_pop(L, 1);
      luaL_tolstring(L, -1, NULL);
      lua_remove(L, -2);
      return;
    }
  }
  if (t == LUA_TTABLE) {
    char out[400] = "a table value {";
    int tbl = lua_absindex(L, -1);
    int n = 0;
    lua_pushnil(L);
    while (lua_next(L, tbl)) {
      if (n++ == 8) { lua_pop(L, 2); add(out, sizeof out, ", ..."); break; }
      if (n > 1) add(out, sizeof out, ", ");
      if (lua_type(L, -2) == LUA_TSTRING) {
        add(out, sizeof out, lua_tostring(L, -2));
      } else {
        add(out, sizeof out, "[");
        render(L, lua_absindex(L, -2), out, sizeof out);
        add(out, sizeof out, "]");
      }
      add(out, sizeof out, "=");
      render(L, lua_absindex(L, -1), out, sizeof out);
      lua_pop(L, 1);
    }
    add(out, sizeof out, "}");
    lua_pop(L, 1);
    lua_pushstring(L, out);
    return;
  }
  luaL_tolstring(L, -1, NULL);
  lua_remove(L, -2);
}

int eddy_sandbox_call(eddy_sandbox *sb, int nargs, int nresults,
                      eddy_failure *f) {
  lua_State *L = sb->L;
  int fn = lua_gettop(L) - nargs;
  lua_pushcfunction(L, msgh);
  lua_insert(L, fn);
  sb->counted = 0;
  sb->over_instructions = sb->over_memory = 0;
  size_t saved_cap = sb->cap;
  if (sb->call_memory) {
    /* The cap is on the whole state, as the consumer's limit says: what a
     * handler keeps between calls counts too. */
    if (sb->used > sb->call_memory) lua_gc(L, LUA_GCCOLLECT);
    sb->cap = sb->call_memory;
  }
  if (sb->budget != INT64_MAX) lua_sethook(L, count_hook, LUA_MASKCOUNT, HOOK_EVERY);
  int rc = lua_pcall(L, nargs, nresults, fn);
  lua_sethook(L, NULL, 0, 0);
  sb->cap = saved_cap;
  lua_remove(L, fn);
  if (rc == LUA_OK && !sb->over_instructions && !sb->over_memory) return 0;
  if (rc == LUA_OK) {
    /* A limit was hit but the handler caught the error and returned:
     * still a failure. */
    lua_pop(L, nresults < 0 ? lua_gettop(L) - fn + 1 : nresults);
    lua_pushnil(L);
  }
  memset(f, 0, sizeof *f);
  /* The error value is on top; replace it by a one-line message. */
  if (sb->over_instructions) {
    lua_pop(L, 1);
    lua_pushfstring(L, "instruction limit of %I exceeded", (lua_Integer)sb->budget);
    snprintf(sb->reason, sizeof sb->reason, "instructions");
  } else if (rc == LUA_ERRMEM || sb->over_memory) {
    lua_pop(L, 1);
    lua_pushfstring(L, "memory limit of %I bytes exceeded",
                    (lua_Integer)sb->call_memory);
    snprintf(sb->reason, sizeof sb->reason, "memory");
    lua_gc(L, LUA_GCCOLLECT);
  } else {
    describe(L, f);
    snprintf(sb->reason, sizeof sb->reason, f->permanent ? "permanent" : "error");
  }
  free(sb->error);
  const char *e = lua_tostring(L, -1);
  sb->error = strdup(e ? e : "unknown error");
  lua_pop(L, 1);
  f->error = sb->error;
  f->traceback = sb->traceback && rc != LUA_ERRMEM ? sb->traceback : "";
  f->reason = sb->reason;
  return -1;
}
