/*
 * errors.h - eddy's error codes, and its log lines.
 *
 * Every C function of eddy that can fail returns 0 (or a count) on success
 * and a negative EDDY_E* code on failure.  Objects that fail keep a readable
 * one-line message (see eddy_store_errmsg); the code says what kind of
 * failure it was, the message says what and why.
 */
#ifndef EDDY_ERRORS_H
#define EDDY_ERRORS_H

#include <stddef.h>
#include <stdint.h>

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

/* ---- logs -------------------------------------------------------------
 *
 * Every log line of eddy goes to stderr in one write(2), so that the lines
 * of several threads never interleave, in one of two formats:
 *
 *   text  "TIME LEVEL message", for people at a terminal;
 *   json  one JSON object per line: time, level, message and the fields
 *         below that are known (docs/metrics.md lists the keys).
 *
 * The format is one for the whole process (there is one stderr): set once
 * by eddy_log_set_format before any thread logs, else chosen at the first
 * line from $EDDY_LOG_FORMAT, else json unless stderr is a terminal. */

enum { EDDY_LOG_AUTO = 0, EDDY_LOG_TEXT = 1, EDDY_LOG_JSON = 2 };

/* EDDY_LOG_TEXT for "text", EDDY_LOG_JSON for "json", else -1. */
int eddy_log_format_parse(const char *name);

/* Sets the format of every later line; EDDY_LOG_AUTO chooses as above. */
void eddy_log_set_format(int format);

/* The format lines are written in now: EDDY_LOG_TEXT or EDDY_LOG_JSON. */
int eddy_log_format(void);

/* A field of a line beyond the standard ones (ctx.log's user fields).
 * value is its text, as a text line shows it; literal says that text is
 * also a JSON number or boolean (written bare in JSON, else as a string).
 * A key that is one of the standard keys is written "field.KEY" in JSON;
 * one that would still repeat a key of the line is left out. */
typedef struct eddy_logfield {
  const char *key;
  const char *value;
  size_t value_len;
  int literal;
} eddy_logfield;

/* Which numbers of eddy_logfields are given (partition 0 and offset 0 are
 * real ones), and which fields a text line leaves out because its
 * sentence says them already ("assigned orders[0] from offset 5"). */
enum {
  EDDY_LOGF_PARTITION = 1 << 0,
  EDDY_LOGF_OFFSET = 1 << 1,
  EDDY_LOGF_ATTEMPT = 1 << 2,
  EDDY_LOGF_TOPIC = 1 << 3,
  EDDY_LOGF_VERSION = 1 << 4,
  EDDY_LOGF_CORRELATION_ID = 1 << 5
};

/* The shape of the text line, which stays what it was before JSON: */
enum {
  EDDY_LOGT_COLON = 1,     /* "consumer=NAME: message" */
  EDDY_LOGT_QUOTED = 2,    /* message as msg="..." (ctx.log's lines) */
  EDDY_LOGT_ATTEMPTS = 4   /* attempts=N, not attempt=N (the quarantine line) */
};

/* What a line is about.  NULL strings and unset numbers are left out.
 * A text line starts with "consumer=C id=I correlation_id=R version=V
 * topic=T partition=P offset=O attempt=A " (those given, in that order,
 * less text_hide), then the message, then " key=value" per extra field;
 * trace_id is in JSON lines only. */
typedef struct eddy_logfields {
  const char *consumer;
  const char *message_id;
  const char *correlation_id;
  size_t correlation_id_len;   /* header bytes: not NUL-terminated */
  const char *trace_id;        /* the 32 hex digits of the traceparent */
  const char *version;         /* the handler's version */
  const char *topic;
  int partition;
  int64_t offset;
  int attempt;
  unsigned set;                /* EDDY_LOGF_PARTITION | _OFFSET | _ATTEMPT */
  unsigned text_hide;          /* EDDY_LOGF_* left out of text lines */
  unsigned text;               /* EDDY_LOGT_* */
  const eddy_logfield *extra;  /* JSON lines hold the first 64 */
  size_t nextra;
} eddy_logfields;

/* Logs one line at level ("DEBUG", "INFO", "WARN" or "ERROR") about what
 * f says (NULL: nothing in particular).  The message is cut at 4 KiB; a
 * JSON line is always one valid JSON object, with invalid UTF-8 replaced
 * by U+FFFD. */
void eddy_logx(const char *level, const eddy_logfields *f, const char *fmt, ...)
  __attribute__((format(printf, 3, 4)));

/* eddy_logx with no fields. */
void eddy_logf(const char *level, const char *fmt, ...)
  __attribute__((format(printf, 2, 3)));

#endif
