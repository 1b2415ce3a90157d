/*
 * leddy.h - the Lua C module eddy.core: the native half of `require "eddy"`
 * (lua/eddy/init.lua is the other half).
 *
 * Built as eddy/core.so it is loaded by the stock lua5.4 interpreter; linked
 * into the eddy binary, luaopen_eddy_core goes into package.preload.  It
 * keeps no global or static mutable state: everything lives in the
 * lua_State (registry, userdata), so several states may load it at once.
 */
#ifndef EDDY_LEDDY_H
#define EDDY_LEDDY_H

#include <lua.h>

/* The version of eddy; the build defines it on the command line
 * (-DEDDY_VERSION='"1.2.3"'). */
#ifndef EDDY_VERSION
#define EDDY_VERSION "0.1.0-dev"
#endif

/* Opens the module: returns 1 with the module table on the stack (open,
 * uuid, partition_for, versions, _VERSION) after creating the metatables
 * it needs in the registry.  Raises only on memory exhaustion or when the
 * Lua core it runs in is not the one it was built for. */
int luaopen_eddy_core(lua_State *L);

#endif
