/*
 * headers.c - fuzzes the header blob decoder (runtime/headers.h): the
 * headers of a message as stored, and as read from Kafka.
 *
 * Checks: iterating never reads past the blob (ASan) and ends; each
 * header's bytes lie inside the blob; a well-formed blob re-encoded from
 * its headers decodes to the same headers; eddy_headers_get finds the last
 * header of a name; a trace id is 32 hex digits, not all zeros.
 */
#include <string.h>

#include "fuzz.h"
#include "headers.h"

#define MAX_HEADERS 1024

static int inside(const uint8_t *blob, size_t len, const char *p, size_t n) {
  return n == 0 || ((const uint8_t *)p >= blob && (const uint8_t *)p + n <= blob + len);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static eddy_header hs[MAX_HEADERS];
  size_t pos = 0, n = 0;
  int rc;
  eddy_header h;
  while ((rc = eddy_headers_next(data, size, &pos, &h)) == 1) {
    FUZZ_CHECK(pos <= size, "pos %zu past %zu", pos, size);
    FUZZ_CHECK(inside(data, size, h.name, h.name_len) && inside(data, size, h.value, h.value_len),
               "a header outside the blob");
    if (n < MAX_HEADERS) hs[n] = h;
    n++;
  }
  FUZZ_CHECK(rc == 0 || rc == -1, "next returned %d", rc);

  char id[33];
  const char *t = eddy_headers_trace_id(data, size, id);
  if (t) {
    FUZZ_CHECK(t == id && strlen(id) == 32 && strspn(id, "0123456789abcdefABCDEF") == 32 &&
               strspn(id, "0") < 32, "trace id '%s'", id);
  }
  if (rc != 0 || n > MAX_HEADERS) return 0;

  size_t need = eddy_headers_size(hs, n);
  FUZZ_CHECK(need <= size, "%zu headers need %zu bytes, the blob had %zu", n, need, size);
  unsigned char *copy = malloc(need + 1);
  FUZZ_CHECK(copy != NULL, "out of memory");
  FUZZ_CHECK(eddy_headers_encode(hs, n, copy) == need, "encode wrote other than its size");
  pos = 0;
  for (size_t i = 0; i < n; i++) {
    FUZZ_CHECK(eddy_headers_next(copy, need, &pos, &h) == 1, "header %zu lost", i);
    FUZZ_CHECK(h.name_len == hs[i].name_len && h.value_len == hs[i].value_len &&
               memcmp(h.name, hs[i].name, h.name_len) == 0 &&
               memcmp(h.value, hs[i].value, h.value_len) == 0, "header %zu differs", i);
  }
  FUZZ_CHECK(eddy_headers_next(copy, need, &pos, &h) == 0, "more headers than were encoded");
  /* get: the last header of the first header's name (names are C strings
   * for get: only a name without NUL bytes can be asked for). */
  if (n > 0 && hs[0].name_len < 256 && !memchr(hs[0].name, 0, hs[0].name_len)) {
    char name[256];
    memcpy(name, hs[0].name, hs[0].name_len);
    name[hs[0].name_len] = 0;
    size_t last = 0;
    for (size_t i = 0; i < n; i++)
      if (hs[i].name_len == hs[0].name_len && memcmp(hs[i].name, name, hs[0].name_len) == 0)
        last = i;
    size_t vlen = 0;
    const char *v = eddy_headers_get(data, size, name, &vlen);
    FUZZ_CHECK(v == hs[last].value && vlen == hs[last].value_len, "get found another header");
  }
  free(copy);
  return 0;
}
