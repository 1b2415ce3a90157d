/*
 * app.c - fuzzes the checks of app files (lua/eddy/app.lua), of consumer
 * definitions (eddy.consumer, lua/eddy/init.lua) and of event declarations
 * (eddy.event, lua/eddy/catalog.lua, with the schema compiled to C by
 * runtime/lschema.c), in a Lua state with the eddy library as the binary
 * has it (eddy_sandbox_preload).
 *
 * The input is never run as Lua code: it is read as a Lua value (nested
 * tables of option names and values: booleans, integers, floats, strings,
 * functions, eddy.null, tables met before), and that value is what an app
 * file returns (mode 0), what a handler file gives eddy.consumer (mode 1),
 * or what eddy.event is given (mode 2, then a second value is checked
 * against the declaration's schema, and the declaration goes through the
 * saved catalog's text and back).  The files are fixed, in a directory of
 * their own; strings of the input never hold '/' and are never "..", so
 * whatever path they name is inside it.
 *
 * Checks: eddy.app.load never raises and returns an app table or nil and a
 * message of one line (a consumer's mistakes included); eddy.event returns
 * a declaration or raises a message (eddy.app folds it into one line);
 * validate returns nil or a one-line message; a declaration made reads
 * back from the catalog text as a valid one.
 *
 * EDDY_FUZZ_VERBOSE=1 in the environment prints what became of each input.
 *
 * Coverage: libFuzzer sees the C code only; a line hook adds the Lua side,
 * each (previous line, line) pair counted in libFuzzer's extra counters.
 */
#include <math.h>
#include <signal.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

#include "fuzz.h"
#include "sandbox.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);

#define EDGES (1 << 16)
__attribute__((used, section("__libfuzzer_extra_counters")))
static uint8_t lua_edges[EDGES];
static uintptr_t last_line;

static void on_line(lua_State *L, lua_Debug *ar) {
  if (!lua_getinfo(L, "S", ar)) return;
  /* The chunk by its name, not its address: a file loaded again gets a
   * new string. */
  uintptr_t here = 2166136261u;
  for (const char *c = ar->source; *c; c++) here = (here ^ (unsigned char)*c) * 16777619u;
  here = here * 2654435761u + (uintptr_t)ar->currentline;
  lua_edges[(here ^ last_line) & (EDGES - 1)] = 1;   /* a pair seen, not how often */
  last_line = here >> 1;
}

/* ---- the value the input spells ---------------------------------------- */

typedef struct reader {
  const uint8_t *p, *end;
  int depth;
  int open[8];      /* stack indexes of the tables being filled */
  int nopen;
} reader;

static int next(reader *r) { return r->p < r->end ? *r->p++ : -1; }

/* The words of apps, consumers and schemas, and values they take.  An input
 * picks one by its index modulo their count: change words in place rather
 * than add some, so that the corpus keeps spelling what it spelt. */
static const char *const WORDS[] = {
  "data", "workers", "handlers", "events", "topics", "dedupe_window", "admin", "admin_public",
  "broker", "kafka", "listen", "public", "partitions", "retention", "retention_bytes",
  "max_message_bytes", "name", "handle", "dedupe", "retry", "dlq", "from", "limits",
  "consumes", "emits", "attempts", "backoff", "max_backoff", "instructions", "memory",
  "type", "version", "owner", "description", "schema", "sla", "deprecated", "max_lag",
  "properties", "required", "additionalProperties", "items", "enum", "const", "minimum",
  "maximum", "minLength", "maxLength", "minItems", "maxItems", "title", "default",
  "examples", "format", "string", "number", "integer", "boolean", "object", "array", "null",
  "beginning", "end", "forever", "unlimited", "orders", "work", "c", "OrderPlaced",
  "handlers/", "handlers/h.lua", "events.lua", ".", "", "127.0.0.1:9464", "[::1]:0",
  "localhost:0", "kafka://127.0.0.1:9092", "kafka://", "bootstrap.servers", "7d", "12h",
  "1s", "0s", "250ms", "512KiB", "1MiB", "1GiB", "256MiB", "64MiB", "-1", "1e3", "sandbox",
  "a.b-c_d", "strict", "\xc3\xa9", "\xff",
};
#define NWORDS (sizeof WORDS / sizeof WORDS[0])

static const char *const UNITS[] = { "", "ms", "s", "m", "h", "d", "B", "KB", "KiB", "MiB",
                                     "GiB", "x" };

static void push_value(lua_State *L, reader *r);

/* A table: entries keyed by words (named), by 1..n (list), or by values. */
static void push_table(lua_State *L, reader *r, int kind) {
  int n = next(r);
  n = n < 0 ? 0 : n % 9;
  lua_createtable(L, kind == 1 ? n : 0, kind == 1 ? 0 : n);
  if (r->depth >= 5 || r->nopen == 8) return;
  r->depth++;
  r->open[r->nopen++] = lua_gettop(L);
  for (int i = 1; i <= n && r->p < r->end; i++) {
    if (!lua_checkstack(L, 8)) break;
    if (kind == 1) {
      lua_pushinteger(L, i);
    } else if (kind == 0) {
      int w = next(r);
      lua_pushstring(L, WORDS[(w < 0 ? 0 : w) % NWORDS]);
    } else {
      push_value(L, r);
    }
    push_value(L, r);
    /* nil and NaN cannot be keys. */
    if (lua_isnil(L, -2) || (lua_type(L, -2) == LUA_TNUMBER && lua_tonumber(L, -2) !=
                                                                  lua_tonumber(L, -2)))
      lua_pop(L, 2);
    else
      lua_rawset(L, -3);
  }
  r->nopen--;
  r->depth--;
}

/* A string of the input: no '/', never "..". */
static void push_raw_string(lua_State *L, reader *r) {
  int n = next(r);
  n = n < 0 ? 0 : n % 33;
  char s[33];
  int k = 0;
  while (k < n && r->p < r->end) {
    char c = (char)next(r);
    s[k++] = c == '/' ? '_' : c;
  }
  if (k == 2 && s[0] == '.' && s[1] == '.') s[1] = 'x';
  lua_pushlstring(L, s, (size_t)k);
}

static void push_value(lua_State *L, reader *r) {
  int b = next(r);
  if (b < 0) { lua_pushboolean(L, 1); return; }
  uint64_t u = 0;
  double d;
  switch (b % 16) {
  case 0: lua_pushnil(L); break;
  case 1: lua_pushboolean(L, b & 16); break;
  case 2: lua_pushinteger(L, (int8_t)next(r)); break;
  case 3:
    for (int i = 0; i < 8; i++) u = u << 8 | (uint8_t)next(r);
    lua_pushinteger(L, (lua_Integer)u);
    break;
  case 4:
    for (int i = 0; i < 8; i++) u = u << 8 | (uint8_t)next(r);
    memcpy(&d, &u, sizeof d);
    lua_pushnumber(L, d);
    break;
  case 5: {
    static const double SPECIAL[] = { 0.5, -0.0, 1.0, 1e308, 1e-320, 9007199254740993.0,
                                      9.2233720368547758e18, -9.2233720368547758e18 };
    int k = next(r);
    k = k < 0 ? 0 : k % 11;
    if (k < 8) lua_pushnumber(L, SPECIAL[k]);
    else if (k == 8) lua_pushnumber(L, HUGE_VAL);
    else if (k == 9) lua_pushnumber(L, -HUGE_VAL);
    else lua_pushnumber(L, b & 1 ? NAN : -NAN);
    break;
  }
  case 6: case 7: case 8: {
    int w = next(r);
    lua_pushstring(L, WORDS[(w < 0 ? 0 : w) % NWORDS]);
    break;
  }
  case 9: push_raw_string(L, r); break;
  case 10: {
    int n = next(r), k = next(r);
    lua_pushfstring(L, "%d%s", (int)(int8_t)(n < 0 ? 1 : n), UNITS[(k < 0 ? 0 : k) % 12]);
    break;
  }
  case 11: push_table(L, r, 0); break;
  case 12: push_table(L, r, 1); break;
  case 13: push_table(L, r, 2); break;
  case 14:
    /* A function: a handler that does nothing, or one that raises. */
    lua_getfield(L, LUA_REGISTRYINDEX, b & 16 ? "fuzz.raise" : "fuzz.noop");
    break;
  default:
    /* eddy.null, or a table being filled (a cycle). */
    if (r->nopen && (b & 16)) {
      int k = next(r);
      lua_pushvalue(L, r->open[(k < 0 ? 0 : k) % r->nopen]);
    } else {
      lua_pushlightuserdata(L, NULL);
    }
    break;
  }
}

/* ---- the checks, in Lua (fixed code, never the input's) ---------------- */

static const char DRIVER[] =
  "local dir = ...\n"
  "local app, eddy, catalog = require 'eddy.app', require 'eddy', require 'eddy.catalog'\n"
  "local function one_line(s) return type(s) == 'string' and s ~= '' and not s:find('\\n') end\n"
  "return function(mode, t, v)\n"
  "  if mode < 2 then\n"
  "    EDDY_FUZZ = t\n"
  "    local file = dir .. (mode == 0 and '/app.lua' or '/consumer-app.lua')\n"
  "    local ok, a, err = pcall(app.load, file)\n"
  "    EDDY_FUZZ = nil\n"
  "    if not ok then return 'eddy.app.load raised: ' .. tostring(a) end\n"
  "    if a == nil then\n"
  "      if not one_line(err) then return 'not a one-line message: ' .. tostring(err) end\n"
  "      return nil, 'refused: ' .. err\n"
  "    elseif type(a) ~= 'table' or type(a.consumers) ~= 'table' then\n"
  "      return 'load returned ' .. tostring(a)\n"
  "    end\n"
  "    return nil, 'loaded, ' .. #a.consumers .. ' consumers'\n"
  "  end\n"
  "  catalog.reset()\n"
  "  local ok, e = pcall(eddy.event, t)\n"
  "  if not ok then\n"
  "    if type(e) ~= 'string' or e == '' then return 'eddy.event raised ' .. tostring(e) end\n"
  "    return nil, 'refused: ' .. e\n"
  "  end\n"
  "  local vok, msg = pcall(catalog.validate, e, v)\n"
  "  if not vok then return 'validate raised: ' .. tostring(msg) end\n"
  "  if msg ~= nil and not one_line(msg) then return 'validate gave ' .. tostring(msg) end\n"
  "  local dok, text = pcall(catalog.dump, { e })\n"
  "  if not dok then return 'dump raised: ' .. tostring(text) end\n"
  "  local lok, back = pcall(catalog.load_text, text)\n"
  "  if not lok then return 'the catalog text does not load: ' .. tostring(back) end\n"
  "  if type(back) ~= 'table' or #back ~= 1 then return 'the catalog text lost it' end\n"
  "  local problem = catalog.check_saved(back[1])\n"
  "  if problem then return 'the saved declaration is refused: ' .. problem end\n"
  "  return nil, 'declared; the value ' .. (msg or 'matches')\n"
  "end\n";

static lua_State *L;
static int verbose;
static char dir[] = "/tmp/eddy-fuzz-app.XXXXXX";

static void write_file(const char *name, const char *text) {
  char path[256];
  snprintf(path, sizeof path, "%s/%s", dir, name);
  FILE *f = fopen(path, "w");
  FUZZ_CHECK(f && fputs(text, f) >= 0 && fclose(f) == 0, "cannot write %s", path);
}

/* The directory goes when the run ends (a crash leaves it, for a look). */
static void remove_dir(void) {
  static const char *const FILES[] = { "app.lua", "consumer-app.lua", "consumer.lua",
                                       "events.lua", "handlers/h.lua", "handlers" };
  char path[300];
  for (size_t i = 0; i < sizeof FILES / sizeof FILES[0]; i++) {
    snprintf(path, sizeof path, "%s/%s", dir, FILES[i]);
    remove(path);
  }
  rmdir(dir);
}

static int noop(lua_State *L_) { (void)L_; return 0; }
static int raising(lua_State *L_) { return luaL_error(L_, "raised by a handler"); }

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc;
  (void)argv;
  verbose = getenv("EDDY_FUZZ_VERBOSE") != NULL;
  FUZZ_CHECK(mkdtemp(dir) != NULL, "mkdtemp");
  char sub[300];
  snprintf(sub, sizeof sub, "%s/handlers", dir);
  FUZZ_CHECK(mkdir(sub, 0700) == 0, "mkdir %s", sub);
  atexit(remove_dir);
  write_file("app.lua", "return EDDY_FUZZ\n");
  write_file("consumer-app.lua", "return { handlers = { 'consumer.lua' } }\n");
  write_file("consumer.lua", "return require('eddy').consumer(EDDY_FUZZ)\n");
  write_file("events.lua", "return require('eddy').event { type = 'OrderPlaced' }\n");
  write_file("handlers/h.lua",
             "local eddy = require 'eddy'\n"
             "return eddy.consumer { name = 'c', topics = { 'orders' }, handle = function() end }\n");
  L = luaL_newstate();
  luaL_openlibs(L);
  eddy_sandbox_preload(L);
  lua_pushcfunction(L, noop);
  lua_setfield(L, LUA_REGISTRYINDEX, "fuzz.noop");
  lua_pushcfunction(L, raising);
  lua_setfield(L, LUA_REGISTRYINDEX, "fuzz.raise");
  FUZZ_CHECK(luaL_loadbuffer(L, DRIVER, sizeof DRIVER - 1, "=fuzz") == LUA_OK, "%s",
             lua_tostring(L, -1));
  lua_pushstring(L, dir);
  FUZZ_CHECK(lua_pcall(L, 1, 1, 0) == LUA_OK, "%s", lua_tostring(L, -1));
  lua_setfield(L, LUA_REGISTRYINDEX, "fuzz.driver");
  lua_sethook(L, on_line, LUA_MASKLINE, 0);
  return 0;
}

/* libFuzzer's SIGALRM (its -timeout watch) interrupts system calls: the
 * `ls` eddy.app reads a directory through would fail with EINTR.  eddy's
 * own signal handlers (libuv's) restart them; so do these. */
static void restart_after_alarm(void) {
  struct sigaction sa;
  if (sigaction(SIGALRM, NULL, &sa) != 0) return;
  sa.sa_flags |= SA_RESTART;
  sigaction(SIGALRM, &sa, NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static int once;
  if (!once++) restart_after_alarm();
  if (size < 1) return 0;
  reader r = { data + 1, data + size, 0, { 0 }, 0 };
  int mode = data[0] % 3;
  int top = lua_gettop(L);
  lua_getfield(L, LUA_REGISTRYINDEX, "fuzz.driver");
  lua_pushinteger(L, mode);
  /* The definition is a table of options; then, for events, a value. */
  push_table(L, &r, 0);
  push_value(L, &r);
  last_line = 0;
  if (lua_pcall(L, 3, 2, 0) != LUA_OK) {
    FUZZ_CHECK(0, "the driver raised: %s", lua_tostring(L, -1));
  }
  FUZZ_CHECK(lua_isnil(L, -2), "mode %d: %s", mode, lua_tostring(L, -2));
  if (verbose)
    fprintf(stderr, "mode %d: %s (the state holds %d KiB)\n", mode, lua_tostring(L, -1),
            lua_gc(L, LUA_GCCOUNT, 0));
  lua_settop(L, top);
  /* What the checks allocated is garbage now: collected at once, so that
   * the state stays as small as it started. */
  lua_gc(L, LUA_GCCOLLECT, 0);
  return 0;
}
