/*
 * test-http.c - the request head parser of the admin endpoint: what it
 * serves, what it refuses and with which status, and that a part of a good
 * request is never refused.
 */
#include <string.h>

#include "http.h"
#include "test.h"

#define MAX 8192

static int parse(const char *s, eddy_http_request *req) {
  return eddy_http_parse(s, strlen(s), MAX, req);
}

static int same(const char *p, size_t n, const char *want) {
  return n == strlen(want) && memcmp(p, want, n) == 0;
}

TEST(http_parses_requests) {
  eddy_http_request req;
  const char *s = "GET /metrics?x=1 HTTP/1.1\r\nHost: localhost:9464\r\nAccept: */*\r\n\r\nrest";
  ASSERT_EQ_INT(parse(s, &req), 200);
  ASSERT(same(req.method, req.method_len, "GET"));
  ASSERT(same(req.path, req.path_len, "/metrics"));
  ASSERT_EQ_INT(req.minor, 1);
  ASSERT_EQ_INT(req.has_body, 0);
  ASSERT_EQ_INT(req.content_length, -1);
  ASSERT_EQ_INT(req.head_len, strlen(s) - 4);

  /* LF alone, HTTP/1.0 without Host, one empty line first. */
  ASSERT_EQ_INT(parse("\r\nHEAD /healthz HTTP/1.0\n\n", &req), 200);
  ASSERT(same(req.method, req.method_len, "HEAD"));
  ASSERT(same(req.path, req.path_len, "/healthz"));
  ASSERT_EQ_INT(req.minor, 0);

  /* Absolute form; a later minor version counts as 1.1. */
  ASSERT_EQ_INT(parse("GET HTTP://h:1/readyz?a HTTP/1.9\r\nHost: h\r\n\r\n", &req), 200);
  ASSERT(same(req.path, req.path_len, "/readyz"));
  ASSERT_EQ_INT(req.minor, 1);
  ASSERT_EQ_INT(parse("GET http://h HTTP/1.1\r\nHost: h\r\n\r\n", &req), 200);
  ASSERT(same(req.path, req.path_len, "/"));
  ASSERT_EQ_INT(parse("OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n", &req), 200);
  ASSERT(same(req.path, req.path_len, "*"));

  /* Values: spaces around are dropped, tabs and bytes >= 0x80 are fine. */
  ASSERT_EQ_INT(parse("GET / HTTP/1.1\r\nHost:h\r\nX:\t\xc3\xa9 a\t \r\n\r\n", &req), 200);
  ASSERT_EQ_INT(parse("GET / HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n"
                      "content-length: 0\r\n\r\n", &req), 200);
  ASSERT_EQ_INT(req.content_length, 0);
  ASSERT_EQ_INT(req.has_body, 0);
  ASSERT_EQ_INT(parse("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 12\r\n\r\n", &req), 200);
  ASSERT_EQ_INT(req.content_length, 12);
  ASSERT_EQ_INT(req.has_body, 1);
  ASSERT_EQ_INT(parse("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n", &req),
                200);
  ASSERT_EQ_INT(req.has_body, 1);
}

TEST(http_refuses_malformed) {
  static const struct { const char *req; int status; const char *why; } cases[] = {
    { "GET  / HTTP/1.1\r\n", 400, "bad request line" },
    { "GET / HTTP/1.1 \r\n", 400, "bad HTTP version" },
    { "GET /\r\n", 400, "bad request line" },
    { "G(T / HTTP/1.1\r\n", 400, "bad request line" },
    { " GET / HTTP/1.1\r\n", 400, "bad request line" },
    { "GET x HTTP/1.1\r\n", 400, "bad request target" },
    { "GET /\x7f HTTP/1.1\r\n", 400, "bad request target" },
    { "GET http:///x HTTP/1.1\r\n", 400, "bad request target" },
    { "GET / HTTP/1.x\r\n", 400, "bad HTTP version" },
    { "GET / http/1.1\r\n", 400, "bad HTTP version" },
    { "GET / HTTP/2.0\r\n", 505, "only HTTP/1.x is served" },
    { "GET / HTTP/0.9\r\n", 505, "only HTTP/1.x is served" },
    { "GET / HTTP/1.1\rX\r\n", 400, "a CR that does not end a line" },
    { "\r\n\r\n\r\nGET / HTTP/1.1\r\n", 400, "empty lines before the request" },
    { "GET / HTTP/1.1\r\nHost: h\r\n folded\r\n", 400, "a folded header line" },
    { "GET / HTTP/1.1\r\nHost: h\r\nA b: c\r\n", 400, "bad header line" },
    { "GET / HTTP/1.1\r\nHost: h\r\n: c\r\n", 400, "bad header line" },
    { "GET / HTTP/1.1\r\nHost: h\r\nnone\r\n", 400, "bad header line" },
    { "GET / HTTP/1.1\r\nHost: h\r\nA: \x01\r\n", 400, "bad header value" },
    { "GET / HTTP/1.1\r\nHost: h\r\nA: \x7f\r\n", 400, "bad header value" },
    { "GET / HTTP/1.1\r\n\r\n", 400, "no Host header" },
    { "GET / HTTP/1.0\r\nHost: a\r\nHOST: b\r\n\r\n", 400, "more than one Host header" },
    { "GET / HTTP/1.1\r\nHost: h\r\nContent-Length: 1x\r\n", 400, "bad Content-Length" },
    { "GET / HTTP/1.1\r\nHost: h\r\nContent-Length:\r\n", 400, "bad Content-Length" },
    { "GET / HTTP/1.1\r\nHost: h\r\nContent-Length: 99999999999999999999\r\n", 400,
      "bad Content-Length" },
    { "GET / HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\nContent-Length: 2\r\n", 400,
      "conflicting Content-Length headers" },
    { "GET / HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
      400, "both Content-Length and Transfer-Encoding" },
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    eddy_http_request req;
    int status = parse(cases[i].req, &req);
    if (status != cases[i].status || !req.error || strcmp(req.error, cases[i].why) != 0) {
      test_fail(__FILE__, __LINE__, "case %zu: got %d %s, expected %d %s", i, status,
                req.error ? req.error : "(none)", cases[i].status, cases[i].why);
      return;
    }
  }
}

TEST(http_limits) {
  static char buf[MAX + 100];
  eddy_http_request req;
  /* No request line within the limit. */
  memset(buf, 'a', sizeof buf);
  memcpy(buf, "GET /", 5);
  ASSERT_EQ_INT(eddy_http_parse(buf, MAX - 1, MAX, &req), 0);
  ASSERT_EQ_INT(eddy_http_parse(buf, MAX, MAX, &req), 414);
  ASSERT_EQ_STR(req.error, "request line too long");
  /* Bytes past max are not looked at. */
  ASSERT_EQ_INT(eddy_http_parse(buf, sizeof buf, MAX, &req), 414);
  /* A request line, then headers past the limit. */
  const char *line = "GET / HTTP/1.1\r\nHost: h\r\n";
  memcpy(buf, line, strlen(line));
  for (size_t i = strlen(line); i < sizeof buf; i++) buf[i] = i % 50 == 0 ? '\n' : 'x';
  ASSERT_EQ_INT(eddy_http_parse(buf, MAX, MAX, &req), 400);  /* "xxx" lines: no colon */
  for (size_t i = strlen(line); i < sizeof buf; i++) buf[i] = i % 50 == 0 ? '\n' : ':';
  ASSERT_EQ_INT(eddy_http_parse(buf, MAX, MAX, &req), 400);  /* ":::" lines: no name */
  for (size_t i = strlen(line), k = 0; i < sizeof buf; i++, k = (k + 1) % 50)
    buf[i] = k == 0 ? 'X' : k == 1 ? ':' : k == 49 ? '\n' : 'v';
  ASSERT_EQ_INT(eddy_http_parse(buf, MAX - 1, MAX, &req), 0);
  ASSERT_EQ_INT(eddy_http_parse(buf, MAX, MAX, &req), 431);
  ASSERT_EQ_STR(req.error, "request head too large");
  /* A head of exactly max bytes is fine. */
  memset(buf, 'a', sizeof buf);
  const char *head = "GET /";
  const char *tail = " HTTP/1.0\r\n\r\n";
  memcpy(buf, head, strlen(head));
  memcpy(buf + MAX - strlen(tail), tail, strlen(tail));
  ASSERT_EQ_INT(eddy_http_parse(buf, MAX, MAX, &req), 200);
  ASSERT_EQ_INT(req.head_len, MAX);
}

TEST(http_parts_of_a_good_request) {
  const char *s = "\nGET /metrics HTTP/1.1\r\nHost: h\r\nUser-Agent: x\n\r\n";
  size_t n = strlen(s);
  eddy_http_request req;
  ASSERT_EQ_INT(eddy_http_parse(s, n, MAX, &req), 200);
  ASSERT_EQ_INT(req.head_len, n);
  for (size_t k = 0; k < n; k++) ASSERT_EQ_INT(eddy_http_parse(s, k, MAX, &req), 0);
  /* A bad line is refused as soon as it is complete. */
  ASSERT_EQ_INT(eddy_http_parse("BAD\r\n", 5, MAX, &req), 400);
  ASSERT_EQ_INT(eddy_http_parse("BAD\r", 4, MAX, &req), 0);
}

TEST(http_reasons) {
  ASSERT_EQ_STR(eddy_http_reason(405), "Method Not Allowed");
  ASSERT_EQ_STR(eddy_http_reason(431), "Request Header Fields Too Large");
  ASSERT_EQ_STR(eddy_http_reason(299), "Unknown");
}
