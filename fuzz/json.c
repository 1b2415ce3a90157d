/*
 * json.c - fuzzes eddy_json_decode (runtime/ljson.h): message values and
 * state read back as JSON.
 *
 * Checks: a failure pushes nothing and names a byte inside the input (or
 * just past it); a success pushes one value; and the round trip: the text
 * encode gives for the decoded value decodes again, and encodes to the same
 * text.  Encoding may refuse what decoding accepted only for the limits
 * ljson.h names: nesting past the encoder's depth, a number past a
 * double's range (read as an infinity), bytes that are not UTF-8.
 */
#include <string.h>

#include <lauxlib.h>
#include <lua.h>

#include "buf.h"
#include "fuzz.h"
#include "ljson.h"

static lua_State *L;

/* The most brackets a text can open: the encoder's depth limit is 100. */
static size_t openings(const uint8_t *d, size_t n) {
  size_t k = 0;
  for (size_t i = 0; i < n; i++) k += d[i] == '[' || d[i] == '{';
  return k;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (!L) L = luaL_newstate();
  const char *s = (const char *)data;
  char err[256];
  int top = lua_gettop(L);
  if (eddy_json_decode(L, s, size, err, sizeof err) != 0) {
    FUZZ_CHECK(lua_gettop(L) == top, "a failed decode pushed %d values", lua_gettop(L) - top);
    const char *at = strstr(err, " at byte ");
    FUZZ_CHECK(at != NULL, "no position in '%s'", err);
    long byte = strtol(at + 9, NULL, 10);
    FUZZ_CHECK(byte >= 1 && (size_t)byte <= size + 1, "byte %ld of %zu in '%s'", byte, size, err);
    return 0;
  }
  FUZZ_CHECK(lua_gettop(L) == top + 1, "decode pushed %d values", lua_gettop(L) - top);
  eddy_buf a = EDDY_BUF_INIT, b = EDDY_BUF_INIT;
  if (eddy_json_encode(L, -1, &a, err, sizeof err) != 0) {
    int allowed = (strstr(err, "not UTF-8") && !eddy_utf8_valid(data, size)) ||
                  (strstr(err, "nested too deeply") && openings(data, size) >= 100) ||
                  strcmp(err, "a NaN or infinite number") == 0;
    FUZZ_CHECK(allowed, "decoded, but encode refuses: %s", err);
    eddy_buf_free(&a);
    lua_settop(L, top);
    return 0;
  }
  FUZZ_CHECK(eddy_json_decode(L, a.data, a.len, err, sizeof err) == 0,
             "encode's text does not decode: %s: %.*s", err, (int)a.len, a.data);
  FUZZ_CHECK(eddy_json_encode(L, -1, &b, err, sizeof err) == 0, "encode again: %s", err);
  FUZZ_CHECK(a.len == b.len && memcmp(a.data, b.data, a.len) == 0,
             "round trip differs: '%.*s' then '%.*s'", (int)a.len, a.data, (int)b.len, b.data);
  eddy_buf_free(&a);
  eddy_buf_free(&b);
  lua_settop(L, top);
  return 0;
}
