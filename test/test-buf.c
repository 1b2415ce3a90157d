/*
 * test-buf.c - the growable buffer and the JSON, UTF-8 and base64 writers
 * that eddy's --json output is built from.
 */
#include <string.h>

#include "buf.h"
#include "test.h"

TEST(buf_grows) {
  eddy_buf b = EDDY_BUF_INIT;
  for (int i = 0; i < 1000; i++) ASSERT_EQ_INT(eddy_buf_printf(&b, "%d,", i % 10), 0);
  ASSERT_EQ_INT(b.len, 2000);
  ASSERT(strncmp(b.data, "0,1,2,", 6) == 0);
  eddy_buf_reset(&b);
  ASSERT_EQ_INT(b.len, 0);
  ASSERT_EQ_STR(b.data, "");
  eddy_buf_free(&b);
}

TEST(buf_json_escapes) {
  eddy_buf b = EDDY_BUF_INIT;
  const char in[] = "a\"b\\c\nd\te\x01\x1f/é";
  ASSERT_EQ_INT(eddy_buf_json_str(&b, in, sizeof in - 1), 0);
  ASSERT_EQ_STR(b.data, "\"a\\\"b\\\\c\\nd\\te\\u0001\\u001f/é\"");
  eddy_buf_reset(&b);
  ASSERT_EQ_INT(eddy_buf_json_str(&b, "a\0b", 3), 0);
  ASSERT_EQ_STR(b.data, "\"a\\u0000b\"");
  eddy_buf_free(&b);
}

TEST(buf_utf8_validation) {
  ASSERT_EQ_INT(eddy_utf8_valid("plain", 5), 1);
  ASSERT_EQ_INT(eddy_utf8_valid("\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80", 9), 1);
  ASSERT_EQ_INT(eddy_utf8_valid("\xff", 1), 0);
  ASSERT_EQ_INT(eddy_utf8_valid("\xc3", 1), 0);           /* truncated */
  ASSERT_EQ_INT(eddy_utf8_valid("\xc0\xaf", 2), 0);       /* overlong */
  ASSERT_EQ_INT(eddy_utf8_valid("\xed\xa0\x80", 3), 0);   /* surrogate */
  ASSERT_EQ_INT(eddy_utf8_valid("\xf4\x90\x80\x80", 4), 0); /* > U+10FFFF */
}

TEST(buf_base64) {
  static const struct { const char *in; const char *out; } v[] = {
    { "", "" }, { "f", "Zg==" }, { "fo", "Zm8=" }, { "foo", "Zm9v" },
    { "foob", "Zm9vYg==" }, { "fooba", "Zm9vYmE=" }, { "foobar", "Zm9vYmFy" },
  };
  eddy_buf b = EDDY_BUF_INIT;
  for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
    eddy_buf_reset(&b);
    ASSERT_EQ_INT(eddy_buf_base64(&b, v[i].in, strlen(v[i].in)), 0);
    ASSERT_EQ_STR(b.len ? b.data : "", v[i].out);
  }
  eddy_buf_reset(&b);
  ASSERT_EQ_INT(eddy_buf_base64(&b, "\xff\xfe\x00", 3), 0);
  ASSERT_EQ_STR(b.data, "//4A");
  eddy_buf_free(&b);
}
