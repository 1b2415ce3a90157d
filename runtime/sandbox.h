/*
 * sandbox.h - a Lua state for handlers, with per-call limits.
 *
 * Each worker owns one sandbox.  The state has the standard libraries, the
 * eddy library compiled into the binary (package.preload), and cjson from
 * the system.  Two limits apply to every call made through
 * eddy_sandbox_call: an instruction budget (a count hook) and a memory cap
 * (the state's own allocator refuses to grow past it).  Exceeding either is
 * an ordinary failure of that call with a clear reason; the state stays
 * usable.
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
  const char *reason;     /* "error", "permanent", "schema", "instructions", "memory" */
  const char *error;      /* readable one-line message */
  const char *traceback;  /* Lua traceback, may be "" */
} eddy_failure;

/* Makes a sandbox.  Returns NULL (with err filled) when the state cannot be
 * made.  The caller frees it with eddy_sandbox_free. */
eddy_sandbox *eddy_sandbox_new(char *err, size_t errlen);
void eddy_sandbox_free(eddy_sandbox *sb);

lua_State *eddy_sandbox_state(eddy_sandbox *sb);

/* Sets the limits of the following calls: at most `instructions` Lua VM
 * instructions per call, and at most `memory` bytes held by the whole
 * state while the call runs (what a handler keeps between calls counts).
 * Hitting either fails the call, even when the handler caught the error. */
void eddy_sandbox_limits(eddy_sandbox *sb, int64_t instructions, size_t memory);

/* Calls the function below nargs arguments on the stack, like lua_pcall
 * with nresults results.  Returns 0 on success; on failure returns -1,
 * pops the error and fills *f. */
int eddy_sandbox_call(eddy_sandbox *sb, int nargs, int nresults,
                      eddy_failure *f);

/* Bytes the state holds now. */
size_t eddy_sandbox_memory(const eddy_sandbox *sb);

/* Makes `require` find the embedded eddy library and eddy.core in any Lua
 * state (the binary does this for its own states). */
void eddy_sandbox_preload(lua_State *L);

#endif
