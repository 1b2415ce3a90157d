/*
 * leddy.c - the module table of eddy.core: eddy.open (from llog.c) and the
 * module functions that need no store (ids, the partitioner, versions).
 */
#include "leddy.h"

#include <limits.h>
#include <stdint.h>

#include <lauxlib.h>
#include <librdkafka/rdkafka.h>
#include <sqlite3.h>
#include <uv.h>

#include "buf.h"
#include "ljson.h"
#include "llog.h"
#include "lschema.h"
#include "partitioner.h"
#include "store.h"
#include "units.h"
#include "uuid.h"

/* eddy.uuid() -> a new UUIDv7 in canonical lower-case text.  Ids made by
 * one process sort in the order they were made.  Never fails. */
static int l_uuid(lua_State *L) {
  char id[EDDY_UUID_STRLEN + 1];
  eddy_uuid_v7(id);
  lua_pushlstring(L, id, EDDY_UUID_STRLEN);
  return 1;
}

/* eddy.partition_for(key, partitions) -> the partition, from 0, that
 * Kafka's default partitioner gives a message with this key.  Raises when
 * key is not a string or partitions is not a positive integer: Kafka
 * topics may have more partitions than eddy's 4096, so any int is taken. */
static int l_partition_for(lua_State *L) {
  size_t len;
  luaL_checktype(L, 1, LUA_TSTRING);
  const char *key = lua_tolstring(L, 1, &len);
  lua_Integer n = luaL_checkinteger(L, 2);
  luaL_argcheck(L, n >= 1 && n <= INT_MAX, 2,
                "partition count must be positive");
  lua_pushinteger(L, eddy_partition_for_key(key, len, (int)n));
  return 1;
}

/* eddy.versions() -> a new table of the versions of eddy and of the
 * libraries it runs on, as those libraries report them at run time. */
static int l_versions(lua_State *L) {
  lua_createtable(L, 0, 5);
  lua_pushstring(L, EDDY_VERSION);
  lua_setfield(L, -2, "eddy");
  lua_pushstring(L, LUA_RELEASE);
  lua_setfield(L, -2, "lua");
  lua_pushstring(L, sqlite3_libversion());
  lua_setfield(L, -2, "sqlite");
  lua_pushstring(L, rd_kafka_version_str());
  lua_setfield(L, -2, "librdkafka");
  lua_pushstring(L, uv_version_string());
  lua_setfield(L, -2, "libuv");
  return 1;
}

/* eddy.core.hash(s) -> 16 lower-case hex digits of the 64-bit FNV-1a hash
 * of s: the version of a handler script.  Not cryptographic. */
static int l_hash(lua_State *L) {
  size_t len;
  const unsigned char *p = (const unsigned char *)luaL_checklstring(L, 1, &len);
  uint64_t h = 0xcbf29ce484222325ULL;
  for (size_t i = 0; i < len; i++) {
    h ^= p[i];
    h *= 0x100000001b3ULL;
  }
  char hex[17];
  for (int i = 15; i >= 0; i--) {
    hex[i] = "0123456789abcdef"[h & 15];
    h >>= 4;
  }
  lua_pushlstring(L, hex, 16);
  return 1;
}

/* eddy.core.duration_ms(s) -> milliseconds, or nil when s is not a
 * duration ("250ms", "30s", "15m", "12h", "7d"; a bare number is ms). */
static int l_duration_ms(lua_State *L) {
  int64_t v;
  if (eddy_parse_duration_ms(luaL_checkstring(L, 1), &v) != 0) return 0;
  lua_pushinteger(L, (lua_Integer)v);
  return 1;
}

/* eddy.core.size_bytes(s) -> bytes, or nil when s is not a size ("512KiB",
 * "1MB", "1048576"). */
static int l_size_bytes(lua_State *L) {
  int64_t v;
  if (eddy_parse_size(luaL_checkstring(L, 1), &v) != 0) return 0;
  lua_pushinteger(L, (lua_Integer)v);
  return 1;
}

/* eddy.core.now_ms() -> the wall clock, in ms since the epoch. */
static int l_now_ms(lua_State *L) {
  lua_pushinteger(L, (lua_Integer)eddy_now_ms());
  return 1;
}

/* eddy.core.json_decode(text) -> the value (JSON null is eddy.core.null),
 * or nil, why. */
static int l_json_decode(lua_State *L) {
  size_t n;
  const char *s = luaL_checklstring(L, 1, &n);
  char why[160];
  if (eddy_json_decode(L, s, n, why, sizeof why) != 0) {
    lua_pushnil(L);
    lua_pushstring(L, why);
    return 2;
  }
  return 1;
}

/* eddy.core.json_encode(value) -> JSON text, or nil, why. */
static int l_json_encode(lua_State *L) {
  luaL_checkany(L, 1);
  eddy_buf b = { 0 };
  char why[160];
  if (eddy_json_encode(L, 1, &b, why, sizeof why) != 0) {
    eddy_buf_free(&b);
    lua_pushnil(L);
    lua_pushstring(L, why);
    return 2;
  }
  lua_pushlstring(L, b.data ? b.data : "", b.len);
  eddy_buf_free(&b);
  return 1;
}

static const luaL_Reg core_funcs[] = {
  {"json_decode", l_json_decode},
  {"json_encode", l_json_encode},
  {"schema_compile", eddy_lschema_compile},
  {"hash", l_hash},
  {"now_ms", l_now_ms},
  {"duration_ms", l_duration_ms},
  {"size_bytes", l_size_bytes},
  {"open", eddy_llog_open},
  {"uuid", l_uuid},
  {"partition_for", l_partition_for},
  {"versions", l_versions},
  {NULL, NULL}
};

int luaopen_eddy_core(lua_State *L) {
  luaL_checkversion(L);
  eddy_llog_setup(L);
  luaL_newlib(L, core_funcs);
  lua_pushstring(L, EDDY_VERSION);
  lua_setfield(L, -2, "_VERSION");
  lua_pushlightuserdata(L, NULL);   /* JSON null, as the decoder gives it */
  lua_setfield(L, -2, "null");
  return 1;
}
