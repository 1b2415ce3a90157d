/*
 * units.h - durations ("250ms", "30s", "7d") and sizes ("512KiB", "1GB")
 * as users write them in apps and on the command line.
 */
#ifndef EDDY_UNITS_H
#define EDDY_UNITS_H

#include <stdint.h>

/* Parses a duration: a non-negative whole number followed by ms, s, m, h or
 * d (a bare number is milliseconds).  Returns 0 and sets *ms, or -1 when s
 * is not a duration or overflows. */
int eddy_parse_duration_ms(const char *s, int64_t *ms);

/* Parses a size: a non-negative whole number, optionally followed by B, KB,
 * MB, GB (powers of 1000) or KiB, MiB, GiB (powers of 1024); case of the
 * letters is ignored.  Returns 0 and sets *bytes, or -1. */
int eddy_parse_size(const char *s, int64_t *bytes);

/* Parses a whole decimal number into *v, within [min, max].  Returns 0, or
 * -1 when s is not such a number. */
int eddy_parse_int(const char *s, int64_t min, int64_t max, int64_t *v);

#endif
