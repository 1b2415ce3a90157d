/*
 * test-ljson.c - eddy's JSON codec: exact numbers, escapes, surrogates,
 * nesting, and one-line errors for bad input.
 */
#include <string.h>

#include <lauxlib.h>
#include <lualib.h>

#include "ljson.h"
#include "test.h"

/* Decodes text, re-encodes the result, and compares with want (NULL: the
 * decode must fail with an error containing why). */
static int roundtrip(const char *text, const char *want, const char *why) {
  lua_State *L = luaL_newstate();
  char err[128] = "";
  eddy_buf b = EDDY_BUF_INIT;
  int ok = 0;
  if (eddy_json_decode(L, text, strlen(text), err, sizeof err) != 0) {
    ok = !want && why && strstr(err, why) != NULL;
  } else if (want && eddy_json_encode(L, -1, &b, err, sizeof err) == 0) {
    ok = strcmp(b.data ? b.data : "", want) == 0;
  }
  eddy_buf_free(&b);
  lua_close(L);
  return ok;
}

TEST(ljson_numbers_exact) {
  ASSERT(roundtrip("123456789012345", "123456789012345", NULL));
  ASSERT(roundtrip("9007199254740993", "9007199254740993", NULL));
  ASSERT(roundtrip("-9223372036854775808", "-9223372036854775808", NULL));
  ASSERT(roundtrip("0.1", "0.1", NULL));
  ASSERT(roundtrip("1.0", "1", NULL));   /* a float 1.0, written shortest */
  ASSERT(roundtrip("1e3", "1000", NULL));
  ASSERT(roundtrip("0.3333333333333333", "0.3333333333333333", NULL));
}

TEST(ljson_integers_are_integers) {
  lua_State *L = luaL_newstate();
  char err[64];
  ASSERT_EQ_INT(eddy_json_decode(L, "{\"id\":7,\"x\":7.5}", 16, err, sizeof err), 0);
  lua_getfield(L, -1, "id");
  int isint = lua_isinteger(L, -1);
  lua_getfield(L, -2, "x");
  int isfloat = !lua_isinteger(L, -1);
  lua_close(L);
  ASSERT(isint);
  ASSERT(isfloat);
}

TEST(ljson_strings) {
  ASSERT(roundtrip("\"a\\\"b\\\\c\\/d\\n\\t\"", "\"a\\\"b\\\\c/d\\n\\t\"", NULL));
  ASSERT(roundtrip("\"\\u00e9\\u20ac\"", "\"\xc3\xa9\xe2\x82\xac\"", NULL));
  ASSERT(roundtrip("\"\\ud83d\\ude00\"", "\"\xf0\x9f\x98\x80\"", NULL));
  ASSERT(roundtrip("\"\\ud83d\"", NULL, "lone surrogate"));
  ASSERT(roundtrip("\"abc", NULL, "unterminated string"));
  ASSERT(roundtrip("\"a\x01\"", NULL, "control character"));
  ASSERT(roundtrip("\"\\x\"", NULL, "bad escape"));
}

TEST(ljson_containers) {
  ASSERT(roundtrip("{\"b\":[1,2,{\"c\":null}],\"a\":true}",
                   "{\"a\":true,\"b\":[1,2,{\"c\":null}]}", NULL));
  ASSERT(roundtrip("[]", "{}", NULL));   /* an empty table is an object */
  ASSERT(roundtrip(" { } ", "{}", NULL));
  ASSERT(roundtrip("[1,2,]", NULL, "invalid token"));
  ASSERT(roundtrip("{\"a\" 1}", NULL, "expected ':'"));
  ASSERT(roundtrip("{1:2}", NULL, "expected a string key"));
  ASSERT(roundtrip("[1] x", NULL, "trailing characters"));
  ASSERT(roundtrip("", NULL, "unexpected end"));
  ASSERT(roundtrip("01", NULL, "leading zero"));
  ASSERT(roundtrip("not json", NULL, "invalid token at byte 1"));
}

TEST(ljson_depth_limited) {
  char deep[3000];
  memset(deep, '[', 2000);
  deep[2000] = '\0';
  ASSERT(roundtrip(deep, NULL, "nested too deeply"));
}

TEST(ljson_encode_refuses) {
  lua_State *L = luaL_newstate();
  luaL_openlibs(L);
  char err[128];
  eddy_buf b = EDDY_BUF_INIT;
  (void)luaL_dostring(L, "return function() end, 0/0, '\\xff', {}");
  int f = eddy_json_encode(L, -4, &b, err, sizeof err);
  int fn_ok = f != 0 && strcmp(err, "cannot encode a function") == 0;
  f = eddy_json_encode(L, -3, &b, err, sizeof err);
  int nan_ok = f != 0 && strcmp(err, "a NaN or infinite number") == 0;
  f = eddy_json_encode(L, -2, &b, err, sizeof err);
  int utf_ok = f != 0 && strstr(err, "not UTF-8") != NULL;
  /* A cycle. */
  (void)luaL_dostring(L, "local t = {} t.self = t return t");
  f = eddy_json_encode(L, -1, &b, err, sizeof err);
  int cyc_ok = f != 0 && strstr(err, "nested too deeply") != NULL;
  eddy_buf_free(&b);
  lua_close(L);
  ASSERT(fn_ok);
  ASSERT(nan_ok);
  ASSERT(utf_ok);
  ASSERT(cyc_ok);
}

/* Found by fuzz/json.c: -0.0 was written "-0", which reads back as the
 * integer 0, so the text of a round trip changed. */
TEST(ljson_negative_zero) {
  ASSERT(roundtrip("-0.0", "-0.0", NULL));
  ASSERT(roundtrip("-1e-400", "-0.0", NULL));   /* underflows to -0.0 */
  ASSERT(roundtrip("[-0, 0.0]", "[0,0]", NULL));
}

/* Found by fuzz/app.c: a float key out of the integers' range was cast to
 * one (undefined behaviour), and a float key whose 14-digit text is not
 * exact lost its value (written null). */
TEST(ljson_float_keys) {
  lua_State *L = luaL_newstate();
  luaL_openlibs(L);
  char err[128] = "";
  eddy_buf b = EDDY_BUF_INIT;
  (void)luaL_dostring(L, "return { [0.1 + 0.2] = 1, [1e308] = 2, [-0.5] = 3 }");
  int rc = eddy_json_encode(L, -1, &b, err, sizeof err);
  int text_ok = rc == 0 && b.len == strlen("{\"-0.5\":3,\"0.30000000000000004\":1,\"1e+308\":2}") &&
                memcmp(b.data, "{\"-0.5\":3,\"0.30000000000000004\":1,\"1e+308\":2}", b.len) == 0;
  (void)luaL_dostring(L, "return { [-math.huge] = 1 }");
  rc = eddy_json_encode(L, -1, &b, err, sizeof err);
  int inf_ok = rc != 0 && strcmp(err, "a table key that is an infinite number") == 0;
  eddy_buf_free(&b);
  lua_close(L);
  ASSERT(text_ok);
  ASSERT(inf_ok);
}

/* A number key and a string key of the same text would both be written
 * under it, and one value lost on the way back. */
TEST(ljson_key_collision) {
  lua_State *L = luaL_newstate();
  luaL_openlibs(L);
  char err[128] = "";
  eddy_buf b = EDDY_BUF_INIT;
  (void)luaL_dostring(L, "return { [1] = 'a', ['1'] = 'b', x = 1 }");
  int rc = eddy_json_encode(L, -1, &b, err, sizeof err);
  int int_ok = rc != 0 && strcmp(err, "two table keys written \"1\" (a number and a string)") == 0;
  (void)luaL_dostring(L, "return { [0.5] = 'a', ['0.5'] = 'b' }");
  rc = eddy_json_encode(L, -1, &b, err, sizeof err);
  int float_ok = rc != 0 && strcmp(err, "two table keys written \"0.5\" (a number and a string)") == 0;
  eddy_buf_reset(&b);
  (void)luaL_dostring(L, "return { [2] = 'a', ['1'] = 'b' }");
  rc = eddy_json_encode(L, -1, &b, err, sizeof err);
  int apart_ok = rc == 0 && b.len == strlen("{\"1\":\"b\",\"2\":\"a\"}") &&
                 memcmp(b.data, "{\"1\":\"b\",\"2\":\"a\"}", b.len) == 0;
  eddy_buf_free(&b);
  lua_close(L);
  ASSERT(int_ok);
  ASSERT(float_ok);
  ASSERT(apart_ok);
}
