/*
 * http.h - the head of an HTTP/1.x request (RFC 9112), as the admin
 * endpoint reads it.
 *
 * A pure function over bytes: no sockets, no allocation, nothing kept
 * between calls, so that it can be unit-tested and fuzzed alone
 * (fuzz/http.c).  It reads a request line and header lines up to the
 * blank line that ends them, and judges them:
 *
 *   - lines end in CRLF or in LF alone; a CR anywhere else is an error;
 *     empty lines before the request line are skipped;
 *   - the request line is METHOD SP TARGET SP HTTP/1.x, with one space
 *     each; the method a token (any token: routing says which it serves),
 *     the target an origin form ("/path?query"), an absolute form
 *     ("http://host/path") or "*", in visible ASCII;
 *   - a header line is NAME ":" VALUE, the name a token with nothing
 *     before the colon, the value visible bytes, spaces and tabs; a line
 *     that starts with a space or a tab (an obsolete folded line) is an
 *     error;
 *   - HTTP/1.1 needs exactly one Host header;
 *   - Content-Length is digits, the same in every copy of it, and never
 *     beside Transfer-Encoding.
 */
#ifndef EDDY_HTTP_H
#define EDDY_HTTP_H

#include <stddef.h>
#include <stdint.h>

/* What a head that parsed holds; pointers point into the caller's bytes. */
typedef struct eddy_http_request {
  const char *method;      /* "GET" (not NUL-terminated) */
  size_t method_len;
  const char *path;        /* the target without its query: "/metrics" */
  size_t path_len;
  int minor;               /* HTTP/1.<minor>: 0 or 1 (a higher one counts as 1) */
  int has_body;            /* Content-Length above 0, or Transfer-Encoding */
  int64_t content_length;  /* -1 when not given */
  size_t head_len;         /* bytes of the head, its blank line included */
  const char *error;       /* when the status is 400 or more: why, "bad request line" */
} eddy_http_request;

/* Parses the request head at the start of buf[0..len), which holds at
 * most max bytes (the caller's limit).  Returns:
 *   0    the head is not complete yet and nothing in its complete lines is
 *        wrong: read more (len < max);
 *   200  the head is complete and well formed: *req filled, the head is
 *        buf[0..req->head_len); bytes after it are not looked at;
 *   400  a malformed request (req->error says what);
 *   414  no complete request line within max bytes;
 *   431  a request line but no end of the head within max bytes;
 *   505  an HTTP version other than 1.x.
 * A complete line is judged as soon as it is there, so a bad request line
 * is refused before the rest arrives; a request that is fine in full never
 * gets a status other than 0 from a part of it.  Every call reads buf
 * afresh. */
int eddy_http_parse(const char *buf, size_t len, size_t max, eddy_http_request *req);

/* The reason phrase of status ("Not Found"), or "Unknown". */
const char *eddy_http_reason(int status);

#endif
