/*
 * crashmod.c - a Lua C module that misbehaves as only C can, for the
 * specs of what eddy run survives (spec/crash_loop_spec.lua): a segfault,
 * an abort, and a call that never returns.  Built into
 * build/test/crashmod.so; never installed.
 */
#include <signal.h>
#include <stdlib.h>
#include <unistd.h>

#include <lauxlib.h>

static int segv(lua_State *L) {
  (void)L;
  raise(SIGSEGV);
  return 0;
}

static int die(lua_State *L) {
  (void)L;
  abort();
  return 0;
}

static int hang(lua_State *L) {
  (void)L;
  for (;;) pause();
  return 0;
}

int luaopen_crashmod(lua_State *L);

int luaopen_crashmod(lua_State *L) {
  static const luaL_Reg fns[] = {
    { "segv", segv }, { "abort", die }, { "hang", hang }, { NULL, NULL }
  };
  luaL_newlib(L, fns);
  return 1;
}
