/*
 * cli_saga.c - eddy saga list | show, and eddy flows: commands written in
 * Lua (lua/eddy/tools.lua), run in a Lua state with the eddy library and a
 * few functions reading the store.
 */
#include "cli.h"
#include "errors.h"
#include "headers.h"
#include "quarantine.h"
#include "sandbox.h"
#include "state.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <lauxlib.h>
#include <lualib.h>
#include <sqlite3.h>

#define STORE_KEY "eddy.tool.store"

static eddy_store *store_of(lua_State *L) {
  lua_getfield(L, LUA_REGISTRYINDEX, STORE_KEY);
  eddy_store *s = lua_touserdata(L, -1);
  lua_pop(L, 1);
  if (!s) luaL_error(L, "no store");
  return s;
}

/* Raises the store's last error as it is (luaL_error would put the Lua
 * caller's place before it). */
static int store_error(lua_State *L, eddy_store *s) {
  lua_pushstring(L, eddy_store_errmsg(s));
  return lua_error(L);
}

/* tool.consumers() -> { name, ... } in name order. */
static int t_consumers(lua_State *L) {
  eddy_store *s = store_of(L);
  sqlite3_stmt *st = eddy_store_stmt(s, "SELECT name FROM consumers ORDER BY name");
  if (!st) return store_error(L, s);
  lua_newtable(L);
  int n = 0, rc;
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    lua_pushstring(L, (const char *)sqlite3_column_text(st, 0));
    lua_rawseti(L, -2, ++n);
  }
  sqlite3_reset(st);
  if (rc != SQLITE_DONE) {
    eddy_store_sqlerr(s, rc, "reading consumers");
    return store_error(L, s);
  }
  return 1;
}

struct state_ctx { lua_State *L; const char *prefix; size_t plen; int n; };

static int state_one(void *ud, const char *key, size_t key_len, const char *value,
                     size_t value_len, int64_t updated_at) {
  struct state_ctx *c = ud;
  (void)updated_at;
  if (key_len < c->plen || memcmp(key, c->prefix, c->plen) != 0) return 0;
  lua_createtable(c->L, 0, 2);
  lua_pushlstring(c->L, key, key_len);
  lua_setfield(c->L, -2, "key");
  lua_pushlstring(c->L, value, value_len);
  lua_setfield(c->L, -2, "value");
  lua_rawseti(c->L, -2, ++c->n);
  return 0;
}

/* tool.state(consumer, prefix) -> { { key =, value = JSON text }, ... }. */
static int t_state(lua_State *L) {
  eddy_store *s = store_of(L);
  const char *name = luaL_checkstring(L, 1);
  size_t plen;
  const char *prefix = luaL_optlstring(L, 2, "", &plen);
  int64_t id;
  if (eddy_consumer_lookup(s, name, &id) != 0) return store_error(L, s);
  lua_newtable(L);
  struct state_ctx c = { L, prefix, plen, 0 };
  if (eddy_state_foreach(s, id, state_one, &c) < 0) return store_error(L, s);
  return 1;
}

static int dlq_one(void *ud, const eddy_dlq_entry *e) {
  lua_State *L = ud;
  lua_createtable(L, 0, 6);
  lua_pushinteger(L, e->seq);
  lua_setfield(L, -2, "seq");
  lua_pushstring(L, e->id);
  lua_setfield(L, -2, "id");
  if (e->has_key) {
    lua_pushlstring(L, e->key, e->key_len);
    lua_setfield(L, -2, "key");
  }
  size_t n = 0;
  const char *corr = eddy_headers_get(e->headers, e->headers_len, "eddy-correlation-id", &n);
  if (corr) {
    lua_pushlstring(L, corr, n);
    lua_setfield(L, -2, "correlation_id");
  }
  lua_pushstring(L, e->error ? e->error : "");
  lua_setfield(L, -2, "error");
  lua_pushinteger(L, e->quarantined_at);
  lua_setfield(L, -2, "quarantined_at");
  lua_rawseti(L, -2, (lua_Integer)lua_rawlen(L, -2) + 1);
  return 0;
}

/* tool.quarantined(consumer) -> the entries not replayed: { seq, id, key,
 * correlation_id, error, quarantined_at }. */
static int t_quarantined(lua_State *L) {
  eddy_store *s = store_of(L);
  const char *name = luaL_checkstring(L, 1);
  lua_newtable(L);
  if (eddy_dlq_foreach(s, name, EDDY_DLQ_PENDING, dlq_one, L) < 0) return store_error(L, s);
  return 1;
}

/* tool.time(ms) -> "2026-01-02T03:04:05.678Z". */
static int t_time(lua_State *L) {
  char t[32];
  eddy_format_time((int64_t)luaL_checkinteger(L, 1), t);
  lua_pushstring(L, t);
  return 1;
}

/* tool.write_file(path, text) -> true, or nil and why.  Writes text to
 * path, which is created for its owner only (0600, whatever the umask)
 * when it does not exist; an existing file keeps its mode. */
static int t_write_file(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  size_t n;
  const char *text = luaL_checklstring(L, 2, &n);
  int fd = eddy_private_open(path, O_WRONLY | O_TRUNC | O_CLOEXEC);
  int e = 0;
  if (fd < 0) e = errno;
  for (size_t done = 0; fd >= 0 && !e && done < n;) {
    ssize_t w = write(fd, text + done, n - done);
    if (w < 0 && errno != EINTR) e = errno;
    else if (w > 0) done += (size_t)w;
  }
  if (fd >= 0 && close(fd) != 0 && !e) e = errno;
  if (e) {
    luaL_pushfail(L);
    lua_pushstring(L, strerror(e));
    return 2;
  }
  lua_pushboolean(L, 1);
  return 1;
}

static const luaL_Reg tool_funcs[] = {
  { "consumers", t_consumers }, { "state", t_state }, { "quarantined", t_quarantined },
  { "time", t_time }, { "write_file", t_write_file }, { NULL, NULL }
};

/* Runs eddy.tools.<fn>(tool, opts) where opts holds the positional
 * arguments (pos) and the options given; it prints and returns the exit
 * status, or raises a one-line message for an eddy_cli_fail.  The state is
 * a sandbox (sandbox.h), as handler files load in everywhere, without
 * limits: a tool runs as long as it needs. */
int eddy_cli_run_tool(const eddy_cli_args *a, const char *fn, eddy_store *s,
                      const char *const *opt_names) {
  char err[512];
  eddy_sandbox *sb = eddy_sandbox_new(err, sizeof err);
  if (!sb) return eddy_cli_fail(a, "%s", err);
  eddy_sandbox_limits(sb, 0, 0, 0);
  lua_State *L = eddy_sandbox_state(sb);
  lua_pushlightuserdata(L, s);
  lua_setfield(L, LUA_REGISTRYINDEX, STORE_KEY);
  eddy_failure f;
  lua_getglobal(L, "require");
  lua_pushliteral(L, "eddy.tools");
  int rc;
  if (eddy_sandbox_call(sb, 1, 1, &f) != 0) {
    rc = eddy_cli_fail(a, "%s", f.error);
    eddy_sandbox_free(sb);
    return rc;
  }
  lua_getfield(L, -1, fn);
  luaL_newlib(L, tool_funcs);
  lua_createtable(L, a->npos, 4);
  for (int i = 0; i < a->npos; i++) {
    lua_pushstring(L, a->pos[i]);
    lua_rawseti(L, -2, i + 1);
  }
  for (int i = 0; opt_names && opt_names[i]; i++) {
    const char *v = eddy_cli_value(a, opt_names[i]);
    if (v) lua_pushstring(L, v);
    else lua_pushboolean(L, eddy_cli_flag(a, opt_names[i]));
    lua_setfield(L, -2, opt_names[i]);
  }
  if (eddy_sandbox_call(sb, 2, 1, &f) != 0) {
    /* A raised string is a failure for the user: its first line. */
    size_t n = strcspn(f.error, "\n");
    rc = eddy_cli_fail(a, "%.*s", (int)n, f.error);
  } else {
    rc = (int)lua_tointeger(L, -1);
  }
  fflush(stdout);
  eddy_sandbox_free(sb);
  return rc;
}

static int with_store(const eddy_cli_args *a, const char *fn, const char *const *opts) {
  eddy_store *s = eddy_cli_open(a, EDDY_CLI_READ);
  if (!s) return EDDY_EXIT_FAIL;
  int rc = eddy_cli_run_tool(a, fn, s, opts);
  eddy_store_close(s);
  return rc;
}

static int run_list(const eddy_cli_args *a) {
  static const char *const opts[] = { "status", "saga", "json", NULL };
  return with_store(a, "saga_list", opts);
}

static int run_show(const eddy_cli_args *a) {
  static const char *const opts[] = { "json", NULL };
  return with_store(a, "saga_show", opts);
}

static int run_flows(const eddy_cli_args *a) {
  static const char *const opts[] = { "format", NULL };
  return eddy_cli_run_tool(a, "flows", NULL, opts);
}

const eddy_cli_cmd eddy_cmd_saga_list = {
  "saga list", "[--status S] [--saga NAME] [--json]",
  "saga instances: id, saga, status, step, times",
  "Lists every saga instance in the data directory, oldest first.  Status is\n"
  "running, completed, compensating, compensated or failed (a message of the\n"
  "instance is quarantined: see eddy dlq list; a replay that goes through\n"
  "takes it back).\n",
  (const eddy_cli_opt[]){
    { "status", 's', "S", "only instances in status S" },
    { "saga", 0, "NAME", "only instances of saga NAME" },
    { "json", 'j', NULL, "one JSON object per line, the whole instance" },
    { 0 } },
  0, 0, run_list
};

const eddy_cli_cmd eddy_cmd_saga_show = {
  "saga show", "ID [--json]", "one saga instance: status, data, and every step with times",
  "ID is the instance's id (the correlation id of the event that started it).\n"
  "Prints its status, why it compensated, its data, and its history: events in\n"
  "and out, timeouts, compensations, late and duplicate replies, with times.\n",
  (const eddy_cli_opt[]){ { "json", 'j', NULL, "the instance as one JSON object" }, { 0 } },
  1, 1, run_show
};

const eddy_cli_cmd eddy_cmd_flows = {
  "flows", "[APP] [--format mermaid|dot]",
  "the graph of topics, event types, consumers, rules and sagas",
  "Loads the app (default ./eddy.lua) without running it and prints the flow\n"
  "of events: which consumer, rule or saga handles which topic and type, and\n"
  "what each emits.  Then warnings, on stderr: event types consumed but never\n"
  "produced, produced but never consumed, and cycles.\n",
  (const eddy_cli_opt[]){
    { "format", 'f', "F", "mermaid (the default) or dot" }, { 0 } },
  0, 1, run_flows
};
