/*
 * admin.c - the admin HTTP endpoint of `eddy run` (see admin.h).
 */
#include "admin.h"
#include "buf.h"
#include "connset.h"
#include "errors.h"
#include "http.h"
#include "ksource.h"
#include "metrics.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The limits (docs/metrics.md).  Go's net/http and nginx scaled down to an
 * endpoint that a scraper and a few people use: enough connections for
 * them, a request head as large as nginx's default buffer, and deadlines
 * that no client on a working network gets near. */
#define MAX_CONNECTIONS 64
#define MAX_HEAD 8192
#define HEAD_TIMEOUT_MS 10000     /* from accept to the head's blank line */
#define WRITE_TIMEOUT_MS 10000    /* to take the answer */
/* After the answer: the write side is shut and what the client still sends
 * is read and dropped, so that closing does not reset the connection
 * before the client read the answer (nginx's lingering close). */
#define LINGER_MS 2000
#define LINGER_BYTES 65536

struct eddy_admin {
  eddy_runner *r;
  uv_tcp_t server;
  eddy_connset conns;
  int listening;
  int conns_started;
  int closing;
};

enum { READING, WRITING, LINGERING };

typedef struct conn {
  eddy_conn link;               /* first: the set hands back &link */
  uv_tcp_t tcp;
  eddy_admin *a;
  int state;
  int line_checked;             /* the request line was judged */
  char req[MAX_HEAD];
  size_t len;
  size_t drained;               /* bytes dropped while lingering */
  uv_write_t wr;
  uv_shutdown_t sd;
  eddy_buf out;
} conn;

static void conn_closed(uv_handle_t *h) {
  conn *c = h->data;
  eddy_buf_free(&c->out);
  free(c);
}

static void conn_close(conn *c) {
  eddy_connset_remove(&c->a->conns, &c->link);
  if (!uv_is_closing((uv_handle_t *)&c->tcp)) uv_close((uv_handle_t *)&c->tcp, conn_closed);
}

/* Writes what fits of a short answer now, without waiting: for a
 * connection about to be closed anyway. */
static void try_write(conn *c, const char *text) {
  uv_buf_t b = uv_buf_init((char *)text, (unsigned)strlen(text));
  (void)uv_try_write((uv_stream_t *)&c->tcp, &b, 1);
}

static void on_expire(eddy_conn *link, void *ud) {
  (void)ud;
  conn *c = (conn *)link;
  /* A client that sent part of a request is told why it ends. */
  if (c->state == READING && c->len > 0)
    try_write(c, "HTTP/1.1 408 Request Timeout\r\nContent-Type: text/plain; charset=utf-8\r\n"
                 "Content-Length: 16\r\nConnection: close\r\n\r\nrequest timeout\n");
  conn_close(c);
}

static void on_evict(eddy_conn *link, void *ud) {
  (void)ud;
  conn_close((conn *)link);
}

static void shut(uv_shutdown_t *sd, int status) {
  conn *c = sd->data;
  if (status < 0) conn_close(c);
}

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf);
static void read_cb(uv_stream_t *s, ssize_t n, const uv_buf_t *buf);

static void written(uv_write_t *w, int status) {
  conn *c = w->data;
  if (status < 0 || uv_is_closing((uv_handle_t *)&c->tcp)) { conn_close(c); return; }
  c->state = LINGERING;
  eddy_connset_set(&c->a->conns, &c->link, LINGER_MS, 1);
  c->sd.data = c;
  if (uv_shutdown(&c->sd, (uv_stream_t *)&c->tcp, shut) != 0 ||
      uv_read_start((uv_stream_t *)&c->tcp, alloc_cb, read_cb) != 0)
    conn_close(c);
}

/* Sends the answer: the head, and body[0..len) unless head_only (HEAD),
 * with the Content-Length of the body either way. */
static void respond(conn *c, int code, const char *type, const char *body, size_t len,
                    int head_only) {
  c->state = WRITING;
  eddy_connset_set(&c->a->conns, &c->link, WRITE_TIMEOUT_MS, 0);
  eddy_buf_printf(&c->out, "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
                  "%sConnection: close\r\n\r\n", code, eddy_http_reason(code), type, len,
                  code == 405 ? "Allow: GET, HEAD\r\n" : "");
  if (!head_only) eddy_buf_add(&c->out, body, len);
  if (c->out.oom) { conn_close(c); return; }
  uv_buf_t buf = uv_buf_init(c->out.data, (unsigned)c->out.len);
  c->wr.data = c;
  if (uv_write(&c->wr, (uv_stream_t *)&c->tcp, &buf, 1, written) != 0) conn_close(c);
}

static void text(conn *c, int code, const char *body, int head_only) {
  respond(c, code, "text/plain; charset=utf-8", body, strlen(body), head_only);
}

static int ready(const eddy_runner *r) {
  if (r->stopping || r->failed) return 0;
  return r->ksource ? eddy_ksource_ready(r->ksource) : 1;
}

static int is(const char *s, size_t n, const char *word) {
  return n == strlen(word) && memcmp(s, word, n) == 0;
}

static void serve(conn *c, const eddy_http_request *req) {
  eddy_runner *r = c->a->r;
  int head = is(req->method, req->method_len, "HEAD");
  if (!head && !is(req->method, req->method_len, "GET")) {
    text(c, 405, "GET and HEAD only\n", 0);
    return;
  }
  if (req->has_body) {
    text(c, 413, "a request body is not accepted\n", head);
    return;
  }
  const char *path = req->path;
  size_t n = req->path_len;
  if (is(path, n, "/metrics")) {
    eddy_buf b = EDDY_BUF_INIT;
    eddy_metrics_render(r, &b);
    if (b.oom) text(c, 500, "out of memory\n", head);
    else respond(c, 200, "text/plain; version=0.0.4; charset=utf-8", b.data, b.len, head);
    eddy_buf_free(&b);
  } else if (is(path, n, "/healthz")) {
    if (r->stopping || r->failed) text(c, 503, "stopping\n", head);
    else text(c, 200, "ok\n", head);
  } else if (is(path, n, "/readyz")) {
    if (ready(r)) text(c, 200, "ready\n", head);
    else text(c, 503, r->stopping || r->failed ? "stopping\n" : "waiting for partitions\n", head);
  } else {
    text(c, 404, "not found (try /metrics, /healthz, /readyz)\n", head);
  }
}

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  (void)suggested;
  conn *c = h->data;
  /* Lingering: the request buffer takes what is dropped. */
  size_t at = c->state == READING ? c->len : 0;
  *buf = uv_buf_init(c->req + at, (unsigned)(sizeof c->req - at));
}

/* 1 when a blank line (LF LF or LF CR LF) ends in req[from..len). */
static int blank_line(const char *req, size_t from, size_t len) {
  for (size_t i = from; i + 1 < len; i++) {
    if (req[i] != '\n') continue;
    if (req[i + 1] == '\n' || (req[i + 1] == '\r' && i + 2 < len && req[i + 2] == '\n'))
      return 1;
  }
  return 0;
}

static void read_cb(uv_stream_t *s, ssize_t n, const uv_buf_t *buf) {
  (void)buf;
  conn *c = s->data;
  if (c->state == LINGERING) {
    if (n < 0 || (c->drained += (size_t)n) > LINGER_BYTES) conn_close(c);
    return;
  }
  if (n < 0) { conn_close(c); return; }
  if (n == 0 || c->state != READING) return;
  size_t old = c->len;
  c->len += (size_t)n;
  /* The parser reads the whole head again: call it only when a line that
   * decides something is complete (the request line, the blank line) or
   * the buffer is full, so a client sending a byte at a time costs a few
   * parses, not one per byte. */
  int first_line = !c->line_checked && memchr(c->req + old, '\n', (size_t)n) != NULL;
  if (!first_line && c->len < sizeof c->req && !blank_line(c->req, old >= 2 ? old - 2 : 0, c->len))
    return;
  c->line_checked |= first_line;
  eddy_http_request req;
  int status = eddy_http_parse(c->req, c->len, sizeof c->req, &req);
  if (status == 0) return;
  uv_read_stop(s);
  if (status == 200) {
    serve(c, &req);
  } else {
    char body[128];
    snprintf(body, sizeof body, "%s\n", req.error ? req.error : "bad request");
    text(c, status, body, 0);
  }
}

static void on_connection(uv_stream_t *server, int status) {
  eddy_admin *a = server->data;
  if (status < 0 || a->closing) return;
  conn *c = calloc(1, sizeof *c);
  if (!c) return;
  c->a = a;
  c->out = (eddy_buf)EDDY_BUF_INIT;
  uv_tcp_init(a->r->loop, &c->tcp);
  c->tcp.data = c;
  if (uv_accept(server, (uv_stream_t *)&c->tcp) != 0) { conn_close(c); return; }
  if (eddy_connset_room(&a->conns) != 0) {
    try_write(c, "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\n"
                 "Content-Length: 5\r\nConnection: close\r\n\r\nbusy\n");
    conn_close(c);
    return;
  }
  eddy_connset_add(&a->conns, &c->link, HEAD_TIMEOUT_MS, 1);
  if (uv_read_start((uv_stream_t *)&c->tcp, alloc_cb, read_cb) != 0) conn_close(c);
}

/* HOST:PORT or [HOST]:PORT into host and port. */
static int split(const char *addr, char *host, size_t hn, int *port) {
  const char *colon = strrchr(addr, ':');
  if (!colon || colon == addr) return -1;
  const char *h = addr, *he = colon;
  if (*h == '[') {
    if (he[-1] != ']') return -1;
    h++;
    he--;
  }
  if ((size_t)(he - h) >= hn || he == h) return -1;
  memcpy(host, h, (size_t)(he - h));
  host[he - h] = 0;
  char *end;
  long p = strtol(colon + 1, &end, 10);
  if (*end || end == colon + 1 || p < 0 || p > 65535) return -1;
  *port = (int)p;
  return 0;
}

int eddy_admin_start(eddy_runner *r, const char *addr, int public_ok, eddy_admin **out,
                     char *err, size_t errlen) {
  *out = NULL;
  char host[128];
  int port;
  if (split(addr, host, sizeof host, &port) != 0) {
    snprintf(err, errlen, "admin '%s': not HOST:PORT (e.g. 127.0.0.1:9464)", addr);
    return -1;
  }
  if (strcmp(host, "localhost") == 0) snprintf(host, sizeof host, "127.0.0.1");
  struct sockaddr_storage sa;
  int v6 = strchr(host, ':') != NULL;
  int rc = v6 ? uv_ip6_addr(host, port, (struct sockaddr_in6 *)&sa)
              : uv_ip4_addr(host, port, (struct sockaddr_in *)&sa);
  if (rc != 0) {
    snprintf(err, errlen, "admin '%s': '%s' is not an IP address", addr, host);
    return -1;
  }
  int loopback = v6 ? strcmp(host, "::1") == 0 : strncmp(host, "127.", 4) == 0;
  if (!loopback && !public_ok) {
    snprintf(err, errlen, "admin '%s': not a loopback address (metrics name consumers and "
             "topics; set admin_public = true in the app to serve other hosts)", addr);
    return -1;
  }
  eddy_admin *a = calloc(1, sizeof *a);
  if (!a) { snprintf(err, errlen, "out of memory"); return -1; }
  a->r = r;
  uv_tcp_init(r->loop, &a->server);
  a->server.data = a;
  rc = uv_tcp_bind(&a->server, (const struct sockaddr *)&sa, 0);
  if (rc == 0) rc = uv_listen((uv_stream_t *)&a->server, 511, on_connection);
  if (rc != 0) {
    snprintf(err, errlen, "admin '%s': %s", addr, uv_strerror(rc));
    uv_close((uv_handle_t *)&a->server, NULL);
    a->closing = 1;
    *out = a;   /* freed once the loop closed the handle */
    return -1;
  }
  a->listening = 1;
  eddy_connset_init(&a->conns, r->loop, "admin", MAX_CONNECTIONS, on_expire, on_evict, a);
  a->conns_started = 1;
  struct sockaddr_storage bound;
  int blen = sizeof bound;
  char name[64] = "";
  if (uv_tcp_getsockname(&a->server, (struct sockaddr *)&bound, &blen) == 0) {
    if (bound.ss_family == AF_INET6)
      uv_ip6_name((struct sockaddr_in6 *)&bound, name, sizeof name);
    else
      uv_ip4_name((struct sockaddr_in *)&bound, name, sizeof name);
    port = ntohs(bound.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&bound)->sin6_port
                                             : ((struct sockaddr_in *)&bound)->sin_port);
  }
  eddy_logf("INFO", "admin: serving http://%s%s%s:%d/metrics, /healthz and /readyz",
            v6 ? "[" : "", name, v6 ? "]" : "", port);
  *out = a;
  return 0;
}

void eddy_admin_stop(eddy_admin *a) {
  if (!a || a->closing) return;
  a->closing = 1;
  if (a->listening) uv_close((uv_handle_t *)&a->server, NULL);
  if (!a->conns_started) return;
  while (a->conns.oldest) conn_close((conn *)a->conns.oldest);
  eddy_connset_close(&a->conns, NULL);
}

void eddy_admin_free(eddy_admin *a) { free(a); }
