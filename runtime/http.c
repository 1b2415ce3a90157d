/*
 * http.c - the head of an HTTP/1.x request (see http.h).
 */
#include "http.h"

#include <string.h>
#include <strings.h>

/* Empty lines skipped before the request line (RFC 9112 2.2 asks for at
 * least one); more are refused, so that a client cannot keep a connection
 * busy with them. */
#define MAX_EMPTY_LINES 2

/* One line of buf: its text [start, start + n) without the line end, and
 * where the next line starts. */
typedef struct line {
  const char *s;
  size_t n;
  size_t next;
} line;

enum { LINE_OK, LINE_PARTIAL, LINE_BAD_CR };

/* The line starting at buf[at]: LINE_OK with *l filled, LINE_PARTIAL when
 * its LF is not there yet, LINE_BAD_CR when it holds a CR that does not end
 * it. */
static int next_line(const char *buf, size_t len, size_t at, line *l) {
  const char *p = buf + at;
  const char *lf = memchr(p, '\n', len - at);
  if (!lf) return LINE_PARTIAL;
  size_t n = (size_t)(lf - p);
  if (n && p[n - 1] == '\r') n--;
  if (memchr(p, '\r', n)) return LINE_BAD_CR;
  l->s = p;
  l->n = n;
  l->next = (size_t)(lf - buf) + 1;
  return LINE_OK;
}

/* RFC 9110 5.6.2: the characters of a token. */
static int tchar(unsigned char c) {
  if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')) return 1;
  return c && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

static int fail(eddy_http_request *req, int status, const char *why) {
  req->error = why;
  return status;
}

static int has_prefix_ci(const char *s, size_t n, const char *prefix) {
  size_t pn = strlen(prefix);
  return n >= pn && strncasecmp(s, prefix, pn) == 0;
}

/* The path of target t[0..n): origin form, absolute form or "*". */
static int target_path(eddy_http_request *req, const char *t, size_t n) {
  for (size_t i = 0; i < n; i++)
    if ((unsigned char)t[i] <= 0x20 || (unsigned char)t[i] >= 0x7f)
      return fail(req, 400, "bad request target");
  if (n == 1 && t[0] == '*') {
    req->path = t;
    req->path_len = 1;
    return 0;
  }
  if (t[0] != '/') {
    size_t skip = has_prefix_ci(t, n, "http://") ? 7 : has_prefix_ci(t, n, "https://") ? 8 : 0;
    if (!skip) return fail(req, 400, "bad request target");
    size_t host = skip;
    while (skip < n && t[skip] != '/' && t[skip] != '?') skip++;
    if (skip == host) return fail(req, 400, "bad request target");
    t += skip;
    n -= skip;
    if (n == 0 || t[0] == '?') {   /* "http://h" and "http://h?q" ask for "/" */
      req->path = "/";
      req->path_len = 1;
      return 0;
    }
  }
  const char *q = memchr(t, '?', n);
  req->path = t;
  req->path_len = q ? (size_t)(q - t) : n;
  return 0;
}

/* METHOD SP TARGET SP HTTP/1.x */
static int request_line(eddy_http_request *req, const line *l) {
  const char *p = l->s, *end = l->s + l->n;
  const char *m = p;
  while (p < end && tchar((unsigned char)*p)) p++;
  if (p == m || p == end || *p != ' ') return fail(req, 400, "bad request line");
  req->method = m;
  req->method_len = (size_t)(p - m);
  const char *t = ++p;
  while (p < end && *p != ' ') p++;
  if (p == t || p == end) return fail(req, 400, "bad request line");
  int rc = target_path(req, t, (size_t)(p - t));
  if (rc) return rc;
  p++;
  if (end - p != 8 || memcmp(p, "HTTP/", 5) != 0 || p[5] < '0' || p[5] > '9' ||
      p[6] != '.' || p[7] < '0' || p[7] > '9')
    return fail(req, 400, "bad HTTP version");
  if (p[5] != '1') return fail(req, 505, "only HTTP/1.x is served");
  req->minor = p[7] == '0' ? 0 : 1;
  return 0;
}

/* Digits into *v; -1 when empty, not digits or past 2^62. */
static int content_length(const char *s, size_t n, int64_t *v) {
  if (n == 0) return -1;
  int64_t r = 0;
  for (size_t i = 0; i < n; i++) {
    if (s[i] < '0' || s[i] > '9' || r > ((int64_t)1 << 62) / 10) return -1;
    r = r * 10 + (s[i] - '0');
  }
  *v = r;
  return 0;
}

typedef struct seen {
  int hosts;
  int transfer_encoding;
} seen;

/* NAME ":" OWS VALUE OWS */
static int header_line(eddy_http_request *req, const line *l, seen *sn) {
  const char *p = l->s, *end = l->s + l->n;
  if (*p == ' ' || *p == '\t') return fail(req, 400, "a folded header line");
  while (p < end && tchar((unsigned char)*p)) p++;
  if (p == l->s || p == end || *p != ':') return fail(req, 400, "bad header line");
  const char *name = l->s;
  size_t name_len = (size_t)(p - name);
  p++;
  while (p < end && (*p == ' ' || *p == '\t')) p++;
  while (end > p && (end[-1] == ' ' || end[-1] == '\t')) end--;
  for (const char *v = p; v < end; v++) {
    unsigned char c = (unsigned char)*v;
    if ((c < 0x20 && c != '\t') || c == 0x7f) return fail(req, 400, "bad header value");
  }
  if (name_len == 4 && strncasecmp(name, "host", 4) == 0) {
    sn->hosts++;
  } else if (name_len == 14 && strncasecmp(name, "content-length", 14) == 0) {
    int64_t v;
    if (content_length(p, (size_t)(end - p), &v) != 0)
      return fail(req, 400, "bad Content-Length");
    if (req->content_length >= 0 && req->content_length != v)
      return fail(req, 400, "conflicting Content-Length headers");
    req->content_length = v;
  } else if (name_len == 17 && strncasecmp(name, "transfer-encoding", 17) == 0) {
    sn->transfer_encoding = 1;
  }
  return 0;
}

int eddy_http_parse(const char *buf, size_t len, size_t max, eddy_http_request *req) {
  memset(req, 0, sizeof *req);
  req->content_length = -1;
  if (len > max) len = max;
  size_t at = 0;
  line l;
  int rc, empty = 0;
  for (;;) {
    rc = next_line(buf, len, at, &l);
    if (rc == LINE_PARTIAL) return len >= max ? fail(req, 414, "request line too long") : 0;
    if (rc == LINE_BAD_CR) return fail(req, 400, "a CR that does not end a line");
    at = l.next;
    if (l.n) break;
    if (++empty > MAX_EMPTY_LINES) return fail(req, 400, "empty lines before the request");
  }
  if ((rc = request_line(req, &l)) != 0) return rc;
  seen sn = { 0, 0 };
  for (;;) {
    rc = next_line(buf, len, at, &l);
    if (rc == LINE_PARTIAL) return len >= max ? fail(req, 431, "request head too large") : 0;
    if (rc == LINE_BAD_CR) return fail(req, 400, "a CR that does not end a line");
    at = l.next;
    if (l.n == 0) break;
    if ((rc = header_line(req, &l, &sn)) != 0) return rc;
  }
  if (sn.hosts > 1) return fail(req, 400, "more than one Host header");
  if (sn.hosts == 0 && req->minor == 1) return fail(req, 400, "no Host header");
  if (sn.transfer_encoding && req->content_length >= 0)
    return fail(req, 400, "both Content-Length and Transfer-Encoding");
  req->has_body = sn.transfer_encoding || req->content_length > 0;
  req->head_len = at;
  return 200;
}

const char *eddy_http_reason(int status) {
  switch (status) {
  case 200: return "OK";
  case 400: return "Bad Request";
  case 404: return "Not Found";
  case 405: return "Method Not Allowed";
  case 408: return "Request Timeout";
  case 413: return "Content Too Large";
  case 414: return "URI Too Long";
  case 431: return "Request Header Fields Too Large";
  case 500: return "Internal Server Error";
  case 503: return "Service Unavailable";
  case 505: return "HTTP Version Not Supported";
  default: return "Unknown";
  }
}
