/*
 * control.h - the control socket of a running `eddy run`.
 *
 * Each `eddy run` listens on a UNIX socket DIR/control/PID.sock in its data
 * directory.  A client connects, writes one request line ("reload" or
 * "status") and reads the answer until the server closes the connection:
 * "ok TEXT" or "error TEXT" for reload, one JSON object for status.  The
 * socket is bound through /proc/self/fd/N/PID.sock (N: the directory), so a
 * long data directory path does not hit the 108-byte limit of socket
 * paths.  At most 32 connections (the oldest that has not sent its line
 * closed to make room), 5 s to send the line, 64 bytes for it, 5 s to
 * take the answer (connset.h).
 */
#ifndef EDDY_CONTROL_H
#define EDDY_CONTROL_H

#include <stddef.h>

#include <uv.h>

typedef struct eddy_control eddy_control;

/* Answers a request: writes the answer with eddy_control_reply, now or
 * later, exactly once. */
typedef void (*eddy_control_handler)(void *ud, const char *request, void *client);

/* Listens on DIR/control/PID.sock on loop.  Returns 0, or -1 with err. */
int eddy_control_start(uv_loop_t *loop, const char *data_dir, eddy_control_handler fn,
                       void *ud, eddy_control **out, char *err, size_t errlen);
/* Writes text to the client and closes its connection. */
void eddy_control_reply(void *client, const char *text, size_t len);
/* Stops listening, removes the socket file, closes open connections. */
void eddy_control_stop(eddy_control *c);

/* Client side: sends request to every eddy run listening on data_dir and
 * calls fn(ud, pid, answer) for each answer, in pid order.  Sockets left
 * by processes that are gone are removed.  Returns the number of running
 * instances that answered, or -1 with err. */
int eddy_control_call(const char *data_dir, const char *request, int timeout_ms,
                      void (*fn)(void *ud, long pid, const char *answer), void *ud,
                      char *err, size_t errlen);

#endif
