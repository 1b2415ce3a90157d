/*
 * test-lpattern.c - the counted pattern functions give what Lua's own
 * give (values and error messages) and count their steps.
 */
#include <stdlib.h>

#include <lauxlib.h>
#include <lualib.h>

#include "lpattern.h"
#include "test.h"

static int64_t ticked;

static void count_tick(lua_State *L, int64_t steps) {
  (void)L;
  ticked += steps;
}

static void stop_tick(lua_State *L, int64_t steps) {
  ticked += steps;
  if (ticked > 100000) luaL_error(L, "stopped after %d steps", (int)ticked);
}

/* A state with the stock string table as R and a counted copy as S. */
static lua_State *state(eddy_pattern_tick tick) {
  lua_State *L = luaL_newstate();
  luaL_openlibs(L);
  lua_getglobal(L, "string");
  lua_setglobal(L, "R");
  lua_newtable(L);
  eddy_pattern_install(L, tick);
  lua_setglobal(L, "S");
  return L;
}

/* Runs chunk; returns NULL when it ran, else its error (copied). */
static const char *run(lua_State *L, const char *chunk) {
  static char err[512];
  if (luaL_dostring(L, chunk) == LUA_OK) return NULL;
  snprintf(err, sizeof err, "%s", lua_tostring(L, -1));
  lua_pop(L, 1);
  return err;
}

/* Compares R and S over generated subjects and patterns: every result and
 * every error message must be the same. */
static const char *DIFF =
  "local atoms = { 'a', 'b', '.', '%a', '%d', '%s', '%w', '%A', '[ab]', '[^a]', '[a-c]',\n"
  "  '[%d_]', '[]]', '(', ')', '()', '%1', '%2', '%b()', '%bab', '%f[%w]', '%f[^a]', '^',\n"
  "  '$', '*', '+', '-', '?', '%', '[', ']', '%z', 'x', '%.', '%%', '[a-]', '[%]]', '\\0' }\n"
  "local chars = { 'a', 'b', 'c', '(', ')', ' ', '1', '_', 'x', '.', '%', '\\0' }\n"
  "local seed = SEED\n"
  "local function rnd(n) seed = (seed * 1103515245 + 12345) % 2147483648; return seed % n + 1 end\n"
  "local function pack(ok, ...) return { ok = ok, n = select('#', ...), ... } end\n"
  "local function same(a, b)\n"
  "  if a.ok ~= b.ok or a.n ~= b.n then return false end\n"
  "  for i = 1, a.n do if a[i] ~= b[i] and type(a[i]) ~= 'function' then return false end end\n"
  "  return true\n"
  "end\n"
  "local function show(r) local t = {} for i = 1, r.n do t[i] = tostring(r[i]) end\n"
  "  return tostring(r.ok) .. ' ' .. table.concat(t, ',') end\n"
  "local function all(it) local t = {} for a, b in it do t[#t + 1] = tostring(a) .. '|' .. tostring(b) end\n"
  "  return table.concat(t, ';') end\n"
  "local repls = { '%0-', '<%1>', 'x%%y', '%2', '%', 'z', { a = 'A', b = false, ab = 7 },\n"
  "  function(x, y) if x == 'b' then return nil end return (y or x) .. '!' end, 5 }\n"
  "for round = 1, ROUNDS do\n"
  "  local p, s = {}, {}\n"
  "  for i = 1, rnd(6) do p[i] = atoms[rnd(#atoms)] end\n"
  "  for i = 1, rnd(12) - 1 do s[i] = chars[rnd(#chars)] end\n"
  "  p, s = table.concat(p), table.concat(s)\n"
  "  local init = ({ nil, 1, 2, -1, -3, 0, 20 })[rnd(7)]\n"
  "  local cases = {\n"
  "    { 'find', function(t) return t.find(s, p, init) end },\n"
  "    { 'find plain', function(t) return t.find(s, p, init, true) end },\n"
  "    { 'match', function(t) return t.match(s, p, init) end },\n"
  "    { 'gmatch', function(t) return all(t.gmatch(s, p, init)) end },\n"
  "    { 'gsub', function(t) return t.gsub(s, p, repls[rnd(#repls)], ({ nil, 1, 2 })[rnd(3)]) end },\n"
  "  }\n"
  "  for _, c in ipairs(cases) do\n"
  "    local saved = seed\n"
  "    local a = pack(pcall(c[2], R))\n"
  "    seed = saved\n"
  "    local b = pack(pcall(c[2], S))\n"
  "    if not same(a, b) then\n"
  "      error(string.format('%s(%q, %q, %s): Lua gives %s, eddy gives %s', c[1], s, p,\n"
  "        tostring(init), show(a), show(b)), 0)\n"
  "    end\n"
  "  end\n"
  "end\n";

TEST(lpattern_same_as_lua) {
  lua_State *L = state(count_tick);
  lua_pushinteger(L, 100000);
  lua_setglobal(L, "ROUNDS");
  const char *seed = getenv("EDDY_PATTERN_SEED");  /* to try other inputs by hand */
  lua_pushinteger(L, seed ? atoi(seed) : 12345);
  lua_setglobal(L, "SEED");
  const char *err = run(L, DIFF);
  lua_close(L);
  ASSERT_EQ_STR(err, NULL);
}

TEST(lpattern_fixed_cases) {
  lua_State *L = state(count_tick);
  const char *err = run(L,
    "local function eq(a, b) if a ~= b then error(tostring(a) .. ' ~= ' .. tostring(b), 2) end end\n"
    "eq(select(2, S.find('hello world', 'o w')), 7)\n"
    "eq(S.match('key = value', '(%w+)%s*=%s*(%w+)'), 'key')\n"
    "eq(select(2, S.match('key = value', '(%w+)%s*=%s*(%w+)')), 'value')\n"
    "eq(S.gsub('hello world', '(%w+)', '<%1>'), '<hello> <world>')\n"
    "eq(S.gsub('abc', '', '-'), '-a-b-c-')\n"
    "eq(S.match('THE (quick) fox', '%b()'), '(quick)')\n"
    "eq(S.gsub('THE (quick) fox', '%f[%a]%a+', 'W'), 'W (W) W')\n"
    "eq(S.match('  x', '()x'), 3)\n"
    "eq(S.match('abcabc', '(abc)%1'), 'abc')\n"
    "eq(S.find('a.b', '.', 1, true), 2)\n"
    "eq(S.find('a+b', '+', 1, true), 2)\n"
    "local t = {} for k, v in S.gmatch('a=1, b=2', '(%w+)=(%w+)') do t[#t+1] = k .. v end\n"
    "eq(table.concat(t, ' '), 'a1 b2')\n"
    "eq(select(2, pcall(S.find, 'a', '%')), \"malformed pattern (ends with '%')\")\n"
    "eq(select(2, pcall(S.find, 'a', '[a')), \"malformed pattern (missing ']')\")\n"
    "eq(select(2, pcall(S.gsub, 'a', 'a', '%2')), select(2, pcall(R.gsub, 'a', 'a', '%2')))\n");
  lua_close(L);
  ASSERT_EQ_STR(err, NULL);
}

TEST(lpattern_counts_backtracking) {
  lua_State *L = state(stop_tick);
  ticked = 0;
  const char *err = run(L, "return S.find(string.rep('a', 40), '.-.-.-.-.-.-.-.-.-b')");
  lua_close(L);
  ASSERT(err != NULL);
  ASSERT(strstr(err, "stopped after") != NULL);
  ASSERT(ticked > 100000 && ticked < 100000 + 2 * EDDY_PATTERN_TICK);
}

TEST(lpattern_plain_find_is_linear) {
  lua_State *L = state(stop_tick);
  ticked = 0;
  /* A needle of a million 'a's then 'b' in two million 'a's: quadratic
   * for a naive search, linear for memmem, and no steps counted. */
  const char *err = run(L,
    "local hay, needle = string.rep('a', 2000000), string.rep('a', 1000000) .. 'b'\n"
    "assert(S.find(hay, needle, 1, true) == nil)\n");
  lua_close(L);
  ASSERT_EQ_STR(err, NULL);
}
