/*
 * lpattern.h - Lua's string pattern functions, with their work counted.
 *
 * Lua 5.4's count hook never fires inside a C function, so a backtracking
 * pattern (string.find(("a"):rep(40), ".-.-.-.-.-.-b")) runs for minutes
 * outside any instruction budget or timeout.  These are string.find,
 * string.match, string.gmatch and string.gsub with the semantics of Lua
 * 5.4's own (same results, same error messages), written so that every
 * step of the matcher is counted: every EDDY_PATTERN_TICK steps they call
 * a function the host gives, which may raise a Lua error to stop them.
 * Plain finds use memmem, which is linear.
 */
#ifndef EDDY_LPATTERN_H
#define EDDY_LPATTERN_H

#include <stdint.h>

#include <lua.h>

#define EDDY_PATTERN_TICK 1024

/* Called with the steps done since the last call; may raise (lua_error). */
typedef void (*eddy_pattern_tick)(lua_State *L, int64_t steps);

/* Replaces find, match, gmatch and gsub in the string table on top of the
 * stack with the counted versions calling tick. */
void eddy_pattern_install(lua_State *L, eddy_pattern_tick tick);

#endif
