/*
 * produce_line.h - one line of `eddy produce`'s standard input, as the key
 * and value of a message.
 *
 * A pure function over the bytes of the line, so that it can be fuzzed
 * alone (fuzz/produce_line.c).
 */
#ifndef EDDY_PRODUCE_LINE_H
#define EDDY_PRODUCE_LINE_H

#include <stddef.h>

/* A line's message; the pointers point into the line. */
typedef struct eddy_produce_line {
  const char *key;          /* NULL without a separator */
  size_t key_len;
  const char *value;
  size_t value_len;
} eddy_produce_line;

/* Splits line[0..len), as getline(3) read it (a newline at its end, or
 * none on the last line), into *out.  Its newline is replaced by a NUL and
 * left out.  Without a separator (sep NULL) the value is the whole line
 * and there is no key.  With one (seplen > 0 bytes, NUL bytes allowed on
 * either side) the key is what comes before its first occurrence and the
 * value what comes after.  Returns 0, or -1 when the line does not hold
 * sep (*out then holds the whole line as its value). */
int eddy_produce_line_split(char *line, size_t len, const char *sep, size_t seplen,
                            eddy_produce_line *out);

#endif
