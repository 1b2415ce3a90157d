/*
 * errors.h - eddy's error codes.
 *
 * Every C function of eddy that can fail returns 0 (or a count) on success
 * and a negative EDDY_E* code on failure.  Objects that fail keep a readable
 * one-line message (see eddy_store_errmsg); the code says what kind of
 * failure it was, the message says what and why.
 */
#ifndef EDDY_ERRORS_H
#define EDDY_ERRORS_H

#define EDDY_ERRNO_MAP(X)                                              \
  X(EINVAL,   -1, "invalid argument")                                  \
  X(ENOENT,   -2, "not found")                                         \
  X(EEXIST,   -3, "already exists")                                    \
  X(ETOOBIG,  -4, "too large")                                         \
  X(ETIMEDOUT,-5, "timed out waiting for the store")                   \
  X(ENOTSTORE,-6, "not an eddy store")                                 \
  X(ENEWER,   -7, "store made by a newer eddy")                        \
  X(EIO,      -8, "input/output error")                                \
  X(ENOMEM,   -9, "out of memory")                                     \
  X(EACCES,  -10, "permission denied")                                 \
  X(ESTORE,  -11, "store error")                                       \
  X(ECLOSED, -12, "store is closed")

enum {
#define EDDY_ERRNO_ENUM(name, code, text) EDDY_##name = code,
  EDDY_ERRNO_MAP(EDDY_ERRNO_ENUM)
#undef EDDY_ERRNO_ENUM
};

/* The fixed text of an error code ("not found"); "unknown error" for a code
 * that is not in the table.  Never NULL, never to be freed. */
const char *eddy_strerror(int code);

/* The name of an error code ("ENOENT"), or "EUNKNOWN". */
const char *eddy_err_name(int code);

/* Logging: one line on stderr, "TIME LEVEL message", written at once so
 * that the lines of several threads never interleave. */
void eddy_logf(const char *level, const char *fmt, ...)
  __attribute__((format(printf, 2, 3)));

#endif
