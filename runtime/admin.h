/*
 * admin.h - the admin HTTP endpoint of `eddy run`: GET /metrics
 * (Prometheus text format, metrics.h), /healthz and /readyz.
 *
 * It listens on the app's `admin` address (`admin = "127.0.0.1:9464"`, or
 * `eddy run --admin ADDR`), on the runner's libuv loop.  A port of 0 takes
 * a free one; the log says which ("admin: serving http://HOST:PORT").  An
 * address that is not a loopback one is refused unless the app also says
 * `admin_public = true`: metrics name consumers and topics.  HTTP/1.1,
 * GET and HEAD, one request per connection, request heads up to 8 KiB
 * (http.h).  At most 64 connections, 10 s to send the head, 10 s to take
 * the answer (connset.h, docs/metrics.md).
 *
 * /healthz answers 200 while the loop runs.  /readyz answers 200 once the
 * consumers read (on Kafka: every group got its first assignment), else
 * 503; both 503 while the run stops.
 */
#ifndef EDDY_ADMIN_H
#define EDDY_ADMIN_H

#include "engine.h"

typedef struct eddy_admin eddy_admin;

/* Listens on addr ("HOST:PORT", IPv4 or [IPv6]).  0, or -1 with a one-line
 * err ("admin '127.0.0.1:9464': address already in use"). */
int eddy_admin_start(eddy_runner *r, const char *addr, int public_ok, eddy_admin **out,
                     char *err, size_t errlen);
/* Stops listening and closes connections (loop handles close later). */
void eddy_admin_stop(eddy_admin *a);
/* Frees a after the loop closed its handles; NULL is a no-op. */
void eddy_admin_free(eddy_admin *a);

#endif
