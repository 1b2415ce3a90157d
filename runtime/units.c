#include "units.h"

#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* Reads the leading digits of s; returns the end, or NULL when there are
 * none or they overflow. */
static const char *digits(const char *s, int64_t *v) {
  if (!isdigit((unsigned char)*s)) return NULL;
  int64_t r = 0;
  for (; isdigit((unsigned char)*s); s++) {
    int d = *s - '0';
    if (r > (INT64_MAX - d) / 10) return NULL;
    r = r * 10 + d;
  }
  *v = r;
  return s;
}

static int scale(int64_t v, int64_t unit, int64_t *out) {
  if (v > INT64_MAX / unit) return -1;
  *out = v * unit;
  return 0;
}

int eddy_parse_duration_ms(const char *s, int64_t *ms) {
  static const struct { const char *suffix; int64_t unit; } units[] = {
    { "", 1 }, { "ms", 1 }, { "s", 1000 }, { "m", 60000 },
    { "h", 3600000 }, { "d", 86400000 },
  };
  int64_t v;
  const char *end = s ? digits(s, &v) : NULL;
  if (!end) return -1;
  for (size_t i = 0; i < sizeof units / sizeof units[0]; i++)
    if (strcmp(end, units[i].suffix) == 0) return scale(v, units[i].unit, ms);
  return -1;
}

int eddy_parse_size(const char *s, int64_t *bytes) {
  static const struct { const char *suffix; int64_t unit; } units[] = {
    { "", 1 }, { "b", 1 }, { "kb", 1000 }, { "mb", 1000000 },
    { "gb", 1000000000 }, { "kib", 1024 }, { "mib", 1048576 },
    { "gib", 1073741824 }, { "k", 1024 }, { "m", 1048576 }, { "g", 1073741824 },
  };
  int64_t v;
  const char *end = s ? digits(s, &v) : NULL;
  if (!end) return -1;
  for (size_t i = 0; i < sizeof units / sizeof units[0]; i++)
    if (strcasecmp(end, units[i].suffix) == 0) return scale(v, units[i].unit, bytes);
  return -1;
}

int eddy_parse_int(const char *s, int64_t min, int64_t max, int64_t *v) {
  if (!s || !*s) return -1;
  const char *p = s;
  int neg = 0;
  if (*p == '-') { neg = 1; p++; }
  int64_t r;
  const char *end = digits(p, &r);
  if (!end || *end) return -1;
  if (neg) r = -r;
  if (r < min || r > max) return -1;
  *v = r;
  return 0;
}
