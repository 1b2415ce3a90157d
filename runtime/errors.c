#include "errors.h"
#include "quarantine.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

const char *eddy_strerror(int code) {
  switch (code) {
#define EDDY_ERRNO_CASE(name, c, text) case c: return text;
    EDDY_ERRNO_MAP(EDDY_ERRNO_CASE)
#undef EDDY_ERRNO_CASE
  }
  return "unknown error";
}

const char *eddy_err_name(int code) {
  switch (code) {
#define EDDY_ERRNO_CASE(name, c, text) case c: return "EDDY_" #name;
    EDDY_ERRNO_MAP(EDDY_ERRNO_CASE)
#undef EDDY_ERRNO_CASE
  }
  return "EUNKNOWN";
}

/* ---- logs ---------------------------------------------------------------- */

/* The format is the one process-wide setting of eddy: there is one stderr.
 * Relaxed atomics are enough: it is set before the threads start, and two
 * threads that choose it at their first lines choose the same. */
static _Atomic int log_format;

int eddy_log_format_parse(const char *name) {
  if (!name) return -1;
  if (strcmp(name, "text") == 0) return EDDY_LOG_TEXT;
  if (strcmp(name, "json") == 0) return EDDY_LOG_JSON;
  return -1;
}

void eddy_log_set_format(int format) {
  atomic_store_explicit(&log_format, format, memory_order_relaxed);
}

int eddy_log_format(void) {
  int f = atomic_load_explicit(&log_format, memory_order_relaxed);
  if (f != EDDY_LOG_AUTO) return f;
  /* eddy run refuses a bad $EDDY_LOG_FORMAT before it logs; anything else
   * that logs without having set a format goes by the terminal. */
  f = eddy_log_format_parse(getenv("EDDY_LOG_FORMAT"));
  if (f < 0) f = isatty(STDERR_FILENO) ? EDDY_LOG_TEXT : EDDY_LOG_JSON;
  atomic_store_explicit(&log_format, f, memory_order_relaxed);
  return f;
}

/* A line being built on the stack.  An append that does not fit is
 * dropped whole and marks the line full; the last LINE_RESERVE bytes stay
 * free for what closes the line ("}\n"). */
#define LINE_BYTES 16384
#define LINE_RESERVE 4
#define MESSAGE_BYTES 4096      /* the formatted message, as before JSON */
#define MESSAGE_JSON_BYTES 8192 /* the message, escaped */
#define VALUE_JSON_BYTES 2048   /* any other value, escaped */
#define MAX_EXTRA 64

typedef struct line {
  char p[LINE_BYTES];
  size_t len;
  int full;
} line;

static size_t room(const line *l) {
  return LINE_BYTES - LINE_RESERVE - l->len;
}

static void put(line *l, const char *s, size_t n) {
  if (l->full || n > room(l)) { l->full = 1; return; }
  memcpy(l->p + l->len, s, n);
  l->len += n;
}

static void put_str(line *l, const char *s) { put(l, s, strlen(s)); }

/* Text lines are cut where they end up, as they always were. */
static void put_cut(line *l, const char *s, size_t n) {
  if (n > room(l)) { n = room(l); l->full = 1; }
  memcpy(l->p + l->len, s, n);
  l->len += n;
}

/* The length of the well-formed UTF-8 sequence at s (n bytes left), or 0
 * for a byte that does not start one (stray continuation bytes, overlong
 * forms, surrogates, code points past U+10FFFF, a sequence cut short). */
static size_t utf8_len(const unsigned char *s, size_t n) {
  unsigned c = s[0];
  if (c < 0x80) return 1;
  size_t len;
  uint32_t cp;
  if (c >= 0xc2 && c <= 0xdf) { len = 2; cp = c & 0x1f; }
  else if (c >= 0xe0 && c <= 0xef) { len = 3; cp = c & 0x0f; }
  else if (c >= 0xf0 && c <= 0xf4) { len = 4; cp = c & 0x07; }
  else return 0;
  if (len > n) return 0;
  for (size_t i = 1; i < len; i++) {
    if ((s[i] & 0xc0) != 0x80) return 0;
    cp = cp << 6 | (s[i] & 0x3f);
  }
  if (len == 3 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) return 0;
  if (len == 4 && (cp < 0x10000 || cp > 0x10ffff)) return 0;
  return len;
}

/* Appends s (n bytes) as a JSON string of at most max bytes: quote,
 * backslash and control characters escaped, and every byte that is not
 * part of valid UTF-8 written as U+FFFD, so that a line is valid JSON
 * whatever a handler logs.  A string that does not fit is cut between two
 * characters and still closed; returns 1 when it was cut. */
static int put_json(line *l, const char *s, size_t n, size_t max) {
  if (l->full || room(l) < 2) { l->full = 1; return 1; }
  size_t limit = room(l) - 1 < max ? room(l) - 1 : max;   /* -1: the closing quote */
  size_t start = l->len;
  l->p[l->len++] = '"';
  const unsigned char *u = (const unsigned char *)s;
  int cut = 0;
  for (size_t i = 0; i < n;) {
    char esc[8];
    const char *out = esc;
    size_t k = utf8_len(u + i, n - i), on;
    if (k == 0) { out = "\\ufffd"; on = 6; k = 1; }
    else if (u[i] == '"' || u[i] == '\\') { esc[0] = '\\'; esc[1] = (char)u[i]; on = 2; }
    else if (u[i] == '\n') { out = "\\n"; on = 2; }
    else if (u[i] == '\r') { out = "\\r"; on = 2; }
    else if (u[i] == '\t') { out = "\\t"; on = 2; }
    else if (u[i] < 0x20 || u[i] == 0x7f) {
      on = (size_t)snprintf(esc, sizeof esc, "\\u%04x", u[i]);
    } else { out = s + i; on = k; }
    if (l->len - start + on > limit) { cut = 1; break; }
    memcpy(l->p + l->len, out, on);
    l->len += on;
    i += k;
  }
  l->p[l->len++] = '"';
  return cut;
}

/* The keys eddy writes itself: a user field by one of these names is
 * written "field.NAME". */
static const char *const standard_keys[] = {
  "time", "level", "message", "consumer", "message_id", "correlation_id", "trace_id",
  "version", "topic", "partition", "offset", "attempt", NULL
};

static int is_standard(const char *key) {
  for (int i = 0; standard_keys[i]; i++)
    if (strcmp(key, standard_keys[i]) == 0) return 1;
  return 0;
}

/* 1 when key a (renamed: "field." + a) is key b (renamed likewise). */
static int same_key(const char *a, int ra, const char *b, int rb) {
  if (ra == rb) return strcmp(a, b) == 0;
  if (ra) { const char *t = a; a = b; b = t; }
  return strncmp(a, "field.", 6) == 0 && strcmp(a + 6, b) == 0;
}

/* 1 when s (n bytes) is a JSON number, true or false: what a caller
 * says is literal is checked, so that a line is valid JSON whatever. */
static int is_literal(const char *s, size_t n) {
  if ((n == 4 && memcmp(s, "true", 4) == 0) || (n == 5 && memcmp(s, "false", 5) == 0))
    return 1;
  size_t i = 0;
  if (i < n && s[i] == '-') i++;
  if (i < n && s[i] == '0') i++;
  else if (i < n && s[i] >= '1' && s[i] <= '9') while (i < n && s[i] >= '0' && s[i] <= '9') i++;
  else return 0;
  if (i < n && s[i] == '.') {
    size_t d = ++i;
    while (i < n && s[i] >= '0' && s[i] <= '9') i++;
    if (i == d) return 0;
  }
  if (i < n && (s[i] == 'e' || s[i] == 'E')) {
    i++;
    if (i < n && (s[i] == '+' || s[i] == '-')) i++;
    size_t d = i;
    while (i < n && s[i] >= '0' && s[i] <= '9') i++;
    if (i == d) return 0;
  }
  return i == n;
}

/* ,"key":"value", the value cut to VALUE_JSON_BYTES -- or nothing at all
 * when the line has no room left for it. */
static void json_str_field(line *l, const char *key, const char *v, size_t n) {
  size_t mark = l->len;
  put(l, ",\"", 2);
  put_str(l, key);
  put(l, "\":", 2);
  put_json(l, v, n, VALUE_JSON_BYTES);
  if (l->full) l->len = mark;
}

static void json_num_field(line *l, const char *key, int64_t v) {
  char b[48];
  int n = snprintf(b, sizeof b, ",\"%s\":%" PRId64, key, v);
  put(l, b, (size_t)n);
}

static void json_line(line *l, const char *t, const char *level, const char *msg,
                      const eddy_logfields *f) {
  char lower[16];
  size_t i = 0;
  for (; level[i] && i < sizeof lower - 1; i++)
    lower[i] = (char)(level[i] >= 'A' && level[i] <= 'Z' ? level[i] + 32 : level[i]);
  lower[i] = 0;
  put_str(l, "{\"time\":\"");
  put_str(l, t);
  put_str(l, "\",\"level\":");
  put_json(l, lower, i, sizeof lower);
  put_str(l, ",\"message\":");
  put_json(l, msg, strlen(msg), MESSAGE_JSON_BYTES);
  if (f) {
    if (f->consumer) json_str_field(l, "consumer", f->consumer, strlen(f->consumer));
    if (f->message_id) json_str_field(l, "message_id", f->message_id, strlen(f->message_id));
    if (f->correlation_id)
      json_str_field(l, "correlation_id", f->correlation_id, f->correlation_id_len);
    if (f->trace_id) json_str_field(l, "trace_id", f->trace_id, strlen(f->trace_id));
    if (f->version) json_str_field(l, "version", f->version, strlen(f->version));
    if (f->topic) json_str_field(l, "topic", f->topic, strlen(f->topic));
    if (f->set & EDDY_LOGF_PARTITION) json_num_field(l, "partition", f->partition);
    if (f->set & EDDY_LOGF_OFFSET) json_num_field(l, "offset", f->offset);
    if (f->set & EDDY_LOGF_ATTEMPT) json_num_field(l, "attempt", f->attempt);
    size_t n = f->nextra < MAX_EXTRA ? f->nextra : MAX_EXTRA;
    unsigned char written[MAX_EXTRA];
    for (size_t x = 0; x < n && !l->full; x++) {
      const eddy_logfield *e = &f->extra[x];
      int renamed = is_standard(e->key);
      written[x] = 0;
      int dup = 0;
      for (size_t y = 0; y < x && !dup; y++)
        dup = written[y] && same_key(e->key, renamed, f->extra[y].key, is_standard(f->extra[y].key));
      if (dup) continue;
      size_t mark = l->len;
      int cut = 0;
      if (renamed) {
        put(l, ",\"field.", 8);
        put_str(l, e->key);
        put(l, "\":", 2);
      } else {
        /* A key too long to fit whole is left out, never cut: two cut
         * keys could be the same. */
        put(l, ",", 1);
        cut = put_json(l, e->key, strlen(e->key), VALUE_JSON_BYTES);
        put(l, ":", 1);
      }
      if (e->literal && is_literal(e->value, e->value_len)) put(l, e->value, e->value_len);
      else put_json(l, e->value, e->value_len, VALUE_JSON_BYTES);   /* a value may be cut */
      if (l->full) { l->len = mark; break; }
      if (cut) { l->len = mark; continue; }
      written[x] = 1;
    }
  }
  l->p[l->len++] = '}';   /* LINE_RESERVE kept room for it */
}

/* One key=value of a text line, after a space unless it is the first. */
static void text_kv(line *l, int *any, const char *fmt, ...)
  __attribute__((format(printf, 3, 4)));
static void text_kv(line *l, int *any, const char *fmt, ...) {
  char b[MESSAGE_BYTES];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(b, sizeof b, fmt, ap);
  va_end(ap);
  if (n < 0) return;
  if (*any) put_cut(l, " ", 1);
  put_cut(l, b, (size_t)n < sizeof b ? (size_t)n : sizeof b - 1);
  *any = 1;
}

/* The line as it always was: "TIME LEVEL ", the fields as key=value, the
 * message, the extra fields; at most MESSAGE_BYTES in all. */
static void text_line(line *l, const char *t, const char *level, const char *msg,
                      const eddy_logfields *f) {
  char b[64];
  int n = snprintf(b, sizeof b, "%s %-5s ", t, level);
  put_cut(l, b, (size_t)n < sizeof b ? (size_t)n : sizeof b - 1);
  if (f) {
    unsigned hide = f->text_hide;
    int any = 0;
    if (f->consumer) text_kv(l, &any, "consumer=%s", f->consumer);
    if (f->message_id) text_kv(l, &any, "id=%s", f->message_id);
    if (f->correlation_id && !(hide & EDDY_LOGF_CORRELATION_ID))
      text_kv(l, &any, "correlation_id=%.*s", (int)f->correlation_id_len, f->correlation_id);
    if (f->version && !(hide & EDDY_LOGF_VERSION)) text_kv(l, &any, "version=%s", f->version);
    if (f->topic && !(hide & EDDY_LOGF_TOPIC)) text_kv(l, &any, "topic=%s", f->topic);
    if ((f->set & EDDY_LOGF_PARTITION) && !(hide & EDDY_LOGF_PARTITION))
      text_kv(l, &any, "partition=%d", f->partition);
    if ((f->set & EDDY_LOGF_OFFSET) && !(hide & EDDY_LOGF_OFFSET))
      text_kv(l, &any, "offset=%" PRId64, f->offset);
    if ((f->set & EDDY_LOGF_ATTEMPT) && !(hide & EDDY_LOGF_ATTEMPT))
      text_kv(l, &any, "%s=%d", f->text & EDDY_LOGT_ATTEMPTS ? "attempts" : "attempt",
              f->attempt);
    if (any) put_cut(l, f->text & EDDY_LOGT_COLON ? ": " : " ", f->text & EDDY_LOGT_COLON ? 2 : 1);
  }
  int quoted = f && (f->text & EDDY_LOGT_QUOTED);
  if (quoted) put_cut(l, "msg=\"", 5);
  put_cut(l, msg, strlen(msg));
  if (quoted) put_cut(l, "\"", 1);
  for (size_t x = 0; f && x < f->nextra; x++) {
    const eddy_logfield *e = &f->extra[x];
    /* Quoted when it would not read as one word; inner quotes stay as
     * they are, as they always did. */
    size_t vl = strnlen(e->value, e->value_len);
    int q = vl == 0 || memchr(e->value, ' ', vl) || memchr(e->value, '"', vl) ||
            memchr(e->value, '=', vl);
    put_cut(l, " ", 1);
    put_cut(l, e->key, strlen(e->key));
    put_cut(l, q ? "=\"" : "=", q ? 2 : 1);
    put_cut(l, e->value, vl);
    if (q) put_cut(l, "\"", 1);
  }
  if (l->len > MESSAGE_BYTES - 1) l->len = MESSAGE_BYTES - 1;
}

static void vlog(const char *level, const eddy_logfields *f, const char *fmt, va_list ap) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  char t[32];
  eddy_format_time((int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000, t);
  char msg[MESSAGE_BYTES];
  vsnprintf(msg, sizeof msg, fmt, ap);
  line l;
  l.len = 0;
  l.full = 0;
  if (eddy_log_format() == EDDY_LOG_JSON) json_line(&l, t, level, msg, f);
  else text_line(&l, t, level, msg, f);
  l.p[l.len++] = '\n';
  /* One write per line: lines of several threads never interleave. */
  ssize_t w = write(STDERR_FILENO, l.p, l.len);
  (void)w;
}

void eddy_logx(const char *level, const eddy_logfields *f, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vlog(level, f, fmt, ap);
  va_end(ap);
}

void eddy_logf(const char *level, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vlog(level, NULL, fmt, ap);
  va_end(ap);
}
