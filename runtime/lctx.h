/*
 * lctx.h - what a handler sees: the msg object (lmsg.c) and the ctx object
 * with ctx.state, ctx:emit and ctx.log (lctx.c), bound to a worker.
 */
#ifndef EDDY_LCTX_H
#define EDDY_LCTX_H

#include <stddef.h>

#include <lua.h>

#include "engine.h"
#include "headers.h"
#include "uuid.h"

/* A consumer's Lua side in one worker: registry references. */
typedef struct lctx_consumer {
  int handle_ref;
  int dedupe_ref;   /* LUA_NOREF when dedupe is by id or off */
  int ctx_ref;
  int catalog;      /* the app declares event types: check consumed ones */
} lctx_consumer;

/* Loads generation g's handler files into sb's state (through eddy.app,
 * with app_dir on package.path) and prepares one lctx_consumer per
 * consumer number of g (handle_ref LUA_NOREF for those g does not run).
 * Returns the array (freed with lctx_free), or NULL with err filled. */
lctx_consumer *lctx_load(eddy_worker *w, eddy_sandbox *sb, const eddy_gen *g,
                         const char *app_dir, char *err, size_t errlen);
/* Pushes eddy.catalog.consume when a catalog is in force (returns 1), or
 * a non-function (returns 0). */
int lctx_push_consume_check(lua_State *L);

void lctx_free(lctx_consumer *lc);

void lctx_push_handle(lua_State *L, const lctx_consumer *c);
void lctx_push_dedupe(lua_State *L, const lctx_consumer *c);
/* Pushes the consumer's ctx with ctx.attempt set. */
void lctx_push_ctx(lua_State *L, const lctx_consumer *c, int attempt);

/* Pushes a new msg object for job j (lmsg.c). */
void lctx_push_msg(lua_State *L, eddy_job *j);
/* Detaches the msg object at idx from its job: using it after its handler
 * returned raises instead of reading freed memory. */
void lctx_invalidate_msg(lua_State *L, int idx);
/* Registers the msg metatable in L. */
void lmsg_setup(lua_State *L);

/* Worker services the bindings use (worker.c). */
eddy_job *eddy_worker_job(eddy_worker *w);
eddy_runner *eddy_worker_runner(eddy_worker *w);
/* The definition of consumer number i in the generation w runs. */
const eddy_consumer_def *eddy_worker_def(eddy_worker *w, int i);
/* ctx:emit refused an event, with this message (copied) and reason
 * ("schema": its schema does not allow the value; "limit": it is over a
 * size or count limit): when the handler fails with that same message, its
 * message is quarantined at once with that reason.  A handler may catch
 * the refusal and go on. */
void eddy_worker_refuse(eddy_worker *w, const char *msg, const char *reason);
/* The text of the last refusal (valid until the next). */
const char *eddy_worker_refusal(eddy_worker *w);
/* A buffer for JSON text, reused by every call of the worker. */
struct eddy_buf *eddy_worker_json_buf(eddy_worker *w);
/* 1 and the value (valid until the next call), 0 when absent, <0 error. */
int eddy_worker_state_get(eddy_worker *w, int consumer, const char *key,
                          size_t len, const char **value, size_t *value_len);
/* value NULL deletes.  0; -1 when out of memory; -2 when the write would
 * pass the call's memory limit (the call has failed: sandbox.h); -3 when
 * it is refused (too many keys in one call): eddy_worker_refusal says why,
 * in a sentence that starts with "ctx.state:set('KEY'): ". */
int eddy_worker_state_put(eddy_worker *w, int consumer, const char *key,
                          size_t len, const char *value, size_t value_len);
/* due: 0, or when (ms since the epoch) the event goes out: until then it
 * waits in the store's timers (outbox.h).  Returns 0; -1 when out of
 * memory; -2 when the event would pass the call's memory limit; -3 when it
 * is refused (over the topic's size limit, or past the consumer's emits
 * limit): eddy_worker_refusal says why, in a sentence that starts with
 * "ctx:emit: ". */
int eddy_worker_emit(eddy_worker *w, const char *topic, const char *key,
                     size_t key_len, int has_key, const char *value,
                     size_t value_len, const eddy_header *user, size_t nuser,
                     int64_t due, char id_out[EDDY_UUID_STRLEN + 1]);

#endif
