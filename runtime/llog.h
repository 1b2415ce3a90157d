/*
 * llog.h - the Lua face of the event log: eddy.open() and the eddy.log
 * object (topics, produce, read, consumer group offsets, retention).
 *
 * An eddy.log is a full userdata that owns one eddy_store.  It is valid
 * from birth: made closed (store NULL) before the store is opened, so that
 * __gc and __close are safe at any point, and both are idempotent.  Using a
 * closed log raises "attempt to use a closed eddy log".
 */
#ifndef EDDY_LLOG_H
#define EDDY_LLOG_H

#include <lua.h>

#include "store.h"

/* Registry name of the metatable of an eddy.log. */
#define EDDY_LLOG_MT "eddy.log"

/* Creates the metatables of eddy.log objects (and of their scratch
 * buffers) in the registry of L, unless they exist already.  Called by
 * luaopen_eddy_core; leaves the stack as it was.  Raises only on memory
 * exhaustion. */
void eddy_llog_setup(lua_State *L);

/* eddy.open{ data = DIR, create = BOOL, lock_timeout = MS } as a
 * lua_CFunction (eddy_llog_setup must have run).  Returns a new eddy.log,
 * or nil and the message of eddy_store_open when the store cannot be
 * opened.  Raises when the argument is not a table or a field has the
 * wrong type. */
int eddy_llog_open(lua_State *L);

/* The store of the eddy.log at index arg, for other bindings that work on
 * a log.  Raises when arg is not an eddy.log, or when the log is closed.
 * The store stays owned by the log: do not close it, and do not keep the
 * pointer across anything that may run Lua code (which may close the
 * log). */
eddy_store *eddy_llog_check(lua_State *L, int arg);

/* Pushes the headers table of a message (blob: encoded headers, n of them,
 * 0 when unknown): an array of { name, value } pairs in order that also maps
 * each name to its value (the last one, when a name repeats).  Used by
 * log:read and by the msg object of handlers. */
void eddy_llog_push_headers(lua_State *L, const char *blob, size_t len,
                            size_t n);

#endif
