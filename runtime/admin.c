/*
 * admin.c - the admin HTTP endpoint of `eddy run` (see admin.h).
 */
#include "admin.h"
#include "buf.h"
#include "errors.h"
#include "ksource.h"
#include "metrics.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_REQUEST 8192

struct eddy_admin {
  eddy_runner *r;
  uv_tcp_t server;
  int listening;
  int closing;
  struct conn *conns;           /* open connections */
};

typedef struct conn {
  uv_tcp_t tcp;
  eddy_admin *a;
  struct conn *next;
  char req[MAX_REQUEST];
  size_t len;
  int answered;
  uv_write_t wr;
  eddy_buf out;
} conn;

static void conn_closed(uv_handle_t *h) {
  conn *c = h->data;
  eddy_buf_free(&c->out);
  free(c);
}

static void conn_close(conn *c) {
  if (uv_is_closing((uv_handle_t *)&c->tcp)) return;
  for (conn **p = &c->a->conns; *p; p = &(*p)->next)
    if (*p == c) { *p = c->next; break; }
  uv_close((uv_handle_t *)&c->tcp, conn_closed);
}

static void written(uv_write_t *w, int status) {
  (void)status;
  conn_close(w->data);
}

static void respond(conn *c, int code, const char *reason, const char *type, const char *body,
                    size_t len) {
  c->answered = 1;
  eddy_buf_printf(&c->out, "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
                  "Connection: close\r\n\r\n", code, reason, type, len);
  eddy_buf_add(&c->out, body, len);
  if (c->out.oom) { conn_close(c); return; }
  uv_buf_t buf = uv_buf_init(c->out.data, (unsigned)c->out.len);
  c->wr.data = c;
  if (uv_write(&c->wr, (uv_stream_t *)&c->tcp, &buf, 1, written) != 0) conn_close(c);
}

static void text(conn *c, int code, const char *reason, const char *body) {
  respond(c, code, reason, "text/plain; charset=utf-8", body, strlen(body));
}

static int ready(const eddy_runner *r) {
  if (r->stopping || r->failed) return 0;
  return r->ksource ? eddy_ksource_ready(r->ksource) : 1;
}

static void serve(conn *c) {
  eddy_runner *r = c->a->r;
  char method[16], path[256];
  if (sscanf(c->req, "%15s %255s", method, path) != 2) {
    text(c, 400, "Bad Request", "bad request\n");
    return;
  }
  char *q = strchr(path, '?');
  if (q) *q = 0;
  if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0) {
    text(c, 405, "Method Not Allowed", "GET only\n");
    return;
  }
  if (strcmp(path, "/metrics") == 0) {
    eddy_buf b = EDDY_BUF_INIT;
    eddy_metrics_render(r, &b);
    if (b.oom) text(c, 500, "Internal Server Error", "out of memory\n");
    else respond(c, 200, "OK", "text/plain; version=0.0.4; charset=utf-8", b.data, b.len);
    eddy_buf_free(&b);
  } else if (strcmp(path, "/healthz") == 0) {
    if (r->stopping || r->failed) text(c, 503, "Service Unavailable", "stopping\n");
    else text(c, 200, "OK", "ok\n");
  } else if (strcmp(path, "/readyz") == 0) {
    if (ready(r)) text(c, 200, "OK", "ready\n");
    else text(c, 503, "Service Unavailable",
              r->stopping || r->failed ? "stopping\n" : "waiting for partitions\n");
  } else {
    text(c, 404, "Not Found", "not found (try /metrics, /healthz, /readyz)\n");
  }
}

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  (void)suggested;
  conn *c = h->data;
  size_t room = sizeof c->req - 1 - c->len;
  *buf = uv_buf_init(c->req + c->len, (unsigned)room);
}

static void read_cb(uv_stream_t *s, ssize_t n, const uv_buf_t *buf) {
  (void)buf;
  conn *c = s->data;
  if (n < 0) { conn_close(c); return; }
  if (c->answered) return;
  c->len += (size_t)n;
  c->req[c->len] = 0;
  if (strstr(c->req, "\r\n\r\n") || strstr(c->req, "\n\n")) {
    uv_read_stop(s);
    serve(c);
  } else if (c->len >= sizeof c->req - 1) {
    uv_read_stop(s);
    text(c, 431, "Request Header Fields Too Large", "request too large\n");
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
  c->next = a->conns;
  a->conns = c;
  if (uv_accept(server, (uv_stream_t *)&c->tcp) != 0 ||
      uv_read_start((uv_stream_t *)&c->tcp, alloc_cb, read_cb) != 0)
    conn_close(c);
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
  if (rc == 0) rc = uv_listen((uv_stream_t *)&a->server, 64, on_connection);
  if (rc != 0) {
    snprintf(err, errlen, "admin '%s': %s", addr, uv_strerror(rc));
    uv_close((uv_handle_t *)&a->server, NULL);
    a->closing = 1;
    *out = a;   /* freed once the loop closed the handle */
    return -1;
  }
  a->listening = 1;
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
  while (a->conns) conn_close(a->conns);
}

void eddy_admin_free(eddy_admin *a) { free(a); }
