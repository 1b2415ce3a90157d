/*
 * http.c - fuzzes eddy_http_parse (runtime/http.c), the admin endpoint's
 * request head parser, with the whole input as what a client sent.
 *
 * Checks: the status is one the contract names; a parsed head's pointers
 * are inside the input and its length within it; the same head alone
 * parses the same; no part of a head that parses is refused; an error has
 * a reason.
 */
#include <string.h>

#include "fuzz.h"
#include "http.h"

#define MAX 8192

static int inside(const uint8_t *data, size_t size, const char *p, size_t n) {
  return (const uint8_t *)p >= data && (const uint8_t *)p + n <= data + size;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const char *s = (const char *)data;
  eddy_http_request req;
  int status = eddy_http_parse(s, size, MAX, &req);
  FUZZ_CHECK(status == 0 || status == 200 || status == 400 || status == 414 || status == 431 ||
             status == 505, "status %d", status);
  if (status == 0) {
    FUZZ_CHECK(size < MAX, "incomplete at %zu bytes", size);
    return 0;
  }
  if (status != 200) {
    FUZZ_CHECK(req.error && *req.error, "status %d without a reason", status);
    return 0;
  }
  FUZZ_CHECK(req.head_len > 0 && req.head_len <= size && req.head_len <= MAX, "head_len %zu",
             req.head_len);
  FUZZ_CHECK(req.method_len > 0 && inside(data, req.head_len, req.method, req.method_len),
             "method outside the head");
  /* "http://h" asks for "/", a static string. */
  FUZZ_CHECK(req.path_len > 0 && (inside(data, req.head_len, req.path, req.path_len) ||
                                  (req.path_len == 1 && req.path[0] == '/')),
             "path outside the head");
  FUZZ_CHECK(req.minor == 0 || req.minor == 1, "minor %d", req.minor);
  /* Transfer-Encoding beside Content-Length is refused, so a length decides. */
  if (req.content_length >= 0)
    FUZZ_CHECK(req.has_body == (req.content_length > 0), "has_body %d with Content-Length %lld",
               req.has_body, (long long)req.content_length);
  eddy_http_request again;
  FUZZ_CHECK(eddy_http_parse(s, req.head_len, MAX, &again) == 200 &&
             again.head_len == req.head_len && again.method == req.method &&
             again.method_len == req.method_len && again.path_len == req.path_len,
             "the head alone parses otherwise");
  /* Parts of it: a few cuts, not every one (that would be quadratic). */
  size_t cuts[] = { req.head_len - 1, req.head_len / 2, req.head_len / 3, 1 };
  for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
    if (cuts[i] >= req.head_len) continue;
    int st = eddy_http_parse(s, cuts[i], MAX, &again);
    FUZZ_CHECK(st == 0, "a part of %zu bytes of a good head got %d (%s)", cuts[i], st,
               again.error ? again.error : "");
  }
  return 0;
}
