/*
 * units.c - fuzzes the parsers of durations, sizes and whole numbers
 * (runtime/units.h) that apps and the command line go through.
 *
 * The input: two bytes choosing the bounds of eddy_parse_int, then the
 * text (up to its first NUL, as a C string reaches the parsers).  Checks:
 * each parser agrees with a plain reference written from units.h's words:
 * digits (then, for durations and sizes, one of the suffixes, any case for
 * sizes), no overflow of 64 bits, the value scaled by the suffix.
 */
#include <ctype.h>
#include <string.h>
#include <strings.h>

#include "fuzz.h"
#include "units.h"

typedef struct unit { const char *suffix; int64_t scale; } unit;

static const unit DURATIONS[] = {
  { "", 1 }, { "ms", 1 }, { "s", 1000 }, { "m", 60000 }, { "h", 3600000 }, { "d", 86400000 },
};
static const unit SIZES[] = {
  { "", 1 }, { "b", 1 }, { "kb", 1000 }, { "mb", 1000000 }, { "gb", 1000000000 },
  { "kib", 1024 }, { "mib", 1048576 }, { "gib", 1073741824 },
  { "k", 1024 }, { "m", 1048576 }, { "g", 1073741824 },
};

/* The leading digits of s as a number: 0 and *end set, -1 when there are
 * none or they pass INT64_MAX.  Written apart from units.c on purpose. */
static int digits(const char *s, int64_t *v, const char **end) {
  if (!isdigit((unsigned char)*s)) return -1;
  __int128 r = 0;
  for (; isdigit((unsigned char)*s); s++) {
    r = r * 10 + (*s - '0');
    if (r > INT64_MAX) return -1;
  }
  *v = (int64_t)r;
  *end = s;
  return 0;
}

static int reference(const char *s, const unit *units, size_t n, int any_case, int64_t *out) {
  int64_t v;
  const char *end;
  if (digits(s, &v, &end) != 0) return -1;
  for (size_t i = 0; i < n; i++) {
    if (any_case ? strcasecmp(end, units[i].suffix) != 0 : strcmp(end, units[i].suffix) != 0)
      continue;
    __int128 r = (__int128)v * units[i].scale;
    if (r > INT64_MAX) return -1;
    *out = (int64_t)r;
    return 0;
  }
  return -1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 2) return 0;
  /* Bounds around the interesting places: 0, small, the int64 ends. */
  static const int64_t BOUNDS[] = { INT64_MIN, -1000, -1, 0, 1, 100, 65535, INT64_MAX };
  int64_t min = BOUNDS[data[0] % 8], max = BOUNDS[data[1] % 8];
  char *s = malloc(size - 1);
  FUZZ_CHECK(s != NULL, "out of memory");
  memcpy(s, data + 2, size - 2);
  s[size - 2] = 0;

  int64_t got = -7, want = -7;
  int rc = eddy_parse_duration_ms(s, &got);
  int ref = reference(s, DURATIONS, sizeof DURATIONS / sizeof DURATIONS[0], 0, &want);
  FUZZ_CHECK(rc == ref && (rc != 0 || got == want), "duration '%s': %d %lld, expected %d %lld",
             s, rc, (long long)got, ref, (long long)want);
  got = want = -7;
  rc = eddy_parse_size(s, &got);
  ref = reference(s, SIZES, sizeof SIZES / sizeof SIZES[0], 1, &want);
  FUZZ_CHECK(rc == ref && (rc != 0 || got == want), "size '%s': %d %lld, expected %d %lld", s,
             rc, (long long)got, ref, (long long)want);

  /* A whole number: an optional '-', digits, nothing after, in [min, max]. */
  got = -7;
  rc = eddy_parse_int(s, min, max, &got);
  const char *p = s + (*s == '-');
  int64_t v;
  const char *end;
  ref = -1;
  if (digits(p, &v, &end) == 0 && *end == 0) {
    want = *s == '-' ? -v : v;
    ref = want >= min && want <= max ? 0 : -1;
  }
  FUZZ_CHECK(rc == ref && (rc != 0 || got == want), "int '%s' in [%lld, %lld]: %d %lld", s,
             (long long)min, (long long)max, rc, (long long)got);
  free(s);
  return 0;
}
