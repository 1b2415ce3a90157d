/*
 * test-headers.c - the header blob: order and repeats kept, bytes exact,
 * malformed blobs refused rather than read past their end.
 */
#include <stdint.h>
#include <string.h>

#include "headers.h"
#include "test.h"

TEST(headers_round_trip) {
  static const char bin[] = { 'a', 0, (char)0xff, 'b' };
  char big[300];
  memset(big, 'x', sizeof big);
  eddy_header in[] = {
    { "trace", 5, "abc", 3 }, { "k", 1, bin, sizeof bin },
    { "trace", 5, "", 0 }, { "long", 4, big, sizeof big },
  };
  size_t size = eddy_headers_size(in, 4);
  /* 1+5+1+3 + 1+1+1+4 + 1+5+1+0 + 1+4+2+300: 300 needs a two-byte varint. */
  ASSERT_EQ_INT(size, 10 + 7 + 7 + 307);
  unsigned char blob[400];
  ASSERT_EQ_INT(eddy_headers_encode(in, 4, blob), size);
  size_t pos = 0;
  eddy_header h;
  for (int i = 0; i < 4; i++) {
    ASSERT_EQ_INT(eddy_headers_next(blob, size, &pos, &h), 1);
    ASSERT_EQ_INT(h.name_len, in[i].name_len);
    ASSERT(memcmp(h.name, in[i].name, h.name_len) == 0);
    ASSERT_EQ_INT(h.value_len, in[i].value_len);
    ASSERT(h.value_len == 0 || memcmp(h.value, in[i].value, h.value_len) == 0);
  }
  ASSERT_EQ_INT(eddy_headers_next(blob, size, &pos, &h), 0);
  size_t vlen = 99;
  const char *v = eddy_headers_get(blob, size, "trace", &vlen);
  ASSERT(v != NULL);
  ASSERT_EQ_INT(vlen, 0);  /* the last of the repeated name */
  ASSERT(eddy_headers_get(blob, size, "missing", &vlen) == NULL);
}

TEST(headers_empty) {
  ASSERT_EQ_INT(eddy_headers_size(NULL, 0), 0);
  size_t pos = 0;
  eddy_header h;
  ASSERT_EQ_INT(eddy_headers_next(NULL, 0, &pos, &h), 0);
}

TEST(headers_malformed) {
  eddy_header in[] = { { "name", 4, "value", 5 } };
  unsigned char blob[16];
  size_t size = eddy_headers_encode(in, 1, blob);
  eddy_header h;
  /* Every truncation is malformed, never a read past the end. */
  for (size_t cut = 1; cut < size; cut++) {
    size_t pos = 0;
    ASSERT_EQ_INT(eddy_headers_next(blob, cut, &pos, &h), -1);
  }
  /* A length varint that never ends. */
  unsigned char endless[12];
  memset(endless, 0xff, sizeof endless);
  size_t pos = 0;
  ASSERT_EQ_INT(eddy_headers_next(endless, sizeof endless, &pos, &h), -1);
}

/* The trace id a log line names: the traceparent's, when it has the shape
 * an emitted event keeps; none otherwise. */
TEST(headers_trace_id) {
  static const char *tp[] = {
    "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",  /* good */
    "00-00000000000000000000000000000000-b7ad6b7169203331-01",  /* all zeros */
    "00-0af7651916cd43dd8448eb211c80319x-b7ad6b7169203331-01",  /* not hex */
    "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331",     /* short */
  };
  char out[33];
  for (int i = 0; i < 4; i++) {
    eddy_header h = { "traceparent", 11, tp[i], strlen(tp[i]) };
    unsigned char blob[96];
    size_t size = eddy_headers_encode(&h, 1, blob);
    const char *id = eddy_headers_trace_id(blob, size, out);
    if (i == 0) {
      ASSERT(id == out);
      ASSERT(strcmp(id, "0af7651916cd43dd8448eb211c80319c") == 0);
    } else {
      ASSERT(id == NULL);
    }
  }
  ASSERT(eddy_headers_trace_id(NULL, 0, out) == NULL);
}
