/*
 * sandbox.h - a Lua state for handlers, with per-call limits and the
 * runtime's trust model (docs/handlers.md, "What handlers can do").
 *
 * Each worker owns one sandbox, and `eddy run` reads the app in one.  The
 * state has the standard libraries, the eddy library compiled into the
 * binary (package.preload), and the C modules found on package.cpath.
 * Three limits apply to every call made through eddy_sandbox_call: an
 * instruction budget (a count hook that never leaves the state: handler
 * code cannot remove it), a memory cap (the state's own allocator refuses
 * to grow past it; bytes the runtime holds for the call, eddy_sandbox_
 * charge, count too) and a wall-clock timeout.  Exceeding one is an
 * ordinary failure of that call with a clear reason; the state stays
 * usable.
 *
 * Handler code cannot end or escape the runtime: os.exit, debug.sethook
 * and the debug functions that write, binary chunks, collectgarbage("stop")
 * and os.setlocale's writes are unavailable, and the pattern functions
 * count their steps (lpattern.h).  Files loaded in a strict environment
 * (eddy_sandbox_strict_env) also have no io, no os.execute or os.getenv,
 * no file access and no C modules.
 */
#ifndef EDDY_SANDBOX_H
#define EDDY_SANDBOX_H

#include <stddef.h>
#include <stdint.h>

#include <lua.h>

typedef struct eddy_sandbox eddy_sandbox;

/* How a failed call failed.  Strings are owned by the sandbox and valid
 * until the next call. */
typedef struct eddy_failure {
  int permanent;          /* error(eddy.permanent(...)), a schema, or a limit */
  int schema;             /* an event did not match its declared schema (worker.c) */
  const char *reason;     /* "error", "permanent", "schema", "instructions",
                             "memory", "timeout", "limit" (worker.c), "crashed" */
  const char *error;      /* readable one-line message */
  const char *traceback;  /* Lua traceback, may be "" */
} eddy_failure;

/* Limits for loading handler files (a file's top level is code too). */
#define EDDY_LOAD_INSTRUCTIONS 2000000000LL
#define EDDY_LOAD_MEMORY ((size_t)1 << 30)
#define EDDY_LOAD_TIMEOUT_MS 30000

/* Makes a sandbox.  Returns NULL (with err filled) when the state cannot be
 * made.  The caller frees it with eddy_sandbox_free. */
eddy_sandbox *eddy_sandbox_new(char *err, size_t errlen);
void eddy_sandbox_free(eddy_sandbox *sb);

lua_State *eddy_sandbox_state(eddy_sandbox *sb);

/* Sets the limits of the following calls: at most `instructions` Lua VM
 * instructions per call (pattern-matching steps count as instructions),
 * at most `memory` bytes held by the whole state while the call runs
 * (what a handler keeps between calls counts), and at most timeout_ms of
 * wall-clock time (0: none).  Hitting one fails the call, even when the
 * handler caught the error. */
void eddy_sandbox_limits(eddy_sandbox *sb, int64_t instructions, size_t memory,
                         int64_t timeout_ms);

/* Calls the function below nargs arguments on the stack, like lua_pcall
 * with nresults results.  Returns 0 on success; on failure returns -1,
 * pops the error and fills *f. */
int eddy_sandbox_call(eddy_sandbox *sb, int nargs, int nresults,
                      eddy_failure *f);

/* Counts bytes the runtime holds for the running call (its state writes
 * and emitted events) against its memory cap.  Returns 0, or -1 when they
 * would pass it: the call has then failed with the memory limit (the
 * caller raises; even a handler that catches it fails). */
int eddy_sandbox_charge(eddy_sandbox *sb, size_t bytes);

/* Counts steps of long work done in C for the running call (of the state
 * of L) as instructions, and raises when the call is past its budget or
 * its timeout. */
void eddy_sandbox_tick(lua_State *L, int64_t steps);

/* Bytes the state holds now. */
size_t eddy_sandbox_memory(const eddy_sandbox *sb);

/* Makes `require` find the embedded eddy library and eddy.core in any Lua
 * state (the binary does this for its own states). */
void eddy_sandbox_preload(lua_State *L);

/* Pushes a new global environment for a file loaded in the strict
 * sandbox: the base functions, string, table, math, utf8 and coroutine
 * (copies), os.time/clock/date/difftime, debug.traceback, a text-only
 * load, and a require that gives the eddy library and Lua modules found on
 * package.path (each in a strict environment of its own), nothing else.
 * L must be a sandbox's state. */
void eddy_sandbox_strict_env(lua_State *L);

#endif
