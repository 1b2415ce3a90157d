/*
 * app.c - an app file read into C (see app.h).
 */
#include "app.h"
#include "sandbox.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <lualib.h>

static char *dupstr(const char *s) { return strdup(s ? s : ""); }

static int field_int(lua_State *L, int t, const char *k, lua_Integer def) {
  lua_getfield(L, t, k);
  lua_Integer v = lua_isinteger(L, -1) ? lua_tointeger(L, -1) : def;
  lua_pop(L, 1);
  return (int)v;
}

static int64_t field_i64(lua_State *L, int t, const char *k, int64_t def) {
  lua_getfield(L, t, k);
  int64_t v = lua_isinteger(L, -1) ? (int64_t)lua_tointeger(L, -1) : def;
  lua_pop(L, 1);
  return v;
}

/* The strings of list field k of table t (a fresh array, *n set). */
static char **field_strings(lua_State *L, int t, const char *k, int *n) {
  lua_getfield(L, t, k);
  *n = lua_istable(L, -1) ? (int)lua_rawlen(L, -1) : 0;
  char **out = calloc((size_t)*n + 1, sizeof *out);
  for (int i = 0; out && i < *n; i++) {
    lua_rawgeti(L, -1, i + 1);
    out[i] = dupstr(lua_tostring(L, -1));
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
  return out;
}

/* The consumer table at index ct. */
static void read_consumer(lua_State *L, int ct, eddy_consumer_def *c) {
  lua_getfield(L, ct, "name"); c->name = dupstr(lua_tostring(L, -1)); lua_pop(L, 1);
  lua_getfield(L, ct, "file"); c->file = dupstr(lua_tostring(L, -1)); lua_pop(L, 1);
  lua_getfield(L, ct, "version"); c->version = dupstr(lua_tostring(L, -1)); lua_pop(L, 1);
  c->topics = field_strings(L, ct, "topics", &c->ntopics);
  c->dlq_topics = calloc((size_t)c->ntopics + 1, sizeof(char *));
  lua_getfield(L, ct, "dlq");
  for (int k = 0; k < c->ntopics; k++) {
    if (lua_isstring(L, -1)) {
      c->dlq_topics[k] = dupstr(lua_tostring(L, -1));
    } else {
      size_t len = strlen(c->topics[k]) + 5;
      c->dlq_topics[k] = malloc(len);
      snprintf(c->dlq_topics[k], len, "%s.dlq", c->topics[k]);
    }
  }
  lua_pop(L, 1);
  int t = lua_getfield(L, ct, "dedupe");
  c->dedupe = t == LUA_TNIL ? 1 : t == LUA_TFUNCTION ? 2 : 0;
  lua_pop(L, 1);
  lua_getfield(L, ct, "retry");
  c->attempts = field_int(L, lua_gettop(L), "attempts", 5);
  c->backoff_ms = field_i64(L, lua_gettop(L), "backoff_ms", 100);
  c->max_backoff_ms = field_i64(L, lua_gettop(L), "max_backoff_ms", 30000);
  lua_pop(L, 1);
  lua_getfield(L, ct, "from");
  c->from_end = lua_isstring(L, -1) && strcmp(lua_tostring(L, -1), "end") == 0;
  lua_pop(L, 1);
  lua_getfield(L, ct, "limits");
  c->instructions = field_i64(L, lua_gettop(L), "instructions", 50000000);
  c->memory = (size_t)field_i64(L, lua_gettop(L), "memory", 64 << 20);
  c->timeout_ms = field_i64(L, lua_gettop(L), "timeout_ms", 30000);
  c->max_emits = field_i64(L, lua_gettop(L), "emits", 100000);
  lua_pop(L, 1);
  lua_getfield(L, ct, "sandbox");
  c->strict = lua_isstring(L, -1) && strcmp(lua_tostring(L, -1), "strict") == 0;
  lua_pop(L, 1);
  c->active = 1;
}

/* eddy.app.load(file, opts) in sandbox sb, then the app into a.  strict:
 * the files to load in the strict sandbox (a table at that index), or 0.
 * Returns 0, -1 with err, or 1 when the app must be read again with the
 * files its `restrict` lists in strict (left on the stack). */
static int read_app(eddy_sandbox *sb, const char *file, const char *data_override,
                    int strict, eddy_app *a, char *err, size_t errlen) {
  lua_State *L = eddy_sandbox_state(sb);
  eddy_failure f;
  lua_getglobal(L, "require");
  lua_pushliteral(L, "eddy.app");
  if (eddy_sandbox_call(sb, 1, 1, &f) != 0) {
    snprintf(err, errlen, "%s", f.error);
    return -1;
  }
  lua_getfield(L, -1, "load");
  lua_pushstring(L, file);
  lua_createtable(L, 0, 2);
  if (data_override) {
    lua_pushstring(L, data_override);
    lua_setfield(L, -2, "data");
  }
  if (strict) {
    lua_pushvalue(L, strict);
    lua_setfield(L, -2, "strict_files");
  }
  /* The handler files' top level runs here: under the load limits. */
  if (eddy_sandbox_call(sb, 2, 2, &f) != 0) {
    snprintf(err, errlen, "%s", f.error);
    return -1;
  }
  if (lua_isnil(L, -2)) {
    snprintf(err, errlen, "%s", lua_tostring(L, -1));
    return -1;
  }
  lua_pop(L, 1);
  int app = lua_gettop(L);
  if (lua_getfield(L, app, "restrict") == LUA_TTABLE) {
    lua_getfield(L, app, "strict_files");
    return 1;
  }
  lua_pop(L, 1);
  lua_getfield(L, app, "data");
  a->data_dir = dupstr(lua_tostring(L, -1));
  lua_pop(L, 1);
  lua_getfield(L, app, "dir");
  a->app_dir = dupstr(lua_tostring(L, -1));
  lua_pop(L, 1);
  a->workers = field_int(L, app, "workers", 2);
  a->dedupe_window_ms = field_i64(L, app, "dedupe_window_ms", 7 * 86400000LL);
  a->handler_files = field_strings(L, app, "handler_files", &a->nhandler_files);
  a->handler_strict = calloc((size_t)a->nhandler_files + 1, sizeof *a->handler_strict);
  lua_getfield(L, app, "strict_files");
  for (lua_Integer k = 1; a->handler_strict && k <= (lua_Integer)lua_rawlen(L, -1); k++) {
    lua_rawgeti(L, -1, k);
    for (int i = 0; i < a->nhandler_files; i++)
      if (strcmp(a->handler_files[i], lua_tostring(L, -1)) == 0) a->handler_strict[i] = 1;
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
  a->handler_dirs = field_strings(L, app, "handler_dirs", &a->nhandler_dirs);
  a->kafka = field_strings(L, app, "kafka", &a->nkafka);
  lua_getfield(L, app, "catalog");
  a->catalog = dupstr(lua_tostring(L, -1));
  lua_pop(L, 1);
  lua_getfield(L, app, "events");
  a->nevents = lua_istable(L, -1) ? (int)lua_rawlen(L, -1) : 0;
  lua_pop(L, 1);
  lua_getfield(L, app, "broker");
  if (lua_isstring(L, -1)) a->broker = dupstr(lua_tostring(L, -1));
  lua_pop(L, 1);
  lua_getfield(L, app, "admin");
  if (lua_isstring(L, -1)) a->admin = dupstr(lua_tostring(L, -1));
  lua_pop(L, 1);
  lua_getfield(L, app, "admin_public");
  a->admin_public = lua_toboolean(L, -1);
  lua_pop(L, 1);

  /* The app's topics, in name order for a stable creation order. */
  lua_getfield(L, app, "topics");
  int tt = lua_gettop(L);
  int n = 0;
  lua_pushnil(L);
  while (lua_next(L, tt)) { n++; lua_pop(L, 1); }
  a->topics = calloc((size_t)n + 1, sizeof *a->topics);
  a->topic_names = calloc((size_t)n + 1, sizeof *a->topic_names);
  lua_pushnil(L);
  while (lua_next(L, tt)) {
    int k = a->ntopics++;
    a->topic_names[k] = dupstr(lua_tostring(L, -2));
    eddy_topic_config *c = &a->topics[k];
    eddy_topic_config_init(c);
    int v = lua_gettop(L);
    c->partitions = field_int(L, v, "partitions", 1);
    c->retention_ms = field_i64(L, v, "retention_ms", -1);
    c->retention_bytes = field_i64(L, v, "retention_bytes", -1);
    c->max_message_bytes = field_i64(L, v, "max_message_bytes",
                                     EDDY_DEFAULT_MAX_MESSAGE_BYTES);
    lua_pop(L, 1);
  }
  lua_pop(L, 1);

  lua_getfield(L, app, "consumers");
  int cs = lua_gettop(L);
  a->nconsumers = (int)lua_rawlen(L, cs);
  a->consumers = calloc((size_t)a->nconsumers + 1, sizeof *a->consumers);
  for (int i = 0; i < a->nconsumers; i++) {
    lua_rawgeti(L, cs, i + 1);
    read_consumer(L, lua_gettop(L), &a->consumers[i]);
    lua_pop(L, 1);
  }
  lua_pop(L, 2);
  return 0;
}

int eddy_app_read(const char *file, const char *data_override, eddy_app *a,
                  char *err, size_t errlen) {
  memset(a, 0, sizeof *a);
  eddy_sandbox *sb = eddy_sandbox_new(err, errlen);
  if (!sb) return -1;
  int rc = read_app(sb, file, data_override, 0, a, err, errlen);
  if (rc == 1) {
    /* A consumer asked for the strict sandbox, and its file ran in the
     * default one: read everything again in a new state, that file
     * strict, as the workers will load it. */
    eddy_sandbox *again = eddy_sandbox_new(err, errlen);
    if (!again) {
      rc = -1;
    } else {
      lua_State *L = eddy_sandbox_state(sb), *L2 = eddy_sandbox_state(again);
      int n = (int)lua_rawlen(L, -1);
      lua_createtable(L2, n, 0);
      for (int i = 1; i <= n; i++) {
        lua_rawgeti(L, -1, i);
        lua_pushstring(L2, lua_tostring(L, -1));
        lua_rawseti(L2, -2, i);
        lua_pop(L, 1);
      }
      rc = read_app(again, file, data_override, lua_gettop(L2), a, err, errlen);
      if (rc == 1) {
        snprintf(err, errlen, "%s: the handler files changed while eddy was reading them",
                 file);
        rc = -1;
      }
      eddy_sandbox_free(again);
    }
  }
  eddy_sandbox_free(sb);
  if (rc != 0) eddy_app_free(a);
  return rc;
}

void eddy_consumer_def_free(eddy_consumer_def *c) {
  free(c->name); free(c->file); free(c->version);
  for (int k = 0; k < c->ntopics; k++) {
    free(c->topics[k]);
    if (c->dlq_topics) free(c->dlq_topics[k]);
  }
  free(c->topics); free(c->dlq_topics);
  memset(c, 0, sizeof *c);
}

int eddy_consumer_def_copy(eddy_consumer_def *dst, const eddy_consumer_def *src) {
  *dst = *src;
  dst->name = dupstr(src->name);
  dst->file = dupstr(src->file);
  dst->version = dupstr(src->version);
  dst->topics = calloc((size_t)src->ntopics + 1, sizeof(char *));
  dst->dlq_topics = calloc((size_t)src->ntopics + 1, sizeof(char *));
  int ok = dst->name && dst->file && dst->version && dst->topics && dst->dlq_topics;
  for (int k = 0; ok && k < src->ntopics; k++) {
    dst->topics[k] = dupstr(src->topics[k]);
    dst->dlq_topics[k] = dupstr(src->dlq_topics[k]);
    ok = dst->topics[k] && dst->dlq_topics[k];
  }
  if (!ok) { eddy_consumer_def_free(dst); return -1; }
  return 0;
}

int eddy_consumer_def_same(const eddy_consumer_def *a, const eddy_consumer_def *b) {
  if (strcmp(a->name, b->name) || strcmp(a->version, b->version) ||
      strcmp(a->file, b->file) || a->ntopics != b->ntopics || a->strict != b->strict)
    return 0;
  for (int k = 0; k < a->ntopics; k++)
    if (strcmp(a->topics[k], b->topics[k]) || strcmp(a->dlq_topics[k], b->dlq_topics[k]))
      return 0;
  return 1;
}

void eddy_app_free(eddy_app *a) {
  free(a->data_dir);
  free(a->app_dir);
  for (int i = 0; i < a->nhandler_files; i++) free(a->handler_files[i]);
  free(a->handler_files);
  free(a->handler_strict);
  free(a->catalog);
  for (int i = 0; i < a->nhandler_dirs; i++) free(a->handler_dirs[i]);
  free(a->handler_dirs);
  for (int i = 0; i < a->nkafka; i++) free(a->kafka[i]);
  free(a->kafka);
  free(a->broker);
  free(a->admin);
  for (int i = 0; i < a->ntopics; i++) free(a->topic_names[i]);
  free(a->topic_names);
  free(a->topics);
  for (int i = 0; i < a->nconsumers; i++) eddy_consumer_def_free(&a->consumers[i]);
  free(a->consumers);
  memset(a, 0, sizeof *a);
}
