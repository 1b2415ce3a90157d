/*
 * produce_line.c - a line of `eddy produce` into key and value (see
 * produce_line.h).
 */
#include "produce_line.h"

#include <string.h>

int eddy_produce_line_split(char *line, size_t len, const char *sep, size_t seplen,
                            eddy_produce_line *out) {
  if (len > 0 && line[len - 1] == '\n') line[--len] = '\0';
  out->key = NULL;
  out->key_len = 0;
  out->value = line;
  out->value_len = len;
  if (!sep) return 0;
  char *at = memmem(line, len, sep, seplen);
  if (!at) return -1;
  out->key = line;
  out->key_len = (size_t)(at - line);
  out->value = at + seplen;
  out->value_len = len - out->key_len - seplen;
  return 0;
}
