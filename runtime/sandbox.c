/*
 * sandbox.c - handler Lua states: limits per call, and what handler code
 * may not do (see sandbox.h).
 */
#include "sandbox.h"
#include "embedded.h"
#include "errors.h"
#include "leddy.h"
#include "lpattern.h"

#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <lauxlib.h>
#include <lualib.h>

/* The count hook runs every HOOK_EVERY VM instructions: the budget and the
 * clock are checked to that granularity, and the hook costs about
 * nothing. */
#define HOOK_EVERY 1000
/* Lua code runs between calls only in finalizers (__gc), which handler
 * code cannot make (setmetatable_nogc) and Lua runs with hooks off; should
 * the hook run outside a call anyway, this is its budget. */
#define IDLE_INSTRUCTIONS 10000000
/* An error value's __tostring runs with this budget and time. */
#define DESCRIBE_INSTRUCTIONS 1000000
#define DESCRIBE_MS 1000
/* Lua warnings logged per state per second, at most. */
#define WARNINGS_PER_SECOND 10

/* The eddy library modules loaded into every sandbox before handler code
 * can run, so that they keep the functions handler code cannot reach. */
static const char *const LIBRARY[] = { "eddy", "eddy.catalog", "eddy.app", "eddy.saga", NULL };

struct eddy_sandbox {
  lua_State *L;
  size_t used;          /* bytes held by the state */
  size_t charged;       /* bytes the runtime holds for the running call */
  size_t cap;           /* allocations that would pass this fail */
  size_t call_memory;   /* the per-call allowance */
  int64_t budget;       /* instructions per call */
  int64_t counted;      /* instructions in the running call */
  int64_t timeout_ms;   /* per call, 0: none */
  int64_t deadline;     /* coarse monotonic ms the running call must end by, 0: none */
  int in_call;
  int over_instructions;
  int over_memory;
  int over_time;
  int strict_made;      /* a strict environment exists: the string metatable is locked */
  /* Line tracking for eddy.app (eddy.sandbox.track). */
  char *track_source;
  int last_line;
  /* Lua warnings, gathered piece by piece. */
  int warn_on;
  char warn[512];
  size_t warn_len;
  int64_t warn_second;
  int warn_count;
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
  if (nsize > old && sb->used - old + nsize + sb->charged > sb->cap) {
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

/* A coarse monotonic clock (a few ms of resolution, a few ns a read): the
 * hook reads it every HOOK_EVERY instructions. */
static int64_t coarse_ms(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC_COARSE, &t);
  return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

static void hook(lua_State *L, lua_Debug *ar);

/* A timeout as the app gives it: "30s", or "1500ms". */
static const char *duration(int64_t ms, char *out, size_t n) {
  if (ms % 1000 == 0) snprintf(out, n, "%llds", (long long)(ms / 1000));
  else snprintf(out, n, "%lldms", (long long)ms);
  return out;
}

/* Sets the hook on thread L, every `every` instructions, with line events
 * while eddy.app tracks a file's lines. */
static void arm(lua_State *L, eddy_sandbox *sb, int every) {
  int mask = LUA_MASKCOUNT | (sb->track_source ? LUA_MASKLINE : 0);
  lua_sethook(L, hook, mask, every);
}

/* Raises when the running call (or finalizer) is past a limit.  Once
 * past, the hook runs at every instruction, so the error is raised again
 * right after any pcall that caught it: a handler cannot catch its way
 * past a limit. */
static void check(lua_State *L, eddy_sandbox *sb) {
  if (sb->counted > (sb->in_call ? sb->budget : IDLE_INSTRUCTIONS)) {
    if (!sb->over_instructions) arm(L, sb, 1);
    sb->over_instructions = 1;
    if (!sb->in_call) {
      sb->counted = 0;
      luaL_error(L, "instruction limit of %d exceeded in a finalizer", IDLE_INSTRUCTIONS);
    }
    luaL_error(L, "instruction limit of %lld exceeded", (long long)sb->budget);
  }
  if (sb->deadline && coarse_ms() >= sb->deadline) {
    if (!sb->over_time) arm(L, sb, 1);
    sb->over_time = 1;
    char d[32];
    luaL_error(L, "timeout of %s exceeded", duration(sb->timeout_ms, d, sizeof d));
  }
}

static void hook(lua_State *L, lua_Debug *ar) {
  eddy_sandbox *sb = of(L);
  if (ar->event == LUA_HOOKLINE) {
    if (sb->track_source && lua_getinfo(L, "S", ar) &&
        strcmp(ar->source, sb->track_source) == 0)
      sb->last_line = ar->currentline;
    return;
  }
  sb->counted += lua_gethookcount(L);
  check(L, sb);
}

void eddy_sandbox_tick(lua_State *L, int64_t steps) {
  eddy_sandbox *sb = of(L);
  sb->counted += steps;
  check(L, sb);
}

/* The pattern functions' tick. */
static void pattern_tick(lua_State *L, int64_t steps) { eddy_sandbox_tick(L, steps); }

/* ---- what handler code may not do ------------------------------------- */

/* A function that is not available to handlers: raises, naming it.
 * Upvalue 1: its name; upvalue 2: what to do instead, or nil. */
static int unavailable(lua_State *L) {
  const char *hint = lua_tostring(L, lua_upvalueindex(2));
  return luaL_error(L, "%s is not available in eddy handlers%s%s",
                    lua_tostring(L, lua_upvalueindex(1)), hint ? ": " : "", hint ? hint : "");
}

static void set_unavailable(lua_State *L, int t, const char *field, const char *name,
                            const char *hint) {
  lua_pushstring(L, name);
  if (hint) lua_pushstring(L, hint);
  else lua_pushnil(L);
  lua_pushcclosure(L, unavailable, 2);
  lua_setfield(L, t, field);
}

/* coroutine.create, with the hook set on the new thread: hooks are per
 * thread in Lua, and a coroutine would otherwise run outside every
 * limit. */
static int co_create(lua_State *L) {
  luaL_checktype(L, 1, LUA_TFUNCTION);
  lua_State *co = lua_newthread(L);
  lua_pushvalue(L, 1);
  lua_xmove(L, co, 1);
  arm(co, of(L), HOOK_EVERY);
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

/* load(chunk [, name [, mode [, env]]]), text only: Lua 5.4 has no
 * bytecode verifier, and a corrupted binary chunk crashes the process.
 * Upvalue 1: the stock load; upvalue 2: the environment chunks get when
 * none is given (nil: the global one). */
static int load_text(lua_State *L) {
  int n = lua_gettop(L);
  const char *mode = luaL_optstring(L, 3, "bt");
  if (!strchr(mode, 't'))
    return luaL_error(L, "load: binary chunks are not available in eddy handlers");
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_pushvalue(L, 1);
  if (n >= 2) lua_pushvalue(L, 2);
  else lua_pushnil(L);
  lua_pushliteral(L, "t");
  if (n >= 4) lua_pushvalue(L, 4);
  else if (!lua_isnil(L, lua_upvalueindex(2))) lua_pushvalue(L, lua_upvalueindex(2));
  else { lua_call(L, 3, LUA_MULTRET); return lua_gettop(L) - n; }
  lua_call(L, 4, LUA_MULTRET);
  return lua_gettop(L) - n;
}

/* loadfile(file [, mode [, env]]), text only; a file must be named (with
 * none, the stock one reads standard input, which would block). */
static int loadfile_text(lua_State *L) {
  const char *file = luaL_checkstring(L, 1);
  const char *mode = luaL_optstring(L, 2, "bt");
  int env = !lua_isnone(L, 3);
  if (!strchr(mode, 't'))
    return luaL_error(L, "loadfile: binary chunks are not available in eddy handlers");
  if (luaL_loadfilex(L, file, "t") != LUA_OK) {
    luaL_pushfail(L);
    lua_insert(L, -2);
    return 2;
  }
  if (env) {
    lua_pushvalue(L, 3);
    if (!lua_setupvalue(L, -2, 1)) lua_pop(L, 1);
  }
  return 1;
}

static int dofile_text(lua_State *L) {
  const char *file = luaL_checkstring(L, 1);
  lua_settop(L, 1);
  if (luaL_loadfilex(L, file, "t") != LUA_OK) return lua_error(L);
  lua_call(L, 0, LUA_MULTRET);
  return lua_gettop(L) - 1;
}

/* package.searchers' Lua searcher, text only. */
static int search_lua(lua_State *L) {
  const char *name = luaL_checkstring(L, 1);
  lua_getglobal(L, "package");
  lua_getfield(L, -1, "searchpath");
  lua_pushstring(L, name);
  lua_getfield(L, -3, "path");
  lua_call(L, 2, 2);
  if (lua_isnil(L, -2)) return 1;   /* the message of the paths tried */
  const char *file = lua_tostring(L, -2);
  if (luaL_loadfilex(L, file, "t") != LUA_OK)
    return luaL_error(L, "error loading module '%s' from file '%s':\n\t%s", name, file,
                      lua_tostring(L, -1));
  lua_pushstring(L, file);
  return 2;
}

/* collectgarbage, with "stop" doing nothing: the memory cap needs the
 * collector.  Upvalue 1: the stock one. */
static int collect_garbage(lua_State *L) {
  const char *opt = luaL_optstring(L, 1, "collect");
  if (strcmp(opt, "stop") == 0) { lua_pushinteger(L, 0); return 1; }
  int n = lua_gettop(L);
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_insert(L, 1);
  lua_call(L, n, LUA_MULTRET);
  return lua_gettop(L);
}

/* os.setlocale, reading only: the locale belongs to the whole process,
 * and changing it would change how every thread reads and writes
 * numbers.  Upvalue 1: the stock one. */
static int setlocale_read(lua_State *L) {
  if (!lua_isnoneornil(L, 1))
    return luaL_error(L, "os.setlocale can only read the locale in eddy handlers "
                      "(it belongs to the whole process)");
  int n = lua_gettop(L);
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_insert(L, 1);
  lua_call(L, n, LUA_MULTRET);
  return lua_gettop(L);
}

/* setmetatable, refusing a metatable with __gc: Lua runs finalizers with
 * hooks off (lgc.c), so a finalizer that loops could never be stopped,
 * in a call or between calls.  (A __gc field added after setmetatable
 * makes no finalizer: Lua marks objects only here.)  Upvalue 1: the stock
 * one. */
static int setmetatable_nogc(lua_State *L) {
  if (lua_type(L, 2) == LUA_TTABLE) {
    lua_pushliteral(L, "__gc");
    if (lua_rawget(L, 2) != LUA_TNIL)
      return luaL_error(L, "setmetatable: __gc metamethods are not available in eddy "
                        "handlers (a finalizer runs where no limit can stop it)");
    lua_pop(L, 1);
  }
  int n = lua_gettop(L);
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_insert(L, 1);
  lua_call(L, n, LUA_MULTRET);
  return lua_gettop(L);
}

/* Wraps field `name` of the table at t in a closure of fn with the stock
 * function as its upvalue. */
static void wrap(lua_State *L, int t, const char *name, lua_CFunction fn) {
  lua_getfield(L, t, name);
  lua_pushcclosure(L, fn, 1);
  lua_setfield(L, t, name);
}

/* The debug functions handlers keep: those that only read. */
static const char *const DEBUG_KEPT[] = {
  "traceback", "getinfo", "getlocal", "getupvalue", "getmetatable", "gethook",
  "upvalueid", "getuservalue", NULL
};
static const char *const DEBUG_REMOVED[] = {
  "sethook", "setlocal", "setupvalue", "upvaluejoin", "setuservalue", "setmetatable",
  "getregistry", "debug", "setcstacklimit", NULL
};

/* The global environment every handler file sees. */
static void restrict_globals(lua_State *L) {
  lua_pushglobaltable(L);
  int g = lua_gettop(L);
  lua_getglobal(L, "os");
  set_unavailable(L, lua_gettop(L), "exit", "os.exit",
                  "return, or raise an error, and eddy goes on");
  wrap(L, lua_gettop(L), "setlocale", setlocale_read);
  lua_pop(L, 1);
  /* A new debug table: the library keeps the stock one. */
  lua_getglobal(L, "debug");
  int stock = lua_gettop(L);
  lua_newtable(L);
  for (int i = 0; DEBUG_KEPT[i]; i++) {
    lua_getfield(L, stock, DEBUG_KEPT[i]);
    lua_setfield(L, -2, DEBUG_KEPT[i]);
  }
  for (int i = 0; DEBUG_REMOVED[i]; i++) {
    char name[40];
    snprintf(name, sizeof name, "debug.%s", DEBUG_REMOVED[i]);
    set_unavailable(L, lua_gettop(L), DEBUG_REMOVED[i], name, NULL);
  }
  lua_pushvalue(L, -1);
  lua_setfield(L, g, "debug");
  luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
  lua_insert(L, -2);
  lua_setfield(L, -2, "debug");
  lua_pop(L, 2);
  lua_getfield(L, g, "load");
  lua_pushnil(L);
  lua_pushcclosure(L, load_text, 2);
  lua_setfield(L, g, "load");
  lua_pushcfunction(L, loadfile_text);
  lua_setfield(L, g, "loadfile");
  lua_pushcfunction(L, dofile_text);
  lua_setfield(L, g, "dofile");
  wrap(L, g, "collectgarbage", collect_garbage);
  wrap(L, g, "setmetatable", setmetatable_nogc);
  lua_getglobal(L, "package");
  lua_getfield(L, -1, "searchers");
  lua_pushcfunction(L, search_lua);
  lua_rawseti(L, -2, 2);
  lua_pop(L, 2);
  lua_getglobal(L, "string");
  eddy_pattern_install(L, pattern_tick);
  lua_pop(L, 1);
  lua_getglobal(L, "coroutine");
  lua_pushcfunction(L, co_create);
  lua_setfield(L, -2, "create");
  lua_pushcfunction(L, co_wrap);
  lua_setfield(L, -2, "wrap");
  lua_pop(L, 2);
}

/* ---- the strict environment ------------------------------------------- */

#define STRICT_LOADED "eddy.sandbox.strict"   /* registry: modules required in strict files */

static const char *const STRICT_BASE[] = {
  "assert", "error", "getmetatable", "ipairs", "next", "pairs", "pcall", "print",
  "rawequal", "rawget", "rawlen", "rawset", "select", "setmetatable", "tonumber",
  "tostring", "type", "xpcall", "_VERSION", "collectgarbage", NULL
};
static const char *const STRICT_LIBS[] = { "string", "table", "math", "utf8", "coroutine", NULL };
static const char *const STRICT_OS[] = { "time", "clock", "date", "difftime", NULL };
/* The eddy library as strict files see it: no eddy.open (a store is a
 * file). */
static const char *const STRICT_EDDY_HIDDEN[] = { "open", NULL };

static void copy_table(lua_State *L, int from) {
  lua_newtable(L);
  lua_pushnil(L);
  while (lua_next(L, from)) {
    lua_pushvalue(L, -2);
    lua_insert(L, -2);
    lua_rawset(L, -4);
  }
}

static int name_ok(const char *s) {
  if (!*s) return 0;
  for (const char *p = s; *p; p++) {
    int c = (unsigned char)*p;
    if (c == '.') { if (p == s || p[1] == '.' || p[1] == 0) return 0; continue; }
    if (!(c == '_' || c == '-' || (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') ||
          (c >= 'A' && c <= 'Z')))
      return 0;
  }
  return 1;
}

/* require in a strict file: the eddy library (less what touches files),
 * the libraries of the strict environment, and Lua modules found on
 * package.path, each run once per state in a strict environment of its
 * own.  Upvalue 1: the environment of the file that requires. */
static int strict_require(lua_State *L) {
  const char *name = luaL_checkstring(L, 1);
  lua_settop(L, 1);
  for (int i = 0; STRICT_LIBS[i]; i++) {
    if (strcmp(name, STRICT_LIBS[i]) == 0) {
      lua_getfield(L, lua_upvalueindex(1), name);
      return 1;
    }
  }
  luaL_getsubtable(L, LUA_REGISTRYINDEX, STRICT_LOADED);
  int cache = lua_gettop(L);
  if (lua_getfield(L, cache, name) != LUA_TNIL) return 1;
  lua_pop(L, 1);
  if (strcmp(name, "eddy") == 0) {
    luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
    lua_getfield(L, -1, "eddy");
    copy_table(L, lua_gettop(L));
    for (int i = 0; STRICT_EDDY_HIDDEN[i]; i++) {
      lua_pushnil(L);
      lua_setfield(L, -2, STRICT_EDDY_HIDDEN[i]);
    }
    lua_pushvalue(L, -1);
    lua_setfield(L, cache, name);
    return 1;
  }
  if (!name_ok(name) || strncmp(name, "eddy.", 5) == 0)
    return luaL_error(L, "require: module '%s' is not available in the strict sandbox", name);
  luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
  lua_getfield(L, -1, "package");
  lua_getfield(L, -1, "searchpath");
  lua_pushstring(L, name);
  lua_getfield(L, -3, "path");
  lua_call(L, 2, 2);
  if (lua_isnil(L, -2))
    return luaL_error(L, "module '%s' not found in the strict sandbox (it has the eddy "
                      "library and Lua modules on package.path)", name);
  const char *file = lua_tostring(L, -2);
  if (luaL_loadfilex(L, file, "t") != LUA_OK)
    return luaL_error(L, "error loading module '%s' from file '%s':\n\t%s", name, file,
                      lua_tostring(L, -1));
  eddy_sandbox_strict_env(L);
  lua_setupvalue(L, -2, 1);
  lua_pushvalue(L, 1);
  lua_pushstring(L, file);
  lua_call(L, 2, 1);
  if (lua_isnil(L, -1)) { lua_pop(L, 1); lua_pushboolean(L, 1); }
  lua_pushvalue(L, -1);
  lua_setfield(L, cache, name);
  return 1;
}

void eddy_sandbox_strict_env(lua_State *L) {
  eddy_sandbox *sb = of(L);
  if (!sb->strict_made) {
    /* Strings share one metatable, whose __index is the string table of
     * the default environment: locked, so that strict code cannot change
     * what other handlers' strings do. */
    lua_pushliteral(L, "");
    if (lua_getmetatable(L, -1)) {
      lua_pushliteral(L, "string");
      lua_setfield(L, -2, "__metatable");
      lua_pop(L, 1);
    }
    lua_pop(L, 1);
    sb->strict_made = 1;
  }
  lua_newtable(L);
  int env = lua_gettop(L);
  lua_pushglobaltable(L);
  int g = lua_gettop(L);
  for (int i = 0; STRICT_BASE[i]; i++) {
    lua_getfield(L, g, STRICT_BASE[i]);
    lua_setfield(L, env, STRICT_BASE[i]);
  }
  for (int i = 0; STRICT_LIBS[i]; i++) {
    lua_getfield(L, g, STRICT_LIBS[i]);
    copy_table(L, lua_gettop(L));
    lua_setfield(L, env, STRICT_LIBS[i]);
    lua_pop(L, 1);
  }
  lua_getfield(L, g, "os");
  lua_newtable(L);
  for (int i = 0; STRICT_OS[i]; i++) {
    lua_getfield(L, -2, STRICT_OS[i]);
    lua_setfield(L, -2, STRICT_OS[i]);
  }
  lua_setfield(L, env, "os");
  lua_pop(L, 1);
  lua_getfield(L, g, "debug");
  lua_newtable(L);
  lua_getfield(L, -2, "traceback");
  lua_setfield(L, -2, "traceback");
  lua_setfield(L, env, "debug");
  lua_pop(L, 1);
  /* load: text only, and chunks get this environment, not the global
   * one (which has io). */
  lua_getfield(L, g, "load");
  lua_getupvalue(L, -1, 1);   /* the stock load */
  lua_pushvalue(L, env);
  lua_pushcclosure(L, load_text, 2);
  lua_setfield(L, env, "load");
  lua_pop(L, 1);
  lua_pushvalue(L, env);
  lua_pushcclosure(L, strict_require, 1);
  lua_setfield(L, env, "require");
  lua_pushvalue(L, env);
  lua_setfield(L, env, "_G");
  lua_pop(L, 1);   /* the global table */
}

/* ---- eddy.sandbox: what the library's loader needs -------------------- */

/* track(source): notes the last line of source that runs, from now on. */
static int lib_track(lua_State *L) {
  eddy_sandbox *sb = of(L);
  const char *src = luaL_checkstring(L, 1);
  free(sb->track_source);
  sb->track_source = strdup(src);
  sb->last_line = 0;
  arm(L, sb, HOOK_EVERY);
  return 0;
}

/* line() -> the last line of the tracked source that ran (nil: none). */
static int lib_line(lua_State *L) {
  eddy_sandbox *sb = of(L);
  if (sb->last_line > 0) lua_pushinteger(L, sb->last_line);
  else lua_pushnil(L);
  return 1;
}

/* untrack(): stops noting lines. */
static int lib_untrack(lua_State *L) {
  eddy_sandbox *sb = of(L);
  free(sb->track_source);
  sb->track_source = NULL;
  arm(L, sb, HOOK_EVERY);
  return 0;
}

static int lib_strict_env(lua_State *L) {
  eddy_sandbox_strict_env(L);
  return 1;
}

static int luaopen_sandbox(lua_State *L) {
  static const luaL_Reg fns[] = {
    { "track", lib_track }, { "line", lib_line }, { "untrack", lib_untrack },
    { "strict_env", lib_strict_env },
    { NULL, NULL }
  };
  luaL_newlib(L, fns);
  return 1;
}

/* ---- the state ---------------------------------------------------------- */

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

/* An error outside every protected call: nothing can continue.  Says so
 * before Lua aborts the process (the next start quarantines the message
 * that was in flight: worker.c). */
static int panic(lua_State *L) {
  const char *m = lua_tostring(L, -1);
  eddy_logf("ERROR", "unprotected error in a handler state: %s", m ? m : "(not a string)");
  return 0;
}

/* Lua warnings (an error in a finalizer, warn() from handler code): logged,
 * at most WARNINGS_PER_SECOND a second. */
static void warned(void *ud, const char *msg, int tocont) {
  eddy_sandbox *sb = ud;
  if (!tocont && sb->warn_len == 0 && msg[0] == '@') {
    if (strcmp(msg, "@on") == 0) sb->warn_on = 1;
    else if (strcmp(msg, "@off") == 0) sb->warn_on = 0;
    return;
  }
  size_t n = strlen(msg), room = sizeof sb->warn - 1 - sb->warn_len;
  if (n > room) n = room;
  memcpy(sb->warn + sb->warn_len, msg, n);
  sb->warn_len += n;
  sb->warn[sb->warn_len] = 0;
  if (tocont) return;
  int64_t second = coarse_ms() / 1000;
  if (second != sb->warn_second) { sb->warn_second = second; sb->warn_count = 0; }
  if (sb->warn_on && sb->warn_count++ < WARNINGS_PER_SECOND)
    eddy_logf("WARN", "Lua warning: %s", sb->warn);
  sb->warn_len = 0;
}

eddy_sandbox *eddy_sandbox_new(char *err, size_t errlen) {
  eddy_sandbox *sb = calloc(1, sizeof *sb);
  if (!sb) { snprintf(err, errlen, "out of memory"); return NULL; }
  sb->cap = SIZE_MAX;
  sb->budget = INT64_MAX;
  sb->warn_on = 1;
  sb->L = lua_newstate(alloc, sb);
  if (!sb->L) { free(sb); snprintf(err, errlen, "cannot make a Lua state"); return NULL; }
  lua_State *L = sb->L;
  *(eddy_sandbox **)lua_getextraspace(L) = sb;
  lua_atpanic(L, panic);
  lua_setwarnf(L, warned, sb);
  arm(L, sb, HOOK_EVERY);
  /* Loading the library is code too: under the load limits. */
  eddy_sandbox_limits(sb, EDDY_LOAD_INSTRUCTIONS, EDDY_LOAD_MEMORY, EDDY_LOAD_TIMEOUT_MS);
  luaL_openlibs(L);
  eddy_sandbox_preload(L);
  luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE);
  lua_pushcfunction(L, luaopen_sandbox);
  lua_setfield(L, -2, "eddy.sandbox");
  lua_pop(L, 1);
  eddy_failure f;
  for (int i = 0; LIBRARY[i]; i++) {
    lua_getglobal(L, "require");
    lua_pushstring(L, LIBRARY[i]);
    if (eddy_sandbox_call(sb, 1, 0, &f) != 0) {
      snprintf(err, errlen, "cannot load %s: %s", LIBRARY[i], f.error);
      eddy_sandbox_free(sb);
      return NULL;
    }
  }
  restrict_globals(L);
  return sb;
}

void eddy_sandbox_free(eddy_sandbox *sb) {
  if (!sb) return;
  if (sb->L) {
    /* Finalizers run in lua_close: within the idle budget, no cap. */
    sb->cap = SIZE_MAX;
    sb->in_call = 0;
    sb->counted = 0;
    lua_close(sb->L);
  }
  free(sb->track_source);
  free(sb->traceback);
  free(sb->error);
  free(sb);
}

lua_State *eddy_sandbox_state(eddy_sandbox *sb) { return sb->L; }
size_t eddy_sandbox_memory(const eddy_sandbox *sb) { return sb->used; }

void eddy_sandbox_limits(eddy_sandbox *sb, int64_t instructions, size_t memory,
                         int64_t timeout_ms) {
  sb->budget = instructions > 0 ? instructions : INT64_MAX;
  sb->call_memory = memory;
  sb->timeout_ms = timeout_ms > 0 ? timeout_ms : 0;
}

int eddy_sandbox_charge(eddy_sandbox *sb, size_t bytes) {
  if (sb->in_call && sb->used + sb->charged + bytes > sb->cap) {
    sb->over_memory = 1;
    return -1;
  }
  sb->charged += bytes;
  return 0;
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
 * that are tables).  No metamethods, no allocation through Lua. */
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

static int tostring_value(lua_State *L) {
  luaL_tolstring(L, 1, NULL);
  return 1;
}

/* Replaces the value on top by what its __tostring gives, run in a
 * protected call with a small budget and time of its own: a __tostring
 * that raises or loops is an error value like another.  Returns 0, or -1
 * (the value left as it was). */
static int run_tostring(lua_State *L, eddy_sandbox *sb) {
  int64_t budget = sb->budget, timeout = sb->timeout_ms;
  int in_call = sb->in_call;
  sb->budget = DESCRIBE_INSTRUCTIONS;
  sb->timeout_ms = DESCRIBE_MS;
  sb->counted = 0;
  sb->over_instructions = sb->over_time = 0;
  sb->deadline = coarse_ms() + DESCRIBE_MS + 1;
  sb->in_call = 1;
  size_t cap = sb->cap;
  if (sb->call_memory) sb->cap = sb->call_memory;
  sb->over_memory = 0;
  arm(L, sb, HOOK_EVERY);
  lua_pushcfunction(L, tostring_value);
  lua_pushvalue(L, -2);
  int rc = lua_pcall(L, 1, 1, 0);
  sb->cap = cap;
  int ok = rc == LUA_OK && !sb->over_instructions && !sb->over_time && !sb->over_memory;
  sb->over_memory = 0;
  sb->budget = budget;
  sb->timeout_ms = timeout;
  sb->in_call = in_call;
  sb->deadline = 0;
  sb->over_instructions = sb->over_time = 0;
  arm(L, sb, HOOK_EVERY);
  if (!ok) { lua_pop(L, 1); return -1; }
  lua_remove(L, -2);
  return 0;
}

/* Turns the error value on top into a one-line message (left on top). */
static void describe(lua_State *L, eddy_sandbox *sb, eddy_failure *f) {
  int t = lua_type(L, -1);
  if (t == LUA_TSTRING) return;
  if (t == LUA_TNUMBER) { lua_tostring(L, -1); return; }
  if (t == LUA_TNIL) {
    lua_pop(L, 1);
    lua_pushliteral(L, "error called with nil (no message)");
    return;
  }
  const char *name = NULL;
  if (t == LUA_TTABLE || t == LUA_TUSERDATA) {
    if (luaL_getmetafield(L, -1, "__name") != LUA_TNIL) {
      if (lua_type(L, -1) == LUA_TSTRING &&
          strcmp(lua_tostring(L, -1), "eddy.Permanent") == 0)
        f->permanent = 1;
      lua_pop(L, 1);
    }
    if (luaL_getmetafield(L, -1, "__tostring") != LUA_TNIL) {
      lua_pop(L, 1);
      if (run_tostring(L, sb) == 0) return;
      name = "an error value whose __tostring failed";
    }
  }
  if (t == LUA_TTABLE) {
    char out[400];
    snprintf(out, sizeof out, "%s {", name ? name : "a table value");
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
  if (name) {
    lua_pop(L, 1);
    lua_pushfstring(L, "%s (a %s)", name, lua_typename(L, t));
    return;
  }
  /* A function, thread or userdata without __tostring: no metamethod can
   * run here. */
  lua_pushfstring(L, "a %s value", lua_typename(L, t));
  lua_remove(L, -2);
}

int eddy_sandbox_call(eddy_sandbox *sb, int nargs, int nresults,
                      eddy_failure *f) {
  lua_State *L = sb->L;
  int fn = lua_gettop(L) - nargs;
  lua_pushcfunction(L, msgh);
  lua_insert(L, fn);
  sb->counted = 0;
  sb->charged = 0;
  sb->over_instructions = sb->over_memory = sb->over_time = 0;
  size_t saved_cap = sb->cap;
  if (sb->call_memory) {
    /* The cap is on the whole state, as the consumer's limit says: what a
     * handler keeps between calls counts too. */
    if (sb->used > sb->call_memory) lua_gc(L, LUA_GCCOLLECT);
    sb->cap = sb->call_memory;
  }
  sb->deadline = sb->timeout_ms ? coarse_ms() + sb->timeout_ms : 0;
  sb->in_call = 1;
  /* The hook is always there (handler code cannot remove it); a limit
   * hit in the last call left it at every instruction. */
  arm(L, sb, HOOK_EVERY);
  int rc = lua_pcall(L, nargs, nresults, fn);
  /* Time spent in C at the end of the call (where no hook runs) counts. */
  if (sb->deadline && !sb->over_time && coarse_ms() >= sb->deadline) sb->over_time = 1;
  sb->in_call = 0;
  sb->deadline = 0;
  sb->cap = saved_cap;
  lua_remove(L, fn);
  int over = sb->over_instructions || sb->over_memory || sb->over_time;
  if (rc == LUA_OK && !over) { sb->counted = 0; return 0; }
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
  } else if (sb->over_time) {
    char d[32];
    lua_pop(L, 1);
    lua_pushfstring(L, "timeout of %s exceeded", duration(sb->timeout_ms, d, sizeof d));
    snprintf(sb->reason, sizeof sb->reason, "timeout");
  } else if (rc == LUA_ERRMEM || sb->over_memory) {
    lua_pop(L, 1);
    lua_pushfstring(L, "memory limit of %I bytes exceeded",
                    (lua_Integer)sb->call_memory);
    snprintf(sb->reason, sizeof sb->reason, "memory");
    lua_gc(L, LUA_GCCOLLECT);
  } else {
    describe(L, sb, f);
    snprintf(sb->reason, sizeof sb->reason, f->permanent ? "permanent" : "error");
  }
  sb->counted = 0;
  free(sb->error);
  const char *e = lua_tostring(L, -1);
  sb->error = strdup(e ? e : "unknown error");
  lua_pop(L, 1);
  f->error = sb->error;
  f->traceback = sb->traceback && rc != LUA_ERRMEM ? sb->traceback : "";
  f->reason = sb->reason;
  return -1;
}
